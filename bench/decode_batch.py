#!/usr/bin/env python3
"""The batch step of many short sequences on one GPU, kernel-level (no Java on the device machine).

Loads lightning_batch.ptx (built from gpu-worker/src/main/cuda/lightning_batch.cu by build-ptx.sh)
through ctypes on libcuda, as engine/cuda/CudaBatchStep does through JCuda: the same kernel names,
the same argument struct (LightningBatchArgs, checked against the module's layout kernel), the same
launch shape and shared-memory size. Then

  1. correctness: random cases (N = 1/7/1000, H = 3 grouped, Dk != Dv, Dv odd, Dk > 128, elu1/relu
     normalized, 0/1/3/64/130 tokens mixed, permuted sparse slots, every dtype) against a float64
     torch recurrence, through the register kernels and the staged ones (S in shared memory) alike;
     o poisoned with NaN first; untouched slots must stay bit-identical; two steps against one over
     the concatenated tokens (also staged steps against a register one);
  2. timing with CUDA events (median and best of 10): the decode step (1 token per sequence, H = 8,
     D = 128, BF16, states resident), register and staged kernels alternately, against a torch copy
     of the same bytes in the same run (read + write, the floor; median against median, best against
     best), before and after; 1 to 8 tokens a sequence; 100K sequences x 64 tokens; the 1M-sequence
     case through host memory, measured in pieces; normalized elu1 at 20,000 sequences x 64 tokens, timed,
     and repeated from the same states to count the elements whose bytes differ between steps;
  3. variants: other builds of the same source (-D: CTAs an SM, cache hints, out-of-place writes),
     each checked and timed against the shipped module, which runs first and last.

Usage: python3 decode_batch.py PTX [OUT_DIR]
       python3 decode_batch.py --build-variants DIR   (here, with nvcc: the variant PTX files the
       variants section loads from DECODE_VARIANT_PTX=DIR, so the device spends no time building)
"""
import ctypes
import json
import math
import os
import struct
import sys
import time


def variant_builds():
    """(file stem, label, nvcc flags, out of place) of the variant builds the variants section compares."""
    return [
        ("staged-min8", "staged, 8 CTAs an SM (64 registers)", "-DBATCH_STAGED_MIN_BLOCKS=8", False),
        ("staged-min10-u1", "staged, 10 CTAs an SM (48 registers, 12 B spilled), rows unrolled 1",
         "-DBATCH_STAGED_MIN_BLOCKS=10 -DBATCH_STAGED_UNROLL=1", False),
        ("staged-store-cs", "staged, stores with the evict-first hint (st.global.cs)", "-DBATCH_STAGED_STORE_CS", False),
        ("staged-load-ef", "staged, loads with the L2 evict-first policy", "-DBATCH_STAGED_EVICT_FIRST", False),
        ("staged-out-of-place", "staged, new states written to a second store (not in place; bench only)",
         "-DBATCH_OUT_OF_PLACE", True),
    ]


if len(sys.argv) > 2 and sys.argv[1] == "--build-variants":
    src_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gpu-worker", "src", "main", "cuda")
    os.makedirs(sys.argv[2], exist_ok=True)
    for stem, label, flags, _ in variant_builds():
        out = os.path.join(sys.argv[2], stem + ".ptx")
        cmd = f"nvcc -ptx -arch=compute_80 -O3 -DBATCH_BF16_ONLY {flags} -I {src_dir} {src_dir}/lightning_batch.cu -o {out}"
        print(cmd, flush=True)
        if os.system(cmd) != 0:
            sys.exit(1)
    sys.exit(0)

import torch

PTX = sys.argv[1]
OUT = sys.argv[2] if len(sys.argv) > 2 else "."
LOG = open(os.path.join(OUT, "decode_batch.log"), "w")
RESULTS = {}


def log(*a):
    s = " ".join(str(x) for x in a)
    print(s, flush=True)
    LOG.write(s + "\n")
    LOG.flush()


# ---------------------------------------------------------------- the driver API through ctypes
cu = ctypes.CDLL("libcuda.so.1")


def check(status, what):
    if status != 0:
        name = ctypes.c_char_p()
        cu.cuGetErrorName(status, ctypes.byref(name))
        raise RuntimeError(f"{what}: CUDA error {status} {name.value}")


torch.zeros(1, device="cuda")  # makes torch's primary context current on this thread
ctx = ctypes.c_void_p()
check(cu.cuCtxGetCurrent(ctypes.byref(ctx)), "cuCtxGetCurrent")
assert ctx.value, "no current CUDA context"
log(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
cu.cuLaunchKernel.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]

# LightningBatchArgs: 9 pointers, then count, heads, headsQ, headsK, headsV, dk, dv, tilesPerCta, group,
# featureMap, normalize (ints), scale, eps (floats), reserved (int)
FMT = "<9Q11i2fi"
NAMES = ["q", "k", "v", "o", "slopes", "states", "norms", "offsets", "slots", "count", "heads", "headsQ", "headsK",
         "headsV", "dk", "dv", "tilesPerCta", "group", "featureMap", "normalize", "scale", "eps", "reserved"]
SIZES = [8] * 9 + [4] * 14


