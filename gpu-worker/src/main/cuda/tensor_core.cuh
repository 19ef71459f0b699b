// Tensor-core kernels for lightning attention (causal linear attention with per-head decay).
//
// Include after <cuda_bf16.h> and <cuda_fp16.h>. Needs sm_80 or newer (mma.sync m16n8k16 with
// bf16/f16 operands, ldmatrix, cp.async).
//
// Math, one head, lambda = exp(-slope), q and k already through the feature map phi:
//   S_t = lambda * S_{t-1} + k_t^T v_t ;  o_t = scale * q_t S_t
//   normalized: z_t = lambda * z_{t-1} + k_t ;  o_t = scale * (q_t S_t) / (q_t . z_t + eps)
// Chunk of m <= 64 tokens (local i, j), P, zP = state before the chunk:
//   O       = scale * ( [(Q K^T) .* M] V  +  diag(lambda^(i+1)) Q P ),  M[i][j] = lambda^(i-j), i >= j
//   den_i   = sum_j [(Q K^T) .* M]_ij  +  lambda^(i+1) q_i . zP      (normalized: O row i / (den_i + eps))
//   P_next  = lambda^m P + sum_j lambda^(m-1-j) k_j^T v_j
//   zP_next = lambda^m zP + sum_j lambda^(m-1-j) k_j
//
// Arguments: one LightningArgs by value (lightning_args.cuh). Head h of the computation reads q head
// h / (H / Hq), k head h / (H / Hk), v head h / (H / Hv). The heads of a group are adjacent
// blockIdx.x and are scheduled together, so the group's repeated reads of one k or v tile should
// hit L2: DRAM then sees each shared tile about once per group.
//
// Variants (feature map, normalization, checkpoints) are uniform flags of the launch, tested at chunk
// level (or around a whole k-step), so a plain run executes the plain formula's instructions. One
// instantiation serves all: two (plain and variant) in one entry point made ptxas spill hundreds of
// bytes more than either alone (ptxas -v: the wide forward went from 76 to over 2000 bytes).
//   * feature map: whoever copied a piece of the Q or K tile into shared memory applies phi to it
//     once its own copies have landed, before the stage is handed over (load warps: before they
//     arrive on the full barrier, so they wait for each chunk's copies before issuing the next;
//     wide kernels: before the chunk's __syncthreads). Zero padding is left alone (phi(0) = 1 for
//     elu1, and the padding must stay zero);
//   * z: the state warps own dk rows of the state, so they carry the rows of z they own: the
//     chunk's sum_j w_j k_j is one more mma of their split K^T fragments (hi + lo, as for P) with an
//     all-ones B fragment (no shared-memory load), accumulated apart and added once as
//     zP = lambda^m zP + dz, exactly as dP. (Spare lanes summing K columns in float would cost each
//     of them 64 shared loads and 128 FMAs a chunk; the mma costs the state warps 2 more mma per
//     k-step and tile, beside the 16 of P in the forward, and lands in the rows they own.) They
//     hand zP to the output warps as float32 beside the sPt copy of the state (sZ, same buffers
//     and barriers; the wide kernels keep zP in sZ rather than in registers, see kZReg). The
//     output warps add the row sums of their masked decayed scores (float32, before packing) and
//     lambda^(i+1) q_i . zP (Q from the stage), reduce over the 4 lanes of a quad and divide;
//   * checkpoints (forward): at the end of a chunk that ends a checkpoint interval the state warps
//     store P (and z) exactly as the end-of-segment store does.
// Launch contract: grid = (H, ceil(dv / LIGHTNING_TC_COLUMNS), S), block = LIGHTNING_TC_THREADS_NARROW
// (dk <= 128, kernels lightning_*_tc_<type>; dk <= 64, lightning_*_tc_<type>_n64) or
// LIGHTNING_TC_THREADS_WIDE (dk <= 256, kernels lightning_*_tc_<type>_wide); the narrow block also for
// lightning_forward_tc_<type>_q1 (dk <= 128, forward only); dynamic shared memory = lightning_tc_smem_bytes(dk) or
// less, down to tc_min_smem_bytes(dk) (tc_q1_min_smem_bytes(dk) for _q1). A CTA owns head
// blockIdx.x, the value columns [64 * blockIdx.y, min(dv, 64 * blockIdx.y + 64)) and segment
// s = lightning_segment(args, blockIdx.z, gridDim.z), i.e. tokens [s * segTokens, min(n, (s + 1) *
// segTokens)) in a uniform cut (lightning_args.cuh: an uneven one's first segment is shorter). It
// walks the segment's 64-token chunks in order.
//
// Work split inside a CTA (warp specialization; each SM sub-partition gets one warp of each kind):
//   * forward, warps 0..3 (output warps): one 16-row tile of the chunk's outputs each (Q K^T over the
//     key tiles at or below the diagonal, the intra and the inter product with the T copy of the
//     state before the chunk, sPt). Narrow kernels rotate the tiles among the four warps from chunk
//     to chunk, since later tiles cost more;
//   * forward, warps 4..7 (state warps): state rows (dk) 16*mt .. 16*mt+15 for the m-tiles
//     mt = w-4, w, w+4, w+8, all 64 columns (state update), then the T copy of the new state into sPt
//     (the other of two buffers when Dkp <= 128; otherwise the single buffer, once every output warp
//     has finished reading it: named barrier 1);
//   * states kernel: all 8 warps are state warps, warp w owns m-tiles (w & 3) + 4i and the 32
//     columns 32 * (w >> 2) .. +31;
//   * narrow kernels, warps 8..11 (load warps): issue every copy into the stages and nothing else.
// Narrow kernels hand stages and sPt buffers over through mbarriers (no barrier among the compute
// warps); wide kernels issue their loads from the compute warps and have one __syncthreads per
// chunk. The carried state P lives in the state warps' registers as float32, in the mma accumulator
// layout.
//
// Precision of the state update: the decayed values w_j k_j (w_j = lambda^(m-1-j)) are not exact
// in T, so they go in as hi + lo (split_hl), in registers right after the state warp loads its A
// fragments of K^T; both are multiplied by V (exact in T). The chunk's dP is accumulated from zero
// in its own registers and only then added as P = lambda^m P + dP with an ordinary
// (round-to-nearest) float32 FMA: tensor-core accumulation may truncate, and a running sum over
// thousands of chunks would show that bias.

#pragma once

#include "lightning_args.cuh"
#include "lightning_common.cuh"
#include "lightning_decay.cuh"  // the carry (lightning_carry_by, lightning_decay_comp)

// ---------------------------------------------------------------------------------------------
// Dynamic shared memory, in bytes, with Dkp = dk rounded up to a multiple of 16:
//   128 * Dkp + 188416          i.e.  128 * ((dk + 15) / 16 * 16) + 188416
// (dk = 128: 204800 bytes; dk = 256: 221184 bytes <= 227 KB = 232448). One CTA per SM anyway (its
// threads use the whole register file), so the kernels spend the space on pipeline stages: as
// many as the launch's bytes hold, 2 .. 4 (see NS in body; on GPUs whose blocks get less, such as
// an A100, the host launches with what the device allows, down to tc_min_smem_bytes). Layout
// (T = 2-byte element, LDK = Dkp + 8, LDV = 72; the +8 element pads make every row stride an odd
// multiple of 16 bytes, so the 8 row addresses of an ldmatrix hit 8 different bank groups):
//   decay table          256 floats                      1024
//   NS stages of  Q      64 x LDK T                      128 * (Dkp + 8)   each (forward only)
//                 K      64 x LDK T                      128 * (Dkp + 8)   each
//                 V      64 x LDV T                      9216              each
//   sPt  (P as T)        Dkp x LDV T, x2 if Dkp <= 128   144 * Dkp each    (the forward uses it; the
//                                                                          states kernel leaves it empty)
//   sO   (4 warps)       64 x LDV T                      9216              (forward only)
//   mbarriers            2 per stage + 4                 16 * kMaxStages + 32 (narrow kernels)
//   sZ   (z, float32)    2 x Dkp floats                  8 * Dkp           (normalized runs only)
// The "_q1" forward entries put one Q tile (64 x LDK T) right after the decay table, and the stages hold K and V
// alone; two stages, one sPt (tc_q1_min_smem_bytes).
// Forward: dk = 128 -> 3 stages (179200 bytes used), dk = 256 -> 2 stages, one sPt (200704 bytes);
// normalized, 97 <= dk <= 112 (narrow) gets 3 stages instead of 4 (sZ takes the room of the fourth).
// States: 4 stages for every dk.
// ---------------------------------------------------------------------------------------------
// Two kernel families:
//   narrow (dk <= 128): 12 warps, LIGHTNING_TC_THREADS_NARROW threads. Warps 8..11 only issue the
//     loads and hand stages to the compute warps through mbarriers, so the compute warps never stall
//     on issuing copies (measured on an H200: with the loads issued by the compute warps, a third of
//     each chunk went to issuing cp.async). 12 warps leave 168 registers a thread, so the state
//     warps update one 16-row tile of the state at a time.
//   wide (dk <= 256): 8 warps, LIGHTNING_TC_THREADS_WIDE threads; the compute warps issue their own
//     loads (a 256-row state needs the registers of 8 warps).
#define LIGHTNING_TC_THREADS_NARROW 384
#define LIGHTNING_TC_THREADS_WIDE 256
#define LIGHTNING_TC_COLUMNS 64
#define LIGHTNING_TC_NARROW_MAX_DK 128  // the narrow family's largest dk; the wide one takes dk up to 256
// The narrow family's kernels for dk <= 64 (names ending in "_n64"): the same code with one state
// m-tile a state warp (MT = 1) instead of two. With Dkp <= 64 there are at most 4 m-tiles, one a
// state warp, and the MT = 2 kernels compute a second, dead tile on tile 0's address to keep their
// loops branch-free: half the state warps' mma.sync work at dk = 64 (64 of 128 a chunk in the
// forward, against the output warps' ~72), which made them the forward's critical path there.
#define LIGHTNING_TC_SMALL_MAX_DK 64

