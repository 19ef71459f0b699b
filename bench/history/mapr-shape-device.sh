#!/bin/bash
# session 29: what MAPR's shape costs apart from the map's work (hopper.cuh, LIGHTNING_WG_NORM_X bit 64):
# base = the committed sources' module; mapr = plain launches run the MAPR body with nothing to map; base2 = base
# again (the spread between two loads of one build). bench/cuda/norm_cost.cu, states kernel + forward. Carried in
# .device/mp, built at 23842c0: nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I gpu-worker/src/main/cuda
# [-DLIGHTNING_WG_NORM_X=64 for mapr] gpu-worker/src/main/cuda/lightning_sm90.cu -o NAME.cubin
set -u
cd .device/mp
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm,memory.total --format=csv,noheader
nvcc -O2 -arch=sm_90 -I ../../gpu-worker/src/main/cuda ../../bench/cuda/norm_cost.cu -o norm_cost || exit 1
B="base=base.cubin mapr=mapr.cubin base2=base.cubin"
echo "== T = 524288 $(date -u +%T)"
timeout 200 ./norm_cost --rounds 16 --repeat 3 --probe --t 524288 $B > $OUT/t512k.log 2>&1; echo "rc=$?"
grep -E "RESULT|norm_cost on" $OUT/t512k.log
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  echo "== T = 1M $(date -u +%T)"
  timeout 240 ./norm_cost --rounds 16 --repeat 3 --probe $B > $OUT/t1m.log 2>&1; echo "rc=$?"
  grep -E "RESULT|norm_cost on" $OUT/t1m.log
fi
echo "== end $(date -u +%T)"
