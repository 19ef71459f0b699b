// The batch step of many short sequences (the batch form of decoding), loaded as PTX through JCuda's
// driver API by engine/cuda/CudaBatchStep.java. Its own module, apart from lightning.cu: a different
// argument struct (lightning_batch_args.cuh) and a different shape of work (many sequences of a few
// tokens, each with a stored state, instead of one long window), and so a change here does not
// rebuild the long-sequence kernels' PTX.
//
// Per sequence n (state slot slots[n], tokens [offsets[n], offsets[n+1])) and head h:
//   S_t = lambda S_{t-1} + phi(k_t)^T v_t,   z_t = lambda z_{t-1} + phi(k_t)           (z: normalizing)
//   o_t = scale phi(q_t) S_t  (plain)   or   scale (phi(q_t) S_t) / (phi(q_t) . z_t + eps)
// with lambda = exp(-slope_h), S and z float32 in the store, updated in place.
//
// Work: one launch per batch. A CTA owns (sequence, head, tiles of BV value columns): it loads its
// Dk x BV slice of S into registers once, runs the sequence's tokens through it in order, writes o
// for each token and the slice back once. With one token per sequence this is a single streaming
// pass over the states, the least traffic there is (read and write each state once); q, k, v, o are
// a few KB per sequence against 512 KB of state at H = 8, D = 128.
//
// Threads (the shipped shape): 128 = 16 thread rows x 8 thread columns; thread (r, c) holds rows r, r + 16, ... of S and
// the 4 columns 4c..4c+3 of the tile (float4 loads and stores where Dv is a multiple of 4): a warp
// reads 4 rows x 128 contiguous bytes. For each token, every thread updates its elements and sums
// phi(q)_i S[i, col] over its rows; the 16 partial sums of a column meet in shared memory. Tokens are
// staged `group` (<= 8) at a time, so there are 3 barriers per group, not per token.
//
// Normalizing: every column tile needs the denominators, and z belongs to the head, not to a tile;
// a second CTA of the same head reading z while the first writes it back would race. So a
// normalizing CTA walks all tiles of its head (tilesPerCta = all) and owns z: it scans z over up to
// CHUNK tokens (den_t into shared memory), then runs those tokens through each tile, and so on.
//
// Staged kernels (the decode step): the same CTA and thread layout, but the slice of S goes from
// global into shared memory by cp.async (16 bytes a thread, no registers held while the bytes are in
// flight), the tokens update it there, and it is written back from there. A register-held slice caps
// the bytes in flight at the registers an SM has left for state (6 CTAs x 16 KB at 80 registers a
// thread); a staged CTA takes 56 registers and 19.4 KB of shared memory (decode, Dk = 128), so 9
// CTAs an SM keep 144 KB of states in flight, and more CTAs overlap the dependent slot lookup each
// one starts with. Each thread moves only the elements it computes, so cp.async.wait_all alone (no
// barrier) makes them visible to it. The host picks them for rows <= 8 a thread and sequences of at
// most BATCH_STAGED_TOKENS new tokens (each token reads and writes the slice in shared memory once,
// which a long sequence pays for; the register kernels keep those).
//
// Decay is applied once per token by its complement 1 - lambda = -expm1(-slope), x <- x - (comp x - k v)
// (lightning_decayed): lambda rounded to float32 is far off a slow head's rate (slope 1.5e-7: 19%), which the
// recurrence took every token with one sign (BENCHMARKS.md, "A slowly decaying head's carry").

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "lightning_args.cuh"          // lightning_phi: the feature maps, one owner on the device
#include "lightning_batch_args.cuh"
#include "lightning_decay.cuh"         // the carry: lightning_decayed

