#!/usr/bin/env bash
# The segment plans weighing the memory (SegmentPlan.HOPPER_CTA_BYTES_PER_SECOND, 2026-12-05): each shape whose
# plan the memory changes, the plan chosen now (B) against the one chosen before (A, forced), alternated over 7
# rounds in one DeviceBench process (--ab); A_over_B > 1: the new plan is faster. H = 64 (unchanged: 2 x 2) is
# the control. The old plans as SegmentPlan chose them at T = 2^19 on 132 SMs without the memory: H = 8 33 x 1,
# 16 8 x 1, 24 11 x 1, 36 7 x 1, 48 2 x 5, 80 a lead of 2,688 chunks in 3, 96 a lead of 2,048, 112 a lead of
# 1,152, 116 a lead of 896. On an H100 (memory for 88 CTAs) all but H = 16's change; on an H200 the memory is not
# weighed (SegmentPlan.MEMORY_BOUND), so every pair there times a plan against itself: the spread of a control
# (T = 2^20 runs there too). Then GpuBackendTest, whose segment-plan cases check the chosen plans' outputs against
# the float64 recurrence.
# DIR: as bench/device-env.sh says. Logs: $OUT/DATE-CARD-$LOG_TAG-*.log (LOG_TAG default memory-plans).
#   OUT=OUTDIR bench/memory-plans-device.sh DIR
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/device-env.sh"
device_setup "${1:?usage: OUT=OUTDIR bench/memory-plans-device.sh DIR}" "${LOG_TAG:-memory-plans}"
t=524288
ab="${t}x64x128:2x2,${t}x8x128:33x1,${t}x16x128:8x1,${t}x24x128:11x1,${t}x36x128:7x1,${t}x48x128:2x5"
ab="$ab,${t}x52x128:2x5,${t}x80x128:L2688x3,${t}x96x128:L2048x1,${t}x112x128:L1152x1,${t}x116x128:L896x1"
device_ab 420 "$ab"
grep -E "RESULT (copy|ab )" "$L-devicebench.log"
device_tests "${TEST_TIMEOUT:-280}" gpu-backend-test dev.lightning.attention.engine.cuda.GpuBackendTest
