#!/usr/bin/env python3
"""Writes BF16 attention inputs (q [T, H, D], k and v [T, Hkv, D]) as safetensors files, fast, for
benchmarks on a GPU machine: values from torch's generator on the GPU (numpy's on the CPU where
torch is missing, for dry runs), scaled by 1/sqrt(D) so outputs stay well inside BF16's range.

Each tensor is made in blocks of at most --block-tokens tokens, so a file of any size takes bounded
memory (a 1M-token tensor at H = 64, D = 128 is 16 GiB). Block i of tensor x gets a generator of its
own, seeded from (--seed, file, x, i), so the bytes do not depend on how many writers made them:
--workers N threads each take every N-th block, generate it on a CUDA stream of their own into a
pinned buffer and write it with a positioned write (pwrite releases the GIL, as do the copies), so
N blocks are on their way to the page cache at once. Writing 48 GiB is bound by the disk either way;
one writer was bound by itself (0.54 GB/s into the page cache on the H200 machine).

    bench/make_inputs.py DIR --files N --tokens T --heads H --dim D [--heads-kv HKV] [--seed S]
                         [--prefix seq] [--block-tokens 16384] [--workers 1] [--numpy]
"""
import argparse
import json
import os
import struct
import threading

try:
    import torch
except ImportError:  # a dry run without a GPU machine's python
    torch = None
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--files", type=int, default=1)
ap.add_argument("--tokens", type=int, required=True)
ap.add_argument("--heads", type=int, default=8)
ap.add_argument("--heads-kv", type=int, default=None, help="heads of k and v (default --heads); must divide --heads")
ap.add_argument("--dim", type=int, default=128)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--prefix", default="seq")
ap.add_argument("--block-tokens", type=int, default=16384)
ap.add_argument("--workers", type=int, default=1)
ap.add_argument("--numpy", action="store_true", help="numpy's generator on the CPU even where torch has a GPU")
a = ap.parse_args()
hkv = a.heads_kv or a.heads
if a.heads % hkv:
    ap.error("--heads-kv %d does not divide --heads %d" % (hkv, a.heads))
os.makedirs(a.dir, exist_ok=True)
dev = "cuda" if torch is not None and not a.numpy and torch.cuda.is_available() else "cpu"

heads_of = {"q": a.heads, "k": hkv, "v": hkv}
header, offset = {}, 0
for name in "qkv":
    n = a.tokens * heads_of[name] * a.dim * 2
    header[name] = {"dtype": "BF16", "shape": [a.tokens, heads_of[name], a.dim], "data_offsets": [offset, offset + n]}
    offset += n
raw = json.dumps(header, separators=(",", ":")).encode()
raw += b" " * (-len(raw) % 8)
data_start = 8 + len(raw)


def block_bytes(seed, heads, n_tok):
    """One block's BF16 bits, as a buffer the caller writes (a pinned tensor's numpy view on a GPU)."""
    if dev == "cpu":
        g = np.random.default_rng(seed)
        x = (g.standard_normal((n_tok, heads, a.dim), dtype=np.float32) / a.dim ** 0.5).view(np.uint32)
        # round to nearest even into bfloat16's 16 bits (the top half of a float32)
        return ((x + 0x7FFF + ((x >> 16) & 1)) >> 16).astype(np.uint16)
    g = torch.Generator(device=dev).manual_seed(seed)
    t = (torch.randn(n_tok, heads, a.dim, generator=g, device=dev) / a.dim ** 0.5).to(torch.bfloat16)
    host = pinned()[: t.numel()].view(n_tok, heads, a.dim)
    host.copy_(t.view(torch.int16), non_blocking=True)
    torch.cuda.current_stream().synchronize()
    return host.numpy()


local = threading.local()


def pinned():
    """This thread's pinned host buffer, as large as the largest block (int16 elements)."""
    if not hasattr(local, "buf"):
        local.buf = torch.empty(a.block_tokens * a.heads * a.dim, dtype=torch.int16, pin_memory=True)
    return local.buf


def write_blocks(fd, f, worker, jobs, errors):
    try:
        write_blocks_of(fd, f, worker, jobs)
    except BaseException as e:  # reported by the main thread: a hole in the file must not pass
        errors.append("writer %d: %r" % (worker, e))


def write_blocks_of(fd, f, worker, jobs):
    if dev == "cuda":
        local.stream = torch.cuda.Stream()
        torch.cuda.set_stream(local.stream)
    for i in range(worker, len(jobs), a.workers):
        name, start, n_tok = jobs[i]
        seed = ((a.seed * 1_000_003 + f) * 3 + "qkv".index(name)) * 1_000_003 + start // a.block_tokens
        buf = block_bytes(seed, heads_of[name], n_tok)
        at = data_start + header[name]["data_offsets"][0] + start * heads_of[name] * a.dim * 2
        view = memoryview(buf).cast("B")
        while view.nbytes:
            done = os.pwrite(fd, view, at)
            view, at = view[done:], at + done


for f in range(a.files):
    path = os.path.join(a.dir, "%s-%03d.safetensors" % (a.prefix, f))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, struct.pack("<Q", len(raw)) + raw)
        jobs = [(name, start, min(a.block_tokens, a.tokens - start)) for name in "qkv"
                for start in range(0, a.tokens, a.block_tokens)]
        errors = []
        threads = [threading.Thread(target=write_blocks, args=(fd, f, w, jobs, errors)) for w in range(a.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors or os.fstat(fd).st_size != data_start + offset:
            raise SystemExit("%s: not written whole (%d of %d bytes): %s" % (path, os.fstat(fd).st_size,
                                                                             data_start + offset, "; ".join(errors)))
    finally:
        os.close(fd)
    print(path, os.path.getsize(path))
