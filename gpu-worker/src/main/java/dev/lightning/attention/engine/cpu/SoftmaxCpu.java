package dev.lightning.attention.engine.cpu;

import dev.lightning.attention.engine.SoftmaxBackend;
import dev.lightning.attention.engine.SoftmaxPartial;
import dev.lightning.attention.engine.SoftmaxSpec;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.util.Arrays;

/**
 * Causal softmax attention on the CPU in float32, blockwise with the online softmax (the flash
 * attention forward), on the same register-blocked microkernel as the lightning backend
 * ({@link Kernel}: {@link VectorKernel} where the JVM has jdk.incubator.vector, else
 * {@link ScalarKernel}). For a block of queries (rows c) against one key block after another
 * (keys j), per query head, with m_c, l_c, acc_c carried across key blocks:
 * <pre>
 *   s_jc   = (scale q_c) . k_j                      (masked: -inf)
 *   m'_c   = max(m_c, max_j s_jc),    p_jc = exp(s_jc - m'_c),    alpha_c = exp(m_c - m'_c)
 *   l_c    = alpha_c l_c + sum_j p_jc,            acc_c = alpha_c acc_c + sum_j p_jc v_j
 * </pre>
 * and at the end o_c = acc_c / l_c, lse_c = m_c + log l_c (a query that saw no key: o = 0,
 * lse = -inf). Every exponent is &lt;= 0, so nothing overflows whatever the scores' size.
 *
 * <p>Layout: scores are computed transposed, S^T = K Q^T (keys as rows): K is the A operand in
 * its natural row layout, and Q^T, built once per query block, is the B operand, so no key block
 * is ever transposed. The softmax then runs down S^T's columns, a vector of queries at a time
 * ({@link Kernel#softmaxStep}: no reductions across lanes), and P V takes S^T as a transposed A.
 * Grouped heads: the G = Hq / Hk query heads of a key/value head are one operand, columns
 * c = t G + i for token t and head g G + i, so each key/value block is read and converted to
 * float once per query block and serves the whole group in one product. The scale is folded
 * into Q^T when it is built.
 *
 * <p>Masks: key blocks outside what the query block can see (after its last query, or before the
 * window of its first) are skipped; a key block wholly visible to the query block goes without
 * masking; in the others (the causal diagonal, the window's edge) the invisible scores of each
 * key row (a contiguous range of query columns lies on either side) are set to -inf.
 *
 * <p>Sizes: {@link #QUERY_TOKENS} queries by {@link #KEY_TOKENS} keys per block (a sweep of
 * 32..128 by 32..128 at T = 4096 found no better pair: BENCHMARKS.md); at Hq = 8, Hk = 2,
 * D = 128 a call holds about 1.2 MiB of float buffers whatever its length. Not thread-safe, as
 * its interface says; one backend per task.
 *
 * <p>Precision: exp is the kernel's float32 exp (within 0.94 ulp of exp over its whole range,
 * {@link Kernel#exp}; the scalar and vector kernels give the same bits). Against the float64
 * reference, o is within about 1.5e-7 relative at T = 1000 and 5.9e-7 at T = 40,000 (the last
 * queries, which average 40,000 values), both kernels, F32, BF16 and F16 inputs: well inside the
 * issue's 1e-5. Scores are float32 dot products, so with very large scores (inputs x100, scores
 * in the thousands) near-tied keys' weights move by their rounding: measured 1.4e-6 (vector) and
 * 1.0e-5 (scalar) there, all finite.
 */
public final class SoftmaxCpu implements SoftmaxBackend {
    /** Query tokens per block: with G = 1..8 heads per group, 64..512 query columns, whole vectors. */
    static final int QUERY_TOKENS = 64;
    /** Key tokens per block: the rows of S^T and the depth of P V. */
    static final int KEY_TOKENS = 64;

    private final Kernel kernel;

    public SoftmaxCpu() {
        this(Kernel.best());
    }

    SoftmaxCpu(Kernel kernel) {
        this.kernel = kernel;
    }

    @Override
    public String name() {
        return "softmax-cpu";
    }

    @Override
    public String device() {
        return "cpu";
    }

    /** The microkernel in use: "vector (512-bit, 16 float lanes)" or "scalar". */
    public String kernelName() {
        return kernel.name();
    }

    @Override
    public void forward(SoftmaxSpec spec, TokenTensor q, long qStart, TokenTensor k, TokenTensor v, long kStart,
                        SoftmaxPartial out) {
        spec.checkForward(q, qStart, k, v, kStart, out);
        new Run(kernel, spec, q, k, v, out).run(qStart, kStart);
    }

    /** One call: its shapes, its buffers (allocated once per call) and the loops. */
    private static final class Run {
        private final Kernel kernel;
        private final SoftmaxSpec spec;
        private final TokenTensor q;
        private final TokenTensor k;
        private final TokenTensor v;
        private final SoftmaxPartial out;
        private final int hq;
        private final int hk;
        /** Query heads per key/value head. */
        private final int group;
        private final int dk;
        private final int dv;
        private final float scale;
        /** Query columns of one group's block, and the row stride of Q^T, S^T and the group's m, l. */
        private final int ldc;

