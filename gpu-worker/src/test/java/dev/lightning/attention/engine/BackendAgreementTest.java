package dev.lightning.attention.engine;

import dev.lightning.attention.engine.cpu.CpuBackend;
import dev.lightning.attention.engine.reference.ChunkedReference;
import dev.lightning.attention.engine.reference.RecurrentReference;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every backend against the float64 recurrence, and the two references against each other, on
 * fresh random inputs with awkward sizes, extreme slopes, initial states and all dtypes.
 */
public class BackendAgreementTest {
    static final int CHUNK = 64;
    static final double CPU_TOLERANCE = 1e-5;
    static final double REFERENCE_TOLERANCE = 5e-7;

    /** The cases, shared with the GPU backends' test. */
    public static Stream<Arguments> cases() {
        int[] lengths = {1, 63, 64, 65, 1000};
        int[] heads = {1, 3, 6};
        String[] slopeSets = {"1e-6", "8", "minimax"};
        List<Arguments> out = new ArrayList<>();
        int i = 0;
        for (int t : lengths) {
            for (String slopes : slopeSets) {
                for (boolean initial : new boolean[] {false, true}) {
                    for (DType dtype : DType.values()) {
                        int h = heads[i % heads.length];
                        boolean wideKey = (i / 3) % 2 == 0;
                        out.add(Arguments.of(t, h, wideKey ? 32 : 16, wideKey ? 16 : 24, slopes, initial, dtype, 1000L + i));
                        i++;
                    }
                }
            }
        }
        return out.stream();
    }

    public static double[] slopes(String set, int heads) {
        double[] s = new double[heads];
        switch (set) {
            case "minimax":
                return Slopes.minimax(heads);
            default:
                Arrays.fill(s, Double.parseDouble(set));
                return s;
        }
    }

    @ParameterizedTest(name = "T={0} H={1} Dk={2} Dv={3} slopes={4} initial={5} {6}")
    @MethodSource("cases")
    void backendsAgreeWithTheRecurrence(int t, int h, int dk, int dv, String slopeSet, boolean initial,
                                        DType dtype, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        AttentionSpec spec = new AttentionSpec(h, dk, dv, slopes(slopeSet, h), 0.75, CHUNK);
        TokenTensor q = Inputs.random(rnd, dtype, t, h, dk);
        TokenTensor k = Inputs.random(rnd, dtype, t, h, dk);
        TokenTensor v = Inputs.random(rnd, dtype, t, h, dv);
        LightningState s0 = initial ? Inputs.randomState(rnd, h, dk, dv) : LightningState.zeros(h, dk, dv);

        TokenTensor expectO = TokenTensor.allocate(DType.F32, t, h, dv);
        LightningState expectS = new RecurrentReference().forward(spec, q, k, v, s0, expectO);

        for (AttentionBackend backend : List.of(new ChunkedReference(), new CpuBackend())) {
            double tolerance = backend instanceof CpuBackend ? CPU_TOLERANCE : REFERENCE_TOLERANCE;
            TokenTensor o = TokenTensor.allocate(DType.F32, t, h, dv);
            LightningState s = backend.forward(spec, q, k, v, s0, o);
            double eo = Inputs.relativeError(o.toFloats(), expectO.toFloats());
            double es = Inputs.relativeError(s.kv(), expectS.kv());
            assertTrue(eo <= tolerance, backend.name() + " output relative error " + eo + " > " + tolerance);
            assertTrue(es <= tolerance, backend.name() + " final state relative error " + es + " > " + tolerance);

            LightningState advanced = backend.advance(spec, k, v, s0);
            double ea = Inputs.relativeError(advanced.kv(), expectS.kv());
            assertTrue(ea <= tolerance, backend.name() + " advance() state relative error " + ea);
        }
    }

