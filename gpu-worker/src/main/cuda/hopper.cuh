// Hopper (sm_90a) kernels for lightning attention: the tensor-core work runs on wgmma, issued by
// warpgroups, with B (and in the Q products also A) read by the tensor cores straight from shared
// memory. Built into its own PTX (lightning_sm90a.ptx, target sm_90a) that the host loads beside
// the portable one on a device of compute capability 9.0; everything else keeps the mma.sync
// kernels of tensor_core.cuh. The helpers both families use (element traits, the hi/lo split,
// mbarriers, cp.async, phi) are in lightning_common.cuh.
//
// Same math and state convention as tensor_core.cuh. Launch contract:
//   grid = (H, ceil(dv / LIGHTNING_WG_COLUMNS), S); dk <= LIGHTNING_WG_MAX_DK;
//   LIGHTNING_WG_THREADS threads; lightning_wg_smem_bytes(dk, 1) bytes for the forward kernel,
//   lightning_wg_smem_bytes(dk, 0) for the states kernel.
// Both kernels take one LightningArgs (lightning_args.cuh) and compute every variant of it: grouped
// heads, the feature map, normalization (z carried beside S), checkpoints (forward).
// A CTA owns head blockIdx.x, value columns [128 y, min(dv, 128 y + 128)) and the segment of grid z
// (lightning_segment, lightning_args.cuh), and walks the segment's 64-token chunks in order. Q and K
// tiles are always 128 columns wide (zeros past dk), so every loop has a compile-time trip count; a
// dk of 64 or less would spend half the products on zeros, and the host gives those to the mma.sync
// kernels.
//
// Warpgroups (4 consecutive warps each; registers moved between them with setmaxnreg):
//   WG 0 (loaders): every cp.async, three (forward) or four (states) stages deep, handed over
//     through mbarriers; the feature map on the landed Q and K tiles (map_chunk); in the plain and
//     normalized forward also S = Q K^T, masked (see SL in body); in the normalized forward also the
//     normalizer z (its column sums on the tensor cores), q . zP and the denominators, which the
//     consumers read from the stage.
//   WG 1, 2 (consumers): each owns 64 of the 128 columns and runs the same code.
//     State: its slice transposed, P^T (own columns x all dk, float32), in the registers of an
//     m64n128 accumulator. Per chunk dP^T = (W V)^T K: the own 64 columns of V decayed by the
//     token weights w_t = lambda^(m-1-t) in registers (ldmatrix.trans, then hi + lo: see
//     split_hl) are the A operand, the K tile (all 128 dk) the B operand, one m64n128k16 product
//     per k-step and half. Taking the weights on V (64 columns) rather than on K (128 rows) halves
//     the split work (measured when these kernels looked bound by the consumers' instruction stream;
//     since then, at the H200's power limit, the forward's time has followed the shared-memory bytes a
//     chunk moves rather than its instructions: BENCHMARKS.md, sessions 11 and 12). Then
//     P^T = lambda^m P^T + dP^T in ordinary float32, P^T + (dP^T - (1 - lambda^m) P^T)
//     (lightning_decayed: lambda^m rounded to float32 would bias the rate of a slowly decaying head), not
//     in the tensor cores' accumulate, which does not round to nearest: measured on an H200, it matched
//     round-toward-zero in 83% of cases and round-to-nearest in 69%, so a running sum over
//     thousands of chunks would drift.
//     Forward: S = Q K^T (m64n64, both operands from shared memory), O = Q T(P) with the
//     consumer's bf16/f16 copy of P^T (stored like a K tile, read as a K-major B), then S is
//     masked and decayed (the output scale folded into the decay table) in registers and becomes
//     the A operand (registers) of O += S V; O is staged in shared memory and written during the
//     next chunk. In the plain and normalized forward the loaders form S once for both consumers and
//     leave it masked in the stage, where S V reads its A (SL in body). The plain forward computes O
//     transposed instead (TQ in body): O^T = P^T Q^T + V^T S'^T, P^T straight from the state's registers,
//     with no copy of the state in shared memory.
//
// Shared-memory tiles use the 128-byte swizzle wgmma reads natively: a tile is cut into atoms of
// 64 columns (128 bytes of 2-byte elements), an atom stores its rows 128 bytes apart, and the
// 16-byte piece j of row r sits at piece j ^ (r % 8) of that row. So the 8 pieces of a row, copied
// by 8 consecutive lanes from 128 contiguous global bytes, land in one 128-byte row (no bank
// conflict), and the 8 rows of an 8 x 8 block sit in 8 different bank groups (ldmatrix). An
// unswizzled layout was measured first: its copies read each 32-byte sector twice (a warp's
// quarter covered 8 rows of 16 bytes), which held both kernels near 1.6 TB/s.
// Descriptors (measured on an H200): K along the rows (Q, K: K = dk): stride offset 1024 (8 rows),
// the k-step of 16 advances the start by 32 bytes inside the atom and by an atom every 4 steps; K
// down the columns (V and the state copy, transposed operand): leading offset = the atom size (the
// next 64 columns), stride offset 1024 (the next 8 rows of K), the k-step of 16 rows advances the
// start by 2048 bytes. Atoms start at multiples of 1024 bytes.

#pragma once

#include "lightning_args.cuh"
#include "lightning_common.cuh"
#include "lightning_decay.cuh"
#include "wgmma.cuh"

#include <type_traits>

#define LIGHTNING_WG_COLUMNS 128
#define LIGHTNING_WG_THREADS 384
#define LIGHTNING_WG_MAX_DK 128
#define LIGHTNING_WG_PAIR_D 64  // the paired kernels' dk = dv (two heads a CTA; see body)

// Dynamic shared memory in bytes (any dk <= 128: tiles are padded to 128 columns), with
// NC = LIGHTNING_WG_COLUMNS and 16384-byte Q and K tiles (64 x 128, two atoms):
//   stages: forward 3 x (Q, K, V), states 4 x (K, V)      V: 128 NC
//   forward only: the consumers' state copies (2 x 16384; the plain forward keeps only its 64 token factors
//   there, see TQ in body), the masked S tile a stage (3 x 8192; the
//   plain and normalized forward's, see SL in body; reserved in every unpaired forward body, not in the paired
//   kernels) and the output staging tile 64 x (NC + 8) x 2
//   forward only: one normalizer tile a stage (8 x 128, two 1024-byte atoms), 3 x 2048; reserved
//   whether or not the launch normalizes, so that the size depends on the kernel alone; its rows 2 and 3
//   of the first atom hold the rows' sums of S (64 floats) in the normalized forward
//   decay table and mbarriers                              1152
//   forward only: the scaled mask table                    512
//   the normalizer's decay-weight tiles (see the loaders)  2 x 1024
// Forward 232064 bytes (the opt-in limit of a Hopper block is 232448), the paired forward 207488, states 134272.
// LIGHTNING_WG_NORM_X (measurement builds only, default 0; wrong results on purpose): leaves parts of the
// normalized forward's work out to see what each costs (bench/cuda/norm_cost.cu, BENCHMARKS.md, hopnorm2).
// Bit 1: the q . zP products (the loaders' since session 13); bit 2: the consumers' reciprocals and scaling (the
// row sums are the loaders' since session 11); bit 4: the loaders' z work (column sums, and q . zP with them);
// bit 8: a normalized launch runs the plain forward body (the control);
// bit 16: the normalized forward's loaders carry no map code (for register splits); bit 32: the normalized states
// kernel's column sums (the consumers') left out; bit 64: a launch with neither a map nor normalization runs the
// mapped body (MAPR) with nothing to map (its results right), so that what MAPR's shape costs (S by each consumer,
// no SL or TQ) is told apart from what the map's work costs (BENCHMARKS.md, session 29); bit 128: MAPR maps a
// scratch tile after the next chunk's loads instead of the landed tiles before the arrive (results wrong), so that the
// map's work is measured off the path from the copies landing to the arrive (BENCHMARKS.md, session 30); bit 256: the
// map of a chunk's Q and K (the one-row path: MAPR, the normalized forward's partial chunks) reads and writes both tiles
// but maps Q's only; bit 512: it reads and writes Q's tile only, and maps each piece twice (its K piece untouched), so
// that the map's arithmetic and its shared-memory traffic are timed apart (results wrong; BENCHMARKS.md, session 30).
#ifndef LIGHTNING_WG_NORM_X
#define LIGHTNING_WG_NORM_X 0
#endif
// LIGHTNING_WG_DELAY_NS (measurement builds only, default 0): the forward's loaders sleep this long (__nanosleep) between
// a chunk's copies landing and their map, S and arrive, so that what a latency there costs, without work, is measured
// apart from what the map's work costs (BENCHMARKS.md, session 30).
#ifndef LIGHTNING_WG_DELAY_NS
#define LIGHTNING_WG_DELAY_NS 0
#endif
// The forward consumers' instruction stream (issue 13, kfwd: the two changes below timed against the code before
// them in one process, bench/cuda/fwd_cost.cu). A consumer warp of the plain forward
// executed 877 instructions a chunk (sm_90a SASS); with the two changes below and two others it ran 652, and
// the forward was 5.6% (H = 64) and 6.1% (H = 8) faster on an H200 (T = 1M, D = 128, 2026-12-03,
// BENCHMARKS.md): less than the instructions suggest, as a chunk's time is set by each consumer's dependent
// chain (products, waits, the barrier on the state copy) more than by issue slots. The module with both
// passed the GPU tests on an H200. Tried and removed, each measured with the same tool
// (BENCHMARKS.md): stmatrix for the state copy and the output staging (no gain), the split weights from a
// per-CTA table (states kernel 3 to 5% slower), S V into an accumulator of its own issued right after the
// mask loop, and the state update's products issued before the output staging (helper kover: +0.2% to
// +1.1% at H = 64, -2.1% to +1.4% at H = 8, inside the spread).
//   store_rows_fast: the output rows go out from a per-thread pointer advanced a chunk at a time
//     (its 64-bit row arithmetic done once), not recomputed from (t, h) for each 16-byte piece: 144 -> 58
//     instructions a chunk. Only the 16-byte path (dv % 8 == 0, aligned o); the other keeps its code.
//   desc_of, desc_add: descriptor offsets added to the low 32 bits only (the start address field
//     never carries out, see qk_desc), so ptxas needs no 64-bit add and register copies a product.
// The normalized and the mapped states kernel (issue 12, helper hopnorm3: the two changes below).
// On an H200 (T = 1M, H = 64, D = 128, bf16, 2026-12-03) the states kernel over T / 2 took 4.2 to 4.5 ms plain
// (bound by memory), about 1.3 ms more normalized (the column sums of z: 8 m64n8 products a chunk by the loaders,
// waited for before they arrive) and about 3 ms more with elu1 (the loaders' map of K). Both changes together, in
// norm_cost with each variant launched after itself: elu1's states kernel 7.30 -> 5.72 ms, normalized elu1's
// 7.80 -> 5.73, normalized identity's 5.81 -> 5.50, plain unchanged; DeviceBench elu1 +15.8% -> +13.5%, normalized
// elu1 +30.2% -> +28.5% over plain in the same call (the forward ran at the clock the faster states kernel left:
// at the card's 700 W limit a shorter chain saves less than its latency). The module passed GpuBackendTest on the
// H200 (171 passed, 0 failed; BENCHMARKS.md, hopnorm3). Tried and removed: the loaders' wait for their sums deferred
// by a chunk (normalized elu1's forward 6 ms slower), the sums on the loaders' CUDA cores after the arrive (slower).
// The consumers' column sums (ZC in body): in the normalized states kernel the consumers form the normalizer's
// column sums (each its half of dk, the same m64n8 products as the loaders', 4 a chunk) in the state update's commit
// group, and the loaders only copy, as in the plain states kernel.
// The states kernel's map (map_rows, 4 rows of its K tile at a time): with one row's loads and exponentials in
// flight (one row a step) a loader thread spent most of a chunk's time waiting on them, between the copy landing and the
// arrive (2 and 4 rows measured the same: 6.35 and 6.33 ms for elu1's states kernel against 8.02, round 1).
__host__ __device__ inline int lightning_wg_smem_bytes(int dk, int forward, bool pair = false) {
    (void)dk;
    const int qk = 16384, nc = LIGHTNING_WG_COLUMNS;
    return (forward ? 3 * (2 * qk + 128 * nc) + 2 * qk + (pair ? 0 : 3 * 8192) + 128 * (nc + 8) + 3 * 2048 + 1152 + 512
                    : 4 * (qk + 128 * nc) + 1152) + 2048;
}

