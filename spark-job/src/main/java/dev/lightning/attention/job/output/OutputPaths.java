package dev.lightning.attention.job.output;

import dev.lightning.attention.job.hadoop.HadoopPaths;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;

/**
 * The two promises a publication makes about the places it writes, on the local file system where
 * they can be broken (HDFS has no symbolic links by default and replicates what it has closed):
 * <ul>
 *   <li><b>Inside the output.</b> A published name ({@code a/b/seq.safetensors}) lands in the
 *       output directory itself: each of its parent directories that exists is a real directory,
 *       not a symbolic link (a link could lead anywhere, an input directory included, whose files
 *       the publication would then replace) and not a file (the publication would fail half-way).
 *       {@link #problem} says what is in the way, before the commit point.</li>
 *   <li><b>On disk before it counts.</b> The staged files (and the staging's directories that
 *       name them) are forced to the device before the commit record is written, the record before any file is published, and the published
 *       directories before {@code _SUCCESS} ({@link #force}): after a power loss a directory never
 *       holds {@code _SUCCESS} beside files that were still only in the page cache, nor a commit
 *       record (empty, or listing nothing) for files that were never written.</li>
 * </ul>
 */
public final class OutputPaths {
    /**
     * The tables a table run writes into its output directory: o, final_states (which --initial-states reads back)
     * and, with --state-every, states. Named here, below job.tables (whose TableSchema takes them from here), so that
     * a run writing files names them without loading Spark SQL's classes.
     */
    public static final String O_TABLE = "o";
    public static final String FINAL_STATES_TABLE = "final_states";
    public static final String CHECKPOINTS_TABLE = "states";
    public static final List<String> TABLES = List.of(O_TABLE, FINAL_STATES_TABLE, CHECKPOINTS_TABLE);

    /**
     * The tables an earlier table run left in {@code output} (those of {@link #TABLES} there, each a directory holding
     * only what a table write leaves), which a run writing files with --overwrite moves aside with its own earlier
     * results. Left beside the new files they were stale, and their final_states/ made the directory unusable as
     * a files run's --initial-states. A directory holding anything else is a user's and stays.
     *
     * <p>Only where the directory's run report is a table run's (it records the input's {@code format}; a files run's
     * report has none), and {@code states/} only where that run recorded states (--state-every): a Parquet table the
     * user keeps under one of these common names looks like a table write's, and a files run with --overwrite deleted
     * it from a directory no table run had written. The last run published into the directory wrote its report, and a
     * table run moves aside (--overwrite) or refuses every table of these names it finds, so no earlier run's table
     * is left that the report does not account for; one put there since is the user's.
     */
    public static List<String> earlierTables(FileSystem fs, Path output) throws IOException {
        com.fasterxml.jackson.databind.node.ObjectNode report;
        try {
            report = Commit.readReport(fs, output, "--output " + output);
        } catch (dev.lightning.attention.stream.FormatVersion.TooNew e) {
            throw e; // a later build's report: which tables its run wrote is for that build to read
        } catch (dev.lightning.attention.tensor.InvalidInputException | java.io.FileNotFoundException e) {
            return List.of(); // not a report (a directory: "Is a directory"): no run's tables are known here
        }
        if (report == null || !report.path("format").isTextual()) {
            return List.of();
        }
        boolean recordedStates = !"0".equals(report.path("settings")
                .path(dev.lightning.attention.job.config.Settings.STATE_EVERY.key).asText("0"));
        List<String> found = new ArrayList<>();
        for (String t : TABLES) {
            Path at = HadoopPaths.child(output, t);
            if ((recordedStates || !t.equals(CHECKPOINTS_TABLE)) && isRealDirectory(fs, at)
                    && tableProblem(fs, at) == null) {
                found.add(t);
            }
        }
        return found;
    }

    private OutputPaths() {
    }

