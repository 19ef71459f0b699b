package dev.lightning.attention.job;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lightning.attention.engine.reference.Accuracy;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.OptionParser;
import dev.lightning.attention.job.output.Commit;
import dev.lightning.attention.job.output.Staging;
import dev.lightning.attention.job.tables.TableSchema;
import dev.lightning.attention.job.tables.TablesAppendTest;
import dev.lightning.attention.job.tables.TablesStatesTest;
import dev.lightning.attention.job.tables.TablesTest;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsFile;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code lightning run} over Parquet through the command line: the format detected, the two
 * tables published by the commit (checked against the float64 recurrence), an existing output
 * refused without --overwrite and replaced with it, bad input refused with exit 2 before compute
 * leaving nothing behind, and an option tables do not support refused.
 */
class TablesCliTest {

    private static SparkSession session() {
        return SparkSession.builder().master("local[2]").appName("tables-cli-test").config("spark.ui.enabled", "false")
                .getOrCreate();
    }

    /** A table of one random sequence "a" (T = 40, H = 2, Dk = Dv = 4, blocks of 16) written at {@code at}. */
    private static String oneSequenceTable(Path at, long seed, DType dtype) {
        Random rnd = new Random(seed);
        TablesTest.Seq a = new TablesTest.Seq("a", 40, 2, 2, 2, 4, 4, dtype, rnd);
        SparkSession spark = session();
        try {
            spark.createDataFrame(a.rows(rnd, 16), TableSchema.BLOCKS.schema()).write().parquet(at.toString());
        } finally {
            spark.stop();
        }
        return at.toString();
    }

    private static int run(StringBuilder log, String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        List<String> all = new ArrayList<>(List.of("run", "--backend", "cpu", "--progress-seconds", "60"));
        all.addAll(List.of(args));
        int status = LightningMain.run(all.toArray(new String[0]), new PrintStream(out, true),
                new PrintStream(err, true));
        log.setLength(0);
        log.append(out.toString(StandardCharsets.UTF_8)).append(err.toString(StandardCharsets.UTF_8));
        return status;
    }

    /**
     * A table run that fails after its commit point (its first table published) is finished by the
     * same command run again, which then says it is done, as a files run does; it had been refused
     * ("already holds o/", exit 2), and --overwrite recomputed everything. A rerun whose input table
     * was rewritten in between is not taken for that run.
     */
    @Test
    void aTableRunFailingAfterItsCommitPointIsFinishedByTheSameCommand(@TempDir Path dir) throws Exception {
        String in = oneSequenceTable(dir.resolve("in"), 61, DType.F32);
        String expected = dir.resolve("expected").toString();
        StringBuilder log = new StringBuilder();
        assertEquals(0, run(log, "--input", in, "--output", expected), log.toString());
        String out = dir.resolve("out").toString();
        int failed;
        System.setProperty("lightning.test.failAt", "commit:1");
        try {
            failed = run(log, "--input", in, "--output", out);
        } finally {
            System.clearProperty("lightning.test.failAt");
        }
        assertEquals(1, failed, log.toString());
        assertFalse(Files.exists(Path.of(out, "_SUCCESS")), log.toString());
        // and said so, as a files run does (it printed the bare error)
        assertTrue(log.toString().contains("the run failed after its commit point, while publishing"), log.toString());
        assertEquals(0, run(log, "--input", in, "--output", out), log.toString());
        assertTrue(log.toString().contains("finishing the commit of interrupted run"), log.toString());
        assertTrue(log.toString().contains("lightning: done: the interrupted run had reached its commit point"),
                log.toString());
        assertTrue(Files.exists(Path.of(out, "_SUCCESS")));
        for (String table : List.of("o", "final_states")) {
            assertEquals(tableBytes(Path.of(expected, table)), tableBytes(Path.of(out, table)), table);
        }
        // the same command over a rewritten input: not that run's results, so the output is in the way
        String out2 = dir.resolve("out2").toString();
        System.setProperty("lightning.test.failAt", "commit:1");
        try {
            assertEquals(1, run(log, "--input", in, "--output", out2), log.toString());
        } finally {
            System.clearProperty("lightning.test.failAt");
        }
        org.apache.commons.io.FileUtils.deleteDirectory(new java.io.File(in));
        oneSequenceTable(Path.of(in), 62, DType.F32);
        assertEquals(2, run(log, "--input", in, "--output", out2), log.toString());
        assertTrue(log.toString().contains("finishing the commit of interrupted run"), log.toString());
        assertTrue(log.toString().contains("already holds"), log.toString());
    }

    /**
     * A task of a table run that fails once, at each of the table run's fault points (FaultPoints: pass 1, the scan,
     * pass 2, the final_states and states/ rows), is retried by Spark (local[2,4]: four attempts) and the run
     * succeeds with the tables of an undisturbed run: the same files, byte for byte, so no row twice, none
     * missing and no file of the failed attempt left. The input has a split sequence (pass 1 and the scan run), an
     * unsplit one, short ones for the batch step, and records states.
     */
    @Test
    void aRetriedTaskGivesTheTablesOfAnUndisturbedRun(@TempDir Path dir) throws Exception {
        Random rnd = new Random(81);
        List<TablesTest.Seq> seqs = TablesTest.mixed(rnd, false);
        String in = dir.resolve("qkv").toString();
        String seqIn = dir.resolve("per-sequence").toString();
        SparkSession spark = session();
        try {
            List<Row> rows = new ArrayList<>();
            List<Row> per = new ArrayList<>();
            for (TablesTest.Seq s : seqs) {
                rows.addAll(s.rows(rnd, 50));
                if (s.slopes != null || s.initial != null) {
                    per.add(s.sequenceRow(false));
                }
            }
            java.util.Collections.shuffle(rows, rnd);
            spark.createDataFrame(rows, TableSchema.BLOCKS.schema()).repartition(3).write().parquet(in);
            spark.createDataFrame(per, TableSchema.SEQUENCES.schema()).write().parquet(seqIn);
        } finally {
            spark.stop();
        }
        StringBuilder log = new StringBuilder();
        String[] options = {"--input", in, "--sequences", seqIn, "--scale", "0.5", "--partition-tokens", "256",
                "--state-every", "64"};
        String expected = dir.resolve("expected").toString();
        assertEquals(0, run(log, concat(options, "--output", expected, "--master", "local[2,4]")), log.toString());
        assertTrue(log.toString().contains("1 sequences split"), log.toString());
        List<String> tables = List.of("o", "final_states", "states");
        for (String point : List.of("table-pass1:1", "table-scan:1", "table-pass2:1", "table-pass2:4",
                "table-states:1", "table-checkpoints:2")) {
            String out = dir.resolve("retried-" + point.replace(':', '-')).toString();
            // without retries the run fails there, publishing nothing: the point is reached and throws
            System.setProperty("lightning.test.failAt", point);
            try {
                assertEquals(1, run(log, concat(options, "--output", out, "--master", "local[2]")), point + "\n" + log);
            } finally {
                System.clearProperty("lightning.test.failAt");
            }
            assertTrue(log.toString().contains("lightning-test: failing at " + point.substring(0, point.indexOf(':'))),
                    point + "\n" + log);
            assertTrue(log.toString().contains("nothing was published"), point + "\n" + log);
            // and what to do: a table run refuses --resume, which a files run's failure offers
            assertTrue(log.toString().contains("run the same command again: a table run keeps no work to resume"),
                    point + "\n" + log);
            for (String name : List.of("o", "final_states", "states", Commit.REPORT, Commit.SUCCESS)) {
                assertFalse(Files.exists(Path.of(out, name)), point + ": " + name + " after the failed run\n" + log);
            }
            int status;
            System.setProperty("lightning.test.failAt", point);
            try {
                status = run(log, concat(options, "--output", out, "--master", "local[2,4]"));
            } finally {
                System.clearProperty("lightning.test.failAt");
            }
            assertEquals(0, status, point + "\n" + log);
            for (String table : tables) {
                assertEquals(tableBytes(Path.of(expected, table)), tableBytes(Path.of(out, table)),
                        point + ": " + table + "/ as an undisturbed run wrote it");
            }
            try (java.util.stream.Stream<Path> top = Files.list(Path.of(out))) {
                // the failed run's staging is gone with it (the failed run's _temporary/ may stay, empty)
                assertEquals(java.util.Set.of("o", "final_states", "states", Commit.REPORT, Commit.SUCCESS),
                        top.map(f -> f.getFileName().toString()).collect(java.util.stream.Collectors.toSet()), point);
            }
        }
        spark = session();
        try {
            for (String table : tables) {
                org.apache.spark.sql.Dataset<Row> t = spark.read().parquet(expected + "/" + table);
                String[] key = table.equals("o") ? new String[] {"sequence", "start"}
                        : table.equals("states") ? new String[] {"sequence", "checkpoint"} : new String[] {"sequence"};
                assertEquals(t.count(), t.dropDuplicates(key).count(), table + ": one row per key");
            }
            TablesTest.checkAgainstReference(seqs, spark.read().parquet(expected + "/o"),
                    spark.read().parquet(expected + "/final_states"), 0.5, false);
        } finally {
            spark.stop();
        }
    }

