package dev.lightning.attention.job;

import dev.lightning.attention.tensor.InvalidInputException;

/** NaN or infinite values in a sequence's inputs: how many, and where the first one is. */
final class NonFiniteInputException extends InvalidInputException {
    private static final long serialVersionUID = 1L;

    final int sequence;
    final long count;
    final String first;
    /** First token of the piece where the values were found; -1 for the initial state. */
    final long at;

    NonFiniteInputException(String file, int sequence, long at, long count, String first, String range) {
        super(file + ": " + count + " NaN/Inf value(s) in " + range + ", the first at " + first
                + "; fix the input, or pass --skip-nonfinite to skip such sequences and list them in the run report");
        this.sequence = sequence;
        this.count = count;
        this.first = first;
        this.at = at;
    }

    /** The record a task sends to the driver in skip mode: sequence, piece start, count, first position. */
    String record() {
        return sequence + "\t" + at + "\t" + count + "\t" + first;
    }
}
