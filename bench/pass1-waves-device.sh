#!/usr/bin/env bash
# Pass 1 cut into more waves of the states kernel, against the plans the backend chooses (issue 13:
# H = 48 and 96 below 0.80 of the copy bandwidth). SegmentPlan caps pass 1 at MAX_WAVES = 2 waves of
# the states kernel, so H = 96 (an uneven cut, a lead of a quarter of the window) runs pass 1 over the
# lead as 96 CTAs on 132 SMs, a wave a third empty. The plan model (SegmentPlan.modelChunks, with the
# states kernel at 0.45 of a forward chunk) puts these cuts ahead of the chosen ones:
#   H = 96, the lead in 4 sub-segments (384 CTAs, 3 waves at 97%): 0.967 of the chosen plan's time;
#   in 11 (1,056 CTAs, 8 whole waves): 0.966 to 0.969; in 3 or 7 (not whole waves): 1.000 and 0.983;
#   H = 48, 2 segments with pass 1 in 8 or 11 sub-segments (against 5): 0.990 and 0.986.
# A third off H = 96's time would take it from 0.785 to about 0.81 of the copy bandwidth. The model has
# held for the forward only roughly (a CTA runs faster where fewer run beside it), which is what this
# measures before SegmentPlan's bound on pass 1 changes. DeviceBench --ab: each forced cut against the
# chosen plan, alternated over 7 rounds in one process; "L2048x1" is the chosen plan at T = 524,288 forced
# (a control: its ratio should be 1). T = 524,288 fits an 80 GB card; T = 2^20 (the gpu-check shapes)
# runs too where the card holds it (q, k, v, o at H = 96: 103 GB).
# Run on 2026-12-05 (BENCHMARKS.md, "Pass 1 in more waves, not kept"): every forced cut within the spread of the
# control, so SegmentPlan's bound stayed; kept to rerun on other cards.
# DIR: as bench/device-env.sh says (bin/gpu-bundle DIR/bundle, bin/lean-runtime --jre for DIR/jre.tar.xz
# or bench/device-env.sh's JRE). Logs: $OUT/DATE-CARD-$LOG_TAG-*.log (LOG_TAG default pass1-waves).
#   OUT=OUTDIR bench/pass1-waves-device.sh DIR
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/device-env.sh"
device_setup "${1:?usage: OUT=OUTDIR bench/pass1-waves-device.sh DIR}" "${LOG_TAG:-pass1-waves}"
ab="524288x96x128:L2048x1,524288x96x128:L2048x4,524288x96x128:L2048x11,524288x96x128:L2048x7"
ab="$ab,524288x48x128:2x5,524288x48x128:2x8,524288x48x128:2x11"
shapes="524288x96x128,524288x48x128"
if (( $(gpu_mib) > 120000 )); then
  ab="$ab,1048576x96x128:L4096x1,1048576x96x128:L4096x4,1048576x96x128:L4096x11,1048576x48x128:2x11"
  shapes="1048576x96x128,1048576x48x128,$shapes"
fi
device_ab 500 "$ab" "$shapes"
grep RESULT "$L-devicebench.log"
