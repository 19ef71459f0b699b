package dev.lightning.attention.it;

import dev.lightning.attention.it.JobProcess.Installation;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.functions;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static dev.lightning.attention.it.OutputSafetyProcessTest.REPORT;
import static dev.lightning.attention.it.OutputSafetyProcessTest.SUCCESS;
import static dev.lightning.attention.it.OutputSafetyProcessTest.TEMPORARY;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A table run (safetensors files in, --output-format parquet out) killed with SIGKILL at each of its
 * stages, as OutputSafetyProcessTest does for files runs: at the table run's fault points (FaultPoints:
 * {@code table-pass1}, {@code table-scan}, {@code table-pass2}, {@code table-states},
 * {@code table-checkpoints}) the output directory, an earlier table run's output with files of the
 * user's beside it, is exactly as it was; killed in its commit, the earlier tables are either kept or
 * replaced. A table run refuses --resume, telling the user to run the same command again, and that
 * command then publishes what an undisturbed run publishes, the same table files byte for byte, and
 * leaves the user's files alone.
 *
 * <p>With {@code --partition-tokens 128} two sequences are split (pass 1 and the scan run), a third is
 * short (the batch step), and {@code --state-every 64} writes states/.
 */
class TablesKillTest {
    static final Duration START_TO_PAUSE = Duration.ofSeconds(120);
    static final Duration RUN = Duration.ofSeconds(180);
    static final List<String> TABLES = List.of("o", "final_states", "states");
    /** The points before the commit: a run killed there must leave the output as it was. */
    static final Set<String> BEFORE_COMMIT = Set.of("table-pass1", "table-scan", "table-pass2", "table-states",
            "table-checkpoints");

    @TempDir
    static Path shared;
    static Path input;
    /** An undisturbed run's output of {@link #input}. */
    static Path expected;
    /** A finished table run's output of other inputs under the same names. */
    static Path earlier;
    static Installation build;

    @TempDir
    Path tmp;

    @BeforeAll
    static void runUndisturbed() throws Exception {
        build = Installation.ofBuild();
        input = OutputSafetyProcessTest.write(shared.resolve("input"), 100);
        Path other = OutputSafetyProcessTest.write(shared.resolve("other-input"), 200);
        expected = shared.resolve("expected");
        succeed(shared, "expected", args(input, expected));
        earlier = shared.resolve("earlier");
        succeed(shared, "earlier", args(other, earlier));
        for (String t : TABLES) {
            assertNotEquals(tableFiles(expected.resolve(t)), tableFiles(earlier.resolve(t)),
                    t + ": the earlier tables must differ from the new ones, or a kept old table would pass as new");
        }
    }

    @AfterAll
    static void stopSpark() {
        if (SparkSession.getDefaultSession().isDefined()) {
            SparkSession.getDefaultSession().get().stop();
        }
    }

    static List<String> args(Path in, Path out, String... extra) {
        List<String> a = new ArrayList<>(List.of("run", "--input", in.toString(), "--output", out.toString(),
                "--output-format", "parquet", "--master", "local[2]", "--backend", "cpu", "--partition-tokens", "128",
                "--chunk-size", "64", "--state-every", "64", "--conf", "spark.ui.enabled=false"));
        a.addAll(Arrays.asList(extra));
        return a;
    }

    private static JobProcess succeed(Path dir, String name, List<String> args) throws Exception {
        try (JobProcess p = JobProcess.start(build, dir, name, List.of(), args)) {
            assertEquals(0, p.waitFor(RUN), p::describe);
            return p;
        }
    }

