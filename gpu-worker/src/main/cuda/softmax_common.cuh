// Device code both softmax kernel families share (softmax.cu: mma.sync and float32; softmax_sm90.cu:
// wgmma): the block geometry (packed rows, visible key ranges), the online softmax step on the
// mma accumulator layout, and the final normalization. See softmax.cu for the math.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math_constants.h>

#include "softmax_args.cuh"
#include "lightning_common.cuh"

namespace softmax {
using lightning::Ops;
using lightning::aligned16;
using lightning::cp_async16_zfill;
using lightning::cp_async_commit;
using lightning::cp_async_wait;
using lightning::ldsm_x4;
using lightning::ldsm_x4_t;
using lightning::smem_u32;

// ------------------------------------------------------------------ geometry shared by both families

// Visible keys of local query t, as local key indices [lo, hi), clamped to the block's nk keys.
// delta = qStart - kStart: local query t is at absolute position kStart + t + delta.
__device__ __forceinline__ int key_hi(const SoftmaxArgs& a, long long delta, long long t) {
    const long long x = t + delta + 1;
    return (int)min(max(x, 0LL), (long long)a.nk);
}
__device__ __forceinline__ int key_lo(const SoftmaxArgs& a, long long delta, long long t) {
    if (a.window <= 0) return 0;
    const long long x = t + delta - a.window + 1;
    return (int)min(max(x, 0LL), (long long)a.nk);
}

// The packed rows of one CTA: R0 .. R0 + valid - 1 of the nq * G rows of key/value head kvh.
struct Block {
    int group;         // G
    int kvh;
    long long r0;
    int valid;
    int lo, hi;        // keys some row sees: [lo, hi)
    int kloMax, khiMin; // keys every row sees: [kloMax, khiMin) (may be empty)
    long long delta;

    __device__ __forceinline__ Block(const SoftmaxArgs& a, int rowsPerCta) {
        group = a.headsQ / a.headsK;
        kvh = blockIdx.y;
        const long long rows = (long long)a.nq * group;
        r0 = (long long)(gridDim.x - 1 - blockIdx.x) * rowsPerCta;
        valid = (int)min((long long)rowsPerCta, rows - r0);
        delta = a.qStart - a.kStart;
        const long long tmin = r0 / group, tmax = (r0 + valid - 1) / group;
        lo = key_lo(a, delta, tmin);
        hi = key_hi(a, delta, tmax);
        kloMax = key_lo(a, delta, tmax);
        khiMin = key_hi(a, delta, tmin);
    }
    __device__ __forceinline__ long long token(int r) const { return (r0 + r) / group; }
    // Offset, in rows of width d, of packed row r in a [nq, Hq, d] tensor.
    __device__ __forceinline__ size_t qRow(const SoftmaxArgs& a, int r) const {
        const long long R = r0 + r;
        return (size_t)(R / group) * a.headsQ + (size_t)kvh * group + (size_t)(R % group);
    }
    __device__ __forceinline__ size_t kvRow(const SoftmaxArgs& a, int j) const {
        return (size_t)j * a.headsK + kvh;
    }
};

__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// lse = ln(sum) from the running maximum m (base-2 units) and sum l; -inf where the row saw no key.
__device__ __forceinline__ float lse_of(float m, float l) {
    return l > 0.f ? (m + __log2f(l)) * 0.69314718055994531f : -CUDART_INF_F;
}

// ------------------------------------------------------------------ the online softmax step

// Keys a thread's two rows do not see ([klo[x], khi[x]) is what row x sees) set to -inf in a key
// tile's scores s (the accumulator layout softmax_step describes), where the tile needs masking.
template <int NT>
__device__ __forceinline__ void mask_scores(float (&s)[NT][4], const int (&klo)[2], const int (&khi)[2], int j0,
                                            bool masked, int lane) {
    if (masked) {
#pragma unroll
        for (int n = 0; n < NT; n++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = j0 + n * 8 + 2 * (lane & 3) + (e & 1);
                const int x = e >> 1;
                if (key < klo[x] || key >= khi[x]) s[n][e] = -CUDART_INF_F;
            }
        }
    }
}

