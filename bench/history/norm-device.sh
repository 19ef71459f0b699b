#!/usr/bin/env bash
# The feature-map and normalization run of issue 12 on a GPU machine without Maven (2026-12-03), in
# one command, most important first:
#   1. bench/cuda/phi_check (Hopper build and portable build): the packed 16-bit feature maps
#      against float64 over every 16-bit input;
#   2. GpuBackendTest (every variant case on the wgmma, mma.sync and float32 kernels, split runs
#      against whole ones) on the new kernels;
#   3. DeviceBench as BENCHMARKS.md's variants section runs it (plain and every variant, Hopper and
#      portable, T = 1M, H = 64, D = 128, bf16) on the new kernels;
#   4. the same variants (without the 64K check) on other kernels, each from a directory put ahead
#      of the classpath: DIR/ptx-NAME/dev/lightning/attention/engine/cuda/{lightning,lightning_sm90a}.ptx
#      (PTX, or cubins built with ptxas for sm_90 / sm_90a: the driver loads either);
#   5. the standalone kernel check (tc_check, float64 references) and SASS instruction counts.
# DIR holds jre.tar.xz, bundle.tar.xz (bundle/: classes, test-classes, lib/*.jar and the JUnit
# console), phi_check, phi_check_portable, tc_check, v1_sm90a.cubin, base_sm90a.cubin and ptx-*/.
#   bench/history/norm-device.sh DIR [NAME ...]
# The run of 2026-12-03 (bench/results/2026-12-03-h200-norm-*.log): DIR = .device/norm carried,
# NAME = ex2f32 base partA (the float32 exponential, the kernels of commit 03a47a0, the normalizer
# rows in the K tile), each a pair of cubins.
set -uo pipefail
dir="$(cd "${1:?usage: bench/history/norm-device.sh DIR [NAME ...]}" && pwd)"
shift
out="${OUT:-$(mktemp -d)}"
L="$out/2026-12-03-h200-norm"
tar -C /tmp -xJf "$dir/jre.tar.xz" && export JAVA_HOME=/tmp/jre PATH=/tmp/jre/bin:$PATH
mkdir -p /tmp/nb && tar -C /tmp/nb -xJf "$dir/bundle.tar.xz"
B=/tmp/nb/bundle
CP="$B/classes:$B/test-classes:$(ls "$B"/lib/*.jar | tr '\n' ':')"
J=(java --add-modules jdk.incubator.vector -Xmx16g)
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv; nproc; } > "$L-machine.log" 2>&1
cat "$L-machine.log"
{ echo "== Hopper build"; "$dir/phi_check"; echo "== portable build (compute_80 PTX, compiled by the driver)"; "$dir/phi_check_portable"; } 2>&1 | tee "$L-phi.log"
timeout 100 "${J[@]}" -jar "$B/junit-platform-console-standalone.jar" execute --class-path "$CP" \
  --select-class dev.lightning.attention.engine.cuda.GpuBackendTest --details=tree --disable-banner > "$L-gpu-tests.log" 2>&1
echo "GPU tests exit $?"; grep -E "tests (successful|failed)|finished after|✘" "$L-gpu-tests.log" | head -20
timeout 90 "${J[@]}" -cp "$CP" dev.lightning.attention.bench.DeviceBench --shapes 1048576x64x128 \
  --variants 1048576x128 --host-shape none 2>&1 | tee "$L-variants.log" | grep RESULT
for name in "$@"; do
  echo "== variants on ptx-$name"
  timeout 60 "${J[@]}" -cp "$dir/ptx-$name:$CP" dev.lightning.attention.bench.DeviceBench --shapes none --checks none \
    --variants 1048576x128 --host-shape none > "$L-variants-$name.log" 2>&1
  echo "exit $?"; grep -E "RESULT (variant|check)" "$L-variants-$name.log"
done
for c in v1 base; do
  echo "SASS $c: $(cuobjdump -sass "$dir/${c}_sm90a.cubin" 2>/dev/null | grep -oE "MUFU\.[A-Z0-9_.]+|HMNMX2[A-Z0-9_.]*|HFMA2[A-Z0-9_.]*" | sort | uniq -c | tr '\n' ' ')"
done | tee "$L-sass.log"
timeout 40 "$dir/tc_check" > "$L-tc-check.log" 2>&1
echo "tc_check exit $?"; tail -n 2 "$L-tc-check.log"
