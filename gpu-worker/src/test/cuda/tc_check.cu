// Standalone correctness and timing check for the tensor-core lightning attention kernels.
//
// Build (from the repository root):
//   nvcc -O2 -arch=sm_90 -I gpu-worker/src/main/cuda gpu-worker/src/test/cuda/tc_check.cu -o tc_check
// or, with the Hopper (wgmma) kernels of hopper.cuh checked too:
//   nvcc -O2 -gencode=arch=compute_90a,code=sm_90a -DLIGHTNING_WG -I gpu-worker/src/main/cuda \
//        gpu-worker/src/test/cuda/tc_check.cu -o tc_check
// Run:
//   ./tc_check           every case against a float64 CPU recurrence; exit code 1 on any failure
//   ./tc_check --max-n N only the cases with n <= N
//   ./tc_check --bench [n [H [d [S,...]]]]   bf16 forward and states kernel timing (defaults: n = 1048576,
//                        H = 64, dk = dv = 128, S = 1,2)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "lightning_args.cuh"
#include "tensor_core.cuh"
#ifdef LIGHTNING_WG
#include "hopper.cuh"
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cuda_check.cuh"

// ------------------------------ small helpers ---------------------------------------------
struct Rng {  // xorshift64*, fixed seed: reproducible inputs
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
    uint64_t next() {
        s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
        return s * 0x2545F4914F6CDD1Dull;
    }
    float uniform() { return (float)((next() >> 40) * (1.0 / 16777216.0)) * 2.f - 1.f; }  // [-1, 1)
};

template <typename T> struct Elem;
template <> struct Elem<__nv_bfloat16> {
    static __nv_bfloat16 from(float x) { return __float2bfloat16_rn(x); }
    static float to(__nv_bfloat16 x) { return __bfloat162float(x); }
    static const char* name() { return "bf16"; }
};
template <> struct Elem<__half> {
    static __half from(float x) { return __float2half_rn(x); }
    static float to(__half x) { return __half2float(x); }
    static const char* name() { return "f16"; }
};