class Module:
    """One build of lightning_batch.cu: loaded, its argument layout checked, its launch shape read."""

    def __init__(self, path, label):
        self.label = label
        self.module = ctypes.c_void_p()
        self.funcs = {}
        with open(path, "rb") as f:
            image = f.read() + b"\0"
        t0 = time.time()
        check(cu.cuModuleLoadData(ctypes.byref(self.module), ctypes.c_char_p(image)), "cuModuleLoadData " + path)
        out = torch.zeros(64, dtype=torch.int32, device="cuda")
        self.launch("lightning_batch_args_layout", 1, 1, 0, struct.pack("<Q", out.data_ptr()))
        shp = torch.zeros(16, dtype=torch.int32, device="cuda")
        self.launch("lightning_batch_shapes", 1, 1, 0, struct.pack("<Q", shp.data_ptr()))
        torch.cuda.synchronize()
        layout = out.tolist()[: len(NAMES) + 1]
        want = [struct.calcsize(FMT)] + [sum(SIZES[:i]) for i in range(len(NAMES))]
        self.bv, self.threads, self.group, self.chunk, self.row_groups, self.staged_tokens = shp.tolist()[:6]
        log(f"module {label}: loaded (PTX JIT) in {time.time() - t0:.2f} s; args layout "
            f"{'matches' if layout == want else f'MISMATCH {layout}, expected {want}'}; BV={self.bv} "
            f"threads={self.threads} group={self.group} chunk={self.chunk} rowGroups={self.row_groups} "
            f"staged for sequences of <= {self.staged_tokens} tokens")
        assert layout == want

    def fn(self, name):
        if name not in self.funcs:
            f = ctypes.c_void_p()
            check(cu.cuModuleGetFunction(ctypes.byref(f), self.module, name.encode()), "cuModuleGetFunction " + name)
            if name.endswith("_staged"):   # as BatchModule.function: the largest shared-memory carveout
                check(cu.cuFuncSetAttribute(f, 9, 100), "cuFuncSetAttribute carveout " + name)
            self.funcs[name] = f
        return self.funcs[name]

    def describe(self, name, smem):
        """Registers, local memory and CTAs an SM of one kernel at a launch's shared memory."""
        f = self.fn(name)
        regs, local, ctas = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        check(cu.cuFuncGetAttribute(ctypes.byref(regs), 4, f), "NUM_REGS")
        check(cu.cuFuncGetAttribute(ctypes.byref(local), 3, f), "LOCAL_SIZE_BYTES")
        check(cu.cuOccupancyMaxActiveBlocksPerMultiprocessor(ctypes.byref(ctas), f, self.threads, ctypes.c_size_t(smem)),
              "occupancy")
        return f"{name}: {regs.value} registers, {local.value} B local, {smem} B shared, {ctas.value} CTAs an SM"

    def launch(self, name, grid, block, smem, args, stream=None):
        buf = ctypes.create_string_buffer(args, len(args))
        params = (ctypes.c_void_p * 1)(ctypes.cast(buf, ctypes.c_void_p).value)
        s = torch.cuda.current_stream().cuda_stream if stream is None else stream
        check(cu.cuLaunchKernel(self.fn(name), grid, 1, 1, block, 1, 1, smem, ctypes.c_void_p(s),
                                ctypes.cast(params, ctypes.c_void_p), None), "launch " + name)

    def kernel(self, spec, q, max_tokens, mode=None):
        """Kernel name and shared bytes; mode None: what CudaBatchStep picks (staged for rows <= 8 and
        sequences of at most staged_tokens tokens); "register" / "staged" force one; "_cs" the
        register kernel with evict-first loads and stores."""
        group = max(1, min(self.group, max_tokens))
        rg = self.row_groups
        rows = 4 if spec.dk <= 4 * rg else 8 if spec.dk <= 8 * rg else 16
        staged = rows <= 8 and (0 < self.staged_tokens and max_tokens <= self.staged_tokens if mode is None
                                else mode == "staged")
        smem = 4 * (group * (2 * ((spec.dk + 3) & ~3) + self.bv + rg * self.bv) + self.chunk
                    + (rows * rg * self.bv if staged else 0))
        name = f"lightning_batch_step_{TYPE[q.dtype]}_r{rows}" + ("_staged" if staged else "_cs" if mode == "_cs" else "")
        return name, smem, group

    def step(self, spec, q, k, v, o, states, norms, offsets, slots, max_tokens, mode=None, stream=None):
        """What CudaBatchStep.run launches (mode: see kernel)."""
        n = slots.numel()
        tiles = (spec.dv + self.bv - 1) // self.bv
        tiles_per_cta = tiles if spec.normalize else 1
        blocks = n * spec.h * (tiles // tiles_per_cta)
        name, smem, group = self.kernel(spec, q, max_tokens, mode)
        args = struct.pack(FMT, q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), spec.slopes.data_ptr(),
                           states.data_ptr(), norms.data_ptr() if norms is not None else 0, offsets.data_ptr(),
                           slots.data_ptr(), n, spec.h, spec.hq, spec.hk, spec.hv, spec.dk, spec.dv, tiles_per_cta,
                           group, spec.phi, 1 if spec.normalize else 0, spec.scale, spec.eps, 0)
        self.launch(name, blocks, self.threads, smem, args, stream)
        return name


TYPE = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}


def minimax_slopes(h):
    def pow2(n):
        return [2 ** (-8 * (i + 1) / n) for i in range(n)]
    if h & (h - 1) == 0:
        return pow2(h)
    p = 1 << (h.bit_length() - 1)
    return pow2(p) + pow2(2 * p)[0::2][: h - p]


