package dev.lightning.attention.bench;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.cuda.BenchHooks;
import dev.lightning.attention.engine.cuda.CudaBackend;
import dev.lightning.attention.engine.reference.Accuracy;
import dev.lightning.attention.engine.reference.ChunkedReference;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.util.Locale;
import java.util.concurrent.ForkJoinPool;
import java.util.stream.IntStream;

/**
 * The GPU benchmark: our forward of one whole sequence on one GPU, data already on the device
 * (pass 1 + scan + pass 2, as the job computes a split sequence), timed with device events, for
 * the shapes fla is compared on. Prints one "RESULT" line per shape for bin/gpu-check's table, and
 * first checks correctness on the device-made data against the float64 chunked reference (H = 8,
 * D = 128 at each length of {@code --checks}, then one awkward shape). Last, the
 * host path as the job pays it (host tensors in and out through forward(), copies included), with
 * the copies overlapped with the kernels and serial: one "RESULT host" line.
 * <pre>
 *   DeviceBench [--shapes 65536x64x128,262144x64x128,1048576x64x128,1048576x8x128] [--runs 10]
 *               [--host-shape 262144x8x128 | none] [--variants 1048576x128 | none] [--checks 65536 | none]
 * </pre>
 * {@code --shapes none}: no timings (the checks alone, say while another process compiles its kernels).
 * {@code --checks T,T,...}: the sequence lengths of the H = 8, D = 128 correctness check (error against
 * sequence length; the float64 reference runs on the CPU, about a second per 16K tokens and head).
 */
public final class DeviceBench {
    private DeviceBench() {
    }

