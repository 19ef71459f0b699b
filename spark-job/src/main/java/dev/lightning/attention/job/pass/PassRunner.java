package dev.lightning.attention.job.pass;

import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import org.apache.spark.SparkContext;
import org.apache.spark.api.java.JavaRDD;

import java.io.PrintStream;
import java.io.Serializable;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * How the driver runs a pass: one Spark job over a {@link WorkRDD} whose tasks each run a worker
 * over their items, with a progress line every --progress-seconds (its tokens: those of the ended
 * tasks and what the running ones had counted at their latest heartbeat, {@link InFlightCounts});
 * the tasks' reports are folded into the pass's {@link PassReport}, recorded with its time and
 * tokens for the run report.
 * Lightning's passes ({@link LightningPasses}) and softmax's
 * ({@code SoftmaxJob}) run through it.
 */
public final class PassRunner {
    /** Makes a pass's worker, given the accumulators its tasks count their pieces and tokens in. */
    public interface WorkerFactory<W> {
        WorkRDD.Worker<W> create(PassProgress progress);
    }

    private final SparkContext sc;
    private final JobConfig cfg;
    private final PrintStream out;
    /** What the tasks of each pass reported, by pass title (the driver's, for the run report). */
    private final Map<String, PassReport> reports;
    /**
     * Per pass: seconds, tokens computed, tokens kept by --resume, and 1 when it finished, 0 when it
     * failed (the driver's, for the run report).
     */
    private final Map<String, double[]> passes;

    public PassRunner(SparkContext sc, JobConfig cfg, PrintStream out, Map<String, PassReport> reports,
                      Map<String, double[]> passes) {
        this.sc = sc;
        this.cfg = cfg;
        this.out = out;
        this.reports = reports;
        this.passes = passes;
    }

    /**
     * Runs one pass (a Spark job) with progress lines; its task reports are folded into a
     * {@link PassReport}, recorded with its time and tokens for the run report.
     */
    public <W extends Serializable> PassReport run(String title, List<List<W>> work, List<List<String>> hosts,
                                                   long totalTokens, WorkerFactory<W> factory) {
        int totalItems = 0;
        for (List<W> w : work) {
            totalItems += w.size();
        }
        PassProgress progress = new PassProgress(sc, title);
        WorkRDD<W> rdd = new WorkRDD<>(sc, work, hosts, factory.create(progress));
        rdd.setName("lightning " + title);
        sc.setJobDescription("lightning " + title + " (" + totalItems + " items in " + work.size() + " partitions)");
        long start = System.nanoTime();
        int items = totalItems;
        // the line with these units done and tokens computed: the running tasks' too while the pass runs, the
        // accumulators' at its end
        java.util.function.BiFunction<Long, Long, String> line = (units, computed) -> {
            double s = (System.nanoTime() - start) / 1e9;
            // pieces of a pass, units of a scan stage (tasks that count none show 0 until the end)
            String base = String.format("lightning: %s: %d/%d done", title, units, items);
            long kept = progress.keptTokens();
            return totalTokens > 0
                    ? base + String.format(", %,d/%,d tokens%s, %s tokens/s, %.1f s",
                    computed + kept, totalTokens,
                    kept > 0 ? String.format(" (%,d kept from the interrupted run)", kept) : "",
                    rate(computed, s), s)
                    : base + String.format(", %.1f s", s);
        };
        ScheduledExecutorService ticker = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "lightning-progress");
            t.setDaemon(true);
            return t;
        });
        long period = Math.max(100, (long) (cfg.get(Settings.PROGRESS_SECONDS) * 1000));
        InFlightCounts inFlight = progress.inFlight();
        sc.addSparkListener(inFlight);
        // the accumulators' values too: never less than the ended tasks' (should the listener have missed an event)
        ticker.scheduleAtFixedRate(() -> out.println(line.apply(
                        Math.max(progress.units(), inFlight.value(PassProgress.UNITS)),
                        Math.max(progress.computedTokens(), inFlight.value(PassProgress.COMPUTED)))),
                period, period, TimeUnit.MILLISECONDS);
        PassReport result = new PassReport(title);
        boolean finished = false;
        try {
            // one small report per task; a pass has at most a few thousand tasks (see maxTasksPerPass)
            for (TaskReport r : JavaRDD.fromRDD(rdd, rdd.elementClassTag()).collect()) {
                result.add(r);
            }
            reports.put(title, result);
            finished = true;
        } finally {
            ticker.shutdownNow();
            sc.removeSparkListener(inFlight);
            sc.setJobDescription(null);
            // a failed pass too: the report of a failed run says how far it got (its finished tasks' tokens)
            passes.put(title, new double[] {(System.nanoTime() - start) / 1e9, progress.computedTokens(),
                    progress.keptTokens(), finished ? 1 : 0});
        }
        String done = line.apply(progress.units(), progress.computedTokens());
        if (totalTokens == 0) {
            done = String.format("lightning: %s: %d/%d done, %.1f s", title, items, items,
                    (System.nanoTime() - start) / 1e9);
        }
        out.println(done);
        return result;
    }

    /** Records a step of the driver's own that ran {@code seconds} after a pass, for the run report. */
    void record(String title, double seconds) {
        passes.put(title, new double[] {seconds, 0, 0, 1});
    }

    public static String rate(long tokens, double seconds) {
        double r = seconds > 0 ? tokens / seconds : 0;
        if (r >= 1e6) {
            return String.format("%.2f M", r / 1e6);
        }
        if (r >= 1e3) {
            return String.format("%.1f K", r / 1e3);
        }
        return String.format("%.0f", r);
    }

    /** The fewest tasks a pass is packed into: see {@link #maxTasksPerPass}. */
    static final int MIN_TASKS_PER_PASS = 1024;

    /**
     * The most tasks of pass 1 and pass 2: a plan with more partitions has consecutive ones packed
     * into this many tasks ({@link dev.lightning.attention.plan.PiecePlanner#pack}), each computing
     * its pieces one after the other (its consecutive pieces of a sequence are one unit of work,
     * with one staged file and one marker: {@link PieceItem#runs}). Per task Spark and the job
     * spend about 16 ms of a core (1,000 one-piece tasks of 6,400 tokens, H = 1, D = 16: 16 s of
     * pass 1 on 2 cores, nearly all of it per-task cost), and the driver keeps scheduler state and
     * a report per task, so their number must not grow with the pieces. 4 tasks per core keep the cores
     * evenly busy to the end of a pass; at least 1,024, so plans of up to 1,024 partitions run
     * one task per partition, as before.
     */
    public static int maxTasksPerPass(int parallelism) {
        String forced = System.getProperty(MAX_TASKS_PROPERTY);
        if (forced != null) {
            return Integer.parseInt(forced.trim());
        }
        return Math.max(MIN_TASKS_PER_PASS, 4 * parallelism);
    }

    /**
     * A system property that sets {@link #maxTasksPerPass}, read by the driver only: for tests, so
     * that a small input has tasks of many pieces (one staged file and marker per run of them).
     * Like the plan, it decides which files the run stages, so a run and its --resume must agree on
     * it (where they do not, the resumed run computes again what it cannot find).
     */
    static final String MAX_TASKS_PROPERTY = "lightning.test.maxTasks";
}
