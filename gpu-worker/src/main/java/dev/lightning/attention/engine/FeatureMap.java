package dev.lightning.attention.engine;

import java.util.Locale;

/**
 * The feature map phi of normalized linear attention, applied elementwise to q and k before
 * anything else (scores, states and normalizer all see phi(q), phi(k)). The kernels mirror the
 * codes ({@link #code}) in their argument struct.
 */
public enum FeatureMap {
    /** phi(x) = x: plain lightning attention. */
    IDENTITY("identity", 0),
    /** phi(x) = elu(x) + 1 = x + 1 for x > 0, else exp(x): positive, as Katharopoulos et al. use it. */
    ELU1("elu1", 1),
    /** phi(x) = max(x, 0). */
    RELU("relu", 2);

    private final String key;
    private final int code;

    FeatureMap(String key, int code) {
        this.key = key;
        this.code = code;
    }

    /** The name on the command line and in reports. */
    public String key() {
        return key;
    }

    /** The value the kernels switch on (lightning_args.cuh). */
    public int code() {
        return code;
    }

    /** phi(x) in float64, the references' arithmetic. */
    public double apply(double x) {
        switch (this) {
            case ELU1:
                return x > 0 ? x + 1 : Math.exp(x);
            case RELU:
                return x > 0 ? x : 0;
            default:
                return x;
        }
    }

    /** phi(x) in float32, the fast backends' arithmetic (exp in float64, rounded once). */
    public float apply(float x) {
        switch (this) {
            case ELU1:
                return x > 0 ? x + 1f : (float) Math.exp(x);
            case RELU:
                return x > 0 ? x : 0f;
            default:
                return x;
        }
    }

    /** The map of that name ("identity", "elu1", "relu"), case-insensitive. */
    public static FeatureMap of(String name) {
        for (FeatureMap f : values()) {
            if (f.key.equals(name.toLowerCase(Locale.ROOT))) {
                return f;
            }
        }
        throw new IllegalArgumentException("unknown feature map '" + name + "': expected identity, elu1 or relu");
    }
}
