// The Hopper (sm_90a) softmax attention kernels: the same computation as softmax.cu's tensor-core
// family (see there for the math, the packed rows and the mask-bounded key loop), with both
// products on wgmma. Built into its own PTX (softmax_sm90a.ptx) that the host loads only on a
// device of compute capability 9.0; widths other than those here run on softmax.cu's kernels.
// softmax_sm90_forward_{bf16,f16}_k128_v128 (Dk, Dv in 65..128, padded to 128); the host reads the
// launch shape from softmax_sm90_launch_shapes.
//
// The design: warp-specialized, as FlashAttention-3's paper describes it (no code taken from it).
// It replaced a two-warpgroup design in which every thread loaded and the CTA met at a barrier per
// key tile: on an H200 (bench/softmax_peer.py, causal, bf16, Hq = 64, Hk = 8, D = 128) this one
// ran 340.6 / 381.5 / 389.4 TFLOP/s at T = 8K / 32K / 128K against the old 252.7 / 276.8 / 281.8
// (BENCHMARKS.md, "Softmax attention", 2026-12-03).
// Issue 14 then found the loaders' instruction stream to be the limit: with one loader warp and
// two consumer warps on each SM sub-partition, a general per-piece copy loop (~800 instructions a
// tile) took issue slots the consumers needed; full tiles now take a straight run of cp.async
// (load_tile_full, ~140): 566.5 / 599.7 / 606.9 TFLOP/s at T = 8K / 32K / 128K against cuDNN's
// 611.8 / 590.9 / 569.6 in the same run (BENCHMARKS.md, issue 14).
//   CTA = 3 warpgroups (384 threads), 128 packed rows:
//   - warpgroup 0 loads: Q once, then the K and V tiles of 128 keys into a ring of WS_STAGES
//     stages, with cp.async (16 bytes a copy, zero-filled past the ends) in the 128-byte swizzled
//     layout wgmma reads (hopper.cuh's notes). Each tile's K and V have their own "full" mbarrier,
//     which the copies arrive on as they land (cp.async.mbarrier.arrive), so the loaders never
//     wait for their own copies; they wait only for a stage's "empty" mbarrier before refilling it.
//     setmaxnreg gives them few registers and the consumers the rest.
//   - warpgroups 1 and 2 compute, each on 64 of the rows (warp w of a consumer owns rows 16 w ..
//     16 w + 15 of the CTA's 128, the mma.sync layout, so the online softmax and the output code
//     are softmax_common.cuh's). They never meet at a CTA barrier. S = Q K^T is one m64n128k16
//     product a k-step (A = the warpgroup's Q tile, B = the K tile, both K-major, from shared
//     memory); O += P V is m64n128k16 with P in registers (the accumulator layout repacked to
//     16-bit A fragments) and V (keys x Dv, row-major) as the transposed B operand.
//   OVERLAP (intra-warpgroup pipelining): tile j's S = Q K_j^T is issued together with the
//     previous tile's O += P_{j-1} V_{j-1}; the softmax of S_j then runs while that product is on
//     the tensor cores, and O is rescaled once it has landed.
//   PINGPONG: the two consumers take turns issuing their products (named barriers 1 and 2), so
//     that one warpgroup's softmax runs while the other's products occupy the tensor cores.
#include "softmax_common.cuh"
#include "wgmma.cuh"

