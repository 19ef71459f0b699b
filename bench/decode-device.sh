#!/usr/bin/env bash
# Prepares one device call that times and checks the batch (decode) step on a GPU machine without
# Java or Maven: bench/decode_batch.py with its variants prebuilt here, and the GPU batch-step
# tests (CudaBatchStepTest) through a small jlinked JRE. Run here, in the checkout the device tool
# sends (DIR must be a git-ignored folder of it), after
#   mvn -o -q -pl gpu-worker test-compile
# Usage: bench/decode-device.sh [DIR]        (default .device/decode; STAGED_TOKENS, default 1: the
#        BATCH_STAGED_TOKENS the carried PTX is built with, so that the host and the Java tests take
#        the staged kernels for sequences of up to that many tokens)
# Then one call: command `bash DIR/run.sh`, carry [DIR], about 100 s after the machine's start. Its
# files: decode_batch.log / .json (the bench), java-tests.log, machine.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.device/decode}
staged=${STAGED_TOKENS:-1}
src=gpu-worker/src/main/cuda
rm -rf "$dir" && mkdir -p "$dir/cuda" "$dir/tests/lib"
rel=$dir
dir=$(cd "$dir" && pwd)
cp "$src"/*.cu "$src"/*.cuh bench/decode_batch.py "$dir/cuda/"
mv "$dir/cuda/decode_batch.py" "$dir/"
nvcc -ptx -arch=compute_80 -O3 -DBATCH_STAGED_TOKENS="$staged" -I "$src" "$src/lightning_batch.cu" -o "$dir/cuda/lightning_batch.ptx"
python3 bench/decode_batch.py --build-variants "$dir/variants" >/dev/null
# the test classpath: gpu-worker's classes with the PTX above, its test classes, its jars, the JUnit console
cp -r gpu-worker/target/classes "$dir/tests/classes"
cp -r gpu-worker/target/test-classes "$dir/tests/test-classes"
cp "$dir/cuda/lightning_batch.ptx" "$dir/tests/classes/dev/lightning/attention/engine/cuda/lightning_batch.ptx"
mvn -o -q -pl gpu-worker dependency:build-classpath -Dmdep.outputFile="$dir/cp.txt" -Dmdep.includeScope=test >/dev/null
tr ':' '\n' < "$dir/cp.txt" | grep -v -e junit -e opentest4j -e apiguardian | xargs -I{} cp {} "$dir/tests/lib/"
rm "$dir/cp.txt"
mvn -o -q dependency:copy -Dartifact=org.junit.platform:junit-platform-console-standalone:1.11.4 \
  -DoutputDirectory="$dir/tests" -Dmdep.stripVersion=true >/dev/null
# a JRE of the modules the tests use (13 MB as tar.xz)
jre=$(mktemp -d)
jlink --add-modules java.base,java.logging,java.management,jdk.unsupported,jdk.incubator.vector,java.xml,java.naming \
  --strip-debug --no-header-files --no-man-pages --output "$jre/jre" 2>/dev/null
tar -C "$jre" -cf - jre | xz -T2 -6 > "$dir/jre.tar.xz"
rm -rf "$jre"
cat > "$dir/run.sh" <<EOF
#!/bin/bash
# The device call (bench/decode-device.sh wrote it): the decode bench, then CudaBatchStepTest. PTX built
# with BATCH_STAGED_TOKENS=$staged.
cd "\$(dirname "\$0")"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv > \$OUT/machine.txt 2>&1
( tar -C /tmp -xJf jre.tar.xz ) &
DECODE_VARIANT_PTX=\$PWD/variants DECODE_SECTIONS=\${DECODE_SECTIONS:-correctness,decode,variants} timeout 75 \\
  python3 decode_batch.py cuda/lightning_batch.ptx \$OUT > \$OUT/decode-stdout.log 2>&1
echo "python rc=\$?"
wait
cd tests
CP="classes:test-classes:\$(ls lib/*.jar | tr '\n' ':')"
C=dev.lightning.attention.engine.cuda.CudaBatchStepTest; P=dev.lightning.attention.engine.BatchCase
timeout 25 /tmp/jre/bin/java --add-modules jdk.incubator.vector -jar junit-platform-console-standalone.jar execute -cp "\$CP" \\
  --select-method "\$C#gpuAgreesWithTheReference(\$P)" --select-method "\$C#gpuInTheInputDtypeAgreesWithTheReference(\$P)" \\
  --select-method "\$C#twoStepsEqualOneOverTheConcatenation(\$P)" --select-method "\$C#aStoreOfAnotherStepIsRefused" \\
  --details=tree --disable-banner > \$OUT/java-tests.log 2>&1
echo "java rc=\$?"
grep -E "FAIL|SECTION FAILED|correctness:|CTAs an SM|of the copy|TB/s|tokens, slots|Traceback|Error" \$OUT/decode_batch.log \$OUT/decode-stdout.log | cut -c1-260 | tail -60
grep -E "tests (successful|failed|found|aborted)|✘" \$OUT/java-tests.log | head -20
EOF
echo "prepared $dir ($(du -sh "$dir" | cut -f1)): one device call, command 'bash $rel/run.sh', carry [\"$rel\"]"
