#!/usr/bin/env bash
# Builds the device payload of issue 13's forward-consumer work (helper "kfwd") into DIR: payload.tar.xz
# (the variants' cubins and fwd_cost from bench/history/kfwd-build.sh, tc_check and a Hopper fat binary for the Java
# tests, both built with CANDIDATE's flags) and run.sh (= bench/history/kfwd-device.sh). Run from the repository root:
#   bash bench/history/kfwd-payload.sh DIR [NAME=FLAGS ...]      (CANDIDATE: flags as kfwd-build.sh takes them; default
#   empty: the branch's defaults)
set -euo pipefail
dir="${1:?usage: kfwd-payload.sh DIR [NAME=FLAGS ...]}"; shift
cand="${CANDIDATE-}"
src=gpu-worker/src/main/cuda
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
bash bench/history/kfwd-build.sh "$w" "$@"
d=(); IFS=, read -ra fl <<< "$cand"; for f in "${fl[@]}"; do [[ -z "$f" ]] && continue; [[ "$f" == *=* ]] && d+=("-DLIGHTNING_WG_$f") || d+=("-DLIGHTNING_WG_$f=1"); done
sub=dev/lightning/attention/engine/cuda
mkdir -p "$w/java-override/$sub"
nvcc -fatbin -O3 -I $src "${d[@]}" -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_90a,code=compute_90a \
  $src/lightning_sm90.cu -o "$w/java-override/$sub/lightning_sm90a.fatbin"
nvcc -O2 -gencode=arch=compute_90a,code=sm_90a -DLIGHTNING_WG "${d[@]}" -I $src gpu-worker/src/test/cuda/tc_check.cu -o "$w/tc_check"
# TC_EXTRA=NAME=FLAGS: a second tc_check (tc_check-NAME) of another build
if [[ -n "${TC_EXTRA:-}" ]]; then
  e=(); IFS=, read -ra fl <<< "${TC_EXTRA#*=}"; for f in "${fl[@]}"; do [[ -z "$f" ]] && continue; [[ "$f" == *=* ]] && e+=("-DLIGHTNING_WG_$f") || e+=("-DLIGHTNING_WG_$f=1"); done
  nvcc -O2 -gencode=arch=compute_90a,code=sm_90a -DLIGHTNING_WG "${e[@]}" -I $src gpu-worker/src/test/cuda/tc_check.cu -o "$w/tc_check-${TC_EXTRA%%=*}"
fi
{ echo "kfwd payload: candidate ${d[*]}; extra tc_check ${TC_EXTRA:-none}"; git rev-parse HEAD; git status --short; } > "$w/candidate.txt"
mkdir -p "$dir"
tar -C "$w" -cJf "$dir/payload.tar.xz" cubin fwd_cost $(cd "$w" && ls -d tc_check*) java-override candidate.txt
cp bench/history/kfwd-device.sh "$dir/run.sh"
ls -la "$dir"
