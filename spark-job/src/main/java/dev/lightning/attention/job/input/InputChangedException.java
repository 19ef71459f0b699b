package dev.lightning.attention.job.input;

import dev.lightning.attention.tensor.InvalidInputException;

/**
 * An input file (or a stored state of --initial-states) that changed, or went away, between the
 * listing that planned the run and the end of its reads. The run's pieces may then have read
 * some of the old content and some of the new, so nothing is published; and --resume cannot
 * continue it, since the work kept would be the old content's.
 */
public final class InputChangedException extends InvalidInputException {
    private static final long serialVersionUID = 1L;

    public InputChangedException(String message) {
        super(message);
    }

    public InputChangedException(String message, Throwable cause) {
        super(message, cause);
    }
}