    /** Windows that start at chunk multiples, carried state between them, equal one whole call. */
    @Test
    void windowsWithCarriedStateEqualOneCall() {
        SplittableRandom rnd = new SplittableRandom(7);
        int t = 1000;
        AttentionSpec spec = new AttentionSpec(3, 24, 40, Slopes.minimax(3), 1.0, CHUNK);
        TokenTensor q = Inputs.random(rnd, DType.BF16, t, 3, 24);
        TokenTensor k = Inputs.random(rnd, DType.BF16, t, 3, 24);
        TokenTensor v = Inputs.random(rnd, DType.BF16, t, 3, 40);
        LightningState s0 = Inputs.randomState(rnd, 3, 24, 40);
        for (AttentionBackend backend : List.of(new CpuBackend(), new ChunkedReference(), new RecurrentReference())) {
            TokenTensor whole = TokenTensor.allocate(DType.F32, t, 3, 40);
            LightningState wholeState = backend.forward(spec, q, k, v, s0, whole);

            TokenTensor split = TokenTensor.allocate(DType.F32, t, 3, 40);
            LightningState s = s0;
            int[] cuts = {0, 128, 192, 704, t};
            for (int c = 0; c + 1 < cuts.length; c++) {
                int from = cuts[c];
                int n = cuts[c + 1] - from;
                s = backend.forward(spec, q.slice(from, n), k.slice(from, n), v.slice(from, n), s, split.slice(from, n));
            }
            assertTrue(Inputs.relativeError(split.toFloats(), whole.toFloats()) <= 1e-6, backend.name());
            assertTrue(Inputs.relativeError(s.kv(), wholeState.kv()) <= 1e-6, backend.name());
        }
    }

    /**
     * The scan's algebra: local states of two pieces (from zero) combined with lambda^n equal the
     * state of the whole, with and without an initial state.
     */
    @Test
    void combineOfLocalStatesEqualsTheWhole() {
        SplittableRandom rnd = new SplittableRandom(11);
        int t = 321;
        int cut = 192;
        AttentionSpec spec = new AttentionSpec(6, 16, 8, Slopes.minimax(6), 1.0, CHUNK);
        TokenTensor k = Inputs.random(rnd, DType.F32, t, 6, 16);
        TokenTensor v = Inputs.random(rnd, DType.F32, t, 6, 8);
        LightningState s0 = Inputs.randomState(rnd, 6, 16, 8);
        AttentionBackend ref = new RecurrentReference();
        LightningState whole = ref.advance(spec, k, v, s0);

        LightningState zero = LightningState.zeros(6, 16, 8);
        LightningState first = ref.advance(spec, k.slice(0, cut), v.slice(0, cut), zero);
        LightningState second = ref.advance(spec, k.slice(cut, t - cut), v.slice(cut, t - cut), zero);
        LightningState combined = s0.then(spec, cut, first).then(spec, t - cut, second);
        assertTrue(Inputs.relativeError(combined.kv(), whole.kv()) <= 1e-6);
    }

    /**
     * The traps of public kernels, each as a wrong variant the comparison must reject: query decay
     * counted from 0, and a state exported as lambda * S. If the test's measure could not tell
     * these apart from the right answer, the agreement tests above would prove nothing.
     */
    @Test
    void theComparisonCatchesKnownMistakes() {
        SplittableRandom rnd = new SplittableRandom(13);
        int t = 130;
        int h = 2;
        AttentionSpec spec = new AttentionSpec(h, 8, 8, new double[] {0.05, 0.3}, 1.0, CHUNK);
        TokenTensor q = Inputs.random(rnd, DType.F32, t, h, 8);
        TokenTensor k = Inputs.random(rnd, DType.F32, t, h, 8);
        TokenTensor v = Inputs.random(rnd, DType.F32, t, h, 8);
        LightningState zero = LightningState.zeros(h, 8, 8);
        TokenTensor o = TokenTensor.allocate(DType.F32, t, h, 8);
        LightningState s = new RecurrentReference().forward(spec, q, k, v, zero, o);

        // Query decay lambda^i instead of lambda^(i+1): the inter-block part of each token
        // beyond the first block is off by a factor lambda.
        TokenTensor wrong = TokenTensor.allocate(DType.F32, t, h, 8);
        new CpuBackend().forward(spec, q, k, v, zero, wrong);
        LightningState p = new RecurrentReference().advance(spec, k.slice(0, 64), v.slice(0, 64), zero);
        for (int i = 64; i < 128; i++) {
            for (int hh = 0; hh < h; hh++) {
                double lambda = Math.exp(-spec.slope(hh));
                for (int j = 0; j < 8; j++) {
                    double inter = 0;
                    for (int d = 0; d < 8; d++) {
                        inter += q.get(i, hh, d) * p.get(hh, d, j);
                    }
                    inter *= Math.pow(lambda, i - 64 + 1);
                    wrong.set(i, hh, j, (float) (wrong.get(i, hh, j) - inter + inter / lambda));
                }
            }
        }
        assertTrue(Inputs.relativeError(wrong.toFloats(), o.toFloats()) > 100 * CPU_TOLERANCE);

        // A state reported as lambda * S.
        float[] shifted = s.kv();
        for (int hh = 0; hh < h; hh++) {
            for (int x = 0; x < 64; x++) {
                shifted[hh * 64 + x] *= (float) Math.exp(-spec.slope(hh));
            }
        }
        assertTrue(Inputs.relativeError(shifted, s.kv()) > 100 * CPU_TOLERANCE);
    }

