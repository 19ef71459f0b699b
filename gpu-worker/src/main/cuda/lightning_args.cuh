// The one argument struct of every kernel (generic, mma.sync, wgmma, scan), passed by value.
// Mirrored once in Java by KernelArgs.java (same fields, same offsets); the host checks the
// mirror against this layout when it loads the module (lightning_args_layout below).
//
// Field order: every 8-byte field first, then the 4-byte ones, so that the C layout has no
// padding and its offsets are the running sums a reader sees.
//
// Tensors (device pointers, the element type is the kernel's):
//   q [n, Hq, Dk], k [n, Hk, Dk], v [n, Hv, Dv], o [n, H, Dv], token-major.
// Head h of the computation reads q head h / (H / Hq), k head h / (H / Hk), v head h / (H / Hv).
// States are float32: S [.., H, Dk, Dv] and, when normalizing, z [.., H, Dk] in separate arrays.
#pragma once

#include "args_layout.cuh"

struct LightningArgs {
    // ---- 8-byte fields ----
    const void* q;
    const void* k;
    const void* v;
    void* o;
    const float* slopes;          // [H]
    const float* incoming;        // forward: [S][H][Dk][Dv] state before each segment; scan: the state before the window (or null: zero)
    const float* incomingNorm;    // the same for z ([..][H][Dk]); null when not normalizing
    float* states;                // forward: [S][H][Dk][Dv] state after each segment; states kernel: local states;
                                  // scan: the incoming state of each of scanOutCount pass-2 segments
    float* statesNorm;            // the same for z; null when not normalizing
    float* checkpoints;           // [C][H][Dk][Dv]: S after token (c+1) N - 1 of the sequence; null: none
    float* checkpointNorms;       // [C][H][Dk]; null when not normalizing
    const float* scanLocals;      // scan: [S1][H][Dk][Dv] local states of the sub-segments
    const float* scanLocalNorms;  // scan: [S1][H][Dk]
    float* scanFinal;             // scan: the state after the window, or null
    float* scanFinalNorm;         // scan: z after the window, or null
    long long position;           // the launch's first token, counted from the sequence's first
    long long firstCheckpoint;    // global index of checkpoints[0]: floor(position / N)
    // ---- 4-byte fields ----
    int n;                        // tokens of the launch
    int heads;                    // H = max(Hq, Hk, Hv)
    int headsQ;
    int headsK;
    int headsV;
    int dk;
    int dv;
    int segTokens;                // tokens a segment but the first (grid z), a multiple of the 64-token chunk
    int checkpointEvery;          // N, a multiple of the chunk; 0: no checkpoints
    int featureMap;               // 0 identity, 1 elu(x) + 1, 2 relu (FeatureMap.code())
    int normalize;                // 1: o = scale phi(q) S / (phi(q) . z + eps), z carried
    int scanCount;                // scan: sub-segments S1
    int scanEvery;                // scan: sub-segments a pass-2 segment
    int scanSubTokens;            // scan: tokens a sub-segment
    int scanOutCount;             // scan: pass-2 segments whose incoming state it writes
    float scale;
    float eps;
    int leadTokens;               // tokens of segment 0 where fewer than segTokens (an uneven cut,
                                  // SegmentPlan.lead; lightning_segment); 0: every segment segTokens long.
                                  // Also keeps the size a multiple of 8, as the field it replaced did
};

#define LIGHTNING_ARGS_FIELDS 35

// The launch-shape reports (lightning_launch_shapes, lightning_wg_launch_shapes) hold per-dk values at
// out[LIGHTNING_SHAPES_DK * row + dk], dk = 1..256: the host indexes them by dk directly.
#define LIGHTNING_SHAPES_DK 257

