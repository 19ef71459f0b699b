package dev.lightning.attention.it;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lightning.attention.it.JobHarness.Sequence;
import dev.lightning.attention.it.JobProcess.Installation;
import dev.lightning.attention.tensor.DType;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The output directory's safety against what only separate processes can do to it: a second run
 * on the same output while the first runs, a run killed with SIGKILL at each stage of its work and
 * of its commit, and an output the user may not write. Each case ends with the outputs compared
 * byte for byte against an undisturbed run's, and with files the run does not produce untouched.
 *
 * <p>The input is tiny, but with {@code --partition-tokens 128} two of its sequences are split
 * into pieces, so every stage (pass 1, the scan, pass 2, the finishing of their outputs) runs; a third one is short
 * and unsplit. Runs stop at a stage through {@code -Dlightning.test.pauseAt} (the job's
 * {@code FaultPoints}), which makes the driver wait there until it is killed. As root, for whom
 * permission bits do not apply, the permission cases run the job as nobody (uid 65534) and are
 * skipped, saying so, where that is impossible.
 */
class OutputSafetyProcessTest {
    static final String LOCK = "_lightning.lock";
    static final String TEMPORARY = "_temporary";
    static final String REPORT = "_lightning_report.json";
    static final String SUCCESS = "_SUCCESS";
    static final Duration START_TO_PAUSE = Duration.ofSeconds(120);
    static final Duration RUN = Duration.ofSeconds(180);
    /** The points before the commit: a run killed there must leave the output as it was. */
    static final Set<String> BEFORE_COMMIT = Set.of("pass1", "scan", "pass2", "assemble");
    /** uid and gid of the user the permission tests run the job as, when the tests run as root: nobody. */
    static final int NOBODY = 65534;

    @TempDir
    static Path shared;
    /** The input: a.safetensors and b.safetensors split into pieces, c.safetensors short. */
    static Path input;
    static List<String> names;
    /** An undisturbed run's output of {@link #input}. */
    static Path expected;
    /** A finished run's output of other inputs under the same names (report and all). */
    static Path earlier;
    static Installation build;
    private static Installation asNobody;

    @TempDir
    Path tmp;

    @BeforeAll
    static void runUndisturbed() throws Exception {
        build = Installation.ofBuild();
        input = write(shared.resolve("input"), 100);
        Path other = write(shared.resolve("other-input"), 200);
        try (Stream<Path> s = Files.list(input)) {
            names = s.map(p -> p.getFileName().toString()).sorted().collect(Collectors.toList());
        }
        expected = shared.resolve("expected");
        succeed(shared, "expected", args(input, expected));
        earlier = shared.resolve("earlier");
        succeed(shared, "earlier", args(other, earlier));
        for (String n : names) {
            assertFalse(Arrays.equals(Files.readAllBytes(expected.resolve(n)), Files.readAllBytes(earlier.resolve(n))),
                    n + ": the earlier results must differ from the new ones, or a kept old file would pass as new");
        }
    }

    /** Three small sequences (BF16 with an initial state, F32 with slopes, F16) in {@code dir}; TablesKillTest's input too. */
    static Path write(Path dir, long seed) throws IOException {
        Files.createDirectories(dir);
        Sequence.random(seed, 300, 2, 16, 8, DType.BF16, null, true).write(dir.resolve("a.safetensors"));
        Sequence.random(seed + 1, 200, 2, 8, 8, DType.F32, new float[] {0.05f, 1e-4f}, false)
                .write(dir.resolve("b.safetensors"));
        Sequence.random(seed + 2, 40, 1, 8, 4, DType.F16, null, false).write(dir.resolve("c.safetensors"));
        return dir;
    }

    /**
     * The job's arguments. Without the Spark UI: runs that overlap would race for its port, and
     * each would spend a second starting a web server nobody looks at.
     */
    static List<String> args(Path in, Path out, String... extra) {
        List<String> a = new ArrayList<>(List.of("run", "--input", in.toString(), "--output", out.toString(),
                "--master", "local[2]", "--backend", "cpu", "--partition-tokens", "128", "--chunk-size", "64",
                "--conf", "spark.ui.enabled=false"));
        a.addAll(Arrays.asList(extra));
        return a;
    }

