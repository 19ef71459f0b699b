// The one argument struct of the softmax attention kernels (softmax.cu), passed by value.
// Mirrored once in Java by SoftmaxArgs.java (same fields, same offsets), checked against this
// layout when the module loads (softmax_args_layout below, args_layout.cuh).
//
// One launch is one block call of SoftmaxBackend.forward: queries at absolute positions
// qStart .. qStart + nq - 1 over keys at kStart .. kStart + nk - 1. Tensors, token-major:
//   q [nq, Hq, Dk], k [nk, Hk, Dk], v [nk, Hk, Dv] in the kernel's element type;
//   o [nq, Hq, Dv] float32, normalized by its own sum; lse [nq, Hq] float32, natural log.
// Key j is visible from query t when j <= t and, with window W > 0, j > t - W. A query that sees
// no key of the block gets lse = -inf and o = 0.
//
// Field order: the 8-byte fields first, then the 4-byte ones, so the C layout has no padding.
#pragma once

#include "args_layout.cuh"

struct SoftmaxArgs {
    // ---- 8-byte fields ----
    const void* q;
    const void* k;
    const void* v;
    float* o;
    float* lse;
    long long qStart;     // absolute position of q's first token
    long long kStart;     // absolute position of k's first token
    long long window;     // W, or 0: no window
    // ---- 4-byte fields ----
    int nq;               // query tokens
    int nk;               // key tokens
    int headsQ;           // Hq, a multiple of headsK
    int headsK;           // Hk
    int dk;               // 1..256
    int dv;               // 1..256
    float scaleLog2;      // scale * log2(e): scores in base-2 units, so exp is exp2
    int reserved;         // keeps the size a multiple of 8
};

#define SOFTMAX_ARGS_FIELDS 16

#ifdef __CUDACC__
extern "C" __global__ void softmax_args_layout(int* out) {
    int i = 0;
    out[i++] = (int)sizeof(SoftmaxArgs);
    ARG_OFFSET(SoftmaxArgs, q); ARG_OFFSET(SoftmaxArgs, k); ARG_OFFSET(SoftmaxArgs, v);
    ARG_OFFSET(SoftmaxArgs, o); ARG_OFFSET(SoftmaxArgs, lse); ARG_OFFSET(SoftmaxArgs, qStart);
    ARG_OFFSET(SoftmaxArgs, kStart); ARG_OFFSET(SoftmaxArgs, window); ARG_OFFSET(SoftmaxArgs, nq);
    ARG_OFFSET(SoftmaxArgs, nk); ARG_OFFSET(SoftmaxArgs, headsQ); ARG_OFFSET(SoftmaxArgs, headsK);
    ARG_OFFSET(SoftmaxArgs, dk); ARG_OFFSET(SoftmaxArgs, dv); ARG_OFFSET(SoftmaxArgs, scaleLog2);
    ARG_OFFSET(SoftmaxArgs, reserved);
}
#endif
