package dev.lightning.attention.job.tables;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.reference.Accuracy;
import dev.lightning.attention.engine.reference.RecurrentReference;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
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

import static dev.lightning.attention.job.tables.TablesTest.Seq;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * --state-every over tables: the {@code states} table (one row per recorded state). Each recorded
 * state is held to the final state of a float64 run over the sequence's first (c+1)N tokens (from
 * its initial state), for T = 1, 50, 63, 200, 1000 with N = 48 (which divides none of them), plain
 * and normalized; split runs against unsplit ones; windows smaller than a sequence (so that they
 * start between chunks); rows shuffled across files giving the same bytes; a continued stored
 * state placing its states in the chain.
 */
public class TablesStatesTest {
    private static final int EVERY = 48;
    private static SparkSession spark;

    @BeforeAll
    static void start() {
        spark = SparkSession.builder().master("local[2]").appName("tables-states-test")
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

    /** The mixed shapes of TablesTest (T = 1, 63, 1000 with slopes and an initial state, 200) and T = 50 and 40. */
    static List<Seq> sequences(Random rnd, boolean normalize) {
        List<Seq> seqs = new ArrayList<>(TablesTest.mixed(rnd, normalize));
        seqs.add(new Seq("fifty", 50, 2, 2, 2, 8, 8, DType.F32, rnd));  // <= 64 tokens, but recorded: not batched
        seqs.add(new Seq("forty", 40, 2, 2, 2, 8, 8, DType.F32, rnd));  // shorter than N: batched, nothing recorded
        seqs.add(new Seq("exactly N", EVERY, 2, 2, 2, 8, 8, DType.F32, rnd));  // T = N: one state, so not batched
        return seqs;
    }

    static Dataset<Row> blocks(List<Row> rows) {
        return spark.createDataFrame(rows, TableSchema.BLOCKS.schema());
    }

    static List<Row> rowsOf(List<Seq> seqs, Random rnd, int maxRow) {
        List<Row> rows = new ArrayList<>();
        for (Seq s : seqs) {
            rows.addAll(s.rows(rnd, maxRow));
        }
        Collections.shuffle(rows, rnd);
        return rows;
    }

    static Dataset<Row> sequencesTable(List<Seq> seqs, boolean normalize) {
        List<Row> rows = new ArrayList<>();
        for (Seq s : seqs) {
            if (s.slopes != null || s.initial != null) {
                rows.add(s.sequenceRow(normalize));
            }
        }
        return spark.createDataFrame(rows, TableSchema.SEQUENCES.schema());
    }

    /** The state a float64 run over the first {@code n} tokens of {@code s} ends with (from its initial state). */
    static LightningState prefixReference(Seq s, int n, double scale, boolean normalize) {
        AttentionSpec spec = s.spec(scale, normalize);
        TokenTensor o = TokenTensor.allocate(DType.F32, n, s.heads(), s.dv);
        LightningState init = s.initial != null ? s.initial : LightningState.zeros(spec);
        return new RecurrentReference().forward(spec, s.q.slice(0, n), s.k.slice(0, n), s.v.slice(0, n), init, o);
    }

    /** The states table as (sequence -> rows in checkpoint order), checking that each sequence's indices run 0..C-1. */
    public static Map<String, List<Row>> bySequence(Dataset<Row> states) {
        Map<String, List<Row>> m = new HashMap<>();
        for (Row r : states.collectAsList()) {
            m.computeIfAbsent(r.getString(0), x -> new ArrayList<>()).add(r);
        }
        for (Map.Entry<String, List<Row>> e : m.entrySet()) {
            e.getValue().sort((a, b) -> Integer.compare(a.getInt(1), b.getInt(1)));
            for (int c = 0; c < e.getValue().size(); c++) {
                assertEquals(c, e.getValue().get(c).getInt(1), e.getKey() + ": checkpoint indices run 0..C-1");
            }
        }
        return m;
    }

    /** Every recorded state against the float64 prefix run; the count floor(T / N), the token and state_tokens columns. */
    public static void checkAgainstPrefixRuns(List<Seq> seqs, Dataset<Row> states, int every, double scale,
                                              boolean normalize) {
        Map<String, List<Row>> got = bySequence(states);
        int total = 0;
        for (Seq s : seqs) {
            List<Row> rows = got.getOrDefault(s.name, List.of());
            assertEquals(s.tokens / every, rows.size(), s.name + ": C = floor(T / N) states");
            total += rows.size();
            for (int c = 0; c < rows.size(); c++) {
                Row r = rows.get(c);
                long after = (long) (c + 1) * every;
                assertEquals(after - 1, r.getLong(2), s.name + " state " + c + ": token");
                if (s.initial != null) {
                    assertTrue(r.isNullAt(3), s.name + ": a given initial state's history is unknown");
                } else {
                    assertEquals(after, r.getLong(3), s.name + " state " + c + ": state_tokens");
                }
                assertEquals(s.heads(), r.getInt(4));
                assertEquals(s.dk, r.getInt(5));
                assertEquals(s.dv, r.getInt(6));
                LightningState ref = prefixReference(s, (int) after, scale, normalize);
                double err = Accuracy.relativeError(TablesTest.floats((byte[]) r.get(7)), ref.data());
                assertTrue(err < 1e-5, s.name + " state " + c + " off the float64 run over " + after + " tokens by " + err);
                if (normalize) {
                    double zErr = Accuracy.relativeError(TablesTest.floats((byte[]) r.get(8)), ref.normalizerData());
                    assertTrue(zErr < 1e-5, s.name + " normalizer " + c + " off by " + zErr);
                } else {
                    assertTrue(r.isNullAt(8), "no normalizer without --normalize");
                }
            }
        }
        assertEquals(total, states.count(), "rows only for computed sequences");
    }

    /** (sequence, c) -> the state's bytes (S then z). */
    static Map<String, byte[]> stateBytes(Dataset<Row> states) {
        Map<String, byte[]> m = new HashMap<>();
        for (Row r : states.collectAsList()) {
            byte[] s = (byte[]) r.get(7);
            byte[] z = r.isNullAt(8) ? new byte[0] : (byte[]) r.get(8);
            byte[] all = java.util.Arrays.copyOf(s, s.length + z.length);
            System.arraycopy(z, 0, all, s.length, z.length);
            m.put(r.getString(0) + "#" + r.getInt(1), all);
        }
        return m;
    }

    private static String[] options(boolean normalize, String... more) {
        List<String> o = new ArrayList<>(List.of("--backend", "cpu", "--scale", "0.5", "--chunk-size", "16",
                "--state-every", String.valueOf(EVERY)));
        if (normalize) {
            o.addAll(List.of("--feature-map", "elu1", "--normalize"));
        }
        o.addAll(List.of(more));
        return o.toArray(new String[0]);
    }

    private void splitAgainstUnsplit(boolean normalize, long seed) {
        Random rnd = new Random(seed);
        List<Seq> seqs = sequences(rnd, normalize);
        Dataset<Row> blocks = blocks(rowsOf(seqs, rnd, 40));
        Dataset<Row> perSeq = sequencesTable(seqs, normalize);
        Map<String, byte[]> whole;
        // unsplit, one window per sequence
        try (LightningTables.Result r = LightningTables.compute(blocks, perSeq, options(normalize))) {
            TablesTest.checkAgainstReference(seqs, r.o(), r.finalStates(), 0.5, normalize);
            checkAgainstPrefixRuns(seqs, r.checkpoints(), EVERY, 0.5, normalize);
            whole = stateBytes(r.checkpoints());
        }
        // split into pieces of 256 tokens, and windows of a few blocks that start between chunks
        try (LightningTables.Result r = LightningTables.compute(blocks, perSeq, options(normalize,
                "--partition-tokens", "256", "--window-bytes", "24k"))) {
            TablesTest.checkAgainstReference(seqs, r.o(), r.finalStates(), 0.5, normalize);
            checkAgainstPrefixRuns(seqs, r.checkpoints(), EVERY, 0.5, normalize);
            Map<String, byte[]> split = stateBytes(r.checkpoints());
            assertEquals(whole.keySet(), split.keySet());
            for (String key : whole.keySet()) {
                double err = Accuracy.relativeError(TablesTest.floats(split.get(key)), TablesTest.floats(whole.get(key)));
                assertTrue(err < 1e-5, key + ": split and unsplit differ by " + err);
            }
        }
    }

    @Test
    void recordedStatesEqualFloat64RunsOverThePrefixSplitOrNot() {
        splitAgainstUnsplit(false, 40);
    }

    @Test
    void recordedStatesWithNormalization() {
        splitAgainstUnsplit(true, 41);
    }

    @Test
    void rowsShuffledAcrossFilesGiveTheSameBytes(@TempDir Path dir) {
        Random rnd = new Random(42);
        List<Seq> seqs = sequences(rnd, false);
        List<Row> rows = new ArrayList<>();
        for (Seq s : seqs) {
            rows.addAll(s.rows(new Random(5), 30));
        }
        List<Row> other = new ArrayList<>(rows);
        Collections.shuffle(other, new Random(7));
        blocks(rows).coalesce(1).write().parquet(dir.resolve("a").toString());
        blocks(other).repartition(5).write().parquet(dir.resolve("b").toString());
        Dataset<Row> perSeq = sequencesTable(seqs, false);
        String[] opts = options(false, "--partition-tokens", "256", "--window-bytes", "24k");
        Map<String, byte[]> a;
        Map<String, byte[]> b;
        try (LightningTables.Result r = LightningTables.compute(spark.read().parquet(dir.resolve("a").toString()),
                perSeq, opts)) {
            a = stateBytes(r.checkpoints());
        }
        try (LightningTables.Result r = LightningTables.compute(spark.read().parquet(dir.resolve("b").toString()),
                perSeq, opts)) {
            b = stateBytes(r.checkpoints());
        }
        assertTrue(a.size() > 20, "states: " + a.size());
        assertEquals(a.keySet(), b.keySet());
        for (String key : a.keySet()) {
            assertArrayEquals(a.get(key), b.get(key), key);
        }
    }

    /**
     * Continuing a stored state: the states count from the new blocks' token 0 (as a files run's do
     * from its input's), and state_tokens places them in the whole sequence: state c of the second
     * run equals the float64 run over the first 50 + (c+1)N tokens of the concatenation.
     */
    @Test
    void continuedStatesArePlacedInTheChain() {
        Random rnd = new Random(43);
        Seq a = new Seq("a", 150, 2, 2, 2, 16, 8, DType.F32, rnd);
        Dataset<Row> first = blocks(TablesAppendTest.part(a, 0, 50, rnd, 9));
        Dataset<Row> second = blocks(TablesAppendTest.part(a, 50, 150, rnd, 9));
        try (LightningTables.Result r1 = LightningTables.compute(first, "--backend", "cpu", "--scale", "0.5")) {
            Dataset<Row> stored = spark.createDataFrame(r1.finalStates().collectAsList(),
                    TableSchema.FINAL_STATES.schema());
            try (LightningTables.Result r2 = LightningTables.compute(second, null, stored, options(false,
                    "--partition-tokens", "64"))) {
                List<Row> rows = bySequence(r2.checkpoints()).get("a");
                assertEquals(100 / EVERY, rows.size());
                for (int c = 0; c < rows.size(); c++) {
                    Row row = rows.get(c);
                    assertEquals((long) (c + 1) * EVERY - 1, row.getLong(2), "token counts from this run's blocks");
                    assertEquals(50L + (long) (c + 1) * EVERY, row.getLong(3), "state_tokens counts the whole chain");
                    LightningState ref = prefixReference(a, 50 + (c + 1) * EVERY, 0.5, false);
                    double err = Accuracy.relativeError(TablesTest.floats((byte[]) row.get(7)), ref.data());
                    assertTrue(err < 1e-5, "state " + c + " off the float64 run over the concatenation by " + err);
                }
            }
        }
    }

    @Test
    void withoutStateEveryThereAreNoRecordedStates() {
        Random rnd = new Random(44);
        Seq s = new Seq("x", 10, 1, 1, 1, 4, 4, DType.F32, rnd);
        try (LightningTables.Result r = LightningTables.compute(blocks(s.rows(rnd, 4)), "--backend", "cpu")) {
            IllegalStateException e = assertThrows(IllegalStateException.class, r::checkpoints);
            assertTrue(e.getMessage().contains("--state-every"), e.getMessage());
        }
    }
}
