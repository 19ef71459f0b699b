package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.reference.RecurrentReference;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The float64 spot checks against {@link RecurrentReference} over whole synthetic sequences, the
 * checksum sink against the bytes it was fed, and that a wrong row fails its check.
 */
class SpotCheckTest {
    /** Head 0 decays fast (its check truncates the history), head 2 hardly at all (exact). */
    private static final double[] SLOPES = {0.9, 0.05, 1e-7};

    @Test
    void agreesWithTheRecurrentReference() throws Exception {
        for (int tokens : new int[] {63, 1000}) {
            for (boolean variant : new boolean[] {false, true}) {
                SyntheticSequence s = new SyntheticSequence(tokens, 3, 5, 7, DType.BF16, tokens);
                SequenceFile f = s.describe(h -> SLOPES.clone(), variant);
                AttentionSpec spec = f.spec(0.7, 16, variant ? new Variant(FeatureMap.ELU1, true, 1e-5, 0)
                        : Variant.PLAIN);
                TokenTensor o = referenceOutputs(s, f, spec);
                for (long t : new long[] {0, 1, 31, tokens / 2, tokens - 1}) {
                    SpotCheck.Point p = SpotCheck.check(s.reader(), f, spec, DType.F32,
                            SpotCheck.Point.unchecked(t, rowBytes(o, (int) t, DType.F32), "-"));
                    String what = "T " + tokens + (variant ? " elu1 normalized" : "") + ": " + p;
                    assertTrue(p.checked(), what);
                    assertTrue(p.relError < 1e-6, what);
                    assertTrue(p.maxAbsRef > 0, what);
                    assertEquals(t < SpotCheck.history(0.9), p.exact, what);
                    // rounded to BF16, as a BF16 run stores it: within the BF16 tolerance, and not exactly equal
                    SpotCheck.Point b = SpotCheck.check(s.reader(), f, spec, DType.BF16,
                            SpotCheck.Point.unchecked(t, rowBytes(o, (int) t, DType.BF16), "-"));
                    assertTrue(b.relError < SpotCheck.tolerance(DType.BF16), what + " bf16 " + b);
                    assertTrue(b.relError > 1e-5, what + " bf16 " + b);
                }
            }
        }
    }

    /** A real file (the check reads any input): grouped heads (Hq 6, Hk = Hv 2), an initial state and normalizer. */
    @Test
    void readsFilesWithGroupedHeadsAndInitialStates(@org.junit.jupiter.api.io.TempDir java.nio.file.Path tmp)
            throws Exception {
        int tokens = 300;
        SplittableRandom rnd = new SplittableRandom(3);
        float[] q = new float[tokens * 6 * 5];
        float[] k = new float[tokens * 2 * 5];
        float[] v = new float[tokens * 2 * 7];
        float[] s0 = new float[6 * 5 * 7];
        float[] z0 = new float[6 * 5];
        for (float[] a : new float[][] {q, k, v, s0, z0}) {
            for (int i = 0; i < a.length; i++) {
                a[i] = (float) rnd.nextDouble(a == z0 ? 0 : -1, 1);
            }
        }
        java.nio.file.Path file = tmp.resolve("gqa.safetensors");
        dev.lightning.attention.tensor.SafetensorsFile.write(file, List.of(
                dev.lightning.attention.tensor.SafetensorsFile.Tensor.of("q", DType.F16, new long[] {tokens, 6, 5}, q),
                dev.lightning.attention.tensor.SafetensorsFile.Tensor.of("k", DType.F16, new long[] {tokens, 2, 5}, k),
                dev.lightning.attention.tensor.SafetensorsFile.Tensor.of("v", DType.F16, new long[] {tokens, 2, 7}, v),
                dev.lightning.attention.tensor.SafetensorsFile.Tensor.of("initial_state", DType.F32,
                        new long[] {6, 5, 7}, s0),
                dev.lightning.attention.tensor.SafetensorsFile.Tensor.of("initial_normalizer", DType.F32,
                        new long[] {6, 5}, z0)));
        double[] slopes = {0.9, 0.3, 0.05, 0.01, 1e-3, 0};
        try (java.io.RandomAccessFile raf = new java.io.RandomAccessFile(file.toFile(), "r")) {
            RangeReader in = (position, buf, off, len) -> {
                synchronized (raf) {
                    raf.seek(position);
                    raf.readFully(buf, off, len);
                }
            };
            for (boolean normalize : new boolean[] {false, true}) {
                SequenceFile f = SequenceFile.describe(file.toUri().toString(), "gqa", java.nio.file.Files.size(file),
                        in, h -> slopes.clone(), true); // true: the file may hold initial_normalizer
                AttentionSpec spec = f.spec(0.5, 16, normalize ? new Variant(FeatureMap.RELU, true, 1e-3, 0)
                        : Variant.PLAIN);
                TokenTensor qt = tensor(in, f, "q", tokens, 6, 5, file);
                TokenTensor kt = tensor(in, f, "k", tokens, 2, 5, file);
                TokenTensor vt = tensor(in, f, "v", tokens, 2, 7, file);
                TokenTensor o = TokenTensor.allocate(DType.F32, tokens, 6, 7);
                new RecurrentReference().forward(spec, qt, kt, vt, PieceWork.initialState(in, f, spec, 0), o,
                        dev.lightning.attention.engine.Checkpoints.none());
                for (long t : new long[] {0, 5, 64, 299}) {
                    SpotCheck.Point p = SpotCheck.check(in, f, spec, DType.F32,
                            SpotCheck.Point.unchecked(t, rowBytes(o, (int) t, DType.F32), "-"));
                    assertTrue(p.checked() && p.relError < 1e-6, (normalize ? "normalized relu: " : "") + p);
                }
                // the initial state matters: without it (a zero state) the reference moves away
                TokenTensor zero = TokenTensor.allocate(DType.F32, tokens, 6, 7);
                new RecurrentReference().forward(spec, qt, kt, vt, LightningState.zeros(spec), zero,
                        dev.lightning.attention.engine.Checkpoints.none());
                SpotCheck.Point p = SpotCheck.check(in, f, spec, DType.F32,
                        SpotCheck.Point.unchecked(5, rowBytes(zero, 5, DType.F32), "-"));
                assertTrue(p.relError > 1e-3, "a zero initial state must not pass: " + p);
            }
        }
    }

