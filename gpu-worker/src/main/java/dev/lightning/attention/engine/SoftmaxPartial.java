package dev.lightning.attention.engine;

import dev.lightning.attention.tensor.TokenTensor;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Softmax attention of a block of queries over some of the keys, in float32: o [n, Hq, Dv],
 * already divided by its own normalizer, and lse [n, Hq], the natural log of that normalizer
 * (-inf where the query saw no key). Partials over disjoint key sets combine exactly:
 * <pre>
 *   lse = log(exp(lse_a) + exp(lse_b)),   o = exp(lse_a - lse) o_a + exp(lse_b - lse) o_b
 * </pre>
 * which is how a query block's outputs are assembled from key blocks computed anywhere. The merge
 * uses {@link StrictMath}, so every JVM on every executor gets the same bits: a retried task, or
 * the same merge on another machine, writes the same bytes.
 *
 * <p>Precision: the weights exp(lse_a - lse) are only as good as lse in float32, whose absolute
 * error is half an ulp of |lse| (3e-8 |lse|): a relative error of about that size in each weight.
 * With scores of order 1 (lse up to ln T + a few, below 20) that is below 1e-6; with very large
 * scores (inputs scaled by 100: lse in the thousands) a weight can be off by 1e-4 relative, which
 * moves o only where blocks of comparable weight are merged (softmax is then nearly one-hot, so
 * mostly it is not). The merge never overflows: it exponentiates only differences that are <= 0.
 */
public final class SoftmaxPartial {
    private final int tokens;
    private final int heads;
    private final int dv;
    private final float[] o;
    private final float[] lse;

    private SoftmaxPartial(int tokens, int heads, int dv, float[] o, float[] lse) {
        this.tokens = tokens;
        this.heads = heads;
        this.dv = dv;
        this.o = o;
        this.lse = lse;
    }

    /** The partial over no keys: o = 0, lse = -inf; the identity of {@link #merge}. */
    public static SoftmaxPartial empty(SoftmaxSpec spec, int tokens) {
        if (tokens < 0) {
            throw new IllegalArgumentException("tokens must be >= 0, got " + tokens);
        }
        long size = (long) tokens * spec.headsQ() * spec.dv();
        if (size > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException("a partial of " + tokens + " tokens x " + spec.headsQ() + " heads x "
                    + spec.dv() + " does not fit one array; use smaller query blocks");
        }
        float[] lse = new float[tokens * spec.headsQ()];
        java.util.Arrays.fill(lse, Float.NEGATIVE_INFINITY);
        return new SoftmaxPartial(tokens, spec.headsQ(), spec.dv(), new float[(int) size], lse);
    }

    public int tokens() {
        return tokens;
    }

    public int heads() {
        return heads;
    }

    public int dv() {
        return dv;
    }

    /** o, [n, Hq, Dv] token-major; backends write it in place. */
    public float[] o() {
        return o;
    }

    /** lse, [n, Hq]; backends write it in place. */
    public float[] lse() {
        return lse;
    }

    /** Sets every value back to the partial over no keys. */
    public void clear() {
        java.util.Arrays.fill(o, 0f);
        java.util.Arrays.fill(lse, Float.NEGATIVE_INFINITY);
    }

    /**
     * Folds {@code other} (the same queries over other keys) into this partial. Not commutative
     * in its rounding: merge key blocks in one fixed order to get the same bytes every time.
     */
    public void merge(SoftmaxPartial other) {
        if (other.tokens != tokens || other.heads != heads || other.dv != dv) {
            throw new IllegalArgumentException("cannot merge a partial of [" + other.tokens + ", " + other.heads + ", "
                    + other.dv + "] into one of [" + tokens + ", " + heads + ", " + dv + "]");
        }
        for (int r = 0; r < lse.length; r++) {
            float a = lse[r];
            float b = other.lse[r];
            if (b == Float.NEGATIVE_INFINITY) {
                continue;
            }
            int base = r * dv;
            if (a == Float.NEGATIVE_INFINITY) {
                lse[r] = b;
                System.arraycopy(other.o, base, o, base, dv);
                continue;
            }
            double m = Math.max(a, b);
            double l = m + StrictMath.log1p(StrictMath.exp(-Math.abs((double) a - b)));
            // weights and the sum in float64, rounded once: half an ulp per merge, not two (a
            // row merged from n key blocks drifts by about n/2 ulp at worst, not 2n); float64
            // arithmetic is as reproducible as float32 in Java (IEEE, no contraction into FMA)
            double wa = StrictMath.exp(a - l);
            double wb = StrictMath.exp(b - l);
            for (int d = 0; d < dv; d++) {
                o[base + d] = (float) (wa * o[base + d] + wb * other.o[base + d]);
            }
            lse[r] = (float) l;
        }
    }

    /** Writes o into {@code out} ([n, Hq, Dv], any dtype: rounded to it). */
    public void writeO(TokenTensor out) {
        if (out.tokens() != tokens || out.heads() != heads || out.dim() != dv) {
            throw new IllegalArgumentException("o tensor is [" + out.tokens() + ", " + out.heads() + ", " + out.dim()
                    + "], the partial [" + tokens + ", " + heads + ", " + dv + "]");
        }
        int i = 0;
        for (int t = 0; t < tokens; t++) {
            for (int h = 0; h < heads; h++) {
                for (int d = 0; d < dv; d++) {
                    out.set(t, h, d, o[i++]);
                }
            }
        }
    }

    /** Bytes of {@link #toBytes}: o, then lse, little-endian float32. */
    public long bytes() {
        return 4L * (o.length + lse.length);
    }

    /** o then lse, little-endian float32: how partials travel between tasks. */
    public byte[] toBytes() {
        ByteBuffer b = ByteBuffer.allocate(Math.toIntExact(bytes())).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(o).put(lse);
        return b.array();
    }

    /** A partial read back from {@link #toBytes} for {@code tokens} queries of {@code spec}. */
    public static SoftmaxPartial fromBytes(SoftmaxSpec spec, int tokens, ByteBuffer src) {
        SoftmaxPartial p = empty(spec, tokens);
        if (src.remaining() < p.bytes()) {
            throw new IllegalArgumentException("a partial of " + tokens + " queries needs " + p.bytes()
                    + " bytes, got " + src.remaining());
        }
        java.nio.FloatBuffer f = src.slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
        f.get(p.o).get(p.lse);
        src.position(src.position() + Math.toIntExact(p.bytes()));
        return p;
    }
}
