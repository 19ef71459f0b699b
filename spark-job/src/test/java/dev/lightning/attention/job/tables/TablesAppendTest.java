package dev.lightning.attention.job.tables;

import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.reference.Accuracy;
import dev.lightning.attention.tensor.DType;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.functions;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;

import static dev.lightning.attention.job.tables.TablesTest.Seq;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Appending to stored states over tables (the Dataset API;
 * {@code TablesCliTest} runs it through {@code --initial-states}): a
 * run over the old tokens, then a run over the new tokens continuing its final_states table,
 * against one run over the concatenation and against the float64 recurrence; the untouched
 * sequence carried over with its row unchanged, a sequence without a stored state started from
 * zero, and the refusals before compute.
 */
public class TablesAppendTest {
    private static SparkSession spark;

    @BeforeAll
    static void start() {
        spark = SparkSession.builder().master("local[2]").appName("tables-append-test")
                .config("spark.ui.enabled", "false")
                .config("spark.serializer", "org.apache.spark.serializer.KryoSerializer")
                .config("spark.kryo.registrationRequired", "false")
                .config("spark.kryo.registrator", LightningKryoRegistrator.class.getName())
                .config("spark.sql.shuffle.partitions", "4")
                .getOrCreate();
    }

    @AfterAll
    static void stop() {
        spark.stop();
    }

    /** Rows of tokens [from, to) of {@code s}, numbered from 0 (a run that sees only those tokens), cut at random. */
    public static List<Row> part(Seq s, int from, int to, Random rnd, int maxRow) {
        List<Row> rows = new ArrayList<>();
        for (int t = from; t < to; ) {
            int n = Math.min(to - t, 1 + rnd.nextInt(maxRow));
            rows.add(RowFactory.create(s.name, (long) (t - from), n, s.dtype.name(), s.hq, s.hk, s.hv, s.dk, s.dv,
                    TablesTest.bytes(s.q, t, n), TablesTest.bytes(s.k, t, n), TablesTest.bytes(s.v, t, n)));
            t += n;
        }
        return rows;
    }

    static Dataset<Row> blocks(List<Row> rows, Random rnd) {
        List<Row> shuffled = new ArrayList<>(rows);
        Collections.shuffle(shuffled, rnd);
        return spark.createDataFrame(shuffled, TableSchema.BLOCKS.schema());
    }

    /** The sequences table: slopes, and the initial state where {@code withInitial}. */
    static Dataset<Row> sequences(List<Seq> seqs, boolean withInitial) {
        List<Row> rows = new ArrayList<>();
        for (Seq s : seqs) {
            if (s.slopes != null || (withInitial && s.initial != null)) {
                Row r = s.sequenceRow(false);
                rows.add(withInitial ? r : RowFactory.create(r.get(0), r.get(1), null, null));
            }
        }
        return spark.createDataFrame(rows, TableSchema.SEQUENCES.schema());
    }

    public static Map<String, Row> byName(Dataset<Row> states) {
        Map<String, Row> m = new HashMap<>();
        for (Row r : states.collectAsList()) {
            m.put(r.getString(0), r);
        }
        return m;
    }

    /** The o of tokens [from, T) of each sequence, assembled from o rows numbered from 0. */
    public static Map<String, float[]> oFrom(Dataset<Row> o, Map<String, Seq> seqs, Map<String, Integer> from) {
        Map<String, Seq> parts = new HashMap<>();
        for (Map.Entry<String, Integer> e : from.entrySet()) {
            Seq s = seqs.get(e.getKey());
            parts.put(s.name, new Seq(s.name, s.tokens - e.getValue(), s.hq, s.hk, s.hv, s.dk, s.dv, s.dtype,
                    new Random(0)));
        }
        return TablesTest.oBySequence(o, parts);
    }

    public static float[] tail(float[] all, Seq s, int from) {
        int per = s.heads() * s.dv;
        return java.util.Arrays.copyOfRange(all, from * per, all.length);
    }

