package dev.lightning.attention.job.output;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What the next run does with an interrupted run's commit record (Commit.recover): a whole record of
 * this build is finished; one cut short (a power loss while it was written) is no commit point; and a
 * whole record of an earlier build, written before records ended with "complete" (as such builds
 * wrote it: {"overwrite":false,"files":[...]}), is not finished either, but said to be an earlier
 * build's, with what to do, not taken for one cut short.
 */
class CommitRecordTest {
    @TempDir
    java.nio.file.Path tmp;

    @Test
    void anEarlierBuildsRecordIsNamedAsSuchAndNotFinished() throws Exception {
        FileSystem fs = FileSystem.getLocal(new Configuration());
        Path output = fs.makeQualified(new Path(tmp.toUri()));
        java.nio.file.Path staging = stagingDir("old");
        Files.createDirectories(staging.resolve("files"));
        Files.writeString(staging.resolve("files/a.safetensors"), "staged");
        java.nio.file.Path record = staging.resolve(Commit.RECORD);

        Files.writeString(record, "{\"overwrite\":false,\"files\":[\"a.safetensors\"]}");
        String said = recover(fs, output, 0);
        assertTrue(said.contains("interrupted run old was committed by an earlier build of lightning (its "
                + Commit.RECORD + " has no \"complete\" field") && said.contains("Rerun with --overwrite")
                && !said.contains("the machine stopped"), said);
        assertEquals(1, said.strip().split("\n").length, "one line: " + said);
        assertFalse(Files.exists(tmp.resolve("a.safetensors")), "nothing of it is published");

        Files.writeString(record, "{\"overwrite\":false,\"files\":[\"a.safetensors\"],\"replaces\":[],\"inPl");
        said = recover(fs, output, 0);
        assertTrue(said.contains("is incomplete (the machine stopped while writing it)"), said);
        assertFalse(said.contains("earlier build"), said);

        Files.writeString(record, "{\"overwrite\":false,\"files\":[\"a.safetensors\"],\"replaces\":[],\"inPlace\":[],"
                + "\"complete\":true}");
        said = recover(fs, output, 1);
        assertTrue(said.contains("finishing the commit of interrupted run old"), said);
        assertEquals("staged", Files.readString(tmp.resolve("a.safetensors")));
    }

    /**
     * Finishing a commit publishes only what its record names and the staging holds: a listed output that is neither
     * staged nor published fails the finish (no _SUCCESS, which would say every output is there), and a file that
     * stands where an output goes, with other bytes, in a run without --overwrite, is refused and left as it is
     * (moved aside into the staging, it would be deleted with it).
     */
    @Test
    void finishingNeverPublishesAroundAMissingOutputOrOverAFileItDidNotWrite() throws Exception {
        FileSystem fs = FileSystem.getLocal(new Configuration());
        Path output = fs.makeQualified(new Path(tmp.toUri()));
        java.nio.file.Path staging = stagingDir("cut");
        Files.createDirectories(staging.resolve("files"));
        Files.writeString(staging.resolve("files/a.safetensors"), "staged a");
        Files.writeString(staging.resolve(Commit.RECORD), "{\"overwrite\":false,\"files\":[\"a.safetensors\","
                + "\"b.safetensors\"],\"replaces\":[],\"inPlace\":[],\"complete\":true}");
        java.io.IOException missing = org.junit.jupiter.api.Assertions.assertThrows(java.io.IOException.class,
                () -> recover(fs, output, 0));
        assertTrue(missing.getMessage().contains("b.safetensors is neither staged nor published"), missing.getMessage());
        assertFalse(Files.exists(tmp.resolve(Commit.SUCCESS)), "no _SUCCESS without b");

        java.nio.file.Path other = stagingDir("next");
        Files.createDirectories(other.resolve("files"));
        Files.writeString(other.resolve("files/c.safetensors"), "staged c");
        Files.writeString(other.resolve(Commit.RECORD), "{\"overwrite\":false,\"files\":[\"c.safetensors\"],"
                + "\"replaces\":[],\"inPlace\":[],\"complete\":true}");
        Files.writeString(tmp.resolve("c.safetensors"), "the user's c");
        Files.delete(staging.resolve(Commit.RECORD)); // the first one, out of the way
        // an ExplainedFailure: the command line prints its message alone, without a class name and a stack trace
        dev.lightning.attention.job.failure.ExplainedFailure foreign = org.junit.jupiter.api.Assertions.assertThrows(
                dev.lightning.attention.job.failure.ExplainedFailure.class, () -> recover(fs, output, 0));
        assertTrue(foreign.getMessage().contains("c.safetensors") && foreign.getMessage().contains("--overwrite"),
                foreign.getMessage());
        assertEquals("the user's c", Files.readString(tmp.resolve("c.safetensors")), "left as it was");
        assertEquals("staged c", Files.readString(other.resolve("files/c.safetensors")), "still staged");
        assertFalse(Files.exists(tmp.resolve(Commit.SUCCESS)));
    }