#ifdef __CUDACC__
// Writes sizeof(LightningArgs) and then the offset of every field, in declaration order, to out
// (LIGHTNING_ARGS_FIELDS + 1 ints). One thread; the host calls it once per module.
#define LIGHTNING_ARG_OFFSET(F) ARG_OFFSET(LightningArgs, F)
extern "C" __global__ void lightning_args_layout(int* out) {
    int i = 0;
    out[i++] = (int)sizeof(LightningArgs);
    LIGHTNING_ARG_OFFSET(q); LIGHTNING_ARG_OFFSET(k); LIGHTNING_ARG_OFFSET(v); LIGHTNING_ARG_OFFSET(o);
    LIGHTNING_ARG_OFFSET(slopes); LIGHTNING_ARG_OFFSET(incoming); LIGHTNING_ARG_OFFSET(incomingNorm);
    LIGHTNING_ARG_OFFSET(states); LIGHTNING_ARG_OFFSET(statesNorm); LIGHTNING_ARG_OFFSET(checkpoints);
    LIGHTNING_ARG_OFFSET(checkpointNorms); LIGHTNING_ARG_OFFSET(scanLocals); LIGHTNING_ARG_OFFSET(scanLocalNorms);
    LIGHTNING_ARG_OFFSET(scanFinal); LIGHTNING_ARG_OFFSET(scanFinalNorm); LIGHTNING_ARG_OFFSET(position);
    LIGHTNING_ARG_OFFSET(firstCheckpoint); LIGHTNING_ARG_OFFSET(n); LIGHTNING_ARG_OFFSET(heads);
    LIGHTNING_ARG_OFFSET(headsQ); LIGHTNING_ARG_OFFSET(headsK); LIGHTNING_ARG_OFFSET(headsV); LIGHTNING_ARG_OFFSET(dk);
    LIGHTNING_ARG_OFFSET(dv); LIGHTNING_ARG_OFFSET(segTokens); LIGHTNING_ARG_OFFSET(checkpointEvery);
    LIGHTNING_ARG_OFFSET(featureMap); LIGHTNING_ARG_OFFSET(normalize); LIGHTNING_ARG_OFFSET(scanCount);
    LIGHTNING_ARG_OFFSET(scanEvery); LIGHTNING_ARG_OFFSET(scanSubTokens); LIGHTNING_ARG_OFFSET(scanOutCount);
    LIGHTNING_ARG_OFFSET(scale); LIGHTNING_ARG_OFFSET(eps); LIGHTNING_ARG_OFFSET(leadTokens);
}
#undef LIGHTNING_ARG_OFFSET

// The segments of a launch (SegmentPlan.java owns the layout): segment 0 holds tokens [0, lead), segment
// i > 0 holds [lead + (i - 1) pieceTokens, lead + i pieceTokens), all cut at n; lead = leadTokens where
// 0 < leadTokens < pieceTokens (an uneven cut), else pieceTokens (uniform: segment i starts at
// i pieceTokens, as before uneven cuts existed). pieceTokens is segTokens in the forward and the states
// kernel, scanSubTokens in the scan.
struct LightningSegment {
    int index;            // the segment: which incoming state it reads, which state-after slot it writes
    long long start, end; // its tokens [start, end) within the launch
};

__device__ __forceinline__ LightningSegment lightning_segment_range(int n, int pieceTokens, int leadTokens, int index) {
    // start = index * pieceTokens, less the lead's shortfall after the lead: written as one
    // multiply-add and a select of ints, so that a kernel can keep the index alone and recompute
    // the rest where it needs it (holding two 64-bit bounds cost the Hopper forward 236 bytes of
    // spills, session 9)
    const int shortfall = leadTokens > 0 && leadTokens < pieceTokens ? pieceTokens - leadTokens : 0;
    LightningSegment g;
    g.index = index;
    g.start = (long long)index * pieceTokens - (index > 0 ? shortfall : 0);
    g.end = min((long long)n, (long long)(index + 1) * pieceTokens - shortfall);
    return g;
}

// The segment of a forward or states CTA at grid z of a launch of `count` segments. Uniform: z is the
// segment. Uneven: the long segments first (z = 0 .. count - 2 are segments 1 .. count - 1) and the
// short lead last, because the hardware starts a grid's CTAs in block order as slots free: the long
// segment's CTAs all start at once and the lead's CTAs fill the slots they leave, one round after
// another (SegmentPlan.modelUnevenChunks). Checkpoints and tokens follow from the segment's start.
__device__ __forceinline__ LightningSegment lightning_segment(const LightningArgs& a, int z, int count) {
    const bool uneven = a.leadTokens > 0 && a.leadTokens < a.segTokens;
    const int index = !uneven ? z : (z + 1 == count ? 0 : z + 1);
    return lightning_segment_range(a.n, a.segTokens, a.leadTokens, index);
}

// phi of the feature map code, in float32 (elu(x) + 1 through the fast exponential: its error,
// a few ulp of float32, is far below the 16-bit rounding of the tiles it is applied to).
// elu1 without a branch: max(x, 0) + exp(min(x, 0)) is x + 1 for x > 0 (exp(0) is exactly 1) and
// 0 + exp(x) otherwise, the same bits as the two-way form. The per-element branch of that form
// diverged within warps and cost the Hopper kernels +117% over plain (H200, T = 1M, H = 64); the
// featureMap test itself is uniform across a launch.
__device__ __forceinline__ float lightning_phi(int featureMap, float x) {
    return featureMap == 1 ? fmaxf(x, 0.f) + __expf(fminf(x, 0.f)) : featureMap == 2 ? fmaxf(x, 0.f) : x;
}
#endif
