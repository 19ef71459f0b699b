package dev.lightning.attention.engine.cuda;

/**
 * The two launch facts the host needs without a device: the chunk every kernel works in, and
 * where it prefers the Hopper kernels. Everything else about the kernels' launch shapes (threads,
 * columns, shared memory) the loaded modules report ({@link LaunchShapes}).
 */
final class TensorCoreLayout {
    private TensorCoreLayout() {
    }

    /**
     * Tokens per chunk, fixed by every kernel (float32 and tensor-core alike): segments and slices
     * start at multiples of it. The host's one copy, checked against the modules' own
     * ({@link LaunchShapes#of}) when they load.
     */
    static final int CHUNK = 64;

    /**
     * Smallest Dk the host gives the Hopper kernels: they pad Dk to 128, so Dk <= 64 would spend
     * half their products on zeros; the mma.sync kernels take those (measured on an H200 when the
     * Hopper kernels came, BENCHMARKS.md).
     */
    static final int HOPPER_MIN_DK = 65;
}
