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

    LocalReads(FileChannel channel) {
        this.channel = java.util.Objects.requireNonNull(channel, "channel");
    }

    @Override
    public void readFully(long position, byte[] buf, int off, int len) throws IOException {
        readFully(position, ByteBuffer.wrap(buf, off, len));
    }

    @Override
    public void readFully(long position, ByteBuffer dst) throws IOException {
        int len = dst.remaining();
        int parts = THREADS <= 1 || len < PARALLEL_BYTES ? 1 : Math.min(THREADS, len / MIN_PART_BYTES);
        if (parts <= 1) {
            RangeReader.readChannel(channel, position, dst);
            return;
        }
        int start = dst.position();
        List<Future<?>> others = new ArrayList<>();
        IOException failure = null;
        try {
            for (int p = 1; p < parts; p++) {
                ByteBuffer part = part(dst, start, len, parts, p);
                long at = position + (part.position() - start);
                others.add(pool().submit(() -> {
                    RangeReader.readChannel(channel, at, part);
                    return null;
                }));
            }
            RangeReader.readChannel(channel, position, part(dst, start, len, parts, 0));
        } catch (IOException e) {
            failure = e;
        }
        boolean interrupted = false;
        for (Future<?> f : others) { // every part ends before this returns, failed or not
            while (true) {
                try {
                    f.get();
                    break;
                } catch (InterruptedException e) {
                    interrupted = true;
                } catch (ExecutionException e) {
                    IOException io = e.getCause() instanceof IOException x ? x
                            : new IOException("a parallel part of a read failed: " + e.getCause(), e.getCause());
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
                failure = new InterruptedIOException("interrupted while a read's parts ended");
            }
        }
        if (failure != null) {
            throw failure;
        }
        dst.position(start + len);
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
