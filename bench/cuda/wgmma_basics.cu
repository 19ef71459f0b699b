// wgmma building blocks on sm_90a, each checked against a CPU product: SS m64n64k16 with both
// operands K-major (no swizzle), RS m64n128k16 with a transposed (MN-major) B, and how the
// tensor cores round the accumulate (D = C + A B against round-to-nearest and round-toward-zero).
//   nvcc -O2 -gencode=arch=compute_90a,code=sm_90a bench/cuda/wgmma_basics.cu -o wgmma_basics && ./wgmma_basics
// Seen on an H200 (2026-11-22): both products at 1e-7; the accumulate matched round-toward-zero in
// 6768 of 8192 probes and round-to-nearest in 5624 (neither in 0).
#include <cuda_bf16.h>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <vector>
#include <cstdint>
#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); exit(2);} } while (0)

__device__ __forceinline__ unsigned smem_u32(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ unsigned long long desc(unsigned addr, unsigned lbo, unsigned sbo) {
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | ((unsigned long long)(lbo >> 4) << 16) |
           ((unsigned long long)(sbo >> 4) << 32);
}
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }

#define R8(i) "+f"(d[i+0]),"+f"(d[i+1]),"+f"(d[i+2]),"+f"(d[i+3]),"+f"(d[i+4]),"+f"(d[i+5]),"+f"(d[i+6]),"+f"(d[i+7])
// m64n64k16, both from smem
template <int TB>
__device__ __forceinline__ void wg_ss_n64(float* d, unsigned long long da, unsigned long long db, int acc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31},"
        " %32, %33, p, 1, 1, 0, %35;\n}\n"
        : R8(0), R8(8), R8(16), R8(24) : "l"(da), "l"(db), "r"(acc), "n"(TB));
}
// m64n128k16, A regs
template <int TB>
__device__ __forceinline__ void wg_rs_n128(float* d, const unsigned* a, unsigned long long db, int acc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %68, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
        "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63},"
        " {%64,%65,%66,%67}, %69, p, 1, 1, %70;\n}\n"
        : R8(0), R8(8), R8(16), R8(24), R8(32), R8(40), R8(48), R8(56)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(acc), "l"(db), "n"(TB));
}

// Test 1: D[64x64] = A[64x128] * B^T where B is [64 rows(n) x 128 (k)], both K-major interleaved.
// Interleaved: element (r, c) of an R x C tile at ((r/8)*(C/8) + c/8)*128 + (r%8)*16 + (c%8)*2.
__device__ __forceinline__ int il(int r, int c, int C) { return ((r >> 3) * (C >> 3) + (c >> 3)) * 128 + (r & 7) * 16 + (c & 7) * 2; }

