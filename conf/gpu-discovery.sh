#!/usr/bin/env bash
# Spark resource discovery for GPUs: prints the JSON Spark expects, one address per CUDA device of
# this host, e.g. {"name": "gpu", "addresses": ["0", "1"]}. Point Spark at it with
#   spark.worker.resource.gpu.discoveryScript   (standalone workers)
#   spark.executor.resource.gpu.discoveryScript (YARN, Kubernetes)
# The addresses are CUDA device ordinals; a task's backend opens the one Spark assigns it.
# Where CUDA_VISIBLE_DEVICES is set (a worker given some of the host's GPUs), CUDA numbers the
# devices it lists 0, 1, ... in its order, up to the first entry that names no GPU (an empty value
# or -1: none), and the executors the worker starts inherit it; so are the addresses printed then:
# CUDA_VISIBLE_DEVICES=2,3 gives ["0", "1"] (CUDA's devices 2 and 3 of the host).
# nvidia-smi failing (no driver, "No devices were found") ends the script with its status and its
# message on stderr, which Spark logs with the failed discovery.
# LIGHTNING_GPU_ADDRESSES="0,1" prints those addresses instead of asking nvidia-smi: for tests of
# the resource path on machines without a GPU, where the job then computes on the CPU.
set -euo pipefail
name="${LIGHTNING_GPU_RESOURCE:-gpu}"
if [[ -n "${LIGHTNING_GPU_ADDRESSES:-}" ]]; then
  list="$LIGHTNING_GPU_ADDRESSES"
else
  smi=""   # "index, uuid" per GPU, nvidia-smi's (PCI) order
  if command -v nvidia-smi >/dev/null 2>&1; then
    status=0
    smi=$(nvidia-smi --query-gpu=index,uuid --format=csv,noheader 2>&1) || status=$?
    if [[ $status -ne 0 ]]; then
      echo "gpu-discovery.sh: nvidia-smi --query-gpu failed with status $status: $smi" >&2
      exit "$status"
    fi
  fi
  uuids=() indices=()
  while IFS=', ' read -r index uuid; do
    [[ -n "$index" ]] || continue
    indices+=("$index") uuids+=("$uuid")
  done <<< "$smi"
  if [[ -n "$smi" && -n "${CUDA_VISIBLE_DEVICES+set}" ]]; then
    # CUDA's devices are those CUDA_VISIBLE_DEVICES names, numbered from 0 in its order, up to the
    # first entry that names none: an ordinal below the GPU count (CUDA's order, not nvidia-smi's;
    # only the count matters here), a unique prefix of a GPU's UUID, or a MIG device (MIG-...)
    visible=0
    IFS=',' read -r -a wanted <<< "$CUDA_VISIBLE_DEVICES"
    for id in "${wanted[@]}"; do
      id="${id//[[:space:]]/}"
      if [[ "$id" =~ ^[0-9]+$ ]]; then
        (( 10#$id < ${#indices[@]} )) || break
      elif [[ "$id" == GPU-* ]]; then
        matches=0
        for u in "${uuids[@]}"; do [[ "$u" == "$id"* ]] && matches=$((matches + 1)); done
        [[ $matches -eq 1 ]] || break
      elif [[ "$id" != MIG-?* ]]; then
        break
      fi
      visible=$((visible + 1))
    done
    list=""
    for ((i = 0; i < visible; i++)); do list="${list:+$list,}$i"; done
  else
    list=$(IFS=,; echo "${indices[*]}")
  fi
fi
json=""
IFS=',' read -r -a ids <<< "$list"
for id in "${ids[@]}"; do
  id="${id//[[:space:]]/}"
  [[ -z "$id" ]] && continue
  json="${json:+$json, }\"$id\""
done
echo "{\"name\": \"$name\", \"addresses\": [$json]}"
