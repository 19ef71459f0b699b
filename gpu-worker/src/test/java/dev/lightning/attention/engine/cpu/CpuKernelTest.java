package dev.lightning.attention.engine.cpu;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.Inputs;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.reference.RecurrentReference;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The CPU microkernels against a float64 product on awkward shapes (rows, columns and depths that
 * are not multiples of a tile or a vector, A given transposed, offsets and strides), and the
 * backend on its scalar kernel (the fallback of a JVM without the Vector API) against the float64
 * recurrence, so the kernel that a test JVM does not pick by itself is checked too.
 */
class CpuKernelTest {
    private static List<Kernel> kernels() {
        List<Kernel> all = new ArrayList<>();
        all.add(new ScalarKernel());
        Kernel vector = Kernel.vectorOrNull();
        if (vector != null) {
            all.add(vector);
        }
        return all;
    }

    @Test
    void theTestJvmHasTheVectorKernel() {
        // surefire runs with --add-modules jdk.incubator.vector (spark.jvm.options): were it lost,
        // the backend would fall back to the scalar kernel silently, 10x slower
        assertNotNull(Kernel.vectorOrNull(), "jdk.incubator.vector does not load in the test JVM");
    }

    @Test
    void productsMatchFloat64() {
        SplittableRandom rnd = new SplittableRandom(7);
        // every tile and tail: 4 x 4, 4 x 3 (48 or 112 columns), 4 x 2, 8 x 1 then 4 x 1 (16 + 64k
        // columns over 8 or more rows), rows past the last 4, columns past the last vector
        int[][] shapes = {{1, 1, 1}, {4, 64, 64}, {3, 17, 5}, {64, 128, 128}, {13, 100, 37}, {128, 64, 64},
                {5, 33, 130}, {8, 48, 1}, {4, 16, 200}, {16, 16, 64}, {19, 80, 9}, {12, 112, 7}, {9, 17, 3},
                {64, 48, 64}, {64, 16, 64}};
        for (Kernel kernel : kernels()) {
            for (int[] shape : shapes) {
                for (boolean transposed : new boolean[]{false, true}) {
                    for (int mode : new int[]{Kernel.SET, Kernel.ACCUMULATE, Kernel.SCALE_ADD}) {
                        check(kernel, rnd, shape[0], shape[1], shape[2], transposed, mode, 0);
                    }
                }
            }
        }
    }

    /**
     * B's rows (and a transposed A's steps) 64 or 128 floats apart, as the backend's scratch
     * matrices are at D = 64 and 128: the vector kernel's constant-stride tiles take the whole
     * 64-column tiles there and, at a stride of 64, the narrower tails; the general tiles the rest
     * (columns past the last 64 at a stride of 128, fewer than 4 rows, columns past the last vector).
     */
    @Test
    void productsOnPanelStridesMatchFloat64() {
        SplittableRandom rnd = new SplittableRandom(11);
        // {rows, cols, depth, ldb}
        int[][] shapes = {{4, 64, 64, 64}, {64, 64, 64, 64}, {13, 64, 37, 64}, {3, 64, 5, 64}, {5, 48, 64, 64},
                {64, 128, 64, 128}, {8, 128, 130, 128}, {64, 100, 17, 128}, {7, 64, 1, 128}, {64, 64, 64, 128},
                // the scores' narrow bands at B's panel stride: 4 x 3, 4 x 2, 8 x 1 then 4 x 1 vectors
                {16, 16, 64, 64}, {16, 32, 128, 64}, {16, 48, 64, 64}, {12, 16, 7, 64}, {7, 40, 9, 64}};
        for (Kernel kernel : kernels()) {
            for (int[] shape : shapes) {
                for (boolean transposed : new boolean[]{false, true}) {
                    for (int mode : new int[]{Kernel.SET, Kernel.ACCUMULATE, Kernel.SCALE_ADD}) {
                        check(kernel, rnd, shape[0], shape[1], shape[2], transposed, mode, shape[3]);
                    }
                }
            }
        }
    }

