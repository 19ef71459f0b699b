package dev.lightning.attention.job.softmax;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.hadoop.HadoopConf;
import dev.lightning.attention.job.input.SequenceFiles;
import dev.lightning.attention.job.output.SplitOutputs;
import dev.lightning.attention.job.output.Staging;
import dev.lightning.attention.job.pass.PassReport;
import dev.lightning.attention.job.pass.PassRunner;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.plan.SoftmaxPlanner;
import dev.lightning.attention.stream.OutputLayout;
import dev.lightning.attention.stream.SequenceFile;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * The driver side of a softmax run ({@code --attention softmax}): its plan ({@link SoftmaxPlanner}
 * over the pieces lightning's planner cut) and its passes (its options are checked with the
 * others, in {@link JobConfig}, and its inputs' headers read with lightning's,
 * {@link SequenceFiles#inspectSoftmax}):
 * <ol>
 *   <li>blocks: the work items, in tasks of about equal cost;</li>
 *   <li>merge: per query piece split over several items, their partials folded in ascending key
 *       order.</li>
 * </ol>
 * Each piece of a split sequence writes its rows as its share of the sequence's output
 * ({@link SplitOutputs}: in place, as parts that the driver joins with a concat, or as parts with
 * an index); the driver prepares and finishes those outputs as it does lightning's. The lock,
 * staging, commit and report are {@code LightningJob}'s. Like it, the
 * driver holds file headers and the plan, never a tensor.
 */
public final class SoftmaxJob {
    private final JobConfig cfg;
    private final HadoopConf hadoop;
    private final Staging staging;
    private final List<SequenceFile> files;
    private final List<List<Piece>> pieces;
    private final SoftmaxPlanner.Plan plan;
    private final PrintStream out;

    public SoftmaxJob(JobConfig cfg, HadoopConf hadoop, Staging staging, List<SequenceFile> files,
                      List<List<Piece>> pieces, PrintStream out) {
        this.cfg = cfg;
        this.hadoop = hadoop;
        this.staging = staging;
        this.files = files;
        this.pieces = pieces;
        this.plan = plan(cfg, files, pieces);
        this.out = out;
    }

    // ---------------------------------------------------------------- the plan

    /**
     * The plan: the work items of every sequence in about as many equal-cost tasks as lightning has
     * partitions, a pair costing Hq (Dk + Dv) multiply-adds.
     */
    static SoftmaxPlanner.Plan plan(JobConfig cfg, List<SequenceFile> files, List<List<Piece>> pieces) {
        long[] weights = new long[files.size()];
        for (int i = 0; i < weights.length; i++) {
            SequenceFile f = files.get(i);
            weights[i] = (long) f.layout().headsQ() * (f.layout().dk() + f.layout().dv());
        }
        refuseUncountableUnits(cfg, files, pieces, weights);
        return new SoftmaxPlanner(cfg.get(Settings.WINDOW)).plan(pieces, weights, pieces.size());
    }

    /**
     * The planner counts a unit's cost (a query piece against a key piece: up to P^2 pairs for pieces of P tokens,
     * Hq (Dk + Dv) each) in a long; pieces so long that it would pass 2^63 (P above 23 million tokens at Hq = 64,
     * D = 128; --partition-tokens is the piece size) are refused here, before Spark starts, with the largest piece that
     * fits, instead of an overflow in the planner. Such a unit would be hours of one task anyway.
     */
    static void refuseUncountableUnits(JobConfig cfg, List<SequenceFile> files, List<List<Piece>> pieces,
                                       long[] weights) {
        for (List<Piece> partition : pieces) {
            for (Piece p : partition) {
                double cost = (double) p.tokens() * p.tokens() * weights[p.sequence()];
                if (cost >= 0x1p63) {
                    long most = (long) Math.sqrt(Long.MAX_VALUE / (double) weights[p.sequence()]);
                    most -= most % cfg.chunkSize();
                    throw new dev.lightning.attention.tensor.InvalidInputException("--partition-tokens "
                            + cfg.get(Settings.PARTITION_TOKENS) + " with --attention softmax: "
                            + files.get(p.sequence()).name + " gets pieces of " + p.tokens() + " tokens, and a piece "
                            + "against itself costs " + String.format("%.3g", cost) + " multiply-adds (Hq (Dk + Dv) = "
                            + weights[p.sequence()] + " a query-key pair), more than the planner counts (2^63); use "
                            + "--partition-tokens " + most + " or less (the default, 65536, keeps each task's work "
                            + "small)");
                }
            }
        }
    }

    /**
     * Bytes a softmax run stages, for the free-space check: every output file (a split sequence's
     * pieces write their shares of it, no copy) and the partials of the items that need a merge.
     */
    public static long bytesToStage(JobConfig cfg, List<SequenceFile> files, List<List<Piece>> pieces) {
        long need = 0;
        for (SequenceFile f : files) {
            need += f.tokens * SoftmaxTasks.rowBytes(f, cfg) + 4096;
        }
        for (List<SoftmaxPlanner.Block> m : plan(cfg, files, pieces).merges) {
            SequenceFile f = files.get(m.get(0).query.sequence());
            need += m.size() * (long) m.get(0).query.tokens() * 4L * f.layout().headsQ() * (f.layout().dv() + 1);
        }
        return need;
    }

    /** How even the plan is, for the run report. */
    public ObjectNode planReport() {
        ObjectNode n = new ObjectMapper().createObjectNode();
        n.put("window", cfg.get(Settings.WINDOW));
        n.put("tasks", plan.tasks.size());
        n.put("items", plan.items());
        n.put("mergedQueryPieces", plan.merges.size());
        n.put("costUnit", "multiply-adds: visible (query, key) pairs x Hq (Dk + Dv)");
        n.put("totalCost", plan.totalCost);
        n.put("maxTaskCost", plan.maxTaskCost);
        n.put("meanTaskCost", plan.meanTaskCost());
        n.put("minTaskCost", plan.minTaskCost);
        n.put("maxOverMean", plan.imbalance());
        return n;
    }

    // ---------------------------------------------------------------- the passes

    /** Pass 1: the work items. Returns the pass's report (the driver reads skipped sequences from it). */
    public PassReport blocks(PassRunner runner) {
        out.printf("lightning: softmax attention: %d work items in %d tasks, %d query pieces merged; task cost "
                        + "max/mean %.3f (max %.3g, mean %.3g multiply-adds)%n", plan.items(), plan.tasks.size(),
                plan.merges.size(), plan.imbalance(), (double) plan.maxTaskCost, plan.meanTaskCost());
        List<List<SoftmaxTasks.BlockItem>> work = new ArrayList<>();
        long tokens = 0;
        for (List<SoftmaxPlanner.Block> task : plan.tasks) {
            List<SoftmaxTasks.BlockItem> items = new ArrayList<>();
            for (SoftmaxPlanner.Block b : task) {
                items.add(new SoftmaxTasks.BlockItem(files.get(b.query.sequence()), b));
                tokens += b.tokens; // each query token once, shared among its items
            }
            work.add(items);
        }
        return runner.run("softmax 1/2: blocks", work, null, tokens,
                progress -> new SoftmaxTasks(hadoop, staging, cfg, progress).blocks());
    }

    /** Pass 2, the merges, for the sequences not skipped: its report, or none when nothing is left to merge. */
    public List<PassReport> merge(PassRunner runner, Set<Integer> skipped) {
        List<PassReport> reports = new ArrayList<>();
        List<List<SoftmaxTasks.MergeItem>> merges = new ArrayList<>();
        for (List<SoftmaxPlanner.Block> m : plan.merges) {
            int s = m.get(0).query.sequence();
            if (!skipped.contains(s)) {
                merges.add(List.of(new SoftmaxTasks.MergeItem(files.get(s), m)));
            }
        }
        if (!merges.isEmpty()) {
            reports.add(runner.run("softmax 2/2: merge", merges, null, 0,
                    progress -> new SoftmaxTasks(hadoop, staging, cfg, progress).merge()));
        }
        return reports;
    }

    /** The split sequences, whose pieces write their shares of the output ({@link SplitOutputs}): their pieces' tokens. */
    public Map<Integer, long[]> splitSequences() {
        Map<Integer, long[]> splits = new TreeMap<>();
        for (List<Piece> partition : pieces) {
            for (Piece p : partition) {
                if (p.isSplit()) {
                    splits.computeIfAbsent(p.sequence(), x -> new long[p.count()])[p.index()] = p.tokens();
                }
            }
        }
        return splits;
    }

    /** The layout of sequence {@code s}'s output file, as its pieces write it. */
    public OutputLayout outputLayout(int s) {
        return SoftmaxTasks.outputLayout(files.get(s), cfg);
    }
}