__host__ __device__ inline int lightning_tc_smem_bytes(int dk) {
    return 128 * ((dk + 15) / 16 * 16) + 188416;
}

// q . zP on the tensor cores (narrow kernels): the output warps take q_i . zP from one more mma a
// k-step instead of a float32 loop over dk (16 steps of 3 loads, 4 unpacks and 4 FMAs a lane and
// chunk; the wide kernels keep that loop). The state warps write zP as hi + lo (T each, about 16
// significant bits together) into the 8 pad columns of their sPt rows (columns
// 64..71: hi, lo, hi, lo, ...), so the product of the Q fragment with that 8-column block gives q . hi
// and q . lo in every pair of columns. Normalized identity went from +24.9% to +7.1% over plain on an
// H200 (T = 1M, H = 64, D = 128, bf16; bench/cuda/norm_cost.cu, 2026-12-03).
// Each formula has entry points of its own: lightning_*_tc_<type>[_wide|_n64]
// compile the plain body, lightning_*_tc_<type>_norm[_wide|_n64] the body normalized launches run, and the host
// picks by name (Kernels.choose). With the normalized formula as a run-time flag of one body for both (the
// code before), ptxas keeps the z products of the state update as predicated HMMA and the mask loop's row sums
// in plain launches too: on an H200 (T = 1M, H = 64, D = 128, bf16; issue 12, BENCHMARKS.md, tcplain and the
// lead) the plain body alone runs the plain forward in 47.1 ms against 55.0 with one body. The normalized
// entries keep that one body (body's NV = 0: it reads args.normalize, set on every launch of theirs): the
// body compiled for the normalized formula alone (NV = 2) ran normalized identity in 62.4 ms against 59.8.
// The cost: the module's PTX grows from 3.03 to 5.43 MB, and a node without a driver cache
// compiles it in about 18 s instead of 10 the first time (fat binaries, LIGHTNING_SASS, skip that). Both
// bodies in each entry, picked once, spilled 370 bytes in the narrow forward (59.6 / 63.9 ms).
// LIGHTNING_TC_NORM_X (default 0; measurement builds, wrong on purpose): 1, every entry runs the plain body
// (normalized launches wrong); 2, every entry runs the normalized body (plain launches wrong).
#ifndef LIGHTNING_TC_NORM_X
#define LIGHTNING_TC_NORM_X 0
#endif

namespace lightning_tc {

using namespace lightning;  // the helpers both tensor-core families share (lightning_common.cuh)

constexpr int kChunk = 64;    // tokens per chunk
constexpr int kThreads = 256;  // compute threads: warps 0..7

constexpr int kCols = LIGHTNING_TC_COLUMNS;  // value columns per CTA
constexpr int kLdv = kCols + 8;
// Two 8x8 b16 matrices, transposed (lanes 0..15 give the row addresses): a B fragment of one n-tile
// from [k][n] storage.
__device__ __forceinline__ void ldsm_x2_t(unsigned* r, unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1]) : "r"(addr) : "memory");
}
template <bool B> struct TcFlag { static constexpr bool value = B; };
// zP of one row as the 8 pad columns of its sPt row (q . zP on the tensor cores): 4 x (hi, lo).
template <typename T>
__device__ __forceinline__ void store_zpad(T* row, float z) {
    using O_ = Ops<T>;
    float h0, h1;
    const unsigned hh = O_::pack(z, z);
    O_::unpack(hh, h0, h1);
    const unsigned pair = (hh & 0xffffu) | (O_::pack(z - h0, z - h0) << 16);
    *reinterpret_cast<uint4*>(row + kCols) = make_uint4(pair, pair, pair, pair);
}

#ifndef LIGHTNING_TC_MAX_STAGES
#define LIGHTNING_TC_MAX_STAGES 4
#endif
constexpr int kMaxStages = LIGHTNING_TC_MAX_STAGES;  // chunks resident in smem (1 computed + rest in flight)

// The carve-up's two parts (see the layout above lightning_tc_smem_bytes; body computes its offsets with these):
// one stage's bytes, and the fixed part beside the stages. sPt is double-buffered where Dkp <= 128 (the narrow
// kernels, MT <= 2), single in the wide ones.
__host__ __device__ inline unsigned tc_stage_bytes(int dk, bool fwd) {
    const unsigned ldk = (unsigned)((dk + 15) & ~15) + 8u;
    return (fwd ? 256u : 128u) * ldk + 2u * kChunk * kLdv;
}
// The states kernel places its mbarriers after sPt's space too (body: offO), so its fixed part counts that space:
// counted as the forward's alone (session 40's first form), a states kernel given 99 KB at Dk = 80 took 4 stages
// and its mbarriers landed past the block's shared memory (CUDA_ERROR_ILLEGAL_ADDRESS; SharedLimitGpuTest).
// q1: the "_q1" forward's one Q tile (beside the stages, which then hold K and V alone; see tc_q1_min_smem_bytes).
__host__ __device__ inline unsigned tc_fixed_bytes(int dk, bool fwd, bool dblPt, bool norm, bool q1 = false) {
    const unsigned Dkp = (unsigned)((dk + 15) & ~15);
    const unsigned ptBytes = 2u * Dkp * kLdv;  // one copy of sPt
    return 1024u + (q1 ? 128u * (Dkp + 8u) : 0u) + (dblPt ? 2u : 1u) * ptBytes + (fwd ? 2u * kChunk * kLdv : 0u)
           + 16u * kMaxStages + 32u + (norm ? 8u * Dkp : 0u);
}
// The least dynamic shared memory the kernels of this dk run in: two stages beside the fixed part of the
// normalized forward (the largest of the four: the states kernel and plain runs need less). body takes as many
// stages as the launch's bytes hold (%dynamic_smem_size, up to kMaxStages), so a GPU whose blocks get less than
// lightning_tc_smem_bytes (an A100's 163 KB: 2 stages at dk = 128 instead of 3) still runs them; the host launches
// with min(lightning_tc_smem_bytes, the device's limit) where the limit holds this (Kernels.choose).
__host__ __device__ inline int tc_min_smem_bytes(int dk) {
    return (int)(tc_fixed_bytes(dk, true, dk <= LIGHTNING_TC_NARROW_MAX_DK, true) + 2u * tc_stage_bytes(dk, true));
}
// The "_q1" forward entries (dk <= LIGHTNING_TC_NARROW_MAX_DK), for blocks too small for tc_min_smem_bytes: 99 KB on GPUs
// of compute capability 8.6, 8.9 and 12.0 (L40S, L4, A10, RTX) holds two stages of the narrow forward up to dk = 80,
// and dk = 128 needs 136,288 bytes. They keep one Q tile beside two stages of K and V (each output warp loads the 16
// rows of the next chunk's Q it will compute into a slot of its own once it has read this chunk's: no other warp reads
// them) and one sPt buffer, in the narrow body (load warps for K and V, MT = 2): 100,448 bytes at dk = 128,
// normalized. (In the 8-warp body without load warps they took 1.27x the time: BENCHMARKS.md.) They pair with the narrow
// states kernel, whose two stages need less (the difference is 10,240 - 16 * Dkp bytes, positive for every dk here);
// the bytes returned are the larger of the two, so a block that holds them runs both.
__host__ __device__ inline int tc_q1_min_smem_bytes(int dk) {
    if (dk > LIGHTNING_TC_NARROW_MAX_DK) return 0;
    const unsigned fwd = tc_fixed_bytes(dk, true, false, true, true) + 2u * tc_stage_bytes(dk, false);
    const unsigned states = tc_fixed_bytes(dk, false, true, true) + 2u * tc_stage_bytes(dk, false);
    return (int)(fwd > states ? fwd : states);
}

// Which 16-byte pieces of a [64 x cols] tile loader thread t (of `loaders`) copies: it starts at
// row r0, piece c0 and steps by `loaders` pieces (dr rows + dc pieces). Computed once per kernel, so
// the per-chunk loads need no integer division.
struct TilePlan {
    int t, step, nvec, r0, c0, dr, dc;
    __device__ __forceinline__ TilePlan(int cols, int loader, int loaders) {
        t = loader;
        step = loaders;
        nvec = cols >> 3;
        r0 = loader / nvec;
        c0 = loader - r0 * nvec;
        dr = loaders / nvec;
        dc = loaders - dr * nvec;
    }
};

