#!/usr/bin/env bash
# Builds the payload of hopnorm's round 3 (issue 12) into DIR/payload.tar.xz: norm_cost, the portable module
# with and without LIGHTNING_TC_QZ_MMA (PTX for compute_80, then ptxas for sm_90), and the branch's Hopper
# module as a fat binary (sm_90a SASS and its PTX) for GpuBackendTest, built with HOPPER_FLAGS (default: the
# elu1 map's loader registers and fused loop on, which the shipped PTX leaves off until this has run; see
# hopper.cuh). Run from the repository root.
set -euo pipefail
hopper_flags="${HOPPER_FLAGS:--DLIGHTNING_WG_MAP_LOADER_REGS=72 -DLIGHTNING_WG_MAP_FUSED=1}"
dir="${1:?usage: hopnorm-build-r3.sh DIR}"
src=gpu-worker/src/main/cuda
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
sub=dev/lightning/attention/engine/cuda
mkdir -p "$w/cubin" "$w/java-override/$sub"
port() { local n=$1; shift; nvcc -ptx -arch=compute_80 -O3 -I $src "$@" $src/lightning.cu -o "$w/$n.ptx"
  ptxas -arch=sm_90 -O3 "$w/$n.ptx" -o "$w/cubin/$n.cubin"; }
port portable-qz1; port portable-qz0 -DLIGHTNING_TC_QZ_MMA=0
nvcc -fatbin -O3 -I $src $hopper_flags -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_90a,code=compute_90a \
  $src/lightning_sm90.cu -o "$w/java-override/$sub/lightning_sm90a.fatbin"
nvcc -O2 -arch=sm_90 -I $src bench/cuda/norm_cost.cu -o "$w/norm_cost"
{ echo "round 3: portable qz0 / qz1; Hopper module with $hopper_flags"; git rev-parse HEAD; git status --short; } > "$w/candidate.txt"
mkdir -p "$dir"
tar -C "$w" -cJf "$dir/payload.tar.xz" cubin norm_cost java-override candidate.txt
ls -la "$dir/payload.tar.xz"
