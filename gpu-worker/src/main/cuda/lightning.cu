// Lightning attention kernels, loaded as PTX through JCuda's driver API (see CudaDevice.java).
//
//   S_t = lambda S_{t-1} + phi(k_t)^T v_t,   o_t = scale phi(q_t) S_t,   lambda = exp(-slope_h)
//   normalizing also z_t = lambda z_{t-1} + phi(k_t) and o_t = scale phi(q_t) S_t / (phi(q_t) . z_t + eps)
//
// Every kernel takes one argument, struct LightningArgs (lightning_args.cuh: the variants' fields
// and what they mean). Layout: q [n, Hq, Dk], k [n, Hk, Dk], v [n, Hv, Dv], o [n, H, Dv],
// token-major; states float [S][H][Dk][Dv] and z float [S][H][Dk], in separate arrays.
// A window of n tokens is cut into S segments of segTokens tokens (a multiple of the 64-token
// chunk; the first one shorter in an uneven cut, lightning_segment in lightning_args.cuh); CTAs of
// one launch work on (head, column tile, segment). Several segments run side by side when the heads
// alone do not fill the GPU, with the same two-level scan as across Spark partitions: local states
// (lightning_states_*, over the tokens before the last segment, in sub-segments that fill the GPU),
// an exclusive scan in float32 (lightning_scan), then outputs (lightning_forward_*).
//
// Two families here: the generic kernels (float32 arithmetic on CUDA cores, any dtype, the path for
// F32 input) and the tensor-core kernels for BF16/F16 (tensor_core.cuh, mma.sync). A third, for
// Hopper (wgmma), is in hopper.cuh and its own PTX (lightning_sm90.cu).
//
// Decay powers are expf(-slope * x), never products of lambda; a carry decays by its complement
// (lightning_decay.cuh).

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "lightning_args.cuh"
#include "lightning_decay.cuh"

#define CHUNK 64
#define GENERIC_BV 32        // value columns per CTA in the generic kernels
// ... and in their "_c16" entries, for GPUs whose blocks cannot hold 32 columns' state and values: a 99 KB block
// (compute capability 8.6, 8.9, 12.0) holds GENERIC_BV columns up to dk = 117 and GENERIC_BV_NARROW up to 137,
// so dk = 128 runs there; an A100's 163 KB up to 219 and 250.
#define GENERIC_BV_NARROW 16
#define GENERIC_THREADS 256  // the products' thread tiles in generic_segment assume exactly this many

template <typename T> __device__ __forceinline__ float to_float(T x);
template <> __device__ __forceinline__ float to_float<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <> __device__ __forceinline__ float to_float<__half>(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }

// scale * num / den, the normalized output (a function so the plain path's expression stays as it was).
__device__ __forceinline__ float scale_div(float scale, float num, float den) { return scale * num / den; }

// Shared memory of the generic kernels, in floats (the host reads it from lightning_launch_shapes: LaunchShapes.java):
//   powers[CHUNK + 4] | Q[CHUNK][dk + 1] | K[CHUNK][dk + 1] | V[CHUNK][BV] | S[CHUNK][CHUNK + 1] | P[dk][BV]
//   | Z[dk] | den[CHUNK]   (powers[CHUNK + 1]: the chunk's 1 - lambda^m, for lightning_carry)
// Rows of Q and K are padded by one float so a warp reading one column of K hits 32 banks. Z (the
// normalizer carried like P) and den (the denominators of a chunk) are there for every variant:
// 4 (dk + 64) bytes, too few to be worth a second layout.
// BV is the value columns of a CTA (GENERIC_BV, or GENERIC_BV_NARROW in the "_c16" entries).
__host__ __device__ inline int lightning_generic_smem_bytes(int dk, int bv) {
    return 4 * ((CHUNK + 4) + 2 * CHUNK * (dk + 1) + CHUNK * bv + CHUNK * (CHUNK + 1) + dk * bv + dk + CHUNK);
}

