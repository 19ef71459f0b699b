#!/usr/bin/env python3
"""A plain numpy peer for the CPU backend: chunked lightning attention on one safetensors file.

    python3 bench/cpu_peer.py --input IN.safetensors --output OUT.safetensors [--block 128]
                              [--check JOB_OUTPUT.safetensors]

The input holds q [T,H,Dk], k [T,H,Dk], v [T,H,Dv] (F32 only, one head count H for all three; the default variant: plain,
identity feature map, zero initial state, scale 1, MiniMax-01 slopes unless the file has `slope`).
The output holds o [T,H,Dv] F32 and final_state [H,Dk,Dv] F32, the job's names and layout.

Only numpy: the header (8-byte little-endian length, then JSON) is parsed here and the tensors are
read through np.memmap, so only the tokens of the group being computed are paged in.

The math (LIGHTNING.md), per head, lambda = exp(-slope), blocks of B tokens, P the state before a block:
    o_i  = sum_{j<=i} lambda^(i-j) (q_i.k_j) v_j + lambda^(i+1) q_i P
    P'   = lambda^B P + sum_j lambda^(B-1-j) k_j^T v_j
A group of G blocks is computed at once: the intra-block products and every block's own
contribution to the state are batched matrix products over [G, H] (one BLAS sgemm each); only the
G-step recurrence P <- lambda^B P + L_g is sequential, and it is a [H,Dk,Dv] scale-and-add.
Decay powers come from exp(-slope * n) in float64 (never repeated products), rounded to float32.

The time is printed in four parts: start (interpreter and numpy import, measured from the process
start the caller passes in --t0, else from this script's first line), read (header, mapping, and
the page-in of q, k, v, forced before the compute so that the two are not mixed), compute, write;
then the same four in CPU time of the whole process (every thread: OpenBLAS's too).
"""
import time

_T_SCRIPT = time.time()

import argparse
import ctypes
import glob
import json
import os
import struct
import sys

import numpy as np



