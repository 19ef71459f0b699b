#!/usr/bin/env bash
# Builds the device payload of issue 12's portable plain-path question (helper "tcplain") into DIR: payload.tar.xz
# and run.sh (= bench/tcplain-device.sh). The payload holds norm_cost; builds of the portable module as the shipped
# code reaches an H200 (lightning.cu to PTX for compute_80, then ptxas for sm_90), one per NAME[@REV]=FLAGS (the
# sources of commit REV when given, else the working tree; FLAGS: -D options, commas for spaces); tc_check of the
# candidate and the candidate's portable module as a fat binary (SASS for sm_90 and PTX for compute_80) under
# java-override/ for the Java tests (the engine loads lightning.fatbin ahead of the PTX). The candidate: CANDIDATE
# (-D flags; "none": no candidate, no tc_check or fat binary) on the sources of CANDIDATE_REV (default: the
# working tree). LOAD="NAME=FLAGS ...": PTX of the working tree's lightning.cu with those flags as ptx/NAME.ptx,
# for the driver's load time (module_load.py --one, carried). BUDGET_S: the seconds run.sh keeps within (105).
# Run from the repository root:
#   bash bench/tcplain-build.sh DIR NAME[@REV]=FLAGS ...
# Round 1 (on 9734434, logged as ce3ee8d before its message was reworded; CANDIDATE=-DLIGHTNING_TC_QZ_PASS=1):
#   portable-qz1= (the shipped flags) portable-qz0=-DLIGHTNING_TC_QZ_MMA=0 portable-pass=-DLIGHTNING_TC_QZ_PASS=1 and three measurement builds
#   (normalized runs wrong on purpose): x-portable-plain=-DLIGHTNING_TC_NORM_X=1 (the plain body alone)
#   x-portable-qzout0=-DLIGHTNING_TC_QZ_OUT=0 (the output warps' half of QZ_MMA off)
#   x-portable-qzstate0=-DLIGHTNING_TC_QZ_STATE=0 (the state warps' half off).
# Round 2 (BUDGET_S=100, CANDIDATE=none, on 4c9ad15, logged as 20b676f, which added NORM_X=2, NORM_SPLIT and
#   NORM_ENTRIES):
#   portable-shipped= portable-qz0=-DLIGHTNING_TC_QZ_MMA=0 x-portable-plain=-DLIGHTNING_TC_NORM_X=1
#   x-portable-norm=-DLIGHTNING_TC_NORM_X=2 x-portable-norm-qz0=-DLIGHTNING_TC_NORM_X=2,-DLIGHTNING_TC_QZ_MMA=0
#   portable-split=-DLIGHTNING_TC_NORM_SPLIT=1, LOAD="shipped= entries=-DLIGHTNING_TC_NORM_ENTRIES=1".
# Both rounds' options but LIGHTNING_TC_NORM_X were removed after the rounds: to rebuild a round, run this script
# in a checkout of that round's commit.
set -euo pipefail
dir="${1:?usage: tcplain-build.sh DIR NAME[@REV]=FLAGS ...}"; shift
(( $# )) || { echo "tcplain-build: name at least one build NAME[@REV]=FLAGS" >&2; exit 2; }
cand="${CANDIDATE-}"
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
mkdir -p "$w/cubin"
# srcdir REV: the CUDA sources of commit REV (empty: the working tree)
srcdir() {
  if [[ -z "$1" ]]; then echo gpu-worker/src/main/cuda; return; fi
  local d="$w/src-$1"
  if [[ ! -d "$d" ]]; then
    mkdir -p "$d"
    git archive "$1" gpu-worker/src/main/cuda | tar -x -C "$d"
  fi
  echo "$d/gpu-worker/src/main/cuda"
}
committed=gpu-worker/src/main/resources/dev/lightning/attention/engine/cuda/lightning.ptx
for sp in "$@"; do
  n=${sp%%=*}; f=${sp#*=}; f=${f//,/ }; rev=""
  [[ "$n" == *@* ]] && { rev=${n#*@}; n=${n%%@*}; }
  src=$(srcdir "$rev")
  # shellcheck disable=SC2086
  nvcc -ptx -arch=compute_80 -O3 -I "$src" $f "$src/lightning.cu" -o "$w/$n.ptx"
  ptxas -arch=sm_90 -O3 -v "$w/$n.ptx" -o "$w/cubin/$n.cubin" > "$w/$n.ptxas" 2>&1
  same=$(cmp -s "$w/$n.ptx" $committed && echo "the working tree's committed PTX" || echo "not the working tree's PTX")
  echo "$n (${rev:-working tree} $f): PTX $(stat -c %s "$w/$n.ptx") bytes, $same; forward_tc_bf16: $(grep -A2 "for lightning_forward_tc_bf16$" "$w/$n.ptxas" | grep -o '[0-9]* bytes spill stores')"
done
extra=()
if [[ "$cand" != none ]]; then
  src=$(srcdir "${CANDIDATE_REV:-}")
  # shellcheck disable=SC2086
  nvcc -O2 -arch=sm_90 $cand -I "$src" gpu-worker/src/test/cuda/tc_check.cu -o "$w/tc_check"
  sub=dev/lightning/attention/engine/cuda
  mkdir -p "$w/java-override/$sub"
  # shellcheck disable=SC2086
  nvcc -fatbin -O3 -I "$src" $cand -gencode arch=compute_80,code=sm_90 -gencode arch=compute_80,code=compute_80 \
    "$src/lightning.cu" -o "$w/java-override/$sub/lightning.fatbin"
  extra+=(tc_check java-override)
fi
if [[ -n "${LOAD:-}" ]]; then
  mkdir -p "$w/ptx"
  for sp in $LOAD; do
    n=${sp%%=*}; f=${sp#*=}; f=${f//,/ }
    # shellcheck disable=SC2086
    nvcc -ptx -arch=compute_80 -O3 -I gpu-worker/src/main/cuda $f gpu-worker/src/main/cuda/lightning.cu -o "$w/ptx/$n.ptx"
    echo "load $n ($f): PTX $(stat -c %s "$w/ptx/$n.ptx") bytes"
  done
  cp bench/module_load.py "$w/"
  extra+=(ptx module_load.py)
fi
nvcc -O2 -arch=sm_90 -I gpu-worker/src/main/cuda bench/cuda/norm_cost.cu -o "$w/norm_cost"
{ echo "tcplain payload: builds $*; candidate (tc_check, fat binary) ${CANDIDATE_REV:-working tree} ${cand:-no flags}; load ${LOAD:-none}"
  git rev-parse HEAD; git status --short; } > "$w/candidate.txt"
mkdir -p "$dir"
tar -C "$w" -cJf "$dir/payload.tar.xz" cubin norm_cost "${extra[@]}" candidate.txt
cp bench/tcplain-device.sh "$dir/run.sh"
echo "${BUDGET_S:-105}" > "$dir/budget"
ls -la "$dir/payload.tar.xz"
