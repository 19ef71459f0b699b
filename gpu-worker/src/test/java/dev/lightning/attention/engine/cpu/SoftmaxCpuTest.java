package dev.lightning.attention.engine.cpu;

import dev.lightning.attention.engine.Inputs;
import dev.lightning.attention.engine.SoftmaxBackend;
import dev.lightning.attention.engine.SoftmaxCase;
import dev.lightning.attention.engine.SoftmaxPartial;
import dev.lightning.attention.engine.SoftmaxSpec;
import dev.lightning.attention.engine.reference.SoftmaxReference;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The CPU softmax backend, on both kernels (the vector one and the scalar fallback), against the
 * float64 definition on fresh random inputs: T = 1, 63, 1000 and 40,000 (sampled query blocks
 * over every key), grouped heads Hq/Hk = 1, 2, 8 and 6/3, Dk != Dv, widths below a vector,
 * windows of 1 token, shorter than a block and spanning blocks, F32, BF16 and F16 inputs; its
 * block calls merged against one call; scores that overflow a naive exp.
 */
class SoftmaxCpuTest {
    /** The tolerance for float32 (relative, Frobenius, over o). */
    private static final double F32_TOLERANCE = 1e-5;

    private final SoftmaxBackend reference = new SoftmaxReference();

    static List<SoftmaxCpu> backends() {
        List<SoftmaxCpu> all = new ArrayList<>();
        all.add(new SoftmaxCpu(new ScalarKernel()));
        Kernel vector = Kernel.vectorOrNull();
        assertTrue(vector != null, "jdk.incubator.vector does not load in the test JVM");
        all.add(new SoftmaxCpu(vector));
        return all;
    }

    @Test
    void theDefaultBackendTakesTheVectorKernel() {
        assertTrue(new SoftmaxCpu().kernelName().startsWith("vector"), new SoftmaxCpu().kernelName());
    }

    @Test
    void wholeSequencesMatchFloat64() {
        Object[][] cases = {
            // T, Hq, Hk, Dk, Dv, window, dtype
            {1, 1, 1, 16, 16, 0L, DType.F32},
            {1, 8, 1, 48, 80, 0L, DType.BF16},
            {63, 2, 1, 48, 80, 0L, DType.F32},
            {63, 6, 3, 48, 80, 0L, DType.F16},
            {63, 8, 8, 128, 64, 5L, DType.F32},
            {130, 3, 3, 7, 5, 0L, DType.F32},
            {300, 4, 1, 16, 24, 17L, DType.BF16},
            {1000, 8, 1, 128, 64, 0L, DType.F32},
            {1000, 6, 3, 48, 80, 0L, DType.BF16},
            {1000, 2, 2, 64, 64, 100L, DType.F16},
            {1000, 4, 2, 32, 32, 1L, DType.F32},
        };
        long seed = 1;
        for (Object[] x : cases) {
            SoftmaxCase c = SoftmaxCase.random(seed++, (DType) x[6], (int) x[0], (int) x[1], (int) x[2], (int) x[3],
                    (int) x[4], (long) x[5]);
            SoftmaxPartial want = c.whole(reference);
            for (SoftmaxCpu cpu : backends()) {
                assertClose(want, c.whole(cpu), F32_TOLERANCE, cpu.kernelName() + " " + c.spec + " T=" + c.tokens()
                        + " " + x[6]);
            }
        }
    }

    @Test
    void fortyThousandTokensAtSampledQueries() {
        int t = 40_000;
        Object[][] cases = {{DType.F32, SoftmaxSpec.NO_WINDOW}, {DType.BF16, 5000L}};
        long seed = 20;
        for (Object[] x : cases) {
            SoftmaxCase c = SoftmaxCase.random(seed++, (DType) x[0], t, 8, 2, 64, 48, (long) x[1]);
            // query blocks at the start, in the middle off any block boundary, and at the end
            int[][] blocks = {{0, 16}, {20_011, 16}, {t - 16, 16}};
            for (int[] b : blocks) {
                SoftmaxPartial want = c.call(reference, b[0], b[1], 0, t);
                for (SoftmaxCpu cpu : backends()) {
                    assertClose(want, c.call(cpu, b[0], b[1], 0, t), F32_TOLERANCE, cpu.kernelName() + " T=40000 "
                            + c.spec + " " + x[0] + " queries from " + b[0]);
                }
            }
        }
    }

