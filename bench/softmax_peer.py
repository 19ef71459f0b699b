#!/usr/bin/env python3
"""The GPU softmax attention kernels (gpu-worker/src/main/cuda/softmax.cu) on a GPU, without Java:
checked against float64 torch math on awkward shapes, then timed side by side with PyTorch's
scaled_dot_product_attention backends (flash, cuDNN, memory-efficient) in the same process.

The kernels are loaded from the committed PTX (softmax.ptx) through the driver API (ctypes on
libcuda), the way the Java host loads them, and launched with the one SoftmaxArgs struct, whose
layout is first checked against the module's softmax_args_layout kernel.

  python3 bench/softmax_peer.py [--ptx PATH] [--skip-check] [--skip-bench] [--lens 8192,32768,131072]
      [--hopper-variant LABEL=PTX[:SUFFIX]]... [--probe LABEL=PTX[:SUFFIX]]... [--sdpa flash,cudnn,efficient]
      [--variant-lens 8192 --always base]

--hopper-variant adds a Hopper module (kernels softmax_sm90_forward_<type>_k128_v128<SUFFIX>, launch
shapes from its softmax_sm90_launch_shapes) that is checked (the cases its kernels take) and timed
beside the default one, labelled LABEL: e.g. the kernels of an earlier commit, or the experimental
variants softmax_sm90.cu builds with -DSOFTMAX_SM90_VARIANTS.

Prints CHECK lines (max error over the tolerance; ok/FAIL) and RESULT lines (ms, TFLOP/s with
causal FLOPs = 2 T^2 Hq (Dk + Dv) / 2).
"""
import argparse
import ctypes
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
RES = os.path.join(HERE, "..", "gpu-worker", "src", "main", "resources", "dev", "lightning", "attention", "engine",
                   "cuda")
DEFAULT_PTX = os.path.join(RES, "softmax.ptx")
DEFAULT_PTX90 = os.path.join(RES, "softmax_sm90a.ptx")
LOG2E = 1.4426950408889634

# struct SoftmaxArgs (softmax_args.cuh): 8-byte fields, then 4-byte ones
FIELDS = [("q", "Q"), ("k", "Q"), ("v", "Q"), ("o", "Q"), ("lse", "Q"), ("qStart", "q"), ("kStart", "q"),
          ("window", "q"), ("nq", "i"), ("nk", "i"), ("headsQ", "i"), ("headsK", "i"), ("dk", "i"), ("dv", "i"),
          ("scaleLog2", "f"), ("reserved", "i")]
FMT = "<" + "".join(f for _, f in FIELDS)