// Kernel families: 0 = mma.sync (tensor_core.cuh; dk <= 128 the narrow kernels, larger dk the wide
// ones), 1 = wgmma (hopper.cuh, dk <= 128, built with -DLIGHTNING_WG), 2 = the paired wgmma kernels
// (two heads a CTA, grid.x = H / 2: dk = dv = LIGHTNING_WG_PAIR_D and H even only).
static int g_family = 0;
#ifdef LIGHTNING_WG
#define LIGHTNING_WG_MAX_DK_OR_0 LIGHTNING_WG_MAX_DK
#else
#define LIGHTNING_WG_MAX_DK_OR_0 0
#endif
static int family_columns() { return g_family >= 1 ? 128 : LIGHTNING_TC_COLUMNS; }
static int family_grid_x(int H) { return g_family == 2 ? H / 2 : H; }
// TC_SMEM_LIMIT=BYTES: the mma.sync kernels launched with at most that much dynamic shared memory, as the host does on
// a GPU whose blocks get less (an A100: 166912; compute capability 8.6, 8.9, 12.0: 101376), so they run fewer stages;
// cases that need more than the limit's two stages are skipped, but where the "_q1" forward fits (dk 81 to 128 under
// 101376), which then runs, with the narrow states kernel, as the host runs them (Kernels.choose).
static int smem_limit() {
    const char* e = std::getenv("TC_SMEM_LIMIT");
    return e ? std::atoi(e) : 1 << 30;
}
// The "_q1" forward in place of the narrow one: the narrow one's two stages exceed the limit and the _q1 one's fit.
static bool use_q1(int dk) {
    return g_family == 0 && dk <= LIGHTNING_TC_NARROW_MAX_DK && lightning_tc::tc_min_smem_bytes(dk) > smem_limit() &&
           lightning_tc::tc_q1_min_smem_bytes(dk) <= smem_limit();
}
static int family_smem(int dk, bool fwd) {
#ifdef LIGHTNING_WG
    if (g_family >= 1) return lightning_wg_smem_bytes(dk, fwd ? 1 : 0);
#endif
    (void)fwd;
    return std::min(lightning_tc_smem_bytes(dk), smem_limit());
}
// The one kernel argument (lightning_args.cuh) of a plain launch: Hq = Hk = Hv = H, identity
// feature map, no normalization, no checkpoints; forward kernels read q, o and incoming, states
// kernels leave them null.
static LightningArgs plain_args(const void* q, const void* k, const void* v, void* o, int n, int H, int dk, int dv,
                                int seg, const float* sl, float scale, const float* inc, float* outS) {
    LightningArgs a;
    std::memset(&a, 0, sizeof(a));
    a.q = q;
    a.k = k;
    a.v = v;
    a.o = o;
    a.slopes = sl;
    a.incoming = inc;
    a.states = outS;
    a.n = n;
    a.heads = a.headsQ = a.headsK = a.headsV = H;
    a.dk = dk;
    a.dv = dv;
    a.segTokens = seg;
    a.scale = scale;
    return a;
}
// dk <= 64: the narrow kernels with one state m-tile a state warp (_n64); dk <= 128: the narrow kernels
// (load warps); larger dk: the wide ones.
static void launch_forward(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                           __nv_bfloat16* o, int n, int H, int dk, int dv, int seg, const float* sl,
                           float scale, const float* inc, float* outS, dim3 grid, int smem) {
    const LightningArgs a = plain_args(q, k, v, o, n, H, dk, dv, seg, sl, scale, inc, outS);
#ifdef LIGHTNING_WG
    if (g_family == 1) {
        lightning_forward_wg_bf16<<<grid, LIGHTNING_WG_THREADS, lightning_wg_smem_bytes(dk, 1)>>>(a);
        return;
    }
    if (g_family == 2) {
        lightning_forward_wg_pair_bf16<<<grid, LIGHTNING_WG_THREADS, lightning_wg_smem_bytes(dk, 1)>>>(a);
        return;
    }
#endif
    if (use_q1(dk))
        lightning_forward_tc_bf16_q1<<<grid, LIGHTNING_TC_THREADS_NARROW, lightning_tc::tc_q1_min_smem_bytes(dk)>>>(a);
    else if (dk <= LIGHTNING_TC_SMALL_MAX_DK)
        lightning_forward_tc_bf16_n64<<<grid, LIGHTNING_TC_THREADS_NARROW, smem>>>(a);
    else if (dk <= 128)
        lightning_forward_tc_bf16<<<grid, LIGHTNING_TC_THREADS_NARROW, smem>>>(a);
    else
        lightning_forward_tc_bf16_wide<<<grid, LIGHTNING_TC_THREADS_WIDE, smem>>>(a);
}
static void launch_forward(const __half* q, const __half* k, const __half* v, __half* o, int n, int H,
                           int dk, int dv, int seg, const float* sl, float scale, const float* inc,
                           float* outS, dim3 grid, int smem) {
    const LightningArgs a = plain_args(q, k, v, o, n, H, dk, dv, seg, sl, scale, inc, outS);
#ifdef LIGHTNING_WG
    if (g_family == 1) {
        lightning_forward_wg_f16<<<grid, LIGHTNING_WG_THREADS, lightning_wg_smem_bytes(dk, 1)>>>(a);
        return;
    }
    if (g_family == 2) {
        lightning_forward_wg_pair_f16<<<grid, LIGHTNING_WG_THREADS, lightning_wg_smem_bytes(dk, 1)>>>(a);
        return;
    }
#endif
    if (use_q1(dk))
        lightning_forward_tc_f16_q1<<<grid, LIGHTNING_TC_THREADS_NARROW, lightning_tc::tc_q1_min_smem_bytes(dk)>>>(a);
    else if (dk <= LIGHTNING_TC_SMALL_MAX_DK)
        lightning_forward_tc_f16_n64<<<grid, LIGHTNING_TC_THREADS_NARROW, smem>>>(a);
    else if (dk <= 128)
        lightning_forward_tc_f16<<<grid, LIGHTNING_TC_THREADS_NARROW, smem>>>(a);
    else
        lightning_forward_tc_f16_wide<<<grid, LIGHTNING_TC_THREADS_WIDE, smem>>>(a);
}
static void launch_states(const __nv_bfloat16* k, const __nv_bfloat16* v, int n, int H, int dk, int dv,
                          int seg, const float* sl, float* outS, dim3 grid, int smem) {
    const LightningArgs a = plain_args(nullptr, k, v, nullptr, n, H, dk, dv, seg, sl, 1.f, nullptr, outS);
#ifdef LIGHTNING_WG
    if (g_family == 1) {
        lightning_states_wg_bf16<<<grid, LIGHTNING_WG_THREADS, lightning_wg_smem_bytes(dk, 0)>>>(a);
        return;
    }
    if (g_family == 2) {
        lightning_states_wg_pair_bf16<<<grid, LIGHTNING_WG_THREADS, lightning_wg_smem_bytes(dk, 0)>>>(a);
        return;
    }
#endif
    if (dk <= LIGHTNING_TC_SMALL_MAX_DK)
        lightning_states_tc_bf16_n64<<<grid, LIGHTNING_TC_THREADS_NARROW, smem>>>(a);
    else if (dk <= 128)
        lightning_states_tc_bf16<<<grid, LIGHTNING_TC_THREADS_NARROW, smem>>>(a);
    else
        lightning_states_tc_bf16_wide<<<grid, LIGHTNING_TC_THREADS_WIDE, smem>>>(a);
}
static void launch_states(const __half* k, const __half* v, int n, int H, int dk, int dv, int seg,
                          const float* sl, float* outS, dim3 grid, int smem) {
    const LightningArgs a = plain_args(nullptr, k, v, nullptr, n, H, dk, dv, seg, sl, 1.f, nullptr, outS);
#ifdef LIGHTNING_WG
    if (g_family == 1) {
        lightning_states_wg_f16<<<grid, LIGHTNING_WG_THREADS, lightning_wg_smem_bytes(dk, 0)>>>(a);
        return;
    }
    if (g_family == 2) {
        lightning_states_wg_pair_f16<<<grid, LIGHTNING_WG_THREADS, lightning_wg_smem_bytes(dk, 0)>>>(a);
        return;
    }
#endif
    if (dk <= LIGHTNING_TC_SMALL_MAX_DK)
        lightning_states_tc_f16_n64<<<grid, LIGHTNING_TC_THREADS_NARROW, smem>>>(a);
    else if (dk <= 128)
        lightning_states_tc_f16<<<grid, LIGHTNING_TC_THREADS_NARROW, smem>>>(a);
    else
        lightning_states_tc_f16_wide<<<grid, LIGHTNING_TC_THREADS_WIDE, smem>>>(a);
}

