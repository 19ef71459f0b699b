package dev.lightning.attention.job.tables;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.exec.FaultPoints;
import dev.lightning.attention.job.tables.TablePass2.Out;
import dev.lightning.attention.job.tables.TableShuffle.Block;
import dev.lightning.attention.job.tables.TableShuffle.Key;
import dev.lightning.attention.job.tables.TableShuffle.KeyOrder;
import dev.lightning.attention.job.tables.TableShuffle.TaskPartitioner;
import dev.lightning.attention.tensor.DType;
import org.apache.spark.api.java.JavaPairRDD;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.storage.StorageLevel;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

import static dev.lightning.attention.job.tables.TableSchema.*;

/**
 * Lightning attention over tables, as Spark transformations with no files between the passes: the
 * plan of a run's transformations, from the checked tables to the output datasets. In order:
 * <ol>
 *   <li><b>the shuffle</b> ({@link TableShuffle}): block rows (and initial states) keyed by
 *       (sequence, start), cut at the {@link TablePlan}'s piece boundaries and sorted into the
 *       plan's tasks in token order; it runs once, and both passes read its output;
 *   <li><b>pass 1</b> ({@link TablePass1}, only when a sequence is split): each piece but a
 *       sequence's last computes its local state;
 *   <li><b>the scan</b> ({@link TableScan}): each sequence's local states folded in piece order
 *       into its pieces' incoming states, which reach their pass-2 tasks through a small shuffle
 *       with the same partitioner and are zipped with the blocks;
 *   <li><b>pass 2</b> ({@link TablePass2}): o of every block and each sequence's final state;
 *   <li><b>the write</b> (here): pass 2's records as rows of the output tables
 *       ({@link TableSchema#O_BLOCKS}, {@link TableSchema#FINAL_STATES} and, with --state-every,
 *       {@link TableSchema#CHECKPOINTS}), with the stored rows of sequences not computed carried
 *       into the final states.
 * </ol>
 * What every task shares (options, plan, backend, windows) is {@link TableTask}. Everything is a
 * function of the rows and the plan (the sort fixes the order, windows are cut at fixed places),
 * so a rerun or a retried task gives the same bytes.
 */
final class TableCompute {
    final JobConfig cfg;
    final TablePlan plan;
    private final TableTask task;

    TableCompute(JobConfig cfg, TablePlan plan) {
        this.cfg = cfg;
        this.plan = plan;
        this.task = new TableTask(cfg, plan);
    }

    /**
     * The outputs of a run, computed lazily: the o blocks, the final states and, with --state-every,
     * the recorded states (null without). Pass 2's records are kept (persisted) for the tables after
     * the first where that is cheaper than computing them again.
     */
    static final class Outputs {
        final JavaRDD<Out> all;
        final Dataset<Row> o;
        final Dataset<Row> finalStates;
        final Dataset<Row> checkpoints;

        Outputs(JavaRDD<Out> all, Dataset<Row> o, Dataset<Row> finalStates, Dataset<Row> checkpoints) {
            this.all = all;
            this.o = o;
            this.finalStates = finalStates;
            this.checkpoints = checkpoints;
        }
    }

