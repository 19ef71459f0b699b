package dev.lightning.attention.engine.reference;

import dev.lightning.attention.engine.SoftmaxBackend;
import dev.lightning.attention.engine.SoftmaxPartial;
import dev.lightning.attention.engine.SoftmaxSpec;
import dev.lightning.attention.tensor.TokenTensor;

/**
 * Causal softmax attention by key blocks merged with their log-sum-exps, all in float64: the
 * split the job and the fast backends make, without their float32. For each query t and head h,
 * the keys of the call are cut into blocks of {@code blockTokens} (from {@code kStart}); block b
 * gives, over its visible keys, m_b = max s_tj, lse_b = m_b + log sum_j exp(s_tj - m_b) and
 * o_b = sum_j exp(s_tj - lse_b) v_j, and the blocks are merged in order:
 * <pre>
 *   lse = max(lse, lse_b) + log(1 + exp(-|lse - lse_b|)),   o = exp(lse_a - lse) o_a + exp(lse_b - lse) o_b
 * </pre>
 * (a block that sees no key, lse_b = -inf, is the merge's identity). Rounded to float32 once, at
 * the end. Held against {@link SoftmaxReference} it checks the merge formula itself, apart from
 * float32 rounding; held against a fast backend, the same thing the split does.
 */
public final class BlockedSoftmaxReference implements SoftmaxBackend {
    private final int blockTokens;

    /** @param blockTokens keys per block, at least 1 */
    public BlockedSoftmaxReference(int blockTokens) {
        if (blockTokens < 1) {
            throw new IllegalArgumentException("key blocks must hold at least 1 token, got " + blockTokens);
        }
        this.blockTokens = blockTokens;
    }

    @Override
    public String name() {
        return "softmax-blocked-f64";
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
        double[] scores = new double[blockTokens];
        double[] acc = new double[dv];
        double[] merged = new double[dv];
        float[] o = out.o();
        float[] lse = out.lse();
        for (int t = 0; t < q.tokens(); t++) {
            long pos = qStart + t;
            for (int h = 0; h < hq; h++) {
                int kh = spec.kHead(h);
                int row = t * hq + h;
                int qBase = row * dk;
                double lseAll = Double.NEGATIVE_INFINITY;
                java.util.Arrays.fill(merged, 0);
                for (int b0 = 0; b0 < nk; b0 += blockTokens) {
                    int n = Math.min(blockTokens, nk - b0);
                    // this block alone: its visible keys' scores, their max, sum and weighted values
                    double m = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j < n; j++) {
                        scores[j] = Double.NEGATIVE_INFINITY;
                        if (spec.visible(pos, kStart + b0 + j)) {
                            int kBase = ((b0 + j) * hk + kh) * dk;
                            double s = 0;
                            for (int d = 0; d < dk; d++) {
                                s += (double) qf[qBase + d] * kf[kBase + d];
                            }
                            scores[j] = s * spec.scale();
                            m = Math.max(m, scores[j]);
                        }
                    }
                    if (m == Double.NEGATIVE_INFINITY) {
                        continue; // lse_b = -inf: the identity
                    }
                    java.util.Arrays.fill(acc, 0);
                    double sum = 0;
                    for (int j = 0; j < n; j++) {
                        if (scores[j] == Double.NEGATIVE_INFINITY) {
                            continue;
                        }
                        double w = Math.exp(scores[j] - m);
                        sum += w;
                        int vBase = ((b0 + j) * hk + kh) * dv;
                        for (int d = 0; d < dv; d++) {
                            acc[d] += w * vf[vBase + d];
                        }
                    }
                    double lseB = m + Math.log(sum);
                    if (lseAll == Double.NEGATIVE_INFINITY) {
                        lseAll = lseB;
                        for (int d = 0; d < dv; d++) {
                            merged[d] = acc[d] / sum;
                        }
                        continue;
                    }
                    double l = Math.max(lseAll, lseB) + Math.log1p(Math.exp(-Math.abs(lseAll - lseB)));
                    double wa = Math.exp(lseAll - l);
                    double wb = Math.exp(lseB - l);
                    for (int d = 0; d < dv; d++) {
                        merged[d] = wa * merged[d] + wb * (acc[d] / sum);
                    }
                    lseAll = l;
                }
                lse[row] = (float) lseAll;
                for (int d = 0; d < dv; d++) {
                    o[row * dv + d] = (float) merged[d];
                }
            }
        }
    }
}
