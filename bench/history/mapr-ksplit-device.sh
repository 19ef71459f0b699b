#!/bin/bash
# session 29: the mapped body with K mapped first (LIGHTNING_WG_MAPR_SPLIT: the consumers' state update starts on K,
# the loaders map Q meanwhile), against the committed module. bench/cuda/norm_cost.cu, states kernel + forward.
# base2 = base's cubin loaded again (the spread between two loads of one build). Carried in .device/mp, built at 2156eaa:
#   nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I gpu-worker/src/main/cuda [FLAGS] lightning_sm90.cu
#   base: none; ks1: -DLIGHTNING_WG_MAPR_SPLIT=1 -DLIGHTNING_WG_MAPR_ROWS=1; ks2r88 / ks4r88: -DLIGHTNING_WG_MAPR_SPLIT=1
#   -DLIGHTNING_WG_MAPR_ROWS=2 / 4 -DLIGHTNING_WG_MAP_LOADER_REGS=88 (ptxas: no spill in these; 2 rows with 72 spilled 32 bytes)
set -u
cd .device/mp
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm,memory.total --format=csv,noheader
nvcc -O2 -arch=sm_90 -I ../../gpu-worker/src/main/cuda ../../bench/cuda/norm_cost.cu -o norm_cost || exit 1
B="base=base.cubin ks1=ks1.cubin ks2r88=ks2r88.cubin ks4r88=ks4r88.cubin base2=base.cubin"
echo "== T = 524288 $(date -u +%T)"
timeout 240 ./norm_cost --rounds 16 --repeat 3 --probe --t 524288 $B > $OUT/t512k.log 2>&1; echo "rc=$?"
grep -E "RESULT|norm_cost on" $OUT/t512k.log
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  echo "== T = 1M $(date -u +%T)"
  timeout 280 ./norm_cost --rounds 16 --repeat 3 --probe $B > $OUT/t1m.log 2>&1; echo "rc=$?"
  grep -E "RESULT (time|checks)|norm_cost on" $OUT/t1m.log
fi
echo "== end $(date -u +%T)"
