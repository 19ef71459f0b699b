package dev.lightning.attention.engine.cpu;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.Decay;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.tensor.TokenTensor;

import dev.lightning.attention.tensor.DType;

import java.nio.ByteBuffer;

/**
 * The fast CPU path: the block form in float32 with a float32 state, written as small dense
 * products done by one register-blocked microkernel ({@link Kernel}: {@link VectorKernel} on
 * jdk.incubator.vector where the JVM has it, {@link ScalarKernel} otherwise). For a chunk of m
 * tokens of one head (local i, j; Q, K: m x Dk, V: m x Dv, P: Dk x Dv, q and k already through phi):
 * <pre>
 *   A  = (Q K^T) .* D,  D_ij = lambda^(i-j) for j <= i, else 0         (m x m, lower triangle only)
 *   O  = A V + (diag(lambda^(i+1)) Q) P = [Qd | A] [P ; V]               (m x Dv)
 *   P' = lambda^m P + K^T (diag(lambda^(m-1-j)) V)                      (Dk x Dv)
 * </pre>
 * Per token that is 2 Dk Dv multiply-adds for the inter part and the state update, and about
 * (m / 2)(Dk + Dv) for the two triangular products, which are computed by row blocks of 4 over the
 * columns j &lt;= i only (rounded up to 16). O is one product: the decayed queries Qd sit beside A
 * in the rows of one matrix, and the chunk's V under the head's state, so that row block i0 of O
 * sums q P and then A V in the same accumulators over the depth Dk + i0 + 4 and is stored once
 * (o's rows lie H Dv floats apart, on a few L1 sets: three passes over them cost more than the
 * FMAs they saved).
 *
 * <p>Tokens are taken in blocks of {@link #BLOCK_TOKENS} (a whole number of chunks): q, k and v
 * of every head of the block are read in one bulk copy, the feature map is applied to them once
 * (a k head shared by a group of heads is mapped once), and each head then runs its chunks on
 * its rows in place (a row stride of Hq Dk skips the other heads); o of the block is written back
 * in one copy. Rows that a product reads many times (V in pass 2, and K for the state) are first
 * copied to contiguous scratch: in the block they lie H D floats apart, a power of two that maps
 * them to a few L1 sets (pass 1 reads V once, into its decayed copy). In pass 2 K^T is built once
 * per chunk (the scores need its rows, and the state update reads them); pass 1 copies K's rows
 * contiguous instead and the state update reads them as A transposed (no transpose). The scores are
 * computed in bands of 16 rows that need the same columns; the causal mask multiplies whole
 * vectors below the diagonal. A head's state ({@code Dk x Dv}, 64 KiB at 128 x 128) serves a few chunks in a row
 * while it is in cache; the state product adds its sum into it as it stores
 * ({@link Kernel#productScaleAdd}), with no second pass over the state. What the tiles stream as
 * B (K^T, the decayed V, every head's [P ; V]) and o's rows live in one array whose parts start
 * on cache lines ({@link AlignedFloats}).
 *
 * <p>Every variant of the spec, in the same loops. Head h reads q head {@code spec.qHead(h)},
 * k head {@code spec.kHead(h)} and v head {@code spec.vHead(h)}. Normalizing adds, per block of
 * m tokens with normalizer zP before it:
 * <pre>
 *   den_i = sum_{j <= i} A_ij + lambda^(i+1) q_i . zP     o_i = scale num_i / (den_i + eps)
 *   zP'   = lambda^m zP + sum_j lambda^(m-1-j) k_j
 * </pre>
 * the row sums of the masked scores the numerator forms anyway and a Dk dot product per token.
 * o_i's factor (scale, or scale / (den_i + eps)) multiplies row i of [Qd | A] before the product.
 * Checkpoints fall on chunk ends (the spec checks that their interval and the window's position
 * are whole chunks): after a chunk whose last token is one, P and zP are recorded for the head.
 *
 * <p>Precision: a chunk's contribution to the state (and to z) is summed apart and added once
 * (lambda^m P + dP), so the carried state sees T / chunk additions, not T. Decay powers come from
 * exp(-slope * n) in float64, rounded once; the carry takes lambda^m in the form that keeps its bits
 * ({@link Decay}: 1 - lambda^m near 1, where lambda^m rounded to float32 biases a slow head's rate). elu1 uses the vector kernel's float32 exp (within
 * 1 ulp, {@link VectorKernel}; below ln 2^-126, where that exp stops at 2^-126, exp in float64 rounded
 * once) or, in the scalar kernel, exp in float64 rounded once.
 */
