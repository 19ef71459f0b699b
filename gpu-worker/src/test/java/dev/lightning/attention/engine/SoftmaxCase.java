package dev.lightning.attention.engine;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.util.SplittableRandom;

/**
 * Random q, k, v of one softmax test case, and the calls tests make on them: one call of a
 * backend, and calls over key blocks merged in order. Public for the tests of every backend
 * package (the CPU and GPU backends use the same cases).
 */
public final class SoftmaxCase {
    public final SoftmaxSpec spec;
    public final TokenTensor q;
    public final TokenTensor k;
    public final TokenTensor v;

    public SoftmaxCase(SoftmaxSpec spec, TokenTensor q, TokenTensor k, TokenTensor v) {
        this.spec = spec;
        this.q = q;
        this.k = k;
        this.v = v;
    }

    /**
     * T tokens of fresh values uniform in [-amplitude, amplitude), rounded to {@code dtype}; the
     * default scale 1/sqrt(Dk).
     */
    public static SoftmaxCase random(long seed, DType dtype, int tokens, int hq, int hk, int dk, int dv, long window,
                                     double amplitude) {
        SoftmaxSpec spec = new SoftmaxSpec(hq, hk, dk, dv, SoftmaxSpec.defaultScale(dk), window);
        SplittableRandom rnd = new SplittableRandom(seed);
        return new SoftmaxCase(spec, tensor(rnd, dtype, tokens, hq, dk, amplitude),
                tensor(rnd, dtype, tokens, hk, dk, amplitude), tensor(rnd, dtype, tokens, hk, dv, amplitude));
    }

    public static SoftmaxCase random(long seed, DType dtype, int tokens, int hq, int hk, int dk, int dv, long window) {
        return random(seed, dtype, tokens, hq, hk, dk, dv, window, 1.0);
    }

    private static TokenTensor tensor(SplittableRandom rnd, DType dtype, int t, int h, int d, double amplitude) {
        float[] x = new float[t * h * d];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) ((rnd.nextDouble() * 2 - 1) * amplitude);
        }
        return TokenTensor.of(dtype, t, h, d, x);
    }

    public int tokens() {
        return q.tokens();
    }

    /** Queries [qFrom, qFrom + n) over keys [kFrom, kFrom + m), in one call. */
    public SoftmaxPartial call(SoftmaxBackend backend, int qFrom, int n, int kFrom, int m) {
        return callInto(SoftmaxPartial.empty(spec, n), backend, qFrom, n, kFrom, m);
    }

    /**
     * {@link #call} into a partial whose o and lse hold garbage first (NaN, and lse 7): a backend writes every element,
     * as the executor's path needs, which reuses one partial across its key blocks.
     */
    public SoftmaxPartial callIntoUsed(SoftmaxBackend backend, int qFrom, int n, int kFrom, int m) {
        SoftmaxPartial p = SoftmaxPartial.empty(spec, n);
        java.util.Arrays.fill(p.o(), Float.NaN);
        java.util.Arrays.fill(p.lse(), 7f);
        return callInto(p, backend, qFrom, n, kFrom, m);
    }

    private SoftmaxPartial callInto(SoftmaxPartial p, SoftmaxBackend backend, int qFrom, int n, int kFrom, int m) {
        backend.forward(spec, q.slice(qFrom, n), qFrom, k.slice(kFrom, m), v.slice(kFrom, m), kFrom, p);
        return p;
    }

    /** Every query over every key, in one call. */
    public SoftmaxPartial whole(SoftmaxBackend backend) {
        return call(backend, 0, tokens(), 0, tokens());
    }

    /**
     * Queries [qFrom, qFrom + n) over the key blocks between consecutive {@code cuts} (0 and T
     * implied at the ends), one call each, merged in the order of the cuts.
     */
    public SoftmaxPartial merged(SoftmaxBackend backend, int qFrom, int n, int... cuts) {
        SoftmaxPartial acc = SoftmaxPartial.empty(spec, n);
        int from = 0;
        for (int i = 0; i <= cuts.length; i++) {
            int to = i < cuts.length ? cuts[i] : tokens();
            if (to > from) {
                acc.merge(call(backend, qFrom, n, from, to - from));
            }
            from = to;
        }
        return acc;
    }
}
