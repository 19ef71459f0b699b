package dev.lightning.attention.bench;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.BatchStep;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.StateStore;
import dev.lightning.attention.engine.TokenBatch;
import dev.lightning.attention.engine.reference.Accuracy;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * The CPU benchmark of many short sequences (1M sequences x 1 token, 100K x 64 tokens, H = 8,
 * Dk = Dv = 128, BF16 q/k/v, MiniMax slopes, plain formula) through the plain Java API, with no
 * Spark: the sequences stream through {@link BatchStep#cpu} in batches, each sequence's state read
 * from and written back to one host {@link StateStore}.
 *
 * <p>1M states are 512 GB; the store holds {@code --store} of them (4.3 GB at 8,192), and sequence
 * i keeps its state in slot {@code i mod store}, so every sequence's state is really read and written
 * (512 KiB each way) while the memory holds a few thousand. The floor of the step is that state
 * traffic: the run measures this machine's copy rate (a {@code System.arraycopy} of 1 GB, best of 5,
 * on as many threads as the step uses) and reports the step's time against the time that copy rate
 * needs for the same bytes. q, k, v come from one pool of random tokens reused by every batch (their
 * values do not change the speed); o is BF16.
 *
 * <p>Checked in the same run: a sample of sequences (first, middle and last of a few batches) is
 * stepped again by the float64 reference ({@link BatchStep#reference}) from the state it had before
 * its batch, and o and the new state are compared (relative L2 error: o within 6e-3, BF16 rounding;
 * state within 1e-5). The check runs outside the timed steps; a failure exits with status 1.
 * <pre>
 *   java -Xmx8g --add-modules jdk.incubator.vector -cp gpu-worker/target/classes dev.lightning.attention.bench.BatchStreamBench
 *        --sequences 1000000 --tokens 1 [--store 8192] [--batch 4096] [--threads 1] [--samples 4]
 * </pre>
 * bench/decode-cpu.sh runs both of the cases.
 */
public final class BatchStreamBench {
    private static final int HEADS = 8;
    private static final int D = 128;
    static final double O_LIMIT = 6e-3;
    static final double STATE_LIMIT = 1e-5;

    private BatchStreamBench() {
    }

    public static void main(String[] args) {
        int sequences = 1_000_000;
        int tokens = 1;
        int storeSlots = 8192;
        int batchSize = 4096;
        int threads = 1;
        int samples = 4;
        for (int i = 0; i < args.length; i += 2) {
            if (i + 1 >= args.length) {
                throw new IllegalArgumentException("option " + args[i] + " needs a value");
            }
            int value = Integer.parseInt(args[i + 1]);
            switch (args[i]) {
                case "--sequences" -> sequences = value;
                case "--tokens" -> tokens = value;
                case "--store" -> storeSlots = value;
                case "--batch" -> batchSize = value;
                case "--threads" -> threads = value;
                case "--samples" -> samples = value;
                default -> throw new IllegalArgumentException("unknown option " + args[i]
                        + ": expected --sequences, --tokens, --store, --batch, --threads, --samples");
            }
        }
        if (batchSize > storeSlots) {
            throw new IllegalArgumentException("--batch " + batchSize + " is larger than --store " + storeSlots
                    + ": the slots of one batch must be distinct; give a larger store or a smaller batch");
        }
        AttentionSpec spec = new AttentionSpec(HEADS, D, D, Slopes.minimax(HEADS), 1.0, 64);
        long stateBytes = spec.stateBytes();
        System.out.printf(Locale.ROOT, "machine: %d processors visible, max heap %.1f GB, %s%n",
                Runtime.getRuntime().availableProcessors(), Runtime.getRuntime().maxMemory() / 1e9,
                dev.lightning.attention.engine.cpu.BatchHead.implementation());
        double[] copy = copyRate(threads);
        double copyRate = copy[0];
        System.out.printf(Locale.ROOT, "memory: System.arraycopy of 1.07 GB on %d thread(s), best of 5: %.2f GB/s "
                + "(read + write)%s%n", threads, copyRate, threads == 1
                ? String.format(Locale.ROOT, "; by the copying thread's CPU time %.2f GB/s per core held", copy[1]) : "");

        SplittableRandom rnd = new SplittableRandom(7);
        int poolTokens = batchSize * tokens;
        TokenTensor q = BatchStepBench.random(rnd, poolTokens, HEADS, D);
        TokenTensor k = BatchStepBench.random(rnd, poolTokens, HEADS, D);
        TokenTensor v = BatchStepBench.random(rnd, poolTokens, HEADS, D);
        TokenTensor oAll = TokenTensor.allocate(DType.BF16, poolTokens, HEADS, D);
        int batches = (sequences + batchSize - 1) / batchSize;
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        double worstO = 0;
        double worstS = 0;
        int checked = 0;
        try (BatchStep step = BatchStep.cpu(spec, threads); StateStore store = step.allocate(storeSlots);
             BatchStep reference = BatchStep.reference(spec); StateStore refStore = reference.allocate(1)) {
            long f0 = System.nanoTime();
            BatchStepBench.fillStates(store, spec, rnd);
            System.out.printf(Locale.ROOT, "store: %d states of %d bytes (%.2f GB) filled at random in %.1f s; "
                            + "%d batches of up to %d sequences x %d tokens%n", storeSlots, stateBytes,
                    storeSlots * (double) stateBytes / 1e9, (System.nanoTime() - f0) / 1e9, batches, batchSize, tokens);
            double stepSeconds = 0;
            double stepCpu = 0;
            double checkSeconds = 0;
            long wall0 = System.nanoTime();
            for (int b = 0; b < batches; b++) {
                int first = b * batchSize;
                int count = Math.min(batchSize, sequences - first);
                int[] offsets = new int[count + 1];
                int[] slots = new int[count];
                for (int i = 0; i < count; i++) {
                    offsets[i + 1] = offsets[i] + tokens;
                    slots[i] = (int) ((long) (first + i) % storeSlots);
                }
                int t = count * tokens;
                TokenTensor qb = t == poolTokens ? q : q.slice(0, t);
                TokenTensor kb = t == poolTokens ? k : k.slice(0, t);
                TokenTensor vb = t == poolTokens ? v : v.slice(0, t);
                TokenTensor ob = t == poolTokens ? oAll : oAll.slice(0, t);
                TokenBatch batch = TokenBatch.of(spec, qb, kb, vb, offsets, slots);
                boolean sampled = samples > 0 && (b == 0 || b == batches - 1 || b % Math.max(1, batches / samples) == 0);
                int[] picks = {0, count / 2, count - 1};
                LightningState[] before = new LightningState[picks.length];
                if (sampled) {
                    long c0 = System.nanoTime();
                    for (int p = 0; p < picks.length; p++) {
                        before[p] = store.read(slots[picks[p]]);
                    }
                    checkSeconds += (System.nanoTime() - c0) / 1e9;
                }
                long cpu0 = mx.getCurrentThreadCpuTime();
                long t0 = System.nanoTime();
                step.step(store, batch, ob);
                stepSeconds += (System.nanoTime() - t0) / 1e9;
                stepCpu += (mx.getCurrentThreadCpuTime() - cpu0) / 1e9;
                if (sampled) {
                    long c0 = System.nanoTime();
                    for (int p = 0; p < picks.length; p++) {
                        int seq = picks[p];
                        refStore.write(0, before[p]);
                        TokenBatch one = TokenBatch.of(spec, qb.slice(batch.start(seq), tokens),
                                kb.slice(batch.start(seq), tokens), vb.slice(batch.start(seq), tokens),
                                new int[] {0, tokens}, new int[] {0});
                        TokenTensor want = TokenTensor.allocate(DType.F32, tokens, HEADS, D);
                        reference.step(refStore, one, want);
                        double eo = Accuracy.relativeError(ob.slice(batch.start(seq), tokens).toFloats(), want.toFloats());
                        double es = Accuracy.relativeError(store.read(slots[seq]).kv(), refStore.read(0).kv());
                        worstO = Math.max(worstO, eo);
                        worstS = Math.max(worstS, es);
                        checked++;
                    }
                    checkSeconds += (System.nanoTime() - c0) / 1e9;
                }
            }
            double wall = (System.nanoTime() - wall0) / 1e9;
            long total = (long) sequences * tokens;
            double traffic = 2.0 * stateBytes * sequences;
            double floor = traffic / (copyRate * 1e9);
            System.out.printf(Locale.ROOT, "result: %d sequences x %d tokens (H=%d, D=%d, BF16), %d thread(s): steps "
                            + "%.2f s (%.0f tokens/s), wall %.2f s with the checks' %.2f s; state traffic %.1f GB = "
                            + "%.2f GB/s; floor at the copy rate %.2f s: the step takes %.2fx the floor (%.0f%% of "
                            + "the copy rate); %.2f GFLOP/s (2 FMAs per state element per token)%n",
                    sequences, tokens, HEADS, D, threads, stepSeconds, total / stepSeconds, wall, checkSeconds,
                    traffic / 1e9, traffic / stepSeconds / 1e9, floor, stepSeconds / floor,
                    100 * floor / stepSeconds, 4.0 * total * HEADS * D * D / stepSeconds / 1e9);
            if (threads == 1) {
                // on a shared machine the wall time counts the time other processes held the core
                double floorCpu = traffic / (copy[1] * 1e9);
                System.out.printf(Locale.ROOT, "  by CPU time (the core actually held): steps %.2f s = %.0f tokens/s, "
                                + "%.2f GB/s of state traffic; floor at the copy's %.2f GB/s a core %.2f s: %.2fx the "
                                + "floor (%.0f%% of the copy rate)%n", stepCpu, total / stepCpu, traffic / stepCpu / 1e9,
                        copy[1], floorCpu, stepCpu / floorCpu, 100 * floorCpu / stepCpu);
            }
            boolean ok = checked > 0 && worstO < O_LIMIT && worstS < STATE_LIMIT;
            System.out.printf(Locale.ROOT, "check: %d sampled sequences against the float64 reference: o %.2e (limit "
                    + "%.0e), state %.2e (limit %.0e): %s%n", checked, worstO, O_LIMIT, worstS, STATE_LIMIT,
                    ok ? "PASS" : "FAIL");
            if (!ok) {
                System.exit(1);
            }
        }
    }

    /**
     * This machine's copy rate in GB/s (bytes read plus bytes written): {@code System.arraycopy} of
     * 2^28 floats (1.07 GB) between two arrays, split over {@code threads} threads, best of 5: by
     * the wall clock, and (one thread) by the copying thread's CPU time.
     */
    static double[] copyRate(int threads) {
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        double bestCpu = Double.MAX_VALUE;
        int n = 1 << 28;
        float[] a = new float[n];
        float[] b = new float[n];
        java.util.Arrays.fill(a, 1.5f);
        java.util.Arrays.fill(b, 0.5f);   // both touched before timing
        double best = Double.MAX_VALUE;
        for (int r = 0; r < 5; r++) {
            long t0 = System.nanoTime();
            if (threads == 1) {
                long c0 = mx.getCurrentThreadCpuTime();
                System.arraycopy(a, 0, b, 0, n);
                bestCpu = Math.min(bestCpu, (mx.getCurrentThreadCpuTime() - c0) / 1e9);
            } else {
                Thread[] ts = new Thread[threads];
                int per = n / threads;
                for (int i = 0; i < threads; i++) {
                    int from = i * per;
                    int len = i == threads - 1 ? n - from : per;
                    ts[i] = new Thread(() -> System.arraycopy(a, from, b, from, len));
                    ts[i].start();
                }
                for (Thread t : ts) {
                    try {
                        t.join();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        throw new IllegalStateException(e);
                    }
                }
            }
            best = Math.min(best, (System.nanoTime() - t0) / 1e9);
        }
        if (b[n - 1] != 1.5f) {
            throw new IllegalStateException("the copy did not copy");
        }
        return new double[] {2.0 * n * 4 / best / 1e9, 2.0 * n * 4 / bestCpu / 1e9};
    }
}
