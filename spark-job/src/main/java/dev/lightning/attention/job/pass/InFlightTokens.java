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
 * The computed tokens of a pass as the driver's progress line shows them while it runs: those of
 * its ended tasks and those its running tasks have counted so far. Spark merges a task's
 * accumulators into the driver's only when the task ends, so with tasks of minutes the line stood
 * at 0 until the first ended; but every executor heartbeat (spark.executor.heartbeatInterval, also
 * in local mode) carries each running task's accumulators, which the driver posts as a
 * {@link SparkListenerExecutorMetricsUpdate}. This listener keeps the latest value of one
 * accumulator per running task, and forgets it when the task ends.
 *
 * <p>An ended task's tokens are taken from its end event (what Spark merged for it: nothing for a
 * failed attempt, whose adds are dropped), not from the accumulator: the accumulator has them
 * before this listener hears of the end, and adding it to the running tasks' values counted the
 * task twice in between. The figures a pass reports at its end stay the accumulators'.
 */
final class InFlightTokens extends SparkListener {
    private final long accumulatorId;
    /** Per running task: the accumulator's value in its latest heartbeat (0 before one). */
    private final Map<Long, Long> running = new HashMap<>();
    private long ended;

    InFlightTokens(long accumulatorId) {
        this.accumulatorId = accumulatorId;
    }

    /** The tokens of the ended tasks and what the running ones had counted at their latest heartbeat. */
    synchronized long tokens() {
        long sum = ended;
        for (long v : running.values()) {
            sum += v;
        }
        return sum;
    }

    @Override
    public synchronized void onTaskStart(SparkListenerTaskStart start) {
        running.put(start.taskInfo().taskId(), 0L);
    }

    @Override
    public synchronized void onExecutorMetricsUpdate(SparkListenerExecutorMetricsUpdate update) {
        for (Tuple4<Object, Object, Object, scala.collection.immutable.Seq<AccumulableInfo>> task
                : CollectionConverters.asJava(update.accumUpdates())) {
            long id = (Long) task._1();
            // a heartbeat sent before its task ended may be heard after the end: only running tasks count
            if (running.containsKey(id)) {
                Long v = valueOf(task._4());
                if (v != null) {
                    running.put(id, v);
                }
            }
        }
    }

    @Override
    public synchronized void onTaskEnd(SparkListenerTaskEnd end) {
        running.remove(end.taskInfo().taskId());
        Long v = valueOf(end.taskInfo().accumulables());
        if (v != null) {
            ended += v;
        }
    }

    /** This accumulator's update among {@code infos}, or null where it has none (a heartbeat leaves out zeros). */
    private Long valueOf(scala.collection.immutable.Seq<AccumulableInfo> infos) {
        for (AccumulableInfo info : CollectionConverters.asJava(infos)) {
            if (info.id() == accumulatorId && info.update().isDefined()) {
                return ((Number) info.update().get()).longValue();
            }
        }
        return null;
    }
}
