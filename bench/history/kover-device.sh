#!/usr/bin/env bash
# kover (issue 13 item 2: overlap in the D = 128 forward's consumers, LIGHTNING_WG_SV_SPLIT and
# LIGHTNING_WG_EARLY_STATE) on the device within
# 140 s: bench/history/kfwd-device.sh, copied beside this script as device.sh, logs $OUT/kover-*.log. The payload:
#   CANDIDATE=SV_SPLIT,EARLY_STATE TC_EXTRA=svs=SV_SPLIT bash bench/history/kfwd-payload.sh DIR base= svs=SV_SPLIT es=EARLY_STATE \
#     sves=SV_SPLIT,EARLY_STATE; cp DIR/run.sh DIR/device.sh; cp bench/history/kover-device.sh DIR/run.sh
#   OUT=DIR JRE_TAR=... BUNDLE=... bash .device/kover/run.sh
# Ran 2026-12-03 17:56 UTC (BENCHMARKS.md): no gain; both options were removed from hopper.cuh in 0e42eee.
here="$(cd "$(dirname "$0")" && pwd)"
LOG_NAME=kover BUDGET=${BUDGET:-138} ROUNDS=${ROUNDS:-30} exec bash "$here/device.sh"
