// Causal softmax attention, forward, with the log-sum-exp: the kernels of the GPU softmax backend
// (engine/cuda/CudaSoftmaxBackend). One launch computes one block call (softmax_args.cuh): for
// every query t of the block and query head h, over the keys j of the block visible from t
// (j <= t and, with a window W, j > t - W; positions absolute),
//
//   s_tj = scale q_t . k_j,   lse_t = log sum_j exp(s_tj),   o_t = sum_j exp(s_tj - lse_t) v_j
//
// written as float32 o [nq, Hq, Dv] and lse [nq, Hq]: the partial that SoftmaxPartial.merge
// combines across key blocks. A query that sees no key gets lse = -inf and o = 0.
//
// The online softmax (flash attention): a CTA keeps its rows' running maximum m, sum l and
// unnormalized output acc while it walks the key tiles; a tile with a larger maximum rescales
// them by exp(m_old - m_new). Scores are kept in base-2 units (scale * log2(e) folded into one
// multiply) so every exponential is one exp2; lse = ln2 (m + log2 l) at the end.
//
// Rows of a CTA: the Hq/Hk query heads that read one key/value head are packed into the rows of
// the CTA, row R = token * G + g (G = Hq/Hk, head h = kvHead * G + g), so each K/V tile is read
// from memory once per group and serves all G heads (and the G rows of one token are contiguous
// in q and o). The grid is (row tiles, Hk); row tiles run from the last (most keys, under the
// causal mask) to the first so that the longest CTAs start first.
//
// The key loop follows the mask: a CTA visits only the key tiles some row of it can see (the
// union of its rows' visible ranges is one interval: its tokens are consecutive), and applies the
// element mask only to tiles that some row sees partly (the diagonal, the window's edge, the
// block's last partial tile).
//
// Two families:
//   softmax_forward_{bf16,f16}_k{DK}_v{DV}: tensor cores, mma.sync m16n8k16 (sm_80+), float32
//     accumulators; each warp owns 16 rows, scores and P stay in registers (P rounded to the
//     input type for the P V product, the usual flash-attention choice); K/V tiles double
//     buffered with cp.async into XOR-swizzled shared memory read by ldmatrix. DK, DV are the
//     widths padded to 64, 128 or 256 (padding columns are zero-filled on load, never written).
//   softmax_forward_f32: float32 input on CUDA cores (one lane a key for the scores, one lane a
//     value column for the output), for inputs that need float32 all through.
// On Hopper (sm_90a), softmax_sm90.cu holds a wgmma version of the tensor-core family for widths
// 65..128 (its own PTX); the device code both share is in softmax_common.cuh.
//
// Why the packed rows rather than one query head a CTA with K/V left to L2: with G heads a group,
// a CTA per head reads each K/V tile G times (from L2 at best); packing reads it once and gives
// every CTA full 128-row tiles even for short query blocks of a large group (G = 8: 16 tokens).
#include "softmax_common.cuh"