// One key tile on a thread's two rows (x = 0: accumulator row lane/4 of its warp's 16, x = 1: that
// + 8), in the mma accumulator layout both tensor-core families share (s[n][e]: n-tile n of 8 keys,
// e = 0, 1 row x = 0 keys 2 (lane % 4) + e, e = 2, 3 row x = 1): masks the keys a row does not see
// (masked: the tile needs it), updates the running maximum m and sum l, returns in alpha the
// factor exp2(m_old - m_new) by which the output accumulator acc must be rescaled, and leaves the
// tile's weights p = exp2(s scaleLog2 - m) in s, ready to be packed as the A operand of the P V
// product.
// RESCALE: also rescales acc by alpha, row by row (softmax_tile); without it acc is untouched and
// the caller rescales later (softmax_weights, rescale_rows: the warp-specialized Hopper kernel,
// whose P V product of the previous tile is still running on the tensor cores at this point).
template <bool RESCALE, int NT, int DVT>
__device__ __forceinline__ void softmax_step(float (&s)[NT][4], float (&acc)[DVT][4], float (&m)[2], float (&l)[2],
                                             float (&alpha)[2], const int (&klo)[2], const int (&khi)[2], int j0,
                                             bool masked, float scaleLog2, int lane) {
    mask_scores(s, klo, khi, j0, masked, lane);
#pragma unroll
    for (int x = 0; x < 2; x++) {
        float mx = -CUDART_INF_F;
#pragma unroll
        for (int n = 0; n < NT; n++) mx = fmaxf(mx, fmaxf(s[n][2 * x], s[n][2 * x + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float mNew = fmaxf(m[x], mx * scaleLog2);
        const float mUse = mNew == -CUDART_INF_F ? 0.f : mNew;  // a row that saw nothing yet
        alpha[x] = fast_exp2(m[x] - mUse);
        m[x] = mNew;
        float sum = 0.f;
#pragma unroll
        for (int n = 0; n < NT; n++) {
            const float p0 = fast_exp2(fmaf(s[n][2 * x], scaleLog2, -mUse));
            const float p1 = fast_exp2(fmaf(s[n][2 * x + 1], scaleLog2, -mUse));
            s[n][2 * x] = p0;
            s[n][2 * x + 1] = p1;
            sum += p0 + p1;
        }
        l[x] = alpha[x] * l[x] + sum;
        if (RESCALE) {
#pragma unroll
            for (int n = 0; n < DVT; n++) {
                acc[n][2 * x] *= alpha[x];
                acc[n][2 * x + 1] *= alpha[x];
            }
        }
    }
}

template <int NT, int DVT>
__device__ __forceinline__ void softmax_tile(float (&s)[NT][4], float (&acc)[DVT][4], float (&m)[2], float (&l)[2],
                                             const int (&klo)[2], const int (&khi)[2], int j0, bool masked,
                                             float scaleLog2, int lane) {
    float alpha[2];
    softmax_step<true>(s, acc, m, l, alpha, klo, khi, j0, masked, scaleLog2, lane);
}
template <int NT>
__device__ __forceinline__ void softmax_weights(float (&s)[NT][4], float (&m)[2], float (&l)[2], float (&alpha)[2],
                                                const int (&klo)[2], const int (&khi)[2], int j0, bool masked,
                                                float scaleLog2, int lane) {
    float none[1][4];
    softmax_step<false>(s, none, m, l, alpha, klo, khi, j0, masked, scaleLog2, lane);
}

// acc (the thread's two rows of the output accumulator) times alpha (per row).
template <int DVT>
__device__ __forceinline__ void rescale_rows(float (&acc)[DVT][4], const float (&alpha)[2]) {
#pragma unroll
    for (int n = 0; n < DVT; n++) {
        acc[n][0] *= alpha[0];
        acc[n][1] *= alpha[0];
        acc[n][2] *= alpha[1];
        acc[n][3] *= alpha[1];
    }
}

// The end of a CTA: the quad's partial sums, then o = acc / l and lse for the thread's two rows
// (row[x] of the packed block; rows past its end are skipped).
template <int DVT>
__device__ __forceinline__ void finish_rows(const SoftmaxArgs& a, const Block& b, const float (&acc)[DVT][4],
                                           const float (&m)[2], float (&l)[2], const int (&row)[2], int lane) {
#pragma unroll
    for (int x = 0; x < 2; x++) {
        l[x] += __shfl_xor_sync(0xffffffffu, l[x], 1);
        l[x] += __shfl_xor_sync(0xffffffffu, l[x], 2);
        if (row[x] >= b.valid) continue;
        const size_t r = b.qRow(a, row[x]);
        const float inv = l[x] > 0.f ? 1.f / l[x] : 0.f;
        float* o = a.o + r * a.dv;
#pragma unroll
        for (int n = 0; n < DVT; n++) {
            const int col = n * 8 + 2 * (lane & 3);
            if (col < a.dv) o[col] = acc[n][2 * x] * inv;
            if (col + 1 < a.dv) o[col + 1] = acc[n][2 * x + 1] * inv;
        }
        if ((lane & 3) == 0) a.lse[r] = lse_of(m[x], l[x]);
    }
}

// The visible key range [klo, khi) of the thread's two rows (empty past the block's end).
__device__ __forceinline__ void row_ranges(const SoftmaxArgs& a, const Block& b, const int (&row)[2], int (&klo)[2],
                                           int (&khi)[2]) {
#pragma unroll
    for (int x = 0; x < 2; x++) {
        const bool ok = row[x] < b.valid;
        klo[x] = ok ? key_lo(a, b.delta, b.token(row[x])) : 0;
        khi[x] = ok ? key_hi(a, b.delta, b.token(row[x])) : 0;
    }
}

// One 16-byte piece (8 elements of row r at column col) of a swizzled tile, at shared address
// dstAddr (dst: the same place as a generic pointer): cp.async where vec (the row 16-byte aligned,
// d % 8 == 0), else 2-byte loads and a 16-byte store; zeros where !ok (the row past valid, or
// the columns past d).
template <typename RowPtr>
__device__ __forceinline__ void load_piece(unsigned char* dst, unsigned dstAddr, RowPtr rowPtr, int r, int col, bool ok,
                                           int d, bool vec, const void* any) {
    if (vec) {
        cp_async16_zfill(dstAddr, ok ? (const void*)(rowPtr(r) + col) : any, ok ? 16u : 0u);
    } else {
        unsigned short h[8];
        const unsigned short* p = ok ? reinterpret_cast<const unsigned short*>(rowPtr(r)) : nullptr;
#pragma unroll
        for (int e = 0; e < 8; e++) h[e] = (ok && col + e < d) ? p[col + e] : (unsigned short)0;
        uint4 u;
        u.x = h[0] | ((unsigned)h[1] << 16);
        u.y = h[2] | ((unsigned)h[3] << 16);
        u.z = h[4] | ((unsigned)h[5] << 16);
        u.w = h[6] | ((unsigned)h[7] << 16);
        *reinterpret_cast<uint4*>(dst) = u;
    }
}

}  // namespace softmax
