// A carried state's decay, one statement for every kernel that carries one (the generic and Hopper kernels, the
// scan). Included after lightning_args.cuh.
//
// Over n tokens the state decays by lambda^n. Near 1 a float's step is 6e-8, a large part of 1 - lambda^n for a
// slowly decaying head (slope 1e-7: lambda^64 = 1 - 6.4e-6 rounds to 1 - 6.38e-6, a rate 0.35% off), and a state
// carried over many chunks takes the error of lambda^n rounded to float32 every chunk, with the same sign (the CPU
// backend measured 6e-4 of the state at T = 4M, slope 1e-7; AttentionSpec.decayComplement). So a carry takes the
// complement, 1 - lambda^n = -expm1(-slope n), which keeps its own 24 bits, and computes x <- lambda^n x + add as
// x - (comp x - add): one rounding of the small term, one of the sum.
#pragma once

__device__ __forceinline__ float lightning_decay_comp(float slope, float n) { return -expm1f(-slope * n); }

// The Hopper state carry (64 values a thread, every chunk) takes this form only for a head whose chunk decay is close
// to 1, 1 - lambda^64 below this: one more instruction an element cost an H200 5 to 7% of the forward and 27 to 33%
// of the states kernel (T = 1M, H = 64 and 8, D = 128, 2026-12-05; BENCHMARKS.md). A head farther from 1 keeps one FMA
// by lambda^m rounded to float32: its bias, at most 3e-8 / (1 - lambda^64) of the state (the state forgets at that
// rate), is 1.9e-6 or less, float32's own noise. 1/64: slope 2.46e-4 (MiniMax-01's first layer has slopes of 3.9e-3
// and more, its last of 3.9e-8 and more).
#define LIGHTNING_EXACT_CARRY_BELOW (1.f / 64.f)
__device__ __forceinline__ float lightning_decayed(float x, float add, float comp) { return x - fmaf(comp, x, -add); }
// The same carry by whichever of comp and lam = lambda^n keeps its own bits (Decay.java): the complement where lambda^n
// >= 1/2, lambda^n itself below (there the complement rounds lambda^n's bits away, and x - (comp x - add) would
// cancel where a carried x is much larger than add: an initial state, a fast head).
__device__ __forceinline__ float lightning_carry(float x, float add, float comp, float lam) {
    return comp <= 0.5f ? lightning_decayed(x, add, comp) : fmaf(lam, x, add);
}
// The same choice with one coefficient live, for kernels short of registers (the portable tensor-core ones): c is
// 1 - lambda^n where exact (lambda^n >= 1/2), lambda^n itself else.
__device__ __forceinline__ float lightning_carry_by(bool exact, float x, float add, float c) {
    return exact ? lightning_decayed(x, add, c) : fmaf(c, x, add);
}

// The batch step (lambda per token, at its register cap: both forms above spilled there) takes lightning_decayed for
// every head. The product form x <- fmaf(a, b, fmaf(-comp, x, x)) looked as exact but is not: x - comp x rounds on
// its own to x's grid, where comp x is about an ulp for a slow head, with one sign every token (slope 1.5e-7, 100,000
// tokens: 3.9e-4 of the state on an H100, 2026-12-05). In x - (comp x - add) the rounding falls on the sum with the
// token's k v, whose sign varies. A fast head (lambda < 1/2) loses little by it: its state is a few tokens' k v,
// of add's size, so the cancellation costs a few ulps of a state that is mostly add (slope 8: 5e-8, simulated).

// The Hopper kernels' decay table of a head: 256 floats from tab - 64, entry x at tab[x - 64]: tab[d] = 0 for d < 0
// (the causal mask is part of the lookup), lambda^d for d = 0..126 (reads go up to 64), and the carry's decay as its
// complement at tab[LIGHTNING_DECAY_COMP_AT + m] = 1 - lambda^m for m = 0..64.
constexpr int LIGHTNING_DECAY_COMP_AT = 127;
__device__ __forceinline__ float lightning_decay_table_entry(float slope, int x) {
    const int d = x - 64;
    return d < 0 ? 0.f
         : d < LIGHTNING_DECAY_COMP_AT ? expf(-slope * (float)d)
                                       : lightning_decay_comp(slope, (float)(d - LIGHTNING_DECAY_COMP_AT));
}
