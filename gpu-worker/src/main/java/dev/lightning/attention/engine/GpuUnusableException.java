package dev.lightning.attention.engine;

/**
 * This process cannot compute on a GPU: there is none it can use (no driver, no device, a driver
 * too old), or the kernels' PTX does not load on the one it sees (a device
 * older than the PTX's target, a driver that cannot compile it), or an earlier error (an illegal
 * address, a failed launch) left its context unusable, which the driver keeps for the life of the
 * process, or, for the moment, the device is taken (another process holds it in exclusive-process
 * mode, or has its memory). Under {@code --backend auto} the job computes on the CPU instead; under
 * {@code gpu} the task fails with this message. Only a new executor can use a device of the first
 * kinds again; a taken one is tried again by the next task.
 */
public final class GpuUnusableException extends IllegalStateException {
    private static final long serialVersionUID = 1L;

    public GpuUnusableException(String message, Throwable cause) {
        super(message, cause);
    }
}
