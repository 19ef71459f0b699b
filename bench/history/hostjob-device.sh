#!/usr/bin/env bash
# The executor's read-compute-write path on host tensors, on a GPU machine without Maven
# (2026-12-03): PieceWorkBench (one BF16 file, T = 262,144, H = 8, D = 128; pass 2 as one piece,
# before and after, cold and warm page cache), then the GPU tests of the path with assertions on
# (the allocator's leak check). DIR: as bench/device-env.sh says. Logs go to $OUT (default: a new
# temporary directory) as DATE-h200-$LOG_TAG-*.log (LOG_TAG default hostjob). BENCH_S, TESTS_S and GPU_BACKEND_TEST_S
# bound the three steps in seconds (GPU_BACKEND_TEST_S=0 skips GpuBackendTest).
#   bench/history/hostjob-device.sh DIR
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../device-env.sh"
device_setup "${1:?usage: bench/history/hostjob-device.sh DIR}" "${LOG_TAG:-hostjob}"
work=/tmp/lightning-piecework-bench
{ mkdir -p "$work"; df -h "$work"; lsblk -d -o NAME,ROTA,SIZE,MODEL 2>/dev/null | head -8; } 2>&1 | tee -a "$L-machine.log"
timeout "${BENCH_S:-60}" java --add-modules jdk.incubator.vector -Xmx24g -cp "$CP" dev.lightning.attention.bench.PieceWorkBench \
  --shape 262144x8x128 --runs 5 --backend gpu --window-bytes 1073741824 --drop-cache true --dir "$work" 2>&1 | tee "$L-bench.log"
echo "bench exit ${PIPESTATUS[0]}"
rm -rf "$work"
device_tests "${TESTS_S:-50}" tests dev.lightning.attention.stream.PieceWorkHostWindowsTest dev.lightning.attention.stream.PieceWorkOnBackendsTest \
  dev.lightning.attention.engine.cuda.HostPathGpuTest dev.lightning.attention.tensor.NonFiniteTest \
  dev.lightning.attention.stream.RangeReaderTest
if [ "${GPU_BACKEND_TEST_S:-40}" -gt 0 ]; then
  device_tests "${GPU_BACKEND_TEST_S:-40}" gpubackend dev.lightning.attention.engine.cuda.GpuBackendTest
fi