namespace lightning_wg {

using lightning::cp_async16_zfill;
using lightning::phi_pair;  // phi of a packed pair in 16-bit arithmetic (lightning_common.cuh)
using lightning::cp_async_commit;
using lightning::cp_async_wait;
using lightning::ldsm_x4_t;
using lightning::mbar_arrive;
using lightning::mbar_init;
using lightning::mbar_wait;
using lightning::named_bar_sync;
using lightning::Ops;
using lightning::PairWeights;
using lightning::smem_u32;
using lightning::split_hl;

constexpr int kChunk = 64;
constexpr int kCols = LIGHTNING_WG_COLUMNS;
// wg_desc built from two 32-bit halves (the high half is a constant).
__device__ __forceinline__ unsigned long long desc_of(unsigned addr, unsigned lead, unsigned stride) {
    unsigned long long r;
    asm("mov.b64 %0, {%1, %2};" : "=l"(r) : "r"(((addr & 0x3FFFFu) >> 4) | ((lead >> 4) << 16)), "r"((stride >> 4) | (1u << 30)));
    return r;
}
// A descriptor plus off (16-byte units) in its low 32 bits (the callers' offsets never carry out of the start
// address field).
__device__ __forceinline__ unsigned long long desc_add(unsigned long long d, unsigned long long off) {
    unsigned lo, hi;
    asm("mov.b64 {%0, %1}, %2;" : "=r"(lo), "=r"(hi) : "l"(d));
    unsigned long long r;
    asm("mov.b64 %0, {%1, %2};" : "=l"(r) : "r"(lo + (unsigned)off), "r"(hi));
    return r;
}

// ------------------------------ loads -----------------------------------------------------
__device__ __forceinline__ void cp_async16(unsigned sdst, const void* gsrc) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sdst), "l"(gsrc) : "memory");
}
// One loader thread's part (lt of 128) of loading rows [0, m) of a 64 x 128 tile into the
// swizzled layout at dst (two atoms of 64 columns, 8192 bytes each); row r starts at src + r *
// rowStride (elements). Columns >= valid and rows >= m are zero. vec: 16-byte cp.async, zeros
// included (needs valid % 8 == 0, rowStride % 8 == 0, an aligned src); otherwise synchronous
// 2-byte copies. Thread lt copies piece lt % 16 of rows lt / 16 + 8 i, i = 0..7 (piece_offset; a warp: two
// whole rows of 256 bytes), so its shared offsets step by 1024 and its global ones by 8 rows, and
// the swizzle term r % 8 is the same for all eight: a few instructions a copy, which matters, as
// the loaders share the issue slots with the consumers.
constexpr int kLoaders = 128;
// Registers a thread after setmaxnreg. The CTA starts with 168 a thread (65536 / 384, rounded down
// to a multiple of 8) and the increase is served from what the decrease frees: a larger sum waits
// forever. Forward: 56 keep the loaders and 224 the consumers free of spills. The states kernel's
// consumers need fewer (no outputs), and its loaders spilled with 56. Normalized forward: the
// loaders carry z and its checkpoint clock, and spilled with 56; its consumers fit in 216.
// LIGHTNING_WG_NORM_LOADER_REGS: the normalized forward's loader registers, the consumers getting the rest (rounded down to
// a multiple of 8, as setmaxnreg requires). Its loaders hold four z and the column sums' accumulators and, since
// session 11, form S and its rows' sums too (SL in body): 120, the consumers 192 (no S to hold), no spill; 136
// (consumers 184) spilled 20 to 28 bytes (ptxas, sm_90a). Since session 13 they also form q . zP (the consumers no
// longer do): 128, the consumers 184, no spill; 120 (consumers 192) spilled 12 bytes. Before S moved (88 then,
// consumers 208): 72 (consumers 216) left an 8-byte spill and ran normalized elu1 15% slower than 88, which had
// none (H200, bench/cuda/norm_cost.cu, 2026-12-03).
#ifndef LIGHTNING_WG_NORM_LOADER_REGS
#define LIGHTNING_WG_NORM_LOADER_REGS 128
#endif
// LIGHTNING_WG_MAP_LOADER_REGS (default 72): the plain forward with a feature map runs as a body of its
// own (MAPR) whose loaders get this many registers (the consumers the rest, 216; no spill, ptxas sm_90a;
// 88 left a 24-byte spill), as the normalized forward's do. With 56 (one plain body for every map) the
// map's loads and exponentials had too few registers to overlap: on an H200 (T = 1M, H = 64, D = 128,
// bf16, 2026-12-03) elu1 cost +31.8% over plain in DeviceBench and +19.3% with this and the fused map of
// Q and K in one loop (map_rows with two tiles; norm_cost: 45.2 -> 37.0 ms, plain unchanged at 25.9 ms).
// The module with both passed GpuBackendTest on an H200 (171 passed, 0 failed; 2026-12-03 15:01 UTC,
// bench/results/2026-12-03-h200-hopnorm-r3-gpu-tests.log).
#ifndef LIGHTNING_WG_MAP_LOADER_REGS
#define LIGHTNING_WG_MAP_LOADER_REGS 72
#endif
// LIGHTNING_WG_S_LOADER_REGS: the plain forward's loader registers (they form S = Q K^T, 32 accumulators; see SL
// in body), the consumers getting the rest: 72 and 88 spilled 168 and 52 bytes (ptxas, sm_90a), 96 (consumers
// 200, who no longer hold S) none. The mapped plain forward (MAPR) keeps S in its consumers: with S in its
// loaders too, after the map, the kernel spilled 152 to 172 bytes with 96, 104 or 112 loader registers (a
// second S-forming body in the function is what spills: in an entry of its own it has none, and there elu1
// ran 3.4 to 4.3% slower than now on an H200, its loaders' chain then map and S: BENCHMARKS.md, session 12).
#ifndef LIGHTNING_WG_S_LOADER_REGS
#define LIGHTNING_WG_S_LOADER_REGS 96
#endif
template <bool FWD, bool NORM, bool MAPR = false, bool SL = false> struct Regs {
    static constexpr int wide = NORM ? LIGHTNING_WG_NORM_LOADER_REGS : SL ? LIGHTNING_WG_S_LOADER_REGS
                                     : LIGHTNING_WG_MAP_LOADER_REGS;
    static constexpr int loader = FWD ? (NORM || MAPR || SL ? wide : 56) : 88,
                         consumer = FWD ? (NORM || MAPR || SL ? (3 * 168 - wide) / 2 / 8 * 8 : 224) : 208;
    static_assert(loader + 2 * consumer <= 3 * 168, "setmaxnreg must fit the registers the CTA launched with");
};
// The piece of a 64 x 128 tile that loader thread lt copies with load_tile's 16-byte path and maps with map_rows:
// piece lt % 16 (8 columns, 16 bytes) of rows lt / 16 + 8 i, i = 0..7, in the swizzled layout (two atoms of 64
// columns, 8192 bytes each; row r at 128 r, piece j at 16 (j % 8 ^ r % 8)). The eight rows share the swizzle term
// (r % 8 is lt / 16 for all), so row lt / 16 + 8 i sits at piece_offset(lt) + 1024 i.
__device__ __forceinline__ int piece_row(int lt) { return lt >> 4; }
__device__ __forceinline__ int piece_col(int lt) { return 8 * (lt & 15); }  // the piece's first column
__device__ __forceinline__ int piece_offset(int lt) {
    const int r0 = lt >> 4, jp = lt & 15;
    return ((jp >> 3) << 13) + (r0 << 7) + (((jp & 7) ^ r0) << 4);
}
// phi on N 16-byte vectors of packed 16-bit elements (lightning_common.cuh's phi_pair), a quarter of each at a
// time, so that the N exponential chains of a quarter are independent.
template <typename T, int FM, int N>
__device__ __forceinline__ void phi_vecs(uint4 (&u)[N]) {
#pragma unroll
    for (int x = 0; x < N; ++x) u[x].x = phi_pair<T, FM>(u[x].x);
#pragma unroll
    for (int x = 0; x < N; ++x) u[x].y = phi_pair<T, FM>(u[x].y);
#pragma unroll
    for (int x = 0; x < N; ++x) u[x].z = phi_pair<T, FM>(u[x].z);
#pragma unroll
    for (int x = 0; x < N; ++x) u[x].w = phi_pair<T, FM>(u[x].w);
}
// The feature map on this loader thread's pieces (piece_offset) of NT tiles at once (NT = 2: the forward's Q and
// K tiles, same layout, m and valid; NT = 1: t1 unused), once its copies landed, in place. Only real elements
// (rows < m, pieces of columns < valid: valid % 8 == 0 on this path) are mapped: the zero padding must stay zero
// (elu(0) + 1 = 1 would add a phantom dk column or token). R: rows loaded, mapped and stored at a time for a whole
// chunk (NT R independent loads and exponential chains in flight); a partial chunk, and R = 1, go a row a step.
// Who takes how many (each measured on an H200 with bench/cuda/norm_cost.cu, T = 1M, H = 64, D = 128, bf16;
// BENCHMARKS.md):
// - the states kernel: K, 4 rows (one row left a loader waiting on its loads and exponentials most of a chunk);
// - the normalized forward (128 loader registers since session 13): Q and K, LIGHTNING_WG_NORM_MAP_ROWS rows. 2
//   ran normalized elu1's forward 4.7% faster than 1 (32.58 -> 31.04 ms, 2026-12-04; normalized identity, which
//   does not map, unchanged); 4 the same (31.04 ms) with a 12-byte spill (ptxas, sm_90a);
// - the mapped plain forward (MAPR, 72 loader registers): Q and K, one row (two rows spilled 24 bytes);
// - the paired forward (56): one tile after the other, one row (with 56 loader registers, two rows a step spilled
//   12 bytes in the forward that mapped with them before MAPR, and a loader spill cost the plain kernel 8% once).
// What the map costs the forward (an H100, session 30, BENCHMARKS.md): mostly these two passes over the landed tiles
// (elu1 +20% over plain; with half the passes +5% to +9%, with half the arithmetic +12%), not their place before the
// arrive. Q and K through the loaders' registers instead (no pass) waited on L2 and ran slower.
#ifndef LIGHTNING_WG_NORM_MAP_ROWS
#define LIGHTNING_WG_NORM_MAP_ROWS 2
#endif
// LIGHTNING_WG_NORM_X bits 256 and 512 (measurement builds, results wrong): one step of map_rows' one-row path over a
// Q piece at q and a K piece at k with half its work. 512: Q's piece alone read and written, mapped twice (as itself
// and with its low bits flipped, the second result kept live but not stored: all the arithmetic, half the shared-memory
// traffic). 256: both pieces read and written, Q's alone mapped (K's stored changed: stored unchanged, the compiler
// drops its load and store): half the arithmetic, all the traffic.
template <typename T, int FM>
__device__ __forceinline__ void map_step_halved(unsigned char* q, unsigned char* k) {
    constexpr unsigned kFlip = 0x00010001u;
    const uint4 x = *reinterpret_cast<const uint4*>(q);
    if constexpr (LIGHTNING_WG_NORM_X & 512) {
        uint4 a[2] = {x, make_uint4(x.x ^ kFlip, x.y ^ kFlip, x.z ^ kFlip, x.w ^ kFlip)};
        phi_vecs<T, FM, 2>(a);
        asm volatile("" ::"r"(a[1].x), "r"(a[1].y), "r"(a[1].z), "r"(a[1].w));  // computed, not stored
        *reinterpret_cast<uint4*>(q) = a[0];
    } else {
        const uint4 y = *reinterpret_cast<const uint4*>(k);
        uint4 a[1] = {x};
        phi_vecs<T, FM, 1>(a);
        *reinterpret_cast<uint4*>(q) = a[0];
        *reinterpret_cast<uint4*>(k) = make_uint4(y.x ^ kFlip, y.y ^ kFlip, y.z ^ kFlip, y.w ^ kFlip);
    }
}
template <typename T, int FM, int R, int NT>
__device__ __forceinline__ void map_rows(unsigned char* t0, unsigned char* t1, int m, int valid, int lt) {
    static_assert(R == 1 || R == 2 || R == 4 || R == 8, "R divides the 8 rows of a thread");
    static_assert(NT == 1 || NT == 2, "one or two tiles");
    // (each branch sets its pointers up itself: with the setup above the branch, the loop came out reordered
    // against the code measured before the loops were one; this form is the one measured, BENCHMARKS.md session 14)
    if (R == 1 || m != kChunk) {  // one row a step, rows lt / 16 + 8 i < m
        if (piece_col(lt) >= valid) return;
        const int off = piece_offset(lt);
        unsigned char* p[NT];
        p[0] = t0 + off;
        if constexpr (NT == 2) p[1] = t1 + off;
#pragma unroll 1
        for (int r = piece_row(lt); r < m; r += 8) {
            uint4 u[NT];
            if constexpr (NT == 2 && (LIGHTNING_WG_NORM_X & (256 | 512))) {
                map_step_halved<T, FM>(p[0], p[1]);  // measurement builds only
            } else {
#pragma unroll
                for (int t = 0; t < NT; ++t) u[t] = *reinterpret_cast<const uint4*>(p[t]);
                phi_vecs<T, FM, NT>(u);
#pragma unroll
                for (int t = 0; t < NT; ++t) *reinterpret_cast<uint4*>(p[t]) = u[t];
            }
#pragma unroll
            for (int t = 0; t < NT; ++t) p[t] += 1024;
        }
        return;
    }
    if (piece_col(lt) >= valid) return;
    const int off = piece_offset(lt);
    unsigned char* p[NT];
    p[0] = t0 + off;
    if constexpr (NT == 2) p[1] = t1 + off;
#pragma unroll
    for (int i = 0; i < 8; i += R) {
        uint4 u[R * NT];
#pragma unroll
        for (int x = 0; x < R; ++x)
#pragma unroll
            for (int t = 0; t < NT; ++t) u[NT * x + t] = *reinterpret_cast<const uint4*>(p[t] + 1024 * (i + x));
        phi_vecs<T, FM, R * NT>(u);
#pragma unroll
        for (int x = 0; x < R; ++x)
#pragma unroll
            for (int t = 0; t < NT; ++t) *reinterpret_cast<uint4*>(p[t] + 1024 * (i + x)) = u[NT * x + t];
    }
}
// The map of a landed chunk (the 16-byte path): the states kernel's K; the unpaired forwards' Q and K in one loop
// (R rows: the normalized forward's LIGHTNING_WG_NORM_MAP_ROWS, the mapped plain forward's 1); the paired forward's
// Q, then K. FM: the feature map code as a constant.
template <typename T, int FM, bool FWD, bool PAIR, int R>
__device__ __forceinline__ void map_chunk(unsigned char* tq, unsigned char* tk, int m, int valid, int lt) {
    if constexpr (!FWD) {
        map_rows<T, FM, 4, 1>(tk, nullptr, m, valid, lt);
    } else if constexpr (PAIR) {
        map_rows<T, FM, 1, 1>(tq, nullptr, m, valid, lt);
        map_rows<T, FM, 1, 1>(tk, nullptr, m, valid, lt);
    } else {
        map_rows<T, FM, R, 2>(tq, tk, m, valid, lt);
    }
}
// S' = S = Q K^T masked and decayed, the output scale folded in: S'[i][j] = scale lambda^(i-j) S[i][j], 0 for j > i,
// read from the scaled mask table (tabS[d] = scale lambda^d, 0 for d < 0; made at the top of body). In the m64n64
// fragment a lane holds, n-tile nt has rows i0 (half 0) and i0 + 8 (half 1), i0 = 16 w + g, at keys 8 nt + 2 tq
// and + 1; tr is tabS + i0 - 2 tq. The one statement of the rule: the plain and the normalized forwards' loaders
// use it (SL in body), the mapped and paired forwards' consumers too.
__device__ __forceinline__ void masked_pair(const float* S, const float* tr, int nt, int half, float& x0, float& x1) {
    x0 = S[4 * nt + 2 * half] * tr[8 * half - 8 * nt];
    x1 = S[4 * nt + 2 * half + 1] * tr[8 * half - 8 * nt - 1];
}
// featureMap: applied by the 2-byte path as it copies (the 16-byte path leaves it to map_rows).
template <typename T>
__device__ __forceinline__ void load_tile(unsigned dst, unsigned char* dstGeneric, const T* src, int rowStride,
                                          int m, int valid, bool vec, int lt, int featureMap = 0) {
    if (vec) {
        const int r0 = piece_row(lt);
        const unsigned so = dst + (unsigned)piece_offset(lt);
        const bool colOk = piece_col(lt) < valid;
        const T* g = src + r0 * rowStride + piece_col(lt);
        const long long step = 8 * rowStride;
        if (colOk && m == kChunk) {  // a whole chunk of real columns: no predicates
#pragma unroll
            for (int i = 0; i < 8; ++i, g += step) cp_async16(so + 1024u * i, g);
            return;
        }
#pragma unroll 1  // unrolled, the loaders need more registers than they get (see Regs)
        for (int i = 0; i < 8; ++i, g += step) {
            const bool ok = colOk && r0 + 8 * i < m;
            cp_async16_zfill(so + 1024u * i, ok ? g : src, ok ? 16u : 0u);
        }
    } else {
        const unsigned short* s16 = reinterpret_cast<const unsigned short*>(src);
        unsigned short* d16 = reinterpret_cast<unsigned short*>(dstGeneric);
        constexpr int cols = 128;
        for (int e = lt; e < 64 * cols; e += kLoaders) {
            const int r = e / cols, c = e - r * cols;
            unsigned short x = 0;
            if (r < m && c < valid) {
                x = s16[r * rowStride + c];
                if (featureMap != 0) x = lightning::phi_bits<T>(featureMap, x);
            }
            d16[((c >> 6) << 12) + (r << 6) + ((((c >> 3) & 7) ^ (r & 7)) << 3) + (c & 7)] = x;
        }
    }
}

