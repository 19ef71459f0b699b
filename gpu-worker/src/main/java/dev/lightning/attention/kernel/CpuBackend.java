package dev.lightning.attention.kernel;

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
        return run(spec, null, k, v, state, null);
    }

    @Override
    public LightningState forward(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                                  LightningState state, TokenTensor o) {
        return run(spec, q, k, v, state, o);
    }

    private static LightningState run(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                                      LightningState state, TokenTensor o) {
        AttentionBackend.checkShapes(spec, q, k, v, state, o);
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
                int m = Math.min(chunk, n - start);
                if (q != null) {
                    for (int i = 0; i < m; i++) {
                        int qRow = (start + i) * dk;
                        int oRow = (start + i) * dv;
                        // inter-block: lambda^(i+1) q_i P
                        float rowDecay = pow[i + 1];
                        for (int d = 0; d < dk; d++) {
                            float c = rowDecay * qh[qRow + d];
                            int pRow = d * dv;
                            for (int j = 0; j < dv; j++) {
                                oh[oRow + j] += c * p[pRow + j];
                            }
                        }
                        // intra-block: sum_{j <= i} lambda^(i-j) (q_i . k_j) v_j
                        for (int jt = 0; jt <= i; jt++) {
                            int kRow = (start + jt) * dk;
                            float dot = 0f;
                            for (int d = 0; d < dk; d++) {
                                dot += qh[qRow + d] * kh[kRow + d];
                            }
                            float a = dot * pow[i - jt];
                            int vRow = (start + jt) * dv;
                            for (int j = 0; j < dv; j++) {
                                oh[oRow + j] += a * vh[vRow + j];
                            }
                        }
                    }
                }
                // state: P <- lambda^m P + sum_j lambda^(m-1-j) k_j^T v_j
                Arrays.fill(dp, 0f);
                for (int jt = 0; jt < m; jt++) {
                    float w = pow[m - 1 - jt];
                    int kRow = (start + jt) * dk;
                    int vRow = (start + jt) * dv;
                    for (int d = 0; d < dk; d++) {
                        float c = w * kh[kRow + d];
                        int pRow = d * dv;
                        for (int j = 0; j < dv; j++) {
                            dp[pRow + j] += c * vh[vRow + j];
                        }
                    }
                }
                float blockDecay = pow[m];
                for (int x = 0; x < stateSize; x++) {
                    p[x] = blockDecay * p[x] + dp[x];
                }
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
}
