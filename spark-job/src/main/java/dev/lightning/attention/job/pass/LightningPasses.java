package dev.lightning.attention.job.pass;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.exec.FaultPoints;
import dev.lightning.attention.job.hadoop.HadoopConf;
import dev.lightning.attention.job.input.InputFile;
import dev.lightning.attention.job.input.StoredStates;
import dev.lightning.attention.job.output.SplitOutputs;
import dev.lightning.attention.job.output.Staging;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.stream.OutputLayout;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.stream.Variant;
import org.apache.hadoop.fs.BlockLocation;
import org.apache.hadoop.fs.FileSystem;

import java.io.IOException;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The driver side of lightning's passes: the work of each pass built from the plan's tasks (the
 * pieces of pass 1 and pass 2 with what they need, and the hosts that hold their input; the units
 * of each stage of the scan), each pass run through the {@link PassRunner}, and after pass 2, with
 * --output-mode checksums, the result files of split sequences from what their pieces staged. It
 * holds the plan's few numbers per piece, never a state.
 */
public final class LightningPasses {
    private final JobConfig cfg;
    private final HadoopConf hadoop;
    private final Staging staging;
    private final List<SequenceFile> files;
    /** By sequence index, the stored state it continues (--initial-states); sequences without one are absent. */
    private final Map<Integer, StoredStates.State> continued;
    private final PrintStream out;
    /** The output layouts and the checksum results, on the driver. */
    private final Pass2Tasks outputTasks;
    private final List<List<PieceItem>> pass1 = new ArrayList<>();
    private final List<List<String>> pass1Hosts = new ArrayList<>();
    private final List<List<PieceItem>> pass2 = new ArrayList<>();
    private final List<List<String>> pass2Hosts = new ArrayList<>();
    private long pass1Tokens = 0;

    /** The work of pass 1 and pass 2 from {@code tasks}, the plan's partitions packed into tasks. */
    public LightningPasses(JobConfig cfg, HadoopConf hadoop, Staging staging, List<SequenceFile> files,
                           List<InputFile> statuses, List<List<Piece>> tasks,
                           Map<Integer, StoredStates.State> continued, PrintStream out) throws IOException {
        this.cfg = cfg;
        this.hadoop = hadoop;
        this.staging = staging;
        this.files = files;
        this.continued = continued;
        this.out = out;
        this.outputTasks = new Pass2Tasks(hadoop, staging, cfg, null);
        // Pass 1: pieces with a successor. A task per partition of the plan, or per group of them
        // when there are more partitions than maxTasks.
        for (List<Piece> partition : tasks) {
            List<PieceItem> items = new ArrayList<>();
            List<PieceItem> firstPass = new ArrayList<>();
            for (Piece p : partition) {
                PieceItem item = new PieceItem(files.get(p.sequence()), p,
                        p.isSplit() ? scanBlock(files.get(p.sequence())) : 0, continued.get(p.sequence()));
                items.add(item);
                if (p.isSplit() && !p.isLast()) {
                    firstPass.add(item);
                    pass1Tokens += p.tokens();
                }
            }
            List<String> hosts = hosts(statuses, partition, files);
            pass2.add(items);
            pass2Hosts.add(hosts);
            if (!firstPass.isEmpty()) {
                pass1.add(firstPass);
                pass1Hosts.add(hosts);
            }
        }
    }

    /**
     * Bytes a lightning run stages, for the free-space check: every output (outputs of split
     * sequences are written once, by their pieces) with its recorded states, and for split
     * sequences their states between the passes. {@code plan}: the plan's partitions.
     */
    public static long bytesToStage(JobConfig cfg, List<SequenceFile> files, List<List<Piece>> plan) {
        int[] pieces = new int[files.size()];
        for (List<Piece> partition : plan) {
            for (Piece p : partition) {
                pieces[p.sequence()]++;
            }
        }
        long need = 0;
        Variant variant = cfg.variant();
        for (int i = 0; i < files.size(); i++) {
            SequenceFile f = files.get(i);
            AttentionSpec spec = f.spec(cfg.get(Settings.SCALE), cfg.chunkSize(), variant);
            // --output-mode checksums stages a summary per piece instead of o
            long o = cfg.checksums() ? 4096L * pieces[i] : f.tokens * f.outputBytesPerToken(cfg.outputDtype(f.dtype));
            long states = variant.checkpointsIn(0, f.tokens) * spec.stateBytes(); // states and normalizers
            // with checksums the recorded states are staged by the pieces, then copied into the result file
            need += o + states * (cfg.checksums() ? 2 : 1) + spec.stateBytes() + 4096;
            if (pieces[i] > 1) {
                // local and incoming states (the pieces write their shares of the output: no copy), and
                // the blocked scan's summaries and carries above level 0
                need += 2L * pieces[i] * spec.stateBytes()
                        + new BlockScan.Plan(pieces[i] - 1, BlockScan.blockSize(spec.stateBytes())).extraStates()
                        * spec.stateBytes();
            }
        }
        return need;
    }

    /**
     * Pass 1 and the scan, when some sequence is split ({@code splits}: its pieces, in index
     * order): the local states of the pieces that have a successor, then every piece's incoming state.
     */
    public void states(PassRunner runner, Map<Integer, List<Piece>> splits) {
        if (!pass1.isEmpty()) {
            runner.run("pass 1/2: local states", pass1, pass1Hosts, pass1Tokens,
                    progress -> new Pass1Tasks(hadoop, staging, cfg, progress).pass1());
            scan(runner, splits, PieceItem.groups(pass1));
        }
    }

