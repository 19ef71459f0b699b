package dev.lightning.attention.engine;

import dev.lightning.attention.engine.reference.Accuracy;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.util.SplittableRandom;

/**
 * Fresh random test inputs (never zeros) and the error measure the tests use; public for the tests
 * of every backend package.
 */
public final class Inputs {
    private Inputs() {
    }

    /** Values uniform in [-1, 1), rounded to {@code dtype}. */
    public static TokenTensor random(SplittableRandom rnd, DType dtype, int tokens, int heads, int dim) {
        float[] x = new float[tokens * heads * dim];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (rnd.nextDouble() * 2 - 1);
        }
        return TokenTensor.of(dtype, tokens, heads, dim, x);
    }

    public static LightningState randomState(SplittableRandom rnd, int heads, int dk, int dv) {
        float[] s = new float[heads * dk * dv];
        for (int i = 0; i < s.length; i++) {
            s[i] = (float) (rnd.nextDouble() * 4 - 2);
        }
        return LightningState.of(heads, dk, dv, s);
    }

    /**
     * A random state of {@code spec}: S as {@link #randomState(SplittableRandom, int, int, int)} draws it, then,
     * where the spec normalizes, a positive z (in [0.5, 4.5), as a positive feature map's normalizer is).
     */
    public static LightningState randomState(SplittableRandom rnd, AttentionSpec spec) {
        LightningState s = randomState(rnd, spec.heads(), spec.dk(), spec.dv());
        if (!spec.normalized()) {
            return s;
        }
        float[] z = new float[spec.normalizerSize()];
        for (int i = 0; i < z.length; i++) {
            z[i] = (float) (rnd.nextDouble() * 4 + 0.5);
        }
        return LightningState.of(spec.heads(), spec.dk(), spec.dv(), s.kv(), z);
    }

    /** {@link Accuracy#relativeError}, refusing comparisons that could not fail. */
    public static double relativeError(float[] a, float[] b) {
        if (a.length != b.length) {
            throw new AssertionError("lengths differ: " + a.length + " vs " + b.length);
        }
        boolean allZero = true;
        for (float x : b) {
            allZero &= x == 0;
        }
        if (allZero) {
            throw new AssertionError("reference is all zeros: the test cannot tell anything apart");
        }
        return Accuracy.relativeError(a, b);
    }

    /** The floats' bit patterns, so that comparing them compares bytes (NaN payloads and -0.0 included). */
    public static int[] bits(float[] x) {
        int[] b = new int[x.length];
        for (int i = 0; i < x.length; i++) {
            b[i] = Float.floatToRawIntBits(x[i]);
        }
        return b;
    }
}