namespace softmax {

// ------------------------------------------------------------------ tensor-core family

template <int DK, int DV> struct TcShape {
    // Up to 128 wide: 8 warps (128 rows), 64-key tiles; 256 wide: 4 warps (64 rows), 32-key tiles,
    // so that the output accumulators (DV/2 floats a thread) and the scores fit the registers.
    static constexpr int WARPS = (DK > 128 || DV > 128) ? 4 : 8;
    static constexpr int BN = (DK > 128 || DV > 128) ? 32 : 64;
    static constexpr int BM = 16 * WARPS;
    static constexpr int THREADS = 32 * WARPS;
    static constexpr int Q_BYTES = BM * DK * 2;
    static constexpr int K_BYTES = BN * DK * 2;
    static constexpr int V_BYTES = BN * DV * 2;
    static constexpr int STAGE_BYTES = K_BYTES + V_BYTES;
    static constexpr int SMEM = Q_BYTES + 2 * STAGE_BYTES;
};

// Byte offset of (row, 16-byte chunk c) in a tile of rows D elements wide: chunks XOR-swizzled by
// the row's low three bits, so the 8 rows an ldmatrix reads hit 8 different bank groups. D >= 64.
template <int D>
__device__ __forceinline__ unsigned swz(int row, int c) {
    return (unsigned)(row * (D * 2) + ((c ^ (row & 7)) << 4));
}

// Loads `rows` rows of width d (padded to D with zeros; rows >= valid zero) into a swizzled tile at
// shared offset `off`. vec: 16-byte cp.async (d % 8 == 0 and a 16-byte aligned base); else element
// by element (any d, any alignment), stored directly.
template <typename T, int D, int ROWS, int THREADS, typename RowPtr>
__device__ __forceinline__ void load_rows(unsigned char* smem, unsigned off, RowPtr rowPtr, int valid, int d,
                                          bool vec, const void* any) {
    constexpr int CH = D / 8;
    const unsigned base = smem_u32(smem) + off;
#pragma unroll 4
    for (int idx = threadIdx.x; idx < ROWS * CH; idx += THREADS) {
        const int r = idx / CH, c = idx % CH;
        const int col = c * 8;
        const bool ok = r < valid && col < d;
        const unsigned at = swz<D>(r, c);
        load_piece(smem + off + at, base + at, rowPtr, r, col, ok, d, vec, any);
    }
}

template <typename T, int DK, int DV>
__device__ __forceinline__ void forward_tc(const SoftmaxArgs& a) {
    using S = TcShape<DK, DV>;
    constexpr int BN = S::BN;
    extern __shared__ __align__(128) unsigned char smem[];
    const Block b(a, S::BM);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const T* q = static_cast<const T*>(a.q);
    const T* k = static_cast<const T*>(a.k);
    const T* v = static_cast<const T*>(a.v);

    // This thread's two rows (mma accumulator rows lane/4 and lane/4 + 8 of its warp's 16) and the
    // keys each sees.
    const int row[2] = {warp * 16 + (lane >> 2), warp * 16 + (lane >> 2) + 8};
    int klo[2], khi[2];
    row_ranges(a, b, row, klo, khi);

    float acc[DV / 8][4];
#pragma unroll
    for (int n = 0; n < DV / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
    float m[2] = {-CUDART_INF_F, -CUDART_INF_F};
    float l[2] = {0.f, 0.f};

    if (b.lo < b.hi) {
        const unsigned sQ = smem_u32(smem);
        const bool vecQ = a.dk % 8 == 0 && aligned16(q);
        const bool vecK = a.dk % 8 == 0 && aligned16(k);
        const bool vecV = a.dv % 8 == 0 && aligned16(v);
        load_rows<T, DK, S::BM, S::THREADS>(smem, 0, [&](int r) { return q + b.qRow(a, r) * a.dk; }, b.valid, a.dk,
                                           vecQ, q);
        const int first = b.lo / BN * BN;
        const int tiles = (b.hi - first + BN - 1) / BN;
        auto loadKV = [&](int it) {
            const int j0 = first + it * BN;
            const unsigned off = S::Q_BYTES + (it & 1) * S::STAGE_BYTES;
            const int valid = min(BN, a.nk - j0);
            load_rows<T, DK, BN, S::THREADS>(smem, off, [&](int r) { return k + b.kvRow(a, j0 + r) * a.dk; }, valid,
                                             a.dk, vecK, k);
            load_rows<T, DV, BN, S::THREADS>(smem, off + S::K_BYTES,
                                             [&](int r) { return v + b.kvRow(a, j0 + r) * a.dv; }, valid, a.dv, vecV, v);
        };
        loadKV(0);
        cp_async_commit();
        for (int it = 0; it < tiles; it++) {
            if (it + 1 < tiles) {
                loadKV(it + 1);  // into the other stage, freed by the barrier that ended the last tile
                cp_async_commit();
                cp_async_wait(1);
            } else {
                cp_async_wait(0);
            }
            __syncthreads();
            const int j0 = first + it * BN;
            const unsigned sK = sQ + S::Q_BYTES + (it & 1) * S::STAGE_BYTES;
            const unsigned sV = sK + S::K_BYTES;

            // s = Q K^T for the warp's 16 rows and the tile's BN keys
            float s[BN / 8][4];
#pragma unroll
            for (int n = 0; n < BN / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < DK / 16; kk++) {
                unsigned af[4];
                {
                    const int r = warp * 16 + (lane & 15);
                    ldsm_x4(af, sQ + swz<DK>(r, kk * 2 + (lane >> 4)));
                }
#pragma unroll
                for (int np = 0; np < BN / 16; np++) {
                    unsigned bf[4];
                    const int r = np * 16 + (lane & 7) + ((lane >> 4) << 3);
                    ldsm_x4(bf, sK + swz<DK>(r, kk * 2 + ((lane >> 3) & 1)));
                    Ops<T>::mma(s[2 * np], af, bf[0], bf[1]);
                    Ops<T>::mma(s[2 * np + 1], af, bf[2], bf[3]);
                }
            }
            // the element mask only where some row sees part of the tile; the online softmax
            softmax_tile(s, acc, m, l, klo, khi, j0, !(j0 >= b.kloMax && j0 + BN <= b.khiMin), a.scaleLog2, lane);
            // acc += P V: P's accumulator layout is the A operand layout of the next product
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) {
                unsigned pa[4];
                pa[0] = Ops<T>::pack(s[2 * kk][0], s[2 * kk][1]);
                pa[1] = Ops<T>::pack(s[2 * kk][2], s[2 * kk][3]);
                pa[2] = Ops<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                pa[3] = Ops<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
                for (int np = 0; np < DV / 16; np++) {
                    unsigned bf[4];
                    const int r = kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
                    ldsm_x4_t(bf, sV + swz<DV>(r, np * 2 + (lane >> 4)));
                    Ops<T>::mma(acc[2 * np], pa, bf[0], bf[1]);
                    Ops<T>::mma(acc[2 * np + 1], pa, bf[2], bf[3]);
                }
            }
            __syncthreads();  // every warp is done with this stage before it is refilled
        }
    }
    finish_rows(a, b, acc, m, l, row, lane);
}

// ------------------------------------------------------------------ float32 family (CUDA cores)

// 8 warps; each owns 4 of the CTA's 32 packed rows; 32-key tiles. Shared memory (floats):
// Q [32][dk], K [32][dk + 1] (a lane reads its own key's row: the odd stride spreads the banks),
// V [32][dv] (lanes read consecutive columns of one key).
constexpr int F32_WARPS = 8;
constexpr int F32_ROWS_PER_WARP = 4;
constexpr int F32_BM = F32_WARPS * F32_ROWS_PER_WARP;
constexpr int F32_BN = 32;
constexpr int F32_THREADS = 32 * F32_WARPS;

__device__ __forceinline__ void forward_f32(const SoftmaxArgs& a) {
    extern __shared__ __align__(16) float fsm[];
    const Block b(a, F32_BM);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const float* q = static_cast<const float*>(a.q);
    const float* k = static_cast<const float*>(a.k);
    const float* v = static_cast<const float*>(a.v);
    const int dk = a.dk, dv = a.dv;
    float* sQ = fsm;
    float* sK = sQ + F32_BM * dk;
    float* sV = sK + F32_BN * (dk + 1);

    float acc[F32_ROWS_PER_WARP][8];
    float m[F32_ROWS_PER_WARP], l[F32_ROWS_PER_WARP];
    int klo[F32_ROWS_PER_WARP], khi[F32_ROWS_PER_WARP];
#pragma unroll
    for (int x = 0; x < F32_ROWS_PER_WARP; x++) {
        m[x] = -CUDART_INF_F;
        l[x] = 0.f;
#pragma unroll
        for (int c = 0; c < 8; c++) acc[x][c] = 0.f;
        const int r = warp * F32_ROWS_PER_WARP + x;
        klo[x] = r < b.valid ? key_lo(a, b.delta, b.token(r)) : 0;
        khi[x] = r < b.valid ? key_hi(a, b.delta, b.token(r)) : 0;
    }
    if (b.lo < b.hi) {
        for (int i = threadIdx.x; i < F32_BM * dk; i += F32_THREADS) {
            const int r = i / dk, d = i % dk;
            sQ[i] = r < b.valid ? q[b.qRow(a, r) * dk + d] : 0.f;
        }
        const int first = b.lo / F32_BN * F32_BN;
        for (int j0 = first; j0 < b.hi; j0 += F32_BN) {
            __syncthreads();  // the previous tile is done with sK, sV (and sQ is written, the first time)
            for (int i = threadIdx.x; i < F32_BN * dk; i += F32_THREADS) {
                const int r = i / dk, d = i % dk;
                sK[r * (dk + 1) + d] = j0 + r < a.nk ? k[b.kvRow(a, j0 + r) * dk + d] : 0.f;
            }
            for (int i = threadIdx.x; i < F32_BN * dv; i += F32_THREADS) {
                const int r = i / dv, d = i % dv;
                sV[i] = j0 + r < a.nk ? v[b.kvRow(a, j0 + r) * dv + d] : 0.f;
            }
            __syncthreads();
            const int key = j0 + lane;
#pragma unroll
            for (int x = 0; x < F32_ROWS_PER_WARP; x++) {
                const int r = warp * F32_ROWS_PER_WARP + x;
                if (r >= b.valid) continue;  // uniform across the warp
                const float* qr = sQ + r * dk;
                const float* kr = sK + lane * (dk + 1);
                float s = 0.f;
                for (int d = 0; d < dk; d++) s = fmaf(qr[d], kr[d], s);
                s = (key >= klo[x] && key < khi[x]) ? s * a.scaleLog2 : -CUDART_INF_F;
                float mx = s;
#pragma unroll
                for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
                const float mNew = fmaxf(m[x], mx);
                const float mUse = mNew == -CUDART_INF_F ? 0.f : mNew;
                const float alpha = exp2f(m[x] - mUse);
                const float p = exp2f(s - mUse);
                float sum = p;
#pragma unroll
                for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
                l[x] = l[x] * alpha + sum;
                m[x] = mNew;
#pragma unroll
                for (int c = 0; c < 8; c++) acc[x][c] *= alpha;
                for (int jj = 0; jj < F32_BN; jj++) {
                    const float pj = __shfl_sync(0xffffffffu, p, jj);
                    const float* vr = sV + jj * dv;
#pragma unroll
                    for (int c = 0; c < 8; c++) {
                        const int col = lane + 32 * c;
                        if (col < dv) acc[x][c] = fmaf(pj, vr[col], acc[x][c]);
                    }
                }
            }
        }
    }
#pragma unroll
    for (int x = 0; x < F32_ROWS_PER_WARP; x++) {
        const int r = warp * F32_ROWS_PER_WARP + x;
        if (r >= b.valid) continue;
        const size_t row = b.qRow(a, r);
        const float inv = l[x] > 0.f ? 1.f / l[x] : 0.f;
#pragma unroll
        for (int c = 0; c < 8; c++) {
            const int col = lane + 32 * c;
            if (col < dv) a.o[row * dv + col] = acc[x][c] * inv;
        }
        if (lane == 0) a.lse[row] = l[x] > 0.f ? (m[x] + log2f(l[x])) * 0.69314718055994531f : -CUDART_INF_F;
    }
}

}  // namespace softmax