// The shipped shape; bench/decode_batch.py builds others (-D) to compare on a device. The host reads
// the shape a module was built with from lightning_batch_shapes.
#ifndef BATCH_BV
#define BATCH_BV 32            // value columns per tile
#endif
#ifndef BATCH_ROW_GROUPS
#define BATCH_ROW_GROUPS 16    // thread rows; thread columns = BATCH_BV / 4 (8)
#endif
#define BATCH_THREADS (BATCH_ROW_GROUPS * BATCH_BV / 4)
// CTAs an SM must hold at once (__launch_bounds__), which caps the registers a thread may take, for
// the kernels of up to 8 rows a thread (Dk <= 128). The decode step is a stream over the states: more
// resident CTAs keep more of them in flight. Measured on the H200 (decode, H = 8, D = 128, BF16, N =
// 65,536, bench/decode_batch.py, share of the copy bandwidth with slots in order): unbounded (96
// registers, 5 CTAs) 0.868, 6 CTAs (80 registers) 0.897, 8 CTAs (64 registers, spills) 0.829.
#ifndef BATCH_MIN_BLOCKS
#define BATCH_MIN_BLOCKS 6
#endif
// CTAs an SM must hold for the staged kernels (registers <= 65536 / (128 x this), rounded down to 8):
// 9 gives 56 registers without spills (nvcc 13, sm_90; 10 spilled 12 bytes, 11 spilled 72), and 9 x
// 20.4 KB of shared memory fit the 228 KB of an H100/H200 SM.
#ifndef BATCH_STAGED_MIN_BLOCKS
#define BATCH_STAGED_MIN_BLOCKS 9
#endif
// The host runs a batch through the staged kernels when no sequence has more new tokens than this
// (0: never); reported to the host by lightning_batch_shapes. Measured on the H200 (decode, H = 8,
// D = 128, BF16, bench/decode_batch.py, 2026-12-03): staged 0.918 of the copy bandwidth at N =
// 65,536 and 0.920 at 131,072, against the register kernels' 0.889 to 0.894; at 4 and 8 new tokens
// a sequence the register kernels win (each token re-reads the staged slice), so 2.
#ifndef BATCH_STAGED_TOKENS
#define BATCH_STAGED_TOKENS 2
#endif
// Rows a thread of a staged kernel handles per loop pass (unrolled): loads from shared memory are
// short, and fully unrolled loops hoisted them all, which took 147 registers.
#ifndef BATCH_STAGED_UNROLL
#define BATCH_STAGED_UNROLL 2
#endif
#define BATCH_GROUP 8          // most tokens staged at once
#define BATCH_CHUNK 64         // tokens per z scan when normalizing (den[] in shared memory)
static_assert(BATCH_THREADS % 32 == 0 && BATCH_THREADS >= BATCH_CHUNK, "whole warps, at least one thread a den[]");
// The normalizing scan's per-warp sums borrow the partial sums' space, which holds group >= 1 rows of ROW_GROUPS x BV.
static_assert(BATCH_THREADS / 32 * BATCH_CHUNK <= BATCH_ROW_GROUPS * BATCH_BV, "the warps' den sums fit one group's partials");

// Rows of the staged q and k, padded to a multiple of 4 floats so that v and the partial sums after
// them stay 16-byte aligned for their float4 accesses whatever Dk and the group are.
__host__ __device__ inline int lightning_batch_row(int dk) { return (dk + 3) & ~3; }

// Shared memory in floats, for Dk = dk and `group` staged tokens (the host computes the same in
// BatchModule.sharedBytes; the kernel checks what it got):
//   q[group][row(dk)] | k[group][row(dk)] | v[group][BV] | partial[group][ROW_GROUPS][BV] | den[CHUNK]
//   and, for a staged kernel of `rows` rows a thread, the slice of S after them: [rows * ROW_GROUPS][BV]
__host__ __device__ inline int lightning_batch_smem_floats(int dk, int group, int stagedRows) {
    return group * (2 * lightning_batch_row(dk) + BATCH_BV + BATCH_ROW_GROUPS * BATCH_BV) + BATCH_CHUNK
           + stagedRows * BATCH_ROW_GROUPS * BATCH_BV;
}

