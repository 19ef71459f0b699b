#!/bin/bash
# session 29: ncu sections of the Hopper forward, plain against elu1 (and the normalized pair), one build (the
# committed module), T = 262,144, H = 64, D = 128, bf16, 2 segments: norm_cost's checks and warm-up round.
set -u
cd .device/mp
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader
nvcc -O2 -arch=sm_90 -I ../../gpu-worker/src/main/cuda ../../bench/cuda/norm_cost.cu -o norm_cost || exit 1
timeout 300 ncu --clock-control none -k 'regex:lightning_forward_wg_bf16' \
  --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section WarpStateStats \
  --section SchedulerStats --section InstructionStats \
  --metrics smsp__inst_executed.sum,sm__cycles_elapsed.max,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,sm__pipe_shared_cycles_active.avg.pct_of_peak_sustained_active,smsp__inst_executed_op_shared_ld.sum,smsp__inst_executed_op_shared_st.sum \
  ./norm_cost --rounds 0 --t 262144 base=base.cubin > $OUT/ncu.log 2>&1
echo "ncu rc=$?"
grep -E "lightning_forward_wg_bf16|Duration|Elapsed Cycles|Executed Ipc A|Issue Slots Busy|sm__inst_executed_pipe_xu|sm__pipe_shared|mem_shared.sum|op_shared|smsp__inst_executed.sum|Shared Memory|Warp Cycles Per Issued|No Eligible|Memory Throughput|DRAM Throughput" $OUT/ncu.log | head -150
