package dev.lightning.attention.engine;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.util.Arrays;

/**
 * What one attention computation is, and the one owner of its head layout and widths.
 *
 * <p>Heads: the computation has H = max(Hq, Hk, Hv) heads, each with its own decay rate
 * (lambda_h = exp(-slope_h)) and its own state. Each of Hq, Hk, Hv divides H, and head h reads
 * q head {@code h / (H/Hq)}, k head {@code h / (H/Hk)} and v head {@code h / (H/Hv)} (integer
 * division: the PyTorch/FlashAttention grouping). Hq = Hk = Hv is plain multi-head attention,
 * Hk = Hv < Hq grouped-query attention, Hq = Hk < Hv grouped values. Tensors: q [T, Hq, Dk],
 * k [T, Hk, Dk], v [T, Hv, Dv], o [T, H, Dv], states [H, Dk, Dv].
 *
 * <p>Variant: a feature map phi applied to q and k, and optionally normalization:
 * <pre>
 *   S_t = lambda S_{t-1} + phi(k_t)^T v_t,   z_t = lambda z_{t-1} + phi(k_t)     (z: [H, Dk])
 *   o_t = scale phi(q_t) S_t                                  (plain)
 *   o_t = scale (phi(q_t) S_t) / (phi(q_t) . z_t + eps)       (normalized)
 * </pre>
 * Also the output scale and the block (chunk) size of the chunked kernels. Immutable; the
 * {@code with*} methods return changed copies.
 */
public final class AttentionSpec implements java.io.Serializable {
    private static final long serialVersionUID = 2L;

    /** Largest head width any backend must accept. */
    public static final int MAX_DIM = 256;
    /** Largest head count of q, k or v (and so of H): a parser of head counts states it as its option's range. */
    public static final int MAX_HEADS = 1 << 16;

    private final int heads;
    private final int headsQ;
    private final int headsK;
    private final int headsV;
    private final int dk;
    private final int dv;
    private final double[] slopes;
    private final double scale;
    private final int chunkSize;
    private final FeatureMap featureMap;
    private final boolean normalized;
    private final double eps;

    /**
     * Plain multi-head lightning attention: Hq = Hk = Hv = {@code heads}, identity feature map,
     * no normalization.
     *
     * @param heads     H, at least 1
     * @param dk        query/key head width, 1..256
     * @param dv        value head width, 1..256
     * @param slopes    [H] decay rates, finite and non-negative
     * @param scale     output scale, finite
     * @param chunkSize tokens per block of the chunked kernels, at least 1
     */
    public AttentionSpec(int heads, int dk, int dv, double[] slopes, double scale, int chunkSize) {
        this(heads, heads, heads, heads, dk, dv, slopes, scale, chunkSize, FeatureMap.IDENTITY, false, 0);
    }

    /**
     * Plain lightning attention over grouped heads: q, k and v of {@code headsQ}, {@code headsK} and
     * {@code headsV} heads, H = {@link #heads(int, int, int)} states with {@code slopes} [H]. The one
     * place head counts become a spec: a file's, a table's and the reference check's.
     */
    public static AttentionSpec grouped(int headsQ, int headsK, int headsV, int dk, int dv, double[] slopes,
                                        double scale, int chunkSize) {
        return new AttentionSpec(heads(headsQ, headsK, headsV), dk, dv, slopes, scale, chunkSize)
                .withHeads(headsQ, headsK, headsV);
    }

    /**
     * H, the heads of the state and of the slopes, for q, k and v of {@code headsQ}, {@code headsK}
     * and {@code headsV} heads: the largest count. Each count divides it ({@link #checkGrouping}),
     * and a head of q, k or v serves H / count consecutive heads.
     */
    public static int heads(int headsQ, int headsK, int headsV) {
        return Math.max(headsQ, Math.max(headsK, headsV));
    }

    /**
     * Bytes of q, k and v of one token in {@code dtype}: Hq*Dk + Hk*Dk + Hv*Dv elements. The one place
     * the input's size per token is computed, for a file ({@code SequenceFile}) and for a table's plan
     * (which has the head counts and widths but no spec).
     */
    public static long inputBytesPerToken(int headsQ, int headsK, int headsV, int dk, int dv, DType dtype) {
        return ((long) headsQ * dk + (long) headsK * dk + (long) headsV * dv) * dtype.bytes();
    }

