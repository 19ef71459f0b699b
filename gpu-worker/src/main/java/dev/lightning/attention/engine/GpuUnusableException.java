package dev.lightning.attention.engine;

/**
 * This process cannot compute on a GPU: there is none it can use (no driver, no device, a driver
 * too old), or the kernels' PTX does not load on the one it sees (a device
 * older than the PTX's target, a driver that cannot compile it), or an earlier error (an illegal
 * address, a failed launch) left its context unusable, which the driver keeps for the life of the
 * process, or, for the moment, the device is taken (another process holds it in exclusive-process
 * mode, or has its memory). Under {@code --backend auto} the job computes on the CPU instead; under
 * {@code gpu} the task fails with this message. Only a new executor can use a device of the first
 * kinds again; a taken one is tried again by the next task. Or, found when a piece is computed
 * ({@link #noKernel}), the device works but none of the kernels fits the input's head width in the
 * shared memory its blocks get (a GPU of 99 KB a block at Dk = 144): under {@code auto} that piece
 * is computed on the CPU.
 */
public final class GpuUnusableException extends IllegalStateException {
    private static final long serialVersionUID = 1L;

    private final boolean noKernel;

    public GpuUnusableException(String message, Throwable cause) {
        this(message, cause, false);
    }

    private GpuUnusableException(String message, Throwable cause, boolean noKernel) {
        super(message, cause);
        this.noKernel = noKernel;
    }

    /** The device works, but no kernel computes this input's shape on it. */
    public static GpuUnusableException noKernelFor(String message) {
        return new GpuUnusableException(message, null, true);
    }

    /** Whether this is {@link #noKernelFor}'s kind: the device stays usable for other shapes. */
    public boolean noKernel() {
        return noKernel;
    }
}
