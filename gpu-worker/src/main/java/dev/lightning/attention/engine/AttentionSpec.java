package dev.lightning.attention.engine;

import dev.lightning.attention.tensor.TokenTensor;

import java.util.Arrays;

/**
 * What one attention computation is: H heads of query/key width Dk and value width Dv, a decay
 * rate per head (lambda_h = exp(-slope_h)), the output scale, and the block (chunk) size the
 * chunked kernels work in. Immutable.
 */
public final class AttentionSpec implements java.io.Serializable {
    private static final long serialVersionUID = 1L;

    /** Largest head width any backend must accept. */
    public static final int MAX_DIM = 256;

    private final int heads;
    private final int dk;
    private final int dv;
    private final double[] slopes;
    private final double scale;
    private final int chunkSize;

    /**
     * @param heads     H, at least 1
     * @param dk        query/key head width, 1..256
     * @param dv        value head width, 1..256
     * @param slopes    [H] decay rates, finite and non-negative
     * @param scale     output scale, finite
     * @param chunkSize tokens per block of the chunked kernels, at least 1
     */
    public AttentionSpec(int heads, int dk, int dv, double[] slopes, double scale, int chunkSize) {
        if (heads < 1) {
            throw new IllegalArgumentException("heads must be >= 1, got " + heads);
        }
        if (dk < 1 || dk > MAX_DIM || dv < 1 || dv > MAX_DIM) {
            throw new IllegalArgumentException("head widths must be 1.." + MAX_DIM + ", got Dk=" + dk + ", Dv=" + dv);
        }
        if (slopes.length != heads) {
            throw new IllegalArgumentException("expected " + heads + " slopes (one per head), got " + slopes.length);
        }
        for (int h = 0; h < heads; h++) {
            if (!(slopes[h] >= 0) || Double.isInfinite(slopes[h])) {
                throw new IllegalArgumentException("slope of head " + h + " must be finite and >= 0, got " + slopes[h]);
            }
        }
        if (!Double.isFinite(scale)) {
            throw new IllegalArgumentException("scale must be finite, got " + scale);
        }
        if (chunkSize < 1) {
            throw new IllegalArgumentException("chunk size must be >= 1, got " + chunkSize);
        }
        this.heads = heads;
        this.dk = dk;
        this.dv = dv;
        this.slopes = slopes.clone();
        this.scale = scale;
        this.chunkSize = chunkSize;
    }

    public int heads() {
        return heads;
    }

    public int dk() {
        return dk;
    }

    public int dv() {
        return dv;
    }

    public double slope(int h) {
        return slopes[h];
    }

    public double[] slopes() {
        return slopes.clone();
    }

    public double scale() {
        return scale;
    }

    public int chunkSize() {
        return chunkSize;
    }

    /** lambda_h^n = exp(-slope_h * n), computed directly, never by repeated multiplication. */
    public double decay(int h, long n) {
        return Math.exp(-slopes[h] * n);
    }

    /**
     * Checks the tensors of a pass-1 call ({@link AttentionBackend#advance}) against this spec:
     * k [n, H, Dk], v [n, H, Dv], a state of this spec. The message names the tensor that is off.
     */
    public void checkAdvance(TokenTensor k, TokenTensor v, LightningState state) {
        int n = k.tokens();
        check("k", k, n, heads, dk);
        check("v", v, n, heads, dv);
        if (!state.fits(this)) {
            throw new IllegalArgumentException("state " + state + " does not fit " + this);
        }
    }

    /**
     * Checks the tensors of a pass-2 call ({@link AttentionBackend#forward}): those of
     * {@link #checkAdvance}, and q [n, H, Dk] in the dtype of k and v, o [n, H, Dv] in any dtype.
     */
    public void checkForward(TokenTensor q, TokenTensor k, TokenTensor v, LightningState state, TokenTensor o) {
        checkAdvance(k, v, state);
        int n = k.tokens();
        check("q", q, n, heads, dk);
        if (q.dtype() != k.dtype() || v.dtype() != k.dtype()) {
            throw new IllegalArgumentException("q, k, v must share a dtype, got " + q.dtype() + ", " + k.dtype()
                    + ", " + v.dtype());
        }
        check("o", o, n, heads, dv);
    }

    private static void check(String name, TokenTensor t, int n, int heads, int dim) {
        if (t.tokens() != n || t.heads() != heads || t.dim() != dim) {
            throw new IllegalArgumentException(name + " is " + t + ", expected [" + n + ", " + heads + ", " + dim + "]");
        }
    }

    /** Bytes of one state of this spec ({@link LightningState#bytes}). */
    public long stateBytes() {
        return LightningState.bytes(heads, dk, dv);
    }

    /** Elements of one state: H * Dk * Dv. */
    public int stateSize() {
        return heads * dk * dv;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof AttentionSpec)) {
            return false;
        }
        AttentionSpec s = (AttentionSpec) o;
        return heads == s.heads && dk == s.dk && dv == s.dv && Arrays.equals(slopes, s.slopes)
                && Double.compare(scale, s.scale) == 0 && chunkSize == s.chunkSize;
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(slopes) * 31 + heads * 7 + dk * 13 + dv * 17 + chunkSize;
    }

    @Override
    public String toString() {
        return "AttentionSpec[H=" + heads + ", Dk=" + dk + ", Dv=" + dv + ", scale=" + scale
                + ", chunk=" + chunkSize + "]";
    }
}
