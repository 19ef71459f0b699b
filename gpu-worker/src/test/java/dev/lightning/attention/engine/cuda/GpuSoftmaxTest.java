package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.Inputs;
import dev.lightning.attention.engine.SoftmaxBackend;
import dev.lightning.attention.engine.SoftmaxPartial;
import dev.lightning.attention.engine.SoftmaxSpec;
import dev.lightning.attention.engine.reference.SoftmaxReference;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The GPU softmax backend (softmax.cu) against the float64 definition ({@link SoftmaxReference})
 * on fresh random inputs. Skipped, with a message saying why, where no GPU is usable; the one test
 * that needs no GPU checks the error made there.
 *
 * <p>Tolerances, on o (|v| < 1) and lse, absolute:
 * <pre>
 *   o:   1e-5 + 4 eps32 kappa + eps_P        lse: 1e-5 (1 + max |lse|) + 4 eps32 kappa
 * </pre>
 * kappa = scale max|q| max|k| Dk bounds the scores' size: float32 scores are off by about eps32
 * kappa, which moves every weight by as much (this is what grows with inputs scaled by 100, for
 * any float32 implementation, the CPU one too). eps_P is P's rounding to the input type before
 * the P V product on the tensor cores: 2^-8 for BF16 (its rounding level, twice the unit
 * roundoff 2^-9), 2^-11 for F16, 0 for F32, where the tolerance is the job's 1e-5. On the H200
 * (bench/softmax_peer.py, the same cases) BF16 errors were at most 1.6e-3, F16 1.8e-4, F32 1.6e-7.
 */
@Tag("gpu")
class GpuSoftmaxTest {
    private static SoftmaxBackend gpu;
    /** The same kept to the portable (mma.sync) kernels, also on a Hopper GPU. */
    private static CudaSoftmaxBackend portable;
    private static final SoftmaxReference REFERENCE = new SoftmaxReference();

    @BeforeAll
    static void open() {
        String reason = Backends.gpuUnavailableReason();
        if (reason != null) {
            System.out.println("GpuSoftmaxTest SKIPPED (but the no-GPU error test): " + reason);
            return;
        }
        gpu = Backends.softmaxGpu(0, Backends.DEFAULT_GPU_MEMORY);
        portable = (CudaSoftmaxBackend) Backends.softmaxGpu(0, Backends.DEFAULT_GPU_MEMORY);
        portable.hopperKernels = false;
        System.out.println("GpuSoftmaxTest on " + gpu.device());
    }

    @AfterAll
    static void close() {
        if (gpu != null) {
            portable.close();
            gpu.close();
        }
    }

    private static void needGpu() {
        Assumptions.assumeTrue(gpu != null, "no usable GPU: " + Backends.gpuUnavailableReason());
    }

    static Stream<Arguments> cases() {
        List<Arguments> out = new ArrayList<>();
        // T, Hq, Hk, Dk, Dv, window, amplitude
        int[][] shapes = {
            {1, 1, 1, 64, 64, 0, 1}, {63, 2, 1, 128, 128, 0, 1}, {63, 3, 3, 40, 24, 0, 1},
            {1000, 8, 1, 128, 64, 0, 1}, {1000, 6, 3, 33, 17, 0, 1}, {1000, 16, 2, 64, 128, 100, 1},
            {1000, 4, 2, 256, 200, 0, 1}, {1000, 8, 2, 128, 128, 0, 100}, {300, 2, 1, 64, 96, 1, 1},
        };
        long seed = 11;
        for (DType dtype : new DType[] {DType.F32, DType.BF16, DType.F16}) {
            for (int[] s : shapes) {
                out.add(Arguments.of(s[0], s[1], s[2], s[3], s[4], (long) s[5], (double) s[6], dtype, seed++));
            }
        }
        return out.stream();
    }

