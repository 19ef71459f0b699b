#!/bin/bash
# session 30: what the Hopper forward's map costs, and whether its place on the loaders' path from a chunk's copies
# landing to their arrive is part of it; four device calls (bench/cuda/norm_cost.cu, states kernel + forward,
# T = 524288, H = 64, D = 128, bf16, each variant after itself; BENCHMARKS.md, "The map's cost is its work").
# Cubins carried in .device/dl, built here:
#   nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I gpu-worker/src/main/cuda [FLAGS] \
#        gpu-worker/src/main/cuda/lightning_sm90.cu -o NAME.cubin
#   base: the committed sources, no flags. d300 / d600 / d1200: -DLIGHTNING_WG_DELAY_NS=300 / 600 / 1200 (the loaders
#   sleep that long after the copies land, before the map, S and the arrive: latency without work). late: d00b910's
#   -DLIGHTNING_WG_NORM_X=128 (MAPR maps a scratch tile after the next loads; that build mapped one tile twice, which
#   the compiler merged into half the work); late2: the same switch as fixed after it (two scratch tiles: the whole
#   work). ring: bench/results/2026-12-06-s30-qk-ring.patch applied (Q and K in a ring of four, V of three);
#   ringplain: ring with -DLIGHTNING_WG_NORM_X=64 (plain launches through MAPR, so through the ring). mathhalf /
#   smemhalf: -DLIGHTNING_WG_NORM_X=256 / 512 (the map's arithmetic halved, its shared-memory reads and writes kept;
#   or the other way round).
# Calls: delay (an H100), late (an H100), ring (an H100), late2 (an H200, lent for a call that named no kind),
# halves (an H100), rg (an H100: rgN = bench/results/2026-12-06-s30-qk-registers.patch applied, with
# -DLIGHTNING_WG_RG_ROWS=N).
set -u
cd .device/dl
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm,memory.total --format=csv,noheader
nvcc -O2 -arch=sm_90 -I ../../gpu-worker/src/main/cuda ../../bench/cuda/norm_cost.cu -o norm_cost || exit 1
case "${1:-delay}" in
  delay) B="base=base.cubin d300=d300.cubin d600=d600.cubin d1200=d1200.cubin base2=base.cubin" ;;
  late) B="base=base.cubin late=late.cubin base2=base.cubin late2=late.cubin" ;;
  late2) B="base=base.cubin late2=late2.cubin ring=ring.cubin base2=base.cubin late2b=late2.cubin" ;;
  halves) B="base=base.cubin mathhalf=mathhalf.cubin smemhalf=smemhalf.cubin late=late.cubin base2=base.cubin" ;;
  rg) B="base=base.cubin rg8=rg8.cubin rg4=rg4.cubin rg2=rg2.cubin smemhalf=smemhalf.cubin base2=base.cubin" ;;
  ring) B="base=base.cubin ring=ring.cubin ringplain=ringplain.cubin late=late.cubin base2=base.cubin ring2=ring.cubin" ;;
esac
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 50 > $OUT/smi.log &
SMI=$!
echo "== T = 524288 $(date -u +%T)"
timeout 300 ./norm_cost --rounds 16 --repeat 3 --probe --per-round --t 524288 $B > $OUT/t512k.log 2>&1; echo "rc=$?"
kill $SMI
grep -E "RESULT|norm_cost on" $OUT/t512k.log | grep -v "RESULT round" | head -60
echo "== end $(date -u +%T)"
