package dev.lightning.attention.engine.cuda;

/**
 * Launch shapes of the tensor-core kernels: the portable mma.sync ones (tensor_core.cuh, two
 * families chosen by Dk, shared memory lightning_tc_smem_bytes) and the Hopper wgmma ones
 * (hopper.cuh, lightning_wg_smem_bytes).
 */
final class TensorCoreLayout {
    private TensorCoreLayout() {
    }

    /**
     * Tokens per chunk, fixed by every kernel (float32 and tensor-core alike): segments and slices
     * start at multiples of it. The one place the host reads it from.
     */
    static final int CHUNK = 64;

    /** Largest Dk of the narrow kernels (12 warps, 4 of them only load); larger Dk runs the wide ones. */
    static final int NARROW_MAX_DK = 128;
    /** Threads per CTA of the narrow kernels. */
    static final int THREADS_NARROW = 384;
    /** Threads per CTA of the wide kernels (Dk up to 256). */
    static final int THREADS_WIDE = 256;
    /** Value columns per CTA: the grid's y extent is ceil(Dv / COLUMNS). */
    static final int COLUMNS = 64;

    static int threads(int dk) {
        return dk <= NARROW_MAX_DK ? THREADS_NARROW : THREADS_WIDE;
    }

    /** Appended to the kernel's name: the wide family's kernels end in "_wide". */
    static String kernelSuffix(int dk) {
        return dk <= NARROW_MAX_DK ? "" : "_wide";
    }

    static int sharedBytes(int dk) {
        return 128 * ((dk + 15) / 16 * 16) + 188416;
    }

    // ---- the Hopper (wgmma) kernels, hopper.cuh: one launch shape for both kernels ----

    /** Largest Dk of the Hopper kernels: Q and K tiles are 128 columns wide. */
    static final int HOPPER_MAX_DK = 128;
    /**
     * Smallest Dk the host gives the Hopper kernels: they pad Dk to 128, so Dk <= 64 would spend
     * half their products on zeros; the mma.sync kernels take those.
     */
    static final int HOPPER_MIN_DK = 65;
    /** Threads per CTA of the Hopper kernels: a loading warpgroup and two computing ones. */
    static final int HOPPER_THREADS = 384;
    /** Value columns per CTA of the Hopper kernels (64 per computing warpgroup). */
    static final int HOPPER_COLUMNS = 128;

    /**
     * lightning_wg_smem_bytes: the forward (3 stages of Q, K, V, two state copies, the output
     * staging tile, the scaled mask table) or the states kernel (4 stages of K, V); the same for
     * every Dk up to 128.
     */
    static int hopperSharedBytes(int dk, boolean forward) {
        int qk = 16384;
        int nc = HOPPER_COLUMNS;
        return forward ? 3 * (2 * qk + 128 * nc) + 2 * qk + 128 * (nc + 8) + 1152 + 512 : 4 * (qk + 128 * nc) + 1152;
    }

    /** Whether the Hopper kernels take this shape (on a device that has them). */
    static boolean hopperFits(int dk, int dv) {
        return dk >= HOPPER_MIN_DK && dk <= HOPPER_MAX_DK && dv > COLUMNS;
    }
}