    @ParameterizedTest(name = "T={0} Hq={1} Hk={2} Dk={3} Dv={4} W={5} x{6} {7}")
    @MethodSource("cases")
    void agreesWithTheFloat64DefinitionAndRepeatsItsBytes(int t, int hq, int hk, int dk, int dv, long window, double amp,
                                                          DType dtype, long seed) {
        needGpu();
        SplittableRandom rnd = new SplittableRandom(seed);
        SoftmaxSpec spec = new SoftmaxSpec(hq, hk, dk, dv, SoftmaxSpec.defaultScale(dk), window);
        TokenTensor q = scaled(rnd, dtype, t, hq, dk, amp);
        TokenTensor k = scaled(rnd, dtype, t, hk, dk, amp);
        TokenTensor v = Inputs.random(rnd, dtype, t, hk, dv);
        SoftmaxPartial want = SoftmaxPartial.empty(spec, t);
        REFERENCE.forward(spec, q, 0, k, v, 0, want);
        for (SoftmaxBackend b : new SoftmaxBackend[] {gpu, portable}) {
            SoftmaxPartial got = SoftmaxPartial.empty(spec, t);
            b.forward(spec, q, 0, k, v, 0, got);
            assertClose(spec, dtype, q, k, want, got, ((CudaSoftmaxBackend) b).lastKernel + ": ");
            // again, the same bits: a retried task must write what the first attempt wrote (a race or a sum in
            // an order set by thread timing would show here)
            SoftmaxPartial again = SoftmaxPartial.empty(spec, t);
            b.forward(spec, q, 0, k, v, 0, again);
            assertArrayEquals(got.toBytes(), again.toBytes(), ((CudaSoftmaxBackend) b).lastKernel + ": a second run");
        }
    }

    /**
     * A block call (queries at 3000.. over keys at 2500..3199, window 300), one whose queries see no
     * key (o = 0, lse = -inf), and block calls merged in key order equal to the whole call.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("dtypes")
    void blockCallsAndTheirMerge(DType dtype) {
        needGpu();
        SplittableRandom rnd = new SplittableRandom(5);
        SoftmaxSpec spec = new SoftmaxSpec(8, 2, 64, 96, 0.125, 300);
        TokenTensor q = Inputs.random(rnd, dtype, 400, 8, 64);
        TokenTensor k = Inputs.random(rnd, dtype, 700, 2, 64);
        TokenTensor v = Inputs.random(rnd, dtype, 700, 2, 96);
        SoftmaxPartial got = SoftmaxPartial.empty(spec, 400);
        gpu.forward(spec, q, 3000, k, v, 2500, got);
        SoftmaxPartial want = SoftmaxPartial.empty(spec, 400);
        REFERENCE.forward(spec, q, 3000, k, v, 2500, want);
        assertClose(spec, dtype, q, k, want, got, "block ");

        SoftmaxPartial none = SoftmaxPartial.empty(spec, 400);
        java.util.Arrays.fill(none.o(), 7f); // must be overwritten
        gpu.forward(spec, q, 0, k, v, 2500, none);
        for (float x : none.lse()) {
            assertEquals(Float.NEGATIVE_INFINITY, x);
        }
        for (float x : none.o()) {
            assertEquals(0f, x);
        }

        SoftmaxSpec causal = new SoftmaxSpec(8, 2, 64, 96, 0.125, SoftmaxSpec.NO_WINDOW);
        int n = 1000;
        TokenTensor qq = Inputs.random(rnd, dtype, n, 8, 64);
        TokenTensor kk = Inputs.random(rnd, dtype, n, 2, 64);
        TokenTensor vv = Inputs.random(rnd, dtype, n, 2, 96);
        SoftmaxPartial whole = SoftmaxPartial.empty(causal, n);
        gpu.forward(causal, qq, 0, kk, vv, 0, whole);
        SoftmaxPartial merged = SoftmaxPartial.empty(causal, n);
        int[] cuts = {0, 137, 400, 401, 1000};
        for (int i = 0; i + 1 < cuts.length; i++) {
            SoftmaxPartial part = SoftmaxPartial.empty(causal, n);
            gpu.forward(causal, qq, 0, kk.slice(cuts[i], cuts[i + 1] - cuts[i]), vv.slice(cuts[i], cuts[i + 1] - cuts[i]),
                    cuts[i], part);
            merged.merge(part);
        }
        // 16-bit: P is rounded relative to each block's own maximum, so split and whole differ at P's rounding
        double tol = 1e-5 + pRounding(dtype);
        assertTrue(maxDiff(whole.o(), merged.o()) <= tol, "merged o differs by " + maxDiff(whole.o(), merged.o()));
        assertTrue(maxDiff(whole.lse(), merged.lse()) <= 1e-5 * 10, "merged lse differs by "
                + maxDiff(whole.lse(), merged.lse()));
    }

    /**
     * A call writes every element of its partial, as the CPU backends' test holds it (the executor reuses one partial
     * across key blocks): into a partial of garbage, the bytes a fresh one gets.
     */
    @Test
    void everyCallWritesTheWholePartial() {
        needGpu();
        dev.lightning.attention.engine.SoftmaxCase c = dev.lightning.attention.engine.SoftmaxCase.random(41, DType.BF16,
                300, 6, 2, 64, 96, 20L);
        for (int[] x : new int[][] {{0, 100, 100, 200}, {200, 100, 0, 150}, {100, 100, 150, 50}, {0, 300, 0, 300},
            {140, 130, 120, 60}}) {
            assertArrayEquals(c.call(gpu, x[0], x[1], x[2], x[3]).toBytes(), c.callIntoUsed(gpu, x[0], x[1], x[2], x[3])
                    .toBytes(), "queries " + x[0] + " +" + x[1] + ", keys " + x[2] + " +" + x[3]);
        }
    }

