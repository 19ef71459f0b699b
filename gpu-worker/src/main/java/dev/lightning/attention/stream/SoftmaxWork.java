package dev.lightning.attention.stream;

import dev.lightning.attention.engine.SoftmaxBackend;
import dev.lightning.attention.engine.SoftmaxPartial;
import dev.lightning.attention.engine.SoftmaxSpec;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.NonFinite;
import dev.lightning.attention.tensor.TokenTensor;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.function.LongConsumer;

/**
 * What a task does for causal softmax attention, with no Spark in it: the partial result of a
 * range of queries over a range of keys of one sequence file, read with positioned reads and
 * computed in bounded memory.
 *
 * <p>Memory: the queries are taken in query blocks and the keys in key blocks, each sized from its
 * byte budget: a query block holds its q in the input dtype and two float32 partials of
 * [n, Hq, Dv + 1] (the accumulator and the block just computed), a key block its k and v. For each query block the key blocks visible from it are computed one at a
 * time and merged into the accumulator in ascending key order ({@link SoftmaxPartial#merge}), so
 * the same call gives the same bytes every time. Query blocks start at the query range's start;
 * every item of one query piece has the same range, so their partials line up block by block.
 */
public final class SoftmaxWork {
    private final SoftmaxSpec spec;
    private final int chunkSize;
    private final long queryBytes;
    private final long keyBytes;
    /** Told the visible pairs of each key block once computed ({@link #counting}); by default no one. */
    private final LongConsumer counted;

    /**
     * @param chunkSize  block sizes are multiples of it (the run's --chunk-size)
     * @param queryBytes bytes of a query block: its q and two float32 partials. Partials of one query
     *                   piece computed by different tasks must line up, so this must not depend on
     *                   the backend (the job passes --window-bytes / 2 on every backend)
     * @param keyBytes   bytes of one block of k and v (the backend's window budget / 2)
     */
    public SoftmaxWork(SoftmaxSpec spec, int chunkSize, long queryBytes, long keyBytes) {
        if (chunkSize < 1 || queryBytes < 1 || keyBytes < 1) {
            throw new IllegalArgumentException("chunk size and block bytes must be >= 1, got " + chunkSize + ", "
                    + queryBytes + ", " + keyBytes);
        }
        this.spec = spec;
        this.chunkSize = chunkSize;
        this.queryBytes = queryBytes;
        this.keyBytes = keyBytes;
        this.counted = n -> { };
    }

    private SoftmaxWork(SoftmaxWork w, LongConsumer counted) {
        this.spec = w.spec;
        this.chunkSize = w.chunkSize;
        this.queryBytes = w.queryBytes;
        this.keyBytes = w.keyBytes;
        this.counted = counted;
    }

    /**
     * This work telling {@code counted} the visible (query, key) pairs of each key block once it is
     * computed ({@link SoftmaxSpec#visiblePairs}), in order: the pairs of one {@link #compute} add up
     * to those of its whole range, the measure its item's cost and token share are planned by, so a
     * caller can show an item's progress while it runs (a CPU item of minutes told nothing until it
     * returned). A block found unclean (NaN/Inf) is not computed, so not counted.
     */
    public SoftmaxWork counting(LongConsumer counted) {
        return new SoftmaxWork(this, java.util.Objects.requireNonNull(counted, "counted"));
    }

    public SoftmaxSpec spec() {
        return spec;
    }

    /** Bytes of one query's float32 partial: o [Hq, Dv] and lse [Hq]. */
    public long partialBytesPerToken() {
        return 4L * spec.headsQ() * (spec.dv() + 1);
    }

