package dev.lightning.attention.engine;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

/**
 * One way of computing lightning attention over a window of consecutive tokens of one sequence.
 * The float64 references and the fast backends share this signature, so every test can hold a
 * backend against a reference on the same call.
 *
 * <p>Shapes ({@link AttentionSpec} owns them): q {@code [n, Hq, Dk]}, k {@code [n, Hk, Dk]},
 * v {@code [n, Hv, Dv]}, o {@code [n, H, Dv]}, states ({@link LightningState}) {@code [H, Dk, Dv]}
 * and, when normalizing, {@code [H, Dk]}. q, k and v share one dtype, o may have any. A window
 * may start anywhere in a sequence; windows that start at multiples of the chunk size give the
 * same block structure as one call over the whole sequence, which is what makes a split run agree
 * with an unsplit one to rounding.
 *
 * <p>A backend is not thread-safe; give each task its own (or share an executor-wide device
 * behind one, which is its own business). {@link #close()} releases what it holds.
 */
public interface AttentionBackend extends AutoCloseable {

    /** Short name: "cpu", "recurrent-f64", "chunked-f64", "gpu". */
    String name();

    /**
     * Where it computes, for people: "cpu", or a GPU such as "cuda:0 (NVIDIA H200)". Code that needs
     * the GPU itself asks {@link #gpuOrdinal()}; this text is for reports and messages.
     */
    String device();

    /** The CUDA device it computes on, or -1 for a backend that computes on the CPU. */
    default int gpuOrdinal() {
        return -1;
    }

    /**
     * Pass 1: the state after the window given the state before it, without outputs:
     * lambda^n * state + sum_j lambda^(n-1-j) phi(k_j)^T v_j (and the same sum of phi(k_j) for z).
     * From the zero state this is the window's local state.
     */
    LightningState advance(AttentionSpec spec, TokenTensor k, TokenTensor v, LightningState state);

    /**
     * Pass 2: writes o_t (the spec's formula) for every token of the window into {@code o},
     * records the window's {@code checkpoints}, and returns the state after the window.
     */
    LightningState forward(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                           LightningState state, TokenTensor o, Checkpoints checkpoints);

    /** Pass 2 without checkpoints. */
    default LightningState forward(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                                   LightningState state, TokenTensor o) {
        return forward(spec, q, k, v, state, o, Checkpoints.none());
    }

    /**
     * A zero-filled tensor whose bytes this backend moves fastest, for callers that fill inputs
     * (reading file ranges into it) or take outputs from it: the Java heap here; off the heap and
     * registered with the driver on the GPU, where the device copies it without staging. Its bytes
     * stay valid after {@link #close()}; only the fast path ends there.
     */
    default TokenTensor hostTensor(DType dtype, int tokens, int heads, int dim) {
        return TokenTensor.allocate(dtype, tokens, heads, dim);
    }

    /**
     * A tensor like {@link #hostTensor} for scratch its caller fills before it reads it (window
     * buffers): its contents are undefined, and its bytes are the caller's only until
     * {@link #releaseHostTensor} or {@link #close()}, after which they may be another tensor's. On
     * the GPU such blocks stay registered across the backends of the executor (registering one costs
     * about as much as copying it), so a task's first window does not wait for it. The same as
     * {@link #hostTensor} here.
     */
    default TokenTensor scratchHostTensor(DType dtype, int tokens, int heads, int dim) {
        return hostTensor(dtype, tokens, heads, dim);
    }

    /**
     * Ends the fast path of a tensor from {@link #hostTensor} now, before {@link #close()} (on the
     * GPU: its memory is no longer page-locked); its bytes stay valid. Nothing here.
     */
    default void releaseHostTensor(TokenTensor t) {
    }

    /**
     * Frees the device memory this backend keeps between calls (its buffers grow again as later
     * calls need them), for a caller about to use the same device by other means within the same
     * limit (a batch step, whose memory then does not add to this backend's). Nothing here.
     */
    default void releaseDeviceBuffers() {
    }

    @Override
    default void close() {
    }
}
