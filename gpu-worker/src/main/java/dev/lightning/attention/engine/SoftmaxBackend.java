package dev.lightning.attention.engine;

import dev.lightning.attention.tensor.TokenTensor;

/**
 * One way of computing causal softmax attention of a block of queries over a block of keys. The
 * float64 reference and the fast backends share this signature, so tests hold each backend
 * against the reference on the same call; a whole sequence is one call, a split one is many calls
 * whose partials are combined with {@link SoftmaxPartial#merge}, in a fixed order.
 *
 * <p>Not thread-safe; {@link #close()} releases what it holds.
 */
public interface SoftmaxBackend extends AutoCloseable {

    /** Short name: "softmax-f64", "softmax-cpu", "softmax-gpu". */
    String name();

    /** Where it computes, for people: "cpu" or a device such as "cuda:0" (see {@link #gpuOrdinal()}). */
    String device();

    /** The CUDA device it computes on, or -1 for a backend that computes on the CPU. */
    default int gpuOrdinal() {
        return -1;
    }

    /**
     * The partial result of queries {@code q} (absolute positions {@code qStart ..}) over keys
     * {@code k}, {@code v} (absolute positions {@code kStart ..}): for each query t and query head
     * h, over the keys of this block visible from t ({@link SoftmaxSpec#visible}),
     * {@code out.lse = log sum_j exp(s_tj)} and {@code out.o = sum_j exp(s_tj - lse) v_j}, in
     * float32; a query that sees no key of the block gets lse = -inf and o = 0. Overwrites
     * {@code out} entirely.
     */
    void forward(SoftmaxSpec spec, TokenTensor q, long qStart, TokenTensor k, TokenTensor v, long kStart,
                 SoftmaxPartial out);

    @Override
    default void close() {
    }
}