// One (head, column tile, segment) of a launch: walks the segment's chunks carrying the float32
// state P (and, normalizing, z). With OUT, writes o, starts from a.incoming[s] and writes the
// checkpoints that fall in the segment; without, starts from zero (a local state).
//
// Variants, by the struct's contract (lightning_args.cuh):
//   grouping: head h reads q head h / (H / Hq), k head h / (H / Hk), v head h / (H / Hv); token
//     rows are Hq * dk, Hk * dk, Hv * dv and H * dv elements long;
//   phi is applied to q and k as their tiles are loaded (rows past the chunk's end stay zero, not
//     phi(0), which is 1 for elu1);
//   normalization: den_i = sum_{j<=i} lambda^(i-j) q_i . k_j + lambda^(i+1) q_i . zP, the first sum
//     being row i of the masked, decayed scores already in shared memory; o = scale num / (den + eps);
//     zP' = lambda^m zP + sum_j lambda^(m-1-j) k_j, beside P;
//   checkpoints: after the chunk ending at sequence token end = position + t + m (exclusive), when
//     end is a multiple of N, S goes to checkpoints[end / N - 1 - firstCheckpoint][h] and z (column
//     tile 0) to checkpointNorms.
// BV: value columns a CTA (GENERIC_BV or GENERIC_BV_NARROW); every column tile forms the chunk's scores S itself.
template <typename T, bool OUT, int BV>
__device__ __forceinline__ void generic_segment(const LightningArgs& a) {
    static_assert(GENERIC_THREADS == 256 && BV % 8 == 0 && CHUNK == 64, "the thread tiles below");
    const T* __restrict__ q = static_cast<const T*>(a.q);
    const T* __restrict__ k = static_cast<const T*>(a.k);
    const T* __restrict__ v = static_cast<const T*>(a.v);
    T* __restrict__ o = static_cast<T*>(a.o);
    const int H = a.heads;
    const int dk = a.dk;
    const int dv = a.dv;
    const int fm = a.featureMap;
    const bool norm = a.normalize != 0;
    const int h = blockIdx.x;
    const int hq = h / (H / a.headsQ);
    const int hk = h / (H / a.headsK);
    const int hv = h / (H / a.headsV);
    const size_t qRow = (size_t)a.headsQ * dk;
    const size_t kRow = (size_t)a.headsK * dk;
    const size_t vRow = (size_t)a.headsV * dv;
    const size_t oRow = (size_t)H * dv;
    const int c0 = blockIdx.y * BV;
    const int bv = min(BV, dv - c0);
    const LightningSegment seg = lightning_segment(a, blockIdx.z, gridDim.z);
    const int s = seg.index;
    const int t0 = (int)seg.start;
    const int t1 = (int)seg.end;
    const int tid = threadIdx.x;
    // Thread coordinates of the three products (GENERIC_THREADS = 256 threads): the scores' 16 x 16 tiles (si, sj),
    // and the outputs' and the state update's 32 x 8 (oi, oc): rows oi + 32r, value columns oc + 8k.
    const int si = tid >> 4;
    const int sj = tid & 15;
    const int oi = tid >> 3;
    const int oc = tid & 7;
    const int ldk = dk + 1;
    const bool normOwner = norm && blockIdx.y == 0; // one column tile writes z

    extern __shared__ float smem[];
    float* powers = smem;
    float* Qs = powers + CHUNK + 4;
    float* Ks = Qs + CHUNK * ldk;
    float* Vs = Ks + CHUNK * ldk;
    float* Ss = Vs + CHUNK * BV;
    float* Ps = Ss + CHUNK * (CHUNK + 1);
    float* Zs = Ps + dk * BV;
    float* Den = Zs + dk;

    const float slope = a.slopes[h];
    for (int x = tid; x <= CHUNK; x += blockDim.x) {
        powers[x] = expf(-slope * (float)x);
    }
    const size_t stateBase = ((size_t)s * H + h) * dk * dv;
    const size_t normBase = ((size_t)s * H + h) * dk;
    for (int e = tid; e < dk * BV; e += blockDim.x) {
        int d = e / BV;
        int c = e % BV;
        Ps[e] = (OUT && c < bv) ? a.incoming[stateBase + (size_t)d * dv + c0 + c] : 0.f;
    }
    for (int d = tid; d < dk; d += blockDim.x) {
        Zs[d] = (OUT && norm) ? a.incomingNorm[normBase + d] : 0.f;
    }
    __syncthreads();

    for (int t = t0; t < t1; t += CHUNK) {
        const int m = min(CHUNK, t1 - t);
        if (tid == 0) {
            powers[CHUNK + 1] = lightning_decay_comp(slope, (float)m);  // read after the __syncthreads below
        }
        for (int e = tid; e < CHUNK * dk; e += blockDim.x) {
            int i = e / dk;
            int d = e % dk;
            Ks[i * ldk + d] = i < m ? lightning_phi(fm, to_float(k[(size_t)(t + i) * kRow + (size_t)hk * dk + d])) : 0.f;
            if (OUT) {
                Qs[i * ldk + d] = i < m ? lightning_phi(fm, to_float(q[(size_t)(t + i) * qRow + (size_t)hq * dk + d])) : 0.f;
            }
        }
        for (int e = tid; e < CHUNK * BV; e += blockDim.x) {
            int i = e / BV;
            int c = e % BV;
            Vs[e] = (i < m && c < bv) ? to_float(v[(size_t)(t + i) * vRow + (size_t)hv * dv + c0 + c]) : 0.f;
        }
        __syncthreads();

        if (OUT) {
            // scores with the causal decay mask: S[i][j] = lambda^(i-j) q_i . k_j for j <= i. A thread forms a 4 x 4
            // tile, rows si + 16r and keys sj + 16c (8 loads a step for up to 16 products); a warp's 16 key threads read
            // 16 rows of K, in 16 banks by the odd stride ldk. Where c > r every key of the pair lies above the
            // diagonal (j - i >= 16 - 15), so those 6 of the 16 products are not formed (a choice of the unrolled
            // loop, the same in every thread); the rest of the upper triangle is masked after.
            {
                float acc[4][4] = {};
                for (int d = 0; d < dk; d++) {
                    float qd[4], kd[4];
#pragma unroll
                    for (int r = 0; r < 4; r++) {
                        qd[r] = Qs[(si + 16 * r) * ldk + d];
                        kd[r] = Ks[(sj + 16 * r) * ldk + d];
                    }
#pragma unroll
                    for (int r = 0; r < 4; r++) {
#pragma unroll
                        for (int c = 0; c <= r; c++) {
                            acc[r][c] = fmaf(qd[r], kd[c], acc[r][c]);
                        }
                    }
                }
#pragma unroll
                for (int r = 0; r < 4; r++) {
#pragma unroll
                    for (int c = 0; c < 4; c++) {
                        const int i = si + 16 * r;
                        const int j = sj + 16 * c;
                        Ss[i * (CHUNK + 1) + j] = (c <= r && j <= i && i < m) ? acc[r][c] * powers[i - j] : 0.f;
                    }
                }
            }
            __syncthreads();
            if (norm) {
                // den_i = lambda^(i+1) q_i . zP + sum_{j<=i} S[i][j] (a uniform branch: the sync is safe)
                for (int i = tid; i < m; i += blockDim.x) {
                    float inter = 0.f;
                    for (int d = 0; d < dk; d++) {
                        inter = fmaf(Qs[i * ldk + d], Zs[d], inter);
                    }
                    float intra = 0.f;
                    for (int j = 0; j <= i; j++) {
                        intra += Ss[i * (CHUNK + 1) + j];
                    }
                    Den[i] = powers[i + 1] * inter + intra;
                }
                __syncthreads();
            }
            // o_i = scale (lambda^(i+1) q_i P + sum_j S[i][j] v_j), divided by den_i + eps when normalizing. A thread
            // forms rows oi and oi + 32, columns oc + 8k (k < BV / 8); its keys j <= i, each row's sum in the order
            // of j.
            {
                constexpr int OC = BV / 8;
                float inter[2][OC] = {};
                float intra[2][OC] = {};
                for (int d = 0; d < dk; d++) {
                    const float q0 = Qs[oi * ldk + d];
                    const float q1 = Qs[(oi + 32) * ldk + d];
#pragma unroll
                    for (int k = 0; k < OC; k++) {
                        const float p = Ps[d * BV + oc + 8 * k];
                        inter[0][k] = fmaf(q0, p, inter[0][k]);
                        inter[1][k] = fmaf(q1, p, inter[1][k]);
                    }
                }
                const int lastKey = min(oi + 32, m - 1);
                int j = 0;
                for (; j <= min(oi, lastKey); j++) {
                    const float s0 = Ss[oi * (CHUNK + 1) + j];
                    const float s1 = Ss[(oi + 32) * (CHUNK + 1) + j];
#pragma unroll
                    for (int k = 0; k < OC; k++) {
                        const float vj = Vs[j * BV + oc + 8 * k];
                        intra[0][k] = fmaf(s0, vj, intra[0][k]);
                        intra[1][k] = fmaf(s1, vj, intra[1][k]);
                    }
                }
                for (; j <= lastKey; j++) {  // the later row's keys past the earlier row
                    const float s1 = Ss[(oi + 32) * (CHUNK + 1) + j];
#pragma unroll
                    for (int k = 0; k < OC; k++) {
                        intra[1][k] = fmaf(s1, Vs[j * BV + oc + 8 * k], intra[1][k]);
                    }
                }
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    const int i = oi + 32 * r;
#pragma unroll
                    for (int k = 0; k < OC; k++) {
                        const int c = oc + 8 * k;
                        if (i < m && c < bv) {
                            float out = norm ? scale_div(a.scale, powers[i + 1] * inter[r][k] + intra[r][k], Den[i] + a.eps)
                                             : a.scale * (powers[i + 1] * inter[r][k] + intra[r][k]);
                            o[(size_t)(t + i) * oRow + (size_t)h * dv + c0 + c] = from_float<T>(out);
                        }
                    }
                }
            }
            __syncthreads(); // P and z are read above and written below
        }

        // P <- lambda^m P + sum_j lambda^(m-1-j) k_j^T v_j (the chunk's sum formed apart, added once), the decay
        // carried by lightning_carry, the complement 1 - lambda^m from beside the powers (thread 0 put it there).
        // A thread forms rows d0 + oi + 32r (r < 4) of each 128-row pass, columns oc + 8k.
        {
            constexpr int PC = BV / 8;
            for (int d0 = 0; d0 < dk; d0 += 128) {
                float acc[4][PC] = {};
                int rows[4];
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    rows[r] = min(d0 + oi + 32 * r, dk - 1);  // rows past dk repeat the last and are not stored
                }
                for (int j = 0; j < m; j++) {
                    const float w = powers[m - 1 - j];
                    float kd[4];
#pragma unroll
                    for (int r = 0; r < 4; r++) {
                        kd[r] = w * Ks[j * ldk + rows[r]];
                    }
#pragma unroll
                    for (int k = 0; k < PC; k++) {
                        const float vj = Vs[j * BV + oc + 8 * k];
#pragma unroll
                        for (int r = 0; r < 4; r++) {
                            acc[r][k] = fmaf(kd[r], vj, acc[r][k]);
                        }
                    }
                }
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    if (d0 + oi + 32 * r < dk) {
#pragma unroll
                        for (int k = 0; k < PC; k++) {
                            float* pe = &Ps[rows[r] * BV + oc + 8 * k];
                            *pe = lightning_carry(*pe, acc[r][k], powers[CHUNK + 1], powers[m]);
                        }
                    }
                }
            }
        }
        if (norm) {
            // z <- lambda^m z + sum_j lambda^(m-1-j) k_j, the same combine
            for (int d = tid; d < dk; d += blockDim.x) {
                float acc = 0.f;
                for (int j = 0; j < m; j++) {
                    acc = fmaf(powers[m - 1 - j], Ks[j * ldk + d], acc);
                }
                Zs[d] = lightning_carry(Zs[d], acc, powers[CHUNK + 1], powers[m]);
            }
        }
        __syncthreads();

        if (OUT && a.checkpointEvery > 0) {
            const long long end = a.position + t + m;
            if (end % a.checkpointEvery == 0) {
                const long long c = end / a.checkpointEvery - 1 - a.firstCheckpoint;
                const size_t base = ((size_t)c * H + h) * dk * dv;
                for (int e = tid; e < dk * BV; e += blockDim.x) {
                    int d = e / BV;
                    int col = e % BV;
                    if (col < bv) {
                        a.checkpoints[base + (size_t)d * dv + c0 + col] = Ps[e];
                    }
                }
                if (normOwner) {
                    for (int d = tid; d < dk; d += blockDim.x) {
                        a.checkpointNorms[((size_t)c * H + h) * dk + d] = Zs[d];
                    }
                }
            }
            // no sync needed: P and z are only read here, and the next chunk writes them after a sync
        }
    }

    for (int e = tid; e < dk * BV; e += blockDim.x) {
        int d = e / BV;
        int c = e % BV;
        if (c < bv) {
            a.states[stateBase + (size_t)d * dv + c0 + c] = Ps[e];
        }
    }
    if (normOwner) {
        for (int d = tid; d < dk; d += blockDim.x) {
            a.statesNorm[normBase + d] = Zs[d];
        }
    }
}

