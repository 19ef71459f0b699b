package dev.lightning.attention.job.failure;

/** The one lookup of an exception in a cause chain: Spark wraps a task's failure in exceptions of its own. */
public final class Causes {
    private Causes() {
    }

    /** The first exception of {@code type} in {@code e}'s cause chain (Spark wraps a task's failure), or null. */
    public static <T extends Throwable> T inChain(Throwable e, Class<T> type) {
        for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
            if (type.isInstance(t)) {
                return type.cast(t);
            }
        }
        return null;
    }
}
