package dev.lightning.attention.job.output;

import org.apache.hadoop.fs.Path;

import java.io.IOException;

/**
 * A file of the run's staging directory that one side wrote and the other does not find: the
 * driver and the executors do not see --output as the same storage (a directory local to each
 * host). Rerunning, with or without --resume, meets the same wall, so the message says what to
 * change instead.
 */
public final class UnsharedOutputException extends IOException {
    private static final long serialVersionUID = 1L;
    /** What to do, the same for every case. */
    static final String SHARE = "the driver and every executor must see --output at the same path (shared storage: "
            + "HDFS, an object store, a shared file system); give an --output they all reach and run again";

    private UnsharedOutputException(String message, Throwable cause) {
        super(message, cause);
    }

    /** On an executor: {@code staged}, which the driver prepared before the pass, is not there. */
    static UnsharedOutputException onExecutor(Path staged, Throwable cause) {
        return onExecutor("the staged output", staged, cause);
    }

    /**
     * On an executor: {@code file} ({@code what}, e.g. "the staged output"), which the driver
     * created before the tasks started, is not there, or is another file than the driver's.
     */
    static UnsharedOutputException onExecutor(String what, Path file, Throwable cause) {
        return new UnsharedOutputException(what + " " + file + ", which the driver created before these tasks "
                + "started, is missing on the executor on host " + host() + ": " + SHARE, cause);
    }

    /**
     * On an executor: the run's staging directory {@code root}, which the driver made before the
     * tasks started, is not there. Either its run is over (committed or given up) and this task
     * attempt outlived it, which nobody waits for, or the executors do not see the driver's --output.
     */
    static UnsharedOutputException stagingMissing(Object root) {
        return new UnsharedOutputException("the staging directory " + root + ", which the driver created before these "
                + "tasks started, is missing on the executor on host " + host() + ": either its run is over (this task "
                + "attempt outlived it, and nothing of it is needed) or " + SHARE, null);
    }

    /** On the driver: {@code staged}, which a task of this run wrote, is not there. */
    static UnsharedOutputException onDriver(Path staged) {
        return onDriver("the staged output", staged, null);
    }

    /**
     * On the driver: {@code file} ({@code what}, e.g. "the staged output"), which a task of this
     * run wrote, is not there ({@code cause}: the file system's not-found error, or null).
     */
    public static UnsharedOutputException onDriver(String what, Path file, Throwable cause) {
        return new UnsharedOutputException(what + " " + file + ", which a task of this run wrote, is "
                + "missing on the driver (host " + host() + "); nothing was published: " + SHARE, cause);
    }

    private static String host() {
        try {
            return java.net.InetAddress.getLocalHost().getHostName();
        } catch (IOException e) {
            return "(unknown)";
        }
    }
}