    /**
     * Query tokens per query block: q plus two partials within its budget, whole chunks, at least one.
     * However large the budget, the block's q bytes and its partial as bytes ({@link SoftmaxPartial#toBytes},
     * which the merge reads back whole) each fit one Java array: n * max(Hq Dk es, 4 Hq (Dv + 1)) <= 2^31 - 16.
     */
    public int queryBlockTokens(SequenceFile f) {
        long qTokenBytes = (long) spec.headsQ() * spec.dk() * f.dtype.bytes();
        long perToken = qTokenBytes + 2 * partialBytesPerToken();
        long maxTokens = (Integer.MAX_VALUE - 16) / Math.max(qTokenBytes, partialBytesPerToken()); // one Java array
        if (maxTokens >= chunkSize) {
            maxTokens -= maxTokens % chunkSize; // whole chunks here too
        }
        return tokens(queryBytes, perToken, maxTokens);
    }

    /** Key tokens per key block: k and v within its budget, whole chunks, at least one. */
    public int keyBlockTokens(SequenceFile f) {
        long perToken = (long) spec.headsK() * (spec.dk() + spec.dv()) * f.dtype.bytes();
        return tokens(keyBytes, perToken, Integer.MAX_VALUE / Math.max(1, perToken));
    }

    private int tokens(long budget, long perToken, long maxTokens) {
        long n = Math.min(maxTokens, Math.max(1, budget / perToken / chunkSize) * chunkSize);
        return (int) Math.max(Math.min(chunkSize, maxTokens), n);
    }

    /** Receives each query block's partial, in order. */
    @FunctionalInterface
    public interface BlockSink {
        void accept(long queryStart, SoftmaxPartial partial) throws IOException;
    }

    /**
     * The partial of queries [qStart, qEnd) over keys [kStart, kEnd) of {@code f}, handed to
     * {@code sink} one query block at a time (the sink may keep nothing: the partial is reused).
     *
     * @throws NonFiniteInputException at the first block of q, k or v holding NaN/Inf
     */
    public void compute(SoftmaxBackend backend, RangeReader in, SequenceFile f, int sequence, long qStart, long qEnd,
                        long kStart, long kEnd, BlockSink sink) throws IOException {
        int qBlock = queryBlockTokens(f);
        int kBlock = keyBlockTokens(f);
        int es = f.dtype.bytes();
        int qTokenBytes = spec.headsQ() * spec.dk() * es;
        int kTokenBytes = spec.headsK() * spec.dk() * es;
        int vTokenBytes = spec.headsK() * spec.dv() * es;
        byte[] qBytes = new byte[(int) Math.min(qBlock, qEnd - qStart) * qTokenBytes];
        int kCapacity = (int) Math.min(kBlock, kEnd - kStart);
        byte[] kBytes = new byte[kCapacity * kTokenBytes];
        byte[] vBytes = new byte[kCapacity * vTokenBytes];
        for (long qa = qStart; qa < qEnd; qa += qBlock) {
            int n = (int) Math.min(qBlock, qEnd - qa);
            TokenTensor q = read(in, f, sequence, "q", f.qOffset, qa, n, qTokenBytes, qBytes, spec.headsQ(), spec.dk());
            SoftmaxPartial acc = SoftmaxPartial.empty(spec, n);
            SoftmaxPartial part = SoftmaxPartial.empty(spec, n);
            // keys visible from this query block: [first visible from qa, last query], within the range
            long lo = Math.max(kStart, spec.firstVisibleKey(qa));
            long hi = Math.min(kEnd, qa + n);
            for (long ka = lo; ka < hi; ka += kBlock) {
                int m = (int) Math.min(kBlock, hi - ka);
                TokenTensor k = read(in, f, sequence, "k", f.kOffset, ka, m, kTokenBytes, kBytes, spec.headsK(),
                        spec.dk());
                TokenTensor v = read(in, f, sequence, "v", f.vOffset, ka, m, vTokenBytes, vBytes, spec.headsK(),
                        spec.dv());
                try {
                    backend.forward(spec, q, qa, k, v, ka, part);
                } catch (RuntimeException e) {
                    throw new IllegalStateException(f.name + ", queries [" + qa + ", " + (qa + n) + ") over keys ["
                            + ka + ", " + (ka + m) + ") on " + backend.name() + "@" + backend.device() + ": "
                            + e.getMessage(), e);
                }
                acc.merge(part);
                counted.accept(spec.visiblePairs(qa, n, ka, m));
            }
            sink.accept(qa, acc);
        }
    }

