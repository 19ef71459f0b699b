// What norm_cost.cu and fwd_cost.cu share: builds of the Hopper module (cubins of lightning_sm90.cu,
// each made with other -D flags) loaded side by side into one process, and each build's kernels held
// against a float64 recurrence before anything is timed. Here: the device fill kernels (inputs from a
// hash of seed and index), a loaded build and its launch through one LightningArgs, the float64 case
// (inputs, feature map, normalization), check_build, and the two steps both tools start with:
// load_builds and check_builds. Standalone benchmark code, included by both .cu
// files (no library of its own).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "lightning_args.cuh"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../../gpu-worker/src/test/cuda/cuda_check.cuh"

// uniform in [lo, lo + 2 * half) from a hash of (seed, index)
__global__ void fill_bf16(__nv_bfloat16* d, size_t count, unsigned long long seed, float lo, float width) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        unsigned long long x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        x ^= x >> 30; x *= 0xBF58476D1CE4E5B9ull; x ^= x >> 27; x *= 0x94D049BB133111EBull; x ^= x >> 31;
        d[i] = __float2bfloat16_rn(lo + width * (float)(x >> 40) * (1.0f / 16777216.0f));
    }
}
__global__ void fill_f32(float* d, size_t count, unsigned long long seed, float lo, float width) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        unsigned long long x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        x ^= x >> 30; x *= 0xBF58476D1CE4E5B9ull; x ^= x >> 27; x *= 0x94D049BB133111EBull; x ^= x >> 31;
        d[i] = lo + width * (float)(x >> 40) * (1.0f / 16777216.0f);
    }
}

struct Build {
    std::string name;
    cudaLibrary_t lib;
    cudaKernel_t fwd, st;
    cudaKernel_t fwdN, stN;  // the normalized formula's entries: the portable module's _norm ones where it has them
    int smemF, smemS;
    int threads, cols;  // block size and value columns a CTA, from the module's launch shapes
    bool portable;      // the mma.sync module (lightning.cu) rather than the Hopper one
    bool measurementOnly;
};

static void launch(cudaKernel_t f, dim3 grid, int threads, int smem, const LightningArgs& a) {
    LightningArgs copy = a;
    void* params[] = {&copy};
    CK(cudaLaunchKernel((const void*)f, grid, dim3(threads), params, smem, 0));
}

static float bf(const __nv_bfloat16& x) { return __bfloat162float(x); }
static double phi_ref(int fm, double x) {  // the map in float64, rounded to bf16 as the kernels store it
    double y = fm == 1 ? (x > 0 ? x + 1 : std::exp(x)) : fm == 2 ? std::max(x, 0.0) : x;
    return (double)__bfloat162float(__float2bfloat16_rn((float)y));
}

