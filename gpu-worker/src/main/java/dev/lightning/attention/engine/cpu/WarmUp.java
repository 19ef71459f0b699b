package dev.lightning.attention.engine.cpu;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.FutureTask;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Runs both passes on a few synthetic chunks before a JVM's first long call of a kind, so that
 * the JIT compiles the kernels with a profile of both.
 *
 * <p>Why: until C2 compiles a kernel together with the Vector API calls it makes, those calls run
 * in the API's Java fallbacks, some 10 to 100 times slower. Pass 1 and pass 2 share the kernels
 * and {@code CpuBackend}'s loops but take different branches in them (pass 1 has no q, reads K
 * untransposed, writes no o). A JVM that runs pass 1 first compiles them with pass 2's branches
 * cut out; pass 2's first chunk then throws that code away and every task thread runs the
 * fallbacks again until C2 has compiled the methods a second time. The CPU job on the 2-core VM
 * (T = 524,288, H = 8, D = 64, F32, two pieces): pass 2's two tasks spent about a second each in
 * the fallbacks after the recompilation began (JFR and -XX:+PrintCompilation, session 9). With the
 * warm-up the recompilation happens here, on one thread and a one-head problem (BENCHMARKS.md,
 * "Warming both passes").
 *
 * <p>The warm-up is one head with the call's head widths, chunk size, feature map,
 * normalization and the types of k and v (what selects the code paths, and what both passes
 * know: pass 1 has no q or o, so its kind cannot name their types, and a kind that did made a job
 * with {@code --output-dtype} other than the input's warm up twice; q takes k's type, o v's, and
 * a call with other types compiles only their small read or write path itself), {@link #ROUNDS} calls of each
 * pass over {@link #CHUNKS} chunks of seeded random values, on backends of its own (no state or
 * scratch of the caller's is touched, so the caller's results are the same bytes with or without
 * it). Once per JVM for each such kind; a second caller of the same kind waits for the first
 * warm-up instead of running the fallbacks beside it. Under {@code bin/lightning --backend cpu}'s
 * JIT thresholds (the job's classes at a tenth) C2 has compiled both passes well within these
 * rounds; at the JVM's usual thresholds they only take it part of the way.
 */
final class WarmUp {
    /**
     * Calls of less work than this (T H Dk Dv, the state update's multiply-adds) do not warm up: a
     * short call would not pay the warm-up back. 2^27: the job's windows at the default
     * --window-bytes (32 MiB with read-ahead) reach it from D = 64 in float32 and bfloat16; the
     * tests' calls (T = 1000, H = 8, D = 128 and smaller) stay under it.
     */
    static final long FROM_WORK = 1L << 27;
    /**
     * The most a warm-up runs, in nanoseconds: where C2 takes longer than this (the JVM's usual
     * thresholds, ten times {@code bin/lightning}'s for these classes), the rounds left would run in
     * the fallbacks for nothing.
     */
    static final long MAX_NANOS = 1_500_000_000L;
    /** Chunks a warm-up call covers. */
    static final int CHUNKS = 4;
    /** Calls of each pass a warm-up makes. */
    static final int ROUNDS = 400;

    private static final ConcurrentHashMap<List<Object>, FutureTask<Void>> DONE = new ConcurrentHashMap<>();
    private static final AtomicInteger RUNS = new AtomicInteger();

    private WarmUp() {
    }

    /**
     * Warms up for a call of {@code spec} on k and v of these types (either pass) if none of its
     * kind has run in this JVM yet; returns once that warm-up has finished.
     */
    static void before(Kernel kernel, AttentionSpec spec, DType kType, DType vType) {
        List<Object> kind = List.of(kernel.name(), spec.dk(), spec.dv(), spec.chunkSize(), spec.featureMap(),
                spec.normalized(), kType, vType);
        FutureTask<Void> first = DONE.get(kind); // every later call of the kind: one lookup
        if (first == null) {
            FutureTask<Void> task = new FutureTask<>(() -> run(kernel, spec, kType, vType), null);
            first = DONE.putIfAbsent(kind, task);
            if (first == null) {
                RUNS.incrementAndGet();
                task.run();
                first = task;
            }
        }
        try {
            first.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (ExecutionException e) {
            // only a speed-up: the call goes on without it, and runs the same code on its own data,
            // where a fault of that code shows with the call's own context (nor is a failed warm-up
            // retried: the kind stays marked, so one failure costs one warm-up)
        }
    }

    /** Whether a call of this much work warms up first (at least {@link #FROM_WORK}). */
    static boolean worth(AttentionSpec spec, int tokens) {
        return (long) tokens * spec.heads() * spec.dk() * spec.dv() >= FROM_WORK;
    }

    /** Warm-ups this JVM has started (tests). */
    static int runs() {
        return RUNS.get();
    }

    private static void run(Kernel kernel, AttentionSpec spec, DType kType, DType vType) {
        AttentionSpec one = new AttentionSpec(1, spec.dk(), spec.dv(), new double[] {spec.slope(0)}, spec.scale(),
                spec.chunkSize()).withFeatureMap(spec.featureMap());
        if (spec.normalized()) {
            one = one.withNormalization(spec.eps());
        }
        int tokens = CHUNKS * spec.chunkSize();
        java.util.Random random = new java.util.Random(20261204L);
        TokenTensor q = filled(kType, tokens, spec.dk(), random);
        TokenTensor k = filled(kType, tokens, spec.dk(), random);
        TokenTensor v = filled(vType, tokens, spec.dv(), random);
        TokenTensor o = TokenTensor.wrap(vType, tokens, 1, spec.dv(),
                ByteBuffer.allocateDirect(tokens * spec.dv() * vType.bytes()));
        // a backend a pass, so that each keeps its scratch from one round to the next
        CpuBackend pass1 = new CpuBackend(kernel, false);
        CpuBackend pass2 = new CpuBackend(kernel, false);
        LightningState zero = LightningState.zeros(one);
        long start = System.nanoTime();
        for (int r = 0; r < ROUNDS && System.nanoTime() - start < MAX_NANOS; r++) {
            LightningState s = pass1.advance(one, k, v, zero);
            pass2.forward(one, q, k, v, s, o, Checkpoints.none());
        }
    }

    /** One head of {@code tokens} values drawn from N(0, 0.01), off the heap as the job's windows are. */
    private static TokenTensor filled(DType type, int tokens, int dim, java.util.Random random) {
        int n = tokens * dim;
        ByteBuffer bytes = ByteBuffer.allocateDirect(n * type.bytes()).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < n; i++) {
            type.put(bytes, i * type.bytes(), (float) (0.1 * random.nextGaussian()));
        }
        return TokenTensor.wrap(type, tokens, 1, dim, bytes);
    }
}
