#!/usr/bin/env bash
# Rebuilds the kernels' PTX from the .cu sources when nvcc is on the PATH; the Maven build runs it.
# The PTX is committed (src/main/resources/.../*.ptx) so that a clone without nvcc still builds a
# jar that runs on a GPU. When the sources change, this script rewrites the committed files and
# says so: commit them with the source change.
#   lightning.ptx       PTX ISA 9.0, target compute_80: every kernel family but the Hopper one,
#                       JIT-compiled by the driver for the GPU at hand
#   lightning_batch.ptx PTX ISA 9.0, target compute_80: the batch step of many short sequences
#                       (lightning_batch.cu, its own module and argument struct)
#   lightning_sm90a.ptx PTX ISA 9.0, target sm_90a: the wgmma kernels (hopper.cuh), loaded only
#                       on a device of compute capability 9.0
#   softmax.ptx         PTX ISA 9.0, target compute_80: the softmax attention kernels (softmax.cu)
#   softmax_sm90a.ptx   PTX ISA 9.0, target sm_90a: their wgmma version (softmax_sm90.cu), loaded
#                       only on a device of compute capability 9.0
# All need a driver for CUDA 13.0 or later.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
res="$here/../resources/dev/lightning/attention/engine/cuda"
if ! command -v nvcc >/dev/null 2>&1; then
  echo "build-ptx: nvcc not found; using the committed PTX in $res"
  exit 0
fi
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
build() {  # build <source> <arch> <output name>
  nvcc -ptx -arch="$2" -O3 -I "$here" "$here/$1" -o "$tmp"
  if ! cmp -s "$tmp" "$res/$3"; then
    mkdir -p "$res"
    cat "$tmp" > "$res/$3"
    echo "build-ptx: $3 regenerated from the CUDA sources; commit it with them"
  fi
}
build lightning.cu compute_80 lightning.ptx
build lightning_sm90.cu compute_90a lightning_sm90a.ptx
build softmax.cu compute_80 softmax.ptx
build softmax_sm90.cu compute_90a softmax_sm90a.ptx
build lightning_batch.cu compute_80 lightning_batch.ptx
