package dev.lightning.attention.bench;

import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.SoftmaxBackend;
import dev.lightning.attention.engine.SoftmaxPartial;
import dev.lightning.attention.engine.SoftmaxSpec;
import dev.lightning.attention.engine.reference.Accuracy;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Times the CPU softmax backend on one in-memory sequence, with no Spark and no I/O: causal
 * softmax attention over the whole sequence, cut into query pieces of {@code --piece} tokens, each
 * piece one call over the keys up to its end (the causal prefix), as a job's tasks would make
 * them. With {@code --threads N} the pieces go to N threads, each with its own backend, pieces
 * i and P-1-i to the same thread (the causal triangle's long and short rows paired, so the
 * threads get even work). Best of several runs after one warm-up, with the last query piece
 * checked against the float64 reference. Besides wall-clock GFLOP/s it prints GFLOP per second of
 * the threads' own CPU time, which holds up better on a machine other processes share.
 * <pre>
 *   SoftmaxBench [--tokens 8192] [--heads 8] [--heads-k 2] [--dk 128] [--dv 128] [--dtype f32]
 *                [--window 0] [--threads 1] [--runs 3] [--piece 256] [--check-rows 16]
 * </pre>
 * GFLOP/s count 2 Hq (Dk + Dv) per visible (query, key) pair, T^2 / 2 pairs without a window
 * (the causal count, 2 T^2 Hq (Dk + Dv) / 2). The kernel is the vector one where the JVM
 * has jdk.incubator.vector; {@code -Dlightning.cpu.kernel=scalar} forces the scalar one.
 */
public final class SoftmaxBench {
    private SoftmaxBench() {
    }

