#!/usr/bin/env bash
# One segment against the chosen plans where the memory sets the pace (issue 13: 2.5x fla at H = 64). On an H100
# (2026-12-05, BENCHMARKS.md "The first H100 runs") the chosen plans ran at 0.95 to 0.98 of the copy bandwidth at T = 512K and 1M for the
# bytes they move, and fla at 1.90x to 2.21x our time at H = 64: there the bytes decide. H = 64 heads make 64 forward
# CTAs on 132 SMs, so SegmentPlan cuts the window into 2 segments and pass 1 reads k and v again for the first half of
# the tokens: a quarter more bytes than q, k, v and o once (14.3 ms of copy time at T = 512K on the H100, against
# 11.4 ms for one segment, which needs no pass 1 but runs on half the SMs). On the H200 the SMs at 700 W set the pace,
# which favours the full GPU. DeviceBench --ab, each forced plan against the chosen one alternated over 7 rounds:
#   1x1: one segment (no pass 1); L1024x1 and L2048x1: a lead of an eighth or a quarter of the window (pass 1 over it
#   alone, then the lead's CTAs beside the rest's); 2x2: the chosen plan forced (a control: its ratio should be 1).
# T = 512K fits an 80 GB card; T = 2^20 runs too where the card holds it.
# DIR: as bench/device-env.sh says. Logs: $OUT/DATE-h200-$LOG_TAG-*.log (LOG_TAG default one-segment).
#   OUT=OUTDIR bench/one-segment-device.sh DIR
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/device-env.sh"
device_setup "${1:?usage: OUT=OUTDIR bench/one-segment-device.sh DIR}" "${LOG_TAG:-one-segment}"
ab="524288x64x128:1x1,524288x64x128:L1024x1,524288x64x128:L2048x1,524288x64x128:2x2"
ab="$ab,524288x48x128:1x1,524288x96x128:1x1"
if (( $(gpu_mib) > 120000 )); then
  ab="$ab,1048576x64x128:1x1,1048576x64x128:2x2"
fi
timeout 500 java -Xmx24g -cp "$CP" dev.lightning.attention.bench.DeviceBench --shapes none --runs 10 \
  --host-shape none --variants none --checks none --rounds 7 --ab "$ab" > "$L-devicebench.log" 2>&1
echo "DeviceBench rc=$?"
grep RESULT "$L-devicebench.log"
