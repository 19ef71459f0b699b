#!/usr/bin/env python3
"""fla's chunk_simple_gla on the shapes of our GPU benchmark, on the same GPU, for bin/gpu-check.

fla is not part of this project: point FLA_PATH at a checkout of flash-linear-attention (the
directory that holds the `fla` package). Prints one RESULT line per shape, and one for fla's
output error against a float64 reference on a smaller shape. Each timed shape's own output is then held
against float64 on heads 0 and H - 1 (`RESULT bigcheck fla ...`): at T = 1M, H = 64, D = 128 (2^33
elements a tensor) fla at bc3b101 returns a wrong output (error 0.89, its final state 1.0; 2026-12-04, one
H200, BENCHMARKS.md), so its time there is not a time for this computation; there fla is also timed in calls of
fewer heads (`grouped`), the way a user gets it right.

fla tunes its chunk kernels once a process, at the first call, and keeps the choice for every later
T and H (the tuning key has neither); a choice tuned at one head count can be far from fla's best at
another (BENCHMARKS.md: at T = 1M, H = 8, 11.7 ms tuned at H = 64 on 2026-12-03, 9.3 ms tuned at H = 4 the
day before). So each head count of SHAPES runs in a process of its own that tunes on an 8K-token
call at that H before anything is timed.
"""
import os
import subprocess
import sys
import types

import torch
import triton


def import_fla():
    root = os.environ.get("FLA_PATH")
    if root:
        # import the op alone: fla/__init__ pulls in layers and models we do not need
        for name, sub in (("fla", "fla"), ("fla.ops", "fla/ops")):
            if name not in sys.modules:
                m = types.ModuleType(name)
                m.__path__ = [os.path.join(root, sub)]
                m.__version__ = "unknown"  # fla.utils reads it
                sys.modules[name] = m
        sys.path.insert(0, root)
    from fla.ops.simple_gla import chunk_simple_gla
    return chunk_simple_gla


def minimax_slopes(h):
    import math
    def pow2(n):
        return [2.0 ** (-8.0 * (i + 1) / n) for i in range(n)]
    p = 1 << (h.bit_length() - 1)
    s = pow2(p)
    if p < h:
        s += pow2(2 * p)[0::2][: h - p]
    return torch.tensor(s, dtype=torch.float32)


def reference(q, k, v, slopes):
    """float64 block-form lightning attention (exact algebra), [B, T, H, D] layout, zero state."""
    q, k, v = q.double()[0], k.double()[0], v.double()[0]
    t, h, dk = q.shape
    dv = v.shape[-1]
    lam = torch.exp(-slopes.double().to(q.device))  # [H]
    c = 64
    out = torch.empty(t, h, dv, dtype=torch.float64, device=q.device)
    state = torch.zeros(h, dk, dv, dtype=torch.float64, device=q.device)
    idx = torch.arange(c, device=q.device, dtype=torch.float64)
    for s in range(0, t, c):
        m = min(c, t - s)
        qb, kb, vb = q[s:s + m].transpose(0, 1), k[s:s + m].transpose(0, 1), v[s:s + m].transpose(0, 1)
        i = idx[:m]
        diff = i[:, None] - i[None, :]
        mask = torch.where(diff >= 0, lam[:, None, None] ** diff.clamp(min=0), torch.zeros((), dtype=torch.float64, device=q.device))
        scores = (qb @ kb.transpose(1, 2)) * mask
        inter = (lam[:, None] ** (i[None, :] + 1))[..., None] * (qb @ state)
        out[s:s + m] = (scores @ vb + inter).transpose(0, 1)
        kd = kb * (lam[:, None] ** (m - 1 - i[None, :]))[..., None]
        state = (lam ** m)[:, None, None] * state + kd.transpose(1, 2) @ vb
    return out, state


def rel(a, b):
    """Worst head's relative Frobenius error of a against b; heads on dimension 0."""
    a, b = a.double(), b.double()
    return max(((a[i] - b[i]).norm() / b[i].norm()).item() for i in range(b.shape[0]))


def big_check(fla, q, k, v, slopes, tag=None):
    """fla's output and final state on heads 0 and H - 1 of a timed call, against float64 on those heads
    (the reference on those two heads alone, so any size fla runs can be checked)."""
    t, h, d = q.shape[1], q.shape[2], q.shape[3]
    o, s = fla(q, k, v, g_gamma=-slopes, scale=1.0, output_final_state=True)
    sel = [0, h - 1]
    o2, s2 = o[0][:, sel].transpose(0, 1).contiguous(), s[0][sel].contiguous()
    del o, s
    torch.cuda.empty_cache()
    ref_o, ref_s = reference(*(x[:, :, sel].contiguous() for x in (q, k, v)), slopes[sel])
    print(f"RESULT bigcheck {tag or f'fla T={t} H={h} D={d}'} heads=0,{h - 1} "
          f"output_rel={rel(o2, ref_o.transpose(0, 1)):.3e} state_rel={rel(s2, ref_s):.3e}", flush=True)


# The most elements a tensor of fla's call may hold and come out right (2026-12-04, H200, fla at bc3b101: right at
# T = 262,144, H = 64, D = 128, which is 2^31 elements, wrong at 2^33)
FLA_MAX_ELEMENTS = 1 << 31