    /**
     * A commit whose staged output the driver does not find (the executors wrote it where the driver does not look)
     * stops before its commit point: it says the storage is not shared, writes no commit record and publishes
     * nothing. A record written anyway names an output that no later run can publish, so every next run into the
     * directory would fail finishing it.
     */
    @Test
    void aCommitWhoseStagedOutputIsMissingStopsBeforeItsCommitPoint() throws Exception {
        FileSystem fs = FileSystem.getLocal(new Configuration());
        Path output = fs.makeQualified(new Path(tmp.toUri()));
        Staging staging = new Staging(output, "gone", false);
        fs.mkdirs(new Path(staging.path(), "files"));
        Files.writeString(java.nio.file.Path.of(staging.stagedOutput("a.safetensors").toUri()), "staged a");
        staging.stageReport(fs, new com.fasterxml.jackson.databind.ObjectMapper().createObjectNode());
        PrintStream quiet = new PrintStream(new ByteArrayOutputStream());
        try (OutputLock lock = OutputLock.acquire(fs, output, "gone", 120.0, quiet)) {
            UnsharedOutputException e = org.junit.jupiter.api.Assertions.assertThrows(UnsharedOutputException.class,
                    () -> Commit.commit(fs, output, staging, java.util.List.of("a.safetensors", "b.safetensors"),
                            java.util.List.of(), java.util.List.of(), false, lock, quiet));
            assertTrue(e.getMessage().contains("b.safetensors"), e.getMessage());
        }
        assertFalse(fs.exists(new Path(staging.path(), Commit.RECORD)), "no commit point");
        assertFalse(Files.exists(tmp.resolve("a.safetensors")), "nothing published");
        assertFalse(Files.exists(tmp.resolve(Commit.SUCCESS)));
        assertEquals(0, Commit.recover(fs, output, quiet).size(), "nothing for the next run to finish");
    }

    /**
     * A commit that finds a user's file where one of its outputs goes publishes nothing and says to move it and run
     * again: with --resume for a files run, which keeps its finished work; without for a table run, which refuses
     * --resume (its advice said "rerun with --resume").
     */
    @Test
    void aCommitInTheWayOfAUsersFileSaysHowToRunAgain() throws Exception {
        FileSystem fs = FileSystem.getLocal(new Configuration());
        Path output = fs.makeQualified(new Path(tmp.toUri()));
        PrintStream quiet = new PrintStream(new ByteArrayOutputStream());
        String[][] cases = {{"files", "{}", "and rerun with --resume, or add --overwrite"},
                {"table", "{\"format\":\"parquet\"}", "and run again (a table run keeps no work to resume), or add --overwrite"}};
        Files.writeString(tmp.resolve("a.safetensors"), "the user's"); // put there during the compute
        for (String[] c : cases) {
            Staging staging = new Staging(output, c[0], false);
            Staging.writeAtomically(fs, staging.runFile(), "driver", RunInfo.encode(
                    new com.fasterxml.jackson.databind.ObjectMapper().readTree(c[1]), false, "now"));
            Staging.writeAtomically(fs, staging.stagedOutput("a.safetensors"), "driver", "staged a".getBytes());
            try (OutputLock lock = OutputLock.acquire(fs, output, c[0], 120.0, quiet)) {
                // an ExplainedFailure: the command line prints its message alone (it printed an IllegalStateException's
                // class name and stack trace)
                dev.lightning.attention.job.failure.ExplainedFailure e = org.junit.jupiter.api.Assertions.assertThrows(
                        dev.lightning.attention.job.failure.ExplainedFailure.class,
                        () -> Commit.commit(fs, output, staging, java.util.List.of("a.safetensors"), java.util.List.of(),
                                java.util.List.of(), false, lock, quiet));
                assertTrue(e.getMessage().contains("nothing was published") && e.getMessage().contains(c[2]),
                        c[0] + ": " + e.getMessage());
                assertEquals(c[0].equals("files"), e.getMessage().contains("--resume"), e.getMessage());
            }
            assertEquals("the user's", Files.readString(tmp.resolve("a.safetensors")), c[0]);
        }
    }

