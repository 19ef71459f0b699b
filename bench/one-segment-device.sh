#!/usr/bin/env bash
# Cuts with fewer bytes than the chosen plan where the memory sets the pace (issue 13: 2.5x fla at H = 64). On an H100
# (2026-12-05, BENCHMARKS.md "The first H100 runs") the chosen plans ran at 0.95 to 0.98 of the copy bandwidth at
# T = 512K and 1M, and fla at 1.90x to 2.21x our time at H = 64: there the bytes decide. H = 64 heads make 64 forward
# CTAs on 132 SMs, so SegmentPlan cuts the window into 2 segments and pass 1 reads k and v again for the first half of
# the tokens: a quarter more bytes than q, k, v and o once (14.3 ms of copy time at T = 512K on the H100). Fewer bytes:
#   1x1: one segment, no pass 1 (11.4 ms of bytes), but 64 CTAs each walking the whole window: on the H200 it took
#        39.85 ms at T = 1M against the chosen cut's 29.73 (2026-12-03), so it likely loses on the H100 too;
#   L2048x1, L1024x1: a lead of a quarter or an eighth of the window, pass 1 over it alone (10% and 15% fewer bytes
#        than the chosen cut), the rest's 64 CTAs walking three quarters or seven eighths of it: near the chosen
#        plan's time at the CTAs' rate, so only a measurement says which side wins;
#   2x2: the chosen plan forced (a control: its ratio should be 1).
# DeviceBench --ab, each forced plan against the chosen one alternated over 7 rounds. H = 48 and 96 at one segment
# too. T = 512K fits an 80 GB card; T = 2^20 runs too where the card holds it.
# DIR: as bench/device-env.sh says. Logs: $OUT/DATE-CARD-$LOG_TAG-*.log (LOG_TAG default one-segment).
#   OUT=OUTDIR bench/one-segment-device.sh DIR
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/device-env.sh"
device_setup "${1:?usage: OUT=OUTDIR bench/one-segment-device.sh DIR}" "${LOG_TAG:-one-segment}"
ab="524288x64x128:1x1,524288x64x128:L1024x1,524288x64x128:L2048x1,524288x64x128:2x2"
ab="$ab,524288x48x128:1x1,524288x96x128:1x1"
if (( $(gpu_mib) > 120000 )); then
  ab="$ab,1048576x64x128:1x1,1048576x64x128:2x2"
fi
device_ab 500 "$ab"
grep RESULT "$L-devicebench.log"