class Spec:
    def __init__(self, hq, hk, hv, dk, dv, phi=0, normalize=False, scale=0.75, eps=1e-5):
        self.hq, self.hk, self.hv, self.dk, self.dv = hq, hk, hv, dk, dv
        self.h = max(hq, hk, hv)
        self.phi, self.normalize, self.scale, self.eps = phi, normalize, scale, eps
        self.slopes = torch.tensor(minimax_slopes(self.h), dtype=torch.float32, device="cuda")

    def __str__(self):
        return (f"H={self.h}({self.hq},{self.hk},{self.hv}) Dk={self.dk} Dv={self.dv} phi={self.phi}"
                f"{' normalized' if self.normalize else ''}")


MOD = None   # the shipped build, set below


def step(*args, **kw):
    return MOD.step(*args, **kw)


def phi64(x, code):
    if code == 1:
        return torch.where(x > 0, x + 1, torch.exp(x))
    if code == 2:
        return torch.clamp(x, min=0)
    return x


def reference(spec, q, k, v, states, norms, offsets, slots):
    """float64 recurrence, all sequences at once, padded to the longest; returns o, S and z of the slots."""
    n = slots.numel()
    lengths = (offsets[1:] - offsets[:-1]).long()
    L = int(lengths.max())
    T = q.shape[0]
    idx = (offsets[:-1].long()[:, None] + torch.arange(L, device="cuda")[None, :]).clamp(max=max(T - 1, 0))
    mask = torch.arange(L, device="cuda")[None, :] < lengths[:, None]
    hmap = lambda hx: torch.arange(spec.h, device="cuda") // (spec.h // hx)
    Q = phi64(q.double()[idx][:, :, hmap(spec.hq)], spec.phi)
    K = phi64(k.double()[idx][:, :, hmap(spec.hk)], spec.phi)
    V = v.double()[idx][:, :, hmap(spec.hv)]
    S = states[slots.long()].double()
    Z = norms[slots.long()].double() if spec.normalize else None
    lam = torch.exp(-spec.slopes.double())
    o = torch.zeros(T, spec.h, spec.dv, dtype=torch.float64, device="cuda")
    for t in range(L):
        m = mask[:, t]
        kt, vt, qt = K[:, t], V[:, t], Q[:, t]
        S = torch.where(m[:, None, None, None], lam[None, :, None, None] * S + kt[..., :, None] * vt[..., None, :], S)
        num = torch.einsum("nhi,nhij->nhj", qt, S)
        if spec.normalize:
            Z = torch.where(m[:, None, None], lam[None, :, None] * Z + kt, Z)
            ot = spec.scale * num / ((qt * Z).sum(-1) + spec.eps)[..., None]
        else:
            ot = spec.scale * num
        o[idx[:, t][m]] = ot[m]
    return o, S, Z


def rel(a, b):
    a = a.double()
    b = b.double()
    return float((a - b).norm() / b.norm())


def random_case(spec, n, lengths, dtype, seed, store_slots=None):
    g = torch.Generator(device="cuda").manual_seed(seed)
    counts = torch.tensor(lengths, device="cuda")[torch.randint(len(lengths), (n,), generator=g, device="cuda")]
    offsets = torch.zeros(n + 1, dtype=torch.int32, device="cuda")
    offsets[1:] = torch.cumsum(counts, 0).int()
    T = int(offsets[-1])
    store_slots = store_slots or 2 * n + 5
    slots = torch.randperm(store_slots, generator=g, device="cuda")[:n].int()
    q = (torch.rand(T, spec.hq, spec.dk, generator=g, device="cuda") * 2 - 1).to(dtype)
    k = (torch.rand(T, spec.hk, spec.dk, generator=g, device="cuda") * 2 - 1).to(dtype)
    v = (torch.rand(T, spec.hv, spec.dv, generator=g, device="cuda") * 2 - 1).to(dtype)
    states = torch.rand(store_slots, spec.h, spec.dk, spec.dv, generator=g, device="cuda") * 4 - 2
    norms = torch.rand(store_slots, spec.h, spec.dk, generator=g, device="cuda") * 4 + 0.5
    return q, k, v, offsets, slots, states, norms, int(counts.max())


def check_case(label, spec, n, lengths, dtype, seed, modes=(None,)):
    """One random case against the float64 reference, through each kernel mode on a fresh copy of the store."""
    q, k, v, offsets, slots, states0, norms0, maxt = random_case(spec, n, lengths, dtype, seed)
    o_ref, S_ref, Z_ref = reference(spec, q, k, v, states0, norms0, offsets, slots)
    ok_all = True
    for mode in modes:
        states, norms = states0.clone(), norms0.clone()
        o = torch.full((q.shape[0], spec.h, spec.dv), float("nan"), dtype=dtype, device="cuda")
        name = step(spec, q, k, v, o, states, norms, offsets, slots, maxt, mode)
        torch.cuda.synchronize()
        e_o = rel(o, o_ref)
        e_s = rel(states[slots.long()], S_ref)
        e_z = rel(norms[slots.long()], Z_ref) if spec.normalize else 0.0
        untouched = torch.ones(states.shape[0], dtype=torch.bool, device="cuda")
        untouched[slots.long()] = False
        same = bool(torch.equal(states[untouched], states0[untouched]))
        if spec.normalize:
            same &= bool(torch.equal(norms[untouched], norms0[untouched]))
        finite = bool(torch.isfinite(o.float()).all())
        lim_o = 1e-5 if dtype == torch.float32 else 2e-3 if dtype == torch.float16 else 6e-3
        ok = e_o < lim_o and e_s < 1e-5 and e_z < 1e-5 and same and finite
        log(f"  {'PASS' if ok else 'FAIL'} {label}: {spec} N={n} tokens={q.shape[0]} {TYPE[dtype]} [{name}] "
            f"o {e_o:.2e} (limit {lim_o:.0e}) S {e_s:.2e} z {e_z:.2e} untouched-same={same} all-written={finite}")
        ok_all &= ok
    return ok_all


