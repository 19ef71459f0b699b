package dev.lightning.attention.job.failure;

/**
 * A job failure whose message says all there is to say (what failed, why, what to check): it is
 * printed as one line without a stack trace, and the run exits with 1.
 */
public final class ExplainedFailure extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public ExplainedFailure(String message, Throwable cause) {
        super(message, cause);
    }
}
