package dev.lightning.attention.engine.reference;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.tensor.TokenTensor;

/**
 * The block form of lightning attention in float64, for every variant of the spec, written as the
 * formulas read, one dense matrix at a time. Head h takes Q, K, V from q head {@code spec.qHead(h)},
 * k head {@code spec.kHead(h)} and v head {@code spec.vHead(h)}, with phi applied to Q and K before
 * anything else. For a block of m tokens with state P and normalizer zP before it (local index
 * i, j = 0..m-1):
 * <pre>
 *   A       = (Q K^T) .* M,              M[i][j] = lambda^(i-j) for i >= j, else 0
 *   num     = A V   + diag(lambda^(i+1)) Q P
 *   den     = A 1   + diag(lambda^(i+1)) Q zP                     (normalized only)
 *   O       = scale * num                                         (plain)
 *   O       = scale * num ./ (den + eps)    (row i divided by den_i + eps; normalized)
 *   P'      = lambda^m P  + (diag(lambda^(m-1-j)) K)^T V
 *   zP'     = lambda^m zP + (diag(lambda^(m-1-j)) K)^T 1
 * </pre>
 * num and den are the recurrence's phi(q_i) S_i and phi(q_i) . z_i unrolled over the block: S_i is
 * lambda^(i+1) P plus the block's own tokens up to i, each decayed by lambda^(i-j). Checkpoints
 * fall on block ends (their interval and the window's position are whole chunks), so a checkpoint
 * is P' (and zP') of the block it ends, rounded to float32.
 *
 * <p>It checks the algebra the fast kernels use against the recurrence, independently of them.
 */
public final class ChunkedReference implements AttentionBackend {

    @Override
    public String name() {
        return "chunked-f64";
    }

    @Override
    public String device() {
        return "cpu";
    }

    @Override
    public LightningState advance(AttentionSpec spec, TokenTensor k, TokenTensor v, LightningState state) {
        spec.checkAdvance(k, v, state);
        return run(spec, null, k, v, state, null, Checkpoints.none());
    }

    @Override
    public LightningState forward(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                                  LightningState state, TokenTensor o, Checkpoints checkpoints) {
        spec.checkForward(q, k, v, state, o, checkpoints);
        return run(spec, q, k, v, state, o, checkpoints);
    }

    private static LightningState run(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                                      LightningState state, TokenTensor o, Checkpoints checkpoints) {
        int dk = spec.dk();
        int dv = spec.dv();
        int n = k.tokens();
        boolean normalized = spec.normalized();
        FeatureMap phi = spec.featureMap();
        float[] next = new float[spec.stateSize()];
        float[] nextZ = normalized ? new float[spec.normalizerSize()] : null;
        for (int h = 0; h < spec.heads(); h++) {
            double[][] p = new double[dk][dv];
            double[][] zp = new double[dk][1];
            for (int i = 0; i < dk; i++) {
                for (int j = 0; j < dv; j++) {
                    p[i][j] = state.get(h, i, j);
                }
                zp[i][0] = normalized ? state.normalizer(h, i) : 0;
            }
            int checkpoint = 0;
            for (int start = 0; start < n; start += spec.chunkSize()) {
                int m = Math.min(spec.chunkSize(), n - start);
                double[][] kb = block(k, spec.kHead(h), start, m, phi);
                double[][] vb = block(v, spec.vHead(h), start, m, FeatureMap.IDENTITY);
                if (q != null) {
                    double[][] qb = block(q, spec.qHead(h), start, m, phi);
                    double[][] mask = new double[m][m];
                    double[] rowDecay = new double[m];
                    for (int i = 0; i < m; i++) {
                        for (int j = 0; j <= i; j++) {
                            mask[i][j] = spec.decay(h, i - j);
                        }
                        rowDecay[i] = spec.decay(h, i + 1);
                    }
                    double[][] a = hadamard(multiply(qb, transpose(kb)), mask);
                    double[][] num = add(multiply(a, vb), scaleRows(rowDecay, multiply(qb, p)));
                    double[][] den = add(multiply(a, ones(m)), scaleRows(rowDecay, multiply(qb, zp)));
                    for (int i = 0; i < m; i++) {
                        double divide = normalized ? den[i][0] + spec.eps() : 1;
                        for (int j = 0; j < dv; j++) {
                            o.set(start + i, h, j, (float) (spec.scale() * num[i][j] / divide));
                        }
                    }
                }
                double[] keyDecay = new double[m];
                for (int j = 0; j < m; j++) {
                    keyDecay[j] = spec.decay(h, m - 1 - j);
                }
                double[][] decayedKeys = transpose(scaleRows(keyDecay, kb));
                double blockDecay = spec.decay(h, m);
                p = add(scale(blockDecay, p), multiply(decayedKeys, vb));
                zp = add(scale(blockDecay, zp), multiply(decayedKeys, ones(m)));
                while (checkpoint < checkpoints.count() && checkpoints.tokenAfter(checkpoint) == start + m - 1) {
                    checkpoints.putHead(checkpoint++, h, rounded(p), normalized ? rounded(zp) : null);
                }
            }
            if (checkpoint != checkpoints.count()) {
                throw new IllegalStateException("checkpoint " + checkpoint + " of the window falls after token "
                        + checkpoints.tokenAfter(checkpoint) + ", not at the end of a block of " + spec.chunkSize()
                        + " tokens: Checkpoints.check should have refused it");
            }
            System.arraycopy(rounded(p), 0, next, h * dk * dv, dk * dv);
            if (normalized) {
                System.arraycopy(rounded(zp), 0, nextZ, h * dk, dk);
            }
        }
        return LightningState.own(spec.heads(), dk, dv, next, nextZ);
    }

