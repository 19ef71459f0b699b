#!/usr/bin/env python3
"""Float64 spot check of a lightning job's output files against their inputs, numpy only: for a
few tokens (the first and last token of every piece, and a few more) and a few heads,
    o_t = scale * sum_{s <= t} lambda^(t-s) (q_t . k_s) v_s,     lambda_h = exp(-slope_h),
summed over the last W_h tokens, where the older terms weigh together at most
lambda^W / (1 - lambda) < 1e-12 of the largest (W_h = t + 1 when that is shorter: exact); and
the final state S = sum_s lambda^(T-1-s) k_s^T v_s the same way. The error of a row is
max |o - ref| / max |ref| per head (the largest over the heads checked), of the state the same
over its [Dk, Dv]. Slopes: the file's `slope`, else MiniMax-01's for H heads (as
engine/Slopes.minimax), computed here, not taken from the job.

    bench/job_check.py INPUT OUTPUT [--pieces N] [--heads 8] [--extra 4] [--tolerance 1e-2]

Prints one "RESULT check" line per file pair and exits 1 when an error is above the tolerance
(1e-2 suits BF16 o: 2.5 of its unit roundoff, as the job's own spot checks use).

A softmax job's output (metadata attention=softmax) is checked the same way against
    o_t = sum_{j <= t} exp(s_tj - lse_t) v_j,   lse_t = log sum_{j <= t} exp(s_tj),   s_tj = scale q_t . k_j
(keys j > t - window only, when the metadata records a window), query head h reading key/value head
h / (Hq / Hk), in float64 over every visible key: o as above, lse (when written) by its largest
absolute error (--lse-tolerance).
"""
import argparse
import json
import math
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def tensors(path):
    """name -> (memory-mapped array in its stored type, dtype string), and the metadata."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        count = int(np.prod(t["shape"])) if t["shape"] else 1
        assert b - a == count * np.dtype(DTYPES[t["dtype"]]).itemsize, (path, name)
        arr = np.memmap(path, dtype=DTYPES[t["dtype"]], mode="r", offset=8 + n + a, shape=tuple(t["shape"]))
        out[name] = (arr, t["dtype"])
    return out, header.get("__metadata__", {})


def f64(arr, dtype):
    a = np.asarray(arr)
    if dtype == "BF16":  # bfloat16's bits are the top half of a float32's
        return (a.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return a.astype(np.float64)


def minimax_slopes(heads):
    p = 1 << (heads.bit_length() - 1)
    base = [2.0 ** (-8.0 * (h + 1) / p) for h in range(p)]
    finer = [2.0 ** (-8.0 * (h + 1) / (2 * p)) for h in range(2 * p)]
    return np.array(base + finer[0:2 * (heads - p):2], dtype=np.float64)


def window(slope, upto):
    """Tokens whose terms matter to 1e-12 of the largest: lambda^W / (1 - lambda) <= 1e-12."""
    lam = math.exp(-slope)
    if slope <= 0:
        return upto
    w = math.ceil(math.log(1e-12 * (1 - lam)) / math.log(lam))
    return min(upto, max(1, w))


def check(inp, outp, pieces, nheads, extra, seed):
    ti, _ = tensors(inp)
    to, meta = tensors(outp)
    q, dt = ti["q"]
    k, _ = ti["k"]
    v, _ = ti["v"]
    o, odt = to["o"]
    T, H, D = q.shape
    assert k.shape[1] == H and v.shape[1] == H, "grouped heads are not checked here"
    slopes = f64(*ti["slope"]) if "slope" in ti else minimax_slopes(H)
    scale = float(meta.get("scale", "1.0"))
    rng = np.random.default_rng(seed)
    tokens = set()
    for p in range(pieces):
        tokens.add(T * p // pieces)
        tokens.add(T * (p + 1) // pieces - 1)
    tokens.update(int(x) for x in rng.integers(0, T, extra))
    heads = sorted(set([0, H - 1] + [int(x) for x in np.linspace(0, H - 1, nheads)]))
    worst = 0.0
    for t in sorted(tokens):
        for h in heads:
            w = window(slopes[h], t + 1)
            s0 = t + 1 - w
            kk = f64(k[s0:t + 1, h], dt)
            vv = f64(v[s0:t + 1, h], dt)
            qq = f64(q[t, h], dt)
            decay = np.exp(-slopes[h] * np.arange(w - 1, -1, -1, dtype=np.float64))
            ref = scale * ((kk @ qq) * decay) @ vv
            got = f64(o[t, h], odt)
            err = np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-300)
            worst = max(worst, err)
    state_err = 0.0
    if "final_state" in to:
        fs = f64(*to["final_state"])
        for h in heads[::2]:
            w = window(slopes[h], T)
            kk = f64(k[T - w:, h], dt)
            vv = f64(v[T - w:, h], dt)
            decay = np.exp(-slopes[h] * np.arange(w - 1, -1, -1, dtype=np.float64))
            ref = kk.T @ (vv * decay[:, None])
            err = np.max(np.abs(fs[h] - ref)) / max(np.max(np.abs(ref)), 1e-300)
            state_err = max(state_err, err)
    return len(tokens), len(heads), worst, state_err, (T, H, D)


def sampled_tokens(T, pieces, extra, rng):
    """The first and last token of every piece, and `extra` more drawn at random."""
    tokens = set()
    for p in range(pieces):
        tokens.add(T * p // pieces)
        tokens.add(T * (p + 1) // pieces - 1)
    tokens.update(int(x) for x in rng.integers(0, T, extra))
    return sorted(tokens)


def check_softmax(inp, outp, pieces, nheads, extra, seed):
    ti, _ = tensors(inp)
    to, meta = tensors(outp)
    (q, dt), (k, _), (v, _) = ti["q"], ti["k"], ti["v"]
    o, odt = to["o"]
    T, Hq, Dk = q.shape
    Hk, Dv = k.shape[1], v.shape[2]
    scale = float(meta["scale"])
    window = int(meta["window"]) if "window" in meta else None
    rng = np.random.default_rng(seed)
    tokens = sampled_tokens(T, pieces, extra, rng)
    heads = sorted(set([0, Hq - 1] + [int(x) for x in np.linspace(0, Hq - 1, nheads)]))
    last = tokens[-1] + 1
    worst, lse_worst = 0.0, (0.0 if "lse" in to else None)
    for g in sorted(set(h // (Hq // Hk) for h in heads)):
        kk = f64(k[:last, g], dt)  # each key/value head read once for the query heads that share it
        vv = f64(v[:last, g], dt)
        for h in (h for h in heads if h // (Hq // Hk) == g):
            for t in tokens:
                j0 = 0 if window is None else max(0, t + 1 - window)
                s = scale * (kk[j0:t + 1] @ f64(q[t, h], dt))
                m = s.max()
                e = np.exp(s - m)
                lse = m + math.log(e.sum())
                ref = (e / e.sum()) @ vv[j0:t + 1]
                got = f64(o[t, h], odt)
                worst = max(worst, np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-300))
                if lse_worst is not None:
                    lse_worst = max(lse_worst, abs(float(to["lse"][0][t, h]) - lse))
    return len(tokens), len(heads), worst, lse_worst, (T, Hq, Hk, Dk)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--pieces", type=int, default=1)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--extra", type=int, default=4)
    ap.add_argument("--tolerance", type=float, default=1e-2)
    ap.add_argument("--state-tolerance", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--lse-tolerance", type=float, default=1e-4)
    a = ap.parse_args()
    if tensors(a.output)[1].get("attention") == "softmax":
        n, nh, err, lerr, shape = check_softmax(a.input, a.output, a.pieces, a.heads, a.extra, a.seed)
        ok = err <= a.tolerance and (lerr is None or lerr <= a.lse_tolerance)
        print("RESULT check %s softmax T=%d Hq=%d Hk=%d D=%d tokens=%d heads=%d o_max_rel_error=%.3e lse_max_abs_error=%s %s"
              % (a.output.rsplit("/", 1)[-1], shape[0], shape[1], shape[2], shape[3], n, nh, err,
                 "none" if lerr is None else "%.3e" % lerr, "ok" if ok else "FAILED"))
        sys.exit(0 if ok else 1)
    n, nh, err, serr, shape = check(a.input, a.output, a.pieces, a.heads, a.extra, a.seed)
    ok = err <= a.tolerance and serr <= a.state_tolerance
    print("RESULT check %s T=%d H=%d D=%d tokens=%d heads=%d o_max_rel_error=%.3e final_state_max_rel_error=%.3e %s"
          % (a.output.rsplit("/", 1)[-1], shape[0], shape[1], shape[2], n, nh, err, serr, "ok" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