class Driver:
    def __init__(self, ptx_path, ptx90_path=None, variants=(), probes=()):
        self.cu = ctypes.CDLL("libcuda.so.1")
        torch.cuda.init()
        torch.empty(1, device="cuda")  # makes the primary context current on this thread
        self.funcs = {}
        self.mod = self.load(ptx_path)
        self.mod90 = None
        self.shapes90 = None
        # Hopper kernel sets: label -> (module, kernel-name suffix, launch shapes); "" is the default
        self.hopper_sets = {}
        self.active = ""
        if ptx90_path and torch.cuda.get_device_capability() == (9, 0):
            self.mod90 = self.load(ptx90_path)
            self.shapes90 = self.report("softmax_sm90_launch_shapes", 4)
            self.hopper_sets[""] = (self.mod90, "", self.shapes90)
            print(f"Hopper module loaded: shapes {self.shapes90}")
            self.probes = set()
            for spec in list(variants) + list(probes):
                label, rest = spec.split("=", 1)
                if spec in probes:
                    self.probes.add(label)
                path, _, suffix = rest.partition(":")
                mod = self.load(path)
                shapes = self.report("softmax_sm90_launch_shapes", 4, mod)
                self.hopper_sets[label] = (mod, suffix, shapes)
                print(f"Hopper variant {label}: {path} suffix '{suffix}' shapes {shapes}")
        self.shapes = self.report("softmax_launch_shapes", 34)
        want = [struct.calcsize(FMT)] + [struct.calcsize("<" + "".join(f for _, f in FIELDS[:i]))
                                         for i in range(len(FIELDS))]
        for mod in [self.mod] + [m for m, _, _ in self.hopper_sets.values()]:
            if mod is not None:
                layout = self.report("softmax_args_layout", len(FIELDS) + 1, mod)
                if layout != want:
                    raise SystemExit(f"SoftmaxArgs layout differs: module {layout}, script {want}")
        print(f"module loaded: SoftmaxArgs {layout[0]} bytes, layout matches; shapes {self.shapes}")

    def load(self, path):
        data = open(path, "rb").read() + b"\0"
        mod = ctypes.c_void_p()
        self.check(self.cu.cuModuleLoadData(ctypes.byref(mod), ctypes.c_char_p(data)), "cuModuleLoadData " + path)
        return mod

    def check(self, rc, what):
        if rc != 0:
            name = ctypes.c_char_p()
            self.cu.cuGetErrorName(rc, ctypes.byref(name))
            raise RuntimeError(f"{what}: {name.value}")

    def func(self, name):
        hopper = name.startswith("softmax_sm90_")
        key = (self.active if hopper else "", name)
        f = self.funcs.get(key)
        if f is None:
            f = ctypes.c_void_p()
            mod = self.hopper_sets[self.active][0] if hopper else self.mod
            self.check(self.cu.cuModuleGetFunction(ctypes.byref(f), mod, name.encode()), name)
            self.check(self.cu.cuFuncSetAttribute(f, 8, 227 * 1024), "max dynamic smem")  # 8: MAX_DYNAMIC_SHARED
            self.funcs[key] = f
        return f

    def launch(self, name, grid, threads, smem, params):
        stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
        self.check(self.cu.cuLaunchKernel(self.func(name), grid[0], grid[1], 1, threads, 1, 1, smem, stream,
                                          params, None), "launch " + name)

    def report(self, name, n, mod=None):
        """Runs a one-thread report kernel (name(int* out)) of the module (default: the one its name picks)."""
        f = ctypes.c_void_p()
        mod = mod or (self.mod90 if name.startswith("softmax_sm90_") else self.mod)
        self.check(self.cu.cuModuleGetFunction(ctypes.byref(f), mod, name.encode()), name)
        out = torch.zeros(n, dtype=torch.int32, device="cuda")
        p = ctypes.c_void_p(out.data_ptr())
        params = (ctypes.c_void_p * 1)(ctypes.addressof(p))
        stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
        self.check(self.cu.cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, stream, params, None), "launch " + name)
        torch.cuda.synchronize()
        return out.tolist()

    def padded(self, d):
        for w in self.shapes[:3]:
            if d <= w:
                return w
        raise ValueError(d)

    def forward(self, q, k, v, q_start, k_start, scale, window, o=None, lse=None, hopper=True):
        """q [nq, Hq, Dk], k [nk, Hk, Dk], v [nk, Hk, Dv] -> o [nq, Hq, Dv] f32, lse [nq, Hq] f32."""
        nq, hq, dk = q.shape
        nk, hk, dv = v.shape
        if o is None:  # poisoned, so that an element the kernel leaves unwritten fails the checks
            o = torch.full((nq, hq, dv), float("nan"), dtype=torch.float32, device="cuda")
            lse = torch.full((nq, hq), float("nan"), dtype=torch.float32, device="cuda")
        g = hq // hk
        if q.dtype == torch.float32:
            name = "softmax_forward_f32"
            threads, rows, keys = self.shapes[30], self.shapes[31], self.shapes[32]
            smem = 4 * (rows * dk + keys * (dk + 1) + keys * dv)
        elif hopper and self.shapes90 and 64 < dk <= 128 and 64 < dv <= 128:
            _, suffix, shapes = self.hopper_sets[self.active]
            threads, rows, smem = shapes[:3]
            name = f"softmax_sm90_forward_{'bf16' if q.dtype == torch.bfloat16 else 'f16'}_k128_v128{suffix}"
        else:
            pk, pv = self.padded(dk), self.padded(dv)
            i, j = self.shapes[:3].index(pk), self.shapes[:3].index(pv)
            threads, rows, smem = self.shapes[3 + 3 * (3 * i + j): 6 + 3 * (3 * i + j)]
            name = f"softmax_forward_{'bf16' if q.dtype == torch.bfloat16 else 'f16'}_k{pk}_v{pv}"
        args = struct.pack(FMT, q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), lse.data_ptr(), q_start,
                           k_start, window, nq, nk, hq, hk, dk, dv, scale * LOG2E, 0)
        buf = ctypes.create_string_buffer(args, len(args))
        params = (ctypes.c_void_p * 1)(ctypes.addressof(buf))
        grid = ((nq * g + rows - 1) // rows, hk)
        if nq > 0:
            self.launch(name, grid, threads, smem, params)
        self.last = name
        return o, lse


def reference(q, k, v, q_start, k_start, scale, window, rows=None):
    """float64: o [n, Hq, Dv], lse [n, Hq] for the query rows `rows` (all when None)."""
    qd, kd, vd = q.double(), k.double(), v.double()
    if rows is not None:
        qd = qd[rows]
        tq = torch.as_tensor(rows, device=q.device) + q_start
    else:
        tq = torch.arange(q.shape[0], device=q.device) + q_start
    g = q.shape[1] // k.shape[1]
    kd = kd.repeat_interleave(g, dim=1)
    vd = vd.repeat_interleave(g, dim=1)
    s = torch.einsum("thd,jhd->htj", qd, kd) * scale
    tj = torch.arange(k.shape[0], device=q.device) + k_start
    vis = tj[None, :] <= tq[:, None]
    if window > 0:
        vis &= tj[None, :] > tq[:, None] - window
    s = s.masked_fill(~vis[None], float("-inf"))
    lse = torch.logsumexp(s, dim=-1)  # [h, t]
    w = torch.exp(s - lse[..., None]).nan_to_num(0.0)
    o = torch.einsum("htj,jhd->thd", w, vd)
    return o, lse.transpose(0, 1)


def merge(o_a, lse_a, o_b, lse_b):
    """The float32 merge of SoftmaxPartial.merge: partials over disjoint keys."""
    m = torch.maximum(lse_a, lse_b)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    ea, eb = torch.exp(lse_a - m), torch.exp(lse_b - m)
    lse = m + torch.log(ea + eb)
    wa = torch.exp(lse_a - lse).nan_to_num(0.0)
    wb = torch.exp(lse_b - lse).nan_to_num(0.0)
    return wa[..., None] * o_a + wb[..., None] * o_b, lse


def check_case(drv, name, t, hq, hk, dk, dv, dtype, window=0, amp=1.0, q_start=0, k_start=0, nk=None, rows=None,
               seed=0, hopper_only=False):
    ok = True
    takes = drv.shapes90 and dtype != torch.float32 and 64 < dk <= 128 and 64 < dv <= 128
    if hopper_only and not takes:
        return True
    for hopper in ((True,) if hopper_only else (True, False)) if takes else (False,):
        ok &= check_one(drv, name, t, hq, hk, dk, dv, dtype, window, amp, q_start, k_start, nk, rows, seed, hopper)
    return ok


def check_one(drv, name, t, hq, hk, dk, dv, dtype, window, amp, q_start, k_start, nk, rows, seed, hopper):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    nk = t if nk is None else nk
    q = ((torch.rand(t, hq, dk, device="cuda", generator=gen) * 2 - 1) * amp).to(dtype)
    k = ((torch.rand(nk, hk, dk, device="cuda", generator=gen) * 2 - 1) * amp).to(dtype)
    v = (torch.rand(nk, hk, dv, device="cuda", generator=gen) * 2 - 1).to(dtype)
    scale = 1.0 / math.sqrt(dk)
    o, lse = drv.forward(q, k, v, q_start, k_start, scale, window, hopper=hopper)
    torch.cuda.synchronize()
    name = (f"[wgmma{' ' + drv.active if drv.active else ''}] " if "sm90" in drv.last else "") + name
    ro, rl = reference(q, k, v, q_start, k_start, scale, window, rows)
    if rows is not None:
        o, lse = o[rows], lse[rows]
    finite = bool(torch.isfinite(o).all()) and not bool(torch.isnan(lse).any())
    # Tolerances. The scores' float32 rounding moves each weight by about eps32 * kappa, kappa =
    # scale * sum_d |q_d k_d| (large for amplified inputs, for every float32 implementation);
    # 16-bit inputs add P's rounding to the input type before the P V product (bf16: 2^-9, f16:
    # 2^-12 relative, per weight).
    kappa = scale * float((q.float().abs().amax() * k.float().abs().amax())) * dk
    eps_p = {torch.float32: 0.0, torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}[dtype]
    o_tol = 1e-5 + 4 * 2.0 ** -24 * kappa + eps_p
    vis = torch.isfinite(rl)
    l_tol = 1e-5 * (1 + rl[vis].abs().max().item() if vis.any() else 1) + 4 * 2.0 ** -24 * kappa
    o_err = (o.double() - ro).abs().max().item() if o.numel() else 0.0
    lse_err = (lse.double()[vis] - rl[vis]).abs().max().item() if vis.any() else 0.0
    empty_ok = bool((lse[~vis] == float("-inf")).all()) and bool((o[~vis] == 0).all())
    ok = finite and empty_ok and o_err <= o_tol and lse_err <= l_tol
    print(f"CHECK {name:<44} o_err {o_err:.2e} (tol {o_tol:.1e}) lse_err {lse_err:.2e} (tol {l_tol:.1e}) "
          f"finite {finite} empty-rows {empty_ok}: {'ok' if ok else 'FAIL'}", flush=True)
    return ok


def check_split(drv, dtype, t=1000, hq=8, hk=2, dk=128, dv=96, pieces=(0, 137, 400, 401, 1000)):
    """Key blocks merged = the whole call (one query block over all keys)."""
    gen = torch.Generator(device="cuda").manual_seed(7)
    q = (torch.rand(t, hq, dk, device="cuda", generator=gen) * 2 - 1).to(dtype)
    k = (torch.rand(t, hk, dk, device="cuda", generator=gen) * 2 - 1).to(dtype)
    v = (torch.rand(t, hk, dv, device="cuda", generator=gen) * 2 - 1).to(dtype)
    scale = 0.3
    o_w, l_w = drv.forward(q, k, v, 0, 0, scale, 0)
    o_m = torch.zeros_like(o_w)
    l_m = torch.full_like(l_w, float("-inf"))
    for a, b in zip(pieces, pieces[1:]):
        o_p, l_p = drv.forward(q, k[a:b].contiguous(), v[a:b].contiguous(), 0, a, scale, 0)
        o_m, l_m = merge(o_m, l_m, o_p, l_p)
    torch.cuda.synchronize()
    err = (o_m - o_w).abs().max().item()
    lerr = (l_m - l_w).abs().max().item()
    # 16-bit inputs: P is rounded to the input type relative to each block's own maximum, so the
    # split and the whole round differently, at P's rounding level
    tol = 1e-5 + {torch.float32: 0.0, torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}[dtype]
    ok = err < tol and lerr < 1e-5 * (1 + l_w.abs().max().item())
    print(f"CHECK split-merge {drv.last:<38} o diff {err:.2e} lse diff {lerr:.2e}: {'ok' if ok else 'FAIL'}",
          flush=True)
    return ok


def run_checks(drv, hopper_only=False):
    """Every case on every kernel family that takes it; hopper_only: only the Hopper kernels' cases."""
    ok = True
    for dtype in ((torch.bfloat16, torch.float16) if hopper_only else (torch.bfloat16, torch.float16, torch.float32)):
        tn = str(dtype).split(".")[1]
        for (t, hq, hk, dk, dv, w) in [(1, 1, 1, 64, 64, 0), (63, 2, 1, 128, 128, 0), (63, 8, 8, 48, 80, 0),
                                       (1000, 8, 1, 128, 64, 0), (1000, 6, 2, 33, 17, 0), (1000, 8, 8, 256, 256, 0),
                                       (1000, 4, 2, 128, 256, 100), (1000, 16, 2, 64, 128, 1),
                                       (1000, 6, 3, 100, 72, 0), (1000, 8, 8, 128, 128, 37), (200, 1, 1, 128, 128, 0),
                                       (1000, 8, 2, 96, 120, 0)]:
            ok &= check_case(drv, f"{tn} T={t} Hq={hq} Hk={hk} Dk={dk} Dv={dv} W={w}", t, hq, hk, dk, dv, dtype, w,
                             hopper_only=hopper_only)
        ok &= check_case(drv, f"{tn} x100 T=1000 Hq=8 Hk=2 D=128", 1000, 8, 2, 128, 128, dtype, amp=100.0,
                         hopper_only=hopper_only)
        ok &= check_case(drv, f"{tn} block q@3000 k@2500 nk=700 W=300", 400, 8, 2, 64, 96, dtype, 300,
                         q_start=3000, k_start=2500, nk=700, hopper_only=hopper_only)
        ok &= check_case(drv, f"{tn} block q@0 k@500 (sees none)", 300, 4, 4, 64, 64, dtype, 0, q_start=0,
                         k_start=500, nk=100, hopper_only=hopper_only)
        rows = sorted(set(torch.randint(0, 40000, (48,), generator=torch.Generator().manual_seed(3)).tolist()
                          + [0, 39999]))
        ok &= check_case(drv, f"{tn} T=40000 Hq=8 Hk=2 D=128 sampled rows", 40000, 8, 2, 128, 128, dtype,
                         rows=rows, hopper_only=hopper_only)
        ok &= check_split(drv, dtype)
    print("CHECKS", "all ok" if ok else "SOME FAILED", flush=True)
    return ok


def timed(fn, runs):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def bench(drv, lens, sdpa=("flash", "cudnn", "efficient"), every_lens=None, every=("",)):
    """Times ours and SDPA's backends; at lengths outside every_lens (None: all) only the kernel sets
    labelled in `every` ("" = the default Hopper set) and not the portable kernels."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    hq, hk, d = 64, 8, 128
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, cuDNN {torch.backends.cudnn.version()}")
    print("causal, bf16, Hq=64, Hk=8, Dk=Dv=128; TFLOP/s = 2 T^2 Hq (Dk + Dv) / 2 / time; median of runs")
    for t in lens:
        flops = 2.0 * t * t * hq * (d + d) / 2
        runs = 10 if t <= 32768 else 3
        q = torch.randn(t, hq, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(t, hk, d, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(t, hk, d, device="cuda", dtype=torch.bfloat16)
        o = torch.empty(t, hq, d, dtype=torch.float32, device="cuda")
        lse = torch.empty(t, hq, dtype=torch.float32, device="cuda")
        runs_ours = [(label, True) for label in drv.hopper_sets] + [("", False)]
        if every_lens is not None and t not in every_lens:
            runs_ours = [(label, hopper) for label, hopper in runs_ours if hopper and label in every]
        for label, hopper in runs_ours:
            drv.active = label
            ms = timed(lambda: drv.forward(q, k, v, 0, 0, 1 / math.sqrt(d), 0, o, lse, hopper=hopper), runs)
            kind = ("wgmma" + (" " + label if label else "")) if "sm90" in drv.last else "mma.sync"
            if label in getattr(drv, "probes", ()):
                kind += " PROBE, unchecked"
            print(f"RESULT T={t} ours({kind}, o f32 + lse) {ms:9.2f} ms {flops / ms / 1e9:7.1f} TFLOP/s", flush=True)
        drv.active = ""
        drv.forward(q, k, v, 0, 0, 1 / math.sqrt(d), 0, o, lse)  # o of the default kernels, for the comparison
        # SDPA wants [B, H, T, D]
        qs, ks, vs = (x.transpose(0, 1).unsqueeze(0) for x in (q, k, v))
        ours_o = o[:, :, :].transpose(0, 1).unsqueeze(0)
        for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                         ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
            if name not in sdpa:
                continue
            for gqa in ("enable_gqa", "repeat"):
                try:
                    with sdpa_kernel([be]):
                        if gqa == "enable_gqa":
                            fn = lambda: F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, enable_gqa=True)
                        else:
                            kr = ks.repeat_interleave(hq // hk, dim=1)
                            vr = vs.repeat_interleave(hq // hk, dim=1)
                            fn = lambda: F.scaled_dot_product_attention(qs, kr, vr, is_causal=True)
                        ref = fn()
                        ms = timed(fn, runs)
                    diff = (ref.float() - ours_o).abs().max().item()
                    print(f"RESULT T={t} sdpa-{name}({gqa}) {ms:9.2f} ms {flops / ms / 1e9:7.1f} TFLOP/s "
                          f"(max |o - ours| {diff:.1e})", flush=True)
                    break
                except Exception as e:  # a backend without a kernel for this case
                    print(f"RESULT T={t} sdpa-{name}({gqa}) unavailable: {str(e).splitlines()[0][:150]}", flush=True)
        del q, k, v, o, lse
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ptx", default=DEFAULT_PTX)
    ap.add_argument("--ptx90", default=DEFAULT_PTX90)
    ap.add_argument("--skip-check", action="store_true")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--lens", default="8192,32768,131072")
    ap.add_argument("--hopper-variant", action="append", default=[], metavar="LABEL=PTX[:SUFFIX]")
    ap.add_argument("--probe", action="append", default=[], metavar="LABEL=PTX[:SUFFIX]",
                    help="a Hopper set timed like --hopper-variant but never checked: a measuring probe whose "
                         "results are wrong by design (e.g. softmax_sm90.cu's SOFTMAX_SM90_PROBE_* builds)")
    ap.add_argument("--sdpa", default="flash,cudnn,efficient", help="SDPA backends timed beside ours")
    ap.add_argument("--variant-lens", default=None,
                    help="lengths at which every kernel set is timed; at the others only the default set and "
                         "those named by --always (to keep a device call short)")
    ap.add_argument("--always", default="", help="labels of Hopper sets timed at every length")
    ap.add_argument("--variant-checks-only", action="store_true",
                    help="check only the --hopper-variant sets (the default modules are those of a checked commit)")
    a = ap.parse_args()
    drv = Driver(a.ptx, a.ptx90, a.hopper_variant, a.probe)
    ok = True
    if not a.skip_check:
        ok = True if a.variant_checks_only else run_checks(drv)
        for label in drv.hopper_sets:
            if label and label not in getattr(drv, "probes", ()):
                drv.active = label
                ok &= run_checks(drv, hopper_only=True)
        drv.active = ""
        print("CHECKS (all kernel sets)", "all ok" if ok else "SOME FAILED", flush=True)
    if not a.skip_bench:
        every_lens = None if a.variant_lens is None else [int(x) for x in a.variant_lens.split(",")]
        bench(drv, [int(x) for x in a.lens.split(",")], a.sdpa.split(","), every_lens, [""] + a.always.split(","))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