    /**
     * One product against float64: C = A B, C += A B ({@link Kernel#product}) or C = (1 - comp) C + A B
     * ({@link Kernel#productScaleAdd}, comp random in (0, 0.5], as a chunk's decay's complement is). B's row
     * stride is {@code stride} where that is not 0 (and a transposed A's step stride with it), else
     * a few floats more than a row.
     */
    private static void check(Kernel kernel, SplittableRandom rnd, int rows, int cols, int depth,
                              boolean transposed, int mode, int stride) {
        int ao = 3;
        int lda = transposed && stride > 0 ? stride : (transposed ? rows : depth) + 5;
        int ais = transposed ? 1 : lda;
        int ads = transposed ? lda : 1;
        int bo = 2;
        int ldb = stride > 0 ? stride : cols + 3;
        int co = 1;
        int ldc = cols + 7;
        float[] a = random(rnd, ao + lda * (transposed ? depth : rows));
        float[] b = random(rnd, bo + ldb * depth);
        float[] c = random(rnd, co + ldc * rows);
        float[] before = c.clone();
        float comp = (float) (0.5 - rnd.nextDouble() / 2);
        if (mode == Kernel.SCALE_ADD) {
            kernel.productScaleAdd(a, ao, ais, ads, b, bo, ldb, c, co, ldc, rows, cols, depth, comp);
        } else {
            kernel.product(a, ao, ais, ads, b, bo, ldb, c, co, ldc, rows, cols, depth, mode == Kernel.ACCUMULATE);
        }
        String what = kernel.name() + " " + rows + "x" + cols + "x" + depth + (transposed ? " A^T" : "") + " ldb " + ldb
                + (mode == Kernel.SET ? " C=" : mode == Kernel.ACCUMULATE ? " C+=" : " C=(1-comp) C+");
        for (int i = 0; i < rows; i++) {
            for (int j = 0; j < ldc; j++) {
                int at = co + i * ldc + j;
                if (j >= cols) {
                    assertEquals(before[at], c[at], what + ": wrote outside C at row " + i + ", column " + j);
                    continue;
                }
                double want = mode == Kernel.SET ? 0 : mode == Kernel.ACCUMULATE ? before[at] : (1 - (double) comp) * before[at];
                double size = Math.abs(want);
                for (int d = 0; d < depth; d++) {
                    double x = (double) a[ao + i * ais + d * ads] * b[bo + d * ldb + j];
                    want += x;
                    size += Math.abs(x);
                }
                assertEquals(want, c[at], 1e-6 * size + 1e-30, what + ": C[" + i + "][" + j + "]");
            }
        }
        assertEquals(before[0], c[0], what + ": wrote before C");
    }

    @Test
    void transposeMovesEveryElementAndNothingElse() {
        SplittableRandom rnd = new SplittableRandom(13);
        // rows past whole vectors, one row, a stride wider than the rows (other heads between), Dk != 16k
        // (columns past the last 16 in rows of whole 16 x 16 blocks: 48 x 40, 32 x 7)
        int[][] shapes = {{1, 1, 1}, {64, 64, 512}, {64, 128, 1024}, {63, 64, 70}, {17, 5, 9}, {16, 16, 16},
                {33, 48, 96}, {1, 128, 128}, {48, 40, 100}, {32, 7, 7}};
        for (Kernel kernel : kernels()) {
            for (int[] shape : shapes) {
                int rows = shape[0];
                int cols = shape[1];
                int lds = shape[2];
                int so = 3;
                int ldd = rows + 2;
                float[] src = random(rnd, so + (rows - 1) * lds + cols + 5);
                int dso = 5;
                float[] dst = random(rnd, dso + cols * ldd + 3);
                float[] before = dst.clone();
                kernel.transpose(src, so, lds, rows, cols, dst, dso, ldd);
                String what = kernel.name() + " transpose " + rows + "x" + cols + " lds " + lds;
                for (int d = 0; d < cols; d++) {
                    for (int j = 0; j < ldd; j++) {
                        float want = j < rows ? src[so + j * lds + d] : before[dso + d * ldd + j];
                        assertEquals(want, dst[dso + d * ldd + j], what + " at (" + d + ", " + j + ")");
                    }
                }
                for (int x = 0; x < dso; x++) {
                    assertEquals(before[x], dst[x], what + " wrote before dst");
                }
                for (int x = dso + cols * ldd; x < dst.length; x++) {
                    assertEquals(before[x], dst[x], what + " wrote past dst");
                }
            }
        }
    }

