package dev.lightning.attention.engine.reference;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.tensor.TokenTensor;

/**
 * The block form of lightning attention in float64, written as the formulas read, one dense
 * matrix at a time. For a block of m tokens with state P before it (local index i, j = 0..m-1):
 * <pre>
 *   O_intra = [(Q K^T) .* M] V,        M[i][j] = lambda^(i-j) for i >= j, else 0
 *   O_inter = diag(lambda^(i+1)) Q P
 *   P_next  = lambda^m P + (diag(lambda^(m-1-j)) K)^T V
 *   O       = scale * (O_intra + O_inter)
 * </pre>
 * It checks the algebra the fast kernels use against the recurrence, independently of them.
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
        if (!spec.plain() || !spec.ungrouped()) {
            throw new UnsupportedOperationException(name() + " does not compute " + spec + " yet");
        }
        return run(spec, null, k, v, state, null);
    }

    @Override
    public LightningState forward(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                                  LightningState state, TokenTensor o, Checkpoints checkpoints) {
        spec.checkForward(q, k, v, state, o, checkpoints);
        if (!spec.plain() || !spec.ungrouped() || checkpoints.requested()) {
            throw new UnsupportedOperationException(name() + " does not compute " + spec + " with checkpoints yet");
        }
        return run(spec, q, k, v, state, o);
    }

    private static LightningState run(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                                      LightningState state, TokenTensor o) {
        int dk = spec.dk();
        int dv = spec.dv();
        int n = k.tokens();
        float[] next = new float[spec.stateSize()];
        for (int h = 0; h < spec.heads(); h++) {
            double[][] p = new double[dk][dv];
            for (int i = 0; i < dk; i++) {
                for (int j = 0; j < dv; j++) {
                    p[i][j] = state.get(h, i, j);
                }
            }
            for (int start = 0; start < n; start += spec.chunkSize()) {
                int m = Math.min(spec.chunkSize(), n - start);
                double[][] kb = block(k, h, start, m);
                double[][] vb = block(v, h, start, m);
                if (q != null) {
                    double[][] qb = block(q, h, start, m);
                    double[][] mask = new double[m][m];
                    double[] rowDecay = new double[m];
                    for (int i = 0; i < m; i++) {
                        for (int j = 0; j <= i; j++) {
                            mask[i][j] = spec.decay(h, i - j);
                        }
                        rowDecay[i] = spec.decay(h, i + 1);
                    }
                    double[][] intra = multiply(hadamard(multiply(qb, transpose(kb)), mask), vb);
                    double[][] inter = scaleRows(rowDecay, multiply(qb, p));
                    for (int i = 0; i < m; i++) {
                        for (int j = 0; j < dv; j++) {
                            o.set(start + i, h, j, (float) (spec.scale() * (intra[i][j] + inter[i][j])));
                        }
                    }
                }
                double[] keyDecay = new double[m];
                for (int j = 0; j < m; j++) {
                    keyDecay[j] = spec.decay(h, m - 1 - j);
                }
                double[][] local = multiply(transpose(scaleRows(keyDecay, kb)), vb);
                double blockDecay = spec.decay(h, m);
                for (int i = 0; i < dk; i++) {
                    for (int j = 0; j < dv; j++) {
                        p[i][j] = blockDecay * p[i][j] + local[i][j];
                    }
                }
            }
            for (int i = 0; i < dk; i++) {
                for (int j = 0; j < dv; j++) {
                    next[(h * dk + i) * dv + j] = (float) p[i][j];
                }
            }
        }
        return LightningState.own(spec.heads(), dk, dv, next);
    }

    private static double[][] block(TokenTensor t, int h, int start, int m) {
        double[][] b = new double[m][t.dim()];
        for (int i = 0; i < m; i++) {
            for (int d = 0; d < t.dim(); d++) {
                b[i][d] = t.get(start + i, h, d);
            }
        }
        return b;
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