public final class CpuBackend implements AttentionBackend {
    /**
     * Tokens read, computed and written at a time (rounded up to whole chunks): one chunk of 64,
     * so that q, k, v and o of a block of all heads stay in a core's L2 (256 KiB each at H = 8,
     * D = 128; blocks of 256 tokens held 4 MiB). KernelBench, T = 65,536, H = 8, F32, median of 3
     * at load 2, GFLOP per CPU-second against blocks of 256: D = 128 pass 1 76.5 / 70.0, pass 2
     * 68.9 / 65.3; D = 64 54 / 55 and 55.8 / 53.4.
     */
    static final int BLOCK_TOKENS = 64;
    /**
     * Calls of at least this many tokens get their scratch in an array aligned to cache lines
     * ({@link AlignedFloats}), when they make a new one: 16 blocks of 64 tokens, a few milliseconds
     * of work at the smallest head counts, against the 0.1 to 1.5 ms of zeroing a humongous array.
     */
    static final int ALIGNED_FROM = 1024;
    /** Row block of the triangular products (the microkernel's tile height). */
    private static final int ROWS = 4;

    private final Kernel kernel;
    /** Whether long calls first run the JVM's {@link WarmUp} of their kind ({@link WarmUp#worth}). */
    private final boolean warm;
    /**
     * The buffers of the last call, for the next call of the same shapes: a call allocated and
     * zeroed about 0.3 MB of them (and 130 exp for the decay tables), which at pieces of 128
     * tokens was a fifth of the job's CPU time (BENCHMARKS.md, "Time per token at 100,000
     * pieces"). A call takes them (so concurrent calls never share them) and gives them back.
     * Their contents between calls do not matter: a call writes every element before it reads
     * it, as it already does when it reuses them from one block of tokens to the next.
     */
    private final java.util.concurrent.atomic.AtomicReference<Scratch> spare =
            new java.util.concurrent.atomic.AtomicReference<>();

    /** The off-heap blocks this backend handed out ({@link #scratchHostTensor}) and not yet got back, by tensor. */
    private final java.util.Map<TokenTensor, ByteBuffer> blocks = new java.util.IdentityHashMap<>();

    public CpuBackend() {
        this(Kernel.best());
    }

    CpuBackend(Kernel kernel) {
        this(kernel, true);
    }

    /** @param warm whether long calls run the JVM's {@link WarmUp} of their kind first (its own backends: no) */
    CpuBackend(Kernel kernel, boolean warm) {
        this.kernel = kernel;
        this.warm = warm;
    }

    @Override
    public String name() {
        return "cpu";
    }

    @Override
    public String device() {
        return "cpu";
    }

    /** The microkernel in use: "vector (512-bit, 16 float lanes)" or "scalar". */
    public String kernelName() {
        return kernel.name();
    }

    /**
     * Window blocks off the heap ({@link OffHeapBlocks}), so that the file's reads land in them and
     * o leaves them with one copy by the kernel each (a heap buffer costs the JDK's copy through a
     * temporary direct buffer besides). They are the JVM's, kept between tasks: this backend gives
     * back the ones it handed out at {@link #releaseHostTensor} or {@link #close}.
     */
    @Override
    public TokenTensor scratchHostTensor(DType dtype, int tokens, int heads, int dim) {
        int bytes = Math.toIntExact((long) tokens * heads * dim * dtype.bytes());
        ByteBuffer block = OffHeapBlocks.take(bytes);
        TokenTensor t = TokenTensor.wrap(dtype, tokens, heads, dim, block.slice(0, bytes));
        synchronized (blocks) {
            blocks.put(t, block);
        }
        return t;
    }

    /** Gives a block of {@link #scratchHostTensor} back to the JVM's; nothing for any other tensor. */
    @Override
    public void releaseHostTensor(TokenTensor t) {
        ByteBuffer block;
        synchronized (blocks) {
            block = blocks.remove(t);
        }
        if (block != null) {
            OffHeapBlocks.give(block);
        }
    }

