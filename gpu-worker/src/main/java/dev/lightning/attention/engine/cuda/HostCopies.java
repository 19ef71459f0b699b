package dev.lightning.attention.engine.cuda;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Host copies of a slice cut into token ranges that run on several threads: the staging copies
 * between a caller's tensors (Java heap, or direct buffers the driver does not know) and the
 * pinned buffers the device copies from and to. One thread copies at 5 to 10 GB/s (a memcpy bound
 * by one core's outstanding cache misses), a quarter to a tenth of what PCIe 5 carries each way;
 * several threads multiply that until the host's memory bandwidth is reached.
 *
 * <p>The threads are one pool shared by every backend of the JVM (daemon threads, made on first
 * use), so that an executor running many tasks does not make threads per task; each call runs on
 * at most {@link #threads()} of them, the calling thread included, and returns once every part has
 * ended, so that no part still writes after a failure is reported.
 */
final class HostCopies {
    /**
     * Fewest bytes a part copies. Handing a part to another thread costs some microseconds (a queue
     * hand-over and a wake-up); 1 MiB takes about 100 us on one core, so the hand-over stays small.
     */
    static final long MIN_PART_BYTES = 1L << 20;
    /** Most threads a call uses: beyond 8 a 16-core host's memory bandwidth no longer grows. */
    static final int MAX_THREADS = 8;

    /** What one part does: tokens [first, first + count) of the slice. */
    @FunctionalInterface
    interface Part {
        void copy(int first, int count);
    }

    private static volatile ExecutorService pool;

    private final int threads;

    /** @param threads threads a call may use, the caller's included (1: everything on the caller's thread) */
    HostCopies(int threads) {
        if (threads < 1 || threads > MAX_THREADS) {
            throw new IllegalArgumentException("host copy threads: " + threads + "; expected 1 to " + MAX_THREADS);
        }
        this.threads = threads;
    }

    /** Threads for this machine: half its cores (the other half run the tasks), 1 to {@link #MAX_THREADS}. */
    static int defaultThreads() {
        return Math.max(1, Math.min(MAX_THREADS, Runtime.getRuntime().availableProcessors() / 2));
    }

    int threads() {
        return threads;
    }

    /**
     * Where the parts of {@code tokens} tokens of {@code tokenBytes} bytes each start: as many
     * parts as threads, fewer when parts would copy under {@link #MIN_PART_BYTES}, sizes differing
     * by one token at most. Element i is the first token of part i; the last element is {@code tokens}.
     */
    static int[] cuts(int tokens, long tokenBytes, int threads) {
        if (tokens < 0 || tokenBytes < 1 || threads < 1) {
            throw new IllegalArgumentException("parts of " + tokens + " tokens of " + tokenBytes + " bytes on "
                    + threads + " threads");
        }
        long total = tokens * tokenBytes;
        int parts = (int) Math.max(1, Math.min(Math.min(threads, tokens), total / MIN_PART_BYTES));
        int[] cuts = new int[parts + 1];
        for (int p = 0; p <= parts; p++) {
            cuts[p] = (int) ((long) tokens * p / parts);
        }
        return cuts;
    }

    /**
     * Runs {@code part} over tokens [0, tokens) in the parts of {@link #cuts}, in parallel, and
     * waits for all of them. The first failure, an Error too, is rethrown as it was thrown (a read-only
     * target's ReadOnlyBufferException stays one) once every part has ended, the later ones suppressed in it.
     */
    void run(int tokens, long tokenBytes, Part part) {
        int[] cuts = cuts(tokens, tokenBytes, threads);
        int parts = cuts.length - 1;
        if (parts == 1) {
            part.copy(0, tokens);
            return;
        }
        ExecutorService workers = pool();
        List<Future<?>> others = new ArrayList<>(parts - 1);
        // an Error too (an OutOfMemoryError in part 0, or from submit when no thread can be started) is
        // thrown only once the parts already handed out have ended: they write into the caller's staging
        // or tensors, which the caller frees or reuses as soon as the failure reaches it
        Throwable failure = null;
        try {
            for (int p = 1; p < parts; p++) {
                int first = cuts[p];
                int count = cuts[p + 1] - cuts[p];
                others.add(workers.submit(() -> part.copy(first, count)));
            }
            part.copy(0, cuts[1]);
        } catch (RuntimeException | Error e) {
            failure = e;
        }
        for (Future<?> f : others) {
            try {
                waitFor(f);
            } catch (RuntimeException | Error e) {
                if (failure == null) {
                    failure = e;
                } else {
                    failure.addSuppressed(e);
                }
            }
        }
        if (failure instanceof Error e) {
            throw e;
        }
        if (failure != null) {
            throw (RuntimeException) failure;
        }
    }

    /** Waits for a part however long it takes (an interrupt is kept for the caller): it may be writing. */
    private static void waitFor(Future<?> f) {
        boolean interrupted = false;
        try {
            while (true) {
                try {
                    f.get();
                    return;
                } catch (InterruptedException e) {
                    interrupted = true;
                } catch (ExecutionException e) {
                    Throwable cause = e.getCause();
                    if (cause instanceof RuntimeException r) {
                        throw r;
                    }
                    if (cause instanceof Error err) {
                        throw err;
                    }
                    throw new IllegalStateException("host copy failed: " + cause, cause);
                }
            }
        } finally {
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private static ExecutorService pool() {
        ExecutorService p = pool;
        if (p == null) {
            synchronized (HostCopies.class) {
                p = pool;
                if (p == null) {
                    p = Executors.newFixedThreadPool(MAX_THREADS - 1, r -> {
                        Thread t = new Thread(r, "lightning-host-copy");
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