// ------------------------------ normalizer and checkpoint helpers ------------------------
// The normalizer tile of a stage: z = hi + lo (T each, hi = z rounded, lo = the rest rounded:
// about 16 significant bits together) as the rows 0..7 (hi, lo, hi, lo, ...) of an 8 x 128
// K-major tile with the 128-byte swizzle, the B operand of the m64n8 product q . zP: atoms of 64
// dk, 1024 bytes; element (row e, dk d) at atom d / 64, byte 128 e + 16 ((d / 8 % 8) ^ e) + 2 (d % 8).
// Column 2 x of the product is then q . hi and column 2 x + 1 q . lo for every x: each lane of
// a quad has both for its rows. The loaders write it (each lane its rows d = zRow(i), see body), form q . zP
// from it (a quad's first lane's columns 0 and 1), then overwrite rows 2 and 3 of the first atom with the
// denominators less eps (SL), which the consumers read.
// Where the checkpoints fall (forward): after the chunk that ends at sequence token end
// (exclusive) when end % N == 0, into slot end / N - 1 - firstCheckpoint. Tracked per chunk with
// 32-bit adds (the 64-bit division once per CTA): rem = start mod N and next = floor(start / N) -
// firstCheckpoint, start the sequence position of the next chunk. A chunk of m <= 64 <= N tokens
// passes at most one multiple of N.
struct CheckpointClock {
    int every, rem;
    long long next;
    __device__ __forceinline__ CheckpointClock(const LightningArgs& a, long long start) : every(a.checkpointEvery) {
        const long long p = a.position + start;
        rem = every > 0 ? (int)(p % every) : 0;
        next = every > 0 ? p / every - a.firstCheckpoint : 0;
    }
    // Moves past a chunk of m tokens; the slot it ends on, or -1. Only when every > 0.
    __device__ __forceinline__ long long advance(int m) {
        rem += m;
        if (rem < every) return -1;
        rem -= every;
        const long long slot = next++;
        return rem == 0 ? slot : -1;
    }
};

