package dev.lightning.attention.engine.cpu;

import dev.lightning.attention.engine.Decay;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.slf4j.LoggerFactory;

import java.nio.ByteBuffer;

/**
 * The dense products and elementwise maps the CPU backend's block form is made of, on float32
 * row-major matrices held in arrays at an offset with a row stride (so a head's rows inside a
 * {@code [tokens, heads, D]} block are a matrix with stride {@code heads * D}, no copy).
 *
 * <p>Two implementations: {@link VectorKernel} (jdk.incubator.vector, register-blocked tiles of
 * FMA accumulators) and {@link ScalarKernel} (plain Java, row updates the JIT vectorizes).
 * {@link #best()} picks the vector one where the JVM has the module ({@code --add-modules
 * jdk.incubator.vector}, which the build's JVM options carry) and falls back to the scalar one
 * where it does not, so a JVM started without the flag still runs the job, only slower.
 */
abstract class Kernel {
    /** System property that forces a kernel: "vector" or "scalar" (for measurements and tests). */
    static final String PROPERTY = "lightning.cpu.kernel";

    /** "vector" or "scalar", as in reports. */
    abstract String name();

    /**
     * {@code cols} rounded up to whole 512-bit vectors (16 floats): products are asked for this many
     * columns, the extra ones computed from zero rows or queries and never read, so the vector
     * kernel needs no scalar tail.
     */
    static int roundColumns(int cols) {
        return (cols + 15) / 16 * 16;
    }

    /**
     * C = A B, or C += A B when {@code add}: A is {@code rows x depth} with element (i, d) at
     * {@code a[ao + i*ais + d*ads]} (ads = 1: row-major rows; ais = 1: A given as its transpose),
     * B is {@code depth x cols} at {@code b[bo + d*ldb + j]}, C is {@code rows x cols} at
     * {@code c[co + i*ldc + j]}. C must not overlap A or B.
     */
    abstract void product(float[] a, int ao, int ais, int ads, float[] b, int bo, int ldb,
                          float[] c, int co, int ldc, int rows, int cols, int depth, boolean add);

    /** How a product's tiles start and end: C = A B; C += A B (summed onto C); C = beta C + A B. */
    static final int SET = 0;
    static final int ACCUMULATE = 1;
    static final int SCALE_ADD = 2;

    /**
     * C = lambda^m C + A B, shapes as in {@link #product}, lambda^m given by its decay code ({@link
     * Decay}): the product is summed apart from zero and added once, as {@link Decay#carry} (the state
     * update P = lambda^m P + dP without a dP array and a second pass over P).
     */
    abstract void productScaleAdd(float[] a, int ao, int ais, int ads, float[] b, int bo, int ldb,
                                  float[] c, int co, int ldc, int rows, int cols, int depth, float code);

    /**
     * The transpose of a {@code rows x cols} matrix: dst[dso + d*ldd + j] = src[so + j*lds + d] for
     * j &lt; rows, d &lt; cols (a chunk's K rows, H Dk floats apart in a block, into K^T).
     */
    void transpose(float[] src, int so, int lds, int rows, int cols, float[] dst, int dso, int ldd) {
        transposeRows(src, so, lds, 0, rows, cols, dst, dso, ldd);
    }