def check_two_steps(label, spec, n, dtype, seed, lengths=(1, 3, 64), two=None, one=None):
    """Tokens a then b in two steps against the concatenation in one (float32 kernel: to rounding); two
    and one: the kernel modes of the two steps and of the one (see Module.kernel)."""
    q1, k1, v1, off1, slots, states, norms, m1 = random_case(spec, n, list(lengths), dtype, seed)
    q2, k2, v2, off2, _, _, _, m2 = random_case(spec, n, list(lengths), dtype, seed + 1)
    s_two, z_two = states.clone(), norms.clone()
    o1 = torch.empty(q1.shape[0], spec.h, spec.dv, dtype=dtype, device="cuda")
    o2 = torch.empty(q2.shape[0], spec.h, spec.dv, dtype=dtype, device="cuda")
    step(spec, q1, k1, v1, o1, s_two, z_two, off1, slots, m1, two)
    step(spec, q2, k2, v2, o2, s_two, z_two, off2, slots, m2, two)
    parts = {"q": [], "k": [], "v": [], "o": []}
    counts = []
    for i in range(n):
        a0, a1, b0, b1 = int(off1[i]), int(off1[i + 1]), int(off2[i]), int(off2[i + 1])
        for key, x1, x2 in (("q", q1, q2), ("k", k1, k2), ("v", v1, v2), ("o", o1, o2)):
            parts[key] += [x1[a0:a1], x2[b0:b1]]
        counts.append(a1 - a0 + b1 - b0)
    q, k, v, o_two = (torch.cat(parts[x]) for x in ("q", "k", "v", "o"))
    off = torch.zeros(n + 1, dtype=torch.int32, device="cuda")
    off[1:] = torch.cumsum(torch.tensor(counts, device="cuda"), 0).int()
    o = torch.empty_like(o_two)
    step(spec, q, k, v, o, states, norms, off, slots, max(counts), one)
    torch.cuda.synchronize()
    e_o, e_s = rel(o_two, o), rel(s_two, states)
    e_z = rel(z_two, norms) if spec.normalize else 0.0
    ok = e_o < 1e-5 and e_s < 1e-5 and e_z < 1e-5
    log(f"  {'PASS' if ok else 'FAIL'} {label}: two steps against one, {spec} N={n}: o {e_o:.2e} S {e_s:.2e} z {e_z:.2e}")
    return ok


def median_ms(fn_, runs, warm=1):
    """Median, best and worst of `runs` timed calls (CUDA events) after `warm` untimed ones."""
    for _ in range(warm):
        fn_()
    times = []
    for _ in range(runs):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn_()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2], times[0], times[-1]


def copy_reference(states, label):
    """The ceiling: a device-to-device copy of the same bytes (torch copy_, read + write), median and best
    of 10 in this run; and, for information, an in-place pass over them (mul_ by 1: each element read
    and written at the same place, as the step does)."""
    nbytes = states.numel() * 4
    dst = torch.empty_like(states)
    cms, clo, chi = median_ms(lambda: dst.copy_(states), 10, 2)
    del dst
    torch.cuda.empty_cache()
    ims, ilo, _ = median_ms(lambda: states.mul_(1.0), 10, 2)
    copy = {"median": 2 * nbytes / cms / 1e9, "best": 2 * nbytes / clo / 1e9}   # bytes per ms / 1e9 = TB/s
    log(f"  {label}: torch copy of the same {nbytes / 1e9:.1f} GB (read + write): median {cms:.2f} ms (best {clo:.2f}, "
        f"worst {chi:.2f}) = {copy['median']:.3f} TB/s (best {copy['best']:.3f}); in place (mul_ by 1): median "
        f"{ims:.2f} ms (best {ilo:.2f}) = {2 * nbytes / ims / 1e9:.3f} TB/s")
    RESULTS.setdefault("copy", []).append([label, cms, clo, ims, ilo])
    return copy


def share(nbytes, ms, lo, copy):
    """State traffic of a timed step against the copy: median against median, best against best."""
    bw = 2 * nbytes / ms / 1e9
    return bw, bw / copy["median"], 2 * nbytes / lo / 1e9 / copy["best"]


def section(title, body):
    log("")
    log("== " + title)
    try:
        body()
    except Exception as e:  # one section's failure must not cost the others
        import traceback
        log("  SECTION FAILED:", repr(e))
        log(traceback.format_exc())
        RESULTS.setdefault("failed", []).append(title)
        torch.cuda.empty_cache()