#define GENERIC_ENTRIES(SUFFIX, T, BV)                                                                       \
    extern "C" __global__ void __launch_bounds__(GENERIC_THREADS)                                           \
        lightning_forward_generic_##SUFFIX(const LightningArgs a) {                                          \
        generic_segment<T, true, BV>(a);                                                                     \
    }                                                                                                        \
    extern "C" __global__ void __launch_bounds__(GENERIC_THREADS)                                           \
        lightning_states_generic_##SUFFIX(const LightningArgs a) {                                           \
        generic_segment<T, false, BV>(a);                                                                    \
    }

GENERIC_ENTRIES(f32, float, GENERIC_BV)
GENERIC_ENTRIES(bf16, __nv_bfloat16, GENERIC_BV)
GENERIC_ENTRIES(f16, __half, GENERIC_BV)
GENERIC_ENTRIES(f32_c16, float, GENERIC_BV_NARROW)
GENERIC_ENTRIES(bf16_c16, __nv_bfloat16, GENERIC_BV_NARROW)
GENERIC_ENTRIES(f16_c16, __half, GENERIC_BV_NARROW)

// The scan over the local states of pass 1, in float32, for S and (normalizing) z alike, which
// combine the same way. scanLocals[i] (i < scanCount) is the local state of piece i of scanSubTokens
// tokens (lightning_segment_range: piece 0 leadTokens long where that is shorter; the advance path
// scans an uneven plan's segments so); states[s] (s < scanOutCount) gets the state
// before token s * scanEvery * scanSubTokens, i.e. before the s-th pass-2 segment when those are
// scanEvery sub-segments long (pass 1 cuts the window finer than pass 2 so that its CTAs fill the
// GPU, and skips the last pass-2 segment, whose state-after pass 2 writes). scanFinal, when not
// null, gets the state after all sub-segments; incoming (null: zero) is the state before them.
// One thread per element of S and then of z; the sub-segments are walked in order, as the
// combine requires.
extern "C" __global__ void lightning_scan(const LightningArgs a) {
    const int H = a.heads;
    const int dk = a.dk;
    const size_t per = (size_t)H * dk * a.dv;
    const size_t perZ = a.normalize ? (size_t)H * dk : 0;
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= per + perZ) {
        return;
    }
    const bool z = idx >= per;
    const float* init = z ? a.incomingNorm : a.incoming;
    const float* locals = z ? a.scanLocalNorms : a.scanLocals;
    float* incoming = z ? a.statesNorm : a.states;
    float* finalState = z ? a.scanFinalNorm : a.scanFinal;
    const size_t stride = z ? perZ : per;
    int h;
    if (z) {
        idx -= per;
        h = (int)(idx / dk);
    } else {
        h = (int)(idx / ((size_t)dk * a.dv));
    }
    const float slope = a.slopes[h];
    const int every = a.scanEvery;
    const int count = a.scanCount;
    float running = init != nullptr ? init[idx] : 0.f;
    for (int i = 0; i < count; i++) {
        if (i % every == 0 && i / every < a.scanOutCount) {
            incoming[(size_t)(i / every) * stride + idx] = running;
        }
        const LightningSegment piece = lightning_segment_range(a.n, a.scanSubTokens, a.leadTokens, i);
        int tokens = (int)(piece.end - piece.start);
        running = lightning_carry(running, locals[(size_t)i * stride + idx], lightning_decay_comp(slope, (float)tokens),
                                  expf(-slope * (float)tokens));
    }
    if (count % every == 0 && count / every < a.scanOutCount) {
        incoming[(size_t)(count / every) * stride + idx] = running;
    }
    if (finalState != nullptr) {
        finalState[idx] = running;
    }
}