namespace softmax {
using lightning_wg::Wgmma;
using lightning_wg::fence_async_smem;
using lightning_wg::reg_fence;
using lightning_wg::wg_commit;
using lightning_wg::wg_desc;
using lightning_wg::wg_fence;
using lightning_wg::wg_wait;

constexpr int WG_ROWS = 128;        // packed rows a CTA (2 (consumer) warpgroups x 64)
constexpr int WG_KEYS = 128;        // keys a tile
constexpr int WG_Q_TILE = 64 * 256;              // one warpgroup's Q: 64 rows x 128 columns, two 8192-byte atoms
constexpr int WG_KV_TILE = WG_KEYS * 256;        // 128 rows x 128 columns: two 16384-byte atoms
constexpr int WG_Q_BYTES = 2 * WG_Q_TILE;
constexpr int WG_STAGE = 2 * WG_KV_TILE;         // K then V

// Byte offset of (row r, 16-byte piece c of 16) in a tile of `rows` rows x 128 columns, 128-byte
// swizzle: atom c / 8 (64 columns) of rows x 128 bytes, piece c % 8 at c % 8 ^ r % 8.
__device__ __forceinline__ unsigned atom_off(int rows, int r, int c) {
    return (unsigned)((c >> 3) * rows * 128 + r * 128 + (((c & 7) ^ (r & 7)) << 4));
}


using lightning::mbar_arrive;
using lightning::mbar_init;
using lightning::mbar_wait;
using lightning::named_bar_sync;

constexpr int WG_THREADS = 384;     // loader warpgroup + 2 consumer warpgroups
constexpr int WS_LOADERS = 128;
constexpr int WS_CONSUMERS = 256;
constexpr int WS_STAGES = 3;        // K/V ring depth: a tile is refilled two tiles after its use
// mbarriers after the tiles: fullQ, fullK[S], fullV[S], empty[S] (8 bytes each)
constexpr int WS_BAR_OFF = WG_Q_BYTES + WS_STAGES * WG_STAGE;
constexpr int WS_BAR_BYTES = 8 * (1 + 3 * WS_STAGES);
constexpr int WG_SMEM = WS_BAR_OFF + WS_BAR_BYTES + 1024;  // + alignment of the atoms to 1024
// Registers a thread after setmaxnreg: the CTA starts with 168 (65536 / 384, a multiple of 8);
// 40 for the loaders spilled (ptxas: 40 bytes), 56 and 224 leave both roles free of spills;
// the increase is served from what the decrease frees, so the sum must stay within 3 x 168.
#ifndef SOFTMAX_SM90_LOADER_REGS
#define SOFTMAX_SM90_LOADER_REGS 56
#define SOFTMAX_SM90_CONSUMER_REGS 224
#endif
constexpr int WS_LOADER_REGS = SOFTMAX_SM90_LOADER_REGS, WS_CONSUMER_REGS = SOFTMAX_SM90_CONSUMER_REGS;
static_assert(WS_LOADER_REGS + 2 * WS_CONSUMER_REGS <= 3 * 168, "setmaxnreg must fit the CTA's registers");

__device__ __forceinline__ void named_bar_arrive(int id, int count) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }


// One loader thread's part (lt = 0..127) of a 128-row tile of width d (<= 128; zeros past d and
// for rows >= valid) at shared offset off: piece c = lt % 16 of rows lt / 16 + 8 i, i = 0..15, so
// the swizzle term r % 8 is the same for all sixteen and the shared offsets step by 1024 bytes
// (SUB-row subtiles stacked: Q is two 64-row tiles, one per consumer). rowPtr(r): the global row.
// vec: 16-byte cp.async (needs d % 8 == 0 and 16-byte alignment); otherwise 2-byte loads and a
// 16-byte store (then the caller fences before it signals).
template <int SUB, typename RowPtr>
__device__ __forceinline__ void load_tile(unsigned char* smem, unsigned sBase, unsigned off, RowPtr rowPtr, int valid,
                                          int d, bool vec, const void* any, int lt) {
    const int c = lt & 15, r0 = lt >> 4, col = c * 8;
#pragma unroll 4
    for (int i = 0; i < 16; i++) {
        const int r = r0 + 8 * i;
        const bool ok = r < valid && col < d;
        const unsigned at = off + (unsigned)((r / SUB) * SUB * 256) + atom_off(SUB, r % SUB, c);
        load_piece(smem + at, sBase + at, rowPtr, r, col, ok, d, vec, any);
    }
}

