package dev.lightning.attention.engine;

import dev.lightning.attention.tensor.TokenTensor;

/**
 * What one causal softmax attention computation is, and the one owner of its head layout:
 * <pre>
 *   s_tj = scale * q_t . k_j                     for keys j visible from query t
 *   o_t  = sum_j exp(s_tj - lse_t) v_j,          lse_t = log sum_j exp(s_tj)
 * </pre>
 * Key j is visible from query t when {@code j <= t} and, with a window W, {@code j > t - W}
 * (positions are absolute token indices in the sequence). Heads: q has Hq heads, k and v have
 * Hk; Hk divides Hq and query head h reads key/value head {@code h / (Hq / Hk)} (grouped-query
 * attention; Hq = Hk is plain multi-head). Tensors: q [T, Hq, Dk], k [T, Hk, Dk], v [T, Hk, Dv],
 * o [T, Hq, Dv], lse [T, Hq]. Immutable.
 */
public final class SoftmaxSpec implements java.io.Serializable {
    private static final long serialVersionUID = 1L;

    /** No window: every earlier key is visible. */
    public static final long NO_WINDOW = 0;

    private final int headsQ;
    private final int headsK;
    private final int dk;
    private final int dv;
    private final double scale;
    private final long window;

    /**
     * @param headsQ query heads Hq, a multiple of {@code headsK}
     * @param headsK key/value heads Hk, at least 1
     * @param dk     query/key head width, 1..256
     * @param dv     value head width, 1..256
     * @param scale  score scale, finite and positive (1/sqrt(Dk) is {@link #defaultScale})
     * @param window W >= 1: query t sees keys (t - W, t]; {@link #NO_WINDOW}: all keys up to t
     */
    public SoftmaxSpec(int headsQ, int headsK, int dk, int dv, double scale, long window) {
        if (headsK < 1 || headsQ < 1 || headsQ % headsK != 0) {
            throw new IllegalArgumentException("query heads must be a positive multiple of key/value heads, got Hq="
                    + headsQ + ", Hk=" + headsK);
        }
        if (dk < 1 || dk > AttentionSpec.MAX_DIM || dv < 1 || dv > AttentionSpec.MAX_DIM) {
            throw new IllegalArgumentException("head widths must be 1.." + AttentionSpec.MAX_DIM + ", got Dk=" + dk
                    + ", Dv=" + dv);
        }
        if (!(scale > 0) || Double.isInfinite(scale)) {
            throw new IllegalArgumentException("scale must be finite and > 0, got " + scale);
        }
        if (window < 0) {
            throw new IllegalArgumentException("window must be >= 1 tokens, or " + NO_WINDOW + " for none, got "
                    + window);
        }
        this.headsQ = headsQ;
        this.headsK = headsK;
        this.dk = dk;
        this.dv = dv;
        this.scale = scale;
        this.window = window;
    }

    /** The usual score scale, 1/sqrt(Dk). */
    public static double defaultScale(int dk) {
        return 1.0 / Math.sqrt(dk);
    }

    public int headsQ() {
        return headsQ;
    }

    public int headsK() {
        return headsK;
    }

    /** The key/value head query head {@code h} reads. */
    public int kHead(int h) {
        return h / (headsQ / headsK);
    }

    public int dk() {
        return dk;
    }

    public int dv() {
        return dv;
    }

    public double scale() {
        return scale;
    }

    /** W, or {@link #NO_WINDOW}. */
    public long window() {
        return window;
    }

    /** Whether key position {@code j} is visible from query position {@code t}. */
    public boolean visible(long t, long j) {
        return j <= t && (window == NO_WINDOW || j > t - window);
    }

    /**
     * The first key position query {@code t} sees (0 without a window). Keys before it, and keys
     * after {@code t}, contribute nothing.
     */
    public long firstVisibleKey(long t) {
        return window == NO_WINDOW ? 0 : Math.max(0, t - window + 1);
    }

    /**
     * How many (query, key) pairs of queries [qStart, qStart + nq) and keys [kStart, kStart + nk)
     * are visible: the work of that block call (2 Hq (Dk + Dv) FLOPs each), for balancing and for
     * reporting speed. T (T + 1) / 2 for a whole causal sequence without a window.
     */
    public long visiblePairs(long qStart, long nq, long kStart, long nk) {
        return dev.lightning.attention.plan.SoftmaxPlanner.pairs(qStart, qStart + nq, kStart, kStart + nk, window);
    }

    /** Checks one block call's shapes ({@link SoftmaxBackend#forward}); names what differs. */
    public void checkForward(TokenTensor q, long qStart, TokenTensor k, TokenTensor v, long kStart,
                             SoftmaxPartial out) {
        check("q", q, headsQ, dk);
        check("k", k, headsK, dk);
        check("v", v, headsK, dv);
        if (k.tokens() != v.tokens()) {
            throw new IllegalArgumentException("k has " + k.tokens() + " tokens, v " + v.tokens() + ": they must match");
        }
        if (qStart < 0 || kStart < 0) {
            throw new IllegalArgumentException("block starts must be >= 0, got q at " + qStart + ", k at " + kStart);
        }
        if (out.tokens() != q.tokens() || out.heads() != headsQ || out.dv() != dv) {
            throw new IllegalArgumentException("partial holds [" + out.tokens() + ", " + out.heads() + ", " + out.dv()
                    + "], expected [" + q.tokens() + ", " + headsQ + ", " + dv + "]");
        }
    }

    private static void check(String name, TokenTensor t, int heads, int dim) {
        if (t.heads() != heads || t.dim() != dim) {
            throw new IllegalArgumentException(name + " has shape [" + t.tokens() + ", " + t.heads() + ", " + t.dim()
                    + "], expected [T, " + heads + ", " + dim + "]");
        }
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof SoftmaxSpec)) {
            return false;
        }
        SoftmaxSpec s = (SoftmaxSpec) o;
        return headsQ == s.headsQ && headsK == s.headsK && dk == s.dk && dv == s.dv
                && Double.compare(scale, s.scale) == 0 && window == s.window;
    }

    @Override
    public int hashCode() {
        return java.util.Objects.hash(headsQ, headsK, dk, dv, scale, window);
    }

    @Override
    public String toString() {
        return "softmax(Hq=" + headsQ + ", Hk=" + headsK + ", Dk=" + dk + ", Dv=" + dv + ", scale=" + scale
                + (window == NO_WINDOW ? "" : ", window=" + window) + ")";
    }
}