// Benchmark inputs made on the device: uniform in [-1, 1) from a hash of (seed, index), so a
// benchmark of a billion-element tensor needs no host copy. Not used by the job.
__device__ __forceinline__ float hash_uniform(unsigned long long seed, unsigned long long i) {
    unsigned long long x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    return (float)(x >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

#define FILL_ENTRY(SUFFIX, T)                                                                               \
    extern "C" __global__ void lightning_fill_uniform_##SUFFIX(T* dst, unsigned long long count,             \
                                                                unsigned long long seed) {                   \
        for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < count;      \
             i += (unsigned long long)gridDim.x * blockDim.x) {                                              \
            dst[i] = from_float<T>(hash_uniform(seed, i));                                                  \
        }                                                                                                    \
    }

FILL_ENTRY(f32, float)
FILL_ENTRY(bf16, __nv_bfloat16)
FILL_ENTRY(f16, __half)

#if __has_include("tensor_core.cuh")
#include "tensor_core.cuh"
#endif

// The launch shapes the host plans with, reported by this module so that each is defined once, in
// these sources (CudaDevice reads them when it loads the module: LaunchShapes.java). One thread.
//   out[0] CHUNK   out[1] GENERIC_BV   out[2] GENERIC_THREADS
//   out[3] LIGHTNING_TC_THREADS_NARROW   out[4] LIGHTNING_TC_THREADS_WIDE   out[5] LIGHTNING_TC_COLUMNS
//   out[6] LIGHTNING_TC_NARROW_MAX_DK   out[7] LIGHTNING_TC_SMALL_MAX_DK (the narrow "_n64" kernels' largest dk)
//   out[LIGHTNING_SHAPES_DK + dk]      the generic kernels' dynamic shared memory, dk = 1..256
//   out[2 * LIGHTNING_SHAPES_DK + dk]  the tensor-core kernels' (narrow up to LIGHTNING_TC_NARROW_MAX_DK, wide above)
//   out[3 * LIGHTNING_SHAPES_DK + dk]  the least the tensor-core kernels run in (two stages: tc_min_smem_bytes)
//   out[8] GENERIC_BV_NARROW   out[4 * LIGHTNING_SHAPES_DK + dk]  the generic "_c16" kernels' dynamic shared memory
//   out[5 * LIGHTNING_SHAPES_DK + dk]  the "_q1" forward's (narrow block; with the narrow states kernel; 0 where it
//                                      has none: tc_q1_min_smem_bytes)
extern "C" __global__ void lightning_launch_shapes(int* out) {
    out[0] = CHUNK;
    out[1] = GENERIC_BV;
    out[2] = GENERIC_THREADS;
    out[3] = LIGHTNING_TC_THREADS_NARROW;
    out[4] = LIGHTNING_TC_THREADS_WIDE;
    out[5] = LIGHTNING_TC_COLUMNS;
    out[6] = LIGHTNING_TC_NARROW_MAX_DK;
    out[7] = LIGHTNING_TC_SMALL_MAX_DK;
    out[8] = GENERIC_BV_NARROW;
    for (int dk = 1; dk < LIGHTNING_SHAPES_DK; dk++) {
        out[LIGHTNING_SHAPES_DK + dk] = lightning_generic_smem_bytes(dk, GENERIC_BV);
        out[2 * LIGHTNING_SHAPES_DK + dk] = lightning_tc_smem_bytes(dk);
        out[3 * LIGHTNING_SHAPES_DK + dk] = lightning_tc::tc_min_smem_bytes(dk);
        out[4 * LIGHTNING_SHAPES_DK + dk] = lightning_generic_smem_bytes(dk, GENERIC_BV_NARROW);
        out[5 * LIGHTNING_SHAPES_DK + dk] = lightning_tc::tc_q1_min_smem_bytes(dk);
    }
}
