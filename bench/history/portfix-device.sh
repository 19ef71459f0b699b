#!/usr/bin/env bash
# Session 10: the portable normalized forward's regression and its fix: norm_cost (portable mode: one segment,
# forward only, T = 1M, H = 64, D = 128) old (3819078) / new (main) / fix, then every GPU test class and DeviceBench's
# variants on the checkout's PTX (the fix). Run as .device/portfix/run.sh by .device/rounds/run.sh portfix:330; carried:
# norm_cost and the cubins (nvcc -cubin -O3 -arch=sm_90 -I gpu-worker/src/main/cuda lightning.cu at 3819078, at 3ee8650, and now).
set -uo pipefail
root="$(pwd)"; here="$root/.device/portfix"
chmod +x "$here/norm_cost"
B="portable-old=$here/portable-old.cubin portable-new=$here/portable-new.cubin portable-fix=$here/portable-fix.cubin"
timeout 100 "$here/norm_cost" --rounds 10 --repeat 2 --rotate-variants $B > "$OUT/normcost.log" 2>&1
echo "norm_cost rc=$?"
grep -E "RESULT (time|checks)|FAILED" "$OUT/normcost.log" | cut -c1-150
d=$(mktemp -d); ln -s "$BUNDLE" "$d/bundle"; ln -s "$JRE_TAR" "$d/jre.tar.xz"
LOG_TAG=s10-portfix-gpu-tests bash "$root/bench/gpu-tests-device.sh" "$d" 200
CP="$BUNDLE/classes:$BUNDLE/test-classes:$(ls "$BUNDLE"/lib/*.jar | tr '\n' ':')"
timeout 100 /tmp/jre/bin/java --add-modules jdk.incubator.vector -Xmx24g -cp "$CP" dev.lightning.attention.bench.DeviceBench \
  --shapes 1048576x64x128 --variants 1048576x128 --host-shape none --runs 10 > "$OUT/devicebench.log" 2>&1
echo "DeviceBench rc=$?"
grep -E "^RESULT (ours |variant)" "$OUT/devicebench.log"