// The loader's signal that its part of a tile is (or will be, as it lands) in shared memory: the
// cp.async path arrives when this thread's copies so far have landed; the 2-byte path has stored
// synchronously and makes the stores visible to the tensor cores first.
__device__ __forceinline__ void loaded(unsigned bar, bool vec) {
    if (vec) {
        lightning::cp_async_arrive(bar);
    } else {
        fence_async_smem();
        mbar_arrive(bar);
    }
}

// ---------------------------------------------------------------- build options (issue 14)
// Each is a compile-time switch so that bench/softmax_fast.sh can build one cubin per combination
// and time them side by side; the shipped PTX has none of them. On the H200 (BENCHMARKS.md, issue
// 14) PIN_WAIT, FAST_STEP + LAZY_MAX and the three together each slowed the kernel before the
// loaders' full-tile path (load_tile_full) existed, and the three together slowed it after.
//   SOFTMAX_SM90_FAST_STEP   the online softmax step with tree reductions (depth 5 instead of a
//       chain of 32 for the row maximum and the row sum), and O rescaled only when some row of
//       the warp changed its maximum (alpha == 1 exactly otherwise: a multiplication by 1).
//   SOFTMAX_SM90_LAZY_MAX=TH (with FAST_STEP) a row keeps its running maximum m until the tile's
//       maximum exceeds m + TH (base-2 units), so O is rescaled only on growth past 2^TH. Exact in
//       the math: the weights are exp2(s - m) for one m shared by O and l, whatever m is; they are
//       at most 2^TH (256 for TH = 8, within bf16 and f16 range), and lse = m + log2 l uses the
//       same m.
//   SOFTMAX_SM90_PIN_WAIT   (the overlapped loop) the wait for P_{j-1} V_{j-1} after the softmax of
//       S_j in a block of its own (see there): without it ptxas schedules the wait before the
//       softmax and the intra-warpgroup overlap does not happen. O is rescaled only where alpha
//       != 1 on some row of the warp, as with FAST_STEP.
//   SOFTMAX_SM90_PROBE_NOEXP, SOFTMAX_SM90_PROBE_NOLOAD: measuring probes only (wrong results): the
//       weights without exp2, or K/V loaded only for the first WS_STAGES tiles (the ring then
//       cycles stale tiles), to bound what the exponentials and the loads cost.
#ifdef SOFTMAX_SM90_FAST_STEP
constexpr bool WS_FAST_STEP = true;
#else
constexpr bool WS_FAST_STEP = false;
#endif
#ifdef SOFTMAX_SM90_LAZY_MAX
constexpr float WS_LAZY_MAX = SOFTMAX_SM90_LAZY_MAX;
#else
constexpr float WS_LAZY_MAX = 0.f;
#endif
#ifdef SOFTMAX_SM90_PIN_WAIT
constexpr bool WS_PIN_WAIT = true;
#else
constexpr bool WS_PIN_WAIT = false;
#endif
#ifdef SOFTMAX_SM90_PROBE_NOEXP
constexpr bool WS_PROBE_NOEXP = true;
#else
constexpr bool WS_PROBE_NOEXP = false;
#endif
#ifdef SOFTMAX_SM90_PROBE_NOLOAD
constexpr bool WS_PROBE_NOLOAD = true;
#else
constexpr bool WS_PROBE_NOLOAD = false;
#endif

// One loader thread's part of a full 128-row tile, the loaders' path for every full K/V tile (every
// row valid, 16-byte aligned rows, d % 8 == 0): the same pieces as load_tile<WG_KEYS> (piece
// c = lt % 16 of rows lt / 16 + 8 i), where row
// r0 + 8 i sits 1024 i bytes after row r0 in shared memory and 8 i strides after it in global.
// src: row r0's piece (or any valid address when the piece lies past d: then zeros, step 0).
__device__ __forceinline__ void load_tile_full(unsigned dst, const unsigned char* src, size_t step, unsigned bytes) {
#pragma unroll
    for (int i = 0; i < 16; i++) cp_async16_zfill(dst + 1024u * i, src + step * i, bytes);
}