    @Test
    void appendEqualsOneRunOverTheConcatenation(@TempDir Path dir) {
        Random rnd = new Random(151);
        // Dk != Dv with grouped heads, cut after token 0; a long BF16 one with its own slopes and
        // initial state, split in both runs; an F16 one whose new part is one token
        Seq a = new Seq("a/gqa", 63, 6, 2, 2, 16, 24, DType.F32, rnd);
        Seq b = new Seq("b bf16", 1000, 3, 3, 3, 32, 8, DType.BF16, rnd);
        b.slopes = new double[] {0.01, 0.2, 0.7};
        b.initial = LightningState.of(3, 32, 8, TablesTest.random(3 * 32 * 8, rnd, 0.5));
        Seq c = new Seq("c", 200, 4, 4, 1, 8, 16, DType.F16, rnd);
        Seq untouched = new Seq("untouched", 30, 1, 1, 1, 4, 4, DType.F32, rnd);
        Seq fresh = new Seq("fresh", 40, 5, 5, 5, 8, 4, DType.F32, rnd);
        List<Seq> all = List.of(a, b, c, untouched, fresh);
        Map<String, Seq> seqs = TablesTest.byName(all);
        Map<String, Integer> cut = Map.of(a.name, 1, b.name, 700, c.name, 199, fresh.name, 0);
        String[] opts = {"--scale", "0.5", "--backend", "cpu", "--partition-tokens", "128"};

        List<Row> oldRows = new ArrayList<>();
        for (Seq s : List.of(a, b, c)) {
            oldRows.addAll(part(s, 0, cut.get(s.name), rnd, 50));
        }
        oldRows.addAll(part(untouched, 0, untouched.tokens, rnd, 7));
        String s1 = dir.resolve("states-1").toString();
        try (LightningTables.Result r = LightningTables.compute(blocks(oldRows, rnd), sequences(all, true), opts)) {
            r.finalStates().write().parquet(s1);
        }
        Dataset<Row> stored = spark.read().parquet(s1);
        Map<String, Row> first = byName(stored);
        assertEquals(4, first.size());
        assertEquals(30L, first.get(untouched.name).getLong(8), "state_tokens of a run from zero is T");
        assertNull(first.get(b.name).get(8), "after a given initial_state the tokens absorbed are unknown");
        assertEquals("identity", first.get(a.name).getString(9));

        List<Row> newRows = new ArrayList<>();
        for (Seq s : List.of(a, b, c, fresh)) {
            newRows.addAll(part(s, cut.get(s.name), s.tokens, rnd, 50));
        }
        Dataset<Row> newBlocks = blocks(newRows, rnd);
        List<Row> wholeRows = new ArrayList<>();
        for (Seq s : List.of(a, b, c, fresh)) {
            wholeRows.addAll(part(s, 0, s.tokens, rnd, 50));
        }
        // no sequences table: b keeps the slopes its stored state decayed at (the defaults differ)
        try (LightningTables.Result appended = LightningTables.compute(newBlocks, null, stored, opts);
             LightningTables.Result whole = LightningTables.compute(blocks(wholeRows, rnd), sequences(all, true),
                     opts)) {
            assertTrue(appended.tasks() > 1);
            Map<String, float[]> oNew = oFrom(appended.o(), seqs, cut);
            Map<String, float[]> oWhole = TablesTest.oBySequence(whole.o(), seqs);
            Map<String, Row> fin = byName(appended.finalStates());
            Map<String, Row> finWhole = byName(whole.finalStates());
            assertEquals(5, fin.size(), "the complete state set: four computed, one carried over");
            for (Seq s : List.of(a, b, c, fresh)) {
                int from = cut.get(s.name);
                float[][] ref = TablesTest.reference(s, 0.5, false);
                double tol = s.dtype == DType.F32 ? 1e-5 : s.dtype == DType.F16 ? 2e-3 : 1e-2;
                double vsWhole = Accuracy.relativeError(oNew.get(s.name), tail(oWhole.get(s.name), s, from));
                double vsRef = Accuracy.relativeError(oNew.get(s.name), tail(ref[0], s, from));
                assertTrue(vsWhole < (s.dtype == DType.F32 ? 1e-5 : tol), s.name + ": o of the append run and of one "
                        + "run differ by " + vsWhole);
                assertTrue(vsRef < tol, s.name + ": o off the float64 reference by " + vsRef);
                Row f = fin.get(s.name);
                float[] state = TablesTest.floats((byte[]) f.get(6));
                double sWhole = Accuracy.relativeError(state, TablesTest.floats((byte[]) finWhole.get(s.name).get(6)));
                double sRef = Accuracy.relativeError(state, ref[1]);
                assertTrue(sWhole < 1e-5 && sRef < 1e-5, s.name + ": final state off by " + sWhole + " (one run), "
                        + sRef + " (float64)");
                assertEquals(s.tokens - from, f.getLong(1), "tokens: this run's");
            }
            assertEquals(63L, fin.get(a.name).getLong(8), "state_tokens: the stored ones plus this run's");
            assertEquals(200L, fin.get(c.name).getLong(8));
            assertEquals(40L, fin.get(fresh.name).getLong(8), "no stored state: started from zero");
            assertNull(fin.get(b.name).get(8));
            Row kept = fin.get(untouched.name);
            Row was = first.get(untouched.name);
            for (int i = 0; i < TableSchema.FINAL_STATES.columns.size(); i++) {
                if (was.get(i) instanceof byte[]) {
                    assertArrayEquals((byte[]) was.get(i), (byte[]) kept.get(i), "carried over byte for byte");
                } else {
                    assertEquals(String.valueOf(was.get(i)), String.valueOf(kept.get(i)));
                }
            }
        }
    }

