package dev.lightning.attention.engine.cpu;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.tensor.TokenTensor;

import java.util.Arrays;

/**
 * The fast CPU path: the block form in float32 with a float32 state, one head at a time so the
 * state ({@code Dk x Dv}) stays in cache, inner loops over contiguous Dv rows that the JIT
 * vectorizes. Per token it costs about 2 Dk Dv + chunk (Dk + Dv) / 2 multiply-adds per head.
 *
 * <p>Every variant of the spec, in the same loops. Head h copies q head {@code spec.qHead(h)},
 * k head {@code spec.kHead(h)} and v head {@code spec.vHead(h)} ({@link TokenTensor#readHead});
 * a k or v head shared by a group is read again for each head of it, which costs Dk + Dv loads per
 * token against the 2 Dk Dv multiply-adds of the head. The feature map is applied once to those
 * copies of q and k. Normalizing adds, per block of m tokens with normalizer zP before it
 * (local i, j):
 * <pre>
 *   den_i = sum_{j <= i} lambda^(i-j) (q_i . k_j) + lambda^(i+1) q_i . zP     o_i = scale num_i / (den_i + eps)
 *   zP'   = lambda^m zP + sum_j lambda^(m-1-j) k_j
 * </pre>
 * The intra-block scores lambda^(i-j) (q_i . k_j) are the ones the numerator already forms, so
 * the denominator costs one addition per score and one Dk dot product per token. Checkpoints fall
 * on block ends (the spec checks that their interval and the window's position are whole chunks):
 * after a block whose last token is one, P and zP are recorded for the head.
 *
 * <p>Precision: a block's contribution to the state (and to z) is summed apart and added once per
 * block (lambda^m P + dP), so the carried state sees T / chunk additions, not T. Decay powers come
 * from exp(-slope * n) in float64, rounded once.
 */
public final class CpuBackend implements AttentionBackend {

    @Override
    public String name() {
        return "cpu";
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
        final int dk = spec.dk();
        final int dv = spec.dv();
        final int n = k.tokens();
        final int chunk = spec.chunkSize();
        final int stateSize = dk * dv;
        final float scale = (float) spec.scale();
        final boolean normalized = spec.normalized();
        final FeatureMap phi = spec.featureMap();
        float[] next = new float[spec.stateSize()];
        float[] nextZ = normalized ? new float[spec.normalizerSize()] : null;
        float[] qh = q == null ? null : new float[n * dk];
        float[] kh = new float[n * dk];
        float[] vh = new float[n * dv];
        float[] oh = o == null ? null : new float[n * dv];
        float[] den = o != null && normalized ? new float[n] : null;
        float[] p = new float[stateSize];
        float[] dp = new float[stateSize];
        float[] z = normalized ? new float[dk] : null;
        float[] dz = normalized ? new float[dk] : null;
        float[] pow = new float[chunk + 1];
        float[] incoming = state.data();
        float[] incomingZ = normalized ? state.normalizerData() : null;

        for (int h = 0; h < spec.heads(); h++) {
            for (int x = 0; x <= chunk; x++) {
                pow[x] = (float) spec.decay(h, x);
            }
            k.readHead(spec.kHead(h), 0, n, kh);
            map(phi, kh, n * dk);
            v.readHead(spec.vHead(h), 0, n, vh);
            if (q != null) {
                q.readHead(spec.qHead(h), 0, n, qh);
                map(phi, qh, n * dk);
                Arrays.fill(oh, 0f);
            }
            System.arraycopy(incoming, h * stateSize, p, 0, stateSize);
            if (normalized) {
                System.arraycopy(incomingZ, h * dk, z, 0, dk);
            }

            int checkpoint = 0;
            for (int start = 0; start < n; start += chunk) {
                int m = Math.min(chunk, n - start);
                block(qh, kh, vh, oh, den, p, dp, z, dz, pow, start, m, dk, dv);
                while (checkpoint < checkpoints.count() && checkpoints.tokenAfter(checkpoint) == start + m - 1) {
                    checkpoints.putHead(checkpoint++, h, p, z);
                }
            }
            if (checkpoint != checkpoints.count()) {
                throw new IllegalStateException("checkpoint " + checkpoint + " of the window falls after token "
                        + checkpoints.tokenAfter(checkpoint) + ", not at the end of a block of " + chunk
                        + " tokens: Checkpoints.check should have refused it");
            }

            if (q != null) {
                if (normalized) {
                    float eps = (float) spec.eps();
                    for (int t = 0; t < n; t++) {
                        float f = scale / (den[t] + eps);
                        for (int x = t * dv, end = x + dv; x < end; x++) {
                            oh[x] *= f;
                        }
                    }
                } else {
                    for (int x = 0; x < oh.length; x++) {
                        oh[x] *= scale;
                    }
                }
                o.writeHead(h, 0, n, oh);
            }
            System.arraycopy(p, 0, next, h * stateSize, stateSize);
            if (normalized) {
                System.arraycopy(z, 0, nextZ, h * dk, dk);
            }
        }
        return LightningState.own(spec.heads(), dk, dv, next, nextZ);
    }

