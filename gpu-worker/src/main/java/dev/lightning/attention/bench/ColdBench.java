package dev.lightning.attention.bench;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.reference.Accuracy;
import dev.lightning.attention.engine.reference.ChunkedReference;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * What a fresh JVM pays before the CPU backend runs at its speed: pass 1 then pass 2 of a job's
 * task, window by window (each window's state carried to the next), timed cold, as the first
 * task of a process runs them, and then again warm. The difference is the JIT's: the vector
 * tiles run in jdk.incubator.vector's Java fallbacks until C2 has compiled them, and C2's own
 * compilation runs on other threads. Hence both clocks: this thread's CPU time (the computing
 * thread) and the process's (every thread, the compilers included), in seconds.
 * KernelBench cannot show this: it checks and warms up before it times.
 *
 * <p>Checked after the timing (so that the check does not warm the JIT first): the warm pass 2
 * must write the same o bytes and final state as the cold one, bit for bit (every tier of the JIT
 * computes the same roundings), and a forward over the first {@code --check-tokens} tokens must
 * agree with the float64 chunked reference to 1e-5 (relative, Frobenius); the program fails otherwise.
 *
 * <pre>ColdBench [--window 65536] [--windows1 4] [--windows2 4] [--heads 8] [--dk 64] [--dv 64] [--dtype f32] [--check-tokens 1024]</pre>
 *
 * The defaults are the 2-piece job of BENCHMARKS.md's CPU sections (T = 524,288, H = 8, D = 64, F32,
 * windows of 64 MiB of q, k, v and o): pass 1 over one piece, pass 2 over the other. Run it with the
 * job's JVM options, e.g. {@code java --add-modules jdk.incubator.vector -cp
 * gpu-worker/target/classes:$SLF4J_API_JAR dev.lightning.attention.bench.ColdBench}.
 */
public final class ColdBench {
    private ColdBench() {
    }

    public static void main(String[] args) throws Exception {
        int window = 65536;
        int windows1 = 4;
        int windows2 = 4;
        int heads = 8;
        int dk = 64;
        int dv = 64;
        DType dtype = DType.F32;
        int checkTokens = 1024;
        for (int i = 0; i < args.length; i += 2) {
            if (i + 1 >= args.length) {
                throw new IllegalArgumentException("ColdBench: " + args[i] + " needs a value");
            }
            String v = args[i + 1];
            switch (args[i]) {
                case "--window" -> window = Integer.parseInt(v);
                case "--windows1" -> windows1 = Integer.parseInt(v);
                case "--windows2" -> windows2 = Integer.parseInt(v);
                case "--heads" -> heads = Integer.parseInt(v);
                case "--dk" -> dk = Integer.parseInt(v);
                case "--dv" -> dv = Integer.parseInt(v);
                case "--dtype" -> dtype = DType.fromSafetensors(v);
                case "--check-tokens" -> checkTokens = Integer.parseInt(v);
                default -> throw new IllegalArgumentException("ColdBench: unknown option '" + args[i] + "': expected "
                        + "--window, --windows1, --windows2, --heads, --dk, --dv, --dtype or --check-tokens");
            }
        }
        AttentionSpec spec = new AttentionSpec(heads, dk, dv, Slopes.minimax(heads), 1.0, 64);
        SplittableRandom rnd = new SplittableRandom(5);
        TokenTensor q = random(rnd, dtype, window, heads, dk);
        TokenTensor k = random(rnd, dtype, window, heads, dk);
        TokenTensor v = random(rnd, dtype, window, heads, dv);
        TokenTensor oCold = TokenTensor.allocate(dtype, window, heads, dv);
        TokenTensor oWarm = TokenTensor.allocate(dtype, window, heads, dv);
        ThreadMXBean threads = ManagementFactory.getThreadMXBean();
        com.sun.management.OperatingSystemMXBean os =
                (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
        System.out.printf(Locale.ROOT, "ColdBench: %d + %d windows of %d tokens, H = %d, Dk = %d, Dv = %d, %s; %d cpus, "
                        + "load average %s, java %s%n", windows1, windows2, window, heads, dk, dv, dtype,
                Runtime.getRuntime().availableProcessors(), ScanBench.loadAverage(), System.getProperty("java.version"));
        try (AttentionBackend backend = Backends.create("cpu")) {
            double[][] t = new double[4][];
            LightningState[] finals = new LightningState[4];
            for (int run = 0; run < 4; run++) { // pass 1 cold, pass 2 cold, pass 1 warm, pass 2 warm
                boolean forward = run % 2 == 1;
                long w0 = System.nanoTime();
                long p0 = os.getProcessCpuTime();
                long c0 = threads.getCurrentThreadCpuTime();
                LightningState s = LightningState.zeros(spec);
                for (int w = 0; w < (forward ? windows2 : windows1); w++) {
                    s = forward ? backend.forward(spec, q, k, v, s, run == 1 ? oCold : oWarm) : backend.advance(spec, k, v, s);
                }
                t[run] = new double[] {(threads.getCurrentThreadCpuTime() - c0) * 1e-9,
                        (os.getProcessCpuTime() - p0) * 1e-9, (System.nanoTime() - w0) * 1e-9};
                finals[run] = s;
            }
            System.out.println("| pass | thread CPU s, cold | warm | process CPU s, cold | warm | wall s, cold | warm |");
            System.out.println("|---|---|---|---|---|---|---|");
            for (int pass = 0; pass < 2; pass++) {
                double[] cold = t[pass];
                double[] warm = t[pass + 2];
                System.out.printf(Locale.ROOT, "| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |%n",
                        pass == 0 ? "pass 1 (advance)" : "pass 2 (forward)", cold[0], warm[0], cold[1], warm[1], cold[2],
                        warm[2]);
            }
            System.out.printf(Locale.ROOT, "cold - warm, process CPU s: pass 1 %.3f, pass 2 %.3f%n", t[0][1] - t[2][1],
                    t[1][1] - t[3][1]);
            // checks, after the timing
            if (!oCold.bytes().equals(oWarm.bytes()) || !Arrays.equals(finals[1].data(), finals[3].data())
                    || !Arrays.equals(finals[0].data(), finals[2].data())) {
                throw new IllegalStateException("ColdBench: the warm passes computed other bits than the cold ones");
            }
            int n = Math.min(checkTokens, window);
            TokenTensor got = TokenTensor.allocate(DType.F32, n, heads, dv);
            TokenTensor want = TokenTensor.allocate(DType.F32, n, heads, dv);
            LightningState zero = LightningState.zeros(spec);
            backend.forward(spec, q.slice(0, n), k.slice(0, n), v.slice(0, n), zero, got);
            new ChunkedReference().forward(spec, q.slice(0, n), k.slice(0, n), v.slice(0, n), zero, want);
            double err = Accuracy.relativeError(got.toFloats(), want.toFloats());
            if (!(err < 1e-5)) {
                throw new IllegalStateException("ColdBench: output error " + err + " against the float64 reference");
            }
            System.out.printf(Locale.ROOT, "check: cold and warm bit for bit equal; output error %.2e against chunked-f64 "
                    + "on the first %d tokens%n", err, n);
        }
    }

    private static TokenTensor random(SplittableRandom rnd, DType dtype, int t, int h, int d) {
        float[] x = new float[t * h * d];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (rnd.nextDouble() * 2 - 1);
        }
        return TokenTensor.of(dtype, t, h, d, x);
    }
}
