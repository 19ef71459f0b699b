package dev.lightning.attention.job.pass;

import dev.lightning.attention.job.config.JobConfig;
import org.apache.spark.SparkConf;
import org.apache.spark.SparkContext;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The driver's progress line shows a running task's tokens before the task ends: they come with
 * the executor's heartbeats (here every 200 ms, in local mode), and the line stood at "0 tokens"
 * until the first task ended, which on the CPU backend with a long sequence took minutes. The tasks
 * here wait, in the middle of a unit, until a line shows what they have counted so far (or 30 s,
 * after which the assertions fail); a failed attempt's tokens are dropped, so the figures at the end
 * are exact.
 */
class ProgressLineTest {
    /** Every line the runner printed, in order; the tasks (in this JVM: local mode) wait on it. */
    private static final List<String> LINES = new ArrayList<>();

    private SparkContext sc;

    @AfterEach
    void stop() {
        if (sc != null) {
            sc.stop();
        }
        synchronized (LINES) {
            LINES.clear();
        }
    }

    private static SparkContext local(String master) {
        SparkConf conf = new SparkConf().setMaster(master).setAppName("progress-line-test")
                .set("spark.ui.enabled", "false")
                .set("spark.executor.heartbeatInterval", "200ms")
                // task reports go back through Kryo, as in a run (unregistered classes allowed here)
                .set("spark.serializer", "org.apache.spark.serializer.KryoSerializer");
        return new SparkContext(conf);
    }

    /** A stream whose every line goes to {@link #LINES}. */
    private static PrintStream lines() {
        return new PrintStream(new ByteArrayOutputStream() {
            @Override
            public synchronized void flush() {
                String s = toString(StandardCharsets.UTF_8);
                int end = s.lastIndexOf('\n');
                if (end >= 0) {
                    synchronized (LINES) {
                        for (String line : s.substring(0, end).split("\n")) {
                            LINES.add(line);
                        }
                        LINES.notifyAll();
                    }
                    reset();
                    byte[] rest = s.substring(end + 1).getBytes(StandardCharsets.UTF_8);
                    write(rest, 0, rest.length);
                }
            }
        }, true, StandardCharsets.UTF_8);
    }

    /** Waits until a line holds {@code fragment}; whether one did within 30 s. */
    static boolean awaitLine(String fragment) throws InterruptedException {
        long until = System.nanoTime() + 30_000_000_000L;
        synchronized (LINES) {
            while (LINES.stream().noneMatch(l -> l.contains(fragment))) {
                long left = (until - System.nanoTime()) / 1_000_000;
                if (left <= 0) {
                    return false;
                }
                LINES.wait(left);
            }
            return true;
        }
    }

    private static List<String> printed() {
        synchronized (LINES) {
            return new ArrayList<>(LINES);
        }
    }

    private static JobConfig progressEvery100ms() {
        return JobConfig.resolve(Map.of("--input", "in", "--output", "out", "--progress-seconds", "0.1"), Map.of(),
                k -> null);
    }

    /** What a task of the pass does with its items (1,000 tokens each) and the pass's counters, before it reports. */
    private interface Body extends java.io.Serializable {
        void run(PassProgress progress, List<Integer> items, org.apache.spark.TaskContext ctx) throws Exception;
    }

    /**
     * Runs pass {@code title} over {@code work} in a local Spark ({@code master}) with a line every 100 ms, each
     * task running {@code body}; the figures the runner recorded for the run report, by pass.
     */
    private Map<String, double[]> run(String master, String title, List<List<Integer>> work, long totalTokens,
                                      Body body) {
        sc = local(master);
        Map<String, double[]> passes = new HashMap<>();
        new PassRunner(sc, progressEvery100ms(), lines(), new HashMap<>(), passes).run(title, work, null, totalTokens,
                progress -> (items, ctx) -> {
                    body.run(progress, items, ctx);
                    return TaskReport.ofTask(title, ctx, items.size(), 1_000L * items.size(), null, null, "gpu",
                            System.nanoTime(), List.of(), 0, 0, List.of());
                });
        return passes;
    }

    /**
     * A task of several pieces (consecutive pieces of a sequence are one task's) shows each piece done
     * as it ends, not all of them when the task does.
     */
    @Test
    void aRunningTasksFinishedPiecesShowBeforeItEnds() throws Exception {
        run("local[1]", "t", List.of(List.of(0, 1)), 2_000, (progress, items, ctx) -> {
            for (int item : items) {
                PassProgress.Computing unit = progress.computing(1_000);
                if (item == 1) {
                    awaitLine("1/2 done, 1,000/2,000 tokens"); // the first piece, done, while the task runs
                }
                unit.done();
            }
        });
        List<String> lines = printed();
        assertTrue(lines.stream().anyMatch(l -> l.contains("lightning: t: 1/2 done, 1,000/2,000 tokens")),
                "a line with the first piece done before its task ended: " + lines);
        assertTrue(lines.get(lines.size() - 1).startsWith("lightning: t: 2/2 done, 2,000/2,000 tokens"), lines.toString());
        assertFalse(lines.stream().anyMatch(l -> l.contains(" 3/2 done") || l.contains(" 4/2 done")),
                "no piece counted twice: " + lines);
    }