static void set_smem_limits() {
    int maxBytes = 0;  // the largest size any dk in 1..256 needs
    for (int dk = 1; dk <= 256; ++dk) maxBytes = std::max(maxBytes, lightning_tc_smem_bytes(dk));
    const void* kernels[] = {(const void*)lightning_forward_tc_bf16, (const void*)lightning_forward_tc_f16,
                             (const void*)lightning_states_tc_bf16, (const void*)lightning_states_tc_f16,
                             (const void*)lightning_forward_tc_bf16_wide, (const void*)lightning_forward_tc_f16_wide,
                             (const void*)lightning_states_tc_bf16_wide, (const void*)lightning_states_tc_f16_wide,
                             (const void*)lightning_forward_tc_bf16_n64, (const void*)lightning_forward_tc_f16_n64,
                             (const void*)lightning_states_tc_bf16_n64, (const void*)lightning_states_tc_f16_n64,
                             (const void*)lightning_forward_tc_bf16_q1, (const void*)lightning_forward_tc_f16_q1};
    for (const void* f : kernels) CK(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, maxBytes));
#ifdef LIGHTNING_WG
    const void* wg[] = {(const void*)lightning_forward_wg_bf16, (const void*)lightning_forward_wg_f16,
                        (const void*)lightning_states_wg_bf16, (const void*)lightning_states_wg_f16,
                        (const void*)lightning_forward_wg_pair_bf16, (const void*)lightning_forward_wg_pair_f16,
                        (const void*)lightning_states_wg_pair_bf16, (const void*)lightning_states_wg_pair_f16};
    for (const void* f : wg)
        CK(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                std::max(lightning_wg_smem_bytes(128, 1), lightning_wg_smem_bytes(128, 0))));
