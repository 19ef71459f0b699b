#!/usr/bin/env bash
# Builds the payload of hopnorm2's round 2 (issue 12) into DIR/payload.tar.xz: norm_cost (with --rotate-variants
# and --per-round) and Hopper cubins of lightning_sm90.cu:
#   base          the shipped code
#   stage32       LIGHTNING_WG_NORM_STAGE32=1 (float32 staging, the division when the rows go out)
#   x-plain       LIGHTNING_WG_NORM_X=8: a normalized launch runs the plain body (the control)
#   x-all, x-den  LIGHTNING_WG_NORM_X = 7, 2 (round 1's, again)
#   x-all-r56     X = 7 | 16 with loaders 56 / consumers 224 (no map code in the normalized loaders; they spill)
#   x-r56         X = 16 with loaders 56 / consumers 224: the whole normalized work at the plain split
# and stage32's module as a fat binary (sm_90a SASS and its PTX) under java-override/ for GpuBackendTest.
# Run from the repository root.
# (LIGHTNING_WG_NORM_STAGE32 was removed after this round: build at commit c2f4a0b to reproduce; the
# LIGHTNING_WG_NORM_X builds work on later commits too.)
set -euo pipefail
dir="${1:?usage: hopnorm2-build-r2.sh DIR}"
src=gpu-worker/src/main/cuda
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
sub=dev/lightning/attention/engine/cuda
mkdir -p "$w/cubin" "$w/java-override/$sub"
hop() { local n=$1; shift; nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I $src "$@" $src/lightning_sm90.cu -o "$w/cubin/$n.cubin"; }
hop base
hop stage32 -DLIGHTNING_WG_NORM_STAGE32=1
hop x-plain -DLIGHTNING_WG_NORM_X=8
hop x-all -DLIGHTNING_WG_NORM_X=7
hop x-den -DLIGHTNING_WG_NORM_X=2
hop x-all-r56 -DLIGHTNING_WG_NORM_X=23 -DLIGHTNING_WG_NORM_LOADER_REGS=56
hop x-r56 -DLIGHTNING_WG_NORM_X=16 -DLIGHTNING_WG_NORM_LOADER_REGS=56
nvcc -fatbin -O3 -I $src -DLIGHTNING_WG_NORM_STAGE32=1 -gencode arch=compute_90a,code=sm_90a \
  -gencode arch=compute_90a,code=compute_90a $src/lightning_sm90.cu -o "$w/java-override/$sub/lightning_sm90a.fatbin"
nvcc -O2 -arch=sm_90 -I $src bench/cuda/norm_cost.cu -o "$w/norm_cost"
{ echo "hopnorm2 round 2"; git rev-parse HEAD; git status --short; } > "$w/candidate.txt"
mkdir -p "$dir"
tar -C "$w" -cJf "$dir/payload.tar.xz" cubin norm_cost java-override candidate.txt
ls -la "$dir/payload.tar.xz"
