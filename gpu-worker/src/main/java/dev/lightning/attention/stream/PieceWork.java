package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.NonFinite;
import dev.lightning.attention.tensor.TokenTensor;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;

/**
 * What a task does with one piece, with no Spark in it: stream the piece's tokens through
 * windows of bounded size, read each window with positioned reads of its own byte range, run the
 * backend, and write the outputs in order. Windows start at multiples of the chunk size, so the
 * block structure is the same however a sequence was split.
 *
 * <p>{@code o} is written in the output dtype the caller resolved ({@code --output-dtype}), and each
 * window's o values and state are scanned for NaN/Inf before they are written: a value that does
 * not fit the output dtype (an F16 overflow) fails the piece there, naming its position, instead of
 * ending up in a result file that looks finished.
 *
 * <p>With a checkpoint interval ({@link Variant#stateEvery}), each window records the states that
 * fall in it ({@link Checkpoints#of}) and pass 2 writes them, in order, to two more streams: the S
 * of each (the F32 bytes of [H, Dk, Dv]) to one, and with normalization its z ([H, Dk]) to another,
 * so that each stream is one contiguous slice of the output file's {@code states} and
 * {@code normalizers} tensors. Windows start at chunk multiples and the interval is one, so a window
 * never needs a state between chunks.
 */
public final class PieceWork {
    private final double scale;
    private final int chunkSize;
    private final Variant variant;
    private final long windowBytes;
    private final DType outputDtype;

    /** The plain formula without checkpoints ({@link Variant#PLAIN}). */
    public PieceWork(double scale, int chunkSize, long windowBytes, DType outputDtype) {
        this(scale, chunkSize, Variant.PLAIN, windowBytes, outputDtype);
    }

    /**
     * @param variant     feature map, normalization and checkpoint interval (a multiple of {@code chunkSize})
     * @param windowBytes bytes of q, k, v, o and recorded states one window may hold
     * @param outputDtype the dtype of {@code o}, already resolved against the file's (never "input")
     */
    public PieceWork(double scale, int chunkSize, Variant variant, long windowBytes, DType outputDtype) {
        if (variant.stateEvery() % chunkSize != 0) {
            throw new IllegalArgumentException("states every " + variant.stateEvery() + " tokens: the interval must be "
                    + "a multiple of the chunk size " + chunkSize);
        }
        this.scale = scale;
        this.chunkSize = chunkSize;
        this.variant = java.util.Objects.requireNonNull(variant, "variant");
        this.windowBytes = windowBytes;
        this.outputDtype = java.util.Objects.requireNonNull(outputDtype, "outputDtype");
    }

    /**
     * The window of the last piece, for the next piece of the same file and shapes: a task that
     * computes many small pieces one after the other with one PieceWork allocates (and zeroes) its
     * buffers once, not once per piece (at pieces of 128 tokens that was about a tenth of pass 2's
     * CPU time: BENCHMARKS.md, "Time per token at 100,000 pieces"). One piece at a time: a
     * PieceWork is used by one thread.
     */
    private Window spare;

    private Window window(SequenceFile f, AttentionSpec spec, int capacity, DType oDtype) {
        Window w = spare;
        if (w != null && w.f == f && w.capacity == capacity && w.oDtype == oDtype && w.spec.equals(spec)) {
            w.reset();
            return w;
        }
        w = new Window(f, spec, capacity, oDtype);
        // only small windows are kept: a large one is a large piece's, whose allocation is nothing
        // against its tokens, and kept it would stay live past the piece (through its spot checks
        // and the next piece's start: 248 MiB live instead of about 180 at 100K-token pieces)
        spare = w.bytes() <= SPARE_BYTES ? w : null;
        return w;
    }

    /** The largest window kept for the next piece. */
    static final long SPARE_BYTES = 4L << 20;

    /** The computation of file {@code f} in this run. */
    public AttentionSpec spec(SequenceFile f) {
        return f.spec(scale, chunkSize, variant);
    }

    /**
     * Tokens per window for this file: as many chunks as fit the byte budget, at least one. With
     * checkpoints every N tokens, a window of n tokens (from a chunk multiple) holds at most
     * floor(n / N) + 1 of them: the budget pays one state up front and 1/N of a state per token.
     */
    int windowTokens(SequenceFile f, Piece p) {
        long perToken = f.inputBytesPerToken() + f.outputBytesPerToken(outputDtype);
        long budget = windowBytes;
        long maxTokens = (long) Integer.MAX_VALUE / Math.max(perToken, 1) / 2;
        if (variant.checkpoints()) {
            AttentionSpec spec = spec(f);
            long state = spec.stateBytes();
            int every = variant.stateEvery();
            perToken += (state + every - 1) / every;
            budget -= state;
            // the checkpoint buffer holds count * H*Dk*Dv float32 values in one Java array
            long maxCount = (Integer.MAX_VALUE - 16) / Math.max(1, spec.stateSize());
            maxTokens = Math.min(maxTokens, Math.max(chunkSize, (maxCount - 1) * every));
        }
        long chunks = Math.max(1, Math.max(0, budget) / perToken / chunkSize);
        long tokens = Math.min(maxTokens, chunks * chunkSize);
        tokens = Math.max(chunkSize, tokens - tokens % chunkSize);
        return (int) Math.min(tokens, p.tokens());
    }