    /**
     * The transformations of a run over {@code blocks} (conformed, validated), {@code sequences}
     * (conformed; null when there is none) and {@code stored}, the final states of an earlier run
     * (conformed and matched; null without --initial-states), as lazy datasets. A stored row of a
     * sequence computed here becomes its initial-state record, like a sequences-table state; the
     * others are carried into the final states unchanged (a union), so those are the complete set.
     */
    Outputs outputs(SparkSession spark, Dataset<Row> blocks, Dataset<Row> sequences, Dataset<Row> stored) {
        KeyOrder order = new KeyOrder();
        TaskPartitioner tasks = new TaskPartitioner(plan);
        TablePlan p = plan;
        TableTask t = task;
        JavaPairRDD<Key, Block> shuffled = TableShuffle.sorted(plan, blocks, sequences, stored,
                cfg.get(Settings.NORMALIZE));
        boolean anySplit = false;
        int splitCount = 0;
        for (int s = 0; s < plan.size(); s++) {
            if (plan.split(s)) {
                anySplit = true;
                splitCount++;
            }
        }
        JavaPairRDD<Key, byte[]> incoming = null;
        if (anySplit) {
            JavaPairRDD<Key, byte[]> local = shuffled.mapPartitionsToPair(it -> new TablePass1(t, it));
            local.setName("lightning tables: pass 1, local states");
            int scanPartitions = Math.max(1, Math.min(splitCount, spark.sparkContext().defaultParallelism()));
            incoming = local
                    .repartitionAndSortWithinPartitions(new TableScan.BySequence(scanPartitions), order)
                    .mapPartitionsToPair(it -> new TableScan(t, it))
                    .repartitionAndSortWithinPartitions(tasks, order);
            incoming.setName("lightning tables: scan, incoming states");
        }
        int every = Math.toIntExact(cfg.get(Settings.STATE_EVERY));
        DType[] oDtypes = new DType[plan.size()];
        long oBytes = 0;
        long stateBytes = 0;
        for (int s = 0; s < oDtypes.length; s++) {
            oDtypes[s] = cfg.outputDtype(plan.dtype[s]);
            AttentionSpec spec = task.spec(s);
            oBytes += plan.tokens[s] * spec.heads() * spec.dv() * oDtypes[s].bytes();
            stateBytes += (1 + Checkpoints.count(every, 0, plan.tokens[s])) * spec.stateBytes();
        }
        // The outputs are two Spark jobs over pass 2 (three with --state-every). Where o outweighs
        // the states (long sequences), pass 2 runs once and its outputs are kept for the later jobs;
        // where the states do (many short sequences: 512 KiB of state per sequence against 2 KiB of
        // o per token at H = 8, D = 128; or states recorded every few tokens), keeping them costs
        // more than computing them again (their serialization and spill to disk), so each later job
        // recomputes pass 2 from the same shuffle output (Spark reruns no shuffle), with the same bytes.
        // Computed again, each job's pass 2 makes records of its own kind only (TablePass2's kinds).
        boolean kept = oBytes > stateBytes;
        JavaRDD<Out> out = pass2(shuffled, incoming, Out.ALL);
        if (kept) {
            out = out.persist(StorageLevel.MEMORY_AND_DISK_SER());
        }
        JavaRDD<Out> oOut = kept ? out : pass2(shuffled, incoming, Out.bit(Out.O));
        JavaRDD<Out> statesOut = kept ? out : pass2(shuffled, incoming, Out.bit(Out.FINAL_STATE));
        JavaRDD<Row> oRows = oOut.filter(r -> r.kind == Out.O).map(r -> RowFactory.create(p.names[r.seq], r.start, r.tokens,
                oDtypes[r.seq].name(), p.heads(r.seq), p.dv[r.seq], r.data));
        String[] featureMaps = new String[plan.size()];
        for (int s = 0; s < featureMaps.length; s++) {
            featureMaps[s] = task.spec(s).featureMap().key();
        }
        JavaRDD<Row> stateRows = statesOut.filter(r -> r.kind == Out.FINAL_STATE).map(r -> {
            FaultPoints.reach("table-states");
            return RowFactory.create(p.names[r.seq], p.tokens[r.seq], p.heads(r.seq), p.dk[r.seq], p.dv[r.seq],
                    boxed(p.slopes[r.seq]), r.data, r.normalizer,
                    p.tokensBefore[r.seq] < 0 ? null : p.tokensBefore[r.seq] + p.tokens[r.seq], featureMaps[r.seq]);
        });
        Dataset<Row> finalStates = spark.createDataFrame(stateRows, FINAL_STATES.schema());
        if (stored != null) {
            // the stored rows of sequences this run does not compute (absent from its blocks, or
            // rejected with --skip-invalid: their stored state is still their latest), as they are
            finalStates = finalStates.union(stored.filter((org.apache.spark.api.java.function.FilterFunction<Row>)
                    r -> p.index(r.getString(0)) < 0));
        }
        Dataset<Row> checkpoints = null;
        if (every > 0) {
            // checkpoint c: the state after token (c+1)N - 1 of this run's blocks; in the chain of
            // runs, after token tokensBefore + (c+1)N - 1 (unknown where tokensBefore is)
            JavaRDD<Row> rows = (kept ? out : pass2(shuffled, incoming, Out.bit(Out.CHECKPOINT)))
                    .filter(r -> r.kind == Out.CHECKPOINT).map(r -> {
                        FaultPoints.reach("table-checkpoints");
                        return RowFactory.create(p.names[r.seq], (int) r.start, (r.start + 1) * every - 1,
                                p.tokensBefore[r.seq] < 0 ? null : p.tokensBefore[r.seq] + (r.start + 1) * every,
                                p.heads(r.seq), p.dk[r.seq], p.dv[r.seq], r.data, r.normalizer);
                    });
            checkpoints = spark.createDataFrame(rows, CHECKPOINTS.schema());
        }
        return new Outputs(out, spark.createDataFrame(oRows, O_BLOCKS.schema()), finalStates, checkpoints);
    }

    /**
     * Pass 2 over the shuffle's blocks (zipped with the incoming states of split sequences, when
     * there are any), returning records of {@code kinds} ({@link Out#bit}s).
     */
    private JavaRDD<Out> pass2(JavaPairRDD<Key, Block> shuffled, JavaPairRDD<Key, byte[]> incoming, int kinds) {
        TableTask t = task;
        JavaRDD<Out> out = incoming != null
                ? shuffled.zipPartitions(incoming, (a, b) -> new TablePass2(t, a, b, kinds))
                : shuffled.mapPartitions(it -> new TablePass2(t, it, Collections.emptyIterator(), kinds));
        out.setName("lightning tables: pass 2, outputs");
        return out;
    }

    /** An array column's value as a Row holds it: a Scala sequence. */
    static scala.collection.immutable.List<Double> boxed(double[] v) {
        List<Double> l = new ArrayList<>(v.length);
        for (double x : v) {
            l.add(x);
        }
        return scala.jdk.javaapi.CollectionConverters.asScala(l).toList();
    }
}