    /** Gives back every block of {@link #scratchHostTensor} not yet released; the backend stays usable. */
    @Override
    public void close() {
        java.util.List<ByteBuffer> left;
        synchronized (blocks) {
            left = new java.util.ArrayList<>(blocks.values());
            blocks.clear();
        }
        left.forEach(OffHeapBlocks::give);
    }

    @Override
    public LightningState advance(AttentionSpec spec, TokenTensor k, TokenTensor v, LightningState state) {
        spec.checkAdvance(k, v, state);
        return run(spec, null, k, v, state, null, Checkpoints.none());
    }

    @Override
    public LightningState forward(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                                  LightningState state, TokenTensor o, Checkpoints checkpoints) {
        spec.checkForward(q, k, v, state, o, checkpoints);
        return run(spec, q, k, v, state, o, checkpoints);
    }

    /**
     * {@link #forward} for a caller that keeps its states in arrays of its own (the CPU batch step's slots): the state
     * after the tokens is written into {@code kv} ({@code [H*Dk*Dv]}) and {@code z} ({@code [H*Dk]}, null without
     * normalization) instead of into a new state, which such a caller copied out and dropped (512 KiB a sequence at
     * H = 8, D = 128). They may be {@code state}'s own arrays: the call reads the state into its buffers before it
     * computes and writes these only when it is done.
     */
    public void forwardInto(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v, LightningState state,
                            TokenTensor o, float[] kv, float[] z) {
        spec.checkForward(q, k, v, state, o, Checkpoints.none());
        if (kv.length != spec.stateSize() || (z == null) == spec.normalized()
                || (z != null && z.length != spec.normalizerSize())) {
            throw new IllegalArgumentException("the state after the tokens needs " + spec.stateSize() + " floats for S and "
                    + (spec.normalized() ? spec.normalizerSize() + " for z" : "null for z (no normalization)") + ", got "
                    + kv.length + " and " + (z == null ? "null" : z.length) + ": give arrays of the spec's state");
        }
        run(spec, q, k, v, state, o, Checkpoints.none(), kv, z);
    }

    private LightningState run(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v, LightningState state,
                               TokenTensor o, Checkpoints checkpoints) {
        float[] next = new float[spec.stateSize()];
        float[] nextZ = spec.normalized() ? new float[spec.normalizerSize()] : null;
        run(spec, q, k, v, state, o, checkpoints, next, nextZ);
        return LightningState.own(spec.heads(), spec.dk(), spec.dv(), next, nextZ);
    }

    /** One call, the state after it written into {@code next} and {@code nextZ}. */
    private void run(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v, LightningState state,
                     TokenTensor o, Checkpoints checkpoints, float[] next, float[] nextZ) {
        if (warm && WarmUp.worth(spec, k.tokens())) {
            WarmUp.before(kernel, spec, k.dtype(), v.dtype());
        }
        Run r = new Run(kernel, spec, q, k, v, state, o, checkpoints, spare.getAndSet(null));
        r.run(next, nextZ);
        spare.set(r.sc);
    }

    /**
     * The buffers of a call and the shapes they were made for ({@link #shape}), and the decay
     * tables of the spec they were computed for.
     */
    private static final class Scratch {
        final int[] shape;
        final float[] qb;
        final float[] kb;
        final float[] vb;
        /** Scratch of the bfloat16 reads and writes; null where no tensor is bfloat16. */
        final short[] halves;
        /**
         * The operands the tiles stream as B, and o's rows, in one array whose parts start on
         * 64-byte lines ({@link AlignedFloats}): K^T of a chunk at {@link #ktAt} (Dk x m; in pass 1
         * K's rows, m x Dk), its
         * decayed V at {@link #vwAt} (m x Dv), the block's o at {@link #obAt} (rows x ldo), and per
         * head h the state with the chunk's V under it at {@link #pAt} + h {@link #pSize}
         * ({@code Dk + m} rows of Dv, {@link Run}).
         */
        final float[] arena;
        /** Whether {@link #arena} was made aligned ({@link AlignedFloats#allocate}). */
        final boolean aligned;
        final int ktAt;
        final int vwAt;
        final int obAt;
        final int pAt;
        final int pSize;
        /**
         * Pass 2's left operand of o, m rows of Dk + m: row i is [lambda^(i+1) q_i | A_i], the
         * decayed query beside the masked scores, so that o_i = [qd_i | A_i] [P ; V] is one product
         * (the head's state and the chunk's V stacked likewise, {@link Run#p}).
         */
        final float[] aq;
        /** A head's state alone ({@code Dk x Dv}), for a checkpoint. */
        final float[] stateOut;
        final float[] dz;
        /** The spec of pow and rev: per head, lambda^x for x = 0..chunk, and rev[x] = lambda^(chunk-1-x). */
        AttentionSpec decaySpec;
        float[][] pow;
        /** The chunk carry's decay codes (lambda^x, {@link Decay}) for x = 0..chunk. */
        float[][] carry;
        float[][] rev;

