#!/usr/bin/env bash
# Builds the payload of hopnorm4 (issue 12) into DIR/payload.tar.xz: norm_cost, cubins of lightning_sm90.cu for base
# (the shipped code) and rowmma (-DLIGHTNING_WG_NORM_ROWMMA=1: the normalized forward's row sums of S' on the tensor
# cores), and rowmma's module as a fat binary (sm_90a SASS and its PTX) under java-override-rowmma/ for GpuBackendTest
# and DeviceBench. TESTS=1 marks the payload to run GpuBackendTest on it.
# Run from the repository root; needs nvcc.   TESTS=1 bench/hopnorm4-build.sh DIR
set -euo pipefail
dir="${1:?usage: hopnorm4-build.sh DIR}"
src=gpu-worker/src/main/cuda
flags=(-DLIGHTNING_WG_NORM_ROWMMA=1)
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
sub=dev/lightning/attention/engine/cuda
mkdir -p "$w/cubin" "$w/java-override-rowmma/$sub"
nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I $src -DLIGHTNING_WG_NORM_ROWMMA=0 $src/lightning_sm90.cu \
  -o "$w/cubin/base.cubin"
nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I $src "${flags[@]}" $src/lightning_sm90.cu -o "$w/cubin/rowmma.cubin"
nvcc -fatbin -O3 -I $src "${flags[@]}" -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_90a,code=compute_90a \
  $src/lightning_sm90.cu -o "$w/java-override-rowmma/$sub/lightning_sm90a.fatbin"
nvcc -O2 -arch=sm_90 -I $src bench/cuda/norm_cost.cu -o "$w/norm_cost"
{ echo "hopnorm4: rowmma = ${flags[*]}"; git rev-parse HEAD; git status --short; } > "$w/candidate.txt"
[[ "${TESTS:-0}" == 1 ]] && touch "$w/run-tests"
mkdir -p "$dir"
tar -C "$w" -cJf "$dir/payload.tar.xz" .
ls -la "$dir/payload.tar.xz"
