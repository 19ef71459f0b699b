package dev.lightning.attention.bench;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.BatchStep;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.StateStore;
import dev.lightning.attention.engine.TokenBatch;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Times the CPU batch step (many short sequences, states resident in a host store) with no Spark:
 * N sequences of T new tokens each, H heads of width D, BF16 inputs, every slot used once a step in
 * a random order; best and median of several steps (each step advances the states, as serving
 * does). Prints tokens/s and the state traffic (each state read and written once a step).
 * <pre>
 *   java --add-modules jdk.incubator.vector -cp gpu-worker/target/classes dev.lightning.attention.bench.BatchStepBench
 *        [--sequences 4096] [--tokens 1] [--heads 8] [--d 128] [--threads 1] [--steps 5]
 *        [--feature-map identity|elu1|relu] [--normalize]
 * </pre>
 * The GPU step is timed at kernel level by bench/decode_batch.py (no Java on the device machine).
 */
public final class BatchStepBench {
    private BatchStepBench() {
    }

    public static void main(String[] args) {
        int sequences = 4096;
        int tokens = 1;
        int heads = 8;
        int d = 128;
        int threads = 1;
        int steps = 5;
        FeatureMap phi = FeatureMap.IDENTITY;
        boolean normalize = false;
        for (int i = 0; i < args.length; i += 2) {
            if (args[i].equals("--normalize")) {
                normalize = true;
                i--;
                continue;
            }
            if (args[i].equals("--feature-map")) {
                phi = FeatureMap.of(args[i + 1]);
                continue;
            }
            int value = Integer.parseInt(args[i + 1]);
            switch (args[i]) {
                case "--sequences" -> sequences = value;
                case "--tokens" -> tokens = value;
                case "--heads" -> heads = value;
                case "--d" -> d = value;
                case "--threads" -> threads = value;
                case "--steps" -> steps = value;
                default -> throw new IllegalArgumentException("unknown option " + args[i]
                        + ": expected --sequences, --tokens, --heads, --d, --threads, --steps, --feature-map, "
                        + "--normalize");
            }
        }
        AttentionSpec spec = new AttentionSpec(heads, d, d, Slopes.minimax(heads), 1.0, 64).withFeatureMap(phi);
        if (normalize) {
            spec = spec.withNormalization(1e-5);
        }
        SplittableRandom rnd = new SplittableRandom(42);
        int total = sequences * tokens;
        TokenTensor q = random(rnd, total, heads, d);
        TokenTensor k = random(rnd, total, heads, d);
        TokenTensor v = random(rnd, total, heads, d);
        TokenTensor o = TokenTensor.allocate(DType.BF16, total, heads, d);
        int[] offsets = new int[sequences + 1];
        for (int i = 0; i <= sequences; i++) {
            offsets[i] = i * tokens;
        }
        int[] slots = new int[sequences];
        for (int i = 0; i < sequences; i++) {
            slots[i] = i;
        }
        for (int i = sequences - 1; i > 0; i--) {
            int j = rnd.nextInt(i + 1);
            int t = slots[i];
            slots[i] = slots[j];
            slots[j] = t;
        }
        TokenBatch batch = TokenBatch.of(spec, q, k, v, offsets, slots);
        long stateBytes = spec.stateBytes();
        try (BatchStep step = BatchStep.cpu(spec, threads); StateStore store = step.allocate(sequences)) {
            fillStates(store, spec, rnd);
            double[] seconds = new double[steps];
            double[] cpu = new double[steps];
            java.lang.management.ThreadMXBean mx = java.lang.management.ManagementFactory.getThreadMXBean();
            step.step(store, batch, o); // warm-up: JIT, first touch
            for (int s = 0; s < steps; s++) {
                long c0 = mx.getCurrentThreadCpuTime();
                long t0 = System.nanoTime();
                step.step(store, batch, o);
                seconds[s] = (System.nanoTime() - t0) / 1e9;
                cpu[s] = (mx.getCurrentThreadCpuTime() - c0) / 1e9;
            }
            java.util.Arrays.sort(seconds);
            java.util.Arrays.sort(cpu);
            double best = seconds[0];
            double median = seconds[steps / 2];
            double traffic = 2.0 * stateBytes * sequences;
            System.out.printf(Locale.ROOT, "batch step cpu, %d thread(s): N=%d x %d tokens, H=%d, D=%d, BF16, "
                            + "phi %s%s, %d states resident (%.2f GB): best %.3f s, median %.3f s; %.0f tokens/s "
                            + "(median %.0f); state traffic %.2f GB/s; %.2f GFLOP/s (2 FMAs per state element per "
                            + "token)%n",
                    threads, sequences, tokens, heads, d, phi.key(), normalize ? " normalized" : "", sequences,
                    sequences * stateBytes / 1e9, best, median,
                    total / best, total / median, traffic / best / 1e9,
                    4.0 * total * heads * d * d / best / 1e9);
            if (threads == 1) {
                // on a shared machine the wall time counts the time other processes held the core
                System.out.printf(Locale.ROOT, "  CPU time of the stepping thread: best %.3f s, median %.3f s: %.0f tokens/s "
                        + "and %.2f GB/s of state traffic per core actually held%n", cpu[0], cpu[steps / 2],
                        total / cpu[0], traffic / cpu[0] / 1e9);
            }
        }
    }

    /** Random BF16 tokens in [-1, 1) (never zeros); BatchStreamBench uses it too. */
    static TokenTensor random(SplittableRandom rnd, int tokens, int heads, int dim) {
        float[] x = new float[tokens * heads * dim];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (rnd.nextDouble() * 2 - 1);
        }
        return TokenTensor.of(DType.BF16, tokens, heads, dim, x);
    }

    /**
     * Random states in [-1, 1) (never zeros) and, when normalizing, normalizers in [1, 2) (a sum of phi(k),
     * positive), a slot at a time through the bulk copy; BatchStreamBench uses it too.
     */
    static void fillStates(StateStore store, AttentionSpec spec, SplittableRandom rnd) {
        ByteBuffer kv = ByteBuffer.allocate(spec.stateSize() * 4).order(ByteOrder.LITTLE_ENDIAN);
        ByteBuffer z = spec.normalized()
                ? ByteBuffer.allocate(spec.normalizerSize() * 4).order(ByteOrder.LITTLE_ENDIAN) : null;
        for (int s = 0; s < store.slots(); s++) {
            kv.clear();
            for (int i = 0; i < spec.stateSize(); i++) {
                kv.putFloat((float) (rnd.nextDouble() * 2 - 1));
            }
            kv.flip();
            if (z != null) {
                z.clear();
                for (int i = 0; i < spec.normalizerSize(); i++) {
                    z.putFloat((float) (1 + rnd.nextDouble()));
                }
                z.flip();
            }
            store.copyIn(s, 1, kv, z);
        }
    }
}
