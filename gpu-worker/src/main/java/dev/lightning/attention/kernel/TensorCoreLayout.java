package dev.lightning.attention.kernel;

/**
 * Launch shape of the tensor-core kernels (tensor_core.cuh): two families, chosen by Dk, and the
 * shared-memory formula lightning_tc_smem_bytes.
 */
final class TensorCoreLayout {
    private TensorCoreLayout() {
    }

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
}