    @Test
    void aRunningTasksTokensShowBeforeItEndsBesideTheEndedTasks() throws Exception {
        // two tasks of one unit of 1,000 tokens, one after the other: the first ends at once, the second
        // counts 300 and waits until the line shows them beside the first's 1,000, with neither unit done
        Map<String, double[]> passes = run("local[1]", "t", List.of(List.of(0), List.of(1)), 2_000,
                (progress, items, ctx) -> {
            PassProgress.Computing unit = progress.computing(1_000);
            if (items.get(0) == 1) {
                unit.accept(300);
                unit.accept(0);
                awaitLine("1/2 done, 1,300/2,000 tokens");
            }
            unit.accept(2_000); // more than the unit holds: it counts its own 1,000 only
            unit.done();
        });
        List<String> lines = printed();
        assertTrue(lines.stream().anyMatch(l -> l.contains("lightning: t: 1/2 done, 1,300/2,000 tokens")),
                "a line with the running task's 300 tokens, before it ended: " + lines);
        assertTrue(lines.get(lines.size() - 1).startsWith("lightning: t: 2/2 done, 2,000/2,000 tokens"), lines.toString());
        assertEquals(2_000, passes.get("t")[1]);
        assertFalse(lines.stream().anyMatch(l -> l.contains(" 2,300/") || l.contains(" 3,000/")),
                "no task counted twice: " + lines);
    }

    @Test
    void aFailedAttemptsTokensAreForgottenAndTheRetryCountsOnce() throws Exception {
        // local[1,2]: a task may fail once
        Map<String, double[]> passes = run("local[1,2]", "t", List.of(List.of(0)), 1_000, (progress, items, ctx) -> {
            PassProgress.Computing unit = progress.computing(1_000);
            if (ctx.attemptNumber() == 0) {
                unit.accept(600);
                awaitLine("0/1 done, 600/1,000 tokens");
                throw new IllegalStateException("the first attempt fails after counting 600 tokens");
            }
            // were the failed attempt's 600 kept, the line would show 900
            unit.accept(300);
            awaitLine("0/1 done, 300/1,000 tokens");
            unit.accept(700);
            unit.done();
        });
        List<String> lines = printed();
        assertTrue(lines.stream().anyMatch(l -> l.contains("0/1 done, 600/1,000 tokens")),
                "the failed attempt's tokens while it ran: " + lines);
        assertTrue(lines.stream().anyMatch(l -> l.contains("0/1 done, 300/1,000 tokens")),
                "the retry's tokens alone, the failed attempt's forgotten: " + lines);
        assertFalse(lines.stream().anyMatch(l -> l.contains(" 900/")), lines.toString());
        assertTrue(lines.get(lines.size() - 1).startsWith("lightning: t: 1/1 done, 1,000/1,000 tokens"),
                lines.toString());
        assertEquals(1_000, passes.get("t")[1]);
    }

    /**
     * A softmax item's tokens are a share of its query piece's, counted from its key blocks' pairs
     * ({@link PassProgress.Computing#inProportion}): they counted only at the item's end, so a softmax
     * pass of long items showed "0 tokens" as lightning's did. A unit of 1,000 tokens and 3 pairs,
     * told 1 pair: the line shows 333 while it runs; told all 3 it holds 1,000, and a fourth (an item
     * computed again) adds nothing.
     */
    @Test
    void aUnitCountedInProportionToItsWorkShowsItsShareWhileItRuns() throws Exception {
        Map<String, double[]> passes = run("local[1]", "softmax", List.of(List.of(0)), 1_000, (progress, items, ctx) -> {
            PassProgress.Computing unit = progress.computing(1_000);
            java.util.function.LongConsumer pairs = unit.inProportion(3);
            pairs.accept(1);
            awaitLine("0/1 done, 333/1,000 tokens");
            pairs.accept(2);
            awaitLine("0/1 done, 1,000/1,000 tokens");
            pairs.accept(1);
            unit.done();
        });
        List<String> lines = printed();
        assertTrue(lines.stream().anyMatch(l -> l.contains("0/1 done, 333/1,000 tokens")),
                "the share of the first pair's work, before the unit ended: " + lines);
        assertTrue(lines.stream().anyMatch(l -> l.contains("0/1 done, 1,000/1,000 tokens")),
                "all of the unit's tokens once all its pairs are told: " + lines);
        assertTrue(lines.get(lines.size() - 1).startsWith("lightning: softmax: 1/1 done, 1,000/1,000 tokens"),
                lines.toString());
        assertEquals(1_000, passes.get("softmax")[1]);
    }
}
