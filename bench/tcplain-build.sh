#!/usr/bin/env bash
# Builds the device payload of issue 12's portable plain-path question (helper "tcplain") into DIR/payload.tar.xz:
# norm_cost, builds of the portable module (lightning.cu as the shipped code reaches an H200: PTX for compute_80,
# then ptxas for sm_90), each NAME=FLAGS, and tc_check of the candidate (CANDIDATE, -D flags). Run from the
# repository root, with a fat binary of the candidate's portable module (SASS for sm_90 and PTX for compute_80)
# under java-override/ for the Java tests (the engine loads lightning.fatbin ahead of the PTX). Run from the
# repository root:
#   bash bench/tcplain-build.sh DIR [NAME=FLAGS ...]
# Default builds: portable-qz1 (the shipped flags), portable-qz0 (-DLIGHTNING_TC_QZ_MMA=0), portable-pass
# (-DLIGHTNING_TC_QZ_PASS=1), and three measurement builds (normalized runs wrong on purpose): x-portable-plain
# (-DLIGHTNING_TC_NORM_X=1: the plain body alone), x-portable-qzout0 (the output warps' half of QZ_MMA off) and
# x-portable-qzstate0 (the state warps' half off).
set -euo pipefail
dir="${1:?usage: tcplain-build.sh DIR [NAME=FLAGS ...]}"; shift
cand="${CANDIDATE--DLIGHTNING_TC_QZ_PASS=1}"
src=gpu-worker/src/main/cuda
specs=("$@")
(( ${#specs[@]} )) || specs=("portable-qz1=" "portable-qz0=-DLIGHTNING_TC_QZ_MMA=0" "portable-pass=-DLIGHTNING_TC_QZ_PASS=1"
                             "x-portable-plain=-DLIGHTNING_TC_NORM_X=1" "x-portable-qzout0=-DLIGHTNING_TC_QZ_OUT=0"
                             "x-portable-qzstate0=-DLIGHTNING_TC_QZ_STATE=0")
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
mkdir -p "$w/cubin"
for sp in "${specs[@]}"; do
  n=${sp%%=*}; f=${sp#*=}
  # shellcheck disable=SC2086
  nvcc -ptx -arch=compute_80 -O3 -I $src $f $src/lightning.cu -o "$w/$n.ptx"
  ptxas -arch=sm_90 -O3 -v "$w/$n.ptx" -o "$w/cubin/$n.cubin" > "$w/$n.ptxas" 2>&1
  same=$(cmp -s "$w/$n.ptx" gpu-worker/src/main/resources/dev/lightning/attention/engine/cuda/lightning.ptx && echo "the committed PTX" || echo "not the committed PTX")
  echo "$n ($f): PTX $(stat -c %s "$w/$n.ptx") bytes, $same; forward_tc_bf16: $(grep -A2 "for lightning_forward_tc_bf16$" "$w/$n.ptxas" | grep -o '[0-9]* bytes spill stores')"
done
nvcc -O2 -arch=sm_90 $cand -I $src gpu-worker/src/test/cuda/tc_check.cu -o "$w/tc_check"
sub=dev/lightning/attention/engine/cuda
mkdir -p "$w/java-override/$sub"
# shellcheck disable=SC2086
nvcc -fatbin -O3 -I $src $cand -gencode arch=compute_80,code=sm_90 -gencode arch=compute_80,code=compute_80 \
  $src/lightning.cu -o "$w/java-override/$sub/lightning.fatbin"
nvcc -O2 -arch=sm_90 -I $src bench/cuda/norm_cost.cu -o "$w/norm_cost"
{ echo "tcplain payload: builds ${specs[*]}; tc_check with ${cand}"; git rev-parse HEAD; git status --short; } > "$w/candidate.txt"
mkdir -p "$dir"
tar -C "$w" -cJf "$dir/payload.tar.xz" cubin norm_cost tc_check java-override candidate.txt
cp bench/tcplain-device.sh "$dir/run.sh"
ls -la "$dir/payload.tar.xz"