    /**
     * {@link #transpose} by blocks of 4 rows by 4 columns: 16 floats read (4 from each row) and
     * written (4 to each row of dst), the rows and columns past the last 4 one element at a time.
     * Plain Java, so a fresh JVM runs it at a useful speed before C2 has compiled it, where the
     * Vector API's gathers or rearranges run in their Java fallbacks: on this project's AMD EPYC VM
     * (AVX-512), a 64 x 64 transpose from rows 512 floats apart took 1.0 us compiled by C2 against
     * 1.25 us by 16-lane gathers, and 7.5 us compiled by C1 against 520 us (a scratch loop, not
     * committed). A 16 x 16 block in registers (rotations and lane masks) took 0.52 us by C2 but
     * about 190 us per block by C1, and its C2 compile about 0.4 s: ColdBench's cold pass 1 took
     * 1.5 process CPU-seconds more (BENCHMARKS.md, "Pass 1 at D = 64").
     */
    static void transposeBlocks(float[] src, int so, int lds, int rows, int cols, float[] dst, int dso, int ldd) {
        int rows4 = rows & ~3;
        int cols4 = cols & ~3;
        for (int j = 0; j < rows4; j += 4) {
            int r0 = so + j * lds;
            int r1 = r0 + lds;
            int r2 = r1 + lds;
            int r3 = r2 + lds;
            for (int d = 0, to = dso + j; d < cols4; d += 4, to += 4 * ldd) {
                float a0 = src[r0 + d];
                float a1 = src[r0 + d + 1];
                float a2 = src[r0 + d + 2];
                float a3 = src[r0 + d + 3];
                float b0 = src[r1 + d];
                float b1 = src[r1 + d + 1];
                float b2 = src[r1 + d + 2];
                float b3 = src[r1 + d + 3];
                float c0 = src[r2 + d];
                float c1 = src[r2 + d + 1];
                float c2 = src[r2 + d + 2];
                float c3 = src[r2 + d + 3];
                float e0 = src[r3 + d];
                float e1 = src[r3 + d + 1];
                float e2 = src[r3 + d + 2];
                float e3 = src[r3 + d + 3];
                int t1 = to + ldd;
                int t2 = t1 + ldd;
                int t3 = t2 + ldd;
                dst[to] = a0;
                dst[to + 1] = b0;
                dst[to + 2] = c0;
                dst[to + 3] = e0;
                dst[t1] = a1;
                dst[t1 + 1] = b1;
                dst[t1 + 2] = c1;
                dst[t1 + 3] = e1;
                dst[t2] = a2;
                dst[t2 + 1] = b2;
                dst[t2 + 2] = c2;
                dst[t2 + 3] = e2;
                dst[t3] = a3;
                dst[t3 + 1] = b3;
                dst[t3 + 2] = c3;
                dst[t3 + 3] = e3;
            }
            for (int d = cols4; d < cols; d++) {
                int to = dso + d * ldd + j;
                dst[to] = src[r0 + d];
                dst[to + 1] = src[r1 + d];
                dst[to + 2] = src[r2 + d];
                dst[to + 3] = src[r3 + d];
            }
        }
        transposeRows(src, so, lds, rows4, rows, cols, dst, dso, ldd);
    }

    /** {@link #transpose} of the rows j in [from, to) only, one element at a time. */
    static void transposeRows(float[] src, int so, int lds, int from, int to, int cols, float[] dst, int dso, int ldd) {
        for (int j = from; j < to; j++) {
            int row = so + j * lds;
            for (int d = 0; d < cols; d++) {
                dst[dso + d * ldd + j] = src[row + d];
            }
        }
    }

    /** y[yo..yo+n) = s x[xo..xo+n). */
    void scale(float s, float[] x, int xo, float[] y, int yo, int n) {
        for (int j = 0; j < n; j++) {
            y[yo + j] = s * x[xo + j];
        }
    }

    /** y[yo..yo+n) = lambda^m y[yo..yo+n) + x[xo..xo+n), lambda^m by its decay code (the normalizer's carry). */
    void decayAdd(float code, float[] y, int yo, float[] x, int xo, int n) {
        for (int j = 0; j < n; j++) {
            y[yo + j] = Decay.carry(y[yo + j], x[xo + j], code);
        }
    }

    /** y[yo..yo+n) = s y[yo..yo+n) + x[xo..xo+n). */
    void scaleAdd(float s, float[] y, int yo, float[] x, int xo, int n) {
        for (int j = 0; j < n; j++) {
            y[yo + j] = s * y[yo + j] + x[xo + j];
        }
    }

