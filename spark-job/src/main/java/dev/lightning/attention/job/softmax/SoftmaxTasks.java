package dev.lightning.attention.job.softmax;

import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.SoftmaxBackend;
import dev.lightning.attention.engine.SoftmaxPartial;
import dev.lightning.attention.engine.SoftmaxSpec;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.exec.ExecutorBackends;
import dev.lightning.attention.job.exec.FaultPoints;
import dev.lightning.attention.job.hadoop.HadoopConf;
import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.job.input.SequenceFiles;
import dev.lightning.attention.job.output.SplitOutputs;
import dev.lightning.attention.job.output.Staging;
import dev.lightning.attention.job.pass.PassProgress;
import dev.lightning.attention.job.pass.TaskReport;
import dev.lightning.attention.job.pass.WorkRDD;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.plan.SoftmaxPlanner;
import dev.lightning.attention.stream.FormatVersion;
import dev.lightning.attention.stream.NonFiniteException;
import dev.lightning.attention.stream.OutputLayout;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.stream.SoftmaxWork;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.SafetensorsHeader;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.TaskContext;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The tasks of a softmax run ({@code --attention softmax}), each a {@link WorkRDD.Worker}:
 * <ul>
 *   <li>{@link #blocks()}: each work item, queries of one piece over a range of its key pieces
 *       ({@link SoftmaxPlanner.Block}), computed by {@link SoftmaxWork}. An item that covers its
 *       query piece's whole key range writes the piece's rows at once; any other stages its
 *       float32 partial (o and lse per query block, {@link SoftmaxPartial#toBytes}).</li>
 *   <li>{@link #merge()}: per query piece computed by several items, their partials folded in
 *       ascending key order ({@link SoftmaxPartial#merge}), then the piece's rows written.</li>
 * </ul>
 * A piece of a split sequence writes its rows of o and lse as its share of the sequence's output
 * ({@link SplitOutputs}, in the run's --output-form), so no task copies a sequence's output.
 * As for lightning, tasks write only into the run's {@link Staging}, each unit of work ends with a
 * done marker (kept by --resume when it still verifies), and every file is a function of the
 * input and settings alone: a retried or resumed task writes the same bytes.
 */
final class SoftmaxTasks implements Serializable {
    private static final long serialVersionUID = 1L;

    /** One work item with the file it reads. */
    static final class BlockItem implements Serializable {
        private static final long serialVersionUID = 1L;
        final SequenceFile file;
        final SoftmaxPlanner.Block block;

        BlockItem(SequenceFile file, SoftmaxPlanner.Block block) {
            this.file = file;
            this.block = block;
        }
    }

    /** A query piece computed by several items: the items, in ascending key order. */
    static final class MergeItem implements Serializable {
        private static final long serialVersionUID = 1L;
        final SequenceFile file;
        final ArrayList<SoftmaxPlanner.Block> items;

        MergeItem(SequenceFile file, List<SoftmaxPlanner.Block> items) {
            this.file = file;
            this.items = new ArrayList<>(items);
        }
    }

    private final HadoopConf hadoop;
    private final Staging staging;
    private final JobConfig cfg;
    private final PassProgress progress;

    SoftmaxTasks(HadoopConf hadoop, Staging staging, JobConfig cfg, PassProgress progress) {
        this.hadoop = hadoop;
        this.staging = staging;
        this.cfg = cfg;
        this.progress = progress;
    }

    // ---------------------------------------------------------------- what a file computes

    /** The computation of file {@code f}: its heads and widths, the run's scale (1/sqrt(Dk) by default) and window. */
    static SoftmaxSpec spec(SequenceFile f, JobConfig cfg) {
        Double scale = cfg.get(Settings.SCALE);
        int dk = f.layout().dk();
        return new SoftmaxSpec(f.layout().headsQ(), f.layout().headsK(), dk, f.layout().dv(),
                scale != null ? scale : SoftmaxSpec.defaultScale(dk), cfg.get(Settings.WINDOW));
    }

    /**
     * The header of a softmax output file: o [T, Hq, Dv] in the output dtype, then with
     * --write-lse lse [T, Hq] F32; the metadata records the attention, scale and window.
     */
    static SafetensorsHeader outputHeader(SequenceFile f, SoftmaxSpec spec, DType oDtype, boolean lse) {
        List<SafetensorsHeader.Spec> tensors = new ArrayList<>();
        tensors.add(new SafetensorsHeader.Spec("o", oDtype, f.tokens, spec.headsQ(), spec.dv()));
        if (lse) {
            tensors.add(new SafetensorsHeader.Spec("lse", DType.F32, f.tokens, spec.headsQ()));
        }
        Map<String, String> metadata = new java.util.TreeMap<>();
        metadata.put("producer", "lightning-spark");
        FormatVersion.put(metadata); // OutputReader reads it back
        metadata.put("attention", "softmax");
        metadata.put("scale", Double.toString(spec.scale()));
        if (spec.window() != SoftmaxSpec.NO_WINDOW) {
            metadata.put("window", Long.toString(spec.window()));
        }
        return SafetensorsHeader.layout(f.name, tensors, metadata);
    }

    /**
     * How the pieces of split sequence {@code f} write its output file ({@link SplitOutputs}): the
     * header of {@link #outputHeader} cut as {@link OutputLayout#softmax}.
     */
    static OutputLayout outputLayout(SequenceFile f, JobConfig cfg) {
        return OutputLayout.softmax(outputHeader(f, spec(f, cfg), cfg.outputDtype(f.dtype), cfg.get(Settings.WRITE_LSE)),
                f.tokens);
    }

    /** Bytes of one token's rows: o in the output dtype, and lse with --write-lse. */
    static long rowBytes(SequenceFile f, JobConfig cfg) {
        return f.outputBytesPerToken(cfg.outputDtype(f.dtype)) + (cfg.get(Settings.WRITE_LSE) ? 4L * f.layout().headsQ() : 0);
    }

    /**
     * The work of file {@code f} on backend {@code b} (null: the merge, which computes nothing).
     * Half of the backend's window budget (--gpu-window-bytes on a GPU) holds a key block. A query
     * block is the same size in every task of the run, so that partials of one query piece computed
     * by different tasks line up block by block: half of --gpu-window-bytes when the run asked for
     * --backend gpu (every task then computes on a GPU, or on the CPU fallback with the same
     * blocks), half of --window-bytes otherwise (--backend auto may mix CPU and GPU executors).
     *
     * <p>Why the GPU's query blocks are large: every query block reads, checks and uploads all the
     * keys it sees, and each key block's partial is merged on the host. With 32 MiB query blocks a
     * GPU softmax run (T = 65,536, H = 8, D = 128, 4 pieces) spent 3.5 s in its block pass on
     * work its kernels did in about 35 ms (BENCHMARKS.md, "Softmax attention: the split job").
     */
    private SoftmaxWork work(SequenceFile f, SoftmaxBackend b) {
        boolean gpu = b != null && b.gpuOrdinal() >= 0;
        return new SoftmaxWork(spec(f, cfg), cfg.chunkSize(), queryBlockBytes(cfg),
                cfg.get(gpu ? Settings.GPU_WINDOW_BYTES : Settings.WINDOW_BYTES) / 2);
    }

    /** Bytes of a query block, the same for every task of the run: see {@link #work}. */
    static long queryBlockBytes(JobConfig cfg) {
        boolean gpuRun = "gpu".equals(cfg.get(Settings.BACKEND));
        return cfg.get(gpuRun ? Settings.GPU_WINDOW_BYTES : Settings.WINDOW_BYTES) / 2;
    }

    static String unit(SoftmaxPlanner.Block b) {
        return "softmax-s" + b.query.sequence() + "-p" + b.query.index() + "-k" + b.firstKeyPiece + "-" + b.lastKeyPiece;
    }

    private Path partialPath(SoftmaxPlanner.Block b) {
        return staging.softmaxPartial(b.query.sequence(), b.query.index(), b.firstKeyPiece, b.lastKeyPiece);
    }

    /**
     * The softmax backend of a task, chosen as {@link ExecutorBackends} chooses lightning's: the
     * CPU for {@code cpu}; for {@code gpu} and {@code auto} the GPU Spark assigned (device 0
     * without an assignment); {@code auto} falls back to the CPU where none is usable.
     */
    private SoftmaxBackend backend() {
        return ExecutorBackends.choose(cfg.get(Settings.BACKEND), cfg.get(Settings.GPU_RESOURCE), "softmax ",
                ordinal -> Backends.softmaxGpu(ordinal, cfg.get(Settings.GPU_MEMORY)), Backends::softmaxCpu,
                SoftmaxBackend::device);
    }

    private FileSystem fs(String path) throws IOException {
        return HadoopPaths.fileSystem(new Path(path), hadoop.get());
    }

    private static String attempt(TaskContext ctx) {
        return ctx.stageId() + "-" + ctx.partitionId() + "-" + ctx.taskAttemptId();
    }

    // ---------------------------------------------------------------- output rows

    /** Writes a piece's rows: o to the first stream, lse (or nothing: null) to the second. */
    interface Rows {
        void writeTo(OutputStream o, OutputStream lse) throws IOException;
    }

    /**
     * The one place a query piece of a split sequence writes its rows: as its share of the
     * sequence's output in the run's --output-form ({@link SplitOutputs}), o to the layout's
     * stream o and, with --write-lse, lse to its stream lse. Returns what it wrote.
     */
    private List<Staging.Written> writePieceRows(FileSystem stagingFs, SequenceFile f, Piece p, String attempt,
                                                 Rows rows) throws IOException {
        boolean withLse = cfg.get(Settings.WRITE_LSE);
        return SplitOutputs.of(cfg, stagingFs, staging).writePiece(stagingFs, f.name, outputLayout(f, cfg), p, attempt,
                out -> rows.writeTo(out.get("o"), withLse ? out.get("lse") : null));
    }

    /**
     * Writes a whole (unsplit) sequence's output file from its rows: the header, o, then lse, which
     * is held meanwhile (T Hq float32: T is at most --partition-tokens here).
     */
    private Staging.Written writeWholeFile(FileSystem stagingFs, SequenceFile f, String attempt, Rows rows)
            throws IOException {
        SoftmaxSpec spec = spec(f, cfg);
        boolean withLse = cfg.get(Settings.WRITE_LSE);
        return Staging.writeAtomically(stagingFs, staging.stagedOutput(f.name), attempt, out -> {
            out.write(outputHeader(f, spec, cfg.outputDtype(f.dtype), withLse).encode());
            ByteArrayOutputStream lse = withLse ? new ByteArrayOutputStream() : null;
            rows.writeTo(out, lse);
            if (withLse) {
                lse.writeTo(out);
            }
        });
    }

    // ---------------------------------------------------------------- the tasks

    /** The work items: each query piece's partial over its key range, or its rows when the range is whole. */
    WorkRDD.Worker<BlockItem> blocks() {
        return (items, ctx) -> {
            long start = System.nanoTime();
            long tokens = 0;
            int resumed = 0;
            long kept = 0;
            FileSystem stagingFs = fs(staging.root);
            List<String> skipped = new ArrayList<>();
            List<String> names = new ArrayList<>();
            try (SoftmaxBackend backend = backend()) {
                for (BlockItem it : items) {
                    SequenceFile f = it.file;
                    SoftmaxPlanner.Block b = it.block;
                    Piece q = b.query;
                    names.add(f.name);
                    String unit = unit(b);
                    if (staging.alreadyDone(stagingFs, unit)) {
                        resumed++;
                        kept += b.tokens;
                        progress.kept(b.tokens);
                    } else {
                        // the item's tokens count as its key blocks are computed, in proportion to their pairs
                        PassProgress.Computing counted = progress.computing(b.tokens);
                        long pairs = spec(f, cfg).visiblePairs(q.start(), q.tokens(), b.keyStart,
                                b.keyEnd - b.keyStart);
                        SoftmaxWork work = work(f, backend).counting(counted.inProportion(pairs));
                        DType oDtype = cfg.outputDtype(f.dtype);
                        try (FSDataInputStream in = SequenceFiles.openStream(fs(f.path), f)) {
                            Rows rows = (o, lse) -> work.compute(backend, in::readFully, f, q.sequence(), q.start(),
                                    q.end(), b.keyStart, b.keyEnd,
                                    (at, p) -> SoftmaxWork.writeRows(f, q.sequence(), at, p, oDtype, o, lse));
                            List<Staging.Written> written;
                            if (b.whole && !q.isSplit()) {
                                written = List.of(writeWholeFile(stagingFs, f, attempt(ctx), rows));
                            } else if (b.whole) {
                                written = writePieceRows(stagingFs, f, q, attempt(ctx), rows);
                            } else {
                                written = List.of(Staging.writeAtomically(stagingFs, partialPath(b), attempt(ctx),
                                        out -> work.compute(backend, in::readFully, f, q.sequence(), q.start(), q.end(),
                                                b.keyStart, b.keyEnd, (at, p) -> out.write(p.toBytes()))));
                            }
                            staging.markDone(stagingFs, unit, attempt(ctx), written);
                            FaultPoints.reach("softmax-blocks");
                        } catch (NonFiniteException e) {
                            if (!cfg.get(Settings.SKIP_NONFINITE)) {
                                throw e;
                            }
                            skipped.add(e.record()); // nothing of this item was renamed into place
                        }
                        tokens += b.tokens;
                        counted.done();
                    }
                }
                return report("softmax-blocks", ctx, items.size(), tokens, backend, start, skipped, resumed, kept,
                        names);
            }
        };
    }

    /** The merge: per query piece, its items' partials in ascending key order, then its rows. */
    WorkRDD.Worker<MergeItem> merge() {
        return (items, ctx) -> {
            long start = System.nanoTime();
            int resumed = 0;
            FileSystem stagingFs = fs(staging.root);
            List<String> names = new ArrayList<>();
            List<String> skipped = new ArrayList<>();
            for (MergeItem m : items) {
                SequenceFile f = m.file;
                Piece q = m.items.get(0).query;
                names.add(f.name);
                String unit = "softmax-merge-s" + q.sequence() + "-p" + q.index();
                if (staging.alreadyDone(stagingFs, unit)) {
                    resumed++;
                    progress.kept(0);
                    continue;
                }
                SoftmaxSpec spec = spec(f, cfg);
                // the query blocks of every item: SoftmaxWork's, which depend on the file and the budget only
                SoftmaxWork work = work(f, null);
                int qBlock = work.queryBlockTokens(f);
                long perToken = work.partialBytesPerToken();
                DType oDtype = cfg.outputDtype(f.dtype);
                try {
                    List<Staging.Written> written = writePieceRows(stagingFs, f, q, attempt(ctx), (o, lse) -> {
                        List<FSDataInputStream> partials = new ArrayList<>();
                        try {
                            for (SoftmaxPlanner.Block b : m.items) {
                                Path p = partialPath(b);
                                long len = stagingFs.getFileStatus(p).getLen();
                                if (len != q.tokens() * perToken) {
                                    throw new IOException(p + " holds " + len + " bytes, expected " + q.tokens()
                                            + " queries x " + perToken);
                                }
                                partials.add(stagingFs.open(p));
                            }
                            for (long at = q.start(); at < q.end(); at += qBlock) {
                                int n = (int) Math.min(qBlock, q.end() - at);
                                byte[] raw = new byte[Math.toIntExact(n * perToken)];
                                SoftmaxPartial acc = null;
                                for (FSDataInputStream in : partials) { // ascending key order: the same bytes every time
                                    in.readFully((at - q.start()) * perToken, raw, 0, raw.length);
                                    SoftmaxPartial p = SoftmaxPartial.fromBytes(spec, n, ByteBuffer.wrap(raw));
                                    if (acc == null) {
                                        acc = p;
                                    } else {
                                        acc.merge(p);
                                    }
                                }
                                SoftmaxWork.writeRows(f, q.sequence(), at, acc, oDtype, o, lse);
                            }
                        } finally {
                            for (FSDataInputStream in : partials) {
                                in.close();
                            }
                        }
                    });
                    staging.markDone(stagingFs, unit, attempt(ctx), written);
                    FaultPoints.reach("softmax-merge");
                } catch (NonFiniteException e) {
                    if (!cfg.get(Settings.SKIP_NONFINITE)) {
                        throw e;
                    }
                    skipped.add(e.record());
                }
                progress.computed(0);
            }
            return report("softmax-merge", ctx, items.size(), 0, null, start, skipped, resumed, 0, names);
        };
    }

    private TaskReport report(String pass, TaskContext ctx, int items, long tokens, SoftmaxBackend b, long start,
                              List<String> skipped, int resumed, long keptTokens, List<String> files) {
        return TaskReport.ofTask(pass, ctx, items, tokens, b == null ? null : b.name(), b == null ? null : b.device(),
                cfg.get(Settings.GPU_RESOURCE), start, skipped, resumed, keptTokens, files);
    }
}
