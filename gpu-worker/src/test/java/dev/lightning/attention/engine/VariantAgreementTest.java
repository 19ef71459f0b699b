package dev.lightning.attention.engine;

import dev.lightning.attention.engine.cpu.CpuBackend;
import dev.lightning.attention.engine.reference.ChunkedReference;
import dev.lightning.attention.engine.reference.RecurrentReference;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The variants (grouped heads, feature maps, normalization, checkpoints) on every CPU-side
 * backend: the chunked reference and the CPU backend against the recurrence on the shared
 * {@link VariantCase}s; the recurrence itself against the explicit O(T^2) sums written here; and
 * a run split into pieces (pass 1, scan, pass 2) against one unsplit run.
 */
class VariantAgreementTest {
    static final double CPU_TOLERANCE = BackendAgreementTest.CPU_TOLERANCE;
    static final double REFERENCE_TOLERANCE = BackendAgreementTest.REFERENCE_TOLERANCE;

    static List<VariantCase> cases() {
        return VariantCase.cases();
    }

    /**
     * Outputs, the final state (S and z), every checkpoint (S and z) and the state of pass 1
     * (advance) of each backend against the recurrence, on one window holding the whole sequence.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void backendsAgreeWithTheRecurrence(VariantCase c) {
        AttentionSpec spec = c.spec();
        TokenTensor[] qkv = c.inputs();
        LightningState s0 = c.initialState();
        int t = c.tokens();

        TokenTensor expectO = TokenTensor.allocate(DType.F32, t, spec.heads(), c.dv());
        Checkpoints expectC = c.checkpoints(0, t);
        LightningState expectS = new RecurrentReference().forward(spec, qkv[0], qkv[1], qkv[2], s0, expectO, expectC);

        for (AttentionBackend backend : List.of(new ChunkedReference(), new CpuBackend())) {
            double tolerance = backend instanceof CpuBackend ? CPU_TOLERANCE : REFERENCE_TOLERANCE;
            TokenTensor o = TokenTensor.allocate(DType.F32, t, spec.heads(), c.dv());
            Checkpoints cp = c.checkpoints(0, t);
            LightningState s = backend.forward(spec, qkv[0], qkv[1], qkv[2], s0, o, cp);
            String who = backend.name() + " on " + c;
            double outputTolerance = backend instanceof CpuBackend ? outputTolerance(c) : tolerance;
            within(outputTolerance, o.toFloats(), expectO.toFloats(), who + ": output");
            sameState(tolerance, s, expectS, who + ": final state");
            assertEquals(expectC.count(), cp.count(), who);
            if (cp.count() > 0) {
                within(tolerance, cp.kvData(), expectC.kvData(), who + ": checkpoints S");
                if (spec.normalized()) {
                    within(tolerance, cp.normalizerData(), expectC.normalizerData(), who + ": checkpoints z");
                }
            }
            sameState(tolerance, backend.advance(spec, qkv[1], qkv[2], s0), expectS, who + ": advance() state");
        }
    }

    /**
     * The float32 output tolerance of a case: 1e-5, or about kappa float32 ulps where the
     * denominator's condition kappa ({@link VariantCase#denominatorCondition}) makes that larger.
     * Only normalized cases with the identity map have kappa > 1 (phi(q) . z crosses zero there):
     * measured on the CPU backend, their output error was 0.2 to 0.6 kappa ulps (kappa 319: 5.0e-6,
     * 585: 1.5e-5, 1554: 1.8e-5, 26024: 9.8e-4), so kappa * 1e-7 (1.7 kappa ulps) holds them with a
     * margin while a wrong formula (errors of order 1) still fails by far. Capped at 1e-2, so a
     * case whose denominator happened to be nearly 0 cannot make the comparison unable to fail.
     */
    static double outputTolerance(VariantCase c) {
        return Math.min(1e-2, Math.max(CPU_TOLERANCE, 1e-7 * c.denominatorCondition()));
    }

