package dev.lightning.attention.engine.cpu;

import org.slf4j.LoggerFactory;

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
     * C = A B, or C += A B when {@code add}: A is {@code rows x depth} with element (i, d) at
     * {@code a[ao + i*ais + d*ads]} (ads = 1: row-major rows; ais = 1: A given as its transpose),
     * B is {@code depth x cols} at {@code b[bo + d*ldb + j]}, C is {@code rows x cols} at
     * {@code c[co + i*ldc + j]}. C must not overlap A or B.
     */
    abstract void product(float[] a, int ao, int ais, int ads, float[] b, int bo, int ldb,
                          float[] c, int co, int ldc, int rows, int cols, int depth, boolean add);

    /** y[yo..yo+n) = s x[xo..xo+n). */
    void scale(float s, float[] x, int xo, float[] y, int yo, int n) {
        for (int j = 0; j < n; j++) {
            y[yo + j] = s * x[xo + j];
        }
    }

    /** y[yo..yo+n) = s y[yo..yo+n) + x[xo..xo+n). */
    void scaleAdd(float s, float[] y, int yo, float[] x, int xo, int n) {
        for (int j = 0; j < n; j++) {
            y[yo + j] = s * y[yo + j] + x[xo + j];
        }
    }

    /** y[yo..yo+n) += s x[xo..xo+n). */
    void axpy(float s, float[] x, int xo, float[] y, int yo, int n) {
        for (int j = 0; j < n; j++) {
            y[yo + j] += s * x[xo + j];
        }
    }

    /** y[yo..yo+n) *= x[xo..xo+n), returning the sum of the products. */
    float multiplySum(float[] y, int yo, float[] x, int xo, int n) {
        float sum = 0f;
        for (int j = 0; j < n; j++) {
            float p = y[yo + j] * x[xo + j];
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

    /** x[off..off+n) = elu(x) + 1 = (x > 0 ? x + 1 : exp x), in place. */
    abstract void elu1(float[] x, int off, int n);

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
