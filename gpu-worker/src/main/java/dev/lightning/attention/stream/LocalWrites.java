package dev.lightning.attention.stream;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.util.zip.CRC32C;

/**
 * Positioned writes of a local file from any buffer, with the CRC32C of the bytes written (what a
 * piece's marker records): the write side of {@link LocalReads}. An off-heap buffer (a window's o
 * in the GPU backend's registered host tensors) is handed to the kernel as it is: no heap copy,
 * and none of the JDK's own copy into a temporary direct buffer, which a heap array's channel
 * write makes. Writes of {@link LocalReads#PARALLEL_BYTES} or more run in parts on the pool that
 * reads use, the caller's thread writing the first part; each part's CRC is computed on its thread
 * (from the buffer, before the write) and the parts' CRCs are combined ({@link Crc32c#combine}),
 * so the CRC costs no extra pass on one thread. A call returns once every part has ended, so no
 * part still reads the source after a failure is reported.
 *
 * <p>Parts of one file do not write side by side in the page cache: Linux's local file systems
 * take the file's lock for each buffered write. On the H200 machine (ext4, 16 cores) 1 GiB into
 * one new file took 3.2 GB/s on 8 threads, 2.4 GB/s as one write and 2.0 GB/s the old way (heap
 * copies); copies into shared mappings of the parts' ranges 3.0 GB/s; 8 files of their own
 * 16 GB/s (BENCHMARKS.md, "The job itself on the H200 at H = 64").
 */
public final class LocalWrites {
    /** Most threads one write uses, the caller's included: those of a read. */
    static final int THREADS = LocalReads.THREADS;

    private LocalWrites() {
    }

    /**
     * Writes {@code src}'s remaining bytes at {@code position} of {@code channel} (its own position
     * untouched); {@code src}'s position ends at its limit. Returns the CRC32C of the bytes.
     */
    public static int write(FileChannel channel, long position, ByteBuffer src) throws IOException {
        return write(channel, position, src, THREADS);
    }

    /** {@link #write(FileChannel, long, ByteBuffer)} on at most {@code threads} threads (tests: parts on any machine). */
    static int write(FileChannel channel, long position, ByteBuffer src, int threads) throws IOException {
        int crc = 0;
        for (long[] part : LocalReads.inParts(position, src, threads, "write", (at, part) -> {
            int n = part.remaining(); // before the write consumes it
            return new long[] {writePart(channel, at, part), n};
        })) {
            crc = Crc32c.combine(crc, (int) part[0], part[1]);
        }
        return crc;
    }

    /** The CRC32C of {@code b}'s remaining bytes, then those bytes written at {@code position}. */
    private static int writePart(FileChannel channel, long position, ByteBuffer b) throws IOException {
        CRC32C crc = new CRC32C();
        crc.update(b.duplicate());
        long at = position;
        while (b.hasRemaining()) {
            at += channel.write(b, at);
        }
        return (int) crc.getValue();
    }
}