    private AttentionSpec(int heads, int headsQ, int headsK, int headsV, int dk, int dv, double[] slopes, double scale,
                          int chunkSize, FeatureMap featureMap, boolean normalized, double eps) {
        if (heads < 1) {
            throw new IllegalArgumentException("heads must be >= 1, got " + heads);
        }
        checkGrouping(headsQ, headsK, headsV);
        if (heads(headsQ, headsK, headsV) != heads) {
            throw new IllegalArgumentException("H must be max(Hq, Hk, Hv) = " + heads(headsQ, headsK, headsV)
                    + ", got " + heads);
        }
        if (dk < 1 || dk > MAX_DIM || dv < 1 || dv > MAX_DIM) {
            throw new IllegalArgumentException("head widths must be 1.." + MAX_DIM + ", got Dk=" + dk + ", Dv=" + dv);
        }
        // the state is one float32 array (stateSize() an int): H = 32768 at Dk = Dv = 256 would wrap to a negative size
        if ((long) heads * dk * dv > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException("a state of H x Dk x Dv = " + heads + " x " + dk + " x " + dv + " = "
                    + (long) heads * dk * dv + " float32 values is more than one array holds (2^31 - 16); at most "
                    + (Integer.MAX_VALUE - 16) / ((long) dk * dv) + " heads at these widths");
        }
        if (slopes.length != heads) {
            throw new IllegalArgumentException("expected " + heads + " slopes (one per head), got " + slopes.length);
        }
        for (int h = 0; h < heads; h++) {
            if (!Slopes.isDecayRate(slopes[h])) {
                throw new IllegalArgumentException("slope of head " + h + " must be finite and >= 0, got " + slopes[h]);
            }
        }
        if (!Double.isFinite(scale)) {
            throw new IllegalArgumentException("scale must be finite, got " + scale);
        }
        if (chunkSize < 1) {
            throw new IllegalArgumentException("chunk size must be >= 1, got " + chunkSize);
        }
        if (normalized && !(eps >= 0 && Double.isFinite(eps))) {
            throw new IllegalArgumentException("normalization eps must be finite and >= 0, got " + eps);
        }
        this.heads = heads;
        this.headsQ = headsQ;
        this.headsK = headsK;
        this.headsV = headsV;
        this.dk = dk;
        this.dv = dv;
        this.slopes = slopes.clone();
        this.scale = scale;
        this.chunkSize = chunkSize;
        this.featureMap = java.util.Objects.requireNonNull(featureMap, "featureMap");
        this.normalized = normalized;
        this.eps = normalized ? eps : 0;
    }

    /**
     * Checks that head counts of q, k and v can be grouped: each at least 1 and dividing the
     * largest. The message names the counts and what would divide; the file checks use it too.
     */
    public static void checkGrouping(long headsQ, long headsK, long headsV) {
        long h = Math.max(headsQ, Math.max(headsK, headsV));
        if (headsQ < 1 || headsK < 1 || headsV < 1 || h > MAX_HEADS) {
            throw new IllegalArgumentException("head counts must be 1.." + MAX_HEADS + ", got Hq=" + headsQ + ", Hk="
                    + headsK + ", Hv=" + headsV);
        }
        if (h % headsQ != 0 || h % headsK != 0 || h % headsV != 0) {
            throw new IllegalArgumentException("head counts Hq=" + headsQ + ", Hk=" + headsK + ", Hv=" + headsV
                    + " cannot be grouped: each must divide H = max of them = " + h
                    + " (q, k or v heads are shared by H / count consecutive heads)");
        }
    }

    /** This spec with q, k, v head counts {@code hq, hk, hv}; their maximum must be {@link #heads()}. */
    public AttentionSpec withHeads(int hq, int hk, int hv) {
        return new AttentionSpec(heads, hq, hk, hv, dk, dv, slopes, scale, chunkSize, featureMap, normalized, eps);
    }

    /** This spec with feature map {@code phi}. */
    public AttentionSpec withFeatureMap(FeatureMap phi) {
        return new AttentionSpec(heads, headsQ, headsK, headsV, dk, dv, slopes, scale, chunkSize, phi, normalized, eps);
    }

    /** This spec normalized, with {@code eps} (finite, >= 0) added to the denominator. */
    public AttentionSpec withNormalization(double eps) {
        return new AttentionSpec(heads, headsQ, headsK, headsV, dk, dv, slopes, scale, chunkSize, featureMap, true, eps);
    }

    /** H: the heads of the computation, of the states and of o. */
    public int heads() {
        return heads;
    }

    /** Hq: heads of q. */
    public int headsQ() {
        return headsQ;
    }

    /** Hk: heads of k. */
    public int headsK() {
        return headsK;
    }

    /** Hv: heads of v. */
    public int headsV() {
        return headsV;
    }

    /** The q head that head h reads. */
    public int qHead(int h) {
        return h / (heads / headsQ);
    }

    /** The k head that head h reads. */
    public int kHead(int h) {
        return h / (heads / headsK);
    }

    /** The v head that head h reads. */
    public int vHead(int h) {
        return h / (heads / headsV);
    }