#endif
}

// Relative Frobenius error; counts non-finite results (unwritten NaN poison or overflow).
static double rel_err(const std::vector<double>& got, const std::vector<double>& ref, long long* nonFinite) {
    double num = 0, den = 0;
    long long bad = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        if (!std::isfinite(got[i])) { ++bad; continue; }
        const double d = got[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    *nonFinite = bad;
    if (bad) return NAN;
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// ------------------------------ one test case ---------------------------------------------
template <typename T>
static bool run_case(int caseId, int n, int H, int dk, int dv, int segReq, int* skipped) {
    // Segment length: a multiple of 64 giving at most segReq non-empty segments.
    const int chunks = (n + 63) / 64;
    const int segTokens = 64 * ((chunks + segReq - 1) / segReq);
    const int S = (n + segTokens - 1) / segTokens;
    if (segReq > 1 && S == 1) { *skipped = 1; return true; }  // n too short for several segments
    *skipped = 0;

    Rng rng(1234567 + caseId);
    const size_t nq = (size_t)n * H * dk, nv = (size_t)n * H * dv, ns = (size_t)S * H * dk * dv;
    std::vector<T> hq(nq), hk(nq), hv(nv);
    std::vector<double> q(nq), k(nq), v(nv);  // the T-rounded inputs, for the reference
    for (size_t i = 0; i < nq; ++i) { hq[i] = Elem<T>::from(rng.uniform()); q[i] = Elem<T>::to(hq[i]); }
    for (size_t i = 0; i < nq; ++i) { hk[i] = Elem<T>::from(rng.uniform()); k[i] = Elem<T>::to(hk[i]); }
    for (size_t i = 0; i < nv; ++i) { hv[i] = Elem<T>::from(rng.uniform()); v[i] = Elem<T>::to(hv[i]); }

    // Slopes: the extremes 1e-6, 0.5 and 8 plus a typical value, cycled over heads and cases.
    const float slopeSet[4] = {1e-6f, 0.5f, 8.f, 0.03f};
    std::vector<float> slopes(H);
    for (int h = 0; h < H; ++h) slopes[h] = slopeSet[(h + caseId) % 4];
    const float scale = 1.f / std::sqrt((float)dk);

    // Random initial state before token 0.
    std::vector<float> init((size_t)H * dk * dv);
    for (auto& x : init) x = rng.uniform();

    // ---- float64 reference ----
    std::vector<double> oRef(nv, 0.0), outRef(ns), localRef(ns);
    std::vector<float> incoming(ns);  // true state before each segment, rounded to float
    {
        std::vector<double> st((size_t)dk * dv), loc((size_t)dk * dv);
        for (int h = 0; h < H; ++h) {
            const double lam = std::exp(-(double)slopes[h]);
            for (size_t i = 0; i < st.size(); ++i) st[i] = init[(size_t)h * dk * dv + i];
            for (int s = 0; s < S; ++s) {
                const size_t sb = ((size_t)s * H + h) * dk * dv;
                for (size_t i = 0; i < st.size(); ++i) incoming[sb + i] = (float)st[i];
                std::fill(loc.begin(), loc.end(), 0.0);
                const int t1 = std::min(n, (s + 1) * segTokens);
                for (int t = s * segTokens; t < t1; ++t) {
                    const double* kt = &k[((size_t)t * H + h) * dk];
                    const double* vt = &v[((size_t)t * H + h) * dv];
                    const double* qt = &q[((size_t)t * H + h) * dk];
                    double* ot = &oRef[((size_t)t * H + h) * dv];
                    for (int a = 0; a < dk; ++a) {
                        double* sr = &st[(size_t)a * dv];
                        double* lr = &loc[(size_t)a * dv];
                        for (int b = 0; b < dv; ++b) {
                            sr[b] = lam * sr[b] + kt[a] * vt[b];
                            lr[b] = lam * lr[b] + kt[a] * vt[b];
                        }
                    }
                    for (int a = 0; a < dk; ++a) {
                        const double* sr = &st[(size_t)a * dv];
                        for (int b = 0; b < dv; ++b) ot[b] += qt[a] * sr[b];
                    }
                    for (int b = 0; b < dv; ++b) ot[b] *= scale;
                }
                for (size_t i = 0; i < st.size(); ++i) { outRef[sb + i] = st[i]; localRef[sb + i] = loc[i]; }
            }
        }
    }

    // ---- device run ----
    T *dq, *dk_, *dv_, *dO;
    float *dSl, *dInc, *dOutF, *dOutL;
    CK(cudaMalloc(&dq, nq * sizeof(T)));
    CK(cudaMalloc(&dk_, nq * sizeof(T)));
    CK(cudaMalloc(&dv_, nv * sizeof(T)));
    CK(cudaMalloc(&dO, nv * sizeof(T)));
    CK(cudaMalloc(&dSl, H * sizeof(float)));
    CK(cudaMalloc(&dInc, ns * sizeof(float)));
    CK(cudaMalloc(&dOutF, ns * sizeof(float)));
    CK(cudaMalloc(&dOutL, ns * sizeof(float)));
    CK(cudaMemcpy(dq, hq.data(), nq * sizeof(T), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dk_, hk.data(), nq * sizeof(T), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dv_, hv.data(), nv * sizeof(T), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dSl, slopes.data(), H * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dInc, incoming.data(), ns * sizeof(float), cudaMemcpyHostToDevice));
    // Poison every output with NaN (0xFFFF is a NaN in bf16 and f16, 0xFFFFFFFF in float).
    CK(cudaMemset(dO, 0xFF, nv * sizeof(T)));
    CK(cudaMemset(dOutF, 0xFF, ns * sizeof(float)));
    CK(cudaMemset(dOutL, 0xFF, ns * sizeof(float)));

    const dim3 grid(family_grid_x(H), (dv + family_columns() - 1) / family_columns(), S);
    const int smem = family_smem(dk, true);
    launch_forward(dq, dk_, dv_, dO, n, H, dk, dv, segTokens, dSl, scale, dInc, dOutF, grid, smem);
    CK(cudaGetLastError());
    launch_states(dk_, dv_, n, H, dk, dv, segTokens, dSl, dOutL, grid, family_smem(dk, false));
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());

    std::vector<T> ho(nv);
    std::vector<float> hOutF(ns), hOutL(ns);
    CK(cudaMemcpy(ho.data(), dO, nv * sizeof(T), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hOutF.data(), dOutF, ns * sizeof(float), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hOutL.data(), dOutL, ns * sizeof(float), cudaMemcpyDeviceToHost));
    CK(cudaFree(dq)); CK(cudaFree(dk_)); CK(cudaFree(dv_)); CK(cudaFree(dO));
    CK(cudaFree(dSl)); CK(cudaFree(dInc)); CK(cudaFree(dOutF)); CK(cudaFree(dOutL));

    std::vector<double> og(nv), sf(ns), sl(ns);
    for (size_t i = 0; i < nv; ++i) og[i] = Elem<T>::to(ho[i]);
    for (size_t i = 0; i < ns; ++i) { sf[i] = hOutF[i]; sl[i] = hOutL[i]; }
    long long bo, bf, bl;
    const double eo = rel_err(og, oRef, &bo);
    const double ef = rel_err(sf, outRef, &bf);
    const double el = rel_err(sl, localRef, &bl);

    const bool isBf16 = std::is_same<T, __nv_bfloat16>::value;
    const double oLim = isBf16 ? 6e-3 : 2e-3, sLim = 2e-5;
    // Written as !(x <= lim) so that NaN fails.
    const bool pass = bo == 0 && bf == 0 && bl == 0 && !(eo > oLim) && !(ef > sLim) && !(el > sLim) &&
                      std::isfinite(eo) && std::isfinite(ef) && std::isfinite(el);
    std::printf("%s %-4s n=%-5d H=%d dk=%-3d dv=%-3d S=%d seg=%-5d  o_err=%.3e  fwd_state_err=%.3e  "
                "local_state_err=%.3e  unwritten=%lld/%lld/%lld  %s\n",
                g_family == 2 ? "wgp" : g_family == 1 ? "wg" : "tc", Elem<T>::name(), n, H, dk, dv, S, segTokens, eo, ef, el, bo, bf, bl, pass ? "PASS" : "FAIL");
    std::fflush(stdout);
    return pass;
}

// ------------------------------ benchmark -------------------------------------------------
__global__ void fill_random_bf16(__nv_bfloat16* p, size_t count, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t x = (uint32_t)i * 2654435761u ^ seed;
        x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
        p[i] = __float2bfloat16_rn((float)(x >> 8) * (2.f / 16777216.f) - 1.f);
    }
}

