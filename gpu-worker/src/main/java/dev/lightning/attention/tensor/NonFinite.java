package dev.lightning.attention.tensor;

/**
 * Finds NaN and infinite values in raw little-endian tensor bytes by their exponent bits, without
 * decoding: an all-ones exponent is Inf or NaN in all three dtypes.
 */
public final class NonFinite {
    private NonFinite() {
    }

    /** What a scan found: how many non-finite values, and the element index of the first (-1 if none). */
    public static final class Found {
        public final long count;
        public final long first;

        Found(long count, long first) {
            this.count = count;
            this.first = first;
        }
    }

    /** Scans {@code elements} values of {@code dtype} starting at byte {@code offset} of {@code buf}. */
    public static Found scan(byte[] buf, int offset, int elements, DType dtype) {
        return scan(java.nio.ByteBuffer.wrap(buf), offset, elements, dtype);
    }

    /**
     * The same scan one value at a time: the plain definition the word-wise {@link #scan} is
     * tested and measured against.
     */
    public static Found scanEachValue(byte[] buf, int offset, int elements, DType dtype) {
        long count = 0;
        long first = -1;
        switch (dtype) {
            case F32:
                for (int i = 0; i < elements; i++) {
                    int at = offset + 4 * i;
                    int hi = ((buf[at + 3] & 0xff) << 8) | (buf[at + 2] & 0xff);
                    if ((hi & 0x7f80) == 0x7f80) {
                        count++;
                        first = first < 0 ? i : first;
                    }
                }
                break;
            case BF16:
                for (int i = 0; i < elements; i++) {
                    int at = offset + 2 * i;
                    int bits = ((buf[at + 1] & 0xff) << 8) | (buf[at] & 0xff);
                    if ((bits & 0x7f80) == 0x7f80) {
                        count++;
                        first = first < 0 ? i : first;
                    }
                }
                break;
            default:
                for (int i = 0; i < elements; i++) {
                    int at = offset + 2 * i;
                    int bits = ((buf[at + 1] & 0xff) << 8) | (buf[at] & 0xff);
                    if ((bits & 0x7c00) == 0x7c00) {
                        count++;
                        first = first < 0 ? i : first;
                    }
                }
                break;
        }
        return new Found(count, first);
    }
    /** Scans of this many bytes or more run in parts on several threads. */
    static final int PARALLEL_BYTES = 8 << 20;
    /** Most threads one scan uses, the caller's included: half the cores (the others compute), 1 to 8. */
    static final int THREADS = Math.max(1, Math.min(8, Runtime.getRuntime().availableProcessors() / 2));
    private static volatile java.util.concurrent.ExecutorService pool;

    /**
     * Scans {@code elements} values of {@code dtype} starting at byte {@code offset} (absolute) of
     * {@code buf}, whatever its position, order or kind (heap, direct, read-only): the same count
     * and first index as {@link #scanEachValue} on the same bytes. Eight bytes at a time: a
     * window's values are scanned at memory speed (one value at a time ran at 2 to 3 GB/s, slower
     * than the device copies them); large scans in parts on several threads.
     */
    public static Found scan(java.nio.ByteBuffer buf, int offset, int elements, DType dtype) {
        java.nio.ByteBuffer b = buf.duplicate().order(java.nio.ByteOrder.LITTLE_ENDIAN);
        long bytes = (long) elements * dtype.bytes();
        int parts = THREADS <= 1 || bytes < PARALLEL_BYTES ? 1 : (int) Math.min(THREADS, bytes / (PARALLEL_BYTES / 2));
        if (parts <= 1) {
            return scanPart(b, offset, 0, elements, dtype);
        }
        java.util.List<java.util.concurrent.Future<Found>> others = new java.util.ArrayList<>();
        for (int p = 1; p < parts; p++) {
            int from = (int) ((long) elements * p / parts);
            int to = (int) ((long) elements * (p + 1) / parts);
            others.add(pool().submit(() -> scanPart(b, offset, from, to, dtype)));
        }
        Found whole = scanPart(b, offset, 0, (int) ((long) elements / parts), dtype);
        long count = whole.count;
        long first = whole.first;
        RuntimeException failure = null;
        boolean interrupted = false;
        for (java.util.concurrent.Future<Found> f : others) { // in order: the first part with one holds the first
            while (true) {
                try {
                    Found part = f.get();
                    count += part.count;
                    first = first < 0 ? part.first : first;
                    break;
                } catch (InterruptedException e) {
                    interrupted = true;
                } catch (java.util.concurrent.ExecutionException e) {
                    failure = failure != null ? failure : new IllegalStateException("a scan part failed: " + e.getCause(),
                            e.getCause());
                    break;
                }
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        if (failure != null) {
            throw failure;
        }
        return new Found(count, first);
    }

    /**
     * Values [from, to) of the scan at byte {@code offset} of little-endian {@code b}; indices
     * in the result count from value 0 of the whole scan. A word of 64 bits holds four 16-bit or
     * two 32-bit values: masked to the exponents, a lane is non-finite when it equals the mask.
     * Each lane of (mask ^ masked) is below 2^15 (or 2^31), so adding 0x7fff (0x7fffffff) to it
     * sets its top bit exactly when it is not zero, with no carry into the next lane.
     */
    private static Found scanPart(java.nio.ByteBuffer b, int offset, int from, int to, DType dtype) {
        int es = dtype.bytes();
        long mask;
        long ones;
        long tops;
        if (dtype == DType.F32) {
            mask = 0x7f8000007f800000L;
            ones = 0x7fffffff7fffffffL;
            tops = 0x8000000080000000L;
        } else {
            mask = dtype == DType.F16 ? 0x7c007c007c007c00L : 0x7f807f807f807f80L;
            ones = 0x7fff7fff7fff7fffL;
            tops = 0x8000800080008000L;
        }
        int lanes = 8 / es;
        long laneMask = es == 4 ? 0xffffffffL : 0xffffL;
        long count = 0;
        long first = -1;
        int i = from;
        for (; i + lanes <= to; i += lanes) {
            long z = (b.getLong(offset + i * es) & mask) ^ mask;
            if (((z + ones) & tops) != tops) { // some lane is zero: non-finite values in this word
                for (int j = 0; j < lanes; j++) {
                    if (((z >>> (j * 8 * es)) & laneMask) == 0) {
                        count++;
                        first = first < 0 ? i + j : first;
                    }
                }
            }
        }
        long one = mask & laneMask;
        for (; i < to; i++) {
            long v = es == 4 ? b.getInt(offset + 4 * i) & 0xffffffffL : b.getShort(offset + 2 * i) & 0xffffL;
            if ((v & one) == one) {
                count++;
                first = first < 0 ? i : first;
            }
        }
        return new Found(count, first);
    }

    private static java.util.concurrent.ExecutorService pool() {
        java.util.concurrent.ExecutorService p = pool;
        if (p == null) {
            synchronized (NonFinite.class) {
                p = pool;
                if (p == null) {
                    p = java.util.concurrent.Executors.newCachedThreadPool(r -> {
                        Thread t = new Thread(r, "lightning-nonfinite-scan");
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
