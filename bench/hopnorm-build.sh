#!/usr/bin/env bash
# Builds the device payload of issue 12's normalization work (helper "hopnorm") into DIR/payload.tar.xz:
# (Built the round-1 variants at commit 0415fde; the flags LIGHTNING_WG_NORM_ZFOLD / _EARLY / _APPROX were removed after round 2.)
# norm_cost (bench/cuda/norm_cost.cu), the Hopper module built with each variant's -D flags (cubins for
# sm_90a), the portable module with and without LIGHTNING_TC_QZ_MMA (both by the route the shipped code
# takes: PTX for compute_80, then ptxas for sm_90), tc_check and a Hopper fat binary of the candidate
# (CANDIDATE flags) for the Java tests. Run from the repository root: bash bench/hopnorm-build.sh DIR
set -euo pipefail
dir="${1:?usage: hopnorm-build.sh DIR}"
src=gpu-worker/src/main/cuda
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
mkdir -p "$w/cubin" "$w/java-override/dev/lightning/attention/engine/cuda"
hop() {  # hop NAME FLAGS...
  local n=$1; shift
  nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I $src --resource-usage "$@" $src/lightning_sm90.cu \
    -o "$w/cubin/$n.cubin" 2>&1 | grep -A1 "Function properties for lightning_forward_wg_bf16" | tail -1 | sed "s/^/$n: forward_wg_bf16 /"
}
port() {  # port NAME FLAGS...
  local n=$1; shift
  nvcc -ptx -arch=compute_80 -O3 -I $src "$@" $src/lightning.cu -o "$w/$n.ptx"
  ptxas -arch=sm_90 -O3 -v "$w/$n.ptx" -o "$w/cubin/$n.cubin" 2>&1 \
    | grep -A1 "Function properties for lightning_forward_tc_bf16" | tail -1 | sed "s/^/$n: forward_tc_bf16 /"
}
Z=-DLIGHTNING_WG_NORM_ZFOLD=1 E=-DLIGHTNING_WG_NORM_EARLY=1 A=-DLIGHTNING_WG_NORM_APPROX=1 M=-DLIGHTNING_WG_MAP_FUSED=1
R=-DLIGHTNING_WG_MAP_LOADER_REGS=72
CANDIDATE=(${CANDIDATE:-$Z $E $A $M $R})
hop base
hop zfold $Z
hop early $E
hop early-approx $E $A
hop zfold-early-approx $Z $E $A
hop mapfused $M
hop mapregs72 $R
hop mapregs72-fused $R $M
hop all "${CANDIDATE[@]}"
port portable-qz1
port portable-qz0 -DLIGHTNING_TC_QZ_MMA=0
nvcc -O2 -arch=sm_90 -I $src bench/cuda/norm_cost.cu -o "$w/norm_cost"
nvcc -O2 -gencode=arch=compute_90a,code=sm_90a -DLIGHTNING_WG "${CANDIDATE[@]}" -I $src gpu-worker/src/test/cuda/tc_check.cu -o "$w/tc_check"
nvcc -fatbin -O3 -I $src -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_90a,code=compute_90a "${CANDIDATE[@]}" \
  $src/lightning_sm90.cu -o "$w/java-override/dev/lightning/attention/engine/cuda/lightning_sm90a.fatbin"
echo "candidate (all, tc_check, fatbin): ${CANDIDATE[*]}" > "$w/candidate.txt"
git rev-parse HEAD >> "$w/candidate.txt"
mkdir -p "$dir"
tar -C "$w" -cJf "$dir/payload.tar.xz" cubin norm_cost tc_check java-override candidate.txt
ls -la "$dir/payload.tar.xz"
