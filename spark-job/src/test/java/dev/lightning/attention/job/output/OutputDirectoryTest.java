package dev.lightning.attention.job.output;

import dev.lightning.attention.job.config.JobConfig;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FilterFileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.util.Progressable;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.net.URI;
import java.nio.file.Files;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The output directory a run claims: created, locked, and left as it was found when the run ends or fails to start. */
class OutputDirectoryTest {
    @TempDir
    java.nio.file.Path tmp;

    private final PrintStream quiet = new PrintStream(new ByteArrayOutputStream());

    /**
     * A file system outside the local one's lock path (its scheme is not "file") whose disk is
     * full: a directory can be made, a file cannot be written.
     */
    static class FullDiskFs extends FilterFileSystem {
        FullDiskFs() throws IOException {
            super(new RawLocalFileSystem());
            fs.initialize(URI.create("file:///"), new Configuration());
        }

        @Override
        public URI getUri() {
            return URI.create("fulldisk:///");
        }

        @Override
        public Path makeQualified(Path path) {
            return path;
        }

        @Override
        protected void checkPath(Path path) {
        }

        @Override
        public FSDataOutputStream create(Path f, FsPermission permission, boolean overwrite, int bufferSize,
                                         short replication, long blockSize, Progressable progress) throws IOException {
            throw new IOException("No space left on device");
        }
    }

    private static JobConfig config() {
        return JobConfig.resolve(Map.of("--input", "in", "--output", "out"), Map.of(), k -> null);
    }

    /**
     * A run that created --output and then could not take its lock (here a full disk) removes the
     * directory again: a failed start leaves no empty output directory behind.
     */
    @Test
    void anOutputCreatedForARunWhoseLockFailsIsRemoved() throws Exception {
        java.nio.file.Path dir = tmp.resolve("new-output");
        Path output = new Path(dir.toUri().getPath());
        OutputDirectory outputs = new OutputDirectory(config(), new FullDiskFs(), output, quiet);
        IOException e = assertThrows(IOException.class, () -> outputs.claim("run-1"));
        assertTrue(e.getMessage().contains("No space left"), e.getMessage());
        assertFalse(Files.exists(dir), "the directory the run created is gone");
    }

    /** An output directory that was there before the run stays, empty or not; one the run created goes when left empty. */
    /** An --output that is a file is refused, left as it was, with what to give instead (it said only what it expected). */
    @Test
    void anOutputThatIsAFileSaysWhatToGive() throws Exception {
        org.apache.hadoop.fs.FileSystem local = org.apache.hadoop.fs.FileSystem.getLocal(new Configuration());
        java.nio.file.Path file = Files.writeString(tmp.resolve("results.safetensors"), "a user's");
        String m = assertThrows(dev.lightning.attention.tensor.InvalidInputException.class,
                () -> new OutputDirectory(config(), local, local.makeQualified(new Path(file.toUri())), quiet)
                        .claim("run-1")).getMessage();
        assertTrue(m.contains("is a file, expected a directory") && m.contains("give the directory's path"), m);
        assertEquals("a user's", Files.readString(file));
    }

    @Test
    void aClaimLeavesTheDirectoryAsItFoundIt() throws Exception {
        org.apache.hadoop.fs.FileSystem local = org.apache.hadoop.fs.FileSystem.getLocal(new Configuration());
        java.nio.file.Path existing = Files.createDirectory(tmp.resolve("existing"));
        try (OutputDirectory.Claim claim = new OutputDirectory(config(), local,
                local.makeQualified(new Path(existing.toUri())), quiet).claim("run-2")) {
            assertTrue(claim.lock.held());
        }
        assertTrue(Files.isDirectory(existing), "a directory the run did not create stays");
        assertEquals(0, Files.list(existing).count(), "the lock is given back");

        java.nio.file.Path created = tmp.resolve("created");
        try (OutputDirectory.Claim claim = new OutputDirectory(config(), local,
                local.makeQualified(new Path(created.toUri())), quiet).claim("run-3")) {
            assertTrue(Files.isDirectory(created));
        }
        assertFalse(Files.exists(created), "a directory the run created and left empty goes");
        // a run that did not create the directory cannot remove it when its lock fails: a live run holds it
        java.nio.file.Path held = Files.createDirectory(tmp.resolve("held"));
        Path heldPath = local.makeQualified(new Path(held.toUri()));
        try (OutputDirectory.Claim first = new OutputDirectory(config(), local, heldPath, quiet).claim("run-4")) {
            assertThrows(dev.lightning.attention.tensor.InvalidInputException.class,
                    () -> new OutputDirectory(config(), local, heldPath, quiet).claim("run-5"));
            assertTrue(first.lock.held(), "the first run keeps its lock and directory");
        }
    }