    /** The cases hold every variant the issue names, so the test above covers them. */
    @Test
    void theSharedCasesCoverEveryVariant() {
        List<VariantCase> all = VariantCase.cases();
        for (FeatureMap phi : FeatureMap.values()) {
            for (boolean normalized : new boolean[] {false, true}) {
                assertTrue(all.stream().anyMatch(c -> c.phi() == phi && c.normalized() == normalized
                        && c.every() > 0 && c.tokens() >= c.every()), phi + " normalized=" + normalized);
            }
        }
        assertTrue(all.stream().anyMatch(c -> c.hk() < c.hq()), "GQA");
        assertTrue(all.stream().anyMatch(c -> c.hv() > c.hk()), "grouped values");
        assertTrue(all.stream().anyMatch(c -> c.heads() / c.hk() == 8), "groups of 8");
        assertTrue(all.stream().anyMatch(c -> c.heads() / c.hk() == 3 || c.heads() / c.hv() == 3), "groups of 3");
        assertTrue(all.stream().anyMatch(c -> c.initial() && c.normalized()), "initial normalizer");
    }

    // ---- the recurrence against the definition, written out as sums ----

    /** One small grouped case for the explicit sums: Hq/Hk/Hv, feature map, normalization. */
    static List<Object[]> explicitCases() {
        List<Object[]> out = new ArrayList<>();
        out.add(new Object[] {6, 2, 3, FeatureMap.ELU1, true, 21L});
        out.add(new Object[] {2, 2, 6, FeatureMap.RELU, true, 22L});
        out.add(new Object[] {4, 1, 2, FeatureMap.IDENTITY, true, 23L});
        out.add(new Object[] {3, 3, 1, FeatureMap.ELU1, false, 24L});
        return out;
    }

    /**
     * o_t = scale * (sum_{j<=t} lambda^(t-j) (phi(q_t).phi(k_j)) v_j + lambda^(t+1) phi(q_t) S0),
     * divided, normalized, by the same sum of scores plus lambda^(t+1) phi(q_t).z0 + eps; the
     * final state lambda^T S0 + sum_j lambda^(T-1-j) phi(k_j)^T v_j (z alike). Each term from
     * the inputs directly, in float64, with phi written out here: nothing shared with the
     * recurrence but the inputs.
     */
    @ParameterizedTest(name = "Hq/Hk/Hv={0}/{1}/{2} phi={3} normalized={4}")
    @MethodSource("explicitCases")
    void theRecurrenceEqualsTheExplicitSums(int hq, int hk, int hv, FeatureMap phi, boolean normalized, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        int t = 70;
        int dk = 5;
        int dv = 7;
        int heads = Math.max(hq, Math.max(hk, hv));
        double[] slopes = new double[heads];
        for (int h = 0; h < heads; h++) {
            slopes[h] = 0.02 + 0.3 * rnd.nextDouble();
        }
        double scale = 0.6;
        double eps = 1e-3;
        AttentionSpec spec = new AttentionSpec(heads, dk, dv, slopes, scale, 64).withHeads(hq, hk, hv)
                .withFeatureMap(phi);
        if (normalized) {
            spec = spec.withNormalization(eps);
        }
        TokenTensor q = Inputs.random(rnd, DType.F32, t, hq, dk);
        TokenTensor k = Inputs.random(rnd, DType.F32, t, hk, dk);
        TokenTensor v = Inputs.random(rnd, DType.F32, t, hv, dv);
        float[] s0 = new float[heads * dk * dv];
        float[] z0 = new float[heads * dk];
        for (int i = 0; i < s0.length; i++) {
            s0[i] = (float) (rnd.nextDouble() * 2 - 1);
        }
        for (int i = 0; i < z0.length; i++) {
            z0[i] = (float) (rnd.nextDouble() * 3 + 0.5);
        }
        LightningState initial = normalized ? LightningState.of(heads, dk, dv, s0, z0) : LightningState.of(heads, dk, dv, s0);

        TokenTensor o = TokenTensor.allocate(DType.F32, t, heads, dv);
        LightningState fin = new RecurrentReference().forward(spec, q, k, v, initial, o);

        float[] expectO = new float[t * heads * dv];
        float[] expectS = new float[heads * dk * dv];
        float[] expectZ = new float[heads * dk];
        int groupQ = heads / hq;
        int groupK = heads / hk;
        int groupV = heads / hv;
        for (int h = 0; h < heads; h++) {
            double lambda = Math.exp(-slopes[h]);
            int qh = h / groupQ;
            int kh = h / groupK;
            int vh = h / groupV;
            for (int ti = 0; ti < t; ti++) {
                double[] num = new double[dv];
                double den = 0;
                for (int j = 0; j <= ti; j++) {
                    double score = 0;
                    for (int d = 0; d < dk; d++) {
                        score += phi(phi, q.get(ti, qh, d)) * phi(phi, k.get(j, kh, d));
                    }
                    double w = Math.pow(lambda, ti - j) * score;
                    for (int e = 0; e < dv; e++) {
                        num[e] += w * v.get(j, vh, e);
                    }
                    den += w;
                }
                double carried = Math.pow(lambda, ti + 1);
                for (int d = 0; d < dk; d++) {
                    double qd = phi(phi, q.get(ti, qh, d));
                    for (int e = 0; e < dv; e++) {
                        num[e] += carried * qd * s0[(h * dk + d) * dv + e];
                    }
                    den += carried * qd * z0[h * dk + d];
                }
                for (int e = 0; e < dv; e++) {
                    double value = scale * num[e] / (normalized ? den + eps : 1);
                    expectO[(ti * heads + h) * dv + e] = (float) value;
                }
            }
            for (int d = 0; d < dk; d++) {
                double zd = Math.pow(lambda, t) * z0[h * dk + d];
                for (int j = 0; j < t; j++) {
                    zd += Math.pow(lambda, t - 1 - j) * phi(phi, k.get(j, kh, d));
                }
                expectZ[h * dk + d] = (float) zd;
                for (int e = 0; e < dv; e++) {
                    double sde = Math.pow(lambda, t) * s0[(h * dk + d) * dv + e];
                    for (int j = 0; j < t; j++) {
                        sde += Math.pow(lambda, t - 1 - j) * phi(phi, k.get(j, kh, d)) * v.get(j, vh, e);
                    }
                    expectS[(h * dk + d) * dv + e] = (float) sde;
                }
            }
        }
        // both sides are float64 rounded once to float32: a few float32 ulps apart at most
        within(3e-7, o.toFloats(), expectO, "outputs");
        within(3e-7, fin.kv(), expectS, "final S");
        if (normalized) {
            within(3e-7, fin.normalizer(), expectZ, "final z");
        }
    }