    /**
     * Why {@code name} cannot be published into {@code output}, or null when it can: one of its
     * parent directories below {@code output} is a symbolic link or is not a directory.
     */
    static String problem(FileSystem fs, Path output, String name) throws IOException {
        int slash = name.lastIndexOf('/');
        if (slash < 0) {
            return null; // straight into the output directory
        }
        String[] parents = name.substring(0, slash).split("/");
        Path at = output;
        for (String segment : parents) {
            at = HadoopPaths.child(at, segment);
            java.nio.file.Path p = HadoopPaths.localFile(fs, at);
            if (p != null) {
                if (Files.isSymbolicLink(p)) {
                    return at + " is a symbolic link; a result is published only into real directories inside the "
                            + "output directory (the link could lead to the input or any other directory)";
                }
                if (!Files.exists(p, LinkOption.NOFOLLOW_LINKS)) {
                    return null; // created by the publication, below a real directory
                }
                if (!Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS)) {
                    return at + " is a file where the output " + name + " needs a directory";
                }
            } else {
                if (!fs.exists(at)) {
                    return null;
                }
                if (!fs.getFileStatus(at).isDirectory()) {
                    return at + " is a file where the output " + name + " needs a directory";
                }
            }
        }
        return null;
    }

    /** Every problem of {@code names} ({@link #problem}), one line each. */
    static List<String> problems(FileSystem fs, Path output, List<String> names) throws IOException {
        return problems(fs, output, names, List.of());
    }

    /**
     * Every problem of publishing {@code files} and moving {@code replaces} aside (the other form
     * of the same outputs, with --overwrite), one line each: their parent directories
     * ({@link #problem}), and what stands at their own place. A file is published, and an old
     * file moved aside, only over a file (or a link, which is moved, never followed): a directory
     * there is a user's, and moving it aside would delete it with the staging. An old parts
     * directory ({@code NAME.parts}) is moved aside only when it holds part files alone. The lines
     * say what stands where and why it may not be replaced; what to do is the caller's to add (it
     * differs before compute and at the commit).
     */
    public static List<String> problems(FileSystem fs, Path output, List<String> files, List<String> replaces)
            throws IOException {
        return problems(fs, output, files, List.of(), replaces);
    }

    /**
     * The same, where {@code directories} are published as whole directories (a table run's
     * {@code o/}): only their parents are checked, and with --overwrite they replace the earlier
     * table of that name, as a file replaces a file.
     */
    static List<String> problems(FileSystem fs, Path output, List<String> files, List<String> directories,
                                 List<String> replaces) throws IOException {
        List<String> found = new ArrayList<>();
        List<String> all = new ArrayList<>(files);
        all.addAll(directories);
        all.addAll(replaces);
        for (String name : all) {
            String p = problem(fs, output, name);
            if (p == null && !directories.contains(name)) {
                Path at = HadoopPaths.child(output, name);
                p = TABLES.contains(name) && replaces.contains(name) && isRealDirectory(fs, at) ? tableProblem(fs, at)
                        : name.endsWith(dev.lightning.attention.stream.OutputParts.PARTS_SUFFIX) && replaces.contains(name)
                        ? partsProblem(fs, at) : fileProblem(fs, at);
            }
            if (p != null) {
                found.add(p);
            }
        }
        return found;
    }

    /** Part files' names in a parts directory: {@code STREAM-PPPPP-of-NNNNN.safetensors}. */
    private static final java.util.regex.Pattern PART = java.util.regex.Pattern.compile(
            "[A-Za-z0-9_]+-\\d{5,}-of-\\d{5,}\\.safetensors");

    /** Why a file cannot be published or moved aside at {@code at}: a directory stands there; or null. */
    private static String fileProblem(FileSystem fs, Path at) throws IOException {
        if (isRealDirectory(fs, at)) {
            return at + " is a directory where an output file goes; results replace files only";
        }
        return null;
    }

    /** Why an old parts directory at {@code at} may not be moved aside (it holds more than part files); or null. */
    private static String partsProblem(FileSystem fs, Path at) throws IOException {
        if (!isRealDirectory(fs, at)) {
            return exists(fs, at) && !isLink(fs, at) ? at + " is a file where an output's parts directory goes"
                    : null;
        }
        String foreign = foreignEntry(fs, at, PART);
        return foreign == null ? null : at + " holds " + foreign + ", which is not a part file of an earlier result; "
                + "it would be replaced with the directory";
    }

    /** The name of an entry of the directory {@code at} that is not a file whose name {@code ours} matches; or null. */
    private static String foreignEntry(FileSystem fs, Path at, java.util.regex.Pattern ours) throws IOException {
        for (org.apache.hadoop.fs.FileStatus f : fs.listStatus(at)) {
            if (!f.isFile() || !ours.matcher(f.getPath().getName()).matches()) {
                return f.getPath().getName();
            }
        }
        return null;
    }

    /**
     * What a table write leaves in its directory (Spark's Parquet writer through the local or a
     * checksummed file system): part files, {@code _SUCCESS} and the hidden checksums of both.
     */
    private static final java.util.regex.Pattern TABLE_FILE = java.util.regex.Pattern.compile(
            "part-[^/]*\\.parquet|_SUCCESS|\\.(part-[^/]*\\.parquet|_SUCCESS)\\.crc");

    /**
     * Why an earlier table at {@code at} (a table run's {@code o/}, {@code final_states/} or
     * {@code states/}) may not be replaced by --overwrite, which moves it aside whole and deletes it
     * with the staging: a file stands there, or the directory holds more than a table write leaves;
     * or null (nothing there, a link, which is moved and never followed, or an earlier table).
     */
    public static String tableProblem(FileSystem fs, Path at) throws IOException {
        if (!exists(fs, at) || isLink(fs, at)) {
            return null;
        }
        if (!isRealDirectory(fs, at)) {
            return at + " is a file where the run's table of that name goes; --overwrite replaces earlier tables "
                    + "only";
        }
        String foreign = foreignEntry(fs, at, TABLE_FILE);
        return foreign == null ? null : at + " holds " + foreign + ", which is not part of an earlier run's table; "
                + "--overwrite would delete it with the table";
    }

    private static boolean isRealDirectory(FileSystem fs, Path at) throws IOException {
        java.nio.file.Path p = HadoopPaths.localFile(fs, at);
        if (p != null) {
            return Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS);
        }
        return fs.exists(at) && fs.getFileStatus(at).isDirectory();
    }

    private static boolean isLink(FileSystem fs, Path at) {
        java.nio.file.Path p = HadoopPaths.localFile(fs, at);
        return p != null && Files.isSymbolicLink(p);
    }

    /**
     * Whether anything stands at {@code at}, a symbolic link counted as itself: {@code fs.exists}
     * follows a link, so one that leads nowhere (its target unmounted, moved, not yet written) would
     * count as no file, and a result published there would replace the user's link without --overwrite.
     */
    public static boolean exists(FileSystem fs, Path at) throws IOException {
        java.nio.file.Path p = HadoopPaths.localFile(fs, at);
        if (p != null) {
            return Files.exists(p, LinkOption.NOFOLLOW_LINKS);
        }
        return fs.exists(at);
    }

    /**
     * Forces {@code path} to the device: a file's data, or a directory's entries (and, for a
     * directory, every file and directory below it). Local file system only; a no-op elsewhere.
     */
    static void force(FileSystem fs, Path path) throws IOException {
        java.nio.file.Path p = HadoopPaths.localFile(fs, path);
        if (p == null || !Files.exists(p, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        if (Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS)) {
            try (java.util.stream.Stream<java.nio.file.Path> all = Files.walk(p)) {
                for (java.nio.file.Path q : (Iterable<java.nio.file.Path>) all::iterator) {
                    forceLocal(q);
                }
            }
        } else {
            forceLocal(p);
        }
    }

    /**
     * {@link #force} of every path, {@link #FORCE_THREADS} at a time: a device syncs many files
     * faster with several requests in flight, and the driver forces every staged output at the
     * commit. The first failure is thrown once all have been tried.
     */
    static void forceAll(FileSystem fs, List<Path> paths) throws IOException {
        if (!HadoopPaths.isLocal(fs) || paths.isEmpty()) {
            return;
        }
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(
                Math.min(FORCE_THREADS, paths.size()), r -> {
                    Thread t = new Thread(r, "lightning-commit-force");
                    t.setDaemon(true);
                    return t;
                });
        try {
            List<java.util.concurrent.Future<?>> done = new ArrayList<>();
            for (Path p : paths) {
                done.add(pool.submit(() -> {
                    force(fs, p);
                    return null;
                }));
            }
            IOException first = null;
            for (java.util.concurrent.Future<?> f : done) {
                try {
                    f.get();
                } catch (java.util.concurrent.ExecutionException e) {
                    IOException io = e.getCause() instanceof IOException x ? x : new IOException(e.getCause());
                    if (first == null) {
                        first = io;
                    } else {
                        first.addSuppressed(io);
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new java.io.InterruptedIOException("interrupted while forcing the staged outputs to disk");
                }
            }
            if (first != null) {
                throw first;
            }
        } finally {
            pool.shutdownNow();
        }
    }

    /** Files forced at once by {@link #forceAll}. */
    static final int FORCE_THREADS = 8;

    /** Forces {@code dir}'s own entries (names created, renamed or removed in it), not what lies below. */
    static void forceDirectory(FileSystem fs, Path dir) throws IOException {
        java.nio.file.Path p = HadoopPaths.localFile(fs, dir);
        if (p != null && Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS)) {
            forceLocal(p);
        }
    }

    /**
     * fsync of one file or directory. A read-only channel is enough on Linux and macOS (fsync
     * flushes the file, not the descriptor); a file system that cannot sync a directory says so
     * with an IOException, which is ignored for directories only.
     */
    private static void forceLocal(java.nio.file.Path p) throws IOException {
        if (Files.isSymbolicLink(p)) {
            return;
        }
        boolean dir = Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS);
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException e) {
            if (!dir) {
                throw e;
            }
        }
    }
}