    @Test
    void blockCallsMergedInOrderEqualOneCall() {
        long seed = 30;
        for (long window : new long[] {SoftmaxSpec.NO_WINDOW, 150}) {
            SoftmaxCase c = SoftmaxCase.random(seed++, DType.F32, 700, 6, 3, 48, 80, window);
            int[] cuts = {1, 64, 100, 333, 334, 640};
            for (SoftmaxCpu cpu : backends()) {
                String what = cpu.kernelName() + " " + c.spec;
                SoftmaxPartial one = c.whole(cpu);
                SoftmaxPartial merged = c.merged(cpu, 0, c.tokens(), cuts);
                double err = Inputs.relativeError(merged.o(), one.o());
                assertTrue(err < 1e-6, what + ": merged key blocks against one call, relative error " + err);
                assertLseClose(one.lse(), merged.lse(), 1e-6, what);
                // a query block in the middle, over the same key blocks
                SoftmaxPartial part = c.merged(cpu, 200, 150, cuts);
                SoftmaxPartial partOne = c.call(cpu, 200, 150, 0, c.tokens());
                assertTrue(Inputs.relativeError(part.o(), partOne.o()) < 1e-6, what + " queries [200, 350)");
                // and the same calls again give the same bytes
                assertArrayEquals(merged.toBytes(), c.merged(cpu, 0, c.tokens(), cuts).toBytes(), what);
                assertArrayEquals(one.toBytes(), c.whole(cpu).toBytes(), what);
                // both against the definition
                assertClose(c.whole(reference), merged, F32_TOLERANCE, what + " merged");
            }
        }
    }

    /**
     * A call writes every element of its partial: the executor's path (SoftmaxWork) reuses one partial across its key
     * blocks, so a row left as the previous block wrote it would be merged twice. Into a partial of garbage, each
     * case gives the bytes a fresh one gets: queries that see none of the call's keys, a block whose first rows see
     * none (window), a query block whose last rows see none (keys after them), grouped heads, T = 1 and 63.
     */
    @Test
    void everyCallWritesTheWholePartial() {
        SoftmaxCase windowed = SoftmaxCase.random(41, DType.F32, 300, 6, 2, 16, 24, 20L);
        SoftmaxCase causal = SoftmaxCase.random(42, DType.BF16, 300, 3, 3, 8, 5, SoftmaxSpec.NO_WINDOW);
        int[][] calls = {{0, 100, 100, 200}, {200, 100, 0, 150}, {100, 100, 150, 50}, {0, 300, 0, 300}, {0, 1, 0, 1},
            {5, 63, 0, 40}, {140, 130, 120, 60}};
        for (SoftmaxCpu cpu : backends()) {
            for (SoftmaxCase c : new SoftmaxCase[] {windowed, causal}) {
                for (int[] x : calls) {
                    String what = cpu.kernelName() + " " + c.spec + " queries " + x[0] + " +" + x[1] + ", keys " + x[2]
                            + " +" + x[3];
                    assertArrayEquals(c.call(cpu, x[0], x[1], x[2], x[3]).toBytes(),
                            c.callIntoUsed(cpu, x[0], x[1], x[2], x[3]).toBytes(), what);
                }
            }
        }
    }