    @Test
    void largeSlopeUnderflowsCleanly() {
        SplittableRandom rnd = new SplittableRandom(17);
        AttentionSpec spec = new AttentionSpec(1, 4, 4, new double[] {8}, 1.0, CHUNK);
        TokenTensor q = Inputs.random(rnd, DType.F32, 200, 1, 4);
        TokenTensor k = Inputs.random(rnd, DType.F32, 200, 1, 4);
        TokenTensor v = Inputs.random(rnd, DType.F32, 200, 1, 4);
        TokenTensor o = TokenTensor.allocate(DType.F32, 200, 1, 4);
        LightningState s = new CpuBackend().forward(spec, q, k, v, Inputs.randomState(rnd, 1, 4, 4), o);
        for (float x : o.toFloats()) {
            assertTrue(Float.isFinite(x));
        }
        // lambda = e^-8: the state is the last token's k^T v to within e^-8 relative.
        for (int i = 0; i < 4; i++) {
            for (int j = 0; j < 4; j++) {
                double last = (double) k.get(199, 0, i) * v.get(199, 0, j);
                assertEquals(last, s.get(0, i, j), 1e-3);
            }
        }
    }

    /**
     * The slope of a head whose chunk decay lambda^m = 1 - (k + 1/2) 2^-24 sits halfway between two
     * floats (the worst rounding of lambda^m to float32: 3e-8 off, 0.25% of 1 - lambda^m here). A
     * carry that multiplies by the rounded lambda^m takes that error in every chunk with the same
     * sign; over 6,250 chunks the state was 7.5e-5 off the float64 recurrence. See
     * AttentionSpec.decayComplement.
     */
    public static double halfwaySlope(int chunk) {
        return -Math.log1p(-200.5 * Math.scalb(1.0, -24)) / chunk;
    }

    /**
     * A slowly decaying head over many chunks keeps its decay rate: the CPU backend (chunk 16, 6,250
     * chunks) and the scan's combine (LightningState.then, 4,000 pieces of 25 tokens), normalized
     * too, against the float64 recurrence. Before the carries used 1 - lambda^n the CPU backend's state
     * was 7.5e-5 off (2026-12-05).
     */
    @Test
    void aSlowlyDecayingHeadKeepsItsRateOverManyChunks() {
        SplittableRandom rnd = new SplittableRandom(19);
        int t = 100_000;
        int chunk = 16;
        for (boolean normalized : new boolean[] {false, true}) {
            AttentionSpec spec = new AttentionSpec(2, 4, 3, new double[] {halfwaySlope(chunk), halfwaySlope(25)}, 1.0,
                    chunk);
            if (normalized) {
                spec = spec.withFeatureMap(FeatureMap.ELU1).withNormalization(1e-5);
            }
            TokenTensor q = Inputs.random(rnd, DType.F32, t, 2, 4);
            TokenTensor k = Inputs.random(rnd, DType.F32, t, 2, 4);
            TokenTensor v = Inputs.random(rnd, DType.F32, t, 2, 3);
            LightningState zero = LightningState.zeros(spec);
            TokenTensor want = TokenTensor.allocate(DType.F32, t, 2, 3);
            LightningState expect = new RecurrentReference().forward(spec, q, k, v, zero, want);
            TokenTensor got = TokenTensor.allocate(DType.F32, t, 2, 3);
            LightningState s = new CpuBackend().forward(spec, q, k, v, zero, got);
            String what = normalized ? "normalized elu1" : "plain";
            assertTrue(Inputs.relativeError(s.kv(), expect.kv()) <= 5e-6,
                    what + ": state " + Inputs.relativeError(s.kv(), expect.kv()));
            assertTrue(Inputs.relativeError(got.toFloats(), want.toFloats()) <= 5e-6,
                    what + ": o " + Inputs.relativeError(got.toFloats(), want.toFloats()));
            if (normalized) {
                assertTrue(Inputs.relativeError(s.normalizer(), expect.normalizer()) <= 5e-6,
                        what + ": z " + Inputs.relativeError(s.normalizer(), expect.normalizer()));
            }
            // the scan: pieces of 25 tokens from zero (the float64 recurrence's), combined in float32
            LightningState combined = zero;
            RecurrentReference ref = new RecurrentReference();
            for (int at = 0; at < t; at += 25) {
                combined = combined.then(spec, 25, ref.advance(spec, k.slice(at, 25), v.slice(at, 25), zero));
            }
            assertTrue(Inputs.relativeError(combined.kv(), expect.kv()) <= 5e-6,
                    what + ": combined " + Inputs.relativeError(combined.kv(), expect.kv()));
        }
    }

