#!/bin/bash
# session 30: what the Hopper forward's loader path from a chunk's copies landing to the arrive costs, in two device
# calls (bench/cuda/norm_cost.cu, states kernel + forward, T = 524288, H = 64, D = 128, bf16, each variant after
# itself). Cubins carried in .device/dl, built here from hopper.cuh at the commit that added the two switches:
#   nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I gpu-worker/src/main/cuda [FLAGS] \
#        gpu-worker/src/main/cuda/lightning_sm90.cu -o NAME.cubin
# call 1 (delay): base (no flags), d300 / d600 / d1200 (-DLIGHTNING_WG_DELAY_NS=300 / 600 / 1200: the loaders sleep
#   that long after the copies land, before the map, S and the arrive: latency without work), base2 = base again.
# call 2 (late): late (-DLIGHTNING_WG_NORM_X=128: MAPR maps a scratch tile after the next loads, not the landed tiles
#   before the arrive: the map's work without its place on that path; results wrong on purpose), base, base2, late2.
set -u
cd .device/dl
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm,memory.total --format=csv,noheader
nvcc -O2 -arch=sm_90 -I ../../gpu-worker/src/main/cuda ../../bench/cuda/norm_cost.cu -o norm_cost || exit 1
case "${1:-delay}" in
  delay) B="base=base.cubin d300=d300.cubin d600=d600.cubin d1200=d1200.cubin base2=base.cubin" ;;
  late) B="base=base.cubin late=late.cubin base2=base.cubin late2=late.cubin" ;;
esac
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 50 > $OUT/smi.log &
SMI=$!
echo "== T = 524288 $(date -u +%T)"
timeout 300 ./norm_cost --rounds 16 --repeat 3 --probe --per-round --t 524288 $B > $OUT/t512k.log 2>&1; echo "rc=$?"
kill $SMI
grep -E "RESULT|norm_cost on" $OUT/t512k.log | grep -v "RESULT round" | head -60
echo "== end $(date -u +%T)"
