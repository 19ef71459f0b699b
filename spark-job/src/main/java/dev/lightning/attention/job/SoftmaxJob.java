package dev.lightning.attention.job;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lightning.attention.job.input.SequenceFiles;
import dev.lightning.attention.job.output.SplitOutputs;
import dev.lightning.attention.job.output.Staging;
import dev.lightning.attention.job.pass.PassReport;
import dev.lightning.attention.job.pass.PassRunner;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.plan.SoftmaxPlanner;
import dev.lightning.attention.stream.OutputLayout;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.tensor.InvalidInputException;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * The driver side of a softmax run ({@code --attention softmax}): its option checks (its inputs'
 * headers are read with lightning's: {@link SequenceFiles#inspectSoftmax}), its plan
 * ({@link SoftmaxPlanner} over the pieces lightning's planner cut) and its passes:
 * <ol>
 *   <li>blocks: the work items, in tasks of about equal cost;</li>
 *   <li>merge: per query piece split over several items, their partials folded in ascending key
 *       order.</li>
 * </ol>
 * Each piece of a split sequence writes its rows as its share of the sequence's output
 * ({@link SplitOutputs}: in place, as parts that the driver joins with a concat, or as parts with
 * an index); the driver prepares and finishes those outputs as it does lightning's. The lock,
 * staging, commit and report are {@link LightningJob}'s. Like it, the driver holds file headers
 * and the plan, never a tensor.
 */
final class SoftmaxJob {
    private final JobConfig cfg;
    private final HadoopConf hadoop;
    private final Staging staging;
    private final List<SequenceFile> files;
    private final List<List<Piece>> pieces;
    private final SoftmaxPlanner.Plan plan;
    private final PrintStream out;

    SoftmaxJob(JobConfig cfg, HadoopConf hadoop, Staging staging, List<SequenceFile> files, List<List<Piece>> pieces,
               PrintStream out) {
        this.cfg = cfg;
        this.hadoop = hadoop;
        this.staging = staging;
        this.files = files;
        this.pieces = pieces;
        this.plan = plan(cfg, files, pieces);
        this.out = out;
    }

    // ---------------------------------------------------------------- checks before any work

    /**
     * Refuses options of the other attention set to anything but their default (wherever they
     * came from): a softmax run has no feature map, normalization, recorded states, slopes or read-ahead, and a
     * lightning run no window or lse.
     */
    static void checkOptions(JobConfig cfg) {
        boolean softmax = cfg.softmax();
        for (Setting<?> s : softmax ? Settings.LIGHTNING_ONLY : Settings.SOFTMAX_ONLY) {
            Object v = cfg.get(s);
            if (!java.util.Objects.equals(v, s.defaultValue)) {
                throw new InvalidInputException(s.flag + " " + v + " (key " + s.key + ") applies to "
                        + (softmax ? "lightning attention only; softmax attention has no feature map, normalization, "
                        + "recorded states, slopes or window read-ahead: remove it, or run --attention lightning"
                        : "softmax attention only: add --attention softmax, or remove it"));
            }
        }
        Double scale = cfg.get(Settings.SCALE);
        if (softmax && scale != null && !(scale > 0 && !scale.isInfinite())) {
            throw new InvalidInputException("--scale " + scale + ": softmax attention's score scale must be finite and "
                    + "greater than 0 (the default is 1/sqrt(Dk) of each file); give a positive scale or leave it out");
        }
        for (Setting<?> s : softmax ? Settings.LIGHTNING_ONLY_IO : List.<Setting<?>>of()) {
            Object v = cfg.get(s);
            if (!java.util.Objects.equals(v, s.defaultValue)) {
                throw new InvalidInputException(s.flag + " " + v + " (key " + s.key + ") is not available with "
                        + "--attention softmax: the synthetic source, the checksum sink and stored states serve "
                        + "lightning attention only; give softmax --input files and --output-mode files without "
                        + "--initial-states, or run --attention lightning");
            }
        }
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
        return new SoftmaxPlanner(cfg.get(Settings.WINDOW)).plan(pieces, weights, pieces.size());
    }

    /**
     * Bytes a softmax run stages, for the free-space check: every output file (a split sequence's
     * pieces write their shares of it, no copy) and the partials of the items that need a merge.
     */
    static long bytesToStage(JobConfig cfg, List<SequenceFile> files, List<List<Piece>> pieces) {
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
    ObjectNode planReport() {
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
    PassReport blocks(PassRunner runner) {
        out.printf("lightning: softmax attention: %d work items in %d tasks, %d query pieces merged; task cost "
                        + "max/mean %.3f (max %.3g, mean %.3g multiply-adds)%n", plan.items(), plan.tasks.size(),
                plan.merges.size(), plan.imbalance(), (double) plan.maxTaskCost, plan.meanTaskCost());
        List<List<SoftmaxTasks.BlockItem>> work = new ArrayList<>();
        long tokens = 0;
        for (List<SoftmaxPlanner.Block> task : plan.tasks) {
            List<SoftmaxTasks.BlockItem> items = new ArrayList<>();
            for (SoftmaxPlanner.Block b : task) {
                items.add(new SoftmaxTasks.BlockItem(files.get(b.query.sequence()), b));
                tokens += b.query.tokens();
            }
            work.add(items);
        }
        return runner.run("softmax 1/2: blocks", work, null, tokens,
                (items, t) -> new SoftmaxTasks(hadoop, staging, cfg, items, t).blocks());
    }

    /** Pass 2, the merges, for the sequences not skipped: its report, or none when nothing is left to merge. */
    List<PassReport> merge(PassRunner runner, Set<Integer> skipped) {
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
                    (items, t) -> new SoftmaxTasks(hadoop, staging, cfg, items, t).merge()));
        }
        return reports;
    }

    /** The split sequences, whose pieces write their shares of the output ({@link SplitOutputs}): their pieces' tokens. */
    Map<Integer, long[]> splitSequences() {
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
    OutputLayout outputLayout(int s) {
        return SoftmaxTasks.outputLayout(files.get(s), cfg);
    }
}