    /**
     * A starting state far larger than the tokens' terms (1e18: a stored state after a long run can outweigh them) is
     * counted where a head's history is truncated too: head 0 (slope 0.9) needs 32 tokens, and at token 50 its term
     * lambda^51 S_init still weighs about 1e-2 of the row; plain and normalized, against the recurrence.
     */
    @Test
    void aLargeStartingStateCountsWhereTheHistoryIsTruncated() throws Exception {
        int tokens = 120;
        SplittableRandom rnd = new SplittableRandom(5);
        float[] s0 = new float[3 * 5 * 7];
        float[] z0 = new float[3 * 5];
        for (float[] a : new float[][] {s0, z0}) {
            for (int i = 0; i < a.length; i++) {
                a[i] = (float) (rnd.nextDouble(a == z0 ? 0.5 : -1, 1) * 1e18);
            }
        }
        for (boolean normalize : new boolean[] {false, true}) {
            SyntheticSequence s = new SyntheticSequence(tokens, 3, 5, 7, DType.F32, 8);
            SequenceFile f = s.describe(h -> SLOPES.clone(), normalize);
            AttentionSpec spec = f.spec(0.7, 16, normalize ? new Variant(FeatureMap.ELU1, true, 1e-5, 0) : Variant.PLAIN);
            LightningState init = normalize ? LightningState.of(3, 5, 7, s0, z0) : LightningState.of(3, 5, 7, s0);
            int n = Math.toIntExact(s.tokens);
            TokenTensor o = TokenTensor.allocate(DType.F32, n, s.heads, s.dv);
            new RecurrentReference().forward(spec, read(s, f, "q", n, s.dk), read(s, f, "k", n, s.dk),
                    read(s, f, "v", n, s.dv), init, o, dev.lightning.attention.engine.Checkpoints.none());
            for (long t : new long[] {0, 33, 50, 119}) {
                SpotCheck.Point p = SpotCheck.check(s.reader(), f, spec, DType.F32,
                        SpotCheck.Point.unchecked(t, rowBytes(o, (int) t, DType.F32), "-"), init);
                String what = (normalize ? "normalized elu1, " : "") + "t " + t + ": " + p;
                assertTrue(p.checked() && p.relError < 1e-6, what);
                assertEquals(t < SpotCheck.history(0.9), p.exact, what);
            }
        }
    }