def read_header(path):
    """The safetensors header: (dict of name -> (dtype, shape, begin, end)), data offset."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise SystemExit(f"{path}: expected an 8-byte header length, the file has {len(head)} bytes")
        (n,) = struct.unpack("<Q", head)
        meta = json.loads(f.read(n))
    tensors = {}
    for name, t in meta.items():
        if name == "__metadata__":
            continue
        begin, end = t["data_offsets"]
        tensors[name] = (t["dtype"], tuple(t["shape"]), begin, end)
    return tensors, 8 + n


def map_tensor(path, tensors, base, name):
    dtype, shape, begin, end = tensors[name]
    if dtype != "F32":
        raise SystemExit(f"{path}: tensor {name} is {dtype}; this peer reads F32 only (generate with --dtype f32)")
    if end - begin != 4 * int(np.prod(shape, dtype=np.int64)):
        raise SystemExit(f"{path}: tensor {name} {list(shape)} F32 needs {4 * int(np.prod(shape))} bytes, "
                         f"its range holds {end - begin}")
    return np.memmap(path, dtype=np.float32, mode="r", offset=base + begin, shape=shape)


def minimax_slopes(heads):
    """MiniMax-01 / ALiBi slopes, as engine/Slopes.minimax: 2^(-8(h+1)/p) for the largest power of
    two p <= H, then every other slope of 2p for the heads beyond p."""
    p = 1 << (heads.bit_length() - 1)
    base = [2.0 ** (-8.0 * (h + 1) / p) for h in range(p)]
    finer = [2.0 ** (-8.0 * (h + 1) / (2 * p)) for h in range(2 * p)]
    return np.array(base + finer[0:2 * (heads - p):2], dtype=np.float64)


def blas_threads():
    """How many threads numpy's OpenBLAS uses (numpy's own bundled library), or None."""
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "libscipy_openblas*.so*"))
    for lib in libs:
        try:
            so = ctypes.CDLL(lib)
        except OSError:
            continue
        for sym in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads"):
            if hasattr(so, sym):
                core = getattr(so, "scipy_openblas_get_corename64_", None)
                name = None
                if core is not None:
                    core.restype = ctypes.c_char_p
                    name = core().decode()
                return int(getattr(so, sym)()), name
    return None, None


def forward(q, k, v, slopes, block, group, o):
    """Writes o [T,H,Dv] (float32) and returns the final state [H,Dk,Dv] (float32)."""
    T, H, Dk = q.shape
    Dv = v.shape[2]
    B = block
    s64 = slopes[:, None]
    idx = np.arange(B, dtype=np.float64)
    # Intra-block decay mask M[h,i,j] = lambda^(i-j) for i >= j, 0 above the diagonal.
    diff = idx[:, None] - idx[None, :]
    mask = np.where(diff >= 0, np.exp(-slopes[:, None, None] * np.maximum(diff, 0)[None]), 0.0).astype(np.float32)
    q_decay = np.exp(-s64 * (idx + 1)).astype(np.float32)        # [H,B]: lambda^(i+1)
    k_decay = np.exp(-s64 * (B - 1 - idx)).astype(np.float32)    # [H,B]: lambda^(B-1-j)
    block_decay = np.exp(-slopes * B).astype(np.float32)[:, None, None]  # [H,1,1]: lambda^B
    state = np.zeros((H, Dk, Dv), dtype=np.float32)
    span = B * group
    t = 0
    while t < T:
        n = min(span, T - t)
        full = n // B * B
        if full:
            g = full // B
            # [g,B,H,D] -> [g,H,B,D]: each (block, head) a contiguous B x D matrix for BLAS.
            qb = np.ascontiguousarray(q[t:t + full].reshape(g, B, H, Dk).transpose(0, 2, 1, 3))
            kb = np.ascontiguousarray(k[t:t + full].reshape(g, B, H, Dk).transpose(0, 2, 1, 3))
            vb = np.ascontiguousarray(v[t:t + full].reshape(g, B, H, Dv).transpose(0, 2, 1, 3))
            scores = np.matmul(qb, kb.transpose(0, 1, 3, 2))       # [g,H,B,B]
            scores *= mask
            ob = np.matmul(scores, vb)                             # [g,H,B,Dv]
            own = np.matmul((kb * k_decay[None, :, :, None]).transpose(0, 1, 3, 2), vb)  # [g,H,Dk,Dv]
            before = np.empty_like(own)                            # the state entering each block
            for i in range(g):
                before[i] = state
                state = block_decay * state + own[i]
            ob += np.matmul(qb * q_decay[None, :, :, None], before)
            o[t:t + full] = ob.transpose(0, 2, 1, 3).reshape(full, H, Dv)
            t += full
        rest = n - full
        if rest:  # the last, partial block: the same formulas with m = rest
            m = rest
            d = diff[:m, :m]
            mk = np.where(d >= 0, np.exp(-slopes[:, None, None] * np.maximum(d, 0)[None]), 0.0).astype(np.float32)
            qb = np.ascontiguousarray(q[t:t + m].transpose(1, 0, 2))
            kb = np.ascontiguousarray(k[t:t + m].transpose(1, 0, 2))
            vb = np.ascontiguousarray(v[t:t + m].transpose(1, 0, 2))
            ob = np.matmul(np.matmul(qb, kb.transpose(0, 2, 1)) * mk, vb)
            ob += np.matmul(qb * np.exp(-s64 * (idx[:m] + 1)).astype(np.float32)[:, :, None], state)
            kd = np.exp(-s64 * (m - 1 - idx[:m])).astype(np.float32)
            state = np.exp(-slopes * m).astype(np.float32)[:, None, None] * state \
                + np.matmul((kb * kd[:, :, None]).transpose(0, 2, 1), vb)
            o[t:t + m] = ob.transpose(1, 0, 2)
            t += m
    return state


def write_safetensors(path, named):
    """named: list of (name, float32 array). The header is padded with spaces to 8 bytes."""
    meta, offset = {}, 0
    for name, a in named:
        meta[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    head = json.dumps(meta, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for _, a in named:
            np.ascontiguousarray(a, dtype=np.float32).tofile(f)


def relative_error(a, b):
    """||a - b|| / ||b|| (Frobenius, float64), in slices to keep the memory small."""
    num = den = 0.0
    step = 1 << 16
    for i in range(0, a.shape[0], step):
        x = np.asarray(a[i:i + step], dtype=np.float64)
        y = np.asarray(b[i:i + step], dtype=np.float64)
        num += float(np.sum((x - y) ** 2))
        den += float(np.sum(y * y))
    return (num / den) ** 0.5 if den > 0 else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--block", type=int, default=128, help="tokens per block (default 128)")
    ap.add_argument("--group", type=int, default=16, help="blocks computed at once (default 16: 2,048 tokens, whose "
                    "products stay in cache; 8 to 256 measured, 16 fastest here)")
    ap.add_argument("--check", help="the job's output file for the same input: print the relative error")
    ap.add_argument("--t0", type=float, help="the process's start (epoch seconds) as the caller saw it")
    a = ap.parse_args()

    t0 = a.t0 if a.t0 is not None else _T_SCRIPT
    t_start = time.time()
    c_start = time.process_time()  # CPU time of the whole process (every thread) since it started

    tensors, base = read_header(a.input)
    for name in ("q", "k", "v"):
        if name not in tensors:
            raise SystemExit(f"{a.input}: expected tensors q, k and v, found {sorted(tensors)}")
    q = map_tensor(a.input, tensors, base, "q")
    k = map_tensor(a.input, tensors, base, "k")
    v = map_tensor(a.input, tensors, base, "v")
    if q.shape[1] != k.shape[1] or q.shape[1] != v.shape[1] or q.shape[2] != k.shape[2]:
        raise SystemExit(f"{a.input}: expected q [T,H,Dk], k [T,H,Dk], v [T,H,Dv]; got {q.shape}, {k.shape}, {v.shape}")
    for name in ("initial_state", "initial_normalizer"):
        if name in tensors:
            raise SystemExit(f"{a.input}: has {name}; this peer computes from a zero state only")
    T, H, Dk = q.shape
    Dv = v.shape[2]
    if "slope" in tensors:
        slopes = np.asarray(map_tensor(a.input, tensors, base, "slope"), dtype=np.float64).reshape(H)
    else:
        slopes = minimax_slopes(H)
    # Page the inputs in now, so "read" holds the I/O and "compute" none: one float in every 1,024
    # (every 4 KiB page) of each mapping is summed (from the page cache when the file was just written).
    for x in (q, k, v):
        float(x.reshape(-1)[::1024].sum())
    t_read = time.time()
    c_read = time.process_time()

    o = np.empty((T, H, Dv), dtype=np.float32)
    state = forward(q, k, v, slopes, a.block, a.group, o)
    t_compute = time.time()
    c_compute = time.process_time()

    write_safetensors(a.output, [("o", o), ("final_state", state)])
    t_write = time.time()
    c_write = time.process_time()
    times = os.times()  # the same total, user and system apart

    threads, core = blas_threads()
    print(f"peer: T={T} H={H} Dk={Dk} Dv={Dv} block={a.block} group={a.group} numpy={np.__version__} "
          f"openblas_threads={threads} openblas_core={core} cpus={os.cpu_count()}")
    print(f"peer: start {t_start - t0:.3f} s  read {t_read - t_start:.3f} s  compute {t_compute - t_read:.3f} s  "
          f"write {t_write - t_compute:.3f} s  total {t_write - t0:.3f} s  end {t_write:.6f}")
    print(f"peer: cpu start {c_start:.3f} s  read {c_read - c_start:.3f} s  compute {c_compute - c_read:.3f} s  "
          f"write {c_write - c_compute:.3f} s  total {c_write:.3f} s")
    print(f"peer: cpu user {times.user:.3f} s  system {times.system:.3f} s")
    flops = 2.0 * T * H * (a.block * (Dk + Dv) / 2 + 2 * Dk * Dv)  # causal half of the block products + inter + state
    print(f"peer: compute {flops / (t_compute - t_read) / 1e9:.1f} GFLOP/s (useful FLOPs, causal half counted)")
    sys.stdout.flush()
    if a.check:  # after the timed part: reading the job's output is no part of the peer's work
        jt, jb = read_header(a.check)
        jo = map_tensor(a.check, jt, jb, "o")
        js = map_tensor(a.check, jt, jb, "final_state")
        print(f"peer: relative error against {a.check}: o {relative_error(o, jo):.3e}  "
              f"final_state {relative_error(state, js):.3e}")


if __name__ == "__main__":
    main()