def head_groups(t, h, d):
    """Heads a call for a shape fla gets wrong as one call (t h d > FLA_MAX_ELEMENTS): the largest divisor g of h with
    t g d within the limit; None where one call is right, or where no group of heads fits."""
    if t * h * d <= FLA_MAX_ELEMENTS:
        return None
    return next((g for g in range(h - 1, 0, -1) if h % g == 0 and t * g * d <= FLA_MAX_ELEMENTS), None)


def grouped(fla, t, h, d, g, slopes, bench, dev="cuda"):
    """fla on a shape it gets wrong as one call, the way a user can get it right: h / g calls of g heads each, on
    inputs made per group (contiguous, as a caller would hold them). Prints `RESULT fla-grouped T= H= D= groups=
    ms= tokens_per_s=` (bench: the timer, over all h / g calls) and checks the first and the last group's calls
    (`RESULT bigcheck fla-grouped ...`, heads 0 and g - 1 of each: the shape's heads 0 and h - 1 among them)."""
    n = h // g
    parts = [tuple(torch.empty(1, t, g, d, device=dev, dtype=torch.bfloat16).uniform_(-1, 1) for _ in range(3))
             for _ in range(n)]
    sl = [slopes[i * g:(i + 1) * g].contiguous() for i in range(n)]

    def run():
        for (q, k, v), s in zip(parts, sl):
            fla(q, k, v, g_gamma=-s, scale=1.0, output_final_state=True)
    ms = bench(run)
    print(f"RESULT fla-grouped T={t} H={h} D={d} groups={n}x{g} ms={ms:.3f} tokens_per_s={t / (ms / 1e3):.4g}",
          flush=True)
    for i in sorted({0, n - 1}):
        q, k, v = parts[i]
        big_check(fla, q, k, v, sl[i], tag=f"fla-grouped T={t} H={h} D={d} group={i}")
    del parts


def time_fla(fla, t, h, d, slopes, bench, check=True, suffix=""):
    """One shape of fla as the benchmarks time it: one call on fresh [1, T, H, D] bf16 inputs (`RESULT fla ...`,
    suffix appended; bench: the timer), that call's own output against float64 when check (big_check), and, where one
    call holds more than FLA_MAX_ELEMENTS a tensor, fla in calls of fewer heads too (grouped, always checked)."""
    torch.cuda.empty_cache()
    q, k, v = (torch.empty(1, t, h, d, device="cuda", dtype=torch.bfloat16).uniform_(-1, 1) for _ in range(3))
    ms = bench(lambda: fla(q, k, v, g_gamma=-slopes, scale=1.0, output_final_state=True))
    print(f"RESULT fla T={t} H={h} D={d} ms={ms:.3f} tokens_per_s={t / (ms / 1e3):.4g}{suffix}", flush=True)
    if check:
        big_check(fla, q, k, v, slopes)
    del q, k, v
    torch.cuda.empty_cache()
    if g := head_groups(t, h, d):
        grouped(fla, t, h, d, g, slopes, bench)


def main():
    shapes = [tuple(int(x) for x in s.split("x")) for s in
              os.environ.get("SHAPES", "65536x64x128,262144x64x128,1048576x64x128,1048576x8x128").split(",")]
    heads = list(dict.fromkeys(h for _, h, _ in shapes))
    if len(heads) > 1:
        # one process per head count (see the module's comment); the first one also checks fla
        status = 0
        for i, h in enumerate(heads):
            env = dict(os.environ, SHAPES=",".join(f"{t}x{hh}x{d}" for t, hh, d in shapes if hh == h),
                       FLA_BENCH_CHECK="1" if i == 0 else "0")
            status |= subprocess.run([sys.executable, os.path.abspath(__file__)], env=env).returncode
        sys.exit(status)
    chunk_simple_gla = import_fla()
    dev = "cuda"
    print("fla_bench on", torch.cuda.get_device_name(0), "torch", torch.__version__, "triton", triton.__version__)

    # tune at this process's head count first (fla keeps the choice of its first call)
    h0, d0 = shapes[0][1], shapes[0][2]
    q, k, v = (torch.empty(1, 8192, h0, d0, device=dev, dtype=torch.bfloat16).uniform_(-1, 1) for _ in range(3))
    chunk_simple_gla(q, k, v, g_gamma=-minimax_slopes(h0).to(dev), scale=1.0, output_final_state=True)
    torch.cuda.synchronize()
    del q, k, v

    if os.environ.get("FLA_BENCH_CHECK", "1") == "1":
        # correctness of fla's bf16 forward on fresh random inputs
        torch.manual_seed(0)
        t, h, d = 8192, 4, 128
        q, k, v = (torch.rand(1, t, h, d, device=dev) * 2 - 1 for _ in range(3))
        q, k, v = q.bfloat16(), k.bfloat16(), v.bfloat16()
        slopes = minimax_slopes(h).to(dev)
        o, s = chunk_simple_gla(q, k, v, g_gamma=-slopes, scale=1.0, output_final_state=True)
        ref_o, ref_s = reference(q, k, v, slopes)
        err_o = ((o[0].double() - ref_o).norm() / ref_o.norm()).item()
        err_s = ((s[0].double() - ref_s).norm() / ref_s.norm()).item()
        print(f"RESULT flacheck T={t} H={h} D={d} bf16 output relative error {err_o:.3e}, final state {err_s:.3e}")

    for (t, h, d) in shapes:
        time_fla(chunk_simple_gla, t, h, d, minimax_slopes(h).to(dev),
                 lambda fn: triton.testing.do_bench(fn, warmup=50, rep=300, return_mode="median"))


if __name__ == "__main__":
    main()