// ------------------------------------------------------------------ entry points

#define SOFTMAX_TC(TYPE, NAME, DK, DV)                                                                     \
    extern "C" __global__ void __launch_bounds__(softmax::TcShape<DK, DV>::THREADS, 1)                      \
        softmax_forward_##NAME##_k##DK##_v##DV(const SoftmaxArgs a) {                                       \
        softmax::forward_tc<TYPE, DK, DV>(a);                                                              \
    }
#define SOFTMAX_TC_DV(TYPE, NAME, DK) \
    SOFTMAX_TC(TYPE, NAME, DK, 64) SOFTMAX_TC(TYPE, NAME, DK, 128) SOFTMAX_TC(TYPE, NAME, DK, 256)
#define SOFTMAX_TC_ALL(TYPE, NAME) \
    SOFTMAX_TC_DV(TYPE, NAME, 64) SOFTMAX_TC_DV(TYPE, NAME, 128) SOFTMAX_TC_DV(TYPE, NAME, 256)

SOFTMAX_TC_ALL(__nv_bfloat16, bf16)
SOFTMAX_TC_ALL(__half, f16)

extern "C" __global__ void __launch_bounds__(softmax::F32_THREADS) softmax_forward_f32(const SoftmaxArgs a) {
    softmax::forward_f32(a);
}