        /** shape: rows, ldq, ldk, ldv, ldo (0 without o), o element bytes, halves, dk, dv, m, q (1 or 0), heads. */
        Scratch(int[] shape, boolean aligned) {
            this.shape = shape;
            int rows = shape[0];
            int ldq = shape[1];
            int ldk = shape[2];
            int ldv = shape[3];
            int ldo = shape[4];
            int dk = shape[7];
            int dv = shape[8];
            int m = shape[9];
            boolean hasQ = shape[10] == 1;
            int heads = shape[11];
            qb = hasQ ? new float[rows * ldq] : null;
            kb = new float[rows * ldk];
            vb = new float[rows * ldv];
            halves = shape[6] == 0 ? null : new short[shape[6]];
            ktAt = AlignedFloats.BASE;
            vwAt = ktAt + AlignedFloats.lines(dk * m);
            obAt = vwAt + AlignedFloats.lines(m * dv);
            pAt = obAt + AlignedFloats.lines(rows * ldo);
            pSize = AlignedFloats.lines((dk + m) * dv);
            arena = AlignedFloats.allocate(pAt - AlignedFloats.BASE + heads * pSize, aligned);
            this.aligned = aligned;
            aq = hasQ ? new float[m * (dk + m)] : null;
            stateOut = new float[dk * dv];
            dz = new float[dk];
        }
    }

    /** One call: its shapes, its buffers (allocated once per call), and the loops. */
    private static final class Run {
        private final Kernel kernel;
        private final AttentionSpec spec;
        private final TokenTensor q;
        private final TokenTensor k;
        private final TokenTensor v;
        private final TokenTensor o;
        private final Checkpoints checkpoints;
        private final int heads;
        private final int dk;
        private final int dv;
        private final int chunk;
        private final int block;
        /** Row strides of the block buffers: all heads of a token in a row. */
        private final int ldq;
        private final int ldk;
        private final int ldv;
        private final int ldo;
        private final float scale;
        private final float eps;
        private final boolean normalized;
        private final FeatureMap phi;

        /**
         * Per head: S, advanced in place in {@code sc.arena} at {@link #stateAt}: {@code Dk + m}
         * rows of Dv, S in the first Dk, and in pass 2 the chunk's V in the rows after it ([P ; V],
         * the right operand of o's one product, {@link Scratch#aq}).
         */
        private final float[] arena;
        /** Per head: z, advanced in place. */
        private final float[][] z;
        /** The buffers this call uses, given back to the backend when it ends. */
        final Scratch sc;

