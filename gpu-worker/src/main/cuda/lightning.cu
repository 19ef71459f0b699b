// Lightning attention kernels, loaded as PTX through JCuda's driver API (see CudaDevice.java).
//
//   S_t = lambda S_{t-1} + k_t^T v_t,   o_t = scale q_t S_t,   lambda = exp(-slope_h)
//
// Layout: q, k [n, H, Dk] and v, o [n, H, Dv], token-major; states float [S][H][Dk][Dv].
// A window of n tokens is cut into S segments of segTokens tokens (a multiple of the 64-token
// chunk); CTAs of one launch work on (head, column tile, segment). Several segments run side by
// side when the heads alone do not fill the GPU, with the same two-level scan as across Spark
// partitions: local states (lightning_states_*, over the tokens before the last segment, in
// sub-segments that fill the GPU), an exclusive scan in float32 (lightning_scan), then outputs
// (lightning_forward_*).
//
// Two families here: the generic kernels (float32 arithmetic on CUDA cores, any dtype, the path for
// F32 input) and the tensor-core kernels for BF16/F16 (tensor_core.cuh, mma.sync). A third, for
// Hopper (wgmma), is in hopper.cuh and its own PTX (lightning_sm90.cu).
//
// Decay powers are expf(-slope * x), never products of lambda.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define CHUNK 64
#define GENERIC_BV 32        // value columns per CTA in the generic kernels
#define GENERIC_THREADS 256

template <typename T> __device__ __forceinline__ float to_float(T x);
template <> __device__ __forceinline__ float to_float<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <> __device__ __forceinline__ float to_float<__half>(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }

// Shared memory of the generic kernels, in floats (the host computes the same in CudaKernels.java):
//   powers[CHUNK + 4] | Q[CHUNK][dk + 1] | K[CHUNK][dk + 1] | V[CHUNK][BV] | S[CHUNK][CHUNK + 1] | P[dk][BV]
// Rows of Q and K are padded by one float so a warp reading one column of K hits 32 banks.
__host__ __device__ inline int lightning_generic_smem_bytes(int dk) {
    return 4 * ((CHUNK + 4) + 2 * CHUNK * (dk + 1) + CHUNK * GENERIC_BV + CHUNK * (CHUNK + 1) + dk * GENERIC_BV);
}

// One (head, column tile, segment): walks the segment's chunks carrying the float32 state P.
// With OUT, writes o and starts from incoming[s]; without, starts from zero (a local state).
template <typename T, bool OUT>
__device__ __forceinline__ void generic_segment(const T* __restrict__ q, const T* __restrict__ k,
                                                const T* __restrict__ v, T* __restrict__ o, int n, int H,
                                                int dk, int dv, int segTokens, const float* __restrict__ slopes,
                                                float scale, const float* __restrict__ incoming,
                                                float* __restrict__ outStates) {
    const int h = blockIdx.x;
    const int c0 = blockIdx.y * GENERIC_BV;
    const int bv = min(GENERIC_BV, dv - c0);
    const int s = blockIdx.z;
    const int t0 = s * segTokens;
    const int t1 = min(n, t0 + segTokens);
    const int tid = threadIdx.x;
    const int ldk = dk + 1;

    extern __shared__ float smem[];
    float* powers = smem;
    float* Qs = powers + CHUNK + 4;
    float* Ks = Qs + CHUNK * ldk;
    float* Vs = Ks + CHUNK * ldk;
    float* Ss = Vs + CHUNK * GENERIC_BV;
    float* Ps = Ss + CHUNK * (CHUNK + 1);

    const float slope = slopes[h];
    for (int x = tid; x <= CHUNK; x += blockDim.x) {
        powers[x] = expf(-slope * (float)x);
    }
    const size_t stateBase = ((size_t)s * H + h) * dk * dv;
    for (int e = tid; e < dk * GENERIC_BV; e += blockDim.x) {
        int d = e / GENERIC_BV;
        int c = e % GENERIC_BV;
        Ps[e] = (OUT && c < bv) ? incoming[stateBase + (size_t)d * dv + c0 + c] : 0.f;
    }
    __syncthreads();

    for (int t = t0; t < t1; t += CHUNK) {
        const int m = min(CHUNK, t1 - t);
        for (int e = tid; e < CHUNK * dk; e += blockDim.x) {
            int i = e / dk;
            int d = e % dk;
            size_t at = ((size_t)(t + i) * H + h) * dk + d;
            Ks[i * ldk + d] = i < m ? to_float(k[at]) : 0.f;
            if (OUT) {
                Qs[i * ldk + d] = i < m ? to_float(q[at]) : 0.f;
            }
        }
        for (int e = tid; e < CHUNK * GENERIC_BV; e += blockDim.x) {
            int i = e / GENERIC_BV;
            int c = e % GENERIC_BV;
            Vs[e] = (i < m && c < bv) ? to_float(v[((size_t)(t + i) * H + h) * dv + c0 + c]) : 0.f;
        }
        __syncthreads();

        if (OUT) {
            // scores with the causal decay mask: S[i][j] = lambda^(i-j) q_i . k_j for j <= i
            for (int e = tid; e < CHUNK * CHUNK; e += blockDim.x) {
                int i = e / CHUNK;
                int j = e % CHUNK;
                float acc = 0.f;
                if (j <= i && i < m) {
                    for (int d = 0; d < dk; d++) {
                        acc = fmaf(Qs[i * ldk + d], Ks[j * ldk + d], acc);
                    }
                    acc *= powers[i - j];
                }
                Ss[i * (CHUNK + 1) + j] = acc;
            }
            __syncthreads();
            // o_i = scale (lambda^(i+1) q_i P + sum_j S[i][j] v_j)
            for (int e = tid; e < CHUNK * GENERIC_BV; e += blockDim.x) {
                int i = e / GENERIC_BV;
                int c = e % GENERIC_BV;
                if (i >= m || c >= bv) {
                    continue;
                }
                float inter = 0.f;
                for (int d = 0; d < dk; d++) {
                    inter = fmaf(Qs[i * ldk + d], Ps[d * GENERIC_BV + c], inter);
                }
                float intra = 0.f;
                for (int j = 0; j <= i; j++) {
                    intra = fmaf(Ss[i * (CHUNK + 1) + j], Vs[j * GENERIC_BV + c], intra);
                }
                float out = scale * (powers[i + 1] * inter + intra);
                o[((size_t)(t + i) * H + h) * dv + c0 + c] = from_float<T>(out);
            }
            __syncthreads(); // P is read above and written below
        }

        // P <- lambda^m P + sum_j lambda^(m-1-j) k_j^T v_j (the chunk's sum formed apart, added once)
        for (int e = tid; e < dk * GENERIC_BV; e += blockDim.x) {
            int d = e / GENERIC_BV;
            int c = e % GENERIC_BV;
            float acc = 0.f;
            for (int j = 0; j < m; j++) {
                acc = fmaf(powers[m - 1 - j] * Ks[j * ldk + d], Vs[j * GENERIC_BV + c], acc);
            }
            Ps[e] = powers[m] * Ps[e] + acc;
        }
        __syncthreads();
    }

    for (int e = tid; e < dk * GENERIC_BV; e += blockDim.x) {
        int d = e / GENERIC_BV;
        int c = e % GENERIC_BV;
        if (c < bv) {
            outStates[stateBase + (size_t)d * dv + c0 + c] = Ps[e];
        }
    }
}