// The kernels' launch shapes, so the host computes none of them itself. One thread.
//   out[0..2]   the padded widths of the tensor-core kernels: 64, 128, 256 (a width d runs on the
//               smallest one >= d; the kernel is softmax_forward_<type>_k<DK>_v<DV>)
//   out[3 + 3 (3 i + j) + {0, 1, 2}]  threads, rows a CTA, dynamic shared bytes of the kernel of
//               padded widths (out[i], out[j])
//   out[30..33] the float32 kernel: threads, rows a CTA, keys a tile, and 0
//               (its shared bytes: 4 (rows dk + keys (dk + 1) + keys dv))
#define SOFTMAX_SHAPE(I, J, DK, DV)                                           \
    out[3 + 3 * (3 * I + J) + 0] = softmax::TcShape<DK, DV>::THREADS;         \
    out[3 + 3 * (3 * I + J) + 1] = softmax::TcShape<DK, DV>::BM;              \
    out[3 + 3 * (3 * I + J) + 2] = softmax::TcShape<DK, DV>::SMEM;
extern "C" __global__ void softmax_launch_shapes(int* out) {
    out[0] = 64;
    out[1] = 128;
    out[2] = 256;
    SOFTMAX_SHAPE(0, 0, 64, 64) SOFTMAX_SHAPE(0, 1, 64, 128) SOFTMAX_SHAPE(0, 2, 64, 256)
    SOFTMAX_SHAPE(1, 0, 128, 64) SOFTMAX_SHAPE(1, 1, 128, 128) SOFTMAX_SHAPE(1, 2, 128, 256)
    SOFTMAX_SHAPE(2, 0, 256, 64) SOFTMAX_SHAPE(2, 1, 256, 128) SOFTMAX_SHAPE(2, 2, 256, 256)
    out[30] = softmax::F32_THREADS;
    out[31] = softmax::F32_BM;
    out[32] = softmax::F32_BN;
    out[33] = 0;
}
