#!/usr/bin/env bash
# Every GPU test of the engine in one run on a GPU machine without Maven, with assertions on (the
# allocators' leak checks): the lightning backend (GpuBackendTest, HostPathGpuTest), the executor's
# read-compute-write path (PieceWorkOnBackendsTest, PieceWorkHostWindowsTest), the batch step
# (CudaBatchStepTest) and softmax (GpuSoftmaxTest). The GPU test classes are those that skip
# themselves, with a message, where CUDA is not usable; the list below is all of them in gpu-worker.
# DIR: as bench/device-env.sh says. Logs: $OUT/DATE-h200-$LOG_TAG-*.log (LOG_TAG default gpu-tests).
#   bench/gpu-tests-device.sh DIR [SECONDS]
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/device-env.sh"
device_setup "${1:?usage: bench/gpu-tests-device.sh DIR [SECONDS]}" "${LOG_TAG:-gpu-tests}"
p=dev.lightning.attention
device_tests "${2:-240}" tests $p.engine.cuda.GpuBackendTest $p.engine.cuda.HostPathGpuTest \
  $p.engine.cuda.CudaBatchStepTest $p.engine.cuda.GpuSoftmaxTest $p.stream.PieceWorkOnBackendsTest \
  $p.stream.PieceWorkHostWindowsTest
