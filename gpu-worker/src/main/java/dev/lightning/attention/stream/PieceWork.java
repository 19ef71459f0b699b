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
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.LongConsumer;

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
 *
 * <p>Windows live in {@link WindowBuffers}: the backend's host tensors (registered with the driver
 * on the GPU, so the device copies them without staging), read into straight from the file
 * ({@link RangeReader#readFully(long, ByteBuffer)}) and written out from ({@link #write}). A task
 * passes one instance for all its pieces ({@link #reusing}); without one, each call takes its own
 * and gives it back when it returns.
 */
public final class PieceWork {
    private final double scale;
    private final int chunkSize;
    private final Variant variant;
    private final long windowBytes;
    private final DType outputDtype;
    /** The task's window buffers, or null: each pass takes new ones from its backend. */
    private final WindowBuffers windows;
    /**
     * Whether the next window is read (and scanned) on another thread while the current one
     * computes and writes, into a second block ({@link WindowBuffers#spare()}).
     */
    private final boolean readAhead;
    /** Told the tokens of each window once its step has run ({@link #counting}); by default no one. */
    private final LongConsumer counted;

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
        this.windows = null;
        this.readAhead = false;
        this.counted = n -> { };
    }

    private PieceWork(PieceWork w, WindowBuffers windows, boolean readAhead, LongConsumer counted) {
        this.scale = w.scale;
        this.chunkSize = w.chunkSize;
        this.variant = w.variant;
        this.windowBytes = w.windowBytes;
        this.outputDtype = w.outputDtype;
        this.windows = windows;
        this.readAhead = readAhead;
        this.counted = counted;
    }

    /**
     * This work with the task's window buffers: every pass on their backend reuses them (another
     * backend, a CPU fallback, takes its own); {@link WindowBuffers#heap()} gives the heap path.
     */
    public PieceWork reusing(WindowBuffers windows) {
        return new PieceWork(this, java.util.Objects.requireNonNull(windows, "windows"), readAhead, counted);
    }

    /**
     * This work reading one window ahead ({@code true}) or not: with it, window i + 1 is read
     * from the file and scanned on a thread of its own while window i computes and writes its
     * outputs, so the file's reads do not wait for the GPU, the scans and the writes (and the
     * other way round). The two windows share the byte budget, half each, so that a task holds
     * the memory it is given: the windows are half as long, which moves the last bits of o and
     * of the states as any other window length does (the result is that of the same run without
     * read-ahead at half the budget, byte for byte). On the H200, registering a second 1 GiB
     * block per task cost more than the overlap gave back (a split job of 8 pieces at H = 64:
     * 14.7 s against 11.7 s), while smaller windows paid (256 MiB: 10.4 s, 9.96 s reading ahead).
     */
    public PieceWork readAhead(boolean on) {
        return new PieceWork(this, windows, on, counted);
    }

    /**
     * This work telling {@code counted} the tokens of each window once it is computed (and, in
     * pass 2, written), in order: a piece of many windows reports as it goes, where its caller
     * learnt nothing until it returned (the Spark job's progress line stood still through tasks of
     * minutes). A window found unclean (NaN/Inf) is not computed, so not counted; a piece computed
     * again (a GPU out of memory, then the CPU) counts its windows again: the caller caps.
     */
    public PieceWork counting(LongConsumer counted) {
        return new PieceWork(this, windows, readAhead, java.util.Objects.requireNonNull(counted, "counted"));
    }

    /** The window buffers a pass on {@code backend} uses. */
    private WindowBuffers windows(AttentionBackend backend) {
        return windows == null ? WindowBuffers.of(backend) : windows.on(backend);
    }

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
        long budget = readAhead ? windowBytes / 2 : windowBytes; // two windows in the budget
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
                "initial_normalizer", spec.dk(), 0);
        return LightningState.own(spec.heads(), spec.dk(), spec.dv(), kv, z);
    }

    /**
     * {@code elements} float32 values of tensor {@code name} ([H, d1, d2], or [H, d1] for {@code d2} 0) at
     * {@code offset}, or zeros for -1. The rank is said, not guessed from d2 = 1: an initial_state of Dv = 1 is
     * still [H, Dk, 1], and its positions have three indices.
     */
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
            String at = d2 == 0 ? i / d1 + ", " + i % d1 : i / ((long) d1 * d2) + ", " + (i / d2) % d1 + ", " + i % d2;
            throw new NonFiniteInputException(f.name, sequence, -1, bad.count, name + "[" + at + "]", name);
        }
        ByteBuffer.wrap(raw).order(java.nio.ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(values);
        return values;
    }

    /** Pass 1: the piece's local state (S, and z when normalizing), from zero. */
    public LightningState localState(AttentionBackend backend, RangeReader in, SequenceFile f, Piece p)
            throws IOException {
        WindowBuffers buffers = windows(backend);
        try {
            return localState(backend, buffers, in, f, p);
        } finally {
            if (buffers != windows) {
                buffers.release(); // this call's own: registered memory is not left to the backend's close
            }
        }
    }

    private LightningState localState(AttentionBackend backend, WindowBuffers buffers, RangeReader in, SequenceFile f,
                                      Piece p) throws IOException {
        AttentionSpec spec = spec(f);
        LightningState[] state = {LightningState.zeros(spec)};
        // the block is sized as pass 2's window (q and o too, unused here): the executor keeps it
        // registered, and pass 2's tasks then take it instead of registering larger ones
        Windows ws = new Windows(f, spec, windowTokens(f, p), null, outputDtype, buffers, readAhead, counted);
        ws.run(in, p, (w, at, n) -> {
            try {
                state[0] = backend.advance(spec, w.k, w.v, state[0]);
            } catch (RuntimeException e) {
                throw located(e, f, p, at, n, backend);
            }
        });
        return state[0];
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
        WindowBuffers buffers = windows(backend);
        try {
            return outputs(backend, buffers, in, f, p, incoming, out, states, normalizers);
        } finally {
            if (buffers != windows) {
                buffers.release();
            }
        }
    }

    private LightningState outputs(AttentionBackend backend, WindowBuffers buffers, RangeReader in, SequenceFile f,
                                   Piece p, LightningState incoming, OutputStream out, OutputStream states,
                                   OutputStream normalizers) throws IOException {
        AttentionSpec spec = spec(f);
        LightningState[] state = {incoming};
        Windows ws = new Windows(f, spec, windowTokens(f, p), outputDtype, outputDtype, buffers, readAhead,
                counted);
        ws.run(in, p, (w, at, n) -> {
            Checkpoints cp = variant.checkpoints() ? Checkpoints.of(spec, variant.stateEvery(), at, n)
                    : Checkpoints.none();
            try {
                state[0] = backend.forward(spec, w.q, w.k, w.v, state[0], w.o, cp);
            } catch (RuntimeException e) {
                throw located(e, f, p, at, n, backend);
            }
            w.failIfNonFiniteOutput(p, at, n, state[0], cp);
            write(out, w.o.writableBytes());
            if (cp.count() > 0) {
                writeFloats(states, cp.kvData(), cp.count() * spec.stateSize());
                if (spec.normalized()) {
                    writeFloats(normalizers, cp.normalizerData(), cp.count() * spec.normalizerSize());
                }
            }
        });
        return state[0];
    }

    /**
     * Writes {@code src}'s remaining bytes to {@code out}: a heap buffer's array as it is; an
     * off-heap buffer (a host tensor) through the channel of a file stream or of a stream that is
     * a channel (the job's local outputs: {@link PositionedOutput}, which writes it in parallel
     * parts), from the buffer itself, and to any other stream (Hadoop's, a checksum sink) through
     * a heap array of at most {@link RangeReader#COPY_CHUNK} bytes.
     */
    static void write(OutputStream out, ByteBuffer src) throws IOException {
        if (src.hasArray()) {
            out.write(src.array(), src.arrayOffset() + src.position(), src.remaining());
            src.position(src.limit());
            return;
        }
        java.nio.channels.WritableByteChannel channel = out instanceof java.io.FileOutputStream file
                ? file.getChannel() // shares the stream's position: earlier and later stream writes stay in order
                : out instanceof java.nio.channels.WritableByteChannel c ? c : null;
        if (channel != null) {
            while (src.hasRemaining()) {
                channel.write(src);
            }
            return;
        }
        byte[] chunk = new byte[Math.min(src.remaining(), RangeReader.COPY_CHUNK)];
        while (src.hasRemaining()) {
            int len = Math.min(chunk.length, src.remaining());
            src.get(chunk, 0, len);
            out.write(chunk, 0, len);
        }
    }

    /**
     * The first {@code n} values of {@code values} as little-endian float32 bytes, through a heap copy of at most
     * {@link RangeReader#COPY_CHUNK} bytes: the window budget pays for the recorded states once
     * ({@link #windowTokens}), and a copy of all of them at once held them twice.
     */
    private static void writeFloats(OutputStream out, float[] values, int n) throws IOException {
        int per = RangeReader.COPY_CHUNK / Float.BYTES;
        ByteBuffer b = ByteBuffer.allocate(Math.min(n, per) * Float.BYTES).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (int at = 0; at < n; at += per) {
            int len = Math.min(per, n - at);
            b.clear();
            b.asFloatBuffer().put(values, at, len);
            out.write(b.array(), 0, len * Float.BYTES);
        }
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

    /** What a pass does with one window that was read and found clean: tokens [at, at + n) lie in {@code w}. */
    @FunctionalInterface
    private interface Step {
        void run(Window w, long at, int n) throws IOException;
    }

    /** The JVM's read-ahead threads (daemons, made on first use); each piece has at most one read in flight. */
    private static volatile ExecutorService readers;

    private static ExecutorService readers() {
        ExecutorService r = readers;
        if (r == null) {
            synchronized (PieceWork.class) {
                r = readers;
                if (r == null) {
                    r = Executors.newCachedThreadPool(task -> {
                        Thread t = new Thread(task, "lightning-read-ahead");
                        t.setDaemon(true);
                        return t;
                    });
                    readers = r;
                }
            }
        }
        return r;
    }

    /**
     * The windows of one piece, in order: each is read and scanned, then (while the piece is clean
     * so far) given to the pass's step. With read-ahead, two windows take turns: the read of the
     * next runs on a read-ahead thread while the step runs on the current one, and a window's
     * buffers are read into again only after its step has returned. Whatever happens, no read
     * still writes into a block when this returns or throws, so the caller may release it.
     */
    private static final class Windows {
        final SequenceFile f;
        final AttentionSpec spec;
        final int capacity;
        final DType oDtype;
        final DType sizeAs;
        final WindowBuffers buffers;
        final boolean readAhead;
        final LongConsumer counted;

        /** {@code oDtype} null: no outputs (pass 1); {@code sizeAs}: the o dtype the blocks are sized for. */
        Windows(SequenceFile f, AttentionSpec spec, int capacity, DType oDtype, DType sizeAs, WindowBuffers buffers,
                boolean readAhead, LongConsumer counted) {
            this.f = f;
            this.spec = spec;
            this.capacity = capacity;
            this.oDtype = oDtype;
            this.sizeAs = sizeAs;
            this.buffers = buffers;
            this.readAhead = readAhead;
            this.counted = counted;
        }

        void run(RangeReader in, Piece p, Step step) throws IOException {
            InputScan scan = new InputScan();
            Window a = new Window(this, buffers, scan);
            if (!readAhead || p.tokens() <= capacity) { // one window: nothing to read ahead of
                for (long at = p.start(); at < p.end(); at += capacity) {
                    int n = (int) Math.min(capacity, p.end() - at);
                    if (a.read(in, at, n)) {
                        step.run(a, at, n);
                        counted.accept(n);
                    }
                }
                scan.failIfNonFinite(f, p);
                return;
            }
            Future<Boolean> pending = readAsync(a, in, p.start(), (int) Math.min(capacity, p.tokens()));
            try {
                // the second block is taken (on the GPU: registered) while the first window is read
                Window b = new Window(this, buffers.spare(), scan);
                Window current = a;
                Window other = b;
                for (long at = p.start(); at < p.end(); at += capacity) {
                    int n = (int) Math.min(capacity, p.end() - at);
                    Future<Boolean> read = pending;
                    pending = null; // ended once await returns or throws
                    boolean clean = await(read); // whether windows up to this one are free of NaN/Inf
                    long next = at + capacity;
                    if (next < p.end()) {
                        pending = readAsync(other, in, next, (int) Math.min(capacity, p.end() - next));
                    }
                    if (clean) {
                        step.run(current, at, n);
                        counted.accept(n);
                    }
                    Window t = current;
                    current = other;
                    other = t;
                }
            } catch (IOException | RuntimeException | Error e) {
                if (pending != null) {
                    drain(pending, e); // the block it reads into must not be released or reused under it
                }
                throw e;
            }
            scan.failIfNonFinite(f, p);
        }

        private static Future<Boolean> readAsync(Window w, RangeReader in, long at, int n) {
            return readers().submit(() -> w.read(in, at, n));
        }

        /** The result of a read, once it has ended; its failure as thrown by the read itself. */
        private static boolean await(Future<Boolean> read) throws IOException {
            boolean interrupted = false;
            try {
                while (true) {
                    try {
                        return read.get();
                    } catch (InterruptedException e) {
                        interrupted = true; // the read goes on into our block: wait for its end, then report
                    } catch (ExecutionException e) {
                        Throwable c = e.getCause();
                        if (c instanceof IOException x) {
                            throw x;
                        }
                        if (c instanceof RuntimeException x) {
                            throw x;
                        }
                        if (c instanceof Error x) {
                            throw x;
                        }
                        throw new IOException("a read-ahead failed: " + c, c);
                    }
                }
            } finally {
                if (interrupted) {
                    Thread.currentThread().interrupt();
                }
            }
        }

        /** Waits for {@code read} to end after {@code failure}; what the read threw is added to it. */
        private static void drain(Future<Boolean> read, Throwable failure) {
            try {
                await(read);
            } catch (IOException | RuntimeException | Error e) {
                failure.addSuppressed(e);
            }
        }
    }

    /** NaN/Inf found so far in a piece's inputs, and where the first was; shared by the piece's windows. */
    private static final class InputScan {
        long nonFinite;
        String firstNonFinite;
        /** The token of {@link #firstNonFinite}; Long.MAX_VALUE while there is none. */
        long firstToken = Long.MAX_VALUE;

        void failIfNonFinite(SequenceFile f, Piece p) {
            if (nonFinite > 0) {
                throw new NonFiniteInputException(f.name, p.sequence(), p.start(), nonFinite, firstNonFinite,
                        "tokens [" + p.start() + ", " + p.end() + ")");
            }
        }
    }

    /** Buffers for one window of q, k, v (and o) from the task's {@link WindowBuffers}, viewed as tensors of the current size. */
    private static final class Window {
        final SequenceFile f;
        final AttentionSpec spec;
        /** The dtype of o; null in pass 1, which has no outputs. */
        final DType oDtype;
        final int qTokenBytes;
        final int kTokenBytes;
        final int vTokenBytes;
        /** Whole-capacity views of the blocks; q and o null in pass 1. */
        final TokenTensor qAll;
        final TokenTensor kAll;
        final TokenTensor vAll;
        final TokenTensor oAll;
        TokenTensor q;
        TokenTensor k;
        TokenTensor v;
        TokenTensor o;
        /** NaN/Inf found so far in this piece's inputs (all its windows'). */
        final InputScan scan;

        /**
         * A window of {@code of}'s file, spec and capacity in {@code buffers}. In pass 1 ({@code of.oDtype}
         * null: no q and o) the block still has their room ({@code of.sizeAs} for o), so that both passes'
         * windows fit one block.
         */
        Window(Windows of, WindowBuffers buffers, InputScan scan) {
            this.scan = scan;
            this.f = of.f;
            this.spec = of.spec;
            this.oDtype = of.oDtype;
            boolean outputs = oDtype != null;
            int es = f.dtype.bytes();
            qTokenBytes = spec.headsQ() * spec.dk() * es;
            kTokenBytes = spec.headsK() * spec.dk() * es;
            vTokenBytes = spec.headsV() * spec.dv() * es;
            TokenTensor[] all = buffers.window(of.capacity,
                    new WindowBuffers.Shape(f.dtype, spec.headsQ(), spec.dk()),
                    new WindowBuffers.Shape(f.dtype, spec.headsK(), spec.dk()),
                    new WindowBuffers.Shape(f.dtype, spec.headsV(), spec.dv()),
                    new WindowBuffers.Shape(outputs ? oDtype : of.sizeAs, spec.heads(), spec.dv()));
            qAll = outputs ? all[0] : null;
            kAll = all[1];
            vAll = all[2];
            oAll = outputs ? all[3] : null;
        }

        /**
         * Reads tokens [token, token + n) and scans them for NaN/Inf. Returns whether the piece is
         * still clean, i.e. whether to compute: after the first bad value the rest is only counted.
         */
        boolean read(RangeReader in, long token, int n) throws IOException {
            if (qAll != null) {
                q = view(in, f.qOffset, token, n, qTokenBytes, qAll);
                o = oAll.slice(0, n);
                scan("q", q, token, n, spec.headsQ(), spec.dk());
            }
            k = view(in, f.kOffset, token, n, kTokenBytes, kAll);
            v = view(in, f.vOffset, token, n, vTokenBytes, vAll);
            scan("k", k, token, n, spec.headsK(), spec.dk());
            scan("v", v, token, n, spec.headsV(), spec.dv());
            return scan.nonFinite == 0;
        }

        private void scan(String tensor, TokenTensor t, long token, int n, int heads, int dim) {
            NonFinite.Found found = NonFinite.scan(t.writableBytes(), 0, n * heads * dim, f.dtype);
            if (found.count > 0) {
                long i = found.first;
                long at = token + i / ((long) heads * dim);
                // the earliest token's, whichever tensor holds it: a window scans q, k, v in turn, and
                // taking the first tensor's would name a later token in longer windows (windows come in
                // token order, so a later window never replaces an earlier one's)
                if (at < scan.firstToken) {
                    scan.firstToken = at;
                    scan.firstNonFinite = tensor + "[" + at + ", " + (i / dim) % heads + ", " + i % dim + "]";
                }
                scan.nonFinite += found.count;
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
            NonFinite.Found found = NonFinite.scan(o.writableBytes(), 0, n * heads * dv, oDtype);
            if (found.count > 0) {
                long i = found.first;
                String first = "o[" + (token + i / ((long) heads * dv)) + ", " + (i / dv) % heads + ", " + i % dv + "]";
                throw new NonFiniteOutputException(f.name, p.sequence(), token, found.count, first, "o", oDtype,
                        "tokens [" + token + ", " + (token + n) + ")", spec.normalized() && spec.eps() == 0);
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

        /** Reads tokens [token, token + n) of the tensor at {@code tensorOffset} into the first n of {@code all}. */
        private TokenTensor view(RangeReader in, long tensorOffset, long token, int n, int tokenBytes,
                                 TokenTensor all) throws IOException {
            TokenTensor t = all.slice(0, n);
            try {
                in.readFully(tensorOffset + token * tokenBytes, t.writableBytes());
            } catch (java.io.EOFException e) {
                throw new dev.lightning.attention.tensor.InvalidInputException(f.name + ": truncated: tokens ["
                        + token + ", " + (token + n) + ") lie past the end of the file", e);
            }
            return t;
        }
    }
}