#define GENERIC_ENTRIES(SUFFIX, T)                                                                           \
    extern "C" __global__ void __launch_bounds__(GENERIC_THREADS) lightning_forward_generic_##SUFFIX(        \
        const T* q, const T* k, const T* v, T* o, int n, int H, int dk, int dv, int segTokens,               \
        const float* slopes, float scale, const float* incoming, float* outStates) {                         \
        generic_segment<T, true>(q, k, v, o, n, H, dk, dv, segTokens, slopes, scale, incoming, outStates);   \
    }                                                                                                        \
    extern "C" __global__ void __launch_bounds__(GENERIC_THREADS) lightning_states_generic_##SUFFIX(         \
        const T* k, const T* v, int n, int H, int dk, int dv, int segTokens, const float* slopes,            \
        float* outStates) {                                                                                  \
        generic_segment<T, false>(nullptr, k, v, nullptr, n, H, dk, dv, segTokens, slopes, 1.f, nullptr,     \
                                  outStates);                                                                \
    }

GENERIC_ENTRIES(f32, float)
GENERIC_ENTRIES(bf16, __nv_bfloat16)
GENERIC_ENTRIES(f16, __half)

// The scan over the local states of pass 1, in float32. locals[i] (i < S1) is the local state of
// tokens [i * subTokens, min(n, (i + 1) * subTokens)); incoming[s] (s < outCount) gets the state
// before token s * every * subTokens, i.e. before the s-th pass-2 segment when those are `every`
// sub-segments long (pass 1 cuts the window finer than pass 2 so that its CTAs fill the GPU, and
// skips the last pass-2 segment, whose state-after pass 2 writes). finalState, when not null,
// gets the state after all S1 sub-segments. One thread per state element; the sub-segments are
// walked in order, as the combine requires.
extern "C" __global__ void lightning_scan(const float* locals, int S1, int every, int subTokens, int n,
                                          const float* init, float* incoming, int outCount, float* finalState,
                                          int H, int dk, int dv, const float* slopes) {
    const size_t per = (size_t)H * dk * dv;
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= per) {
        return;
    }
    const int h = (int)(idx / ((size_t)dk * dv));
    const float slope = slopes[h];
    float running = init != nullptr ? init[idx] : 0.f;
    for (int i = 0; i < S1; i++) {
        if (i % every == 0 && i / every < outCount) {
            incoming[(size_t)(i / every) * per + idx] = running;
        }
        int tokens = min(subTokens, n - i * subTokens);
        running = expf(-slope * (float)tokens) * running + locals[(size_t)i * per + idx];
    }
    if (S1 % every == 0 && S1 / every < outCount) {
        incoming[(size_t)(S1 / every) * per + idx] = running;
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