// ------------------------------ the kernel body -------------------------------------------
// Warpgroup 0 loads; warpgroups 1 and 2 ("consumers") each own 64 of the CTA's 128 value
// columns and run the same code: the state slice P[:, own columns] (all dk rows) in registers,
// its bf16/f16 copy in shared memory for the inter product, and (forward) the outputs of the own
// columns. Running one code path in both consumers matters: two different register-heavy roles
// inlined in one kernel spilled (ptxas allocates the union), and as separate functions their
// wgmma were serialized. S = Q K^T: in the plain and the normalized forward the loaders form it once a
// CTA and leave it masked in the stage (SL); in the mapped and the paired forward each consumer forms
// all of it (a hand-over between the consumers mid-chunk was measured slower: see the S product).
// One forward entry holds the plain, mapped and normalized bodies, on purpose: ptxas allocates the
// function as a whole, and on an H200 (2026-12-04, session 12) the plain body compiled alone in an entry
// of its own ran 4 to 6% slower, while a second body that forms S in its loaders spilled beside it.
//
// The variants (LightningArgs): grouped heads and the feature map are the loaders' business
// (indexing; phi applied in shared memory before the stage is handed over), checkpoints a branch
// per chunk. NORM (a template flag, so that the plain kernels keep their code) adds the
// normalizer z, and puts its work on the loaders, not the consumers, whose dependent chain
// (wait for the stage, products, fold, state copy) sets a chunk's time, while the loader warps had
// slack between their copies. (At the H200's 700 W limit the energy of a chunk's work, bytes and
// tensor-core products, also sets the pace: BENCHMARKS.md, session 11.) Per chunk:
//   loaders: hold z (float32; 0 past dk), the value before the chunk; write it as the stage's
//     normalizer tile, then zP' = lambda^m zP + sum_t lambda^(m-1-t) k_t[d] from the stage's K
//     tile, all before arriving on the full barrier (so the stage is not refilled while they read
//     it). One column tile (blockIdx.y == 0) writes z. The sums:
//     16 m64n8 wgmma a chunk, K^T times a tile of the decay weights, each lane holding z of the
//     four rows of its accumulators. The loop they replaced (thread d summing column d in float32,
//     64 loads and FMAs a chunk) held normalized elu1 at +106% over plain on an H200
//     (52.6 against 25.6 ms, T = 1M, H = 64, D = 128, states and forward kernels), the products +56%
//     (40.1 ms); leaving the loaders' z work out altogether gave 38.0 ms (bench/cuda/norm_cost.cu,
//     2026-12-03), so it was the loaders' share, beside elu1's mapping, that cost.
//   states kernel: the consumers form the sums instead (each its half of
//     dk, in its state update's commit group); it writes only z after the segment, and its loaders copy alone.
//   loaders (forward), with the column sums: q_i . zP by one more product, m64n8: Q (A, as for S) times
//     the normalizer tile (B), 8 wgmma a chunk in the column sums' commit group, taken from a quad's first
//     lane. After z: S = Q K^T masked and decayed into the stage (SL), and the intra part of the
//     denominators, sum_{j<=i} lambda^(i-j) q_i . k_j, as the rows' sums of those scores; the denominators
//     less eps, sum_i / scale + lambda^(i+1) q_i . zP, left in rows 2 and 3 of the stage's normalizer tile.
//     (q . zP was the consumers' until session 13: each formed it, 8 wgmma each reading the whole Q tile;
//     once a CTA by the loaders, normalized identity's forward ran 3.6% faster and normalized elu1's 0.4% and
//     0.8% slower in two calls on an H200, the outputs unchanged to the bit. The loaders taking the reciprocal
//     too ran normalized elu1 1.8% and 3.2% slower: its loaders, which also map, set its pace. BENCHMARKS.md,
//     session 13.)
//   consumers (forward): o_i = num_i / (den_i + eps) as they stage the rows.
// PAIR (dk = dv = 64, no normalization, Hq = Hk = Hv = H, H even; launched with grid.x = H / 2): a CTA
// takes the two neighbouring heads 2 x and 2 x + 1 (x = blockIdx.x), whose 64-element rows lie side by
// side in memory, so its Q, K and V tiles are the two heads' rows as one 128-column tile: atom j is
// head 2 x + j, loaded with the whole-chunk path of a 128-wide head. Consumer j computes head 2 x + j:
// S = Q K^T and Q P over atom j only (4 k-steps), its own 64 columns of V (atom j), its own decay;
// it keeps only its own 64 dk of P^T (an m64n64 accumulator:
// state products on K's atom j, half the registers, fold and state copy of the unpaired kernels;
// the first version's m64n128 state over both atoms, as unpaired, was slower: BENCHMARKS.md, paired
// kernels). Unpaired, dk <= 64 leaves consumer 2 and half of every product idle; paired, a CTA
// moves twice the bytes per chunk for about the same instructions.
// MAPR: the plain, unpaired forward of a launch with a feature map, with
// more loader registers (Regs).
template <typename T, bool FWD, bool NORM, bool PAIR = false, bool MAPR = false>
__device__ __forceinline__ void body(const LightningArgs& a) {
    static_assert(!(PAIR && NORM), "the paired heads are not normalized");
    static_assert(!(MAPR && (PAIR || NORM || !FWD)), "MAPR is the plain, unpaired forward's");
    using O_ = Ops<T>;
    using W = Wgmma<T, 64>;
    extern __shared__ __align__(1024) unsigned char lightning_wg_smem[];
    constexpr int NS = FWD ? 3 : 4;          // pipeline stages
    constexpr int AHEAD = NS - 1;            // chunks in flight beyond the one computed
    constexpr int kConsumerThreads = 256;
    constexpr int kLdo = kCols + 8;          // output staging row (elements)
    // The normalizer's column sums (NORM): ZC, summed by the states kernel's consumers;
    // ZX, left out (measurement builds, LIGHTNING_WG_NORM_X).
    constexpr bool ZC = NORM && !FWD;
    constexpr bool ZX = (LIGHTNING_WG_NORM_X & 4) || (!FWD && (LIGHTNING_WG_NORM_X & 32));

    const T* __restrict__ q = static_cast<const T*>(a.q);
    const T* __restrict__ k = static_cast<const T*>(a.k);
    const T* __restrict__ v = static_cast<const T*>(a.v);
    T* __restrict__ o = static_cast<T*>(a.o);
    // PAIR: dk = dv = LIGHTNING_WG_PAIR_D (pair_launch checked it), as constants
    const int H = a.heads, dk = PAIR ? LIGHTNING_WG_PAIR_D : a.dk, dv = PAIR ? LIGHTNING_WG_PAIR_D : a.dv;
    const float scale = a.scale;

    // h: the CTA's head (PAIR: the first of its two); each consumer's own head is hj below
    const int h = PAIR ? 2 * blockIdx.x : blockIdx.x;
    const int c0 = PAIR ? 0 : blockIdx.y * kCols;
    const LightningSegment seg = lightning_segment(a, blockIdx.z, gridDim.z);
    const int s = seg.index;
    const int tid = threadIdx.x;
    const int warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tq = lane & 3;
    const int w4 = warp & 3;                 // warp within its warpgroup
    constexpr int Dkp = LIGHTNING_WG_MAX_DK;  // Q and K tiles padded to 128 columns (zeros)
    constexpr int KS = Dkp / 16;              // k-steps of S = Q K^T and Q P
    const int width = PAIR ? 2 * dv : min(kCols, dv - c0);  // value columns of the tile
    const int qkValid = PAIR ? 2 * dk : dk;                   // real columns of a Q or K tile

    const long long segStart = seg.start;
    const long long segEnd = seg.end;
    const int nChunks = (int)((segEnd - segStart + kChunk - 1) / kChunk);

    // ---- shared memory (see lightning_wg_smem_bytes) ----
    constexpr unsigned qBytes = 8192u * (Dkp / 64);     // a 64 x Dkp tile (Q or K), whole atoms
    const unsigned vBytes = 128u * kCols;               // a 64 x NC tile (two atoms)
    const unsigned stageBytes = (FWD ? 2u : 1u) * qBytes + vBytes;
    constexpr unsigned ptBytes = 128u * Dkp;            // a consumer's state copy: 64 x Dkp (P^T), two atoms
    const unsigned offPt = NS * stageBytes;             // atoms at multiples of 1024
    // SL (the plain and the normalized unpaired forward): S = Q K^T is formed by the loaders, masked and decayed
    // (normalized: also its rows' sums), and handed to both
    // consumers in a tile a stage (64 x 64, one atom each, after the state copies; reserved in every unpaired
    // forward body, as the normalizer tiles are, so that the size depends on the kernel alone; the paired
    // kernels keep their layout and size).
    constexpr bool SL = FWD && !PAIR && !MAPR;
    // TQ (the plain unpaired forward): the consumers form their outputs transposed, Oa^T (own columns x tokens):
    // the inter part as P^T Q^T with P^T, A, straight from the state's registers (the bf16 rounding the state
    // copy had), Q^T the stage's Q tile read K-major as S = Q K^T reads K, and S V as V^T S'^T (the own V atom
    // read MN-major, the loaders' S tile K-major). So no copy of the state goes through shared memory: that copy
    // (16 KB a consumer a chunk, written, then read by Q P) cost the plain forward about 10% (its stores left out:
    // -9.8% at H = 64, -10.4% at H = 8), and this form is 4.7% and 5.3% faster than the copy (bench/cuda/fwd_cost.cu,
    // H200, T = 1M, D = 128, bf16, 30 rounds, 2026-12-04, session 12; the same float64 errors to the last digit).
    // The rows then go to the staging tile by stmatrix.trans, each warp 16 columns of all 64 rows, between two
    // named barriers of the warpgroup. V^T, S V's A operand, comes from the registers ldmatrix.trans loads the own
    // V atom into for the state update's split (the same fragments), not from shared memory, so a consumer reads its
    // V atom once a chunk instead of twice: the forward 2.4% faster at H = 64, 2.3% at H = 8 (fwd_cost as above, 40
    // rounds; "VR" in BENCHMARKS.md). The normalized forward stays in the other form: in this one (session 13, one
    // body for both, its loaders forming q . zP, the denominators and 1 / den and folding it into S' and the token
    // table) it ran normalized identity 1 to 3% faster and normalized elu1 2 to 4% slower, and spilled: the work
    // its consumers shed lengthened its loaders' chain, which then set the pace (a build without their reciprocal
    // pass ran 13% faster; BENCHMARKS.md, "The normalized forward in the transposed form").
    constexpr bool TQ = SL && !NORM;
    const unsigned offSp = offPt + (FWD ? 2u * ptBytes : 0u);
    const unsigned offO = offSp + (FWD && !PAIR ? NS * 8192u : 0u);
    constexpr unsigned zBytes = 2048u;                  // a normalizer tile: 8 x Dkp, two 1024-byte atoms
    const unsigned offZ = offO + (FWD ? 128u * kLdo : 0u);  // 17408 = 17 x 1024: atoms stay aligned
    // the normalizer's decay-weight tiles of whole and of the last chunk (1024 bytes each)
    const unsigned offW = offZ + (FWD ? NS * zBytes : 0u);
    const unsigned offTab = offW + 2048u;
    unsigned char* sm = lightning_wg_smem;
    const unsigned smU = smem_u32(sm);
    // mbarriers: full[i] (the loaders arrive once their copies into stage i landed), empty[i] (the
    // consumers arrive once done with stage i), 4 slots each.
    static_assert(NS <= 4, "the mbarrier slots (and cp_async_wait) allow at most 4 stages");
    const unsigned fullU = smU + offTab + 1024u, emptyU = fullU + 32u;
    // Decay table tab[d] = lambda^d for d = 0..126, 0 for d = -64..-1 (the causal mask), and the carries' decay as its
    // complement, 1 - lambda^m at tab[LIGHTNING_DECAY_COMP_AT + m] (lightning_decay.cuh).
    // PAIR: the second head's tables (1024 + 512 bytes) in the normalizer's decay-weight tiles at
    // offW (2048 bytes, unused without normalization).
    float* tab = reinterpret_cast<float*>(sm + offTab) + 64;
    // The scaled mask table of head h + p (forward; masked_pair reads it): tabS[d] = scale lambda^d for d = -64..63,
    // 0 below 0, at offTab + 1152 (p = 0) or, for PAIR's second head, at offW + 1024.
    auto mask_table = [&](int p) { return reinterpret_cast<float*>(sm + (p == 0 ? offTab + 1152 : offW + 1024)) + 64; };
    {
        auto tables = [&](int p) {  // head h + p's, at tab (p = 0) or at offW (p = 1)
            const float slope = a.slopes[h + p];
            float* tb = p == 0 ? tab : reinterpret_cast<float*>(sm + offW) + 64;
            for (int x = tid; x < 256; x += blockDim.x) tb[x - 64] = lightning_decay_table_entry(slope, x);
            if (FWD) {  // scale lambda^d for d = -64..63 (0 below 0): the mask with the output scale folded in
                float* tabS = mask_table(p);
                for (int x = tid; x < 128; x += blockDim.x) tabS[x - 64] = x >= 64 ? scale * expf(-slope * (float)(x - 64)) : 0.f;
            }
        };
        tables(0);
        if (PAIR) tables(1);
        if (tid == 0) {
            for (int i = 0; i < NS; ++i) {
                mbar_init(fullU + 8u * i, kLoaders);
                mbar_init(emptyU + 8u * i, kConsumerThreads);
            }
        }
        __syncthreads();
    }
    // Descriptors: Q, K (K = dk along the rows): k-step ks starts at atom ks / 4, byte 32 (ks % 4).
    // A tile's descriptor plus the offset in 16-byte units (its start address field, bits 0-13,
    // holds address / 16 < 2^14 for shared addresses below 2^18, so the sum never carries out).
    auto qk_desc = [](unsigned long long tileDesc, int ks) {
        return desc_add(tileDesc, (unsigned long long)(((ks >> 2) << 9) + ((ks & 3) << 1)));
    };

    if (warp < 4) {
        // ================= loaders =================
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Regs<FWD, NORM, MAPR, SL>::loader));
        const bool vecQK = (dk % 8 == 0) && lightning::aligned16(k) && (!FWD || lightning::aligned16(q));
        const bool vecV = (dv % 8 == 0) && lightning::aligned16(v);
        // whether z's carry takes the exact form, as the consumers' (exactCarry)
        const bool exactCarryL = tab[LIGHTNING_DECAY_COMP_AT + kChunk] < LIGHTNING_EXACT_CARRY_BELOW;
        // (an unpaired plain forward with a map runs the MAPR body, so the other
        // plain forward body has no map code)
        // (LIGHTNING_WG_NORM_X & 16, a measurement build: the normalized forward's loaders without map code)
        const int fm = ((FWD && !NORM && !PAIR && !MAPR) ||
                        (FWD && NORM && (LIGHTNING_WG_NORM_X & 16))) ? 0 : a.featureMap;
        // Grouped heads: head h reads q head h / (H / Hq), k head h / (H / Hk), v head h / (H / Hv).
        // The heads of a group are adjacent blockIdx.x and run at the same time, so the repeated
        // reads of a shared k or v tile are served by L2, not by memory.
        // Row strides in elements (32-bit: the loaders have few registers); the tile pointers
        // start at the segment's first row and advance a chunk per load_chunk (chunks load in order).
        const int rowQ = FWD ? a.headsQ * dk : 0, rowK = a.headsK * dk, rowV = a.headsV * dv;
        // PAIR: Hq = Hk = Hv = H, and the tiles start at the first head's row piece.
        const T* qc = FWD ? q + segStart * rowQ + (PAIR ? h : h / (H / a.headsQ)) * dk : nullptr;
        const T* kc = k + segStart * rowK + (PAIR ? h : h / (H / a.headsK)) * dk;
        const T* vc = v + segStart * rowV + (PAIR ? h : h / (H / a.headsV)) * dv + c0;
        auto load_chunk = [&](int st, int c) {
            const int m = (int)min((long long)kChunk, segEnd - (segStart + (long long)c * kChunk));
            const unsigned base = st * stageBytes;
            if (FWD) load_tile<T>(smU + base, sm + base, qc, rowQ, m, qkValid, vecQK, tid, fm);
            const unsigned kb = base + (FWD ? qBytes : 0u), vb = kb + qBytes;
            load_tile<T>(smU + kb, sm + kb, kc, rowK, m, qkValid, vecQK, tid, fm);
            load_tile<T>(smU + vb, sm + vb, vc, rowV, m, width, vecV, tid);
            if (FWD) qc += kChunk * rowQ;
            kc += kChunk * rowK;
            vc += kChunk * rowV;
        };
        // NORM: z[d] for the four rows d = zRow(i) of this lane's m64n8 accumulators (every lane of a
        // quad holds the same four), before the chunk at hand (0 past dk: those rows of Q are zero).
        float zv[4] = {0.f, 0.f, 0.f, 0.f};
        auto zRow = [&](int i) { return 16 * (warp & 3) + (lane >> 2) + 8 * (i & 1) + 64 * (i >> 1); };
        const long long zBase = ((long long)s * H + h) * dk;
        if (NORM && FWD && a.incomingNorm != nullptr) {
#pragma unroll
            for (int i = 0; i < 4; ++i)
                if (zRow(i) < dk) zv[i] = a.incomingNorm[zBase + zRow(i)];
        }
        const bool zWriter = NORM && blockIdx.y == 0 && (lane & 3) == 0;
        auto z_out = [&](float* dst) {  // z after the chunks so far, by its writer lanes
#pragma unroll
            for (int i = 0; i < 4; ++i)
                if (zRow(i) < dk) dst[zRow(i)] = zv[i];
        };
        const bool ckZ = FWD && NORM && a.checkpointNorms != nullptr && a.checkpointEvery > 0;
        CheckpointClock clock(a, segStart);
        // The column sums dz[d] = sum_t w_t k_t[d], w_t = lambda^(m-1-t), on the
        // tensor cores, issued by this warpgroup: dz^T = K^T W with K^T the stage's K tile read as an
        // MN-major A (two m64 halves of dk) and W an 8 x 64 K-major tile whose rows are the weights
        // split in two, hi = RN(w), lo = RN(w - hi) (T each), alternating: columns 2x and 2x + 1 of
        // the m64n8 product are then sum hi k and sum lo k for every x, so each lane of a quad gets
        // both for its rows (as for q . zP). The products are exact and summed in float32: about the
        // float32 sum the loaders formed by 64 loads and FMAs a thread (the loop this replaces).
        // Two weight tiles, made once: whole chunks, and the segment's last chunk (m tokens; w = 0
        // past m, where K's rows are zero anyway).
        if (NORM && nChunks > 0) {
            const int t = tid & 63, which = tid >> 6;
            const int mm = which ? (int)(segEnd - segStart - (long long)(nChunks - 1) * kChunk) : kChunk;
            const float w = tab[mm - 1 - t];  // 0 for t >= mm (the table is 0 below index 0)
            const T hi = Ops<T>::from_f(w), lo = Ops<T>::from_f(w - Ops<T>::to_f(hi));
            unsigned char* wt = sm + offW + which * 1024 + ((t & 7) << 1);
#pragma unroll
            for (int e = 0; e < 8; ++e) *reinterpret_cast<T*>(wt + (e << 7) + ((((t >> 3) & 7) ^ e) << 4)) = (e & 1) ? lo : hi;
            fence_async_smem();  // read by this warpgroup's wgmma after the loaders' barrier below
        }
