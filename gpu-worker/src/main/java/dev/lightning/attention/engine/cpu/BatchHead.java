package dev.lightning.attention.engine.cpu;

import dev.lightning.attention.engine.Decay;
import dev.lightning.attention.engine.FeatureMap;

/**
 * The inner loop of the CPU batch step (engine.CpuBatchStep) for one head of one sequence with n
 * new tokens, over its state S {@code [Dk, Dv]} in place:
 * <pre>
 *   for each row i of S, for t = 0..n-1:   S[i,:] = lambda S[i,:] + k[t,i] v[t,:],   acc[t,:] += q[t,i] S[i,:]
 * </pre>
 * (q and k already through the feature map; acc is the output's numerator.) The decay is taken as
 * {@link Decay}'s code of one token: a slow head's lambda rounded to float32 is far off its rate
 * (slope 1.5e-7: lambda = 1 - 1.5e-7 rounds to 1 - 1.79e-7, a rate 19% off). Two versions: on
 * jdk.incubator.vector, where a vector of S stays in a register across the tokens (S read and
 * written once per step, v and acc from L1), and plain Java for a JVM without the module; picked
 * once per JVM as the CPU backend picks its kernel ({@link Kernel#PROPERTY} forces one).
 */
public final class BatchHead {
    private BatchHead() {
    }

    /** The loop's two implementations. */
    abstract static class Impl {
        abstract String name();

        abstract void update(float code, float[] s, int so, int dk, int dv, float[] q, float[] k, float[] v,
                             float[] acc, int n);
    }

    /** Plain Java: rows outer, tokens inner, the loop over Dv left to the JIT. */
    static final class Scalar extends Impl {
        @Override
        String name() {
            return "scalar";
        }

        @Override
        void update(float code, float[] s, int so, int dk, int dv, float[] q, float[] k, float[] v, float[] acc,
                    int n) {
            for (int i = 0; i < dk; i++) {
                int row = so + i * dv;
                for (int t = 0; t < n; t++) {
                    float ki = k[t * dk + i];
                    float qi = q[t * dk + i];
                    int vo = t * dv;
                    for (int j = 0; j < dv; j++) {
                        float x = Decay.carry(s[row + j], ki * v[vo + j], code);
                        s[row + j] = x;
                        acc[vo + j] += qi * x;
                    }
                }
            }
        }
    }

    private static final Impl IMPL = choose();

    private static Impl choose() {
        if (System.getProperty(Kernel.PROPERTY, "").equals("scalar")) {
            return new Scalar();
        }
        try {
            return (Impl) Class.forName("dev.lightning.attention.engine.cpu.VectorBatchHead").getDeclaredConstructor()
                    .newInstance();
        } catch (ReflectiveOperationException | LinkageError | RuntimeException e) {
            return new Scalar(); // no jdk.incubator.vector in this JVM
        }
    }

    /** The CPU backend's kernel for this JVM, for the feature map ({@link #map}). */
    private static final Kernel KERNEL = Kernel.best();

    /**
     * x[0..n) = phi(x[0..n)), in place, as the CPU backend maps q and k ({@link Kernel#map}: a vector at a time,
     * elu1 with the vector kernel's float32 exp). A value at a time by FeatureMap#apply, a step took 51% (relu, a
     * branch on the sign of random data) and 61% to 74% (elu1, a float64 exp) more time than with the identity; now
     * 0% to 4% (N = 1024 x 16 tokens, H = 8, D = 128, BatchStepBench; BENCHMARKS.md "the batch step's feature map a
     * vector at a time").
     */
    public static void map(FeatureMap phi, float[] x, int n) {
        KERNEL.map(phi, x, 0, n);
    }

    /** "vector (...)" or "scalar": the implementation this JVM runs. */
    public static String implementation() {
        return IMPL.name();
    }

    /**
     * Advances one head's state {@code s[so .. so + Dk*Dv)} by n tokens, decaying by the
     * {@link Decay#code} of one token, and adds each token's
     * numerator to {@code acc} ({@code [n, Dv]}); {@code q}, {@code k} are {@code [n, Dk]} (after
     * phi), {@code v} {@code [n, Dv]}, row-major from index 0.
     */
    public static void update(float code, float[] s, int so, int dk, int dv, float[] q, float[] k, float[] v,
                              float[] acc, int n) {
        IMPL.update(code, s, so, dk, dv, q, k, v, acc, n);
    }

    /** The plain-Java version, for tests that hold the vector one to it. */
    static void updateScalar(float code, float[] s, int so, int dk, int dv, float[] q, float[] k, float[] v,
                             float[] acc, int n) {
        new Scalar().update(code, s, so, dk, dv, q, k, v, acc, n);
    }
}
