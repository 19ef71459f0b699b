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
 */
public final class LocalWrites {
    /** Most threads one write uses, the caller's included: those of a read. */
    static final int THREADS = LocalReads.THREADS;
    /**
     * {@code -Dlightning.writes=mapped} (an experiment, off by default): off-heap parts are copied
     * into a shared mapping of their range instead of written, so that parts of one file fill the
     * page cache side by side (positioned writes to one file wait for each other on the file's
     * lock in Linux's local file systems; page faults do not). Needs a channel open for reading
     * too; a part that cannot be mapped is written.
     */
    static final boolean MAPPED = "mapped".equals(System.getProperty("lightning.writes", "pwrite"));

    private LocalWrites() {
    }

    /**
     * Writes {@code src}'s remaining bytes at {@code position} of {@code channel} (its own position
     * untouched); {@code src}'s position ends at its limit. Returns the CRC32C of the bytes.
     */
    public static int write(FileChannel channel, long position, ByteBuffer src) throws IOException {
        return write(channel, position, src, THREADS, MAPPED);
    }

    /** {@link #write(FileChannel, long, ByteBuffer)} on at most {@code threads} threads (tests: parts on any machine). */
    static int write(FileChannel channel, long position, ByteBuffer src, int threads) throws IOException {
        return write(channel, position, src, threads, MAPPED);
    }

    /** ... and through mappings when {@code mapped} ({@link #MAPPED}). */
    static int write(FileChannel channel, long position, ByteBuffer src, int threads, boolean mapped)
            throws IOException {
        int crc = 0;
        for (long[] part : LocalReads.inParts(position, src, threads, "write", (at, part) -> {
            int n = part.remaining(); // before the write consumes it
            return new long[] {writePart(channel, at, part, mapped), n};
        })) {
            crc = Crc32c.combine(crc, (int) part[0], part[1]);
        }
        return crc;
    }

    /** The CRC32C of {@code b}'s remaining bytes, then those bytes written (or copied into a mapping) at {@code position}. */
    private static int writePart(FileChannel channel, long position, ByteBuffer b, boolean mapped) throws IOException {
        CRC32C crc = new CRC32C();
        crc.update(b.duplicate());
        if (mapped && b.isDirect() && b.remaining() >= LocalReads.MIN_PART_BYTES) {
            java.nio.MappedByteBuffer m;
            try {
                m = channel.map(FileChannel.MapMode.READ_WRITE, position, b.remaining());
            } catch (java.nio.channels.NonReadableChannelException e) {
                m = null; // a write-only channel: written below
            }
            if (m != null) {
                m.put(b);
                unmap(m);
                return (int) crc.getValue();
            }
        }
        long at = position;
        while (b.hasRemaining()) {
            at += channel.write(b, at);
        }
        return (int) crc.getValue();
    }

    /** sun.misc.Unsafe's invokeCleaner, which unmaps a mapping now; null where it is missing (then the collector does). */
    private static final java.lang.invoke.MethodHandle UNMAP = unmapper();

    private static java.lang.invoke.MethodHandle unmapper() {
        try {
            Class<?> unsafe = Class.forName("sun.misc.Unsafe");
            java.lang.reflect.Field f = unsafe.getDeclaredField("theUnsafe");
            f.setAccessible(true);
            return java.lang.invoke.MethodHandles.lookup()
                    .findVirtual(unsafe, "invokeCleaner", java.lang.invoke.MethodType.methodType(void.class, ByteBuffer.class))
                    .bindTo(f.get(null));
        } catch (ReflectiveOperationException | RuntimeException e) {
            return null;
        }
    }

    /** Unmaps {@code m} now: a mapping held until the collector runs keeps its range's address space and file open. */
    private static void unmap(java.nio.MappedByteBuffer m) {
        if (UNMAP != null) {
            try {
                UNMAP.invokeExact((ByteBuffer) m);
            } catch (Throwable e) {
                // left to the collector
            }
        }
    }

}