    static Stream<DType> dtypes() {
        return Stream.of(DType.F32, DType.BF16, DType.F16);
    }

    /** A device budget far below the call: the backend computes it in query and key slices, the same numbers. */
    @ParameterizedTest(name = "{0}")
    @MethodSource("dtypes")
    void slicesOfASmallBudgetEqualTheWholeCall(DType dtype) {
        needGpu();
        SplittableRandom rnd = new SplittableRandom(9);
        SoftmaxSpec spec = new SoftmaxSpec(4, 2, 48, 80, 0.2, 500);
        int n = 3000;
        TokenTensor q = Inputs.random(rnd, dtype, n, 4, 48);
        TokenTensor k = Inputs.random(rnd, dtype, n, 2, 48);
        TokenTensor v = Inputs.random(rnd, dtype, n, 2, 80);
        SoftmaxPartial whole = SoftmaxPartial.empty(spec, n);
        gpu.forward(spec, q, 0, k, v, 0, whole);
        try (SoftmaxBackend small = Backends.softmaxGpu(0, 400_000)) {
            SoftmaxPartial sliced = SoftmaxPartial.empty(spec, n);
            small.forward(spec, q, 0, k, v, 0, sliced);
            CudaSoftmaxBackend s = (CudaSoftmaxBackend) small;
            assertTrue(s.lastQuerySlices > 1 && s.lastKeySlices > 1, "sliced: " + s.lastQuerySlices + " query, "
                    + s.lastKeySlices + " key slices");
            double tol = 1e-5 + pRounding(dtype);
            assertTrue(maxDiff(whole.o(), sliced.o()) <= tol, "sliced o differs by " + maxDiff(whole.o(), sliced.o()));
            assertTrue(maxDiff(whole.lse(), sliced.lse()) <= 1e-4, "sliced lse differs by "
                    + maxDiff(whole.lse(), sliced.lse()));
        }
    }

    /** A long sequence: T = 40,000, the whole call on the GPU, sampled query rows against the definition. */
    @ParameterizedTest(name = "{0}")
    @MethodSource("dtypes")
    void fortyThousandTokensSampledRows(DType dtype) {
        needGpu();
        SplittableRandom rnd = new SplittableRandom(40_000);
        int n = 40_000;
        SoftmaxSpec spec = new SoftmaxSpec(8, 2, 64, 64, SoftmaxSpec.defaultScale(64), SoftmaxSpec.NO_WINDOW);
        TokenTensor q = Inputs.random(rnd, dtype, n, 8, 64);
        TokenTensor k = Inputs.random(rnd, dtype, n, 2, 64);
        TokenTensor v = Inputs.random(rnd, dtype, n, 2, 64);
        SoftmaxPartial got = SoftmaxPartial.empty(spec, n);
        gpu.forward(spec, q, 0, k, v, 0, got);
        int[] rows = {0, 1, 63, 64, 4095, 12_345, 20_000, 31_999, 39_998, 39_999};
        for (int t : rows) {
            SoftmaxPartial want = SoftmaxPartial.empty(spec, 1);
            REFERENCE.forward(spec, q.slice(t, 1), t, k, v, 0, want); // one query at position t: a block call
            SoftmaxPartial one = SoftmaxPartial.empty(spec, 1);
            System.arraycopy(got.o(), t * 8 * 64, one.o(), 0, 8 * 64);
            System.arraycopy(got.lse(), t * 8, one.lse(), 0, 8);
            assertClose(spec, dtype, q, k, want, one, "row " + t + " ");
        }
    }

