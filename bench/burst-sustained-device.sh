#!/usr/bin/env bash
# One resident window timed in short bursts and sustained, with the GPU's clock and power sampled 40 times a second:
# is a shape's share of the copy bandwidth a property of the kernels, or of how long the card has been busy (at the
# 700 W limit its clock follows the power it has drawn) and of the warm-up before the timing?
#   burst: DeviceBench with SHAPE five times at --runs 10 (gpu-check's count: 0.05 to 0.3 s a timing, after the
#          shape's setup has left the GPU idle), "ours" then "ours-two-pass" (the same plan where H fills the GPU);
#   sustained: SHAPE four times at --runs 80 (about 2 s a timing at T = 1M, H = 64).
# bench/clock_share.py then lists each timing with its median clock, power and temperature.
# Its commands were run by hand on 2026-12-05 on an H100 (BENCHMARKS.md, "The first H100 runs"): the first timing had been
# up to 11% slow, the host's launch path not yet compiled after a one-window warm-up (BenchHooks.timeResident).
# DIR: as bench/device-env.sh says. SHAPE: TxHxD, default T = 1M, H = 64, D = 128 (T = 512K on a card of less
# than 120 GB). Logs: $OUT/DATE-CARD-$LOG_TAG-{machine,burst,sustained,smi}.log (LOG_TAG default burst-sustained).
#   OUT=OUTDIR bench/burst-sustained-device.sh DIR [SHAPE]
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/device-env.sh"
device_setup "${1:?usage: OUT=OUTDIR bench/burst-sustained-device.sh DIR [SHAPE]}" "${LOG_TAG:-burst-sustained}"
s="${2:-1048576x64x128}"
[[ -z "${2:-}" ]] && (( $(gpu_mib) <= 120000 )) && s=524288x64x128
smi_start "$L-smi.log"
bench=(java -Xmx24g -cp "$CP" dev.lightning.attention.bench.DeviceBench --checks none --variants none --host-shape none)
timeout 120 "${bench[@]}" --shapes "$s,$s,$s,$s,$s" --runs 10 > "$L-burst.log" 2>&1; echo "burst rc=$?"
sleep 2
timeout 150 "${bench[@]}" --shapes "$s,$s,$s,$s" --runs 80 > "$L-sustained.log" 2>&1; echo "sustained rc=$?"
kill "$SMI_PID"
for f in burst sustained; do
  echo "== $f ($SMI_POWER)"
  python3 "$here/clock_share.py" "$L-$f.log" "$L-smi.log"
done
