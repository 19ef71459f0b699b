package dev.lightning.attention.job.failure;

/**
 * A job failure whose message says all there is to say (what failed, why, what to check): it is
 * printed as one line without a stack trace, and the run exits with 1. {@link SpotChecks}: the one
 * a --resume cannot help.
 */
public class ExplainedFailure extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public ExplainedFailure(String message, Throwable cause) {
        super(message, cause);
    }

    /**
     * The float64 spot checks of --output-mode checksums refused the run's o. Tasks are deterministic, so a
     * --resume, which keeps the checked results, fails the same way: the advice is another backend or tolerance.
     */
    public static final class SpotChecks extends ExplainedFailure {
        private static final long serialVersionUID = 1L;

        public SpotChecks(String message) {
            super(message, null);
        }
    }
}