template <typename T> __device__ __forceinline__ float bt_to_float(T x);
template <> __device__ __forceinline__ float bt_to_float<float>(float x) { return x; }
template <> __device__ __forceinline__ float bt_to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <> __device__ __forceinline__ float bt_to_float<__half>(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T bt_from_float(float x);
template <> __device__ __forceinline__ float bt_from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 bt_from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half bt_from_float<__half>(float x) { return __float2half_rn(x); }

// State loads and stores; STREAM uses the evict-first (".cs") cache hint, since a state is touched
// once per step (the benchmark times both).
template <bool STREAM> __device__ __forceinline__ float4 bt_load4(const float* p) {
    return STREAM ? __ldcs(reinterpret_cast<const float4*>(p)) : *reinterpret_cast<const float4*>(p);
}
template <bool STREAM> __device__ __forceinline__ void bt_store4(float* p, float4 x) {
    if (STREAM) {
        __stcs(reinterpret_cast<float4*>(p), x);
    } else {
        *reinterpret_cast<float4*>(p) = x;
    }
}

// Staged kernels: 16 bytes of S from global into shared memory, asynchronously (cp.async.cg: not
// through L1). Bench-only builds: BATCH_STAGED_EVICT_FIRST gives the loads the L2 evict-first
// policy, BATCH_STAGED_STORE_CS the stores the evict-first (".cs") hint.
__device__ __forceinline__ void bt_cp_async16(float* dst, const float* src) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
#ifdef BATCH_STAGED_EVICT_FIRST
    asm volatile("{\n.reg .b64 pol;\ncreatepolicy.fractional.L2::evict_first.b64 pol, 1.0;\n"
                 "cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, pol;\n}\n" ::"r"(d), "l"(src) : "memory");
#else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src) : "memory");
#endif
}
__device__ __forceinline__ void bt_cp_async_wait() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }
__device__ __forceinline__ void bt_store4_staged(float* p, float4 x) {
#ifdef BATCH_STAGED_STORE_CS
    __stcs(reinterpret_cast<float4*>(p), x);
#else
    *reinterpret_cast<float4*>(p) = x;
#endif
}

