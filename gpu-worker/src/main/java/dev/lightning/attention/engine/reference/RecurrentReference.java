package dev.lightning.attention.engine.reference;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.tensor.TokenTensor;

/**
 * The definition, token by token, in float64, for every variant the spec describes:
 * <pre>
 *   S_t = lambda S_{t-1} + phi(k_t)^T v_t        z_t = lambda z_{t-1} + phi(k_t)   (normalized only)
 *   o_t = scale phi(q_t) S_t                      (plain)
 *   o_t = scale (phi(q_t) S_t) / (phi(q_t) . z_t + eps)   (normalized)
 * </pre>
 * with head h reading q head {@code spec.qHead(h)}, k head {@code spec.kHead(h)} and v head
 * {@code spec.vHead(h)}. Slow (every token touches the whole state) and plain on purpose: it is
 * what the other backends are held against. The state is float64 inside one call and rounded to
 * float32 at its end and at each checkpoint.
 */
public final class RecurrentReference implements AttentionBackend {

    @Override
    public String name() {
        return "recurrent-f64";
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
        int heads = spec.heads();
        int dk = spec.dk();
        int dv = spec.dv();
        int n = k.tokens();
        boolean normalized = spec.normalized();
        FeatureMap phi = spec.featureMap();
        float[] next = new float[spec.stateSize()];
        float[] nextZ = normalized ? new float[spec.normalizerSize()] : null;
        double[] s = new double[dk * dv];
        double[] z = new double[dk];
        double[] qt = new double[dk];
        double[] kt = new double[dk];
        double[] vt = new double[dv];
        double[] out = new double[dv];
        int nextCheckpoint = 0;
        for (int h = 0; h < heads; h++) {
            int hq = spec.qHead(h);
            int hk = spec.kHead(h);
            int hv = spec.vHead(h);
            double lambda = Math.exp(-spec.slope(h));
            for (int i = 0; i < dk; i++) {
                for (int j = 0; j < dv; j++) {
                    s[i * dv + j] = state.get(h, i, j);
                }
                z[i] = normalized ? state.normalizer(h, i) : 0;
            }
            nextCheckpoint = 0;
            for (int t = 0; t < n; t++) {
                for (int j = 0; j < dv; j++) {
                    vt[j] = v.get(t, hv, j);
                }
                for (int i = 0; i < dk; i++) {
                    kt[i] = phi.apply((double) k.get(t, hk, i));
                    double ki = kt[i];
                    for (int j = 0; j < dv; j++) {
                        s[i * dv + j] = lambda * s[i * dv + j] + ki * vt[j];
                    }
                    z[i] = lambda * z[i] + ki;
                }
                if (o != null) {
                    java.util.Arrays.fill(out, 0);
                    double den = 0;
                    for (int i = 0; i < dk; i++) {
                        qt[i] = phi.apply((double) q.get(t, hq, i));
                        double qi = qt[i];
                        for (int j = 0; j < dv; j++) {
                            out[j] += qi * s[i * dv + j];
                        }
                        den += qi * z[i];
                    }
                    double divide = normalized ? den + spec.eps() : 1;
                    for (int j = 0; j < dv; j++) {
                        o.set(t, h, j, (float) (spec.scale() * out[j] / divide));
                    }
                }
                if (nextCheckpoint < checkpoints.count() && checkpoints.tokenAfter(nextCheckpoint) == t) {
                    float[] headKv = new float[dk * dv];
                    float[] headZ = new float[dk];
                    for (int x = 0; x < dk * dv; x++) {
                        headKv[x] = (float) s[x];
                    }
                    for (int i = 0; i < dk; i++) {
                        headZ[i] = (float) z[i];
                    }
                    checkpoints.putHead(nextCheckpoint, h, headKv, normalized ? headZ : null);
                    nextCheckpoint++;
                }
            }
            for (int x = 0; x < dk * dv; x++) {
                next[h * dk * dv + x] = (float) s[x];
            }
            if (normalized) {
                for (int i = 0; i < dk; i++) {
                    nextZ[h * dk + i] = (float) z[i];
                }
            }
        }
        return LightningState.own(heads, dk, dv, next, nextZ);
    }
}
