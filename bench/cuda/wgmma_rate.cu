// Rate of m64n64k16 wgmma on sm_90a with A from registers or from shared memory (K-major or
// transposed), B transposed with the 128-byte swizzle: two warpgroups per SM, eight products per
// commit group.
//   nvcc -O2 -gencode=arch=compute_90a,code=sm_90a bench/cuda/wgmma_rate.cu -o wgmma_rate && ./wgmma_rate
// Seen on an H200 (2026-11-22): 64.0 cycles per product per warpgroup in all three cases, i.e.
// 4096 FLOP per cycle per SM.
#include <cuda_bf16.h>
#include <cstdio>
#include <cstdlib>
#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); exit(2);} } while (0)
__device__ __forceinline__ unsigned smem_u32(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ unsigned long long desc(unsigned addr, unsigned lbo, unsigned sbo) {
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | ((unsigned long long)(lbo >> 4) << 16) | ((unsigned long long)(sbo >> 4) << 32) | (1ull << 62);
}
#define R8(i) "+f"(d[i+0]),"+f"(d[i+1]),"+f"(d[i+2]),"+f"(d[i+3]),"+f"(d[i+4]),"+f"(d[i+5]),"+f"(d[i+6]),"+f"(d[i+7])
__device__ __forceinline__ void rs64(float* d, const unsigned* a, unsigned long long db) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31},"
        " {%32,%33,%34,%35}, %36, 1, 1, 1, 1;\n" : R8(0), R8(8), R8(16), R8(24) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db) : "memory");
}
template <int TA>
__device__ __forceinline__ void ss64(float* d, unsigned long long da, unsigned long long db) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31},"
        " %32, %33, 1, 1, 1, %34, 1;\n" : R8(0), R8(8), R8(16), R8(24) : "l"(da), "l"(db), "n"(TA) : "memory");
}
template <int MODE>
__global__ void __launch_bounds__(256, 1) run(int iters, unsigned long long* clk, float* sink) {
    extern __shared__ __align__(1024) unsigned char sm[];
    for (int i = threadIdx.x; i < 65536 / 4; i += 256) ((unsigned*)sm)[i] = 0x3c003c00u ^ (i * 2654435761u & 0x00ff00ffu);
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    const int wg = threadIdx.x >> 7;
    float d[32];
    for (int i = 0; i < 32; ++i) d[i] = 0.f;
    unsigned a[4] = {0x3c003c00u + threadIdx.x, 0x3c003c01u, 0x3c003c02u, 0x3c003c03u};
    const unsigned base = smem_u32(sm) + wg * 16384;
    unsigned long long t0 = clock64();
    for (int it = 0; it < iters; ++it) {
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const unsigned long long bd = desc(base + 32768 + (k & 3) * 2048, 8192, 1024);
            if (MODE == 0) rs64(d, a, bd);
            else if (MODE == 1) ss64<1>(d, desc(base + (k & 3) * 2048, 8192, 1024), bd);  // A MN-major (trans)
            else ss64<0>(d, desc(base + (k & 3) * 32, 16, 1024), bd);                     // A K-major
        }
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        for (int i = 0; i < 32; ++i) asm volatile("" : "+f"(d[i]) :: "memory");
    }
    unsigned long long t1 = clock64();
    if (threadIdx.x == 0 && blockIdx.x == 0) *clk = t1 - t0;
    float s = 0; for (int i = 0; i < 32; ++i) s += d[i];
    if (s == 1234.5f) *sink = s;
}
int main() {
    unsigned long long* dclk; float* sink;
    CK(cudaMalloc(&dclk, 8)); CK(cudaMalloc(&sink, 4));
    const char* names[] = {"RS (A regs), B MN-major", "SS A MN-major (trans), B MN-major", "SS A K-major, B MN-major"};
    for (int mode = 0; mode < 3; ++mode) {
        auto k = mode == 0 ? run<0> : mode == 1 ? run<1> : run<2>;
        CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536));
        k<<<132, 256, 65536>>>(10, dclk, sink); CK(cudaDeviceSynchronize());
        const int iters = 4000;
        k<<<132, 256, 65536>>>(iters, dclk, sink); CK(cudaDeviceSynchronize());
        unsigned long long c; CK(cudaMemcpy(&c, dclk, 8, cudaMemcpyDeviceToHost));
        printf("%-36s %.1f clk per wgmma per warpgroup (2 warpgroups issuing on the SM)\n", names[mode], (double)c / (iters * 8.0));
    }
    return 0;
}