def correctness():
    """Every case through the register and the staged kernels (staged: rows <= 8, i.e. Dk <= 128, forced
    also for many tokens, which the host does not pick), and through the host's choice."""
    ok = True
    B, F, H = torch.bfloat16, torch.float32, torch.float16
    both = ("register", "staged")
    ok &= check_case("N=1 plain 64 tokens", Spec(3, 3, 3, 16, 24), 1, [64], F, 1, both)
    ok &= check_case("N=7 plain mixed", Spec(3, 3, 3, 16, 24), 7, [1, 3, 64], F, 2, both)
    ok &= check_case("N=7 GQA elu1 normalized", Spec(3, 1, 1, 24, 40, 1, True), 7, [1, 3, 64], B, 3, both)
    ok &= check_case("N=7 grouped values relu", Spec(1, 1, 3, 40, 8, 2), 7, [1, 3, 64], B, 4, both)
    ok &= check_case("N=7 relu normalized f32", Spec(3, 3, 3, 16, 24, 2, True), 7, [1, 3, 64], F, 5, both)
    ok &= check_case("N=1000 decode", Spec(3, 3, 3, 16, 24), 1000, [1], B, 6, both)
    ok &= check_case("N=1000 mixed GQA elu1 normalized", Spec(3, 1, 1, 8, 12, 1, True), 1000, [1, 3, 64], B, 7, both)
    ok &= check_case("N=7 Dk, Dv odd (scalar path) f16", Spec(3, 3, 3, 33, 37), 7, [1, 3, 64], H, 8, both)
    ok &= check_case("N=7 Dk, Dv odd, 3 tokens staged (padded rows)", Spec(3, 3, 3, 33, 37, 1, True), 7, [1, 3], F, 16,
                     both)
    ok &= check_case("N=500 decode Dk, Dv odd, elu1 normalized, empty sequences", Spec(3, 3, 3, 33, 37, 1, True), 500,
                     [0, 1], F, 17, both)
    ok &= check_case("N=7 Dk=40 relu normalized, 130 tokens (3 z chunks)", Spec(3, 3, 3, 40, 70, 2, True), 7, [1, 130],
                     F, 20, both)
    ok &= check_case("N=7 Dk=130 (16 rows a thread) relu normalized, 130 tokens (3 z chunks)",
                     Spec(3, 3, 3, 130, 70, 2, True), 7, [1, 130], F, 9)
    ok &= check_case("N=7 Dk=256 Dv=256 elu1 f32", Spec(2, 2, 2, 256, 256, 1), 7, [1, 3, 64], F, 10)
    ok &= check_case("bench shape decode H=8 D=128", Spec(8, 8, 8, 128, 128, 0, False, 1.0), 4096, [1], B, 11,
                     (None, "register"))
    ok &= check_case("bench shape 64 tokens H=8 D=128", Spec(8, 8, 8, 128, 128, 0, False, 1.0), 256, [64], B, 12, both)
    ok &= check_case("bench shape decode, normalized elu1", Spec(8, 8, 8, 128, 128, 1, True, 1.0), 1024, [1], B, 13,
                     (None, "register"))
    ok &= check_case("bench shape decode f16", Spec(8, 8, 8, 128, 128, 0, False, 1.0), 512, [1], H, 18, (None,))
    ok &= check_two_steps("f32 GQA elu1 normalized", Spec(3, 1, 1, 24, 40, 1, True), 100, F, 14)
    ok &= check_two_steps("f32 plain", Spec(3, 3, 3, 16, 24), 100, F, 15)
    ok &= check_two_steps("f32 decode H=8 D=128, staged twice against register once", Spec(8, 8, 8, 128, 128), 100, F,
                          19, (1,), "staged", "register")
    ok &= check_two_steps("f32 elu1 normalized Dk, Dv odd, staged twice against register once",
                          Spec(3, 3, 3, 33, 37, 1, True), 100, F, 21, (1, 3), "staged", "register")
    RESULTS["correct"] = bool(ok)
    log("correctness:", "ALL PASS" if ok else "SOME FAILED")


D = 128
HEADS = 8
STATE_BYTES = HEADS * D * D * 4


