#!/usr/bin/env bash
# Every GPU test of the engine in one run on a GPU machine without Maven, with assertions on (the
# allocators' leak checks): the test classes and cases tagged "gpu" (GpuTagTest holds that every test
# that skips itself where CUDA is not usable carries the tag), as bin/gpu-check selects them.
# DIR: as bench/device-env.sh says. Logs: $OUT/DATE-CARD-$LOG_TAG-*.log (LOG_TAG default gpu-tests).
#   bench/gpu-tests-device.sh DIR [SECONDS]
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/device-env.sh"
device_setup "${1:?usage: bench/gpu-tests-device.sh DIR [SECONDS]}" "${LOG_TAG:-gpu-tests}"
device_tests "${2:-240}" tests --include-tag gpu