    private static JobProcess start(Installation inst, Path dir, String name, String pauseAt, List<String> args)
            throws IOException {
        return JobProcess.start(inst, dir, name, pauseAt == null ? List.of() : List.of("lightning.test.pauseAt=" + pauseAt),
                args);
    }

    private static JobProcess succeed(Path dir, String name, List<String> args) throws Exception {
        try (JobProcess p = start(build, dir, name, null, args)) {
            int status = p.waitFor(RUN);
            assertEquals(0, status, p::describe);
            return p;
        }
    }

    /** Starts a run that stops at {@code point}; returns once it says it stopped there. */
    private static JobProcess pausedAt(Path dir, String name, String point, List<String> args) throws Exception {
        JobProcess p = start(build, dir, name, point, args);
        try {
            p.waitForLine("lightning-test: paused at " + point, START_TO_PAUSE);
            return p;
        } catch (AssertionError | RuntimeException | InterruptedException e) {
            p.close();
            throw e;
        }
    }

    // ---------------------------------------------------------------- the cases

    /**
     * A second run on an output a running job holds is refused, naming the holder; the holder,
     * killed, leaves its lock; {@code --resume} takes the stale lock over, keeps the verified work
     * and publishes exactly what an undisturbed run publishes.
     */
    @Test
    void aSecondRunIsRefusedAndTheKilledFirstResumes() throws Exception {
        Path out = tmp.resolve("out");
        long firstPid;
        String runId;
        try (JobProcess first = pausedAt(tmp, "first", "pass2", args(input, out))) {
            firstPid = first.pid();
            Path lockFile = out.resolve(LOCK);
            assertTrue(Files.isRegularFile(lockFile), "a running job holds " + lockFile + "\n" + first.describe());
            JsonNode lock = new ObjectMapper().readTree(Files.readString(lockFile));
            for (String field : List.of("runId", "host", "pid", "started")) {
                assertTrue(lock.hasNonNull(field), "the lock names the holder's " + field + ": " + lock);
            }
            assertEquals(firstPid, lock.get("pid").asLong(), "the lock's pid is the running job's: " + lock);
            runId = stagedRun(out);
            assertEquals(runId, lock.path("runId").asText(), "the lock's runId names the staging: " + lock);

            Map<String, byte[]> beforeSecond = snapshot(out);
            Set<String> stagingsBeforeSecond = stagings(out);
            try (JobProcess second = start(build, tmp, "second", null, args(input, out))) {
                int status = second.waitFor(RUN);
                assertEquals(2, status, second::describe);
                List<String> err = second.errLines();
                assertEquals(1, err.size(), () -> "one line on stderr\n" + second.describe());
                String line = err.get(0);
                assertTrue(line.contains(Long.toString(firstPid)), "names the holder's pid " + firstPid + ": " + line);
                assertTrue(line.contains(lock.get("host").asText()), "names the holder's host: " + line);
                assertTrue(line.contains(lock.get("started").asText()), "names the holder's start time: " + line);
                assertTrue(line.contains("dead") || line.contains("stale") || line.contains("gone"),
                        "says what to do if the holder is dead: " + line);
                assertNoProgress(second, "refused before compute");
            }
            assertTrue(first.isAlive(), "the refused run leaves the running one alone\n" + first.describe());
            assertSame(beforeSecond, snapshot(out), "the output directory after the refused run");
            assertEquals(stagingsBeforeSecond, stagings(out), "the refused run leaves the staging alone");
            JsonNode still = new ObjectMapper().readTree(Files.readString(lockFile));
            assertEquals(lock.get("runId"), still.get("runId"), "the refused run leaves the holder's lock: " + still);
            assertEquals(lock.get("pid"), still.get("pid"), "the refused run leaves the holder's lock: " + still);
            first.kill();
        }
        assertTrue(Files.exists(out.resolve(LOCK)), "a killed run leaves its lock: " + tree(out));

        JobProcess resumed = succeed(tmp, "resumed", args(input, out, "--resume"));
        assertTakenOver(resumed, firstPid);
        assertResumed(resumed, runId);
        assertOutputsAsExpected(out);
        assertCommitted(out, Set.of(), false);
    }