def decode_timing():
    spec = Spec(8, 8, 8, D, D, 0, False, 1.0)
    free, total = torch.cuda.mem_get_info()
    log(f"  device memory free {free / 1e9:.1f} GB of {total / 1e9:.1f} GB")
    bf = torch.bfloat16
    n = 65536
    states = torch.randn(n, HEADS, D, D, device="cuda")   # 34.4 GB
    nbytes = states.numel() * 4
    q, k, v = (torch.randn(n, HEADS, D, device="cuda").to(bf) for _ in range(3))
    o = torch.empty_like(q)
    for mode in ("register", "staged"):
        name, smem, _ = MOD.kernel(spec, q, 1, mode)
        log("  " + MOD.describe(name, smem))
    copy = copy_reference(states, "before")
    RESULTS["copy_tbs"] = copy["median"]
    offsets = torch.arange(n + 1, dtype=torch.int32, device="cuda")
    for order in ("in order", "permuted"):
        slots = (torch.randperm(n, device="cuda") if order == "permuted" else torch.arange(n, device="cuda")).int()
        for mode in ("register", "staged", "register", "staged"):
            ms, lo, hi = median_ms(lambda: step(spec, q, k, v, o, states, None, offsets, slots, 1, mode), 10, 2)
            bw, frac, best = share(nbytes, ms, lo, copy)
            log(f"  decode N={n} slots {order}, {mode}: median {ms:.2f} ms (best {lo:.2f}, worst {hi:.2f}); state traffic "
                f"{bw:.3f} TB/s = {frac:.3f} of the copy (best against best {best:.3f}); {n / ms * 1e3 / 1e6:.2f} M tokens/s")
            RESULTS.setdefault(f"decode_65536_{order.replace(' ', '_')}_{mode}", []).append([ms, lo, frac, best])
    copy2 = copy_reference(states, "after")
    RESULTS["copy_after_tbs"] = copy2["median"]
    # a few tokens a sequence: where the staged kernels stop paying (each token reads and writes the
    # slice in shared memory); N = 16,384, 8.6 GB of states
    del q, k, v, o
    torch.cuda.empty_cache()
    n2 = 16384
    sub = states[:n2]
    for t in (1, 2, 4, 8):
        q, k, v = (torch.randn(n2 * t, HEADS, D, device="cuda").to(bf) for _ in range(3))
        o = torch.empty_like(q)
        offsets = (torch.arange(n2 + 1, device="cuda") * t).int()
        slots = torch.arange(n2, device="cuda").int()
        line = []
        for mode in ("register", "staged"):
            ms, lo, hi = median_ms(lambda: step(spec, q, k, v, o, sub, None, offsets, slots, t, mode), 10, 2)
            line.append(f"{mode} {ms:.3f} ms ({2 * n2 * STATE_BYTES / ms / 1e9:.2f} TB/s)")
            RESULTS[f"decode_16384_x{t}_{mode}_ms"] = ms
        log(f"  N={n2} x {t} tokens, slots in order: " + ", ".join(line))
        del q, k, v, o
    del states, sub
    torch.cuda.empty_cache()
    for n in (1024, 8192):
        states = torch.randn(n, HEADS, D, D, device="cuda")
        q, k, v = (torch.randn(n, HEADS, D, device="cuda").to(bf) for _ in range(3))
        o = torch.empty_like(q)
        offsets = torch.arange(n + 1, dtype=torch.int32, device="cuda")
        slots = torch.arange(n, device="cuda").int()
        line = []
        for mode in ("register", "staged"):
            ms, lo, hi = median_ms(lambda: step(spec, q, k, v, o, states, None, offsets, slots, 1, mode), 20, 3)
            line.append(f"{mode} {ms * 1e3:.1f} us ({2 * n * STATE_BYTES / ms / 1e9:.2f} TB/s)")
            RESULTS[f"decode_{n}_{mode}_ms"] = ms
        log(f"  decode N={n}, slots in order: " + ", ".join(line))
        del states, q, k, v, o
    torch.cuda.empty_cache()
    # the largest resident store in this test: 131072 slots, 68.7 GB, slots permuted as the host stages them (sorted)
    n = 131072
    states = torch.randn(n, HEADS, D, D, device="cuda")
    q, k, v = (torch.randn(n, HEADS, D, device="cuda").to(bf) for _ in range(3))
    o = torch.empty_like(q)
    offsets = torch.arange(n + 1, dtype=torch.int32, device="cuda")
    slots = torch.arange(n, device="cuda").int()
    for mode in ("register", "staged"):
        ms, lo, hi = median_ms(lambda: step(spec, q, k, v, o, states, None, offsets, slots, 1, mode), 5, 1)
        bw, frac, best = share(n * STATE_BYTES, ms, lo, copy)
        log(f"  decode N={n} (68.7 GB of states resident), slots in order, {mode}: {ms:.2f} ms (best {lo:.2f}); "
            f"{bw:.3f} TB/s = {frac:.3f} of the copy; {n / ms * 1e3 / 1e6:.2f} M tokens/s")
        RESULTS[f"decode_131072_{mode}"] = [ms, lo, frac, best]
    del states, q, k, v, o
    torch.cuda.empty_cache()


def streamed_timing():
    """1M sequences x 1 token cannot be resident (512 GB of states): measure one piece of 8192 states
    moved in from pinned host memory, stepped, and moved back, and the copies alone."""
    spec = Spec(8, 8, 8, D, D, 0, False, 1.0)
    n = 8192
    host = torch.empty((n, HEADS, D, D), pin_memory=True)   # 4.3 GB pinned
    host.copy_(torch.randn(n, HEADS, D, D, device="cuda"))
    dev = torch.empty(n, HEADS, D, D, device="cuda")
    q, k, v = (torch.randn(n, HEADS, D, device="cuda").to(torch.bfloat16) for _ in range(3))
    o = torch.empty_like(q)
    offsets = torch.arange(n + 1, dtype=torch.int32, device="cuda")
    slots = torch.arange(n, device="cuda").int()
    nbytes = host.numel() * 4
    h2d, _, _ = median_ms(lambda: dev.copy_(host, non_blocking=True), 5, 1)
    d2h, _, _ = median_ms(lambda: host.copy_(dev, non_blocking=True), 5, 1)
    ker, _, _ = median_ms(lambda: step(spec, q, k, v, o, dev, dev, offsets, slots, 1), 5, 1)

    def piece():
        dev.copy_(host, non_blocking=True)
        step(spec, q, k, v, o, dev, dev, offsets, slots, 1)
        host.copy_(dev, non_blocking=True)

    whole, _, _ = median_ms(piece, 5, 1)
    log(f"  piece of {n} states ({nbytes / 1e9:.2f} GB): in {h2d:.1f} ms ({nbytes / h2d / 1e6:.1f} GB/s), step "
        f"{ker:.2f} ms, out {d2h:.1f} ms ({nbytes / d2h / 1e6:.1f} GB/s); in + step + out serial {whole:.1f} ms")
    per_token = whole / n
    both = max(h2d, d2h) + ker   # in and out overlapped on two copy engines, the bus's duplex bound
    log(f"  1M sequences x 1 token streamed through host memory: serial {1e6 * per_token / 1e3:.1f} s = "
        f"{n / whole * 1e3 / 1e3:.1f} K tokens/s; with in and out overlapped at most {n / both * 1e3 / 1e3:.1f} K tokens/s")
    RESULTS["stream_piece_ms"] = whole
    RESULTS["stream_h2d_gbs"] = nbytes / h2d / 1e6
    RESULTS["stream_d2h_gbs"] = nbytes / d2h / 1e6
    del host, dev, q, k, v, o
    torch.cuda.empty_cache()