    /** Where no GPU is usable, asking for the backend fails at once and says why. */
    @Test
    void withoutAGpuTheErrorSaysWhy() {
        String reason = Backends.gpuUnavailableReason();
        Assumptions.assumeTrue(reason != null, "a GPU is usable here");
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> Backends.softmaxGpu(0, 1 << 20));
        assertTrue(e.getMessage().contains("no usable GPU") && e.getMessage().contains(reason), e.getMessage());
    }

    // ------------------------------------------------------------------ helpers

    private static TokenTensor scaled(SplittableRandom rnd, DType dtype, int t, int h, int d, double amp) {
        TokenTensor x = Inputs.random(rnd, DType.F32, t, h, d);
        float[] f = x.toFloats();
        for (int i = 0; i < f.length; i++) {
            f[i] *= (float) amp;
        }
        return TokenTensor.of(dtype, t, h, d, f);
    }

    private static double pRounding(DType dtype) {
        return dtype == DType.BF16 ? Math.scalb(1.0, -8) : dtype == DType.F16 ? Math.scalb(1.0, -11) : 0;
    }

    private static double maxAbs(TokenTensor x) {
        double m = 0;
        for (float f : x.toFloats()) {
            m = Math.max(m, Math.abs(f));
        }
        return m;
    }

    private static double maxDiff(float[] a, float[] b) {
        double m = 0;
        for (int i = 0; i < a.length; i++) {
            if (a[i] == b[i]) {
                continue; // also -inf == -inf
            }
            m = Math.max(m, Math.abs((double) a[i] - b[i]));
        }
        return m;
    }

    private static void assertClose(SoftmaxSpec spec, DType dtype, TokenTensor q, TokenTensor k, SoftmaxPartial want,
                                    SoftmaxPartial got, String what) {
        double kappa = spec.scale() * maxAbs(q) * maxAbs(k) * spec.dk();
        double eps32 = Math.scalb(1.0, -24);
        double oTol = 1e-5 + 4 * eps32 * kappa + pRounding(dtype);
        double maxLse = 0;
        boolean anyVisible = false;
        for (float x : want.lse()) {
            if (x != Float.NEGATIVE_INFINITY) {
                maxLse = Math.max(maxLse, Math.abs(x));
                anyVisible = true;
            }
        }
        assertTrue(anyVisible, what + "the reference saw no key: the comparison could not fail");
        double lseTol = 1e-5 * (1 + maxLse) + 4 * eps32 * kappa;
        for (int r = 0; r < want.lse().length; r++) {
            float w = want.lse()[r];
            float g = got.lse()[r];
            if (w == Float.NEGATIVE_INFINITY) {
                assertEquals(Float.NEGATIVE_INFINITY, g, what + "row " + r + " sees no key: lse must be -inf");
            } else {
                assertTrue(Float.isFinite(g) && Math.abs(g - (double) w) <= lseTol, what + "lse of row " + r + ": " + g
                        + ", expected " + w + " within " + lseTol);
            }
        }
        for (int i = 0; i < want.o().length; i++) {
            float g = got.o()[i];
            assertTrue(Float.isFinite(g) && Math.abs(g - (double) want.o()[i]) <= oTol, what + "o[" + i + "] = " + g
                    + ", expected " + want.o()[i] + " within " + oTol);
        }
    }
}
