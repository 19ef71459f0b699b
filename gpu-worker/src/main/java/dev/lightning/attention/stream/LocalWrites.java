package dev.lightning.attention.stream;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
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
        int len = src.remaining();
        int parts = threads <= 1 || len < LocalReads.PARALLEL_BYTES ? 1
                : Math.min(threads, len / LocalReads.MIN_PART_BYTES);
        int start = src.position();
        if (parts <= 1) {
            int crc = writePart(channel, position, src, mapped);
            src.position(start + len);
            return crc;
        }
        List<Future<Integer>> others = new ArrayList<>();
        int[] lengths = new int[parts];
        int first = 0;
        IOException failure = null;
        try {
            for (int p = 1; p < parts; p++) {
                ByteBuffer part = part(src, start, len, parts, p);
                lengths[p] = part.remaining();
                long at = position + (part.position() - start);
                others.add(LocalReads.pool().submit(() -> writePart(channel, at, part, mapped)));
            }
            ByteBuffer mine = part(src, start, len, parts, 0);
            lengths[0] = mine.remaining();
            first = writePart(channel, position, mine, mapped);
        } catch (IOException e) {
            failure = e;
        }
        int crc = first;
        boolean interrupted = false;
        for (int p = 0; p < others.size(); p++) { // every part ends before this returns, failed or not
            while (true) {
                try {
                    crc = Crc32c.combine(crc, others.get(p).get(), lengths[p + 1]);
                    break;
                } catch (InterruptedException e) {
                    interrupted = true;
                } catch (ExecutionException e) {
                    IOException io = e.getCause() instanceof IOException x ? x
                            : new IOException("a parallel part of a write failed: " + e.getCause(), e.getCause());
                    if (failure == null) {
                        failure = io;
                    } else {
                        failure.addSuppressed(io);
                    }
                    break;
                }
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
            if (failure == null) {
                failure = new InterruptedIOException("interrupted while a write's parts ended");
            }
        }
        if (failure != null) {
            throw failure;
        }
        src.position(start + len);
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

    /** Part {@code p} of {@code parts} of bytes [start, start + len) of {@code src}, cut at 4 KiB multiples. */
    private static ByteBuffer part(ByteBuffer src, int start, int len, int parts, int p) {
        int from = p == 0 ? 0 : (int) ((long) len * p / parts) & ~4095;
        int to = p == parts - 1 ? len : (int) ((long) len * (p + 1) / parts) & ~4095;
        ByteBuffer b = src.duplicate();
        b.limit(start + to).position(start + from);
        return b;
    }
}