        /** A query block as read, [QUERY_TOKENS, Hq, Dk]. */
        private final float[] qRead;
        /** Per group g: (scale Q)^T, Dk x ldc at g Dk ldc. */
        private final float[] qt;
        /** A key/value block as read, [KEY_TOKENS, Hk, D]; null where Hk = 1 (read in place). */
        private final float[] kRead;
        private final float[] vRead;
        /** Per group g: its key rows, KEY_TOKENS x Dk at g KEY_TOKENS Dk (values alike). */
        private final float[] kh;
        private final float[] vh;
        /** S^T and then P^T of one group: KEY_TOKENS x ldc. */
        private final float[] st;
        /** Per group g: m, l of its columns at g ldc; alpha of the group in hand. */
        private final float[] m;
        private final float[] l;
        private final float[] alpha;
        /** Per group g: acc, ldc x Dv at g ldc Dv. */
        private final float[] acc;
        /** One key block's P V for the group in hand, ldc x Dv. */
        private final float[] pv;
        /** Scratch of the bfloat16 reads; null where no input is bfloat16. */
        private final short[] halves;

        Run(Kernel kernel, SoftmaxSpec spec, TokenTensor q, TokenTensor k, TokenTensor v, SoftmaxPartial out) {
            this.kernel = kernel;
            this.spec = spec;
            this.q = q;
            this.k = k;
            this.v = v;
            this.out = out;
            hq = spec.headsQ();
            hk = spec.headsK();
            group = hq / hk;
            dk = spec.dk();
            dv = spec.dv();
            scale = (float) spec.scale();
            int qTokens = Math.min(QUERY_TOKENS, Math.max(1, q.tokens()));
            int kTokens = Math.min(KEY_TOKENS, Math.max(1, k.tokens()));
            ldc = Kernel.roundColumns(qTokens * group);
            qRead = new float[qTokens * hq * dk];
            qt = new float[hk * dk * ldc];
            kRead = hk == 1 ? null : new float[kTokens * hk * dk];
            vRead = hk == 1 ? null : new float[kTokens * hk * dv];
            kh = new float[hk * KEY_TOKENS * dk];
            vh = new float[hk * KEY_TOKENS * dv];
            st = new float[kTokens * ldc];
            m = new float[hk * ldc];
            l = new float[hk * ldc];
            alpha = new float[ldc];
            acc = new float[hk * ldc * dv];
            pv = new float[ldc * dv];
            boolean bf16 = q.dtype() == DType.BF16 || k.dtype() == DType.BF16 || v.dtype() == DType.BF16;
            halves = bf16 ? new short[Math.max(qRead.length, kTokens * hk * Math.max(dk, dv))] : null;
        }

        void run(long qStart, long kStart) {
            int nq = q.tokens();
            int nk = k.tokens();
            for (int t0 = 0; t0 < nq; t0 += QUERY_TOKENS) {
                int n = Math.min(QUERY_TOKENS, nq - t0);
                long first = qStart + t0;
                long last = first + n - 1;
                // the keys of this call that any query of the block sees
                long lo = Math.max(kStart, spec.firstVisibleKey(first));
                long hi = Math.min(kStart + nk - 1, last);
                if (lo > hi) {
                    nothingVisible(t0, n);
                    continue;
                }
                int cols = Kernel.roundColumns(n * group);
                loadQueries(t0, n, cols);
                for (int g = 0; g < hk; g++) {
                    Arrays.fill(m, g * ldc, g * ldc + cols, Float.NEGATIVE_INFINITY);
                    Arrays.fill(l, g * ldc, g * ldc + cols, 0f);
                    Arrays.fill(acc, g * ldc * dv, (g * ldc + cols) * dv, 0f);
                }
                for (long k0 = lo; k0 <= hi; k0 += KEY_TOKENS) {
                    int nkt = (int) Math.min(KEY_TOKENS, hi - k0 + 1);
                    loadKeys((int) (k0 - kStart), nkt);
                    // every query of the block sees every key of this one: the last key is at or
                    // before the first query, and the first key inside the last query's window
                    boolean whole = k0 + nkt - 1 <= first && k0 >= spec.firstVisibleKey(last);
                    for (int g = 0; g < hk; g++) {
                        block(g, first, n, cols, k0, nkt, whole);
                    }
                }
                finish(t0, n);
            }
        }