    /** Rows {@code [start, start + m)} of head {@code h} of {@code t}, through {@code phi}. */
    private static double[][] block(TokenTensor t, int h, int start, int m, FeatureMap phi) {
        double[][] b = new double[m][t.dim()];
        for (int i = 0; i < m; i++) {
            for (int d = 0; d < t.dim(); d++) {
                b[i][d] = phi.apply((double) t.get(start + i, h, d));
            }
        }
        return b;
    }

    /** A matrix rounded to float32, row-major. */
    private static float[] rounded(double[][] a) {
        int cols = a[0].length;
        float[] f = new float[a.length * cols];
        for (int i = 0; i < a.length; i++) {
            for (int j = 0; j < cols; j++) {
                f[i * cols + j] = (float) a[i][j];
            }
        }
        return f;
    }

    /** The column of m ones: A 1 sums the rows of A. */
    private static double[][] ones(int m) {
        double[][] c = new double[m][1];
        for (double[] row : c) {
            row[0] = 1;
        }
        return c;
    }

    private static double[][] multiply(double[][] a, double[][] b) {
        int rows = a.length;
        int inner = b.length;
        int cols = b[0].length;
        double[][] c = new double[rows][cols];
        for (int i = 0; i < rows; i++) {
            for (int x = 0; x < inner; x++) {
                double aix = a[i][x];
                for (int j = 0; j < cols; j++) {
                    c[i][j] += aix * b[x][j];
                }
            }
        }
        return c;
    }

    private static double[][] add(double[][] a, double[][] b) {
        double[][] c = new double[a.length][a[0].length];
        for (int i = 0; i < a.length; i++) {
            for (int j = 0; j < a[0].length; j++) {
                c[i][j] = a[i][j] + b[i][j];
            }
        }
        return c;
    }

    private static double[][] scale(double s, double[][] a) {
        double[][] c = new double[a.length][a[0].length];
        for (int i = 0; i < a.length; i++) {
            for (int j = 0; j < a[0].length; j++) {
                c[i][j] = s * a[i][j];
            }
        }
        return c;
    }

    private static double[][] transpose(double[][] a) {
        double[][] t = new double[a[0].length][a.length];
        for (int i = 0; i < a.length; i++) {
            for (int j = 0; j < a[0].length; j++) {
                t[j][i] = a[i][j];
            }
        }
        return t;
    }

    private static double[][] hadamard(double[][] a, double[][] b) {
        double[][] c = new double[a.length][a[0].length];
        for (int i = 0; i < a.length; i++) {
            for (int j = 0; j < a[0].length; j++) {
                c[i][j] = a[i][j] * b[i][j];
            }
        }
        return c;
    }

    private static double[][] scaleRows(double[] s, double[][] a) {
        double[][] c = new double[a.length][];
        for (int i = 0; i < a.length; i++) {
            c[i] = a[i].clone();
            for (int j = 0; j < c[i].length; j++) {
                c[i][j] *= s[i];
            }
        }
        return c;
    }
}
