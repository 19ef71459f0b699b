package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.nio.ByteBuffer;

/**
 * The window buffers of one task: one block taken from its backend's
 * {@link AttentionBackend#scratchHostTensor} and reused by every window of every piece the task runs,
 * q, k, v and o lying in it one after the other. On the GPU the block is registered with the
 * driver, which costs about as much as copying it, so registering per piece would give back what
 * the copies save; the backend gives it back still registered when the task ends, and the
 * executor's next task takes it again. The block grows (the old one released at once) only when a window needs more
 * bytes than it holds, so a task holds its largest window and no more: within the window budget
 * (or one chunk, when a chunk is larger). The backend's close() ends the fast path; the bytes are
 * garbage after the task. Not thread-safe: one task, one instance.
 *
 * <p>{@link #heap()} gives heap windows whatever the backend, the path before the executor used
 * host tensors (kept for benchmarks and for tests that hold the two paths byte for byte).
 */
public final class WindowBuffers {
    /** Where each tensor of a window starts in the block: at multiples of this (a page: copies of whole lines). */
    static final int ALIGN = 4096;

    /** The backend the block comes from; null for heap windows. */
    private final AttentionBackend backend;
    /** The block, {@code [pages, 1, ALIGN / 4]} float32 as a host tensor; null until the first window. */
    private TokenTensor block;
    /** The second block's buffers, for reading one window ahead ({@link #spare()}); null until asked for. */
    private WindowBuffers spare;

    private WindowBuffers(AttentionBackend backend) {
        this.backend = backend;
    }

    /** Windows from {@code backend.scratchHostTensor}: off-heap (and registered on the GPU) on both backends. */
    public static WindowBuffers of(AttentionBackend backend) {
        return new WindowBuffers(java.util.Objects.requireNonNull(backend, "backend"));
    }

    /** Heap windows on any backend (staged by the GPU backend): the path before host tensors. */
    public static WindowBuffers heap() {
        return new WindowBuffers(null);
    }

    /**
     * These buffers when they suit {@code b} (heap ones, or {@code b} is the backend they came
     * from); else new ones from {@code b}, for a piece computed elsewhere (on the CPU after the GPU
     * ran out of memory).
     */
    WindowBuffers on(AttentionBackend b) {
        return backend == null || backend == b ? this : of(b);
    }

    /**
     * A second set of buffers from the same backend (heap ones for heap windows), kept with these
     * and released with them: PieceWork's read-ahead reads the next window into one block while
     * the current one computes in the other.
     */
    WindowBuffers spare() {
        if (spare == null) {
            spare = new WindowBuffers(backend);
        }
        return spare;
    }

    /** One tensor of a window: {@code [tokens, heads, dim]} of {@code dtype}. */
    record Shape(DType dtype, int heads, int dim) {
        long bytes(int tokens) {
            return (long) tokens * heads * dim * dtype.bytes();
        }
    }

    /**
     * Views of {@code tokens} tokens for each of {@code shapes} (null gives null), disjoint, in the
     * block; their earlier contents are left there (every caller overwrites the tokens it uses).
     */
    TokenTensor[] window(int tokens, Shape... shapes) {
        long[] starts = new long[shapes.length];
        long need = 0;
        for (int i = 0; i < shapes.length; i++) {
            if (shapes[i] != null) {
                starts[i] = need;
                need += (shapes[i].bytes(tokens) + ALIGN - 1) / ALIGN * ALIGN;
            }
        }
        if (block == null || blockBytes() < need) {
            TokenTensor old = block;
            block = null;
            if (old != null && backend != null) {
                backend.releaseHostTensor(old); // let go now, not at close: the task holds one block
            }
            int pages = Math.toIntExact(Math.max(1, need / ALIGN));
            block = backend == null ? TokenTensor.allocate(DType.F32, pages, 1, ALIGN / 4)
                    : backend.scratchHostTensor(DType.F32, pages, 1, ALIGN / 4);
        }
        TokenTensor[] views = new TokenTensor[shapes.length];
        for (int i = 0; i < shapes.length; i++) {
            Shape s = shapes[i];
            if (s == null) {
                continue;
            }
            ByteBuffer bytes = block.writableBytes();
            bytes.position(Math.toIntExact(starts[i])).limit(Math.toIntExact(starts[i] + s.bytes(tokens)));
            views[i] = block.memory() == null ? TokenTensor.wrap(s.dtype, tokens, s.heads, s.dim, bytes)
                    : TokenTensor.wrap(s.dtype, tokens, s.heads, s.dim, bytes, block.memory(),
                    block.memoryOffset() + starts[i]);
        }
        return views;
    }

    /**
     * Gives the block back now (on the GPU: unregistered), for buffers that served one call; the
     * next window takes a new one.
     */
    public void release() {
        TokenTensor old = block;
        block = null;
        if (old != null && backend != null) {
            backend.releaseHostTensor(old);
        }
        if (spare != null) {
            spare.release();
        }
    }

    /** Bytes the block holds now (the task's window memory), the spare's included. */
    public long bytes() {
        return blockBytes() + (spare == null ? 0 : spare.bytes());
    }

    /** Bytes of this block alone. */
    private long blockBytes() {
        return block == null ? 0 : (long) block.tokens() * block.tokenBytes();
    }

    /** Whether these are heap windows ({@link #heap()}). */
    public boolean isHeap() {
        return backend == null;
    }
}
