// Does the [T, H, D] layout cost bandwidth? The data movement of the forward kernels alone (issue 13):
// one CTA per (head, segment), one CTA an SM (the kernels' shared memory forces that), 128 threads
// streaming 64-token chunks of q, k, v into shared memory with 16-byte cp.async, NS stages deep,
// and writing o (a function of the three tiles, so every copy must land) with 16-byte stores. No
// arithmetic beyond that: this is the ceiling of the kernels' access pattern, not of the kernels.
// The same bytes and the same per-CTA work in three layouts:
//   thd   the real one: row t of head h at (t H + h) D; a CTA reads one head's D-element pieces,
//         H D elements apart (256 bytes every H * 256 at D = 128)
//   htd   head-major: each CTA streams one contiguous range (same CTA count, same chunks)
//   flat  the tensor as a flat array of 64 x D tiles, CTA b taking tiles b, b + nCTA, ...: at any
//         moment the CTAs read neighbouring tiles, as a plain copy does
// and, per shape, the CTA grid the backend launches (H x segments). The device-to-device copy
// (cudaMemcpyAsync) is timed in the same process: the ceiling the share column divides by.
//   nvcc -O3 -gencode=arch=compute_90a,code=sm_90a bench/cuda/head_layout_bw.cu -o head_layout_bw
//   ./head_layout_bw            the skeleton checked (o == q ^ k ^ v everywhere), then the table (median of 9
//                               after 2 warm-ups a line)
//   ./head_layout_bw --one L T H D S NS W   one configuration, 3 launches (for ncu)
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../../gpu-worker/src/test/cuda/cuda_check.cuh"

__device__ __forceinline__ unsigned smem_u32(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void cp16(unsigned d, const void* s) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(s) : "memory");
}
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

constexpr int kChunk = 64, kThreads = 128;
constexpr int kSmem = 200 * 1024;  // one CTA an SM, as the forward kernels (207 KB)

// Layout L, tile c of CTA (h, s): the first element of its row 0 and the row stride (elements).
struct Where { long long first, stride; };
template <int D>
__device__ __forceinline__ Where where(int L, long long T, int H, int h, int s, long long segTokens, long long c) {
    if (L == 0) return {((s * segTokens + c * kChunk) * H + h) * D, (long long)H * D};
    if (L == 1) return {((long long)h * T + s * segTokens + c * kChunk) * D, D};
    // flat: the CTA's c-th tile is tile c * nCTA + b of the flat array (b = h + H s)
    const long long nCta = (long long)H * gridDim.y, b = h + (long long)H * s;
    return {(c * nCta + b) * kChunk * D, D};
}

// W: write o. NS stages of (q, k, v) tiles; a thread copies and later reads only its own pieces,
// so no barrier is needed (the cp.async wait orders a thread's own copies).
template <int D, int NS, bool W>
__global__ void __launch_bounds__(kThreads, 1)
    skel(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k, const __nv_bfloat16* __restrict__ v,
         __nv_bfloat16* __restrict__ o, long long T, int H, long long segTokens, int L) {
    extern __shared__ __align__(1024) unsigned char sm[];
    constexpr int P = D / 8;                 // 16-byte pieces a row
    constexpr int PER = kChunk * P / kThreads;  // pieces a thread a tile
    constexpr int TILE = kChunk * D * 2;
    const int h = blockIdx.x, s = blockIdx.y, tid = threadIdx.x;
    const long long t0 = (long long)s * segTokens;
    const long long segEnd = min(T, t0 + segTokens);
    const int nChunks = (int)((segEnd - t0) / kChunk);  // whole chunks (the host picks divisible sizes)
    const int r0 = tid / P, jp = tid % P;
    constexpr int RSTEP = kThreads / P;
    const unsigned smU = smem_u32(sm);
    auto load = [&](int st, int c) {
        const Where w = where<D>(L, T, H, h, s, segTokens, c);
        const long long g0 = w.first + (long long)r0 * w.stride + 8 * jp;
#pragma unroll
        for (int t = 0; t < 3; ++t) {
            const __nv_bfloat16* src = t == 0 ? q : (t == 1 ? k : v);
#pragma unroll
            for (int i = 0; i < PER; ++i)
                cp16(smU + (st * 3 + t) * TILE + (tid + kThreads * i) * 16, src + g0 + (long long)RSTEP * i * w.stride);
        }
    };
#pragma unroll 1
    for (int i = 0; i < NS - 1; ++i) {
        if (i < nChunks) load(i, i);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
    }
    int st = 0;
    uint4 acc = make_uint4(0, 0, 0, 0);
#pragma unroll 1
    for (int c = 0; c < nChunks; ++c) {
        cp_wait<NS - 2>();
        const Where w = where<D>(L, T, H, h, s, segTokens, c);
        const long long g0 = w.first + (long long)r0 * w.stride + 8 * jp;
#pragma unroll
        for (int i = 0; i < PER; ++i) {
            const unsigned char* b = sm + st * 3 * TILE + (tid + kThreads * i) * 16;
            uint4 a = *reinterpret_cast<const uint4*>(b);
            const uint4 x = *reinterpret_cast<const uint4*>(b + TILE), y = *reinterpret_cast<const uint4*>(b + 2 * TILE);
            a.x ^= x.x ^ y.x; a.y ^= x.y ^ y.y; a.z ^= x.z ^ y.z; a.w ^= x.w ^ y.w;
            if (W) *reinterpret_cast<uint4*>(o + g0 + (long long)RSTEP * i * w.stride) = a;
            else { acc.x ^= a.x; acc.y ^= a.y; acc.z ^= a.z; acc.w ^= a.w; }
        }
        const int cn = c + NS - 1, sn = (st + NS - 1) % NS;  // the stage chunk c - 1 used: this thread is done with it
        if (cn < nChunks) load(sn, cn);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
        if (++st == NS) st = 0;
    }
    cp_wait<0>();
    if (!W && (acc.x ^ acc.y ^ acc.z ^ acc.w) == 0x9e3779b9u) o[tid] = __float2bfloat16(1.f);  // keeps the reads
}

