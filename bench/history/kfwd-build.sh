#!/usr/bin/env bash
# Builds the variants of issue 13's forward-consumer work (helper "kfwd") as cubins of lightning_sm90.cu
# (sm_90a) into DIR/cubin, with ptxas's spill report for lightning_forward_wg_bf16 and the states kernel, and
# fwd_cost (bench/cuda/fwd_cost.cu) beside them. Run from the repository root: bash bench/history/kfwd-build.sh DIR [NAME=FLAGS ...]
# Without NAME=FLAGS: the default set below. FLAGS: option names without LIGHTNING_WG_, separated by commas,
# each set to 1, or NAME=VALUE (e.g. regs64=MAP_LOADER_REGS=64). A name hopper.cuh does not declare is an
# error (options that measured no gain are removed from the source: STSM, WTAB, SV_SPLIT, EARLY_STATE ran
# here before 0e42eee, S_SPLIT (ssplit, with bench/ssplit-payload.sh) at 59d8d4b; FAST_STORE and DESC32,
# shipped, lost their option and the code before them in 021569d; check out an older commit to build them).
set -euo pipefail
dir="${1:?usage: kfwd-build.sh DIR [NAME=FLAGS ...]}"; shift
src=gpu-worker/src/main/cuda
mkdir -p "$dir/cubin"
specs=("$@")
if (( ${#specs[@]} == 0 )); then
  specs=(base=)
fi
for sp in "${specs[@]}"; do
  name=${sp%%=*}; flags=${sp#*=}; d=()
  IFS=, read -ra fl <<< "$flags"
  for f in "${fl[@]}"; do
    [[ -z "$f" ]] && continue
    grep -q "ifndef LIGHTNING_WG_${f%%=*}\$" $src/hopper.cuh \
      || { echo "kfwd-build: hopper.cuh declares no option LIGHTNING_WG_${f%%=*} (in '$sp'); expected one of:" \
             $(grep -o 'ifndef LIGHTNING_WG_[A-Z0-9_]*' $src/hopper.cuh | sed 's/ifndef LIGHTNING_WG_//') >&2; exit 2; }
    [[ "$f" == *=* ]] && d+=("-DLIGHTNING_WG_$f") || d+=("-DLIGHTNING_WG_$f=1")
  done
  nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I $src --resource-usage "${d[@]}" $src/lightning_sm90.cu \
    -o "$dir/cubin/$name.cubin" 2>&1 | grep -A1 "Function properties for lightning_\(forward\|states\)_wg_bf16" \
    | grep -v "^--" | paste - - | sed -E "s/ptxas info *: Function properties for //; s/^/$name (${d[*]}): /"
done
nvcc -O2 -arch=sm_90 -I $src bench/cuda/fwd_cost.cu -o "$dir/fwd_cost" 2>/dev/null || echo "fwd_cost not built"
