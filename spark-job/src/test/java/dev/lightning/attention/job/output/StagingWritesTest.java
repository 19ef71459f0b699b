package dev.lightning.attention.job.output;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.channels.WritableByteChannel;
import java.nio.file.Files;
import java.util.SplittableRandom;
import java.util.zip.CRC32C;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A staged file written atomically records the size and CRC32C of the bytes that end up in it,
 * whichever way they reach the file: on the local file system a window's off-heap o goes through
 * the stream's channel side (PositionedOutput, in parallel parts when large), elsewhere through
 * the stream; both ways give the same file and the same record, and no temporary file is left.
 */
class StagingWritesTest {
    @TempDir
    java.nio.file.Path tmp;

    @Test
    void localAndStreamWritesRecordTheFilesBytes() throws Exception {
        byte[] head = new byte[1001];
        byte[] body = new byte[9 * (1 << 20) + 77]; // above the parallel threshold
        new SplittableRandom(3).nextBytes(head);
        new SplittableRandom(4).nextBytes(body);
        byte[] all = new byte[head.length + body.length + head.length];
        System.arraycopy(head, 0, all, 0, head.length);
        System.arraycopy(body, 0, all, head.length, body.length);
        System.arraycopy(head, 0, all, head.length + body.length, head.length);
        CRC32C crc = new CRC32C();
        crc.update(all);

        RawLocalFileSystem raw = new RawLocalFileSystem();
        raw.initialize(java.net.URI.create("file:///"), new Configuration());
        LocalFileSystem checked = FileSystem.getLocal(new Configuration()); // not raw: the stream path
        for (FileSystem fs : new FileSystem[] {raw, checked}) {
            Path dst = new Path(tmp.toUri().toString() + "/" + fs.getClass().getSimpleName() + "/sub/o.bin");
            boolean[] channel = {false};
            Staging.Written w = Staging.writeAtomically(fs, dst, "attempt-1", out -> {
                out.write(head);
                ByteBuffer direct = ByteBuffer.allocateDirect(body.length);
                direct.put(body).flip();
                if (out instanceof WritableByteChannel c) { // as PieceWork writes an off-heap window
                    channel[0] = true;
                    while (direct.hasRemaining()) {
                        c.write(direct);
                    }
                } else {
                    out.write(body);
                }
                out.write(head, 0, head.length);
            });
            String what = fs.getClass().getSimpleName();
            assertEquals(fs instanceof RawLocalFileSystem, channel[0], what + ": the local file system takes buffers");
            java.nio.file.Path file = java.nio.file.Path.of(dst.toUri());
            assertArrayEquals(all, Files.readAllBytes(file), what);
            assertEquals(all.length, w.size, what);
            assertEquals(crc.getValue(), w.crc, what);
            assertEquals(crc.getValue(), Staging.crc(fs, dst), what + ": as --resume verifies it");
            try (var left = Files.list(file.getParent())) {
                assertFalse(left.anyMatch(p -> p.getFileName().toString().contains(".inprogress-")), what);
            }
            assertTrue(Files.isRegularFile(file));
        }
    }

    /** A file system whose rename refuses to replace a file, as HDFS's does; otherwise the local one. */
    static class NoReplaceFs extends org.apache.hadoop.fs.FilterFileSystem {
        NoReplaceFs() throws java.io.IOException {
            super(new RawLocalFileSystem());
            fs.initialize(java.net.URI.create("file:///"), new Configuration());
        }

        @Override
        public boolean rename(Path src, Path dst) throws java.io.IOException {
            return !exists(dst) && super.rename(src, dst);
        }
    }

    /**
     * Two attempts of one task, the first on another backend (other bytes): where the rename does not replace the
     * first attempt's file, the second's record describes that file (what --resume verifies), not its own bytes; and a
     * write's own failure is the one thrown, not the clean-up's.
     */
    @Test
    void aSecondAttemptRecordsTheFileThatIsThereAndAFailedWriteKeepsItsCause() throws Exception {
        FileSystem fs = new NoReplaceFs();
        Path dst = new Path(tmp.toUri().toString() + "/hdfs-like/o.bin");
        byte[] first = new byte[5000];
        byte[] second = new byte[4096];
        new SplittableRandom(5).nextBytes(first);
        new SplittableRandom(6).nextBytes(second);
        Staging.writeAtomically(fs, dst, "attempt-1", out -> out.write(first));
        Staging.Written w = Staging.writeAtomically(fs, dst, "attempt-2", out -> out.write(second));
        assertArrayEquals(first, Files.readAllBytes(java.nio.file.Path.of(dst.toUri())), "the first attempt's file stays");
        CRC32C crc = new CRC32C();
        crc.update(first);
        assertEquals(first.length, w.size);
        assertEquals(crc.getValue(), w.crc, "the record of the file that is there");
        try (var left = Files.list(java.nio.file.Path.of(dst.toUri()).getParent())) {
            assertFalse(left.anyMatch(p -> p.getFileName().toString().contains(".inprogress-")));
        }

        // the write fails, and so does removing its partial file: the write's failure is thrown, the other added
        FileSystem stuck = new NoReplaceFs() {
            @Override
            public boolean delete(Path f, boolean recursive) throws java.io.IOException {
                throw new java.io.IOException("delete refused");
            }
        };
        IllegalStateException why = new IllegalStateException("the writer's own failure");
        Throwable thrown = org.junit.jupiter.api.Assertions.assertThrows(Throwable.class, () ->
                Staging.writeAtomically(stuck, new Path(tmp.toUri().toString() + "/stuck/o.bin"), "attempt-1", out -> {
                    out.write(second);
                    throw why;
                }));
        assertTrue(thrown == why, "thrown: " + thrown);
        assertEquals("delete refused", why.getSuppressed()[0].getMessage());
    }

