package dev.lightning.attention.job.failure;

import java.util.List;

/**
 * The items a one-line message names when there can be many: the first few, then how many more
 * ("a; b; c (and 4 more)"), so that a run over thousands of inputs still says what went wrong in a
 * line that fits a terminal.
 */
public final class Examples {
    private Examples() {
    }

    /** The first {@code shown} of {@code items} joined by {@code separator}, and how many are left out. */
    public static String of(List<String> items, int shown, String separator) {
        int n = Math.min(shown, items.size());
        String first = String.join(separator, items.subList(0, n));
        return items.size() > n ? first + " (and " + (items.size() - n) + " more)" : first;
    }

    /** How many lines of one kind a run prints before it counts the rest ({@link #lines}). */
    public static final int LINES_SHOWN = 10;

    /**
     * The console lines for {@code lines}, one per item, when there can be thousands (a directory of
     * damaged files with --skip-invalid): the first {@code shown}, then one line {@code prefix + "...
     * and K more " + what}; the run report lists every item.
     */
    public static List<String> lines(List<String> lines, int shown, String prefix, String what) {
        if (lines.size() <= shown) {
            return lines;
        }
        List<String> out = new java.util.ArrayList<>(lines.subList(0, shown));
        out.add(prefix + "... and " + (lines.size() - shown) + " more " + what);
        return out;
    }
}
