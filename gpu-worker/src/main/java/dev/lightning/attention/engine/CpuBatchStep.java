package dev.lightning.attention.engine;

import dev.lightning.attention.engine.cpu.BatchHead;
import dev.lightning.attention.engine.cpu.CpuBackend;
import dev.lightning.attention.tensor.TokenTensor;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * The float32 CPU batch step: the recurrence, token by token, over each sequence's state in place.
 * For one head of one sequence with new tokens t = 0..n-1:
 * <pre>
 *   z_t   = lambda z_{t-1} + phi(k_t),   den_t = phi(q_t) . z_t + eps           (normalizing; else den_t = 1)
 *   for each row i of S:  for t:  S[i,:] = lambda S[i,:] + phi(k_t)_i v_t,   acc_t += phi(q_t)_i S[i,:]
 *   o_t = scale acc_t / den_t
 * </pre>
 * Rows outer, tokens inner ({@link BatchHead}, on jdk.incubator.vector where the JVM has it): a
 * vector of S is read from memory once and written once per step whatever n is, and stays in a
 * register across the tokens; the accumulators (n x Dv) stay in L1/L2. With one token per sequence
 * the step is a single streaming pass over the states (4 flops per element over 8 bytes moved):
 * memory-bound once the states outgrow the caches. A sequence of {@link #CHUNKED_FROM} or more new
 * tokens goes through {@link CpuBackend#forwardInto} instead (the chunked block form as dense products:
 * the same function, faster there). Sequences are independent (distinct slots), so with
 * {@code threads} > 1 they are spread over a fixed pool in contiguous ranges.
 */
final class CpuBatchStep implements BatchStep {
    /**
     * System property: sequences of at least this many new tokens go through {@link CpuBackend}'s
     * chunked block form (dense products at 50 to 65 GFLOP/s a core) instead of the recurrence
     * (17 to 19 GFLOP/s at 64 tokens); for measurements. Default {@link #CHUNKED_FROM}.
     */
    static final String CHUNKED_PROPERTY = "lightning.batch.chunked-from";
    /**
     * Measured on the 2-core VM (BENCHMARKS.md "Many short sequences", tokens/s per core held, H = 8,
     * D = 128): the recurrence / the chunked form at 8 tokens 19.8K / 15.4K, 16: 42.9K / 27.8K,
     * 32: 44.1K / 41.6K, 64: 32.3K / 50.5K; so the chunked form from 48 tokens.
     */
    static final int CHUNKED_FROM = 48;

    private final AttentionSpec spec;
    private final int chunkedFrom;
    private final int threads;
    private final ExecutorService pool;
    /**
     * The block form for sequences of {@link #chunkedFrom} or more tokens, one per part of a step (part i of every
     * step uses backend i, so no two threads share one), made on first use and closed with the step. Each keeps its
     * scratch for the next sequence of the same shape; a new backend per step made that scratch (about 2 MiB at
     * H = 8, D = 128, and the decay tables) again for every step.
     */
    private final CpuBackend[] chunked;
    private boolean closed;

    CpuBatchStep(AttentionSpec spec, int threads) {
        this(spec, threads, Integer.getInteger(CHUNKED_PROPERTY, CHUNKED_FROM));
    }

    /** With sequences of {@code chunkedFrom} or more tokens through CpuBackend (tests force either path). */
    CpuBatchStep(AttentionSpec spec, int threads, int chunkedFrom) {
        this.chunkedFrom = Math.max(1, chunkedFrom);
        if (threads < 1) {
            throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        }
        this.spec = spec;
        this.threads = threads;
        this.pool = threads > 1 ? Executors.newFixedThreadPool(threads, r -> {
            Thread t = new Thread(r, "lightning-batch-step");
            t.setDaemon(true);
            return t;
        }) : null;
        this.chunked = new CpuBackend[threads];
    }

    @Override
    public String name() {
        return "cpu";
    }

    @Override
    public String device() {
        return "cpu";
    }

    @Override
    public AttentionSpec spec() {
        return spec;
    }

    @Override
    public StateStore allocate(int slots) {
        checkOpen();
        return new HostStateStore(spec, slots, name());
    }

    @Override
    public void step(StateStore states, TokenBatch batch, TokenTensor o) {
        checkOpen();
        BatchStep.check(this, states, batch, o);
        HostStateStore store = HostStateStore.of(states, name());
        int n = batch.count();
        if (pool == null || n < 2) {
            new Worker(batch.maxTokens(), 0).run(store, batch, o, 0, n);
            return;
        }
        List<Future<?>> parts = new ArrayList<>();
        int per = (n + threads - 1) / threads;
        for (int from = 0; from < n; from += per) {
            int a = from;
            int b = Math.min(n, from + per);
            int part = parts.size(); // below threads: ceil(n / per) parts
            parts.add(pool.submit(() -> new Worker(batch.maxTokens(), part).run(store, batch, o, a, b)));
        }
        awaitAll(parts);
    }

    /**
     * Waits for every part, also when the caller is interrupted or a part fails: a step must not
     * touch the store or o once it has returned. (It threw at the first interrupt or failure while
     * the other parts went on advancing their slots, so a caller's retry or next step raced them on
     * the same slots, and o changed after the call.) An interrupt is kept for the caller and the
     * step completes, every slot advanced once: throwing after the work was done would tell the
     * caller it was not, and a retried step would advance the slots twice. A part's failure is
     * thrown once all have ended, the others' added to it.
     */
    private static void awaitAll(List<Future<?>> parts) {
        boolean interrupted = false;
        Throwable failure = null;
        try {
            for (Future<?> f : parts) {
                while (true) {
                    try {
                        f.get();
                        break;
                    } catch (InterruptedException e) {
                        interrupted = true;
                    } catch (ExecutionException e) {
                        if (failure == null) {
                            failure = e.getCause();
                        } else {
                            failure.addSuppressed(e.getCause());
                        }
                        break;
                    }
                }
            }
        } finally {
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
        if (failure instanceof RuntimeException r) {
            throw r;
        }
        if (failure instanceof Error err) {
            throw err;
        }
        if (failure != null) {
            throw new IllegalStateException("a part of the batch step failed: " + failure, failure);
        }
    }

    /**
     * One thread's scratch: q, k [n, Dk], v, acc [n, Dv] and den [n] of one head of one sequence
     * that goes through the recurrence, so n < {@link #chunkedFrom}: a longer one goes through
     * CpuBackend, whose buffers are its own and bounded (sized for the batch's longest sequence,
     * a step with one of 65,536 tokens at D = 16 allocated 17 MB per thread that nothing used).
     */
    private final class Worker {
        final float[] q;
        final float[] k;
        final float[] v;
        final float[] acc;
        final float[] den;
        /** This worker's part of the step: the index of its {@link CpuBatchStep#chunked} backend. */
        private final int part;

        Worker(int maxTokens, int part) {
            this.part = part;
            int m = Math.max(1, Math.min(maxTokens, chunkedFrom - 1));
            q = new float[m * spec.dk()];
            k = new float[m * spec.dk()];
            v = new float[m * spec.dv()];
            acc = new float[m * spec.dv()];
            den = new float[m];
        }

        void run(HostStateStore store, TokenBatch batch, TokenTensor o, int fromSeq, int toSeq) {
            for (int i = fromSeq; i < toSeq; i++) {
                int n = batch.length(i);
                if (n == 0) {
                    continue;
                }
                float[] s = store.kv(batch.slot(i));
                float[] z = store.z(batch.slot(i));
                if (n >= chunkedFrom) {
                    chunked(batch, o, batch.start(i), n, s, z);
                    continue;
                }
                for (int h = 0; h < spec.heads(); h++) {
                    head(batch, o, batch.start(i), n, h, s, z);
                }
            }
        }

        /** One sequence through CpuBackend's block form from its slot's state, the state after it written back there. */
        private void chunked(TokenBatch batch, TokenTensor o, int from, int n, float[] s, float[] z) {
            if (chunked[part] == null) {
                chunked[part] = new CpuBackend();
            }
            // the slot's own arrays, in and out: CpuBackend reads the state it starts from into its own buffers before
            // it computes and writes the state after only when done; a copy in and a new state out were 512 KiB each
            // a sequence at H = 8, D = 128
            LightningState before = LightningState.own(spec.heads(), spec.dk(), spec.dv(), s, z);
            chunked[part].forwardInto(spec, batch.q().slice(from, n), batch.k().slice(from, n),
                    batch.v().slice(from, n), before, o.slice(from, n), s, z);
        }

        private void head(TokenBatch batch, TokenTensor o, int from, int n, int h, float[] s, float[] z) {
            int dk = spec.dk();
            int dv = spec.dv();
            FeatureMap phi = spec.featureMap();
            batch.q().readHead(spec.qHead(h), from, n, q);
            batch.k().readHead(spec.kHead(h), from, n, k);
            batch.v().readHead(spec.vHead(h), from, n, v);
            BatchHead.map(phi, q, n * dk);
            BatchHead.map(phi, k, n * dk);
            float code = Decay.code(spec, h, 1); // lambda rounded is off a slow head's rate by up to 3e-8 / slope
            if (spec.normalized()) {
                int zo = h * dk;
                java.util.Arrays.fill(den, 0, n, 0f);
                for (int i = 0; i < dk; i++) {
                    float zi = z[zo + i];
                    for (int t = 0; t < n; t++) {
                        zi = Decay.carry(zi, k[t * dk + i], code);
                        den[t] += q[t * dk + i] * zi;
                    }
                    z[zo + i] = zi;
                }
                for (int t = 0; t < n; t++) {
                    den[t] += (float) spec.eps();
                }
            }
            java.util.Arrays.fill(acc, 0, n * dv, 0f);
            BatchHead.update(code, s, h * dk * dv, dk, dv, q, k, v, acc, n);
            float scale = (float) spec.scale();
            for (int t = 0; t < n; t++) {
                if (spec.normalized()) {
                    for (int j = 0; j < dv; j++) {
                        acc[t * dv + j] = scale * acc[t * dv + j] / den[t];
                    }
                } else {
                    for (int j = 0; j < dv; j++) {
                        acc[t * dv + j] *= scale;
                    }
                }
            }
            o.writeHead(h, from, n, acc);
        }
    }

    /** A closed step refuses work, with one or more threads alike (its pool is gone), as the GPU step does. */
    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("CPU batch step is closed");
        }
    }

    /** Stops the pool, then closes the backends its parts used (none runs once a step has returned). */
    @Override
    public void close() {
        closed = true;
        if (pool != null) {
            pool.shutdownNow();
        }
        for (int i = 0; i < chunked.length; i++) {
            if (chunked[i] != null) {
                chunked[i].close();
                chunked[i] = null;
            }
        }
    }
}
