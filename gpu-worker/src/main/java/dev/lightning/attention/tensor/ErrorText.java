package dev.lightning.attention.tensor;

/**
 * What the project's one-line errors quote of another library's exception (a JSON parser's, the
 * CUDA driver's, Spark's, Hadoop's): its message's first line. The lines after it are a location,
 * a plan or a stack that the user does not need to act, and that made the error span a screen.
 * Here, the lowest package, so that every module's messages quote the same way. Also how near a
 * name the user gave is to a known one ({@link #editDistance}), for the errors that name it.
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

    /**
     * The edits (insert, delete, replace a character) that turn {@code a} into {@code b}: how near a name the user gave
     * is to one the product knows, for the errors that name the near miss (a tensor "slopes", an option
     * "--partiton-tokens").
     */
    public static int editDistance(String a, String b) {
        int[] prev = new int[b.length() + 1];
        int[] cur = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) {
            prev[j] = j;
        }
        for (int i = 1; i <= a.length(); i++) {
            cur[0] = i;
            for (int j = 1; j <= b.length(); j++) {
                int sub = prev[j - 1] + (a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1);
                cur[j] = Math.min(sub, Math.min(prev[j], cur[j - 1]) + 1);
            }
            int[] t = prev;
            prev = cur;
            cur = t;
        }
        return prev[b.length()];
    }
}