// The online softmax step of softmax_common.cuh's softmax_step<false> (same layout, same results
// up to the order of the row sum's additions), written for fewer dependent instructions: tree
// reductions; with LAZY > 0 a row's maximum moves only when it grows by more than LAZY (see
// SOFTMAX_SM90_LAZY_MAX). alpha[x] is exactly 1 where row x's maximum did not move.
template <int NT>
__device__ __forceinline__ void softmax_weights_fast(float (&s)[NT][4], float (&m)[2], float (&l)[2],
                                                     float (&alpha)[2], const int (&klo)[2], const int (&khi)[2],
                                                     int j0, bool masked, float scaleLog2, int lane) {
    static_assert(NT == 16, "tree reductions over 16 n-tiles");
    mask_scores(s, klo, khi, j0, masked, lane);
    float t[2][8];
#pragma unroll
    for (int x = 0; x < 2; x++) {
#pragma unroll
        for (int i = 0; i < 8; i++)
            t[x][i] = fmaxf(fmaxf(s[2 * i][2 * x], s[2 * i][2 * x + 1]), fmaxf(s[2 * i + 1][2 * x], s[2 * i + 1][2 * x + 1]));
#pragma unroll
        for (int w = 4; w >= 1; w >>= 1)
#pragma unroll
            for (int i = 0; i < w; i++) t[x][i] = fmaxf(t[x][i], t[x][i + w]);
    }
    float mUse[2];
#pragma unroll
    for (int x = 0; x < 2; x++) {
        float mx = t[x][0];
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        mx *= scaleLog2;
        // the new maximum: eager, or only past m + LAZY (m = -inf: any finite mx moves it)
        const bool move = WS_LAZY_MAX > 0.f ? mx > m[x] + WS_LAZY_MAX : mx > m[x];
        const float mNew = move ? mx : m[x];
        mUse[x] = mNew == -CUDART_INF_F ? 0.f : mNew;  // a row that saw nothing yet
        alpha[x] = move ? fast_exp2(m[x] - mUse[x]) : 1.f;
        m[x] = mNew;
    }
    float u[2][8];
#pragma unroll
    for (int n = 0; n < NT; n++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const float z = fmaf(s[n][e], scaleLog2, -mUse[e >> 1]);
            s[n][e] = WS_PROBE_NOEXP ? z : fast_exp2(z);
        }
    }
#pragma unroll
    for (int x = 0; x < 2; x++) {
#pragma unroll
        for (int i = 0; i < 8; i++)
            u[x][i] = (s[2 * i][2 * x] + s[2 * i][2 * x + 1]) + (s[2 * i + 1][2 * x] + s[2 * i + 1][2 * x + 1]);
#pragma unroll
        for (int w = 4; w >= 1; w >>= 1)
#pragma unroll
            for (int i = 0; i < w; i++) u[x][i] += u[x][i + w];
        l[x] = alpha[x] * l[x] + u[x][0];
    }
}