// One loader thread's part of loading rows [0, m) of a [64 x cols] tile whose row r starts at
// src + r * rowStride (elements) into shared memory at dst (row stride ldd elements); columns
// [valid, cols) and rows [m, 64) are zero-filled. vec: 16-byte cp.async, the zeros too (source size
// 0), so that waiting for the copies covers every byte (needs valid % 8 == 0, rowStride % 8 == 0 and
// an aligned src); otherwise synchronous scalar copies (dk or dv not a multiple of 8).
// rows: the tile's rows (kChunk; 16 for one output warp's rows of the "_q1" entries' Q).
template <typename T>
__device__ __forceinline__ void load_tile(unsigned dst, unsigned char* dstGeneric, int ldd, const T* src,
                                          long long rowStride, int m, int cols, int valid, bool vec,
                                          const TilePlan& pl, int rows = kChunk) {
    if (vec && pl.dc == 0) {
        // Common case (cols / 8 divides 128): this thread's column is fixed, rows step by dr, so
        // both addresses advance by constants.
        const bool colOk = 8 * pl.c0 < valid;
        const T* g = src + pl.r0 * rowStride + 8 * pl.c0;
        const long long gStep = pl.dr * rowStride;
        unsigned d = dst + (unsigned)(pl.r0 * ldd + 8 * pl.c0) * 2u;
        const unsigned dStep = (unsigned)(pl.dr * ldd) * 2u;
        for (int r = pl.r0; r < rows; r += pl.dr, g += gStep, d += dStep) {
            const bool ok = colOk && r < m;
            cp_async16_zfill(d, ok ? g : src, ok ? 16u : 0u);
        }
    } else if (vec) {
        int r = pl.r0, c = pl.c0;
        while (r < rows) {
            const unsigned d = dst + (unsigned)(r * ldd + 8 * c) * 2u;
            const bool ok = r < m && 8 * c < valid;
            cp_async16_zfill(d, ok ? src + r * rowStride + 8 * c : src, ok ? 16u : 0u);
            r += pl.dr;
            c += pl.dc;
            if (c >= pl.nvec) { c -= pl.nvec; ++r; }
        }
    } else {
        // Bit copies through unsigned short: no conversion needed.
        const unsigned short* s16 = reinterpret_cast<const unsigned short*>(src);
        unsigned short* d16 = reinterpret_cast<unsigned short*>(dstGeneric);
        for (int idx = pl.t; idx < rows * cols; idx += pl.step) {
            const int r = idx / cols;
            const int c = idx - r * cols;
            d16[r * ldd + c] = (r < m && c < valid) ? s16[r * rowStride + c] : (unsigned short)0;
        }
    }
}

// phi of the feature map on the pieces of a [64 x cols] tile that loader thread pl.t copied with
// load_tile (same plan, m, valid and vec), in place. Rows >= m and columns >= valid keep their zeros
// (phi(0) = 1 for elu1; Q K^T and q . z sum over the padding). A thread touches only what it copied,
// so once its own copies have landed (cp.async.wait) it needs nobody else. phi in packed 16-bit
// arithmetic (lightning_common.cuh's phi_pair; the element-wise path maps to the same bits). FM: the
// feature map code as a constant (chosen once a chunk, not tested for every pair).
template <typename T, int FM>
__device__ __forceinline__ void phi_own(unsigned char* dstGeneric, int ldd, int m, int cols, int valid, bool vec,
                                        const TilePlan& pl, int rows = kChunk) {
    if (vec) {
        // The pieces load_tile walks (both of its vector paths): rows only grow, so stop at m.
        int r = pl.r0, c = pl.c0;
        while (r < m) {
            if (8 * c < valid) {  // valid % 8 == 0 on this path: the whole piece is real
                uint4* p = reinterpret_cast<uint4*>(dstGeneric + 2 * (r * ldd + 8 * c));
                uint4 x = *p;
                x.x = phi_pair<T, FM>(x.x);
                x.y = phi_pair<T, FM>(x.y);
                x.z = phi_pair<T, FM>(x.z);
                x.w = phi_pair<T, FM>(x.w);
                *p = x;
            }
            r += pl.dr;
            c += pl.dc;
            if (c >= pl.nvec) { c -= pl.nvec; ++r; }
        }
    } else {
        unsigned short* d = reinterpret_cast<unsigned short*>(dstGeneric);
        for (int idx = pl.t; idx < rows * cols; idx += pl.step) {
            const int r = idx / cols;
            const int c = idx - r * cols;
            if (r < m && c < valid) d[r * ldd + c] = lightning::phi_bits<T, FM>(d[r * ldd + c]);
        }
    }
}