        Run(Kernel kernel, AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
            LightningState state, TokenTensor o, Checkpoints checkpoints, Scratch spare) {
            this.kernel = kernel;
            this.spec = spec;
            this.q = q;
            this.k = k;
            this.v = v;
            this.o = o;
            this.checkpoints = checkpoints;
            heads = spec.heads();
            dk = spec.dk();
            dv = spec.dv();
            chunk = spec.chunkSize();
            block = chunk * Math.max(1, (BLOCK_TOKENS + chunk - 1) / chunk);
            int rows = Math.min(block, Math.max(k.tokens(), 1));
            ldq = q == null ? 0 : q.heads() * dk;
            ldk = k.heads() * dk;
            ldv = v.heads() * dv;
            ldo = heads * dv;
            scale = (float) spec.scale();
            normalized = spec.normalized();
            eps = (float) spec.eps();
            phi = spec.featureMap();
            boolean bf16 = k.dtype() == DType.BF16 || v.dtype() == DType.BF16 || (q != null && q.dtype() == DType.BF16)
                    || (o != null && o.dtype() == DType.BF16);
            int m = Math.min(chunk, rows);
            int[] shape = {rows, ldq, ldk, ldv, o == null ? 0 : ldo, o == null ? 0 : o.dtype().bytes(),
                    bf16 ? rows * Math.max(Math.max(ldq, ldk), Math.max(ldv, o == null ? 0 : ldo)) : 0, dk, dv, m,
                    q == null ? 0 : 1, heads};
            // the arena is aligned for calls of ALIGNED_FROM tokens or more: under G1 that takes a
            // humongous array (1 to 16 MiB, zeroed), which a short call would not pay back; a long
            // call does not take the unaligned scratch a short one left
            boolean aligned = k.tokens() >= ALIGNED_FROM;
            Scratch s = spare != null && java.util.Arrays.equals(spare.shape, shape) && (spare.aligned || !aligned) ? spare
                    : new Scratch(shape, aligned);
            sc = s;
            arena = s.arena;
            int stateSize = dk * dv;
            float[] incoming = state.data();
            float[] incomingZ = normalized ? state.normalizerData() : null;
            z = new float[heads][];
            for (int h = 0; h < heads; h++) {
                System.arraycopy(incoming, h * stateSize, arena, stateAt(h), stateSize);
                if (normalized) {
                    z[h] = java.util.Arrays.copyOfRange(incomingZ, h * dk, (h + 1) * dk);
                }
            }
            if (!spec.equals(s.decaySpec)) {
                s.pow = new float[heads][chunk + 1];
                s.carry = new float[heads][chunk + 1];
                // rev padded with zeros to chunk + 16: a causal row i is masked over whole vectors up
                // to roundColumns(i + 1) <= i + 16, reading rev[chunk - 1 - i + j] for those j
                s.rev = new float[heads][chunk + 16];
                for (int h = 0; h < heads; h++) {
                    for (int x = 0; x <= chunk; x++) {
                        s.pow[h][x] = (float) spec.decay(h, x);
                        s.carry[h][x] = Decay.code(spec, h, x);
                    }
                    for (int x = 0; x < chunk; x++) {
                        s.rev[h][x] = s.pow[h][chunk - 1 - x];
                    }
                }
                s.decaySpec = spec;
            }
        }

        /** Where head h's state starts in {@link #arena}. */
        private int stateAt(int h) {
            return sc.pAt + h * sc.pSize;
        }

        /** Runs the call, writing the state after it into {@code next} and (normalizing) {@code nextZ}. */
        void run(float[] next, float[] nextZ) {
            int n = k.tokens();
            int checkpoint = 0;
            for (int b0 = 0; b0 < n; b0 += block) {
                int nb = Math.min(block, n - b0);
                read(k, b0, nb, sc.kb);
                kernel.map(phi, sc.kb, 0, nb * ldk);
                read(v, b0, nb, sc.vb);
                if (q != null) {
                    read(q, b0, nb, sc.qb);
                    kernel.map(phi, sc.qb, 0, nb * ldq);
                }
                int after = checkpoint;
                for (int h = 0; h < heads; h++) {
                    int c = checkpoint;
                    for (int c0 = 0; c0 < nb; c0 += chunk) {
                        int m = Math.min(chunk, nb - c0);
                        chunk(h, c0, m);
                        while (c < checkpoints.count() && checkpoints.tokenAfter(c) == b0 + c0 + m - 1) {
                            System.arraycopy(arena, stateAt(h), sc.stateOut, 0, sc.stateOut.length);
                            checkpoints.putHead(c++, h, sc.stateOut, z[h]);
                        }
                    }
                    after = c;
                }
                checkpoint = after;
                if (o != null) {
                    write(b0, nb);
                }
            }
            if (checkpoint != checkpoints.count()) {
                throw new IllegalStateException("checkpoint " + checkpoint + " of the window falls after token "
                        + checkpoints.tokenAfter(checkpoint) + ", not at the end of a block of " + chunk
                        + " tokens: Checkpoints.check should have refused it");
            }
            int stateSize = dk * dv;
            for (int h = 0; h < heads; h++) {
                System.arraycopy(arena, stateAt(h), next, h * stateSize, stateSize);
                if (normalized) {
                    System.arraycopy(z[h], 0, nextZ, h * dk, dk);
                }
            }
        }

