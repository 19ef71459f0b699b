package dev.lightning.attention.engine.cpu;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The batch step's inner loop: the implementation this JVM picked (the vector one under the build's
 * JVM options) against the plain loop, on random inputs with widths that leave a scalar tail
 * (Dv = 37) and that do not (Dv = 128), 1 and 5 tokens, at an offset into the state array, with a
 * decay code of each form; and the plain loop against the formula written out in float64.
 */
class BatchHeadTest {
    @Test
    void theChosenLoopAgreesWithThePlainOne() {
        assertTrue(BatchHead.implementation().startsWith("vector"), "the tests run with jdk.incubator.vector, got "
                + BatchHead.implementation());
        SplittableRandom rnd = new SplittableRandom(9);
        // a Decay code of each form: the complement 0.1 (lambda 0.9) and lambda 0.3 itself
        for (float code : new float[] {0.1f, -0.3f})
        for (int[] shape : new int[][] {{16, 37, 1}, {16, 37, 5}, {128, 128, 1}, {7, 128, 5}, {3, 5, 2}}) {
            int dk = shape[0];
            int dv = shape[1];
            int n = shape[2];
            float[] q = random(rnd, n * dk);
            float[] k = random(rnd, n * dk);
            float[] v = random(rnd, n * dv);
            float[] s = random(rnd, 3 + dk * dv);
            float[] s2 = s.clone();
            float[] acc = random(rnd, n * dv);
            float[] acc2 = acc.clone();
            BatchHead.update(code, s, 3, dk, dv, q, k, v, acc, n);
            BatchHead.updateScalar(code, s2, 3, dk, dv, q, k, v, acc2, n);
            for (int x = 0; x < s.length; x++) {
                assertEquals(s2[x], s[x], 1e-5f * Math.max(1, Math.abs(s2[x])), "S[" + x + "] at " + dk + "x" + dv);
            }
            for (int x = 0; x < acc.length; x++) {
                assertEquals(acc2[x], acc[x], 1e-4f * Math.max(1, Math.abs(acc2[x])), "acc[" + x + "]");
            }
            assertEquals(s2[0], s[0], 0f, "before the offset nothing is touched");
        }
    }

    /** lambda 0.5 (its Decay code the complement 0.5) and 0.25 (the code -0.25, lambda itself). */
    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(doubles = {0.5, 0.25})
    void thePlainLoopIsTheFormula(double lambda) {
        float code = lambda >= 0.5 ? (float) (1 - lambda) : (float) -lambda;
        SplittableRandom rnd = new SplittableRandom(10);
        int dk = 3;
        int dv = 4;
        int n = 2;
        float[] q = random(rnd, n * dk);
        float[] k = random(rnd, n * dk);
        float[] v = random(rnd, n * dv);
        float[] s = random(rnd, dk * dv);
        double[] want = new double[dk * dv];
        double[] wantAcc = new double[n * dv];
        for (int x = 0; x < want.length; x++) {
            want[x] = s[x];
        }
        for (int t = 0; t < n; t++) {
            for (int i = 0; i < dk; i++) {
                for (int j = 0; j < dv; j++) {
                    want[i * dv + j] = lambda * want[i * dv + j] + (double) k[t * dk + i] * v[t * dv + j];
                    wantAcc[t * dv + j] += q[t * dk + i] * want[i * dv + j];
                }
            }
        }
        float[] acc = new float[n * dv];
        BatchHead.updateScalar(code, s, 0, dk, dv, q, k, v, acc, n);
        for (int x = 0; x < s.length; x++) {
            assertEquals(want[x], s[x], 1e-5);
        }
        for (int x = 0; x < acc.length; x++) {
            assertEquals(wantAcc[x], acc[x], 1e-5);
        }
    }

    private static float[] random(SplittableRandom rnd, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (rnd.nextDouble() * 2 - 1);
        }
        return x;
    }
}
