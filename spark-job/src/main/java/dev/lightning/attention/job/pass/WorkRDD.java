package dev.lightning.attention.job.pass;

import dev.lightning.attention.job.exec.ExecutorMemory;
import dev.lightning.attention.job.failure.ExplainedFailure;
import org.apache.spark.Partition;
import org.apache.spark.SparkContext;
import org.apache.spark.TaskContext;
import org.apache.spark.rdd.RDD;
import scala.collection.Iterator;
import scala.collection.immutable.Seq;
import scala.jdk.javaapi.CollectionConverters;
import scala.reflect.ClassTag$;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;

/**
 * An RDD whose partitions carry their work: each {@link WorkPartition} holds the items (pieces
 * with whatever they need, such as where their incoming state is) that its task computes, the way
 * ZippedWithIndexRDD carries each partition's start index. The result of a task is its report.
 *
 * @param <W> a work item
 */
public final class WorkRDD<W extends Serializable> extends RDD<TaskReport> {
    private static final long serialVersionUID = 1L;

    /** Computes one partition's items on an executor. */
    public interface Worker<W> extends Serializable {
        TaskReport run(List<W> items, TaskContext context) throws Exception;
    }

    /**
     * The work and preferred hosts of every partition, read on the driver only (by
     * {@link #getPartitions} and {@link #getPreferredLocations}). Transient: the RDD object goes to
     * every task in its closure, and with these fields each task would deserialize the whole plan,
     * work quadratic in the partitions (measured before this: 100,000 one-piece partitions ran at
     * about 3 tasks/s on the 2-core VM, the driver JVM holding 2.8 GB after a collection).
     * Each task gets its own items through its {@link WorkPartition}.
     */
    private final transient List<List<W>> work;
    private final transient List<List<String>> hosts;
    private final Worker<W> worker;

    @SuppressWarnings("unchecked")
    WorkRDD(SparkContext sc, List<List<W>> work, List<List<String>> hosts, Worker<W> worker) {
        super(sc, (Seq<org.apache.spark.Dependency<?>>) (Seq<?>) scala.collection.immutable.Nil$.MODULE$,
                ClassTag$.MODULE$.apply(TaskReport.class));
        this.work = work;
        this.hosts = hosts;
        this.worker = worker;
    }

    @Override
    public Iterator<TaskReport> compute(Partition split, TaskContext context) {
        @SuppressWarnings("unchecked")
        WorkPartition<W> p = (WorkPartition<W>) split;
        // a pass is one stage: its heap figures start with its first task in this JVM
        ExecutorMemory.taskStarts("stage " + context.stageId());
        try {
            TaskReport report = worker.run(p.items, context);
            return CollectionConverters.asScala(List.of(report).iterator());
        } catch (RuntimeException e) {
            throw e;
        } catch (Exception e) {
            throw new RuntimeException(e.getMessage(), e);
        } catch (OutOfMemoryError e) {
            if (!org.apache.spark.SparkContext$.MODULE$.DRIVER_IDENTIFIER().equals(org.apache.spark.SparkEnv.get().executorId())) {
                throw e; // an executor of a cluster: Spark ends it and the task goes to another, as it should
            }
            // In local mode the tasks run in the driver's JVM, where Spark's handler of a fatal error ended the
            // whole run at once with exit status 52, its traces on every task thread and no word of what to raise;
            // the task's windows are gone with the task, so the driver can fail the run as for any task failure. The
            // error goes along suppressed, not as the cause: Spark looks for a fatal error down the cause chain too
            // (spark.executor.killOnFatalError.depth) and stopped the SparkContext under the job for it
            ExplainedFailure failure = new ExplainedFailure("a task ran out of memory in the driver's JVM, which runs "
                    + "the tasks in local mode (" + e.getMessage() + "); give it more (bin/lightning: "
                    + "LIGHTNING_DRIVER_MEMORY=8g; the CPU windows are direct memory, capped at the heap's size), or "
                    + "hold less at once: a smaller --window-bytes, or fewer tasks at a time (--master local[N]); then "
                    + "rerun with --resume", null);
            failure.addSuppressed(e);
            throw failure;
        }
    }

    @Override
    public Partition[] getPartitions() {
        Partition[] out = new Partition[work.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = new WorkPartition<>(i, new ArrayList<>(work.get(i)));
        }
        return out;
    }

    @Override
    public Seq<String> getPreferredLocations(Partition split) {
        List<String> h = hosts == null ? List.of() : hosts.get(split.index());
        return CollectionConverters.asScala(h).toList();
    }

    /** A partition and the work it carries. */
    static final class WorkPartition<W extends Serializable> implements Partition {
        private static final long serialVersionUID = 1L;
        private final int index;
        final ArrayList<W> items;

        WorkPartition(int index, ArrayList<W> items) {
            this.index = index;
            this.items = items;
        }

        @Override
        public int index() {
            return index;
        }

        @Override
        public int hashCode() {
            return index;
        }

        @Override
        public boolean equals(Object o) {
            return o == this;
        }
    }
}
