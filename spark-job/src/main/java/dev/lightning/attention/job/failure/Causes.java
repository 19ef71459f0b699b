package dev.lightning.attention.job.failure;

import dev.lightning.attention.tensor.ErrorText;

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

    /**
     * What a write refused for want of room says, with what that means and what to change, or null where {@code e} is no such
     * refusal: a full file system (ENOSPC), a used-up quota (EDQUOT, HDFS's quotas), a file past the process's
     * file-size limit or the file system's largest file (EFBIG). Such a failure is no fault of the job and
     * says nothing more in its trace (the JDK's message names no file): the run says it in one line.
     */
    public static String storageLimit(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
            String m = t.getMessage();
            if (!(t instanceof java.io.IOException) || m == null) {
                continue;
            }
            String lower = m.toLowerCase(java.util.Locale.ROOT);
            if (lower.contains("no space left on device")) {
                return "a file system the run writes to is full (" + ErrorText.firstLine(m) + "): where --output lies, or "
                        + "Spark's local directories (spark.local.dir); free some space there";
            }
            if (lower.contains("quota") && lower.contains("exceeded")) {
                return "a quota of a file system the run writes to is used up (" + ErrorText.firstLine(m) + "); free some "
                        + "space there or raise the quota";
            }
            if (lower.contains("file too large")) {
                return "a file the run writes grew past the largest the process may write (" + ErrorText.firstLine(m)
                        + "); raise the file-size limit (ulimit -f) or write to a file system that takes larger files";
            }
        }
        return null;
    }

    /**
     * What the refusal to open one more file (EMFILE: "Too many open files") says, with the process's limit and what
     * to change, or null where {@code e} is none. The JDK words it inside the message of whatever it was opening
     * ("/in/a.safetensors (Too many open files)"), in an exception of any kind, and Spark's traces around it add
     * nothing.
     */
    public static String descriptorLimit(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
            String m = t.getMessage();
            if (m != null && m.contains("Too many open files")) {
                java.lang.management.OperatingSystemMXBean os =
                        java.lang.management.ManagementFactory.getOperatingSystemMXBean();
                String limit = os instanceof com.sun.management.UnixOperatingSystemMXBean unix
                        ? "the process may hold " + unix.getMaxFileDescriptorCount() + " open files" : "";
                return "the process ran out of file descriptors (" + ErrorText.firstLine(m) + (limit.isEmpty() ? "" : "; " + limit)
                        + "); raise the limit (ulimit -n 4096 or more: the JVM holds one for each of its jars)";
            }
        }
        return null;
    }
}
