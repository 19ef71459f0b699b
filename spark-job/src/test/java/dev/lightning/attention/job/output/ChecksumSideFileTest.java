package dev.lightning.attention.job.output;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * README "How results are published": a result replaced with --overwrite, where the earlier file of its name was
 * written through Hadoop's LocalFileSystem (hadoop fs -put or -cp, a Spark job), which keeps a checksum side file
 * {@code .NAME.crc} beside it. The job writes through the raw local file system and made no new side file, so the
 * old one stayed, describing the replaced bytes, and Spark (spark.read.format("binaryFile"), sc.binaryFiles) and
 * hadoop fs, which read {@code file:} paths through LocalFileSystem, refused the published result with a
 * ChecksumException.
 */
class ChecksumSideFileTest {
    @TempDir
    java.nio.file.Path tmp;

    @Test
    void aReplacedResultIsReadableThroughHadoopsLocalFileSystem() throws Exception {
        RawLocalFileSystem fs = new RawLocalFileSystem();
        fs.initialize(java.net.URI.create("file:///"), new Configuration());
        LocalFileSystem checked = FileSystem.getLocal(new Configuration());
        Path output = new Path(tmp.toUri().toString() + "/out");
        fs.mkdirs(output);
        Path published = new Path(output, "a.safetensors");
        try (FSDataOutputStream old = checked.create(published)) { // with its side file, as hadoop fs -put leaves it
            old.write("the earlier result".getBytes(StandardCharsets.UTF_8));
        }
        assertTrue(Files.exists(tmp.resolve("out").resolve(".a.safetensors.crc")));

        byte[] result = "this run's result, other bytes".getBytes(StandardCharsets.UTF_8);
        Staging staging = new Staging(output, "crc", false);
        fs.mkdirs(staging.path());
        Staging.writeAtomically(fs, staging.runFile(), "driver",
                RunInfo.encode(new ObjectMapper().createObjectNode(), true, "now"));
        Staging.writeAtomically(fs, staging.stagedOutput("a.safetensors"), "driver", result);
        staging.stageReport(fs, new ObjectMapper().createObjectNode());
        PrintStream quiet = new PrintStream(new ByteArrayOutputStream());
        try (OutputLock lock = OutputLock.acquire(fs, output, "crc", 120, quiet)) {
            Commit.commit(fs, output, staging, List.of("a.safetensors"), List.of(), List.of(), true, lock, quiet);
        }

        assertArrayEquals(result, Files.readAllBytes(tmp.resolve("out").resolve("a.safetensors")));
        try (FSDataInputStream in = checked.open(published)) { // ChecksumException with the stale side file
            assertArrayEquals(result, in.readAllBytes(), "Hadoop's local file system reads the published bytes");
        }
        try (FSDataInputStream in = checked.open(new Path(output, Commit.REPORT))) {
            assertTrue(in.readAllBytes().length > 0);
        }
    }
}
