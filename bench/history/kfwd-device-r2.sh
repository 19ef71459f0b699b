#!/usr/bin/env bash
# kfwd round 2 (the winner confirmed: its float64 checks, tc_check, GpuBackendTest and the A/B again) within
# 115 s: bench/history/kfwd-device.sh, copied beside this script as device.sh, with fewer timing rounds.
#   OUT=DIR JRE_TAR=... BUNDLE=... bash .device/kfwd/run.sh
here="$(cd "$(dirname "$0")" && pwd)"
BUDGET=${BUDGET:-115} ROUNDS=${ROUNDS:-30} exec bash "$here/device.sh"
