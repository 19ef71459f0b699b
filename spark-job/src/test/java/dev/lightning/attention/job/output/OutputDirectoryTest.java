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
}