__global__ void t1(const __nv_bfloat16* A, const __nv_bfloat16* B, float* D) {
    __shared__ __align__(128) unsigned char sm[2 * 64 * 128 * 2];
    for (int e = threadIdx.x; e < 64 * 128; e += 128) {
        int r = e / 128, c = e % 128;
        *(__nv_bfloat16*)(sm + il(r, c, 128)) = A[e];
        *(__nv_bfloat16*)(sm + 16384 + il(r, c, 128)) = B[e];
    }
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    float d[32];
    for (int i = 0; i < 32; ++i) d[i] = 0.f;
    wg_fence();
    unsigned a0 = smem_u32(sm), b0 = smem_u32(sm + 16384);
    for (int ks = 0; ks < 8; ++ks)
        wg_ss_n64<0>(d, desc(a0 + 256 * ks, 128, 2048), desc(b0 + 256 * ks, 128, 2048), 1);
    wg_commit(); wg_wait0();
    int w = threadIdx.x >> 5, l = threadIdx.x & 31, g = l >> 2, tq = l & 3;
    for (int nt = 0; nt < 8; ++nt) for (int e = 0; e < 4; ++e) {
        int r = 16 * w + g + 8 * (e >> 1), c = 8 * nt + 2 * tq + (e & 1);
        D[r * 64 + c] = d[nt * 4 + e];
    }
}
// Test 2: D[64x128] = P[64x64] (regs) * V[64(k) x 128(n)], V stored MN-major interleaved (tokens rows, n contiguous).
template <int TB>
__global__ void t2(const __nv_bfloat16* P, const __nv_bfloat16* V, float* D, unsigned lbo, unsigned sbo, unsigned kstep) {
    __shared__ __align__(128) unsigned char sm[64 * 128 * 2];
    for (int e = threadIdx.x; e < 64 * 128; e += 128) {
        int r = e / 128, c = e % 128;
        *(__nv_bfloat16*)(sm + il(r, c, 128)) = V[e];
    }
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    int w = threadIdx.x >> 5, l = threadIdx.x & 31, g = l >> 2, tq = l & 3;
    float d[64];
    for (int i = 0; i < 64; ++i) d[i] = 0.f;
    unsigned a[4][4];
    for (int kk = 0; kk < 4; ++kk) {
        int r0 = 16 * w + g, c0 = 16 * kk + 2 * tq;
        auto pk = [&](int r, int c) { __nv_bfloat162 v; v.x = P[r * 64 + c]; v.y = P[r * 64 + c + 1]; return *(unsigned*)&v; };
        a[kk][0] = pk(r0, c0); a[kk][1] = pk(r0 + 8, c0); a[kk][2] = pk(r0, c0 + 8); a[kk][3] = pk(r0 + 8, c0 + 8);
    }
    wg_fence();
    unsigned b0 = smem_u32(sm);
    for (int kk = 0; kk < 4; ++kk) wg_rs_n128<TB>(d, a[kk], desc(b0 + kstep * kk, lbo, sbo), 1);
    wg_commit(); wg_wait0();
    for (int nt = 0; nt < 16; ++nt) for (int e = 0; e < 4; ++e) {
        int r = 16 * w + g + 8 * (e >> 1), c = 8 * nt + 2 * tq + (e & 1);
        D[r * 128 + c] = d[nt * 4 + e];
    }
}
// Test 3: rounding of the accumulate: D = C + A*B, m64n128k16 with A regs: row r of A has a single nonzero x_r at k=0,
// B row 0 = 1 for all columns -> D[r][c] = C[r][c] + x_r.
__global__ void t3(const float* C, const __nv_bfloat16* X, const __nv_bfloat16* V, float* D) {
    __shared__ __align__(128) unsigned char sm[16 * 128 * 2];
    for (int e = threadIdx.x; e < 16 * 128; e += 128) {
        int k = e / 128, n = e % 128;  // B[k][n] given row-major; stored K-major [n][k]
        *(__nv_bfloat16*)(sm + il(n, k, 16)) = V[e];
    }
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    int w = threadIdx.x >> 5, l = threadIdx.x & 31, g = l >> 2, tq = l & 3;
    float d[64];
    for (int nt = 0; nt < 16; ++nt) for (int e = 0; e < 4; ++e) {
        int r = 16 * w + g + 8 * (e >> 1), c = 8 * nt + 2 * tq + (e & 1);
        d[nt * 4 + e] = C[r * 128 + c];
    }
    unsigned a[4];
    auto pk = [&](int r, int c) { __nv_bfloat162 v; v.x = c == 0 ? X[r] : __float2bfloat16(0.f); v.y = __float2bfloat16(0.f); return *(unsigned*)&v; };
    int r0 = 16 * w + g, c0 = 2 * tq;
    a[0] = pk(r0, c0); a[1] = pk(r0 + 8, c0); a[2] = pk(r0, c0 + 8); a[3] = pk(r0 + 8, c0 + 8);
    wg_fence();
    wg_rs_n128<0>(d, a, desc(smem_u32(sm), 128, 256), 1);
    wg_commit(); wg_wait0();
    for (int nt = 0; nt < 16; ++nt) for (int e = 0; e < 4; ++e) {
        int r = 16 * w + g + 8 * (e >> 1), c = 8 * nt + 2 * tq + (e & 1);
        D[r * 128 + c] = d[nt * 4 + e];
    }
}

static float rnd(uint64_t& s) { s ^= s >> 12; s ^= s << 25; s ^= s >> 27; return (float)(((s * 0x2545F4914F6CDD1Dull) >> 40) * (1.0 / 16777216.0)) * 2.f - 1.f; }