    /**
     * The staging of a commit an earlier build wrote is kept: the warning tells the user to finish that commit with
     * that build, and the staging holds the earlier files the commit moved aside (with --overwrite) and its results
     * not yet published. The run that warned removed it right after, as an earlier run's staging.
     */
    @Test
    void anEarlierBuildsCommittedStagingIsKeptForThatBuild() throws Exception {
        FileSystem fs = FileSystem.getLocal(new Configuration());
        Path output = fs.makeQualified(new Path(tmp.toUri()));
        java.nio.file.Path staging = stagingDir("old");
        Files.createDirectories(staging.resolve("files"));
        Files.writeString(staging.resolve("files/a.safetensors"), "staged");
        Files.createDirectories(staging.resolve("replaced"));
        Files.writeString(staging.resolve("replaced/b.safetensors"), "the earlier b, moved aside");
        Files.writeString(staging.resolve(Commit.RECORD), "{\"overwrite\":true,\"files\":[\"a.safetensors\","
                + "\"b.safetensors\"]}");
        String said = recover(fs, output, 0);
        for (boolean resume : new boolean[] {false, true}) {
            dev.lightning.attention.job.config.JobConfig cfg = dev.lightning.attention.job.config.JobConfig.resolve(
                    java.util.Map.of("--input", "in", "--output", "out", "--resume", Boolean.toString(resume)),
                    java.util.Map.of(), k -> null);
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            Staging chosen = new OutputDirectory(cfg, fs, output, new PrintStream(bytes, true, StandardCharsets.UTF_8))
                    .chooseStaging(new com.fasterxml.jackson.databind.ObjectMapper().readTree("{}"), "new" + resume,
                            java.time.Instant.now());
            assertEquals("new" + resume, Staging.runIdOf(chosen.path()), "neither resumed nor refused");
            assertEquals("the earlier b, moved aside", Files.readString(staging.resolve("replaced/b.safetensors")),
                    bytes.toString(StandardCharsets.UTF_8));
            assertEquals("staged", Files.readString(staging.resolve("files/a.safetensors")));
            Commit.removeStaging(fs, output, chosen.path()); // this run's, out of the way of the next
        }
        assertTrue(said.contains("this build keeps that run's staging") && said.contains("lightning-old"), said);
    }