    private static String[] concat(String[] a, String... b) {
        String[] all = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, all, a.length, b.length);
        return all;
    }

    /** A table's part files' contents, sorted (their names hold the writing job's id), without checksum side files. */
    private static List<String> tableBytes(Path table) throws Exception {
        List<String> all = new ArrayList<>();
        try (java.util.stream.Stream<Path> files = Files.list(table)) {
            for (Path f : (Iterable<Path>) files::iterator) {
                if (!f.getFileName().toString().endsWith(".crc")) {
                    all.add(java.util.HexFormat.of().formatHex(
                            java.security.MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(f))));
                }
            }
        }
        java.util.Collections.sort(all);
        return all;
    }

    /**
     * A table written with Spark's partitionBy holds its files only in {@code key=value/} directories: with
     * --input-format auto it is read as a table (it was taken for a directory of safetensors files holding none), and
     * its results are the float64 recurrence's. The partition column is the reader's, beside the layout's columns.
     */
    @Test
    void aPartitionedTableIsATableForAuto(@TempDir Path dir) throws Exception {
        Random rnd = new Random(71);
        TablesTest.Seq a = new TablesTest.Seq("a", 40, 2, 2, 2, 4, 4, DType.F32, rnd);
        String parted = dir.resolve("parted").toString();
        SparkSession spark = session();
        try {
            spark.createDataFrame(a.rows(rnd, 16), TableSchema.BLOCKS.schema())
                    .withColumn("day", org.apache.spark.sql.functions.lit("2026-12-01")).write().partitionBy("day")
                    .parquet(parted);
        } finally {
            spark.stop();
        }
        StringBuilder log = new StringBuilder();
        String out = dir.resolve("out").toString();
        assertEquals(0, run(log, "--input", parted, "--output", out), log.toString());
        spark = session();
        try {
            TablesTest.checkAgainstReference(List.of(a), spark.read().parquet(out + "/o"),
                    spark.read().parquet(out + "/final_states"), 1.0, false);
        } finally {
            spark.stop();
        }
    }

    @Test
    void parquetThroughTheCommandLine(@TempDir Path dir) throws Exception {
        Random rnd = new Random(30);
        List<TablesTest.Seq> seqs = TablesTest.mixed(rnd, false);
        String in = dir.resolve("qkv").toString();
        String seqIn = dir.resolve("per-sequence").toString();
        String bad = dir.resolve("bad").toString();
        String badLength = dir.resolve("bad-length").toString();
        SparkSession spark = session();
        try {
            List<Row> rows = new ArrayList<>();
            for (TablesTest.Seq s : seqs) {
                rows.addAll(s.rows(rnd, 50));
            }
            java.util.Collections.shuffle(rows, rnd);
            spark.createDataFrame(rows, TableSchema.BLOCKS.schema()).repartition(4).write().parquet(in);
            List<Row> per = new ArrayList<>();
            for (TablesTest.Seq s : seqs) {
                if (s.slopes != null || s.initial != null) {
                    per.add(s.sequenceRow(false));
                }
            }
            spark.createDataFrame(per, TableSchema.SEQUENCES.schema()).write().parquet(seqIn);
            TablesTest.Seq gap = new TablesTest.Seq("doc-9", 30, 1, 1, 1, 4, 4, DType.F32, rnd);
            spark.createDataFrame(List.of(gap.row(0, 10), gap.row(12, 18)), TableSchema.BLOCKS.schema()).write()
                    .parquet(bad);
            Row r = gap.row(10, 20);
            spark.createDataFrame(List.of(gap.row(0, 10), RowFactory.create("doc-9", 10L, 20, "F32", 1, 1, 1, 4, 4,
                    r.get(9), r.get(10), java.util.Arrays.copyOf((byte[]) r.get(11), 7))), TableSchema.BLOCKS.schema())
                    .write().parquet(badLength);
        } finally {
            spark.stop();
        }
        String out = dir.resolve("out").toString();
        StringBuilder log = new StringBuilder();
        assertEquals(0, run(log, "--input", in, "--sequences", seqIn, "--output", out, "--scale", "0.5",
                "--partition-tokens", "256"), log.toString());
        assertTrue(log.toString().contains("1 sequences split") || log.toString().contains("sequences split"), log.toString());
        assertTrue(Files.exists(Path.of(out, "_SUCCESS")) && Files.exists(Path.of(out, Commit.REPORT)));
        assertFalse(Files.exists(Path.of(out, Staging.PARENT)), "the staging directory is gone after the commit");
        // a glob names the table's files (auto: read as parquet), as Spark's reader takes them
        String globbed = dir.resolve("globbed").toString();
        assertEquals(0, run(log, "--input", in + "/part-*", "--sequences", seqIn + "/*.parquet", "--output", globbed,
                "--scale", "0.5"), log.toString());
        spark = session();
        try {
            for (String o : List.of(out, globbed)) {
                TablesTest.checkAgainstReference(seqs, spark.read().parquet(o + "/o"),
                        spark.read().parquet(o + "/final_states"), 0.5, false);
            }
        } finally {
            spark.stop();
        }
        assertEquals(2, run(log, "--input", in + "/part-*", "--sequences", seqIn + "/nothing-*", "--output",
                dir.resolve("refused-glob").toString()), log.toString());
        assertTrue(log.toString().contains("--sequences " + seqIn + "/nothing-*: the glob matches no file or directory"),
                log.toString());
        assertFalse(Files.exists(dir.resolve("refused-glob")), "a refused run leaves nothing");

        // an existing result is refused without --overwrite, before Spark starts, and replaced with it
        assertEquals(2, run(log, "--input", in, "--sequences", seqIn, "--output", out, "--scale", "0.5"), log.toString());
        assertTrue(log.toString().contains("already holds o/") && log.toString().contains("--overwrite"), log.toString());
        assertEquals(0, run(log, "--input", in, "--sequences", seqIn, "--output", out, "--scale", "0.5", "--overwrite"),
                log.toString());

        // bad input: exit 2 naming the sequence and offsets; the output directory is not even created
        String refused = dir.resolve("refused").toString();
        assertEquals(2, run(log, "--input", bad, "--output", refused), log.toString());
        assertTrue(log.toString().contains("'doc-9'") && log.toString().contains("[10, 12) are missing"), log.toString());
        assertFalse(Files.exists(Path.of(refused)), "a refused run leaves nothing");
        // a wrong byte length is found on the map side of the shuffle, before any compute task
        assertEquals(2, run(log, "--input", badLength, "--output", refused), log.toString());
        assertTrue(log.toString().contains("'doc-9', the block at 10") && log.toString().contains("v holds 7 bytes"),
                log.toString());
        assertFalse(Files.exists(Path.of(refused)), "a refused run leaves nothing");

        // --state-every publishes states/ beside o/ and final_states/, each state the float64 run's over its prefix
        String withStates = dir.resolve("with-states").toString();
        assertEquals(0, run(log, "--input", in, "--sequences", seqIn, "--output", withStates, "--scale", "0.5",
                "--state-every", "64", "--partition-tokens", "256"), log.toString());
        assertTrue(log.toString().contains("o/, final_states/, states/"), log.toString());
        // a line per table written (README: --progress-seconds has no effect there)
        for (String line : new String[] {"computed and wrote o/:", "wrote final_states/ in", "wrote states/ in"}) {
            assertTrue(log.toString().contains("lightning: " + line), line + "\n" + log);
        }
        spark = session();
        try {
            TablesStatesTest.checkAgainstPrefixRuns(seqs, spark.read().parquet(withStates + "/states"), 64, 0.5, false);
        } finally {
            spark.stop();
        }
        assertEquals(2, run(log, "--input", in, "--sequences", seqIn, "--output", withStates, "--scale", "0.5",
                "--state-every", "64"), log.toString());
        assertTrue(log.toString().contains("already holds o/"), log.toString());

        // what tables do not support is refused with what to use instead
        assertEquals(2, run(log, "--input", in, "--output", refused, "--output-mode", "checksums"), log.toString());
        assertTrue(log.toString().contains("--input-format safetensors"), log.toString());
        assertEquals(2, run(log, "--input", in, "--output", refused, "--output-format", "safetensors"), log.toString());
    }

    /**
     * --initial-states over tables: a run over the old tokens, then one over the new tokens that
     * continues its final_states/, against the float64 recurrence over the concatenation; the
     * untouched sequence carried over, the new one started from zero and named in a warning; and the directories refused
     * before anything is created (no _SUCCESS, no final_states/, overlapping --output), as are the
     * same segment appended twice (also from a copy) and the first segment onto the second's states.
     */
    @Test
    void appendThroughTheCommandLine(@TempDir Path dir) throws Exception {
        Random rnd = new Random(31);
        TablesTest.Seq a = new TablesTest.Seq("a", 90, 4, 2, 4, 8, 12, DType.F32, rnd);
        TablesTest.Seq kept = new TablesTest.Seq("kept", 20, 1, 1, 1, 4, 4, DType.F32, rnd);
        TablesTest.Seq fresh = new TablesTest.Seq("fresh", 30, 3, 3, 3, 4, 8, DType.F32, rnd);
        String oldIn = dir.resolve("old").toString();
        String newIn = dir.resolve("new").toString();
        String notTables = dir.resolve("not-tables").toString();
        SparkSession spark = session();
        try {
            List<Row> old = new ArrayList<>(TablesAppendTest.part(a, 0, 50, rnd, 9));
            old.addAll(TablesAppendTest.part(kept, 0, 20, rnd, 9));
            spark.createDataFrame(old, TableSchema.BLOCKS.schema()).write().parquet(oldIn);
            List<Row> rows = new ArrayList<>(TablesAppendTest.part(a, 50, 90, rnd, 9));
            rows.addAll(TablesAppendTest.part(fresh, 0, 30, rnd, 9));
            spark.createDataFrame(rows, TableSchema.BLOCKS.schema()).write().parquet(newIn);
        } finally {
            spark.stop();
        }
        Files.createDirectories(Path.of(notTables));
        Files.writeString(Path.of(notTables, Commit.SUCCESS), "");
        String out1 = dir.resolve("out1").toString();
        String out2 = dir.resolve("out2").toString();
        StringBuilder log = new StringBuilder();
        assertEquals(0, run(log, "--input", oldIn, "--output", out1, "--scale", "0.5"), log.toString());
        assertEquals(0, run(log, "--input", newIn, "--output", out2, "--scale", "0.5", "--initial-states", out1,
                "--partition-tokens", "16"), log.toString());
        assertTrue(log.toString().contains("1 of 2 sequences continue from a stored state; 2 stored state(s)")
                && !log.toString().contains("records no input files"), log.toString());
        // as a files run names its inputs that continue nothing: a renamed sequence looks like a new one
        assertTrue(log.toString().contains("lightning: warning: --initial-states: 1 sequence(s) have no stored state of "
                + "their name and start from zero: 'fresh'."), log.toString());
        spark = session();
        try {
            Map<String, Row> before = TablesAppendTest.byName(spark.read().parquet(out1 + "/final_states"));
            Map<String, Row> after = TablesAppendTest.byName(spark.read().parquet(out2 + "/final_states"));
            assertEquals(java.util.Set.of("a", "kept", "fresh"), after.keySet(), "the complete state set");
            for (int i = 0; i < TableSchema.FINAL_STATES.columns.size(); i++) {
                Object x = before.get("kept").get(i);
                Object y = after.get("kept").get(i);
                if (x instanceof byte[]) {
                    assertArrayEquals((byte[]) x, (byte[]) y, "carried over unchanged");
                } else {
                    assertEquals(String.valueOf(x), String.valueOf(y));
                }
            }
            assertEquals(90L, after.get("a").getLong(8));
            Map<String, Integer> from = Map.of("a", 50, "fresh", 0);
            Map<String, float[]> o = TablesAppendTest.oFrom(spark.read().parquet(out2 + "/o"),
                    TablesTest.byName(List.of(a, fresh)), from);
            for (TablesTest.Seq s : List.of(a, fresh)) {
                float[][] ref = TablesTest.reference(s, 0.5, false);
                double err = Accuracy.relativeError(o.get(s.name), TablesAppendTest.tail(ref[0], s, from.get(s.name)));
                assertTrue(err < 1e-5, s.name + ": o off the float64 reference over old and new tokens by " + err);
                double stateErr = Accuracy.relativeError(TablesTest.floats((byte[]) after.get(s.name).get(6)), ref[1]);
                assertTrue(stateErr < 1e-5, s.name + ": final state off by " + stateErr);
            }
        } finally {
            spark.stop();
        }

        String refused = dir.resolve("refused").toString();
        // the same segment appended twice: its tokens are in out2's states already, also from a copy elsewhere
        assertEquals(2, run(log, "--input", newIn, "--output", refused, "--initial-states", out2), log.toString());
        assertTrue(log.toString().contains("already in those states") && log.toString().contains(newIn),
                log.toString());
        assertFalse(Files.exists(Path.of(refused)), "a refused run leaves nothing");
        Path copy = dir.resolve("copy");
        try (java.util.stream.Stream<Path> files = Files.list(Path.of(newIn))) {
            Files.createDirectories(copy);
            for (Path f : files.toList()) {
                Files.copy(f, copy.resolve(f.getFileName()));
            }
        }
        log.setLength(0);
        assertEquals(2, run(log, "--input", copy.toString(), "--output", refused, "--initial-states", out2),
                log.toString());
        assertTrue(log.toString().contains(copy.toString()) && log.toString().contains(", as '")
                && log.toString().contains(newIn + "/part-"), log.toString());
        assertFalse(Files.exists(Path.of(refused)), "a refused run leaves nothing");
        // the first segment onto out2: out1's run read it, and out2's report carries that as what its states
        // had absorbed before (each file with the directory whose run read it)
        log.setLength(0);
        assertEquals(2, run(log, "--input", oldIn, "--output", refused, "--initial-states", out2), log.toString());
        assertTrue(log.toString().contains("already in those states") && log.toString().contains(oldIn + "/part-")
                && log.toString().contains("read by the earlier run that wrote '") && log.toString().contains(
                "out1'"), log.toString());
        assertFalse(Files.exists(Path.of(refused)), "a refused run leaves nothing");
        JsonNode earlier = new ObjectMapper().readTree(Path.of(out2, Commit.REPORT).toFile()).get("earlierInputFiles");
        assertTrue(earlier.size() > 0, String.valueOf(earlier));
        for (JsonNode f : earlier) {
            assertTrue(f.get("path").asText().contains("/old/part-") && f.get("output").asText().endsWith("/out1"),
                    earlier.toString());
        }
        // what out1's run recorded: the blocks table's data files, not its _SUCCESS or checksums
        JsonNode recorded = new ObjectMapper().readTree(Path.of(out1, Commit.REPORT).toFile()).get("inputFiles");
        assertTrue(recorded.size() > 0, recorded.toString());
        for (JsonNode f : recorded) {
            assertTrue(f.get("path").asText().endsWith(".parquet") && f.get("bytes").asLong() > 0, recorded.toString());
        }
        // a stored directory whose report records no inputs (written before they were recorded): nothing to compare
        // with, so the append runs, and says so
        Path bare = dir.resolve("bare");
        org.apache.commons.io.FileUtils.copyDirectory(new java.io.File(out1), bare.toFile());
        com.fasterxml.jackson.databind.node.ObjectNode oldReport = (com.fasterxml.jackson.databind.node.ObjectNode)
                new ObjectMapper().readTree(bare.resolve(Commit.REPORT).toFile());
        oldReport.remove("inputFiles");
        Files.writeString(bare.resolve(Commit.REPORT), oldReport.toString());
        log.setLength(0);
        assertEquals(0, run(log, "--input", newIn, "--output", dir.resolve("out-bare").toString(), "--scale", "0.5",
                "--initial-states", bare.toString(), "--partition-tokens", "16"), log.toString());
        assertTrue(log.toString().contains("warning: --initial-states " + bare + ": its run report records no input "
                + "files"), log.toString());
        // a rerun of the append continues from the state its first attempt did, which did not absorb the segment
        assertEquals(0, run(log, "--input", newIn, "--output", dir.resolve("out2-again").toString(), "--scale", "0.5",
                "--initial-states", out1, "--partition-tokens", "16"), log.toString());
        Path unfinished = Files.createDirectories(dir.resolve("unfinished").resolve("final_states"));
        assertEquals(2, run(log, "--input", newIn, "--output", refused, "--initial-states", unfinished.getParent()
                .toString()), log.toString());
        assertTrue(log.toString().contains("has no _SUCCESS"), log.toString());
        assertEquals(2, run(log, "--input", newIn, "--output", refused, "--initial-states", notTables), log.toString());
        assertTrue(log.toString().contains("holds no final_states/"), log.toString());
        assertFalse(Files.exists(Path.of(refused)), "a refused run leaves nothing");
        assertEquals(2, run(log, "--input", newIn, "--output", out1 + "/next", "--initial-states", out1),
                log.toString());
        assertTrue(log.toString().contains("overlaps --initial-states"), log.toString());
        assertFalse(Files.exists(Path.of(out1, "next")), "a refused run leaves nothing");
    }

    /**
     * A table input is never written, also where --output reaches it through a symbolic link: here
     * a link to the directory holding the blocks table, which is named o/ as the run's own output
     * table is, so that --overwrite would have replaced (and deleted) the input. Refused before
     * anything is created, the input as it was.
     */
    @Test
    void anOutputLinkedOverTheInputTableIsRefused(@TempDir Path dir) throws Exception {
        Path data = Files.createDirectories(dir.resolve("data"));
        String in = oneSequenceTable(data.resolve("o"), 32, DType.F32);
        Map<String, byte[]> before = new java.util.TreeMap<>();
        try (java.util.stream.Stream<Path> files = Files.list(Path.of(in))) {
            for (Path f : (Iterable<Path>) files::iterator) {
                before.put(f.getFileName().toString(), Files.readAllBytes(f));
            }
        }
        Path link = Files.createSymbolicLink(dir.resolve("latest"), data);
        StringBuilder log = new StringBuilder();
        assertEquals(2, run(log, "--input", in, "--output", link.toString(), "--overwrite"), log.toString());
        assertTrue(log.toString().contains("contains the input"), log.toString());
        assertFalse(Files.exists(data.resolve("final_states")), "nothing published:\n" + log);
        try (java.util.stream.Stream<Path> files = Files.list(Path.of(in))) {
            assertEquals(before.keySet(), files.map(f -> f.getFileName().toString())
                    .collect(java.util.stream.Collectors.toCollection(java.util.TreeSet::new)), "the input's files");
        }
        for (Map.Entry<String, byte[]> e : before.entrySet()) {
            assertArrayEquals(e.getValue(), Files.readAllBytes(Path.of(in, e.getKey())), e.getKey());
        }
    }

    /**
     * A states/ directory already in --output, where a run without --state-every publishes none, is
     * still in the way of its commit (without --overwrite it would stay beside new tables it does not
     * belong to): the run is refused before Spark starts, as for o/ and final_states/, not failed after
     * all its compute with a message that the directory appeared during the run.
     */
    @Test
    void aStatesDirectoryInTheOutputIsRefusedBeforeCompute(@TempDir Path dir) throws Exception {
        String in = oneSequenceTable(dir.resolve("qkv"), 33, DType.F32);
        Path out = Files.createDirectories(dir.resolve("out").resolve("states"));
        Files.writeString(out.resolve("notes.txt"), "a user's");
        StringBuilder log = new StringBuilder();
        assertEquals(2, run(log, "--input", in, "--output", out.getParent().toString()), log.toString());
        assertTrue(log.toString().contains("states is not a table of the run that last wrote --output")
                && !log.toString().contains("pass --overwrite"), log.toString());
        assertFalse(log.toString().contains("computed and wrote"), "refused before compute:\n" + log);
        assertEquals("a user's", Files.readString(out.resolve("notes.txt")));
    }

    /**
     * --overwrite replaces an earlier run's tables whole (moved aside, deleted with the staging), so a
     * table directory holding a user's file, or a file where a table goes, is refused before Spark
     * starts and left as it was; the earlier tables themselves (part files, _SUCCESS, checksums) are
     * replaced.
     */
    @Test
    void overwriteRefusesATableHoldingAUsersFile(@TempDir Path dir) throws Exception {
        String in = oneSequenceTable(dir.resolve("qkv"), 34, DType.F32);
        Path out = dir.resolve("out");
        StringBuilder log = new StringBuilder();
        assertEquals(0, run(log, "--input", in, "--output", out.toString(), "--chunk-size", "16", "--state-every", "16"),
                log.toString());
        Path notes = out.resolve("states").resolve("notes.txt");
        Files.writeString(notes, "a user's");
        assertEquals(2, run(log, "--input", in, "--output", out.toString(), "--overwrite"), log.toString());
        assertTrue(log.toString().contains("holds notes.txt, which is not part of an earlier run's table"),
                log.toString());
        assertFalse(log.toString().contains("computed and wrote"), "refused before compute:\n" + log);
        assertEquals("a user's", Files.readString(notes));
        Files.delete(notes);

        Path finalStates = out.resolve("final_states");
        try (var listed = Files.list(finalStates)) {
            for (Path p : listed.toList()) {
                Files.delete(p);
            }
        }
        Files.delete(finalStates);
        Files.writeString(finalStates, "a user's file");
        assertEquals(2, run(log, "--input", in, "--output", out.toString(), "--overwrite"), log.toString());
        assertTrue(log.toString().contains("is a file where the run's table of that name goes"), log.toString());
        assertEquals("a user's file", Files.readString(finalStates));
        Files.delete(finalStates);

        // the earlier tables alone: replaced, states/ (not written without --state-every) with them
        assertEquals(0, run(log, "--input", in, "--output", out.toString(), "--overwrite"), log.toString());
        assertTrue(Files.isDirectory(out.resolve("final_states")) && Files.isDirectory(out.resolve("o")));
        assertFalse(Files.exists(out.resolve("states")), log.toString());
    }

    /**
     * A table run with --overwrite that fails after its commit point has published one table and left the other
     * earlier tables where they were; a file a user puts into one of those before the next run (which finishes the
     * commit) is refused there as it is before compute, and stays: finishing moved the table aside whole with the
     * file and deleted both with the staging.
     */
    @Test
    void finishingATableCommitRefusesAnEarlierTableHoldingAUsersFile(@TempDir Path dir) throws Exception {
        String in = oneSequenceTable(dir.resolve("qkv"), 35, DType.F32);
        Path out = dir.resolve("out");
        StringBuilder log = new StringBuilder();
        assertEquals(0, run(log, "--input", in, "--output", out.toString()), log.toString());
        System.setProperty("lightning.test.failAt", "commit:1");
        try {
            assertEquals(1, run(log, "--input", in, "--output", out.toString(), "--overwrite"), log.toString());
        } finally {
            System.clearProperty("lightning.test.failAt");
        }
        // one table published, the other still the earlier run's
        List<Path> earlier = new ArrayList<>();
        for (String table : List.of("o", "final_states")) {
            if (Files.isDirectory(out.resolve(table))) {
                earlier.add(out.resolve(table));
            }
        }
        assertEquals(2, earlier.size(), log.toString());
        Path notes = out.resolve("final_states").resolve("notes.txt");
        Files.writeString(notes, "a user's");
        assertEquals(1, run(log, "--input", in, "--output", out.toString(), "--overwrite"), log.toString());
        assertTrue(log.toString().contains("holds notes.txt, which is not part of an earlier run's table"),
                log.toString());
        assertEquals("a user's", Files.readString(notes));
        Files.delete(notes);
        assertEquals(0, run(log, "--input", in, "--output", out.toString(), "--overwrite"), log.toString());
        assertTrue(log.toString().contains("finishing the commit of interrupted run"), log.toString());
        assertTrue(Files.exists(out.resolve("_SUCCESS")), log.toString());
    }

    /**
     * A table run with --overwrite that records no states moves aside only an earlier table run's states/ (one whose
     * report says it recorded them): a states/ the directory's last run did not write is the user's (a Parquet table
     * kept under that name), which it deleted; it is refused before compute and left as it was.
     */
    @Test
    void overwriteWithoutStatesRefusesAStatesTableNoRunWrote(@TempDir Path dir) throws Exception {
        String in = oneSequenceTable(dir.resolve("qkv"), 36, DType.F32);
        Path out = dir.resolve("out");
        StringBuilder log = new StringBuilder();
        assertEquals(0, run(log, "--input", in, "--output", out.toString()), log.toString());
        Path users = Files.createDirectories(out.resolve("states"));
        Files.writeString(users.resolve("part-00000-mine.snappy.parquet"), "a user's table");
        Files.writeString(users.resolve("_SUCCESS"), "");
        assertEquals(2, run(log, "--input", in, "--output", out.toString(), "--overwrite"), log.toString());
        assertTrue(log.toString().contains("is not a table of the run that last wrote --output"), log.toString());
        assertFalse(log.toString().contains("computed and wrote"), "refused before compute:\n" + log);
        assertEquals("a user's table", Files.readString(users.resolve("part-00000-mine.snappy.parquet")));
    }

    /**
     * A directory of the user's named _SUCCESS or _lightning_report.json, which every commit replaces last, is
     * refused before compute by a files run and a table run with --overwrite, and left as it was: a files run
     * reached its commit point and failed while publishing ("Directory ... is not empty"), and every later run into
     * the directory failed the same way finishing that commit.
     */
    @Test
    void overwriteRefusesADirectoryNamedLikeTheReportOrSuccess(@TempDir Path dir) throws Exception {
        Path in = dir.resolve("in");
        Demo.generate(in);
        for (String marker : List.of(Commit.SUCCESS, Commit.REPORT)) {
            Path out = dir.resolve("out-" + marker);
            Path notes = Files.createDirectories(out.resolve(marker)).resolve("notes.txt");
            Files.writeString(notes, "a user's");
            StringBuilder log = new StringBuilder();
            assertEquals(2, run(log, "--input", in.toString(), "--output", out.toString(), "--overwrite"),
                    log.toString());
            assertTrue(log.toString().contains(marker + " is a directory where an output file goes"), log.toString());
            assertEquals(2, run(log, "--input", in.toString(), "--output", out.toString(), "--overwrite",
                    "--output-format", "parquet"), log.toString());
            assertTrue(log.toString().contains(marker + " is a directory where an output file goes")
                    && !log.toString().contains("computed and wrote"), log.toString());
            assertEquals("a user's", Files.readString(notes));
            try (var left = Files.list(out)) {
                assertEquals(List.of(marker), left.map(p -> p.getFileName().toString()).toList(), "nothing written");
            }
        }
    }

    /**
     * A run writing safetensors files with --overwrite into a table run's output replaces that run's tables with its
     * own results; they stayed (o/, final_states/, states/ beside the new files), and the directory could not continue
     * a later files run (--initial-states refused it for its final_states/). A table directory holding a user's file
     * is not a table run's: it stays, untouched.
     */
    @Test
    void aFilesRunOverwritingATableRunsOutputReplacesItsTables(@TempDir Path dir) throws Exception {
        Path in = dir.resolve("in");
        Demo.generate(in);
        Path out = dir.resolve("out");
        StringBuilder log = new StringBuilder();
        assertEquals(0, run(log, "--input", in.toString(), "--output", out.toString(), "--output-format", "parquet",
                "--state-every", "128"), log.toString());
        for (String t : List.of("o", "final_states", "states")) {
            assertTrue(Files.isDirectory(out.resolve(t)), t);
        }
        assertEquals(0, run(log, "--input", in.toString(), "--output", out.toString(), "--overwrite"), log.toString());
        for (String t : List.of("o", "final_states", "states")) {
            assertFalse(Files.exists(out.resolve(t)), t + " of the table run stayed beside the files run's results");
        }
        for (Demo.Spec s : Demo.SEQUENCES) {
            assertTrue(Files.isRegularFile(out.resolve(s.name)), s.name);
        }
        // read as the files run's state set now (which refuses appending the same inputs again), where it had been
        // refused as a table run's output
        assertEquals(2, run(log, "--input", in.toString(), "--output", dir.resolve("next").toString(),
                "--initial-states", out.toString()), log.toString());
        assertTrue(log.toString().contains("was computed from this very input")
                && !log.toString().contains("output of a run over tables"), log.toString());

        // a directory named like a table that holds a user's file is not an earlier run's table: it stays
        Path users = Files.createDirectories(out.resolve("o"));
        Files.writeString(users.resolve("notes.txt"), "a user's");
        assertEquals(0, run(log, "--input", in.toString(), "--output", out.toString(), "--overwrite"), log.toString());
        assertEquals("a user's", Files.readString(users.resolve("notes.txt")));
    }

    /**
     * A Parquet table of the user's under a table's name (part files and _SUCCESS, as a table write leaves them) is
     * an earlier table run's only where the directory's run report is a table run's, and states/ only where that run
     * recorded states: a files run with --overwrite deleted a user's states/ from a directory that only files runs had
     * written, and from a table run's output whose run wrote no states/ (the user's, put there after it).
     */
    @Test
    void aFilesRunOverwritingKeepsAUsersTableOfATablesName(@TempDir Path dir) throws Exception {
        Path in = dir.resolve("in");
        Demo.generate(in);
        Path out = dir.resolve("out");
        Path users = Files.createDirectories(out.resolve("states"));
        Files.writeString(users.resolve("part-00000-mine.snappy.parquet"), "a user's table");
        Files.writeString(users.resolve("_SUCCESS"), "");
        StringBuilder log = new StringBuilder();
        assertEquals(0, run(log, "--input", in.toString(), "--output", out.toString()), log.toString());
        assertEquals(0, run(log, "--input", in.toString(), "--output", out.toString(), "--overwrite"), log.toString());
        assertEquals("a user's table", Files.readString(users.resolve("part-00000-mine.snappy.parquet")),
                "a files run's --overwrite deleted a user's table");

        Path tables = dir.resolve("tables");
        assertEquals(0, run(log, "--input", in.toString(), "--output", tables.toString(), "--output-format", "parquet"),
                log.toString());
        Path put = Files.createDirectories(tables.resolve("states"));
        Files.writeString(put.resolve("part-00000-mine.snappy.parquet"), "a user's table");
        assertEquals(0, run(log, "--input", in.toString(), "--output", tables.toString(), "--overwrite"),
                log.toString());
        assertFalse(Files.exists(tables.resolve("o")) || Files.exists(tables.resolve("final_states")),
                "the table run's own tables go");
        assertEquals("a user's table", Files.readString(put.resolve("part-00000-mine.snappy.parquet")));
    }

    /**
     * A non-finite o is refused with the advice a files run gives (NonFiniteOutputException.advice):
     * an F16 o that overflowed 65504 is told of --output-dtype f32 (and then computes), a normalized
     * run with --normalize-eps 0 of its zero denominators (relu maps a q row without a positive
     * element to 0, so phi(q) . z = 0 and o = 0/0).
     */
    @Test
    void nonFiniteOutputGetsTheFilesRunsAdvice(@TempDir Path dir) throws Exception {
        String in = oneSequenceTable(dir.resolve("qkv"), 35, DType.F16);
        String out = dir.resolve("out").toString();
        StringBuilder log = new StringBuilder();
        assertEquals(2, run(log, "--input", in, "--output", out, "--scale", "1e6"), log.toString());
        assertTrue(log.toString().contains("o is F16 (largest value 65504)")
                && log.toString().contains("pass --output-dtype f32"), log.toString());
        // but not --skip-nonfinite, which a table run refuses: the advice sent users to a refusal
        assertTrue(!log.toString().contains("pass --skip-nonfinite") && !log.toString().contains("or --skip-nonfinite")
                && log.toString().contains("a table run has no --skip-nonfinite"), log.toString());
        assertFalse(Files.exists(Path.of(out, "o")), "nothing published");
        assertEquals(0, run(log, "--input", in, "--output", out, "--scale", "1e6", "--output-dtype", "f32"),
                log.toString());

        String norm = dir.resolve("norm").toString();
        assertEquals(2, run(log, "--input", in, "--output", norm, "--feature-map", "relu", "--normalize",
                "--normalize-eps", "0"), log.toString());
        assertTrue(log.toString().contains("--normalize-eps 0, so a token whose phi(q) . z is 0 has o = 0/0"),
                log.toString());
        assertEquals(0, run(log, "--input", in, "--output", norm, "--feature-map", "relu", "--normalize"),
                log.toString());
    }

    /**
     * Safetensors files written as tables (--output-format parquet): the demo's six files (a
     * 20,000-token BF16 sequence split into pieces, slopes and an initial state in a file, F16,
     * T = 63, T = 1, grouped heads), with --state-every, against a files run on the same files (itself
     * held to the float64 recurrence): the same o values, final states and recorded states, each
     * sequence named as the files run names its result.
     */
    /**
     * A file that is not Parquet under --input-format parquet whose last 8 bytes read as a footer
     * length past 2^31 (a safetensors file's, as often as not): Parquet fails on the length before
     * it looks for its magic number, Spark wraps that as FAILED_READ_FILE.CANNOT_READ_FILE_FOOTER,
     * and the run printed the whole trace (337 lines for the demo's doc-f16.safetensors) instead of
     * the line a file failing on the magic number gets.
     */
    @Test
    void aFileFailingOnParquetsFooterLengthIsOneLine(@TempDir Path dir) throws Exception {
        Path in = Files.createDirectories(dir.resolve("in"));
        Files.write(in.resolve("y.safetensors"), new byte[] {0, 0, 0, 0, 0, 0, 0, 0, -12, -36, -60, -69, 0, 0, 0, 0});
        String refused = dir.resolve("out").toString();
        StringBuilder log = new StringBuilder();
        assertEquals(2, run(log, "--input", in.toString(), "--input-format", "parquet", "--output", refused),
                log.toString());
        assertTrue(log.toString().contains("lightning: error: file:" + in.resolve("y.safetensors") + " is not a Parquet "
                + "file (footer is too large") && !log.toString().contains("\tat "), log.toString());
        // said once: it was "a file of the input is not a Parquet file (F is not a Parquet file (...))"
        assertFalse(log.toString().contains("a file of the input is not a Parquet file"), log.toString());
        assertFalse(Files.exists(Path.of(refused)), "nothing left behind");
    }

    @Test
    void safetensorsInParquetOut(@TempDir Path dir) throws Exception {
        Path in = dir.resolve("in");
        Demo.generate(in);
        String files = dir.resolve("files").toString();
        String tables = dir.resolve("tables").toString();
        List<String> common = List.of("--input", in.toString(), "--partition-tokens", "4096", "--state-every", "128");
        StringBuilder log = new StringBuilder();
        List<String> a = new ArrayList<>(common);
        a.addAll(List.of("--output", files));
        assertEquals(0, run(log, a.toArray(new String[0])), log.toString());
        JobConfig cfg = OptionParser.parse(List.of("--backend", "cpu", "--state-every", "128"), null, true);
        assertTrue(Demo.verify(in, Path.of(files), cfg, new PrintStream(new ByteArrayOutputStream())),
                "the files run against the float64 recurrence");
        List<String> b = new ArrayList<>(common);
        // Spark's own writers take speculative attempts (their commit protocol), so a table run keeps it on
        b.addAll(List.of("--output", tables, "--output-format", "parquet", "--conf", "spark.speculation=true"));
        assertEquals(0, run(log, b.toArray(new String[0])), log.toString());
        assertFalse(log.toString().contains("spark.speculation=true is turned off"), log.toString());
        assertTrue(log.toString().contains("tables o/, final_states/, states/"), log.toString());
        assertTrue(log.toString().contains("2 sequences split"), log.toString()); // 20,000 and 5,000 tokens
        SparkSession spark = session();
        try {
            Map<String, List<Row>> o = new java.util.HashMap<>();
            for (Row r : spark.read().parquet(tables + "/o").collectAsList()) {
                o.computeIfAbsent(r.getString(0), x -> new ArrayList<>()).add(r);
            }
            Map<String, Row> finals = TablesAppendTest.byName(spark.read().parquet(tables + "/final_states"));
            Map<String, List<Row>> states = TablesStatesTest.bySequence(spark.read().parquet(tables + "/states"));
            java.util.Set<String> names = new java.util.HashSet<>();
            Demo.SEQUENCES.forEach(s -> names.add(s.name));
            assertEquals(names, o.keySet(), "one sequence per file, named as the files run names its result");
            assertEquals(names, finals.keySet());
            for (Demo.Spec s : Demo.SEQUENCES) {
                Map<String, dev.lightning.attention.tensor.SafetensorsFile.Tensor> f =
                        dev.lightning.attention.tensor.SafetensorsFile.read(Path.of(files, s.name));
                List<Row> rows = o.get(s.name);
                rows.sort((x, y) -> Long.compare(x.getLong(1), y.getLong(1)));
                java.io.ByteArrayOutputStream bytes = new java.io.ByteArrayOutputStream();
                long next = 0;
                for (Row r : rows) {
                    assertEquals(next, r.getLong(1), s.name + ": o rows tile the sequence");
                    bytes.write((byte[]) r.get(6));
                    next += r.getInt(2);
                }
                assertEquals(s.tokens, next);
                DType dt = DType.valueOf(rows.get(0).getString(3));
                assertEquals(s.dtype, dt, "o in the input's dtype, as the files run writes it");
                float[] got = dev.lightning.attention.tensor.TokenTensor.wrap(dt, s.tokens, s.heads, s.dv,
                        java.nio.ByteBuffer.wrap(bytes.toByteArray())).toFloats();
                double err = Accuracy.relativeError(got, f.get("o").toFloats());
                assertTrue(err < (dt == DType.F32 ? 1e-6 : 1e-2), s.name + ": o differs from the files run's by " + err);
                double stateErr = Accuracy.relativeError(TablesTest.floats((byte[]) finals.get(s.name).get(6)),
                        f.get("final_state").toFloats());
                assertTrue(stateErr < 1e-6, s.name + ": final state differs from the files run's by " + stateErr);
                List<Row> recorded = states.getOrDefault(s.name, List.of());
                assertEquals(s.tokens / 128, recorded.size(), s.name + ": recorded states");
                if (!recorded.isEmpty()) {
                    float[] all = f.get("states").toFloats();
                    int per = s.heads * s.dk * s.dv;
                    for (int c = 0; c < recorded.size(); c++) {
                        double e = Accuracy.relativeError(TablesTest.floats((byte[]) recorded.get(c).get(7)),
                                java.util.Arrays.copyOfRange(all, c * per, (c + 1) * per));
                        assertTrue(e < 1e-6, s.name + ": state " + c + " differs from the files run's by " + e);
                    }
                }
            }
        } finally {
            spark.stop();
        }

        // --sequences belongs to parquet input; safetensors output from parquet input is refused with the reason
        String refused = dir.resolve("refused").toString();
        assertEquals(2, run(log, "--input", in.toString(), "--output", refused, "--output-format", "parquet",
                "--sequences", files), log.toString());
        assertTrue(log.toString().contains("--sequences with safetensors input"), log.toString());
        assertEquals(2, run(log, "--input", tables + "/o", "--output", refused, "--output-format", "safetensors"),
                log.toString());
        assertTrue(log.toString().contains("not supported") && log.toString().contains("Leave --output-format out"),
                log.toString());
        assertEquals(2, run(log, "--input", in.toString(), "--output", refused, "--output-format", "parquet",
                "--resume"), log.toString());
        assertTrue(log.toString().contains("rerun the same command without --resume"), log.toString());
        assertFalse(Files.exists(Path.of(refused)), "a refused run leaves nothing");

        // a file that is no Parquet at all: one line, exit 2, and the output directory the run made is gone again
        Path notParquet = Files.createDirectories(dir.resolve("not-parquet"));
        Files.writeString(notParquet.resolve("x.parquet"), "not parquet");
        assertEquals(2, run(log, "--input", notParquet.toString(), "--input-format", "parquet", "--output", refused),
                log.toString());
        assertTrue(log.toString().contains("x.parquet is not a Parquet file") && log.toString().contains("--input-format "
                + "parquet reads tables of .parquet files"), log.toString());
        assertFalse(Files.exists(Path.of(refused)), "nothing left behind");

        // a run that writes safetensors cannot continue a table run's states: refused, not started from zero
        assertEquals(2, run(log, "--input", in.toString(), "--output", refused, "--initial-states", tables),
                log.toString());
        assertTrue(log.toString().contains("is the output of a run over tables"), log.toString());
        assertFalse(Files.exists(Path.of(refused)));

        // --overwrite without --state-every: the earlier run's states/ table goes with the rest
        assertEquals(0, run(log, "--input", in.toString(), "--partition-tokens", "4096", "--output", tables,
                "--output-format", "parquet", "--overwrite"), log.toString());
        assertTrue(Files.exists(Path.of(tables, "o")) && Files.exists(Path.of(tables, "final_states")));
        assertFalse(Files.exists(Path.of(tables, "states")), "no states of the earlier run beside the new tables");
    }

    /**
     * Safetensors files written as tables with --initial-states: a file whose metadata says where it
     * starts ({@code token_offset}) is refused before compute when the stored row it would continue
     * has absorbed another count of tokens (a generation skipped), or when there is no stored row of
     * its name (it would start from zero), as a run that writes safetensors refuses them; the right
     * segment runs.
     */
    @Test
    void aDeclaredTokenOffsetThatIsNotTheStoredOneIsRefused(@TempDir Path dir) throws Exception {
        Random rnd = new Random(35);
        TablesTest.Seq s = new TablesTest.Seq("s.safetensors", 90, 2, 2, 2, 4, 4, DType.F32, rnd);
        Path seg0 = dir.resolve("seg0");
        Path seg1 = dir.resolve("seg1");
        Path seg2 = dir.resolve("seg2");
        writeFile(seg0.resolve(s.name), s, 0, 30, false);
        writeFile(seg1.resolve(s.name), s, 30, 60, false, Map.of("token_offset", "30"));
        writeFile(seg2.resolve(s.name), s, 60, 90, false, Map.of("token_offset", "60"));
        String out0 = dir.resolve("out0").toString();
        StringBuilder log = new StringBuilder();
        assertEquals(0, run(log, "--input", seg0.toString(), "--output-format", "parquet", "--output", out0),
                log.toString());
        String refused = dir.resolve("refused").toString();
        // seg2 after seg0: seg1's 30 tokens would be skipped without a word
        assertEquals(2, run(log, "--input", seg2.toString(), "--output-format", "parquet", "--output", refused,
                "--initial-states", out0), log.toString());
        assertTrue(log.toString().contains("s.safetensors") && log.toString().contains("token_offset 60")
                && log.toString().contains("30 tokens"), log.toString());
        assertFalse(log.toString().contains("computed and wrote"), "refused before compute:\n" + log);
        assertFalse(Files.exists(Path.of(refused)), "a refused run leaves nothing");
        // renamed: no stored row of its name, so it would start from zero
        Path renamed = Files.createDirectories(dir.resolve("renamed"));
        Files.copy(seg1.resolve(s.name), renamed.resolve("t.safetensors"));
        assertEquals(2, run(log, "--input", renamed.toString(), "--output-format", "parquet", "--output", refused,
                "--initial-states", out0), log.toString());
        assertTrue(log.toString().contains("t.safetensors") && log.toString().contains("token_offset 30"),
                log.toString());
        assertFalse(Files.exists(Path.of(refused)), "a refused run leaves nothing");
        // the segment that follows runs
        assertEquals(0, run(log, "--input", seg1.toString(), "--output-format", "parquet", "--output",
                dir.resolve("out1").toString(), "--initial-states", out0), log.toString());
    }

    /** {@code s}'s tokens [from, to) as a safetensors file (with its slopes and, where asked, its initial state). */
    private static void writeFile(Path file, TablesTest.Seq s, int from, int to, boolean withInitial) throws Exception {
        writeFile(file, s, from, to, withInitial, Map.of());
    }

    /** The same, with {@code metadata} in its header (e.g. the token_offset where the file starts). */
    private static void writeFile(Path file, TablesTest.Seq s, int from, int to, boolean withInitial,
                                  Map<String, String> metadata) throws Exception {
        Files.createDirectories(file.getParent());
        int n = to - from;
        List<SafetensorsFile.Tensor> t = new ArrayList<>(List.of(
                new SafetensorsFile.Tensor("q", s.dtype, new long[] {n, s.hq, s.dk}, TablesTest.bytes(s.q, from, n)),
                new SafetensorsFile.Tensor("k", s.dtype, new long[] {n, s.hk, s.dk}, TablesTest.bytes(s.k, from, n)),
                new SafetensorsFile.Tensor("v", s.dtype, new long[] {n, s.hv, s.dv}, TablesTest.bytes(s.v, from, n))));
        if (withInitial && s.initial != null) {
            t.add(new SafetensorsFile.Tensor("initial_state", DType.F32, new long[] {s.heads(), s.dk, s.dv},
                    s.initial.toBytes()));
        }
        SafetensorsFile.write(file, t, metadata);
    }

    /**
     * Safetensors in, tables out, with --recursive (sequences named by their paths below --input)
     * and an initial state in a file, against the float64 recurrence; then an append whose new
     * tokens come as a file, continuing the first run's final_states/ (against the recurrence over
     * old and new tokens, the untouched sequence carried over); and a file holding its own
     * initial_state that also has a stored state refused, naming both sources.
     */
    @Test
    void safetensorsFilesAsTablesWithRecursiveNamesAndAppend(@TempDir Path dir) throws Exception {
        Random rnd = new Random(32);
        TablesTest.Seq a = new TablesTest.Seq("sub/a.safetensors", 70, 2, 2, 2, 8, 12, DType.F32, rnd);
        a.initial = dev.lightning.attention.engine.LightningState.of(2, 8, 12, TablesTest.random(2 * 8 * 12, rnd, 1));
        TablesTest.Seq b = new TablesTest.Seq("b.safetensors", 90, 3, 1, 3, 8, 4, DType.F32, rnd);
        Path in1 = dir.resolve("in1");
        Path in2 = dir.resolve("in2");
        writeFile(in1.resolve("sub/a.safetensors"), a, 0, 70, true);
        writeFile(in1.resolve("b.safetensors"), b, 0, 40, false);
        writeFile(in2.resolve("b.safetensors"), b, 40, 90, false);
        String out1 = dir.resolve("out1").toString();
        String out2 = dir.resolve("out2").toString();
        StringBuilder log = new StringBuilder();
        assertEquals(0, run(log, "--input", in1.toString(), "--recursive", "--output-format", "parquet", "--output", out1,
                "--scale", "0.5", "--partition-tokens", "32"), log.toString());
        assertEquals(0, run(log, "--input", in2.toString(), "--output-format", "parquet", "--output", out2, "--scale",
                "0.5", "--initial-states", out1), log.toString());
        assertTrue(log.toString().contains("1 of 1 sequences continue from a stored state; 2 stored state(s)"),
                log.toString());
        // the reports name the safetensors inputs in the form they name the output directories (file:/a/b, not the
        // URI form file:///a/b the files are opened by)
        JsonNode report2 = new ObjectMapper().readTree(Path.of(out2, Commit.REPORT).toFile());
        assertEquals("file:" + in2.resolve("b.safetensors"), report2.get("inputFiles").get(0).get("path").asText(),
                report2.toString());
        List<String> earlier = new java.util.ArrayList<>();
        for (JsonNode f : report2.get("earlierInputFiles")) {
            earlier.add(f.get("path").asText() + " <- " + f.get("output").asText());
        }
        assertEquals(List.of("file:" + in1.resolve("b.safetensors") + " <- file:" + out1,
                "file:" + in1.resolve("sub/a.safetensors") + " <- file:" + out1), earlier);
        SparkSession spark = session();
        try {
            float[][] refA = TablesTest.reference(a, 0.5, false);
            float[][] refB = TablesTest.reference(b, 0.5, false);
            Map<String, float[]> o1 = TablesAppendTest.oFrom(spark.read().parquet(out1 + "/o")
                    .filter(org.apache.spark.sql.functions.col("sequence").equalTo(a.name)),
                    TablesTest.byName(List.of(a)), Map.of("sub/a.safetensors", 0));
            assertTrue(Accuracy.relativeError(o1.get(a.name), refA[0]) < 1e-5, "a: o off the float64 reference");
            Map<String, float[]> o2 = TablesAppendTest.oFrom(spark.read().parquet(out2 + "/o"),
                    TablesTest.byName(List.of(b)), Map.of("b.safetensors", 40));
            double err = Accuracy.relativeError(o2.get(b.name), TablesAppendTest.tail(refB[0], b, 40));
            assertTrue(err < 1e-5, "b: o of the new tokens off the float64 reference over old and new by " + err);
            Map<String, Row> after = TablesAppendTest.byName(spark.read().parquet(out2 + "/final_states"));
            assertEquals(java.util.Set.of("sub/a.safetensors", "b.safetensors"), after.keySet());
            assertTrue(Accuracy.relativeError(TablesTest.floats((byte[]) after.get(a.name).get(6)), refA[1]) < 1e-5,
                    "a: carried over");
            assertTrue(Accuracy.relativeError(TablesTest.floats((byte[]) after.get(b.name).get(6)), refB[1]) < 1e-5,
                    "b: final state after old and new tokens");
            assertEquals(90L, after.get(b.name).getLong(8), "b: state_tokens over both runs");
        } finally {
            spark.stop();
        }
        String refused = dir.resolve("refused").toString();
        // the files out1 computed from, given again: their tokens are in its states already
        assertEquals(2, run(log, "--input", in1.toString(), "--recursive", "--output-format", "parquet", "--output",
                refused, "--initial-states", out1), log.toString());
        assertTrue(log.toString().contains("computed from 2 of this run's input file(s)")
                && log.toString().contains("in1/sub/a.safetensors") && log.toString().contains("already in those states"),
                log.toString());
        assertFalse(Files.exists(Path.of(refused)), "a refused run leaves nothing");
        // a new segment of a that holds its own initial_state, while out1 stores one for it: two starting states
        Path in1b = dir.resolve("in1b");
        writeFile(in1b.resolve("sub/a.safetensors"), a, 0, 30, true);
        assertEquals(2, run(log, "--input", in1b.toString(), "--recursive", "--output-format", "parquet", "--output",
                refused, "--initial-states", out1), log.toString());
        assertTrue(log.toString().contains("'sub/a.safetensors': it has its own initial_state") && log.toString()
                .contains("given by --input " + in1b), log.toString());
        assertFalse(Files.exists(Path.of(refused)), "a refused run leaves nothing");

        // a broken file: refused before Spark starts naming it, or with --skip-invalid listed and the rest computed
        Path in3 = dir.resolve("in3");
        writeFile(in3.resolve("b.safetensors"), b, 0, 90, false);
        Files.write(in3.resolve("broken.safetensors"), new byte[] {12, 0, 0, 0, 0, 0, 0, 0, '{', '"', 'q'});
        assertEquals(2, run(log, "--input", in3.toString(), "--output-format", "parquet", "--output", refused),
                log.toString());
        assertTrue(log.toString().contains("broken.safetensors"), log.toString());
        assertFalse(Files.exists(Path.of(refused)), "a refused run leaves nothing");
        String out3 = dir.resolve("out3").toString();
        assertEquals(0, run(log, "--input", in3.toString(), "--output-format", "parquet", "--output", out3, "--scale",
                "0.5", "--skip-invalid"), log.toString());
        assertTrue(log.toString().contains("rejected") && log.toString().contains("broken.safetensors"), log.toString());
        spark = session();
        try {
            Map<String, float[]> o3 = TablesAppendTest.oFrom(spark.read().parquet(out3 + "/o"),
                    TablesTest.byName(List.of(b)), Map.of("b.safetensors", 0));
            assertEquals(java.util.Set.of("b.safetensors"), o3.keySet());
            double err = Accuracy.relativeError(o3.get(b.name), TablesTest.reference(b, 0.5, false)[0]);
            assertTrue(err < 1e-5, "b: o off the float64 reference by " + err);
        } finally {
            spark.stop();
        }
    }
}