// ------------------------------ the float64 check -----------------------------------------
// T tokens (not a multiple of the chunk), H = 3 heads, Dk = Dv = 128, the forward kernel over 2
// segments with given incoming S and z per segment, and the states kernel over the same segments
// (local states from zero), both against a float64 recurrence per token:
//   S_t = lambda S_{t-1} + phi(k_t)^T v_t, z_t = lambda z_{t-1} + phi(k_t),
//   o_t = scale phi(q_t) S_t (/ (phi(q_t) . z_t + eps) when normalizing).
// Identity-map normalization is checked on q, k in [0, 1) (denominators away from 0); elu1 on [-1, 1).
// A fourth case, identity-map normalization on q, k in [-1, 1), is printed for comparison between
// builds, not held to a bound: its denominators come near 0, where the output itself is ill-conditioned.
struct CheckResult { double o, s, z, ls, lz; bool ok; };
constexpr int kT = 1000, kH = 3, kD = 128, kSeg = 512, kS = 2;
struct Case {  // the inputs and the float64 results of one check
    int fm;
    bool norm;
    std::vector<__nv_bfloat16> q, k, v;
    std::vector<float> inc, incZ;
    std::vector<double> o, Send, zend, Sloc, zloc;
};
static Case make_case(int fm, bool norm, bool pos) {
    const int T = kT, H = kH, D = kD, seg = kSeg, S = kS;
    const float scale = 0.7f, eps = 1e-5f;
    std::vector<__nv_bfloat16> q(T * H * D), k(T * H * D), v(T * H * D);
    uint64_t st = 12345 + 17 * fm + 2 * norm + pos;
    auto uni = [&]() { st ^= st >> 12; st ^= st << 25; st ^= st >> 27; return (double)((st * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0; };
    for (auto& x : q) x = __float2bfloat16_rn((float)(pos ? uni() : 2 * uni() - 1));
    for (auto& x : k) x = __float2bfloat16_rn((float)(pos ? uni() : 2 * uni() - 1));
    for (auto& x : v) x = __float2bfloat16_rn((float)(2 * uni() - 1));
    const float slopes[H] = {0.6f, 0.05f, 1e-4f};
    // incoming per segment: segment 0 a random state, segment 1 the reference's state after seg tokens
    std::vector<double> Sr(H * D * D), zr(H * D);
    std::vector<float> inc(S * H * D * D), incZ(S * H * D);
    for (int h = 0; h < H; ++h)
        for (int i = 0; i < D * D; ++i) Sr[h * D * D + i] = 0.1 * (2 * uni() - 1);
    for (int h = 0; h < H; ++h)
        for (int d = 0; d < D; ++d) zr[h * D + d] = uni();
    std::vector<double> o(T * H * D), Sloc(S * H * D * D, 0.0), zloc(S * H * D, 0.0);
    std::vector<double> pq(D), pk(D);
    for (int t = 0; t < T; ++t) {
        const int s = t / seg;
        if (t % seg == 0) {
            for (int i = 0; i < H * D * D; ++i) inc[s * H * D * D + i] = (float)Sr[i];
            for (int i = 0; i < H * D; ++i) incZ[s * H * D + i] = (float)zr[i];
            for (int i = 0; i < H * D * D; ++i) Sr[i] = inc[s * H * D * D + i];  // the kernel starts from the float copy
            for (int i = 0; i < H * D; ++i) zr[i] = incZ[s * H * D + i];
        }
        for (int h = 0; h < H; ++h) {
            const double lam = std::exp(-(double)slopes[h]);
            for (int d = 0; d < D; ++d) {
                pq[d] = phi_ref(fm, bf(q[(t * H + h) * D + d]));
                pk[d] = phi_ref(fm, bf(k[(t * H + h) * D + d]));
            }
            double* Sh = &Sr[h * D * D];
            double* Lh = &Sloc[(s * H + h) * D * D];
            for (int d = 0; d < D; ++d)
                for (int e = 0; e < D; ++e) {
                    const double kv = pk[d] * bf(v[(t * H + h) * D + e]);
                    Sh[d * D + e] = lam * Sh[d * D + e] + kv;
                    Lh[d * D + e] = lam * Lh[d * D + e] + kv;
                }
            double den = 0;
            for (int d = 0; d < D; ++d) {
                zr[h * D + d] = lam * zr[h * D + d] + pk[d];
                zloc[(s * H + h) * D + d] = lam * zloc[(s * H + h) * D + d] + pk[d];
                den += pq[d] * zr[h * D + d];
            }
            for (int e = 0; e < D; ++e) {
                double num = 0;
                for (int d = 0; d < D; ++d) num += pq[d] * Sh[d * D + e];
                o[(t * H + h) * D + e] = norm ? scale * num / (den + eps) : scale * num;
            }
        }
    }
    std::vector<double> Send(S * H * D * D), zend(S * H * D);
    // the state after each segment: segment 0's is segment 1's incoming state (the float copy the
    // kernel starts from: it differs from the float64 state by one float rounding), segment 1's the final one
    for (int i = 0; i < H * D * D; ++i) { Send[i] = inc[H * D * D + i]; Send[H * D * D + i] = Sr[i]; }
    for (int i = 0; i < H * D; ++i) { zend[i] = incZ[H * D + i]; zend[H * D + i] = zr[i]; }
    Case c;
    c.fm = fm; c.norm = norm; c.q = q; c.k = k; c.v = v; c.inc = inc; c.incZ = incZ;
    c.o = o; c.Send = Send; c.zend = zend; c.Sloc = Sloc; c.zloc = zloc;
    return c;
}
static CheckResult check_build(const Build& b, const Case& c) {
    const int T = kT, H = kH, D = kD, seg = kSeg, S = kS;
    const float scale = 0.7f, eps = 1e-5f;
    const int fm = c.fm;
    const bool norm = c.norm;
    const std::vector<__nv_bfloat16>&q = c.q, &k = c.k, &v = c.v;
    const std::vector<float>&inc = c.inc, &incZ = c.incZ;
    const std::vector<double>&o = c.o, &Send = c.Send, &zend = c.zend, &Sloc = c.Sloc, &zloc = c.zloc;
    const float slopes[H] = {0.6f, 0.05f, 1e-4f};
    // device run
    __nv_bfloat16 *dq, *dk, *dv, *dout;
    float *dsl, *dinc, *dincZ, *dst, *dstZ, *dloc, *dlocZ;
    const size_t bytes = sizeof(__nv_bfloat16) * T * H * D;
    CK(cudaMalloc(&dq, bytes)); CK(cudaMalloc(&dk, bytes)); CK(cudaMalloc(&dv, bytes)); CK(cudaMalloc(&dout, bytes));
    CK(cudaMalloc(&dsl, sizeof slopes));
    CK(cudaMalloc(&dinc, 4 * inc.size())); CK(cudaMalloc(&dincZ, 4 * incZ.size()));
    CK(cudaMalloc(&dst, 4 * inc.size())); CK(cudaMalloc(&dstZ, 4 * incZ.size()));
    CK(cudaMalloc(&dloc, 4 * inc.size())); CK(cudaMalloc(&dlocZ, 4 * incZ.size()));
    CK(cudaMemcpy(dq, q.data(), bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dk, k.data(), bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dv, v.data(), bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dsl, slopes, sizeof slopes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dinc, inc.data(), 4 * inc.size(), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dincZ, incZ.data(), 4 * incZ.size(), cudaMemcpyHostToDevice));
    // poison every output (NaN) so that an unwritten element fails
    CK(cudaMemset(dout, 0xff, bytes));
    CK(cudaMemset(dst, 0xff, 4 * inc.size())); CK(cudaMemset(dstZ, 0xff, 4 * incZ.size()));
    CK(cudaMemset(dloc, 0xff, 4 * inc.size())); CK(cudaMemset(dlocZ, 0xff, 4 * incZ.size()));
    LightningArgs a;
    std::memset(&a, 0, sizeof a);
    a.q = dq; a.k = dk; a.v = dv; a.o = dout; a.slopes = dsl;
    a.incoming = dinc; a.incomingNorm = norm ? dincZ : nullptr;
    a.states = dst; a.statesNorm = norm ? dstZ : nullptr;
    a.n = T; a.heads = a.headsQ = a.headsK = a.headsV = H; a.dk = D; a.dv = D; a.segTokens = seg;
    a.featureMap = fm; a.normalize = norm; a.scale = scale; a.eps = eps;
    const int ct = (D + b.cols - 1) / b.cols;
    launch(norm ? b.fwdN : b.fwd, dim3(H, ct, S), b.threads, b.smemF, a);
    LightningArgs l = a;
    l.q = nullptr; l.o = nullptr; l.incoming = nullptr; l.incomingNorm = nullptr;
    l.states = dloc; l.statesNorm = norm ? dlocZ : nullptr; l.scale = 1.f;
    launch(norm ? b.stN : b.st, dim3(H, ct, S), b.threads, b.smemS, l);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    std::vector<__nv_bfloat16> go(T * H * D);
    std::vector<float> gs(inc.size()), gz(incZ.size()), gl(inc.size()), glz(incZ.size());
    CK(cudaMemcpy(go.data(), dout, bytes, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(gs.data(), dst, 4 * gs.size(), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(gz.data(), dstZ, 4 * gz.size(), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(gl.data(), dloc, 4 * gl.size(), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(glz.data(), dlocZ, 4 * glz.size(), cudaMemcpyDeviceToHost));
    for (void* p : {(void*)dq, (void*)dk, (void*)dv, (void*)dout, (void*)dsl, (void*)dinc, (void*)dincZ, (void*)dst,
                    (void*)dstZ, (void*)dloc, (void*)dlocZ})
        CK(cudaFree(p));
    auto rel = [](auto getGot, const std::vector<double>& ref, size_t nElems) {
        double num = 0, den = 0;
        for (size_t i = 0; i < nElems; ++i) {
            const double g = getGot(i);
            if (!std::isfinite(g)) return (double)INFINITY;
            num += (g - ref[i]) * (g - ref[i]);
            den += ref[i] * ref[i];
        }
        return std::sqrt(num / std::max(den, 1e-300));
    };
    CheckResult r;
    r.o = rel([&](size_t i) { return (double)bf(go[i]); }, o, o.size());
    r.s = rel([&](size_t i) { return (double)gs[i]; }, Send, Send.size());
    r.ls = rel([&](size_t i) { return (double)gl[i]; }, Sloc, Sloc.size());
    r.z = norm ? rel([&](size_t i) { return (double)gz[i]; }, zend, zend.size()) : 0;
    r.lz = norm ? rel([&](size_t i) { return (double)glz[i]; }, zloc, zloc.size()) : 0;
    // bf16 outputs: one rounding is 2^-9 relative; states are float32 sums of split products
    r.ok = r.o < 8e-3 && r.s < 1e-4 && r.ls < 1e-4 && r.z < 1e-4 && r.lz < 1e-4;
    return r;
}

// Loads each NAME=FILE build (a NAME starting with "x-": a measurement build; containing "portable": a build
// of the portable module) and sizes its kernels from the module's own launch shapes.
// A NAME=FILE.cubin argument of the tools that load builds (norm_cost, fwd_cost) into specs; false, with a message,
// for anything else.
static bool add_build_spec(const char* arg, std::vector<std::pair<std::string, std::string>>& specs) {
    const char* eq = std::strchr(arg, '=');
    if (!eq) { std::fprintf(stderr, "expected NAME=FILE.cubin, got %s\n", arg); return false; }
    specs.emplace_back(std::string(arg, eq - arg), std::string(eq + 1));
    return true;
}

static std::vector<Build> load_builds(const std::vector<std::pair<std::string, std::string>>& specs) {
    std::vector<Build> builds;
    int* dShapes;
    CK(cudaMalloc(&dShapes, sizeof(int) * 3 * LIGHTNING_SHAPES_DK));
    for (auto& sp : specs) {
        Build b;
        b.name = sp.first;
        b.measurementOnly = sp.first.rfind("x-", 0) == 0;
        CK(cudaLibraryLoadFromFile(&b.lib, sp.second.c_str(), nullptr, nullptr, 0, nullptr, nullptr, 0));
        b.portable = sp.first.find("portable") != std::string::npos;
        CK(cudaLibraryGetKernel(&b.fwd, b.lib, b.portable ? "lightning_forward_tc_bf16" : "lightning_forward_wg_bf16"));
        CK(cudaLibraryGetKernel(&b.st, b.lib, b.portable ? "lightning_states_tc_bf16" : "lightning_states_wg_bf16"));
        // the portable module's normalized entries (tensor_core.cuh) where it has them (a build of the sources
        // before 86b8e59 has one body, under the plain names, that reads the flag)
        cudaKernel_t normFwd;
        if (b.portable && cudaLibraryGetKernel(&normFwd, b.lib, "lightning_forward_tc_bf16_norm") == cudaSuccess) {
            b.fwdN = normFwd;
            CK(cudaLibraryGetKernel(&b.stN, b.lib, "lightning_states_tc_bf16_norm"));
        } else {
            (void)cudaGetLastError();  // no _norm entries: one body reads the flag
            b.fwdN = b.fwd;
            b.stN = b.st;
        }
        cudaKernel_t shapes;
        CK(cudaLibraryGetKernel(&shapes, b.lib, b.portable ? "lightning_launch_shapes" : "lightning_wg_launch_shapes"));
        void* p[] = {&dShapes};
        CK(cudaLaunchKernel((const void*)shapes, dim3(1), dim3(1), p, 0, 0));
        std::vector<int> sh(3 * LIGHTNING_SHAPES_DK);
        CK(cudaMemcpy(sh.data(), dShapes, 4 * sh.size(), cudaMemcpyDeviceToHost));
        // Hopper: out[0] columns, out[1] threads, then forward and states shared memory by dk.
        // Portable (lightning_launch_shapes): out[3] narrow threads, out[5] columns, out[6] the narrow
        // kernels' largest dk, the tensor-core kernels' shared memory at row 2 (forward and states alike).
        if (b.portable) {
            if (sh[6] < 128) { std::fprintf(stderr, "%s: dk 128 is not narrow here\n", b.name.c_str()); std::exit(2); }
            b.threads = sh[3];
            b.cols = sh[5];
            b.smemF = b.smemS = sh[2 * LIGHTNING_SHAPES_DK + 128];
        } else {
            b.cols = sh[0];
            b.threads = sh[1];
            b.smemF = sh[LIGHTNING_SHAPES_DK + 128];
            b.smemS = sh[2 * LIGHTNING_SHAPES_DK + 128];
        }
        CK(cudaFuncSetAttribute((const void*)b.fwd, cudaFuncAttributeMaxDynamicSharedMemorySize, b.smemF));
        CK(cudaFuncSetAttribute((const void*)b.st, cudaFuncAttributeMaxDynamicSharedMemorySize, b.smemS));
        CK(cudaFuncSetAttribute((const void*)b.fwdN, cudaFuncAttributeMaxDynamicSharedMemorySize, b.smemF));
        CK(cudaFuncSetAttribute((const void*)b.stN, cudaFuncAttributeMaxDynamicSharedMemorySize, b.smemS));
        builds.push_back(b);
    }
    CK(cudaFree(dShapes));
    return builds;
}

// Holds every build against the float64 cases (plain, normalized elu1, normalized identity on q, k >= 0, elu1,
// and for comparison only normalized identity on signed inputs), prints a RESULT line each, and returns per build
// whether it passed (a measurement build is reported, never failed).
static std::vector<bool> check_builds(const std::vector<Build>& builds) {
    const int fms[5] = {0, 1, 0, 0, 1};
    const bool norms[5] = {false, true, true, true, false};
    const bool positive[5] = {false, false, true, false, false};
    std::vector<Case> cases;
    for (int c = 0; c < 5; ++c) cases.push_back(make_case(fms[c], norms[c], positive[c]));
    std::vector<bool> buildOk(builds.size(), true);
    for (size_t bi = 0; bi < builds.size(); ++bi) {
        const Build& b = builds[bi];
        for (int c = 0; c < 5; ++c) {
            const CheckResult r = check_build(b, cases[c]);
            const bool info = c == 3;
            std::printf("RESULT check %s %s%s%s: o %.3e, S after segment %.3e, local S %.3e, z %.3e, local z %.3e: %s\n",
                        b.name.c_str(), norms[c] ? "normalized " : "", fms[c] == 1 ? "elu1" : "identity",
                        c == 2 ? " (q, k >= 0)" : c == 3 ? " (q, k in [-1, 1))" : "", r.o, r.s, r.ls, r.z, r.lz,
                        info ? "(for comparison)" : r.ok ? "ok" : (b.measurementOnly ? "off (measurement build)" : "FAILED"));
            if (!r.ok && !b.measurementOnly && !info) buildOk[bi] = false;
        }
    }
    return buildOk;
}