template <typename T, bool OVERLAP, bool PINGPONG>
__device__ __forceinline__ void forward_ws(const SoftmaxArgs& a) {
    static_assert(OVERLAP || !PINGPONG, "ping-pong pairs with the overlapped issue order");
    using W128 = Wgmma<T, 128>;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    // atoms must start at multiples of 1024 bytes
    unsigned char* smem = smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u);
    const unsigned sBase = smem_u32(smem);
    const unsigned fullQ = sBase + WS_BAR_OFF, fullK = fullQ + 8, fullV = fullK + 8 * WS_STAGES,
                   empty = fullV + 8 * WS_STAGES;
    const Block b(a, WG_ROWS);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const T* q = static_cast<const T*>(a.q);
    const T* k = static_cast<const T*>(a.k);
    const T* v = static_cast<const T*>(a.v);
    const int first = b.lo / WG_KEYS * WG_KEYS;
    const int tiles = b.lo < b.hi ? (b.hi - first + WG_KEYS - 1) / WG_KEYS : 0;

    if (threadIdx.x == 0) {
        mbar_init(fullQ, WS_LOADERS);
        for (int i = 0; i < WS_STAGES; i++) {
            mbar_init(fullK + 8 * i, WS_LOADERS);
            mbar_init(fullV + 8 * i, WS_LOADERS);
            mbar_init(empty + 8 * i, WS_CONSUMERS);
        }
    }
    __syncthreads();

    if (warp < 4) {
        // ================= loaders =================
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(WS_LOADER_REGS));
        if (tiles > 0) {
            const int lt = threadIdx.x;
            const bool vecQ = a.dk % 8 == 0 && aligned16(q);
            const bool vecK = a.dk % 8 == 0 && aligned16(k);
            const bool vecV = a.dv % 8 == 0 && aligned16(v);
            load_tile<64>(smem, sBase, 0, [&](int r) { return q + b.qRow(a, r) * a.dk; }, b.valid, a.dk, vecQ, q, lt);
            loaded(fullQ, vecQ);
            const size_t strideK = (size_t)a.headsK * a.dk, strideV = (size_t)a.headsK * a.dv;
            for (int it = 0; it < tiles; it++) {
                const int st = it % WS_STAGES;
                // the stage's previous tile (it - S) has been released by both consumers
                if (it >= WS_STAGES) mbar_wait(empty + 8 * st, (unsigned)(it / WS_STAGES - 1) & 1u);
                const int j0 = first + it * WG_KEYS;
                const int valid = min(WG_KEYS, a.nk - j0);
                const unsigned off = WG_Q_BYTES + st * WG_STAGE;
                const T* k0 = k + b.kvRow(a, j0) * a.dk;
                const T* v0 = v + b.kvRow(a, j0) * a.dv;
                if (WS_PROBE_NOLOAD && it >= WS_STAGES) {  // probe: the stage keeps its old tile
                    mbar_arrive(fullK + 8 * st);
                    mbar_arrive(fullV + 8 * st);
                    continue;
                }
                // Full tiles (all but the last): a straight run of 16 cp.async a tile and thread,
                // one base pointer and shared offset stepping by 8 rows (8 strides, 1024 shared
                // bytes). The general path below (per-piece row, bound and alignment tests, 64-bit
                // row products: some 25 instructions a piece, ~800 a tile, against ~140 here in
                // the SASS) kept the loader warp, which
                // shares each SM sub-partition's issue slots with two consumer warps, from letting
                // the consumers run: 340 -> 566 TFLOP/s at T = 8K on the H200.
                if (vecK && vecV && valid == WG_KEYS) {
                    const int c = lt & 15, r0 = lt >> 4, col = c * 8;
                    const unsigned dst = sBase + off + atom_off(WG_KEYS, r0, c);
                    const bool okK = col < a.dk, okV = col < a.dv;
                    load_tile_full(dst, reinterpret_cast<const unsigned char*>(okK ? k0 + r0 * strideK + col : k),
                                   okK ? 8 * strideK * sizeof(T) : 0, okK ? 16u : 0u);
                    lightning::cp_async_arrive(fullK + 8 * st);
                    load_tile_full(dst + WG_KV_TILE,
                                   reinterpret_cast<const unsigned char*>(okV ? v0 + r0 * strideV + col : v),
                                   okV ? 8 * strideV * sizeof(T) : 0, okV ? 16u : 0u);
                    lightning::cp_async_arrive(fullV + 8 * st);
                    continue;
                }
                load_tile<WG_KEYS>(smem, sBase, off, [&](int r) { return k0 + r * strideK; }, valid, a.dk, vecK, k, lt);
                loaded(fullK + 8 * st, vecK);
                load_tile<WG_KEYS>(smem, sBase, off + WG_KV_TILE, [&](int r) { return v0 + r * strideV; }, valid,
                                   a.dv, vecV, v, lt);
                loaded(fullV + 8 * st, vecV);
            }
            cp_async_wait_all();  // nothing of this thread's is still in flight when it exits
        }
        return;
    }

    // ================= consumers =================
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(WS_CONSUMER_REGS));
    const int cw = warp - 4;  // warp of the 8 consumer warps: rows 16 cw .. 16 cw + 15
    const int wg = cw >> 2;   // consumer warpgroup: rows 64 wg .. 64 wg + 63
    const int row[2] = {cw * 16 + (lane >> 2), cw * 16 + (lane >> 2) + 8};
    int klo[2], khi[2];
    row_ranges(a, b, row, klo, khi);

    float acc[16][4];  // m64n128 accumulator: n-tile n = columns 8 n .. 8 n + 7
