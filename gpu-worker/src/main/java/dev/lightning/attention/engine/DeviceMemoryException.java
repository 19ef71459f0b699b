package dev.lightning.attention.engine;

/** The GPU ran out of memory even for the smallest slice of work: one chunk per launch. */
public final class DeviceMemoryException extends IllegalStateException {
    private static final long serialVersionUID = 1L;

    public DeviceMemoryException(String message, Throwable cause) {
        super(message, cause);
    }
}
