package dev.lightning.attention.tensor;

/**
 * The one exception the project throws for input it cannot accept: a malformed or inconsistent
 * sequence file, a bad option value, an output directory that already holds results. The message
 * names the file (and tensor, token range) where one applies, says what was expected and what was
 * found. Anything else escaping the job is a bug.
 */
public class InvalidInputException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public InvalidInputException(String message) {
        super(message);
    }

    public InvalidInputException(String message, Throwable cause) {
        super(message, cause);
    }
}
