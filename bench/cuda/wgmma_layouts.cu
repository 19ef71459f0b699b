// Shared-memory layouts and descriptors for wgmma on sm_90a: no swizzle (8x8 blocks row-major or
// column-major) and the 128-byte swizzle, K-major and MN-major, with the product checked against
// the CPU. (The timing column of this program is not reliable; wgmma_rate.cu measures rates.)
//   nvcc -O2 -gencode=arch=compute_90a,code=sm_90a bench/cuda/wgmma_layouts.cu -o wgmma_layouts && ./wgmma_layouts
// Seen on an H200 (2026-11-22): every layout right at 1e-7 except the MN-major swizzled B with
// the leading and stride offsets swapped (error 1.0): there the leading offset is the atom stride.
#include <cuda_bf16.h>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <vector>
#include <cstdint>
#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); exit(2);} } while (0)
__device__ __forceinline__ unsigned smem_u32(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ unsigned long long desc(unsigned addr, unsigned lbo, unsigned sbo, unsigned sw) {
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | ((unsigned long long)(lbo >> 4) << 16) |
           ((unsigned long long)(sbo >> 4) << 32) | ((unsigned long long)sw << 62);
}
#define R8(i) "+f"(d[i+0]),"+f"(d[i+1]),"+f"(d[i+2]),"+f"(d[i+3]),"+f"(d[i+4]),"+f"(d[i+5]),"+f"(d[i+6]),"+f"(d[i+7])
template <int TB>
__device__ __forceinline__ void ss64(float* d, unsigned long long da, unsigned long long db, int acc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31},"
        " %32, %33, p, 1, 1, 0, %35;\n}\n" : R8(0), R8(8), R8(16), R8(24) : "l"(da), "l"(db), "r"(acc), "n"(TB) : "memory");
}
template <int TB>
__device__ __forceinline__ void ss128(float* d, unsigned long long da, unsigned long long db, int acc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
        "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63},"
        " %64, %65, p, 1, 1, 0, %67;\n}\n" : R8(0), R8(8), R8(16), R8(24), R8(32), R8(40), R8(48), R8(56) : "l"(da), "l"(db), "r"(acc), "n"(TB) : "memory");
}
struct Lay { unsigned lbo, sbo, sw, kstepA, kstepAtom, atomStride; };  // per k-step: start += kstep (within atom), atoms of 4 k-steps at atomStride
// Generic: A 64 x 128 (K-major), B: N x 128 K-major (TB=0) or 128(K) x N MN-major (TB=1). 8 k-steps.
// start address of k-step ks: base + (ks % per) * kstep + (ks / per) * atomStride, per = atomStride ? 4 : 8
template <int N, int TB>
__global__ void run(const unsigned char* imgA, const unsigned char* imgB, Lay la, Lay lb, float* D, int iters, unsigned long long* clk) {
    extern __shared__ __align__(1024) unsigned char sm[];
    for (int i = threadIdx.x; i < 16384 / 16; i += blockDim.x) ((uint4*)sm)[i] = ((const uint4*)imgA)[i];
    for (int i = threadIdx.x; i < (N * 128 * 2) / 16; i += blockDim.x) ((uint4*)(sm + 16384))[i] = ((const uint4*)imgB)[i];
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    float d[N / 2];
    unsigned a0 = smem_u32(sm), b0 = smem_u32(sm + 16384);
    unsigned long long t0 = clock64();
    for (int it = 0; it < iters; ++it) {
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
        for (int ks = 0; ks < 8; ++ks) {
            unsigned aa = a0 + (la.atomStride ? (ks % 4) * la.kstepA + (ks / 4) * la.atomStride : ks * la.kstepA);
            unsigned bb = b0 + (lb.atomStride ? (ks % 4) * lb.kstepA + (ks / 4) * lb.atomStride : ks * lb.kstepA);
            if (N == 64) ss64<TB>(d, desc(aa, la.lbo, la.sbo, la.sw), desc(bb, lb.lbo, lb.sbo, lb.sw), ks > 0);
            else ss128<TB>(d, desc(aa, la.lbo, la.sbo, la.sw), desc(bb, lb.lbo, lb.sbo, lb.sw), ks > 0);
        }
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        for (int i = 0; i < N / 2; ++i) asm volatile("" : "+f"(d[i]) :: "memory");
    }
    unsigned long long t1 = clock64();
    if (threadIdx.x == 0 && blockIdx.x == 0) *clk = t1 - t0;
    if (blockIdx.x == 0) {
        int w = threadIdx.x >> 5, l = threadIdx.x & 31, g = l >> 2, tq = l & 3;
        for (int nt = 0; nt < N / 8; ++nt) for (int e = 0; e < 4; ++e) {
            int r = 16 * w + g + 8 * (e >> 1), c = 8 * nt + 2 * tq + (e & 1);
            D[r * N + c] = d[nt * 4 + e];
        }
    }
}
static float rnd(uint64_t& s) { s ^= s >> 12; s ^= s << 25; s ^= s >> 27; return (float)(((s * 0x2545F4914F6CDD1Dull) >> 40) * (1.0 / 16777216.0)) * 2.f - 1.f; }
// layouts: element (r, c) of an R x C tile (c contiguous in the logical row) -> byte offset
enum { IL_ROWMAJOR_BLOCKS, IL_COLMAJOR_BLOCKS, SW128 };
static size_t off(int kind, int r, int c, int R, int C) {
    if (kind == IL_ROWMAJOR_BLOCKS) return ((size_t)(r / 8) * (C / 8) + c / 8) * 128 + (r % 8) * 16 + (c % 8) * 2;
    if (kind == IL_COLMAJOR_BLOCKS) return ((size_t)(c / 8) * (R / 8) + r / 8) * 128 + (r % 8) * 16 + (c % 8) * 2;
    // 128B swizzle: atoms of 64 columns; atom a holds rows 0..R-1 at 128 B each
    int a = c / 64, j = (c % 64) / 8;
    return (size_t)a * R * 128 + (size_t)r * 128 + ((j ^ (r % 8)) * 16) + (c % 8) * 2;
}
int main() {
    uint64_t s = 99;
    const int K = 128;
    std::vector<float> A(64 * K), B(128 * K);  // A[m][k], Bt[n][k] (K-major B) ; for MN-major, B[k][n] = Bt[n][k]
    for (auto& x : A) x = __bfloat162float(__float2bfloat16(rnd(s)));
    for (auto& x : B) x = __bfloat162float(__float2bfloat16(rnd(s)));
    unsigned char *dA, *dB; float* dD; unsigned long long* dclk;
    CK(cudaMalloc(&dA, 16384)); CK(cudaMalloc(&dB, 32768)); CK(cudaMalloc(&dD, 64 * 128 * 4)); CK(cudaMalloc(&dclk, 8));
    CK(cudaFuncSetAttribute(run<64, 0>, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536));
    CK(cudaFuncSetAttribute(run<64, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536));
    CK(cudaFuncSetAttribute(run<128, 0>, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536));
    CK(cudaFuncSetAttribute(run<128, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536));
    struct Case { const char* name; int N, TB, kindA, kindB; Lay la, lb; };
    // A K-major 64 x 128: IL_ROWMAJOR: lbo 128 (K), sbo 2048 (M); kstep 256.
    //                     IL_COLMAJOR (blocks down M first): lbo 1024 (K), sbo 128 (M); kstep 2048.
    //                     SW128: sbo 1024, kstep 32 within atom, atom stride 64*128 = 8192.
    Lay aRow{128, 2048, 0, 256, 0, 0}, aCol{1024, 128, 0, 2048, 0, 0}, aSw{16, 1024, 1, 32, 4, 8192};
    Case cases[] = {
        {"SS n64 A row-blocks B(K-major) row-blocks (current)", 64, 0, IL_ROWMAJOR_BLOCKS, IL_ROWMAJOR_BLOCKS, aRow, aRow},
        {"SS n64 A col-blocks B col-blocks", 64, 0, IL_COLMAJOR_BLOCKS, IL_COLMAJOR_BLOCKS, aCol, aCol},
        {"SS n64 A sw128 B sw128 (K-major)", 64, 0, SW128, SW128, aSw, aSw},
        // MN-major B [K=128][N]: stored as an R=128 (k) x C=N tile, c = n contiguous.
        // row-blocks: (k/8, n/8) at ((k/8)*(N/8) + n/8)*128: K-dir 16*N, N-dir 128 (current V layout)
        {"SS n128 A row-blocks, B MN row-blocks (current)", 128, 1, IL_ROWMAJOR_BLOCKS, IL_ROWMAJOR_BLOCKS, aRow, Lay{2048, 128, 0, 4096, 0, 0}},
        // col-blocks: (k/8, n/8) at ((n/8)*16 + k/8)*128: K-dir 128, N-dir 2048
        {"SS n128 A col-blocks, B MN col-blocks", 128, 1, IL_COLMAJOR_BLOCKS, IL_COLMAJOR_BLOCKS, aCol, Lay{128, 2048, 0, 256, 0, 0}},
        // sw128 MN-major: atoms of 64 n-columns x all 128 k rows (128 B a row): N-atom stride 128*128 = 16384, 8-k group 1024
        {"SS n128 A sw128, B MN sw128 lbo=Natom sbo=1024", 128, 1, SW128, SW128, aSw, Lay{16384, 1024, 1, 2048, 0, 0}},
        {"SS n128 A sw128, B MN sw128 lbo=1024 sbo=Natom", 128, 1, SW128, SW128, aSw, Lay{1024, 16384, 1, 2048, 0, 0}},
        {"SS n64 A sw128, B MN sw128 lbo=Natom sbo=1024", 64, 1, SW128, SW128, aSw, Lay{16384, 1024, 1, 2048, 0, 0}},
    };
    for (auto& cs : cases) {
        const int N = cs.N;
        std::vector<unsigned char> ia(16384, 0), ib(32768, 0);
        for (int m = 0; m < 64; ++m) for (int k = 0; k < K; ++k) *(__nv_bfloat16*)&ia[off(cs.kindA, m, k, 64, K)] = __float2bfloat16(A[m * K + k]);
        for (int n = 0; n < N; ++n) for (int k = 0; k < K; ++k) {
            size_t o = cs.TB ? off(cs.kindB, k, n, K, N) : off(cs.kindB, n, k, N, K);
            *(__nv_bfloat16*)&ib[o] = __float2bfloat16(B[n * K + k]);
        }
        CK(cudaMemcpy(dA, ia.data(), 16384, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dB, ib.data(), 32768, cudaMemcpyHostToDevice));
        CK(cudaMemset(dD, 0, 64 * 128 * 4));
        const int iters = 2000;
        auto launch = [&](int blocks, int it) {
            if (N == 64 && cs.TB == 0) run<64, 0><<<blocks, 128, 65536>>>(dA, dB, cs.la, cs.lb, dD, it, dclk);
            else if (N == 64) run<64, 1><<<blocks, 128, 65536>>>(dA, dB, cs.la, cs.lb, dD, it, dclk);
            else if (cs.TB == 0) run<128, 0><<<blocks, 128, 65536>>>(dA, dB, cs.la, cs.lb, dD, it, dclk);
            else run<128, 1><<<blocks, 128, 65536>>>(dA, dB, cs.la, cs.lb, dD, it, dclk);
        };
        launch(1, 1);
        cudaError_t e = cudaDeviceSynchronize();
        if (e != cudaSuccess) { printf("%-52s  launch error %s\n", cs.name, cudaGetErrorString(e)); exit(1); }
        std::vector<float> D(64 * N);
        CK(cudaMemcpy(D.data(), dD, 64 * N * 4, cudaMemcpyDeviceToHost));
        double num = 0, den = 0;
        for (int m = 0; m < 64; ++m) for (int n = 0; n < N; ++n) {
            double r = 0; for (int k = 0; k < K; ++k) r += (double)A[m * K + k] * B[n * K + k];
            num += (D[m * N + n] - r) * (D[m * N + n] - r); den += r * r;
        }
        // throughput: one CTA per SM x 2 (two warpgroups' worth of CTAs per SM)
        launch(264, iters); CK(cudaDeviceSynchronize());
        unsigned long long c; CK(cudaMemcpy(&c, dclk, 8, cudaMemcpyDeviceToHost));
        printf("%-52s err %.2e   %.1f clk per wgmma (8 per group, 2 CTAs/SM)\n", cs.name, sqrt(num / den), (double)c / (iters * 8));
    }
    return 0;
}
