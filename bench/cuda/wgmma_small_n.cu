// Rate of the small wgmma products the normalized Hopper forward adds (hopnorm2, issue 12): m64n8k16 with
// A from shared memory, K-major (the consumers' q . zP) or MN-major (the loaders' column sums, K^T), against
// m64n64k16 and m64n72k16 (S = Q K^T, and S with 8 more columns), B K-major, 128-byte swizzle. W warpgroups
// per SM issue 8 products per commit group, then wait; cycles per product per warpgroup (clock64 of
// warpgroup 0, all 132 SMs busy). W = 2: the consumers' case (throughput); W = 1: one chain alone.
//   nvcc -O2 -gencode=arch=compute_90a,code=sm_90a bench/cuda/wgmma_small_n.cu -o wgmma_small_n && ./wgmma_small_n
#include <cuda_bf16.h>
#include <cstdio>
#include <cstdlib>
#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); exit(2);} } while (0)
__device__ __forceinline__ unsigned smem_u32(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ unsigned long long desc(unsigned addr, unsigned lbo, unsigned sbo) {
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | ((unsigned long long)(lbo >> 4) << 16) | ((unsigned long long)(sbo >> 4) << 32) | (1ull << 62);
}
template <int TA>
__device__ __forceinline__ void ss8(float* d, unsigned long long da, unsigned long long db) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%0,%1,%2,%3}, %4, %5, 1, 1, 1, %6, 0;\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "l"(da), "l"(db), "n"(TA) : "memory");
}
template <int TA>
__device__ __forceinline__ void ss64(float* d, unsigned long long da, unsigned long long db) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, %32, %33, 1, 1, 1, %34, 0;\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "n"(TA) : "memory");
}
template <int TA>
__device__ __forceinline__ void ss72(float* d, unsigned long long da, unsigned long long db) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n72k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35}, %36, %37, 1, 1, 1, %38, 0;\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35])
                 : "l"(da), "l"(db), "n"(TA) : "memory");
}
// MODE 0: n8, A K-major; 1: n8, A MN-major; 2: n64, A K-major; 3: n72, A K-major
template <int MODE>
__global__ void __launch_bounds__(256, 1) run(int iters, int wgs, unsigned long long* clk, float* sink) {
    extern __shared__ __align__(1024) unsigned char sm[];
    for (int i = threadIdx.x; i < 98304 / 4; i += blockDim.x) ((unsigned*)sm)[i] = 0x3c003c00u ^ (i * 2654435761u & 0x00ff00ffu);
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    const int wg = threadIdx.x >> 7;
    if (wg >= wgs) return;
    float d[36];
    for (int i = 0; i < 36; ++i) d[i] = 0.f;
    const unsigned base = smem_u32(sm) + wg * 49152;  // A: 16384 bytes, B: 18432 bytes (9 row groups a 64-column atom)
    unsigned long long t0 = clock64();
    for (int it = 0; it < iters; ++it) {
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const unsigned long long bd = desc(base + 16384 + (k >> 2) * 9216 + (k & 3) * 32, 16, 1024);
            const unsigned long long ak = desc(base + (k >> 2) * 8192 + (k & 3) * 32, 16, 1024);
            const unsigned long long am = desc(base + (k & 3) * 2048, 8192, 1024);
            if (MODE == 0) ss8<0>(d, ak, bd);
            else if (MODE == 1) ss8<1>(d, am, bd);
            else if (MODE == 2) ss64<0>(d, ak, bd);
            else ss72<0>(d, ak, bd);
        }
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        for (int i = 0; i < 36; ++i) asm volatile("" : "+f"(d[i]) :: "memory");
    }
    unsigned long long t1 = clock64();
    if (threadIdx.x == 0 && blockIdx.x == 0) *clk = t1 - t0;
    float s = 0; for (int i = 0; i < 36; ++i) s += d[i];
    if (s == 1234.5f) *sink = s;
}
int main() {
    unsigned long long* dclk; float* sink;
    CK(cudaMalloc(&dclk, 8)); CK(cudaMalloc(&sink, 4));
    const char* names[] = {"m64n8k16 SS, A K-major", "m64n8k16 SS, A MN-major", "m64n64k16 SS, A K-major", "m64n72k16 SS, A K-major"};
    for (int wgs = 2; wgs >= 1; --wgs)
        for (int mode = 0; mode < 4; ++mode) {
            auto k = mode == 0 ? run<0> : mode == 1 ? run<1> : mode == 2 ? run<2> : run<3>;
            CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, 98304));
            k<<<132, 256, 98304>>>(10, wgs, dclk, sink); CK(cudaGetLastError()); CK(cudaDeviceSynchronize());
            const int iters = 4000;
            k<<<132, 256, 98304>>>(iters, wgs, dclk, sink); CK(cudaGetLastError()); CK(cudaDeviceSynchronize());
            unsigned long long c; CK(cudaMemcpy(&c, dclk, 8, cudaMemcpyDeviceToHost));
            printf("RESULT wgmma %-26s %d warpgroup(s): %6.1f clk per product per warpgroup\n", names[mode], wgs, (double)c / (iters * 8.0));
        }
    return 0;
}
