#!/usr/bin/env bash
# Spark resource discovery for GPUs: prints the JSON Spark expects, one address per CUDA device of
# this host, e.g. {"name": "gpu", "addresses": ["0", "1"]}. Point Spark at it with
#   spark.worker.resource.gpu.discoveryScript   (standalone workers)
#   spark.executor.resource.gpu.discoveryScript (YARN, Kubernetes)
# The addresses are CUDA device ordinals; a task's backend opens the one Spark assigns it.
# LIGHTNING_GPU_ADDRESSES="0,1" prints those addresses instead of asking nvidia-smi: for tests of
# the resource path on machines without a GPU, where the job then computes on the CPU.
set -euo pipefail
name="${LIGHTNING_GPU_RESOURCE:-gpu}"
if [[ -n "${LIGHTNING_GPU_ADDRESSES:-}" ]]; then
  list="$LIGHTNING_GPU_ADDRESSES"
elif command -v nvidia-smi >/dev/null 2>&1; then
  list=$(nvidia-smi --query-gpu=index --format=csv,noheader | tr -d ' ' | paste -sd, -)
else
  list=""
fi
json=""
IFS=',' read -r -a ids <<< "$list"
for id in "${ids[@]}"; do
  [[ -z "$id" ]] && continue
  json="${json:+$json, }\"$id\""
done
echo "{\"name\": \"$name\", \"addresses\": [$json]}"
