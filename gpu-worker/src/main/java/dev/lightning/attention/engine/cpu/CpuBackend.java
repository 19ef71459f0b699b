package dev.lightning.attention.engine.cpu;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.tensor.TokenTensor;

import java.util.Arrays;

/**
 * The fast CPU path: the block form in float32 with a float32 state, one head at a time so the
 * state ({@code Dk x Dv}) stays in cache, inner loops over contiguous Dv rows that the JIT
 * vectorizes. Per token it costs about 2 Dk Dv + chunk (Dk + Dv) / 2 multiply-adds per head.
 *
 * <p>Precision: a block's contribution to the state is summed apart and added once per block
 * (lambda^m P + dP), so the carried state sees T / chunk additions, not T. Decay powers come from
 * exp(-slope * n) in float64, rounded once.
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
        final int dk = spec.dk();
        final int dv = spec.dv();
        final int n = k.tokens();
        final int chunk = spec.chunkSize();
        final int stateSize = dk * dv;
        final float scale = (float) spec.scale();
        float[] next = new float[spec.stateSize()];
        float[] qh = q == null ? null : new float[n * dk];
        float[] kh = new float[n * dk];
        float[] vh = new float[n * dv];
        float[] oh = o == null ? null : new float[n * dv];
        float[] p = new float[stateSize];
        float[] dp = new float[stateSize];
        float[] pow = new float[chunk + 1];
        float[] incoming = state.data();

        for (int h = 0; h < spec.heads(); h++) {
            for (int x = 0; x <= chunk; x++) {
                pow[x] = (float) spec.decay(h, x);
            }
            k.readHead(h, 0, n, kh);
            v.readHead(h, 0, n, vh);
            if (q != null) {
                q.readHead(h, 0, n, qh);
                Arrays.fill(oh, 0f);
            }
            System.arraycopy(incoming, h * stateSize, p, 0, stateSize);

            for (int start = 0; start < n; start += chunk) {
                block(qh, kh, vh, oh, p, dp, pow, start, Math.min(chunk, n - start), dk, dv);
            }

            if (q != null) {
                for (int x = 0; x < oh.length; x++) {
                    oh[x] *= scale;
                }
                o.writeHead(h, 0, n, oh);
            }
            System.arraycopy(p, 0, next, h * stateSize, stateSize);
        }
        return LightningState.own(spec.heads(), dk, dv, next);
    }

    /**
     * One block of m tokens at {@code start} for one head: adds the block's outputs to {@code oh}
     * (when {@code qh} is non-null) and advances the state {@code p}. A method of its own so the
     * JIT compiles it early and fully; it runs T / chunk times per head.
     */
    private static void block(float[] qh, float[] kh, float[] vh, float[] oh, float[] p, float[] dp, float[] pow,
                              int start, int m, int dk, int dv) {
        if (qh != null) {
            for (int i = 0; i < m; i++) {
                int qRow = (start + i) * dk;
                int oRow = (start + i) * dv;
                // inter-block: lambda^(i+1) q_i P
                float rowDecay = pow[i + 1];
                for (int d = 0; d < dk; d++) {
                    axpy(rowDecay * qh[qRow + d], p, d * dv, oh, oRow, dv);
                }
                // intra-block: sum_{j <= i} lambda^(i-j) (q_i . k_j) v_j
                for (int jt = 0; jt <= i; jt++) {
                    float a = dot(qh, qRow, kh, (start + jt) * dk, dk) * pow[i - jt];
                    axpy(a, vh, (start + jt) * dv, oh, oRow, dv);
                }
            }
        }
        // state: P <- lambda^m P + sum_j lambda^(m-1-j) k_j^T v_j, the block's sum kept apart
        Arrays.fill(dp, 0f);
        for (int jt = 0; jt < m; jt++) {
            float w = pow[m - 1 - jt];
            int kRow = (start + jt) * dk;
            int vRow = (start + jt) * dv;
            for (int d = 0; d < dk; d++) {
                axpy(w * kh[kRow + d], vh, vRow, dp, d * dv, dv);
            }
        }
        float blockDecay = pow[m];
        for (int x = 0; x < p.length; x++) {
            p[x] = blockDecay * p[x] + dp[x];
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