    public static void main(String[] args) throws Exception {
        int tokens = 8192;
        int heads = 8;
        int headsK = 2;
        int dk = 128;
        int dv = 128;
        DType dtype = DType.F32;
        long window = SoftmaxSpec.NO_WINDOW;
        int threads = 1;
        int runs = 3;
        int piece = 256;
        int checkRows = 16;
        for (int i = 0; i < args.length; i += 2) {
            if (i + 1 >= args.length) {
                throw new IllegalArgumentException(args[i] + " needs a value");
            }
            String v = args[i + 1];
            // the counts at least 1; the others' limits are SoftmaxSpec's, which says them
            int min = Integer.MIN_VALUE;
            int max = Integer.MAX_VALUE;
            switch (args[i]) {
                case "--tokens": tokens = KernelBench.integer(args[i], v, 1, max); break;
                case "--heads": heads = KernelBench.integer(args[i], v, min, max); break;
                case "--heads-k": headsK = KernelBench.integer(args[i], v, min, max); break;
                case "--dk": dk = KernelBench.integer(args[i], v, min, max); break;
                case "--dv": dv = KernelBench.integer(args[i], v, min, max); break;
                case "--dtype": dtype = DType.fromSafetensors(v); break;
                case "--window": window = KernelBench.integer(args[i], v, Long.MIN_VALUE, Long.MAX_VALUE); break;
                case "--threads": threads = KernelBench.integer(args[i], v, 1, max); break;
                case "--runs": runs = KernelBench.integer(args[i], v, 1, max); break;
                case "--piece": piece = KernelBench.integer(args[i], v, 1, max); break;
                case "--check-rows": checkRows = KernelBench.integer(args[i], v, min, max); break;
                default: throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        SoftmaxSpec spec = new SoftmaxSpec(heads, headsK, dk, dv, SoftmaxSpec.defaultScale(dk), window);
        SplittableRandom rnd = new SplittableRandom(42);
        TokenTensor q = random(rnd, dtype, tokens, heads, dk);
        TokenTensor k = random(rnd, dtype, tokens, headsK, dk);
        TokenTensor v = random(rnd, dtype, tokens, headsK, dv);
        float[] o = new float[tokens * heads * dv];

        // pieces [p * piece, ...), paired long with short, the pairs dealt to the threads in turn
        int count = (tokens + piece - 1) / piece;
        List<List<Integer>> plan = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            plan.add(new ArrayList<>());
        }
        for (int i = 0, pair = 0; i <= count - 1 - i; i++, pair++) {
            plan.get(pair % threads).add(i);
            if (count - 1 - i != i) {
                plan.get(pair % threads).add(count - 1 - i);
            }
        }
        String kernel = new dev.lightning.attention.engine.cpu.SoftmaxCpu().kernelName();
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        double best = Double.MAX_VALUE;
        double bestCpu = Double.MAX_VALUE;
        java.lang.management.ThreadMXBean cpuClock = java.lang.management.ManagementFactory.getThreadMXBean();
        try {
            for (int r = 0; r <= runs; r++) { // run 0 warms up
                final int pieceTokens = piece;
                final int total = tokens;
                final int rowFloats = spec.headsQ() * spec.dv();
                long t0 = System.nanoTime();
                List<Future<Long>> done = new ArrayList<>();
                for (List<Integer> mine : plan) {
                    done.add(pool.submit(() -> {
                        long c0 = cpuClock.getCurrentThreadCpuTime();
                        try (SoftmaxBackend backend = Backends.softmaxCpu()) {
                            for (int p : mine) {
                                int from = p * pieceTokens;
                                int n = Math.min(pieceTokens, total - from);
                                SoftmaxPartial part = SoftmaxPartial.empty(spec, n);
                                backend.forward(spec, q.slice(from, n), from, k.slice(0, from + n), v.slice(0, from + n),
                                        0, part);
                                System.arraycopy(part.o(), 0, o, from * rowFloats, n * rowFloats);
                            }
                        }
                        return cpuClock.getCurrentThreadCpuTime() - c0;
                    }));
                }
                long cpuNanos = 0;
                for (Future<Long> f : done) {
                    cpuNanos += f.get();
                }
                if (r > 0) {
                    best = Math.min(best, (System.nanoTime() - t0) / 1e9);
                    bestCpu = Math.min(bestCpu, cpuNanos / 1e9);
                }
            }
        } finally {
            pool.shutdownNow();
        }

        // the last rows (they see the most keys) against the float64 reference
        int n = Math.min(checkRows, tokens);
        int from = tokens - n;
        SoftmaxPartial want = SoftmaxPartial.empty(spec, n);
        try (SoftmaxBackend ref = Backends.softmaxReference()) {
            ref.forward(spec, q.slice(from, n), from, k, v, 0, want);
        }
        float[] got = java.util.Arrays.copyOfRange(o, from * heads * dv, tokens * heads * dv);
        double err = Accuracy.relativeError(got, want.o());

        // the causal count, T^2 / 2 pairs, without a window; the visible pairs with one
        double pairs = window == SoftmaxSpec.NO_WINDOW ? (double) tokens * tokens / 2
                : spec.visiblePairs(0, tokens, 0, tokens);
        double flop = 2 * pairs * heads * (dk + dv);
        System.out.printf(Locale.ROOT, "softmax-cpu (%s kernel), %d thread(s): T=%d %s %s, pieces of %d, best of %d runs%n",
                kernel, threads, tokens, spec, dtype, piece, runs);
        System.out.printf(Locale.ROOT, "| ms | tokens/s | GFLOP/s | GFLOP/s per thread | GFLOP per CPU-second |%n"
                + "|---|---|---|---|---|%n");
        System.out.printf(Locale.ROOT, "| %.0f | %.3g | %.1f | %.1f | %.1f |%n", best * 1e3, tokens / best,
                flop / best / 1e9, flop / best / 1e9 / threads, flop / bestCpu / 1e9);
        System.out.printf(Locale.ROOT, "check: o relative error %.2e against softmax-f64 on the last %d queries%n", err, n);
    }

    private static TokenTensor random(SplittableRandom rnd, DType dtype, int t, int h, int d) {
        float[] x = new float[t * h * d];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (rnd.nextDouble() * 2 - 1);
        }
        return TokenTensor.of(dtype, t, h, d, x);
    }
}