        /** One key block for group g: S^T, its mask, the softmax step, rescaling and P V. */
        private void block(int g, long first, int n, int cols, long k0, int nkt, boolean whole) {
            kernel.product(kh, g * KEY_TOKENS * dk, dk, 1, qt, g * dk * ldc, ldc, st, 0, ldc, nkt, cols, dk, false);
            if (!whole) {
                mask(first, n, cols, k0, nkt);
            }
            kernel.softmaxStep(st, 0, ldc, nkt, cols, m, l, g * ldc, alpha);
            // this block's P V apart (A = P given transposed: element (c, j) at st[j ldc + c]),
            // then acc = alpha acc + P V: the long running sum takes one addition per key block
            // instead of one per key (measured at T = 40,000, the last queries: relative error
            // 3.6e-6 -> 5.9e-7; time unchanged within this VM's noise)
            kernel.product(st, 0, 1, ldc, vh, g * KEY_TOKENS * dv, dv, pv, 0, dv, cols, dv, nkt, false);
            int accBase = g * ldc * dv;
            for (int c = 0; c < cols; c++) {
                kernel.scaleAdd(alpha[c], acc, accBase + c * dv, pv, c * dv, dv);
            }
        }

        /**
         * -inf where key k0 + j is not visible from the query of column c: key row j is seen by
         * the tokens t with k0 + j <= first + t and, with a window W, first + t < k0 + j + W, a
         * range of tokens, so columns [tFrom G, tTo G) keep their scores.
         */
        private void mask(long first, int n, int cols, long k0, int nkt) {
            long window = spec.window();
            for (int j = 0; j < nkt; j++) {
                long key = k0 + j;
                long tFrom = Math.max(0, key - first);
                long tTo = window == SoftmaxSpec.NO_WINDOW ? n : Math.min(n, key + window - first);
                int row = j * ldc;
                if (tFrom >= tTo) {
                    Arrays.fill(st, row, row + cols, Float.NEGATIVE_INFINITY);
                    continue;
                }
                Arrays.fill(st, row, row + (int) tFrom * group, Float.NEGATIVE_INFINITY);
                Arrays.fill(st, row + (int) tTo * group, row + cols, Float.NEGATIVE_INFINITY);
            }
        }

        /** Q^T of each group, scaled, from tokens [t0, t0 + n); columns n G .. cols are zero. */
        private void loadQueries(int t0, int n, int cols) {
            kernel.read(q, t0, n, qRead, halves);
            for (int t = 0; t < n; t++) {
                for (int h = 0; h < hq; h++) {
                    int g = h / group;
                    int to = g * dk * ldc + t * group + h % group;
                    int from = (t * hq + h) * dk;
                    for (int d = 0; d < dk; d++) {
                        qt[to + d * ldc] = scale * qRead[from + d];
                    }
                }
            }
            for (int g = 0; g < hk; g++) {
                for (int d = 0; d < dk; d++) {
                    int row = g * dk * ldc + d * ldc;
                    Arrays.fill(qt, row + n * group, row + cols, 0f);
                }
            }
        }

        /**
         * Keys and values [from, from + n) of this call into per-group contiguous rows (in the
         * tensor a group's rows lie Hk D floats apart, a power of two that maps them to a few L1
         * sets; the products read them once per query column tile).
         */
        private void loadKeys(int from, int n) {
            if (hk == 1) {
                kernel.read(k, from, n, kh, halves);
                kernel.read(v, from, n, vh, halves);
                return;
            }
            kernel.read(k, from, n, kRead, halves);
            kernel.read(v, from, n, vRead, halves);
            for (int j = 0; j < n; j++) {
                for (int g = 0; g < hk; g++) {
                    System.arraycopy(kRead, (j * hk + g) * dk, kh, (g * KEY_TOKENS + j) * dk, dk);
                    System.arraycopy(vRead, (j * hk + g) * dv, vh, (g * KEY_TOKENS + j) * dv, dv);
                }
            }
        }

        /** o = acc / l, lse = m + log l for tokens [t0, t0 + n); o = 0, lse = -inf where nothing was seen. */
        private void finish(int t0, int n) {
            float[] o = out.o();
            float[] lse = out.lse();
            for (int t = 0; t < n; t++) {
                for (int h = 0; h < hq; h++) {
                    int c = (h / group) * ldc + t * group + h % group;
                    int row = (t0 + t) * hq + h;
                    int oBase = row * dv;
                    if (m[c] == Float.NEGATIVE_INFINITY) {
                        lse[row] = Float.NEGATIVE_INFINITY;
                        Arrays.fill(o, oBase, oBase + dv, 0f);
                        continue;
                    }
                    float sum = l[c];
                    lse[row] = (float) (m[c] + Math.log(sum));
                    int a = c * dv;
                    for (int d = 0; d < dv; d++) {
                        o[oBase + d] = acc[a + d] / sum;
                    }
                }
            }
        }

        /** Tokens [t0, t0 + n) saw no key of this call. */
        private void nothingVisible(int t0, int n) {
            Arrays.fill(out.lse(), t0 * hq, (t0 + n) * hq, Float.NEGATIVE_INFINITY);
            Arrays.fill(out.o(), t0 * hq * dv, (t0 + n) * hq * dv, 0f);
        }
    }
}