    private static TokenTensor read(RangeReader in, SequenceFile f, int sequence, String tensor, long offset,
                                    long token, int n, int tokenBytes, byte[] buf, int heads, int dim)
            throws IOException {
        try {
            in.readFully(offset + token * tokenBytes, buf, 0, n * tokenBytes);
        } catch (java.io.EOFException e) {
            throw new dev.lightning.attention.tensor.InvalidInputException(f.name + ": truncated: " + tensor + " tokens ["
                    + token + ", " + (token + n) + ") lie past the end of the file", e);
        }
        NonFinite.Found bad = NonFinite.scan(buf, 0, n * heads * dim, f.dtype);
        if (bad.count > 0) {
            long i = bad.first;
            String first = tensor + "[" + (token + i / ((long) heads * dim)) + ", " + (i / dim) % heads + ", " + i % dim
                    + "]";
            throw new NonFiniteInputException(f.name, sequence, token, bad.count, first,
                    tensor + " tokens [" + token + ", " + (token + n) + ")");
        }
        return TokenTensor.wrap(f.dtype, n, heads, dim, ByteBuffer.wrap(buf, 0, n * tokenBytes));
    }

    /**
     * Writes a query block's rows: o [n, Hq, Dv] in {@code oDtype} to {@code o}, and, when
     * {@code lse} is not null, lse [n, Hq] float32 little-endian to it.
     *
     * @throws NonFiniteOutputException when o holds NaN/Inf as written (an F16 overflow), or lse does
     *                                  (written or not), before anything of the block is written
     */
    public static void writeRows(SequenceFile f, int sequence, long queryStart, SoftmaxPartial p, DType oDtype,
                                 OutputStream o, OutputStream lse) throws IOException {
        int n = p.tokens();
        TokenTensor out = TokenTensor.allocate(oDtype, n, p.heads(), p.dv());
        p.writeO(out);
        ByteBuffer bytes = out.bytes();
        byte[] raw = new byte[bytes.remaining()];
        bytes.duplicate().get(raw);
        NonFinite.Found bad = NonFinite.scan(raw, 0, n * p.heads() * p.dv(), oDtype);
        if (bad.count > 0) {
            long i = bad.first;
            String first = "o[" + (queryStart + i / ((long) p.heads() * p.dv())) + ", " + (i / p.dv()) % p.heads() + ", "
                    + i % p.dv() + "]";
            throw new NonFiniteOutputException(f.name, sequence, queryStart, bad.count, first, "o", oDtype,
                    "tokens [" + queryStart + ", " + (queryStart + n) + ")");
        }
        // Each row written here has seen all its keys (key t at least), so its lse is finite unless a
        // score overflowed. Every score of a row at -inf (below -3.4e38 in float32) reads as "no key
        // seen": the backends give that row o = 0, finite, and lse = -inf, which o's scan cannot see.
        float[] rowLse = p.lse();
        long badLse = 0;
        int firstLse = -1;
        for (int r = 0; r < n * p.heads(); r++) {
            if (!Float.isFinite(rowLse[r]) && badLse++ == 0) {
                firstLse = r;
            }
        }
        if (badLse > 0) {
            String first = "lse[" + (queryStart + firstLse / p.heads()) + ", " + firstLse % p.heads() + "]";
            throw new NonFiniteOutputException(f.name, sequence, queryStart, badLse, first, "lse", DType.F32,
                    "tokens [" + queryStart + ", " + (queryStart + n) + ") (the log-sum-exp of the rows' scores "
                            + "scale * q . k, checked with or without --write-lse: at -inf every score of the row "
                            + "overflowed float32, and o would be written as 0)");
        }
        o.write(raw);
        if (lse != null) {
            lse.write(lseBytes(p));
        }
    }

    /** lse [n, Hq] of a partial as float32 little-endian bytes. */
    public static byte[] lseBytes(SoftmaxPartial p) {
        ByteBuffer b = ByteBuffer.allocate(4 * p.lse().length).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(p.lse());
        return b.array();
    }
}
