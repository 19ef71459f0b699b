package dev.lightning.attention.engine;

/**
 * Per-head decay rates (lambda_h = exp(-slope_h)): what a valid one is, and the defaults for files that
 * carry no {@code slope}.
 */
public final class Slopes {
    private Slopes() {
    }

    /**
     * The one rule for a decay rate, wherever one comes from (a spec, a file's {@code slope}, a table's
     * column, a stored state's record): finite and >= 0, so that lambda = exp(-slope) is in (0, 1]. NaN
     * fails it (the comparison is false), so a null read as NaN does too.
     */
    public static boolean isDecayRate(double slope) {
        return slope >= 0 && slope != Double.POSITIVE_INFINITY;
    }

    /**
     * MiniMax-01's slopes (the ALiBi construction): for H a power of two, 2^(-8(h+1)/H); otherwise
     * those of the largest power of two p below H followed by every other slope of 2p.
     */
    public static double[] minimax(int heads) {
        if (heads < 1) {
            throw new IllegalArgumentException("heads must be >= 1, got " + heads);
        }
        int p = Integer.highestOneBit(heads);
        double[] out = new double[heads];
        double[] base = powerOfTwo(p);
        System.arraycopy(base, 0, out, 0, p);
        if (p < heads) {
            double[] finer = powerOfTwo(2 * p);
            for (int i = p, j = 0; i < heads; i++, j += 2) {
                out[i] = finer[j];
            }
        }
        return out;
    }

    /**
     * MiniMax-01's slopes for layer {@code layer} of {@code layers}: {@link #minimax(int)} times
     * (1 - layer / (layers - 1) + 1e-5).
     */
    public static double[] minimax(int heads, int layer, int layers) {
        checkLayer(layer, layers);
        double[] s = minimax(heads);
        double factor = layers == 1 ? 1 + 1e-5 : 1.0 - (double) layer / (layers - 1) + 1e-5;
        for (int h = 0; h < heads; h++) {
            s[h] *= factor;
        }
        return s;
    }

    /**
     * The TransNormer formula that fla's {@code chunk_lightning_attn} uses:
     * slope_h = (8 / H) * (1 - layer / layers) * h, so head 0 does not decay.
     */
    public static double[] transnormer(int heads, int layer, int layers) {
        if (heads < 1) {
            throw new IllegalArgumentException("heads must be >= 1, got " + heads);
        }
        checkLayer(layer, layers);
        double[] s = new double[heads];
        for (int h = 0; h < heads; h++) {
            s[h] = 8.0 / heads * (1.0 - (double) layer / layers) * h;
        }
        return s;
    }

    private static void checkLayer(int layer, int layers) {
        if (layers < 1 || layer < 0 || layer >= layers) {
            throw new IllegalArgumentException("layer must be in 0.." + (layers - 1) + " of " + layers + " layers, got " + layer);
        }
    }

    private static double[] powerOfTwo(int n) {
        double[] s = new double[n];
        for (int h = 0; h < n; h++) {
            s[h] = Math.pow(2.0, -8.0 * (h + 1) / n);
        }
        return s;
    }
}