int main() {
    uint64_t s = 12345;
    std::vector<__nv_bfloat16> A(64 * 128), B(64 * 128), P(64 * 64), V(64 * 128);
    for (auto& x : A) x = __float2bfloat16(rnd(s));
    for (auto& x : B) x = __float2bfloat16(rnd(s));
    for (auto& x : P) x = __float2bfloat16(rnd(s));
    for (auto& x : V) x = __float2bfloat16(rnd(s));
    __nv_bfloat16 *dA, *dB, *dP, *dV; float* dD;
    CK(cudaMalloc(&dA, 64 * 128 * 2)); CK(cudaMalloc(&dB, 64 * 128 * 2)); CK(cudaMalloc(&dP, 64 * 64 * 2)); CK(cudaMalloc(&dV, 64 * 128 * 2));
    CK(cudaMalloc(&dD, 64 * 128 * 4));
    CK(cudaMemcpy(dA, A.data(), A.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dB, B.data(), B.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dP, P.data(), P.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dV, V.data(), V.size() * 2, cudaMemcpyHostToDevice));
    std::vector<float> D(64 * 128);
    // test 1
    t1<<<1, 128>>>(dA, dB, dD); CK(cudaGetLastError()); CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(D.data(), dD, 64 * 64 * 4, cudaMemcpyDeviceToHost));
    double num = 0, den = 0;
    for (int i = 0; i < 64; ++i) for (int j = 0; j < 64; ++j) {
        double r = 0; for (int k = 0; k < 128; ++k) r += (double)__bfloat162float(A[i * 128 + k]) * __bfloat162float(B[j * 128 + k]);
        num += (D[i * 64 + j] - r) * (D[i * 64 + j] - r); den += r * r;
    }
    printf("t1 SS K-major lbo=128 sbo=2048: rel err %.3e\n", sqrt(num / den));
    // test 2 variants
    std::vector<double> ref(64 * 128);
    for (int i = 0; i < 64; ++i) for (int c = 0; c < 128; ++c) {
        double r = 0; for (int k = 0; k < 64; ++k) r += (double)__bfloat162float(P[i * 64 + k]) * __bfloat162float(V[k * 128 + c]);
        ref[i * 128 + c] = r;
    }
    struct Var { int tb; unsigned lbo, sbo; const char* name; } vars[] = {
        {1, 2048, 128, "trans=1 lbo=2048(k) sbo=128(n)"}};
    for (auto& vv : vars) {
        CK(cudaMemset(dD, 0, 64 * 128 * 4));
        if (vv.tb) t2<1><<<1, 128>>>(dP, dV, dD, vv.lbo, vv.sbo, 4096); else t2<0><<<1, 128>>>(dP, dV, dD, vv.lbo, vv.sbo, 4096);
        CK(cudaGetLastError()); CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(D.data(), dD, 64 * 128 * 4, cudaMemcpyDeviceToHost));
        num = den = 0;
        for (int i = 0; i < 64 * 128; ++i) { num += (D[i] - ref[i]) * (D[i] - ref[i]); den += ref[i] * ref[i]; }
        printf("t2 RS MN-major %s: rel err %.3e\n", vv.name, sqrt(num / den));
    }
    // test 3: rounding
    std::vector<float> C(64 * 128);
    std::vector<__nv_bfloat16> X(64), ones(16 * 128);
    for (auto& x : ones) x = __float2bfloat16(0.f);
    for (int c = 0; c < 128; ++c) ones[c] = __float2bfloat16(1.f);
    for (int r = 0; r < 64; ++r) {
        // x = (r % 8 - 3.5) * 0.25 ulp(1) in various signs; C = 1 + random multiple of ulp, +-.
        float frac = ((r % 8) - 3.5f) * 0.25f;  // -0.875 .. 0.875 ulps
        X[r] = __float2bfloat16(frac * ldexpf(1.f, -23));
        for (int c = 0; c < 128; ++c) {
            float base = ldexpf(1.f + (float)(c % 17) * ldexpf(1.f, -23), (c % 5) - 2);
            C[r * 128 + c] = (r & 8) ? -base : base;
        }
    }
    float* dC; __nv_bfloat16 *dX, *dO1;
    CK(cudaMalloc(&dC, 64 * 128 * 4)); CK(cudaMalloc(&dX, 64 * 2)); CK(cudaMalloc(&dO1, 16 * 128 * 2));
    CK(cudaMemcpy(dC, C.data(), C.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dX, X.data(), 64 * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dO1, ones.data(), ones.size() * 2, cudaMemcpyHostToDevice));
    t3<<<1, 128>>>(dC, dX, dO1, dD); CK(cudaGetLastError()); CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(D.data(), dD, 64 * 128 * 4, cudaMemcpyDeviceToHost));
    int rn = 0, rz = 0, other = 0, total = 0;
    for (int r = 0; r < 64; ++r) for (int c = 0; c < 128; ++c) {
        float x = __bfloat162float(X[r]);
        float cc = C[r * 128 + c];
        float want = cc + x;  // RN
        double exact = (double)cc + x;
        float tz = (float)exact;
        // RZ: toward zero
        if (fabs((double)tz) > fabs(exact)) tz = nextafterf(tz, 0.f);
        float got = D[r * 128 + c];
        ++total;
        if (got == want) ++rn;
        if (got == tz) ++rz;
        if (got != want && got != tz) ++other;
    }
    printf("t3 accumulate rounding: %d cases, matches RN %d, matches RZ %d, neither %d\n", total, rn, rz, other);
    return 0;
}