static double wall_s() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
// bench(n, H, d, segs): T = n, H heads, dk = dv = d, the forward and states kernels at each segment
// count of segs (the CTA grid is H x columns x S, as the backend launches it after the scan).
static int bench(int n, int H, int d, const std::vector<int>& segs) {
    const int dk = d, dv = d;
    int maxS = 1;
    for (int S : segs) maxS = std::max(maxS, S);
    const size_t elems = (size_t)n * H * dk;
    __nv_bfloat16 *q, *k, *v, *o;
    float *sl, *inc, *outS;
    CK(cudaMalloc(&q, elems * 2));
    CK(cudaMalloc(&k, elems * 2));
    CK(cudaMalloc(&v, elems * 2));
    CK(cudaMalloc(&o, elems * 2));
    CK(cudaMalloc(&sl, H * sizeof(float)));
    CK(cudaMalloc(&inc, (size_t)maxS * H * dk * dv * sizeof(float)));
    CK(cudaMalloc(&outS, (size_t)maxS * H * dk * dv * sizeof(float)));
    fill_random_bf16<<<4096, 256>>>(q, elems, 1u);
    fill_random_bf16<<<4096, 256>>>(k, elems, 2u);
    fill_random_bf16<<<4096, 256>>>(v, elems, 3u);
    CK(cudaGetLastError());
    std::vector<float> hs(H);
    for (int h = 0; h < H; ++h) hs[h] = std::exp2(-8.0f * (h + 1) / H);  // ALiBi-style slopes
    CK(cudaMemcpy(sl, hs.data(), H * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaMemset(inc, 0, (size_t)maxS * H * dk * dv * sizeof(float)));

    const int smem = family_smem(dk, true);
    const int smemStates = family_smem(dk, false);
    const float scale = 1.f / std::sqrt((float)dk);
    const char* fam = g_family == 2 ? "wgp" : g_family == 1 ? "wg" : "tc";
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));

    // S segments of n / S tokens: the forward as the backend launches it after the scan.
    auto timeIt = [&](bool fwd, int S) {
        const dim3 grid(family_grid_x(H), (dv + family_columns() - 1) / family_columns(), S);
        const int segTokens = (n / 64 + S - 1) / S * 64;
        std::vector<float> ms;
        for (int it = 0; it < 12; ++it) {  // 2 warm-up runs, then 10 timed
            CK(cudaEventRecord(e0));
            if (fwd) launch_forward(q, k, v, o, n, H, dk, dv, segTokens, sl, scale, inc, outS, grid, smem);
            else launch_states(k, v, n, H, dk, dv, segTokens, sl, outS, grid, smemStates);
            CK(cudaGetLastError());
            CK(cudaEventRecord(e1));
            CK(cudaEventSynchronize(e1));
            float t;
            CK(cudaEventElapsedTime(&t, e0, e1));
            if (it >= 2) ms.push_back(t);
        }
        std::sort(ms.begin(), ms.end());
        return 0.5f * (ms[4] + ms[5]);
    };
    const double bytes = 4.0 * (double)elems * 2.0;  // read q, k, v and write o once
    for (int S : segs) {
        const float fwdMs = timeIt(true, S);
        // the wall clock (UTC seconds) at the end of the line's runs, to match samples of nvidia-smi
        std::printf("bench %s forward bf16 n=%d H=%d dk=%d dv=%d S=%d: %.3f ms (median of 10), %.1f GB/s effective, at %.2f\n",
                    fam, n, H, dk, dv, S, fwdMs, bytes / (fwdMs * 1e-3) / 1e9, wall_s());
        const float stMs = timeIt(false, S);
        std::printf("bench %s states  bf16 S=%d: %.3f ms, %.1f GB/s effective (k, v read once), at %.2f\n", fam, S, stMs,
                    2.0 * elems * 2.0 / (stMs * 1e-3) / 1e9, wall_s());
        std::fflush(stdout);
    }
    CK(cudaFree(q)); CK(cudaFree(k)); CK(cudaFree(v)); CK(cudaFree(o));
    CK(cudaFree(sl)); CK(cudaFree(inc)); CK(cudaFree(outS));
    return 0;
}

