#!/usr/bin/env bash
# Builds the payload of hopnorm3's round 2 (issue 12) into DIR/payload.tar.xz: norm_cost, cubins of lightning_sm90.cu
# for base (the shipped code), win (FLAGS), za-map4 (LIGHTNING_WG_STATES_Z_ALU=1, LIGHTNING_WG_STATES_MAP=4) and
# x-plain (LIGHTNING_WG_NORM_X=8, the control), and win's module as a fat binary (sm_90a SASS and its PTX) under
# java-override-win/ for GpuBackendTest and DeviceBench. TESTS=1 marks the payload to run GpuBackendTest on it.
# Run from the repository root; needs nvcc.   bench/hopnorm3-build-r2.sh DIR -DLIGHTNING_WG_...=N ...
# (Round 2 was built at commit a410dce with TESTS=1 and win = -DLIGHTNING_WG_STATES_Z_CONS=1 -DLIGHTNING_WG_STATES_MAP=4,
# now the defaults; LIGHTNING_WG_STATES_Z_ALU was removed after it: build at that commit to reproduce.)
set -euo pipefail
dir="${1:?usage: hopnorm3-build-r2.sh DIR FLAGS...}"; shift
src=gpu-worker/src/main/cuda
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
sub=dev/lightning/attention/engine/cuda
mkdir -p "$w/cubin" "$w/java-override-win/$sub"
nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I $src $src/lightning_sm90.cu -o "$w/cubin/base.cubin"
nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I $src "$@" $src/lightning_sm90.cu -o "$w/cubin/win.cubin"
nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I $src -DLIGHTNING_WG_STATES_Z_ALU=1 -DLIGHTNING_WG_STATES_MAP=4 \
  $src/lightning_sm90.cu -o "$w/cubin/za-map4.cubin"
nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I $src -DLIGHTNING_WG_NORM_X=8 $src/lightning_sm90.cu -o "$w/cubin/x-plain.cubin"
nvcc -fatbin -O3 -I $src "$@" -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_90a,code=compute_90a \
  $src/lightning_sm90.cu -o "$w/java-override-win/$sub/lightning_sm90a.fatbin"
nvcc -O2 -arch=sm_90 -I $src bench/cuda/norm_cost.cu -o "$w/norm_cost"
{ echo "hopnorm3 round 2: win = $*"; git rev-parse HEAD; git status --short; } > "$w/candidate.txt"
[[ "${TESTS:-0}" == 1 ]] && touch "$w/run-tests"
mkdir -p "$dir"
tar -C "$w" -cJf "$dir/payload.tar.xz" .
ls -la "$dir/payload.tar.xz"