    /**
     * addWeightedRows against float64 (m rows of x at a stride, weights read backwards), nothing written outside its n
     * elements, and each element the chain of one-row updates in the rows' order (the vector kernel's fused, as its
     * lanes are, the scalar kernel's not): the bits of the m one-row calls it replaced, at any vector width.
     */
    @Test
    void weightedRowsAddInTheRowsOrder() {
        SplittableRandom rnd = new SplittableRandom(12);
        for (Kernel kernel : kernels()) {
            boolean fused = kernel instanceof VectorKernel;
            for (int m : new int[]{1, 3, 64}) {
                for (int n : new int[]{1, 15, 16, 17, 63, 130}) {
                    int ldx = n + 5;
                    float[] x = random(rnd, 3 + m * ldx);
                    float[] w = random(rnd, m + 2);
                    float[] y = random(rnd, n + 4);
                    float[] got = y.clone();
                    kernel.addWeightedRows(w, m, x, 3, ldx, m, got, 1, n);
                    assertEquals(y[0], got[0], kernel.name() + " wrote before y");
                    for (int e = n + 1; e < y.length; e++) {
                        assertEquals(y[e], got[e], kernel.name() + " wrote past y");
                    }
                    for (int e = 0; e < n; e++) {
                        double want = y[1 + e];
                        float chain = y[1 + e];
                        for (int j = 0; j < m; j++) {
                            float wj = w[m - j];
                            float xj = x[3 + j * ldx + e];
                            want += (double) wj * xj;
                            chain = fused ? Math.fma(wj, xj, chain) : chain + wj * xj;
                        }
                        String at = kernel.name() + " m " + m + " n " + n + " element " + e;
                        assertEquals(want, got[1 + e], 1e-5 * (m + 1), at);
                        assertEquals(Float.floatToIntBits(chain), Float.floatToIntBits(got[1 + e]),
                                at + ": not the chain");
                    }
                }
            }
        }
    }

