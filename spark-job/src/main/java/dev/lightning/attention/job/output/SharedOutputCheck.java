package dev.lightning.attention.job.output;

import dev.lightning.attention.job.hadoop.HadoopConf;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.SparkContext;
import org.apache.spark.SparkEnv;
import org.apache.spark.api.java.JavaSparkContext;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import java.util.UUID;

/**
 * Before the first pass on a cluster: do the executors see --output as the driver does? Every
 * later step relies on it (executors write in place into files the driver created, read states
 * other executors staged; the driver commits what they wrote), and where it does not hold (a
 * local directory on each host instead of shared storage) the run used to fail only when the first
 * such file was missing, after pass 1 had run, and at some of those steps with a bare
 * FileNotFoundException.
 * <p>
 * The check, one small Spark job: the driver writes a random token to {@code shared-check/driver}
 * in the run's staging directory; one task per core (at most {@link #MAX_TASKS}) reads it and
 * writes its own reply, {@code shared-check/task-I}, holding the token and its host; the driver
 * reads every reply. A file missing on either side is an {@link UnsharedOutputException}, raised
 * before anything is computed. The tasks land on the executors present at the time, so an executor
 * that joins later is not covered: the later steps keep their own explanations of the same failure.
 * Local masters skip it (one process, one view) unless the system property {@link #ALWAYS} is set,
 * which tests use with a file system seen differently by task threads.
 */
public final class SharedOutputCheck {
    /** At most this many tasks: one per core covers every executor present on most clusters. */
    static final int MAX_TASKS = 1024;
    /** A system property that runs the check under a local master too (tests). */
    public static final String ALWAYS = "lightning.test.sharedOutputCheck";

    private SharedOutputCheck() {
    }

    /** Whether a run on {@code sc} checks its --output before the first pass. */
    public static boolean wanted(SparkContext sc) {
        return !sc.isLocal() || Boolean.getBoolean(ALWAYS);
    }

    /**
     * Runs the check in {@code staging} (see the class comment) and prints one line saying what it
     * saw; throws {@link UnsharedOutputException} where a side does not find the other's file.
     */
    public static void run(SparkContext sc, FileSystem fs, Staging staging, PrintStream out) throws IOException {
        long start = System.nanoTime();
        Path dir = staging.sharedCheck();
        fs.delete(dir, true); // an interrupted attempt's, of this same run (--resume): the run's own directory
        String token = UUID.randomUUID().toString();
        try {
            check(sc, fs, staging, dir, token, out, start);
        } finally {
            try { // what the driver sees of it (executors that see another storage keep theirs there)
                fs.delete(dir, true);
            } catch (IOException e) { // the check's own files, inside the staging that the run removes or keeps whole
                out.println("lightning: warning: could not remove " + dir + ": " + e.getMessage());
            }
        }
    }

    private static void check(SparkContext sc, FileSystem fs, Staging staging, Path dir, String token, PrintStream out,
                              long start) throws IOException {
        Staging.writeAtomically(fs, new Path(dir, "driver"), "driver", token.getBytes(StandardCharsets.UTF_8));
        int tasks = Math.max(1, Math.min(MAX_TASKS, sc.defaultParallelism()));
        List<Integer> indices = new ArrayList<>(tasks);
        for (int i = 0; i < tasks; i++) {
            indices.add(i);
        }
        HadoopConf hadoop = new HadoopConf(sc.hadoopConfiguration());
        sc.setJobDescription("lightning: do the executors see --output? (" + tasks + " tasks)");
        List<String> replies;
        try {
            replies = JavaSparkContext.fromSparkContext(sc).parallelize(indices, tasks)
                    .map(i -> reply(hadoop, staging, token, i)).collect();
        } finally {
            sc.setJobDescription(null);
        }
        TreeSet<String> hosts = new TreeSet<>();
        TreeSet<String> executors = new TreeSet<>();
        for (String r : replies) {
            String[] f = r.split("\t", 3); // path, host, executor
            Path reply = new Path(f[0]);
            String seen;
            try (FSDataInputStream in = fs.open(reply)) {
                seen = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            } catch (FileNotFoundException e) {
                throw UnsharedOutputException.onDriver("the check file", reply, e);
            }
            if (!seen.startsWith(token + "\t")) {
                throw UnsharedOutputException.onDriver("the check file", reply, null);
            }
            hosts.add(f[1]);
            executors.add(f[2]);
        }
        out.printf("lightning: --output is shared storage: %d executor%s on %d host%s saw the driver's check file, "
                        + "and the driver theirs (%.1f s)%n", executors.size(), executors.size() == 1 ? "" : "s",
                hosts.size(), hosts.size() == 1 ? "" : "s", (System.nanoTime() - start) / 1e9);
    }

    /**
     * A task of the check: reads the driver's token and writes task {@code i}'s reply beside it;
     * returns the reply's path, host and executor id, tab-separated.
     */
    private static String reply(HadoopConf hadoop, Staging staging, String token, int i) throws IOException {
        Path dir = staging.sharedCheck();
        Path driver = new Path(dir, "driver");
        FileSystem fs = driver.getFileSystem(hadoop.get());
        String seen;
        try (FSDataInputStream in = fs.open(driver)) {
            seen = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (FileNotFoundException e) {
            throw UnsharedOutputException.onExecutor("the check file", driver, e);
        }
        if (!seen.equals(token)) { // a file of the same name, but not the one this run's driver wrote
            throw UnsharedOutputException.onExecutor("the check file", driver, null);
        }
        String host = java.net.InetAddress.getLocalHost().getHostName();
        String executor = SparkEnv.get().executorId();
        Path reply = new Path(dir, "task-" + i);
        Staging.writeAtomically(fs, reply, "task-" + i, (token + "\t" + host + "\t" + executor)
                .getBytes(StandardCharsets.UTF_8));
        return reply + "\t" + host + "\t" + executor;
    }
}
