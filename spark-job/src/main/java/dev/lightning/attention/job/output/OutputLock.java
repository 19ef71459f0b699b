package dev.lightning.attention.job.output;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lightning.attention.job.failure.ExplainedFailure;
import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;
import java.time.Instant;
import java.util.UUID;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * The one-run-at-a-time lock of an output directory: the file {@code <output>/_lightning.lock},
 * holding who took it (run, host, process, start time). The holder refreshes the file's
 * modification time every few seconds.
 *
 * <p>A lock is stale when its process is provably gone (same host, no such process, or another
 * process under its id) or, where its process cannot be looked up (another host), when it was not
 * refreshed for {@code staleSeconds} (the larger of this run's and the holder's own); a live
 * process on this host keeps its lock however long it is stopped. A stale lock is taken over, anything else refuses
 * the run with a message naming the holder. Taking over renames the stale file aside first, which
 * only one contender can do, then creates the lock exclusively: two runs racing for a stale lock
 * cannot both win.
 *
 * <p>Creation is exclusive: on the local file system through a hard link of a complete file (the
 * lock never exists half-written), elsewhere through {@code create(path, overwrite=false)}, which
 * HDFS and object stores with conditional writes honour.
 */
public final class OutputLock implements AutoCloseable {
    public static final String NAME = "_lightning.lock";

    private final FileSystem fs;
    private final Path path;
    private final String runId;
    private final ScheduledExecutorService heartbeat;
    /** What the lock file holds: written again where the file system cannot set a file's time. */
    private final byte[] content;
    /** Whether refreshes write the lock again ({@link #refresh}): setTimes did not change its time here. */
    private volatile boolean rewrite;
    /** Held while this run reads or refreshes its lock: a lock being written again reads as no one's. */
    private final Object io = new Object();
    private final Thread shutdownHook;
    /** Held while the commit publishes, so that a shutdown hook does not release the lock mid-commit. */
    final Object publishing = new Object();
    /** Whether a commit is publishing now (set by Commit under {@link #publishing}), for the shutdown hook's message. */
    volatile boolean committing;
    private volatile boolean lost;
    private volatile boolean released;

