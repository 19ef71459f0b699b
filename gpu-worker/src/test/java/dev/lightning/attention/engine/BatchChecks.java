package dev.lightning.attention.engine;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The checks every batch step is held to, for the CPU and the GPU tests alike: against the float64
 * reference, two steps against one over the concatenated tokens, and against
 * {@link AttentionBackend#forward} per sequence. Each draws fresh random inputs from the case.
 */
public final class BatchChecks {
    private BatchChecks() {
    }

    /** Every S (and z) of a store, slot after slot, as floats. */
    public static float[][] contents(StateStore store) {
        AttentionSpec spec = store.spec();
        int n = store.slots();
        ByteBuffer kv = ByteBuffer.allocate((int) StateStore.kvBytes(spec, n)).order(ByteOrder.LITTLE_ENDIAN);
        ByteBuffer z = ByteBuffer.allocate((int) StateStore.normalizerBytes(spec, n)).order(ByteOrder.LITTLE_ENDIAN);
        store.copyOut(0, n, kv, spec.normalized() ? z : null);
        float[] s = new float[spec.stateSize() * n];
        kv.asFloatBuffer().get(s);
        float[] zf = new float[spec.normalizerSize() * n];
        z.asFloatBuffer().get(zf);
        return new float[][] {s, zf};
    }

    private static void close(String what, float[] got, float[] want, double tolerance) {
        double err = Inputs.relativeError(got, want);
        assertTrue(err < tolerance, what + ": relative error " + err + " over " + tolerance);
    }

    /**
     * One step of {@code step} against the float64 reference from the same random states: o, every
     * touched slot's S and z within {@code tolerance}; untouched slots bit for bit as they were.
     * {@code oType}: the dtype of o (F32 holds the arithmetic; a 16-bit o adds its rounding).
     */
    public static void againstReference(BatchStep step, BatchCase c, DType oType, double tolerance) {
        AttentionSpec spec = c.spec();
        SplittableRandom rnd = new SplittableRandom(c.seed());
        try (BatchStep reference = BatchStep.reference(spec);
             StateStore want = reference.allocate(c.storeSlots());
             StateStore got = step.allocate(c.storeSlots())) {
            c.fillStates(want);
            c.fillStates(got);
            float[][] before = contents(got);
            int[] slots = c.slots(rnd);
            TokenBatch batch = c.batch(rnd, c.tokenCounts(rnd), slots);
            TokenTensor oWant = c.output(batch);
            TokenTensor oGot = TokenTensor.allocate(oType, batch.tokens(), spec.heads(), spec.dv());
            reference.step(want, batch, oWant);
            step.step(got, batch, oGot);
            close("o of " + c, oGot.toFloats(), oWant.toFloats(), tolerance);
            float[][] w = contents(want);
            float[][] g = contents(got);
            boolean[] used = new boolean[c.storeSlots()];
            for (int s : slots) {
                used[s] = true;
            }
            int size = spec.stateSize();
            int zSize = spec.normalizerSize();
            float[] wantUsed = new float[slots.length * size];
            float[] gotUsed = new float[slots.length * size];
            float[] wantZ = new float[slots.length * zSize];
            float[] gotZ = new float[slots.length * zSize];
            for (int i = 0; i < slots.length; i++) {
                System.arraycopy(w[0], slots[i] * size, wantUsed, i * size, size);
                System.arraycopy(g[0], slots[i] * size, gotUsed, i * size, size);
                System.arraycopy(w[1], slots[i] * zSize, wantZ, i * zSize, zSize);
                System.arraycopy(g[1], slots[i] * zSize, gotZ, i * zSize, zSize);
            }
            close("states of " + c, gotUsed, wantUsed, tolerance);
            if (spec.normalized()) {
                close("normalizers of " + c, gotZ, wantZ, tolerance);
            }
            for (int s = 0; s < used.length; s++) {
                if (!used[s]) {
                    assertArrayEquals(java.util.Arrays.copyOfRange(before[0], s * size, (s + 1) * size),
                            java.util.Arrays.copyOfRange(g[0], s * size, (s + 1) * size), "slot " + s + " is in no "
                                    + "sequence of the batch and must not change");
                }
            }
        }
    }

    /**
     * The same step from the same states, {@code runs} times: o and every slot's S and z the same bytes
     * each time. A retried task of a table run repeats its batches and must write what the first attempt
     * wrote; a sum whose order follows thread timing (the GPU kernel's denominators once added by
     * atomicAdd from four warps) breaks that only now and then, hence several runs.
     */
    public static void repeatable(BatchStep step, BatchCase c, int runs) {
        SplittableRandom rnd = new SplittableRandom(c.seed() + 3);
        int[] slots = c.slots(rnd);
        TokenBatch batch = c.batch(rnd, c.tokenCounts(rnd), slots);
        float[] firstO = null;
        float[][] firstStates = null;
        for (int run = 0; run < runs; run++) {
            try (StateStore store = step.allocate(c.storeSlots())) {
                c.fillStates(store);
                TokenTensor o = c.output(batch);
                step.step(store, batch, o);
                float[] got = o.toFloats();
                float[][] states = contents(store);
                if (run == 0) {
                    firstO = got;
                    firstStates = states;
                    continue;
                }
                String who = c + ", run " + (run + 1) + " of " + runs + " against the first";
                assertArrayEquals(Inputs.bits(firstO), Inputs.bits(got), who + ": o");
                assertArrayEquals(Inputs.bits(firstStates[0]), Inputs.bits(states[0]), who + ": states");
                assertArrayEquals(Inputs.bits(firstStates[1]), Inputs.bits(states[1]), who + ": normalizers");
            }
        }
    }

    /**
     * Tokens a then b of every sequence in two steps against a and b concatenated in one step, on
     * {@code step} alone: o of every token and the final states agree to {@code tolerance}.
     */
    public static void twoStepsEqualOne(BatchStep step, BatchCase c, double tolerance) {
        AttentionSpec spec = c.spec();
        SplittableRandom rnd = new SplittableRandom(c.seed() + 1);
        try (StateStore split = step.allocate(c.storeSlots()); StateStore whole = step.allocate(c.storeSlots())) {
            c.fillStates(split);
            c.fillStates(whole);
            int[] slots = c.slots(rnd);
            int[] a = c.tokenCounts(rnd);
            int[] b = c.tokenCounts(rnd);
            TokenBatch first = c.batch(rnd, a, slots);
            TokenBatch second = c.batch(rnd, b, slots);
            int[] ab = new int[a.length];
            for (int i = 0; i < a.length; i++) {
                ab[i] = a[i] + b[i];
            }
            int[] offsets = offsets(ab);
            TokenBatch both = TokenBatch.of(spec, concat(first, second, TokenBatch::q), concat(first, second,
                    TokenBatch::k), concat(first, second, TokenBatch::v), offsets, slots);
            TokenTensor o1 = c.output(first);
            TokenTensor o2 = c.output(second);
            TokenTensor o12 = c.output(both);
            step.step(split, first, o1);
            step.step(split, second, o2);
            step.step(whole, both, o12);
            TokenTensor oSplit = interleave(first, o1, second, o2);
            close("o, two steps against one, " + c, oSplit.toFloats(), o12.toFloats(), tolerance);
            float[][] s = contents(split);
            float[][] w = contents(whole);
            close("states, two steps against one, " + c, s[0], w[0], tolerance);
            if (spec.normalized()) {
                close("normalizers, two steps against one, " + c, s[1], w[1], tolerance);
            }
        }
    }

    /**
     * The step against {@code backend.forward} over each sequence's tokens from its slot's state:
     * o and the states after, to {@code tolerance}.
     */
    public static void againstBackend(BatchStep step, AttentionBackend backend, BatchCase c, double tolerance) {
        AttentionSpec spec = c.spec();
        SplittableRandom rnd = new SplittableRandom(c.seed() + 2);
        try (StateStore store = step.allocate(c.storeSlots())) {
            c.fillStates(store);
            int[] slots = c.slots(rnd);
            TokenBatch batch = c.batch(rnd, c.tokenCounts(rnd), slots);
            LightningState[] initial = new LightningState[slots.length];
            for (int i = 0; i < slots.length; i++) {
                initial[i] = store.read(slots[i]);
            }
            TokenTensor oStep = c.output(batch);
            step.step(store, batch, oStep);
            TokenTensor oBackend = c.output(batch);
            int size = spec.stateSize();
            float[] want = new float[slots.length * size];
            float[] got = new float[slots.length * size];
            for (int i = 0; i < slots.length; i++) {
                int from = batch.start(i);
                int n = batch.length(i);
                LightningState after = backend.forward(spec, batch.q().slice(from, n), batch.k().slice(from, n),
                        batch.v().slice(from, n), initial[i], oBackend.slice(from, n));
                System.arraycopy(after.data(), 0, want, i * size, size);
                System.arraycopy(store.read(slots[i]).data(), 0, got, i * size, size);
            }
            close("o against " + backend.name() + " per sequence, " + c, oStep.toFloats(), oBackend.toFloats(),
                    tolerance);
            close("states against " + backend.name() + " per sequence, " + c, got, want, tolerance);
        }
    }

    static int[] offsets(int[] counts) {
        int[] offsets = new int[counts.length + 1];
        for (int i = 0; i < counts.length; i++) {
            offsets[i + 1] = offsets[i] + counts[i];
        }
        return offsets;
    }

    /** Per sequence, its tokens of {@code a} then its tokens of {@code b}, packed. */
    private static TokenTensor concat(TokenBatch a, TokenBatch b, java.util.function.Function<TokenBatch, TokenTensor> x) {
        TokenTensor xa = x.apply(a);
        TokenTensor xb = x.apply(b);
        int row = xa.heads() * xa.dim();
        float[] fa = xa.toFloats();
        float[] fb = xb.toFloats();
        float[] out = new float[fa.length + fb.length];
        int at = 0;
        for (int i = 0; i < a.count(); i++) {
            System.arraycopy(fa, a.start(i) * row, out, at, a.length(i) * row);
            at += a.length(i) * row;
            System.arraycopy(fb, b.start(i) * row, out, at, b.length(i) * row);
            at += b.length(i) * row;
        }
        return TokenTensor.of(xa.dtype(), a.tokens() + b.tokens(), xa.heads(), xa.dim(), out);
    }

    /** o of two steps, per sequence its rows of the first then of the second, packed as one step's o. */
    private static TokenTensor interleave(TokenBatch a, TokenTensor oa, TokenBatch b, TokenTensor ob) {
        int row = oa.heads() * oa.dim();
        float[] fa = oa.toFloats();
        float[] fb = ob.toFloats();
        float[] out = new float[fa.length + fb.length];
        int at = 0;
        for (int i = 0; i < a.count(); i++) {
            System.arraycopy(fa, a.start(i) * row, out, at, a.length(i) * row);
            at += a.length(i) * row;
            System.arraycopy(fb, b.start(i) * row, out, at, b.length(i) * row);
            at += b.length(i) * row;
        }
        return TokenTensor.of(DType.F32, oa.tokens() + ob.tokens(), oa.heads(), oa.dim(), out);
    }

    /**
     * Slowly decaying heads whose lambda lies halfway between two floats (a step's 1-token decodes take
     * a rounded lambda's error every token, with one sign): 100,000 tokens of one sequence in one step,
     * then in 1,000 steps of 100, plain and normalized elu1, against the float64 reference step; the
     * final S and z within {@code tolerance}.
     */
    public static void slowHeads(java.util.function.Function<AttentionSpec, BatchStep> make, double tolerance) {
        int t = 100_000;
        double[] slopes = {BackendAgreementTest.halfwaySlope(1), -Math.log1p(-2.5 * Math.scalb(1.0, -24))};
        for (boolean normalized : new boolean[] {false, true}) {
            AttentionSpec spec = new AttentionSpec(2, 4, 3, slopes, 1.0, 64);
            if (normalized) {
                spec = spec.withFeatureMap(FeatureMap.ELU1).withNormalization(1e-5);
            }
            for (int steps : new int[] {1, 1_000}) {
                SplittableRandom rnd = new SplittableRandom(41);
                try (BatchStep ref = BatchStep.reference(spec); StateStore want = ref.allocate(1);
                     BatchStep step = make.apply(spec); StateStore got = step.allocate(1)) {
                    int n = t / steps;
                    for (int i = 0; i < steps; i++) {
                        TokenTensor q = Inputs.random(rnd, DType.F32, n, 2, 4);
                        TokenTensor k = Inputs.random(rnd, DType.F32, n, 2, 4);
                        TokenTensor v = Inputs.random(rnd, DType.F32, n, 2, 3);
                        TokenBatch batch = TokenBatch.of(spec, q, k, v, new int[] {0, n}, new int[] {0});
                        ref.step(want, batch, TokenTensor.allocate(DType.F32, n, 2, 3));
                        step.step(got, batch, TokenTensor.allocate(DType.F32, n, 2, 3));
                    }
                    LightningState w = want.read(0);
                    LightningState g = got.read(0);
                    String what = step.name() + ", " + (normalized ? "normalized elu1" : "plain") + " in " + steps
                            + " steps";
                    double err = Inputs.relativeError(g.kv(), w.kv());
                    double zErr = normalized ? Inputs.relativeError(g.normalizer(), w.normalizer()) : 0;
                    System.out.println("slow heads, " + what + ": state " + err + (normalized ? ", z " + zErr : ""));
                    assertTrue(err <= tolerance, what + ": state " + err);
                    assertTrue(zErr <= tolerance, what + ": z " + zErr);
                }
            }
        }
    }
}