    /**
     * A run with {@code --overwrite} over an earlier run's results, killed at {@code point}:
     * before the commit the output directory is exactly as it was; {@code --resume --overwrite}
     * then publishes what an undisturbed run publishes, and files the run does not produce stay
     * as they were throughout.
     */
    @ParameterizedTest(name = "killed at {0}")
    @ValueSource(strings = {"pass1", "scan", "pass2", "assemble", "commit", "published"})
    void aRunKilledAtAnyPointLosesNothingAndResumes(String point) throws Exception {
        Path out = tmp.resolve("out");
        copyTree(earlier, out);
        byte[] weights = new byte[4099];
        new SplittableRandom(7).nextBytes(weights);
        Files.write(out.resolve("weights.safetensors"), weights);
        Files.writeString(out.resolve("notes.txt"), "not the job's\n");
        Map<String, byte[]> before = snapshot(out);

        String runId;
        try (JobProcess killed = pausedAt(tmp, "killed-" + point, point, args(input, out, "--overwrite"))) {
            Map<String, byte[]> during = snapshot(out);
            runId = stagedRun(out);
            assertSame(subset(before, "weights.safetensors", "notes.txt"),
                    subset(during, "weights.safetensors", "notes.txt"), "files the run does not produce, at " + point);
            if (BEFORE_COMMIT.contains(point)) {
                assertSame(before, during, "the output directory before the commit (killed at " + point + ")");
            } else {
                int published = 0;
                for (String n : names) {
                    if (Arrays.equals(Files.readAllBytes(expected.resolve(n)), during.get(n))) {
                        published++;
                    } else {
                        assertArrayEquals(before.get(n), during.get(n), n + " is either the old or the new file");
                    }
                }
                if ("commit".equals(point)) {
                    assertTrue(published >= 1, "at 'commit' the first file is published: " + tree(out));
                } else {
                    assertEquals(names.size(), published, "at 'published' every file is published: " + tree(out));
                }
                assertArrayEquals(before.get(REPORT), during.get(REPORT), "the report is written after the files");
            }
            killed.kill();
        }
        Map<String, byte[]> afterKill = snapshot(out);
        if (BEFORE_COMMIT.contains(point)) {
            assertSame(before, afterKill, "the output directory after a kill at " + point);
        }

        JobProcess resumed = succeed(tmp, "resumed-" + point, args(input, out, "--resume", "--overwrite"));
        if (BEFORE_COMMIT.contains(point)) {
            assertResumed(resumed, runId);
        } else {
            assertRolledForwardFirst(resumed, runId);
        }
        assertOutputsAsExpected(out);
        assertArrayEquals(weights, Files.readAllBytes(out.resolve("weights.safetensors")), "weights.safetensors");
        assertEquals("not the job's\n", Files.readString(out.resolve("notes.txt")), "notes.txt");
        assertCommitted(out, Set.of("weights.safetensors", "notes.txt"), false);
    }

    /**
     * A run killed during its commit into a new output (so without {@code --overwrite}) is
     * finished by {@code --resume} with the same arguments: the next run rolls the commit forward
     * before anything else, and succeeds without computing again what the killed run had done.
     */
    @Test
    void aRunKilledInItsCommitIsFinishedByResumeWithTheSameArguments() throws Exception {
        Path out = tmp.resolve("out");
        String runId;
        try (JobProcess killed = pausedAt(tmp, "killed", "commit", args(input, out))) {
            runId = stagedRun(out);
            killed.kill();
        }
        JobProcess resumed = succeed(tmp, "resumed", args(input, out, "--resume"));
        assertRolledForwardFirst(resumed, runId);
        assertOutputsAsExpected(out);
        assertCommitted(out, Set.of(), false);
        assertNoProgress(resumed, "all work of the killed run was done and is published by finishing its commit");
    }