    private static TokenTensor tensor(RangeReader in, SequenceFile f, String name, int tokens, int heads, int dim,
                                      java.nio.file.Path file) throws Exception {
        java.util.Map<String, dev.lightning.attention.tensor.SafetensorsFile.Tensor> all =
                dev.lightning.attention.tensor.SafetensorsFile.read(file);
        assertEquals(tokens * heads * dim, all.get(name).toFloats().length);
        return all.get(name).asTokens();
    }

    /**
     * Histories longer than the check's read block (1,024 tokens): rows whose history spans two and three blocks, and
     * rows at the blocks' edges, against the recurrence (every test above stays inside one block).
     */
    @Test
    void historiesAcrossReadBlocks() throws Exception {
        int tokens = 3000;
        SyntheticSequence s = new SyntheticSequence(tokens, 3, 5, 7, DType.BF16, 77);
        SequenceFile f = s.describe(h -> new double[] {0.004, 0.05, 1e-7}, false);
        AttentionSpec spec = f.spec(0.7, 16);
        TokenTensor o = referenceOutputs(s, f, spec);
        for (long t : new long[] {1023, 1024, 1025, 2047, 2048, 2999}) {
            SpotCheck.Point p = SpotCheck.check(s.reader(), f, spec, DType.F32,
                    SpotCheck.Point.unchecked(t, rowBytes(o, (int) t, DType.F32), "-"));
            assertTrue(p.checked() && p.relError < 1e-6, "token " + t + ": " + p);
            assertTrue(!p.exact, "head 1 (slope 0.05) reads a truncated history: " + p);
            assertEquals(t + 1, p.history, "the most tokens any head read: head 2's, all of them");
        }
    }

    /**
     * A file with an initial state and no normalizer, and one with a normalizer and no state (normalized): each
     * starting tensor counts alone, and leaving it out is caught.
     */
    @Test
    void eitherStartingTensorAloneCounts(@org.junit.jupiter.api.io.TempDir java.nio.file.Path tmp) throws Exception {
        int tokens = 100;
        SplittableRandom rnd = new SplittableRandom(8);
        for (boolean withState : new boolean[] {true, false}) {
            float[] q = new float[tokens * 2 * 4];
            float[] k = new float[tokens * 2 * 4];
            float[] v = new float[tokens * 2 * 3];
            float[] start = new float[withState ? 2 * 4 * 3 : 2 * 4];
            for (float[] a : new float[][] {q, k, v, start}) {
                // a normalizer alone is positive, keeping the denominators away from 0
                double lo = a == start && !withState ? 0.5 : -1;
                for (int i = 0; i < a.length; i++) {
                    a[i] = (float) rnd.nextDouble(lo, 1);
                }
            }
            java.nio.file.Path file = tmp.resolve(withState + ".safetensors");
            dev.lightning.attention.tensor.SafetensorsFile.write(file, List.of(
                    dev.lightning.attention.tensor.SafetensorsFile.Tensor.of("q", DType.F32, new long[] {tokens, 2, 4}, q),
                    dev.lightning.attention.tensor.SafetensorsFile.Tensor.of("k", DType.F32, new long[] {tokens, 2, 4}, k),
                    dev.lightning.attention.tensor.SafetensorsFile.Tensor.of("v", DType.F32, new long[] {tokens, 2, 3}, v),
                    withState
                            ? dev.lightning.attention.tensor.SafetensorsFile.Tensor.of("initial_state", DType.F32,
                                    new long[] {2, 4, 3}, start)
                            : dev.lightning.attention.tensor.SafetensorsFile.Tensor.of("initial_normalizer", DType.F32,
                                    new long[] {2, 4}, start)));
            try (java.io.RandomAccessFile raf = new java.io.RandomAccessFile(file.toFile(), "r")) {
                RangeReader in = (position, buf, off, len) -> {
                    raf.seek(position);
                    raf.readFully(buf, off, len);
                };
                SequenceFile f = SequenceFile.describe(file.toString(), "one", java.nio.file.Files.size(file), in,
                        h -> new double[] {0.01, 0}, !withState);
                AttentionSpec spec = f.spec(0.5, 16, withState ? Variant.PLAIN : new Variant(FeatureMap.IDENTITY, true,
                        1e-3, 0));
                TokenTensor qt = TokenTensor.of(DType.F32, tokens, 2, 4, q);
                TokenTensor kt = TokenTensor.of(DType.F32, tokens, 2, 4, k);
                TokenTensor vt = TokenTensor.of(DType.F32, tokens, 2, 3, v);
                for (boolean fromFile : new boolean[] {true, false}) {
                    TokenTensor o = TokenTensor.allocate(DType.F32, tokens, 2, 3);
                    new RecurrentReference().forward(spec, qt, kt, vt, fromFile ? PieceWork.initialState(in, f, spec, 0)
                            : LightningState.zeros(spec), o, dev.lightning.attention.engine.Checkpoints.none());
                    SpotCheck.Point p = SpotCheck.check(in, f, spec, DType.F32,
                            SpotCheck.Point.unchecked(50, rowBytes(o, 50, DType.F32), "-"));
                    String what = (withState ? "initial_state" : "initial_normalizer") + (fromFile ? "" : " left out")
                            + ": " + p;
                    assertTrue(fromFile ? p.relError < 1e-6 : p.relError > 1e-3, what);
                }
            }
        }
    }

