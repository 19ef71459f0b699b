package dev.lightning.attention.engine;

import dev.lightning.attention.engine.cuda.CudaBatchStep;
import dev.lightning.attention.tensor.TokenTensor;

/**
 * One step of many short sequences at once: the batch form of decoding, for serving JVMs. Each
 * sequence of a {@link TokenBatch} brings a few new tokens (often one) and has its state in a slot
 * of a {@link StateStore}; a step writes o for every token and leaves each sequence's state after
 * its new tokens in its slot, exactly as {@link AttentionBackend#forward} over those tokens from
 * that state would (same spec, same formula: grouped heads, feature map, normalization):
 * <pre>
 *   S_t = lambda S_{t-1} + phi(k_t)^T v_t        z_t = lambda z_{t-1} + phi(k_t)
 *   o_t = scale phi(q_t) S_t   or   scale (phi(q_t) S_t) / (phi(q_t) . z_t + eps)
 * </pre>
 * Two steps over tokens a then b equal one step over a and b concatenated, to rounding.
 *
 * <pre>{@code
 * AttentionSpec spec = new AttentionSpec(8, 128, 128, Slopes.minimax(8), 1.0, 64);
 * try (BatchStep step = BatchStep.gpu(spec, 0);           // or BatchStep.cpu(spec)
 *      StateStore states = step.allocate(100_000)) {       // zero states, resident on the device
 *     // one new token for each of three conversations, in slots 7, 42 and 3
 *     TokenBatch batch = TokenBatch.of(spec, q, k, v, new int[] {0, 1, 2, 3}, new int[] {7, 42, 3});
 *     TokenTensor o = TokenTensor.allocate(DType.BF16, batch.tokens(), spec.heads(), spec.dv());
 *     step.step(states, batch, o);                         // o written, slots 7, 42, 3 advanced
 * }
 * }</pre>
 *
 * <p>Not thread-safe; {@link #close()} releases what the step holds (not the stores it made, which
 * their owner closes first).
 */
public interface BatchStep extends AutoCloseable {

    /** "cpu", "recurrent-f64" or "gpu". */
    String name();

    /** "cpu" or the device, e.g. "cuda:0". */
    String device();

    AttentionSpec spec();

    /** A new store of {@code slots} zero states where this step computes, owned (and closed) by the caller. */
    StateStore allocate(int slots);

    /**
     * Advances every sequence of {@code batch} by its tokens: writes o {@code [T, H, Dv]} (any
     * dtype) and updates the sequences' slots of {@code states} in place. {@code states} must
     * come from this step's {@link #allocate}. The batch's spec must be this step's.
     */
    void step(StateStore states, TokenBatch batch, TokenTensor o);

    @Override
    default void close() {
    }

    /** The float32 CPU step, on the calling thread. */
    static BatchStep cpu(AttentionSpec spec) {
        return new CpuBatchStep(specGiven(spec), 1);
    }

    /**
     * The float32 CPU step, its sequences spread over {@code threads} threads (1: the calling thread
     * alone). A step returns only once all of them are done, also when the caller is interrupted
     * (the step completes and the interrupt is kept) or one of them fails.
     */
    static BatchStep cpu(AttentionSpec spec, int threads) {
        return new CpuBatchStep(specGiven(spec), threads);
    }

    /** The float64 definition: {@link dev.lightning.attention.engine.reference.RecurrentReference} per sequence. */
    static BatchStep reference(AttentionSpec spec) {
        return new ReferenceBatchStep(specGiven(spec));
    }

    /**
     * The GPU step on CUDA device {@code ordinal}: one kernel launch per step, states in device memory,
     * as much of it as the step's stores and batches ask for.
     */
    static BatchStep gpu(AttentionSpec spec, int ordinal) {
        return CudaBatchStep.open(specGiven(spec), ordinal, Long.MAX_VALUE);
    }

    /**
     * The GPU step on CUDA device {@code ordinal}, its stores and staging together holding at most
     * {@code memoryLimit} bytes of device memory: a store or a batch that would pass it fails with
     * {@link DeviceMemoryException} (saying what it asked for) before anything is allocated for it.
     */
    static BatchStep gpu(AttentionSpec spec, int ordinal, long memoryLimit) {
        return CudaBatchStep.open(specGiven(spec), ordinal, memoryLimit);
    }

    /** {@code spec}, refused when null before a step is made (the first allocate failed on it, after a pool started). */
    private static AttentionSpec specGiven(AttentionSpec spec) {
        return java.util.Objects.requireNonNull(spec, "spec: a step needs the AttentionSpec of its sequences");
    }

    /** Checks a step's arguments against the step's spec and store; for implementations. */
    static void check(BatchStep step, StateStore states, TokenBatch batch, TokenTensor o) {
        if (!batch.spec().equals(step.spec())) {
            throw new IllegalArgumentException("batch of " + batch.spec() + " given to a step of " + step.spec());
        }
        if (!states.spec().equals(step.spec())) {
            throw new IllegalArgumentException("state store of " + states.spec() + " given to a step of " + step.spec());
        }
        batch.checkSlots(states.slots());
        batch.checkOutput(o);
    }
}