    /**
     * --resume keeps only work staged in this build's staging format: a run.json of a build from
     * before formats were recorded (no "format", as such builds wrote it) or of another format is
     * refused in one line that says so and what to do, even where its fingerprint equals this run's
     * (its files would be taken, and they hold the other build's numbers); this build's own
     * staging with the same fingerprint is resumed.
     */
    @Test
    void resumeKeepsOnlyWorkStagedInThisBuildsFormat() throws Exception {
        org.apache.hadoop.fs.FileSystem local = org.apache.hadoop.fs.FileSystem.getLocal(new Configuration());
        JobConfig resume = JobConfig.resolve(Map.of("--input", "in", "--output", "out", "--resume", "true"), Map.of(),
                k -> null);
        com.fasterxml.jackson.databind.ObjectMapper json = new com.fasterxml.jackson.databind.ObjectMapper();
        com.fasterxml.jackson.databind.JsonNode fingerprint = json.readTree("{\"settings\": {\"a\": \"1\"}}");
        java.nio.file.Path dir = Files.createDirectories(tmp.resolve("out"));
        Path output = local.makeQualified(new Path(dir.toUri()));
        java.nio.file.Path runJson = Files.createDirectories(dir.resolve("_temporary/lightning-old")).resolve("run.json");

        Files.writeString(runJson, "{\"fingerprint\": {\"settings\": {\"a\": \"1\"}}, \"createdParent\": true, "
                + "\"started\": \"2026-12-01T00:00:00Z\"}");
        dev.lightning.attention.tensor.InvalidInputException e = assertThrows(
                dev.lightning.attention.tensor.InvalidInputException.class,
                () -> new OutputDirectory(resume, local, output, quiet).chooseStaging(fingerprint, "new",
                        java.time.Instant.now()));
        assertTrue(e.getMessage().startsWith("--resume: the interrupted run in ") && e.getMessage().contains(
                "/_temporary/lightning-old was staged by another build of lightning (staging format not recorded")
                && e.getMessage().contains(
                "this build stages " + Staging.FORMAT) && e.getMessage().contains("rerun without --resume"),
                e.getMessage());
        assertFalse(e.getMessage().contains("\n"), "one line");

        Files.writeString(runJson, "{\"format\": \"lightning-staging-0\", \"fingerprint\": {\"settings\": {\"a\": "
                + "\"1\"}}, \"createdParent\": true, \"started\": \"2026-12-01T00:00:00Z\"}");
        e = assertThrows(dev.lightning.attention.tensor.InvalidInputException.class,
                () -> new OutputDirectory(resume, local, output, quiet).chooseStaging(fingerprint, "new",
                        java.time.Instant.now()));
        assertTrue(e.getMessage().contains("(staging format lightning-staging-0; this build stages " + Staging.FORMAT
                + ")"), e.getMessage());
        assertTrue(Files.exists(runJson), "a refused resume removes nothing");

        // this build's staging format, another build's engine code (a fix of pass 1 between them): its numbers are not kept
        String other = "0123456789abcdef0123456789abcdef";
        assertNotEquals(other, dev.lightning.attention.engine.EngineBuild.digest());
        Files.writeString(runJson, "{\"format\": \"" + Staging.FORMAT + "\", \"engine\": \"" + other + "\", "
                + "\"fingerprint\": {\"settings\": {\"a\": \"1\"}}, \"createdParent\": true, \"started\": "
                + "\"2026-12-01T00:00:00Z\"}");
        e = assertThrows(dev.lightning.attention.tensor.InvalidInputException.class,
                () -> new OutputDirectory(resume, local, output, quiet).chooseStaging(fingerprint, "new",
                        java.time.Instant.now()));
        assertTrue(e.getMessage().contains("whose engine code differs from this one's (engine " + other
                + "; this build's " + dev.lightning.attention.engine.EngineBuild.digest() + ")")
                && e.getMessage().contains("rerun without --resume"), e.getMessage());
        assertFalse(e.getMessage().contains("\n"), "one line");
        assertTrue(Files.exists(runJson), "a refused resume removes nothing");

        Files.write(runJson, RunInfo.encode(fingerprint, true, "2026-12-01T00:00:00Z"));
        Staging staging = new OutputDirectory(resume, local, output, quiet).chooseStaging(fingerprint, "new",
                java.time.Instant.now());
        assertTrue(staging.resume);
        assertEquals("old", Staging.runIdOf(staging.path()));
    }

