package dev.lightning.attention.job.tables;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.reference.Accuracy;
import dev.lightning.attention.engine.reference.RecurrentReference;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.TokenTensor;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.functions;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Sequences as table rows through Spark (local[2], Kryo with registration required as the job runs
 * it): Parquet in and out against the float64 recurrence, rows shuffled across files, split
 * against unsplit, the rejections before compute, many short sequences packed into few tasks, and
 * the README's example and layout table.
 */
public class TablesTest {
    private static SparkSession spark;

    @BeforeAll
    static void start() {
        spark = SparkSession.builder().master("local[2]").appName("tables-test")
                .config("spark.ui.enabled", "false")
                .config("spark.serializer", "org.apache.spark.serializer.KryoSerializer")
                .config("spark.kryo.registrationRequired", "false") // as LightningMain sets it for tables
                .config("spark.kryo.registrator", LightningKryoRegistrator.class.getName())
                .config("spark.sql.shuffle.partitions", "4")
                .getOrCreate();
    }

    @AfterAll
    static void stop() {
        spark.stop();
    }

    /** One random sequence, its values already rounded to its dtype. */
    public static final class Seq {
        public final String name;
        final int tokens;
        public final int hq;
        public final int hk;
        public final int hv;
        public final int dk;
        public final int dv;
        public final DType dtype;
        public final TokenTensor q;
        public final TokenTensor k;
        public final TokenTensor v;
        public double[] slopes;
        public LightningState initial;

        public Seq(String name, int tokens, int hq, int hk, int hv, int dk, int dv, DType dtype, Random rnd) {
            this.name = name;
            this.tokens = tokens;
            this.hq = hq;
            this.hk = hk;
            this.hv = hv;
            this.dk = dk;
            this.dv = dv;
            this.dtype = dtype;
            this.q = TokenTensor.of(dtype, tokens, hq, dk, random(tokens * hq * dk, rnd, 1 / Math.sqrt(dk)));
            this.k = TokenTensor.of(dtype, tokens, hk, dk, random(tokens * hk * dk, rnd, 1));
            this.v = TokenTensor.of(dtype, tokens, hv, dv, random(tokens * hv * dv, rnd, 1));
        }

        public int heads() {
            return Math.max(hq, Math.max(hk, hv));
        }

        AttentionSpec spec(double scale, boolean normalize) {
            AttentionSpec s = new AttentionSpec(heads(), dk, dv, slopes != null ? slopes : Slopes.minimax(heads()), scale, 64)
                    .withHeads(hq, hk, hv);
            return normalize ? s.withFeatureMap(FeatureMap.ELU1).withNormalization(1e-5) : s;
        }

        /** Rows of blocks cut at random lengths of 1..maxRow tokens. */
        public List<Row> rows(Random rnd, int maxRow) {
            List<Row> rows = new ArrayList<>();
            for (int t = 0; t < tokens; ) {
                int n = Math.min(tokens - t, 1 + rnd.nextInt(maxRow));
                rows.add(row(t, n));
                t += n;
            }
            return rows;
        }

        public Row row(int t, int n) {
            return RowFactory.create(name, (long) t, n, dtype.name(), hq, hk, hv, dk, dv, bytes(q, t, n), bytes(k, t, n),
                    bytes(v, t, n));
        }

        public Row sequenceRow(boolean normalize) {
            Object sl = slopes == null ? null : TableCompute.boxed(slopes);
            byte[] s = null;
            byte[] z = null;
            if (initial != null) {
                byte[] all = initial.toBytes();
                int kv = heads() * dk * dv * 4;
                s = java.util.Arrays.copyOfRange(all, 0, kv);
                z = normalize ? java.util.Arrays.copyOfRange(all, kv, all.length) : null;
            }
            return RowFactory.create(name, sl, s, z);
        }
    }

