package dev.lightning.attention.stream;

/** NaN or infinite values in a sequence's inputs: how many, and where the first one is. */
public final class NonFiniteInputException extends NonFiniteException {
    private static final long serialVersionUID = 1L;

    /** @param at first token of the piece where the values were found; -1 for the initial state */
    public NonFiniteInputException(String file, int sequence, long at, long count, String first, String range) {
        super(file + ": " + count + " NaN/Inf value(s) in " + range + ", the first at " + first
                + "; fix the input, or pass --skip-nonfinite to skip such sequences and list them in the run report",
                sequence, at, count, first);
    }
}