    @Test
    void aWrongValueFailsTheCheck() throws Exception {
        SyntheticSequence s = new SyntheticSequence(1000, 3, 5, 7, DType.F16, 9);
        SequenceFile f = s.describe(h -> SLOPES.clone(), false);
        AttentionSpec spec = f.spec(1.0, 16);
        TokenTensor o = referenceOutputs(s, f, spec);
        for (DType out : DType.values()) {
            for (int t : new int[] {0, 500, 999}) {
                byte[] row = rowBytes(o, t, out);
                TokenTensor r = TokenTensor.wrap(out, 1, 3, 7, ByteBuffer.wrap(row));
                double max = 0;
                for (int j = 0; j < 7; j++) {
                    max = Math.max(max, Math.abs(r.get(0, 1, j)));
                }
                r.set(0, 1, 3, (float) (r.get(0, 1, 3) + 0.03 * max)); // one element of head 1, 3% of the row
                SpotCheck.Point p = SpotCheck.check(s.reader(), f, spec, out, SpotCheck.Point.unchecked(t, row, "-"));
                assertTrue(p.checked());
                assertTrue(p.relError > SpotCheck.tolerance(out), out + " at " + t + ": " + p);
                assertTrue(p.relError < 0.05, out + " at " + t + ": " + p);
            }
        }
    }

    @Test
    void aHeadWithoutDecayFarIntoTheSequenceIsMarkedUnchecked() throws Exception {
        SyntheticSequence s = new SyntheticSequence(5_000_000, 2, 4, 4, DType.BF16, 1);
        SequenceFile f = s.describe(h -> new double[] {0.0, 0.5}, false);
        SpotCheck.Point p = SpotCheck.check(s.reader(), f, f.spec(1.0, 64), DType.BF16,
                SpotCheck.Point.unchecked(4_999_999, new byte[2 * 4 * 2], "-"));
        assertFalse(p.checked());
        assertTrue(p.unchecked.contains("head 0") && p.unchecked.contains("history"), p.unchecked);
        assertEquals(Long.MAX_VALUE, SpotCheck.history(0));
        assertTrue(SpotCheck.history(1.0 / 256) > 7000 && SpotCheck.history(1.0 / 256) < 9000);
    }

    @Test
    void samplesIncludeEndsAndPieceBoundaries() {
        long tokens = 1_000_000;
        int count = 100;
        java.util.TreeSet<Long> all = new java.util.TreeSet<>();
        for (int i = 0; i < count; i++) {
            Piece p = new Piece(0, i, count, i * 10_000L, (i + 1) * 10_000L);
            for (long t : SpotCheck.samples(tokens, p)) {
                assertTrue(t >= p.start() && t < p.end());
                all.add(t);
            }
        }
        assertTrue(all.contains(0L) && all.contains(tokens - 1) && all.contains(10_000L * 99) && all.contains(9_999L));
        assertTrue(all.size() >= 16 + 8 && all.size() <= 16 + 16, all.toString());
        assertArrayEquals(new long[] {0, 1, 2}, SpotCheck.samples(3, new Piece(0, 0, 1, 0, 3)));
    }

