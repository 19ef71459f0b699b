package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
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
 */
public final class PieceWork {
    private final double scale;
    private final int chunkSize;
    private final long windowBytes;
    private final DType outputDtype;

    /** @param outputDtype the dtype of {@code o}, already resolved against the file's (never "input") */
    public PieceWork(double scale, int chunkSize, long windowBytes, DType outputDtype) {
        this.scale = scale;
        this.chunkSize = chunkSize;
        this.windowBytes = windowBytes;
        this.outputDtype = java.util.Objects.requireNonNull(outputDtype, "outputDtype");
    }

    /** Tokens per window for this file: as many chunks as fit the byte budget, at least one. */
    int windowTokens(SequenceFile f, Piece p) {
        long perToken = f.inputBytesPerToken() + f.outputBytesPerToken(outputDtype);
        long chunks = Math.max(1, windowBytes / perToken / chunkSize);
        long tokens = Math.min((long) Integer.MAX_VALUE / Math.max(perToken, 1) / 2, chunks * chunkSize);
        tokens = Math.max(chunkSize, tokens - tokens % chunkSize);
        return (int) Math.min(tokens, p.tokens());
    }

    /** The state a sequence starts from: its {@code initial_state}, or zero. */
    public static LightningState initialState(RangeReader in, SequenceFile f, int sequence) throws IOException {
        if (f.initialStateOffset < 0) {
            return LightningState.zeros(f.heads, f.dk, f.dv);
        }
        byte[] raw = new byte[Math.toIntExact(f.stateBytes())];
        int elements = raw.length / Float.BYTES;
        SequenceFile.readFully(in, f.initialStateOffset, raw, f.name);
        NonFinite.Found bad = NonFinite.scan(raw, 0, elements, DType.F32);
        if (bad.count > 0) {
            long i = bad.first;
            throw new NonFiniteInputException(f.name, sequence, -1, bad.count, "initial_state[" + i / (f.dk * f.dv) + ", "
                    + (i / f.dv) % f.dk + ", " + i % f.dv + "]", "initial_state");
        }
        return LightningState.fromBytes(f.heads, f.dk, f.dv, ByteBuffer.wrap(raw));
    }

