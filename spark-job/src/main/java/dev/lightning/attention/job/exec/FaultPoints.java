package dev.lightning.attention.job.exec;

/**
 * Named points of a run where a test can stop the process dead, to check that a run killed
 * there leaves the output directory as it was and can be resumed. With the system property
 * {@code lightning.test.pauseAt=NAME} (set on the JVM that reaches the point: the driver, which
 * in local mode also runs the tasks), the first thread to reach {@code NAME} prints
 * {@code lightning-test: paused at NAME} on standard error and sleeps until the process is
 * killed. Without the property every call is a no-op.
 *
 * <p>The points, in the order a run reaches them:
 * <ul>
 *   <li>{@code pass1}: a pass-1 task has staged the local state of its first piece;
 *   <li>{@code scan}: a scan task has staged its first state (a block summary, a carry or an
 *       incoming state: {@code BlockScan});
 *   <li>{@code pass2}: a pass-2 task has staged its first piece's output;
 *   <li>softmax runs instead of these three: {@code softmax-blocks} (a work item is staged),
 *       {@code softmax-merge} (a merged query piece's rows are staged);
 *   <li>table runs (job/tables) instead of these, reached in Spark tasks whose output is rows
 *       in memory, not staged files (a killed or failed table run keeps no work): {@code table-pass1}
 *       (a pass-1 task has computed a piece's local state), {@code table-scan} (a scan task has
 *       folded a sequence's local states into its pieces' incoming states), {@code table-pass2} (a
 *       pass-2 task has computed a piece's o blocks, or a batch of short sequences'; the o table's
 *       write job runs it), {@code table-states} (a final_states row is made, in that table's write
 *       job), {@code table-checkpoints} (a states/ row is made, with --state-every); then
 *       {@code commit} and {@code published} as for every run;
 *   <li>{@code assemble}: the last pass is done (lightning's pass 2, softmax's merge) and the driver
 *       has finished the outputs the pieces wrote (joined the parts with concat, or written the
 *       parts index; nothing to do in place); reached only when some output was written by pieces;
 *   <li>{@code commit}: the commit record is written and the first file was published;
 *   <li>{@code published}: every file is published, the report and {@code _SUCCESS} not yet.
 * </ul>
 */
public final class FaultPoints {
    static final String PROPERTY = "lightning.test.pauseAt";
    /**
     * {@code NAME:K}: the K-th time a thread of this JVM reaches {@code NAME}, it throws instead, so
     * that a run in one JVM (local mode) fails there like a task whose executor broke.
     */
    static final String FAIL_PROPERTY = "lightning.test.failAt";
    /** Per value of {@link #FAIL_PROPERTY}: how often its point was reached, so each value counts from zero. */
    private static final java.util.Map<String, java.util.concurrent.atomic.AtomicInteger> REACHED =
            new java.util.concurrent.ConcurrentHashMap<>();

    private FaultPoints() {
    }

    /**
     * A run starts: {@link #FAIL_PROPERTY}'s counts start again from zero, so "NAME:K" means the K-th
     * time this run reaches NAME, however many runs the same JVM (a test's) made before.
     */
    public static void newRun() {
        REACHED.clear();
    }

    public static void reach(String name) {
        String fail = System.getProperty(FAIL_PROPERTY);
        if (fail != null && fail.startsWith(name + ":")
                && REACHED.computeIfAbsent(fail, k -> new java.util.concurrent.atomic.AtomicInteger()).incrementAndGet()
                == Integer.parseInt(fail.substring(name.length() + 1))) {
            throw new IllegalStateException("lightning-test: failing at " + name + " as " + FAIL_PROPERTY + " asks");
        }
        String at = System.getProperty(PROPERTY);
        if (at == null || !at.equals(name)) {
            return;
        }
        synchronized (FaultPoints.class) {
            System.err.println("lightning-test: paused at " + name);
            System.err.flush();
            while (true) {
                try {
                    Thread.sleep(60_000);
                } catch (InterruptedException e) {
                    // only a kill ends the pause: an interrupted task must not go on and publish
                }
            }
        }
    }
}