    @Test
    void sinkKeepsTheChecksumSumsAndSampledRowsOfWhatItWasFed() throws Exception {
        SplittableRandom rnd = new SplittableRandom(5);
        for (DType dtype : DType.values()) {
            int tokenBytes = 3 * 7 * dtype.bytes();
            int tokens = 300;
            TokenTensor o = TokenTensor.allocate(dtype, tokens, 3, 7);
            double sum = 0;
            double max = 0;
            for (int t = 0; t < tokens; t++) {
                for (int h = 0; h < 3; h++) {
                    for (int j = 0; j < 7; j++) {
                        o.set(t, h, j, (float) rnd.nextDouble(-5, 5));
                        sum += o.get(t, h, j);
                        max = Math.max(max, Math.abs(o.get(t, h, j)));
                    }
                }
            }
            byte[] all = new byte[tokens * tokenBytes];
            o.bytes().get(all);
            long first = 1000;
            OutputSummary.Sink sink = new OutputSummary.Sink(dtype, first, tokenBytes, new long[] {1000, 1150, 1299});
            for (int at = 0; at < all.length; ) {
                int n = Math.min(all.length - at, rnd.nextInt(1, 200));
                sink.write(all, at, n);
                at += n;
            }
            OutputSummary sum1 = sink.summary();
            assertEquals(SyntheticSequenceTest.crc(all), sum1.crc);
            assertEquals(all.length, sum1.bytes);
            assertEquals(sum, sum1.sum, 1e-9 * tokens);
            assertEquals(max, sum1.maxAbs, 0);
            List<SpotCheck.Point> rows = sum1.samples;
            assertEquals(3, rows.size());
            assertArrayEquals(java.util.Arrays.copyOfRange(all, 150 * tokenBytes, 151 * tokenBytes), rows.get(1).row());
            assertArrayEquals(java.util.Arrays.copyOfRange(all, 299 * tokenBytes, 300 * tokenBytes), rows.get(2).row());
            OutputSummary back = OutputSummary.fromBytes(sum1.toBytes());
            assertEquals(sum1.crc, back.crc);
            assertArrayEquals(rows.get(2).row(), back.samples.get(2).row());
            // two halves combined equal the whole
            OutputSummary.Sink a = new OutputSummary.Sink(dtype, 0, tokenBytes, new long[0]);
            OutputSummary.Sink b = new OutputSummary.Sink(dtype, 100, tokenBytes, new long[] {100});
            a.write(all, 0, 100 * tokenBytes);
            b.write(all, 100 * tokenBytes, all.length - 100 * tokenBytes);
            OutputSummary ab = a.summary().then(b.summary());
            assertEquals(sum1.crc, ab.crc);
            assertEquals(sum1.bytes, ab.bytes);
            assertEquals(sum, ab.sum, 1e-9 * tokens);
            assertEquals(1, ab.samples.size());
            assertEquals(OutputSummary.empty().then(sum1).crc, sum1.crc);
        }
    }

    /** The float64 recurrence over the whole sequence, stored as float32. */
    static TokenTensor referenceOutputs(SyntheticSequence s, SequenceFile f, AttentionSpec spec) throws Exception {
        int n = Math.toIntExact(s.tokens);
        TokenTensor q = read(s, f, "q", n, s.dk);
        TokenTensor k = read(s, f, "k", n, s.dk);
        TokenTensor v = read(s, f, "v", n, s.dv);
        TokenTensor o = TokenTensor.allocate(DType.F32, n, s.heads, s.dv);
        new RecurrentReference().forward(spec, q, k, v, LightningState.zeros(spec), o,
                dev.lightning.attention.engine.Checkpoints.none());
        return o;
    }

    private static TokenTensor read(SyntheticSequence s, SequenceFile f, String name, int n, int dim) throws Exception {
        byte[] raw = new byte[n * s.heads * dim * s.dtype.bytes()];
        s.reader().readFully(s.header().tensor(name).begin(), raw, 0, raw.length);
        assertNotNull(f);
        return TokenTensor.wrap(s.dtype, n, s.heads, dim, ByteBuffer.wrap(raw));
    }

    static byte[] rowBytes(TokenTensor o, int t, DType dtype) {
        TokenTensor row = TokenTensor.allocate(dtype, 1, o.heads(), o.dim());
        for (int h = 0; h < o.heads(); h++) {
            for (int j = 0; j < o.dim(); j++) {
                row.set(0, h, j, o.get(t, h, j));
            }
        }
        byte[] b = new byte[row.tokenBytes()];
        row.bytes().get(b);
        return b;
    }
}