        /**
         * Pass 2's o of one chunk (rows c0.. of the block, head h), finished (scaled, normalized)
         * into the block's o rows ({@link Scratch#obAt}), from K^T at {@link Scratch#ktAt} and the head's
         * state before the chunk in {@code pv}'s first Dk rows; leaves the chunk's V in the rows after them. A method of its
         * own: inside {@link #chunk} it made one compiled method so large that C2 stopped inlining the
         * Vector API's intrinsics in it (pass 1 ran in their Java fallbacks, at half speed).
         */
        private void outputs(int h, int c0, int m, int vBase, int pv) {
            final float[] pw = sc.pow[h];
            final float[] rv = sc.rev[h];
            final float[] zh = z[h];
            final int vRows = dk * dv;
            // V of the chunk in contiguous rows under the state ([P ; V]): in the block its rows
            // lie H Dv floats apart, a power of two that maps them all to a few L1 sets, and the
            // products read them m times
            for (int j = 0; j < m; j++) {
                System.arraycopy(sc.vb, vBase + j * ldv, arena, pv + vRows + j * dv, dv);
            }
            final int qBase = c0 * ldq + spec.qHead(h) * dk;
            final int oBase = sc.obAt + c0 * ldo + h * dv;
            final float[] aq = sc.aq;
            final int lda = dk + m;
            // scores (Q K^T) into the A half of aq, columns j <= i rounded up to whole vectors:
            // one product per band of 16 rows, which all need the same columns
            for (int i0 = 0; i0 < m; i0 += 16) {
                int end = Math.min(m, i0 + 16);
                int cols = Math.min(m, Kernel.roundColumns(end));
                kernel.product(sc.qb, qBase + i0 * ldq, ldq, 1, arena, sc.ktAt, m, aq, i0 * lda + dk, lda, end - i0, cols,
                        dk, false);
            }
            for (int i = 0; i < m; i++) {
                int row = i * lda;
                int cols = Math.min(m, Kernel.roundColumns(i + 1));
                // decay mask: A_ij = lambda^(i-j) s_ij for j <= i (rev[chunk-1-i+j] = lambda^(i-j)), 0 for
                // the j > i up to the end of the vector that holds i (the product below reads row i's
                // columns j < i0 + 4 of its row block); the row sum is the intra denominator
                float rowSum = kernel.maskedMultiplySum(aq, row + dk, rv, chunk - 1 - i, i + 1, cols);
                // lambda^(i+1) q_i beside it
                kernel.scale(pw[i + 1], sc.qb, qBase + i * ldq, aq, row, dk);
                // o_i's factor (scale, or scale / (den_i + eps)) applied to the row of A rather than to
                // o: the product then stores o once, from the tile the state update uses (the JIT has
                // it compiled in pass 1), and at scale 1 without normalization there is nothing to do
                float f = normalized ? scale / (rowSum + kernel.dot(aq, row, zh, 0, dk) + eps) : scale;
                if (f != 1f) {
                    kernel.scale(f, aq, row, aq, row, dk + cols);
                }
            }
            // o = [qd | A] [P ; V]: inter and intra in the same accumulators, each row block of 4 over
            // the depth Dk + (i0 + r) (its columns j <= i), stored once
            for (int i0 = 0; i0 < m; i0 += ROWS) {
                int r = Math.min(ROWS, m - i0);
                kernel.product(aq, i0 * lda, lda, 1, arena, pv, dv, arena, oBase + i0 * ldo, ldo, r, dv, dk + i0 + r,
                        false);
            }
        }

