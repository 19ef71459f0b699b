package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.tensor.DType;

/**
 * How {@link CudaBackend} cuts a window of {@code tokens} tokens into slices that move through its
 * pipeline (copy in, kernels, copy out, each on its own stream): slice {@code i} covers tokens
 * {@code [i * sliceTokens, min(tokens, (i + 1) * sliceTokens))}. Slices start at multiples of the
 * 64-token chunk, so they keep the block structure of the unsplit window and the result agrees
 * with it to rounding. Host arithmetic only, and deterministic (a retried Spark task must write
 * the same bytes), so that it is tested everywhere.
 *
 * @param tokens      tokens of the window, at least 1
 * @param sliceTokens tokens of every slice but the last (which may be shorter), a multiple of the chunk
 * @param slices      number of slices, at least 1
 * @param sets        device buffer sets the slices take in turn: 2 when consecutive slices overlap
 *                    (slice i uses set {@code i % 2}), 1 when one slice or the serial path runs them
 *                    one after the other
 */
record SlicePlan(int tokens, int sliceTokens, int slices, int sets) {
    static final int CHUNK = TensorCoreLayout.CHUNK;
    /**
     * Fewest bytes a slice moves between host and device (q, k, v in, o out) before a window is cut
     * at all. A slice has a fixed cost of its own: 3 to 5 kernel launches, 6 event records and 3
     * stream waits through JNI, a host wake-up on an event, and with few heads one more pass 1 and
     * scan; some 50 to 100 us together. 32 MiB takes about 0.7 ms over PCIe 5 x16 and about 3 ms
     * through the host's heap-to-pinned copy, so that cost stays within a few percent of the stage
     * it hides behind, and windows under twice this stay one slice and pay nothing.
     */
    static final long MIN_SLICE_BYTES = 32L << 20;
    /**
     * Slices a large window is cut into. Filling and draining the pipeline leaves about one slice
     * of each stage exposed (its first copy in, its last copy out): 1/8 of their time; more slices
     * would shave little more and multiply the per-slice cost.
     */
    static final int TARGET_SLICES = 8;

    /**
     * @param n            tokens of the window, at least 1
     * @param tokenBytes   bytes a token takes in one device buffer set (q, k, v and o, those the call
     *                     moves), which are also the bytes it moves between host and device
     * @param freeBytes    device bytes the budget leaves for the buffer sets after the fixed state
     *                     buffers (zero or less: one chunk a slice)
     * @param overlap      the pipeline (two buffer sets, overlapping slices); false: the serial path
     *                     (one set, one slice unless the budget forces more)
     * @param forcedTokens slices of this many tokens (rounded up to a chunk, still within the budget);
     *                     0: chosen here. Tests use it to run many slices on small inputs.
     */
    static SlicePlan of(int n, long tokenBytes, long freeBytes, boolean overlap, int forcedTokens) {
        if (n < 1 || tokenBytes < 1 || forcedTokens < 0) {
            throw new IllegalArgumentException("slice plan of " + n + " tokens of " + tokenBytes + " bytes, forced "
                    + forcedTokens);
        }
        long chunks = (n + (long) CHUNK - 1) / CHUNK;
        int sets = overlap ? 2 : 1;
        long cap = maxSliceTokens(tokenBytes, freeBytes, sets);
        long want;
        if (forcedTokens > 0) {
            want = (forcedTokens + (long) CHUNK - 1) / CHUNK * CHUNK;
        } else if (overlap) {
            long count = Math.max(1, Math.min(TARGET_SLICES, n * tokenBytes / MIN_SLICE_BYTES));
            want = (chunks + count - 1) / count * CHUNK;
        } else {
            want = chunks * CHUNK;
        }
        long sliceTokens = Math.min(Math.min(want, cap), chunks * CHUNK);
        int slices = (int) ((n + sliceTokens - 1) / sliceTokens);
        return new SlicePlan(n, (int) sliceTokens, slices, slices > 1 ? sets : 1);
    }

    /**
     * Bytes a token of a window of {@code spec} takes in one device buffer set, and moves between host
     * and device: q ({@code Hq * Dk}, with outputs only), k ({@code Hk * Dk}), v ({@code Hv * Dv}) and o
     * ({@code H * Dv}, with outputs only) in {@code dtype}; with checkpoints every {@code every} tokens
     * (0: none) also a token's share of the checkpoint states the slice records and brings back.
     */
    static long tokenBytes(AttentionSpec spec, DType dtype, boolean outputs, int every) {
        long checkpoints = every > 0 ? (spec.stateBytes() + every - 1) / every : 0;
        return tokenElements(spec, outputs) * dtype.bytes() + checkpoints;
    }

    /** Elements of a token of {@code spec}: k and v, and with {@code outputs} q and o ({@link #tokenBytes}). */
    static long tokenElements(AttentionSpec spec, boolean outputs) {
        long elements = (long) spec.headsK() * spec.dk() + (long) spec.headsV() * spec.dv();
        if (outputs) {
            elements += (long) spec.headsQ() * spec.dk() + (long) spec.heads() * spec.dv();
        }
        return elements;
    }

    /**
     * Most tokens a slice may have: whole chunks of what the budget holds for {@code sets} buffer
     * sets, and few enough that a slice's bytes stay far below the 2 GiB a ByteBuffer (a tensor
     * view, a pinned staging buffer) holds; at least one chunk.
     */
    static long maxSliceTokens(long tokenBytes, long freeBytes, int sets) {
        long fits = Math.max(0, freeBytes) / (sets * tokenBytes) / CHUNK * CHUNK;
        long view = Integer.MAX_VALUE / 2 / tokenBytes / CHUNK * CHUNK;
        return Math.max(CHUNK, Math.min(fits, view));
    }

    /** First token of slice {@code i}. */
    int from(int i) {
        return i * sliceTokens;
    }

    /** Tokens of slice {@code i}. */
    int length(int i) {
        return Math.min(sliceTokens, tokens - i * sliceTokens);
    }
}