#pragma unroll 1
        for (int i = 0; i < AHEAD; ++i) {
            if (i < nChunks) load_chunk(i, i);
            cp_async_commit();
        }
        int st = 0;
        for (int c = 0; c < nChunks; ++c) {
            // This thread's copies of chunk c have landed (AHEAD-1 younger groups may still fly):
            // apply phi to them, add the normalizer's part, make it all visible to the tensor
            // cores and say so.
            cp_async_wait(AHEAD - 1);
            if constexpr (FWD && LIGHTNING_WG_DELAY_NS > 0) __nanosleep(LIGHTNING_WG_DELAY_NS);
            const unsigned base = st * stageBytes, kb = base + (FWD ? qBytes : 0u);
            const int m = (int)min((long long)kChunk, segEnd - (segStart + (long long)c * kChunk));
            // (LIGHTNING_WG_NORM_X & 128, a measurement build: MAPR maps a scratch tile after the next loads instead)
            if (fm != 0 && vecQK && !(MAPR && (LIGHTNING_WG_NORM_X & 128))) {  // (the 2-byte path applied phi as it copied)
                constexpr int R = NORM ? LIGHTNING_WG_NORM_MAP_ROWS : 1;
                if (fm == 1) map_chunk<T, 1, FWD, PAIR, R>(sm + base, sm + kb, m, qkValid, tid);
                else map_chunk<T, 2, FWD, PAIR, R>(sm + base, sm + kb, m, qkValid, tid);
            }
            const int li0 = 16 * w4 + g;  // this lane's rows li0, li0 + 8 in S and q . zP (as a consumer's i0)
            float zi0 = 0.f, zi1 = 0.f;  // NORM forward: lambda^(i+1) q_i . zP of rows li0, li0 + 8 (see Zq)
            (void)li0;
            (void)zi0;
            (void)zi1;
            if (NORM && !ZC) {
                if (FWD) {
                    unsigned char* zt = sm + offZ + st * zBytes;
                    const int e0 = 2 * (lane & 3);  // this lane's rows of the tile: hi, lo
#pragma unroll
                    for (int i = 0; i < 4; ++i) {
                        const int dd = zRow(i);
                        const T hi = Ops<T>::from_f(zv[i]), lo = Ops<T>::from_f(zv[i] - Ops<T>::to_f(hi));
                        unsigned char* p = zt + ((dd >> 6) << 10) + ((dd & 7) << 1);
                        const int pd = (dd >> 3) & 7;
                        *reinterpret_cast<T*>(p + (e0 << 7) + ((pd ^ e0) << 4)) = hi;
                        *reinterpret_cast<T*>(p + ((e0 + 1) << 7) + ((pd ^ (e0 + 1)) << 4)) = lo;
                    }
                }
                if (!ZX) {
                fence_async_smem();           // this thread's copies and mapped pieces, for the wgmma
                named_bar_sync(3, kLoaders);  // every loader's part of the K tile is in (and mapped)
                const unsigned long long kT = wg_desc(smU + kb, 8192u, 1024u);
                const unsigned long long wD = wg_desc(smU + offW + (m == kChunk ? 0u : 1024u), 16u, 1024u);
                float zd0[4], zd1[4];  // the two m64 halves of dk (the first k-step only writes them)
                wg_fence();
                Wgmma<T, 8>::ss_ta0(zd0, kT, wD);
                Wgmma<T, 8>::ss_ta0(zd1, kT + 512u, wD);
                // 16 tokens a k-step: 2048 bytes of K, 32 of W. Not unrolled: the loaders' registers
                // are few, and the unrolled loop's eight descriptor pairs spilled (ptxas).
#pragma unroll 1
                for (int ks = 1; ks < 4; ++ks) {
                    Wgmma<T, 8>::ss_ta(zd0, kT + 128u * ks, wD + 2u * ks);
                    Wgmma<T, 8>::ss_ta(zd1, kT + 512u + 128u * ks, wD + 2u * ks);
                }
                // (forward) q . zP: Q (A, as for S) times this stage's normalizer tile (B: z before the chunk), in
                // this group; a quad's first lane holds [0] hi and [1] lo of row li0, [2] and [3] of row li0 + 8
                float Zq[4];
                constexpr bool kQz = FWD && !(LIGHTNING_WG_NORM_X & 1);
                if constexpr (kQz) {
                    const unsigned long long qD = desc_of(smU + base, 16u, 1024u);
                    const unsigned long long zD = desc_of(smU + offZ + st * zBytes, 16u, 1024u);
#pragma unroll
                    for (int ks = 0; ks < KS; ++ks) {
                        const unsigned long long zd = desc_add(zD, (unsigned long long)(((ks >> 2) << 6) + ((ks & 3) << 1)));
                        if (ks == 0) Wgmma<T, 8>::template ss<0>(Zq, qk_desc(qD, ks), zd);
                        else Wgmma<T, 8>::template ss<1>(Zq, qk_desc(qD, ks), zd);
                    }
                }
                wg_commit();
                wg_wait<0>();
                reg_fence<4>(zd0);
                reg_fence<4>(zd1);
                if constexpr (kQz) {  // lambda^(i+1) q_i . zP, i = li0 and li0 + 8
                    reg_fence<4>(Zq);
                    zi0 = tab[li0 + 1] * (Zq[0] + Zq[1]);
                    zi1 = tab[li0 + 9] * (Zq[2] + Zq[3]);
                }
                // z's carry as P's (fold, below): exact only where the chunk decay is close to 1
                if (exactCarryL) {
                    const float cm = tab[LIGHTNING_DECAY_COMP_AT + m];
                    zv[0] = lightning_decayed(zv[0], zd0[0] + zd0[1], cm);
                    zv[1] = lightning_decayed(zv[1], zd0[2] + zd0[3], cm);
                    zv[2] = lightning_decayed(zv[2], zd1[0] + zd1[1], cm);
                    zv[3] = lightning_decayed(zv[3], zd1[2] + zd1[3], cm);
                } else {
                    const float lm = tab[m];
                    zv[0] = fmaf(lm, zv[0], zd0[0] + zd0[1]);
                    zv[1] = fmaf(lm, zv[1], zd0[2] + zd0[3]);
                    zv[2] = fmaf(lm, zv[2], zd1[0] + zd1[1]);
                    zv[3] = fmaf(lm, zv[3], zd1[2] + zd1[3]);
                }
                if (ckZ) {
                    const long long slot = clock.advance(m);
                    if (slot >= 0 && zWriter) z_out(a.checkpointNorms + (slot * H + h) * dk);
                }
                }  // ZX
            }
            if constexpr (SL) {
                // S = Q K^T of the chunk once (both consumers' S V read it), masked and decayed as the consumers did
                // (rows 16 w4 + g, + 8 of this warp; the scaled mask table), packed into the stage's S tile:
                // the 128-byte swizzle, K-major, the A operand of S V.
                fence_async_smem();           // this thread's copies, for the wgmma
                named_bar_sync(3, kLoaders);  // every loader's copies of the chunk landed
                const unsigned long long qD = desc_of(smU + base, 16u, 1024u), kD = desc_of(smU + kb, 16u, 1024u);
                float S[32];
                wg_fence();
#pragma unroll
                for (int ks = 0; ks < KS; ++ks) {
                    if (ks == 0) W::template ss0<0>(S, qk_desc(qD, ks), qk_desc(kD, ks));
                    else W::template ss<0>(S, qk_desc(qD, ks), qk_desc(kD, ks));
                }
                wg_commit();
                wg_wait<0>();
                reg_fence<32>(S);
                const float* trL = mask_table(0) + (li0 - 2 * tq);
                unsigned char* sp = sm + offSp + st * 8192u + li0 * 128 + 4 * tq;
                float den0 = 0.f, den1 = 0.f;  // NORM: the rows' sums of the masked scores, as the consumers formed them
#pragma unroll
                for (int nt = 0; nt < 8; ++nt) {
                    unsigned char* d = sp + ((nt ^ g) << 4);  // rows li0 and li0 + 8: the same piece
                    float v0, v1, v2, v3;
                    if constexpr (NORM) {
                        masked_pair(S, trL, nt, 0, v0, v1);
                        masked_pair(S, trL, nt, 1, v2, v3);
                        *reinterpret_cast<unsigned*>(d) = O_::pack(v0, v1);
                        *reinterpret_cast<unsigned*>(d + 1024) = O_::pack(v2, v3);
                        den0 += v0 + v1;
                        den1 += v2 + v3;
                    } else {  // (each half stored as it is formed: the order of the code measured, its PTX unchanged)
                        masked_pair(S, trL, nt, 0, v0, v1);
                        *reinterpret_cast<unsigned*>(d) = O_::pack(v0, v1);
                        masked_pair(S, trL, nt, 1, v2, v3);
                        *reinterpret_cast<unsigned*>(d + 1024) = O_::pack(v2, v3);
                    }
                }
                if (NORM) {
                    // quad sums, and the denominators less eps into rows 2 and 3 of the stage's normalizer tile
                    // (first atom: 64 floats), which only repeated z's hi and lo for q . zP, formed above. The mask
                    // table carries the scale, so the row sums of the masked scores do too; the denominator must
                    // not (o = scale num' / (den' + eps), num = scale num' as computed): the sums are multiplied
                    // back by 1 / scale (0 for a zero scale, whose outputs are 0 anyway), one multiply a row
                    // instead of a second, unscaled mask.
                    den0 += __shfl_xor_sync(0xffffffffu, den0, 1);
                    den1 += __shfl_xor_sync(0xffffffffu, den1, 1);
                    den0 += __shfl_xor_sync(0xffffffffu, den0, 2);
                    den1 += __shfl_xor_sync(0xffffffffu, den1, 2);
                    float* dt = reinterpret_cast<float*>(sm + offZ + st * zBytes + 256);
                    if (tq == 0) {
                        const float invScale = scale != 0.f ? 1.f / scale : 0.f;
                        dt[li0] = fmaf(den0, invScale, zi0);
                        dt[li0 + 8] = fmaf(den1, invScale, zi1);
                    }
                }
            }
            fence_async_smem();
            mbar_arrive(fullU + 8u * st);
            // Chunk c + AHEAD goes into the stage of chunk c - 1 once the consumers are done with it.
            const int cn = c + AHEAD;
            const int sn = st == 0 ? NS - 1 : st - 1;
            if (cn < nChunks) {
                if (cn >= NS) mbar_wait(emptyU + 8u * sn, (unsigned)((cn - NS) / NS) & 1u);
                load_chunk(sn, cn);
            }
            cp_async_commit();
            // the map's work, off the path to the arrive: two scratch tiles 8192 bytes apart (the same tile twice let
            // the compiler merge the two maps' identical loads and exponentials, half the work: BENCHMARKS.md, session 30)
            if constexpr (MAPR && (LIGHTNING_WG_NORM_X & 128)) {
                if (fm == 1) map_chunk<T, 1, FWD, PAIR, 1>(sm + offSp, sm + offSp + 8192u, m, qkValid, tid);
                else if (fm == 2) map_chunk<T, 2, FWD, PAIR, 1>(sm + offSp, sm + offSp + 8192u, m, qkValid, tid);
            }
            if (++st == NS) st = 0;
        }
        if (!ZC && zWriter && a.statesNorm != nullptr) z_out(a.statesNorm + zBase);
    } else {
    // ================= consumers (not indented, to keep this long block readable) =================
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Regs<FWD, NORM, MAPR, SL>::consumer));
    using W128 = Wgmma<T, 128>;
    // The state's accumulator: m64n128 (NP = 64 registers), or m64n64 for the paired kernels'
    // own atom (NP = 32, d below is then the head's own dk index).
    constexpr int NP = PAIR ? 32 : 64;
    using WS = typename std::conditional<PAIR, Wgmma<T, 64>, Wgmma<T, 128>>::type;
    const int j = (warp >> 2) - 1;            // which half of the columns
    const int colBase = 64 * j;               // first own column, relative to c0
    const bool colsLive = colBase < width;    // dv <= 64 leaves the second consumer idle
    const int barId = 1 + j;                  // named barrier of this warpgroup
    const int hj = PAIR ? h + j : h;          // this consumer's head
    // PAIR: this consumer's decay tables (the second head's at offW, see above) and its atom of the
    // Q and K tiles and of the state copy (an atom is 8192 bytes: 512 in a descriptor's address field).
    if (PAIR && j == 1) tab = reinterpret_cast<float*>(sm + offW) + 64;
    // Whether this head's carries take the exact form (lightning_decay.cuh's LIGHTNING_EXACT_CARRY_BELOW), once.
    const bool exactCarry = tab[LIGHTNING_DECAY_COMP_AT + kChunk] < LIGHTNING_EXACT_CARRY_BELOW;
    const unsigned long long atomJ = PAIR ? (unsigned long long)(j << 9) : 0ull;
    constexpr int KSJ = PAIR ? 4 : KS;        // k-steps of S = Q K^T and Q P
    const unsigned ptU = smU + offPt + j * ptBytes;
    unsigned char* pt = sm + offPt + j * ptBytes;

    // Carried state slice, transposed: the m64n128 accumulator of P^T (rows: the own 64 columns,
    // columns: all 128 dk). Pt[4 nt + e] = P[d][colBase + c] with c = 16 w4 + g + 8 (e >> 1) and
    // d = 8 nt + 2 tq + (e & 1), nt = 0..15. Keeping P^T (not P) lets the state update take the
    // decayed values from V (64 own columns) instead of K (128 dk rows): half the split work, one
    // m64n128 product instead of two m64n64 per k-step.
    float Pt[NP];