// ROWS: rows of S per thread, ceil(Dk / 16) rounded up to 4, 8 or 16 (Dk <= 64, 128, 256).
// STAGED: the slice of S lives in shared memory (cp.async), not in registers (the staged kernels).
template <typename T, int ROWS, bool STREAM, bool STAGED>
__device__ __forceinline__ void batch_step(const LightningBatchArgs& a) {
    extern __shared__ float smem[];
    constexpr int UNROLL = STAGED ? BATCH_STAGED_UNROLL : ROWS;   // the register kernels index s[] by constants
    const int dk = a.dk;
    const int dv = a.dv;
    const int group = a.group;
    const int ld = lightning_batch_row(dk);
    float* qs = smem;                                  // [group][ld]
    float* ks = qs + group * ld;                       // [group][ld]
    float* vs = ks + group * ld;                       // [group][BV]
    float4* part = reinterpret_cast<float4*>(vs + group * BATCH_BV);   // [group][ROW_GROUPS][BV / 4]
    float* den = vs + group * BATCH_BV + group * BATCH_ROW_GROUPS * BATCH_BV;   // [CHUNK]
    float* st = den + BATCH_CHUNK;                     // STAGED: [ROWS * ROW_GROUPS][BV], 16-byte aligned

    const int tiles = (dv + BATCH_BV - 1) / BATCH_BV;
    const int groupsPerHead = tiles / a.tilesPerCta;
    long long b = blockIdx.x;
    const int tileGroup = (int)(b % groupsPerHead);
    b /= groupsPerHead;
    const int h = (int)(b % a.heads);
    const int seq = (int)(b / a.heads);
    if (seq >= a.count) {
        return;
    }
    const int begin = a.offsets[seq];
    const int end = a.offsets[seq + 1];
    if (end <= begin) {
        return;                                        // no tokens: the state stays as it is
    }
    const long long slot = a.slots[seq];
    const int hq = h / (a.heads / a.headsQ);
    const int hk = h / (a.heads / a.headsK);
    const int hv = h / (a.heads / a.headsV);
    const float comp = lightning_decay_comp(a.slopes[h], 1.f);
    const int tid = threadIdx.x;
    const int rg = tid / (BATCH_BV / 4);               // thread row 0..15
    const int cg = tid % (BATCH_BV / 4);               // thread column 0..7
    const bool vec = (dv & 3) == 0;
    float* S = a.states + (slot * a.heads + h) * (long long)dk * dv;
#ifdef BATCH_OUT_OF_PLACE
    // bench-only build: the new state goes to the same place in a second store passed as norms (plain
    // specs only), to compare an in-place update with a copy-like one
    float* Sout = a.norms + (slot * a.heads + h) * (long long)dk * dv;
#else
    float* Sout = S;
#endif
    const T* q = static_cast<const T*>(a.q);
    const T* k = static_cast<const T*>(a.k);
    const T* v = static_cast<const T*>(a.v);
    T* o = static_cast<T*>(a.o);

    // z: thread i holds z[i] and z[i + 128] (Dk <= 256) for the whole sequence.
    float z0 = 0.f, z1 = 0.f;
#ifdef BATCH_OUT_OF_PLACE
    float* Z = nullptr;
#else
    float* Z = a.normalize ? a.norms + (slot * a.heads + h) * (long long)dk : nullptr;
#endif
    if (Z != nullptr) {
        if (tid < dk) z0 = Z[tid];
        if (tid + BATCH_THREADS < dk) z1 = Z[tid + BATCH_THREADS];
    }
    const int chunk = a.normalize ? BATCH_CHUNK : (end - begin);
    for (int c0 = begin; c0 < end; c0 += chunk) {
        const int c1 = min(end, c0 + chunk);
        if (Z != nullptr) {
            // den_t = phi(q_t) . z_t for the chunk's tokens (eps added where it is used). Each warp sums its
            // dk elements and leaves the sum in warpSums[warp][t]; den_t adds the warps' sums in warp order.
            // Not by atomicAdd into den: the order in which the warps' adds landed varied from run to run,
            // and with three or more warps holding z (dk > 64) so did den's rounding, o's bytes with it, and
            // a retried task's output (BENCHMARKS.md, "The batch step's denominators in a fixed order").
            // warpSums lies in the partial sums' space, unused from here until the first group's staging
            // below has passed its second barrier.
            float* warpSums = reinterpret_cast<float*>(part);   // [BATCH_THREADS / 32][CHUNK]
            __syncthreads();                           // the previous chunk's den and partial sums are read
            for (int t = c0; t < c1; t++) {
                float p = 0.f;
                if (tid < dk) {
                    float kk = lightning_phi(a.featureMap, bt_to_float(k[((long long)t * a.headsK + hk) * dk + tid]));
                    float qq = lightning_phi(a.featureMap, bt_to_float(q[((long long)t * a.headsQ + hq) * dk + tid]));
                    z0 = lightning_decayed(z0, kk, comp);
                    p = qq * z0;
                }
                if (tid + BATCH_THREADS < dk) {
                    int i = tid + BATCH_THREADS;
                    float kk = lightning_phi(a.featureMap, bt_to_float(k[((long long)t * a.headsK + hk) * dk + i]));
                    float qq = lightning_phi(a.featureMap, bt_to_float(q[((long long)t * a.headsQ + hq) * dk + i]));
                    z1 = lightning_decayed(z1, kk, comp);
                    p += qq * z1;
                }
                for (int off = 16; off > 0; off >>= 1) p += __shfl_xor_sync(0xffffffffu, p, off);
                if ((tid & 31) == 0) warpSums[(tid >> 5) * BATCH_CHUNK + (t - c0)] = p;
            }
            __syncthreads();                           // every warp's sums are in
            if (tid < c1 - c0) {
                float d = warpSums[tid];
#pragma unroll
                for (int w = 1; w < BATCH_THREADS / 32; w++) d += warpSums[w * BATCH_CHUNK + tid];
                den[tid] = d;
            }
            // den[] is complete after the barrier at the top of the first group below
        }
        for (int tile = tileGroup * a.tilesPerCta; tile < (tileGroup + 1) * a.tilesPerCta; tile++) {
            const int col0 = tile * BATCH_BV + cg * 4;
            float4 s[STAGED ? 1 : ROWS];
#pragma unroll UNROLL
            for (int r = 0; r < ROWS; r++) {
                const int row = rg + BATCH_ROW_GROUPS * r;
                if constexpr (STAGED) {
                    // columns past Dv and rows past Dk hold zeros (computed, never stored). A later z
                    // chunk (normalizing, more than CHUNK tokens) reads what this thread stored at the
                    // end of the previous one: plain loads there, which program order keeps behind
                    // those stores (cp.async is not promised to be).
                    float* d = st + row * BATCH_BV + cg * 4;
                    if (row < dk && col0 < dv && vec && c0 == begin) {
                        bt_cp_async16(d, S + (long long)row * dv + col0);
                    } else {
                        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
                        if (row < dk && col0 < dv && vec) {
                            x = *reinterpret_cast<const float4*>(S + (long long)row * dv + col0);
                        } else if (row < dk && col0 < dv) {
                            const float* p = S + (long long)row * dv + col0;
                            x.x = p[0];
                            if (col0 + 1 < dv) x.y = p[1];
                            if (col0 + 2 < dv) x.z = p[2];
                            if (col0 + 3 < dv) x.w = p[3];
                        }
                        *reinterpret_cast<float4*>(d) = x;
                    }
                } else {
                    s[r] = make_float4(0.f, 0.f, 0.f, 0.f);
                    if (row < dk && col0 < dv) {
                        const float* p = S + (long long)row * dv + col0;
                        if (vec) {
                            s[r] = bt_load4<STREAM>(p);
                        } else {
                            s[r].x = p[0];
                            if (col0 + 1 < dv) s[r].y = p[1];
                            if (col0 + 2 < dv) s[r].z = p[2];
                            if (col0 + 3 < dv) s[r].w = p[3];
                        }
                    }
                }
            }
            for (int g0 = c0; g0 < c1; g0 += group) {
                const int gn = min(group, c1 - g0);
                __syncthreads();                       // the previous group's staging and partials are read
                for (int x = tid; x < gn * dk; x += BATCH_THREADS) {
                    const int t = x / dk;
                    const int i = x - t * dk;
                    const long long tok = g0 + t;
                    qs[t * ld + i] = lightning_phi(a.featureMap, bt_to_float(q[(tok * a.headsQ + hq) * dk + i]));
                    ks[t * ld + i] = lightning_phi(a.featureMap, bt_to_float(k[(tok * a.headsK + hk) * dk + i]));
                }
                for (int x = tid; x < gn * BATCH_BV; x += BATCH_THREADS) {
                    const int t = x / BATCH_BV;
                    const int c = x - t * BATCH_BV;
                    const int col = tile * BATCH_BV + c;
                    vs[t * BATCH_BV + c] = col < dv ? bt_to_float(v[((long long)(g0 + t) * a.headsV + hv) * dv + col]) : 0.f;
                }
                if (STAGED) bt_cp_async_wait();           // this thread's slice elements have landed
                __syncthreads();
                for (int t = 0; t < gn; t++) {
                    const float4 vv = reinterpret_cast<const float4*>(vs + t * BATCH_BV)[cg];
                    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll UNROLL
                    for (int r = 0; r < ROWS; r++) {
                        const int row = rg + BATCH_ROW_GROUPS * r;
                        if (ROWS * BATCH_ROW_GROUPS == dk || row < dk) {
                            const float kr = ks[t * ld + row];
                            const float qr = qs[t * ld + row];
                            if constexpr (STAGED) {
                                float4* sp = reinterpret_cast<float4*>(st + row * BATCH_BV) + cg;
                                float4 x = *sp;
                                x.x = lightning_decayed(x.x, kr * vv.x, comp);
                                x.y = lightning_decayed(x.y, kr * vv.y, comp);
                                x.z = lightning_decayed(x.z, kr * vv.z, comp);
                                x.w = lightning_decayed(x.w, kr * vv.w, comp);
                                acc.x = fmaf(qr, x.x, acc.x);
                                acc.y = fmaf(qr, x.y, acc.y);
                                acc.z = fmaf(qr, x.z, acc.z);
                                acc.w = fmaf(qr, x.w, acc.w);
                                *sp = x;
                            } else {
                                s[r].x = lightning_decayed(s[r].x, kr * vv.x, comp);
                                s[r].y = lightning_decayed(s[r].y, kr * vv.y, comp);
                                s[r].z = lightning_decayed(s[r].z, kr * vv.z, comp);
                                s[r].w = lightning_decayed(s[r].w, kr * vv.w, comp);
                                acc.x = fmaf(qr, s[r].x, acc.x);
                                acc.y = fmaf(qr, s[r].y, acc.y);
                                acc.z = fmaf(qr, s[r].z, acc.z);
                                acc.w = fmaf(qr, s[r].w, acc.w);
                            }
                        }
                    }
                    part[(t * BATCH_ROW_GROUPS + rg) * (BATCH_BV / 4) + cg] = acc;
                }
                __syncthreads();
                const float* pf = reinterpret_cast<const float*>(part);
                for (int x = tid; x < gn * BATCH_BV; x += BATCH_THREADS) {
                    const int t = x / BATCH_BV;
                    const int c = x - t * BATCH_BV;
                    const int col = tile * BATCH_BV + c;
                    if (col < dv) {
                        float sum = 0.f;
#pragma unroll
                        for (int r = 0; r < BATCH_ROW_GROUPS; r++) sum += pf[(t * BATCH_ROW_GROUPS + r) * BATCH_BV + c];
                        const float out = a.normalize ? a.scale * sum / (den[g0 + t - c0] + a.eps) : a.scale * sum;
                        o[((long long)(g0 + t) * a.heads + h) * dv + col] = bt_from_float<T>(out);
                    }
                }
            }
#pragma unroll UNROLL
            for (int r = 0; r < ROWS; r++) {
                const int row = rg + BATCH_ROW_GROUPS * r;
                if (row < dk && col0 < dv) {
                    float* p = Sout + (long long)row * dv + col0;
                    if constexpr (STAGED) {
                        const float4 x = reinterpret_cast<const float4*>(st + row * BATCH_BV)[cg];
                        if (vec) {
                            bt_store4_staged(p, x);
                        } else {
                            p[0] = x.x;
                            if (col0 + 1 < dv) p[1] = x.y;
                            if (col0 + 2 < dv) p[2] = x.z;
                            if (col0 + 3 < dv) p[3] = x.w;
                        }
                    } else if (vec) {
                        bt_store4<STREAM>(p, s[r]);
                    } else {
                        p[0] = s[r].x;
                        if (col0 + 1 < dv) p[1] = s[r].y;
                        if (col0 + 2 < dv) p[2] = s[r].z;
                        if (col0 + 3 < dv) p[3] = s[r].w;
                    }
                }
            }
        }
    }
    if (Z != nullptr) {
        if (tid < dk) Z[tid] = z0;
        if (tid + BATCH_THREADS < dk) Z[tid + BATCH_THREADS] = z1;
    }
}

