package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.cpu.CpuBackend;
import dev.lightning.attention.engine.reference.Accuracy;
import dev.lightning.attention.engine.reference.RecurrentReference;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.SafetensorsFile;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The executor's path for the variants, without Spark: a grouped file (Hq = 6, Hk = 2, Hv = 3)
 * with initial state and normalizer, normalized elu1, states every 128 tokens, in two pieces
 * whose boundary falls between checkpoints, through windows of one chunk, against the float64
 * recurrence over the whole file; and the header checks of the variants.
 */
class PieceWorkVariantTest {
    static final int T = 1000;
    static final int HQ = 6;
    static final int HK = 2;
    static final int HV = 3;
    static final int H = 6;
    static final int DK = 12;
    static final int DV = 7;

    @TempDir
    Path tmp;

    private Path write(String name, int hq, int hk, int hv, boolean normalizer) throws IOException {
        SplittableRandom rnd = new SplittableRandom(name.hashCode());
        int h = Math.max(hq, Math.max(hk, hv));
        List<SafetensorsFile.Tensor> t = new ArrayList<>();
        t.add(SafetensorsFile.Tensor.of("q", DType.F32, new long[] {T, hq, DK}, uniform(rnd, T * hq * DK, -1, 1)));
        t.add(SafetensorsFile.Tensor.of("k", DType.F32, new long[] {T, hk, DK}, uniform(rnd, T * hk * DK, -1, 1)));
        t.add(SafetensorsFile.Tensor.of("v", DType.F32, new long[] {T, hv, DV}, uniform(rnd, T * hv * DV, -1, 1)));
        t.add(SafetensorsFile.Tensor.of("initial_state", DType.F32, new long[] {h, DK, DV}, uniform(rnd, h * DK * DV, -2, 2)));
        if (normalizer) {
            t.add(SafetensorsFile.Tensor.of("initial_normalizer", DType.F32, new long[] {h, DK},
                    uniform(rnd, h * DK, 0.5, 4)));
        }
        Path file = tmp.resolve(name);
        SafetensorsFile.write(file, t);
        return file;
    }

    private static SequenceFile describe(Path file, RandomAccessFile raf, boolean normalize) throws IOException {
        return SequenceFile.describe(file.toString(), file.getFileName().toString(), raf.length(), reader(raf),
                Slopes::minimax, normalize);
    }

    private static RangeReader reader(RandomAccessFile raf) {
        return (position, buf, off, len) -> {
            synchronized (raf) {
                raf.seek(position);
                raf.readFully(buf, off, len);
            }
        };
    }