    /**
     * y[yo..yo+n) += sum over j &lt; m of w[wLast - j] x[xo + j ldx ..+n): m rows of x, row j weighted by w read
     * backwards from wLast (a chunk's K rows and their decays to its end, lambda^(m-1-j)), each element's terms added
     * in j's order.
     * The normalizer's update, one call a chunk: as m calls of a one-row axpy, pass 1 with --normalize took 12.1 to
     * 12.8 ms, in one call 11.3 to 12.0 (plain 10.2 to 10.7; T = 16,384, H = 8, D = 64, F32, alternated runs;
     * BENCHMARKS.md "The normalizer's update in one call").
     */
    void addWeightedRows(float[] w, int wLast, float[] x, int xo, int ldx, int m, float[] y, int yo, int n) {
        for (int j = 0; j < m; j++) {
            float s = w[wLast - j];
            int xr = xo + j * ldx;
            for (int e = 0; e < n; e++) {
                y[yo + e] += s * x[xr + e];
            }
        }
    }

    /**
     * y[yo + j] *= x[xo + j] for j &lt; valid and y[yo + j] = 0 for valid &lt;= j &lt; n, returning the
     * sum of the products (a causal row: the scores past the diagonal set to zero, not multiplied
     * by a zero decay, so that an infinite score there cannot make a NaN).
     */
    float maskedMultiplySum(float[] y, int yo, float[] x, int xo, int valid, int n) {
        float sum = 0f;
        for (int j = 0; j < n; j++) {
            float p = j < valid ? y[yo + j] * x[xo + j] : 0f;
            y[yo + j] = p;
            sum += p;
        }
        return sum;
    }

    /** sum_j x[xo + j] y[yo + j] over j < n. */
    float dot(float[] x, int xo, float[] y, int yo, int n) {
        float sum = 0f;
        for (int j = 0; j < n; j++) {
            sum += x[xo + j] * y[yo + j];
        }
        return sum;
    }

    /** dst[0..n) = the bfloat16 values src[0..n) (bit patterns): each the upper half of a float32. */
    void widenBf16(short[] src, float[] dst, int n) {
        for (int i = 0; i < n; i++) {
            dst[i] = Float.intBitsToFloat(src[i] << 16);
        }
    }

    /**
     * dst[0..n) = src[off..off+n) rounded to bfloat16 (bit patterns), as {@link DType#floatToBf16}:
     * to nearest, ties to even, a NaN kept a (quiet) NaN.
     */
    void narrowBf16(float[] src, int off, short[] dst, int n) {
        for (int i = 0; i < n; i++) {
            dst[i] = DType.floatToBf16(src[off + i]);
        }
    }

    /**
     * x[off..off+n) = phi(x), in place, by this kernel's {@link #elu1} or {@link #relu}; nothing to do for the
     * identity. The one place the CPU backend and the CPU batch step map q and k, so that both give the same values.
     */
    final void map(FeatureMap phi, float[] x, int off, int n) {
        if (phi == FeatureMap.ELU1) {
            elu1(x, off, n);
        } else if (phi == FeatureMap.RELU) {
            relu(x, off, n);
        } else if (phi != FeatureMap.IDENTITY) {
            throw new IllegalStateException("no CPU kernel for the feature map " + phi.key());
        }
    }

    /** x[off..off+n) = elu(x) + 1 = (x > 0 ? x + 1 : exp x), in place. */
    abstract void elu1(float[] x, int off, int n);

    /**
     * x[off..off+n) = relu(x) = (x > 0 ? x : 0), in place: FeatureMap.RELU's values (NaN and -0 to +0).
     * Without a branch a value: the per-element form (FeatureMap#apply in a loop) mispredicted half
     * the signs of random q and k and took pass 2 from 35 to 113 to 139 ms (T = 16,384, H = 8,
     * D = 64, F32, `lightning bench --backend cpu`; BENCHMARKS.md "relu's map"). This form is the scalar
     * kernel's and the vector kernel's tail.
     */
    void relu(float[] x, int off, int n) {
        for (int i = off, end = off + n; i < end; i++) {
            float v = x[i];
            x[i] = v > 0 ? v : 0f;
        }
    }