def long_timing():
    """100K sequences x 64 tokens, states resident: 51.2 GB of states, 13.1 GB each of q, k, v, o."""
    spec = Spec(8, 8, 8, D, D, 0, False, 1.0)
    n, t = 100_000, 64
    states = torch.randn(n, HEADS, D, D, device="cuda")
    q, k, v = (torch.randn(n * t, HEADS, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    o = torch.empty_like(q)
    offsets = (torch.arange(n + 1, device="cuda") * t).int()
    slots = torch.randperm(n, device="cuda").int()
    ms, lo, hi = median_ms(lambda: step(spec, q, k, v, o, states, states, offsets, slots, t), 5, 1)
    state_traffic = 2 * n * STATE_BYTES
    token_traffic = 4 * n * t * HEADS * D * 2
    flops = 4.0 * n * t * HEADS * D * D   # 2 FMAs per state element per token (update and output)
    log(f"  N={n} x {t} tokens: {ms:.1f} ms (min {lo:.1f}, max {hi:.1f}); {n * t / ms * 1e3 / 1e6:.1f} M tokens/s; "
        f"{(state_traffic + token_traffic) / ms / 1e9:.2f} TB/s of traffic; {flops / ms / 1e9:.1f} TFLOP/s fp32 "
        f"(2 FMAs per state element per token)")
    RESULTS["long_ms"] = ms
    RESULTS["long_mtok_s"] = n * t / ms * 1e3 / 1e6
    RESULTS["long_tflops"] = flops / ms / 1e9
    # a quick sample check at this size: the first 64 sequences against float64
    sub = 64
    s0 = torch.randn(sub, HEADS, D, D, device="cuda")
    q_, k_, v_ = q[: sub * t], k[: sub * t], v[: sub * t]
    o_ = torch.empty_like(q_)
    off_ = offsets[: sub + 1].clone()
    sl_ = torch.arange(sub, device="cuda").int()
    o_ref, S_ref, _ = reference(spec, q_, k_, v_, s0, s0, off_, sl_)
    step(spec, q_, k_, v_, o_, s0, s0, off_, sl_, t)
    torch.cuda.synchronize()
    log(f"  check of 64 sequences x 64 tokens at this shape: o {rel(o_, o_ref):.2e}, S {rel(s0, S_ref):.2e}")
    del states, q, k, v, o
    torch.cuda.empty_cache()


def norm_timing():
    """Normalized elu1 at a table run's shape: 20,000 sequences x 64 tokens, H=8, D=128, BF16, states resident
    (10.5 GB of S). The step's time (median of 5), then its bytes over 8 steps from the same states and inputs:
    how many o, S and z elements differ from the first step's (the denominators' sum order; 0 expected)."""
    spec = Spec(8, 8, 8, D, D, 1, True, 1.0)
    n, t = 20_000, 64
    s0 = torch.randn(n, HEADS, D, D, device="cuda")
    z0 = torch.rand(n, HEADS, D, device="cuda") * 4 + 0.5
    q, k, v = (torch.randn(n * t, HEADS, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    o = torch.empty_like(q)
    offsets = (torch.arange(n + 1, device="cuda") * t).int()
    slots = torch.randperm(n, device="cuda").int()
    states, norms = s0.clone(), z0.clone()
    name = MOD.kernel(spec, q, t)[0]
    ms, lo, hi = median_ms(lambda: step(spec, q, k, v, o, states, norms, offsets, slots, t), 5, 1)
    log(f"  {name}: N={n} x {t} tokens elu1 normalized: median {ms:.2f} ms (best {lo:.2f}, worst {hi:.2f}); "
        f"{n * t / ms * 1e3 / 1e6:.1f} M tokens/s")
    RESULTS.setdefault("norm_ms", []).append([ms, lo, hi])
    first = None
    diffs = []
    for r in range(8):
        states.copy_(s0)
        norms.copy_(z0)
        step(spec, q, k, v, o, states, norms, offsets, slots, t)
        torch.cuda.synchronize()
        now = (o.view(torch.int16), states.view(torch.int32), norms.view(torch.int32))
        if first is None:
            first = tuple(x.clone() for x in now)
            continue
        # counted 2^28 elements at a time: one comparison of all of S widened to int64 asked for 21 GB
        diffs.append([sum(int(torch.count_nonzero(x != y)) for x, y in zip(a.reshape(-1).split(1 << 28),
                                                                             b.reshape(-1).split(1 << 28)))
                      for a, b in zip(first, now)])
        del now
    log(f"  repeated from the same states, elements differing from the first step (o, S, z) per step: {diffs}")
    RESULTS["norm_repeat_diffs"] = diffs
    del s0, z0, states, norms, q, k, v, o, first
    torch.cuda.empty_cache()


def variants():
    """Builds of the same source with other settings (-D), prebuilt by --build-variants into
    DECODE_VARIANT_PTX (or built here with nvcc), each checked and timed on the decode step (slots in
    order, as the host stages them) against the shipped module on one 65,536-slot store; the shipped
    one first and last, to see the drift of the run."""
    global MOD
    pre = os.environ.get("DECODE_VARIANT_PTX")
    src = os.path.join(os.path.dirname(os.path.abspath(PTX)), "lightning_batch.cu")
    mods = []
    for stem, label, flags, out_of_place in variant_builds():
        ptx = os.path.join(pre, stem + ".ptx") if pre else os.path.join("/tmp", "batch_" + stem + ".ptx")
        if not pre:
            if not os.path.exists(src) or os.system("command -v nvcc >/dev/null") != 0:
                log("  no prebuilt PTX, no nvcc or no source here: skipped")
                return
            if os.system(f"nvcc -ptx -arch=compute_80 -O3 -DBATCH_BF16_ONLY {flags} -I {os.path.dirname(src)} {src} -o {ptx}"):
                log("  build failed:", stem)
                continue
        try:
            m = Module(ptx, stem + ": " + label)
        except Exception as e:
            log(f"  {stem}: cannot load: {e!r}")
            continue
        m.out_of_place = out_of_place
        m.force = "register" if stem.startswith("reg") else "staged"
        mods.append(m)
    shipped = MOD
    MOD.out_of_place = False
    runs = [(MOD, "register"), (MOD, "staged")] + [(m, m.force) for m in mods] + [(MOD, "register"), (MOD, "staged")]
    spec = Spec(8, 8, 8, D, D, 0, False, 1.0)
    norm = Spec(8, 8, 8, D, D, 1, True, 1.0)
    n = 65536
    states = torch.randn(n, HEADS, D, D, device="cuda")
    second = None
    q, k, v = (torch.randn(n, HEADS, D, device="cuda").to(torch.bfloat16) for _ in range(3))
    o = torch.empty_like(q)
    offsets = torch.arange(n + 1, dtype=torch.int32, device="cuda")
    in_order = torch.arange(n, device="cuda").int()
    nbytes = states.numel() * 4
    copy = copy_reference(states, "variants")
    for m, mode in runs:
        MOD = m
        name, smem, _ = m.kernel(spec, q, 1, mode)
        log("  " + m.describe(name, smem))
        ok = True
        if not m.out_of_place:
            ok &= check_case(f"{m.label} decode", spec, 1024, [1], torch.bfloat16, 21, (mode,))
            ok &= check_case(f"{m.label} 1..64 tokens elu1 normalized", norm, 256, [1, 3, 64], torch.bfloat16, 22, (mode,))
            ok &= check_case(f"{m.label} 0..1 tokens, empty sequences", spec, 1000, [0, 1], torch.bfloat16, 23, (mode,))
            ok &= check_case(f"{m.label} Dk, Dv odd", Spec(3, 3, 3, 33, 37), 500, [1, 3], torch.bfloat16, 24, (mode,))
        elif second is None:
            second = torch.empty_like(states)
        out = second if m.out_of_place else None
        ms, lo, hi = median_ms(lambda: m.step(spec, q, k, v, o, states, out, offsets, in_order, 1, mode), 10, 2)
        bw, frac, best = share(nbytes, ms, lo, copy)
        log(f"  {m.label} [{mode}], slots in order: decode N={n} median {ms:.2f} ms (best {lo:.2f}, worst {hi:.2f}), "
            f"{bw:.3f} TB/s = {frac:.3f} of the copy (best against best {best:.3f})"
            f"{'' if ok else ' (FAILED its checks)'}{' (not checked: writes elsewhere)' if m.out_of_place else ''}")
        RESULTS.setdefault(f"variant {m.label} [{mode}]", []).append([ms, lo, frac, best, ok])
    MOD = shipped
    del states, q, k, v, o, second
    torch.cuda.empty_cache()


# DECODE_SECTIONS picks sections (comma list; default all): correctness, decode, variants, stream, long, norm
SECTIONS = os.environ.get("DECODE_SECTIONS", "correctness,decode,variants,stream,long,norm").split(",")
MOD = Module(PTX, "shipped (lightning_batch.ptx)")
for key, title, body in (
        ("correctness", "correctness against float64", correctness),
        ("decode", "decode: 1 token per sequence, H=8, D=128, BF16, states resident", decode_timing),
        ("variants", "launch-shape variants built on the device", variants),
        ("stream", "1M sequences: states streamed through host memory", streamed_timing),
        ("long", "100K sequences x 64 tokens, H=8, D=128, BF16, states resident", long_timing),
        ("norm", "20,000 sequences x 64 tokens elu1 normalized, H=8, D=128, BF16: time and repeatability", norm_timing)):
    if key in SECTIONS:
        section(title, body)
log("")
log("RESULTS " + json.dumps(RESULTS))
with open(os.path.join(OUT, "decode_batch.json"), "w") as f:
    json.dump(RESULTS, f, indent=1)