__global__ void fill(__nv_bfloat16* p, size_t n, unsigned seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned x = (unsigned)i * 2654435761u ^ seed;
        x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15;
        p[i] = __float2bfloat16((float)(x >> 8) * (1.f / 16777216.f) - 0.5f);
    }
}

// bad += the elements of o[0, n) that are not q ^ k ^ v
__global__ void check(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v, const __nv_bfloat16* o,
                      size_t n, unsigned long long* bad) {
    const unsigned short *a = reinterpret_cast<const unsigned short*>(q), *b = reinterpret_cast<const unsigned short*>(k),
                         *c = reinterpret_cast<const unsigned short*>(v), *d = reinterpret_cast<const unsigned short*>(o);
    unsigned long long nb = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        nb += (unsigned short)(a[i] ^ b[i] ^ c[i]) != d[i];
    if (nb) atomicAdd(bad, nb);
}

typedef void (*Kern)(const __nv_bfloat16*, const __nv_bfloat16*, const __nv_bfloat16*, __nv_bfloat16*, long long, int,
                     long long, int);
template <int D, int NS, bool W> Kern get() {
    Kern f = skel<D, NS, W>;
    CK(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    return f;
}
static Kern pick(int D, int NS, bool W) {
    if (D == 128) {
        if (NS == 3) return W ? get<128, 3, true>() : get<128, 3, false>();
        if (NS == 4) return W ? get<128, 4, true>() : get<128, 4, false>();
    } else if (D == 64) {
        if (NS == 3) return W ? get<64, 3, true>() : get<64, 3, false>();
        if (NS == 4) return W ? get<64, 4, true>() : get<64, 4, false>();
        if (NS == 8) return W ? get<64, 8, true>() : get<64, 8, false>();
    }
    std::fprintf(stderr, "no build for D=%d NS=%d\n", D, NS);
    std::exit(2);
}

static __nv_bfloat16 *g_q, *g_k, *g_v, *g_o;
static cudaEvent_t e0, e1;

static float time_ms(Kern f, int L, long long T, int H, int D, int S, int reps) {
    const long long segTokens = (T / S + kChunk - 1) / kChunk * kChunk;
    (void)D;
    std::vector<float> ms;
    for (int it = 0; it < reps + 2; ++it) {
        CK(cudaEventRecord(e0));
        f<<<dim3(H, S), kThreads, kSmem>>>(g_q, g_k, g_v, g_o, T, H, segTokens, L);
        CK(cudaGetLastError());
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float t;
        CK(cudaEventElapsedTime(&t, e0, e1));
        if (it >= 2) ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

int main(int argc, char** argv) {
    const size_t maxElems = (size_t)262144 * 128 * 128;  // the largest tensor below: T = 256K, H x D = 128 x 128
    CK(cudaMalloc(&g_q, maxElems * 2));
    CK(cudaMalloc(&g_k, maxElems * 2));
    CK(cudaMalloc(&g_v, maxElems * 2));
    CK(cudaMalloc(&g_o, maxElems * 2));
    fill<<<4096, 256>>>(g_q, maxElems, 1u);
    fill<<<4096, 256>>>(g_k, maxElems, 2u);
    fill<<<4096, 256>>>(g_v, maxElems, 3u);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    const char* names[3] = {"thd", "htd", "flat"};

    if (argc > 1 && std::strcmp(argv[1], "--one") == 0 && argc == 9) {
        const int L = std::atoi(argv[2]), H = std::atoi(argv[4]), D = std::atoi(argv[5]), S = std::atoi(argv[6]);
        const long long T = std::atoll(argv[3]);
        const int NS = std::atoi(argv[7]);
        const bool W = std::atoi(argv[8]) != 0;
        const float t = time_ms(pick(D, NS, W), L, T, H, D, S, 1);
        std::printf("one %s T=%lld H=%d D=%d S=%d NS=%d W=%d: %.3f ms\n", names[L], T, H, D, S, NS, (int)W, t);
        return 0;
    }

    // the copy ceiling: 2 GiB device to device, bytes read + written
    const size_t cbytes = (size_t)1 << 31;
    std::vector<float> cm;
    for (int it = 0; it < 11; ++it) {
        CK(cudaEventRecord(e0));
        CK(cudaMemcpyAsync(g_o, g_q, cbytes, cudaMemcpyDeviceToDevice));
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float t;
        CK(cudaEventElapsedTime(&t, e0, e1));
        if (it >= 2) cm.push_back(t);
    }
    std::sort(cm.begin(), cm.end());
    const double copyBw = 2.0 * cbytes / (cm[cm.size() / 2] * 1e-3);
    std::printf("copy: 2 GiB device to device %.3f ms, %.3f TB/s (read + write)\n", cm[cm.size() / 2], copyBw / 1e12);
    CK(cudaDeviceSynchronize());

    // Correctness of the skeleton first: o poisoned, then every element must be q ^ k ^ v (bitwise) in
    // each layout, at a D = 128 and a D = 64 grid, with a last segment shorter than the others.
    {
        struct C { long long T; int H, D, S; };
        const C cs[] = {{262144, 64, 128, 2}, {65536 * 3, 16, 64, 8}, {262144, 8, 128, 33}};
        unsigned long long* bad;
        CK(cudaMalloc(&bad, sizeof(unsigned long long)));
        for (const C& c : cs)
            for (int L = 0; L < 3; ++L) {
                const long long segTokens = (c.T / c.S + kChunk - 1) / kChunk * kChunk;
                if (L == 2 && segTokens * c.S != c.T) continue;  // flat needs equal segments
                const size_t n = (size_t)c.T * c.H * c.D;
                CK(cudaMemset(g_o, 0xff, n * 2));
                CK(cudaMemset(bad, 0, sizeof(unsigned long long)));
                pick(c.D, 3, true)<<<dim3(c.H, c.S), kThreads, kSmem>>>(g_q, g_k, g_v, g_o, c.T, c.H, segTokens, L);
                CK(cudaGetLastError());
                check<<<2048, 256>>>(g_q, g_k, g_v, g_o, n, bad);
                CK(cudaGetLastError());
                unsigned long long nb = 0;
                CK(cudaMemcpy(&nb, bad, sizeof(nb), cudaMemcpyDeviceToHost));
                std::printf("check %s T=%lld H=%d D=%d S=%d: %llu of %zu elements wrong\n", names[L], c.T, c.H, c.D, c.S, nb, n);
                if (nb != 0) return 1;
            }
        CK(cudaFree(bad));
    }

    struct Shape { long long T; int H, D, S; const char* what; };
    const Shape shapes[] = {
        {262144, 64, 128, 2, "H=64 D=128 2 segments (forward at T=1M)"},
        {262144, 64, 128, 1, "H=64 D=128 1 segment"},
        {262144, 96, 128, 1, "H=96 D=128 1 segment (chosen)"},
        {262144, 48, 128, 2, "H=48 D=128 2 segments"},
        {262144, 8, 128, 16, "H=8 D=128 16 segments"},
        {262144, 8, 128, 33, "H=8 D=128 33 segments"},
        {262144, 128, 128, 1, "H=128 D=128 1 segment"},
        {524288, 16, 64, 8, "H=16 D=64 8 segments (forward)"},
        {524288, 16, 64, 16, "H=16 D=64 16 segments"},
        {524288, 32, 64, 4, "H=32 D=64 4 segments"},
    };
    std::printf("%-42s %-4s %-3s %-2s %-5s %9s %9s %7s\n", "shape", "lay", "NS", "W", "CTAs", "ms", "TB/s", "share");
    for (const Shape& sh : shapes) {
        const double elems = (double)sh.T * sh.H * sh.D;
        for (int W = 1; W >= 0; --W) {
            const int nsList[3] = {3, sh.D == 64 ? 8 : 4, 0};
            for (int ni = 0; ni < 2; ++ni) {
                const int NS = nsList[ni];
                if (!W && ni > 0) continue;  // the read-only lines at the kernels' depth only
                for (int L = 0; L < 3; ++L) {
                    if (L == 2 && (sh.T / sh.S) % kChunk != 0) continue;
                    if (L == 2 && sh.T % ((long long)kChunk * sh.S) != 0) continue;
                    const float t = time_ms(pick(sh.D, NS, W != 0), L, sh.T, sh.H, sh.D, sh.S, 9);
                    const double bytes = (W ? 4.0 : 3.0) * elems * 2.0;
                    const double bw = bytes / (t * 1e-3);
                    std::printf("%-42s %-4s %-3d %-2d %-5d %9.3f %9.3f %7.3f\n", sh.what, names[L], NS, W, sh.H * sh.S, t,
                                bw / 1e12, bw / copyBw);
                    std::fflush(stdout);
                }
            }
        }
    }
    return 0;
}