    private OutputLock(FileSystem fs, Path path, String runId, double staleSeconds, byte[] content) {
        this.fs = fs;
        this.path = path;
        this.runId = runId;
        this.content = content;
        long period = Math.max(200, Math.min(10_000, (long) (staleSeconds * 1000 / 4)));
        heartbeat = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "lightning-lock-heartbeat");
            t.setDaemon(true);
            return t;
        });
        heartbeat.scheduleAtFixedRate(this::refresh, period, period, TimeUnit.MILLISECONDS);
        // SIGTERM or SIGINT: give the lock back (after a commit in progress has finished)
        shutdownHook = new Thread(this::close, "lightning-lock-release");
        Runtime.getRuntime().addShutdownHook(shutdownHook);
    }

    /**
     * Takes the lock of {@code output} for run {@code runId}, taking over a stale one.
     *
     * @throws InvalidInputException when a live run holds it, naming that run and what to do
     */
    public static OutputLock acquire(FileSystem fs, Path output, String runId, double staleSeconds, PrintStream out)
            throws IOException {
        Path path = new Path(output, NAME);
        byte[] content = describeSelf(runId, staleSeconds);
        for (int attempt = 0; attempt < 3; attempt++) {
            if (tryCreate(fs, path, content)) {
                return new OutputLock(fs, path, runId, staleSeconds, content);
            }
            String foreign = notALock(fs, path);
            if (foreign != null) {
                throw new InvalidInputException("--output " + output + ": " + path + " " + foreign
                        + ", not a lock this tool writes (a regular file naming its run, host and process); if no run"
                        + " is using this directory, remove it by hand and run again");
            }
            Holder holder = Holder.read(fs, path);
            if (holder == null) {
                continue; // released between our create and our read: try again
            }
            String stale = holder.staleReason(staleSeconds);
            if (stale == null) {
                String when = holder.host.equals(hostName())
                        ? "it is released when that process ends (it is running on this host)"
                        : "if that process is dead, its lock goes stale " + fmt(Math.max(staleSeconds, holder.holderStaleSeconds))
                                + " s after its last refresh (--lock-stale-seconds, or the holder's own if longer)";
                throw new InvalidInputException("--output " + output + " is in use by run " + holder.runId + " (process "
                        + holder.pid + " on host " + holder.host + ", started " + holder.started + ", lock refreshed "
                        + holder.ageSeconds + " s ago); wait for it to finish: " + when + ", or remove " + path
                        + " by hand once you are sure it is gone");
            }
            Path aside = new Path(output, NAME + ".stale-" + UUID.randomUUID());
            if (moveAside(fs, path, aside)) {
                Holder taken = Holder.read(fs, aside);
                if (taken != null && !taken.runId.equals(holder.runId)) {
                    // another contender took the stale lock between our read and our rename: give its
                    // lock back (if a third one was quicker still, that one wins and this one has lost
                    // it, which it finds out before publishing)
                    putBack(fs, aside, path);
                    continue;
                }
                fs.delete(aside, false);
                out.println("lightning: taking over the stale lock of run " + holder.runId + " (process " + holder.pid
                        + " on host " + holder.host + ", started " + holder.started + "): " + stale);
            }
        }
        throw new InvalidInputException("--output " + output + ": another run keeps taking the lock " + path
                + "; make sure only one run writes to this directory");
    }

    /**
     * Why the local file at the lock's name is not a lock this tool wrote, or null when it may be
     * one (or is gone, or the file system is not the local one). Locally a lock is never seen half
     * written (it appears whole through a hard link), so a link, a directory or a file that does not
     * hold a lock's record was put there by something else: it is refused, never taken over as stale
     * (taking over deletes it, and also the file a link names would be left behind while its link
     * went).
     */
    private static String notALock(FileSystem fs, Path path) throws IOException {
        java.nio.file.Path lock = HadoopPaths.localFile(fs, path);
        if (lock == null) {
            return null;
        }
        if (Files.isSymbolicLink(lock)) {
            return "is a symbolic link (to " + Files.readSymbolicLink(lock) + ")";
        }
        if (Files.isDirectory(lock)) {
            return "is a directory";
        }
        if (!Files.exists(lock)) {
            return null;
        }
        if (!Files.isRegularFile(lock)) {
            return "is not a regular file";
        }
        try {
            JsonNode n = new ObjectMapper().readTree(Files.readAllBytes(lock));
            return n != null && n.isObject() && n.hasNonNull("runId") ? null : "does not hold a lock's record";
        } catch (java.nio.file.NoSuchFileException e) {
            return null; // released meanwhile
        } catch (IOException e) {
            return "does not hold a lock's record (it is not JSON)";
        }
    }

    /** Renames the lock aside, atomically ({@link HadoopPaths#rename}): false when it is already gone. */
    private static boolean moveAside(FileSystem fs, Path path, Path aside) throws IOException {
        try {
            HadoopPaths.rename(fs, path, aside);
            return true;
        } catch (FileNotFoundException e) {
            return false;
        }
    }

    /** Moves {@code aside} back to {@code path} unless {@code path} exists again; never replaces a lock. */
    private static void putBack(FileSystem fs, Path aside, Path path) throws IOException {
        if (HadoopPaths.isLocal(fs)) {
            try {
                Files.createLink(HadoopPaths.localFile(fs, path), HadoopPaths.localFile(fs, aside));
            } catch (FileAlreadyExistsException e) {
                // a third contender holds it now
            }
            fs.delete(aside, false);
            return;
        }
        if (!fs.rename(aside, path)) { // HDFS does not rename onto an existing file
            fs.delete(aside, false);
        }
    }

    private static String fmt(double seconds) {
        return seconds == Math.rint(seconds) ? Long.toString((long) seconds) : Double.toString(seconds);
    }

    private static boolean tryCreate(FileSystem fs, Path path, byte[] content) throws IOException {
        java.nio.file.Path lock = HadoopPaths.localFile(fs, path);
        if (lock != null) {
            java.nio.file.Path tmp = lock.resolveSibling("." + NAME + "." + UUID.randomUUID());
            try { // a write that fails part way (a full disk) leaves no temporary file either
                Files.write(tmp, content);
                Files.createLink(lock, tmp);
                return true;
            } catch (FileAlreadyExistsException e) {
                return false;
            } finally {
                Files.deleteIfExists(tmp);
            }
        }
        try (OutputStream o = fs.create(path, false)) {
            o.write(content);
            return true;
        } catch (org.apache.hadoop.fs.FileAlreadyExistsException e) {
            return false;
        } catch (IOException e) {
            if (fs.exists(path)) {
                return false;
            }
            throw e;
        }
    }

    private static byte[] describeSelf(String runId, double staleSeconds) throws IOException {
        ObjectNode n = new ObjectMapper().createObjectNode();
        n.put("runId", runId);
        n.put("host", hostName());
        n.put("pid", ProcessHandle.current().pid());
        n.put("processStart", processStart(ProcessHandle.current()));
        n.put("staleSeconds", staleSeconds); // the holder's own: it refreshes at a quarter of it
        n.put("started", Instant.now().toString());
        n.put("command", ProcessHandle.current().info().commandLine().orElse("?"));
        return new ObjectMapper().writeValueAsBytes(n);
    }

    /** When {@code p} started, as the system says ("?" where it does not): with its pid, it names one process. */
    static String processStart(ProcessHandle p) {
        return p.info().startInstant().map(Instant::toString).orElse("?");
    }

    static String hostName() {
        try {
            return InetAddress.getLocalHost().getHostName();
        } catch (IOException e) {
            return "unknown";
        }
    }

    /** Whether the lock is still this run's; false once another run took it over as stale. */
    boolean held() {
        if (lost || released) {
            return false;
        }
        synchronized (io) {
            try {
                Holder h = Holder.read(fs, path);
                lost = h == null || !runId.equals(h.runId);
            } catch (IOException e) {
                return false;
            }
        }
        return !lost;
    }

    /**
     * Fails unless this run still holds the lock: checked before anything is published. An ExplainedFailure, printed as
     * its one line: the message says what happened and what to do.
     */
    void check() {
        if (!held()) {
            throw new ExplainedFailure("lost the lock " + path + " (another run took it over as stale, "
                    + "or it was removed); nothing was published. Rerun when the other run has finished", null);
        }
    }

    /**
     * Renews the lock's modification time, by which a run on another host judges it. Hadoop's
     * {@code setTimes} does nothing on a file system that does not implement it (object stores: an
     * object's time is that of its upload), where the lock went stale {@code staleSeconds} after it
     * was taken however alive its holder, and a run from another host took it over and removed the
     * live run's staging. There the lock is written again with the same content, which gives it a
     * new time (a contender that took it over in between loses it again, and finds out before it
     * publishes).
     */
    private void refresh() {
        synchronized (io) {
            refreshHeld();
        }
    }

    private void refreshHeld() {
        try {
            if (held()) {
                if (!rewrite) {
                    long before = fs.getFileStatus(path).getModificationTime();
                    long now = System.currentTimeMillis();
                    fs.setTimes(path, now, -1);
                    long after = fs.getFileStatus(path).getModificationTime();
                    rewrite = after == before && before != now;
                }
                if (rewrite) {
                    try (OutputStream o = fs.create(path, true)) {
                        o.write(content);
                    }
                }
            }
        } catch (IOException | RuntimeException e) {
            // the next refresh tries again; check() decides before publishing
        }
    }

    @Override
    public void close() {
        if (committing && Thread.currentThread() == shutdownHook) {
            System.err.println("lightning: stop requested during the commit: the run stops once its outputs are "
                    + "published (a commit is never left half done)");
        }
        synchronized (publishing) {
            if (released) {
                return;
            }
            // No more refreshes, and no interrupt for one under way: interrupted mid-write, a rewrite could leave the
            // lock empty, which reads as no one's, and then this close would not delete it.
            heartbeat.shutdown();
            // Under io, which a refresh holds from its check to its write: a refresh under way finishes first, and
            // one still waiting for io sees released. Deleting outside it (the form before) let a refresh that had
            // checked the lock write it again after the delete: a lock left behind, which the next run had to wait
            // out as stale (OutputLockTest.aHeldLockIsRefreshedWhereSetTimesDoesNothing failed so, once).
            synchronized (io) {
                try {
                    if (held()) {
                        fs.delete(path, false);
                    }
                } catch (IOException e) {
                    // a lock left behind is stale once this process is gone; the next run takes it over
                } finally {
                    released = true;
                }
            }
        }
        if (Thread.currentThread() != shutdownHook) {
            try {
                Runtime.getRuntime().removeShutdownHook(shutdownHook);
            } catch (IllegalStateException e) {
                // already shutting down
            }
        }
    }

    /** What a lock file says about its holder. */
    static final class Holder {
        final String runId;
        final String host;
        final long pid;
        final String started;
        final long ageSeconds;
        /** When the holder's process started ("?" when unknown or not recorded). */
        final String processStart;
        /** The holder's own --lock-stale-seconds (0 when not recorded): it refreshes the lock at a quarter of it. */
        final double holderStaleSeconds;

        private Holder(String runId, String host, long pid, String started, long ageSeconds, String processStart,
                       double holderStaleSeconds) {
            this.runId = runId;
            this.host = host;
            this.pid = pid;
            this.started = started;
            this.ageSeconds = ageSeconds;
            this.processStart = processStart;
            this.holderStaleSeconds = holderStaleSeconds;
        }

        /** The holder, or null when there is no lock file. */
        static Holder read(FileSystem fs, Path path) throws IOException {
            FileStatus status;
            byte[] raw;
            try {
                status = fs.getFileStatus(path);
                try (InputStream in = fs.open(path)) {
                    raw = in.readAllBytes();
                }
            } catch (FileNotFoundException e) {
                return null;
            }
            long age = Math.max(0, (System.currentTimeMillis() - status.getModificationTime()) / 1000);
            try {
                JsonNode n = new ObjectMapper().readTree(new String(raw, StandardCharsets.UTF_8));
                return new Holder(n.path("runId").asText("?"), n.path("host").asText("?"), n.path("pid").asLong(-1),
                        n.path("started").asText("?"), age, n.path("processStart").asText("?"),
                        n.path("staleSeconds").asDouble(0));
            } catch (IOException e) {
                // being written by a non-local file system's create: judged by its age alone
                return new Holder("?", "?", -1, "?", age, "?", 0);
            }
        }

        /**
         * Why the lock is stale, or null when its holder may be alive. On the holder's own host the
         * process table decides: a holder whose process (pid and start time) still runs is never
         * stale, however long it went without a refresh (stopped with Ctrl-Z, or paused by the
         * machine), and one whose process is gone is stale at once. Elsewhere only the age can:
         * stale past the larger of this run's threshold and the holder's own, so a run started
         * with a small --lock-stale-seconds cannot take the lock of a live run refreshing at the
         * pace of a larger one.
         */
        String staleReason(double staleSeconds) {
            if (host.equals(hostName()) && pid > 0) {
                java.util.Optional<ProcessHandle> p = ProcessHandle.of(pid);
                if (p.isEmpty() || !p.get().isAlive()) {
                    return "that process is gone";
                }
                if (!"?".equals(processStart)) {
                    return processStart.equals(processStart(p.get())) ? null
                            : "that process is gone (its process id now names another process)";
                }
                // a lock that does not say when its process started: judged by its age, as below
            }
            double threshold = Math.max(staleSeconds, holderStaleSeconds);
            if (ageSeconds > threshold) {
                return "not refreshed for " + ageSeconds + " s";
            }
            return null;
        }
    }
}