#pragma unroll
    for (int i = 0; i < NP; ++i) Pt[i] = 0.f;
    // Visits the elements of the slice that exist (d < dk, column < width) with their offset in
    // an [dk, dv] state of this head and column tile.
    // PAIR: the elements of the own atom (all of them: d is the own dk index), at their place in head hj's state.
    auto each_state = [&](auto&& f) {
#pragma unroll
        for (int i = 0; i < NP; ++i) {
            const int cc = colBase + 16 * w4 + g + 8 * ((i >> 1) & 1), d = 8 * (i >> 2) + 2 * tq + (i & 1);
            if (PAIR) {
                f(i, (long long)d * dv + (cc - colBase));
            } else if (d < dk && cc < width) {
                f(i, (long long)d * dv + c0 + cc);
            }
        }
    };
    if (FWD && colsLive && a.incoming != nullptr) {
        const float* inc = a.incoming + ((long long)s * H + hj) * dk * dv;
        each_state([&](int i, long long off) { Pt[i] = inc[off]; });
    }
    // The bf16/f16 copy of P^T for the inter product, laid out like a K tile (64 rows = own columns,
    // 128 dk in two atoms, the 128-byte swizzle): Q P then reads it as a K-major B, as S reads K.
    auto store_copy = [&]() {
        unsigned char* base = pt + (16 * w4 + g) * 128 + 4 * tq;
#pragma unroll
        for (int nt = 0; nt < NP / 4; ++nt) {
            unsigned char* d = base + ((nt >> 3) << 13) + (((nt & 7) ^ g) << 4);
            *reinterpret_cast<unsigned*>(d) = O_::pack(Pt[4 * nt], Pt[4 * nt + 1]);
            *reinterpret_cast<unsigned*>(d + 8 * 128) = O_::pack(Pt[4 * nt + 2], Pt[4 * nt + 3]);
        }
        fence_async_smem();
        named_bar_sync(barId, 128);
    };
    if (FWD && !TQ) store_copy();
    // TQ: rq[i] = scale lambda^(i+1), the inter part's factor of token i, in the state copy's place (unused there)
    const float* rq = reinterpret_cast<const float*>(pt);
    if constexpr (TQ) {
        const int lt = tid & 127;
        if (lt < 64) reinterpret_cast<float*>(pt)[lt] = scale * tab[lt + 1];
        named_bar_sync(barId, 128);
    }

    // ldmatrix.trans of the own V atom for the state update's A fragments (V^T: rows = own
    // columns, k = tokens): lanes 8i..8i+7 address the rows of block (token block 2 kk + i / 2,
    // column block 2 w4 + i % 2), i.e. piece 2 w4 + i % 2 of token rows t with t % 8 = lane % 8.
    const unsigned laneV = (unsigned)((8 * (lane >> 4) + (lane & 7)) * 128 + (((2 * w4 + ((lane >> 3) & 1)) ^ (lane & 7)) << 4));

    // Outputs (forward): rows 16 w4 + g (+8) of the chunk, own columns.
    const bool vecO = FWD && (dv % 8 == 0) && lightning::aligned16(o);
    T* sOw = reinterpret_cast<T*>(sm + offO) + 16 * w4 * kLdo + colBase;
    const int i0 = 16 * w4 + g;
    // tr[-8 nt - x] = scale lambda^(i0 - (8 nt + 2 tq + x)) (0 above the diagonal)
    const float* tr = mask_table(PAIR && j == 1 ? 1 : 0) + (i0 - 2 * tq);
    const float l0 = tab[i0 + 1], l1 = tab[i0 + 9];  // lambda^(i+1) of the two rows
    const float r0 = scale * l0, r1 = scale * l1;    // inter rows: scale lambda^(i+1)
    // (PAIR: the copy holds the own dk only, in its first atom)
    const unsigned long long ptDesc = desc_add(desc_of(ptU, 16u, 1024u), PAIR ? 0ull : atomJ);
    const float eps = a.eps;  // NORM
    // Checkpoints (forward): the clock runs in every consumer thread alike (a uniform branch).
    const bool ckS = FWD && a.checkpoints != nullptr && a.checkpointEvery > 0;
    CheckpointClock clock(a, segStart);
    // store_rows_fast (16-byte path): lane L writes piece L % 8 of rows 16 w4 + L / 8 + 4 rep of each
    // chunk; oNext points at its piece of the next chunk to go out (chunks go out in order, once each).
    const long long oRep = 4ll * H * dv;
    T* oNext = o + ((segStart + 16 * w4 + (lane >> 3)) * H + h) * (long long)dv + c0 + colBase + (lane & 7) * 8;
    const T* oSrc = sOw + (lane >> 3) * kLdo + (lane & 7) * 8;
    const bool oColOk = colBase + (lane & 7) * 8 < width;
    auto store_rows_fast = [&](int cs) {
        const long long ts = segStart + (long long)cs * kChunk;
        // rows left for this lane: 4 rep < lim
        const int lim = (int)min((long long)kChunk, segEnd - ts) - 16 * w4 - (lane >> 3);
        T* dst = oNext;
        oNext += 16 * oRep;  // 64 rows
        if (!oColOk) return;
#pragma unroll
        for (int rep = 0; rep < 4; ++rep) {
            if (4 * rep < lim) *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(oSrc + 4 * rep * kLdo);
            dst += oRep;
        }
    };
    // Writes this warp's staged rows of chunk cs, own columns, as 16-byte row pieces.
    auto store_rows = [&](int cs) {
        if (!NORM && vecO) {  // (NORM: its 208 consumer registers spilled 8 bytes)
            store_rows_fast(cs);
            return;
        }
        const long long ts = segStart + (long long)cs * kChunk;
        const int ms = (int)min((long long)kChunk, segEnd - ts);
#pragma unroll
        for (int rep = 0; rep < 4; ++rep) {
            const int idx = lane + 32 * rep;
            const int r = idx >> 3, cc = (idx & 7) * 8;
            const int lr = 16 * w4 + r;
            if (lr < ms && colBase + cc < width) {
                T* dst = o + ((ts + lr) * H + h) * (long long)dv + c0 + colBase + cc;
                const T* src = sOw + r * kLdo + cc;
                if (vecO) {
                    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
                } else {
#pragma unroll
                    for (int e = 0; e < 8; ++e)
                        if (colBase + cc + e < width) dst[e] = src[e];
                }
            }
        }
    };

    // ZC (states kernel): this consumer sums dz[d] = sum_t w_t k_t[d] for its half of dk, d = 64 j + 16 w4 + g (+ 8),
    // with the loaders' products (K^T, an MN-major A, times the decay-weight tile; see the loaders), in the
    // state update's commit group, whose wait it has anyway; z = lambda^m z + dz in zcv. Both consumers take part
    // (also one without value columns: dv <= 64); the first column tile writes z.
    // Every consumer issues them unconditionally (one without value columns included: its state products are of
    // zero columns and never stored): wgmma in a divergent path made ptxas serialize every product of the kernel.
    float zcd[4], zcv[2] = {0.f, 0.f};
    (void)zcd; (void)zcv;
    int st = 0;
    unsigned parity = 0;
    for (int c = 0; c < nChunks; ++c) {
        mbar_wait(fullU + 8u * st, parity);
        const long long t0 = segStart + (long long)c * kChunk;
        const int m = (int)min((long long)kChunk, segEnd - t0);
        const unsigned qU = smU + st * stageBytes;
        const unsigned kU = qU + (FWD ? qBytes : 0u), vU = kU + qBytes;
        const unsigned vOwn = vU + 8192u * j;  // own 64 columns of V: one atom
        const unsigned long long qDesc = desc_add(desc_of(qU, 16u, 1024u), atomJ),
                                 kDesc = desc_add(desc_of(kU, 16u, 1024u), atomJ);
        // (PAIR: the state products take K's own atom j alone)
        const unsigned long long kStateDesc = desc_of(kU + (PAIR ? 8192u * j : 0u), 8192u, 1024u),
                                 vDesc = desc_of(vOwn, 8192u, 1024u);

        // State update: P^T = lambda^m P^T + dP^T, dP^T = sum over the chunk's tokens t of
        // (w_t v_t)^T k_t with w_t = lambda^(m-1-t): the decayed own values split as hi + lo (A
        // fragments in registers), times the K tile (B, all 128 dk), lo products first. The carry
        // decays by its complement, 1 - lambda^m (lightning_decayed), where that matters (see fold).
        unsigned A[4][8];  // [k-step]: [0..3] hi, [4..7] lo
        float dP[NP];      // the first product (rs0) overwrites it
        // TQ: the own V atom's fragments (V^T, ldmatrix.trans) are loaded once, before S V, whose A operand they
        // are as they are; form() then splits them for the state update
        unsigned Vx[TQ ? 4 : 1][4];
        auto form = [&]() {
#pragma unroll
            for (int kk = 0; kk < 4; ++kk) {
                unsigned* a = A[kk];
                unsigned xl[4];
                unsigned* x = TQ ? Vx[kk] : xl;
                if constexpr (!TQ) ldsm_x4_t(x, vOwn + laneV + (unsigned)(kk * 2048));
                const float* wt = tab + (m - 1 - 16 * kk - 2 * tq);
                const PairWeights<T> p0(wt[0], wt[-1]), p8(wt[-8], wt[-9]);
                split_hl<T>(x[0], p0, a[0], a[4]);
                split_hl<T>(x[1], p0, a[1], a[5]);
                split_hl<T>(x[2], p8, a[2], a[6]);
                split_hl<T>(x[3], p8, a[3], a[7]);
            }
        };
        auto issue = [&]() {
#pragma unroll
            for (int kk = 0; kk < 4; ++kk) {
                const unsigned long long bd = desc_add(kStateDesc, 128u * kk);  // 16 token rows further
                if (kk == 0) WS::template rs0<1>(dP, A[kk] + 4, bd);
                else WS::template rs<1>(dP, A[kk] + 4, bd);
                WS::template rs<1>(dP, A[kk], bd);
            }
        };
        auto fold = [&]() {  // once the products completed
            reg_fence<NP>(dP);
            reg_fence<32>(&A[0][0]);
            // (the uniform test of lightning_decay.cuh's LIGHTNING_EXACT_CARRY_BELOW: a head far from 1 keeps one FMA)
            if (exactCarry) {
                const float compM = tab[LIGHTNING_DECAY_COMP_AT + m];
#pragma unroll
                for (int i = 0; i < NP; ++i) Pt[i] = lightning_decayed(Pt[i], dP[i], compM);
            } else {
                const float lamM = tab[m];
#pragma unroll
                for (int i = 0; i < NP; ++i) Pt[i] = fmaf(lamM, Pt[i], dP[i]);
            }
        };

        if (FWD && colsLive) {
            // ---- outputs: S = Q K^T, Oa = Q T(P) (own columns), then Oa = lambda^(i+1) Oa + S' V;
            //      the state update's fragments are formed while S and Q T(P) run, and its
            //      products queue right behind S V. ----
            // S: the plain forward (SL) reads the masked S' the loaders left in the stage (S V's A from shared
            // memory), formed once a CTA instead of once by each consumer: 1/9 of the CTA's tensor-core work a chunk
            // less, the plain forward 5.8% faster at H = 64 and at H = 8 (bench/cuda/fwd_cost.cu, H200, T = 1M,
            // D = 128, bf16, 80 rounds, 2026-12-04, session 11; BENCHMARKS.md): at the card's 700 W limit the work's
            // energy sets the pace, not the issue slots (the tiles by TMA, which took a quarter of the instructions
            // off, gained nothing). The hand-over rides on the stage's full barrier, a stage ahead of the consumers.
            // The normalized forward's loaders also sum S's rows (its denominators' intra part; 11.5% off its forward
            // in norm_cost, 2026-12-04); the mapped and paired bodies form all of S in both consumers. Tried and
            // removed before (ssplit, BENCHMARKS.md; 2026-12-04): each consumer its 32 keys (m64n32), the masked
            // halves exchanged between the consumers mid-chunk: the plain forward 1.8 to 10.3% slower.
            float S[32], Oa[32];  // the first k-step (ss0) overwrites them
            wg_fence();
            if constexpr (!SL) {
#pragma unroll
            for (int ks = 0; ks < KSJ; ++ks) {
                if (ks == 0) W::template ss0<0>(S, qk_desc(qDesc, ks), qk_desc(kDesc, ks));
                else W::template ss<0>(S, qk_desc(qDesc, ks), qk_desc(kDesc, ks));
            }
            wg_commit();
            }
            unsigned Ap[TQ ? KS : 1][4];  // TQ: P^T as A fragments (k-step ks: dk 16 ks .. 16 ks + 15)
            if constexpr (TQ) {
#pragma unroll
                for (int ks = 0; ks < KS; ++ks) {
                    Ap[ks][0] = O_::pack(Pt[8 * ks], Pt[8 * ks + 1]);
                    Ap[ks][1] = O_::pack(Pt[8 * ks + 2], Pt[8 * ks + 3]);
                    Ap[ks][2] = O_::pack(Pt[8 * ks + 4], Pt[8 * ks + 5]);
                    Ap[ks][3] = O_::pack(Pt[8 * ks + 6], Pt[8 * ks + 7]);
                }
#pragma unroll
                for (int ks = 0; ks < KS; ++ks) {  // Oa^T = P^T Q^T: B = the Q tile, K-major (as K in S = Q K^T)
                    if (ks == 0) W::template rs0<0>(Oa, Ap[ks], qk_desc(qDesc, ks));
                    else W::template rs<0>(Oa, Ap[ks], qk_desc(qDesc, ks));
                }
            } else {
#pragma unroll
            for (int ks = 0; ks < KSJ; ++ks) {
                if (ks == 0) W::template ss0<0>(Oa, qk_desc(qDesc, ks), qk_desc(ptDesc, ks));
                else W::template ss<0>(Oa, qk_desc(qDesc, ks), qk_desc(ptDesc, ks));
            }
            }
            wg_commit();
            if constexpr (!TQ) form();  // (TQ: while S V runs; P^T's fragments hold 32 registers until Q P is done)
            if (c > 0) store_rows(c - 1);  // while the tensor cores work
            // Mask and decay (tab is 0 for i < j), repacked as A fragments of S V: k-step kk is
            // {n-tile 2kk row g, n-tile 2kk row g+8, n-tile 2kk+1 row g, n-tile 2kk+1 row g+8}.
            unsigned Sp[4][4];
            if constexpr (!SL) {  // (the mapped and paired bodies; the others' loaders left S' in the stage)
            wg_wait<1>();
            reg_fence<32>(S);
#pragma unroll
            for (int nt = 0; nt < 8; ++nt) {
                float v0, v1, v2, v3;
                masked_pair(S, tr, nt, 0, v0, v1);
                masked_pair(S, tr, nt, 1, v2, v3);
                Sp[nt >> 1][2 * (nt & 1)] = O_::pack(v0, v1);
                Sp[nt >> 1][2 * (nt & 1) + 1] = O_::pack(v2, v3);
            }
            }  // !SL
            wg_wait<0>();
            reg_fence<32>(Oa);
            if constexpr (TQ) reg_fence<4 * KS>(&Ap[0][0]);
            if constexpr (TQ) {  // Oa^T[c][i] *= scale lambda^(i + 1), i = 8 nt + 2 tq (+ 1)
                const float2* r2 = reinterpret_cast<const float2*>(rq) + tq;
#pragma unroll
                for (int nt = 0; nt < 8; ++nt) {
                    const float2 r = r2[4 * nt];
                    Oa[4 * nt] *= r.x;
                    Oa[4 * nt + 1] *= r.y;
                    Oa[4 * nt + 2] *= r.x;
                    Oa[4 * nt + 3] *= r.y;
                }
            } else {
#pragma unroll
            for (int nt = 0; nt < 8; ++nt) {
                Oa[4 * nt] *= r0;
                Oa[4 * nt + 1] *= r0;
                Oa[4 * nt + 2] *= r1;
                Oa[4 * nt + 3] *= r1;
            }
            }
            if constexpr (TQ) {
#pragma unroll
                for (int kk = 0; kk < 4; ++kk) ldsm_x4_t(Vx[kk], vOwn + laneV + (unsigned)(kk * 2048));
            }
            wg_fence();
            if constexpr (SL) {  // A: the stage's S tile (the loaders'), k-step kk at byte 32 kk of its rows
                const unsigned long long sD = desc_of(smU + offSp + st * 8192u, 16u, 1024u);
                if constexpr (TQ) {  // Oa^T += V^T S'^T: A = V^T (the fragments above), B = the S tile, K-major
#pragma unroll
                    for (int kk = 0; kk < 4; ++kk) W::template rs<0>(Oa, Vx[kk], desc_add(sD, 2u * kk));
                } else {
#pragma unroll
                for (int kk = 0; kk < 4; ++kk) W::template ss<1>(Oa, desc_add(sD, 2u * kk), desc_add(vDesc, 128u * kk));
                }
            } else {
#pragma unroll
            for (int kk = 0; kk < 4; ++kk) W::template rs<1>(Oa, Sp[kk], desc_add(vDesc, 128u * kk));
            }
            wg_commit();
            if constexpr (TQ) form();
            // NORM, while S V runs: o_i = num_i / (den_i + eps), den_i = (row i's sum of the masked scores) / scale +
            // lambda^(i+1) q_i . zP, the loaders' (rows 2 and 3 of the stage's normalizer tile). The sums stay
            // float32 sums of the float32 products: tried and removed (hopnorm4, BENCHMARKS.md), the
            // row sums as 4 m64n8k16 products of the packed S' (Sp) with a ones tile in S V's commit group, which
            // gained nothing measurable and, summing the 16-bit S', made o 150x less accurate where the rows' terms
            // cancel (q, k of both signs with the identity map).
            float inv0 = 1.f, inv1 = 1.f;
            static_assert(!(FWD && NORM) || SL, "the normalized forward's row sums come from its loaders");
            if (NORM && !(LIGHTNING_WG_NORM_X & 2)) {
                const float* dt = reinterpret_cast<const float*>(sm + offZ + st * zBytes + 256);
                inv0 = __frcp_rn(dt[i0] + eps);
                inv1 = __frcp_rn(dt[i0 + 8] + eps);
            }
            wg_wait<0>();
            reg_fence<32>(Oa);
            if constexpr (!SL) reg_fence<16>(&Sp[0][0]);
            if constexpr (TQ) reg_fence<16>(&Vx[0][0]);
            // Stage the rows (rounded to T); they go out during the next chunk.
            if constexpr (TQ) {
                // Oa^T: this warp holds own columns 16 w4 .. 16 w4 + 15 of all 64 rows; stmatrix.trans writes each
                // 8 x 8 block (columns 8 h.., rows 8 nt..) transposed, a row of 8 columns a lane address.
                named_bar_sync(barId, 128);  // every warp of this warpgroup is done reading the previous chunk's rows
                const int mi = lane >> 3, mr = lane & 7;
                const unsigned stU = smem_u32(reinterpret_cast<T*>(sm + offO) + colBase + 16 * w4) +
                                     2u * (unsigned)((8 * (mi >> 1) + mr) * kLdo + 8 * (mi & 1));
#pragma unroll
                for (int p = 0; p < 4; ++p) {
                    const unsigned r0_ = O_::pack(Oa[8 * p], Oa[8 * p + 1]), r1_ = O_::pack(Oa[8 * p + 2], Oa[8 * p + 3]);
                    const unsigned r2_ = O_::pack(Oa[8 * p + 4], Oa[8 * p + 5]), r3_ = O_::pack(Oa[8 * p + 6], Oa[8 * p + 7]);
                    asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(
                                     stU + 2u * (unsigned)(16 * p * kLdo)),
                                 "r"(r0_), "r"(r1_), "r"(r2_), "r"(r3_)
                                 : "memory");
                }
                named_bar_sync(barId, 128);  // the chunk's rows are staged
            } else {
            __syncwarp();  // every lane is done reading the previous chunk's staged rows
#pragma unroll
            for (int nt = 0; nt < 8; ++nt) {
                T* d = sOw + g * kLdo + 8 * nt + 2 * tq;
                if (NORM && !(LIGHTNING_WG_NORM_X & 2)) {
                    *reinterpret_cast<unsigned*>(d) = O_::pack(Oa[4 * nt] * inv0, Oa[4 * nt + 1] * inv0);
                    *reinterpret_cast<unsigned*>(d + 8 * kLdo) = O_::pack(Oa[4 * nt + 2] * inv1, Oa[4 * nt + 3] * inv1);
                } else {
                    *reinterpret_cast<unsigned*>(d) = O_::pack(Oa[4 * nt], Oa[4 * nt + 1]);
                    *reinterpret_cast<unsigned*>(d + 8 * kLdo) = O_::pack(Oa[4 * nt + 2], Oa[4 * nt + 3]);
                }
            }
            __syncwarp();
            }  // TQ
            // The state update's products only now: queued behind S V, their 64 accumulators
            // spilled (ptxas), and with one m64n128 update a chunk there is no second tile to hide.
            // Issuing them before the staging instead (so the stores run while they are in flight)
            // measured no gain (kover, BENCHMARKS.md).
            wg_fence();
            issue();
            wg_commit();
            wg_wait<0>();
            fold();
        } else if (colsLive || ZC) {  // (ZC: also a consumer without value columns; see zcd)
            form();
            wg_fence();
            issue();
            if constexpr (ZC && !ZX) {  // this consumer's half of dk of the normalizer's column sums
                const unsigned long long kT = desc_of(kU + 8192u * j, 8192u, 1024u);
                const unsigned long long wD = desc_of(smU + offW + (m == kChunk ? 0u : 1024u), 16u, 1024u);
#pragma unroll
                for (int ks = 0; ks < 4; ++ks) {
                    if (ks == 0) Wgmma<T, 8>::ss_ta0(zcd, kT, wD);
                    else Wgmma<T, 8>::ss_ta(zcd, desc_add(kT, 128u * ks), desc_add(wD, 2u * ks));
                }
            }
            wg_commit();
            wg_wait<0>();
            fold();
            if constexpr (ZC && !ZX) {
                reg_fence<4>(zcd);
                if (exactCarry) {  // as in fold
                    const float cm = tab[LIGHTNING_DECAY_COMP_AT + m];
                    zcv[0] = lightning_decayed(zcv[0], zcd[0] + zcd[1], cm);
                    zcv[1] = lightning_decayed(zcv[1], zcd[2] + zcd[3], cm);
                } else {
                    const float lm = tab[m];
                    zcv[0] = fmaf(lm, zcv[0], zcd[0] + zcd[1]);
                    zcv[1] = fmaf(lm, zcv[1], zcd[2] + zcd[3]);
                }
            }
        }
        mbar_arrive(emptyU + 8u * st);  // done with the stage
        // A checkpoint after this chunk: the own columns of S (z is the loaders').
        if (ckS) {
            const long long slot = clock.advance(m);
            if (slot >= 0 && colsLive) {
                float* ck = a.checkpoints + (slot * H + hj) * dk * dv;
                each_state([&](int i, long long off) { ck[off] = Pt[i]; });
            }
        }
        // The copy of the new state for the next chunk's inter product (this chunk's is read).
        if (FWD && !TQ && c + 1 < nChunks) store_copy();
        if (++st == NS) {
            st = 0;
            parity ^= 1u;
        }
    }
    if (FWD && colsLive && nChunks > 0) store_rows(nChunks - 1);

    // ---- the state after the segment's last token ----
    if (colsLive && a.states != nullptr) {
        float* out = a.states + ((long long)s * H + hj) * dk * dv;
        each_state([&](int i, long long off) { out[off] = Pt[i]; });
    }
    if constexpr (ZC) {  // z after the segment: rows 64 j + 16 w4 + g (+ 8), by the first lane of each quad
        if (!ZX && blockIdx.y == 0 && tq == 0 && a.statesNorm != nullptr) {
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const int d = 64 * j + 16 * w4 + g + 8 * i;
                if (d < dk) a.statesNorm[((long long)s * H + h) * dk + d] = zcv[i];
            }
        }
    }
    }  // consumers
}