    /**
     * A staging's records carry their build's format (FormatVersion): run.json and the commit record. A later
     * build's (either record) is refused by the next run, naming the file, its format and the formats this build
     * reads, before that run finishes, resumes or removes any run's staging: this build's own interrupted commit
     * beside it stays as it was until the later build's staging is out of the way. Records without the key (the
     * earlier builds' of the tests above) are read as before.
     */
    @Test
    void aLaterBuildsStagingIsRefusedBeforeAnyCommitIsFinished() throws Exception {
        FileSystem fs = FileSystem.getLocal(new Configuration());
        Path output = fs.makeQualified(new Path(tmp.toUri()));
        com.fasterxml.jackson.databind.ObjectMapper json = new com.fasterxml.jackson.databind.ObjectMapper();
        PrintStream quiet = new PrintStream(new ByteArrayOutputStream());
        Staging mine = new Staging(output, "mine", false);
        Staging.writeAtomically(fs, mine.runFile(), "driver", RunInfo.encode(json.readTree("{}"), false, "now"));
        Staging.writeAtomically(fs, mine.stagedOutput("a.safetensors"), "driver", "staged a".getBytes());
        Staging.writeAtomically(fs, mine.stagedOutput("b.safetensors"), "driver", "staged b".getBytes());
        mine.stageReport(fs, json.createObjectNode());
        // stopped after its commit point and its first file: its record stays for the next run
        System.setProperty("lightning.test.failAt", "commit:1");
        dev.lightning.attention.job.exec.FaultPoints.newRun();
        try (OutputLock lock = OutputLock.acquire(fs, output, "mine", 120.0, quiet)) {
            org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class, () -> Commit.commit(fs, output,
                    mine, java.util.List.of("a.safetensors", "b.safetensors"), java.util.List.of(), java.util.List.of(),
                    false, lock, quiet));
        } finally {
            System.clearProperty("lightning.test.failAt");
        }
        java.nio.file.Path staged = tmp.resolve("_temporary/lightning-mine");
        assertEquals(1, json.readTree(staged.resolve("run.json").toFile()).path("format_version").asInt());
        assertEquals(1, json.readTree(staged.resolve(Commit.RECORD).toFile()).path("format_version").asInt());
        assertTrue(Files.exists(tmp.resolve("a.safetensors")) && !Files.exists(tmp.resolve("b.safetensors")));

        java.nio.file.Path later = stagingDir("zz-later"); // listed after this build's: refused all the same
        String run = Files.readString(later.resolve("run.json"));
        assertTrue(run.contains("\"format_version\":1"), run);
        Files.writeString(later.resolve("run.json"), run.replace("\"format_version\":1", "\"format_version\":2"));
        String record = "{\"overwrite\":false,\"files\":[],\"replaces\":[],\"inPlace\":[],\"format_version\":2,"
                + "\"complete\":true}";
        for (String refused : new String[] {"run.json", Commit.RECORD}) {
            if (refused.equals(Commit.RECORD)) {
                Files.writeString(later.resolve("run.json"), run);
                Files.writeString(later.resolve(Commit.RECORD), record);
            }
            dev.lightning.attention.tensor.InvalidInputException e = org.junit.jupiter.api.Assertions.assertThrows(
                    dev.lightning.attention.stream.FormatVersion.TooNew.class, () -> recover(fs, output, 0));
            assertTrue(e.getMessage().startsWith(new Path(output, "_temporary/lightning-zz-later/" + refused)
                    + ": format_version 2: written by a later build") && e.getMessage().contains("this build reads "
                    + "format 1"), e.getMessage());
            assertFalse(Files.exists(tmp.resolve("b.safetensors")), "this build's commit is not finished meanwhile");
            assertTrue(Files.exists(staged.resolve(Commit.RECORD)) && Files.exists(later.resolve("run.json")));
        }
        Staging.removeTree(fs, new Path(later.toUri()));
        recover(fs, output, 1);
        assertEquals("staged b", Files.readString(tmp.resolve("b.safetensors")));
    }

    /** The staging directory of run {@code id}, with the run.json every run writes there first. */
    private java.nio.file.Path stagingDir(String id) throws Exception {
        java.nio.file.Path dir = Files.createDirectories(tmp.resolve("_temporary/lightning-" + id));
        Files.write(dir.resolve("run.json"), RunInfo.encode(
                new com.fasterxml.jackson.databind.ObjectMapper().readTree("{}"), true, "2026-12-01T00:00:00Z"));
        return dir;
    }

    /** What Commit.recover says, having checked how many runs it finished. */
    private static String recover(FileSystem fs, Path output, int finished) throws Exception {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (PrintStream out = new PrintStream(bytes, true, StandardCharsets.UTF_8)) {
            assertEquals(finished, Commit.recover(fs, output, out).size());
        }
        return bytes.toString(StandardCharsets.UTF_8);
    }
}