    /**
     * A run removes _temporary with its staging only where it made _temporary itself: one that was there before the
     * run (another tool's, or a user's, empty by the end) stays, as the output directory itself does; one the run
     * made goes once empty.
     */
    @Test
    void aStagingParentThatWasThereBeforeTheRunStays() throws Exception {
        org.apache.hadoop.fs.FileSystem local = org.apache.hadoop.fs.FileSystem.getLocal(new Configuration());
        com.fasterxml.jackson.databind.JsonNode fingerprint = new com.fasterxml.jackson.databind.ObjectMapper()
                .readTree("{\"settings\": {\"a\": \"1\"}}");
        java.nio.file.Path before = Files.createDirectories(tmp.resolve("before").resolve(Staging.PARENT));
        Path output = local.makeQualified(new Path(before.getParent().toUri()));
        Staging staging = new OutputDirectory(config(), local, output, quiet).chooseStaging(fingerprint, "r1",
                java.time.Instant.now());
        assertTrue(local.exists(staging.path()));
        Commit.removeStaging(local, output, staging.path());
        assertFalse(local.exists(staging.path()), "the run's staging goes");
        assertTrue(Files.isDirectory(before), "the _temporary that was there before the run stays");

        java.nio.file.Path fresh = Files.createDirectories(tmp.resolve("fresh"));
        Path freshOutput = local.makeQualified(new Path(fresh.toUri()));
        Staging made = new OutputDirectory(config(), local, freshOutput, quiet).chooseStaging(fingerprint, "r2",
                java.time.Instant.now());
        Commit.removeStaging(local, freshOutput, made.path());
        assertFalse(Files.exists(fresh.resolve(Staging.PARENT)), "the _temporary the run made goes with it");
    }