// ------------------------------ the kernel body -------------------------------------------
// MT = state m-tiles per state warp (1 when Dkp <= 64, 2 when Dkp <= 128, 4 when Dkp <= 256). The hot loops have no
// per-tile branches; zero padding makes the extra tiles harmless (padded rows / columns of Q, K, V
// and sPt are zero).
// LW: load warps (0: the compute warps load). UP: state m-tiles updated together (each V fragment
// serves UP tiles; UP = 1 keeps the registers within what 12 warps allow).
// NV: 0 tests args.normalize at run time (the normalized entries' body); 1 compiles the plain body alone
// (the plain entries), 2 the normalized one (measured slower; only LIGHTNING_TC_NORM_X=2 builds it).
// Q1: the "_q1" forward (tc_q1_min_smem_bytes): one Q tile beside the stages, which hold K and V; two stages, one
// sPt buffer (ptFull[0] and ptEmpty[0], phase c for chunk c), in the narrow body (load warps bring K and V). Output
// warp w keeps the Q rows of the row tile it computes in slot w (rows 16w .. 16w+15) and reads no other, so it loads
// its next chunk's rows there itself (the tile of chunk c+1, rotated), with a commit group of its own, once its last
// read of chunk c's is done, and waits for them at chunk c+1's start. (In the 8-warp body, LW = 0, this form took
// 1.27x the time on an H100: 7c6cefa, BENCHMARKS.md "Dk = 128 on the tensor cores within 99 KB a block".)
template <typename T, bool FWD, int MT, int LW, int NV = 0, bool Q1 = false>
__device__ __forceinline__ void body(const LightningArgs& args) {
    static_assert(!Q1 || (FWD && MT == 2 && LW > 0), "the _q1 forward: dk <= 128, with load warps");
    using O_ = Ops<T>;
    extern __shared__ __align__(16) unsigned char lightning_tc_smem[];

    const T* __restrict__ q = static_cast<const T*>(args.q);
    const T* __restrict__ k = static_cast<const T*>(args.k);
    const T* __restrict__ v = static_cast<const T*>(args.v);
    T* __restrict__ o = static_cast<T*>(args.o);
    const float* __restrict__ slopes = args.slopes;
    const float* __restrict__ incoming = args.incoming;
    float* __restrict__ outStates = args.states;
    const int H = args.heads, dk = args.dk, dv = args.dv;
    const float scale = args.scale;
    // Uniform variant flags. fm: the feature map (0: identity). norm: z is carried (the states
    // kernel writes it to statesNorm; forward also divides). ckN: checkpoint interval, 0 for none.
    const int fm = args.featureMap;
    const bool norm = NV == 0 ? args.normalize != 0 : NV == 2;
    const long long ckN = (FWD && args.checkpoints != nullptr) ? (long long)args.checkpointEvery : 0;

    const int h = blockIdx.x;
    // Grouped heads: head h reads q head h / (H / Hq) etc. (0 counts: as many as H).
    const int Hq = args.headsQ > 0 ? args.headsQ : H;
    const int Hk = args.headsK > 0 ? args.headsK : H;
    const int Hv = args.headsV > 0 ? args.headsV : H;
    const int hq = h / (H / Hq), hk = h / (H / Hk), hv = h / (H / Hv);
    const int c0 = blockIdx.y * kCols;  // first value column of this CTA
    const LightningSegment seg = lightning_segment(args, blockIdx.z, gridDim.z);
    const int s = seg.index;
    const int tid = threadIdx.x;
    const int warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tq = lane & 3;  // mma groupID, threadID_in_group

    const int Dkp = (dk + 15) & ~15;  // dk padded to the mma K / M granularity
    const int ldk = Dkp + 8;
    const int numMT = Dkp >> 4;       // 16-row tiles of the state
    const int width = min(kCols, dv - c0);

    const long long segStart = seg.start;
    const long long segEnd = seg.end;
    const int segLen = (int)(segEnd - segStart);
    const int nChunks = (segLen + kChunk - 1) / kChunk;
    // Tokens of chunk c. The normalized forward entries (NV != 1) take them from the segment's length in
    // 32 bits; the other entries from its 64-bit end, as before uneven plans. Since the segment bounds came
    // from lightning_segment (uneven plans, session 9) ptxas scheduled the normalized forward 8.6% slower
    // with the 64-bit form (normalized identity 57.97 -> 63.06 ms, plain unchanged; norm_cost, H200,
    // T = 2^20, H = 64, D = 128, 2026-12-04); the 32-bit form takes it back to 58.1 ms and normalized elu1
    // from 67.2 to 64.8, but made the plain forward 2.5% slower, so the plain entries keep the 64-bit form
    // (BENCHMARKS.md, "The portable normalized forward's regression"; timed for the narrow entries, dk <= 128).
    // Only the normalized forward entries' SASS changes with this.
    auto chunk_tokens = [&](int c) {
        if constexpr (FWD && NV != 1) return min(kChunk, segLen - c * kChunk);
        else return (int)min((long long)kChunk, segEnd - (segStart + (long long)c * kChunk));
    };

    // ---- shared memory carve-up, byte offsets (see lightning_tc_smem_bytes) ----
    // Stage: [Q (forward only)] K (64 x ldk), V (64 x 72). As many stages as fit (2..kMaxStages).
    // (qkBytes and ptBytes as tc_stage_bytes and tc_fixed_bytes count them; written here from ldk and Dkp, not by
    // calling them: that form spilled more in the wide kernels, e.g. sm_90 lightning_forward_tc_f16_wide 24 bytes
    // more of loads and _bf16_wide 4 and 8 more, ptxas 13.0, session 40)
    const unsigned qkBytes = FWD && !Q1 ? 256u * ldk : 128u * ldk;
    const unsigned stageBytes = tc_stage_bytes(dk, FWD && !Q1);  // qkBytes + V
    const unsigned offQ = 1024u;  // Q1: the Q tile, 64 x ldk
    const unsigned offStage = 1024u + (Q1 ? 128u * ldk : 0u);
    // sPt: double-buffered when Dkp <= 128 (MT <= 2): the state warps write the copy for chunk c+1
    // while the output warps read the one for chunk c, no barrier between them. For Dkp > 128 one
    // buffer (the double one would not fit next to 2 stages); named barrier 1 then orders them.
    constexpr bool kDblPt = (MT <= 2) && !Q1;
    const unsigned ptBytes = 2u * Dkp * kLdv;  // one copy (as tc_fixed_bytes counts it)
    // sZ (normalized only): two float32 arrays of Dkp after the mbarriers. Narrow forward: the two
    // buffers of zP handed to the output warps with sPt (buffer c & 1). Wide kernels carry z there
    // instead of in registers (see kZReg): array 0 is zP, array 1 the chunk's dz (8 * Dkp bytes in tc_fixed_bytes).
    const unsigned fixedBytes = tc_fixed_bytes(dk, FWD, kDblPt, norm, Q1);
    // As many stages as the launch's bytes hold (%dynamic_smem_size): lightning_tc_smem_bytes(dk) where the device
    // allows it, less on GPUs whose blocks get less (an A100: 163 KB); the host never gives fewer than two stages'
    // worth (tc_min_smem_bytes), and a launch that did would overrun the carve-up, so it stops here instead. (The
    // max(2, ...) is for ptxas: knowing NS >= 2, it spilled 20 bytes less in three sm_80 wide forwards and 108 less
    // in sm_90 lightning_forward_tc_bf16_norm_wide, ptxas 13.0.)
    unsigned given;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(given));
    if (given < fixedBytes + 2u * stageBytes) __trap();
    // (Q1: two, what the host gives it bytes for; run and checked only so.)
    const int NS = Q1 ? 2 : max(2, min(kMaxStages, (int)((given - fixedBytes) / stageBytes)));
    const unsigned offPt = offStage + NS * stageBytes;
    const unsigned offO = offPt + (kDblPt ? 2u : 1u) * ptBytes;
    unsigned char* sm = lightning_tc_smem;
    const unsigned smU = smem_u32(sm);
    // mbarriers of the narrow kernels (8 bytes each). Per stage: full[i] (each loader thread arrives
    // once its copies into the stage have landed) and empty[i] (each compute thread arrives once it is
    // done with the stage). Per sPt buffer b: ptFull[b] (each state-warp thread arrives once its part
    // of the copy is written) and ptEmpty[b] (each output-warp thread arrives once it has read it).
    const unsigned fullU = smU + offO + (FWD ? 2u * kChunk * kLdv : 0u);
    const unsigned emptyU = fullU + 8u * kMaxStages;
    const unsigned ptFullU = emptyU + 8u * kMaxStages;
    const unsigned ptEmptyU = ptFullU + 16u;
    float* sZ = reinterpret_cast<float*>(sm + (ptEmptyU + 16u - smU));
    // Decay table: lam(d) = tab[d] = lambda^d for d = 0..191 and tab[d] = 0 for d = -64..-1, so the
    // causal mask is part of the lookup (no compare / select per score).
    float* tab = reinterpret_cast<float*>(sm) + 64;
    T* sPt = reinterpret_cast<T*>(sm + offPt);
    T* sO = reinterpret_cast<T*>(sm + offO);

    const float slope = slopes[h];
    for (int x = tid; x < 256; x += kThreads)
        reinterpret_cast<float*>(sm)[x] = x >= 64 ? expf(-slope * (float)(x - 64)) : 0.f;

    // Vector paths need 16-byte aligned rows: D % 8 == 0 and aligned base pointers.
    const bool vecQK = (dk % 8 == 0) && aligned16(k) && (!FWD || aligned16(q));
    const bool vecV = (dv % 8 == 0) && aligned16(v);
    const bool vecO = FWD && (dv % 8 == 0) && aligned16(o);
    // Elements between consecutive tokens (dk % 8 == 0 keeps them multiples of 8 on the vector path).
    const long long rowQ = (long long)Hq * dk, rowK = (long long)Hk * dk, rowV = (long long)Hv * dv;
    const long long rowO = (long long)H * dv;
    constexpr int kLoaders = LW > 0 ? 32 * LW : kThreads;
    constexpr int UP = (LW > 0 && FWD) || MT < 2 ? 1 : 2;
    const int loader = LW > 0 ? tid - kThreads : tid;
    const TilePlan planQK(Dkp, loader, kLoaders), planV(kCols, loader, kLoaders);

    // Issue the loads of chunk c into stage st (asynchronous on the vector path).
    auto load_chunk = [&](int st, int c) {
        const long long t0 = segStart + (long long)c * kChunk;
        const int m = chunk_tokens(c);
        const unsigned q0 = offStage + st * stageBytes, k0 = q0 + (FWD && !Q1 ? 128u * ldk : 0u), v0 = q0 + qkBytes;
        if (FWD && !Q1)
            load_tile<T>(smU + q0, sm + q0, ldk, q + (t0 * rowQ + (long long)hq * dk), rowQ, m, Dkp, dk, vecQK,
                         planQK);
        load_tile<T>(smU + k0, sm + k0, ldk, k + (t0 * rowK + (long long)hk * dk), rowK, m, Dkp, dk, vecQK, planQK);
        load_tile<T>(smU + v0, sm + v0, kLdv, v + (t0 * rowV + (long long)hv * dv + c0), rowV, m, kCols, width, vecV,
                     planV);
    };
    // phi on the pieces of chunk c's Q and K tiles (stage st) that this thread copied; its copies of
    // the chunk must have landed.
    auto phi_chunk = [&](int st, int c) {
        const int m = chunk_tokens(c);
        const unsigned q0 = offStage + st * stageBytes, k0 = q0 + (FWD && !Q1 ? 128u * ldk : 0u);
        if (fm == 1) {
            if (FWD && !Q1) phi_own<T, 1>(sm + q0, ldk, m, Dkp, dk, vecQK, planQK);
            phi_own<T, 1>(sm + k0, ldk, m, Dkp, dk, vecQK, planQK);
        } else {
            if (FWD && !Q1) phi_own<T, 2>(sm + q0, ldk, m, Dkp, dk, vecQK, planQK);
            phi_own<T, 2>(sm + k0, ldk, m, Dkp, dk, vecQK, planQK);
        }
    };
    // Q1: output warp w's rows of chunk c's Q (row tile (w + c) & 3, the tiles rotating as in the narrow forward)
    // into slot w of the Q tile, rows 16w .. 16w+15 (its lanes the loaders), and phi on them once they have landed.
    // mr: the rows of the 16 that hold tokens (rows past the chunk's end are zero-filled, from the chunk's first row,
    // which exists).
    const TilePlan planQ(Dkp, lane, 32);
    auto q_rows = [&](int c, int& mr, int& tile) {
        tile = (warp + c) & 3;
        mr = min(16, max(0, chunk_tokens(c) - 16 * tile));
        return offQ + 32u * ldk * warp;
    };
    auto load_q_rows = [&](int c) {
        int mr, tile;
        const unsigned d = q_rows(c, mr, tile);
        const long long t0 = segStart + (long long)c * kChunk + (mr > 0 ? 16 * tile : 0);
        load_tile<T>(smU + d, sm + d, ldk, q + (t0 * rowQ + (long long)hq * dk), rowQ, mr, Dkp, dk, vecQK, planQ, 16);
    };
    auto phi_q_rows = [&](int c) {
        int mr, tile;
        const unsigned d = q_rows(c, mr, tile);
        if (fm == 1) phi_own<T, 1>(sm + d, ldk, mr, Dkp, dk, vecQK, planQ, 16);
        else phi_own<T, 2>(sm + d, ldk, mr, Dkp, dk, vecQK, planQ, 16);
    };

    if constexpr (LW > 0) {
        // ---- the load warps fill stage c % NS with chunk c once the compute warps are done with
        //      chunk c - NS. They may stall on issuing copies; the compute warps do not. ----
        if (tid == 0) {
            for (int i = 0; i < NS; ++i) {
                mbar_init(fullU + 8u * i, kLoaders);
                mbar_init(emptyU + 8u * i, kThreads);
            }
            for (int b = 0; b < 2; ++b) {
                mbar_init(ptFullU + 8u * b, 128);
                mbar_init(ptEmptyU + 8u * b, 128);
            }
        }
        __syncthreads();
    }
    if (LW > 0 && warp >= 8) {
        // Synchronous stores or phi: the arrival releases them, so it waits for this thread's copies
        // to land. It does so one chunk behind: chunk cn's copies are issued before chunk cn - 1 is
        // mapped and handed over, so the copies stay a stage ahead (waiting for each chunk's copies
        // right after issuing them put the whole memory latency on every chunk: relu cost +82%).
        const bool direct = vecQK && vecV && fm == 0;
        int pp = 0;  // the stage of chunk cn - 1
        for (int cn = 0, sp = 0; cn < nChunks; ++cn) {
            if (cn >= NS) mbar_wait(emptyU + 8u * sp, (unsigned)(cn / NS - 1) & 1u);
            load_chunk(sp, cn);
            if (direct) {
                cp_async_arrive(fullU + 8u * sp);
            } else {
                cp_async_commit();
                if (cn > 0) {
                    cp_async_wait(1);                    // chunk cn - 1's copies (cn's may fly)
                    if (fm != 0) phi_chunk(pp, cn - 1);  // this thread's own pieces, landed
                    mbar_arrive(fullU + 8u * pp);
                }
            }
            pp = sp;
            if (++sp == NS) sp = 0;
        }
        if (!direct && nChunks > 0) {
            cp_async_wait(0);
            if (fm != 0) phi_chunk(pp, nChunks - 1);
            mbar_arrive(fullU + 8u * pp);
        }
    } else {
    // (compute warps; not indented, to keep this long block readable)

    // ---- roles. Forward: warps 0..3 compute the outputs, warps 4..7 the state (all 64 columns).
    //      States kernel: all 8 warps update the state, warp w owns columns 32 * (w >> 2) .. +31. ----
    constexpr int NT = FWD ? 8 : 4;  // 8-column n-tiles of the state per state warp
    const bool outWarp = FWD && warp < 4;
    const int wi = warp & 3;                        // state warp index along dk
    const int colOff = FWD ? 0 : 32 * (warp >> 2);  // state warp's first column (relative to c0)

    // State m-tile i of a state warp is mt = wi + 4 i. Tiles past numMT (only when numMT is not a
    // multiple of 4) are computed on a valid address (tile 0) to keep the loops branch-free, and
    // their results are dropped.
    unsigned mtOff[MT];  // byte offset of the tile's first dk column inside a K row
    bool mtLive[MT];
#pragma unroll
    for (int i = 0; i < MT; ++i) {
        mtLive[i] = wi + 4 * i < numMT;
        mtOff[i] = mtLive[i] ? 32u * (wi + 4 * i) : 0u;
    }

    // ---- carried state P (state warps): registers, mma C layout. P[i][nt][e] is state row
    //      16*(wi + 4i) + g + 8*(e >> 1), column colOff + 8*nt + 2*tq + (e & 1) (relative to c0). ----
    float P[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) P[i][nt][e] = 0.f;
    // ---- carried normalizer zP (norm only): Z[i][x] is z row 16*(wi + 4i) + g + 8x, the rows of
    //      P[i] (in the states kernel warps w and w + 4 own the same rows; only w < 4 computes). ----
    //      Wide kernels (no kZReg; 8 more registers would spill there) keep zP in sZ instead: the
    //      lane tq == 0 that owns a row is the only one to write it, and it stages the chunk's dz in
    //      sZ + Dkp until the output warps have read zP (named barrier 1).
    constexpr bool kZReg = LW > 0;
    const bool zWarp = norm && colOff == 0;
    float Z[MT][2];
#pragma unroll
    for (int i = 0; i < MT; ++i) Z[i][0] = Z[i][1] = 0.f;
    float* const sDz = sZ + Dkp;
    // Wide: zP = lambda^m zP + dz for the rows of this lane.
    auto apply_dz = [&](float lamM, bool exactM) {
        if (zWarp && tq == 0) {
#pragma unroll
            for (int i = 0; i < MT; ++i) {
                const int r = 16 * (wi + 4 * i) + g;
                if (mtLive[i]) {
                    sZ[r] = lightning_carry_by(exactM, sZ[r], sDz[r], lamM);
                    sZ[r + 8] = lightning_carry_by(exactM, sZ[r + 8], sDz[r + 8], lamM);
                }
            }
        }
    };

    // Stores the state (own tiles and columns) at out, and z at outZ (null: not) by the lanes tq == 0
    // of the warps that carry it.
    auto store_state = [&](float* out, float* outZ) {
#pragma unroll
        for (int i = 0; i < MT; ++i) {
            const int mt = wi + 4 * i;
            if (mtLive[i]) {
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int r = 16 * mt + g + 8 * (e >> 1);
                        const int cc = colOff + 8 * nt + 2 * tq + (e & 1);
                        if (r < dk && cc < width) out[(long long)r * dv + c0 + cc] = P[i][nt][e];
                    }
                if (zWarp && outZ != nullptr && tq == 0) {
                    const int r = 16 * mt + g;
                    if (r < dk) outZ[r] = kZReg ? Z[i][0] : sZ[r];
                    if (r + 8 < dk) outZ[r + 8] = kZReg ? Z[i][1] : sZ[r + 8];
                }
            }
        }
    };

    if (FWD && !outWarp) {
        const float* inc = incoming != nullptr ? incoming + ((long long)s * H + h) * dk * dv : nullptr;
        const float* incZ =
            norm && args.incomingNorm != nullptr ? args.incomingNorm + ((long long)s * H + h) * dk : nullptr;
#pragma unroll
        for (int i = 0; i < MT; ++i) {
            const int mt = wi + 4 * i;
            if (mtLive[i]) {
                if (inc != nullptr) {
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                        for (int e = 0; e < 4; ++e) {
                            const int r = 16 * mt + g + 8 * (e >> 1);
                            const int cc = colOff + 8 * nt + 2 * tq + (e & 1);
                            if (r < dk && cc < width) P[i][nt][e] = inc[(long long)r * dv + c0 + cc];
                        }
                }
                if (norm) {
                    // zP before chunk 0 in sZ buffer 0 (rows past dk: zero, like the K padding).
                    const int r = 16 * mt + g;
                    if (incZ != nullptr) {
                        if (r < dk) Z[i][0] = incZ[r];
                        if (r + 8 < dk) Z[i][1] = incZ[r + 8];
                    }
                    if (tq == 0) {
                        if (kZReg) {
                            store_zpad(sPt + r * kLdv, Z[i][0]);
                            store_zpad(sPt + (r + 8) * kLdv, Z[i][1]);
                        } else {
                            sZ[r] = Z[i][0];
                            sZ[r + 8] = Z[i][1];
                        }
                    }
                }
                // T copy for the first chunk's inter product.
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) {
                    T* d = sPt + (16 * mt + g) * kLdv + colOff + 8 * nt + 2 * tq;
                    *reinterpret_cast<unsigned*>(d) = O_::pack(P[i][nt][0], P[i][nt][1]);
                    *reinterpret_cast<unsigned*>(d + 8 * kLdv) = O_::pack(P[i][nt][2], P[i][nt][3]);
                }
            }
        }
        if constexpr (LW > 0) mbar_arrive(ptFullU);  // buffer 0 holds the state before chunk 0
    }
    if (!FWD && !kZReg && zWarp && tq == 0) {  // wide states kernel: zP starts from zero
#pragma unroll
        for (int i = 0; i < MT; ++i) {
            const int r = 16 * (wi + 4 * i) + g;
            if (mtLive[i]) sZ[r] = sZ[r + 8] = 0.f;
        }
    }

    if constexpr (Q1 && LW > 0) {
        if (outWarp && nChunks > 0) load_q_rows(0);
        cp_async_commit();
    }
    if constexpr (LW == 0) {
        // Prologue: chunks 0 .. NS-2 in flight (one commit group each, empty groups past the end).
        for (int i = 0; i < NS - 1; ++i) {
            if (i < nChunks) load_chunk(i, i);
            cp_async_commit();
        }
    }

    // Per-lane ldmatrix byte offsets. ldmatrix .x4: lanes 8i..8i+7 address the rows of 8x8 matrix
    // i, which lands in register i. The mma fragments (m16n8k16, g = lane/4, tq = lane%4):
    //   A (16x16 row-major): a0 = (g, 2tq..+1), a1 = (g+8, 2tq..), a2 = (g, 8+2tq..), a3 = (g+8, 8+2tq..)
    //   B (16x8, k x n):     b0 = (k 2tq..+1, n g), b1 = (k 8+2tq..+1, n g)
    //   C (16x8):            c0,c1 = (g, 2tq..+1), c2,c3 = (g+8, 2tq..+1)
    // so the four matrices of one ldmatrix.x4 are
    //   A from [row][k] storage:              {rows 0-7 k 0-7, rows 8-15 k 0-7, rows 0-7 k 8-15, rows 8-15 k 8-15}
    //       -> lane addresses row = lane & 15, k = 8 * (lane >> 4);
    //   B of two n-tiles from [n][k] storage: {n 0-7 k 0-7, n 0-7 k 8-15, n 8-15 k 0-7, n 8-15 k 8-15}
    //       -> n = (lane & 7) + 8 * (lane >> 4), k = 8 * ((lane >> 3) & 1);
    //   B of two n-tiles from [k][n] storage, .trans (each 8x8 arrives transposed): same order
    //       -> k = (lane & 7) + 8 * ((lane >> 3) & 1), n = 8 * (lane >> 4);
    //   A = K^T from [token][dk] storage, .trans: A's rows are dk, its k are tokens
    //       -> token = (lane & 7) + 8 * (lane >> 4), dk = 8 * ((lane >> 3) & 1).
    const int lr8 = lane & 7;
    const int lb3 = ((lane >> 3) & 1) << 3;
    const int lb4 = (lane >> 4) << 3;
    const unsigned kRow16 = 32u * ldk;  // bytes of 16 rows of Q or K
    const unsigned laneQA = 2u * ((16 * wi + (lane & 15)) * ldk + lb4);
    const unsigned laneKB = 2u * ((lr8 + lb4) * ldk + lb3);   // also A = K^T (trans) for the state
    const unsigned laneTB = 2u * ((lr8 + lb3) * kLdv + lb4);  // [k][n] tiles with row stride 72
    const unsigned ptB = smU + offPt + laneTB;

    int st = 0;           // stage of chunk c = c % NS
    unsigned parity = 0;  // (c / NS) & 1: with load warps, the phase of full[st] that chunk c completes
    for (int c = 0; c < nChunks; ++c) {
        const long long t0 = segStart + (long long)c * kChunk;
        const int m = chunk_tokens(c);
        const unsigned sOff = offStage + st * stageBytes;  // the chunk's stage: [Q] K V
        const unsigned qOff = Q1 ? offQ : sOff;
        const unsigned kU = smU + sOff + (FWD && !Q1 ? 128u * ldk : 0u);
        const unsigned vOff = sOff + qkBytes;

        // Narrow kernels: no barrier among the compute warps. Each waits for its inputs (the stage;
        // output warps also the sPt copy of the state before the chunk) and says when it is done with
        // them, so output warps may drift apart by up to a chunk (their row tiles rotate, below).
        // Wide kernels: one barrier per chunk; after it every warp is done with chunk c-1.
        if constexpr (LW > 0) {
            if (Q1 && outWarp) {  // this warp's own Q rows of chunk c (its only copies), mapped
                cp_async_wait(0);
                if (fm != 0) phi_q_rows(c);
                __syncwarp();
            }
            mbar_wait(fullU + 8u * st, parity);
        } else {
            cp_async_wait(NS - 2);  // NS-2 younger groups may still fly
            if (fm != 0) phi_chunk(st, c);  // this thread's own pieces of chunk c, landed
            __syncthreads();
            // Refill the stage chunk c-1 used with chunk c+NS-1.
            const int cn = c + NS - 1;
            if (cn < nChunks) load_chunk(st == 0 ? NS - 1 : st - 1, cn);
            cp_async_commit();
        }

        if (outWarp) {
            // ---- outputs for rows 16*t .. 16*t+15. Row tile t costs more the later it is (more key
            //      tiles below the diagonal); narrow kernels rotate the tiles among the output warps
            //      chunk by chunk so that each warp gets the average. ----
            const int t = LW > 0 ? (warp + c) & 3 : warp;
            const bool rowsLive = 16 * t < m;
            // One pass over dk computes both S = Q K^T (the key tiles 0..t; later ones are masked)
            // and the inter product Oa = Q T(P); each Q fragment is loaded once.
            float S[8][4], Oa[8][4];
#pragma unroll
            for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) S[nt][e] = Oa[nt][e] = 0.f;
            // (one buffer: the copy for chunk c is phase c of ptFull[0]; two: phase c >> 1 of ptFull[c & 1])
            if constexpr (LW > 0) {
                if (kDblPt) mbar_wait(ptFullU + 8u * (c & 1), (unsigned)(c >> 1) & 1u);
                else mbar_wait(ptFullU, (unsigned)c & 1u);
            }
            // Normalized (kZReg): Zq = Q times the pad block of sPt (zP as hi, lo, ...),
            // so Zq[0] + Zq[1] is q_i . zP of row i0 = 16t + g and Zq[2] + Zq[3] that of row i0 + 8.
            float Zq[4] = {0.f, 0.f, 0.f, 0.f};
            auto qk_pass = [&](auto withZ) {
                // (Q1: the warp's own slot, rows 16 wi .., holds its tile's rows)
                const unsigned qA = smU + qOff + laneQA + (Q1 ? 0u : 32u * ldk * (t - wi));
                const unsigned kB = kU + laneKB;
                const unsigned ptBc = ptB + ((kDblPt && (c & 1)) ? ptBytes : 0u);
                // lanes 0..15: rows k = lane & 15 of the pad block (columns kCols .. kCols + 7)
                const unsigned zB = smU + offPt + ((kDblPt && (c & 1)) ? ptBytes : 0u) +
                                    2u * ((lr8 + lb3) * kLdv + kCols);
                // (the normalized pass not unrolled: unrolled by 2 it spilled 76 bytes, ptxas sm_90)
                constexpr int kUnroll = decltype(withZ)::value ? 1 : 2;
#pragma unroll kUnroll
                for (int ks = 0; ks < numMT; ++ks) {
                    unsigned a[4];
                    ldsm_x4(a, qA + 32u * ks);
                    if (decltype(withZ)::value) {
                        unsigned zb[2];
                        ldsm_x2_t(zb, zB + ks * (2u * 16 * kLdv));
                        O_::mma(Zq, a, zb[0], zb[1]);
                    }
#pragma unroll
                    for (int np = 0; np < 4; ++np) {
                        unsigned b[4], p[4];
                        if (np <= t) {
                            ldsm_x4(b, kB + np * kRow16 + 32u * ks);
                            O_::mma(S[2 * np], a, b[0], b[1]);
                            O_::mma(S[2 * np + 1], a, b[2], b[3]);
                        }
                        ldsm_x4_t(p, ptBc + ks * (2u * 16 * kLdv) + 32u * np);
                        O_::mma(Oa[2 * np], a, p[0], p[1]);
                        O_::mma(Oa[2 * np + 1], a, p[2], p[3]);
                    }
                }
            };
            if (rowsLive) {
                if (kZReg && norm) qk_pass(TcFlag<true>{});
                else qk_pass(TcFlag<false>{});
            }
            // Normalized: this lane's part of q_i . zP for rows i0 = 16t + g and i0 + 8 (columns
            // 8x + 2tq, +1 of every 8; the quad together covers dk). Q rows of the stage have stride
            // ldk, an odd multiple of 16 bytes, so the 8 rows of a warp read hit 8 bank groups.
            // (kZReg: every lane has the whole product already, in Zq.)
            float qz0 = 0.f, qz1 = 0.f;
            if (kZReg) {
                qz0 = Zq[0] + Zq[1];
                qz1 = Zq[2] + Zq[3];
            } else if (norm && rowsLive) {
                const float* zc = sZ + ((kDblPt && (c & 1)) ? Dkp : 0);
                const T* qr = reinterpret_cast<const T*>(sm + qOff) + (16 * t + g) * ldk + 2 * tq;
                for (int x = 0; x < Dkp; x += 8) {
                    float a0, a1, b0, b1;
                    O_::unpack(*reinterpret_cast<const unsigned*>(qr + x), a0, a1);
                    O_::unpack(*reinterpret_cast<const unsigned*>(qr + 8 * ldk + x), b0, b1);
                    const float2 zz = *reinterpret_cast<const float2*>(zc + x + 2 * tq);
                    qz0 = fmaf(a0, zz.x, fmaf(a1, zz.y, qz0));
                    qz1 = fmaf(b0, zz.x, fmaf(b1, zz.y, qz1));
                }
            }
            // Q1: this warp is done with its rows of Q; the next chunk's take their place.
            if constexpr (Q1) {
                __syncwarp();
                if (c + 1 < nChunks) load_q_rows(c + 1);
                cp_async_commit();
            }
            // This warp is done reading sPt (and sZ); the state warps may overwrite it.
            if constexpr (LW > 0) mbar_arrive(ptEmptyU + (kDblPt ? 8u * (c & 1) : 0u));
            else if (!kDblPt) named_bar_sync_split(1, kThreads);

            if (rowsLive) {
                // Mask and decay (tab is 0 for i < j), then repack the C fragments as A fragments of
                // the intra product: the A fragment of key k-step kk is {n-tile 2kk row g, n-tile 2kk
                // row g+8, n-tile 2kk+1 row g, n-tile 2kk+1 row g+8}.
                const int i0 = 16 * t + g;            // local row of c0/c1; c2/c3 are row i0 + 8
                const float* tr = tab + (i0 - 2 * tq);  // tr[-8nt - x] = lambda^(i0 - (8nt + 2tq + x))
                unsigned Sp[4][4];
                float rs0 = 0.f, rs1 = 0.f;  // normalized: this lane's part of the rows' score sums
#pragma unroll
                for (int nt = 0; nt < 8; ++nt) {
                    const float v0 = S[nt][0] * tr[-8 * nt];
                    const float v1 = S[nt][1] * tr[-8 * nt - 1];
                    const float v2 = S[nt][2] * tr[8 - 8 * nt];
                    const float v3 = S[nt][3] * tr[7 - 8 * nt];
                    if (norm) {
                        rs0 += v0 + v1;
                        rs1 += v2 + v3;
                    }
                    Sp[nt >> 1][2 * (nt & 1)] = O_::pack(v0, v1);
                    Sp[nt >> 1][2 * (nt & 1) + 1] = O_::pack(v2, v3);
                }

                // Inter rows scaled by lambda^(i+1).
                {
                    const float r0 = tab[i0 + 1], r1 = tab[i0 + 9];
#pragma unroll
                    for (int nt = 0; nt < 8; ++nt) {
                        Oa[nt][0] *= r0; Oa[nt][1] *= r0;
                        Oa[nt][2] *= r1; Oa[nt][3] *= r1;
                    }
                }

                // Intra: Oa += T(S .* M) V over key k-steps kk <= t (later ones are fully masked).
                const unsigned vB = smU + vOff + laneTB;
#pragma unroll
                for (int kk = 0; kk < 4; ++kk) {
                    if (kk <= t) {
#pragma unroll
                        for (int np = 0; np < 4; ++np) {
                            unsigned b[4];
                            ldsm_x4_t(b, vB + kk * (2u * 16 * kLdv) + 32u * np);
                            O_::mma(Oa[2 * np], Sp[kk], b[0], b[1]);
                            O_::mma(Oa[2 * np + 1], Sp[kk], b[2], b[3]);
                        }
                    }
                }

                // Row factors: scale, or normalized scale / (den + eps) with den_i = score sum +
                // lambda^(i+1) q_i . zP, summed over the quad (lanes 4g .. 4g+3 hold row i0's parts).
                float f0 = scale, f1 = scale;
                if (norm) {
                    float d0 = kZReg ? rs0 : fmaf(tab[i0 + 1], qz0, rs0), d1 = kZReg ? rs1 : fmaf(tab[i0 + 9], qz1, rs1);
                    d0 += __shfl_xor_sync(0xffffffffu, d0, 1);
                    d1 += __shfl_xor_sync(0xffffffffu, d1, 1);
                    d0 += __shfl_xor_sync(0xffffffffu, d0, 2);
                    d1 += __shfl_xor_sync(0xffffffffu, d1, 2);
                    if (kZReg) {  // the quad's lanes each hold the whole q . zP
                        d0 = fmaf(tab[i0 + 1], qz0, d0);
                        d1 = fmaf(tab[i0 + 9], qz1, d1);
                    }
                    f0 = scale / (d0 + args.eps);
                    f1 = scale / (d1 + args.eps);
                }

                // Stage this warp's 16 x 64 output tile in sO (rounded to T), then write it to global
                // memory as 16-byte row segments (8 lanes cover one 128-byte row).
                T* sOw = sO + 16 * warp * kLdv;
                __syncwarp();  // every lane has copied out the previous chunk's tile
#pragma unroll
                for (int nt = 0; nt < 8; ++nt) {
                    T* d = sOw + g * kLdv + 8 * nt + 2 * tq;
                    *reinterpret_cast<unsigned*>(d) = O_::pack(f0 * Oa[nt][0], f0 * Oa[nt][1]);
                    *reinterpret_cast<unsigned*>(d + 8 * kLdv) = O_::pack(f1 * Oa[nt][2], f1 * Oa[nt][3]);
                }
                __syncwarp();
#pragma unroll
                for (int rep = 0; rep < 4; ++rep) {
                    const int idx = lane + 32 * rep;
                    const int r = idx >> 3, cc = (idx & 7) << 3;
                    const int lr = 16 * t + r;
                    if (lr < m) {
                        T* dst = o + (t0 + lr) * rowO + (long long)h * dv + c0 + cc;
                        const T* srcp = sOw + r * kLdv + cc;
                        if (vecO) {
                            if (cc < width) *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(srcp);
                        } else {
#pragma unroll
                            for (int e = 0; e < 8; ++e)
                                if (cc + e < width) dst[e] = srcp[e];
                        }
                    }
                }
            }
            if constexpr (LW > 0) mbar_arrive(emptyU + 8u * st);  // done with the stage
        } else {
            // ---- state update: P = lambda^m P + K^T (w V), w_j = lambda^(m-1-j), with w V split into
            //      hi + lo in registers right after its B fragments are loaded (rows j >= m get w = 0
            //      from the table's zero half). Two m-tiles at a time, so each split B fragment is used
            //      twice. dP starts from zero each chunk. ----
            // The carry by lightning_carry's rule with one coefficient live (lightning_carry_by): lamM is
            // 1 - lambda^m where exactM (lambda^m >= 1/2), lambda^m itself below.
            const float powM = tab[m];
            const bool exactM = powM >= 0.5f;
            const float lamM = exactM ? lightning_decay_comp(slopes[h], (float)m) : powM;
            // All-ones B fragment: K^T (w 1) gives the chunk's sum_j w_j k_j in every column.
            const unsigned ones = O_::pack(1.f, 1.f);
            const unsigned kA = kU + laneKB;
            const unsigned vB = smU + vOff + laneTB + 2u * colOff;
#pragma unroll
            for (int i0p = 0; i0p < MT; i0p += UP) {
                float dP[UP][NT][4], dz[UP][4];
#pragma unroll
                for (int u = 0; u < UP; ++u) {
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                        for (int e = 0; e < 4; ++e) dP[u][nt][e] = 0.f;
#pragma unroll
                    for (int e = 0; e < 4; ++e) dz[u][e] = 0.f;
                }
#pragma unroll
                for (int kk = 0; kk < 4; ++kk) {
                    // A = K^T (rows = dk 16mt.., cols = tokens 16kk..): transposed load of K, split
                    // into hi + lo of the decayed values. Registers 0, 1 hold tokens 16kk + 2tq + {0, 1},
                    // registers 2, 3 the same + 8.
                    const float* wt = tab + (m - 1 - 16 * kk - 2 * tq);
                    const PairWeights<T> w0(wt[0], wt[-1]), w8(wt[-8], wt[-9]);
                    unsigned ah[UP][4], al[UP][4];
#pragma unroll
                    for (int u = 0; u < UP; ++u) {
                        unsigned a[4];
                        ldsm_x4_t(a, kA + kk * kRow16 + mtOff[i0p + u]);
                        split_hl<T>(a[0], w0, ah[u][0], al[u][0]);
                        split_hl<T>(a[1], w0, ah[u][1], al[u][1]);
                        split_hl<T>(a[2], w8, ah[u][2], al[u][2]);
                        split_hl<T>(a[3], w8, ah[u][3], al[u][3]);
                    }
                    if (kZReg && zWarp) {
#pragma unroll
                        for (int u = 0; u < UP; ++u) {
                            O_::mma(dz[u], al[u], ones, ones);
                            O_::mma(dz[u], ah[u], ones, ones);
                        }
                    }
#pragma unroll
                    for (int np = 0; np < NT / 2; ++np) {
                        unsigned b[4];
                        ldsm_x4_t(b, vB + kk * (2u * 16 * kLdv) + 32u * np);
                        // lo products first, then hi.
#pragma unroll
                        for (int u = 0; u < UP; ++u) {
                            O_::mma(dP[u][2 * np], al[u], b[0], b[1]);
                            O_::mma(dP[u][2 * np + 1], al[u], b[2], b[3]);
                        }
#pragma unroll
                        for (int u = 0; u < UP; ++u) {
                            O_::mma(dP[u][2 * np], ah[u], b[0], b[1]);
                            O_::mma(dP[u][2 * np + 1], ah[u], b[2], b[3]);
                        }
                    }
                }
#pragma unroll
                for (int u = 0; u < UP; ++u) {
                    const int i = i0p + u;
                    if (mtLive[i]) {
#pragma unroll
                        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                            for (int e = 0; e < 4; ++e)
                                P[i][nt][e] = lightning_carry_by(exactM, P[i][nt][e], dP[u][nt][e], lamM);
                        // dz rows g (c0, c1) and g + 8 (c2, c3); every column is the same.
                        if (kZReg && zWarp) {
                            Z[i][0] = lightning_carry_by(exactM, Z[i][0], dz[u][0], lamM);
                            Z[i][1] = lightning_carry_by(exactM, Z[i][1], dz[u][2], lamM);
                        }
                    }
                }
            }
            if (!kZReg && zWarp) {
                // Wide: dz in a pass of its own over the K tile (still in its stage until the next
                // chunk's __syncthreads), one m-tile at a time, so that only 4 accumulators are
                // live beside P (inside the loop above, 8 more registers made the wide forward
                // spill ~450 bytes). Staged in sDz by its owner lane until zP may change.
#pragma unroll
                for (int i = 0; i < MT; ++i) {
                    const int mt = wi + 4 * i;
                    const bool live = mt < numMT;
                    const unsigned off = live ? 32u * mt : 0u;
                    float dzi[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
                    for (int kk = 0; kk < 4; ++kk) {
                        const float* wt = tab + (m - 1 - 16 * kk - 2 * tq);
                        const PairWeights<T> w0(wt[0], wt[-1]), w8(wt[-8], wt[-9]);
                        unsigned x[4], ah[4], al[4];
                        ldsm_x4_t(x, kA + kk * kRow16 + off);
                        split_hl<T>(x[0], w0, ah[0], al[0]);
                        split_hl<T>(x[1], w0, ah[1], al[1]);
                        split_hl<T>(x[2], w8, ah[2], al[2]);
                        split_hl<T>(x[3], w8, ah[3], al[3]);
                        O_::mma(dzi, al, ones, ones);
                        O_::mma(dzi, ah, ones, ones);
                    }
                    if (live && tq == 0) {
                        sDz[16 * mt + g] = dzi[0];
                        sDz[16 * mt + g + 8] = dzi[2];
                    }
                }
            }
            if constexpr (LW > 0) mbar_arrive(emptyU + 8u * st);  // done with the stage
            if (!FWD && !kZReg) apply_dz(lamM, exactM);  // nobody else reads z in the states kernel
            if (FWD) {
                // Store the T copy of the new state for the next chunk's inter product: into the other
                // buffer once the output warps have read what it held (chunk c-1's copy), or (single
                // buffer) once every output warp has read this chunk's copy.
                if constexpr (LW > 0) {
                    if (!kDblPt) mbar_wait(ptEmptyU, (unsigned)c & 1u);  // one buffer: every output warp read chunk c's
                    else if (c > 0) mbar_wait(ptEmptyU + 8u * ((c + 1) & 1), (unsigned)((c - 1) >> 1) & 1u);
                } else if (!kDblPt) {
                    named_bar_sync_split(1, kThreads);
                }
                T* sPtn = sPt + ((kDblPt && !(c & 1)) ? Dkp * kLdv : 0);
#pragma unroll
                for (int i = 0; i < MT; ++i) {
                    const int mt = wi + 4 * i;
                    if (mtLive[i]) {
#pragma unroll
                        for (int nt = 0; nt < NT; ++nt) {
                            T* d = sPtn + (16 * mt + g) * kLdv + colOff + 8 * nt + 2 * tq;
                            *reinterpret_cast<unsigned*>(d) = O_::pack(P[i][nt][0], P[i][nt][1]);
                            *reinterpret_cast<unsigned*>(d + 8 * kLdv) = O_::pack(P[i][nt][2], P[i][nt][3]);
                        }
                        if (kZReg && zWarp && tq == 0) {  // zP for the next chunk, beside the sPt copy
                            store_zpad(sPtn + (16 * mt + g) * kLdv, Z[i][0]);
                            store_zpad(sPtn + (16 * mt + g + 8) * kLdv, Z[i][1]);
                        }
                    }
                }
                if (!kZReg) apply_dz(lamM, exactM);  // the output warps have read zP (named barrier 1)
                if constexpr (LW > 0) mbar_arrive(ptFullU + (kDblPt ? 8u * ((c + 1) & 1) : 0u));
                // Checkpoint: this chunk ends sequence token end - 1; a multiple of N ends interval
                // end / N - 1 (global), stored at its index among this launch's checkpoints.
                if constexpr (FWD) {
                    if (ckN > 0) {
                        const long long end = args.position + t0 + m;
                        if (end % ckN == 0) {
                            const long long ci = end / ckN - 1 - args.firstCheckpoint;
                            store_state(args.checkpoints + (ci * H + h) * dk * dv,
                                        norm && blockIdx.y == 0 && args.checkpointNorms != nullptr
                                            ? args.checkpointNorms + (ci * H + h) * dk : nullptr);
                        }
                    }
                }
            }
        }
        if (++st == NS) {
            st = 0;
            parity ^= 1u;
        }
    }

    // ---- the state after the segment's last token (state warps) ----
    if (!outWarp)
        store_state(outStates + ((long long)s * H + h) * dk * dv,
                    norm && blockIdx.y == 0 && args.statesNorm != nullptr
                        ? args.statesNorm + ((long long)s * H + h) * dk : nullptr);
    }  // compute warps
}

}  // namespace lightning_tc

