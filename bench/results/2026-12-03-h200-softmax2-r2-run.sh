#!/usr/bin/env bash
# softmax2 (issue 14), round 2: the kernel branch wt-softmax2 ships (softmax_sm90.cu with the
# loaders' full-tile path, round 1's "lean"): (1) float64 checks of its cubin by softmax_peer.py and
# a timing beside the previous shipped kernel (old = branch switch's) and SDPA cuDNN at 8K, 32K,
# 128K; (2) the Java GpuSoftmaxTest on the bundle of main with this branch's PTX and fat binaries
# (softmax_sm90a, softmax: SASS for the H200, so no JIT at load) first on the class path.
set -u
D="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${OUT:?}"
W=$(mktemp -d)
tar -C "$W" -xJf "$D/r2.tar.xz"
echo "stage 1: float64 checks of the new kernel, then timings $(date -u +%T)"
timeout -k 2 26 python3 -W ignore "$D/softmax_peer.py" --ptx "$W/cub/softmax_portable.cubin" --ptx90 "$W/cub/old.cubin" \
  --hopper-variant "new=$W/cub/new.cubin" --variant-checks-only --sdpa cudnn --variant-lens 8192 --always new \
  > "$OUT/softmax2-r2-peer.log" 2>&1
echo "stage 1 rc=$? $(date -u +%T)"
grep "^CHECKS\|FAIL\|^RESULT\|Error" "$OUT/softmax2-r2-peer.log" | head -30
echo "stage 2: GpuSoftmaxTest $(date -u +%T)"
if [ -n "${JRE_TAR:-}" ] && [ -n "${BUNDLE:-}" ]; then
  J=$(mktemp -d)
  tar -C "$J" -xJf "$JRE_TAR"
  JAVA=$(ls -d "$J"/*/bin/java | head -1)
  B="$BUNDLE"
  CP="$W/cp:$B/classes:$B/test-classes:$(ls "$B"/lib/*.jar | tr '\n' ':')"
  timeout -k 2 60 "$JAVA" -ea --add-modules jdk.incubator.vector -Xmx16g -jar "$B/junit-platform-console-standalone.jar" \
    execute --class-path "$CP" --select-class dev.lightning.attention.engine.cuda.GpuSoftmaxTest --details=tree \
    --disable-banner > "$OUT/softmax2-r2-java.log" 2>&1
  echo "stage 2 rc=$? $(date -u +%T)"
  grep -E "tests (successful|failed|skipped|aborted)|✘|Test run finished|fatbin|sm90" "$OUT/softmax2-r2-java.log" | head -20
else
  echo "stage 2 skipped: JRE_TAR or BUNDLE not set"
fi
