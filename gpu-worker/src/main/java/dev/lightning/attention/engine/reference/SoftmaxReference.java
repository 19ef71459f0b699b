package dev.lightning.attention.engine.reference;

import dev.lightning.attention.engine.SoftmaxBackend;
import dev.lightning.attention.engine.SoftmaxPartial;
import dev.lightning.attention.engine.SoftmaxSpec;
import dev.lightning.attention.tensor.TokenTensor;

/**
 * The definition of causal softmax attention ({@link SoftmaxSpec}), query by query, in float64:
 * for each query t and head h, the scores s_tj = scale q_t . k_j of the visible keys of the block,
 * their maximum m, lse = m + log sum_j exp(s_tj - m) and o_t = sum_j exp(s_tj - lse) v_j, rounded
 * to float32 at the end. Subtracting the maximum keeps exp in range whatever the scores' size.
 * Slow and plain on purpose: it is what the other backends are held against.
 */
public final class SoftmaxReference implements SoftmaxBackend {

    @Override
    public String name() {
        return "softmax-f64";
    }

    @Override
    public String device() {
        return "cpu";
    }

    @Override
    public void forward(SoftmaxSpec spec, TokenTensor q, long qStart, TokenTensor k, TokenTensor v, long kStart,
                        SoftmaxPartial out) {
        spec.checkForward(q, qStart, k, v, kStart, out);
        int dk = spec.dk();
        int dv = spec.dv();
        int nk = k.tokens();
        double[] scores = new double[nk];
        double[] acc = new double[dv];
        float[] o = out.o();
        float[] lse = out.lse();
        for (int t = 0; t < q.tokens(); t++) {
            long pos = qStart + t;
            for (int h = 0; h < spec.headsQ(); h++) {
                int kh = spec.kHead(h);
                double m = Double.NEGATIVE_INFINITY;
                for (int j = 0; j < nk; j++) {
                    if (!spec.visible(pos, kStart + j)) {
                        scores[j] = Double.NEGATIVE_INFINITY;
                        continue;
                    }
                    double s = 0;
                    for (int d = 0; d < dk; d++) {
                        s += (double) q.get(t, h, d) * k.get(j, kh, d);
                    }
                    scores[j] = s * spec.scale();
                    m = Math.max(m, scores[j]);
                }
                int row = t * spec.headsQ() + h;
                if (m == Double.NEGATIVE_INFINITY) {
                    lse[row] = Float.NEGATIVE_INFINITY;
                    java.util.Arrays.fill(o, row * dv, (row + 1) * dv, 0f);
                    continue;
                }
                java.util.Arrays.fill(acc, 0);
                double sum = 0;
                for (int j = 0; j < nk; j++) {
                    if (scores[j] == Double.NEGATIVE_INFINITY) {
                        continue;
                    }
                    double w = Math.exp(scores[j] - m);
                    sum += w;
                    for (int d = 0; d < dv; d++) {
                        acc[d] += w * v.get(j, kh, d);
                    }
                }
                lse[row] = (float) (m + Math.log(sum));
                for (int d = 0; d < dv; d++) {
                    o[row * dv + d] = (float) (acc[d] / sum);
                }
            }
        }
    }
}