int main(int argc, char** argv) {
    set_smem_limits();
    // Families to run: the mma.sync kernels always; the wgmma ones when built in and on sm_90.
    int families[3] = {0, -1, -1};
#ifdef LIGHTNING_WG
    {
        cudaDeviceProp prop;
        CK(cudaGetDeviceProperties(&prop, 0));
        if (prop.major == 9 && prop.minor == 0) families[1] = 1, families[2] = 2;
        else std::printf("wg kernels skipped: device is sm_%d%d, they need sm_90\n", prop.major, prop.minor);
    }
#endif
    // --family F: only that family (0 mma.sync, 1 wgmma); may precede the other options.
    if (argc > 2 && std::strcmp(argv[1], "--family") == 0) {
        const int f = std::atoi(argv[2]);
        families[0] = (f == 0) ? 0 : (families[1] == 1 && (f == 1 || f == 2) ? f : -1);
        families[1] = families[2] = -1;
        argc -= 2;
        argv += 2;
    }
    // --bench [n [H [d [S,S,...]]]]: n defaults to 1048576 (a smaller n is handy under a profiler), H to 64,
    // d (= dk = dv) to 128, the segment counts to 1,2.
    if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) {
        const int n = argc > 2 ? std::atoi(argv[2]) : 1048576;
        const int H = argc > 3 ? std::atoi(argv[3]) : 64;
        const int d = argc > 4 ? std::atoi(argv[4]) : 128;
        std::vector<int> segs;
        for (const char* p = argc > 5 ? argv[5] : "1,2"; *p;) {
            segs.push_back(std::atoi(p));
            while (*p && *p != ',') ++p;
            if (*p == ',') ++p;
        }
        if (n < 64 || H < 1 || d < 1 || segs.empty() || *std::min_element(segs.begin(), segs.end()) < 1) {
            std::fprintf(stderr, "--bench: expected n >= 64, H >= 1, d >= 1 and segment counts >= 1, got n=%d H=%d d=%d\n", n, H, d);
            return 2;
        }
        for (int f : families)
            if (f >= 0) {
                if (f == 1 && d > LIGHTNING_WG_MAX_DK_OR_0) continue;
#ifdef LIGHTNING_WG
                if (f == 2 && (d != LIGHTNING_WG_PAIR_D || H % 2 != 0)) continue;
#endif
                g_family = f;
                bench(n, H, d, segs);
            }
        return 0;
    }

    // --max-n N: only the cases with n <= N (quick runs under compute-sanitizer).
    const int maxN = (argc > 2 && std::strcmp(argv[1], "--max-n") == 0) ? std::atoi(argv[2]) : 1 << 30;
    const int ns[] = {1, 63, 65, 1000, 4096};
    const int hs[] = {1, 3};
    // (37, 70): dk, dv not multiples of 8, the scalar load/store paths. dk > 128: the wide mma.sync
    // kernels (the wgmma family stops at 128). (128, 200): two column tiles of either family, the
    // second partial. dk <= 64: the wgmma family's second state warpgroup has no rows.
    // (80, 48): five state m-tiles, one column tile narrower than the CTA's 64. (127, 70): under a 99 KB limit the
    // "_q1" forward's scalar paths (as (128, 128) and (128, 200) its vector ones).
    const int dims[][2] = {{128, 128}, {64, 32}, {40, 72}, {16, 24}, {37, 70}, {200, 136}, {128, 200}, {80, 48},
                           {127, 70}};
    // TC_CASE=DK,DV: only that pair of widths (a focused run, under compute-sanitizer say).
    int onlyDk = 0, onlyDv = 0;
    if (const char* e = std::getenv("TC_CASE")) std::sscanf(e, "%d,%d", &onlyDk, &onlyDv);
    const int segs[] = {1, 3};
    int passed = 0, failed = 0, caseId = 0;
    for (int f : families) {
        if (f < 0) continue;
        g_family = f;
#ifdef LIGHTNING_WG
        if (f == 2) {  // the paired kernels: their one width, even H (2: one CTA a segment, 6: three)
            const int hs2[] = {2, 6};
            for (int typ = 0; typ < 2; ++typ)
                for (int n : ns)
                    for (int H : hs2)
                        if (n <= maxN)
                            for (int sr : segs) {
                                int skipped = 0;
                                const int d = LIGHTNING_WG_PAIR_D;
                                const bool ok = typ == 0 ? run_case<__nv_bfloat16>(caseId, n, H, d, d, sr, &skipped)
                                                         : run_case<__half>(caseId, n, H, d, d, sr, &skipped);
                                ++caseId;
                                if (skipped) continue;
                                (ok ? passed : failed)++;
                            }
            continue;
        }
#endif
        for (int typ = 0; typ < 2; ++typ)
            for (int n : ns)
                for (int H : hs)
                    if (n <= maxN)
                        for (auto& d : dims)
                            for (int sr : segs) {
                                if (f == 1 && d[0] > LIGHTNING_WG_MAX_DK_OR_0) continue;
                                if (onlyDk > 0 && (d[0] != onlyDk || d[1] != onlyDv)) continue;
                                if (f == 0 && lightning_tc::tc_min_smem_bytes(d[0]) > smem_limit() && !use_q1(d[0]))
                                    continue;
                                int skipped = 0;
                                const bool ok = typ == 0 ? run_case<__nv_bfloat16>(caseId, n, H, d[0], d[1], sr, &skipped)
                                                         : run_case<__half>(caseId, n, H, d[0], d[1], sr, &skipped);
                                ++caseId;
                                if (skipped) continue;
                                (ok ? passed : failed)++;
                            }
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