    /** phi, written out apart from {@link FeatureMap#apply}. */
    private static double phi(FeatureMap phi, double x) {
        switch (phi) {
            case ELU1:
                return x > 0 ? 1 + x : Math.exp(x);
            case RELU:
                return Math.max(x, 0);
            default:
                return x;
        }
    }

    /**
     * Checkpoint c equals the final state of a run over the first (c+1)N tokens, for a window at
     * the start and for windows further on that start from the state before them.
     */
    @Test
    void aCheckpointIsTheFinalStateOfThePrefix() {
        VariantCase c = new VariantCase(600, 6, 2, 3, 24, 16, "minimax", FeatureMap.ELU1, true, true, DType.F32, 128, 31);
        AttentionSpec spec = c.spec();
        TokenTensor[] qkv = c.inputs();
        LightningState s0 = c.initialState();
        AttentionBackend ref = new RecurrentReference();

        Checkpoints whole = c.checkpoints(0, 600);
        ref.forward(spec, qkv[0], qkv[1], qkv[2], s0, TokenTensor.allocate(DType.F32, 600, 6, 16), whole);
        assertEquals(4, whole.count());
        for (int i = 0; i < whole.count(); i++) {
            int prefix = (i + 1) * 128;
            LightningState expect = ref.advance(spec, qkv[1].slice(0, prefix), qkv[2].slice(0, prefix), s0);
            sameState(1e-7, whole.state(spec, i), expect, "checkpoint " + i);
        }

        // a window [192, 600) from the state before it: its checkpoints are 1, 2, 3 of the sequence
        LightningState before = ref.advance(spec, qkv[1].slice(0, 192), qkv[2].slice(0, 192), s0);
        for (AttentionBackend backend : List.of(ref, new ChunkedReference(), new CpuBackend())) {
            Checkpoints later = c.checkpoints(192, 408);
            assertEquals(1, later.first());
            assertEquals(3, later.count());
            backend.forward(spec, qkv[0].slice(192, 408), qkv[1].slice(192, 408), qkv[2].slice(192, 408), before,
                    TokenTensor.allocate(DType.F32, 408, 6, 16), later);
            double tolerance = backend instanceof CpuBackend ? CPU_TOLERANCE : REFERENCE_TOLERANCE;
            for (int i = 0; i < later.count(); i++) {
                sameState(tolerance, later.state(spec, i), whole.state(spec, i + 1), backend.name() + " checkpoint " + (i + 1));
            }
        }
    }

    // ---- split runs ----

