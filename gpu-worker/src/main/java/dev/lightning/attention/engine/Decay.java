package dev.lightning.attention.engine;

/**
 * How a carried state decays: x <- lambda^n x + add, in float32, for the CPU backend's chunks and the
 * scan's pieces (the CUDA kernels state the same rule in lightning_decay.cuh).
 *
 * <p>lambda^n rounded to float32 is off by up to 3e-8 absolute. Near 1 that is a large part of
 * 1 - lambda^n (slope 1e-7: lambda^64 = 1 - 6.4e-6 rounds to 1 - 6.38e-6, a rate 0.35% off), and a
 * state carried over many chunks takes the error every chunk with one sign: the CPU job's final state
 * was 6.0e-4 off float64 at T = 4M, slope 1e-7 (BENCHMARKS.md, "A slowly decaying head's carry").
 * There the carry takes the complement 1 - lambda^n (its own 24 bits) as x + (add - comp x). Below
 * lambda^n = 1/2 it takes lambda^n itself: the complement would round lambda^n's bits away, and x + (add -
 * comp x) would cancel where a carried x is much larger than add (an initial state, a fast head).
 * Both forms in one float, the code: comp where lambda^n >= 1/2, -lambda^n (never -0) below.
 */
public final class Decay {
    private Decay() {
    }

    /** The code of head h's decay over n tokens (see the class comment). */
    public static float code(AttentionSpec spec, int h, long n) {
        double comp = spec.decayComplement(h, n);
        return comp <= 0.5 ? (float) comp : -Math.max((float) spec.decay(h, n), Float.MIN_VALUE);
    }

    /** lambda^n x + add, by the form {@code code} names. */
    public static float carry(float x, float add, float code) {
        return code >= 0 ? x + (add - code * x) : add - code * x;
    }
}
