// The feature maps of the 16-bit tensor-core kernels (lightning_common.cuh's phi_pair: packed 16-bit
// arithmetic) against float64, over every 16-bit input, beside the float32 form they replaced
// (lightning_phi, then a rounding to the type). Prints one RESULT line per type and map.
//
// Build (repository root; the first is the Hopper build, the second the portable one, whose PTX
// the driver compiles for the GPU at hand, as it does lightning.ptx):
//   nvcc -O2 -gencode=arch=compute_90a,code=sm_90a -I gpu-worker/src/main/cuda bench/cuda/phi_check.cu -o phi_check
//   nvcc -O2 -gencode=arch=compute_80,code=compute_80 -I gpu-worker/src/main/cuda bench/cuda/phi_check.cu -o phi_check_portable
// Run: ./phi_check   (exit status 1 when a map is off by more than its bound, below)
//
// What is measured, for each finite input x (a T value) with a normal result:
//   err = |phi(x) - phi_exact(x)| / phi_exact(x), phi_exact in float64, against u, the unit
//   roundoff of T (2^-8 bf16, 2^-11 f16): one rounding of the exact value costs up to u, and the
//   maps are meant to round once (elu1's exponential is approximate, a few float32 ulp, hence a
//   slack of u / 16). The RESULT line gives max err / u as "of_bound", and the same for the
//   float32 form. relu must be exact (max(x, 0)); for x > 0 elu1 must give the float32 form's bits.
// The run of 2026-12-03 (bench/results/2026-12-03-h200-norm-phi.log) measured an earlier version
// whose exponential was packed too, with the bound u (1 + |x|) (the argument n log2 e rounded to
// T like an input): bf16 1.20 of it on the Hopper build, f16 1.32; the float32 exponential kept
// (the bf16 lines of its portable build, the code now used for both types): 0.996.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "lightning_args.cuh"
#include "lightning_common.cuh"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#define CK(x)                                                                                        \
    do {                                                                                             \
        cudaError_t e_ = (x);                                                                        \
        if (e_ != cudaSuccess) {                                                                     \
            std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            return 2;                                                                                \
        }                                                                                            \
    } while (0)

// out[2 i], out[2 i + 1]: the packed map of the pair (i, i ^ 0x5a5a) (both halves exercised), and
// old[i]: the float32 form of element i.
template <typename T, int FM>
__global__ void map_all(unsigned* out, unsigned short* old) {
    const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= 65536u) return;
    const unsigned pair = i | ((i ^ 0x5a5au) << 16);
    out[i] = lightning::phi_pair<T, FM>(pair);
    const unsigned short bits = (unsigned short)i;
    const T x = *reinterpret_cast<const T*>(&bits);
    const T y = lightning::Ops<T>::from_f(lightning_phi(FM, lightning::Ops<T>::to_f(x)));
    old[i] = *reinterpret_cast<const unsigned short*>(&y);
}

static double bf16_value(unsigned short b) {
    unsigned u = (unsigned)b << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
static double f16_value(unsigned short b) {
    const int sign = b >> 15, e = (b >> 10) & 31, m = b & 1023;
    double v = e == 0 ? std::ldexp((double)m, -24) : e == 31 ? (m ? NAN : INFINITY) : std::ldexp(1024.0 + m, e - 25);
    return sign ? -v : v;
}

template <typename T, int FM>
static int check(const char* type, const char* map, double (*value)(unsigned short), double u, double minNormal,
                 double slack) {
    unsigned* dOut;
    unsigned short* dOld;
    CK(cudaMalloc(&dOut, 65536 * 4));
    CK(cudaMalloc(&dOld, 65536 * 2));
    map_all<T, FM><<<256, 256>>>(dOut, dOld);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    std::vector<unsigned> out(65536);
    std::vector<unsigned short> old(65536);
    CK(cudaMemcpy(out.data(), dOut, 65536 * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(old.data(), dOld, 65536 * 2, cudaMemcpyDeviceToHost));
    CK(cudaFree(dOut));
    CK(cudaFree(dOld));
    double worstNew = 0, worstOld = 0, worstBound = 0, worstBoundOld = 0, worstX = 0, absTiny = 0;
    long checked = 0, positiveDiffer = 0, halvesDiffer = 0, differOld = 0;
    for (unsigned i = 0; i < 65536u; ++i) {
        const double x = value((unsigned short)i);
        if (!std::isfinite(x)) continue;
        // the high half must be the map of i ^ 0x5a5a
        const unsigned j = i ^ 0x5a5au;
        if ((out[j] >> 16) != (out[i] & 0xffffu) && std::isfinite(value((unsigned short)j))) ++halvesDiffer;
        const double exact = FM == 1 ? (x > 0 ? x + 1 : std::exp(x)) : (x > 0 ? x : 0.0);
        const double got = value((unsigned short)(out[i] & 0xffffu));
        const double was = value(old[i]);
        if ((out[i] & 0xffffu) != old[i]) ++differOld;
        if (x > 0 && (out[i] & 0xffffu) != old[i]) ++positiveDiffer;
        if (exact < minNormal) {  // underflow: absolute error only
            absTiny = std::fmax(absTiny, std::fabs(got - exact));
            continue;
        }
        ++checked;
        const double e = std::fabs(got - exact) / exact, eo = std::fabs(was - exact) / exact;
        const double bound = u;
        if (e > worstNew) {
            worstNew = e;
            worstX = x;
        }
        worstOld = std::fmax(worstOld, eo);
        worstBound = std::fmax(worstBound, e / bound);
        worstBoundOld = std::fmax(worstBoundOld, eo / bound);
    }
    const bool ok = halvesDiffer == 0 && positiveDiffer == 0 && worstBound <= 1 + slack && (FM != 2 || worstNew == 0);
    std::printf("RESULT phi %s %s inputs=%ld max_rel_err=%.3e (at x=%.4g) of_bound=%.3f float32_form_max_rel_err=%.3e "
                "float32_form_of_bound=%.3f differ_from_float32_form=%ld positive_inputs_differing=%ld "
                "halves_differing=%ld underflow_abs_err=%.2e %s\n",
                type, map, checked, worstNew, worstX, worstBound, worstOld, worstBoundOld, differOld, positiveDiffer,
                halvesDiffer, absTiny, ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}

int main() {
    int bad = 0;
    // slack: the approximate exponential (ex2.approx, a few ulp of float32) may tip a rounding.
    bad |= check<__nv_bfloat16, 1>("bf16", "elu1", bf16_value, 0x1p-8, 0x1p-126, 0.0625);
    bad |= check<__nv_bfloat16, 2>("bf16", "relu", bf16_value, 0x1p-8, 0x1p-126, 0.0);
    bad |= check<__half, 1>("f16", "elu1", f16_value, 0x1p-11, 0x1p-14, 0.0625);
    bad |= check<__half, 2>("f16", "relu", f16_value, 0x1p-11, 0x1p-14, 0.0);
    std::printf("%s\n", bad ? "phi check FAILED" : "phi check passed");
    return bad;
}
