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

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.StandardOpenOption;
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
 *               [--plans H:SxE/SxE,H:... | none] [--kernels chosen | portable | a100 | 99kb | float32]
 * </pre>
 * {@code --plans}: at the shapes of H heads, also time the window cut into S segments of E pass-1
 * sub-segments each ("RESULT plan" lines), beside the plan the backend chooses; "LCxE": an uneven
 * cut, a lead of C chunks with pass 1 over it in E sub-segments, then the rest.
 * {@code --kernels portable}: everything on the mma.sync kernels (what GPUs before Hopper run), on a Hopper GPU too;
 * {@code a100} and {@code 99kb}: the portable kernels with a block's shared memory lowered to an A100's (166,912
 * bytes) or to compute capability 8.6, 8.9 and 12.0's (101,376), so they run with the stages and columns those
 * GPUs give them (on this GPU's memory and clocks, not theirs); {@code float32}: the float32 kernels (the
 * gpu-generic backend, what F32 input runs).
 * {@code --shapes none}: no timings (the checks alone, say while another process compiles its kernels).
 * {@code --checks T,T,...}: the sequence lengths of the H = 8, D = 128 correctness check (error against
 * sequence length; the float64 reference runs on the CPU, about a second per 16K tokens and head); an entry
 * TxHxD checks that shape instead (heads 0 and H - 1, read from the device alone: any size that fits there).
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
        // H:SxE/SxE,...: at the shapes of H heads, also time the plans of S segments of E pass-1 sub-segments
        String plans = "none";
        // TxHxD:A,...: at each shape, the backend's choice against A (SxE: a forced plan, LCxE: a forced
        // uneven one, a lead of C chunks in E pass-1 sub-segments; "old": the
        // narrow kernels in place of the _n64 ones; "hopper": the Hopper kernels padded to Dk = 128;
        // "unpaired": the choice without the paired Hopper kernels), alternated over --rounds rounds
        // in this process
        String ab = "none";
        int rounds = 5;
        // chosen: the kernels the backend picks; portable: the mma.sync ones on any GPU (what an A100 or L40 runs)
        String kernels = "chosen";
        for (int i = 0; i + 1 < args.length; i += 2) {
            if ("--variants".equals(args[i])) {
                variants = args[i + 1];
            } else if ("--checks".equals(args[i])) {
                checks = args[i + 1];
            } else if ("--shapes".equals(args[i])) {
                shapes = args[i + 1];
            } else if ("--host-shape".equals(args[i])) {
                hostShape = args[i + 1];
            } else if ("--ab".equals(args[i])) {
                ab = args[i + 1];
            } else if ("--rounds".equals(args[i])) {
                rounds = Integer.parseInt(args[i + 1]);
            } else if ("--plans".equals(args[i])) {
                plans = args[i + 1];
            } else if ("--runs".equals(args[i])) {
                runs = Integer.parseInt(args[i + 1]);
            } else if ("--kernels".equals(args[i])) {
                kernels = args[i + 1];
                if (!java.util.List.of("chosen", "portable", "a100", "99kb", "float32").contains(kernels)) {
                    throw new IllegalArgumentException("--kernels takes chosen (as the backend picks), portable (the "
                            + "mma.sync kernels, also on a Hopper GPU), a100 or 99kb (the portable kernels within that "
                            + "GPU's shared memory a block) or float32 (the float32 kernels); got " + kernels);
                }
            } else {
                throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        String reason = CudaBackend.unavailableReason();
        if (reason != null) {
            System.out.println("DeviceBench: no usable GPU: " + reason);
            System.exit(2);
        }
        try (CudaBackend backend = new CudaBackend(0, !kernels.equals("float32"), Long.MAX_VALUE)) {
            BenchHooks hooks = new BenchHooks(backend);
            hooks.hopperKernels(kernels.equals("chosen"));
            if (kernels.equals("a100") || kernels.equals("99kb")) {
                hooks.sharedLimit(kernels.equals("a100") ? BenchHooks.A100_SHARED_BYTES
                        : BenchHooks.SMALL_SHARED_BYTES);
            }
            System.out.println("DeviceBench on " + backend.device() + ", kernels " + kernels);
            double copy = hooks.copyBandwidth(4L << 30, 5);
            System.out.printf(Locale.ROOT, "RESULT copy %.3f TB/s of the memory's peak %.3f%n", copy / 1e12,
                    hooks.memoryPeak() / 1e12);
            for (String c : "none".equals(checks) ? new String[0] : checks.split(",")) {
                String[] p = c.trim().split("x");
                if (p.length == 1) {
                    check(hooks, Integer.parseInt(p[0]), 8, 128, 128);
                } else {
                    check(hooks, Integer.parseInt(p[0]), Integer.parseInt(p[1]), Integer.parseInt(p[2]),
                            Integer.parseInt(p[2]));
                }
            }
            check(hooks, 4100, 3, 72, 40);
            boolean shapeFailed = false;
            for (String shape : "none".equals(shapes) ? new String[0] : shapes.split(",")) {
                try {
                    timeShape(hooks, shape, runs, copy, plans);
                } catch (RuntimeException e) { // one shape that does not fit, say, is reported and the others still run
                    System.out.println("RESULT shape-failed " + shape + ": " + e);
                    hooks.minSegments(1);
                    hooks.releaseBuffers();
                    shapeFailed = true;
                }
            }
            if (!"none".equals(ab)) {
                for (String entry : ab.split(",")) {
                    String[] sa = entry.split(":");
                    try {
                        alternate(hooks, sa[0], sa[1], rounds, runs, copy);
                    } catch (RuntimeException e) {
                        System.out.println("RESULT ab-failed " + entry + ": " + e);
                        hooks.releaseBuffers();
                    }
                }
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
            if (shapeFailed) {
                throw new IllegalStateException("a timed shape failed (its \"RESULT shape-failed\" line says why)");
            }
        }
    }

    /**
     * One shape of {@code --shapes}: as the backend runs it and through the two-pass path ("RESULT ours" and
     * "ours-two-pass"), then the Hopper kernels padded and the plans of {@code --plans} where they apply.
     */
    private static void timeShape(BenchHooks hooks, String shape, int runs, double copy, String plans) {
        String[] p = shape.split("x");
        int t = Integer.parseInt(p[0]);
        int h = Integer.parseInt(p[1]);
        int d = Integer.parseInt(p[2]);
        AttentionSpec spec = resident(hooks, t, h, d);
        double elements = (double) t * h * d;
        // As the backend runs it (segments only where heads leave the GPU idle), and forced
        // through the two-pass path (pass 1 + scan + pass 2), as a split sequence is computed.
        for (int forced : new int[] {1, 2}) {
            hooks.minSegments(forced);
            Timed timed = timed(hooks, spec, t, runs);
            float ms = timed.ms;
            System.out.printf(Locale.ROOT, "RESULT %s T=%d H=%d D=%d ms=%.3f tokens_per_s=%.4g copy_share=%.3f "
                            + "segments=%d kernels=%s plan=%s%s%n", forced == 1 ? "ours" : "ours-two-pass", t, h,
                    d, ms, t / (ms / 1e3), copyShare(hooks, elements, t, ms, copy), hooks.lastSegments(),
                    hooks.lastKernels(), hooks.lastPlan(), timed.wall());
        }
        hooks.minSegments(1);
        if (d <= 64 && !"none".equals(plans)) {
            // the Hopper kernels on a narrow head (they pad Dk to 128 and use one of their two
            // column halves): timing only, to compare with the mma.sync kernels' line above
            hooks.hopperAnyWidth(true);
            try {
                float ms = hooks.timeResident(spec, DType.BF16, t, runs);
                System.out.printf(Locale.ROOT, "RESULT hopper-padded T=%d H=%d D=%d ms=%.3f copy_share=%.3f "
                        + "plan=%s kernels=%s%n", t, h, d, ms, copyShare(hooks, elements, t, ms, copy), hooks.lastPlan(),
                        hooks.lastKernels());
            } finally {
                hooks.hopperAnyWidth(false);
            }
        }
        for (String forced : plansFor(plans, h)) {
            force(hooks, forced);
            try {
                float ms = hooks.timeResident(spec, DType.BF16, t, runs);
                System.out.printf(Locale.ROOT, "RESULT plan T=%d H=%d D=%d ms=%.3f copy_share=%.3f plan=%s "
                        + "kernels=%s%n", t, h, d, ms, copyShare(hooks, elements, t, ms, copy), hooks.lastPlan(),
                        hooks.lastKernels());
            } finally {
                hooks.forcePlan(0, 0);
            }
        }
        hooks.releaseBuffers();
    }

    /** The benchmark's spec for T x H x D (MiniMax slopes, chunk 64) with its BF16 window made resident. */
    private static AttentionSpec resident(BenchHooks hooks, int t, int h, int d) {
        AttentionSpec spec = new AttentionSpec(h, d, d, Slopes.minimax(h), 1.0, 64);
        hooks.prepareResident(spec, DType.BF16, t, 7);
        return spec;
    }

    /**
     * The backend's choice (B) against {@code a} (a forced plan "SxE"; "old": the narrow kernels in
     * place of the _n64 ones; "hopper": the Hopper kernels padded to Dk = 128; "unpaired": the choice
     * without the paired Hopper kernels) on one resident window of {@code shape}, alternated A B B A ... over
     * {@code rounds} rounds so that drift in the GPU's clocks falls on both: one "RESULT ab-round" line a
     * round and one "RESULT ab" line with both medians.
     */
    private static void alternate(BenchHooks hooks, String shape, String a, int rounds, int runs, double copy) {
        String[] p = shape.split("x");
        int t = Integer.parseInt(p[0]);
        int h = Integer.parseInt(p[1]);
        int d = Integer.parseInt(p[2]);
        AttentionSpec spec = resident(hooks, t, h, d);
        float[] msA = new float[rounds];
        float[] msB = new float[rounds];
        String planA = "";
        String planB = "";
        try {
            for (int r = 0; r < rounds; r++) {
                for (int k = 0; k < 2; k++) {
                    boolean sideA = (r % 2 == 0) == (k == 0);
                    if (sideA && "old".equals(a)) {
                        hooks.smallKernels(false);
                    } else if (sideA && "hopper".equals(a)) {
                        hooks.hopperAnyWidth(true);
                    } else if (sideA && "unpaired".equals(a)) {
                        hooks.hopperPairs(false);
                    } else if (sideA) {
                        force(hooks, a);
                    }
                    try {
                        float ms = hooks.timeResident(spec, DType.BF16, t, runs);
                        String plan = hooks.lastPlan() + " " + hooks.lastKernels();
                        if (sideA) {
                            msA[r] = ms;
                            planA = plan;
                        } else {
                            msB[r] = ms;
                            planB = plan;
                        }
                    } finally {
                        hooks.smallKernels(true);
                        hooks.hopperAnyWidth(false);
                        hooks.hopperPairs(true);
                        hooks.forcePlan(0, 0);
                    }
                }
                System.out.printf(Locale.ROOT, "RESULT ab-round T=%d H=%d D=%d round=%d A_ms=%.3f B_ms=%.3f%n", t, h, d, r,
                        msA[r], msB[r]);
            }
        } finally {
            hooks.releaseBuffers();
        }
        float[] sa = msA.clone();
        float[] sb = msB.clone();
        java.util.Arrays.sort(sa);
        java.util.Arrays.sort(sb);
        System.out.printf(Locale.ROOT, "RESULT ab T=%d H=%d D=%d A=%s (%s) median_ms=%.3f B=chosen (%s) median_ms=%.3f "
                + "A_over_B=%.3f rounds=%d%n", t, h, d, a, planA, sa[rounds / 2], planB, sb[rounds / 2],
                sa[rounds / 2] / sb[rounds / 2], rounds);
    }

    /**
     * Forces the plan {@code plan} names: "SxE", S segments of E pass-1 sub-segments each; "LCxE", an
     * uneven cut with a lead of C chunks in E sub-segments (BenchHooks.forceLead).
     */
    private static void force(BenchHooks hooks, String plan) {
        boolean lead = plan.startsWith("L");
        String[] se = (lead ? plan.substring(1) : plan).split("x");
        if (lead) {
            hooks.forceLead(Integer.parseInt(se[0]), Integer.parseInt(se[1]));
        } else {
            hooks.forcePlan(Integer.parseInt(se[0]), Integer.parseInt(se[1]));
        }
    }

    /** The forced plans ("SxE", "LCxE") of {@code --plans} for shapes of {@code heads} heads. */
    private static String[] plansFor(String plans, int heads) {
        if ("none".equals(plans)) {
            return new String[0];
        }
        for (String entry : plans.split(",")) {
            String[] hp = entry.split(":");
            if (Integer.parseInt(hp[0].trim()) == heads) {
                return hp[1].trim().split("/");
            }
        }
        return new String[0];
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
        Timed plain = time(hooks, mha, t, runs);
        String plainKernels = hooks.lastKernels();
        Timed grouped = time(hooks, gqa, t, runs);
        String groupedKernels = hooks.lastKernels();
        Timed norm = time(hooks, normalized, t, runs);
        String normKernels = hooks.lastKernels();
        System.out.printf(Locale.ROOT, "RESULT variant gqa T=%d Hq=64 Hk=8 Hv=8 D=%d ms=%.3f repeated_heads_ms=%.3f "
                + "speedup=%.2fx kernels=%s,%s%s%n", t, d, grouped.ms, plain.ms, plain.ms / grouped.ms, groupedKernels,
                plainKernels, grouped.wall() + plain.plainWall());
        System.out.printf(Locale.ROOT, "RESULT variant normalized-elu1 T=%d H=64 D=%d ms=%.3f plain_ms=%.3f "
                + "cost=%+.1f%% kernels=%s,%s%s%n", t, d, norm.ms, plain.ms, 100 * (norm.ms / plain.ms - 1), normKernels,
                plainKernels, norm.wall() + plain.plainWall());
        // Each part alone, to see where a variant's time goes.
        String[] names = {"elu1", "relu", "normalized-identity"};
        AttentionSpec[] parts = {mha.withFeatureMap(FeatureMap.ELU1), mha.withFeatureMap(FeatureMap.RELU),
                mha.withNormalization(1e-5)};
        for (int i = 0; i < parts.length; i++) {
            Timed part = time(hooks, parts[i], t, runs);
            System.out.printf(Locale.ROOT, "RESULT variant %s T=%d H=64 D=%d ms=%.3f plain_ms=%.3f cost=%+.1f%% "
                    + "kernels=%s%s%n", names[i], t, d, part.ms, plain.ms, 100 * (part.ms / plain.ms - 1),
                    hooks.lastKernels(), part.wall() + plain.plainWall());
        }
        // The same on the portable mma.sync kernels (what GPUs other than Hopper run).
        hooks.hopperKernels(false);
        try {
            Timed portablePlain = time(hooks, mha, t, runs);
            for (int i = 0; i < parts.length + 1; i++) {
                AttentionSpec spec = i < parts.length ? parts[i] : normalized;
                String name = i < parts.length ? names[i] : "normalized-elu1";
                Timed part = time(hooks, spec, t, runs);
                System.out.printf(Locale.ROOT, "RESULT variant portable %s T=%d H=64 D=%d ms=%.3f plain_ms=%.3f "
                        + "cost=%+.1f%% kernels=%s%s%n", name, t, d, part.ms, portablePlain.ms,
                        100 * (part.ms / portablePlain.ms - 1), hooks.lastKernels(),
                        part.wall() + portablePlain.plainWall());
            }
        } finally {
            hooks.hopperKernels(true);
        }
    }

    /**
     * The share of the copy bandwidth ({@code copy}, bytes a second) the last timed window reached in {@code ms}:
     * the bytes its passes must move over the time. Of a BF16 window of {@code elements} = T x H x D: q, k, v read
     * and o written; k, v again for the tokens pass 1 covers (all but the last segment).
     */
    private static double copyShare(BenchHooks hooks, double elements, int t, double ms, double copy) {
        double bytes = 4 * elements * 2 + 2 * elements * 2 * hooks.lastPass1Tokens() / t;
        return bytes / (ms / 1e3) / copy;
    }

    /**
     * A median time and the wall-clock interval (epoch ms) it was taken in, its warm-up included, which a
     * RESULT line carries (" wall_ms=FROM-TO") so that bench/table.py can read the GPU's clock and power in it
     * from nvidia-smi's samples (bin/gpu-check takes them). On 2026-12-05 the clock did not explain an H200's
     * spread at its power limit; how long the GPU had been busy before a timing did (BENCHMARKS.md).
     */
    private record Timed(float ms, long from, long to) {
        String wall() {
            return interval("wall_ms");
        }

        /** The same for the plain run a variant line compares with: " plain_wall_ms=FROM-TO". */
        String plainWall() {
            return interval("plain_wall_ms");
        }

        private String interval(String key) {
            return " " + key + "=" + from + "-" + to;
        }
    }

    /** The resident window of {@code spec} timed ({@link BenchHooks#timeResident}), with its interval. */
    private static Timed timed(BenchHooks hooks, AttentionSpec spec, int t, int runs) {
        long from = System.currentTimeMillis();
        float ms = hooks.timeResident(spec, DType.BF16, t, runs);
        return new Timed(ms, from, System.currentTimeMillis());
    }

    private static Timed time(BenchHooks hooks, AttentionSpec spec, int t, int runs) {
        hooks.prepareResident(spec, DType.BF16, t, 7);
        try {
            return timed(hooks, spec, t, runs);
        } finally {
            hooks.releaseBuffers();
        }
    }

    /**
     * forward() on host BF16 tensors: wall-clock median of runs after a warm-up, bytes moved q, k, v
     * in and o out, in five ways, all in this run:
     * <ol>
     *   <li>serial: the serial path (one slice: copy in, kernels, copy out), staging on one thread;</li>
     *   <li>pipelined, one thread: the first pipeline (heap tensors staged on one thread);</li>
     *   <li>pipelined, N threads: heap tensors staged on several threads;</li>
     *   <li>registered: q, k, v and o from {@code hostTensor} (registered off-heap memory), copied by
     *       the device with no staging;</li>
     *   <li>file: the executor's whole path on registered tensors: q, k, v read from a file with
     *       positioned reads on several threads, forward(), o written to a file.</li>
     * </ol>
     * Beside them the pinned copy rates and the kernels alone at the same shape (the stages the
     * pipeline overlaps), and the host's staging, unstaging and waiting time of each way. Outputs
     * of the pipelined ways are held byte for byte to the first pipeline's (same slices, same
     * launches), the serial one to rounding (other slices).
     */
    private static void hostPath(CudaBackend backend, BenchHooks hooks, int t, int h, int d, int runs) {
        AttentionSpec spec = new AttentionSpec(h, d, d, Slopes.minimax(h), 1.0, 64);
        TokenTensor q = randomBf16(t, h, d, 1);
        TokenTensor k = randomBf16(t, h, d, 2);
        TokenTensor v = randomBf16(t, h, d, 3);
        LightningState s0 = LightningState.zeros(h, d, d);
        double bytes = 4.0 * t * h * d * DType.BF16.bytes();
        long inBytes = 3L * t * h * d * DType.BF16.bytes();
        long outBytes = (long) t * h * d * DType.BF16.bytes();
        // the stages alone: pinned copies each way, and the kernels on the device-resident window
        double[] rates = hooks.pinnedCopyRates(1L << 30, 5);
        hooks.prepareResident(spec, DType.BF16, t, 7);
        float kernelMs = hooks.timeResident(spec, DType.BF16, t, 10);
        hooks.releaseBuffers();
        System.out.printf(Locale.ROOT, "RESULT host-stages T=%d H=%d D=%d pinned_h2d_GB_per_s=%.2f pinned_d2h_GB_per_s=%.2f "
                        + "h2d_ms=%.1f d2h_ms=%.1f kernels_ms=%.2f%n", t, h, d, rates[0] / 1e9, rates[1] / 1e9,
                inBytes / rates[0] * 1e3, outBytes / rates[1] * 1e3, kernelMs);
        String[] names = {"serial-1thread", "pipelined-1thread", "pipelined-" + HostThreads.N + "threads", "registered"};
        TokenTensor[] outs = new TokenTensor[names.length + 1];
        LightningState[] states = new LightningState[names.length + 1];
        double[] ms = new double[names.length + 1];
        TokenTensor rq = backend.hostTensor(DType.BF16, t, h, d);
        TokenTensor rk = backend.hostTensor(DType.BF16, t, h, d);
        TokenTensor rv = backend.hostTensor(DType.BF16, t, h, d);
        TokenTensor ro = backend.hostTensor(DType.BF16, t, h, d);
        rq.putBytes(q.bytes());
        rk.putBytes(k.bytes());
        rv.putBytes(v.bytes());
        try {
            for (int mode = 0; mode < names.length; mode++) {
                hooks.overlapCopies(mode != 0);
                hooks.copyThreads(mode <= 1 ? 1 : HostThreads.N);
                boolean reg = mode == 3;
                long[] times = new long[runs];
                double[][] stages = new double[runs][];
                for (int r = -1; r < runs; r++) { // r = -1: warm-up (buffers, pinned staging)
                    TokenTensor o = reg ? ro : TokenTensor.allocate(DType.BF16, t, h, d);
                    long start = System.nanoTime();
                    LightningState s = reg ? backend.forward(spec, rq, rk, rv, s0, o) : backend.forward(spec, q, k, v, s0, o);
                    long took = System.nanoTime() - start;
                    if (r >= 0) {
                        times[r] = took;
                        stages[r] = hooks.lastHostStagesMillis();
                    }
                    outs[mode] = reg ? copyOf(o) : o;
                    states[mode] = s;
                }
                int median = medianIndex(times);
                ms[mode] = times[median] / 1e6;
                double[] st = stages[median];
                System.out.printf(Locale.ROOT, "RESULT host-path %s T=%d H=%d D=%d ms=%.1f GB_per_s=%.2f of_pinned=%.2f "
                                + "slices=%d stage_in_ms=%.1f unstage_out_ms=%.1f host_wait_ms=%.1f%n", names[mode], t, h, d,
                        ms[mode], bytes / (ms[mode] / 1e3) / 1e9, bytes / (ms[mode] / 1e3) / Math.min(rates[0], rates[1]),
                        hooks.lastSlices(), st[0], st[1], st[2]);
                if (mode == 0) {
                    hooks.releaseBuffers();
                }
            }
            filePath(backend, hooks, spec, q, k, v, rq, rk, rv, ro, s0, runs, bytes, rates, outs, states, ms);
        } finally {
            hooks.overlapCopies(true);
            hooks.copyThreads(HostThreads.N);
            for (TokenTensor x : new TokenTensor[] {rq, rk, rv, ro}) {
                backend.releaseHostTensor(x);
            }
            hooks.releaseBuffers();
        }
        double eo = Accuracy.relativeError(outs[1].toFloats(), outs[0].toFloats());
        double es = Accuracy.relativeError(states[1].kv(), states[0].kv());
        System.out.printf(Locale.ROOT, "RESULT check host T=%d H=%d D=%d pipelined against serial: output relative "
                + "difference %.3e, state %.3e %s%n", t, h, d, eo, es, eo <= 6e-3 && es <= 1e-5 ? "ok" : "FAILED");
        for (int mode = 2; mode <= names.length; mode++) {
            boolean same = outs[mode].bytes().equals(outs[1].bytes())
                    && java.util.Arrays.equals(states[mode].kv(), states[1].kv());
            System.out.printf(Locale.ROOT, "RESULT check host T=%d H=%d D=%d %s against pipelined-1thread: %s%n", t, h, d,
                    mode < names.length ? names[mode] : "file", same ? "byte-identical ok" : "DIFFERENT FAILED");
        }
        System.out.printf(Locale.ROOT, "RESULT host T=%d H=%d D=%d serial_ms=%.1f pipelined_ms=%.1f speedup=%.2fx "
                        + "serial_GB_per_s=%.2f pipelined_GB_per_s=%.2f threads_GB_per_s=%.2f registered_GB_per_s=%.2f%n",
                t, h, d, ms[0], ms[1], ms[0] / ms[1], bytes / (ms[0] / 1e3) / 1e9, bytes / (ms[1] / 1e3) / 1e9,
                bytes / (ms[2] / 1e3) / 1e9, bytes / (ms[3] / 1e3) / 1e9);
    }

    /** Threads of the staging copies and file reads in the benchmark: the backend's default. */
    private static final class HostThreads {
        static final int N = Math.max(1, Math.min(8, Runtime.getRuntime().availableProcessors() / 2));
    }

    /**
     * The executor's path on registered tensors, from a file and back to one: q, k, v read with
     * positioned reads ({@link FileChannel#read(java.nio.ByteBuffer, long)}, several threads) into
     * the registered tensors, forward(), o written with positioned writes. The first read is from
     * a dropped page cache where this process may drop it (root on the GPU machine), the timed
     * runs from the page cache. One "RESULT host-path file" line with each stage.
     */
    private static void filePath(CudaBackend backend, BenchHooks hooks, AttentionSpec spec, TokenTensor q,
                                 TokenTensor k, TokenTensor v, TokenTensor rq, TokenTensor rk, TokenTensor rv,
                                 TokenTensor ro, LightningState s0, int runs, double bytes, double[] rates,
                                 TokenTensor[] outs, LightningState[] states, double[] ms) {
        java.nio.file.Path dir = null;
        try {
            dir = java.nio.file.Files.createTempDirectory("lightning-hostpath");
            java.nio.file.Path in = dir.resolve("qkv.bin");
            java.nio.file.Path out = dir.resolve("o.bin");
            long per = q.bytes().remaining();
            try (FileChannel c = FileChannel.open(in, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
                long at = 0;
                for (TokenTensor x : new TokenTensor[] {q, k, v}) {
                    ByteBuffer b = x.bytes();
                    while (b.hasRemaining()) {
                        at += c.write(b, at);
                    }
                }
                c.force(false);
            }
            boolean dropped = dropPageCache();
            hooks.overlapCopies(true);
            hooks.copyThreads(HostThreads.N);
            int mode = outs.length - 1;
            long[][] times = new long[runs + 1][3];
            try (FileChannel c = FileChannel.open(in, StandardOpenOption.READ);
                 FileChannel w = FileChannel.open(out, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                         StandardOpenOption.TRUNCATE_EXISTING)) {
                for (int r = 0; r <= runs; r++) { // r = 0: the cold read (or the page cache's, not dropped)
                    long t0 = System.nanoTime();
                    TokenTensor[] targets = {rq, rk, rv};
                    parallelIo(3, per, (tensor, from, len) -> {
                        ByteBuffer b = writable(targets[tensor], from, len);
                        long at = tensor * per + from;
                        while (b.hasRemaining()) {
                            int got = c.read(b, at);
                            if (got < 0) {
                                throw new java.io.EOFException("qkv.bin ends at " + at);
                            }
                            at += got;
                        }
                    });
                    long t1 = System.nanoTime();
                    LightningState s = backend.forward(spec, rq, rk, rv, s0, ro);
                    long t2 = System.nanoTime();
                    parallelIo(1, per, (tensor, from, len) -> {
                        ByteBuffer b = ro.bytes();
                        b.position(Math.toIntExact(from)).limit(Math.toIntExact(from + len));
                        long at = from;
                        while (b.hasRemaining()) {
                            at += w.write(b, at);
                        }
                    });
                    long t3 = System.nanoTime();
                    times[r] = new long[] {t1 - t0, t2 - t1, t3 - t2};
                    states[mode] = s;
                }
            }
            outs[mode] = copyOf(ro);
            long[] totals = new long[runs];
            for (int r = 0; r < runs; r++) {
                totals[r] = times[r + 1][0] + times[r + 1][1] + times[r + 1][2];
            }
            long[] warm = times[1 + medianIndex(totals)];
            double total = totals[medianIndex(totals)] / 1e6;
            ms[mode] = warm[1] / 1e6;
            double inBytes = 0.75 * bytes;
            System.out.printf(Locale.ROOT, "RESULT host-path file T=%d H=%d D=%d read_ms=%.1f read_GB_per_s=%.2f "
                            + "forward_ms=%.1f forward_GB_per_s=%.2f write_ms=%.1f write_GB_per_s=%.2f total_ms=%.1f "
                            + "total_GB_per_s=%.2f of_pinned=%.2f (page cache; threads %d)%n", q.tokens(), q.heads(), q.dim(),
                    warm[0] / 1e6, inBytes / warm[0], warm[1] / 1e6, bytes / warm[1], warm[2] / 1e6,
                    bytes / 4 / warm[2], total, bytes / (total / 1e3) / 1e9,
                    bytes / (total / 1e3) / Math.min(rates[0], rates[1]), HostThreads.N);
            System.out.printf(Locale.ROOT, "RESULT host-path file-first-read T=%d read_ms=%.1f read_GB_per_s=%.2f (%s)%n",
                    q.tokens(), times[0][0] / 1e6, inBytes / times[0][0],
                    dropped ? "page cache dropped before it" : "page cache not dropped: no permission");
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException("host path benchmark file stage: " + e.getMessage(), e);
        } finally {
            if (dir != null) {
                try (java.util.stream.Stream<java.nio.file.Path> files = java.nio.file.Files.list(dir)) {
                    for (java.nio.file.Path f : (Iterable<java.nio.file.Path>) files::iterator) {
                        java.nio.file.Files.deleteIfExists(f);
                    }
                    java.nio.file.Files.deleteIfExists(dir);
                } catch (java.io.IOException ignored) {
                    // a temporary directory of the benchmark's own
                }
            }
        }
    }

    /** One positioned read or write of bytes [from, from + len) of tensor {@code tensor}. */
    @FunctionalInterface
    private interface IoPart {
        void run(int tensor, long from, long len) throws java.io.IOException;
    }

    /** {@code tensors} ranges of {@code per} bytes, each cut into {@link HostThreads#N} parts, on as many threads. */
    private static void parallelIo(int tensors, long per, IoPart part) {
        int parts = HostThreads.N;
        ForkJoinPool pool = new ForkJoinPool(parts);
        try {
            pool.submit(() -> IntStream.range(0, tensors * parts).parallel().forEach(i -> {
                int tensor = i / parts;
                int p = i % parts;
                long from = per * p / parts / 4096 * 4096;
                long to = p == parts - 1 ? per : per * (p + 1) / parts / 4096 * 4096;
                try {
                    part.run(tensor, from, to - from);
                } catch (java.io.IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            })).join();
        } finally {
            pool.shutdown();
        }
    }

    /** A writable view of bytes [from, from + len) of a tensor (whole tokens). */
    private static ByteBuffer writable(TokenTensor t, long from, long len) {
        int tokenBytes = t.tokenBytes();
        if (from % tokenBytes != 0 || len % tokenBytes != 0) {
            // the parts are 4 KiB-aligned; a token of H = 8, D = 128 BF16 is 2 KiB: whole tokens
            throw new IllegalStateException("a read part must hold whole tokens of " + tokenBytes + " bytes");
        }
        return t.slice((int) (from / tokenBytes), (int) (len / tokenBytes)).writableBytes();
    }

    /** Whether the page cache could be dropped (root on Linux); false elsewhere. */
    private static boolean dropPageCache() {
        try {
            java.nio.file.Files.writeString(java.nio.file.Path.of("/proc/sys/vm/drop_caches"), "3\n");
            return true;
        } catch (java.io.IOException | SecurityException e) {
            return false;
        }
    }

    private static TokenTensor copyOf(TokenTensor x) {
        TokenTensor c = TokenTensor.allocate(x.dtype(), x.tokens(), x.heads(), x.dim());
        c.putBytes(x.bytes());
        return c;
    }

    private static int medianIndex(long[] times) {
        Integer[] order = new Integer[times.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        java.util.Arrays.sort(order, java.util.Comparator.comparingLong(i -> times[i]));
        return order[times.length / 2];
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
        int[] heads = h == 1 ? new int[] {0} : new int[] {0, h - 1};
        // each head's q, k, v heads and its output, copied from the device alone (a whole tensor may exceed an array)
        TokenTensor[][] qkvo = new TokenTensor[heads.length][];
        for (int i = 0; i < heads.length; i++) {
            int head = heads[i];
            qkvo[i] = new TokenTensor[] {
                hooks.readResidentHead(spec, DType.BF16, t, 0, spec.qHead(head)),
                hooks.readResidentHead(spec, DType.BF16, t, 1, spec.kHead(head)),
                hooks.readResidentHead(spec, DType.BF16, t, 2, spec.vHead(head)),
                hooks.readResidentHead(spec, DType.BF16, t, 3, head)};
        }
        double[] err = new double[heads.length];
        ForkJoinPool.commonPool().submit(() -> IntStream.range(0, heads.length).parallel().forEach(i -> {
            int head = heads[i];
            AttentionSpec one = new AttentionSpec(1, dk, dv, new double[] {spec.slope(head)}, spec.scale(), 64)
                    .withFeatureMap(spec.featureMap());
            if (spec.normalized()) {
                one = one.withNormalization(spec.eps());
            }
            TokenTensor q = qkvo[i][0];
            TokenTensor k = qkvo[i][1];
            TokenTensor v = qkvo[i][2];
            TokenTensor o = qkvo[i][3];
            TokenTensor ref = TokenTensor.allocate(DType.F32, t, 1, dv);
            new ChunkedReference().forward(one, q, k, v, LightningState.zeros(one), ref);
            err[i] = Accuracy.relativeError(o.toFloats(), ref.toFloats());
        })).join();
        double worst = 0;
        for (double e : err) {
            worst = Math.max(worst, e);
        }
        System.out.printf(Locale.ROOT, "RESULT check T=%d %s bf16 output relative error %.3e (heads %s, float64 "
                + "reference) %s kernels=%s%n", t, spec, worst, java.util.Arrays.toString(heads),
                worst <= 4e-3 ? "ok" : "FAILED", hooks.lastKernels());
        hooks.releaseBuffers();
    }

}
