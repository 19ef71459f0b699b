// The Hopper (sm_90a) softmax attention kernels: the same computation as softmax.cu's tensor-core
// family (see there for the math, the packed rows and the mask-bounded key loop), with both
// products on wgmma. Built into its own PTX (softmax_sm90a.ptx) that the host loads only on a
// device of compute capability 9.0; widths other than those here run on softmax.cu's kernels.
//
// softmax_sm90_forward_{bf16,f16}_k128_v128 (Dk, Dv in 65..128, padded to 128):
//   CTA = 2 warpgroups (256 threads), 128 packed rows, warpgroup g owns rows 64 g .. 64 g + 63
//   (warp w of the CTA owns rows 16 w .. 16 w + 15, the mma.sync layout, so the online softmax
//   and the output code are softmax_common.cuh's). Key tiles of 128, double buffered by cp.async
//   (every thread loads), in the 128-byte swizzled layout wgmma reads (hopper.cuh's notes):
//   S = Q K^T as two m64n64 halves per k-step (A = the warpgroup's Q tile, B = the K tile,
//   both K-major, from shared memory), then O += P V as m64n128k16 with P in registers (the
//   accumulator layout repacked to 16-bit A fragments) and V (keys x Dv, row-major) as the
//   transposed B operand.
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

constexpr int WG_ROWS = 128;        // packed rows a CTA (2 warpgroups x 64)
constexpr int WG_KEYS = 128;        // keys a tile
constexpr int WG_THREADS = 256;
constexpr int WG_Q_TILE = 64 * 256;              // one warpgroup's Q: 64 rows x 128 columns, two 8192-byte atoms
constexpr int WG_KV_TILE = WG_KEYS * 256;        // 128 rows x 128 columns: two 16384-byte atoms
constexpr int WG_Q_BYTES = 2 * WG_Q_TILE;
constexpr int WG_STAGE = 2 * WG_KV_TILE;         // K then V
constexpr int WG_SMEM = WG_Q_BYTES + 2 * WG_STAGE + 1024;  // + alignment of the atoms to 1024

// Byte offset of (row r, 16-byte piece c of 16) in a tile of `rows` rows x 128 columns, 128-byte
// swizzle: atom c / 8 (64 columns) of rows x 128 bytes, piece c % 8 at c % 8 ^ r % 8.
__device__ __forceinline__ unsigned atom_off(int rows, int r, int c) {
    return (unsigned)((c >> 3) * rows * 128 + r * 128 + (((c & 7) ^ (r & 7)) << 4));
}

// Rows [0, ROWS) of width d (<= 128; zeros past d and for rows >= valid) into the swizzled tile
// at shared offset off; a tile row r lands in subtile r / SUB (SUB-row tiles stacked; Q is two
// 64-row tiles, one per warpgroup). vec: 16-byte cp.async; else 2-byte loads and a 16-byte store.
template <int ROWS, int SUB, typename RowPtr>
__device__ __forceinline__ void load_atoms(unsigned char* smem, unsigned off, RowPtr rowPtr, int valid, int d,
                                           bool vec, const void* any) {
    const unsigned base = smem_u32(smem) + off;
#pragma unroll 4
    for (int idx = threadIdx.x; idx < ROWS * 16; idx += WG_THREADS) {
        const int r = idx >> 4, c = idx & 15;
        const int col = c * 8;
        const bool ok = r < valid && col < d;
        const unsigned at = (unsigned)((r / SUB) * SUB * 256) + atom_off(SUB, r % SUB, c);
        if (vec) {
            cp_async16_zfill(base + at, ok ? (const void*)(rowPtr(r) + col) : any, ok ? 16u : 0u);
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
            *reinterpret_cast<uint4*>(smem + off + at) = u;
        }
    }
}

template <typename T>
__device__ __forceinline__ void forward_wg(const SoftmaxArgs& a) {
    using W64 = Wgmma<T, 64>;
    using W128 = Wgmma<T, 128>;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    // atoms must start at multiples of 1024 bytes
    unsigned char* smem = smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u);
    const Block b(a, WG_ROWS);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int wg = warp >> 2;
    const T* q = static_cast<const T*>(a.q);
    const T* k = static_cast<const T*>(a.k);
    const T* v = static_cast<const T*>(a.v);

    const int row[2] = {warp * 16 + (lane >> 2), warp * 16 + (lane >> 2) + 8};
    int klo[2], khi[2];
    row_ranges(a, b, row, klo, khi);

    float acc[16][4];  // m64n128 accumulator: n-tile n = columns 8 n .. 8 n + 7
