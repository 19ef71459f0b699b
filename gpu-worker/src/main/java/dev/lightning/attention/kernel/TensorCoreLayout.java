package dev.lightning.attention.kernel;

/** Shared-memory size of the tensor-core kernels: the formula lightning_tc_smem_bytes of tensor_core.cuh. */
final class TensorCoreLayout {
    private TensorCoreLayout() {
    }

    /** Threads per CTA (the kernels' launch contract). */
    static final int THREADS = 256;
    /** Value columns per CTA: the grid's y extent is ceil(Dv / COLUMNS). */
    static final int COLUMNS = 64;

    static int sharedBytes(int dk) {
        return 128 * ((dk + 15) / 16 * 16) + 188416;
    }
}
