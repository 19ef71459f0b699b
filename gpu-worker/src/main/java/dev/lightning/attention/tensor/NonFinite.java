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
     * and first index as {@link #scanEachValue} on the same bytes. Where the JVM has
     * jdk.incubator.vector, a block of vectors at a time ({@link VectorSkip}): a heap buffer's
     * array in place, other buffers through a small array they are copied to a piece at a time
     * (64 MiB of F32 on the heap in about 6 ms of CPU on the 2-core development VM, against 25 to 28
     * ms for the word scan, which the CPU job spent 43% of its Java samples in); without it eight
     * bytes at a time ({@link #scanWords}). Large scans in parts on several threads.
     */
    public static Found scan(java.nio.ByteBuffer buf, int offset, int elements, DType dtype) {
        return scan(buf, offset, elements, dtype, THREADS);
    }

    /**
     * {@link #scan(java.nio.ByteBuffer, int, int, DType)} on at most {@code threads} threads: the tests run the
     * parts path with it whatever the machine's cores (a 2-core machine, CI's, scans on one thread).
     */
    static Found scan(java.nio.ByteBuffer buf, int offset, int elements, DType dtype, int threads) {
        java.nio.ByteBuffer b = buf.duplicate().order(java.nio.ByteOrder.LITTLE_ENDIAN);
        long bytes = (long) elements * dtype.bytes();
        int parts = threads <= 1 || bytes < PARALLEL_BYTES ? 1 : (int) Math.min(threads, bytes / (PARALLEL_BYTES / 2));
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
     * in the result count from value 0 of the whole scan.
     */
    private static Found scanPart(java.nio.ByteBuffer b, int offset, int from, int to, DType dtype) {
        Skip skip = Vectors.SKIP;
        if (skip == null) {
            return scanWords(b, offset, from, to, dtype);
        }
        if (b.hasArray()) {
            return skipThenCount(b, offset, b.array(), b.arrayOffset() + offset, from, to, dtype, skip);
        }
        // a direct or read-only buffer: copied a piece at a time into an array the vector pass reads
        // in L1/L2 (a bulk copy runs at memory speed; the buffer's own getLong at 1.6 to 2.7 GB/s)
        int es = dtype.bytes();
        int block = skip.blockValues(dtype);
        int piece = Math.max(block, COPY_BYTES / es / block * block);
        byte[] a = new byte[Math.min(piece, to - from) * es];
        long count = 0;
        long first = -1;
        for (int i = from; i < to; i += piece) {
            int n = Math.min(piece, to - i);
            b.get(offset + i * es, a, 0, n * es);
            Found f = skipThenCount(b, offset, a, -i * es, i, i + n, dtype, skip); // value i at a[0]
            count += f.count;
            first = first < 0 ? f.first : first;
        }
        return new Found(count, first);
    }

    /** Bytes of a direct or read-only buffer copied at a time for the vector pass: well inside L2. */
    static final int COPY_BYTES = 32 << 10;

    /**
     * Values [from, to) of the scan of {@code b} at byte {@code offset}, whose bytes are also in
     * {@code a} (value i at byte {@code base + i * dtype.bytes()}): the vector pass skips whole
     * blocks of finite values in {@code a}; the word scan counts the first block that may hold a
     * non-finite one, exactly, in {@code b}, and then the tail of fewer than a block's values.
     */
    private static Found skipThenCount(java.nio.ByteBuffer b, int offset, byte[] a, int base, int from, int to,
                                       DType dtype, Skip skip) {
        int block = skip.blockValues(dtype);
        long count = 0;
        long first = -1;
        int i = from;
        while (i < to) {
            int at = skip.skipFinite(a, base, i, to, dtype);
            int end = to - at < block ? to : at + block;
            Found f = scanWords(b, offset, at, end, dtype);
            count += f.count;
            first = first < 0 ? f.first : first;
            i = end;
        }
        return new Found(count, first);
    }

    /**
     * {@link #scan(java.nio.ByteBuffer, int, int, DType)} eight bytes at a time on one thread,
     * whatever the buffer and the JVM: the scan where jdk.incubator.vector is missing, the exact
     * count of the blocks the vector pass flags, and the figure the bench compares the vector
     * pass with ({@code ScanBench}).
     */
    public static Found scanWords(java.nio.ByteBuffer buf, int offset, int elements, DType dtype) {
        return scanWords(buf.duplicate().order(java.nio.ByteOrder.LITTLE_ENDIAN), offset, 0, elements, dtype);
    }

    /**
     * The word scan of values [from, to), indexed as in {@link #scanPart}. A word of 64 bits holds
     * four 16-bit or two 32-bit values: masked to the exponents, a lane is non-finite when it
     * equals the mask. Each lane of (mask ^ masked) is below 2^15 (or 2^31), so adding 0x7fff
     * (0x7fffffff) to it sets its top bit exactly when it is not zero, with no carry into the next lane.
     */
    private static Found scanWords(java.nio.ByteBuffer b, int offset, int from, int to, DType dtype) {
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

    /**
     * The vector pass over a byte array: from value {@code from}, whole blocks of
     * {@link #blockValues} values at a time, the index of the first block that may hold a
     * non-finite value (every block before it holds none), or where fewer than a block's values
     * are left before {@code to}. Value i lies at byte {@code base + i * dtype.bytes()} of {@code a}.
     */
    interface Skip {
        int blockValues(DType dtype);

        int skipFinite(byte[] a, int base, int from, int to, DType dtype);
    }

    /** The vector pass, probed once per JVM: null where jdk.incubator.vector does not load. */
    static final class Vectors {
        static final Skip SKIP = load();

        private static Skip load() {
            if (Boolean.getBoolean("lightning.nonfinite.words")) {
                return null; // diagnosis: the word scan everywhere, as before the vector pass
            }
            try {
                return (Skip) Class.forName("dev.lightning.attention.tensor.VectorSkip").getDeclaredConstructor()
                        .newInstance();
            } catch (ReflectiveOperationException | LinkageError | RuntimeException e) {
                return null; // a JVM without --add-modules jdk.incubator.vector: the word scan
            }
        }
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