    /** The state a sequence starts a plain run from: its {@code initial_state}, or zero. */
    public static LightningState initialState(RangeReader in, SequenceFile f, int sequence) throws IOException {
        return initialState(in, f, f.spec(1.0, 1), sequence);
    }

    /**
     * The state a sequence starts from: S its {@code initial_state} or zero and, when {@code spec}
     * normalizes, z its {@code initial_normalizer} or zero (either may be given without the other).
     */
    public static LightningState initialState(RangeReader in, SequenceFile f, AttentionSpec spec, int sequence)
            throws IOException {
        float[] kv = readInitial(in, f, sequence, f.initialStateOffset, spec.stateSize(), "initial_state", spec.dk(),
                spec.dv());
        if (!spec.normalized()) {
            return LightningState.own(spec.heads(), spec.dk(), spec.dv(), kv);
        }
        float[] z = readInitial(in, f, sequence, f.initialNormalizerOffset, spec.normalizerSize(),
                "initial_normalizer", spec.dk(), 1);
        return LightningState.own(spec.heads(), spec.dk(), spec.dv(), kv, z);
    }

    /** {@code elements} float32 values of tensor {@code name} ([H, d1, d2]) at {@code offset}, or zeros for -1. */
    private static float[] readInitial(RangeReader in, SequenceFile f, int sequence, long offset, int elements,
                                       String name, int d1, int d2) throws IOException {
        float[] values = new float[elements];
        if (offset < 0) {
            return values;
        }
        byte[] raw = new byte[elements * Float.BYTES];
        SequenceFile.readFully(in, offset, raw, f.name);
        NonFinite.Found bad = NonFinite.scan(raw, 0, elements, DType.F32);
        if (bad.count > 0) {
            long i = bad.first;
            String at = d2 == 1 ? i / d1 + ", " + i % d1 : i / ((long) d1 * d2) + ", " + (i / d2) % d1 + ", " + i % d2;
            throw new NonFiniteInputException(f.name, sequence, -1, bad.count, name + "[" + at + "]", name);
        }
        ByteBuffer.wrap(raw).order(java.nio.ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(values);
        return values;
    }

    /** Pass 1: the piece's local state (S, and z when normalizing), from zero. */
    public LightningState localState(AttentionBackend backend, RangeReader in, SequenceFile f, Piece p)
            throws IOException {
        AttentionSpec spec = spec(f);
        Window w = window(f, spec, windowTokens(f, p), null);
        LightningState state = LightningState.zeros(spec);
        for (long at = p.start(); at < p.end(); at += w.capacity) {
            int n = (int) Math.min(w.capacity, p.end() - at);
            if (w.read(in, at, n)) {
                try {
                    state = backend.advance(spec, w.k, w.v, state);
                } catch (RuntimeException e) {
                    throw located(e, f, p, at, n, backend);
                }
            }
        }
        w.failIfNonFinite(p);
        return state;
    }

    /** Pass 2 without checkpoints ({@link #outputs(AttentionBackend, RangeReader, SequenceFile, Piece, LightningState, OutputStream, OutputStream, OutputStream)}). */
    public LightningState outputs(AttentionBackend backend, RangeReader in, SequenceFile f, Piece p,
                                  LightningState incoming, OutputStream out) throws IOException {
        if (variant.checkpoints()) {
            throw new IllegalStateException("this run records states every " + variant.stateEvery()
                    + " tokens: pass streams for them");
        }
        return outputs(backend, in, f, p, incoming, out, null, null);
    }

    /**
     * Pass 2: writes the piece's o bytes ({@code [n, H, Dv]} in the output dtype) to {@code out},
     * the S of each state recorded in it ([H, Dk, Dv] float32, in order) to {@code states} and,
     * normalizing, its z ([H, Dk] float32) to {@code normalizers}; returns its final state. The
     * two state streams are unused (and may be null) without checkpoints, {@code normalizers}
     * without normalization.
     *
     * @throws NonFiniteInputException  when q, k or v hold NaN/Inf (after scanning the whole piece)
     * @throws NonFiniteOutputException at the first window whose o, state or recorded states hold
     *                                  NaN/Inf, before that window is written
     */
    public LightningState outputs(AttentionBackend backend, RangeReader in, SequenceFile f, Piece p,
                                  LightningState incoming, OutputStream out, OutputStream states,
                                  OutputStream normalizers) throws IOException {
        AttentionSpec spec = spec(f);
        Window w = window(f, spec, windowTokens(f, p), outputDtype);
        LightningState state = incoming;
        for (long at = p.start(); at < p.end(); at += w.capacity) {
            int n = (int) Math.min(w.capacity, p.end() - at);
            if (w.read(in, at, n)) {
                Checkpoints cp = variant.checkpoints() ? Checkpoints.of(spec, variant.stateEvery(), at, n)
                        : Checkpoints.none();
                try {
                    state = backend.forward(spec, w.q, w.k, w.v, state, w.o, cp);
                } catch (RuntimeException e) {
                    throw located(e, f, p, at, n, backend);
                }
                w.failIfNonFiniteOutput(p, at, n, state, cp);
                out.write(w.oBytes, 0, n * w.oTokenBytes);
                if (cp.count() > 0) {
                    writeFloats(states, cp.kvData(), cp.count() * spec.stateSize());
                    if (spec.normalized()) {
                        writeFloats(normalizers, cp.normalizerData(), cp.count() * spec.normalizerSize());
                    }
                }
            }
        }
        w.failIfNonFinite(p);
        return state;
    }

    /** The first {@code n} values of {@code values} as little-endian float32 bytes. */
    private static void writeFloats(OutputStream out, float[] values, int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(Math.multiplyExact(n, Float.BYTES)).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(values, 0, n);
        out.write(b.array());
    }

    /** A backend failure with the file, piece and tokens it was computing: the task fails with this. */
    private static RuntimeException located(RuntimeException e, SequenceFile f, Piece p, long at, int n,
                                            AttentionBackend backend) {
        if (e instanceof dev.lightning.attention.tensor.InvalidInputException) {
            return e;
        }
        return new IllegalStateException(f.name + ", piece " + (p.index() + 1) + " of " + p.count() + ", tokens [" + at
                + ", " + (at + n) + ") on " + backend.name() + "@" + backend.device() + ": " + e.getMessage(), e);
    }

    /** Reused buffers for one window of q, k, v (and o), viewed as tensors of the current size. */
    private static final class Window {
        final SequenceFile f;
        final AttentionSpec spec;
        /** The dtype of o; null in pass 1, which has no outputs. */
        final DType oDtype;
        final int capacity;
        final int qTokenBytes;
        final int kTokenBytes;
        final int vTokenBytes;
        final int oTokenBytes;
        final byte[] qBytes;
        final byte[] kBytes;
        final byte[] vBytes;
        final byte[] oBytes;
        TokenTensor q;
        TokenTensor k;
        TokenTensor v;
        TokenTensor o;
        /** NaN/Inf found so far in this piece, and where the first was. */
        long nonFinite;
        String firstNonFinite;

        Window(SequenceFile f, AttentionSpec spec, int capacity, DType oDtype) {
            this.f = f;
            this.spec = spec;
            this.oDtype = oDtype;
            this.capacity = capacity;
            boolean outputs = oDtype != null;
            int es = f.dtype.bytes();
            qTokenBytes = spec.headsQ() * spec.dk() * es;
            kTokenBytes = spec.headsK() * spec.dk() * es;
            vTokenBytes = spec.headsV() * spec.dv() * es;
            oTokenBytes = outputs ? spec.heads() * spec.dv() * oDtype.bytes() : 0;
            qBytes = outputs ? new byte[capacity * qTokenBytes] : null;
            kBytes = new byte[capacity * kTokenBytes];
            vBytes = new byte[capacity * vTokenBytes];
            oBytes = outputs ? new byte[capacity * oTokenBytes] : null;
        }

        /** Bytes of its buffers. */
        long bytes() {
            return (long) capacity * (qTokenBytes * (qBytes == null ? 0 : 1) + kTokenBytes + vTokenBytes + oTokenBytes);
        }

        /** Ready for another piece: no tensors viewed, no NaN/Inf counted (the buffers are overwritten by each read). */
        void reset() {
            q = null;
            k = null;
            v = null;
            o = null;
            nonFinite = 0;
            firstNonFinite = null;
        }

        /**
         * Reads tokens [token, token + n) and scans them for NaN/Inf. Returns whether the piece is
         * still clean, i.e. whether to compute: after the first bad value the rest is only counted.
         */
        boolean read(RangeReader in, long token, int n) throws IOException {
            if (qBytes != null) {
                q = view(in, f.qOffset, token, n, qTokenBytes, qBytes, spec.headsQ(), spec.dk());
                o = TokenTensor.wrap(oDtype, n, spec.heads(), spec.dv(), ByteBuffer.wrap(oBytes, 0, n * oTokenBytes));
                scan("q", qBytes, token, n, spec.headsQ(), spec.dk());
            }
            k = view(in, f.kOffset, token, n, kTokenBytes, kBytes, spec.headsK(), spec.dk());
            v = view(in, f.vOffset, token, n, vTokenBytes, vBytes, spec.headsV(), spec.dv());
            scan("k", kBytes, token, n, spec.headsK(), spec.dk());
            scan("v", vBytes, token, n, spec.headsV(), spec.dv());
            return nonFinite == 0;
        }

        private void scan(String tensor, byte[] buf, long token, int n, int heads, int dim) {
            NonFinite.Found found = NonFinite.scan(buf, 0, n * heads * dim, f.dtype);
            if (found.count > 0) {
                if (nonFinite == 0) {
                    long i = found.first;
                    firstNonFinite = tensor + "[" + (token + i / ((long) heads * dim)) + ", " + (i / dim) % heads + ", "
                            + i % dim + "]";
                }
                nonFinite += found.count;
            }
        }

        void failIfNonFinite(Piece p) {
            if (nonFinite > 0) {
                throw new NonFiniteInputException(f.name, p.sequence(), p.start(), nonFinite, firstNonFinite,
                        "tokens [" + p.start() + ", " + p.end() + ")");
            }
        }

        /**
         * Scans the o values the backend wrote for tokens [token, token + n), as they will be
         * stored, the state after them and the states recorded in them; throws at the first NaN/Inf.
         */
        void failIfNonFiniteOutput(Piece p, long token, int n, LightningState state, Checkpoints cp) {
            int heads = spec.heads();
            int dk = spec.dk();
            int dv = spec.dv();
            NonFinite.Found found = NonFinite.scan(oBytes, 0, n * heads * dv, oDtype);
            if (found.count > 0) {
                long i = found.first;
                String first = "o[" + (token + i / ((long) heads * dv)) + ", " + (i / dv) % heads + ", " + i % dv + "]";
                throw new NonFiniteOutputException(f.name, p.sequence(), token, found.count, first, "o", oDtype,
                        "tokens [" + token + ", " + (token + n) + ")");
            }
            String after = "the state after token " + (token + n - 1);
            failIfNonFinite(p, token, state.data(), -1, dk * dv, "final_state", after);
            if (spec.normalized()) {
                failIfNonFinite(p, token, state.normalizerData(), -1, dk, "final_normalizer", after);
            }
            if (cp.count() > 0) {
                String which = "the states recorded in tokens [" + token + ", " + (token + n) + ")";
                failIfNonFinite(p, token, cp.kvData(), cp.first(), dk * dv, "states", which);
                if (spec.normalized()) {
                    failIfNonFinite(p, token, cp.normalizerData(), cp.first(), dk, "normalizers", which);
                }
            }
        }

        /**
         * Throws at the first NaN/Inf of float32 {@code values}: [H, per] (a state or normalizer) when
         * {@code firstIndex} is -1, else [C, H, per] of checkpoints numbered from {@code firstIndex}.
         */
        private void failIfNonFinite(Piece p, long token, float[] values, long firstIndex, int per, String tensor,
                                     String where) {
            long count = 0;
            int first = -1;
            for (int x = 0; x < values.length; x++) {
                if (!Float.isFinite(values[x]) && count++ == 0) {
                    first = x;
                }
            }
            if (count == 0) {
                return;
            }
            int perCheckpoint = spec.heads() * per;
            String at = firstIndex < 0 ? "" : (firstIndex + first / perCheckpoint) + ", ";
            int inState = first % perCheckpoint;
            int h = inState / per;
            int i = inState % per;
            boolean normalizer = per != spec.dk() * spec.dv() || tensor.contains("normalizer");
            String position = normalizer ? at + h + ", " + i : at + h + ", " + i / spec.dv() + ", " + i % spec.dv();
            throw new NonFiniteOutputException(f.name, p.sequence(), token, count, tensor + "[" + position + "]", tensor,
                    DType.F32, where);
        }

        private TokenTensor view(RangeReader in, long tensorOffset, long token, int n, int tokenBytes,
                                 byte[] buf, int heads, int dim) throws IOException {
            int len = n * tokenBytes;
            try {
                in.readFully(tensorOffset + token * tokenBytes, buf, 0, len);
            } catch (java.io.EOFException e) {
                throw new dev.lightning.attention.tensor.InvalidInputException(f.name + ": truncated: tokens ["
                        + token + ", " + (token + n) + ") lie past the end of the file", e);
            }
            return TokenTensor.wrap(f.dtype, n, heads, dim, ByteBuffer.wrap(buf, 0, len));
        }
    }
}
