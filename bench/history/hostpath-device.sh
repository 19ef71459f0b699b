#!/usr/bin/env bash
# The host-path run on a GPU machine without Maven (2026-12-03): the GPU tests of the host path,
# with assertions on (the allocator's leak check), then DeviceBench's host-path measurement with
# the old paths beside the new ones. DIR: as bench/device-env.sh says. Logs go to $OUT (default: a new
# temporary directory) as DATE-h200-hostpath-*.log.
#   bench/history/hostpath-device.sh DIR
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../device-env.sh"
device_setup "${1:?usage: bench/history/hostpath-device.sh DIR}" hostpath
device_tests 100 tests dev.lightning.attention.engine.cuda.HostPathGpuTest dev.lightning.attention.engine.cuda.GpuBackendTest \
  dev.lightning.attention.stream.PieceWorkOnBackendsTest
timeout 120 java --add-modules jdk.incubator.vector -Xmx40g -cp "$CP" dev.lightning.attention.bench.DeviceBench \
  --shapes 1048576x8x128 --variants none --host-shape 262144x8x128 --runs 10 2>&1 | tee "$L-bench.log"
echo "bench exit ${PIPESTATUS[0]}"
