// The argument struct of the batch-step kernels (lightning_batch.cu), passed by value. Mirrored once
// in Java by engine/cuda/BatchArgs.java (same fields, same offsets); the host checks the mirror
// against lightning_batch_args_layout below when it loads the module, as it does for LightningArgs.
//
// Field order: every 8-byte field first, then the 4-byte ones: no padding, offsets are running sums.
//
// A batch of `count` sequences packed token-major: sequence n owns tokens [offsets[n], offsets[n+1])
// of q [T, Hq, Dk], k [T, Hk, Dk], v [T, Hv, Dv] and o [T, H, Dv] (fla's cu_seqlens), and its state
// is slot slots[n] of the store: S float [slots][H][Dk][Dv], z float [slots][H][Dk] (vLLM's slot
// mapping). Head h reads q head h / (H / Hq), k head h / (H / Hk), v head h / (H / Hv).
#pragma once

#include "args_layout.cuh"

struct LightningBatchArgs {
    // ---- 8-byte fields ----
    const void* q;
    const void* k;
    const void* v;
    void* o;
    const float* slopes;    // [H]
    float* states;          // [slots][H][Dk][Dv], updated in place
    float* norms;           // [slots][H][Dk], updated in place; null when not normalizing
    const int* offsets;     // [count + 1], non-decreasing, offsets[0] = 0
    const int* slots;       // [count], distinct
    // ---- 4-byte fields ----
    int count;              // N sequences
    int heads;              // H = max(Hq, Hk, Hv)
    int headsQ;
    int headsK;
    int headsV;
    int dk;
    int dv;
    int tilesPerCta;        // value-column tiles one CTA walks: 1, or all of them when normalizing
    int group;              // tokens staged in shared memory at once, 1..LIGHTNING_BATCH_GROUP
    int featureMap;         // 0 identity, 1 elu(x) + 1, 2 relu (FeatureMap.code())
    int normalize;          // 1: o = scale phi(q) S / (phi(q) . z + eps), z carried
    float scale;
    float eps;
    int reserved;           // keeps the size a multiple of 8
};

#define LIGHTNING_BATCH_ARGS_FIELDS 23

#ifdef __CUDACC__
// Writes sizeof(LightningBatchArgs) and then every field's offset, in declaration order (args_layout.cuh).
extern "C" __global__ void lightning_batch_args_layout(int* out) {
    int i = 0;
    out[i++] = (int)sizeof(LightningBatchArgs);
    ARG_OFFSET(LightningBatchArgs, q); ARG_OFFSET(LightningBatchArgs, k); ARG_OFFSET(LightningBatchArgs, v);
    ARG_OFFSET(LightningBatchArgs, o); ARG_OFFSET(LightningBatchArgs, slopes);
    ARG_OFFSET(LightningBatchArgs, states); ARG_OFFSET(LightningBatchArgs, norms);
    ARG_OFFSET(LightningBatchArgs, offsets); ARG_OFFSET(LightningBatchArgs, slots);
    ARG_OFFSET(LightningBatchArgs, count); ARG_OFFSET(LightningBatchArgs, heads);
    ARG_OFFSET(LightningBatchArgs, headsQ); ARG_OFFSET(LightningBatchArgs, headsK);
    ARG_OFFSET(LightningBatchArgs, headsV); ARG_OFFSET(LightningBatchArgs, dk);
    ARG_OFFSET(LightningBatchArgs, dv); ARG_OFFSET(LightningBatchArgs, tilesPerCta);
    ARG_OFFSET(LightningBatchArgs, group); ARG_OFFSET(LightningBatchArgs, featureMap);
    ARG_OFFSET(LightningBatchArgs, normalize); ARG_OFFSET(LightningBatchArgs, scale);
    ARG_OFFSET(LightningBatchArgs, eps); ARG_OFFSET(LightningBatchArgs, reserved);
}
#endif
