#!/usr/bin/env bash
# Issue 14: the Hopper softmax kernel's build options (softmax_sm90.cu, "build options"), one cubin a
# combination, checked against float64 and timed beside each other and SDPA flash / cuDNN in one
# process (bench/softmax_peer.py). Probes (SOFTMAX_SM90_PROBE_*) are timed, never checked: their
# results are wrong by design; they bound what the exponentials and the loads cost.
#   bench/softmax_fast.sh build DIR        builds DIR/<label>.cubin for every set below, and
#                                          DIR/softmax_portable.cubin (softmax.cu, so that no PTX
#                                          is JIT-compiled at the run)
#   bench/softmax_fast.sh run DIR [softmax_peer.py arguments]   on an H200 with PyTorch
# The default set (label "", the reference of the timings) is base: the sources as shipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Since the full-tile loader path shipped (round 1 measured it as "lean"), every set has it.
P=-DSOFTMAX_SM90_PIN_WAIT F=-DSOFTMAX_SM90_FAST_STEP Z=-DSOFTMAX_SM90_LAZY_MAX=8.f
SETS=(
  "base|"
  "pin|$P"
  "lazy|$F $Z"
  "all|$P $F $Z"
  "all-wso|$P $F $Z -DSOFTMAX_SM90_OVERLAP=true -DSOFTMAX_SM90_PINGPONG=false"
  "probe-noexp|$P $F $Z -DSOFTMAX_SM90_PROBE_NOEXP"
  "probe-noload|-DSOFTMAX_SM90_PROBE_NOLOAD"
  "probe-both|$P $F $Z -DSOFTMAX_SM90_PROBE_NOEXP -DSOFTMAX_SM90_PROBE_NOLOAD"
)
cmd=${1:?build or run}
dir=${2:?directory of the cubins}
shift 2
src=gpu-worker/src/main/cuda
if [ "$cmd" = build ]; then
  mkdir -p "$dir"
  for s in "${SETS[@]}"; do
    label=${s%%|*}
    # shellcheck disable=SC2086
    nvcc -cubin -gencode=arch=compute_90a,code=sm_90a -O3 -I $src ${s#*|} $src/softmax_sm90.cu -o "$dir/$label.cubin"
  done
  nvcc -cubin -gencode=arch=compute_90a,code=sm_90a -O3 -I $src $src/softmax.cu -o "$dir/softmax_portable.cubin"
  ls -l "$dir"
  exit 0
fi
args=()
for s in "${SETS[@]}"; do
  label=${s%%|*}
  case $label in
    base) ;;
    probe-*) args+=(--probe "$label=$dir/$label.cubin") ;;
    *) args+=(--hopper-variant "$label=$dir/$label.cubin") ;;
  esac
done
exec python3 -W ignore bench/softmax_peer.py --ptx "$dir/softmax_portable.cubin" --ptx90 "$dir/base.cubin" \
  "${args[@]}" --variant-checks-only --sdpa flash,cudnn "$@"
