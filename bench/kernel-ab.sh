#!/usr/bin/env bash
# Builds the payload of a Hopper kernel A/B run into DIR: cubins of lightning_sm90.cu (hopper.cuh) at each named
# revision, norm_cost and fwd_cost (bench/cuda), and run.sh (= bench/kernel-ab-device.sh). The first build is the
# base the others are held against. Run here, from the repository root (needs nvcc; no GPU):
#   bash bench/kernel-ab.sh DIR NAME=REV [NAME=REV ...]     (REV: a commit, or "tree" for the working tree;
#                                                             NAME=REV:-DFLAG=V,... adds -D flags to that build)
# Then on the GPU machine, DIR carried beside a bundle directory B (bench/device-env.sh: jre.tar.xz, bundle/):
#   OUT=OUTDIR bash DIR/run.sh B              (QUICK=1 OUT=OUTDIR bash DIR/run.sh: the timing only, no bundle)
# Both tools check every build against a float64 recurrence before timing it, and interleave the builds round by
# round, rotating their order (the H200 runs at its power limit and its clock drifts). DeviceBench and every GPU
# test class then run on the bundle's classes with the checkout's committed PTX, i.e. the code of the tree the
# bundle and PTX come from: name that tree's build last, so the timed cubin and the tested module are the same code.
set -euo pipefail
dir="${1:?usage: bench/kernel-ab.sh DIR NAME=REV[:FLAGS] ...}"; shift
[[ $# -ge 1 ]] || { echo "kernel-ab: name at least one build (NAME=REV)" >&2; exit 2; }
root="$(git rev-parse --show-toplevel)"
mkdir -p "$dir" && dir="$(cd "$dir" && pwd)"
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
: > "$dir/builds.txt"
for spec in "$@"; do
  name=${spec%%=*}; rest=${spec#*=}; rev=${rest%%:*}; flags=""
  [[ "$rest" == *:* ]] && flags=${rest#*:}
  [[ "$name" =~ ^[a-z0-9_-]+$ ]] || { echo "kernel-ab: build name '$name': use a-z, 0-9, - and _" >&2; exit 2; }
  src="$w/$name"
  if [[ "$rev" == tree ]]; then
    mkdir -p "$src" && cp -r "$root/gpu-worker/src/main/cuda" "$src/"
    desc="working tree on $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet -- gpu-worker/src/main/cuda || echo ', with changes')"
  else
    # the timing tools are built on the working tree's argument struct: a build must share it
    git -C "$root" diff --quiet "$rev" -- gpu-worker/src/main/cuda/lightning_args.cuh || {
      echo "kernel-ab: $rev's lightning_args.cuh differs from the working tree's, which norm_cost and fwd_cost" \
           "are built on; compare builds of one argument struct" >&2; exit 2; }
    mkdir -p "$src" && git -C "$root" archive "$rev" gpu-worker/src/main/cuda | tar -x -C "$src" --strip-components=3
    desc="$(git -C "$root" rev-parse --short "$rev")"
  fi
  d=(); IFS=, read -ra fl <<< "$flags"; for f in "${fl[@]}"; do [[ -n "$f" ]] && d+=("$f"); done
  (cd "$src/cuda" && nvcc -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -I . "${d[@]}" lightning_sm90.cu \
     -o "$dir/$name.cubin" 2> >(grep -v "C7519" >&2))
  echo "$name: $desc ${d[*]}" | tee -a "$dir/builds.txt"
done
for tool in norm_cost fwd_cost; do
  nvcc -O2 -arch=sm_90 -I "$root/gpu-worker/src/main/cuda" "$root/bench/cuda/$tool.cu" -o "$dir/$tool"
done
cp "$root/bench/kernel-ab-device.sh" "$dir/run.sh"
ls -la "$dir"