// Whether a launch meets the paired kernels' contract (see body's PAIR).
__device__ __forceinline__ bool pair_launch(const LightningArgs& a) {
    return a.dk == LIGHTNING_WG_PAIR_D && a.dv == LIGHTNING_WG_PAIR_D && !a.normalize && a.heads % 2 == 0 &&
           (int)gridDim.x * 2 == a.heads && gridDim.y == 1 && a.headsQ == a.heads && a.headsK == a.heads &&
           a.headsV == a.heads;
}

}  // namespace lightning_wg

// ------------------------------ entry points ----------------------------------------------
// One LightningArgs by value (lightning_args.cuh). normalize picks the compiled variant (uniform
// for the launch); the plain one is the code of the unnormalized kernels.
#define LIGHTNING_WG_ENTRIES(NAME, T)                                                                      \
    extern "C" __global__ void __launch_bounds__(LIGHTNING_WG_THREADS, 1)                                   \
    lightning_forward_wg_##NAME(const LightningArgs a) {                                                    \
        if (a.normalize && !(LIGHTNING_WG_NORM_X & 8)) lightning_wg::body<T, true, true>(a);                \
        else if (a.featureMap != 0 || (LIGHTNING_WG_NORM_X & 64)) lightning_wg::body<T, true, false, false, true>(a); \
        else lightning_wg::body<T, true, false>(a);                                                         \
    }                                                                                                       \
    extern "C" __global__ void __launch_bounds__(LIGHTNING_WG_THREADS, 1)                                   \
    lightning_states_wg_##NAME(const LightningArgs a) {                                                     \
        if (a.normalize) lightning_wg::body<T, false, true>(a);                                             \
        else lightning_wg::body<T, false, false>(a);                                                        \
    }

