#!/usr/bin/env bash
# Builds the payload of hopnorm's round 2 (issue 12) into DIR/payload.tar.xz: norm_cost, Hopper cubins of
# (Built at commit 5e2fa39; the flags LIGHTNING_WG_NORM_ZFOLD / _EARLY / _APPROX were removed after round 2.)
# base (the code as committed, every variant flag 0), w1 (the map's winner: LIGHTNING_WG_MAP_LOADER_REGS=72,
# LIGHTNING_WG_MAP_FUSED=1) and w2 (w1 with the normalized consumers' variants ZFOLD, EARLY, APPROX: round 1's
# candidate), the portable module with and without LIGHTNING_TC_QZ_MMA (PTX for compute_80, then ptxas for
# sm_90, the shipped route), and fat binaries for DeviceBench: ov-w1 (w1's Hopper module and the portable
# module built with LIGHTNING_TC_QZ_MMA=0), ov-w2 (w2's Hopper module). Run from the repository root.
set -euo pipefail
dir="${1:?usage: hopnorm-build-r2.sh DIR}"
src=gpu-worker/src/main/cuda
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
sub=dev/lightning/attention/engine/cuda
mkdir -p "$w/cubin" "$w/ov-w1/$sub" "$w/ov-w2/$sub"
W1=(-DLIGHTNING_WG_MAP_LOADER_REGS=72 -DLIGHTNING_WG_MAP_FUSED=1)
W2=("${W1[@]}" -DLIGHTNING_WG_NORM_ZFOLD=1 -DLIGHTNING_WG_NORM_EARLY=1 -DLIGHTNING_WG_NORM_APPROX=1)
hop() { local n=$1; shift; nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I $src "$@" $src/lightning_sm90.cu -o "$w/cubin/$n.cubin"; }
port() { local n=$1; shift; nvcc -ptx -arch=compute_80 -O3 -I $src "$@" $src/lightning.cu -o "$w/$n.ptx"
  ptxas -arch=sm_90 -O3 "$w/$n.ptx" -o "$w/cubin/$n.cubin"; }
hop base; hop w1 "${W1[@]}"; hop w2 "${W2[@]}"
port portable-qz1; port portable-qz0 -DLIGHTNING_TC_QZ_MMA=0
fat90() { nvcc -fatbin -O3 -I $src -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_90a,code=compute_90a "${@:2}" \
  $src/lightning_sm90.cu -o "$1"; }
fat90 "$w/ov-w1/$sub/lightning_sm90a.fatbin" "${W1[@]}"
fat90 "$w/ov-w2/$sub/lightning_sm90a.fatbin" "${W2[@]}"
# the portable module as the engine loads it on an H200: SASS from the compute_80 PTX by ptxas, and the PTX
nvcc -fatbin -O3 -I $src -gencode arch=compute_80,code=sm_90 -gencode arch=compute_80,code=compute_80 -DLIGHTNING_TC_QZ_MMA=0 \
  $src/lightning.cu -o "$w/ov-w1/$sub/lightning.fatbin"
nvcc -O2 -arch=sm_90 -I $src bench/cuda/norm_cost.cu -o "$w/norm_cost"
{ echo "w1: ${W1[*]}; w2: ${W2[*]}; ov-w1 portable: -DLIGHTNING_TC_QZ_MMA=0"; git rev-parse HEAD; git status --short; } > "$w/candidate.txt"
mkdir -p "$dir"
tar -C "$w" -cJf "$dir/payload.tar.xz" cubin norm_cost ov-w1 ov-w2 candidate.txt
ls -la "$dir/payload.tar.xz"
