package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.FeatureMap;

import java.io.Serializable;
import java.util.Objects;

/**
 * What a run computes beyond what the file fixes (its heads, widths and slopes): the feature map
 * phi, whether outputs are normalized (and by which eps), and every how many tokens the state is
 * recorded ({@code --state-every}; 0 for never). The first three enter the {@link AttentionSpec}
 * ({@link #apply}); the interval is the piece runner's and the output file's business. Immutable.
 */
public final class Variant implements Serializable {
    private static final long serialVersionUID = 1L;

    /** The plain formula without checkpoints: identity phi, no normalization. */
    public static final Variant PLAIN = new Variant(FeatureMap.IDENTITY, false, 0, 0);

    private final FeatureMap featureMap;
    private final boolean normalize;
    private final double eps;
    private final int stateEvery;

    /**
     * @param eps        added to the denominator when {@code normalize}; finite and >= 0
     * @param stateEvery tokens between recorded states, 0 for none
     */
    public Variant(FeatureMap featureMap, boolean normalize, double eps, int stateEvery) {
        if (normalize && !(eps >= 0 && Double.isFinite(eps))) {
            throw new IllegalArgumentException("normalization eps must be finite and >= 0, got " + eps);
        }
        if (stateEvery < 0) {
            throw new IllegalArgumentException("state interval must be >= 0 (0: none), got " + stateEvery);
        }
        this.featureMap = Objects.requireNonNull(featureMap, "featureMap");
        this.normalize = normalize;
        this.eps = normalize ? eps : 0;
        this.stateEvery = stateEvery;
    }

    /** {@code layout} (a file's heads, widths, slopes, with the run's scale and chunk) with this feature map and normalization. */
    public AttentionSpec apply(AttentionSpec layout) {
        AttentionSpec s = layout.withFeatureMap(featureMap);
        return normalize ? s.withNormalization(eps) : s;
    }

    public FeatureMap featureMap() {
        return featureMap;
    }

    /** Whether outputs are divided by phi(q) . z + eps, and states carry the normalizer z. */
    public boolean normalize() {
        return normalize;
    }

    /** N of {@code --state-every}: tokens between recorded states, 0 for none. */
    public int stateEvery() {
        return stateEvery;
    }

    /** Whether this is the plain formula without checkpoints. */
    public boolean plain() {
        return featureMap == FeatureMap.IDENTITY && !normalize && stateEvery == 0;
    }

    /** Whether states are recorded along the way. */
    public boolean checkpoints() {
        return stateEvery > 0;
    }

    /**
     * How many checkpoints fall in tokens [position, position + tokens) of a sequence: those c with
     * position < (c+1)N <= position + tokens ({@link Checkpoints#count}).
     */
    public long checkpointsIn(long position, long tokens) {
        return Checkpoints.count(stateEvery, position, tokens);
    }

    @Override
    public String toString() {
        return "phi=" + featureMap.key() + (normalize ? ", normalized eps=" + eps : "")
                + (stateEvery > 0 ? ", states every " + stateEvery : "");
    }
}
