// Streaming bandwidth into shared memory with one CTA per SM (128 CTAs of 128 threads), for the
// kernels' access pattern: each CTA reads one head's 256-byte rows (H * 256 bytes apart) of three
// [T, 64, 128] bf16 arrays in 64-row chunks: cp.async of 16 bytes, cp.async.bulk of one row, and
// plain 16-byte loads stored to shared memory.
//   nvcc -O2 -gencode=arch=compute_90a,code=sm_90a bench/cuda/stream_bandwidth.cu -o stream_bandwidth && ./stream_bandwidth
// Seen on an H200 (2026-11-22): 4.64, 3.28 and 2.54 TB/s.
#include <cuda_bf16.h>
#include <cstdio>
#include <cstdlib>
#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); exit(2);} } while (0)
__device__ __forceinline__ unsigned smem_u32(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }
constexpr int H = 64, D = 128, CH = 64, NS = 3, TILE = CH * D * 2;  // 16 KB
__device__ __forceinline__ void mbar_init(unsigned b, unsigned c) { asm volatile("mbarrier.init.shared.b64 [%0], %1;" ::"r"(b), "r"(c)); }
__device__ __forceinline__ void mbar_wait(unsigned b, unsigned ph) {
    asm volatile("{\n.reg .pred p;\nW: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n@!p bra W;\n}\n" ::"r"(b), "r"(ph) : "memory");
}
__device__ __forceinline__ void mbar_expect(unsigned b, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(b), "r"(bytes) : "memory");
}
__device__ __forceinline__ void bulk(unsigned dst, const void* src, unsigned bytes, unsigned bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(dst), "l"(src), "r"(bytes), "r"(bar) : "memory");
}
// mode 0: cp.async 16 B (8 lanes per 128 B row segment), 128 threads; mode 1: bulk, one 256 B row per thread (128 threads
// issue 192 rows); mode 2: ld.global.v4 to registers then st.shared
__global__ void __launch_bounds__(128) stream(const __nv_bfloat16* a, const __nv_bfloat16* b, const __nv_bfloat16* c, int n, int seg, int mode, float* sink) {
    extern __shared__ __align__(1024) unsigned char sm[];
    const int h = blockIdx.x % H, s = blockIdx.x / H, tid = threadIdx.x;
    const long long t0 = (long long)s * seg;
    const int chunks = seg / CH;
    const __nv_bfloat16* src[3] = {a, b, c};
    unsigned bars = smem_u32(sm + NS * 3 * TILE);
    if (tid == 0) for (int i = 0; i < NS; ++i) mbar_init(bars + 8 * i, 1);
    __syncthreads();
    float acc = 0.f;
    if (mode == 0) {
        for (int ch = 0; ch < chunks; ++ch) {
            const int st = ch % NS;
            for (int t = 0; t < 3; ++t) {
                const __nv_bfloat16* base = src[t] + ((t0 + (long long)ch * CH) * H + h) * D;
                for (int idx = tid; idx < CH * 16; idx += 128) {
                    const int r = idx >> 4, p = idx & 15;
                    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_u32(sm + (st * 3 + t) * TILE + idx * 16)), "l"(base + (long long)r * H * D + p * 8) : "memory");
                }
            }
            asm volatile("cp.async.commit_group;" ::: "memory");
            asm volatile("cp.async.wait_group 1;" ::: "memory");
        }
        asm volatile("cp.async.wait_group 0;" ::: "memory");
    } else if (mode == 1) {
        for (int ch = 0; ch < chunks + NS - 1; ++ch) {
            if (ch < chunks) {
                const int st = ch % NS;
                if (ch >= NS) mbar_wait(bars + 8 * st, ((ch - NS) / NS) & 1);  // previous use landed
                __syncwarp();
                if (tid == 0) mbar_expect(bars + 8 * st, 3 * TILE);
                __syncthreads();
                for (int row = tid; row < 3 * CH; row += 128) {
                    const int t = row / CH, r = row % CH;
                    const __nv_bfloat16* g = src[t] + ((t0 + (long long)ch * CH + r) * H + h) * D;
                    bulk(smem_u32(sm + (st * 3 + t) * TILE + r * 256), g, 256, bars + 8 * st);
                }
            }
        }
        for (int ch = chunks > NS ? chunks - NS : 0; ch < chunks; ++ch) mbar_wait(bars + 8 * (ch % NS), (ch / NS) & 1);
    } else {
        for (int ch = 0; ch < chunks; ++ch) {
            const int st = ch % NS;
            for (int t = 0; t < 3; ++t) {
                const __nv_bfloat16* base = src[t] + ((t0 + (long long)ch * CH) * H + h) * D;
                uint4 x[8];
#pragma unroll
                for (int i = 0; i < 8; ++i) { const int idx = tid + 128 * i, r = idx >> 4, p = idx & 15; x[i] = *(const uint4*)(base + (long long)r * H * D + p * 8); }
#pragma unroll
                for (int i = 0; i < 8; ++i) *(uint4*)(sm + (st * 3 + t) * TILE + (tid + 128 * i) * 16) = x[i];
            }
        }
    }
    __syncthreads();
    acc += *(float*)(sm + tid * 4);
    if (acc == 12345.f) *sink = acc;
}
int main() {
    const int n = 1 << 20, S = 2, seg = n / S;
    size_t el = (size_t)n * H * D;
    __nv_bfloat16 *a, *b, *c; float* sink;
    CK(cudaMalloc(&a, el * 2)); CK(cudaMalloc(&b, el * 2)); CK(cudaMalloc(&c, el * 2)); CK(cudaMalloc(&sink, 4));
    CK(cudaMemset(a, 1, el * 2)); CK(cudaMemset(b, 1, el * 2)); CK(cudaMemset(c, 1, el * 2));
    const int smem = NS * 3 * TILE + 64;
    CK(cudaFuncSetAttribute(stream, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    const char* names[] = {"cp.async 16B", "cp.async.bulk 256B rows", "ld.global.v4 + st.shared"};
    for (int mode = 0; mode < 3; ++mode) {
        cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
        stream<<<H * S, 128, smem>>>(a, b, c, n, seg, mode, sink); CK(cudaDeviceSynchronize());
        cudaEventRecord(e0);
        for (int r = 0; r < 3; ++r) stream<<<H * S, 128, smem>>>(a, b, c, n, seg, mode, sink);
        cudaEventRecord(e1); CK(cudaEventSynchronize(e1));
        float ms; cudaEventElapsedTime(&ms, e0, e1); ms /= 3;
        printf("%-28s %.2f ms  %.2f TB/s (128 CTAs of 128 threads, 1 per SM)\n", names[mode], ms, 3.0 * el * 2 / (ms * 1e-3) / 1e12);
    }
    return 0;
}