    /**
     * A sequence cut into pieces at chunk multiples, run as the job runs it: pass 1 (advance of
     * each piece from zero), the scan ({@link LightningState#then}), pass 2 (forward of each piece
     * from its incoming state, with its checkpoints), equals one unsplit forward: outputs, final
     * state and every checkpoint in order.
     */
    @Test
    void splitRunsEqualTheUnsplitRun() {
        VariantCase c = new VariantCase(1000, 6, 2, 3, 24, 40, "minimax", FeatureMap.ELU1, true, true, DType.BF16, 128, 41);
        int[] cuts = {0, 128, 192, 704, 1000};
        splitEqualsUnsplit(c, cuts);
    }

    /** The same for grouped values, relu and checkpoints every 64 tokens, one piece of one chunk. */
    @Test
    void splitRunsEqualTheUnsplitRunGroupedValues() {
        VariantCase c = new VariantCase(777, 2, 2, 6, 16, 24, "1e-6", FeatureMap.RELU, true, false, DType.F32, 64, 43);
        int[] cuts = {0, 64, 320, 384, 777};
        splitEqualsUnsplit(c, cuts);
    }

    private static void splitEqualsUnsplit(VariantCase c, int[] cuts) {
        AttentionSpec spec = c.spec();
        TokenTensor[] qkv = c.inputs();
        LightningState s0 = c.initialState();
        int t = c.tokens();
        int heads = spec.heads();
        for (AttentionBackend backend : List.of(new CpuBackend(), new ChunkedReference())) {
            TokenTensor whole = TokenTensor.allocate(DType.F32, t, heads, c.dv());
            Checkpoints wholeCp = c.checkpoints(0, t);
            LightningState wholeState = backend.forward(spec, qkv[0], qkv[1], qkv[2], s0, whole, wholeCp);
            assertEquals(t / c.every(), wholeCp.count());

            // pass 1 and the scan
            int pieces = cuts.length - 1;
            LightningState[] incoming = new LightningState[pieces + 1];
            incoming[0] = s0;
            for (int p = 0; p < pieces; p++) {
                int from = cuts[p];
                int n = cuts[p + 1] - from;
                LightningState local = backend.advance(spec, qkv[1].slice(from, n), qkv[2].slice(from, n),
                        LightningState.zeros(spec));
                incoming[p + 1] = incoming[p].then(spec, n, local);
            }
            // pass 2
            TokenTensor split = TokenTensor.allocate(DType.F32, t, heads, c.dv());
            List<Float> kvs = new ArrayList<>();
            List<Float> zs = new ArrayList<>();
            long nextCheckpoint = 0;
            LightningState last = null;
            for (int p = 0; p < pieces; p++) {
                int from = cuts[p];
                int n = cuts[p + 1] - from;
                Checkpoints cp = c.checkpoints(from, n);
                assertEquals(nextCheckpoint, cp.first(), "piece " + p + " starts at the next checkpoint");
                last = backend.forward(spec, qkv[0].slice(from, n), qkv[1].slice(from, n), qkv[2].slice(from, n),
                        incoming[p], split.slice(from, n), cp);
                nextCheckpoint += cp.count();
                for (float x : cp.kvData()) {
                    kvs.add(x);
                }
                for (float x : cp.normalizerData()) {
                    zs.add(x);
                }
            }
            String who = backend.name() + " on " + c;
            within(1e-6, split.toFloats(), whole.toFloats(), who + ": outputs");
            sameState(1e-6, last, wholeState, who + ": final state of pass 2");
            sameState(1e-6, incoming[pieces], wholeState, who + ": final state of the scan");
            assertEquals(wholeCp.count(), nextCheckpoint, who);
            within(1e-6, floats(kvs), wholeCp.kvData(), who + ": checkpoints S");
            within(1e-6, floats(zs), wholeCp.normalizerData(), who + ": checkpoints z");
        }
    }

    private static float[] floats(List<Float> list) {
        float[] f = new float[list.size()];
        for (int i = 0; i < f.length; i++) {
            f[i] = list.get(i);
        }
        return f;
    }

    static void sameState(double tolerance, LightningState got, LightningState expect, String what) {
        assertEquals(expect.normalized(), got.normalized(), what + ": normalizer present");
        within(tolerance, got.kv(), expect.kv(), what + " S");
        if (expect.normalized()) {
            within(tolerance, got.normalizer(), expect.normalizer(), what + " z");
        }
    }

    static void within(double tolerance, float[] got, float[] expect, String what) {
        double e = Inputs.relativeError(got, expect);
        assertTrue(e <= tolerance, what + ": relative error " + e + " > " + tolerance);
    }
}