    /**
     * A fast head forgets a carried state much larger than what the new tokens bring (an initial state
     * 1e6 times theirs), to float32 rounding of the result: the CPU backend's chunks (lambda^64 = e^-32)
     * and the scan's combine. The complement form x + (add - (1 - lambda^n) x) would cancel there, off by
     * about 6e-8 of x; Decay takes lambda^n itself where it is below 1/2.
     */
    @Test
    void aFastHeadForgetsALargeCarriedStateCleanly() {
        SplittableRandom rnd = new SplittableRandom(29);
        AttentionSpec spec = new AttentionSpec(1, 4, 4, new double[] {0.5}, 1.0, CHUNK);
        int t = 200;
        TokenTensor q = Inputs.random(rnd, DType.F32, t, 1, 4);
        TokenTensor k = Inputs.random(rnd, DType.F32, t, 1, 4);
        TokenTensor v = Inputs.random(rnd, DType.F32, t, 1, 4);
        float[] big = Inputs.randomState(rnd, 1, 4, 4).kv().clone();
        for (int i = 0; i < big.length; i++) {
            big[i] *= 1e6f;
        }
        LightningState s0 = LightningState.of(1, 4, 4, big);
        LightningState expect = new RecurrentReference().advance(spec, k, v, s0);
        LightningState got = new CpuBackend().advance(spec, k, v, s0);
        assertTrue(Inputs.relativeError(got.kv(), expect.kv()) <= 1e-6,
                "CPU state " + Inputs.relativeError(got.kv(), expect.kv()));
        LightningState zero = LightningState.zeros(1, 4, 4);
        LightningState local = new RecurrentReference().advance(spec, k, v, zero);
        LightningState combined = s0.then(spec, t, local);
        assertTrue(Inputs.relativeError(combined.kv(), expect.kv()) <= 1e-6,
                "combined " + Inputs.relativeError(combined.kv(), expect.kv()));
    }

    /** Every backend refuses, in both passes, a tensor that does not fit the spec, naming it. */
    @Test
    void shapesThatDoNotFitTheSpecAreRefusedByName() {
        SplittableRandom rnd = new SplittableRandom(17);
        AttentionSpec spec = new AttentionSpec(3, 8, 5, Slopes.minimax(3), 1.0, CHUNK);
        TokenTensor q = Inputs.random(rnd, DType.F32, 10, 3, 8);
        TokenTensor k = Inputs.random(rnd, DType.F32, 10, 3, 8);
        TokenTensor v = Inputs.random(rnd, DType.F32, 10, 3, 5);
        TokenTensor vWide = Inputs.random(rnd, DType.F32, 10, 3, 6);
        TokenTensor kShort = Inputs.random(rnd, DType.F32, 9, 3, 8);
        TokenTensor qBf16 = Inputs.random(rnd, DType.BF16, 10, 3, 8);
        TokenTensor o = TokenTensor.allocate(DType.F32, 10, 3, 5);
        TokenTensor oHeads = TokenTensor.allocate(DType.F32, 10, 2, 5);
        LightningState zero = LightningState.zeros(3, 8, 5);
        LightningState other = LightningState.zeros(3, 5, 8);
        for (AttentionBackend b : List.of(new CpuBackend(), new ChunkedReference(), new RecurrentReference())) {
            expectRefused(() -> b.advance(spec, k, vWide, zero), "v is");
            expectRefused(() -> b.advance(spec, kShort, v, zero), "v is");
            expectRefused(() -> b.advance(spec, k, v, other), "does not fit");
            expectRefused(() -> b.forward(spec, q, k, vWide, zero, o), "v is");
            expectRefused(() -> b.forward(spec, qBf16, k, v, zero, o), "share a dtype");
            expectRefused(() -> b.forward(spec, q, k, v, zero, oHeads), "o is");
            b.forward(spec, q, k, v, zero, o); // and the right shapes pass
        }
    }

    private static void expectRefused(org.junit.jupiter.api.function.Executable call, String message) {
        IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, call);
        assertTrue(e.getMessage().contains(message), e.getMessage());
    }
}
