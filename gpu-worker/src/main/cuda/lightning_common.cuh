// Helpers both tensor-core kernel families use (tensor_core.cuh: mma.sync; hopper.cuh: wgmma):
// 16-bit element traits, the PTX wrappers (ldmatrix, cp.async, mbarriers, named barriers), the
// feature map on packed pairs, and the hi + lo split of decayed values for the state update.
// Include after <cuda_bf16.h> and <cuda_fp16.h>; needs sm_80 or newer.
#pragma once

#include "lightning_args.cuh"

namespace lightning {

// ------------------------------ element type traits ---------------------------------------
template <typename T> struct Ops;

template <> struct Ops<__nv_bfloat16> {
    static __device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
    static __device__ __forceinline__ __nv_bfloat16 from_f(float x) { return __float2bfloat16_rn(x); }
    // Two floats -> one 32-bit register, first argument in the low half (lower column index).
    static __device__ __forceinline__ unsigned pack(float lo, float hi) {
        __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<unsigned*>(&v);
    }
    // Inverse of pack (exact).
    static __device__ __forceinline__ void unpack(unsigned u, float& lo, float& hi) {
        lo = __uint_as_float(u << 16);
        hi = __uint_as_float(u & 0xffff0000u);
    }
    // c += A * B, m16n8k16, A row-major (4 regs), B column-major (2 regs), f32 accumulators.
    static __device__ __forceinline__ void mma(float* c, const unsigned* a, unsigned b0, unsigned b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};

template <> struct Ops<__half> {
    static __device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
    static __device__ __forceinline__ __half from_f(float x) { return __float2half_rn(x); }
    static __device__ __forceinline__ unsigned pack(float lo, float hi) {
        __half2 v = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<unsigned*>(&v);
    }
    static __device__ __forceinline__ void unpack(unsigned u, float& lo, float& hi) {
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&u));
        lo = f.x;
        hi = f.y;
    }
    static __device__ __forceinline__ void mma(float* c, const unsigned* a, unsigned b0, unsigned b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};

// ------------------------------ PTX wrappers ----------------------------------------------
__device__ __forceinline__ unsigned smem_u32(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// All shared-memory addresses below are 32-bit shared-window addresses (computed once from
// smem_u32 and then advanced with 32-bit adds; the constant parts fold into the instructions).
//
// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i, register i receives
// matrix i with lane l holding row l/4, columns 2(l%4), 2(l%4)+1. The "memory" clobbers keep the
// compiler from moving these reads across plain shared-memory stores.
__device__ __forceinline__ void ldsm_x4(unsigned* r, unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr) : "memory");
}
// Same, each 8x8 matrix transposed: lane l receives rows 2(l%4), 2(l%4)+1 of column l/4.
__device__ __forceinline__ void ldsm_x4_t(unsigned* r, unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr) : "memory");
}
// Copies `bytes` (16 or 0) bytes and zero-fills the rest of the 16.
__device__ __forceinline__ void cp_async16_zfill(unsigned sdst, const void* gsrc, unsigned bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sdst), "l"(gsrc), "r"(bytes) : "memory");
}
// mbarriers (sm_80+) hand each stage between the load warps and the compute warps.
__device__ __forceinline__ void mbar_init(unsigned bar, unsigned count) {
    asm volatile("mbarrier.init.shared.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(unsigned bar) {
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared.b64 st, [%0];\n}\n" ::"r"(bar) : "memory");
}
// The barrier sees one arrival once every cp.async this thread has issued so far has landed.
__device__ __forceinline__ void cp_async_arrive(unsigned bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];\n" ::"r"(bar) : "memory");
}
// Waits until the barrier's phase of the given parity has completed.
__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("{\n.reg .pred done;\nWAIT:\nmbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
                 "@!done bra WAIT;\n}\n" ::"r"(bar), "r"(parity) : "memory");
#else
    asm volatile("{\n.reg .pred done;\nWAIT:\nmbarrier.test_wait.parity.shared.b64 done, [%0], %1;\n"
                 "@!done bra WAIT;\n}\n" ::"r"(bar), "r"(parity) : "memory");