    /**
     * The scan of every split sequence, in blocks ({@link BlockScan}): stage by stage, each task
     * one unit (a block of one sequence) or several small ones of at most a block of states
     * together, so that no task touches more than a block of states.
     * The driver holds one plan per sequence and the units of one stage, never a state.
     */
    private void scan(PassRunner runner, Map<Integer, List<Piece>> splits, Map<Integer, PieceGroups> local) {
        Map<Integer, BlockScan.Plan> plans = new java.util.TreeMap<>();
        int maxDepth = 0;
        for (Map.Entry<Integer, List<Piece>> e : splits.entrySet()) {
            SequenceFile f = files.get(e.getKey());
            BlockScan.Plan plan = new BlockScan.Plan(e.getValue().size() - 1, scanBlock(f));
            plans.put(e.getKey(), plan);
            maxDepth = Math.max(maxDepth, plan.depth());
        }
        int stages = BlockScan.stages(maxDepth);
        for (int stage = 0; stage < stages; stage++) {
            // units of short scans share a task until it has a block's worth of states (so many
            // sequences of a few pieces do not make a task each); a full block is a task of its own
            List<List<ScanTasks.ScanItem>> work = new ArrayList<>();
            List<ScanTasks.ScanItem> task = new ArrayList<>();
            int states = 0;
            for (Map.Entry<Integer, BlockScan.Plan> e : plans.entrySet()) {
                List<Piece> pieces = splits.get(e.getKey()); // in index order
                BlockScan.Plan plan = e.getValue();
                for (BlockScan.Unit u : plan.units(stage, maxDepth)) {
                    long[] tokens = BlockScan.tokens(plan, u, p -> pieces.get(Math.toIntExact(p)).start());
                    if (!task.isEmpty() && states + u.count > plan.block) {
                        work.add(task);
                        task = new ArrayList<>();
                        states = 0;
                    }
                    task.add(new ScanTasks.ScanItem(files.get(e.getKey()), e.getKey(), u, tokens, plan.block,
                            local.get(e.getKey()), continued.get(e.getKey())));
                    states += u.count;
                }
            }
            if (!task.isEmpty()) {
                work.add(task);
            }
            String title = stages == 1 ? "scan: incoming states"
                    : "scan " + (stage + 1) + "/" + stages + ": " + BlockScan.stageName(stage, maxDepth);
            runner.run(title, work, null, 0,
                    progress -> new ScanTasks(hadoop, staging, cfg, progress).scan());
        }
    }

    /** The block size of the scan of split sequence {@code f} ({@link BlockScan#blockSize}), decided here on the driver. */
    private int scanBlock(SequenceFile f) {
        return BlockScan.blockSize(f.spec(cfg.get(Settings.SCALE), cfg.chunkSize(), cfg.variant()).stateBytes());
    }

    /** Pass 2: every piece's output. Returns the pass's report (the driver reads skipped sequences from it). */
    public PassReport outputs(PassRunner runner, long totalTokens) {
        return runner.run("pass 2/2: outputs", pass2, pass2Hosts, totalTokens,
                progress -> new Pass2Tasks(hadoop, staging, cfg, progress).pass2());
    }

    /** How the pieces of sequence {@code s} write its output file ({@link SplitOutputs}). */
    public OutputLayout outputLayout(int s) {
        return outputTasks.outputLayout(files.get(s), continued.get(s));
    }

    /**
     * After pass 2, --output-mode checksums: the result files of the split sequences
     * {@code checksumSplits} (sequence to its pieces' tokens) that were not {@code skipped}, from
     * their pieces' staged summaries and states ({@link Pass2Tasks#writeChecksumsResult}); then
     * the fault point {@code assemble}.
     */
    public void checksumResults(PassRunner runner, FileSystem outFs, Map<Integer, long[]> checksumSplits,
                                Set<Integer> skipped) throws IOException {
        Map<Integer, PieceGroups> pass2Groups = checksumSplits.isEmpty() ? Map.of() : PieceItem.groups(pass2);
        long resultsStart = System.nanoTime();
        int results = 0;
        for (Map.Entry<Integer, long[]> e : checksumSplits.entrySet()) {
            if (!skipped.contains(e.getKey())) {
                outputTasks.writeChecksumsResult(outFs, files.get(e.getKey()), e.getKey(), e.getValue(),
                        pass2Groups.get(e.getKey()), PassTasks.continued(continued.get(e.getKey())));
                results++;
            }
        }
        if (!checksumSplits.isEmpty()) {
            double seconds = (System.nanoTime() - resultsStart) / 1e9;
            runner.record("finish: checksum results of split sequences", seconds);
            out.printf("lightning: wrote %d checksum result(s) of split sequences from their pieces' summaries%s, "
                    + "%.1f s%n", results, cfg.variant().checkpoints() ? " and recorded states" : "", seconds);
            FaultPoints.reach("assemble");
        }
    }

    /** Hosts holding the first bytes of a partition's q, for locality on HDFS-like stores (none for --synthetic). */
    private static List<String> hosts(List<InputFile> statuses, List<Piece> partition, List<SequenceFile> files)
            throws IOException {
        Piece first = partition.get(0);
        SequenceFile f = files.get(first.sequence());
        if (statuses.isEmpty()) {
            return List.of();
        }
        long at = f.qOffset + first.start() * f.layout().headsQ() * f.layout().dk() * f.dtype.bytes();
        for (BlockLocation b : statuses.get(first.sequence()).status.getBlockLocations()) {
            if (at >= b.getOffset() && at < b.getOffset() + b.getLength()) {
                List<String> h = new ArrayList<>(Arrays.asList(b.getHosts()));
                h.remove("localhost");
                return h;
            }
        }
        return List.of();
    }
}