    // ---- exp in float32, for x <= 0 (the vector kernel's, VectorKernel#exp, step for step) ----

    static final float LOG2E = 1.44269504088896341f;
    /** ln 2 in two parts: the high one has 16 significant bits, so r ln2Hi is exact for |r| < 2^8. */
    static final float LN2_HI = 0.693145751953125f;
    static final float LN2_LO = 1.42860682030941723212e-6f;
    /** 1.5 * 2^23: adding it rounds a float of magnitude below 2^22 to an integer, held in the low bits. */
    static final float ROUNDER = 12582912f;
    /** ln of the smallest normal float32 (2^-126), rounded up: below it the result is taken as 2^-126. */
    static final float MIN_NORMAL_LOG = -87.33654f;

    /**
     * exp x for x &lt;= 0, the same operations as the vector kernel's exp lane by lane (the same
     * FMAs: {@link Math#fma} rounds once, as a vector FMA does), so both kernels give the same bits.
     * Below {@link #MIN_NORMAL_LOG} it gives 2^-126; {@link #expFlush} gives 0 there.
     */
    static float exp(float x) {
        float c = Math.max(x, MIN_NORMAL_LOG);
        float shifted = Math.fma(c, LOG2E, ROUNDER);
        float r = shifted - ROUNDER;
        float g = Math.fma(r, -LN2_HI, c);
        g = Math.fma(r, -LN2_LO, g);
        float p = Math.fma(g, 1f / 5040, 1f / 720);
        p = Math.fma(p, g, 1f / 120);
        p = Math.fma(p, g, 1f / 24);
        p = Math.fma(p, g, 1f / 6);
        p = Math.fma(p, g, 0.5f);
        p = Math.fma(p, g, 1f);
        p = Math.fma(p, g, 1f);
        return p * Float.intBitsToFloat((Float.floatToRawIntBits(shifted) - (0x4B400000 - 127)) << 23);
    }

    /**
     * exp x for x &lt;= 0 with everything below ln 2^-126 (and -inf) taken as 0: the softmax
     * weights, where a masked score is -inf and a weight below 1.2e-38 of the row's largest one
     * (which is 1) changes no float32 sum.
     */
    static float expFlush(float x) {
        return x < MIN_NORMAL_LOG ? 0f : exp(x);
    }

    // ---- the online softmax ----

    /**
     * One key block of the online softmax, for the query columns c &lt; cols of a score block S
     * ({@code rows x cols}: row j a key, column c a query, s_jc at {@code s[so + j*lds + c]};
     * masked scores are -inf); m_c, l_c at {@code m[mo + c]}, {@code l[mo + c]}:
     * <pre>
     *   m'_c = max(m_c, max_j s_jc)      alpha_c = exp(m_c - m'_c)      s_jc = exp(s_jc - m'_c)
     *   l'_c = alpha_c l_c + sum_j s_jc  (the sum over j in order, one FMA at the end)
     * </pre>
     * writing m', l', the weights in place of the scores, and alpha_c into {@code alpha[c]} (the
     * caller rescales its accumulator rows by it). Where m' is still -inf (a query that has seen
     * no key yet) the exponents use 0 instead, so its weights and alpha are exp(-inf) = 0, not NaN.
     * This scalar form is the reference of the vector kernel's, which gives the same bits.
     */
    void softmaxStep(float[] s, int so, int lds, int rows, int cols, float[] m, float[] l, int mo, float[] alpha) {
        for (int c = 0; c < cols; c++) {
            softmaxColumn(s, so + c, lds, rows, m, l, mo + c, alpha, c);
        }
    }