    /** Pass 1: the piece's local state, from zero. */
    public LightningState localState(AttentionBackend backend, RangeReader in, SequenceFile f, Piece p)
            throws IOException {
        AttentionSpec spec = f.spec(scale, chunkSize);
        Window w = new Window(f, windowTokens(f, p), null);
        LightningState state = LightningState.zeros(f.heads, f.dk, f.dv);
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

    /**
     * Pass 2: writes the piece's o bytes ({@code [n, H, Dv]} in the output dtype) and returns its
     * final state.
     *
     * @throws NonFiniteInputException  when q, k or v hold NaN/Inf (after scanning the whole piece)
     * @throws NonFiniteOutputException at the first window whose o or state holds NaN/Inf, before
     *                                  that window is written
     */
    public LightningState outputs(AttentionBackend backend, RangeReader in, SequenceFile f, Piece p,
                           LightningState incoming, OutputStream out) throws IOException {
        AttentionSpec spec = f.spec(scale, chunkSize);
        Window w = new Window(f, windowTokens(f, p), outputDtype);
        LightningState state = incoming;
        for (long at = p.start(); at < p.end(); at += w.capacity) {
            int n = (int) Math.min(w.capacity, p.end() - at);
            if (w.read(in, at, n)) {
                try {
                    state = backend.forward(spec, w.q, w.k, w.v, state, w.o);
                } catch (RuntimeException e) {
                    throw located(e, f, p, at, n, backend);
                }
                w.failIfNonFiniteOutput(p, at, n, state);
                out.write(w.oBytes, 0, n * w.oTokenBytes);
            }
        }
        w.failIfNonFinite(p);
        return state;
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
        /** The dtype of o; null in pass 1, which has no outputs. */
        final DType oDtype;
        final int capacity;
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

        Window(SequenceFile f, int capacity, DType oDtype) {
            this.f = f;
            this.oDtype = oDtype;
            this.capacity = capacity;
            boolean outputs = oDtype != null;
            int es = f.dtype.bytes();
            kTokenBytes = f.heads * f.dk * es;
            vTokenBytes = f.heads * f.dv * es;
            oTokenBytes = outputs ? f.heads * f.dv * oDtype.bytes() : 0;
            qBytes = outputs ? new byte[capacity * kTokenBytes] : null;
            kBytes = new byte[capacity * kTokenBytes];
            vBytes = new byte[capacity * vTokenBytes];
            oBytes = outputs ? new byte[capacity * oTokenBytes] : null;
        }

        /**
         * Reads tokens [token, token + n) and scans them for NaN/Inf. Returns whether the piece is
         * still clean, i.e. whether to compute: after the first bad value the rest is only counted.
         */
        boolean read(RangeReader in, long token, int n) throws IOException {
            if (qBytes != null) {
                q = view(in, f.qOffset, token, n, kTokenBytes, qBytes, f.dk);
                o = TokenTensor.wrap(oDtype, n, f.heads, f.dv, ByteBuffer.wrap(oBytes, 0, n * oTokenBytes));
                scan("q", qBytes, token, n, f.dk);
            }
            k = view(in, f.kOffset, token, n, kTokenBytes, kBytes, f.dk);
            v = view(in, f.vOffset, token, n, vTokenBytes, vBytes, f.dv);
            scan("k", kBytes, token, n, f.dk);
            scan("v", vBytes, token, n, f.dv);
            return nonFinite == 0;
        }

        private void scan(String tensor, byte[] buf, long token, int n, int dim) {
            NonFinite.Found found = NonFinite.scan(buf, 0, n * f.heads * dim, f.dtype);
            if (found.count > 0) {
                if (nonFinite == 0) {
                    long i = found.first;
                    firstNonFinite = tensor + "[" + (token + i / ((long) f.heads * dim)) + ", " + (i / dim) % f.heads + ", "
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
         * stored, and the state after them; throws at the first NaN/Inf.
         */
        void failIfNonFiniteOutput(Piece p, long token, int n, LightningState state) {
            NonFinite.Found found = NonFinite.scan(oBytes, 0, n * f.heads * f.dv, oDtype);
            if (found.count > 0) {
                long i = found.first;
                String first = "o[" + (token + i / ((long) f.heads * f.dv)) + ", " + (i / f.dv) % f.heads + ", "
                        + i % f.dv + "]";
                throw new NonFiniteOutputException(f.name, p.sequence(), token, found.count, first, "o", oDtype,
                        "tokens [" + token + ", " + (token + n) + ")");
            }
            long count = 0;
            String first = null;
            for (int h = 0; h < f.heads; h++) {
                for (int i = 0; i < f.dk; i++) {
                    for (int j = 0; j < f.dv; j++) {
                        if (!Float.isFinite(state.get(h, i, j)) && count++ == 0) {
                            first = "final_state[" + h + ", " + i + ", " + j + "]";
                        }
                    }
                }
            }
            if (count > 0) {
                throw new NonFiniteOutputException(f.name, p.sequence(), token, count, first, "final_state",
                        DType.F32, "the state after token " + (token + n - 1));
            }
        }

        private TokenTensor view(RangeReader in, long tensorOffset, long token, int n, int tokenBytes,
                                 byte[] buf, int dim) throws IOException {
            int len = n * tokenBytes;
            try {
                in.readFully(tensorOffset + token * tokenBytes, buf, 0, len);
            } catch (java.io.EOFException e) {
                throw new dev.lightning.attention.tensor.InvalidInputException(f.name + ": truncated: tokens ["
                        + token + ", " + (token + n) + ") lie past the end of the file", e);
            }
            return TokenTensor.wrap(f.dtype, n, f.heads, dim, ByteBuffer.wrap(buf, 0, len));
        }
    }
}
