package dev.lightning.attention.engine.cpu;

import dev.lightning.attention.engine.Decay;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * {@link BatchHead}'s loop on jdk.incubator.vector: for each row i of S and each vector of L
 * columns (16 with AVX-512), the vector of S is loaded once, carried through the n tokens in a
 * register (S = lambda S + k_ti v_t by {@link Decay#carry}'s form: a multiply and an FMA, and an add where
 * the code is the complement; acc_t += q_ti S, one FMA), and
 * stored once. Columns past the last whole vector take a scalar loop of the same roundings. Loaded only through
 * {@link BatchHead}'s probe, so a JVM without the module takes the plain loop.
 */
final class VectorBatchHead extends BatchHead.Impl {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();

    VectorBatchHead() {
        if (L < 4) {
            throw new IllegalStateException("no real vectors here (" + L + " lanes)");
        }
    }

    @Override
    String name() {
        return "vector (" + S.vectorBitSize() + "-bit)";
    }

    @Override
    void update(float code, float[] s, int so, int dk, int dv, float[] q, float[] k, float[] v, float[] acc, int n) {
        int whole = dv - dv % L;
        boolean complement = code >= 0; // Decay.carry: x + (add - code x), else add - code x
        float neg = -code;
        for (int i = 0; i < dk; i++) {
            int row = so + i * dv;
            for (int j = 0; j < whole; j += L) {
                FloatVector sv = FloatVector.fromArray(S, s, row + j);
                for (int t = 0; t < n; t++) {
                    float ki = k[t * dk + i];
                    float qi = q[t * dk + i];
                    int at = t * dv + j;
                    FloatVector vv = FloatVector.fromArray(S, v, at);
                    FloatVector y = sv.lanewise(VectorOperators.FMA, neg, vv.mul(ki));
                    sv = complement ? sv.add(y) : y;
                    sv.lanewise(VectorOperators.FMA, qi, FloatVector.fromArray(S, acc, at)).intoArray(acc, at);
                }
                sv.intoArray(s, row + j);
            }
            for (int t = 0; t < n && whole < dv; t++) {
                float ki = k[t * dk + i];
                float qi = q[t * dk + i];
                int vo = t * dv;
                for (int j = whole; j < dv; j++) {
                    // the lanes' roundings (two FMAs), not the plain loop's: which columns are lanes
                    // follows the vector width, and the plain loop's here made an AVX2 host's states
                    // and o differ from an AVX-512 host's
                    float y = Math.fma(s[row + j], neg, v[vo + j] * ki);
                    float x = complement ? s[row + j] + y : y;
                    s[row + j] = x;
                    acc[vo + j] = Math.fma(x, qi, acc[vo + j]);
                }
            }
        }
    }
}