// The paired kernels (body's PAIR): launched with grid (H / 2, 1, S) for dk = dv = 64, H even, no
// normalization, Hq = Hk = Hv = H; any other launch traps (it would compute half of the heads).
#define LIGHTNING_WG_PAIR_ENTRIES(NAME, T)                                                                 \
    extern "C" __global__ void __launch_bounds__(LIGHTNING_WG_THREADS, 1)                                   \
    lightning_forward_wg_pair_##NAME(const LightningArgs a) {                                               \
        if (!lightning_wg::pair_launch(a)) __trap();                                                        \
        lightning_wg::body<T, true, false, true>(a);                                                        \
    }                                                                                                       \
    extern "C" __global__ void __launch_bounds__(LIGHTNING_WG_THREADS, 1)                                   \
    lightning_states_wg_pair_##NAME(const LightningArgs a) {                                                \
        if (!lightning_wg::pair_launch(a)) __trap();                                                        \
        lightning_wg::body<T, false, false, true>(a);                                                       \
    }

LIGHTNING_WG_ENTRIES(bf16, __nv_bfloat16)
LIGHTNING_WG_ENTRIES(f16, __half)
LIGHTNING_WG_PAIR_ENTRIES(bf16, __nv_bfloat16)
LIGHTNING_WG_PAIR_ENTRIES(f16, __half)
