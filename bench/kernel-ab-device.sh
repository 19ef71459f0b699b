#!/usr/bin/env bash
# The device half of bench/kernel-ab.sh (copied into its DIR as run.sh): on a GPU machine, from the root of a
# checkout (its committed PTX is what the Java side loads),
#   OUT=OUTDIR bash DIR/run.sh B [SECONDS]      the timing, then the Java checks of the checkout's module
#   QUICK=1 OUT=OUTDIR bash DIR/run.sh          the timing only (candidates not yet in the checkout; no bundle)
# with B a bundle directory (bench/device-env.sh). Logs $OUT/DATE-CARD-${LOG_TAG:-ab}-*.log:
#  1. norm_cost (16 rounds, --repeat 2): states kernel and forward, plain, normalized identity, elu1 and normalized
#     elu1, T = 1M, H = 64, D = 128, bf16, every build of DIR held against float64 first; nvidia-smi samples meanwhile;
#  2. fwd_cost (40 rounds): the plain forward and states kernel alone at H = 64 and H = 8; both tools' medians side by
#     side, each build against the first (bench/ab_table.py, $L-table.md);
#  3. DeviceBench at bin/gpu-check's D = 128 shapes, H = 48 and 96, D = 64, and the variants;
#  4. every GPU test class (bench/gpu-tests-device.sh), in what is left of SECONDS (default 560).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(pwd)"
quick="${QUICK:-}"
bdir="${1:-}"
[[ -n "$quick" || -n "$bdir" ]] || { echo "usage: OUT=DIR bash run.sh BUNDLE_DIR [SECONDS], or QUICK=1 OUT=DIR bash run.sh" >&2; exit 2; }
budget=${2:-560}
. "$root/bench/device-env.sh"
if [[ -n "$quick" ]]; then
  out="${OUT:?OUT must name the output directory}"; mkdir -p "$out"
  L="$out/$(date -u +%Y-%m-%d)-$(card_tag)-${LOG_TAG:-ab}"
  { date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv; } > "$L-machine.log" 2>&1
else
  export CLASSES_FIRST="$root/gpu-worker/src/main/resources"  # the checkout's PTX ahead of the bundle's
  if ls "$bdir"/bundle/classes/dev/lightning/attention/engine/cuda/*.fatbin >/dev/null 2>&1; then
    echo "kernel-ab: the bundle holds fat binaries, which the engine would load instead of the checkout's PTX;" \
         "make it with bin/gpu-bundle without LIGHTNING_SASS" >&2
    exit 2
  fi
  device_setup "$bdir" "${LOG_TAG:-ab}"
fi
cat "$here/builds.txt" >> "$L-machine.log"
builds=(); while read -r line; do n=${line%%:*}; builds+=("$n=$here/$n.cubin"); done < "$here/builds.txt"
smi_start "$L-smi.log"
timeout 150 "$here/norm_cost" --rounds 16 --repeat 2 "${builds[@]}" > "$L-normcost.log" 2>&1
echo "norm_cost rc=$? (0: every build passed its checks)"; grep -E "RESULT time|FAIL|checks" "$L-normcost.log"
timeout 120 "$here/fwd_cost" --rounds 40 "${builds[@]}" > "$L-fwdcost.log" 2>&1
echo "fwd_cost rc=$?"; grep -E "RESULT (time|checks)|FAIL" "$L-fwdcost.log"
python3 "$root/bench/ab_table.py" "$L-normcost.log" "$L-fwdcost.log" | tee "$L-table.md"
if [[ -n "$quick" ]]; then [[ -n "$SMI_PID" ]] && kill "$SMI_PID" 2>/dev/null; xz -f "$L-smi.log"; exit 0; fi
timeout 200 java --add-modules jdk.incubator.vector -Xmx24g -cp "$CP" dev.lightning.attention.bench.DeviceBench \
  --shapes 1048576x64x128,1048576x8x128,1048576x48x128,1048576x96x128,524288x16x64 --variants 1048576x128 \
  --host-shape none --runs 10 > "$L-devicebench.log" 2>&1
echo "DeviceBench rc=$?"; [[ -n "$SMI_PID" ]] && kill "$SMI_PID" 2>/dev/null; xz -f "$L-smi.log"
grep -E "^RESULT (ours |check|variant|copy)" "$L-devicebench.log"
left=$((budget - SECONDS - 5))
LOG_TAG="${LOG_TAG:-ab}-gpu-tests" bash "$root/bench/gpu-tests-device.sh" "$bdir" "$left"