    @Test
    void groupedNormalizedWithStatesAcrossTwoPieces() throws Exception {
        Path file = write("g.safetensors", HQ, HK, HV, true);
        Variant variant = new Variant(FeatureMap.ELU1, true, 1e-5, 128);
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "r");
             AttentionBackend cpu = new CpuBackend()) {
            RangeReader in = reader(raf);
            SequenceFile f = describe(file, raf, true);
            PieceWork work = new PieceWork(0.5, 64, variant, 8 << 10, DType.F32);
            AttentionSpec spec = work.spec(f);
            assertEquals(H, spec.heads());
            assertTrue(spec.normalized() && spec.featureMap() == FeatureMap.ELU1, spec.toString());
            Piece first = new Piece(0, 0, 2, 0, 448); // checkpoints at 127, 255, 383; the next one in the second
            Piece second = new Piece(0, 1, 2, 448, T);
            assertEquals(64, work.windowTokens(f, first), "8k holds one chunk and its checkpoint");

            LightningState initial = PieceWork.initialState(in, f, spec, 0);
            LightningState incoming = initial.then(spec, first.tokens(), work.localState(cpu, in, f, first));
            ByteArrayOutputStream o = new ByteArrayOutputStream();
            ByteArrayOutputStream states = new ByteArrayOutputStream();
            ByteArrayOutputStream normalizers = new ByteArrayOutputStream();
            work.outputs(cpu, in, f, first, initial, o, states, normalizers);
            assertEquals(3 * LightningState.kvBytes(spec), states.size(), "the first piece records the S of 3 states");
            assertEquals(3 * LightningState.normalizerBytes(spec), normalizers.size(), "and their z");
            LightningState last = work.outputs(cpu, in, f, second, incoming, o, states, normalizers);

            Map<String, SafetensorsFile.Tensor> all = SafetensorsFile.read(file);
            AttentionSpec ref = new AttentionSpec(H, DK, DV, Slopes.minimax(H), 0.5, 64).withHeads(HQ, HK, HV)
                    .withFeatureMap(FeatureMap.ELU1).withNormalization(1e-5);
            assertEquals(ref, spec);
            LightningState s0 = LightningState.of(H, DK, DV, all.get("initial_state").toFloats(),
                    all.get("initial_normalizer").toFloats());
            TokenTensor expect = TokenTensor.allocate(DType.F32, T, H, DV);
            Checkpoints cp = Checkpoints.of(ref, 128, 0, T);
            LightningState expectLast = new RecurrentReference().forward(ref, all.get("q").asTokens(),
                    all.get("k").asTokens(), all.get("v").asTokens(), s0, expect, cp);

            TokenTensor got = TokenTensor.wrap(DType.F32, T, H, DV, ByteBuffer.wrap(o.toByteArray()));
            assertClose("o", got.toFloats(), expect.toFloats());
            assertClose("final_state", last.kv(), expectLast.kv());
            assertClose("final_normalizer", last.normalizer(), expectLast.normalizer());
            float[] kv = floats(states.toByteArray());
            float[] z = floats(normalizers.toByteArray());
            assertEquals(7, cp.count());
            assertEquals(7 * spec.stateSize(), kv.length);
            assertEquals(7 * spec.normalizerSize(), z.length);
            assertClose("states", kv, cp.kvData());
            assertClose("normalizers", z, cp.normalizerData());
        }
    }

    private static float[] floats(byte[] raw) {
        float[] x = new float[raw.length / 4];
        ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(x);
        return x;
    }

    /**
     * A NaN that a backend writes only into the normalizer it returns, or into a state or normalizer it records, is
     * reported as that output with its position (the recorded ones numbered across the file), before the window is
     * written. Arithmetic cannot make these alone (a non-finite recorded state makes the final state non-finite too,
     * which is checked first), so a backend that breaks them is what these checks are for.
     */
    @Test
    void nonFiniteNormalizersAndRecordedStatesAreNamedWithTheirPositions() throws Exception {
        Path file = write("p.safetensors", HQ, HK, HV, true);
        Variant variant = new Variant(FeatureMap.ELU1, true, 1e-5, 64);
        // window [128, 192) records state 2 (after token 191)
        int kvAt = (4 * DK + 5) * DV + 6; // head 4, [5, 6]
        int zAt = 3 * DK + 11;           // head 3, 11
        String[][] cases = {
                {"final_normalizer", "final_normalizer[3, 11]", "the state after token 191"},
                {"states", "states[2, 4, 5, 6]", "the states recorded in tokens [128, 192)"},
                {"normalizers", "normalizers[2, 3, 11]", "the states recorded in tokens [128, 192)"}};
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "r"); CpuBackend cpu = new CpuBackend()) {
            RangeReader in = reader(raf);
            SequenceFile f = describe(file, raf, true);
            PieceWork work = new PieceWork(0.5, 64, variant, 8 << 10, DType.F32);
            AttentionSpec spec = work.spec(f);
            Piece whole = new Piece(0, 0, 1, 0, T);
            assertEquals(64, work.windowTokens(f, whole));
            for (String[] c : cases) {
                AttentionBackend poisoning = new WrappedBackend(cpu) {
                    long next;

                    @Override
                    public LightningState forward(AttentionSpec s, TokenTensor q, TokenTensor k, TokenTensor v,
                                                  LightningState state, TokenTensor o, Checkpoints checkpoints) {
                        long at = next;
                        next += k.tokens();
                        LightningState after = super.forward(s, q, k, v, state, o, checkpoints);
                        if (at != 128) {
                            return after;
                        }
                        switch (c[0]) {
                            case "final_normalizer": {
                                float[] z = after.normalizer();
                                z[zAt] = Float.NaN;
                                return LightningState.of(H, DK, DV, after.kv(), z);
                            }
                            case "states":
                                checkpoints.kvData()[kvAt] = Float.POSITIVE_INFINITY;
                                return after;
                            default:
                                checkpoints.normalizerData()[zAt] = Float.NaN;
                                return after;
                        }
                    }
                };
                ByteArrayOutputStream o = new ByteArrayOutputStream();
                ByteArrayOutputStream states = new ByteArrayOutputStream();
                NonFiniteOutputException e = assertThrows(NonFiniteOutputException.class, () -> work.outputs(poisoning,
                        in, f, whole, PieceWork.initialState(in, f, spec, 0), o, states, new ByteArrayOutputStream()));
                assertEquals(c[1], e.first, c[0]);
                assertEquals(1, e.count, c[0]);
                assertTrue(e.getMessage().contains("in the output " + c[0] + " (F32), " + c[2] + ", the first at " + c[1]),
                        e.getMessage());
                assertEquals(128L * H * DV * 4, o.size(), c[0] + ": the bad window is not written");
                assertEquals(2 * LightningState.kvBytes(spec), states.size(), c[0] + ": nor its recorded state");
            }
        }
    }

    /**
     * However large the byte budget, a window's buffers stay within one Java array: q, k, v and o within 2^31 bytes
     * over two (H = 64, Dk = Dv = 256, F32: 262,144 bytes a token, so 4,095 tokens, 4,032 in whole chunks), and the
     * recorded states within 2^31 - 16 floats (a state every token, as the CPU backend allows with --chunk-size 1:
     * 510 states of 64 x 256 x 256 floats, 510 tokens).
     */
    @Test
    void windowsStayWithinOneArrayWhateverTheBudget() throws Exception {
        SequenceFile f = new SyntheticSequence(1L << 24, 64, 256, 256, DType.F32, 1).describe(Slopes::minimax, false);
        Piece whole = new Piece(0, 0, 1, 0, f.tokens);
        assertEquals(4032, new PieceWork(1.0, 64, 1L << 40, DType.F32).windowTokens(f, whole));
        assertEquals(510, new PieceWork(1.0, 1, new Variant(FeatureMap.IDENTITY, false, 0, 1), 1L << 40, DType.F32)
                .windowTokens(f, whole));
        assertEquals(2 * 510, new PieceWork(1.0, 1, new Variant(FeatureMap.IDENTITY, false, 0, 2), 1L << 40, DType.F32)
                .windowTokens(f, whole), "a state every 2 tokens: 510 of them span 1,020 tokens");
    }

    /** The window budget pays for the states a window records: fewer tokens per window with them. */
    @Test
    void windowsMakeRoomForRecordedStates() throws Exception {
        Path file = write("w.safetensors", HQ, HK, HV, false);
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "r")) {
            SequenceFile f = describe(file, raf, false);
            Piece whole = new Piece(0, 0, 1, 0, T);
            long perToken = f.inputBytesPerToken() + f.outputBytesPerToken(DType.F32);
            assertEquals((HQ * DK + HK * DK + HV * DV) * 4L, f.inputBytesPerToken());
            long budget = 5 * 64 * perToken;
            assertEquals(5 * 64, new PieceWork(1.0, 64, budget, DType.F32).windowTokens(f, whole));
            // every chunk records a state of H*Dk*Dv*4 = 2016 bytes: 64 tokens cost 64 * perToken + 2016
            int n = new PieceWork(1.0, 64, new Variant(FeatureMap.IDENTITY, false, 0, 64), budget, DType.F32)
                    .windowTokens(f, whole);
            long state = 4L * H * DK * DV;
            assertTrue(n < 5 * 64 && n % 64 == 0, "window of " + n + " tokens");
            assertTrue(n * perToken + (n / 64 + 1) * state <= budget, "window of " + n + " tokens fits the budget");
        }
    }

    /**
     * The states a window records leave for their streams through a bounded copy: the window budget pays for them
     * once ({@link PieceWork#windowTokens}), and a copy of all of them at once held them twice (here 4 states of
     * 1 MiB in one 4 MiB write beside the 4 MiB they are recorded in). The bytes are those of the states in order.
     */
    @Test
    void recordedStatesAreWrittenThroughABoundedCopy() throws Exception {
        int t = 256;
        int h = 4;
        int d = 256;
        SplittableRandom rnd = new SplittableRandom(17);
        Path file = tmp.resolve("big-states.safetensors");
        SafetensorsFile.write(file, List.of(
                SafetensorsFile.Tensor.of("q", DType.F32, new long[] {t, h, d}, uniform(rnd, t * h * d, -1, 1)),
                SafetensorsFile.Tensor.of("k", DType.F32, new long[] {t, h, d}, uniform(rnd, t * h * d, -1, 1)),
                SafetensorsFile.Tensor.of("v", DType.F32, new long[] {t, h, d}, uniform(rnd, t * h * d, -1, 1))));
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "r"); CpuBackend cpu = new CpuBackend()) {
            RangeReader in = reader(raf);
            SequenceFile f = describe(file, raf, true);
            Variant variant = new Variant(FeatureMap.RELU, true, 1e-5, 64);
            PieceWork work = new PieceWork(1.0, 64, variant, 64L << 20, DType.F32);
            AttentionSpec spec = work.spec(f);
            Piece whole = new Piece(0, 0, 1, 0, t);
            assertEquals(t, work.windowTokens(f, whole), "one window records all 4 states");
            int[] largest = new int[2];
            ByteArrayOutputStream states = new ByteArrayOutputStream();
            ByteArrayOutputStream normalizers = new ByteArrayOutputStream();
            work.outputs(cpu, in, f, whole, LightningState.zeros(spec), OutputStream.nullOutputStream(),
                    largestWrite(states, largest, 0), largestWrite(normalizers, largest, 1));
            assertEquals(4 * LightningState.kvBytes(spec), states.size());
            assertEquals(4 * LightningState.normalizerBytes(spec), normalizers.size());
            assertTrue(largest[0] <= RangeReader.COPY_CHUNK, "largest write of states: " + largest[0] + " bytes");
            assertTrue(largest[1] <= RangeReader.COPY_CHUNK, "largest write of normalizers: " + largest[1] + " bytes");

            Checkpoints cp = Checkpoints.of(spec, 64, 0, t);
            Map<String, SafetensorsFile.Tensor> all = SafetensorsFile.read(file);
            new RecurrentReference().forward(spec, all.get("q").asTokens(), all.get("k").asTokens(),
                    all.get("v").asTokens(), LightningState.zeros(spec), TokenTensor.allocate(DType.F32, t, h, d), cp);
            assertClose("states", floats(states.toByteArray()), cp.kvData());
            assertClose("normalizers", floats(normalizers.toByteArray()), cp.normalizerData());
        }
    }

    /** {@code to}, noting the largest single write in {@code largest[at]}. */
    private static OutputStream largestWrite(OutputStream to, int[] largest, int at) {
        return new java.io.FilterOutputStream(to) {
            @Override
            public void write(byte[] b, int off, int len) throws IOException {
                largest[at] = Math.max(largest[at], len);
                out.write(b, off, len);
            }
        };
    }

    @Test
    void headerChecksOfTheVariants() throws Exception {
        Path bad = write("bad.safetensors", 4, 3, 4, false);
        try (RandomAccessFile raf = new RandomAccessFile(bad.toFile(), "r")) {
            InvalidInputException e = assertThrows(InvalidInputException.class, () -> describe(bad, raf, false));
            assertTrue(e.getMessage().contains("bad.safetensors") && e.getMessage().contains("Hq=4, Hk=3, Hv=4")
                    && e.getMessage().contains("k [" + T + ", 3, " + DK + "]"), e.getMessage());
        }
        Path z = write("z.safetensors", 2, 2, 2, true);
        try (RandomAccessFile raf = new RandomAccessFile(z.toFile(), "r")) {
            InvalidInputException e = assertThrows(InvalidInputException.class, () -> describe(z, raf, false));
            assertTrue(e.getMessage().contains("initial_normalizer") && e.getMessage().contains("--normalize"),
                    e.getMessage());
            SequenceFile f = describe(z, raf, true);
            // without --normalize the state has no z; with it and no initial_normalizer, z starts at zero
            assertTrue(f.initialNormalizerOffset > 0);
        }
        Path s = write("s.safetensors", 2, 2, 2, false);
        try (RandomAccessFile raf = new RandomAccessFile(s.toFile(), "r")) {
            SequenceFile f = describe(s, raf, true);
            AttentionSpec spec = f.spec(1.0, 64, new Variant(FeatureMap.RELU, true, 1e-5, 0));
            LightningState initial = PieceWork.initialState(reader(raf), f, spec, 0);
            assertTrue(initial.normalized());
            for (float x : initial.normalizer()) {
                assertEquals(0f, x);
            }
            assertTrue(Math.abs(initial.get(1, 3, 2)) > 0, "S from the file");
        }
        assertThrows(IllegalArgumentException.class,
                () -> new PieceWork(1.0, 64, new Variant(FeatureMap.IDENTITY, false, 0, 100), 1 << 20, DType.F32));
    }

    /**
     * A NaN in an initial state of one value per row (Dv = 1) is named with its three indices, as any other
     * initial_state's; only initial_normalizer ([H, Dk]) has two. The position took two whenever the last
     * width was 1, so it named initial_state[1, 2] for initial_state[1, 2, 0].
     */
    @Test
    void nonFiniteInitialStatesOfOneValueARowKeepTheirThreeIndices() throws Exception {
        int h = 2;
        int dk = 3;
        int t = 4;
        SplittableRandom rnd = new SplittableRandom(5);
        float[] s0 = uniform(rnd, h * dk, -1, 1);
        s0[(dk + 2)] = Float.NaN; // [1, 2, 0]
        float[] z0 = uniform(rnd, h * dk, 0.5, 2);
        z0[dk + 1] = Float.POSITIVE_INFINITY; // [1, 1]
        Path file = tmp.resolve("dv1.safetensors");
        // the NaN of initial_state first; then, with it mended, the Inf of initial_normalizer
        for (String expected : List.of("initial_state[1, 2, 0]", "initial_normalizer[1, 1]")) {
            SafetensorsFile.write(file, List.of(
                    SafetensorsFile.Tensor.of("q", DType.F32, new long[] {t, h, dk}, uniform(rnd, t * h * dk, -1, 1)),
                    SafetensorsFile.Tensor.of("k", DType.F32, new long[] {t, h, dk}, uniform(rnd, t * h * dk, -1, 1)),
                    SafetensorsFile.Tensor.of("v", DType.F32, new long[] {t, h, 1}, uniform(rnd, t * h, -1, 1)),
                    SafetensorsFile.Tensor.of("initial_state", DType.F32, new long[] {h, dk, 1}, s0),
                    SafetensorsFile.Tensor.of("initial_normalizer", DType.F32, new long[] {h, dk}, z0)));
            try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "r")) {
                SequenceFile f = describe(file, raf, true);
                AttentionSpec spec = f.spec(1.0, 64, new Variant(FeatureMap.IDENTITY, true, 1e-5, 0));
                NonFiniteInputException e = assertThrows(NonFiniteInputException.class,
                        () -> PieceWork.initialState(reader(raf), f, spec, 0));
                assertEquals(expected, e.first);
            }
            s0[dk + 2] = 0.5f;
        }
    }

    private static void assertClose(String what, float[] got, float[] expect) {
        double e = Accuracy.relativeError(got, expect);
        assertTrue(e <= 1e-5, what + " relative error " + e);
    }

    private static float[] uniform(SplittableRandom rnd, int n, double lo, double hi) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (lo + rnd.nextDouble() * (hi - lo));
        }
        return x;
    }
}