    /** x[0..n) = phi(x[0..n)), in place; nothing to do for the identity. */
    private static void map(FeatureMap phi, float[] x, int n) {
        if (phi == FeatureMap.IDENTITY) {
            return;
        }
        for (int i = 0; i < n; i++) {
            x[i] = phi.apply(x[i]);
        }
    }

    /**
     * One block of m tokens at {@code start} for one head: adds the block's numerators to
     * {@code oh} (when {@code qh} is non-null) and, normalizing ({@code den} non-null), writes
     * their denominators without eps to {@code den}; advances the state {@code p} and, when
     * {@code z} is non-null, the normalizer {@code z}. A method of its own so the JIT compiles it
     * early and fully; it runs T / chunk times per head.
     */
    private static void block(float[] qh, float[] kh, float[] vh, float[] oh, float[] den, float[] p, float[] dp,
                              float[] z, float[] dz, float[] pow, int start, int m, int dk, int dv) {
        if (qh != null) {
            for (int i = 0; i < m; i++) {
                int qRow = (start + i) * dk;
                int oRow = (start + i) * dv;
                // inter-block: lambda^(i+1) q_i P (and lambda^(i+1) q_i . zP)
                float rowDecay = pow[i + 1];
                for (int d = 0; d < dk; d++) {
                    axpy(rowDecay * qh[qRow + d], p, d * dv, oh, oRow, dv);
                }
                // intra-block: sum_{j <= i} lambda^(i-j) (q_i . k_j) v_j (and the same sum of the scores)
                float scores = 0f;
                for (int jt = 0; jt <= i; jt++) {
                    float a = dot(qh, qRow, kh, (start + jt) * dk, dk) * pow[i - jt];
                    axpy(a, vh, (start + jt) * dv, oh, oRow, dv);
                    scores += a;
                }
                if (den != null) {
                    den[start + i] = scores + rowDecay * dot(qh, qRow, z, 0, dk);
                }
            }
        }
        // state: P <- lambda^m P + sum_j lambda^(m-1-j) k_j^T v_j, the block's sum kept apart (z alike)
        Arrays.fill(dp, 0f);
        if (z != null) {
            Arrays.fill(dz, 0f);
        }
        for (int jt = 0; jt < m; jt++) {
            float w = pow[m - 1 - jt];
            int kRow = (start + jt) * dk;
            int vRow = (start + jt) * dv;
            for (int d = 0; d < dk; d++) {
                axpy(w * kh[kRow + d], vh, vRow, dp, d * dv, dv);
            }
            if (z != null) {
                axpy(w, kh, kRow, dz, 0, dk);
            }
        }
        float blockDecay = pow[m];
        for (int x = 0; x < p.length; x++) {
            p[x] = blockDecay * p[x] + dp[x];
        }
        if (z != null) {
            for (int d = 0; d < z.length; d++) {
                z[d] = blockDecay * z[d] + dz[d];
            }
        }
    }

    /** y[yo..yo+n) += a * x[xo..xo+n): small and alone so the JIT inlines and vectorizes it. */
    private static void axpy(float a, float[] x, int xo, float[] y, int yo, int n) {
        for (int j = 0; j < n; j++) {
            y[yo + j] += a * x[xo + j];
        }
    }

    private static float dot(float[] x, int xo, float[] y, int yo, int n) {
        float sum = 0f;
        for (int j = 0; j < n; j++) {
            sum += x[xo + j] * y[yo + j];
        }
        return sum;
    }
}
