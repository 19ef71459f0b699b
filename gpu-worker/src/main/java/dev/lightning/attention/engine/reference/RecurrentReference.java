package dev.lightning.attention.engine.reference;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.tensor.TokenTensor;

/**
 * The definition, token by token, in float64: S_t = lambda S_{t-1} + k_t^T v_t, o_t = scale q_t S_t.
 * Slow (every token touches the whole state) and plain on purpose: it is what the other backends
 * are held against. The state is float64 inside one call and rounded to float32 at its end.
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
        return run(spec, null, k, v, state, null);
    }

    @Override
    public LightningState forward(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                                  LightningState state, TokenTensor o) {
        spec.checkForward(q, k, v, state, o);
        return run(spec, q, k, v, state, o);
    }

    private static LightningState run(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                                      LightningState state, TokenTensor o) {
        int heads = spec.heads();
        int dk = spec.dk();
        int dv = spec.dv();
        int n = k.tokens();
        float[] next = new float[spec.stateSize()];
        double[] s = new double[dk * dv];
        double[] out = new double[dv];
        for (int h = 0; h < heads; h++) {
            double lambda = Math.exp(-spec.slope(h));
            for (int i = 0; i < dk; i++) {
                for (int j = 0; j < dv; j++) {
                    s[i * dv + j] = state.get(h, i, j);
                }
            }
            for (int t = 0; t < n; t++) {
                for (int i = 0; i < dk; i++) {
                    double ki = k.get(t, h, i);
                    for (int j = 0; j < dv; j++) {
                        s[i * dv + j] = lambda * s[i * dv + j] + ki * v.get(t, h, j);
                    }
                }
                if (o != null) {
                    java.util.Arrays.fill(out, 0);
                    for (int i = 0; i < dk; i++) {
                        double qi = q.get(t, h, i);
                        for (int j = 0; j < dv; j++) {
                            out[j] += qi * s[i * dv + j];
                        }
                    }
                    for (int j = 0; j < dv; j++) {
                        o.set(t, h, j, (float) (spec.scale() * out[j]));
                    }
                }
            }
            for (int x = 0; x < dk * dv; x++) {
                next[h * dk * dv + x] = (float) s[x];
            }
        }
        return LightningState.own(heads, dk, dv, next);
    }
}