#pragma unroll
    for (int n = 0; n < 16; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
    float m[2] = {-CUDART_INF_F, -CUDART_INF_F};
    float l[2] = {0.f, 0.f};

    if (b.lo < b.hi) {
        const unsigned sBase = smem_u32(smem);
        const bool vecQ = a.dk % 8 == 0 && aligned16(q);
        const bool vecK = a.dk % 8 == 0 && aligned16(k);
        const bool vecV = a.dv % 8 == 0 && aligned16(v);
        load_atoms<WG_ROWS, 64>(smem, 0, [&](int r) { return q + b.qRow(a, r) * a.dk; }, b.valid, a.dk, vecQ, q);
        const int first = b.lo / WG_KEYS * WG_KEYS;
        const int tiles = (b.hi - first + WG_KEYS - 1) / WG_KEYS;
        auto loadKV = [&](int it) {
            const int j0 = first + it * WG_KEYS;
            const unsigned off = WG_Q_BYTES + (it & 1) * WG_STAGE;
            const int valid = min(WG_KEYS, a.nk - j0);
            load_atoms<WG_KEYS, WG_KEYS>(smem, off, [&](int r) { return k + b.kvRow(a, j0 + r) * a.dk; }, valid,
                                         a.dk, vecK, k);
            load_atoms<WG_KEYS, WG_KEYS>(smem, off + WG_KV_TILE, [&](int r) { return v + b.kvRow(a, j0 + r) * a.dv; },
                                         valid, a.dv, vecV, v);
        };
        loadKV(0);
        cp_async_commit();
        // Q of this warpgroup: K-major A, 8 rows a 1024-byte group; k-step ks: atom ks / 4 (8192
        // bytes), 32 bytes ks % 4 inside it (descriptor units are 16 bytes)
        const unsigned long long qDesc = wg_desc(sBase + wg * WG_Q_TILE, 16u, 1024u);
        for (int it = 0; it < tiles; it++) {
            if (it + 1 < tiles) {
                loadKV(it + 1);
                cp_async_commit();
                cp_async_wait(1);
            } else {
                cp_async_wait(0);
            }
            fence_async_smem();  // this thread's copies, visible to the tensor cores
            __syncthreads();
            const int j0 = first + it * WG_KEYS;
            const unsigned sK = sBase + WG_Q_BYTES + (it & 1) * WG_STAGE;
            const unsigned sV = sK + WG_KV_TILE;
            // K: K-major B, atoms of 16384 bytes (128 rows); keys 64 h.. start 8192 h bytes in
            const unsigned long long kDesc = wg_desc(sK, 16u, 1024u);
            // V: the transposed B: leading offset = the atom (next 64 columns), 16 keys = 2048 bytes
            const unsigned long long vDesc = wg_desc(sV, 16384u, 1024u);

            float s[16][4];
            wg_fence();
#pragma unroll
            for (int ks = 0; ks < 8; ks++) {
                const unsigned long long qd = qDesc + (unsigned long long)(((ks >> 2) << 9) + ((ks & 3) << 1));
                const unsigned long long kd = kDesc + (unsigned long long)(((ks >> 2) << 10) + ((ks & 3) << 1));
                if (ks == 0) {
                    W64::template ss0<0>(&s[0][0], qd, kd);
                    W64::template ss0<0>(&s[8][0], qd, kd + 512u);
                } else {
                    W64::template ss<0>(&s[0][0], qd, kd);
                    W64::template ss<0>(&s[8][0], qd, kd + 512u);
                }
            }
            wg_commit();
            wg_wait<0>();
            reg_fence<64>(&s[0][0]);

            softmax_tile(s, acc, m, l, klo, khi, j0, !(j0 >= b.kloMax && j0 + WG_KEYS <= b.khiMin), a.scaleLog2,
                         lane);
            unsigned pa[8][4];
#pragma unroll
            for (int kk = 0; kk < 8; kk++) {
                pa[kk][0] = Ops<T>::pack(s[2 * kk][0], s[2 * kk][1]);
                pa[kk][1] = Ops<T>::pack(s[2 * kk][2], s[2 * kk][3]);
                pa[kk][2] = Ops<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                pa[kk][3] = Ops<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
            }
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < 8; kk++) W128::template rs<1>(&acc[0][0], pa[kk], vDesc + 128u * kk);
            wg_commit();
            wg_wait<0>();
            reg_fence<64>(&acc[0][0]);
            reg_fence<32>(&pa[0][0]);
            __syncthreads();  // both warpgroups are done with this stage before it is refilled
        }
    }
    finish_rows(a, b, acc, m, l, row, lane);
}

}  // namespace softmax

extern "C" __global__ void __launch_bounds__(softmax::WG_THREADS, 1)
    softmax_sm90_forward_bf16_k128_v128(const SoftmaxArgs a) {
    softmax::forward_wg<__nv_bfloat16>(a);
}
extern "C" __global__ void __launch_bounds__(softmax::WG_THREADS, 1)
    softmax_sm90_forward_f16_k128_v128(const SoftmaxArgs a) {
    softmax::forward_wg<__half>(a);
}

// The Hopper kernels' launch shape: threads, rows a CTA, dynamic shared bytes, and the padded
// width they cover (Dk and Dv in (64, 128]). One thread.
extern "C" __global__ void softmax_sm90_launch_shapes(int* out) {
    out[0] = softmax::WG_THREADS;
    out[1] = softmax::WG_ROWS;
    out[2] = softmax::WG_SMEM;
    out[3] = 128;
}