    /**
     * Normalized (elu1, z carried with S), the continued sequence split in the second run; and a
     * sequence whose new blocks are invalid, rejected with --skip-invalid: its stored row is still
     * its latest state, so it is carried over unchanged.
     */
    @Test
    void normalizedAppendAndARejectedSequenceKeepsItsStoredRow(@TempDir Path dir) {
        Random rnd = new Random(153);
        Seq n = new Seq("n", 300, 2, 1, 2, 8, 12, DType.F32, rnd);
        Seq bad = new Seq("bad", 12, 1, 1, 1, 4, 4, DType.F32, rnd);
        String[] opts = {"--backend", "cpu", "--feature-map", "elu1", "--normalize", "--partition-tokens", "64",
                "--skip-invalid"};
        List<Row> old = new ArrayList<>(part(n, 0, 37, rnd, 8));
        old.addAll(part(bad, 0, 6, rnd, 3));
        String s1 = dir.resolve("s1").toString();
        try (LightningTables.Result r = LightningTables.compute(blocks(old, rnd), opts)) {
            r.finalStates().write().parquet(s1);
        }
        Dataset<Row> stored = spark.read().parquet(s1);
        Map<String, Row> first = byName(stored);
        List<Row> rows = new ArrayList<>(part(n, 37, 300, rnd, 8));
        List<Row> badRows = part(bad, 6, 12, rnd, 2);
        rows.addAll(badRows.subList(1, badRows.size())); // its first new block is missing
        try (LightningTables.Result r = LightningTables.compute(blocks(rows, rnd), null, stored, opts);
             LightningTables.Result whole = LightningTables.compute(blocks(part(n, 0, 300, rnd, 8), rnd), opts)) {
            assertEquals(Set.of("bad"), r.rejected().keySet());
            assertTrue(r.tasks() > 1);
            Map<String, Row> fin = byName(r.finalStates());
            assertEquals(Set.of("n", "bad"), fin.keySet());
            for (int i = 0; i < TableSchema.FINAL_STATES.columns.size(); i++) {
                Object x = first.get("bad").get(i);
                Object y = fin.get("bad").get(i);
                if (x instanceof byte[]) {
                    assertArrayEquals((byte[]) x, (byte[]) y, "the rejected sequence's stored row, unchanged");
                } else {
                    assertEquals(String.valueOf(x), String.valueOf(y));
                }
            }
            float[][] ref = TablesTest.reference(n, 1.0, true);
            float[] o = oFrom(r.o(), Map.of("n", n), Map.of("n", 37)).get("n");
            float[] oWhole = TablesTest.oBySequence(whole.o(), Map.of("n", n)).get("n");
            double vsWhole = Accuracy.relativeError(o, tail(oWhole, n, 37));
            double vsRef = Accuracy.relativeError(o, tail(ref[0], n, 37));
            assertTrue(vsWhole < 1e-5 && vsRef < 1e-5, "normalized o off by " + vsWhole + " (one run), " + vsRef
                    + " (float64)");
            Row f = fin.get("n");
            Row w = byName(whole.finalStates()).get("n");
            for (int c : new int[] {6, 7}) {
                float[] got = TablesTest.floats((byte[]) f.get(c));
                double e1 = Accuracy.relativeError(got, TablesTest.floats((byte[]) w.get(c)));
                double e2 = Accuracy.relativeError(got, ref[c - 5]);
                assertTrue(e1 < 1e-5 && e2 < 1e-5, "final " + (c == 6 ? "S" : "z") + " off by " + e1 + ", " + e2);
            }
            assertEquals(300L, f.getLong(8));
            assertEquals("elu1", f.getString(9));
        }
    }