    /** A call whose tensors or partial do not fit the spec is refused before any work, naming what differs. */
    @Test
    void callsThatDoNotFitTheSpecAreRefused() {
        SoftmaxCase c = SoftmaxCase.random(43, DType.F32, 40, 6, 2, 16, 24, SoftmaxSpec.NO_WINDOW);
        TokenTensor q = c.q.slice(0, 10);
        TokenTensor k = c.k.slice(0, 20);
        TokenTensor v = c.v.slice(0, 20);
        for (SoftmaxCpu cpu : backends()) {
            String[][] expect = {
                {"q has shape [20, 2, 16], expected [T, 6, 16]"}, {"k has shape [20, 2, 24], expected [T, 2, 16]"},
                {"v has shape [20, 2, 16], expected [T, 2, 24]"}, {"k has 20 tokens, v 19: they must match"},
                {"block starts must be >= 0, got q at -1, k at 0"}, {"partial holds [9, 6, 24], expected [10, 6, 24]"}};
            Runnable[] calls = {
                () -> cpu.forward(c.spec, k, 0, k, v, 0, SoftmaxPartial.empty(c.spec, 20)),
                () -> cpu.forward(c.spec, q, 0, v, v, 0, SoftmaxPartial.empty(c.spec, 10)),
                () -> cpu.forward(c.spec, q, 0, k, k, 0, SoftmaxPartial.empty(c.spec, 10)),
                () -> cpu.forward(c.spec, q, 0, k, c.v.slice(0, 19), 0, SoftmaxPartial.empty(c.spec, 10)),
                () -> cpu.forward(c.spec, q, -1, k, v, 0, SoftmaxPartial.empty(c.spec, 10)),
                () -> cpu.forward(c.spec, q, 0, k, v, 0, SoftmaxPartial.empty(c.spec, 9))};
            for (int i = 0; i < calls.length; i++) {
                IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                        calls[i]::run);
                assertTrue(e.getMessage().equals(expect[i][0]), cpu.kernelName() + ": " + e.getMessage());
            }
        }
    }

    @Test
    void queriesThatSeeNoKeyOfTheCallGetTheIdentity() {
        SoftmaxCase c = SoftmaxCase.random(40, DType.F32, 300, 4, 2, 16, 16, 20L);
        for (SoftmaxCpu cpu : backends()) {
            // keys after every query; keys before every query's window; a mix (queries 100..199 over keys
            // [150, 200): 100..149 see none, 150..199 some)
            SoftmaxPartial later = c.call(cpu, 0, 100, 100, 200);
            SoftmaxPartial early = c.call(cpu, 200, 100, 0, 150);
            SoftmaxPartial mixed = c.call(cpu, 100, 100, 150, 50);
            SoftmaxPartial mixedWant = c.call(reference, 100, 100, 150, 50);
            for (int r = 0; r < 100 * 4; r++) {
                assertEquals(Float.NEGATIVE_INFINITY, later.lse()[r]);
                assertEquals(Float.NEGATIVE_INFINITY, early.lse()[r]);
                assertEquals(r < 50 * 4, mixed.lse()[r] == Float.NEGATIVE_INFINITY, "row " + r);
            }
            assertTrue(isZero(later.o()) && isZero(early.o()));
            assertClose(mixedWant, mixed, F32_TOLERANCE, cpu.kernelName() + " mixed");
        }
    }

    @Test
    void scoresThatOverflowANaiveExpStayFinite() {
        // inputs in [-100, 100): scores in the thousands (float32 exp overflows above 88.7)
        SoftmaxCase c = SoftmaxCase.random(50, DType.F32, 300, 4, 2, 32, 16, SoftmaxSpec.NO_WINDOW, 100.0);
        SoftmaxPartial want = c.whole(reference);
        float maxLse = 0;
        for (float x : want.lse()) {
            maxLse = Math.max(maxLse, Math.abs(x));
        }
        assertTrue(maxLse > 709, "scores too small to overflow: |lse| <= " + maxLse);
        for (SoftmaxCpu cpu : backends()) {
            SoftmaxPartial got = c.whole(cpu);
            for (float x : got.o()) {
                assertTrue(Float.isFinite(x), cpu.kernelName() + ": o " + x);
            }
            for (float x : got.lse()) {
                assertTrue(Float.isFinite(x), cpu.kernelName() + ": lse " + x);
            }
            // scores of size S carry float32 rounding of about 6e-8 S (units in the last place of
            // thousands): the weights of near-tied keys move by that, so o is further off than at
            // unit scale (measured: 1.0e-5 scalar kernel, 1.4e-6 vector)
            double err = Inputs.relativeError(got.o(), want.o());
            assertTrue(err < 1e-4, cpu.kernelName() + ": relative error " + err + " at scores up to " + maxLse);
            // lse to the scores' own float32 precision, a few ulps of the largest (measured: 2.9e-3
            // with |lse| up to 13,656, where a float32 ulp is 9.8e-4)
            double worstLse = 0;
            for (int i = 0; i < want.lse().length; i++) {
                worstLse = Math.max(worstLse, Math.abs(want.lse()[i] - got.lse()[i]));
            }
            assertTrue(worstLse < 1e-6 * maxLse, cpu.kernelName() + ": lse off by " + worstLse);
        }
    }

    @Test
    void outputRoundedToBf16AndF16IsWithinItsRounding() {
        SoftmaxCase c = SoftmaxCase.random(60, DType.BF16, 200, 4, 2, 32, 40, SoftmaxSpec.NO_WINDOW);
        SoftmaxPartial want = c.whole(reference);
        for (DType type : new DType[] {DType.BF16, DType.F16}) {
            TokenTensor o = TokenTensor.allocate(type, 200, 4, 40);
            c.whole(new SoftmaxCpu()).writeO(o);
            float[] got = o.toFloats();
            for (int i = 0; i < got.length; i++) {
                // the float32 o is within about 1e-6 relative of the exact one, so rounding it
                // lands on the exact value's rounding or, near a tie, its neighbour: one ulp of
                // the type (bfloat16 8 significant bits, half 11, subnormal below 2^-14)
                float exact = want.o()[i];
                int e = Math.getExponent(exact);
                float ulp = type == DType.BF16 ? Math.scalb(1f, e - 7) : Math.scalb(1f, Math.max(e, -14) - 10);
                assertTrue(Math.abs(got[i] - exact) <= ulp, type + " o[" + i + "] " + got[i] + " vs " + exact);
            }
        }
    }

    private static boolean isZero(float[] x) {
        for (float v : x) {
            if (v != 0) {
                return false;
            }
        }
        return true;
    }

    /** o to {@code tolerance} relative (Frobenius), lse to 1e-5 relative (absolute below 1), -inf alike. */
    static void assertClose(SoftmaxPartial want, SoftmaxPartial got, double tolerance, String what) {
        double err = Inputs.relativeError(got.o(), want.o());
        assertTrue(err < tolerance, what + ": o relative error " + err + " > " + tolerance);
        assertLseClose(want.lse(), got.lse(), 1e-5, what);
    }

    static void assertLseClose(float[] want, float[] got, double relative, String what) {
        for (int i = 0; i < want.length; i++) {
            if (want[i] == Float.NEGATIVE_INFINITY || got[i] == Float.NEGATIVE_INFINITY) {
                assertEquals(want[i], got[i], what + ": lse " + i);
                continue;
            }
            assertEquals(want[i], got[i], relative * Math.max(1, Math.abs(want[i])), what + ": lse " + i);
        }
    }
}
