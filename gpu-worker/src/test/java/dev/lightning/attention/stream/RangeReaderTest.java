package dev.lightning.attention.stream;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.FileOutputStream;
import java.io.OutputStream;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * Reads into buffers (a local file's channel, in parallel parts for large reads; any other reader
 * through bounded heap copies) and writes from them, held against the file's bytes.
 */
class RangeReaderTest {
    @TempDir
    Path tmp;

    private byte[] file(Path p, int size) throws Exception {
        byte[] bytes = new byte[size];
        new SplittableRandom(size).nextBytes(bytes);
        Files.write(p, bytes);
        return bytes;
    }

    /** Ranges below and above the parallel threshold, at odd positions, into heap and direct buffers at odd offsets. */
    @Test
    void channelReadsGiveTheFilesBytes() throws Exception {
        Path p = tmp.resolve("data.bin");
        byte[] bytes = file(p, 13 * (1 << 20) + 4097);
        int[][] ranges = {{0, 1}, {7, 4095}, {1, 5 * (1 << 20) + 3}, {12345, 13 * (1 << 20) - 12345 + 4097},
                {4096, LocalReads.PARALLEL_BYTES}, {bytes.length - 1, 1}};
        try (FileChannel c = FileChannel.open(p, StandardOpenOption.READ)) {
            // this machine's parts, and parts on 5 threads whatever its cores
            for (RangeReader in : new RangeReader[] {RangeReader.of(c), new LocalReads(c, 5)}) {
                for (int[] r : ranges) {
                    for (boolean direct : new boolean[] {false, true}) {
                        ByteBuffer whole = direct ? ByteBuffer.allocateDirect(r[1] + 9) : ByteBuffer.allocate(r[1] + 9);
                        whole.position(5).limit(5 + r[1]);
                        ByteBuffer dst = whole.slice();
                        in.readFully(r[0], dst);
                        assertEquals(r[1], dst.position(), "the buffer ends at its limit");
                        byte[] got = new byte[r[1]];
                        dst.flip();
                        dst.get(got);
                        assertArrayEquals(Arrays.copyOfRange(bytes, r[0], r[0] + r[1]), got,
                                "range " + r[0] + "+" + r[1] + (direct ? " direct" : " heap"));
                    }
                    byte[] arr = new byte[r[1] + 3];
                    in.readFully(r[0], arr, 2, r[1]);
                    assertArrayEquals(Arrays.copyOfRange(bytes, r[0], r[0] + r[1]), Arrays.copyOfRange(arr, 2, 2 + r[1]));
                }
                assertEquals(0, c.position(), "positioned reads leave the channel's position");
                ByteBuffer past = ByteBuffer.allocateDirect(LocalReads.PARALLEL_BYTES * 2);
                assertThrows(EOFException.class, () -> in.readFully(bytes.length - LocalReads.PARALLEL_BYTES, past));
                assertThrows(EOFException.class, () -> in.readFully(bytes.length - 3, new byte[4], 0, 4));
            }
        }
    }

    /**
     * A part on the caller's thread that fails with an unchecked exception or an error (a heap target's read runs
     * through a temporary direct buffer of the JDK's, which can fail with OutOfMemoryError) is reported only once the
     * other parts have ended: the caller then gives the buffer back, and a part still running wrote into a block
     * another task had taken. It returned at once, with the pool's parts still in the buffer.
     */
    @Test
    void anUncheckedFailureWaitsForTheOtherParts() {
        ByteBuffer target = ByteBuffer.allocateDirect(LocalReads.PARALLEL_BYTES * 2);
        for (Throwable thrown : new Throwable[] {new IllegalStateException("part 0"), new OutOfMemoryError("part 0")}) {
            java.util.concurrent.atomic.AtomicInteger ended = new java.util.concurrent.atomic.AtomicInteger();
            Throwable e = assertThrows(thrown.getClass(), () -> LocalReads.inParts(0, target.duplicate(), 4, "read",
                    (at, part) -> {
                        if (at == 0 && thrown instanceof Error x) {
                            throw x;
                        }
                        if (at == 0) {
                            throw (RuntimeException) thrown;
                        }
                        try {
                            Thread.sleep(300);
                        } catch (InterruptedException x) {
                            Thread.currentThread().interrupt();
                        }
                        ended.incrementAndGet();
                        return null;
                    }));
            assertEquals(thrown, e);
            assertEquals(3, ended.get(), "parts of 4 (8 MiB on 4 threads) that had ended when " + thrown
                    + " was reported");
        }
    }

    /** A reader of arrays only (Hadoop's local streams, the synthetic sequences) fills direct buffers in bounded copies. */
    @Test
    void arrayReadersFillDirectBuffersInChunks() throws Exception {
        Path p = tmp.resolve("chunks.bin");
        byte[] bytes = file(p, 3 * RangeReader.COPY_CHUNK + 777);
        try (RandomAccessFile raf = new RandomAccessFile(p.toFile(), "r")) {
            int[] calls = new int[1];
            int[] largest = new int[1];
            RangeReader in = (position, buf, off, len) -> {
                calls[0]++;
                largest[0] = Math.max(largest[0], len);
                raf.seek(position);
                raf.readFully(buf, off, len);
            };
            int len = bytes.length - 100;
            ByteBuffer dst = ByteBuffer.allocateDirect(len);
            in.readFully(100, dst);
            assertEquals(len, dst.position());
            byte[] got = new byte[len];
            dst.flip().get(got);
            assertArrayEquals(Arrays.copyOfRange(bytes, 100, bytes.length), got);
            assertEquals(4, calls[0], "3 MiB + 677 bytes in 1 MiB copies");
            assertEquals(RangeReader.COPY_CHUNK, largest[0]);
            calls[0] = 0;
            ByteBuffer heap = ByteBuffer.allocate(len);
            in.readFully(100, heap);
            assertEquals(1, calls[0], "a heap buffer is read straight into its array");
            assertArrayEquals(got, heap.array());
        }
    }

    /** Writes from a direct buffer: through a file stream's channel (in order with the stream's own writes), or copied. */
    @Test
    void writesFromDirectBuffersKeepTheStreamsOrder() throws Exception {
        byte[] payload = new byte[2 * RangeReader.COPY_CHUNK + 12345];
        new SplittableRandom(5).nextBytes(payload);
        ByteBuffer direct = ByteBuffer.allocateDirect(payload.length);
        direct.put(payload).flip();
        Path p = tmp.resolve("out.bin");
        try (OutputStream out = new FileOutputStream(p.toFile())) {
            out.write(new byte[] {1, 2, 3});
            PieceWork.write(out, direct.duplicate());
            out.write(new byte[] {4});
        }
        ByteArrayOutputStream want = new ByteArrayOutputStream();
        want.write(new byte[] {1, 2, 3});
        want.write(payload);
        want.write(4);
        assertArrayEquals(want.toByteArray(), Files.readAllBytes(p));
        ByteArrayOutputStream copied = new ByteArrayOutputStream();
        ByteBuffer src = direct.duplicate();
        PieceWork.write(copied, src);
        assertEquals(src.limit(), src.position());
        assertArrayEquals(payload, copied.toByteArray());
        ByteArrayOutputStream heap = new ByteArrayOutputStream();
        PieceWork.write(heap, ByteBuffer.wrap(payload, 10, 100));
        assertArrayEquals(Arrays.copyOfRange(payload, 10, 110), heap.toByteArray());
    }
}