#endif
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Wait until at most `pending` of this thread's most recent cp.async groups are still in flight.
__device__ __forceinline__ void cp_async_wait(int pending) {
    if (pending >= 3) asm volatile("cp.async.wait_group 3;\n" ::: "memory");
    else if (pending == 2) asm volatile("cp.async.wait_group 2;\n" ::: "memory");
    else if (pending == 1) asm volatile("cp.async.wait_group 1;\n" ::: "memory");
    else asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

__device__ __forceinline__ bool aligned16(const void* p) {
    return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0;
}

// ------------------------------ the feature map on packed pairs -------------------------
// phi of the two 16-bit elements packed in u (lower element in the low half), with the chip's packed
// 16-bit min, max and add. The float32 form (lightning_args.cuh's lightning_phi on each unpacked
// half, then a rounding to T: for elu1 two max, two min, two non-ftz exponentials with their range
// fix-ups, two adds and a pack; the portable kernels also tested the map code for every pair) held
// the loader warps on the critical path (H200, T = 1M, H = 64:
// elu1 +99% and relu +11% over plain on the Hopper kernels, +150% and +83% on the portable ones,
// with their load-warp wait). Here:
//   relu: max(x, 0) packed, one instruction: exact, the value of the float32 form.
//   elu1: p + e with p = max(x, 0) and n = min(x, 0) packed, e = ex2.approx.ftz(n log2 e) of each
//     half in float32, rounded once into a pair, and one packed add (an FMA with 1): x > 0 gives
//     n = 0, e = 1 exactly and RN(x + 1); x <= 0 gives p = 0 and RN(exp x). So the result is the
//     float32 form's (one rounding of the exact value, up to the approximate exponential's few
//     float32 ulp).
//   The exponential in packed 16-bit form (ex2.approx.bf16x2 / .f16x2 of n log2 e rounded to T)
//   was measured and not kept: no faster on an H200 (elu1 +31.2% against +33.3% with this form,
//   one run), and less accurate: rounding the argument costs up to |x| u relatively, and f16's
//   ex2 more (3.5e-3 at x = -6.2, 7 times the float32 form; bench/cuda/phi_check.cu).
// F32 inputs never come here (the generic kernels keep lightning_phi). FM: the feature map code
// (1 elu1, 2 relu; 0 returns u), a constant.
__device__ __forceinline__ unsigned fma_bf16x2(unsigned a, unsigned b, unsigned c) {
    unsigned d;
    asm("fma.rn.bf16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}
__device__ __forceinline__ unsigned fma_f16x2(unsigned a, unsigned b, unsigned c) {
    unsigned d;
    asm("fma.rn.f16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}
// max(x, 0) and min(x, 0) of both halves (the packed max/min return the non-NaN operand, as fmaxf).
__device__ __forceinline__ unsigned max0_bf16x2(unsigned u) {
    unsigned d;
    asm("max.bf16x2 %0, %1, %2;\n" : "=r"(d) : "r"(u), "r"(0u));
    return d;
}
__device__ __forceinline__ unsigned min0_bf16x2(unsigned u) {
    unsigned d;
    asm("min.bf16x2 %0, %1, %2;\n" : "=r"(d) : "r"(u), "r"(0u));
    return d;
}
__device__ __forceinline__ unsigned max0_f16x2(unsigned u) {
    unsigned d;
    asm("max.f16x2 %0, %1, %2;\n" : "=r"(d) : "r"(u), "r"(0u));
    return d;
}
__device__ __forceinline__ unsigned min0_f16x2(unsigned u) {
    unsigned d;
    asm("min.f16x2 %0, %1, %2;\n" : "=r"(d) : "r"(u), "r"(0u));
    return d;
}
// 2^y with no range fix-ups around the approximation (ftz: results below 2^-126 are far below what a
// 16-bit T keeps next to the sums they enter).
__device__ __forceinline__ float ex2_approx_f32(float y) {
    float e;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(e) : "f"(y));
    return e;
}
// exp of both halves of a packed pair of T values, each in float32, rounded once into a pair.
template <typename T>
__device__ __forceinline__ unsigned exp_pair(unsigned n) {
    constexpr float kLog2e = 1.4426950408889634f;
    float n0, n1;
    Ops<T>::unpack(n, n0, n1);
    return Ops<T>::pack(ex2_approx_f32(n0 * kLog2e), ex2_approx_f32(n1 * kLog2e));
}
constexpr unsigned kBf16x2One = 0x3F803F80u;  // 1.0 in both halves
constexpr unsigned kF16x2One = 0x3C003C00u;

template <typename T, int FM> __device__ __forceinline__ unsigned phi_pair(unsigned u);
template <> __device__ __forceinline__ unsigned phi_pair<__nv_bfloat16, 0>(unsigned u) { return u; }
template <> __device__ __forceinline__ unsigned phi_pair<__half, 0>(unsigned u) { return u; }
template <> __device__ __forceinline__ unsigned phi_pair<__nv_bfloat16, 2>(unsigned u) { return max0_bf16x2(u); }
template <> __device__ __forceinline__ unsigned phi_pair<__half, 2>(unsigned u) { return max0_f16x2(u); }
template <> __device__ __forceinline__ unsigned phi_pair<__nv_bfloat16, 1>(unsigned u) {
    return fma_bf16x2(max0_bf16x2(u), kBf16x2One, exp_pair<__nv_bfloat16>(min0_bf16x2(u)));
}
template <> __device__ __forceinline__ unsigned phi_pair<__half, 1>(unsigned u) {
    return fma_f16x2(max0_f16x2(u), kF16x2One, exp_pair<__half>(min0_f16x2(u)));
}
// phi of one element given by its bits, through the pair form (the low half), so that a path that
// copies element by element maps to the same bits as the 16-byte paths.
template <typename T, int FM>
__device__ __forceinline__ unsigned short phi_bits(unsigned short bits) {
    return (unsigned short)(phi_pair<T, FM>((unsigned)bits) & 0xffffu);
}
template <typename T>
__device__ __forceinline__ unsigned short phi_bits(int featureMap, unsigned short bits) {
    return featureMap == 1 ? phi_bits<T, 1>(bits) : featureMap == 2 ? phi_bits<T, 2>(bits) : bits;
}

// The state update multiplies K^T by V with each token's decay weight w_j = lambda^(m-1-j) put on
// K. w_j k_j is not exact in T, so it goes in as hi + lo (two products). A packed pair of K values
// (tokens j, j+1 of one dk row, the lower token in the low half) is split with the weights of those
// two tokens, prepared once per k-step by PairWeights.
template <typename T> struct PairWeights;
template <typename T>
__device__ __forceinline__ void split_hl(unsigned u, const PairWeights<T>& w, unsigned& hi, unsigned& lo);

// bf16: w = wh + wl with wh = RN(w), wl = RN(w - wh) (both bf16), and four packed bf16 FMAs, each
// rounding once:
//   hi = RN(wh k);  nhi = RN(-wh k) = -hi;  t = wh k - hi (exact: the error of a product is
//   representable);  lo = RN(t + wl k).
// hi + lo is within about 2^-16 of w k (relative), as with a float product split in two, at half
// the instructions.
template <> struct PairWeights<__nv_bfloat16> {
    unsigned wh, nwh, wl;
    __device__ __forceinline__ PairWeights(float w0, float w1) {
        float h0, h1;
        wh = Ops<__nv_bfloat16>::pack(w0, w1);
        Ops<__nv_bfloat16>::unpack(wh, h0, h1);
        wl = Ops<__nv_bfloat16>::pack(w0 - h0, w1 - h1);
        nwh = wh ^ 0x80008000u;
    }
};
template <>
__device__ __forceinline__ void split_hl<__nv_bfloat16>(unsigned u, const PairWeights<__nv_bfloat16>& w,
                                                        unsigned& hi, unsigned& lo) {
    constexpr unsigned kNegZero = 0x80008000u;  // -0 + x = x for every x, +0 included
    hi = fma_bf16x2(w.wh, u, kNegZero);
    const unsigned nhi = fma_bf16x2(w.nwh, u, kNegZero);
    lo = fma_bf16x2(w.wl, u, fma_bf16x2(w.wh, u, nhi));
}
// f16: the product in float, then hi = RN(w k), lo = RN(w k - hi) (f16 weights could underflow).
template <> struct PairWeights<__half> {
    float w0, w1;
    __device__ __forceinline__ PairWeights(float a, float b) : w0(a), w1(b) {}
};
template <>
__device__ __forceinline__ void split_hl<__half>(unsigned u, const PairWeights<__half>& w, unsigned& hi,
                                                 unsigned& lo) {
    using T = __half;
    float x0, x1, h0, h1;
    Ops<T>::unpack(u, x0, x1);
    x0 *= w.w0;
    x1 *= w.w1;
    hi = Ops<T>::pack(x0, x1);  // round to T
    Ops<T>::unpack(hi, h0, h1);
    lo = Ops<T>::pack(x0 - h0, x1 - h1);  // x - hi is exact in float
}

// Named barrier `id` for `count` threads (whole warps). bar.sync is barrier.sync.aligned: every thread taking part
// executes this same instruction (one call site, reached by whole warps).
__device__ __forceinline__ void named_bar_sync(int id, int count) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
// The same barrier where its threads arrive from different places in the code (say one group of warps after its
// reads, another before its writes): barrier.sync without .aligned, the form PTX defines for that. The aligned one
// there is undefined behaviour that happened to work; compute-sanitizer --tool synccheck stopped the wide mma.sync
// forward at it ("Barrier error detected. Divergent thread(s) in block", an H100, 2026-12-07).
__device__ __forceinline__ void named_bar_sync_split(int id, int count) {
    asm volatile("barrier.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

}  // namespace lightning
