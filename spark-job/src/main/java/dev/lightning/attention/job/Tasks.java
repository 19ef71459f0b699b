package dev.lightning.attention.job;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.stream.CpuFallback;
import dev.lightning.attention.stream.NonFiniteException;
import dev.lightning.attention.stream.NonFiniteInputException;
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
     * A piece with the file it belongs to, and the stored state its sequence continues
     * (--initial-states) or null: piece 0 starts from it, and every piece's header records its
     * token_offset.
     */
    static final class PieceItem implements Serializable {
        private static final long serialVersionUID = 1L;
        final SequenceFile file;
        final Piece piece;
        final StoredStates.State stored;

        PieceItem(SequenceFile file, Piece piece, StoredStates.State stored) {
            this.file = file;
            this.piece = piece;
            this.stored = stored;
        }
    }

    /** One unit of a split sequence's blocked scan, with the tokens of its elements. */
    static final class ScanItem implements Serializable {
        private static final long serialVersionUID = 1L;
        final SequenceFile file;
        final int sequence;
        final BlockScan.Unit unit;
        final long[] tokens;
        /** The stored state the sequence continues (--initial-states), or null. */
        final StoredStates.State stored;

        ScanItem(SequenceFile file, int sequence, BlockScan.Unit unit, long[] tokens, StoredStates.State stored) {
            this.file = file;
            this.sequence = sequence;
            this.unit = unit;
            this.tokens = tokens;
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

    /** The output metadata key of a continued sequence's offset in the whole sequence. */
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

    /** The work of {@code f} on {@code backend}, in the task's window buffers (taken once per task, see {@link WindowBuffers}). */
    private PieceWork work(AttentionBackend backend, SequenceFile f, WindowBuffers windows) {
        return new PieceWork(cfg.get(Settings.SCALE), cfg.chunkSize(), cfg.variant(),
                cfg.get(backend.device().startsWith("cuda") ? Settings.GPU_WINDOW_BYTES : Settings.WINDOW_BYTES),
                outputDtype(f)).reusing(windows);
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

    private void progress(Piece p) {
        piecesDone.add(1);
        tokensDone.add(p.tokens());
    }

    /** Pass 1: each piece's local state, written to the staging area. */
    WorkRDD.Worker<PieceItem> pass1() {
        return (items, ctx) -> {
            long start = System.nanoTime();
            long tokens = 0;
            int resumed = 0;
            List<String> skipped = new ArrayList<>();
            List<String> names = new ArrayList<>();
            FileSystem stagingFs = fs(staging.root);
            try (AttentionBackend backend = backend()) {
                WindowBuffers windows = WindowBuffers.of(backend); // the backend's close() releases them
                for (PieceItem it : items) {
                    String unit = unit("pass1", it.piece.sequence(), it.piece.index());
                    names.add(it.file.name);
                    if (staging.alreadyDone(stagingFs, unit)) {
                        resumed++;
                        progress(it.piece);
                        continue;
                    }
                    LightningState local;
                    boolean clean = true;
                    try (SequenceFiles.Opened in = SequenceFiles.open(it.file, hadoop.get())) {
                        local = CpuFallback.run(backend, cfg.gpuOomToCpu(), it.file.name + " " + it.piece,
                                b -> work(b, it.file, windows).localState(b, in.reader, it.file, it.piece));
                    } catch (NonFiniteInputException e) {
                        // skip mode: the sequence is dropped after pass 2; a zero state keeps the scan going
                        skipped.add(skipOrThrow(e));
                        local = LightningState.zeros(spec(it.file));
                        clean = false;
                    }
                    LightningState localState = local;
                    Path dst = staging.localState(it.piece.sequence(), it.piece.index());
                    Staging.Written w = Staging.writeAtomically(stagingFs, dst, attempt(ctx),
                            out -> out.write(localState.toBytes()));
                    if (clean) {
                        staging.markDone(stagingFs, unit, attempt(ctx), List.of(w));
                    }
                    FaultPoints.reach("pass1");
                    tokens += it.piece.tokens();
                    progress(it.piece);
                }
                return report("pass1", ctx, items.size(), tokens, backend, start, skipped, resumed, names);
            }
        };
    }

    /**
     * The scan: each item one unit of a split sequence's blocked scan ({@link BlockScan}), which
     * reads at most a block of states and one carry and writes at most a block, holding two
     * states at a time. The sequence's initial state is the carry into block 0 of every level.
     */
    WorkRDD.Worker<ScanItem> scan() {
        return (items, ctx) -> {
            long start = System.nanoTime();
            FileSystem stagingFs = fs(staging.root);
            List<String> skipped = new ArrayList<>();
            List<String> names = new ArrayList<>();
            int resumed = 0;
            for (ScanItem it : items) {
                names.add(it.file.name);
                String unit = it.unit.name(it.sequence);
                if (staging.alreadyDone(stagingFs, unit)) {
                    resumed++;
                    piecesDone.add(1);
                    continue;
                }
                AttentionSpec spec = spec(it.file);
                StagedStates states = new StagedStates(stagingFs, it, spec, attempt(ctx), skipped);
                BlockScan.run(spec, it.unit, it.tokens, states);
                if (states.clean) {
                    staging.markDone(stagingFs, unit, attempt(ctx), states.written);
                }
                piecesDone.add(1); // units done, for the progress line
            }
            return report("scan", ctx, items.size(), 0, null, start, skipped, resumed, names);
        };
    }

    /** The states of one sequence's scan in the staging area, for one unit: what it wrote, and whether its input was clean. */
    private final class StagedStates implements BlockScan.States {
        private final FileSystem fs;
        private final ScanItem item;
        private final AttentionSpec spec;
        private final String attempt;
        private final List<String> skipped;
        final List<Staging.Written> written = new ArrayList<>();
        /** False when the initial state held NaN/Inf in skip mode: zeros stood in, and the unit gets no marker. */
        boolean clean = true;

        StagedStates(FileSystem fs, ScanItem item, AttentionSpec spec, String attempt, List<String> skipped) {
            this.fs = fs;
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
            return readState(fs, level == 0 ? staging.localState(item.sequence, j)
                    : staging.scanElement(item.sequence, level, j), spec);
        }

        @Override
        public void putElement(int level, int j, LightningState s) throws IOException {
            write(staging.scanElement(item.sequence, level, j), s);
        }

        @Override
        public LightningState prefix(int level, int j) throws IOException {
            return readState(fs, staging.scanPrefix(item.sequence, level, j), spec);
        }

        @Override
        public void putPrefix(int level, int j, LightningState s) throws IOException {
            write(level == 0 ? staging.incomingState(item.sequence, j) : staging.scanPrefix(item.sequence, level, j), s);
        }

        private void write(Path dst, LightningState s) throws IOException {
            written.add(Staging.writeAtomically(fs, dst, attempt, out -> out.write(s.toBytes())));
            FaultPoints.reach("scan");
        }
    }

    /**
     * Pass 2: outputs. A whole sequence goes straight to its staged output file; a piece of a split
     * one to a part (and the last piece also to the sequence's final state).
     */
    WorkRDD.Worker<PieceItem> pass2() {
        return (items, ctx) -> {
            long start = System.nanoTime();
            long tokens = 0;
            int resumed = 0;
            FileSystem stagingFs = fs(staging.root);
            List<String> skipped = new ArrayList<>();
            List<String> names = new ArrayList<>();
            try (AttentionBackend backend = backend()) {
                WindowBuffers windows = WindowBuffers.of(backend); // the backend's close() releases them
                for (PieceItem it : items) {
                    SequenceFile f = it.file;
                    Piece p = it.piece;
                    names.add(f.name);
                    String unit = unit("pass2", p.sequence(), p.index());
                    if (staging.alreadyDone(stagingFs, unit)) {
                        resumed++;
                        tokens += p.tokens();
                        progress(p);
                        continue;
                    }
                    try (SequenceFiles.Opened in = SequenceFiles.open(f, hadoop.get())) {
                        AttentionSpec spec = spec(f);
                        LightningState incoming = p.isFirst()
                                ? initialState(in, f, spec, p.sequence(), it.stored)
                                : readState(stagingFs, staging.incomingState(p.sequence(), p.index()), spec);
                        List<Staging.Written> written = CpuFallback.run(backend, cfg.gpuOomToCpu(), f.name + " " + p,
                                b -> outputsOf(b, windows, in.reader, f, p, incoming, it.stored, stagingFs,
                                        attempt(ctx)));
                        staging.markDone(stagingFs, unit, attempt(ctx), written);
                        FaultPoints.reach("pass2");
                    } catch (NonFiniteException e) {
                        // nothing of this piece was renamed into place; in skip mode the driver drops the sequence
                        skipped.add(skipOrThrow(e));
                    }
                    tokens += p.tokens();
                    progress(p);
                }
                return report("pass2", ctx, items.size(), tokens, backend, start, skipped, resumed, names);
            }
        };
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
                                            FileSystem stagingFs, String attempt) throws IOException {
        if (cfg.checksums()) {
            return checksumsOf(b, windows, in, f, p, incoming, stored, stagingFs, attempt);
        }
        Variant variant = cfg.variant();
        if (!SplitOutputs.needed(p.count(), variant)) {
            return List.of(Staging.writeAtomically(stagingFs, staging.stagedOutput(f.name), attempt, out -> {
                out.write(outputHeader(f, stored).encode());
                LightningState last = work(b, f, windows).outputs(b, in, f, p, incoming, out);
                out.write(last.toBytes());
            }));
        }
        return splitOutputs(stagingFs).writePiece(stagingFs, f.name, outputHeader(f, stored), spec(f), variant, p, attempt,
                (o, states, normalizers) -> work(b, f, windows).outputs(b, in, f, p, incoming, o, states, normalizers));
    }

    /** How this run writes the outputs of split sequences (and of all with --state-every): --output-form on the output's file system. */
    SplitOutputs splitOutputs(FileSystem outputFs) {
        return new SplitOutputs(SplitOutputs.Form.choose(cfg.get(Settings.OUTPUT_FORM), outputFs, staging.path()),
                staging);
    }

    /**
     * Pass 2 of one piece in --output-mode checksums: o is computed as usual and fed to the
     * checksum sink instead of a file; the sampled rows get their float64 spot checks here, on the
     * executor, from the same input. The piece stages its summary (a few hundred bytes plus the
     * sampled rows), with --state-every its recorded S and z, and, if last, the final state
     * ({@link Staging#checksumsPart}). The result file's header carries the combined summary, so
     * it can only be written once every piece is done: an unsplit sequence's here, by its one
     * piece; a split one's by the driver after pass 2 ({@link #writeChecksumsResult}).
     */
    private List<Staging.Written> checksumsOf(AttentionBackend b, WindowBuffers windows, RangeReader in, SequenceFile f,
                                              Piece p, LightningState incoming, StoredStates.State stored,
                                              FileSystem stagingFs, String attempt) throws IOException {
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
        files.add(Staging.writeAtomically(stagingFs, staging.checksumsPart(p.sequence(), p.index(), "o-summary"),
                attempt, out -> out.write(bytes)));
        if (p.isLast()) {
            files.add(Staging.writeAtomically(stagingFs, staging.checksumsPart(p.sequence(), -1, "final"), attempt,
                    out -> out.write(last[0].toBytes())));
        }
        if (!p.isSplit()) {
            files.add(Staging.writeAtomically(stagingFs, staging.stagedOutput(f.name), attempt,
                    out -> checksumsResult(stagingFs, f, p.sequence(), new long[] {p.tokens()}, tokenOffset(stored),
                            out)));
        }
        return files;
    }

    /**
     * After pass 2, on the driver, --output-mode checksums: the result file of split sequence
     * {@code sequence} from what its pieces staged. Nothing but staged files it reads verified
     * markers of goes in, so a resumed run writes it again, whole, with the same bytes.
     */
    void writeChecksumsResult(FileSystem fs, SequenceFile f, int sequence, long[] pieceTokens, long tokenOffset)
            throws IOException {
        Path staged = staging.stagedOutput(f.name);
        if (fs.exists(staged)) {
            fs.delete(staged, false); // an earlier attempt's: the same bytes, written again
        }
        Staging.writeAtomically(fs, staged, "driver",
                out -> checksumsResult(fs, f, sequence, pieceTokens, tokenOffset, out));
    }

    /**
     * The staged piece summaries of a sequence (--output-mode checksums) combined in piece order,
     * each checked against the o bytes its piece must have fed to the sink.
     */
    private OutputSummary combinedSummary(FileSystem fs, SequenceFile f, int sequence, long[] pieceTokens)
            throws IOException {
        OutputSummary all = OutputSummary.empty();
        long perToken = f.outputBytesPerToken(outputDtype(f));
        for (int p = 0; p < pieceTokens.length; p++) {
            Path part = staging.checksumsPart(sequence, p, "o-summary");
            byte[] raw = new byte[Math.toIntExact(fs.getFileStatus(part).getLen())];
            try (FSDataInputStream in = fs.open(part)) {
                in.readFully(0, raw, 0, raw.length);
            }
            OutputSummary piece = OutputSummary.fromBytes(raw);
            if (piece.bytes != pieceTokens[p] * perToken) {
                throw new IOException(part + " summarizes " + piece.bytes + " bytes of o, expected " + pieceTokens[p]
                        + " tokens of " + perToken);
            }
            all = all.then(piece);
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
    private void checksumsResult(FileSystem fs, SequenceFile f, int sequence, long[] pieceTokens, long tokenOffset,
                                 OutputStream out) throws IOException {
        AttentionSpec spec = spec(f);
        Variant variant = cfg.variant();
        DType oDtype = outputDtype(f);
        OutputSummary summary = combinedSummary(fs, f, sequence, pieceTokens);
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

    private static LightningState readState(FileSystem fs, Path path, AttentionSpec spec) throws IOException {
        byte[] raw = new byte[Math.toIntExact(spec.stateBytes())];
        try (FSDataInputStream in = fs.open(path)) {
            in.readFully(0, raw, 0, raw.length);
        }
        return LightningState.fromBytes(spec, ByteBuffer.wrap(raw));
    }
}