    @Test
    void elementwiseHelpersMatch() {
        SplittableRandom rnd = new SplittableRandom(11);
        for (Kernel kernel : kernels()) {
            for (int n : new int[]{1, 15, 16, 17, 63, 130}) {
                float[] x = random(rnd, n + 4);
                float[] y = random(rnd, n + 4);
                float s = (float) rnd.nextDouble();
                float[] y1 = y.clone();
                kernel.scale(s, x, 2, y1, 1, n);
                float[] y2 = y.clone();
                kernel.scaleAdd(s, y2, 1, x, 2, n);
                float dot = kernel.dot(x, 2, y, 1, n);
                // a causal row: the first `valid` products kept, the rest of the n set to zero, an
                // infinite score among those included (it must give 0, not NaN)
                int valid = n - rnd.nextInt(Math.min(n, 17) + 1);
                float[] y5 = y.clone();
                if (valid < n) {
                    y5[1 + n - 1] = Float.POSITIVE_INFINITY;
                }
                float[] y5before = y5.clone();
                float maskedSum = kernel.maskedMultiplySum(y5, 1, x, 2, valid, n);
                double wantMasked = 0;
                for (int j = 0; j < n; j++) {
                    double want = j < valid ? (double) y5before[1 + j] * x[2 + j] : 0;
                    assertEquals(want, y5[1 + j], 1e-6 * Math.abs(want), kernel.name() + " maskedMultiplySum n " + n
                            + " valid " + valid + " at " + j);
                    wantMasked += want;
                }
                assertEquals(wantMasked, maskedSum, 1e-5 * n, kernel.name() + " maskedMultiplySum's sum");
                assertEquals(y[0], y5[0], kernel.name() + " maskedMultiplySum wrote before y");
                assertEquals(y[n + 1], y5[n + 1], kernel.name() + " maskedMultiplySum wrote past y");
                double wantDot = 0;
                for (int j = 0; j < n; j++) {
                    assertEquals(s * x[2 + j], y1[1 + j], 1e-6, kernel.name() + " scale");
                    assertEquals(s * y[1 + j] + x[2 + j], y2[1 + j], 1e-6, kernel.name() + " scaleAdd");
                    wantDot += (double) x[2 + j] * y[1 + j];
                }
                assertEquals(wantDot, dot, 1e-5 * n, kernel.name() + " dot");
                assertEquals(y[0], y1[0], kernel.name() + " scale wrote before y");
                assertEquals(y[n + 1], y1[n + 1], kernel.name() + " scale wrote past y");

                float[] e = new float[n + 2];
                for (int j = 0; j < e.length; j++) {
                    e[j] = (float) (rnd.nextDouble() * 8 - 4);
                }
                float[] got = e.clone();
                kernel.elu1(got, 1, n);
                assertEquals(e[0], got[0]);
                assertEquals(e[n + 1], got[n + 1]);
                for (int j = 1; j <= n; j++) {
                    double want = FeatureMap.ELU1.apply((double) e[j]);
                    assertEquals(want, got[j], 2e-7 * Math.abs(want), kernel.name() + " elu1(" + e[j] + ")");
                }
                // relu: FeatureMap's values to the bit, -0 and NaN among them
                e[1] = -0f;
                e[n] = Float.NaN;
                got = e.clone();
                kernel.relu(got, 1, n);
                assertEquals(e[0], got[0]);
                assertEquals(e[n + 1], got[n + 1]);
                for (int j = 1; j <= n; j++) {
                    assertEquals(Float.floatToRawIntBits(FeatureMap.RELU.apply(e[j])), Float.floatToRawIntBits(got[j]),
                            kernel.name() + " relu(" + e[j] + ") at " + j + " of " + n);
                }
            }
        }
    }