    /** Whether q, k and v all have H heads (no grouping). */
    public boolean ungrouped() {
        return headsQ == heads && headsK == heads && headsV == heads;
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

    public FeatureMap featureMap() {
        return featureMap;
    }

    /** Whether outputs are divided by phi(q) . z + eps and states carry the normalizer z. */
    public boolean normalized() {
        return normalized;
    }

    /** The denominator's eps (0 when not normalized). */
    public double eps() {
        return eps;
    }

    /** Whether this is the plain formula: identity feature map, no normalization (any grouping). */
    public boolean plain() {
        return featureMap == FeatureMap.IDENTITY && !normalized;
    }

    /** lambda_h^n = exp(-slope_h * n), computed directly, never by repeated multiplication. */
    public double decay(int h, long n) {
        return Math.exp(-slopes[h] * n);
    }

    /**
     * 1 - {@link #decay}(h, n), in float64 without cancellation (expm1): what a float32 carry
     * multiplies by. lambda^n itself cannot be: near 1 a float's step is 6e-8, a large part of 1 -
     * lambda^n for a slowly decaying head (slope 1e-7: lambda^64 = 1 - 6.4e-6 rounds to 1 - 6.38e-6),
     * and a state carried over many chunks or pieces takes that error each time, with the same sign.
     * Where lambda^n >= 1/2 a carry takes this instead ({@link Decay}), so the rate keeps its own 24 bits.
     */
    public double decayComplement(int h, long n) {
        return -Math.expm1(-slopes[h] * n);
    }

    /**
     * Checks the tensors of a pass-1 call ({@link AttentionBackend#advance}) against this spec:
     * k [n, Hk, Dk], v [n, Hv, Dv] in one dtype, a state of this spec. The message names the
     * tensor that is off.
     */
    public void checkAdvance(TokenTensor k, TokenTensor v, LightningState state) {
        int n = k.tokens();
        check("k", k, n, headsK, dk);
        check("v", v, n, headsV, dv);
        if (v.dtype() != k.dtype()) {
            throw new IllegalArgumentException("k and v must share a dtype, got " + k.dtype() + ", " + v.dtype());
        }
        if (!state.fits(this)) {
            throw new IllegalArgumentException("state " + state + " does not fit " + this);
        }
    }

    /**
     * Checks the tensors of a pass-2 call ({@link AttentionBackend#forward}): those of
     * {@link #checkAdvance}, q [n, Hq, Dk] in the dtype of k and v, o [n, H, Dv] in any dtype,
     * and checkpoints of this spec whose interval and window position are whole chunks.
     */
    public void checkForward(TokenTensor q, TokenTensor k, TokenTensor v, LightningState state, TokenTensor o,
                             Checkpoints checkpoints) {
        checkAdvance(k, v, state);
        int n = k.tokens();
        check("q", q, n, headsQ, dk);
        if (q.dtype() != k.dtype()) {
            throw new IllegalArgumentException("q, k, v must share a dtype, got " + q.dtype() + ", " + k.dtype()
                    + ", " + v.dtype());
        }
        check("o", o, n, heads, dv);
        if (checkpoints.requested()) {
            checkpoints.check(this, n);
        }
    }

    private static void check(String name, TokenTensor t, int n, int heads, int dim) {
        if (t.tokens() != n || t.heads() != heads || t.dim() != dim) {
            throw new IllegalArgumentException(name + " is " + t + ", expected [" + n + ", " + heads + ", " + dim + "]");
        }
    }

    /** Bytes of q, k and v of one token of this spec in {@code dtype} ({@link #inputBytesPerToken(int, int, int, int, int, DType)}). */
    public long inputBytesPerToken(DType dtype) {
        return inputBytesPerToken(headsQ, headsK, headsV, dk, dv, dtype);
    }

    /** Bytes of one state of this spec ({@link LightningState#bytes}), with its normalizer when there is one. */
    public long stateBytes() {
        return LightningState.bytes(this);
    }

    /** Elements of S alone: H * Dk * Dv. */
    public int stateSize() {
        return heads * dk * dv;
    }

    /** Elements of the normalizer z: H * Dk when normalized, else 0. */
    public int normalizerSize() {
        return normalized ? heads * dk : 0;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof AttentionSpec)) {
            return false;
        }
        AttentionSpec s = (AttentionSpec) o;
        return heads == s.heads && headsQ == s.headsQ && headsK == s.headsK && headsV == s.headsV && dk == s.dk
                && dv == s.dv && Arrays.equals(slopes, s.slopes) && Double.compare(scale, s.scale) == 0
                && chunkSize == s.chunkSize && featureMap == s.featureMap && normalized == s.normalized
                && Double.compare(eps, s.eps) == 0;
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(slopes) * 31 + heads * 7 + headsQ * 5 + headsK * 3 + headsV * 11 + dk * 13 + dv * 17
                + chunkSize + featureMap.hashCode() + (normalized ? 19 : 0);
    }

    @Override
    public String toString() {
        String h = ungrouped() ? "H=" + heads : "H=" + heads + " (Hq=" + headsQ + ", Hk=" + headsK + ", Hv=" + headsV + ")";
        String variant = (featureMap == FeatureMap.IDENTITY ? "" : ", phi=" + featureMap.key())
                + (normalized ? ", normalized eps=" + eps : "");
        return "AttentionSpec[" + h + ", Dk=" + dk + ", Dv=" + dv + ", scale=" + scale + ", chunk=" + chunkSize
                + variant + "]";
    }
}
