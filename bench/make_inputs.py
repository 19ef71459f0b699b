#!/usr/bin/env python3
"""Writes BF16 lightning inputs (q, k, v [T, H, D]) as safetensors files, fast, for benchmarks on a
GPU machine: values from torch's generator on the GPU (or the CPU without one), scaled by
1/sqrt(D) so outputs stay well inside BF16's range. Each tensor is made and written in blocks of
at most --block-tokens tokens, so a file of any size takes bounded memory (a 1M-token tensor at
H = 64, D = 128 is 16 GiB).

    bench/make_inputs.py DIR --files N --tokens T --heads H --dim D [--seed S] [--block-tokens 16384]
"""
import argparse
import json
import os
import struct

import torch

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--files", type=int, default=1)
ap.add_argument("--tokens", type=int, required=True)
ap.add_argument("--heads", type=int, default=8)
ap.add_argument("--dim", type=int, default=128)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--prefix", default="seq")
ap.add_argument("--block-tokens", type=int, default=16384)
a = ap.parse_args()
os.makedirs(a.dir, exist_ok=True)
dev = "cuda" if torch.cuda.is_available() else "cpu"
g = torch.Generator(device=dev).manual_seed(a.seed)
n = a.tokens * a.heads * a.dim * 2
header = {}
for i, name in enumerate("qkv"):
    header[name] = {"dtype": "BF16", "shape": [a.tokens, a.heads, a.dim], "data_offsets": [i * n, (i + 1) * n]}
raw = json.dumps(header, separators=(",", ":")).encode()
raw += b" " * (-len(raw) % 8)
for f in range(a.files):
    path = os.path.join(a.dir, "%s-%03d.safetensors" % (a.prefix, f))
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(raw)) + raw)
        for name in "qkv":
            for start in range(0, a.tokens, a.block_tokens):
                n_tok = min(a.block_tokens, a.tokens - start)
                t = (torch.randn(n_tok, a.heads, a.dim, generator=g, device=dev) / a.dim ** 0.5).to(torch.bfloat16)
                out.write(memoryview(t.view(torch.int16).cpu().numpy()).cast("B"))
    print(path, os.path.getsize(path))