    @ParameterizedTest(name = "killed at {0}")
    @ValueSource(strings = {"table-pass1", "table-scan", "table-pass2", "table-states", "table-checkpoints", "commit",
            "published"})
    void aTableRunKilledAtAnyPointLosesNothingAndTheSameCommandFinishes(String point) throws Exception {
        Path out = tmp.resolve("out");
        OutputSafetyProcessTest.copyTree(earlier, out);
        Files.writeString(out.resolve("notes.txt"), "not the job's\n");
        Map<String, byte[]> before = OutputSafetyProcessTest.snapshot(out);
        List<String> command = args(input, out, "--overwrite");

        long killedPid;
        try (JobProcess killed = JobProcess.start(build, tmp, "killed", List.of("lightning.test.pauseAt=" + point),
                command)) {
            killed.waitForLine("lightning-test: paused at " + point, START_TO_PAUSE);
            killedPid = killed.pid();
            assertEquals(1, OutputSafetyProcessTest.stagings(out).size(), "the run stages its tables: "
                    + OutputSafetyProcessTest.tree(out));
            killed.kill();
        }
        Map<String, byte[]> afterKill = OutputSafetyProcessTest.snapshot(out);
        if (BEFORE_COMMIT.contains(point)) {
            OutputSafetyProcessTest.assertSame(before, afterKill, "the output directory after a kill at " + point);
        } else {
            assertEquals("not the job's\n", Files.readString(out.resolve("notes.txt")), "notes.txt");
            for (String t : TABLES) {
                List<String> now = Files.isDirectory(out.resolve(t)) ? tableFiles(out.resolve(t)) : List.of();
                assertTrue(now.equals(tableFiles(earlier.resolve(t))) || now.equals(tableFiles(expected.resolve(t)))
                        || now.isEmpty(), t + "/ is the earlier table, the new one or (moved aside) absent at "
                        + point + ": " + OutputSafetyProcessTest.tree(out));
            }
        }

        // --resume is refused, saying what to do instead: the same command again
        List<String> resume = new ArrayList<>(command);
        resume.add("--resume");
        try (JobProcess refused = JobProcess.start(build, tmp, "resume", List.of(), resume)) {
            assertEquals(2, refused.waitFor(RUN), refused::describe);
            String said = refused.out() + refused.err();
            assertTrue(said.contains("rerun the same command without --resume"), refused.describe());
        }
        assertEquals(afterKill.keySet(), OutputSafetyProcessTest.snapshot(out).keySet(), "the refused --resume");

        JobProcess again = succeed(tmp, "again", command);
        String said = again.out() + again.err();
        assertFalse(said.contains("--resume would"), "a table run has no --resume to suggest\n" + again.describe());
        assertTrue(said.lines().anyMatch(l -> l.contains(Long.toString(killedPid)) && l.contains("lock")),
                "the stale lock of the killed run is taken over\n" + again.describe());
        for (String t : TABLES) {
            assertEquals(tableFiles(expected.resolve(t)), tableFiles(out.resolve(t)),
                    t + "/ as an undisturbed run wrote it (killed at " + point + ")\n" + again.describe());
        }
        assertEquals("not the job's\n", Files.readString(out.resolve("notes.txt")), "notes.txt");
        Set<String> got;
        try (Stream<Path> s = Files.list(out)) {
            got = s.map(p -> p.getFileName().toString()).collect(Collectors.toCollection(TreeSet::new));
        }
        if (got.contains(TEMPORARY)) { // the killed run created it; the staging in it is gone
            try (Stream<Path> s = Files.list(out.resolve(TEMPORARY))) {
                assertEquals(List.of(), s.collect(Collectors.toList()), "_temporary is empty: "
                        + OutputSafetyProcessTest.tree(out));
            }
            got.remove(TEMPORARY);
        }
        assertEquals(new TreeSet<>(List.of("o", "final_states", "states", REPORT, SUCCESS, "notes.txt")), got,
                "the output directory after the run: " + OutputSafetyProcessTest.tree(out));
    }

    /**
     * A table's rows, each with the part file that holds it (its task's index: the name's job id left out) and
     * every column, binaries by SHA-256, sorted: equal lists are the same rows, value for value, in the same
     * files, none twice. The files' bytes are not compared: Parquet writes a column's encodings in the order of
     * a hash set of enum values, which differs from one JVM to another for the same rows.
     */
    static List<String> tableFiles(Path table) throws Exception {
        SparkSession spark = SparkSession.builder().master("local[1]").appName("tables-kill-test")
                .config("spark.ui.enabled", "false").getOrCreate();
        List<String> all = new ArrayList<>();
        MessageDigest sha = MessageDigest.getInstance("SHA-256");
        for (Row r : spark.read().parquet(table.toString()).withColumn("file", functions.input_file_name())
                .collectAsList()) {
            StringBuilder b = new StringBuilder();
            String file = r.getString(r.length() - 1);
            b.append(file.replaceAll(".*/(part-\\d+)-.*", "$1"));
            for (int i = 0; i < r.length() - 1; i++) {
                Object v = r.get(i);
                b.append(' ').append(v instanceof byte[] ? HexFormat.of().formatHex(sha.digest((byte[]) v))
                        : String.valueOf(v));
            }
            all.add(b.toString());
        }
        java.util.Collections.sort(all);
        return all;
    }
}