    /** A new run without {@code --resume} after a killed one starts afresh and removes the old staging. */
    @Test
    void aFreshRunAfterAKilledOneDiscardsItsStaging() throws Exception {
        Path out = tmp.resolve("out");
        long killedPid;
        Set<String> oldStaging;
        try (JobProcess killed = pausedAt(tmp, "killed", "pass2", args(input, out))) {
            killedPid = killed.pid();
            oldStaging = stagings(out);
            assertFalse(oldStaging.isEmpty(), "the killed run staged its work: " + tree(out));
            killed.kill();
        }
        JobProcess fresh = succeed(tmp, "fresh", args(input, out));
        assertTakenOver(fresh, killedPid);
        Set<String> left = stagings(out);
        left.retainAll(oldStaging);
        assertTrue(left.isEmpty(), "the old staging is removed: " + tree(out) + "\n" + fresh.describe());
        assertOutputsAsExpected(out);
        // the killed run created _temporary, not this one: it may stay, empty
        assertCommitted(out, Set.of(), true);
    }

    /** An output directory the user cannot write: refused before any compute, in one line. */
    @Test
    void aReadOnlyOutputIsRefusedBeforeCompute() throws Exception {
        Installation inst = otherUser();
        Path out = Files.createDirectories(tmp.resolve("read-only"));
        Files.setPosixFilePermissions(out, PosixFilePermissions.fromString("r-xr-xr-x"));
        assertRefusedBeforeCompute(inst, "read-only", out);
        try (Stream<Path> s = Files.list(out)) {
            assertEquals(List.of(), s.collect(Collectors.toList()), "nothing written");
        }
    }

    /** An output directory that cannot be created, because its parent is not writable: the same. */
    @Test
    void anOutputInAReadOnlyParentIsRefusedBeforeCompute() throws Exception {
        Installation inst = otherUser();
        Path parent = Files.createDirectories(tmp.resolve("read-only-parent"));
        Files.setPosixFilePermissions(parent, PosixFilePermissions.fromString("r-xr-xr-x"));
        Path out = parent.resolve("out");
        assertRefusedBeforeCompute(inst, "read-only-parent", out);
        assertFalse(Files.exists(out), "nothing created");
    }

    // ---------------------------------------------------------------- checks

    private void assertRefusedBeforeCompute(Installation inst, String name, Path out) throws Exception {
        // the job's user must reach the input and the directory of its output
        Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rwxr-xr-x"));
        Path in = copyTree(input, tmp.resolve("input-" + name));
        try (JobProcess p = start(inst, tmp, name, null, args(in, out))) {
            int status = p.waitFor(RUN);
            assertEquals(2, status, p::describe);
            List<String> err = p.errLines();
            assertEquals(1, err.size(), () -> "one line on stderr\n" + p.describe());
            assertFalse(p.err().contains("\tat "), () -> "no stack trace\n" + p.describe());
            assertTrue(err.get(0).contains(out.toString()) || err.get(0).contains(out.getParent().toString()),
                    "names the directory: " + err.get(0));
            assertNoProgress(p, "refused before compute");
        }
    }

    /**
     * The installation to run a job whose permissions apply: as root, a copy run as nobody; as
     * anybody else, the build itself. Skips (visibly) where root cannot switch user.
     */
    private static synchronized Installation otherUser() throws IOException {
        if (!JobProcess.isRoot()) {
            return build;
        }
        String why = JobProcess.cannotRunAs(NOBODY);
        if (why != null) {
            System.out.println("OutputSafetyProcessTest: permission test SKIPPED: the tests run as root, for whom "
                    + "permissions do not apply, and cannot run the job as uid " + NOBODY + ": " + why);
        }
        Assumptions.assumeTrue(why == null, why);
        if (asNobody == null) {
            Files.setPosixFilePermissions(shared, PosixFilePermissions.fromString("rwxr-xr-x"));
            asNobody = build.forOtherUser(shared.resolve("install-nobody"), NOBODY);
        }
        return asNobody;
    }

