#!/usr/bin/env bash
# The batch step's carry on a GPU machine without Maven (BENCHMARKS.md, "The carries written without a GPU, run on
# one"): CudaBatchStepTest on the committed PTX, then the decode timing of that PTX against a base revision's,
# alternated, then decode_batch.py's correctness section. Prepare here, from the repository root:
#   bin/gpu-bundle DIR/b && find DIR/b/classes -name '*.ptx' -delete      (the committed PTX goes in on the device)
#   ../shared/device/pack-jre.sh DIR/b
#   mkdir -p DIR/base && git show REV:gpu-worker/src/main/resources/dev/lightning/attention/engine/cuda/lightning_batch.ptx \
#       > DIR/base/lightning_batch.ptx
# then one device call: command `bash bench/batch-carry-device.sh DIR`, carry [DIR] (DIR git-ignored, e.g. .device/bc).
set -u
dir=${1:?usage: bench/batch-carry-device.sh DIR}
out=${OUT:-$(mktemp -d)}
tar -C /tmp -xJf "$dir/b/jre.tar.xz" && export JAVA_HOME=/tmp/jre PATH=/tmp/jre/bin:$PATH
B=$dir/b
cp -r gpu-worker/src/main/resources/. "$B/classes/"
CP="$B/classes:$B/test-classes:$(ls "$B"/lib/*.jar | tr '\n' ':')"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
echo "== CudaBatchStepTest $(date -u +%T)"
timeout 150 java -ea --add-modules jdk.incubator.vector -jar "$B/junit-platform-console-standalone.jar" execute -cp "$CP" \
  --select-class dev.lightning.attention.engine.cuda.CudaBatchStepTest --details=tree --disable-banner > "$out/tests.log" 2>&1
echo "rc=$?"; grep -E "slow heads|tests (successful|failed|found)|✘" "$out/tests.log" | head -30
new=gpu-worker/src/main/resources/dev/lightning/attention/engine/cuda/lightning_batch.ptx
echo "== decode, alternated $(date -u +%T)"
for round in 1 2; do
  for side in new base; do
    p=$new; [[ $side == base ]] && p=$dir/base/lightning_batch.ptx
    mkdir -p "/tmp/decode-$side-$round"
    echo "=== $side $round" >> "$out/decode.log"
    DECODE_SECTIONS=decode timeout 60 python3 bench/decode_batch.py "$p" "/tmp/decode-$side-$round" >> "$out/decode.log" 2>&1
    echo "decode $side $round rc=$?"
  done
done
grep -E "^=== |decode N=65536 slots (in order|permuted)|x [18] tokens|N=131072" "$out/decode.log" | cut -c1-160
echo "== correctness $(date -u +%T)"
mkdir -p /tmp/corr; DECODE_SECTIONS=correctness timeout 90 python3 bench/decode_batch.py "$new" /tmp/corr > "$out/correctness.log" 2>&1
echo "rc=$?"; grep -E "FAIL|correctness|Traceback|Error" "$out/correctness.log" | cut -c1-200 | tail -8
echo "logs in $out"
