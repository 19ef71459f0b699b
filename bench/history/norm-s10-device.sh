#!/usr/bin/env bash
# Issue 12, session 10: the normalized Hopper forward's instructions (ncu), its time against the shipped build
# (norm_cost), then every GPU test class and DeviceBench's variants on the checkout's PTX (the candidate).
# Run as .device/norm7/run.sh by .device/rounds/run.sh (BUNDLE, JRE_TAR set); carried in .device/norm7: norm_cost and
# the cubins base (main), qpz2 (c26babe as committed) and qpz1 (an uncommitted state before it: the normalizer rows
# copied at the end of the previous chunk, one P^T register spilled).
set -uo pipefail
root="$(pwd)"
here="$root/.device/norm7"
chmod +x "$here/norm_cost"
B="base=$here/base.cubin qpz1=$here/qpz1.cubin qpz2=$here/qpz2.cubin"
echo "== 1. ncu, forward kernels, warm-up round (T = 262,144) $(date -u +%T)"
timeout 150 ncu --clock-control none -k 'regex:lightning_forward_wg_bf16' --launch-skip 12 --launch-count 12 \
  --metrics smsp__inst_executed.sum,sm__cycles_elapsed.max,gpu__time_duration.sum \
  "$here/norm_cost" --rounds 0 --t 262144 $B > "$OUT/ncu.log" 2>&1
echo "ncu rc=$?"
grep -E "smsp__inst_executed.sum|sm__cycles_elapsed.max|gpu__time_duration.sum" "$OUT/ncu.log" | awk '{print $1, $(NF)}' | paste - - - | head -12
echo "== 2. norm_cost (T = 1M, 16 rounds, each variant after itself) $(date -u +%T)"
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw --format=csv,noheader -lms 500 > "$OUT/smi.log" 2>&1 & smi=$!
timeout 90 "$here/norm_cost" --rounds 16 --repeat 2 --rotate-variants --per-round --probe $B > "$OUT/normcost.log" 2>&1
echo "norm_cost rc=$?"; kill $smi 2>/dev/null
grep -E "RESULT|FAILED|rror|check" "$OUT/normcost.log" | cut -c1-160
echo "== 3. GPU tests on the checkout's PTX $(date -u +%T)"
d=$(mktemp -d); ln -s "$BUNDLE" "$d/bundle"; ln -s "$JRE_TAR" "$d/jre.tar.xz"
LOG_TAG=norm7-gpu-tests bash "$root/bench/gpu-tests-device.sh" "$d" 300
echo "== 4. DeviceBench variants $(date -u +%T)"
CP="$BUNDLE/classes:$BUNDLE/test-classes:$(ls "$BUNDLE"/lib/*.jar | tr '\n' ':')"
timeout 100 /tmp/jre/bin/java --add-modules jdk.incubator.vector -Xmx24g -cp "$CP" dev.lightning.attention.bench.DeviceBench \
  --shapes 1048576x64x128 --variants 1048576x128 --host-shape none --runs 10 > "$OUT/devicebench.log" 2>&1
echo "DeviceBench rc=$?"
grep -E "^RESULT (ours |check|variant)" "$OUT/devicebench.log"
ls "$OUT"