    public static float[] random(int n, Random rnd, double amp) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) ((rnd.nextDouble() * 2 - 1) * amp);
        }
        return x;
    }

    public static byte[] bytes(TokenTensor t, int from, int n) {
        ByteBuffer b = t.slice(from, n).bytes();
        byte[] out = new byte[b.remaining()];
        b.get(out);
        return out;
    }

    /** The float64 recurrence's o (as float32) and final state of a sequence. */
    public static float[][] reference(Seq s, double scale, boolean normalize) {
        AttentionSpec spec = s.spec(scale, normalize);
        TokenTensor o = TokenTensor.allocate(DType.F32, s.tokens, s.heads(), s.dv);
        LightningState init = s.initial != null ? s.initial : LightningState.zeros(spec);
        LightningState last = new RecurrentReference().forward(spec, s.q, s.k, s.v, init, o);
        return new float[][] {o.toFloats(), last.data(), normalize ? last.normalizerData() : null};
    }

    /** Per sequence: o assembled from its rows in token order (checking that they tile it), as floats. */
    static Map<String, float[]> oBySequence(Dataset<Row> o, Map<String, Seq> seqs) {
        Map<String, List<Row>> by = new HashMap<>();
        for (Row r : o.collectAsList()) {
            by.computeIfAbsent(r.getString(0), x -> new ArrayList<>()).add(r);
        }
        Map<String, float[]> out = new HashMap<>();
        for (Map.Entry<String, List<Row>> e : by.entrySet()) {
            Seq s = seqs.get(e.getKey());
            List<Row> rows = e.getValue();
            rows.sort((a, b) -> Long.compare(a.getLong(1), b.getLong(1)));
            DType dt = DType.valueOf(rows.get(0).getString(3));
            ByteBuffer all = ByteBuffer.allocate(s.tokens * s.heads() * s.dv * dt.bytes());
            long next = 0;
            for (Row r : rows) {
                assertEquals(next, r.getLong(1), e.getKey() + ": o rows must tile the sequence");
                assertEquals(s.heads(), r.getInt(4));
                assertEquals(s.dv, r.getInt(5));
                all.put((byte[]) r.get(6));
                next += r.getInt(2);
            }
            assertEquals(s.tokens, next);
            all.flip();
            out.put(e.getKey(), TokenTensor.wrap(dt, s.tokens, s.heads(), s.dv, all).toFloats());
        }
        return out;
    }

    public static float[] floats(byte[] b) {
        float[] f = new float[b.length / 4];
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(f);
        return f;
    }

    /** A mix of awkward shapes; the BF16 one long enough to split at 256 tokens per partition. */
    public static List<Seq> mixed(Random rnd, boolean normalize) {
        List<Seq> seqs = new ArrayList<>();
        seqs.add(new Seq("one token", 1, 2, 2, 2, 16, 16, DType.F32, rnd));
        Seq gqa = new Seq("gqa/63", 63, 6, 2, 2, 16, 24, DType.F32, rnd);
        seqs.add(gqa);
        Seq lng = new Seq("long bf16", 1000, 3, 3, 3, 32, 8, DType.BF16, rnd);
        lng.slopes = new double[] {0.01, 0.2, 0.7};
        AttentionSpec spec = lng.spec(0.5, normalize);
        float[] s0 = random(spec.stateSize(), rnd, 0.5);
        float[] z0 = normalize ? random(spec.normalizerSize(), rnd, 0.5) : null;
        for (int i = 0; z0 != null && i < z0.length; i++) {
            z0[i] = Math.abs(z0[i]);
        }
        lng.initial = normalize ? LightningState.of(3, 32, 8, s0, z0) : LightningState.of(3, 32, 8, s0);
        seqs.add(lng);
        seqs.add(new Seq("f16", 200, 4, 4, 1, 8, 16, DType.F16, rnd));
        return seqs;
    }

    static Dataset<Row> blocksOf(List<Seq> seqs, Random rnd, int maxRow) {
        List<Row> rows = new ArrayList<>();
        for (Seq s : seqs) {
            rows.addAll(s.rows(rnd, maxRow));
        }
        Collections.shuffle(rows, rnd);
        return spark.createDataFrame(rows, TableSchema.BLOCKS.schema());
    }

    static Dataset<Row> sequencesOf(List<Seq> seqs, boolean normalize) {
        List<Row> rows = new ArrayList<>();
        for (Seq s : seqs) {
            if (s.slopes != null || s.initial != null) {
                rows.add(s.sequenceRow(normalize));
            }
        }
        return spark.createDataFrame(rows, TableSchema.SEQUENCES.schema());
    }

    public static Map<String, Seq> byName(List<Seq> seqs) {
        Map<String, Seq> m = new HashMap<>();
        seqs.forEach(s -> m.put(s.name, s));
        return m;
    }

    /** Checks o and the final states of a run against the float64 recurrence. */
    public static void checkAgainstReference(List<Seq> seqs, Dataset<Row> o, Dataset<Row> states, double scale,
                                             boolean normalize) {
        Map<String, float[]> got = oBySequence(o, byName(seqs));
        Map<String, Row> finals = new HashMap<>();
        for (Row r : states.collectAsList()) {
            finals.put(r.getString(0), r);
        }
        assertEquals(seqs.size(), got.size());
        assertEquals(seqs.size(), finals.size());
        for (Seq s : seqs) {
            float[][] ref = reference(s, scale, normalize);
            double tol = s.dtype == DType.F32 ? 1e-5 : s.dtype == DType.F16 ? 2e-3 : 1e-2;
            double err = Accuracy.relativeError(got.get(s.name), ref[0]);
            assertTrue(err < tol, s.name + ": o off by " + err);
            Row f = finals.get(s.name);
            assertEquals(s.tokens, f.getLong(1));
            double stateErr = Accuracy.relativeError(floats((byte[]) f.get(6)), ref[1]);
            assertTrue(stateErr < 1e-5, s.name + ": final state off by " + stateErr);
            if (normalize) {
                double zErr = Accuracy.relativeError(floats((byte[]) f.get(7)), ref[2]);
                assertTrue(zErr < 1e-5, s.name + ": final normalizer off by " + zErr);
            }
        }
    }

    @Test
    void parquetInAndOutMatchesTheReferenceSplitOrNot(@TempDir Path dir) {
        Random rnd = new Random(15);
        List<Seq> seqs = mixed(rnd, false);
        String in = dir.resolve("in").toString();
        blocksOf(seqs, rnd, 40).repartition(3).write().parquet(in);
        sequencesOf(seqs, false).write().parquet(dir.resolve("seq").toString());
        Dataset<Row> blocks = spark.read().parquet(in);
        Dataset<Row> perSeq = spark.read().parquet(dir.resolve("seq").toString());
        assertTrue(new java.io.File(in).listFiles((d, n) -> n.endsWith(".parquet")).length >= 3);
        // split: the long sequence in 4 pieces of 256 tokens
        try (LightningTables.Result split = LightningTables.compute(blocks, perSeq, "--scale", "0.5",
                "--backend", "cpu", "--partition-tokens", "256")) {
            split.o().write().parquet(dir.resolve("o-split").toString());
            split.finalStates().write().parquet(dir.resolve("s-split").toString());
        }
        Dataset<Row> oSplit = spark.read().parquet(dir.resolve("o-split").toString());
        checkAgainstReference(seqs, oSplit, spark.read().parquet(dir.resolve("s-split").toString()), 0.5, false);
        try (LightningTables.Result whole = LightningTables.compute(blocks, perSeq, "--scale", "0.5",
                "--backend", "cpu")) {
            checkAgainstReference(seqs, whole.o(), whole.finalStates(), 0.5, false);
            Map<String, float[]> a = oBySequence(oSplit, byName(seqs));
            Map<String, float[]> b = oBySequence(whole.o(), byName(seqs));
            for (Seq s : seqs) {
                double err = Accuracy.relativeError(a.get(s.name), b.get(s.name));
                assertTrue(err < (s.dtype == DType.F32 ? 1e-6 : 1e-2), s.name + ": split and unsplit differ by " + err);
            }
        }
    }

    @Test
    void variantWithInitialNormalizer() {
        Random rnd = new Random(16);
        List<Seq> seqs = mixed(rnd, true);
        try (LightningTables.Result r = LightningTables.compute(blocksOf(seqs, rnd, 70), sequencesOf(seqs, true),
                "--backend", "cpu", "--partition-tokens", "320", "--feature-map", "elu1", "--normalize")) {
            checkAgainstReference(seqs, r.o(), r.finalStates(), 1.0, true);
        }
    }

    /** The o rows of a run as (sequence, start) -> bytes. */
    static Map<String, byte[]> rowBytes(Dataset<Row> o) {
        Map<String, byte[]> m = new HashMap<>();
        for (Row r : o.collectAsList()) {
            m.put(r.getString(0) + "@" + r.getLong(1) + "+" + r.getInt(2), (byte[]) r.get(6));
        }
        return m;
    }

    @Test
    void rowsShuffledAcrossFilesGiveTheSameBytes(@TempDir Path dir) {
        Random rnd = new Random(17);
        List<Seq> seqs = mixed(rnd, false);
        List<Row> rows = new ArrayList<>();
        for (Seq s : seqs) {
            rows.addAll(s.rows(new Random(3), 50));
        }
        List<Row> other = new ArrayList<>(rows);
        Collections.shuffle(other, new Random(99));
        spark.createDataFrame(rows, TableSchema.BLOCKS.schema()).coalesce(1).write().parquet(dir.resolve("a").toString());
        spark.createDataFrame(other, TableSchema.BLOCKS.schema()).repartition(5).write().parquet(dir.resolve("b").toString());
        Map<String, byte[]> a;
        Map<String, byte[]> b;
        Map<String, byte[]> again;
        String[] opts = {"--backend", "cpu", "--partition-tokens", "128"};
        try (LightningTables.Result r = LightningTables.compute(spark.read().parquet(dir.resolve("a").toString()), opts)) {
            a = rowBytes(r.o());
        }
        try (LightningTables.Result r = LightningTables.compute(spark.read().parquet(dir.resolve("b").toString()), opts)) {
            b = rowBytes(r.o());
        }
        try (LightningTables.Result r = LightningTables.compute(spark.read().parquet(dir.resolve("b").toString()), opts)) {
            again = rowBytes(r.o());
        }
        assertEquals(a.keySet(), b.keySet());
        for (String key : a.keySet()) {
            assertArrayEquals(a.get(key), b.get(key), key);
            assertArrayEquals(b.get(key), again.get(key), key);
        }
    }

    /** The message of the InvalidInputException {@code run} throws, directly or inside Spark's exceptions. */
    static String rejection(org.junit.jupiter.api.function.Executable run) {
        Throwable t = assertThrows(Throwable.class, run);
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (c instanceof InvalidInputException) {
                return c.getMessage();
            }
        }
        throw new AssertionError("expected an InvalidInputException, got " + t, t);
    }

    @Test
    void badBlocksAreRejectedNamingTheSequenceAndOffsets() {
        Random rnd = new Random(18);
        Seq s = new Seq("doc-7", 100, 2, 2, 2, 8, 8, DType.F32, rnd);
        Seq good = new Seq("fine", 10, 2, 2, 2, 8, 8, DType.F32, rnd);
        List<Row> base = new ArrayList<>(good.rows(rnd, 4));

        List<Row> gap = new ArrayList<>(base);
        gap.add(s.row(0, 40));
        gap.add(s.row(50, 50));
        String m = rejection(() -> LightningTables.compute(spark.createDataFrame(gap, TableSchema.BLOCKS.schema()),
                "--backend", "cpu"));
        assertTrue(m.contains("'doc-7'") && m.contains("[40, 50) are missing"), m);

        List<Row> overlap = new ArrayList<>(base);
        overlap.add(s.row(0, 60));
        overlap.add(s.row(50, 50));
        m = rejection(() -> LightningTables.compute(spark.createDataFrame(overlap, TableSchema.BLOCKS.schema()),
                "--backend", "cpu"));
        assertTrue(m.contains("'doc-7'") && m.contains("overlap in tokens [50, 60)"), m);

        List<Row> shape = new ArrayList<>(base);
        shape.add(s.row(0, 50));
        Seq wide = new Seq("doc-7", 100, 2, 2, 2, 8, 16, DType.F32, rnd);
        shape.add(wide.row(50, 50));
        m = rejection(() -> LightningTables.compute(spark.createDataFrame(shape, TableSchema.BLOCKS.schema()),
                "--backend", "cpu"));
        assertTrue(m.contains("'doc-7'") && m.contains("block at 50") && m.contains("Dv=16") && m.contains("Dv=8"), m);

        List<Row> length = new ArrayList<>(base);
        length.add(s.row(0, 50));
        Row r = s.row(50, 50);
        length.add(RowFactory.create("doc-7", 50L, 50, "F32", 2, 2, 2, 8, 8, r.get(9),
                java.util.Arrays.copyOf((byte[]) r.get(10), 3000), r.get(11)));
        Dataset<Row> bad = spark.createDataFrame(length, TableSchema.BLOCKS.schema());
        m = rejection(() -> {
            try (LightningTables.Result res = LightningTables.compute(bad, "--backend", "cpu")) {
                res.o().count();
            }
        });
        assertTrue(m.contains("'doc-7'") && m.contains("block at 50") && m.contains("k holds 3000 bytes")
                && m.contains("= 3200"), m);
        // --skip-invalid checks the lengths up front and computes the others
        try (LightningTables.Result res = LightningTables.compute(bad, "--backend", "cpu", "--skip-invalid")) {
            assertEquals(1, res.sequences());
            assertTrue(res.rejected().get("doc-7").contains("k holds 3000 bytes"), res.rejected().toString());
            checkAgainstReference(List.of(good), res.o(), res.finalStates(), 1.0, false);
        }

        // a block whose q is null: said as such, and skipped with --skip-invalid (it was a length of -1)
        List<Row> nullQ = new ArrayList<>(base);
        nullQ.add(s.row(0, 50));
        Row n = s.row(50, 50);
        nullQ.add(RowFactory.create("doc-7", 50L, 50, "F32", 2, 2, 2, 8, 8, null, n.get(10), n.get(11)));
        // as a Parquet file written by other tools holds it: every column nullable
        org.apache.spark.sql.types.StructType nullable = new org.apache.spark.sql.types.StructType(
                java.util.Arrays.stream(TableSchema.BLOCKS.schema().fields())
                        .map(f -> org.apache.spark.sql.types.DataTypes.createStructField(f.name(), f.dataType(), true))
                        .toArray(org.apache.spark.sql.types.StructField[]::new));
        Dataset<Row> withNull = spark.createDataFrame(nullQ, nullable);
        try (LightningTables.Result res = LightningTables.compute(withNull, "--backend", "cpu", "--skip-invalid")) {
            assertEquals(1, res.sequences());
            assertTrue(res.rejected().get("doc-7").contains("the block at 50 (tokens [50, 100)): q is null"),
                    res.rejected().toString());
        }
        // without --skip-invalid the same words (it said "q holds -1 bytes, expected 50 tokens x ...")
        for (int c = 0; c < 3; c++) {
            Object[] cols = {"doc-7", 50L, 50, "F32", 2, 2, 2, 8, 8, n.get(9), n.get(10), n.get(11)};
            cols[9 + c] = null;
            List<Row> nullData = new ArrayList<>(base);
            nullData.add(s.row(0, 50));
            nullData.add(RowFactory.create(cols));
            Dataset<Row> nulls = spark.createDataFrame(nullData, nullable);
            String tensor = new String[] {"q", "k", "v"}[c];
            m = rejection(() -> {
                try (LightningTables.Result res = LightningTables.compute(nulls, "--backend", "cpu")) {
                    res.o().count();
                }
            });
            assertTrue(m.contains("sequence 'doc-7', the block at 50 (tokens [50, 100)): " + tensor + " is null")
                    && !m.contains("-1"), m);
        }

        // a missing column and a mistyped one, before any Spark job
        m = rejection(() -> LightningTables.compute(spark.createDataFrame(base, TableSchema.BLOCKS.schema())
                .drop("dk").withColumn("tokens", org.apache.spark.sql.functions.lit("x")), "--backend", "cpu"));
        assertTrue(m.contains("`dk`") && m.contains("missing") && m.contains("`tokens` is string"), m);
    }

    /**
     * A state that overflows float32 while o does not fails the run naming the sequence and the tensor, as a files
     * run fails its final_state and states. o_t reads the state before its chunk plus the chunk's own terms, and
     * the state sums all of them: slope 0, q = 0.1 and k = v = 1.5e19 on the last two tokens of a chunk give o
     * 4.5e37 and a state of 4.5e38. The table run wrote that Inf to final_states/ (and states/) and succeeded.
     * Covered: the batch step (64 tokens, its chunked form), a piece's final state (128 tokens), a recorded state.
     */
    @Test
    void overflowingStatesFailTheRunNamingTheSequence() {
        for (int[] c : new int[][] {{64, 0}, {128, 0}, {192, 64}}) {
            int tokens = c[0];
            int every = c[1];
            ByteBuffer q = ByteBuffer.allocate(4 * tokens).order(ByteOrder.LITTLE_ENDIAN);
            ByteBuffer kv = ByteBuffer.allocate(4 * tokens).order(ByteOrder.LITTLE_ENDIAN);
            int last = every > 0 ? every - 1 : tokens - 1; // the overflow on the two tokens up to here
            for (int t = 0; t < tokens; t++) {
                q.putFloat(0.1f);
                kv.putFloat(t == last || t == last - 1 ? 1.5e19f : (t > last ? 0f : 1f));
            }
            Row block = RowFactory.create("hot", 0L, tokens, "F32", 1, 1, 1, 1, 1, q.array(), kv.array(), kv.array());
            Dataset<Row> blocks = spark.createDataFrame(List.of(block), TableSchema.BLOCKS.schema());
            Dataset<Row> perSeq = spark.createDataFrame(List.of(RowFactory.create("hot",
                    TableCompute.boxed(new double[] {0}), null, null)), TableSchema.SEQUENCES.schema());
            List<String> options = new ArrayList<>(List.of("--backend", "cpu"));
            if (every > 0) {
                options.addAll(List.of("--state-every", Integer.toString(every)));
            }
            String m = rejection(() -> {
                try (LightningTables.Result res = LightningTables.compute(blocks, perSeq,
                        options.toArray(new String[0]))) {
                    res.finalStates().count();
                    if (every > 0) {
                        res.checkpoints().count();
                    }
                }
            });
            String tensor = every > 0 ? "states[0, 0, 0, 0]" : "final_state[0, 0, 0]";
            assertTrue(m.contains("sequence 'hot'") && m.contains(tensor) && m.contains("float32 overflowed"),
                    tokens + " tokens: " + m);
            // a table run refuses --skip-nonfinite: the advice must not offer it
            assertTrue(!m.contains("pass --skip-nonfinite") && m.contains("a table run has no --skip-nonfinite"), m);
        }
    }

    /**
     * The o table holds the input's blocks cut at the piece boundaries (multiples of --partition-tokens) of a
     * split sequence, one row per cut block, and nothing else, also where a block ends exactly on a boundary
     * (the tiling check of {@link #oBySequence} lets an extra row of 0 tokens through).
     */
    @Test
    void oRowsAreTheBlocksCutAtPieceBoundariesEvenWhereABlockEndsOnOne() {
        Random rnd = new Random(23);
        Seq s = new Seq("split", 1000, 2, 2, 2, 16, 8, DType.F32, rnd);
        // rows ending on the boundaries 256, 512 and 768, one crossing 512, one ending at T
        int[][] given = {{0, 256}, {256, 44}, {300, 212}, {512, 100}, {612, 156}, {768, 1}, {769, 231}};
        List<Row> rows = new ArrayList<>();
        List<String> expected = new ArrayList<>();
        for (int[] g : given) {
            rows.add(s.row(g[0], g[1]));
            for (int from = g[0]; from < g[0] + g[1]; ) {
                int to = Math.min(g[0] + g[1], (from / 256 + 1) * 256);
                expected.add(from + "+" + (to - from));
                from = to;
            }
        }
        Collections.shuffle(rows, rnd);
        try (LightningTables.Result r = LightningTables.compute(spark.createDataFrame(rows, TableSchema.BLOCKS.schema()),
                "--backend", "cpu", "--partition-tokens", "256")) {
            List<String> got = new ArrayList<>();
            for (Row o : r.o().collectAsList()) {
                got.add(o.getLong(1) + "+" + o.getInt(2));
            }
            Collections.sort(expected);
            Collections.sort(got);
            assertEquals(expected, got, "o rows (start+tokens)");
            checkAgainstReference(List.of(s), r.o(), r.finalStates(), 1.0, false);
        }
    }

    /**
     * A split sequence that starts from a given state: the state reaches every later piece through pass 1's local
     * state of piece 0 and the scan. Slow decay keeps it large to the last token (in {@link #mixed} it has decayed
     * below the tolerances by the second piece), so o of every piece and the final state show it.
     */
    @Test
    void aSplitSequenceCarriesItsInitialStateIntoEveryPiece() {
        Random rnd = new Random(24);
        Seq s = new Seq("slow", 333, 2, 2, 2, 16, 12, DType.F32, rnd);
        s.slopes = new double[] {0.001, 0.004};
        s.initial = LightningState.of(2, 16, 12, random(2 * 16 * 12, rnd, 2));
        List<Seq> seqs = List.of(s);
        try (LightningTables.Result r = LightningTables.compute(blocksOf(seqs, rnd, 50), sequencesOf(seqs, false),
                "--backend", "cpu", "--partition-tokens", "64")) {
            checkAgainstReference(seqs, r.o(), r.finalStates(), 1.0, false);
        }
    }

    /**
     * A normalized sequence too long for the batch step starts from its sequences-table initial_normalizer as well
     * as its initial_state, unsplit and split. In {@link #mixed} the given z is small against the one its tokens
     * build up and decays fast; here it is large and decays slowly, so o and the final normalizer show it.
     */
    @Test
    void aGivenInitialNormalizerStartsANormalizedSequence() {
        Random rnd = new Random(25);
        Seq s = new Seq("z0", 200, 2, 2, 2, 8, 12, DType.F32, rnd);
        s.slopes = new double[] {0.001, 0.003};
        float[] z0 = random(2 * 8, rnd, 1);
        for (int i = 0; i < z0.length; i++) {
            z0[i] = 100 * Math.abs(z0[i]);
        }
        s.initial = LightningState.of(2, 8, 12, random(2 * 8 * 12, rnd, 1), z0);
        List<Seq> seqs = List.of(s);
        for (String partition : new String[] {"65536", "64"}) {
            try (LightningTables.Result r = LightningTables.compute(blocksOf(seqs, rnd, 30), sequencesOf(seqs, true),
                    "--backend", "cpu", "--feature-map", "elu1", "--normalize", "--partition-tokens", partition)) {
                checkAgainstReference(seqs, r.o(), r.finalStates(), 1.0, true);
            }
        }
    }

    @Test
    void manyShortSequencesArePackedIntoFewTasks() {
        Random rnd = new Random(19);
        List<Seq> seqs = new ArrayList<>();
        for (int i = 0; i < 2000; i++) {
            Seq s = new Seq(String.format("conversation-%05d", i), 1 + rnd.nextInt(64), 3, 3, 3, 8, 12, DType.F32, rnd);
            if (i % 7 == 0) {
                s.initial = LightningState.of(3, 8, 12, random(3 * 8 * 12, rnd, 1));
            }
            seqs.add(s);
        }
        try (LightningTables.Result r = LightningTables.compute(blocksOf(seqs, rnd, 16), sequencesOf(seqs, false),
                "--backend", "cpu")) {
            assertEquals(2000, r.sequences());
            assertTrue(r.tasks() <= 2, "tasks: " + r.tasks());
            assertTrue(r.outputsKept(), "o outweighs the states: pass 2 is kept for the second output");
            checkAgainstReference(seqs, r.o(), r.finalStates(), 1.0, false);
        }
    }

    /** States outweigh o here, so pass 2 runs once per output table instead of being kept: same results. */
    @Test
    void statesHeavierThanOAreRecomputedNotKept() {
        Random rnd = new Random(22);
        List<Seq> seqs = new ArrayList<>();
        for (int i = 0; i < 40; i++) {
            Seq s = new Seq("decode-" + i, 1 + rnd.nextInt(3), 2, 2, 2, 64, 48, DType.BF16, rnd);
            if (i % 2 == 0) {
                s.initial = LightningState.of(2, 64, 48, random(2 * 64 * 48, rnd, 1));
            }
            seqs.add(s);
        }
        try (LightningTables.Result r = LightningTables.compute(blocksOf(seqs, rnd, 2), sequencesOf(seqs, false),
                "--backend", "cpu", "--output-dtype", "f32")) {
            org.junit.jupiter.api.Assertions.assertFalse(r.outputsKept(), "states outweigh o: pass 2 is not kept");
            checkAgainstReference(seqs, r.o(), r.finalStates(), 1.0, false);
            Map<String, byte[]> first = rowBytes(r.o());
            assertEquals(first.keySet(), rowBytes(r.o()).keySet());
            for (Map.Entry<String, byte[]> e : rowBytes(r.o()).entrySet()) {
                assertArrayEquals(first.get(e.getKey()), e.getValue(), "a recomputed pass 2 gives the same bytes");
            }
        }
    }

    /**
     * Pass 2 of one task run directly over the shuffle's records (a plan's blocks and initial states, sorted as
     * the shuffle sorts them), returning records of {@code kinds}.
     */
    private static List<TablePass2.Out> pass2(TablePlanning.Prepared p, List<Row> blocks, List<Row> sequences,
                                              boolean normalize, int kinds) {
        return pass2(new TableTask(p.compute.cfg, p.compute.plan), blocks, sequences, normalize, kinds);
    }

    /** The same with the task given (its backend: {@link TableTask#openBackend}). */
    private static List<TablePass2.Out> pass2(TableTask task, List<Row> blocks, List<Row> sequences,
                                              boolean normalize, int kinds) {
        List<TablePass2.Out> out = new ArrayList<>();
        new TablePass2(task, records(task.plan, blocks, sequences, normalize).iterator(), Collections.emptyIterator(),
                kinds).forEachRemaining(out::add);
        return out;
    }

    /** The shuffle's records of a plan's blocks and initial states, sorted as the shuffle sorts them. */
    private static List<scala.Tuple2<TableShuffle.Key, TableShuffle.Block>> records(
            TablePlan plan, List<Row> blocks, List<Row> sequences, boolean normalize) {
        List<scala.Tuple2<TableShuffle.Key, TableShuffle.Block>> records = new ArrayList<>();
        for (Row r : blocks) {
            TableShuffle.blockRecords(plan, r).forEachRemaining(records::add);
        }
        for (Row r : sequences) {
            TableShuffle.initialRecords(plan, r, normalize).forEachRemaining(records::add);
        }
        records.sort((a, b) -> new TableShuffle.KeyOrder().compare(a._1, b._1));
        return records;
    }

    private static TablePlanning.Prepared prepare(Dataset<Row> blocks, Dataset<Row> sequences, String... options) {
        dev.lightning.attention.job.config.JobConfig cfg = dev.lightning.attention.job.config.OptionParser.parse(
                List.of(options), null, true, Map.of());
        return TablePlanning.prepare(spark, cfg, blocks, "blocks", sequences, "sequences", null, "stored",
                new java.util.TreeMap<>(), null);
    }

    private static String describe(TablePass2.Out r) {
        return r.kind + " " + r.seq + " " + r.start + " " + r.tokens + " " + java.util.Arrays.hashCode(r.data) + " "
                + java.util.Arrays.hashCode(r.normalizer);
    }

    /**
     * Pass 2 computed again for each output table makes records of that table's kind only (a copy of their bytes
     * each: the o job copied every 512 KiB final state for its filter to drop), the same records, in the same order,
     * as a pass 2 that returns every kind; and it still checks what it does not return: a final state that overflows
     * float32 fails the o job's pass 2 as it failed before. Short sequences, several batch steps of a few slots each
     * (--window-bytes), initial states on some: a slot that held one in a batch starts the next from zero.
     */
    @Test
    void aRecomputedPass2ReturnsItsOwnKindOnlyAndChecksTheRest() {
        Random rnd = new Random(26);
        List<Seq> seqs = new ArrayList<>();
        for (int i = 0; i < 40; i++) {
            Seq s = new Seq(String.format("short-%02d", i), 1 + rnd.nextInt(64), 2, 2, 2, 8, 8, DType.BF16, rnd);
            if (i % 3 == 0) {
                s.initial = LightningState.of(2, 8, 8, random(2 * 8 * 8, rnd, 1));
            }
            seqs.add(s);
        }
        List<Row> blockRows = new ArrayList<>();
        seqs.forEach(s -> blockRows.addAll(s.rows(rnd, 16)));
        List<Row> seqRows = new ArrayList<>();
        seqs.stream().filter(s -> s.initial != null).forEach(s -> seqRows.add(s.sequenceRow(false)));
        Dataset<Row> blocks = spark.createDataFrame(blockRows, TableSchema.BLOCKS.schema());
        Dataset<Row> sequences = spark.createDataFrame(seqRows, TableSchema.SEQUENCES.schema());
        // 8 KiB: batches of 4 slots (512-byte states) and up to 85 tokens; 64 MiB: one batch of all 40
        for (String window : new String[] {"8192", "67108864"}) {
            TablePlanning.Prepared p = prepare(blocks, sequences, "--backend", "cpu", "--window-bytes", window);
            List<String> all = new ArrayList<>();
            List<String> o = new ArrayList<>();
            List<String> states = new ArrayList<>();
            for (TablePass2.Out r : pass2(p, blockRows, seqRows, false, TablePass2.Out.ALL)) {
                all.add(describe(r));
                (r.kind == TablePass2.Out.O ? o : states).add(describe(r));
            }
            assertEquals(blockRows.size() + seqs.size(), all.size(), "an o record per block, a state per sequence");
            List<String> onlyO = new ArrayList<>();
            pass2(p, blockRows, seqRows, false, TablePass2.Out.bit(TablePass2.Out.O)).forEach(r -> onlyO.add(describe(r)));
            List<String> onlyStates = new ArrayList<>();
            pass2(p, blockRows, seqRows, false, TablePass2.Out.bit(TablePass2.Out.FINAL_STATE))
                    .forEach(r -> onlyStates.add(describe(r)));
            assertEquals(o, onlyO, "window " + window + ": the o records");
            assertEquals(states, onlyStates, "window " + window + ": the final-state records");
            if (window.equals("8192")) {
                // the batches' records are those of one batch of all: each sequence computed from its own state
                TablePlanning.Prepared one = prepare(blocks, sequences, "--backend", "cpu");
                List<String> once = new ArrayList<>();
                pass2(one, blockRows, seqRows, false, TablePass2.Out.ALL).forEach(r -> once.add(describe(r)));
                java.util.Collections.sort(once);
                List<String> sorted = new ArrayList<>(all);
                java.util.Collections.sort(sorted);
                assertEquals(once, sorted, "several batches against one");
            }
        }
        // the overflow of overflowingStatesFailTheRunNamingTheSequence: o finite, the final state not
        ByteBuffer q = ByteBuffer.allocate(4 * 64).order(ByteOrder.LITTLE_ENDIAN);
        ByteBuffer kv = ByteBuffer.allocate(4 * 64).order(ByteOrder.LITTLE_ENDIAN);
        for (int t = 0; t < 64; t++) {
            q.putFloat(0.1f);
            kv.putFloat(t >= 62 ? 1.5e19f : 1f);
        }
        List<Row> hot = List.of(RowFactory.create("hot", 0L, 64, "F32", 1, 1, 1, 1, 1, q.array(), kv.array(),
                kv.array()));
        List<Row> hotSeq = List.of(RowFactory.create("hot", TableCompute.boxed(new double[] {0}), null, null));
        TablePlanning.Prepared p = prepare(spark.createDataFrame(hot, TableSchema.BLOCKS.schema()),
                spark.createDataFrame(hotSeq, TableSchema.SEQUENCES.schema()), "--backend", "cpu");
        String m = rejection(() -> pass2(p, hot, hotSeq, false, TablePass2.Out.bit(TablePass2.Out.O)));
        assertTrue(m.contains("sequence 'hot'") && m.contains("final_state[0, 0, 0]"), m);
    }

    // ---------------------------------------------------------------- a shape no GPU kernel fits

    /**
     * A GPU for the fallback tests: a call that {@code refusal} gives an exception for fails with it, as
     * CudaBackend fails (GpuUnusableException.noKernelFor for a shape no kernel fits, DeviceMemoryException for
     * memory, after its own halving); the others are computed by the CPU backend. Counts the calls it is given
     * by Dk, and the steps of its batch step ({@link #step}, which fails as its calls do).
     */
    static final class TestGpu implements dev.lightning.attention.engine.AttentionBackend {
        final dev.lightning.attention.engine.AttentionBackend cpu = dev.lightning.attention.engine.Backends.cpu();
        final java.util.function.Function<AttentionSpec, RuntimeException> refusal;
        final Map<Integer, Integer> calls = new java.util.TreeMap<>();
        int steps;

        TestGpu(java.util.function.Function<AttentionSpec, RuntimeException> refusal) {
            this.refusal = refusal;
        }

        /** No kernel for Dk above 16 (as a 99 KB GPU has none for Dk of 138 and up). */
        static TestGpu narrow() {
            return new TestGpu(spec -> spec.dk() <= 16 ? null : dev.lightning.attention.engine.GpuUnusableException
                    .noKernelFor("cuda:0 has no kernel for Dk = " + spec.dk() + " (a test's GPU)"));
        }

        /** Memory for nothing. */
        static TestGpu full() {
            return new TestGpu(spec -> new dev.lightning.attention.engine.DeviceMemoryException(
                    "cuda:0 out of memory (a test's GPU)", null));
        }

        @Override
        public String name() {
            return "gpu";
        }

        @Override
        public String device() {
            return "cuda:0 (a test's)";
        }

        @Override
        public int gpuOrdinal() {
            return 0;
        }

        private void check(AttentionSpec spec) {
            calls.merge(spec.dk(), 1, Integer::sum);
            RuntimeException e = refusal.apply(spec);
            if (e != null) {
                throw e;
            }
        }

        @Override
        public LightningState advance(AttentionSpec spec, TokenTensor k, TokenTensor v, LightningState state) {
            check(spec);
            return cpu.advance(spec, k, v, state);
        }

        @Override
        public LightningState forward(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                                      LightningState state, TokenTensor o,
                                      dev.lightning.attention.engine.Checkpoints cp) {
            check(spec);
            return cpu.forward(spec, q, k, v, state, o, cp);
        }

        /** A batch step on this GPU: its store is made, its step refused or computed on the CPU as a call is. */
        dev.lightning.attention.engine.BatchStep step(AttentionSpec spec) {
            dev.lightning.attention.engine.BatchStep onCpu = dev.lightning.attention.engine.BatchStep.cpu(spec);
            return new dev.lightning.attention.engine.BatchStep() {
                @Override
                public String name() {
                    return "gpu";
                }

                @Override
                public String device() {
                    return TestGpu.this.device();
                }

                @Override
                public AttentionSpec spec() {
                    return spec;
                }

                @Override
                public dev.lightning.attention.engine.StateStore allocate(int slots) {
                    return onCpu.allocate(slots);
                }

                @Override
                public void step(dev.lightning.attention.engine.StateStore states,
                                 dev.lightning.attention.engine.TokenBatch batch, TokenTensor o) {
                    steps++;
                    RuntimeException e = refusal.apply(spec);
                    if (e != null) {
                        throw e;
                    }
                    onCpu.step(states, batch, o);
                }
            };
        }
    }

    /**
     * A task whose backend is {@code backend}, not the one ExecutorBackends would open, and whose GPU batch
     * step is a TestGpu's where it is one.
     */
    private static TableTask taskOn(TablePlanning.Prepared p, dev.lightning.attention.engine.AttentionBackend backend) {
        return new TableTask(p.compute.cfg, p.compute.plan) {
            @Override
            dev.lightning.attention.engine.AttentionBackend openBackend() {
                return backend;
            }

            @Override
            dev.lightning.attention.engine.BatchStep gpuBatchStep(AttentionSpec spec, int ordinal) {
                if (backend instanceof TestGpu) {
                    return ((TestGpu) backend).step(spec);
                }
                throw new IllegalStateException("a test's task asked for a real GPU's batch step");
            }
        };
    }

    /**
     * Under --backend auto a table run's window that no GPU kernel fits is computed on the CPU (pass 1 and
     * pass 2, checkpoints included), with the bytes a CPU run writes, and the shape's later windows go straight
     * there (the GPU asked once a task); a shape the GPU fits stays on it. Under --backend gpu the task fails
     * with the GPU's reason. Sequences longer than the batch step takes, several windows each (H = 3, Dk != Dv,
     * BF16 and F32), with --state-every.
     */
    @Test
    void aWindowNoGpuKernelFitsRunsOnTheCpuUnderAuto() {
        Random rnd = new Random(43);
        List<Seq> seqs = List.of(new Seq("wide", 1000, 3, 3, 3, 32, 8, DType.BF16, rnd),
                new Seq("narrow", 200, 2, 2, 2, 16, 24, DType.F32, rnd));
        List<Row> blockRows = new ArrayList<>();
        seqs.forEach(s -> blockRows.addAll(s.rows(rnd, 40)));
        Dataset<Row> blocks = spark.createDataFrame(blockRows, TableSchema.BLOCKS.schema());
        String[] common = {"--state-every", "128", "--window-bytes", "24k", "--gpu-window-bytes",
                "24k"};
        // pass 2, unsplit
        TablePlanning.Prepared auto = prepare(blocks, null, concat(common, "--backend", "auto"));
        List<String> onCpu = new ArrayList<>();
        pass2(taskOn(auto, dev.lightning.attention.engine.Backends.cpu()), blockRows, List.of(), false,
                TablePass2.Out.ALL).forEach(r -> onCpu.add(describe(r)));
        TestGpu gpu = TestGpu.narrow();
        List<String> withGpu = new ArrayList<>();
        pass2(taskOn(auto, gpu), blockRows, List.of(), false, TablePass2.Out.ALL)
                .forEach(r -> withGpu.add(describe(r)));
        assertEquals(onCpu, withGpu, "the records of a CPU run");
        assertTrue(onCpu.size() > blockRows.size() + 2, "o records, final states and checkpoints: " + onCpu.size());
        assertEquals(1, gpu.calls.get(32), "the GPU asked once for the shape it has no kernel for: " + gpu.calls);
        assertTrue(gpu.calls.get(16) > 3, "the narrow sequence's windows on the GPU: " + gpu.calls);
        // pass 1 of a split run: the local states
        TablePlanning.Prepared split = prepare(blocks, null, concat(common, "--backend", "auto", "--partition-tokens",
                "256"));
        List<String> localCpu = new ArrayList<>();
        new TablePass1(taskOn(split, dev.lightning.attention.engine.Backends.cpu()),
                records(split.compute.plan, blockRows, List.of(), false).iterator())
                .forEachRemaining(t -> localCpu.add(localOf(t)));
        TestGpu gpu1 = TestGpu.narrow();
        List<String> localGpu = new ArrayList<>();
        new TablePass1(taskOn(split, gpu1), records(split.compute.plan, blockRows, List.of(), false).iterator())
                .forEachRemaining(t -> localGpu.add(localOf(t)));
        assertEquals(3, localCpu.size(), "wide: 3 pieces with a successor (1000 tokens in 256s); narrow none: "
                + localCpu);
        assertEquals(localCpu, localGpu, "the local states of a CPU run");
        assertEquals(1, gpu1.calls.get(32), "pass 1: the GPU asked once: " + gpu1.calls);
        // --backend gpu: the task fails with the GPU's reason
        TablePlanning.Prepared strict = prepare(blocks, null, concat(common, "--backend", "gpu"));
        RuntimeException e = assertThrows(RuntimeException.class,
                () -> pass2(taskOn(strict, TestGpu.narrow()), blockRows, List.of(), false, TablePass2.Out.ALL));
        assertTrue(String.valueOf(e.getMessage()).contains("no kernel for Dk = 32"), String.valueOf(e));
    }

    /**
     * With --gpu-oom cpu a table run's window or batch of short sequences that the GPU's memory does not hold is
     * computed on the CPU, with a CPU run's bytes: windows asked of the GPU again each time (memory may come back),
     * the batch step moved to the CPU for the rest of the task (its memory is what ran out). Without it the task
     * fails with the GPU's reason. Long sequences (windows, checkpoints) and short ones (batches of a few
     * slots, some with an initial state).
     */
    @Test
    void aWindowOrBatchTheGpuCannotHoldRunsOnTheCpu() {
        Random rnd = new Random(44);
        List<Seq> seqs = new ArrayList<>();
        seqs.add(new Seq("long", 700, 3, 3, 3, 16, 24, DType.BF16, rnd));
        for (int i = 0; i < 12; i++) {
            Seq s = new Seq(String.format("short-%02d", i), 1 + rnd.nextInt(64), 3, 3, 3, 16, 24, DType.BF16, rnd);
            if (i % 3 == 0) {
                s.initial = LightningState.of(3, 16, 24, random(3 * 16 * 24, rnd, 1));
            }
            seqs.add(s);
        }
        List<Row> blockRows = new ArrayList<>();
        seqs.forEach(s -> blockRows.addAll(s.rows(rnd, 40)));
        List<Row> seqRows = new ArrayList<>();
        seqs.stream().filter(s -> s.initial != null).forEach(s -> seqRows.add(s.sequenceRow(false)));
        Dataset<Row> blocks = spark.createDataFrame(blockRows, TableSchema.BLOCKS.schema());
        Dataset<Row> sequences = spark.createDataFrame(seqRows, TableSchema.SEQUENCES.schema());
        // 24 KiB: windows of about 60 tokens, batches of 2 slots (4.5 KiB states)
        String[] common = {"--state-every", "128", "--window-bytes", "24k", "--gpu-window-bytes", "24k"};
        TablePlanning.Prepared p = prepare(blocks, sequences, concat(common, "--backend", "gpu", "--gpu-oom", "cpu"));
        List<String> onCpu = new ArrayList<>();
        pass2(taskOn(p, dev.lightning.attention.engine.Backends.cpu()), blockRows, seqRows, false, TablePass2.Out.ALL)
                .forEach(r -> onCpu.add(describe(r)));
        TestGpu gpu = TestGpu.full();
        List<String> withGpu = new ArrayList<>();
        pass2(taskOn(p, gpu), blockRows, seqRows, false, TablePass2.Out.ALL).forEach(r -> withGpu.add(describe(r)));
        java.util.Collections.sort(onCpu);
        java.util.Collections.sort(withGpu);
        assertEquals(onCpu, withGpu, "the records of a CPU run");
        assertTrue(gpu.calls.get(16) > 5, "each window asked of the GPU: " + gpu.calls);
        assertEquals(1, gpu.steps, "the batch step asked once, then on the CPU");
        // without --gpu-oom cpu: the task fails with the GPU's reason
        TablePlanning.Prepared strict = prepare(blocks, sequences, concat(common, "--backend", "gpu"));
        RuntimeException e = assertThrows(RuntimeException.class,
                () -> pass2(taskOn(strict, TestGpu.full()), blockRows, seqRows, false, TablePass2.Out.ALL));
        assertTrue(String.valueOf(e.getMessage()).contains("out of memory"), String.valueOf(e));
    }

    /** A pass-1 record: the sequence, the piece and the local state's bytes. */
    private static String localOf(scala.Tuple2<TableShuffle.Key, byte[]> t) {
        return t._1.seq + " " + t._1.start + " " + java.util.Arrays.toString(t._2);
    }

    private static String[] concat(String[] a, String... b) {
        List<String> all = new ArrayList<>(List.of(a));
        all.addAll(List.of(b));
        return all.toArray(new String[0]);
    }

    // ---------------------------------------------------------------- the README

    static String readme() throws java.io.IOException {
        return Files.readString(Path.of(System.getProperty("maven.multiModuleProjectDirectory", ".."), "README.md"));
    }

    @Test
    void readmeLayoutTableIsGeneratedFromTheSchema() throws Exception {
        assertTrue(readme().contains(TableSchema.markdownTable()),
                "README's table layout differs from TableSchema.markdownTable():\n" + TableSchema.markdownTable());
    }

    @Test
    void readmeExampleRuns(@TempDir Path dir) throws Exception {
        Random rnd = new Random(20);
        List<Seq> seqs = List.of(new Seq("a", 300, 2, 2, 2, 16, 16, DType.BF16, rnd),
                new Seq("b", 5, 2, 2, 2, 16, 16, DType.BF16, rnd));
        String qkv = dir.resolve("qkv").toString();
        blocksOf(seqs, rnd, 64).write().parquet(qkv);
        String out = dir.resolve("out").toString();
        readmeExample(spark, qkv, out);
        checkAgainstReference(seqs, spark.read().parquet(out + "/o"), spark.read().parquet(out + "/final_states"), 1.0,
                false);
        // the code above is the README's, line for line
        String source = Files.readString(Path.of("src/test/java/dev/lightning/attention/job/tables/TablesTest.java"));
        String body = source.substring(source.lastIndexOf("// README example begin") + "// README example begin".length(),
                source.lastIndexOf("// README example end"));
        StringBuilder code = new StringBuilder();
        for (String line : body.split("\n")) {
            if (!line.isBlank()) {
                code.append(line.strip()).append('\n');
            }
        }
        String text = readme();
        int at = text.indexOf("<!-- tables-example -->");
        assertTrue(at >= 0, "README has no <!-- tables-example --> block");
        String block = text.substring(text.indexOf("```java\n", at) + 8, text.indexOf("```\n", text.indexOf("```java\n", at)));
        StringBuilder readmeCode = new StringBuilder();
        for (String line : block.split("\n")) {
            if (!line.isBlank()) {
                readmeCode.append(line.strip()).append('\n');
            }
        }
        assertEquals(code.toString(), readmeCode.toString());
    }

    static void readmeExample(SparkSession spark, String qkv, String out) {
        // README example begin
        Dataset<Row> blocks = spark.read().parquet(qkv);   // sequence, start, tokens, dtype, heads_q, ..., q, k, v
        try (LightningTables.Result r = LightningTables.compute(blocks, "--backend", "cpu", "--partition-tokens", "128")) {
            r.o().write().parquet(out + "/o");
            r.finalStates().write().parquet(out + "/final_states");
        }
        // README example end
    }

    /**
     * Column names match as the session matches them: regardless of case by Spark's default (a `SEQUENCE` column was
     * reported missing), exactly with spark.sql.caseSensitive.
     */
    @Test
    void columnNamesMatchAsTheSessionDoes() {
        Random rnd = new Random(24);
        Seq s = new Seq("x", 30, 2, 2, 2, 4, 4, DType.F32, rnd);
        Dataset<Row> upper = blocksOf(List.of(s), rnd, 8).withColumnRenamed("sequence", "SEQUENCE")
                .withColumnRenamed("q", "Q");
        try (LightningTables.Result r = LightningTables.compute(upper, "--backend", "cpu")) {
            checkAgainstReference(List.of(s), r.o(), r.finalStates(), 1.0, false);
        }
        spark.conf().set("spark.sql.caseSensitive", "true");
        try {
            String m = rejection(() -> LightningTables.compute(upper, "--backend", "cpu"));
            assertTrue(m.contains("column `sequence` (string) is missing"), m);
        } finally {
            spark.conf().unset("spark.sql.caseSensitive");
        }
    }

    /**
     * Integer columns written as long (as a Python writer gives them) are read as the layout's ints where their
     * values fit; one that does not fit is refused naming the sequence, the block and the column. Its cast wrapped
     * without a word with spark.sql.ansi.enabled=false (a block of 2^32 + 10 tokens read as 10), and failed the run
     * with Spark's CAST_OVERFLOW, naming no column, with it on (Spark 4's default).
     */
    @Test
    void aLongColumnBeyondTheLayoutsIntIsRefusedNamingTheColumn() {
        Random rnd = new Random(25);
        Seq s = new Seq("x", 10, 2, 2, 2, 4, 4, DType.F32, rnd);
        Dataset<Row> longs = spark.createDataFrame(List.of(s.row(0, 10)), TableSchema.BLOCKS.schema());
        for (String c : new String[] {"tokens", "heads_q", "heads_k", "heads_v", "dk", "dv"}) {
            longs = longs.withColumn(c, longs.col(c).cast("long"));
        }
        try (LightningTables.Result r = LightningTables.compute(longs, "--backend", "cpu")) {
            checkAgainstReference(List.of(s), r.o(), r.finalStates(), 1.0, false);
        }
        Dataset<Row> wide = longs.withColumn("tokens", longs.col("tokens").plus(functions.lit(1L << 32)));
        for (String ansi : new String[] {"false", "true"}) {
            spark.conf().set("spark.sql.ansi.enabled", ansi);
            try {
                String m = rejection(() -> {
                    try (LightningTables.Result r = LightningTables.compute(wide, "--backend", "cpu")) {
                        r.o().count();
                    }
                });
                assertTrue(m.contains("sequence 'x'") && m.contains("`tokens`")
                        && m.contains("outside the int range"), "ansi " + ansi + ": " + m);
            } finally {
                spark.conf().unset("spark.sql.ansi.enabled");
            }
        }
    }

    /** A null element of a sequences-table slope is named as null (it was read, and reported, as a NaN). */
    @Test
    void aNullSlopeElementIsNamedAsNull() {
        Random rnd = new Random(23);
        Dataset<Row> blocks = blocksOf(List.of(new Seq("x", 10, 3, 3, 3, 4, 4, DType.F32, rnd)), rnd, 4);
        Dataset<Row> sequences = spark.createDataFrame(List.of(RowFactory.create("x",
                java.util.Arrays.asList(0.1, null, 0.1), null, null)), TableSchema.SEQUENCES.schema());
        String m = rejection(() -> LightningTables.compute(blocks, sequences, "--backend", "cpu"));
        assertTrue(m.contains("slope[1] is null") && m.contains("give all 3 rates or none"), m);
        Dataset<Row> nan = spark.createDataFrame(List.of(RowFactory.create("x",
                java.util.Arrays.asList(0.1, Double.NaN, 0.1), null, null)), TableSchema.SEQUENCES.schema());
        m = rejection(() -> LightningTables.compute(blocks, nan, "--backend", "cpu"));
        assertTrue(m.contains("slope[1] is NaN") && !m.contains("rates or none"), m);
    }

    @Test
    void optionsTablesDoNotSupportAreRefused() {
        Random rnd = new Random(21);
        Dataset<Row> blocks = blocksOf(List.of(new Seq("x", 10, 1, 1, 1, 4, 4, DType.F32, rnd)), rnd, 4);
        String m = rejection(() -> LightningTables.compute(blocks, "--output-mode", "checksums", "--backend", "cpu"));
        assertTrue(m.contains("--output-mode checksums") && m.contains("--input-format safetensors"), m);
        m = rejection(() -> LightningTables.compute(blocks, "--attention", "softmax"));
        assertTrue(m.contains("softmax"), m);
        m = rejection(() -> LightningTables.compute(blocks, "--spot-check-tolerance", "0.1", "--backend", "cpu"));
        assertTrue(m.contains("--spot-check-tolerance") && m.contains("leave it out"), m);
        // --gpu-oom cpu is taken (aWindowOrBatchTheGpuCannotHoldRunsOnTheCpu), and with --backend cpu
        for (String backend : new String[] {"auto", "cpu"}) {
            try (LightningTables.Result r = LightningTables.compute(blocks, "--gpu-oom", "cpu", "--backend", backend)) {
                assertEquals(1, r.finalStates().count());
            }
        }
        // null options: named, not an NPE from the parser's insides
        m = rejection(() -> LightningTables.compute(blocks, "--backend", null));
        assertTrue(m.contains("options[1] is null (after --backend)"), m);
        NullPointerException npe = assertThrows(NullPointerException.class,
                () -> LightningTables.compute(blocks, (String[]) null));
        assertTrue(npe.getMessage().startsWith("options:"), npe.getMessage());
        // options of the command line only, and Spark settings, were accepted and did nothing
        m = rejection(() -> LightningTables.compute(blocks, "--backend", "cpu", "--output", "/x"));
        assertTrue(m.startsWith("--output /x") && m.contains("writes the returned datasets itself"), m);
        m = rejection(() -> LightningTables.compute(blocks, "--backend", "cpu", "--conf", "spark.sql.shuffle.partitions=3"));
        assertTrue(m.contains("spark.sql.shuffle.partitions=3") && m.contains("caller's SparkSession"), m);
        assertNotNull(blocks);
    }

    /**
     * The caller's session configures the options it leaves out, as spark-defaults.conf does on the command line:
     * a spark.lightning.* setting of the session's builder or runtime was read by nothing (only the JVM's system
     * properties were), and a misspelt one is refused as there.
     */
    @Test
    void theSessionsOwnSettingsAreRead() {
        Random rnd = new Random(23);
        Dataset<Row> blocks = blocksOf(List.of(new Seq("x", 40, 1, 1, 1, 4, 4, DType.F32, rnd)), rnd, 8);
        try {
            spark.conf().set("spark.lightning.stateEvery", "16");
            try (LightningTables.Result r = LightningTables.compute(blocks, "--backend", "cpu", "--chunk-size", "16")) {
                assertEquals(2, r.checkpoints().count(), "states after tokens 16 and 32");
            }
            spark.conf().unset("spark.lightning.stateEvery");
            spark.conf().set("spark.lightning.state_every", "16");
            String m = rejection(() -> LightningTables.compute(blocks, "--backend", "cpu"));
            assertTrue(m.contains("spark.lightning.state_every") && m.contains("did you mean spark.lightning.stateEvery")
                    && m.contains("the session's settings"), m);
        } finally {
            spark.conf().unset("spark.lightning.stateEvery");
            spark.conf().unset("spark.lightning.state_every");
        }
    }
}