// ------------------------------ entry points ----------------------------------------------
// narrow: dk <= 128, block LIGHTNING_TC_THREADS_NARROW; wide: dk <= 256, block LIGHTNING_TC_THREADS_WIDE;
// n64: dk <= LIGHTNING_TC_SMALL_MAX_DK, the narrow block and shared memory; q1 (forward only): dk <= 128, the narrow
// block, shared memory tc_q1_min_smem_bytes (for 99 KB blocks; pairs with the narrow states kernel).
// NV: the body an entry compiles (body's NV: 0 reads args.normalize, 1 plain, 2 normalized), unless a build
// says otherwise (above).
#if LIGHTNING_TC_NORM_X
#define LIGHTNING_TC_NV(NV) LIGHTNING_TC_NORM_X
#else
#define LIGHTNING_TC_NV(NV) NV
#endif
#define LIGHTNING_TC_BODY(T, FWD, MT, LW, NV) lightning_tc::body<T, FWD, MT, LW, LIGHTNING_TC_NV(NV)>(a)
#define LIGHTNING_TC_ENTRIES(NAME, T, NV)                                                                \
    extern "C" __global__ void __launch_bounds__(LIGHTNING_TC_THREADS_NARROW, 1)                         \
    lightning_forward_tc_##NAME(const LightningArgs a) {                                                 \
        LIGHTNING_TC_BODY(T, true, 2, 4, NV);                                                            \
    }                                                                                                    \
    extern "C" __global__ void __launch_bounds__(LIGHTNING_TC_THREADS_WIDE, 1)                           \
    lightning_forward_tc_##NAME##_wide(const LightningArgs a) {                                          \
        LIGHTNING_TC_BODY(T, true, 4, 0, NV);                                                            \
    }                                                                                                    \
    extern "C" __global__ void __launch_bounds__(LIGHTNING_TC_THREADS_NARROW, 1)                         \
    lightning_states_tc_##NAME(const LightningArgs a) {                                                  \
        LIGHTNING_TC_BODY(T, false, 2, 4, NV);                                                           \
    }                                                                                                    \
    extern "C" __global__ void __launch_bounds__(LIGHTNING_TC_THREADS_WIDE, 1)                           \
    lightning_states_tc_##NAME##_wide(const LightningArgs a) {                                           \
        LIGHTNING_TC_BODY(T, false, 4, 0, NV);                                                           \
    }                                                                                                    \
    extern "C" __global__ void __launch_bounds__(LIGHTNING_TC_THREADS_NARROW, 1)                         \
    lightning_forward_tc_##NAME##_n64(const LightningArgs a) {                                           \
        LIGHTNING_TC_BODY(T, true, 1, 4, NV);                                                            \
    }                                                                                                    \
    extern "C" __global__ void __launch_bounds__(LIGHTNING_TC_THREADS_NARROW, 1)                         \
    lightning_states_tc_##NAME##_n64(const LightningArgs a) {                                            \
        LIGHTNING_TC_BODY(T, false, 1, 4, NV);                                                           \
    }                                                                                                    \
    extern "C" __global__ void __launch_bounds__(LIGHTNING_TC_THREADS_NARROW, 1)                         \
    lightning_forward_tc_##NAME##_q1(const LightningArgs a) {                                            \
        lightning_tc::body<T, true, 2, 4, LIGHTNING_TC_NV(NV), true>(a);                                 \
    }

LIGHTNING_TC_ENTRIES(bf16, __nv_bfloat16, 1)
LIGHTNING_TC_ENTRIES(f16, __half, 1)
LIGHTNING_TC_ENTRIES(bf16_norm, __nv_bfloat16, 0)
LIGHTNING_TC_ENTRIES(f16_norm, __half, 0)
