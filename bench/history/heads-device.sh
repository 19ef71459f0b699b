#!/bin/bash
# session 30 (carried as .device/run4.sh with the bundle of .device/run3.sh): DeviceBench at the open goals' head counts (H = 48, 64, 96, D = 128), T = 1M on a GPU of 100 GB or
# more (an H200), else 512K, and the variants; a bundle of HEAD (committed PTX, nvcc hidden).
set -u
tar -C /tmp -xJf .device/bc/b/jre.tar.xz && export JAVA_HOME=/tmp/jre PATH=/tmp/jre/bin:$PATH
B=.device/bc/b
cp -r gpu-worker/src/main/resources/. $B/classes/
cp="$B/classes:$B/test-classes"; for jar in $B/lib/*.jar; do cp="$cp:$jar"; done
. bench/device-env.sh
mib="$(gpu_mib)"; T=1048576; (( mib > 0 && mib < 100000 )) && T=524288
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm,memory.total --format=csv,noheader
mkdir -p $OUT/db
smi_start "$OUT/db/smi.log"
echo "== DeviceBench T=$T $(date -u +%T)"
PATH="$(echo "$PATH" | tr : "\n" | grep -v cuda | paste -sd:)" timeout 400 java -Xmx24g -cp "$cp" \
  dev.lightning.attention.bench.DeviceBench --shapes "${T}x48x128,${T}x64x128,${T}x96x128" --variants "${T}x128" \
  --checks 65536 > $OUT/db/bench.log 2>&1; echo "rc=$?"
[[ -n "$SMI_PID" ]] && kill "$SMI_PID" 2>/dev/null
grep -E "^RESULT (ours|copy|variant|check)" $OUT/db/bench.log | sed 's/ kernels=.*//'
echo "== end $(date -u +%T)"