    private static void assertNoProgress(JobProcess p, String why) {
        for (String l : p.out().lines().collect(Collectors.toList())) {
            assertFalse(l.matches("lightning: (pass \\d/\\d|scan|assemble).*"),
                    why + ": no pass progress line expected, got '" + l + "'\n" + p.describe());
        }
    }

    /** The run says it took over the lock of the killed process. */
    private static void assertTakenOver(JobProcess p, long killedPid) {
        String all = p.out() + p.err();
        boolean said = all.lines().anyMatch(l -> l.contains(Long.toString(killedPid))
                && l.toLowerCase(Locale.ROOT).contains("lock"));
        assertTrue(said, "a line saying the stale lock of pid " + killedPid + " was taken over\n" + p.describe());
    }

    /** The run says it continues run {@code runId} (a line saying there was nothing to resume would not do). */
    private static void assertResumed(JobProcess p, String runId) {
        String all = p.out() + p.err();
        // "resum" outside a mention of the flag: "removing run X (--resume would have continued it)" does not count
        boolean said = all.lines().anyMatch(l -> l.contains(runId)
                && l.replace("--resume", "").toLowerCase(Locale.ROOT).contains("resum"));
        assertTrue(said, () -> "a line saying the run resumes run " + runId + "\n" + p.describe());
        // and work was kept, not recomputed: every fault point lies after at least one finished unit
        java.util.regex.Matcher kept = java.util.regex.Pattern.compile("resumed: (\\d+) unit").matcher(all);
        assertTrue(kept.find() && Integer.parseInt(kept.group(1)) > 0,
                () -> "a line saying how many finished units were kept\n" + p.describe());
    }

    /**
     * The run finishes the interrupted commit of run {@code runId} before anything else: a line
     * naming that run comes before the plan and the passes.
     */
    private static void assertRolledForwardFirst(JobProcess p, String runId) {
        List<String> lines = p.out().lines().collect(Collectors.toList());
        int named = -1;
        int work = -1;
        for (int i = 0; i < lines.size(); i++) {
            if (named < 0 && lines.get(i).contains(runId)) {
                named = i;
            }
            if (work < 0 && lines.get(i).matches("lightning: (\\d+ sequences|pass \\d/\\d|scan|assemble).*")) {
                work = i;
            }
        }
        assertTrue(named >= 0 && (work < 0 || named < work),
                "a line about finishing the commit of run " + runId + " before any work\n" + p.describe());
    }

    /** The run id of the one run staged in {@code out} (its staging directory is {@code _temporary/lightning-ID}). */
    private static String stagedRun(Path out) throws IOException {
        Set<String> s = stagings(out);
        assertEquals(1, s.size(), "one staging directory: " + tree(out));
        return s.iterator().next().substring("lightning-".length());
    }

    /** Every output file byte for byte as the undisturbed run wrote it (the report differs and is not compared). */
    private static void assertOutputsAsExpected(Path out) throws IOException {
        for (String n : names) {
            assertTrue(Files.isRegularFile(out.resolve(n)), n + " published: " + tree(out));
            assertArrayEquals(Files.readAllBytes(expected.resolve(n)), Files.readAllBytes(out.resolve(n)),
                    n + " as an undisturbed run wrote it");
        }
    }

