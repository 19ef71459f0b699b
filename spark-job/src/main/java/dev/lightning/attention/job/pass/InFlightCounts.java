package dev.lightning.attention.job.pass;

import org.apache.spark.scheduler.AccumulableInfo;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerExecutorMetricsUpdate;
import org.apache.spark.scheduler.SparkListenerTaskEnd;
import org.apache.spark.scheduler.SparkListenerTaskStart;
import scala.Tuple4;
import scala.jdk.javaapi.CollectionConverters;

import java.util.HashMap;
import java.util.Map;

/**
 * What the tasks of a pass have counted, as the driver's progress line shows it while the pass
 * runs: the counts of its ended tasks and what its running tasks have counted so far, for a few
 * accumulators (a pass's units done and its computed tokens). Spark merges a task's accumulators
 * into the driver's only when the task ends, so with tasks of minutes the line stood at 0 until
 * the first ended; but every executor heartbeat (spark.executor.heartbeatInterval, also in local
 * mode) carries each running task's accumulators, which the driver posts as a
 * {@link SparkListenerExecutorMetricsUpdate}. This listener keeps the latest values per running
 * task, and forgets them when the task ends.
 *
 * <p>An ended task's counts are taken from its end event (what Spark merged for it: nothing for a
 * failed attempt, whose adds are dropped), not from the accumulators: they have them before this
 * listener hears of the end, and adding them to the running tasks' values counted the task twice
 * in between. The figures a pass reports at its end stay the accumulators'.
 */
final class InFlightCounts extends SparkListener {
    /** The accumulators followed; {@link #value} takes an index into this array. */
    private final long[] ids;
    /** Per running task: each accumulator's value in its latest heartbeat (0 before one). */
    private final Map<Long, long[]> running = new HashMap<>();
    private final long[] ended;

    InFlightCounts(long... accumulatorIds) {
        this.ids = accumulatorIds.clone();
        this.ended = new long[ids.length];
    }

    /** Accumulator {@code i}'s count over the ended tasks and the running ones at their latest heartbeat. */
    synchronized long value(int i) {
        long sum = ended[i];
        for (long[] v : running.values()) {
            sum += v[i];
        }
        return sum;
    }

    @Override
    public synchronized void onTaskStart(SparkListenerTaskStart start) {
        running.put(start.taskInfo().taskId(), new long[ids.length]);
    }

    @Override
    public synchronized void onExecutorMetricsUpdate(SparkListenerExecutorMetricsUpdate update) {
        for (Tuple4<Object, Object, Object, scala.collection.immutable.Seq<AccumulableInfo>> task
                : CollectionConverters.asJava(update.accumUpdates())) {
            // a heartbeat sent before its task ended may be heard after the end: only running tasks count
            long[] values = running.get((Long) task._1());
            if (values != null) {
                read(task._4(), values);
            }
        }
    }

    @Override
    public synchronized void onTaskEnd(SparkListenerTaskEnd end) {
        running.remove(end.taskInfo().taskId());
        long[] values = new long[ids.length];
        read(end.taskInfo().accumulables(), values);
        for (int i = 0; i < ids.length; i++) {
            ended[i] += values[i];
        }
    }

    /** Sets {@code values[i]} to accumulator i's update among {@code infos}, where it has one (a heartbeat leaves out zeros). */
    private void read(scala.collection.immutable.Seq<AccumulableInfo> infos, long[] values) {
        for (AccumulableInfo info : CollectionConverters.asJava(infos)) {
            for (int i = 0; i < ids.length; i++) {
                if (info.id() == ids[i] && info.update().isDefined()) {
                    values[i] = ((Number) info.update().get()).longValue();
                }
            }
        }
    }
}
