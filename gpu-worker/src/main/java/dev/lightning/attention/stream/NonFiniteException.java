package dev.lightning.attention.stream;

import dev.lightning.attention.tensor.InvalidInputException;

/**
 * NaN or infinite values a task found in one sequence, in its inputs or in what it computed from
 * them: how many, and where the first one is. Either way the sequence gets no output file. By
 * default the job fails with the message (exit status 2: it is the input that cannot be computed);
 * with {@code --skip-nonfinite} the task sends {@link #record()} to the driver instead, which drops
 * the sequence and lists it in the run report.
 */
public abstract class NonFiniteException extends InvalidInputException {
    private static final long serialVersionUID = 1L;

    final int sequence;
    /** A token where the values were found, to order a sequence's records; -1 for the initial state. */
    final long at;
    final long count;
    /** The position of the first value, as {@code tensor[i, j, k]}. */
    final String first;

    NonFiniteException(String message, int sequence, long at, long count, String first) {
        super(message);
        this.sequence = sequence;
        this.at = at;
        this.count = count;
        this.first = first;
    }

    /** The record a task sends to the driver in skip mode: sequence, token, count, first position. */
    public String record() {
        return sequence + "\t" + at + "\t" + count + "\t" + first;
    }
}
