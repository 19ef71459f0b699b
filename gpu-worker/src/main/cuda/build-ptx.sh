#!/usr/bin/env bash
# Rebuilds the kernels' PTX from the .cu sources when nvcc is on the PATH; the Maven build runs it.
# The PTX is committed (src/main/resources/.../lightning.ptx) so that a clone without nvcc still
# builds a jar that runs on a GPU. When the sources change, this script rewrites the committed file
# and says so: commit it with the source change.
#   PTX ISA 9.0 (nvcc 13, target compute_80, JIT-compiled by the driver for the GPU at hand)
#   needs a driver for CUDA 13.0 or later.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/../resources/dev/lightning/attention/kernel/lightning.ptx"
if ! command -v nvcc >/dev/null 2>&1; then
  echo "build-ptx: nvcc not found; using the committed $(basename "$out")"
  exit 0
fi
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
nvcc -ptx -arch=compute_80 -O3 -I "$here" "$here/lightning.cu" -o "$tmp"
if ! cmp -s "$tmp" "$out"; then
  mkdir -p "$(dirname "$out")"
  cat "$tmp" > "$out"
  echo "build-ptx: $(basename "$out") regenerated from the CUDA sources; commit it with them"
fi