    @Test
    void bf16WideningMatchesDType() {
        SplittableRandom rnd = new SplittableRandom(13);
        for (Kernel kernel : kernels()) {
            for (int n : new int[]{1, 15, 16, 17, 100}) {
                short[] src = new short[n];
                for (int i = 0; i < n; i++) {
                    src[i] = (short) rnd.nextInt(1 << 16);
                }
                src[0] = (short) 0xbf80; // -1
                float[] dst = new float[n + 1];
                dst[n] = 42f;
                kernel.widenBf16(src, dst, n);
                ByteBuffer bytes = ByteBuffer.allocate(2 * n).order(ByteOrder.LITTLE_ENDIAN);
                bytes.asShortBuffer().put(src);
                for (int i = 0; i < n; i++) {
                    float want = DType.BF16.get(bytes, 2 * i);
                    assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(dst[i]),
                            kernel.name() + ": bfloat16 0x" + Integer.toHexString(src[i] & 0xffff));
                }
                assertEquals(42f, dst[n], kernel.name() + " wrote past n");
            }
        }
    }

    /**
     * The rounding to bfloat16 of o's rows, every kernel against DType's: random bit patterns (NaNs
     * with payloads, infinities, subnormals among them) and the edge cases by name: ties to even
     * both ways, a carry into the exponent, the largest float (rounds to infinity), signalling and
     * quiet NaNs of either sign; at offsets and lengths around the vector width, nothing written
     * past n.
     */
    @Test
    void bf16NarrowingMatchesDType() {
        SplittableRandom rnd = new SplittableRandom(29);
        int[] named = {0x3f808000, 0x3f818000, 0x3f807fff, 0x3f7fffff, 0x7f7fffff, 0xff7fffff, 0x7f800001,
                0xff800001, 0x7fc00000, 0xffffffff, 0x7f800000, 0xff800000, 0x00000000, 0x80000000, 0x00008000,
                0x00018000, 0x807fffff, 0x3f80ffff};
        for (Kernel kernel : kernels()) {
            for (int n : new int[]{1, 15, 16, 17, 100, 1000}) {
                for (int off : new int[]{0, 3}) {
                    float[] src = new float[off + n];
                    for (int i = 0; i < off + n; i++) {
                        int bits = i - off >= 0 && i - off < named.length ? named[i - off] : rnd.nextInt();
                        src[i] = Float.intBitsToFloat(bits);
                    }
                    short[] dst = new short[n + 1];
                    dst[n] = 42;
                    kernel.narrowBf16(src, off, dst, n);
                    for (int i = 0; i < n; i++) {
                        ByteBuffer want = ByteBuffer.allocate(2).order(ByteOrder.LITTLE_ENDIAN);
                        DType.BF16.put(want, 0, src[off + i]);
                        assertEquals(want.getShort(0), dst[i], kernel.name() + ": float bits 0x"
                                + Integer.toHexString(Float.floatToRawIntBits(src[off + i])));
                    }
                    assertEquals(42, dst[n], kernel.name() + " wrote past n");
                }
            }
        }
    }

    /**
     * A backend reuses its buffers and decay tables from one call to the next of the same shapes:
     * a sequence of calls of changing shapes, specs, dtypes and directions (pass 1, pass 2) on one
     * backend gives bit for bit what a fresh backend gives for each call alone.
     */
    @Test
    void aBackendReusedAcrossCallsEqualsFreshOnes() {
        SplittableRandom rnd = new SplittableRandom(29);
        CpuBackend reused = new CpuBackend();
        AttentionSpec a = new AttentionSpec(2, 16, 24, new double[] {0.3, 0.05}, 0.25, 64);
        AttentionSpec b = new AttentionSpec(2, 16, 24, new double[] {0.2, 0.01}, 0.25, 64); // other decays only
        AttentionSpec c = new AttentionSpec(3, 8, 8, new double[] {0.4, 0.1, 0.02}, 0.5, 16).withNormalization(1e-6);
        Object[][] calls = {{a, 128, DType.BF16, true}, {a, 128, DType.BF16, true}, {b, 128, DType.BF16, true},
                {a, 128, DType.BF16, false}, {a, 1000, DType.F32, true}, {a, 63, DType.BF16, true},
                {c, 100, DType.F32, true}, {c, 100, DType.F32, false}, {a, 128, DType.BF16, true}};
        for (Object[] call : calls) {
            AttentionSpec spec = (AttentionSpec) call[0];
            int tokens = (Integer) call[1];
            DType dtype = (DType) call[2];
            boolean forward = (Boolean) call[3];
            TokenTensor q = Inputs.random(rnd, dtype, tokens, spec.heads(), spec.dk());
            TokenTensor k = Inputs.random(rnd, dtype, tokens, spec.heads(), spec.dk());
            TokenTensor v = Inputs.random(rnd, dtype, tokens, spec.heads(), spec.dv());
            float[] s = new float[spec.stateSize()];
            for (int i = 0; i < s.length; i++) {
                s[i] = (float) (rnd.nextDouble() * 2 - 1);
            }
            float[] z = spec.normalized() ? new float[spec.normalizerSize()] : null;
            if (z != null) {
                for (int i = 0; i < z.length; i++) {
                    z[i] = (float) (rnd.nextDouble() + 1);
                }
            }
            LightningState initial = z == null ? LightningState.of(spec.heads(), spec.dk(), spec.dv(), s)
                    : LightningState.of(spec.heads(), spec.dk(), spec.dv(), s, z);
            String what = spec.heads() + " heads, " + tokens + " tokens " + dtype + (forward ? " forward" : " advance");
            if (forward) {
                TokenTensor o1 = TokenTensor.allocate(dtype, tokens, spec.heads(), spec.dv());
                TokenTensor o2 = TokenTensor.allocate(dtype, tokens, spec.heads(), spec.dv());
                LightningState s1 = reused.forward(spec, q, k, v, initial, o1, Checkpoints.none());
                LightningState s2 = new CpuBackend().forward(spec, q, k, v, initial, o2, Checkpoints.none());
                assertTrue(o1.bytes().equals(o2.bytes()), what + ": o differs from a fresh backend's");
                assertTrue(java.util.Arrays.equals(s1.toBytes(), s2.toBytes()), what + ": state differs");
            } else {
                LightningState s1 = reused.advance(spec, k, v, initial);
                LightningState s2 = new CpuBackend().advance(spec, k, v, initial);
                assertTrue(java.util.Arrays.equals(s1.toBytes(), s2.toBytes()), what + ": state differs");
            }
        }
    }

    /**
     * The backend on the vector kernel at head widths of 64 and 128, where its scratch matrices are
     * one or two panels wide and the products run on the constant-stride tiles (a last chunk of
     * fewer than 64 tokens on the general ones), against the float64 recurrence: plain with an
     * initial state, and grouped normalized elu1 with checkpoints, Dk != Dv among them, H = 3.
     */
    @Test
    void vectorKernelBackendAtPanelWidthsMatchesTheRecurrence() {
        Kernel vector = Kernel.vectorOrNull();
        assertNotNull(vector, "jdk.incubator.vector does not load in the test JVM");
        SplittableRandom rnd = new SplittableRandom(29);
        int[][] widths = {{64, 64}, {128, 128}, {64, 128}, {128, 64}};
        for (int[] w : widths) {
            int dk = w[0];
            int dv = w[1];
            AttentionSpec plain = new AttentionSpec(3, dk, dv, new double[] {0.5, 0.06, 0.004}, 0.125, 64);
            AttentionSpec variant = plain.withHeads(3, 1, 3).withFeatureMap(FeatureMap.ELU1).withNormalization(1e-6);
            for (AttentionSpec spec : new AttentionSpec[] {plain, variant}) {
                for (int tokens : new int[] {1, 63, 200}) {
                    TokenTensor q = Inputs.random(rnd, DType.F32, tokens, spec.headsQ(), dk);
                    TokenTensor k = Inputs.random(rnd, DType.F32, tokens, spec.headsK(), dk);
                    TokenTensor v = Inputs.random(rnd, DType.F32, tokens, spec.headsV(), dv);
                    float[] s = new float[spec.stateSize()];
                    for (int i = 0; i < s.length; i++) {
                        s[i] = (float) (rnd.nextDouble() * 2 - 1);
                    }
                    float[] z = null;
                    if (spec.normalized()) {
                        z = new float[spec.normalizerSize()];
                        for (int i = 0; i < z.length; i++) {
                            z[i] = (float) (rnd.nextDouble() * 2 + 1);
                        }
                    }
                    LightningState initial = z == null ? LightningState.of(3, dk, dv, s) : LightningState.of(3, dk, dv, s, z);
                    Checkpoints got = spec.normalized() ? Checkpoints.of(spec, 64, 0, tokens) : Checkpoints.none();
                    Checkpoints want = spec.normalized() ? Checkpoints.of(spec, 64, 0, tokens) : Checkpoints.none();
                    TokenTensor gotO = TokenTensor.allocate(DType.F32, tokens, 3, dv);
                    TokenTensor wantO = TokenTensor.allocate(DType.F32, tokens, 3, dv);
                    LightningState gotS = new CpuBackend(vector).forward(spec, q, k, v, initial, gotO, got);
                    LightningState wantS = new RecurrentReference().forward(spec, q, k, v, initial, wantO, want);
                    String at = "Dk=" + dk + " Dv=" + dv + " T=" + tokens + (spec.normalized() ? " grouped elu1 normalized" : "");
                    assertTrue(Inputs.relativeError(gotO.toFloats(), wantO.toFloats()) < 1e-5, at + ": o");
                    assertTrue(Inputs.relativeError(gotS.data(), wantS.data()) < 1e-5, at + ": S");
                    if (spec.normalized()) {
                        assertTrue(Inputs.relativeError(gotS.normalizerData(), wantS.normalizerData()) < 1e-5, at + ": z");
                    }
                    if (got.count() > 0) {
                        assertTrue(Inputs.relativeError(got.kvData(), want.kvData()) < 1e-5, at + ": checkpoints");
                    }
                    LightningState advanced = new CpuBackend(vector).advance(spec, k, v, initial);
                    assertTrue(Inputs.relativeError(advanced.data(), wantS.data()) < 1e-5, at + ": advance S");
                }
            }
        }
    }

    /** Every variant at once on the scalar kernel, against the float64 recurrence (CPU tolerance 1e-5). */
    @Test
    void scalarKernelBackendMatchesTheRecurrence() {
        SplittableRandom rnd = new SplittableRandom(23);
        int hq = 6;
        int hk = 2;
        int hv = 3;
        int dk = 20;
        int dv = 36;
        double[] slopes = {0.5, 0.25, 0.1, 0.03, 0.7, 0.01};
        AttentionSpec spec = new AttentionSpec(6, dk, dv, slopes, 0.125, 64).withHeads(hq, hk, hv)
                .withFeatureMap(FeatureMap.ELU1).withNormalization(1e-6);
        for (int tokens : new int[]{1, 63, 1000}) {
            TokenTensor q = Inputs.random(rnd, DType.F32, tokens, hq, dk);
            TokenTensor k = Inputs.random(rnd, DType.F32, tokens, hk, dk);
            TokenTensor v = Inputs.random(rnd, DType.F32, tokens, hv, dv);
            float[] s = new float[spec.stateSize()];
            float[] z = new float[spec.normalizerSize()];
            for (int i = 0; i < s.length; i++) {
                s[i] = (float) (rnd.nextDouble() * 2 - 1);
            }
            for (int i = 0; i < z.length; i++) {
                z[i] = (float) (rnd.nextDouble() * 2 + 1);
            }
            LightningState initial = LightningState.of(6, dk, dv, s, z);
            Checkpoints got = Checkpoints.of(spec, 128, 0, tokens);
            Checkpoints want = Checkpoints.of(spec, 128, 0, tokens);
            TokenTensor gotO = TokenTensor.allocate(DType.F32, tokens, 6, dv);
            TokenTensor wantO = TokenTensor.allocate(DType.F32, tokens, 6, dv);
            LightningState gotS = new CpuBackend(new ScalarKernel()).forward(spec, q, k, v, initial, gotO, got);
            LightningState wantS = new RecurrentReference().forward(spec, q, k, v, initial, wantO, want);
            String at = "T=" + tokens;
            assertTrue(Inputs.relativeError(gotO.toFloats(), wantO.toFloats()) < 1e-5, at + ": o");
            assertTrue(Inputs.relativeError(gotS.data(), wantS.data()) < 1e-5, at + ": S");
            assertTrue(Inputs.relativeError(gotS.normalizerData(), wantS.normalizerData()) < 1e-5, at + ": z");
            if (got.count() > 0) {
                assertTrue(Inputs.relativeError(got.kvData(), want.kvData()) < 1e-5, at + ": checkpoints");
            }
            LightningState advanced = new CpuBackend(new ScalarKernel()).advance(spec, k, v, initial);
            assertTrue(Inputs.relativeError(advanced.data(), wantS.data()) < 1e-5, at + ": advance S");
        }
    }

    /**
     * elu1 below float32's normal range (x < ln 2^-126 = -87.34, down to where exp x rounds to 0):
     * every kernel gives exp x in float64 rounded once, the bits of {@link FeatureMap#apply(float)},
     * in the vector lanes as in the tail; above it, within the vector exp's ulp. Lengths around
     * the vector width, values of either range mixed, nothing written outside the range.
     */
    @Test
    void elu1BelowTheNormalRangeIsExpInFloat64() {
        SplittableRandom rnd = new SplittableRandom(31);
        for (Kernel kernel : kernels()) {
            for (int n : new int[]{1, 7, 15, 16, 17, 33, 100}) {
                float[] e = new float[n + 2];
                for (int j = 0; j < e.length; j++) {
                    e[j] = (float) (rnd.nextInt(4) == 0 ? rnd.nextDouble() * 8 - 4 : -80 - rnd.nextDouble() * 30);
                }
                float[] got = e.clone();
                kernel.elu1(got, 1, n);
                assertEquals(e[0], got[0]);
                assertEquals(e[n + 1], got[n + 1]);
                for (int j = 1; j <= n; j++) {
                    float want = FeatureMap.ELU1.apply(e[j]);
                    if (e[j] < Kernel.MIN_NORMAL_LOG) {
                        assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(got[j]), kernel.name()
                                + " elu1(" + e[j] + ") at " + j + " of " + n + ": expected " + want + ", got " + got[j]);
                    } else {
                        assertEquals(want, got[j], 2e-7 * Math.abs(want), kernel.name() + " elu1(" + e[j] + ")");
                    }
                }
            }
        }
    }

    /**
     * elu1 on queries whose every element lies below float32's normal range for exp (q in
     * [-100, -88], so phi(q) is a subnormal), plain and normalized, on every kernel, against the
     * float64 recurrence, whole and split in two (pass 1 over the first part, pass 2 over the
     * rest from its state). H = 3, Dk = 5, Dv = 7, T = 150: rows of 15 floats, so the vector
     * lanes and the tail both hold such values, at positions that move with the split.
     */
    @Test
    void elu1OfQueriesBelowTheNormalRangeMatchesTheRecurrence() {
        SplittableRandom rnd = new SplittableRandom(37);
        int tokens = 150;
        int dk = 5;
        int dv = 7;
        AttentionSpec plain = new AttentionSpec(3, dk, dv, new double[] {0.5, 0.06, 1e-6}, 1.0, 64)
                .withFeatureMap(FeatureMap.ELU1);
        for (AttentionSpec spec : new AttentionSpec[] {plain, plain.withNormalization(1e-6)}) {
            TokenTensor q = TokenTensor.allocate(DType.F32, tokens, 3, dk);
            for (int t = 0; t < tokens; t++) {
                for (int h = 0; h < 3; h++) {
                    for (int i = 0; i < dk; i++) {
                        q.set(t, h, i, (float) (-88 - rnd.nextDouble() * 12));
                    }
                }
            }
            TokenTensor k = Inputs.random(rnd, DType.F32, tokens, 3, dk);
            TokenTensor v = Inputs.random(rnd, DType.F32, tokens, 3, dv);
            LightningState zero = LightningState.zeros(spec);
            TokenTensor wantO = TokenTensor.allocate(DType.F32, tokens, 3, dv);
            new RecurrentReference().forward(spec, q, k, v, zero, wantO, Checkpoints.none());
            for (Kernel kernel : kernels()) {
                String at = kernel.name() + (spec.normalized() ? " normalized" : " plain");
                TokenTensor gotO = TokenTensor.allocate(DType.F32, tokens, 3, dv);
                new CpuBackend(kernel, false).forward(spec, q, k, v, zero, gotO, Checkpoints.none());
                double whole = Inputs.relativeError(gotO.toFloats(), wantO.toFloats());
                assertTrue(whole < 1e-5, at + ": o relative error " + whole + ", expected below 1e-5");
                int first = 70;
                LightningState mid = new CpuBackend(kernel, false).advance(spec, k.slice(0, first), v.slice(0, first), zero);
                TokenTensor rest = TokenTensor.allocate(DType.F32, tokens - first, 3, dv);
                new CpuBackend(kernel, false).forward(spec, q.slice(first, tokens - first), k.slice(first, tokens - first),
                        v.slice(first, tokens - first), mid, rest, Checkpoints.none());
                double split = Inputs.relativeError(rest.toFloats(), wantO.slice(first, tokens - first).toFloats());
                assertTrue(split < 1e-5, at + ": o of the split run, relative error " + split + ", expected below 1e-5");
            }
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
