#!/usr/bin/env python3
"""The sequence-length sweep behind the throughput and error plots of BENCHMARKS.md: fla's
chunk_simple_gla and vLLM's MiniMax prefill kernel (`lightning_attention`) on one GPU, timed on the
shapes DeviceBench times ours on, and their output error against a float64 recurrence at several T.

Neither fla nor vLLM is part of this project, and neither is installed on the GPU machine: FLA_PATH
points at a checkout holding the `fla` package (as for bench/fla_bench.py), VLLM_PATH at a directory
from which `vllm.model_executor.layers.lightning_attn` imports (vLLM's file, plus whatever small
modules stand in for the parts of vLLM it imports). Either may be left unset: that side is skipped.

    SHAPES=4096x64x128,... ERR_T=4096,16384 ERR_H=8 python3 bench/sweep.py

Prints `RESULT fla|vllm T= H= D= ms= tokens_per_s=` per shape (median of triton's do_bench, the
same timer fla_bench uses; FLA_TUNING=N adds ` tuning=N`, the process's place among those bench/sweep.sh
runs), `RESULT skip ...` where a shape does not fit in the GPU's memory, and
`RESULT error fla|vllm T= H= D= output_rel= state_rel=` per length of ERR_T: the relative Frobenius
error of the whole output and final state against the float64 block form, worst head. With
FLA_BIG_CHECK=1, fla's output at every timed shape is held against float64 too, on heads 0 and H - 1 (the
timed inputs; the reference on those two heads alone): `RESULT bigcheck fla T= H= D= heads=0,H-1
output_rel= state_rel=`. At T = 1M, H = 64 the tensors hold 2^33 elements, past what 32-bit offsets
reach: this says whether each timed call computed the right thing. Where one call holds more than 2^31 elements,
fla is also timed the way a user gets it right there, in calls of fewer heads (`RESULT fla-grouped`, checked:
fla_bench.time_fla does both).

How each is called: fla with BF16 q, k, v in [1, T, H, D] (`g_gamma = -slope`, scale 1); vLLM as its
MiniMax layer calls it, float32 q, k, v in [1, H, T, D] and the slopes as the decay rates, a zero
state. For the error, both get the same BF16-rounded values (vLLM as float32), and so does the
reference.
"""
import os
import sys

import torch
import triton

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fla_bench import import_fla, minimax_slopes, reference, rel, time_fla  # noqa: E402  (the reference's owner)

SHAPES = os.environ.get("SHAPES", "4096x64x128,16384x64x128,65536x64x128,262144x64x128,1048576x64x128,"
                                  "4096x8x128,16384x8x128,65536x8x128,262144x8x128,1048576x8x128")
ERR_T = os.environ.get("ERR_T", "4096,16384,65536,262144,1048576")
ERR_H = int(os.environ.get("ERR_H", "8"))
# what one call may hold on the device; the GPU's memory less room for the timer's scratch and the allocator
BUDGET = 0.75 * torch.cuda.get_device_properties(0).total_memory


def import_vllm():
    root = os.environ.get("VLLM_PATH")
    if not root:
        return None
    sys.path.insert(0, root)
    from vllm.model_executor.layers.lightning_attn import lightning_attention
    return lightning_attention


def vllm_bytes(t, h, d):
    """Device memory of one vLLM prefill call: q, k, v, o and the summed output in float32, the
    per-256-token-block states and their copy with the final one appended."""
    blocks = -(-t // 256)
    return 5 * t * h * d * 4 + 2 * h * (blocks + 1) * d * d * 4


def main():
    fla = import_fla() if os.environ.get("FLA_PATH") else None
    vllm = import_vllm()
    dev = "cuda"
    print("sweep on", torch.cuda.get_device_name(0), "torch", torch.__version__, "triton", triton.__version__,
          "fla", "yes" if fla else "no", "vllm", "yes" if vllm else "no", flush=True)

    if fla:
        # fla autotunes at its first call and keeps that choice for every later call, whatever T and H
        # (its tuning key has neither). Tuned at T = 1M, H = 64 (this sweep's first shape) one of its
        # candidate configurations faulted with an illegal memory access on the H200 (2026-12-03),
        # which ends the process; tuned at T = 8,192 its 1M-token runs go through. So tune on 8K
        # tokens at the head count of the first shape (bench/sweep.sh runs one process per H).
        h0, d0 = (int(x) for x in SHAPES.split(",")[0].split("x")[1:])
        q, k, v = (torch.empty(1, 8192, h0, d0, device=dev, dtype=torch.bfloat16).uniform_(-1, 1) for _ in range(3))
        fla(q, k, v, g_gamma=-minimax_slopes(h0).to(dev), scale=1.0, output_final_state=True)
        torch.cuda.synchronize()
        del q, k, v

    for shape in SHAPES.split(","):
        t, h, d = (int(x) for x in shape.split("x"))
        slopes = minimax_slopes(h).to(dev)
        if fla:
            time_fla(fla, t, h, d, slopes,
                     lambda fn: triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median"),
                     check=os.environ.get("FLA_BIG_CHECK") == "1",
                     suffix=f" tuning={os.environ['FLA_TUNING']}" if os.environ.get("FLA_TUNING") else "")
        if vllm:
            torch.cuda.empty_cache()
            need = vllm_bytes(t, h, d)
            if need > BUDGET:
                print(f"RESULT skip vllm T={t} H={h} D={d}: needs {need / 1e9:.0f} GB of device memory "
                      f"(float32 inputs), more than {BUDGET / 1e9:.0f} GB", flush=True)
                continue
            q, k, v = (torch.empty(1, h, t, d, device=dev, dtype=torch.float32).uniform_(-1, 1) for _ in range(3))
            ms = triton.testing.do_bench(lambda: vllm(q, k, v, slopes), warmup=25, rep=200, return_mode="median")
            print(f"RESULT vllm T={t} H={h} D={d} ms={ms:.3f} tokens_per_s={t / (ms / 1e3):.4g}", flush=True)
            del q, k, v

    d, h = 128, ERR_H
    slopes = minimax_slopes(h).to(dev)
    for t in (int(x) for x in ERR_T.split(",") if x):
        torch.cuda.empty_cache()
        gen = torch.Generator(device=dev).manual_seed(t)
        q, k, v = (torch.empty(1, t, h, d, device=dev).uniform_(-1, 1, generator=gen).bfloat16() for _ in range(3))
        ref_o, ref_s = reference(q, k, v, slopes)  # [T, H, Dv], [H, Dk, Dv]
        ref_o = ref_o.transpose(0, 1)
        if fla:
            o, s = fla(q, k, v, g_gamma=-slopes, scale=1.0, output_final_state=True)
            print(f"RESULT error fla T={t} H={h} D={d} output_rel={rel(o[0].transpose(0, 1), ref_o):.3e} "
                  f"state_rel={rel(s[0], ref_s):.3e}", flush=True)
            del o, s
        if vllm:
            qv, kv_, vv = (x[0].transpose(0, 1).float().contiguous()[None] for x in (q, k, v))
            o, states = vllm(qv, kv_, vv, slopes)
            print(f"RESULT error vllm T={t} H={h} D={d} output_rel={rel(o[0], ref_o):.3e} "
                  f"state_rel={rel(states[0, :, -1], ref_s):.3e}", flush=True)
            del qv, kv_, vv, o, states
        del q, k, v, ref_o, ref_s


if __name__ == "__main__":
    main()