// Traps when the launch gave less shared memory than the layout above needs (a host that computes
// it differently), rather than computing with overlapping arrays; and for a Dk this shape cannot
// hold (z takes two values a thread).
__device__ __forceinline__ void batch_check_smem(const LightningBatchArgs& a, int stagedRows) {
    unsigned got;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(got));
    if (got < 4u * (unsigned)lightning_batch_smem_floats(a.dk, a.group, stagedRows) || a.group < 1 || a.group > BATCH_GROUP
        || a.dk > 256 || (a.normalize && a.dk > 2 * BATCH_THREADS)) {
        __trap();
    }
}

#define BATCH_KERNEL(NAME, T, ROWS, STREAM)                                                   \
    extern "C" __global__ void __launch_bounds__(BATCH_THREADS, ROWS <= 8 ? BATCH_MIN_BLOCKS : 1)       \
    NAME(const LightningBatchArgs a) {                                                        \
        batch_check_smem(a, 0);                                                               \
        if (ROWS * BATCH_ROW_GROUPS < a.dk) __trap(); /* the host picked too few rows a thread */ \
        batch_step<T, ROWS, STREAM, false>(a);                                                \
    }

// The staged kernels (S in shared memory), for rows <= 8 a thread.
#define BATCH_STAGED_KERNEL(NAME, T, ROWS)                                                    \
    extern "C" __global__ void __launch_bounds__(BATCH_THREADS, BATCH_STAGED_MIN_BLOCKS)      \
    NAME(const LightningBatchArgs a) {                                                        \
        batch_check_smem(a, ROWS);                                                            \
        if (ROWS * BATCH_ROW_GROUPS < a.dk) __trap();                                         \
        batch_step<T, ROWS, false, true>(a);                                                  \
    }

