package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.nio.ByteBuffer;

/**
 * The window buffers of one task (q, k, v and o), taken once from its backend's
 * {@link AttentionBackend#hostTensor} and reused by every window of every piece the task runs:
 * on the GPU they are registered with the driver, which costs about as much as copying them, so
 * registering per piece would give back what the copies save. A request views the bytes of its
 * role's block as the shape asked for; a block grows (the old one released) only when a request
 * needs more bytes than it holds, so a task holds at most its largest window, within the window
 * budget. The backend's close() ends the fast path of all of them; the bytes are garbage after
 * the task. Not thread-safe: one task, one instance.
 *
 * <p>{@link #heap()} gives heap windows whatever the backend, the path before the executor used
 * host tensors (kept for benchmarks and for tests that hold the two paths byte for byte).
 */
public final class WindowBuffers {
    /** Which tensor of a window a block holds. */
    public enum Role { Q, K, V, O }

    /** The backend the blocks come from; null for heap windows. */
    private final AttentionBackend backend;
    private final TokenTensor[] blocks = new TokenTensor[Role.values().length];

    private WindowBuffers(AttentionBackend backend) {
        this.backend = backend;
    }

    /** Windows from {@code backend.hostTensor}: off-heap and registered on the GPU, the heap on the CPU. */
    public static WindowBuffers of(AttentionBackend backend) {
        return new WindowBuffers(java.util.Objects.requireNonNull(backend, "backend"));
    }

    /** Heap windows on any backend (byte arrays, staged by the GPU backend): the path before host tensors. */
    public static WindowBuffers heap() {
        return new WindowBuffers(null);
    }

    /**
     * These buffers when they suit {@code b} (heap ones, or {@code b} is the backend they came
     * from); else new buffers from {@code b}, for a piece computed elsewhere (the CPU after the
     * GPU ran out of memory).
     */
    WindowBuffers on(AttentionBackend b) {
        return backend == null || backend == b ? this : of(b);
    }

    /** Whether these are heap windows ({@link #heap()}). */
    public boolean isHeap() {
        return backend == null;
    }

    /**
     * A {@code [tokens, heads, dim]} tensor of {@code dtype} over the block of {@code role}; its
     * earlier contents are left there (every caller overwrites the tokens it uses).
     */
    TokenTensor tensor(Role role, DType dtype, int tokens, int heads, int dim) {
        long need = (long) tokens * heads * dim * dtype.bytes();
        TokenTensor block = blocks[role.ordinal()];
        if (block == null || capacity(block) < need) {
            blocks[role.ordinal()] = null;
            if (block != null && backend != null) {
                backend.releaseHostTensor(block); // unregistered now, not at close: memory stays bounded
            }
            block = backend == null ? TokenTensor.allocate(dtype, tokens, heads, dim)
                    : backend.hostTensor(dtype, tokens, heads, dim);
            blocks[role.ordinal()] = block;
        }
        ByteBuffer bytes = block.writableBytes();
        bytes.limit(Math.toIntExact(need));
        return block.memory() == null ? TokenTensor.wrap(dtype, tokens, heads, dim, bytes)
                : TokenTensor.wrap(dtype, tokens, heads, dim, bytes, block.memory(), block.memoryOffset());
    }

    /** Bytes the blocks hold now (the task's window memory). */
    public long bytes() {
        long sum = 0;
        for (TokenTensor b : blocks) {
            sum += b == null ? 0 : capacity(b);
        }
        return sum;
    }

    private static long capacity(TokenTensor block) {
        return (long) block.tokens() * block.tokenBytes();
    }
}
