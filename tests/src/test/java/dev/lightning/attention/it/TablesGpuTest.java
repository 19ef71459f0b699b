package dev.lightning.attention.it;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.reference.Accuracy;
import dev.lightning.attention.engine.reference.RecurrentReference;
import dev.lightning.attention.job.LightningMain;
import dev.lightning.attention.job.tables.LightningKryoRegistrator;
import dev.lightning.attention.job.tables.LightningTables;
import dev.lightning.attention.job.tables.TableSchema;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Table runs on the GPU ({@code --backend gpu}), through the Dataset API and through the command
 * line, on both GPU paths of the table computation: unsplit sequences of at most 64 tokens go
 * through the batch step ({@code BatchStep.gpu}: many sequences a launch, their states in a state
 * store), longer ones through the pieces path (split ones: pass 1 on the GPU, the scan, pass 2).
 * Awkward shapes throughout: T = 1, 63 and 1000, grouped heads (GQA), Dk != Dv, F32, F16 and BF16,
 * given initial states and, on the command line, an append that continues stored final states.
 * Every output is checked against the float64 recurrence computed here from the inputs, and
 * against the same run on the CPU backend. Skipped, with a message saying why, where no GPU is
 * usable ({@code --backend gpu} refuses to run there).
 */
@Tag("gpu")
class TablesGpuTest {

    /** Per test rather than per class, so that the report counts each test as skipped, with the reason. */
    @BeforeEach
    void gpu(org.junit.jupiter.api.TestInfo test) {
        String reason = Backends.gpuUnavailableReason();
        if (reason != null) {
            System.out.println("TablesGpuTest SKIPPED " + test.getDisplayName() + ": no usable GPU: " + reason);
        }
        Assumptions.assumeTrue(reason == null, "no usable GPU: " + reason);
    }

    private static SparkSession session() {
        return SparkSession.builder().master("local[4]").appName("tables-gpu-test")
                .config("spark.ui.enabled", "false")
                .config("spark.serializer", "org.apache.spark.serializer.KryoSerializer")
                .config("spark.kryo.registrationRequired", "false") // as LightningMain sets it for tables
                .config("spark.kryo.registrator", LightningKryoRegistrator.class.getName())
                .config("spark.sql.shuffle.partitions", "4")
                .getOrCreate();
    }

    /** One random sequence (values already rounded to its dtype), with an optional initial state. */
    static final class Seq {
        final String name;
        final int tokens;
        final int hq;
        final int hk;
        final int hv;
        final int dk;
        final int dv;
        final DType dtype;
        final TokenTensor q;
        final TokenTensor k;
        final TokenTensor v;
        double[] slopes;
        float[] initial;
        /** The float64 reference, computed once (at the first check). */
        private float[][] reference;

        Seq(String name, int tokens, int hq, int hk, int hv, int dk, int dv, DType dtype, Random rnd) {
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

        Seq withInitial(Random rnd) {
            initial = random(heads() * dk * dv, rnd, 0.5);
            return this;
        }

        int heads() {
            return Math.max(hq, Math.max(hk, hv));
        }

        AttentionSpec spec(double scale) {
            return new AttentionSpec(heads(), dk, dv, slopes != null ? slopes : Slopes.minimax(heads()), scale, 64)
                    .withHeads(hq, hk, hv);
        }

        /** Rows of tokens [from, to), cut at random lengths of 1..maxRow tokens, their starts counted from {@code from}. */
        List<Row> rows(int from, int to, Random rnd, int maxRow) {
            List<Row> rows = new ArrayList<>();
            for (int t = from; t < to; ) {
                int n = Math.min(to - t, 1 + rnd.nextInt(maxRow));
                // start counts from this run's first token: an append's new blocks start at 0 (README,
                // --initial-states), as its o rows do
                rows.add(RowFactory.create(name, (long) (t - from), n, dtype.name(), hq, hk, hv, dk, dv, bytes(q, t, n),
                        bytes(k, t, n), bytes(v, t, n)));
                t += n;
            }
            return rows;
        }

        /** The float64 recurrence over all the sequence's tokens: o (as float32) and the final state. */
        float[][] reference(double scale) {
            if (reference == null) {
                reference = computeReference(scale);
            }
            return reference;
        }

        private float[][] computeReference(double scale) {
            AttentionSpec spec = spec(scale);
            TokenTensor o = TokenTensor.allocate(DType.F32, tokens, heads(), dv);
            LightningState init = initial != null ? LightningState.of(heads(), dk, dv, initial.clone())
                    : LightningState.zeros(spec);
            LightningState last = new RecurrentReference().forward(spec, q, k, v, init, o);
            return new float[][] {o.toFloats(), last.data()};
        }
    }

