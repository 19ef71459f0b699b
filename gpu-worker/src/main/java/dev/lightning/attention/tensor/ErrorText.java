package dev.lightning.attention.tensor;

/**
 * What the project's one-line errors quote of another library's exception (a JSON parser's, the
 * CUDA driver's, Spark's, Hadoop's): its message's first line. The lines after it are a location,
 * a plan or a stack that the user does not need to act, and that made the error span a screen.
 * Here, the lowest package, so that every module's messages quote the same way.
 */
public final class ErrorText {
    private ErrorText() {
    }

    /** The first line of {@code message}; "no detail" where the exception had no message. */
    public static String firstLine(String message) {
        return firstLine(message, Integer.MAX_VALUE);
    }

    /**
     * The first line of {@code message}, cut to {@code max} characters with "..." after a cut (a
     * library's first line can hold a whole query plan); "no detail" where there is no message.
     */
    public static String firstLine(String message, int max) {
        if (message == null) {
            return "no detail";
        }
        int nl = message.indexOf('\n');
        String line = nl < 0 ? message : message.substring(0, nl);
        return line.length() > max ? line.substring(0, max) + "..." : line;
    }
}