        /**
         * One chunk of m tokens at row c0 of the block for head h: writes the chunk's finished
         * outputs (scaled, normalized) into the block's o rows ({@link Scratch#obAt}) when there is a q, and advances the head's
         * state (and normalizer).
         */
        private void chunk(int h, int c0, int m) {
            final float[] pw = sc.pow[h];
            final float[] zh = z[h];
            final int kBase = c0 * ldk + spec.kHead(h) * dk;
            final int vBase = c0 * ldv + spec.vHead(h) * dv;
            final int pv = stateAt(h);
            final int vRows = dk * dv;
            // Pass 2: K^T of the chunk (Dk x m): the scores' B needs its rows (m tokens of one
            // feature), and the state update reads it as A. Pass 1 needs K for the state only: its
            // rows copied contiguous (Dk floats apart) are A given transposed at B's stride, which the
            // constant-stride tile4x4cols reads, so pass 1 runs no transpose. The cost is that pass 1
            // no longer compiles what pass 2 runs (tile4x4rows), so pass 2 of a fresh JVM starts it in
            // the Vector API's Java fallbacks. ColdBench (D = 64, 3 alternated pairs): both cold
            // passes 3.02 process CPU-s against 2.69 with pass 1 transposing (pass 1 1.13 to 1.51,
            // pass 2 1.80 to 2.35; against 1.40 to 1.76 and 1.26 to 1.35), warm pass 1 0.17 against
            // 0.21 s; pass 1 alone at D = 64, bf16: about 25% faster warm (BENCHMARKS.md, "Pass 1 at
            // D = 64"). With the gathers' transpose (slow in C1) this trade measured 3.18 against 2.69 s.
            // Taken since bin/lightning compiles the job's classes at a tenth of the JIT's thresholds
            // (session 8): the 2-piece CPU job then ran as fast with it as with the transpose (wall 7.81
            // against 7.78 s, medians of 8 alternated runs), and KernelBench's pass 1 at D = 64 went
            // 72.5 -> 102.6 GFLOP per CPU-second (bf16, T = 16,384; BENCHMARKS.md, "The JIT thresholds").
            if (q != null) {
                kernel.transpose(sc.kb, kBase, ldk, m, dk, arena, sc.ktAt, m);
                outputs(h, c0, m, vBase, pv);
            } else {
                for (int j = 0; j < m; j++) {
                    System.arraycopy(sc.kb, kBase + j * ldk, arena, sc.ktAt + j * dk, dk);
                }
            }
            // state: P <- lambda^m P + K^T (diag(lambda^(m-1-j)) V), the chunk's sum kept apart in the
            // product's registers and added once (z alike); V's rows from the contiguous copy in pass 2,
            // from the block in pass 1 (read once there, so not copied first)
            float[] vFrom = q != null ? arena : sc.vb;
            int vAt = q != null ? pv + vRows : vBase;
            int ldvRows = q != null ? dv : ldv;
            for (int j = 0; j < m; j++) {
                kernel.scale(pw[m - 1 - j], vFrom, vAt + j * ldvRows, arena, sc.vwAt + j * dv, dv);
            }
            // the carry's decay by its code: 1 - lambda^m where lambda^m is close to 1 (Decay)
            float chunkCarry = sc.carry[h][m];
            // A = K^T: pass 2's transpose (rows m apart), pass 1's K rows read across (columns Dk apart)
            int aRow = q != null ? m : 1;
            int aCol = q != null ? 1 : dk;
            kernel.productScaleAdd(arena, sc.ktAt, aRow, aCol, arena, sc.vwAt, dv, arena, pv, dv, dk, dv, m, chunkCarry);
            if (normalized) {
                java.util.Arrays.fill(sc.dz, 0f);
                kernel.addWeightedRows(pw, m - 1, sc.kb, kBase, ldk, m, sc.dz, 0, dk);
                kernel.decayAdd(chunkCarry, zh, 0, sc.dz, 0, dk);
            }
        }

        /** Tokens [from, from + n) of t, all heads, as floats {@code [n, heads, dim]} into dst: one bulk copy. */
        private void read(TokenTensor t, int from, int n, float[] dst) {
            kernel.read(t, from, n, dst, sc.halves);
        }

        /**
         * o of tokens [b0, b0 + n) from the block's o rows ({@link Scratch#obAt}), rounded to o's type,
         * straight into o's bytes (one copy: staging them in a buffer of our own first copied 1 GiB of
         * F32 o twice).
         */
        private void write(int b0, int n) {
            int len = n * ldo;
            DType type = o.dtype();
            ByteBuffer out = o.slice(b0, n).writableBytes();
            if (type == DType.F32) {
                out.asFloatBuffer().put(arena, sc.obAt, len);
            } else if (type == DType.BF16) {
                // DType's rounding (to nearest even, NaN kept quiet) over the block, then one copy
                kernel.narrowBf16(arena, sc.obAt, sc.halves, len);
                out.asShortBuffer().put(sc.halves, 0, len);
            } else {
                int es = type.bytes();
                for (int i = 0; i < len; i++) {
                    type.put(out, i * es, arena[sc.obAt + i]);
                }
            }
        }
    }
}