    /** {@link #softmaxStep} of one column, at s[at + j*lds]. */
    static void softmaxColumn(float[] s, int at, int lds, int rows, float[] m, float[] l, int i, float[] alpha,
                              int ai) {
        float old = m[i];
        float max = old;
        for (int j = 0, x = at; j < rows; j++, x += lds) {
            max = Math.max(max, s[x]);
        }
        float shift = max == Float.NEGATIVE_INFINITY ? 0f : max;
        float a = expFlush(old - shift);
        float sum = 0f;
        for (int j = 0, x = at; j < rows; j++, x += lds) {
            float p = expFlush(s[x] - shift);
            s[x] = p;
            sum += p;
        }
        l[i] = Math.fma(l[i], a, sum);
        m[i] = max;
        alpha[ai] = a;
    }

    // ---- reading tensors ----

    /**
     * Tokens [from, from + n) of t, all heads, as floats {@code [n, heads, dim]} into dst, in one
     * bulk read: F32 copied, BF16 widened ({@link #widenBf16}, through {@code halves}, which needs
     * n * heads * dim shorts), F16 through {@link DType#get}.
     */
    void read(TokenTensor t, int from, int n, float[] dst, short[] halves) {
        int len = n * t.heads() * t.dim();
        ByteBuffer bytes = t.slice(from, n).bytes();
        switch (t.dtype()) {
            case F32:
                bytes.asFloatBuffer().get(dst, 0, len);
                break;
            case BF16:
                // bfloat16 is the upper half of a float32 (DType)
                bytes.asShortBuffer().get(halves, 0, len);
                widenBf16(halves, dst, len);
                break;
            default: {
                DType type = t.dtype();
                int es = type.bytes();
                for (int i = 0; i < len; i++) {
                    dst[i] = type.get(bytes, i * es);
                }
            }
        }
    }

    /**
     * The kernel for this JVM: the one {@link #PROPERTY} names, else the vector kernel where the
     * Vector API loads, else the scalar one (with a warning, once per JVM, that says how to get
     * the fast one).
     */
    static Kernel best() {
        String forced = System.getProperty(PROPERTY, "");
        if (forced.equals("scalar")) {
            return new ScalarKernel();
        }
        if (Probe.VECTOR != null) {
            return Probe.VECTOR;
        }
        if (forced.equals("vector")) {
            throw new IllegalStateException("-D" + PROPERTY + "=vector, but the Vector API does not load in this JVM: "
                    + "start it with --add-modules jdk.incubator.vector, or leave the property unset for the "
                    + "scalar kernel");
        }
        return new ScalarKernel();
    }

    /** The vector kernel probed once per JVM (a class that fails to link fails again each time). */
    private static final class Probe {
        static final Kernel VECTOR = vectorOrNull();

        static {
            if (VECTOR == null) {
                LoggerFactory.getLogger(Kernel.class).warn("CPU backend: jdk.incubator.vector is not available in "
                        + "this JVM, so it runs its scalar kernel (about 10x slower); start the JVM with "
                        + "--add-modules jdk.incubator.vector (bin/lightning and Spark 4 do) for the vector kernel");
            }
        }
    }

    /**
     * The vector kernel, or null where jdk.incubator.vector is not readable (a JVM without
     * {@code --add-modules jdk.incubator.vector}: NoClassDefFoundError when the class links) or
     * gives no real vectors (a species of fewer than 4 lanes).
     */
    static Kernel vectorOrNull() {
        try {
            Kernel k = (Kernel) Class.forName("dev.lightning.attention.engine.cpu.VectorKernel")
                    .getDeclaredConstructor().newInstance();
            return ((VectorKernel) k).lanes() >= 4 ? k : null;
        } catch (ReflectiveOperationException | LinkageError | RuntimeException e) {
            return null;
        }
    }
}
