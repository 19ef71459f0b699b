package dev.lightning.attention.job.pass;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * What the tasks of one pass reported, folded as they come so the driver keeps a bounded summary
 * however many tasks ran: counts and sums, task time percentiles, totals per executor, the
 * backends used, the sequences skipped for NaN/Inf, the slowest tasks, and every task's own row
 * only while the pass has at most {@link #TASK_ROWS} tasks (the report says when they are left out).
 * Per task it keeps one number (its time, for the percentiles).
 */
public final class PassReport {
    /** Per-task rows are listed in the run report up to this many tasks per pass. */
    static final int TASK_ROWS = 1000;
    /** The slowest tasks of a pass are always listed, this many. */
    static final int SLOWEST = 5;

    final String title;
    private int tasks;
    private long pieces;
    private long tokens;
    private int resumed;
    private long keptTokens;
    private long[] nanos = new long[16];
    /**
     * executor (host) to {tasks, pieces, tokens, nanos, then the largest of its tasks' heap figures:
     * pass before GC, pass after GC, JVM before GC, JVM after GC, heap max, collections}.
     */
    private final Map<String, long[]> executors = new TreeMap<>();
    private final Set<String> backends = new LinkedHashSet<>();
    /** Skip records by sequence: {count, first token} and the first position's text. */
    private final Map<Integer, long[]> skipCounts = new TreeMap<>();
    private final Map<Integer, String> skipFirst = new TreeMap<>();
    private List<TaskReport> rows = new ArrayList<>();
    private final List<TaskReport> slowest = new ArrayList<>();

    PassReport(String title) {
        this.title = title;
    }

    void add(TaskReport r) {
        if (tasks == nanos.length) {
            nanos = Arrays.copyOf(nanos, 2 * tasks);
        }
        nanos[tasks++] = r.nanos;
        pieces += r.pieces;
        tokens += r.tokens;
        resumed += r.resumed;
        keptTokens += r.keptTokens;
        long[] e = executors.computeIfAbsent(r.executor + " (" + r.host + ")",
                k -> new long[] {0, 0, 0, 0, -1, -1, -1, -1, -1, -1});
        e[0]++;
        e[1] += r.pieces;
        e[2] += r.tokens;
        e[3] += r.nanos;
        long[] heap = {r.passHeapBeforeGc, r.passHeapAfterGc, r.jvmHeapBeforeGc, r.jvmHeapAfterGc, r.heapMax,
                r.collections};
        for (int i = 0; i < heap.length; i++) {
            e[4 + i] = Math.max(e[4 + i], heap[i]);
        }
        if (!"-".equals(r.backend)) {
            backends.add(r.backend + "@" + r.device);
        }
        if (r.skipped != null) {
            for (String record : r.skipped) {
                // "sequence TAB first token TAB count TAB first position"
                String[] f = record.split("\t", 4);
                int sequence = Integer.parseInt(f[0]);
                long at = Long.parseLong(f[1]);
                long[] c = skipCounts.computeIfAbsent(sequence, k -> new long[] {0, Long.MAX_VALUE});
                c[0] += Long.parseLong(f[2]);
                if (at < c[1]) {
                    c[1] = at;
                    skipFirst.put(sequence, f[3]);
                }
            }
        }
        slowest.add(r);
        slowest.sort(Comparator.comparingLong((TaskReport t) -> t.nanos).reversed());
        if (slowest.size() > SLOWEST) {
            slowest.remove(SLOWEST);
        }
        if (rows != null) {
            rows.add(r);
            if (rows.size() > TASK_ROWS) {
                rows = null; // too many to list: the aggregates stand for them
            }
        }
    }

    public int resumed() {
        return resumed;
    }

    /** The tokens of the units kept from the interrupted run (--resume), which this run did not compute. */
    public long keptTokens() {
        return keptTokens;
    }

    public Set<String> backends() {
        return backends;
    }

    /** Sequences this pass dropped for NaN/Inf: sequence to {count, first token}. */
    public Map<Integer, long[]> skipCounts() {
        return skipCounts;
    }

    /** The first position of a sequence's NaN/Inf, as the task named it. */
    public String skipFirst(int sequence) {
        return skipFirst.get(sequence);
    }

    /** Adds this pass's figures to its entry of the report's {@code passes}. */
    public void describe(ObjectNode p) {
        p.put("tasks", tasks);
        p.put("pieces", pieces);
        p.put("resumed", resumed);
        long[] sorted = Arrays.copyOf(nanos, tasks);
        Arrays.sort(sorted);
        ObjectNode t = p.putObject("taskSeconds");
        long sum = 0;
        for (long n : sorted) {
            sum += n;
        }
        t.put("sum", sum / 1e9);
        if (tasks > 0) {
            t.put("min", sorted[0] / 1e9);
            t.put("p50", percentile(sorted, 0.50) / 1e9);
            t.put("p90", percentile(sorted, 0.90) / 1e9);
            t.put("p99", percentile(sorted, 0.99) / 1e9);
            t.put("max", sorted[tasks - 1] / 1e9);
        }
        ArrayNode ex = p.putArray("executors");
        long[] most = {-1, -1, -1, -1};
        executors.forEach((name, e) -> {
            ObjectNode n = ex.addObject().put("executor", name).put("tasks", e[0]).put("pieces", e[1])
                    .put("tokens", e[2]).put("taskSeconds", e[3] / 1e9);
            heap(n, e[4], e[5], e[6], e[7], e[8], e[9]);
            for (int i = 0; i < most.length; i++) {
                most[i] = Math.max(most[i], e[4 + i]);
            }
        });
        ObjectNode h = p.putObject("executorHeap");
        h.put("note", "from each executor JVM's garbage collection notifications, taken as its tasks ended; the "
                + "largest over the executors (in local mode the driver's JVM); 0: no collection in the pass");
        h.put("passPeakBeforeCollectionBytes", most[0]);
        h.put("passLargestAfterCollectionBytes", most[1]);
        h.put("jvmPeakBeforeCollectionBytes", most[2]);
        h.put("jvmLargestAfterCollectionBytes", most[3]);
        ArrayNode slow = p.putArray("slowestTasks");
        for (TaskReport r : slowest) {
            row(slow.addObject(), r);
        }
        p.put("taskRows", rows != null ? "listed in tasks"
                : "left out: " + tasks + " tasks, more than " + TASK_ROWS + "; see executors and slowestTasks");
    }

    /** An executor's heap figures (bytes; -1: its JVM reports no collections). */
    private static void heap(ObjectNode n, long passBefore, long passAfter, long jvmBefore, long jvmAfter, long max,
                             long collections) {
        ObjectNode h = n.putObject("heap");
        h.put("passPeakBeforeCollectionBytes", passBefore);
        h.put("passLargestAfterCollectionBytes", passAfter);
        h.put("jvmPeakBeforeCollectionBytes", jvmBefore);
        h.put("jvmLargestAfterCollectionBytes", jvmAfter);
        h.put("maxBytes", max);
        h.put("collections", collections);
    }

    /** Appends this pass's task rows to the report's {@code tasks}, when it kept them. */
    public void rows(ArrayNode ts) {
        if (rows == null) {
            return;
        }
        for (TaskReport r : rows) {
            row(ts.addObject(), r);
        }
    }

    private static void row(ObjectNode n, TaskReport r) {
        n.put("pass", r.pass);
        n.put("partition", r.partition);
        n.put("pieces", r.pieces);
        n.put("tokens", r.tokens);
        n.put("resumed", r.resumed);
        n.put("keptTokens", r.keptTokens);
        ArrayNode names = n.putArray("files");
        if (r.files != null) {
            for (String name : r.files) {
                names.add(name);
            }
        }
        n.put("backend", r.backend);
        n.put("device", r.device);
        n.put("host", r.host);
        n.put("executor", r.executor);
        n.put("gpuAddress", r.gpuAddress);
        n.put("millis", r.nanos / 1e6);
    }

    /** The nearest-rank percentile of sorted values. */
    static long percentile(long[] sorted, double q) {
        int rank = (int) Math.ceil(q * sorted.length);
        return sorted[Math.max(0, Math.min(sorted.length - 1, rank - 1))];
    }
}
