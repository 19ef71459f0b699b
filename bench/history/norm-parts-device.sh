#!/usr/bin/env bash
# Session 10: the normalized forward's parts by ncu cycles (main's module and its LIGHTNING_WG_NORM_X measurement
# builds; T = 262,144, H = 64, D = 128, bf16; norm_cost's warm-up round launches each build's four variants).
# Carried in .device/xn: norm_cost and the cubins (nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I
# gpu-worker/src/main/cuda [-DLIGHTNING_WG_NORM_X=1|2|4|6|16|8] lightning_sm90.cu), run by .device/rounds/run.sh xn:100.
set -uo pipefail
root="$(pwd)"; here="$root/.device/xn"
chmod +x "$here/norm_cost"
B=""; for b in base x-q x-den x-z x-denz x-nomap x-plain; do B="$B $b=$here/$b.cubin"; done
timeout 120 ncu --clock-control none -k 'regex:lightning_forward_wg_bf16' --launch-skip 28 --launch-count 28 \
  --metrics smsp__inst_executed.sum,sm__cycles_elapsed.max,gpu__time_duration.sum \
  "$here/norm_cost" --rounds 0 --t 262144 $B > "$OUT/ncu.log" 2>&1
echo "ncu rc=$?"
grep -E "smsp__inst_executed.sum|sm__cycles_elapsed.max" "$OUT/ncu.log" | awk '{print $1, $NF}' | paste - - | head -28