BATCH_KERNEL(lightning_batch_step_bf16_r4, __nv_bfloat16, 4, false)
BATCH_KERNEL(lightning_batch_step_bf16_r8, __nv_bfloat16, 8, false)
BATCH_KERNEL(lightning_batch_step_bf16_r16, __nv_bfloat16, 16, false)
// The evict-first variants, for the benchmark's comparison (bench/decode_batch.py).
BATCH_KERNEL(lightning_batch_step_bf16_r4_cs, __nv_bfloat16, 4, true)
BATCH_KERNEL(lightning_batch_step_bf16_r8_cs, __nv_bfloat16, 8, true)
BATCH_KERNEL(lightning_batch_step_bf16_r16_cs, __nv_bfloat16, 16, true)
BATCH_STAGED_KERNEL(lightning_batch_step_bf16_r4_staged, __nv_bfloat16, 4)
BATCH_STAGED_KERNEL(lightning_batch_step_bf16_r8_staged, __nv_bfloat16, 8)
#ifndef BATCH_BF16_ONLY        // the benchmark's variant builds need only these
BATCH_KERNEL(lightning_batch_step_f32_r4, float, 4, false)
BATCH_KERNEL(lightning_batch_step_f32_r8, float, 8, false)
BATCH_KERNEL(lightning_batch_step_f32_r16, float, 16, false)
BATCH_KERNEL(lightning_batch_step_f16_r4, __half, 4, false)
BATCH_KERNEL(lightning_batch_step_f16_r8, __half, 8, false)
BATCH_KERNEL(lightning_batch_step_f16_r16, __half, 16, false)
BATCH_STAGED_KERNEL(lightning_batch_step_f32_r4_staged, float, 4)
BATCH_STAGED_KERNEL(lightning_batch_step_f32_r8_staged, float, 8)
BATCH_STAGED_KERNEL(lightning_batch_step_f16_r4_staged, __half, 4)
BATCH_STAGED_KERNEL(lightning_batch_step_f16_r8_staged, __half, 8)
#endif

// Launch shapes as the module has them, for the host: [BV, threads, most tokens staged, z chunk, thread
// rows, most new tokens a sequence may have for the staged kernels (0: never used)].
extern "C" __global__ void lightning_batch_shapes(int* out) {
    out[0] = BATCH_BV;
    out[1] = BATCH_THREADS;
    out[2] = BATCH_GROUP;
    out[3] = BATCH_CHUNK;
    out[4] = BATCH_ROW_GROUPS;
    out[5] = BATCH_STAGED_TOKENS;
}