    /**
     * --resume keeps a unit only on a marker that proves its files; a marker entry it cannot read as one a task
     * writes (damaged staging: a path that is no URI, no size or checksum) proves nothing, and the unit is computed
     * again, as for a marker that is not JSON. Such entries threw IllegalArgumentException from URI.create in the
     * task, which failed the run with a stack trace.
     */
    @Test
    void aMarkerEntryThatIsNotOneATaskWritesProvesNothing() throws Exception {
        RawLocalFileSystem fs = new RawLocalFileSystem();
        fs.initialize(java.net.URI.create("file:///"), new Configuration());
        Path output = new Path(tmp.toUri().toString() + "/out");
        Staging first = new Staging(output, "r1", false);
        fs.mkdirs(new Path(first.path(), "files"));
        fs.mkdirs(new Path(first.path(), "done")); // as the driver prepares them before the tasks
        Path file = first.stagedOutput("a.safetensors");
        Staging.Written w = Staging.writeAtomically(fs, file, "attempt-1", out -> out.write(new byte[] {1, 2, 3}));
        first.markDone(fs, "unit-0", "attempt-1", java.util.List.of(w));
        Staging resumed = new Staging(output, "r1", true);
        assertTrue(resumed.alreadyDone(fs, "unit-0"), "the marker as a task wrote it proves the unit");
        java.nio.file.Path marker = java.nio.file.Path.of(new Path(first.path(), "done/unit-0.json").toUri());
        String uri = file.toUri().toString();
        for (String entry : new String[] {
                "{\"path\": \"\", \"size\": 3, \"crc32c\": " + w.crc + "}",
                "{\"path\": \"file:/a b/\\u0000\", \"size\": 3, \"crc32c\": " + w.crc + "}",
                "{\"size\": 3, \"crc32c\": " + w.crc + "}",
                "{\"path\": \"" + uri + "\", \"crc32c\": " + w.crc + "}",
                "{\"path\": \"" + uri + "\", \"size\": 3}",
                "{\"path\": \"" + uri + "\", \"size\": 3, \"crc32c\": " + w.crc + ", \"offset\": \"x\"}",
                "7"}) {
            Files.writeString(marker, "{\"files\": [" + entry + "]}");
            assertFalse(resumed.alreadyDone(fs, "unit-0"), entry);
        }
    }

    /**
     * --resume keeps a unit only while its files hold the bytes its marker recorded: a staged file changed since
     * (one byte, the size unchanged, as a damaged disk block or a stray write would leave it) is computed again, and
     * so is a unit whose marker lists no file at all (nothing proven). Restoring the byte makes the marker hold again.
     */
    @Test
    void aStagedFileWhoseBytesChangedAtTheSameSizeIsComputedAgain() throws Exception {
        RawLocalFileSystem fs = new RawLocalFileSystem();
        fs.initialize(java.net.URI.create("file:///"), new Configuration());
        Path output = new Path(tmp.toUri().toString() + "/out");
        Staging first = new Staging(output, "r1", false);
        fs.mkdirs(new Path(first.path(), "files"));
        fs.mkdirs(new Path(first.path(), "done"));
        byte[] bytes = new byte[4099];
        new SplittableRandom(11).nextBytes(bytes);
        Path file = first.stagedOutput("b.safetensors");
        Staging.Written w = Staging.writeAtomically(fs, file, "attempt-1", out -> out.write(bytes));
        first.markDone(fs, "unit-1", "attempt-1", java.util.List.of(w));
        Staging resumed = new Staging(output, "r1", true);
        assertTrue(resumed.alreadyDone(fs, "unit-1"), "the file as the task wrote it proves the unit");

        java.nio.file.Path local = java.nio.file.Path.of(file.toUri());
        byte[] changed = bytes.clone();
        changed[2717] ^= 0x10;
        Files.write(local, changed);
        assertEquals(bytes.length, Files.size(local));
        assertFalse(resumed.alreadyDone(fs, "unit-1"), "a byte changed at the same size proves nothing");
        Files.write(local, bytes);
        assertTrue(resumed.alreadyDone(fs, "unit-1"), "the recorded bytes again");

        java.nio.file.Path marker = java.nio.file.Path.of(new Path(first.path(), "done/unit-1.json").toUri());
        Files.writeString(marker, "{\"files\": []}");
        assertFalse(resumed.alreadyDone(fs, "unit-1"), "a marker that lists no file proves nothing");
    }
}