#pragma unroll
    for (int n = 0; n < 16; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
    float m[2] = {-CUDART_INF_F, -CUDART_INF_F};
    float l[2] = {0.f, 0.f};

    if (tiles > 0) {
        // Q of this warpgroup: K-major A, 8 rows a 1024-byte group; k-step ks: atom ks / 4 (8192
        // bytes), 32 bytes ks % 4 inside it (descriptor units are 16 bytes)
        const unsigned long long qDesc = wg_desc(sBase + wg * WG_Q_TILE, 16u, 1024u);
        mbar_wait(fullQ, 0u);
        // The mbarrier orders the copies before this thread's reads; the proxy fence extends that
        // to the tensor cores' reads (async proxy) of shared memory.
        fence_async_smem();
        // Ping-pong: named barrier 1 + g opens warpgroup g's turn to issue; each turn ends by
        // opening the other's. Warpgroup 1 opens the first turn of warpgroup 0 and skips its own
        // last opening, so every barrier sees as many arrivals as waits.
        if (PINGPONG && wg == 1) named_bar_arrive(1, WS_CONSUMERS);
        unsigned pa[8][4];  // P of the previous tile (OVERLAP) as 16-bit A fragments
        // O += P V for the tile in stage st (V: the transposed B; leading offset = the atom,
        // i.e. the next 64 columns; 16 keys = 2048 bytes)
        auto issue_pv = [&](int st) {
            const unsigned long long vDesc = wg_desc(sBase + WG_Q_BYTES + st * WG_STAGE + WG_KV_TILE, 16384u, 1024u);
#pragma unroll
            for (int kk = 0; kk < 8; kk++) W128::template rs<1>(&acc[0][0], pa[kk], vDesc + 128u * kk);
        };
        auto pack_p = [&](const float (&s)[16][4]) {
#pragma unroll
            for (int kk = 0; kk < 8; kk++) {
                pa[kk][0] = Ops<T>::pack(s[2 * kk][0], s[2 * kk][1]);
                pa[kk][1] = Ops<T>::pack(s[2 * kk][2], s[2 * kk][3]);
                pa[kk][2] = Ops<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                pa[kk][3] = Ops<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
            }
        };
        // S_it = Q K_it^T into s (K: K-major B, one atom of 16384 bytes (128 rows) per 64 columns of Dk)
        auto issue_s = [&](float (&s)[16][4], int st) {
            const unsigned long long kDesc = wg_desc(sBase + WG_Q_BYTES + st * WG_STAGE, 16u, 1024u);
#pragma unroll
            for (int ks = 0; ks < 8; ks++) {
                const unsigned long long qd = qDesc + (unsigned long long)(((ks >> 2) << 9) + ((ks & 3) << 1));
                const unsigned long long kd = kDesc + (unsigned long long)(((ks >> 2) << 10) + ((ks & 3) << 1));
                if (ks == 0) {
                    W128::template ss0<0>(&s[0][0], qd, kd);
                } else {
                    W128::template ss<0>(&s[0][0], qd, kd);
                }
            }
        };
        auto masked = [&](int j0) { return !(j0 >= b.kloMax && j0 + WG_KEYS <= b.khiMin); };
        // The softmax step of tile j0 (weights in s, alpha: the factor for O) and O's rescaling;
        // FAST_STEP skips the rescaling when no row of the warp moved its maximum (alpha == 1).
        auto weights = [&](float (&s)[16][4], float (&alpha)[2], int j0) {
            if (WS_FAST_STEP) {
                softmax_weights_fast(s, m, l, alpha, klo, khi, j0, masked(j0), a.scaleLog2, lane);
            } else {
                softmax_weights(s, m, l, alpha, klo, khi, j0, masked(j0), a.scaleLog2, lane);
            }
        };
        auto rescale = [&](const float (&alpha)[2]) {
            if (!WS_FAST_STEP || __any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) rescale_rows(acc, alpha);
        };
        if (!OVERLAP) {
#pragma unroll 1
            for (int it = 0; it < tiles; it++) {
                const int st = it % WS_STAGES;
                const unsigned ph = (unsigned)(it / WS_STAGES) & 1u;
                const int j0 = first + it * WG_KEYS;
                float s[16][4];
                mbar_wait(fullK + 8 * st, ph);
                fence_async_smem();
                wg_fence();
                issue_s(s, st);
                wg_commit();
                wg_wait<0>();
                reg_fence<64>(&s[0][0]);
                float alpha[2];
                weights(s, alpha, j0);
                rescale(alpha);
                pack_p(s);
                mbar_wait(fullV + 8 * st, ph);
                fence_async_smem();
                wg_fence();
                issue_pv(st);
                wg_commit();
                wg_wait<0>();
                reg_fence<64>(&acc[0][0]);
                reg_fence<32>(&pa[0][0]);
                mbar_arrive(empty + 8 * st);  // this thread is done with the stage
            }
        } else {
            // Tile 0: S and its softmax (no product of a previous tile yet; acc is still zero).
            {
                float s[16][4];
                mbar_wait(fullK, 0u);
                fence_async_smem();
                if (PINGPONG) named_bar_sync(1 + wg, WS_CONSUMERS);
                wg_fence();
                issue_s(s, 0);
                wg_commit();
                if (PINGPONG && !(wg == 1 && tiles == 1)) named_bar_arrive(2 - wg, WS_CONSUMERS);
                wg_wait<0>();
                reg_fence<64>(&s[0][0]);
                float alpha[2];
                weights(s, alpha, first);
                pack_p(s);
            }
            // Tile it: S_it issued with the previous tile's P V; the softmax of S_it runs while
            // that product is on the tensor cores; then O is rescaled and P_it packed.
#pragma unroll 1
            for (int it = 1; it < tiles; it++) {
                const int st = it % WS_STAGES;
                const unsigned ph = (unsigned)(it / WS_STAGES) & 1u;
                const int pst = (it - 1) % WS_STAGES;
                const unsigned pph = (unsigned)((it - 1) / WS_STAGES) & 1u;
                const int j0 = first + it * WG_KEYS;
                float s[16][4];
                mbar_wait(fullK + 8 * st, ph);
                mbar_wait(fullV + 8 * pst, pph);
                fence_async_smem();
                if (PINGPONG) named_bar_sync(1 + wg, WS_CONSUMERS);
                wg_fence();
                issue_s(s, st);
                wg_commit();
                issue_pv(pst);
                wg_commit();
                if (PINGPONG && !(wg == 1 && it == tiles - 1)) named_bar_arrive(2 - wg, WS_CONSUMERS);
                wg_wait<1>();
                reg_fence<64>(&s[0][0]);
                float alpha[2];
                weights(s, alpha, j0);
                if (WS_PIN_WAIT) {
                    // The wait for P V in blocks of its own, behind a branch on the softmax's
                    // result: ptxas moves a wait inside a block up to the products' issue (the
                    // SASS of the plain form below has WARPGROUP.DEPBAR before the first FMNMX of
                    // the softmax), which serializes the softmax after the product it should hide
                    // under. The two arms' waits differ in text so that they are not merged and
                    // hoisted above the branch.
                    if (__any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
                        wg_wait<0>();
                        reg_fence<64>(&acc[0][0]);
                        reg_fence<32>(&pa[0][0]);
                        rescale_rows(acc, alpha);
                    } else {
                        asm volatile("wgmma.wait_group.sync.aligned 0; // alpha == 1 on every row of the warp\n" ::: "memory");
                        reg_fence<64>(&acc[0][0]);
                        reg_fence<32>(&pa[0][0]);
                    }
                    mbar_arrive(empty + 8 * pst);  // this thread is done with the previous tile's stage
                } else {
                    wg_wait<0>();
                    reg_fence<64>(&acc[0][0]);
                    reg_fence<32>(&pa[0][0]);
                    mbar_arrive(empty + 8 * pst);  // this thread is done with the previous tile's stage
                    rescale(alpha);
                }
                pack_p(s);
            }
            // The last tile's P V.
            const int st = (tiles - 1) % WS_STAGES;
            mbar_wait(fullV + 8 * st, (unsigned)((tiles - 1) / WS_STAGES) & 1u);
            fence_async_smem();
            wg_fence();
            issue_pv(st);
            wg_commit();
            wg_wait<0>();
            reg_fence<64>(&acc[0][0]);
            reg_fence<32>(&pa[0][0]);
        }
    }
    finish_rows(a, b, acc, m, l, row, lane);
}

}  // namespace softmax