    /**
     * After success: the outputs, the report, _SUCCESS and {@code others}; no lock, no staging, no
     * hidden files. {@code _temporary} only where {@code emptyTemporaryMayStay} (this run did not
     * create it), and then empty.
     */
    private static void assertCommitted(Path out, Set<String> others, boolean emptyTemporaryMayStay)
            throws IOException {
        Set<String> want = new TreeSet<>(names);
        want.add(REPORT);
        want.add(SUCCESS);
        want.addAll(others);
        Set<String> got;
        try (Stream<Path> s = Files.list(out)) {
            got = s.map(p -> p.getFileName().toString()).collect(Collectors.toCollection(TreeSet::new));
        }
        if (emptyTemporaryMayStay && got.contains(TEMPORARY)) {
            try (Stream<Path> s = Files.list(out.resolve(TEMPORARY))) {
                assertEquals(List.of(), s.collect(Collectors.toList()), "_temporary is empty: " + tree(out));
            }
            got.remove(TEMPORARY);
        }
        assertEquals(want, got, "the output directory after the commit: " + tree(out));
        assertNotNull(new ObjectMapper().readTree(Files.readString(out.resolve(REPORT))), "the report is JSON");
    }

    /** The names of the staging directories under {@code out/_temporary}. */
    static Set<String> stagings(Path out) throws IOException {
        Path t = out.resolve(TEMPORARY);
        if (!Files.isDirectory(t)) {
            return new TreeSet<>();
        }
        try (Stream<Path> s = Files.list(t)) {
            return s.map(p -> p.getFileName().toString()).filter(n -> n.startsWith("lightning-"))
                    .collect(Collectors.toCollection(TreeSet::new));
        }
    }

    /**
     * Every file and directory under {@code dir} (relative path to content; directories map to an
     * empty array and end in '/'), without {@code _temporary} and the lock: what a run may change.
     */
    static Map<String, byte[]> snapshot(Path dir) throws IOException {
        Map<String, byte[]> m = new TreeMap<>();
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.collect(Collectors.toList())) {
                String rel = dir.relativize(p).toString();
                if (rel.isEmpty() || rel.equals(LOCK) || rel.equals(TEMPORARY) || rel.startsWith(TEMPORARY + "/")) {
                    continue;
                }
                m.put(Files.isDirectory(p) ? rel + "/" : rel, Files.isDirectory(p) ? new byte[0] : Files.readAllBytes(p));
            }
        }
        return m;
    }

    private static Map<String, byte[]> subset(Map<String, byte[]> m, String... keys) {
        Map<String, byte[]> s = new LinkedHashMap<>();
        for (String k : keys) {
            s.put(k, m.get(k));
        }
        return s;
    }

    static void assertSame(Map<String, byte[]> want, Map<String, byte[]> got, String what) {
        assertEquals(want.keySet(), got.keySet(), what + ": the file list");
        for (String k : want.keySet()) {
            if (!Arrays.equals(want.get(k), got.get(k))) {
                fail(what + ": " + k + " changed (" + (want.get(k) == null ? "absent" : want.get(k).length + " bytes")
                        + " before, " + (got.get(k) == null ? "absent" : got.get(k).length + " bytes") + " now)");
            }
        }
    }

    static String tree(Path dir) {
        try (Stream<Path> s = Files.walk(dir)) {
            return s.map(p -> dir.relativize(p).toString()).filter(r -> !r.isEmpty()).sorted()
                    .collect(Collectors.joining(", ", "[", "]"));
        } catch (IOException e) {
            return "(cannot list " + dir + ": " + e.getMessage() + ")";
        }
    }

    /** Copies a directory tree, readable by everybody (the permission tests run the job as another user). */
    static Path copyTree(Path from, Path to) throws IOException {
        try (Stream<Path> s = Files.walk(from)) {
            for (Path p : s.collect(Collectors.toList())) {
                Path d = to.resolve(from.relativize(p).toString());
                if (Files.isDirectory(p)) {
                    Files.createDirectories(d);
                    Files.setPosixFilePermissions(d, PosixFilePermissions.fromString("rwxr-xr-x"));
                } else {
                    Files.copy(p, d);
                    Files.setPosixFilePermissions(d, PosixFilePermissions.fromString("rw-r--r--"));
                }
            }
        }
        return to;
    }
}
