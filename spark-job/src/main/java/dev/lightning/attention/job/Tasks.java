package dev.lightning.attention.job;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.stream.CpuFallback;
import dev.lightning.attention.stream.NonFiniteException;
import dev.lightning.attention.stream.NonFiniteInputException;
import dev.lightning.attention.stream.OutputLayout;
import dev.lightning.attention.stream.OutputSummary;
import dev.lightning.attention.stream.PieceWork;
import dev.lightning.attention.stream.RangeReader;
import dev.lightning.attention.stream.WindowBuffers;
import dev.lightning.attention.stream.SpotCheck;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.stream.Variant;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsHeader;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.TaskContext;
import org.apache.spark.util.LongAccumulator;

import java.io.IOException;
import java.io.OutputStream;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The three kinds of task of a run, each a {@link WorkRDD.Worker}: pass 1 (local states of the
 * pieces that have a successor), the scan (incoming states, in blocks of pieces) and pass 2
 * (outputs, each piece writing its own share of its sequence's output file: {@link SplitOutputs}).
 * They share the run's settings here.
 *
 * <p>Every task writes only into the run's {@link Staging}: nothing reaches the output directory
 * before the driver's {@link Commit}. Each unit of work (a piece of a pass, a block of the scan)
 * ends with a marker listing its files (or byte ranges) with size and CRC32C; with --resume a unit
 * whose marker still matches its files is skipped, so a resumed run computes only what is missing
 * and writes the same bytes as an uninterrupted one.
 */
final class Tasks implements Serializable {
    private static final long serialVersionUID = 1L;

    /**
     * A piece with the file it belongs to, the block size of its sequence's scan (where pass 2
     * finds its incoming state: {@link Staging#prefixes}; 0 for a piece that needs none), and the
     * stored state its sequence continues (--initial-states) or null: piece 0 starts from it, and
     * every piece's header records its token_offset.
     */
    static final class PieceItem implements Serializable {
        private static final long serialVersionUID = 1L;
        final SequenceFile file;
        final Piece piece;
        final int scanBlock;
        final StoredStates.State stored;

        PieceItem(SequenceFile file, Piece piece, int scanBlock, StoredStates.State stored) {
            this.file = file;
            this.piece = piece;
            this.scanBlock = scanBlock;
            this.stored = stored;
        }
    }

    /**
     * The runs of a task's items: consecutive items of one sequence (pieces in index order, as the
     * planner makes them). A run is one unit of work: one staged file of states or summaries and
     * one marker for all its pieces. The driver groups with this too ({@link PieceGroups}), so it
     * knows where each piece's files are.
     */
    static List<List<PieceItem>> runs(List<PieceItem> items) {
        List<List<PieceItem>> runs = new ArrayList<>();
        List<PieceItem> run = new ArrayList<>();
        for (PieceItem it : items) {
            if (!run.isEmpty()) {
                Piece before = run.get(run.size() - 1).piece;
                if (before.sequence() != it.piece.sequence() || before.index() + 1 != it.piece.index()) {
                    runs.add(run);
                    run = new ArrayList<>();
                }
            }
            run.add(it);
        }
        if (!run.isEmpty()) {
            runs.add(run);
        }
        return runs;
    }

    /** The groups of pieces of each sequence that the tasks {@code work} stage together: their {@link #runs}. */
    static Map<Integer, PieceGroups> groups(List<List<PieceItem>> work) {
        Map<Integer, PieceGroups.Builder> b = new java.util.TreeMap<>();
        for (List<PieceItem> task : work) {
            for (List<PieceItem> run : runs(task)) {
                Piece first = run.get(0).piece;
                b.computeIfAbsent(first.sequence(), s -> new PieceGroups.Builder()).add(first.index(),
                        run.get(run.size() - 1).piece.index());
            }
        }
        Map<Integer, PieceGroups> out = new java.util.TreeMap<>();
        b.forEach((s, g) -> out.put(s, g.build()));
        return out;
    }

    /**
     * One unit of a split sequence's blocked scan, with the tokens of its elements, the scan's
     * block size, and where pass 1 staged the sequence's local states (read by units of level 0).
     */
    static final class ScanItem implements Serializable {
        private static final long serialVersionUID = 1L;
        final SequenceFile file;
        final int sequence;
        final BlockScan.Unit unit;
        final long[] tokens;
        final int block;
        final PieceGroups local;
        /** The stored state the sequence continues (--initial-states), or null. */
        final StoredStates.State stored;

        ScanItem(SequenceFile file, int sequence, BlockScan.Unit unit, long[] tokens, int block, PieceGroups local,
                 StoredStates.State stored) {
            this.file = file;
            this.sequence = sequence;
            this.unit = unit;
            this.tokens = tokens;
            this.block = block;
            this.local = local;
            this.stored = stored;
        }
    }

    private final HadoopConf hadoop;
    private final Staging staging;
    /** The run's options, read by entry. */
    private final JobConfig cfg;
    private final LongAccumulator piecesDone;
    private final LongAccumulator tokensDone;

    Tasks(HadoopConf hadoop, Staging staging, JobConfig cfg, LongAccumulator piecesDone, LongAccumulator tokensDone) {
        this.hadoop = hadoop;
        this.staging = staging;
        this.cfg = cfg;
        this.piecesDone = piecesDone;
        this.tokensDone = tokensDone;
    }

    /** The dtype of a file's {@code o}: --output-dtype, or the input's. */
    DType outputDtype(SequenceFile f) {
        return cfg.outputDtype(f.dtype);
    }

    /** The computation of a file in this run: its heads, the run's scale, chunk size and variant. */
    AttentionSpec spec(SequenceFile f) {
        return f.spec(cfg.get(Settings.SCALE), cfg.chunkSize(), cfg.variant());
    }

    /**
     * The header of an output file, tensors in this order: o [T, H, Dv] in the output dtype,
     * final_state [H, Dk, Dv] F32, with a normalizing spec final_normalizer [H, Dk] F32 (so the
     * two follow each other as {@link LightningState#toBytes} writes a state), and with checkpoints
     * every N tokens states [C, H, Dk, Dv] F32 and (normalizing) normalizers [C, H, Dk] F32, C = T / N.
     */
    static SafetensorsHeader outputHeader(SequenceFile f, AttentionSpec spec, Variant variant, DType oDtype,
                                          double scale) {
        return outputHeader(f, spec, variant, oDtype, scale, null, 0, -1);
    }

    /**
     * The header of an output file; with {@code summary} (--output-mode checksums) the file holds
     * o_sampled [S, H, Dv] (the rows of the S sampled tokens, in the output dtype) where o would be,
     * and the summary's metadata ({@link OutputSummary#metadata}) with the spot checks' {@code tolerance}.
     * {@code tokenOffset} >= 0 (a sequence continued from a stored state, --initial-states): the
     * tokens that state had absorbed, recorded as metadata {@code token_offset}, so token t of this
     * output, and the state states[c] after its token (c+1)N - 1, sit at token_offset + t of the
     * whole sequence.
     */
    static SafetensorsHeader outputHeader(SequenceFile f, AttentionSpec spec, Variant variant, DType oDtype,
                                          double scale, OutputSummary summary, double tolerance, long tokenOffset) {
        int h = spec.heads();
        List<SafetensorsHeader.Spec> tensors = new ArrayList<>();
        if (summary == null) {
            tensors.add(new SafetensorsHeader.Spec("o", oDtype, f.tokens, h, spec.dv()));
        } else {
            tensors.add(new SafetensorsHeader.Spec("o_sampled", oDtype, summary.samples.size(), h, spec.dv()));
        }
        tensors.add(new SafetensorsHeader.Spec("final_state", DType.F32, h, spec.dk(), spec.dv()));
        if (spec.normalized()) {
            tensors.add(new SafetensorsHeader.Spec("final_normalizer", DType.F32, h, spec.dk()));
        }
        if (variant.checkpoints()) {
            long c = variant.checkpointsIn(0, f.tokens);
            tensors.add(new SafetensorsHeader.Spec("states", DType.F32, c, h, spec.dk(), spec.dv()));
            if (spec.normalized()) {
                tensors.add(new SafetensorsHeader.Spec("normalizers", DType.F32, c, h, spec.dk()));
            }
        }
        Map<String, String> metadata = new java.util.TreeMap<>();
        metadata.put("producer", "lightning-spark");
        metadata.put("scale", Double.toString(scale));
        metadata.put(SLOPES, slopesText(spec.slopes()));
        if (!spec.plain()) {
            metadata.put("feature_map", spec.featureMap().key());
            if (spec.normalized()) {
                metadata.put("normalize_eps", Double.toString(spec.eps()));
            }
        }
        if (variant.checkpoints()) {
            metadata.put("state_every", Integer.toString(variant.stateEvery()));
        }
        if (tokenOffset >= 0) {
            metadata.put(TOKEN_OFFSET, Long.toString(tokenOffset));
        }
        if (summary != null) {
            metadata.putAll(summary.metadata(f.tokens, h, spec.dv(), oDtype, tolerance));
        }
        return SafetensorsHeader.layout(f.name, tensors, metadata);
    }

    /**
     * How the pieces of {@code f} write its output file in this run ({@link SplitOutputs}): the
     * header of {@link #outputHeader(SequenceFile, StoredStates.State)} cut as {@link OutputLayout#lightning}.
     */
    OutputLayout outputLayout(SequenceFile f, StoredStates.State stored) {
        return OutputLayout.lightning(outputHeader(f, stored), f.tokens, cfg.variant().stateEvery());
    }

    /** The output metadata key of a continued sequence's offset in the whole sequence. */
    /**
     * Output metadata: the decay rates of the result's heads, comma-separated (each exact: Java's
     * shortest round-trip form), so that an append with --initial-states can refuse other ones.
     */
    static final String SLOPES = "slopes";

    static String slopesText(double[] slopes) {
        StringBuilder b = new StringBuilder();
        for (double x : slopes) {
            b.append(b.length() == 0 ? "" : ",").append(x);
        }
        return b.toString();
    }

    static double[] parseSlopes(String text) {
        String[] parts = text.split(",");
        double[] slopes = new double[parts.length];
        for (int i = 0; i < parts.length; i++) {
            slopes[i] = Double.parseDouble(parts[i].trim());
        }
        return slopes;
    }

    static final String TOKEN_OFFSET = "token_offset";

    /**
     * The header of {@code f}'s output file in this run; {@code stored}: the stored state it
     * continues (--initial-states), or null.
     */
    SafetensorsHeader outputHeader(SequenceFile f, StoredStates.State stored) {
        return outputHeader(f, spec(f), cfg.variant(), outputDtype(f), cfg.get(Settings.SCALE), null, 0,
                tokenOffset(stored));
    }

    /** The token_offset of a sequence continued from {@code stored}: the tokens it had absorbed; -1 when none or unknown. */
    static long tokenOffset(StoredStates.State stored) {
        return stored == null ? -1 : stored.tokens;
    }

    /**
     * The work of {@code f} on {@code backend}, in the task's window buffers (taken once per task,
     * see {@link WindowBuffers}): every piece of the task reads into the same block (with --read-ahead,
     * the same two blocks).
     */
    private PieceWork work(AttentionBackend backend, SequenceFile f, WindowBuffers windows) {
        return new PieceWork(cfg.get(Settings.SCALE), cfg.chunkSize(), cfg.variant(),
                cfg.get(backend.gpuOrdinal() >= 0 ? Settings.GPU_WINDOW_BYTES : Settings.WINDOW_BYTES),
                outputDtype(f)).reusing(windows).readAhead("on".equals(cfg.get(Settings.READ_AHEAD)));
    }

    private AttentionBackend backend() {
        return ExecutorBackends.open(cfg.get(Settings.BACKEND), cfg.get(Settings.GPU_RESOURCE),
                cfg.get(Settings.GPU_MEMORY));
    }

    private FileSystem fs(String path) throws IOException {
        return HadoopPaths.fileSystem(new Path(path), hadoop.get());
    }

    private static String attempt(TaskContext ctx) {
        return ctx.stageId() + "-" + ctx.partitionId() + "-" + ctx.taskAttemptId();
    }

    private String skipOrThrow(NonFiniteException e) {
        if (!cfg.get(Settings.SKIP_NONFINITE)) {
            throw e;
        }
        return e.record();
    }

    private TaskReport report(String pass, TaskContext ctx, int pieces, long tokens, AttentionBackend b, long start,
                              List<String> skipped, int resumed, List<String> files) {
        return TaskReport.ofTask(pass, ctx, pieces, tokens, b == null ? null : b.name(), b == null ? null : b.device(),
                cfg.get(Settings.GPU_RESOURCE), start, skipped, resumed, files);
    }

    static String unit(String pass, int sequence, int piece) {
        return pass + "-s" + sequence + (piece < 0 ? "" : "-p" + piece);
    }

    /** The unit of a run of pieces {@code first..last} of a sequence: named by its one piece, or by its range. */
    static String unit(String pass, List<PieceItem> run) {
        Piece first = run.get(0).piece;
        Piece last = run.get(run.size() - 1).piece;
        return unit(pass, first.sequence(), first.index()) + (last == first ? "" : "-" + last.index());
    }

    private void progress(Piece p) {
        piecesDone.add(1);
        tokensDone.add(p.tokens());
    }

    /**
     * Pass 1: the local states of the pieces, written to the staging area: for each run of
     * consecutive pieces of one sequence in the task, one file holding their states in order
     * ({@link Staging#localStates}) and one marker, the backend and the sequence's reader opened once.
     */
    WorkRDD.Worker<PieceItem> pass1() {
        return (items, ctx) -> {
            long start = System.nanoTime();
            long[] tokens = {0};
            int resumed = 0;
            List<String> skipped = new ArrayList<>();
            List<String> names = new ArrayList<>();
            FileSystem stagingFs = fs(staging.root);
            try (AttentionBackend backend = backend()) {
                WindowBuffers windows = WindowBuffers.of(backend); // the backend's close() releases them
                for (List<PieceItem> run : runs(items)) {
                    SequenceFile f = run.get(0).file;
                    names.add(f.name);
                    String unit = unit("pass1", run);
                    if (staging.alreadyDone(stagingFs, unit)) {
                        resumed++;
                        run.forEach(it -> progress(it.piece));
                        continue;
                    }
                    boolean[] clean = {true};
                    Path dst = staging.localStates(run.get(0).piece.sequence(), run.get(0).piece.index(),
                            run.get(run.size() - 1).piece.index());
                    Staging.Written w;
                    try (SequenceFiles.Opened in = SequenceFiles.open(f, hadoop.get())) {
                        w = Staging.writeAtomically(stagingFs, dst, attempt(ctx), out -> {
                            for (PieceItem it : run) {
                                LightningState local;
                                try {
                                    local = inStream(() -> CpuFallback.run(backend, cfg.gpuOomToCpu(),
                                            f.name + " " + it.piece,
                                            b -> work(b, f, windows).localState(b, in.reader, f, it.piece)));
                                } catch (NonFiniteInputException e) {
                                    // skip mode: the sequence is dropped after pass 2; a zero state keeps the scan going
                                    skipped.add(skipOrThrow(e));
                                    local = LightningState.zeros(spec(f));
                                    clean[0] = false;
                                }
                                out.write(local.toBytes());
                                tokens[0] += it.piece.tokens();
                                progress(it.piece);
                            }
                        });
                    }
                    if (clean[0]) {
                        staging.markDone(stagingFs, unit, attempt(ctx), List.of(w));
                    }
                    FaultPoints.reach("pass1");
                }
                return report("pass1", ctx, items.size(), tokens[0], backend, start, skipped, resumed, names);
            }
        };
    }

    /**
     * The scan: each item one unit of a split sequence's blocked scan ({@link BlockScan}), which
     * reads at most a block of states and one carry and writes at most a block, holding two
     * states at a time. The sequence's initial state is the carry into block 0 of every level. A
     * down unit writes its block's prefixes into one file ({@link Staging#prefixes}).
     */
    WorkRDD.Worker<ScanItem> scan() {
        return (items, ctx) -> {
            long start = System.nanoTime();
            FileSystem stagingFs = fs(staging.root);
            List<String> skipped = new ArrayList<>();
            List<String> names = new ArrayList<>();
            int resumed = 0;
            try (Staging.StateReader reader = new Staging.StateReader(stagingFs)) {
                for (ScanItem it : items) {
                    names.add(it.file.name);
                    String unit = it.unit.name(it.sequence);
                    if (staging.alreadyDone(stagingFs, unit)) {
                        resumed++;
                        piecesDone.add(1);
                        continue;
                    }
                    AttentionSpec spec = spec(it.file);
                    StagedStates states = new StagedStates(stagingFs, reader, it, spec, attempt(ctx), skipped);
                    if (it.unit.up) {
                        BlockScan.run(spec, it.unit, it.tokens, states);
                    } else {
                        states.written.add(Staging.writeAtomically(stagingFs,
                                staging.prefixes(it.sequence, it.unit.level, it.unit.block), attempt(ctx), out -> {
                                    states.prefixes = out;
                                    BlockScan.run(spec, it.unit, it.tokens, states);
                                }));
                        FaultPoints.reach("scan");
                    }
                    if (states.clean) {
                        staging.markDone(stagingFs, unit, attempt(ctx), states.written);
                    }
                    piecesDone.add(1); // units done, for the progress line
                }
            }
            return report("scan", ctx, items.size(), 0, null, start, skipped, resumed, names);
        };
    }

    /** The states of one sequence's scan in the staging area, for one unit: what it wrote, and whether its input was clean. */
    private final class StagedStates implements BlockScan.States {
        private final FileSystem fs;
        private final Staging.StateReader reader;
        private final ScanItem item;
        private final AttentionSpec spec;
        private final String attempt;
        private final List<String> skipped;
        final List<Staging.Written> written = new ArrayList<>();
        private int group = -1;
        private Path groupPath;
        /** A down unit's file of prefixes, written in order. */
        OutputStream prefixes;
        private int prefixesWritten;
        /** False when the initial state held NaN/Inf in skip mode: zeros stood in, and the unit gets no marker. */
        boolean clean = true;

        StagedStates(FileSystem fs, Staging.StateReader reader, ScanItem item, AttentionSpec spec, String attempt,
                     List<String> skipped) {
            this.fs = fs;
            this.reader = reader;
            this.item = item;
            this.spec = spec;
            this.attempt = attempt;
            this.skipped = skipped;
        }

        @Override
        public LightningState initial() throws IOException {
            SequenceFile f = item.file;
            try (SequenceFiles.Opened in = SequenceFiles.open(f, hadoop.get())) {
                return initialState(in, f, spec, item.sequence, item.stored);
            } catch (NonFiniteInputException e) {
                // skip mode: the sequence is dropped after pass 2; zeros keep the scan going
                skipped.add(skipOrThrow(e));
                clean = false;
                return LightningState.zeros(spec);
            }
        }

        @Override
        public LightningState element(int level, int j) throws IOException {
            if (level > 0) {
                return readState(reader, staging.scanElement(item.sequence, level, j), 0, spec);
            }
            int g = item.local.groupOf(j);
            if (g != group) { // the same Path object for a group's states: the reader keeps its file open
                group = g;
                groupPath = staging.localStates(item.sequence, item.local.first(g), item.local.last(g));
            }
            return readState(reader, groupPath, (long) (j - item.local.first(g)) * spec.stateBytes(), spec);
        }

        @Override
        public void putElement(int level, int j, LightningState s) throws IOException {
            written.add(Staging.writeAtomically(fs, staging.scanElement(item.sequence, level, j), attempt,
                    out -> out.write(s.toBytes())));
            FaultPoints.reach("scan");
        }

        @Override
        public LightningState prefix(int level, int j) throws IOException {
            return prefixOf(reader, staging, item.sequence, level, j, item.block, spec);
        }

        @Override
        public void putPrefix(int level, int j, LightningState s) throws IOException {
            // the down unit of block b writes y_(bB+1) .. y_(bB+count) in order (BlockScan.run)
            int expected = item.unit.block * item.block + prefixesWritten + 1;
            if (prefixes == null || level != item.unit.level || j != expected) {
                throw new IllegalStateException("scan " + item.unit + ": prefix " + j + " of level " + level
                        + " out of order, expected " + expected + " of level " + item.unit.level);
            }
            prefixes.write(s.toBytes());
            prefixesWritten++;
        }
    }

    /** y_j of {@code level} of a sequence's scan with blocks of {@code block}: in the file of the down unit that wrote it. */
    static LightningState prefixOf(Staging.StateReader reader, Staging staging, int sequence, int level, int j,
                                   int block, AttentionSpec spec) throws IOException {
        int b = (j - 1) / block;
        Path file = reader.path(sequence, level, b, () -> staging.prefixes(sequence, level, b));
        return readState(reader, file, (long) (j - 1 - b * block) * spec.stateBytes(), spec);
    }

    /**
     * Pass 2: outputs. A whole sequence goes straight to its staged output file; a piece of a split
     * one writes its share of the sequence's output ({@link SplitOutputs}). Each run of consecutive
     * pieces of one sequence is one unit with one marker, its reader and backend opened once; with
     * --output-mode checksums it stages its pieces' summaries in one file ({@link Staging#summaries}).
     */
    WorkRDD.Worker<PieceItem> pass2() {
        return (items, ctx) -> {
            long start = System.nanoTime();
            long tokens = 0;
            int resumed = 0;
            FileSystem stagingFs = fs(staging.root);
            List<String> skipped = new ArrayList<>();
            List<String> names = new ArrayList<>();
            try (AttentionBackend backend = backend();
                 Staging.StateReader reader = new Staging.StateReader(stagingFs)) {
                WindowBuffers windows = WindowBuffers.of(backend); // the backend's close() releases them
                for (List<PieceItem> run : runs(items)) {
                    SequenceFile f = run.get(0).file;
                    names.add(f.name);
                    String unit = unit("pass2", run);
                    if (staging.alreadyDone(stagingFs, unit)) {
                        resumed++;
                        for (PieceItem it : run) {
                            tokens += it.piece.tokens();
                            progress(it.piece);
                        }
                        continue;
                    }
                    List<Staging.Written> written = new ArrayList<>();
                    java.io.ByteArrayOutputStream summaries = new java.io.ByteArrayOutputStream();
                    boolean clean = true;
                    try (SequenceFiles.Opened in = SequenceFiles.open(f, hadoop.get())) {
                        AttentionSpec spec = spec(f);
                        for (PieceItem it : run) {
                            Piece p = it.piece;
                            try {
                                LightningState incoming = p.isFirst()
                                        ? initialState(in, f, spec, p.sequence(), it.stored)
                                        : prefixOf(reader, staging, p.sequence(), 0, p.index(), it.scanBlock, spec);
                                written.addAll(CpuFallback.run(backend, cfg.gpuOomToCpu(), f.name + " " + p,
                                        b -> outputsOf(b, windows, in.reader, f, p, incoming, it.stored, stagingFs,
                                                attempt(ctx), summaries)));
                            } catch (NonFiniteException e) {
                                // nothing of this piece was renamed into place; in skip mode the driver drops the
                                // sequence, and the run gets no marker
                                skipped.add(skipOrThrow(e));
                                clean = false;
                            }
                            tokens += p.tokens();
                            progress(p);
                        }
                        if (clean && cfg.checksums()) {
                            Piece first = run.get(0).piece;
                            byte[] bytes = summaries.toByteArray();
                            written.add(Staging.writeAtomically(stagingFs, staging.summaries(first.sequence(),
                                    first.index(), run.get(run.size() - 1).piece.index()), attempt(ctx), out -> out.write(bytes)));
                            if (!first.isSplit()) {
                                written.add(Staging.writeAtomically(stagingFs, staging.stagedOutput(f.name), attempt(ctx),
                                        out -> checksumsResult(stagingFs, f, first.sequence(),
                                                new long[] {first.tokens()}, singleGroup(0),
                                                tokenOffset(run.get(0).stored), out)));
                            }
                        }
                    }
                    if (clean) {
                        staging.markDone(stagingFs, unit, attempt(ctx), written);
                        FaultPoints.reach("pass2");
                    }
                }
                return report("pass2", ctx, items.size(), tokens, backend, start, skipped, resumed, names);
            }
        };
    }

    /** Something that may throw what {@link CpuFallback#run} throws. */
    private interface Call<T> {
        T call() throws Exception;
    }

    /** Runs {@code c} where only IOException may pass (inside a staged file's writer), its other checked exceptions wrapped. */
    private static <T> T inStream(Call<T> c) throws IOException {
        try {
            return c.call();
        } catch (IOException | RuntimeException e) {
            throw e;
        } catch (Exception e) {
            throw new IOException(e.getMessage(), e);
        }
    }

    private static PieceGroups singleGroup(int piece) {
        return new PieceGroups.Builder().add(piece, piece).build();
    }

    /**
     * Pass 2 of one piece on {@code b}; returns what it wrote. A whole sequence without
     * checkpoints goes straight to its staged output file (o, then the final state), in one
     * stream. Any other piece writes its share of the sequence's output in the run's
     * --output-form ({@link SplitOutputs}): o and, with --state-every, its recorded states, which
     * one pass over the piece computes together; the last piece also the final state. With
     * --output-mode checksums, o goes to the checksum sink instead ({@link #checksumsOf}).
     */
    private List<Staging.Written> outputsOf(AttentionBackend b, WindowBuffers windows, RangeReader in, SequenceFile f,
                                            Piece p, LightningState incoming, StoredStates.State stored,
                                            FileSystem stagingFs, String attempt,
                                            java.io.ByteArrayOutputStream summaries) throws IOException {
        if (cfg.checksums()) {
            return checksumsOf(b, windows, in, f, p, incoming, stored, stagingFs, attempt, summaries);
        }
        Variant variant = cfg.variant();
        if (!SplitOutputs.needed(p.count(), variant)) {
            return List.of(Staging.writeAtomically(stagingFs, staging.stagedOutput(f.name), attempt, out -> {
                out.write(outputHeader(f, stored).encode());
                LightningState last = work(b, f, windows).outputs(b, in, f, p, incoming, out);
                out.write(last.toBytes());
            }));
        }
        return SplitOutputs.of(cfg, stagingFs, staging).writePiece(stagingFs, f.name, outputLayout(f, stored), p,
                attempt, out -> {
                    LightningState last = work(b, f, windows).outputs(b, in, f, p, incoming, out.get("o"),
                            out.get("states"), out.get("normalizers"));
                    if (p.isLast()) { // the final state (S, then z) follows o in its stream, as in the file
                        out.get("o").write(last.toBytes());
                    }
                });
    }

    /**
     * Pass 2 of one piece in --output-mode checksums: o is computed as usual and fed to the
     * checksum sink instead of a file; the sampled rows get their float64 spot checks here, on the
     * executor, from the same input. The piece appends its summary (a few hundred bytes plus the
     * sampled rows) to {@code summaries}, which its task stages for its run of pieces
     * ({@link Staging#summaries}); it stages with --state-every its recorded S and z, and, if last,
     * the final state ({@link Staging#checksumsPart}). The result file's header carries the
     * combined summary, so it can only be written once every piece is done: an unsplit sequence's
     * by its task, after its one piece; a split one's by the driver after pass 2
     * ({@link #writeChecksumsResult}).
     */
    private List<Staging.Written> checksumsOf(AttentionBackend b, WindowBuffers windows, RangeReader in, SequenceFile f,
                                              Piece p, LightningState incoming, StoredStates.State stored,
                                              FileSystem stagingFs, String attempt,
                                              java.io.ByteArrayOutputStream summaries) throws IOException {
        List<Staging.Written> files = new ArrayList<>();
        AttentionSpec spec = spec(f);
        DType oDtype = outputDtype(f);
        OutputSummary.Sink sink = new OutputSummary.Sink(oDtype, p.start(),
                Math.toIntExact(f.outputBytesPerToken(oDtype)), SpotCheck.samples(f.tokens, p));
        LightningState[] last = new LightningState[1];
        if (!cfg.variant().checkpoints()) {
            last[0] = work(b, f, windows).outputs(b, in, f, p, incoming, sink);
        } else if (!spec.normalized()) {
            files.add(Staging.writeAtomically(stagingFs, staging.checksumsPart(p.sequence(), p.index(), "states"),
                    attempt, states -> last[0] = work(b, f, windows).outputs(b, in, f, p, incoming, sink, states,
                            OutputStream.nullOutputStream())));
        } else {
            files.add(Staging.writeAtomically(stagingFs, staging.checksumsPart(p.sequence(), p.index(), "states"),
                    attempt, states -> files.add(Staging.writeAtomically(stagingFs,
                            staging.checksumsPart(p.sequence(), p.index(), "normalizers"), attempt,
                            z -> last[0] = work(b, f, windows).outputs(b, in, f, p, incoming, sink, states, z)))));
        }
        OutputSummary summary = sink.summary();
        // the float64 check starts where the sequence does: from its stored state when it continues one
        LightningState start = stored == null ? null
                : p.isFirst() ? incoming : stored.read(hadoop.get(), spec, f.name, p.sequence());
        List<SpotCheck.Point> checked = new ArrayList<>();
        for (SpotCheck.Point point : summary.samples) {
            checked.add(SpotCheck.check(in, f, spec, oDtype, point, start));
        }
        byte[] bytes = summary.withSamples(checked).toBytes();
        if (p.isLast()) {
            files.add(Staging.writeAtomically(stagingFs, staging.checksumsPart(p.sequence(), -1, "final"), attempt,
                    out -> out.write(last[0].toBytes())));
        }
        // appended last, once the piece can no longer fail (a GPU out of memory retries it on the CPU)
        new java.io.DataOutputStream(summaries).writeInt(bytes.length);
        summaries.write(bytes);
        return files;
    }

    /**
     * After pass 2, on the driver, --output-mode checksums: the result file of split sequence
     * {@code sequence} from what its pieces staged ({@code groups}: how pass 2's tasks grouped its
     * pieces). Nothing but staged files it reads verified markers of goes in, so a resumed run
     * writes it again, whole, with the same bytes.
     */
    void writeChecksumsResult(FileSystem fs, SequenceFile f, int sequence, long[] pieceTokens, PieceGroups groups,
                              long tokenOffset) throws IOException {
        Path staged = staging.stagedOutput(f.name);
        if (fs.exists(staged)) {
            fs.delete(staged, false); // an earlier attempt's: the same bytes, written again
        }
        Staging.writeAtomically(fs, staged, "driver",
                out -> checksumsResult(fs, f, sequence, pieceTokens, groups, tokenOffset, out));
    }

    /**
     * The staged piece summaries of a sequence (--output-mode checksums) combined in piece order,
     * each checked against the o bytes its piece must have fed to the sink. One file per group of
     * pieces, read whole (a few hundred bytes a piece).
     */
    private OutputSummary combinedSummary(FileSystem fs, SequenceFile f, int sequence, long[] pieceTokens,
                                          PieceGroups groups) throws IOException {
        OutputSummary all = OutputSummary.empty();
        long perToken = f.outputBytesPerToken(outputDtype(f));
        int p = 0;
        for (int g = 0; g < groups.size(); g++) {
            if (groups.first(g) != p) {
                throw new IOException("the o summaries of " + f.name + " skip from piece " + p + " to group "
                        + groups.first(g) + ".." + groups.last(g));
            }
            Path part = staging.summaries(sequence, groups.first(g), groups.last(g));
            byte[] raw = new byte[Math.toIntExact(fs.getFileStatus(part).getLen())];
            try (FSDataInputStream in = fs.open(part)) {
                in.readFully(0, raw, 0, raw.length);
            }
            ByteBuffer buf = ByteBuffer.wrap(raw);
            for (; p <= groups.last(g); p++) {
                if (buf.remaining() < Integer.BYTES) {
                    throw new IOException(part + " ends before the summary of piece " + p);
                }
                byte[] one = new byte[buf.getInt()];
                if (one.length > buf.remaining()) {
                    throw new IOException(part + " ends inside the summary of piece " + p);
                }
                buf.get(one);
                OutputSummary piece = OutputSummary.fromBytes(one);
                if (piece.bytes != pieceTokens[p] * perToken) {
                    throw new IOException(part + " summarizes " + piece.bytes + " bytes of o for piece " + p
                            + ", expected " + pieceTokens[p] + " tokens of " + perToken);
                }
                all = all.then(piece);
            }
            if (buf.hasRemaining()) {
                throw new IOException(part + " holds " + buf.remaining() + " bytes after the summary of piece "
                        + (p - 1));
            }
        }
        if (p != pieceTokens.length) {
            throw new IOException("the o summaries of " + f.name + " end at piece " + p + " of " + pieceTokens.length);
        }
        return all;
    }

    /**
     * The result file of a sequence in --output-mode checksums, from its pieces' staged files: the
     * header with the combined summary in its metadata, the sampled rows (o_sampled) where o would
     * be, the final state (S, then z: final_state and final_normalizer), then with --state-every the
     * S of every recorded state in order (states) and their z (normalizers). The recorded states are
     * copied here once; o is never written. Each part's size is checked against what its piece must
     * have written.
     */
    private void checksumsResult(FileSystem fs, SequenceFile f, int sequence, long[] pieceTokens, PieceGroups groups,
                                 long tokenOffset, OutputStream out) throws IOException {
        AttentionSpec spec = spec(f);
        Variant variant = cfg.variant();
        DType oDtype = outputDtype(f);
        OutputSummary summary = combinedSummary(fs, f, sequence, pieceTokens, groups);
        out.write(outputHeader(f, spec, variant, oDtype, cfg.get(Settings.SCALE), summary,
                cfg.spotCheckTolerance(oDtype), tokenOffset).encode());
        for (SpotCheck.Point point : summary.samples) {
            out.write(point.row());
        }
        Staging.copyPart(fs, staging.checksumsPart(sequence, -1, "final"), spec.stateBytes(), out);
        if (!variant.checkpoints()) {
            return;
        }
        for (String kind : spec.normalized() ? new String[] {"states", "normalizers"} : new String[] {"states"}) {
            long record = "states".equals(kind) ? LightningState.kvBytes(spec) : LightningState.normalizerBytes(spec);
            long start = 0;
            for (int p = 0; p < pieceTokens.length; p++) {
                long count = variant.checkpointsIn(start, pieceTokens[p]);
                Staging.copyPart(fs, staging.checksumsPart(sequence, p, kind), count * record, out);
                start += pieceTokens[p];
            }
        }
    }

    /**
     * The state a sequence starts from: its stored state with --initial-states (read here, with
     * positioned reads; the driver checked its shape and that the file has no initial state of its
     * own), else the file's initial_state/initial_normalizer or zero.
     */
    private LightningState initialState(SequenceFiles.Opened in, SequenceFile f, AttentionSpec spec, int sequence,
                                        StoredStates.State stored) throws IOException {
        return stored != null ? stored.read(hadoop.get(), spec, f.name, sequence)
                : PieceWork.initialState(in.reader, f, spec, sequence);
    }

    private static LightningState readState(Staging.StateReader reader, Path path, long offset, AttentionSpec spec)
            throws IOException {
        byte[] raw = reader.read(path, offset, new byte[Math.toIntExact(spec.stateBytes())]);
        return LightningState.fromBytes(spec, ByteBuffer.wrap(raw));
    }
}