    @Test
    void storedStatesThatCannotContinueAreRefusedNamingTheSequence(@TempDir Path dir) {
        Random rnd = new Random(152);
        Seq a = new Seq("a", 20, 2, 2, 2, 8, 8, DType.F32, rnd);
        Seq b = new Seq("b", 20, 2, 2, 2, 8, 8, DType.F32, rnd);
        String s1 = dir.resolve("s1").toString();
        try (LightningTables.Result r = LightningTables.compute(blocks(part(a, 0, 10, rnd, 4), rnd), "--backend",
                "cpu")) {
            r.finalStates().write().parquet(s1);
        }
        Dataset<Row> stored = spark.read().parquet(s1);
        List<Row> rows = new ArrayList<>(part(a, 10, 20, rnd, 4));
        rows.addAll(part(b, 0, 20, rnd, 4));
        Dataset<Row> next = blocks(rows, rnd);

        // its own initial_state and a stored one
        a.initial = LightningState.of(2, 8, 8, TablesTest.random(128, rnd, 0.5));
        String m = TablesTest.rejection(() -> LightningTables.compute(next, sequences(List.of(a), true), stored,
                "--backend", "cpu"));
        assertTrue(m.contains("'a'") && m.contains("initial_state") && m.contains("one state"), m);
        // other decay rates than the stored state's
        Seq slow = new Seq("a", 10, 2, 2, 2, 8, 8, DType.F32, rnd);
        slow.slopes = new double[] {0.5, 0.25};
        m = TablesTest.rejection(() -> LightningTables.compute(next, sequences(List.of(slow), false), stored,
                "--backend", "cpu"));
        assertTrue(m.contains("'a'") && m.contains("[0.5, 0.25]") && m.contains("decay rates"), m);
        // another shape: the message names the sequence, what was expected and what was found
        Seq wide = new Seq("a", 10, 2, 2, 2, 8, 16, DType.F32, rnd);
        m = TablesTest.rejection(() -> LightningTables.compute(blocks(part(wide, 0, 10, rnd, 4), rnd), null, stored,
                "--backend", "cpu"));
        assertTrue(m.contains("'a'") && m.contains("expected S [2, 8, 16]") && m.contains("found S [2, 8, 8]"), m);
        // a plain state into a normalizing run
        m = TablesTest.rejection(() -> LightningTables.compute(next, null, stored, "--backend", "cpu",
                "--feature-map", "elu1", "--normalize"));
        assertTrue(m.contains("'a'") && m.contains("without a normalizer z"), m);
        // another feature map
        Dataset<Row> elu = stored.withColumn(TableSchema.FEATURE_MAP, functions.lit("elu1"));
        m = TablesTest.rejection(() -> LightningTables.compute(next, null, elu, "--backend", "cpu"));
        assertTrue(m.contains("'a'") && m.contains("--feature-map elu1") && m.contains("identity"), m);
        // two stored rows of one sequence (two runs' tables joined): what to do is to give one run's table
        String oneRun = "What to do: give the final_states table of the latest table run alone, as it was written";
        m = TablesTest.rejection(() -> LightningTables.compute(next, null, stored.union(stored), "--backend", "cpu"));
        assertTrue(m.contains("'a'") && m.contains("more than one row") && m.endsWith(oneRun
                + " (it holds every sequence's latest state, one row each)"), m);
        // a row lightning did not write (no state, no decay rates): one run's table, or the row removed
        for (String column : new String[] {TableSchema.FINAL_STATE, TableSchema.SLOPE}) {
            Dataset<Row> cleared = stored.withColumn(column, functions.lit(null).cast(stored.schema().apply(column)
                    .dataType()));
            m = TablesTest.rejection(() -> LightningTables.compute(next, null, cleared, "--backend", "cpu"));
            assertTrue(m.contains("'a'") && m.contains("it is not a row lightning wrote") && m.contains(oneRun)
                    && m.endsWith("or remove the row to start the sequence from zero"), m);
        }
        // a stored state of the wrong byte length (not a table lightning wrote), found before compute
        Dataset<Row> cut = stored.withColumn(TableSchema.FINAL_STATE,
                functions.substring(functions.col(TableSchema.FINAL_STATE), 1, 12));
        m = TablesTest.rejection(() -> {
            try (LightningTables.Result r = LightningTables.compute(next, null, cut, "--backend", "cpu")) {
                r.o().count();
            }
        });
        assertTrue(m.contains("'a'") && m.contains("final_state holds 12 bytes"), m);
        // the option is the command line's; here the dataset is the argument
        m = TablesTest.rejection(() -> LightningTables.compute(next, null, stored, "--backend", "cpu",
                "--initial-states", s1));
        assertTrue(m.contains("storedStates"), m);
        // a table written before state_tokens and feature_map existed still continues; the count is then unknown
        Dataset<Row> older = stored.drop(TableSchema.STATE_TOKENS, TableSchema.FEATURE_MAP);
        try (LightningTables.Result r = LightningTables.compute(next, null, older, "--backend", "cpu")) {
            Row f = byName(r.finalStates()).get("a");
            assertNull(f.get(8));
            assertEquals("identity", f.getString(9));
            a.initial = null;
            float[][] ref = TablesTest.reference(a, 1.0, false);
            double err = Accuracy.relativeError(TablesTest.floats((byte[]) f.get(6)), ref[1]);
            assertTrue(err < 1e-5, "final state off the float64 reference over old and new tokens by " + err);
        }
    }
}