// The entry points: the intra-warpgroup overlap with ping-pong (both can be switched off at build
// time for a comparison, as the variants below do).
#ifndef SOFTMAX_SM90_OVERLAP
#define SOFTMAX_SM90_OVERLAP true
#define SOFTMAX_SM90_PINGPONG true
#endif
extern "C" __global__ void __launch_bounds__(softmax::WG_THREADS, 1)
    softmax_sm90_forward_bf16_k128_v128(const SoftmaxArgs a) {
    softmax::forward_ws<__nv_bfloat16, SOFTMAX_SM90_OVERLAP, SOFTMAX_SM90_PINGPONG>(a);
}
extern "C" __global__ void __launch_bounds__(softmax::WG_THREADS, 1)
    softmax_sm90_forward_f16_k128_v128(const SoftmaxArgs a) {
    softmax::forward_ws<__half, SOFTMAX_SM90_OVERLAP, SOFTMAX_SM90_PINGPONG>(a);
}

// With -DSOFTMAX_SM90_VARIANTS (bench/softmax_ws.sh; not in the shipped PTX, which would only grow):
// variants for side-by-side measurement (bench/softmax_peer.py --hopper-variant): _ws (loader
// warpgroup alone), _wso (+ overlap), _wsop (+ ping-pong, the same as the unsuffixed kernels).
#ifdef SOFTMAX_SM90_VARIANTS
#define SOFTMAX_SM90_VARIANT(SUFFIX, OV, PP)                                                               \
    extern "C" __global__ void __launch_bounds__(softmax::WG_THREADS, 1)                                  \
        softmax_sm90_forward_bf16_k128_v128##SUFFIX(const SoftmaxArgs a) {                                 \
        softmax::forward_ws<__nv_bfloat16, OV, PP>(a);                                                     \
    }                                                                                                      \
    extern "C" __global__ void __launch_bounds__(softmax::WG_THREADS, 1)                                  \
        softmax_sm90_forward_f16_k128_v128##SUFFIX(const SoftmaxArgs a) {                                  \
        softmax::forward_ws<__half, OV, PP>(a);                                                            \
    }
SOFTMAX_SM90_VARIANT(_ws, false, false)
SOFTMAX_SM90_VARIANT(_wso, true, false)
SOFTMAX_SM90_VARIANT(_wsop, true, true)
#endif  // SOFTMAX_SM90_VARIANTS

// The Hopper kernels' launch shape: threads, rows a CTA, dynamic shared bytes, and the padded
// width they cover (Dk and Dv in (64, 128]). One thread.
extern "C" __global__ void softmax_sm90_launch_shapes(int* out) {
    out[0] = softmax::WG_THREADS;
    out[1] = softmax::WG_ROWS;
    out[2] = softmax::WG_SMEM;
    out[3] = 128;
}
