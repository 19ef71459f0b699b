package dev.lightning.attention.stream;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;

/**
 * Positioned reads of one file: what a task needs from storage, and all it needs. The Spark job's
 * tasks pass a local file's channel ({@link #of(FileChannel)}) or Hadoop's
 * {@code FSDataInputStream} reads; the tests (and so the GPU check) pass a local file's.
 */
@FunctionalInterface
public interface RangeReader {
    /**
     * Bytes one bounded copy moves: a direct target is filled through a heap array of at most
     * this size when the reader has no read of its own into buffers.
     */
    int COPY_CHUNK = 1 << 20;

    /** Reads exactly {@code len} bytes at {@code position}; EOFException when the file ends first. */
    void readFully(long position, byte[] buf, int off, int len) throws IOException;

    /**
     * Reads exactly {@code dst.remaining()} bytes at {@code position} into {@code dst} from its
     * position, which ends at its limit; EOFException when the file ends first. A heap buffer is
     * read straight into its array; any other (a backend's off-heap host tensor) through a heap
     * array of at most {@link #COPY_CHUNK} bytes, unless the reader reads into buffers itself.
     */
    default void readFully(long position, ByteBuffer dst) throws IOException {
        if (dst.hasArray()) {
            readFully(position, dst.array(), dst.arrayOffset() + dst.position(), dst.remaining());
            dst.position(dst.limit());
            return;
        }
        byte[] chunk = new byte[Math.min(dst.remaining(), COPY_CHUNK)];
        long at = position;
        while (dst.hasRemaining()) {
            int len = Math.min(chunk.length, dst.remaining());
            readFully(at, chunk, 0, len);
            dst.put(chunk, 0, len);
            at += len;
        }
    }

    /** What reads into a buffer: the part of a reader that {@link #of(RangeReader, BufferReads)} replaces. */
    @FunctionalInterface
    interface BufferReads {
        void readFully(long position, ByteBuffer dst) throws IOException;
    }

    /**
     * A reader whose array reads are {@code arrays}' and whose buffer reads are {@code buffers}'
     * (Hadoop's {@code readFully(long, ByteBuffer)} on streams that have it).
     */
    static RangeReader of(RangeReader arrays, BufferReads buffers) {
        return new RangeReader() {
            @Override
            public void readFully(long position, byte[] buf, int off, int len) throws IOException {
                arrays.readFully(position, buf, off, len);
            }

            @Override
            public void readFully(long position, ByteBuffer dst) throws IOException {
                buffers.readFully(position, dst);
            }
        };
    }

    /**
     * Positioned reads of a local file through its channel, straight into any buffer (the kernel
     * copies the page cache into the target, off-heap ones included). Reads of
     * {@link LocalReads#PARALLEL_BYTES} or more run in parts on several threads: one thread
     * copies the page cache at 5 to 10 GB/s, a quarter of what a GPU's link takes. The channel
     * stays the caller's to close.
     */
    static RangeReader of(FileChannel channel) {
        return new LocalReads(channel);
    }

    /** Fills {@code dst} from {@code channel} at {@code position} on this thread; EOFException at the file's end. */
    static void readChannel(FileChannel channel, long position, ByteBuffer dst) throws IOException {
        long at = position;
        while (dst.hasRemaining()) {
            int got = channel.read(dst, at);
            if (got < 0) {
                throw new EOFException("the file ends at " + at + ", " + dst.remaining() + " bytes before the "
                        + "end of the range read from " + position);
            }
            at += got;
        }
    }
}
