#!/usr/bin/env bash
# Builds the device payload of LIGHTNING_WG_S_SPLIT (helper "ssplit": the forward consumers' S = Q K^T split by
# key columns, hopper.cuh) into DIR (default .device/ssplit): bench/kfwd-payload.sh's payload (cubins base and
# ss of lightning_sm90.cu, fwd_cost, tc_check and the Hopper fat binary for GpuBackendTest, the last two built
# with -DLIGHTNING_WG_S_SPLIT=1) plus norm_cost (bench/cuda/norm_cost.cu); the harnesses are rebuilt here for
# sm_90a alone, like everything else in it. run.sh = bench/ssplit-device.sh. Run from the repository root:
#   [CANDIDATE=FLAGS] [TC_EXTRA=NAME=FLAGS] bash bench/ssplit-payload.sh [DIR [NAME=FLAGS ...]]
# (builds as kfwd-build.sh takes them, default base= ss=S_SPLIT; CANDIDATE, default S_SPLIT, the build that tc_check
# and GpuBackendTest run; TC_EXTRA as kfwd-payload.sh takes it). Round 2: CANDIDATE=S_SPLIT=2 TC_EXTRA=ss3=S_SPLIT=3
#   bash bench/ssplit-payload.sh .device/ssplit base= ss=S_SPLIT ss2=S_SPLIT=2 ss3=S_SPLIT=3
set -euo pipefail
dir="${1:-.device/ssplit}"
shift || true
specs=("$@")
(( ${#specs[@]} )) || specs=(base= ss=S_SPLIT)
src=gpu-worker/src/main/cuda
CANDIDATE="${CANDIDATE:-S_SPLIT}" bash bench/kfwd-payload.sh "$dir" "${specs[@]}"
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
tar -C "$w" -xJf "$dir/payload.tar.xz"
for h in fwd_cost norm_cost; do
  nvcc -O2 -gencode=arch=compute_90a,code=sm_90a -I $src bench/cuda/$h.cu -o "$w/$h"
done
# every cubin is sm_90a: ELF e_flags 0x..5a.. (SM 90, bits 8-15) with the arch-specific bit as in nvcc 13's sm_90a
for f in "$w"/cubin/*.cubin; do
  fl=$(readelf -h "$f" | awk '/Flags:/ {print $2}')
  (( (fl >> 8 & 0xff) == 90 )) || { echo "ssplit-payload: $f is not an sm_90 cubin (flags $fl)" >&2; exit 1; }
  echo "$(basename "$f"): ELF flags $fl"
done
echo "ssplit payload: norm_cost added; fwd_cost, norm_cost, tc_check and the fat binary built for sm_90a" >> "$w/candidate.txt"
tar -C "$w" -cJf "$dir/payload.tar.xz" cubin fwd_cost norm_cost $(cd "$w" && ls -d tc_check*) java-override candidate.txt
cp bench/ssplit-device.sh "$dir/run.sh"
ls -la "$dir"
