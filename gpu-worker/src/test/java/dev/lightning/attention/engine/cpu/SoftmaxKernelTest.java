package dev.lightning.attention.engine.cpu;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The softmax pieces of the CPU kernels: the float32 exp against exp in float64 (and the scalar
 * twin against the vector one, bit for bit), and the online softmax step against its float64
 * definition, scalar and vector kernels alike and bit-identical to each other.
 */
class SoftmaxKernelTest {

    private static VectorKernel vector() {
        Kernel k = Kernel.vectorOrNull();
        assertNotNull(k, "jdk.incubator.vector does not load in the test JVM");
        return (VectorKernel) k;
    }

    /** |got - exact| in ulps of the float32 value nearest to exact. */
    private static double ulps(float got, double exact) {
        return Math.abs(got - exact) / Math.ulp((float) exact);
    }

    @Test
    void floatExpIsWithinOneUlpAndBothKernelsAgreeBitForBit() {
        SplittableRandom rnd = new SplittableRandom(5);
        int n = 1 << 20;
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            // the whole normal range of results, and the small arguments near 0 densely
            x[i] = i % 2 == 0 ? (float) (rnd.nextDouble() * Kernel.MIN_NORMAL_LOG)
                    : (float) -Math.pow(10, -8 + 9.9 * rnd.nextDouble());
        }
        x[0] = 0f;
        x[1] = -0f;
        x[2] = Kernel.MIN_NORMAL_LOG;
        x[3] = -Float.MIN_VALUE;
        x[4] = -0.34657359f; // -ln2/2, where the reduction changes r
        float[] y = x.clone();
        vector().elu1(y, 0, n); // x <= 0: elu1 is the vector exp
        double worst = 0;
        for (int i = 0; i < n; i++) {
            float scalar = Kernel.exp(x[i]);
            assertEquals(Float.floatToRawIntBits(y[i]), Float.floatToRawIntBits(scalar),
                    "vector and scalar exp differ at x = " + x[i]);
            worst = Math.max(worst, ulps(scalar, Math.exp(x[i])));
        }
        assertTrue(worst <= 1.0, "float exp is " + worst + " ulp off exp");
        assertEquals(1f, Kernel.exp(0f));
    }

    @Test
    void flushedExpIsZeroBelowTheNormalRangeAndForMinusInfinity() {
        assertEquals(0f, Kernel.expFlush(Float.NEGATIVE_INFINITY));
        assertEquals(0f, Kernel.expFlush(-88f));
        assertEquals(0f, Kernel.expFlush(-1e30f));
        assertTrue(Kernel.expFlush(Kernel.MIN_NORMAL_LOG) >= Float.MIN_NORMAL);
        assertEquals(1f, Kernel.expFlush(0f));
        assertTrue(Float.isNaN(Kernel.expFlush(Float.NaN)));
    }

    /** exp(x) to 2e-7 relative, plus half an ulp of the float difference x it was given (0 for exp(-inf)). */
    private static double tolerance(double exp, double x) {
        return exp == 0 ? 0 : exp * (2e-7 + 6e-8 * Math.abs(x)) + 1e-37;
    }

    @Test
    void softmaxStepMatchesFloat64AndTheKernelsGiveTheSameBits() {
        SplittableRandom rnd = new SplittableRandom(9);
        // rows x cols of a block: cols past whole vectors, one row, a -inf column and masked runs
        int[][] shapes = {{1, 1}, {64, 64}, {37, 45}, {64, 512}, {3, 17}};
        for (int[] shape : shapes) {
            int rows = shape[0];
            int cols = shape[1];
            int lds = cols + 3;
            int mo = 2;
            float[] s = new float[5 + rows * lds];
            for (int i = 0; i < s.length; i++) {
                double u = rnd.nextDouble();
                s[i] = u < 0.15 ? Float.NEGATIVE_INFINITY : (float) ((u - 0.5) * 40);
            }
            if (cols > 3) {
                for (int j = 0; j < rows; j++) {
                    s[5 + j * lds + 3] = Float.NEGATIVE_INFINITY; // column 3 sees nothing in this block
                }
            }
            float[] m = new float[mo + cols];
            float[] l = new float[mo + cols];
            for (int c = 0; c < cols; c++) {
                // some columns fresh (m = -inf, l = 0), others with a running max above or below the block's
                boolean fresh = c % 3 == 0;
                m[mo + c] = fresh ? Float.NEGATIVE_INFINITY : (float) ((rnd.nextDouble() - 0.5) * 50);
                l[mo + c] = fresh ? 0f : (float) (1 + rnd.nextDouble() * 100);
            }
            float[][] results = new float[2][];
            Kernel[] kernels = {new ScalarKernel(), vector()};
            for (int ki = 0; ki < 2; ki++) {
                float[] sk = s.clone();
                float[] mk = m.clone();
                float[] lk = l.clone();
                float[] alpha = new float[cols];
                kernels[ki].softmaxStep(sk, 5, lds, rows, cols, mk, lk, mo, alpha);
                String what = kernels[ki].name() + " " + rows + "x" + cols;
                for (int c = 0; c < cols; c++) {
                    double max = m[mo + c];
                    for (int j = 0; j < rows; j++) {
                        max = Math.max(max, s[5 + j * lds + c]);
                    }
                    assertEquals((float) max, mk[mo + c], what + " m of column " + c);
                    double shift = max == Double.NEGATIVE_INFINITY ? 0 : max;
                    double a = Math.exp(m[mo + c] - shift);
                    // within the exp's ulp of exp(float difference), whose rounding moves it by up
                    // to half an ulp of the difference
                    assertEquals(a, alpha[c], tolerance(a, m[mo + c] - shift),
                            what + " alpha of column " + c);
                    double sum = 0;
                    for (int j = 0; j < rows; j++) {
                        int x = 5 + j * lds + c;
                        double p = Math.exp(s[x] - shift);
                        sum += p;
                        assertEquals(p, sk[x], tolerance(p, s[x] - shift),
                                what + " p[" + j + ", " + c + "]");
                    }
                    double want = a * l[mo + c] + sum;
                    assertEquals(want, lk[mo + c], 2e-6 * want, what + " l of column " + c);
                    assertTrue(Float.isFinite(lk[mo + c]), what);
                }
                float[] all = new float[sk.length + mk.length + lk.length + alpha.length];
                System.arraycopy(sk, 0, all, 0, sk.length);
                System.arraycopy(mk, 0, all, sk.length, mk.length);
                System.arraycopy(lk, 0, all, sk.length + mk.length, lk.length);
                System.arraycopy(alpha, 0, all, sk.length + mk.length + lk.length, alpha.length);
                results[ki] = all;
            }
            for (int i = 0; i < results[0].length; i++) {
                assertEquals(Float.floatToRawIntBits(results[0][i]), Float.floatToRawIntBits(results[1][i]),
                        "scalar and vector softmax steps differ at " + i + " of " + rows + "x" + cols);
            }
        }
    }
}