    static float[] random(int n, Random rnd, double amp) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) ((rnd.nextDouble() * 2 - 1) * amp);
        }
        return x;
    }

    static byte[] bytes(TokenTensor t, int from, int n) {
        ByteBuffer b = t.slice(from, n).bytes();
        byte[] out = new byte[b.remaining()];
        b.get(out);
        return out;
    }

    static byte[] bytes(float[] f) {
        ByteBuffer b = ByteBuffer.allocate(4 * f.length).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(f);
        return b.array();
    }

    static float[] floats(byte[] b) {
        float[] f = new float[b.length / 4];
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(f);
        return f;
    }

    /** The limit on o's relative error for the output dtype (its rounding), as the job's tests hold it. */
    static double oLimit(DType dtype) {
        return dtype == DType.F32 ? 1e-5 : dtype == DType.F16 ? 2e-3 : 1e-2;
    }

    /**
     * Per sequence: o from token {@code from[name]} on, assembled from its rows in token order
     * (checking that they tile [from, T) exactly), as floats.
     */
    static Map<String, float[]> oBySequence(Dataset<Row> o, Map<String, Seq> seqs, Map<String, Integer> from) {
        Map<String, List<Row>> by = new HashMap<>();
        for (Row r : o.collectAsList()) {
            by.computeIfAbsent(r.getString(0), x -> new ArrayList<>()).add(r);
        }
        Map<String, float[]> out = new HashMap<>();
        for (Map.Entry<String, List<Row>> e : by.entrySet()) {
            Seq s = seqs.get(e.getKey());
            int first = from.getOrDefault(s.name, 0);
            List<Row> rows = e.getValue();
            rows.sort((a, b) -> Long.compare(a.getLong(1), b.getLong(1)));
            DType dt = DType.valueOf(rows.get(0).getString(3));
            ByteBuffer all = ByteBuffer.allocate((s.tokens - first) * s.heads() * s.dv * dt.bytes());
            long next = 0;  // o rows count from this run's first token, which is token `first` of the sequence
            for (Row r : rows) {
                assertEquals(next, r.getLong(1), s.name + ": o rows must tile the new tokens");
                assertEquals(s.heads(), r.getInt(4));
                assertEquals(s.dv, r.getInt(5));
                all.put((byte[]) r.get(6));
                next += r.getInt(2);
            }
            assertEquals(s.tokens - first, next, s.name + ": o rows end at the sequence's end");
            all.flip();
            out.put(s.name, TokenTensor.wrap(dt, s.tokens - first, s.heads(), s.dv, all).toFloats());
        }
        return out;
    }

    static Map<String, Row> byName(Dataset<Row> states) {
        Map<String, Row> m = new HashMap<>();
        for (Row r : states.collectAsList()) {
            m.put(r.getString(0), r);
        }
        return m;
    }

    /** o of tokens [from, T) out of a whole sequence's o. */
    static float[] tail(float[] o, Seq s, int from) {
        return java.util.Arrays.copyOfRange(o, from * s.heads() * s.dv, o.length);
    }

    /**
     * Checks a run's o and final states against the float64 recurrence, and returns them for the
     * comparison with another backend's run: o per sequence, and final states per sequence.
     */
    static Map<String, float[][]> check(String run, List<Seq> seqs, Dataset<Row> o, Dataset<Row> states, double scale,
                                        Map<String, Integer> from) {
        Map<String, Seq> named = new HashMap<>();
        seqs.forEach(s -> named.put(s.name, s));
        Map<String, float[]> got = oBySequence(o, named, from);
        Map<String, Row> finals = byName(states);
        assertEquals(named.keySet(), got.keySet(), run + ": o of every sequence, and only those");
        Map<String, float[][]> out = new HashMap<>();
        double worstO = 0;
        double worstS = 0;
        for (Seq s : seqs) {
            float[][] ref = s.reference(scale);
            int first = from.getOrDefault(s.name, 0);
            double err = Accuracy.relativeError(got.get(s.name), tail(ref[0], s, first));
            assertTrue(err < oLimit(s.dtype), run + ", " + s.name + ": o off the float64 recurrence by " + err);
            Row f = finals.get(s.name);
            assertEquals(s.tokens - first, f.getLong(1), run + ", " + s.name + ": tokens of this run");
            float[] state = floats((byte[]) f.get(6));
            double stateErr = Accuracy.relativeError(state, ref[1]);
            assertTrue(stateErr < 1e-5, run + ", " + s.name + ": final state off the float64 recurrence by " + stateErr);
            worstO = Math.max(worstO, err);
            worstS = Math.max(worstS, stateErr);
            out.put(s.name, new float[][] {got.get(s.name), state});
        }
        System.out.printf("TablesGpuTest %s: %d sequences against float64: o within %.2e, states within %.2e%n", run,
                seqs.size(), worstO, worstS);
        return out;
    }

    /** The GPU run's outputs against the CPU backend's, sequence by sequence. */
    static void agree(String run, List<Seq> seqs, Map<String, float[][]> gpu, Map<String, float[][]> cpu) {
        double worstO = 0;
        double worstS = 0;
        for (Seq s : seqs) {
            double err = Accuracy.relativeError(gpu.get(s.name)[0], cpu.get(s.name)[0]);
            assertTrue(err < oLimit(s.dtype), run + ", " + s.name + ": GPU and CPU o differ by " + err);
            double stateErr = Accuracy.relativeError(gpu.get(s.name)[1], cpu.get(s.name)[1]);
            assertTrue(stateErr < 1e-5, run + ", " + s.name + ": GPU and CPU final states differ by " + stateErr);
            worstO = Math.max(worstO, err);
            worstS = Math.max(worstS, stateErr);
        }
        System.out.printf("TablesGpuTest %s: GPU against CPU: o within %.2e, states within %.2e%n", run, worstO, worstS);
    }

    /**
     * Both GPU paths in one run through the Dataset API: 100 decode-sized sequences (H = 8,
     * D = 128, BF16, 1 to 64 tokens, a third with initial states) and T = 1 and 63 with grouped
     * heads and Dk != Dv take the batch step; T = 1000 (split at 256 tokens: pass 1, the scan,
     * pass 2; one with an initial state and its own slopes, one GQA with Dk != Dv) and an unsplit
     * F16 sequence of 100 tokens take the pieces path. A GPU window of 16 MiB makes the batch step
     * take its sequences in several batches of 16 slots (8 MiB of 512 KiB states) and a piece
     * several windows.
     */
    @Test
    void batchStepAndPiecesAgreeWithFloat64AndTheCpu() {
        Random rnd = new Random(1501);
        List<Seq> seqs = new ArrayList<>();
        seqs.add(new Seq("t1 gqa", 1, 4, 2, 2, 64, 32, DType.BF16, rnd).withInitial(rnd));
        seqs.add(new Seq("t1 decode", 1, 8, 8, 8, 128, 128, DType.BF16, rnd).withInitial(rnd));
        seqs.add(new Seq("t63 gqa", 63, 6, 2, 2, 16, 24, DType.F32, rnd).withInitial(rnd));
        seqs.add(new Seq("t63 fresh", 63, 3, 3, 3, 32, 8, DType.F32, rnd));
        for (int i = 0; i < 100; i++) {
            Seq s = new Seq(String.format("conversation-%03d", i), 1 + rnd.nextInt(64), 8, 8, 8, 128, 128, DType.BF16, rnd);
            seqs.add(i % 3 == 0 ? s.withInitial(rnd) : s);
        }
        Seq split = new Seq("t1000 split", 1000, 3, 3, 3, 32, 8, DType.BF16, rnd).withInitial(rnd);
        split.slopes = new double[] {0.01, 0.2, 0.7};
        seqs.add(split);
        seqs.add(new Seq("t1000 gqa", 1000, 8, 2, 2, 128, 64, DType.BF16, rnd));
        seqs.add(new Seq("t100 f16", 100, 4, 4, 1, 8, 16, DType.F16, rnd));

        SparkSession spark = session();
        try {
            List<Row> blockRows = new ArrayList<>();
            List<Row> seqRows = new ArrayList<>();
            for (Seq s : seqs) {
                blockRows.addAll(s.rows(0, s.tokens, rnd, 40));
                if (s.initial != null || s.slopes != null) {
                    seqRows.add(RowFactory.create(s.name, s.slopes == null ? null
                                    : scala.jdk.javaapi.CollectionConverters.asScala(java.util.Arrays.stream(s.slopes)
                                    .boxed().collect(java.util.stream.Collectors.toList())).toList(),
                            s.initial == null ? null : bytes(s.initial), null));
                }
            }
            Collections.shuffle(blockRows, rnd);
            Dataset<Row> blocks = spark.createDataFrame(blockRows, TableSchema.BLOCKS.schema()).repartition(3);
            Dataset<Row> perSeq = spark.createDataFrame(seqRows, TableSchema.SEQUENCES.schema());
            Map<String, float[][]> gpu;
            Map<String, float[][]> cpu;
            try (LightningTables.Result r = LightningTables.compute(blocks, perSeq, "--backend", "gpu", "--scale", "0.5",
                    "--partition-tokens", "256", "--gpu-window-bytes", "16m")) {
                assertEquals(seqs.size(), r.sequences());
                gpu = check("Dataset API, --backend gpu", seqs, r.o(), r.finalStates(), 0.5, Map.of());
            }
            try (LightningTables.Result r = LightningTables.compute(blocks, perSeq, "--backend", "cpu", "--scale", "0.5",
                    "--partition-tokens", "256")) {
                cpu = check("Dataset API, --backend cpu", seqs, r.o(), r.finalStates(), 0.5, Map.of());
            }
            agree("Dataset API", seqs, gpu, cpu);
        } finally {
            spark.stop();
        }
    }

    private static int run(StringBuilder log, String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        List<String> all = new ArrayList<>(List.of("run", "--master", "local[4]", "--progress-seconds", "60"));
        all.addAll(List.of(args));
        int status = LightningMain.run(all.toArray(new String[0]), new PrintStream(out, true),
                new PrintStream(err, true));
        log.setLength(0);
        log.append(out.toString(StandardCharsets.UTF_8)).append(err.toString(StandardCharsets.UTF_8));
        return status;
    }

    /**
     * An append through {@code bin/lightning run}'s entry point on the GPU: a first run over the old
     * tokens, then a run over the new tokens with {@code --initial-states} (a decode step of one
     * token after 63, 20 new tokens after 44 with GQA and Dk != Dv, 500 after 500 split at 128
     * tokens, a sequence without a stored state from zero, and one with no new tokens carried
     * over unchanged), held against the float64 recurrence over old and new tokens, and against
     * the same append on the CPU backend from the same stored states.
     */
    @Test
    void appendOnTheGpuThroughTheCommandLine(@TempDir Path dir) {
        Random rnd = new Random(1502);
        Seq decode = new Seq("decode", 64, 8, 8, 8, 128, 128, DType.BF16, rnd);
        Seq gqa = new Seq("gqa", 64, 6, 3, 3, 64, 48, DType.F32, rnd);
        Seq lng = new Seq("long", 1000, 4, 2, 4, 32, 40, DType.BF16, rnd);
        Seq fresh = new Seq("fresh", 30, 2, 2, 2, 16, 16, DType.F32, rnd);
        Seq kept = new Seq("kept", 20, 2, 2, 2, 16, 16, DType.F32, rnd);
        Map<String, Integer> from = Map.of("decode", 63, "gqa", 44, "long", 500, "fresh", 0);
        String oldIn = dir.resolve("old").toString();
        String newIn = dir.resolve("new").toString();
        SparkSession spark = session();
        try {
            List<Row> old = new ArrayList<>();
            List<Row> rows = new ArrayList<>();
            for (Seq s : List.of(decode, gqa, lng)) {
                old.addAll(s.rows(0, from.get(s.name), rnd, 50));
                rows.addAll(s.rows(from.get(s.name), s.tokens, rnd, 50));
            }
            old.addAll(kept.rows(0, kept.tokens, rnd, 50));
            rows.addAll(fresh.rows(0, fresh.tokens, rnd, 50));
            Collections.shuffle(rows, rnd);
            spark.createDataFrame(old, TableSchema.BLOCKS.schema()).repartition(2).write().parquet(oldIn);
            spark.createDataFrame(rows, TableSchema.BLOCKS.schema()).repartition(3).write().parquet(newIn);
        } finally {
            spark.stop();
        }
        String first = dir.resolve("first").toString();
        StringBuilder log = new StringBuilder();
        assertEquals(0, run(log, "--backend", "gpu", "--input", oldIn, "--output", first, "--scale", "0.5"),
                log.toString());
        Map<String, Map<String, float[][]>> results = new HashMap<>();
        List<Seq> computed = List.of(decode, gqa, lng, fresh);
        for (String backend : List.of("gpu", "cpu")) {
            String out = dir.resolve("append-" + backend).toString();
            assertEquals(0, run(log, "--backend", backend, "--input", newIn, "--output", out, "--scale", "0.5",
                    "--initial-states", first, "--partition-tokens", "128"), log.toString());
            assertTrue(log.toString().contains("3 of 4 sequences continue from a stored state"), log.toString());
            spark = session();
            try {
                Dataset<Row> states = spark.read().parquet(out + "/final_states");
                results.put(backend, check("append, --backend " + backend, computed, spark.read().parquet(out + "/o"),
                        states.filter(states.col("sequence").notEqual("kept")), 0.5, from));
                Map<String, Row> before = byName(spark.read().parquet(first + "/final_states"));
                Map<String, Row> after = byName(states);
                assertEquals(Set.of("decode", "gqa", "long", "fresh", "kept"), after.keySet(), "the complete state set");
                assertArrayEquals((byte[]) before.get("kept").get(6), (byte[]) after.get("kept").get(6),
                        "a sequence without new tokens is carried over unchanged");
                for (Seq s : List.of(decode, gqa, lng)) {
                    assertEquals(s.tokens, after.get(s.name).getLong(8), s.name + ": state_tokens, old and new");
                }
            } finally {
                spark.stop();
            }
        }
        agree("append", computed, results.get("gpu"), results.get("cpu"));
    }
}
