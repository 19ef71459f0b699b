#!/usr/bin/env bash
# Builds the payload of hopnorm3's round 1 (issue 12) into DIR/payload.tar.xz: norm_cost (with --probe) and Hopper
# cubins of lightning_sm90.cu:
#   base          the shipped code
#   zd3           LIGHTNING_WG_Z_DEFER=3: the loaders' column sums waited for one chunk later (states kernel, forward)
#   zc            LIGHTNING_WG_STATES_Z_CONS=1: the states kernel's column sums by its consumers
#   zc-zd2        both: the states kernel's sums by its consumers, the forward's loaders' sums deferred
#   x-plain       LIGHTNING_WG_NORM_X=8: a normalized launch runs the plain forward body (the control)
#   x-plain-st    LIGHTNING_WG_NORM_X=40: the control, and the normalized states kernel without its column sums
#   x-st          LIGHTNING_WG_NORM_X=32: the normalized states kernel without its column sums, the forward whole
#   map2, map4    LIGHTNING_WG_STATES_MAP=2, 4: the states kernel's loaders map 2 or 4 rows of K at a time
#   zc-zd2-map4   zc-zd2 with LIGHTNING_WG_STATES_MAP=4
# and the modules of zc-zd2-map4 and zd3 as fat binaries (sm_90a SASS and its PTX) under java-override-NAME/ for
# GpuBackendTest. Run from the repository root; needs nvcc.
# (Round 1 was built at commit 436ac57. LIGHTNING_WG_Z_DEFER was removed after it, and base is no longer the shipped
# code since STATES_Z_CONS and STATES_MAP=4 went on: build at that commit to reproduce.)
set -euo pipefail
dir="${1:?usage: hopnorm3-build.sh DIR}"
src=gpu-worker/src/main/cuda
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
sub=dev/lightning/attention/engine/cuda
mkdir -p "$w/cubin"
hop() { local n=$1; shift; nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I $src "$@" $src/lightning_sm90.cu -o "$w/cubin/$n.cubin"; }
fat() {
  local n=$1; shift
  mkdir -p "$w/java-override-$n/$sub"
  nvcc -fatbin -O3 -I $src "$@" -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_90a,code=compute_90a \
    $src/lightning_sm90.cu -o "$w/java-override-$n/$sub/lightning_sm90a.fatbin"
}
hop base
hop zd3 -DLIGHTNING_WG_Z_DEFER=3
hop zc -DLIGHTNING_WG_STATES_Z_CONS=1
hop zc-zd2 -DLIGHTNING_WG_STATES_Z_CONS=1 -DLIGHTNING_WG_Z_DEFER=2
hop x-plain -DLIGHTNING_WG_NORM_X=8
hop x-plain-st -DLIGHTNING_WG_NORM_X=40
hop x-st -DLIGHTNING_WG_NORM_X=32
hop map2 -DLIGHTNING_WG_STATES_MAP=2
hop map4 -DLIGHTNING_WG_STATES_MAP=4
hop zc-zd2-map4 -DLIGHTNING_WG_STATES_Z_CONS=1 -DLIGHTNING_WG_Z_DEFER=2 -DLIGHTNING_WG_STATES_MAP=4
fat zc-zd2-map4 -DLIGHTNING_WG_STATES_Z_CONS=1 -DLIGHTNING_WG_Z_DEFER=2 -DLIGHTNING_WG_STATES_MAP=4
fat zd3 -DLIGHTNING_WG_Z_DEFER=3
nvcc -O2 -arch=sm_90 -I $src bench/cuda/norm_cost.cu -o "$w/norm_cost"
{ echo "hopnorm3 round 1"; git rev-parse HEAD; git status --short; } > "$w/candidate.txt"
mkdir -p "$dir"
tar -C "$w" -cJf "$dir/payload.tar.xz" cubin norm_cost java-override-zc-zd2-map4 java-override-zd3 candidate.txt
ls -la "$dir/payload.tar.xz"
