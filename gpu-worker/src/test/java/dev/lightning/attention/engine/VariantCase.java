package dev.lightning.attention.engine;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * One test case of the attention variants, shared by the tests of every backend (CPU here, GPU in
 * engine.cuda): a spec with grouped heads, a feature map and maybe normalization, fresh random
 * inputs for it, an initial state (with normalizer when normalizing) or zero, and a checkpoint
 * interval (0: none).
 *
 * @param tokens  T
 * @param hq      q heads
 * @param hk      k heads
 * @param hv      v heads (H = max of the three)
 * @param slopes  "1e-6", "8" or "minimax" (BackendAgreementTest.slopes)
 * @param every   checkpoint interval in tokens, a multiple of 64, or 0
 */
public record VariantCase(int tokens, int hq, int hk, int hv, int dk, int dv, String slopes, FeatureMap phi,
                          boolean normalized, boolean initial, DType dtype, int every, long seed) {
    public static final int CHUNK = 64;
    public static final double SCALE = 0.75;
    public static final double EPS = 1e-5;

    public int heads() {
        return Math.max(hq, Math.max(hk, hv));
    }

    public AttentionSpec spec() {
        AttentionSpec s = new AttentionSpec(heads(), dk, dv, BackendAgreementTest.slopes(slopes, heads()), SCALE, CHUNK)
                .withHeads(hq, hk, hv).withFeatureMap(phi);
        return normalized ? s.withNormalization(EPS) : s;
    }

    /** q, k, v of this case, uniform in [-1, 1) from its seed. */
    public TokenTensor[] inputs() {
        SplittableRandom rnd = new SplittableRandom(seed);
        return new TokenTensor[] {Inputs.random(rnd, dtype, tokens, hq, dk), Inputs.random(rnd, dtype, tokens, hk, dk),
                Inputs.random(rnd, dtype, tokens, hv, dv)};
    }

    /**
     * The state the case starts from: random S (and, normalizing, a positive random z, as a
     * normalizer of a positive feature map is), or zero.
     */
    public LightningState initialState() {
        AttentionSpec spec = spec();
        if (!initial) {
            return LightningState.zeros(spec);
        }
        return Inputs.randomState(new SplittableRandom(seed ^ 0x5DEECE66DL), spec);
    }

    /** The checkpoints of a window of this case at sequence position {@code position} with {@code n} tokens. */
    public Checkpoints checkpoints(long position, int n) {
        return every == 0 ? Checkpoints.none() : Checkpoints.of(spec(), every, position, n);
    }

    /**
     * The cases: awkward lengths (1, 63, 1000 and chunk edges), Dk != Dv, H not a power of two,
     * groups of 1, 2, 3 and 8 (GQA, grouped values, mixed), every feature map with and without
     * normalization, slopes 1e-6, 8 and the default ones, with and without initial state, every
     * dtype, checkpoints every 64 or 128 tokens. Each case differs from the one before in several
     * ways, so a few dozen cover every value of every axis and many pairs.
     */
    public static List<VariantCase> cases() {
        int[] lengths = {1, 63, 64, 129, 1000};
        int[][] heads = {{6, 3, 3}, {2, 2, 6}, {8, 1, 1}, {3, 3, 3}, {6, 2, 3}, {16, 2, 2}};
        int[][] widths = {{32, 16}, {16, 24}, {24, 40}};
        String[] slopeSets = {"1e-6", "8", "minimax"};
        FeatureMap[] maps = FeatureMap.values();
        int[] intervals = {0, 64, 128};
        List<VariantCase> out = new ArrayList<>();
        int i = 0;
        for (int t : lengths) {
            for (boolean normalized : new boolean[] {false, true}) {
                for (FeatureMap phi : maps) {
                    int[] h = heads[i % heads.length];
                    int[] w = widths[(i / 2) % widths.length];
                    out.add(new VariantCase(t, h[0], h[1], h[2], w[0], w[1], slopeSets[i % slopeSets.length], phi,
                            normalized, i % 2 == 1, DType.values()[(i / 3) % DType.values().length],
                            intervals[(i / 4) % intervals.length], 7000L + i));
                    i++;
                }
            }
        }
        return out;
    }

    /**
     * How ill-conditioned the normalized outputs of this case are: the largest, over tokens and
     * heads, of (|phi(q_t)| . |z_t| + eps) / |phi(q_t) . z_t + eps|, the denominator's magnitude
     * over its value, in float64 from the inputs and the initial normalizer; 1 when not
     * normalizing. A positive feature map (elu1, relu) keeps it 1 (no cancellation); the identity
     * lets phi(q) . z cross zero, and a float32 backend's relative error in the denominator, a few
     * ulps of its magnitude, grows by this factor in o. Tolerances for float32 backends scale with it.
     */
    public double denominatorCondition() {
        if (!normalized) {
            return 1;
        }
        AttentionSpec spec = spec();
        TokenTensor[] qkv = inputs();
        LightningState s0 = initialState();
        double worst = 1;
        for (int h = 0; h < spec.heads(); h++) {
            double lambda = Math.exp(-spec.slope(h));
            double[] z = new double[dk];
            for (int d = 0; d < dk; d++) {
                z[d] = s0.normalizer(h, d);
            }
            for (int t = 0; t < tokens; t++) {
                double value = EPS;
                double magnitude = EPS;
                for (int d = 0; d < dk; d++) {
                    z[d] = lambda * z[d] + phi.apply((double) qkv[1].get(t, spec.kHead(h), d));
                    double term = phi.apply((double) qkv[0].get(t, spec.qHead(h), d)) * z[d];
                    value += term;
                    magnitude += Math.abs(term);
                }
                worst = Math.max(worst, magnitude / Math.abs(value));
            }
        }
        return worst;
    }

    @Override
    public String toString() {
        return "T=" + tokens + " Hq/Hk/Hv=" + hq + "/" + hk + "/" + hv + " Dk=" + dk + " Dv=" + dv + " slopes=" + slopes
                + " phi=" + phi.key() + (normalized ? " normalized" : "") + (initial ? " initial" : "") + " " + dtype
                + (every > 0 ? " every=" + every : "");
    }
}
