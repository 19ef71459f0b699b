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
 *
 * <p>Cost: rows x visible keys x (Dk + Dv) per call, so a few query rows at any position of a
 * long sequence (a query block at {@code qStart}) are cheap to check. q, k and v are read into
 * float arrays once per call (the tensors' own values, exactly).
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
        int hq = spec.headsQ();
        int hk = spec.headsK();
        int dk = spec.dk();
        int dv = spec.dv();
        int nk = k.tokens();
        float[] qf = q.toFloats();
        float[] kf = k.toFloats();
        float[] vf = v.toFloats();
        double[] scores = new double[nk];
        double[] acc = new double[dv];
        float[] o = out.o();
        float[] lse = out.lse();
        for (int t = 0; t < q.tokens(); t++) {
            long pos = qStart + t;
            // the keys of the block that query pos sees: j <= pos and j >= its first visible key
            long first = Math.max(spec.firstVisibleKey(pos), kStart);
            long last = Math.min(pos, kStart + nk - 1);
            int from = (int) Math.max(0, Math.min(nk, first - kStart));
            int to = (int) Math.max(from, last - kStart + 1);
            for (int h = 0; h < hq; h++) {
                int kh = spec.kHead(h);
                int row = t * hq + h;
                int qBase = row * dk;
                double m = Double.NEGATIVE_INFINITY;
                for (int j = from; j < to; j++) {
                    if (!spec.visible(pos, kStart + j)) {
                        throw new IllegalStateException("key " + (kStart + j) + " is not visible from " + pos);
                    }
                    int kBase = (j * hk + kh) * dk;
                    double s = 0;
                    for (int d = 0; d < dk; d++) {
                        s += (double) qf[qBase + d] * kf[kBase + d];
                    }
                    scores[j] = s * spec.scale();
                    m = Math.max(m, scores[j]);
                }
                if (from == to) {
                    lse[row] = Float.NEGATIVE_INFINITY;
                    java.util.Arrays.fill(o, row * dv, (row + 1) * dv, 0f);
                    continue;
                }
                java.util.Arrays.fill(acc, 0);
                double sum = 0;
                for (int j = from; j < to; j++) {
                    double w = Math.exp(scores[j] - m);
                    sum += w;
                    int vBase = (j * hk + kh) * dv;
                    for (int d = 0; d < dv; d++) {
                        acc[d] += w * vf[vBase + d];
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
