package dev.lightning.attention.stream;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * {@link RangeReader#of(FileChannel)}: positioned reads of a local file, large ones cut into parts
 * read on a pool of daemon threads shared by the JVM (made on first use), the caller's thread
 * reading the first part. Positioned channel reads do not move the channel's position, so parts
 * never disturb each other. A call returns once every part has ended, so no part still writes into
 * the target after a failure is reported.
 */
final class LocalReads implements RangeReader {
    /** Reads this large or larger go in parts: below, handing parts to threads costs more than it saves. */
    static final int PARALLEL_BYTES = 4 << 20;
    /** Fewest bytes of a part. */
    static final int MIN_PART_BYTES = 1 << 20;
    /** Most threads one read uses, the caller's included: half the cores (the others compute), 1 to 8. */
    static final int THREADS = Math.max(1, Math.min(8, Runtime.getRuntime().availableProcessors() / 2));

    private static volatile ExecutorService pool;

    private final FileChannel channel;
    /** Most threads one read uses ({@link #THREADS}; tests choose). */
    private final int threads;

    LocalReads(FileChannel channel) {
        this(channel, THREADS);
    }

    LocalReads(FileChannel channel, int threads) {
        this.channel = java.util.Objects.requireNonNull(channel, "channel");
        this.threads = threads;
    }

    @Override
    public void readFully(long position, byte[] buf, int off, int len) throws IOException {
        readFully(position, ByteBuffer.wrap(buf, off, len));
    }

    @Override
    public void readFully(long position, ByteBuffer dst) throws IOException {
        inParts(position, dst, threads, "read", (at, part) -> {
            RangeReader.readChannel(channel, at, part);
            return null;
        });
    }

    /** What a transfer does with one part: {@code part} (a view of the buffer's range) at file position {@code at}. */
    @FunctionalInterface
    interface PartIo<T> {
        T run(long at, ByteBuffer part) throws IOException;
    }

    /**
     * Runs {@code io} over {@code buf}'s remaining bytes, which lie at file position
     * {@code position}: in one call below {@link #PARALLEL_BYTES} or on one thread, else cut at
     * 4 KiB multiples into up to {@code threads} parts of at least {@link #MIN_PART_BYTES}, parts
     * 1.. on the pool and part 0 on the caller's thread. Returns each part's result in order,
     * once every part has ended, failed or not (no part still touches the buffer after a failure
     * is reported); the first failure is thrown with the others suppressed. {@code buf}'s position
     * ends at its limit. {@code what} names the transfer in errors.
     */
    static <T> List<T> inParts(long position, ByteBuffer buf, int threads, String what, PartIo<T> io)
            throws IOException {
        int len = buf.remaining();
        int start = buf.position();
        int parts = threads <= 1 || len < PARALLEL_BYTES ? 1 : Math.min(threads, len / MIN_PART_BYTES);
        if (parts <= 1) {
            T r = io.run(position, buf);
            buf.position(start + len);
            return java.util.Collections.singletonList(r);
        }
        List<Future<T>> others = new ArrayList<>();
        T first = null;
        IOException failure = null;
        // part 0's unchecked failure too (a heap target's read goes through a temporary direct buffer of the
        // JDK's, which can fail with OutOfMemoryError): thrown only once the parts on the pool have ended, since
        // the caller then gives the buffer back, and one still running would write into a block reused elsewhere
        Throwable unchecked = null;
        try {
            for (int p = 1; p < parts; p++) {
                ByteBuffer part = part(buf, start, len, parts, p);
                long at = position + (part.position() - start);
                others.add(pool().submit(() -> io.run(at, part)));
            }
            first = io.run(position, part(buf, start, len, parts, 0));
        } catch (IOException e) {
            failure = e;
        } catch (RuntimeException | Error e) {
            unchecked = e;
        }
        List<T> results = new ArrayList<>();
        results.add(first);
        boolean interrupted = false;
        for (Future<T> f : others) { // every part ends before this returns, failed or not
            while (true) {
                try {
                    results.add(f.get());
                    break;
                } catch (InterruptedException e) {
                    interrupted = true;
                } catch (ExecutionException e) {
                    IOException x = e.getCause() instanceof IOException c ? c
                            : new IOException("a parallel part of a " + what + " failed: " + e.getCause(), e.getCause());
                    if (failure == null) {
                        failure = x;
                    } else {
                        failure.addSuppressed(x);
                    }
                    break;
                }
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
            if (failure == null && unchecked == null) {
                failure = new InterruptedIOException("interrupted while a " + what + "'s parts ended");
            }
        }
        if (unchecked != null) {
            if (failure != null) {
                unchecked.addSuppressed(failure);
            }
            if (unchecked instanceof Error x) {
                throw x;
            }
            throw (RuntimeException) unchecked;
        }
        if (failure != null) {
            throw failure;
        }
        buf.position(start + len);
        return results;
    }

    /** Part {@code p} of {@code parts} of bytes [start, start + len) of {@code dst}, cut at 4 KiB multiples. */
    private static ByteBuffer part(ByteBuffer dst, int start, int len, int parts, int p) {
        int from = p == 0 ? 0 : (int) ((long) len * p / parts) & ~4095;
        int to = p == parts - 1 ? len : (int) ((long) len * (p + 1) / parts) & ~4095;
        ByteBuffer b = dst.duplicate();
        b.limit(start + to).position(start + from);
        return b;
    }

    /** The JVM's pool of file-transfer threads (daemons, made on first use), shared with {@link LocalWrites}. */
    static ExecutorService pool() {
        ExecutorService p = pool;
        if (p == null) {
            synchronized (LocalReads.class) {
                p = pool;
                if (p == null) {
                    p = Executors.newCachedThreadPool(r -> {
                        Thread t = new Thread(r, "lightning-file-read");
                        t.setDaemon(true);
                        return t;
                    });
                    pool = p;
                }
            }
        }
        return p;
    }
}
