#!/usr/bin/env bash
# The Hopper softmax kernels' variants (softmax_sm90.cu built with -DSOFTMAX_SM90_VARIANTS), checked
# against float64 and timed beside the shipped PTX and SDPA (flash, cuDNN) in one process:
#   bench/softmax_ws.sh [more softmax_peer.py arguments]
# On an H200 with nvcc and PyTorch. Labels: wsop (overlap + ping-pong, the shipped kernels' design),
# wso (overlap alone) and ws (loader warpgroup alone); every set is timed at 8K and 32K tokens, the
# shipped PTX and wsop also at 128K. WS_CUBIN=path skips the build (a cubin
# made elsewhere with the command below).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cubin=${WS_CUBIN:-}
if [ -z "$cubin" ]; then
  cubin=$(mktemp -d)/ws_sm90a.cubin
  nvcc -cubin -gencode=arch=compute_90a,code=sm_90a -O3 -I gpu-worker/src/main/cuda -DSOFTMAX_SM90_VARIANTS \
    gpu-worker/src/main/cuda/softmax_sm90.cu -o "$cubin"
fi
exec python3 -W ignore bench/softmax_peer.py --hopper-variant "wsop=$cubin" --hopper-variant "wso=$cubin:_wso" \
  --hopper-variant "ws=$cubin:_ws" --variant-checks-only --sdpa flash,cudnn --variant-lens 8192,32768 \
  --always wsop "$@"