    public static void main(String[] args) {
        String shapes = "65536x64x128,262144x64x128,1048576x64x128,1048576x8x128";
        int runs = 10;
        String hostShape = "262144x8x128";
        String variants = "1048576x128";
        String checks = "65536";
        for (int i = 0; i + 1 < args.length; i += 2) {
            if ("--variants".equals(args[i])) {
                variants = args[i + 1];
            } else if ("--checks".equals(args[i])) {
                checks = args[i + 1];
            } else if ("--shapes".equals(args[i])) {
                shapes = args[i + 1];
            } else if ("--host-shape".equals(args[i])) {
                hostShape = args[i + 1];
            } else if ("--runs".equals(args[i])) {
                runs = Integer.parseInt(args[i + 1]);
            } else {
                throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        String reason = CudaBackend.unavailableReason();
        if (reason != null) {
            System.out.println("DeviceBench: no usable GPU: " + reason);
            System.exit(2);
        }
        try (CudaBackend backend = new CudaBackend(0, true, Long.MAX_VALUE)) {
            BenchHooks hooks = new BenchHooks(backend);
            System.out.println("DeviceBench on " + backend.device());
            double copy = hooks.copyBandwidth(4L << 30, 5);
            System.out.printf(Locale.ROOT, "RESULT copy %.3f TB/s%n", copy / 1e12);
            for (String t : "none".equals(checks) ? new String[0] : checks.split(",")) {
                check(hooks, Integer.parseInt(t.trim()), 8, 128, 128);
            }
            check(hooks, 4100, 3, 72, 40);
            for (String shape : "none".equals(shapes) ? new String[0] : shapes.split(",")) {
                String[] p = shape.split("x");
                int t = Integer.parseInt(p[0]);
                int h = Integer.parseInt(p[1]);
                int d = Integer.parseInt(p[2]);
                AttentionSpec spec = new AttentionSpec(h, d, d, Slopes.minimax(h), 1.0, 64);
                hooks.prepareResident(spec, DType.BF16, t, 7);
                double elements = (double) t * h * d;
                // As the backend runs it (segments only where heads leave the GPU idle), and forced
                // through the two-pass path (pass 1 + scan + pass 2), as a split sequence is computed.
                for (int forced : new int[] {1, 2}) {
                    hooks.minSegments(forced);
                    float ms = hooks.timeResident(spec, DType.BF16, t, runs);
                    int segments = hooks.lastSegments();
                    // bytes the passes must move: q, k, v read and o written; k, v again for the tokens
                    // pass 1 covers (all but the last segment)
                    double bytes = 4 * elements * 2 + 2 * elements * 2 * hooks.lastPass1Tokens() / t;
                    System.out.printf(Locale.ROOT, "RESULT %s T=%d H=%d D=%d ms=%.3f tokens_per_s=%.4g copy_share=%.3f "
                                    + "segments=%d kernels=%s%n", forced == 1 ? "ours" : "ours-two-pass", t, h, d, ms,
                            t / (ms / 1e3), bytes / (ms / 1e3) / copy, segments, hooks.lastKernels());
                }
                hooks.minSegments(1);
                hooks.releaseBuffers();
            }
            if (!"none".equals(variants)) {
                String[] p = variants.split("x");
                variants(hooks, Integer.parseInt(p[0]), Integer.parseInt(p[1]), runs);
            }
            if (!"none".equals(hostShape)) {
                String[] p = hostShape.split("x");
                hostPath(backend, hooks, Integer.parseInt(p[0]), Integer.parseInt(p[1]), Integer.parseInt(p[2]),
                        Math.max(1, Math.min(runs, 5)));
            }
        }
    }

    /**
     * The variants against the plain kernels, in one run on device-made bf16 data of T tokens and
     * head width D: grouped-query attention (Hq = 64, Hk = Hv = 8) against the same computation on
     * k and v repeated to 64 heads (what a kernel without grouping must be given), and normalized
     * attention with the elu1 feature map against the plain formula at H = 64. Each is first
     * checked on the device against the float64 reference (a smaller T). One "RESULT variant"
     * line each.
     */
    private static void variants(BenchHooks hooks, int t, int d, int runs) {
        AttentionSpec mha = new AttentionSpec(64, d, d, Slopes.minimax(64), 1.0, 64);
        AttentionSpec gqa = mha.withHeads(64, 8, 8);
        AttentionSpec normalized = mha.withFeatureMap(FeatureMap.ELU1).withNormalization(1e-5);
        check(hooks, gqa, 16384);
        check(hooks, normalized, 16384);
        float plain = time(hooks, mha, t, runs);
        String plainKernels = hooks.lastKernels();
        float grouped = time(hooks, gqa, t, runs);
        String groupedKernels = hooks.lastKernels();
        float norm = time(hooks, normalized, t, runs);
        String normKernels = hooks.lastKernels();
        System.out.printf(Locale.ROOT, "RESULT variant gqa T=%d Hq=64 Hk=8 Hv=8 D=%d ms=%.3f repeated_heads_ms=%.3f "
                + "speedup=%.2fx kernels=%s,%s%n", t, d, grouped, plain, plain / grouped, groupedKernels, plainKernels);
        System.out.printf(Locale.ROOT, "RESULT variant normalized-elu1 T=%d H=64 D=%d ms=%.3f plain_ms=%.3f "
                + "cost=%+.1f%% kernels=%s,%s%n", t, d, norm, plain, 100 * (norm / plain - 1), normKernels, plainKernels);
        // Each part alone, to see where a variant's time goes.
        String[] names = {"elu1", "relu", "normalized-identity"};
        AttentionSpec[] parts = {mha.withFeatureMap(FeatureMap.ELU1), mha.withFeatureMap(FeatureMap.RELU),
                mha.withNormalization(1e-5)};
        for (int i = 0; i < parts.length; i++) {
            float ms = time(hooks, parts[i], t, runs);
            System.out.printf(Locale.ROOT, "RESULT variant %s T=%d H=64 D=%d ms=%.3f plain_ms=%.3f cost=%+.1f%% "
                    + "kernels=%s%n", names[i], t, d, ms, plain, 100 * (ms / plain - 1), hooks.lastKernels());
        }
        // The same on the portable mma.sync kernels (what GPUs other than Hopper run).
        hooks.hopperKernels(false);
        try {
            float portablePlain = time(hooks, mha, t, runs);
            for (int i = 0; i < parts.length + 1; i++) {
                AttentionSpec spec = i < parts.length ? parts[i] : normalized;
                String name = i < parts.length ? names[i] : "normalized-elu1";
                float ms = time(hooks, spec, t, runs);
                System.out.printf(Locale.ROOT, "RESULT variant portable %s T=%d H=64 D=%d ms=%.3f plain_ms=%.3f "
                        + "cost=%+.1f%% kernels=%s%n", name, t, d, ms, portablePlain, 100 * (ms / portablePlain - 1),
                        hooks.lastKernels());
            }
        } finally {
            hooks.hopperKernels(true);
        }
    }

    private static float time(BenchHooks hooks, AttentionSpec spec, int t, int runs) {
        hooks.prepareResident(spec, DType.BF16, t, 7);
        try {
            return hooks.timeResident(spec, DType.BF16, t, runs);
        } finally {
            hooks.releaseBuffers();
        }
    }

    /**
     * forward() on host BF16 tensors, a fresh output each run: wall-clock median of runs after a
     * warm-up, through the pipeline and the serial path. Bytes moved: q, k, v in and o out. Also
     * holds the two results against each other (different slices: equal to rounding).
     */
    private static void hostPath(CudaBackend backend, BenchHooks hooks, int t, int h, int d, int runs) {
        AttentionSpec spec = new AttentionSpec(h, d, d, Slopes.minimax(h), 1.0, 64);
        TokenTensor q = randomBf16(t, h, d, 1);
        TokenTensor k = randomBf16(t, h, d, 2);
        TokenTensor v = randomBf16(t, h, d, 3);
        LightningState s0 = LightningState.zeros(h, d, d);
        double[] ms = new double[2];
        int[] slices = new int[2];
        TokenTensor[] outs = new TokenTensor[2];
        LightningState[] states = new LightningState[2];
        try {
            for (int mode = 0; mode < 2; mode++) {
                hooks.overlapCopies(mode == 1);
                long[] times = new long[runs];
                for (int r = -1; r < runs; r++) { // r = -1: warm-up (buffers, pinned staging)
                    TokenTensor o = TokenTensor.allocate(DType.BF16, t, h, d);
                    long start = System.nanoTime();
                    LightningState s = backend.forward(spec, q, k, v, s0, o);
                    long took = System.nanoTime() - start;
                    if (r >= 0) {
                        times[r] = took;
                    }
                    outs[mode] = o;
                    states[mode] = s;
                }
                java.util.Arrays.sort(times);
                ms[mode] = times[runs / 2] / 1e6;
                slices[mode] = hooks.lastSlices();
                hooks.releaseBuffers();
            }
        } finally {
            hooks.overlapCopies(true);
        }
        double bytes = 4.0 * t * h * d * DType.BF16.bytes();
        System.out.printf(Locale.ROOT, "RESULT host T=%d H=%d D=%d serial_ms=%.1f pipelined_ms=%.1f speedup=%.2fx "
                        + "serial_GB_per_s=%.2f pipelined_GB_per_s=%.2f slices=%d,%d%n", t, h, d, ms[0], ms[1],
                ms[0] / ms[1], bytes / (ms[0] / 1e3) / 1e9, bytes / (ms[1] / 1e3) / 1e9, slices[0], slices[1]);
        double eo = Accuracy.relativeError(outs[1].toFloats(), outs[0].toFloats());
        double es = Accuracy.relativeError(states[1].kv(), states[0].kv());
        System.out.printf(Locale.ROOT, "RESULT check host T=%d H=%d D=%d pipelined against serial: output relative "
                + "difference %.3e, state %.3e %s%n", t, h, d, eo, es, eo <= 6e-3 && es <= 1e-5 ? "ok" : "FAILED");
    }

    /** Uniform values in [-1, 1) as BF16, made in parallel (hundreds of millions of them). */
    private static TokenTensor randomBf16(int t, int h, int d, long seed) {
        TokenTensor x = TokenTensor.allocate(DType.BF16, t, h, d);
        ForkJoinPool.commonPool().submit(() -> IntStream.range(0, t).parallel().forEach(token -> {
            java.util.SplittableRandom rnd = new java.util.SplittableRandom(seed * 1_000_003L + token);
            for (int head = 0; head < h; head++) {
                for (int i = 0; i < d; i++) {
                    x.set(token, head, i, (float) (rnd.nextDouble() * 2 - 1));
                }
            }
        })).join();
        return x;
    }

    /** Our bf16 output on device-made inputs against the float64 chunked reference, two heads. */
    private static void check(BenchHooks hooks, int t, int h, int dk, int dv) {
        check(hooks, new AttentionSpec(h, dk, dv, Slopes.minimax(h), 1.0, 64), t);
    }

    /**
     * The output of {@code spec} on device-made bf16 inputs against the float64 chunked reference,
     * for heads 0 and H - 1 (each through the q, k and v heads it reads).
     */
    private static void check(BenchHooks hooks, AttentionSpec spec, int t) {
        int h = spec.heads();
        int dk = spec.dk();
        int dv = spec.dv();
        hooks.prepareResident(spec, DType.BF16, t, 11);
        hooks.timeResident(spec, DType.BF16, t, 1);
        TokenTensor[] qkvo = hooks.readResident(spec, DType.BF16, t);
        int[] heads = h == 1 ? new int[] {0} : new int[] {0, h - 1};
        double[] err = new double[heads.length];
        ForkJoinPool.commonPool().submit(() -> IntStream.range(0, heads.length).parallel().forEach(i -> {
            int head = heads[i];
            AttentionSpec one = new AttentionSpec(1, dk, dv, new double[] {spec.slope(head)}, spec.scale(), 64)
                    .withFeatureMap(spec.featureMap());
            if (spec.normalized()) {
                one = one.withNormalization(spec.eps());
            }
            TokenTensor q = head(qkvo[0], spec.qHead(head));
            TokenTensor k = head(qkvo[1], spec.kHead(head));
            TokenTensor v = head(qkvo[2], spec.vHead(head));
            TokenTensor o = head(qkvo[3], head);
            TokenTensor ref = TokenTensor.allocate(DType.F32, t, 1, dv);
            new ChunkedReference().forward(one, q, k, v, LightningState.zeros(one), ref);
            err[i] = Accuracy.relativeError(o.toFloats(), ref.toFloats());
        })).join();
        double worst = 0;
        for (double e : err) {
            worst = Math.max(worst, e);
        }
        System.out.printf(Locale.ROOT, "RESULT check T=%d %s bf16 output relative error %.3e (heads %s, float64 "
                + "reference) %s%n", t, spec, worst, java.util.Arrays.toString(heads), worst <= 4e-3 ? "ok" : "FAILED");
        hooks.releaseBuffers();
    }

    private static TokenTensor head(TokenTensor x, int head) {
        TokenTensor out = TokenTensor.allocate(x.dtype(), x.tokens(), 1, x.dim());
        float[] row = new float[x.dim()];
        for (int t = 0; t < x.tokens(); t++) {
            x.readHead(head, t, 1, row);
            out.writeHead(0, t, 1, row);
        }
        return out;
    }
}