    /**
     * A run removed every {@code _temporary/lightning-*} directory as an earlier run's staging, and finished the commit
     * of any that held a commit record: one made by hand (a user's notes) was deleted, and through a symbolic link of
     * that name the run read a record and moved files from wherever the link led. Only a real directory holding
     * run.json (which a run writes there first and removes last), or nothing but run.json's partial file, is a
     * run's; the others are left alone, with a warning.
     */
    @Test
    void aStagingDirectoryNoRunMadeIsLeftAlone() throws Exception {
        java.nio.file.Path dir = Files.createDirectories(tmp.resolve("out"));
        org.apache.hadoop.fs.FileSystem raw = dev.lightning.attention.job.hadoop.HadoopPaths.fileSystem(
                new Path(dir.toUri()), new Configuration());
        Path output = raw.makeQualified(new Path(dir.toUri()));
        java.nio.file.Path parent = dir.resolve(Staging.PARENT);
        java.nio.file.Path notes = Files.createDirectories(parent.resolve("lightning-mine")).resolve("notes.txt");
        Files.writeString(notes, "the user's notes");
        java.nio.file.Path elsewhere = Files.createDirectories(tmp.resolve("elsewhere/files"));
        Files.writeString(elsewhere.resolve("a.safetensors"), "the user's a");
        Files.writeString(elsewhere.resolveSibling(Commit.RECORD), "{\"overwrite\":true,\"files\":[\"a.safetensors\"],"
                + "\"replaces\":[],\"inPlace\":[],\"complete\":true}");
        Files.writeString(elsewhere.resolveSibling("run.json"), "{}");
        java.nio.file.Path link = Files.createSymbolicLink(parent.resolve("lightning-link"), elsewhere.getParent());
        java.nio.file.Path killed = Files.createDirectories(parent.resolve("lightning-killed"));
        Files.writeString(killed.resolve(".run.json.inprogress-driver"), "{\"fing");
        java.nio.file.Path empty = Files.createDirectories(parent.resolve("lightning-empty"));
        java.nio.file.Path earlier = Files.createDirectories(parent.resolve("lightning-earlier/done"));
        Files.write(earlier.resolveSibling("run.json"), RunInfo.encode(
                new com.fasterxml.jackson.databind.ObjectMapper().readTree("{}"), false, "2026-12-01T00:00:00Z"));
        Files.writeString(earlier.resolve("u.json"), "{}");

        assertEquals(0, Commit.recover(raw, output, quiet).size(), "no commit finished through the link");
        assertFalse(Files.exists(dir.resolve("a.safetensors")));
        ByteArrayOutputStream said = new ByteArrayOutputStream();
        new OutputDirectory(config(), raw, output, new PrintStream(said, true)).chooseStaging(
                new com.fasterxml.jackson.databind.ObjectMapper().readTree("{}"), "new", java.time.Instant.now());
        String log = said.toString();
        assertEquals("the user's notes", Files.readString(notes), log);
        assertTrue(Files.isSymbolicLink(link), log);
        assertEquals("the user's a", Files.readString(elsewhere.resolve("a.safetensors")));
        assertTrue(log.contains("warning: leaving ") && log.contains("/_temporary/lightning-mine alone: no run of "
                + "lightning staged it (it holds no run.json") && log.contains("/_temporary/lightning-link alone: no run "
                + "of lightning staged it (it is a symbolic link"), log);
        assertFalse(Files.exists(killed), "a run killed as it started: " + log);
        assertFalse(Files.exists(empty), log);
        assertFalse(Files.exists(earlier.getParent()), "an earlier run's staging: " + log);
    }
    /**
     * The staging of an interrupted table run is removed without the remark that --resume would have continued it:
     * a table run keeps no finished work and refuses --resume, so the remark sent the user to an option that is
     * refused. A files run's staging keeps it.
     */
    @Test
    void removingATableRunsStagingDoesNotOfferResume() throws Exception {
        java.nio.file.Path dir = Files.createDirectories(tmp.resolve("out"));
        org.apache.hadoop.fs.FileSystem raw = dev.lightning.attention.job.hadoop.HadoopPaths.fileSystem(
                new Path(dir.toUri()), new Configuration());
        Path output = raw.makeQualified(new Path(dir.toUri()));
        com.fasterxml.jackson.databind.ObjectMapper json = new com.fasterxml.jackson.databind.ObjectMapper();
        java.nio.file.Path parent = dir.resolve(Staging.PARENT);
        Files.write(Files.createDirectories(parent.resolve("lightning-tables")).resolve("run.json"),
                RunInfo.encode(json.readTree("{\"format\": \"parquet\", \"settings\": {}}"), true,
                        "2026-12-01T00:00:00Z"));
        Files.write(Files.createDirectories(parent.resolve("lightning-files")).resolve("run.json"),
                RunInfo.encode(json.readTree("{\"settings\": {}}"), true, "2026-12-01T00:00:00Z"));
        ByteArrayOutputStream said = new ByteArrayOutputStream();
        new OutputDirectory(config(), raw, output, new PrintStream(said, true)).chooseStaging(
                json.readTree("{}"), "new", java.time.Instant.now());
        String log = said.toString();
        assertTrue(log.contains("removing the staging of earlier run tables\n"), log);
        assertTrue(log.contains("removing the staging of earlier run files (--resume would have continued it)"), log);
    }
}
