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
import java.io.InputStream;
import java.io.OutputStream;
import java.io.Serializable;
import java.net.InetAddress;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The four kinds of task of a run, each a {@link WorkRDD.Worker}: pass 1 (local states of the
 * pieces that have a successor), the scan (incoming states, per split sequence), pass 2
 * (outputs) and the assembly of split sequences' outputs. They share the run's settings here.
 *
 * <p>Every task writes only into the run's {@link Staging}: nothing reaches the output directory
 * before the driver's {@link Commit}. Each unit of work (a piece of a pass, a sequence of the scan
 * or the assembly) ends with a marker listing its files with size and CRC32C; with --resume a unit
 * whose marker still matches its files is skipped, so a resumed run computes only what is missing
 * and writes the same bytes as an uninterrupted one.
 */
final class Tasks implements Serializable {
    private static final long serialVersionUID = 1L;

    /** A piece with the file it belongs to. */
    static final class PieceItem implements Serializable {
        private static final long serialVersionUID = 1L;
        final SequenceFile file;
        final Piece piece;

        PieceItem(SequenceFile file, Piece piece) {
            this.file = file;
            this.piece = piece;
        }
    }

    /** A split sequence with the token counts of its pieces, in order. */
    static final class SplitItem implements Serializable {
        private static final long serialVersionUID = 1L;
        final SequenceFile file;
        final int sequence;
        final long[] pieceTokens;

        SplitItem(SequenceFile file, int sequence, long[] pieceTokens) {
            this.file = file;
            this.sequence = sequence;
            this.pieceTokens = pieceTokens;
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
        return outputHeader(f, spec, variant, oDtype, scale, null, 0);
    }

    /**
     * The header of an output file; with {@code summary} (--output-mode checksums) the file holds
     * o_sampled [S, H, Dv] (the rows of the S sampled tokens, in the output dtype) where o would be,
     * and the summary's metadata ({@link OutputSummary#metadata}) with the spot checks' {@code tolerance}.
     */
    static SafetensorsHeader outputHeader(SequenceFile f, AttentionSpec spec, Variant variant, DType oDtype,
                                          double scale, OutputSummary summary, double tolerance) {
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
        if (summary != null) {
            metadata.putAll(summary.metadata(f.tokens, h, spec.dv(), oDtype, tolerance));
        }
        return SafetensorsHeader.layout(f.name, tensors, metadata);
    }

    private SafetensorsHeader outputHeader(SequenceFile f) {
        return outputHeader(f, spec(f), cfg.variant(), outputDtype(f), cfg.get(Settings.SCALE));
    }

    private PieceWork work(AttentionBackend backend, SequenceFile f) {
        return new PieceWork(cfg.get(Settings.SCALE), cfg.chunkSize(), cfg.variant(),
                cfg.get(backend.device().startsWith("cuda") ? Settings.GPU_WINDOW_BYTES : Settings.WINDOW_BYTES),
                outputDtype(f));
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
        String host;
        try {
            host = InetAddress.getLocalHost().getHostName();
        } catch (IOException e) {
            host = "unknown";
        }
        String executor = org.apache.spark.SparkEnv.get() == null ? "?" : org.apache.spark.SparkEnv.get().executorId();
        Integer gpu = ExecutorBackends.assignedGpu(cfg.get(Settings.GPU_RESOURCE));
        return new TaskReport(pass, ctx.partitionId(), pieces, tokens, b == null ? "-" : b.name(),
                b == null ? "-" : b.device(), host, executor, gpu == null ? "-" : gpu.toString(),
                System.nanoTime() - start, skipped.toArray(new String[0]), resumed,
                new java.util.LinkedHashSet<>(files).toArray(new String[0]));
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
                                b -> work(b, it.file).localState(b, in.reader, it.file, it.piece));
                    } catch (NonFiniteInputException e) {
                        // skip mode: the sequence is dropped at assembly; a zero state keeps the scan going
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
     * The scan: for each split sequence, incoming(p+1) = lambda^(n_p) * incoming(p) + local(p), in
     * float32, starting from the file's initial state. Holds two states at a time.
     */
    WorkRDD.Worker<SplitItem> scan() {
        return (items, ctx) -> {
            long start = System.nanoTime();
            FileSystem stagingFs = fs(staging.root);
            List<String> skipped = new ArrayList<>();
            List<String> names = new ArrayList<>();
            int resumed = 0;
            for (SplitItem it : items) {
                SequenceFile f = it.file;
                names.add(f.name);
                String unit = unit("scan", it.sequence, -1);
                if (staging.alreadyDone(stagingFs, unit)) {
                    resumed++;
                    continue;
                }
                AttentionSpec spec = spec(f);
                LightningState state;
                boolean clean = true;
                try (SequenceFiles.Opened in = SequenceFiles.open(f, hadoop.get())) {
                    state = PieceWork.initialState(in.reader, f, spec, it.sequence);
                } catch (NonFiniteInputException e) {
                    skipped.add(skipOrThrow(e));
                    state = LightningState.zeros(spec);
                    clean = false;
                }
                List<Staging.Written> written = new ArrayList<>();
                for (int p = 0; p + 1 < it.pieceTokens.length; p++) {
                    LightningState local = readState(stagingFs, staging.localState(it.sequence, p), spec);
                    state = state.then(spec, it.pieceTokens[p], local);
                    LightningState incoming = state;
                    written.add(Staging.writeAtomically(stagingFs, staging.incomingState(it.sequence, p + 1),
                            attempt(ctx), out -> out.write(incoming.toBytes())));
                    FaultPoints.reach("scan");
                }
                if (clean) {
                    staging.markDone(stagingFs, unit, attempt(ctx), written);
                }
            }
            return report("scan", ctx, items.size(), 0, null, start, skipped, resumed, names);
        };
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
                                ? PieceWork.initialState(in.reader, f, spec, p.sequence())
                                : readState(stagingFs, staging.incomingState(p.sequence(), p.index()), spec);
                        List<Staging.Written> written = CpuFallback.run(backend, cfg.gpuOomToCpu(), f.name + " " + p,
                                b -> outputsOf(b, in.reader, f, p, incoming, stagingFs, attempt(ctx)));
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
     * Pass 2 of one piece on {@code b}; returns the files written. A whole sequence without
     * checkpoints goes straight to its staged output file (o, then the final state). Otherwise the
     * piece writes parts: its o and, with --state-every, its recorded states (each written while
     * the other is open: one pass over the piece fills both); the last piece also the final state.
     * A whole sequence with checkpoints is then assembled at once, as the assembly tasks do it
     * for split ones: its states follow o and the final state in the file, so they cannot be
     * streamed into it directly.
     */
    private List<Staging.Written> outputsOf(AttentionBackend b, RangeReader in, SequenceFile f, Piece p,
                                            LightningState incoming, FileSystem stagingFs, String attempt)
            throws IOException {
        if (cfg.checksums()) {
            return checksumsOf(b, in, f, p, incoming, stagingFs, attempt);
        }
        List<Staging.Written> files = new ArrayList<>();
        Variant variant = cfg.variant();
        if (!p.isSplit() && !variant.checkpoints()) {
            files.add(Staging.writeAtomically(stagingFs, staging.stagedOutput(f.name), attempt, out -> {
                out.write(outputHeader(f).encode());
                LightningState last = work(b, f).outputs(b, in, f, p, incoming, out);
                out.write(last.toBytes());
            }));
            return files;
        }
        LightningState[] last = new LightningState[1];
        if (variant.checkpoints()) {
            files.add(Staging.writeAtomically(stagingFs, staging.checkpointsPart(p.sequence(), p.index()), attempt,
                    states -> files.add(Staging.writeAtomically(stagingFs, staging.outputPart(p.sequence(), p.index()),
                            attempt, out -> last[0] = work(b, f).outputs(b, in, f, p, incoming, out,
                                    states)))));
        } else {
            files.add(Staging.writeAtomically(stagingFs, staging.outputPart(p.sequence(), p.index()), attempt,
                    out -> last[0] = work(b, f).outputs(b, in, f, p, incoming, out)));
        }
        if (p.isLast()) {
            files.add(Staging.writeAtomically(stagingFs, staging.finalState(p.sequence()), attempt,
                    out -> out.write(last[0].toBytes())));
        }
        if (!p.isSplit()) {
            files.add(Staging.writeAtomically(stagingFs, staging.stagedOutput(f.name), attempt,
                    out -> assembleInto(stagingFs, f, p.sequence(), new long[] {p.tokens()}, out)));
        }
        return files;
    }

    /**
     * Pass 2 of one piece in --output-mode checksums: o is computed as usual and fed to the
     * checksum sink instead of a file; the sampled rows get their float64 spot checks here, on the
     * executor, from the same input; the piece's summary is staged (a few hundred bytes plus the
     * sampled rows), with the recorded states and, for the last piece, the final state, as in
     * files mode. A whole sequence is then assembled at once, as with checkpoints.
     */
    private List<Staging.Written> checksumsOf(AttentionBackend b, RangeReader in, SequenceFile f, Piece p,
                                              LightningState incoming, FileSystem stagingFs, String attempt)
            throws IOException {
        List<Staging.Written> files = new ArrayList<>();
        AttentionSpec spec = spec(f);
        DType oDtype = outputDtype(f);
        OutputSummary.Sink sink = new OutputSummary.Sink(oDtype, p.start(),
                Math.toIntExact(f.outputBytesPerToken(oDtype)), SpotCheck.samples(f.tokens, p));
        LightningState[] last = new LightningState[1];
        if (cfg.variant().checkpoints()) {
            files.add(Staging.writeAtomically(stagingFs, staging.checkpointsPart(p.sequence(), p.index()), attempt,
                    states -> last[0] = work(b, f).outputs(b, in, f, p, incoming, sink, states)));
        } else {
            last[0] = work(b, f).outputs(b, in, f, p, incoming, sink);
        }
        OutputSummary summary = sink.summary();
        List<SpotCheck.Point> checked = new ArrayList<>();
        for (SpotCheck.Point point : summary.samples) {
            checked.add(SpotCheck.check(in, f, spec, oDtype, point));
        }
        byte[] bytes = summary.withSamples(checked).toBytes();
        files.add(Staging.writeAtomically(stagingFs, staging.outputSummary(p.sequence(), p.index()), attempt,
                out -> out.write(bytes)));
        if (p.isLast()) {
            files.add(Staging.writeAtomically(stagingFs, staging.finalState(p.sequence()), attempt,
                    out -> out.write(last[0].toBytes())));
        }
        if (!p.isSplit()) {
            files.add(Staging.writeAtomically(stagingFs, staging.stagedOutput(f.name), attempt,
                    out -> assembleInto(stagingFs, f, p.sequence(), new long[] {p.tokens()}, out)));
        }
        return files;
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
            Path part = staging.outputSummary(sequence, p);
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
     * Writes a sequence's output file from its staged parts: the header, o of every piece in
     * order, the final state (S, then z: final_state and final_normalizer), then with checkpoints
     * the S of every recorded state in order (states) and their z (normalizers). Each part's size
     * is checked against what its piece must have written. In --output-mode checksums the pieces'
     * summaries take the place of o: the header carries their combination and the sampled rows
     * (o_sampled) stand where o would.
     */
    private void assembleInto(FileSystem fs, SequenceFile f, int sequence, long[] pieceTokens, OutputStream out)
            throws IOException {
        AttentionSpec spec = spec(f);
        Variant variant = cfg.variant();
        DType oDtype = outputDtype(f);
        OutputSummary summary = cfg.checksums() ? combinedSummary(fs, f, sequence, pieceTokens) : null;
        out.write(outputHeader(f, spec, variant, oDtype, cfg.get(Settings.SCALE), summary,
                cfg.spotCheckTolerance(oDtype)).encode());
        for (int p = 0; summary == null && p < pieceTokens.length; p++) {
            copy(fs, staging.outputPart(sequence, p), pieceTokens[p] * f.outputBytesPerToken(oDtype), out);
        }
        for (SpotCheck.Point point : summary == null ? List.<SpotCheck.Point>of() : summary.samples) {
            out.write(point.row());
        }
        copy(fs, staging.finalState(sequence), spec.stateBytes(), out);
        if (!variant.checkpoints()) {
            return;
        }
        long sBytes = LightningState.kvBytes(spec);
        long zBytes = LightningState.normalizerBytes(spec);
        for (long skip : spec.normalized() ? new long[] {0, sBytes} : new long[] {0}) {
            long take = skip == 0 ? sBytes : zBytes;
            long start = 0;
            for (int p = 0; p < pieceTokens.length; p++) {
                long count = variant.checkpointsIn(start, pieceTokens[p]);
                copyStrided(fs, staging.checkpointsPart(sequence, p), count, spec.stateBytes(), skip, take, out);
                start += pieceTokens[p];
            }
        }
    }

    /** Assembly: header, the parts in order and the final state, streamed into the staged output file. */
    WorkRDD.Worker<SplitItem> assemble() {
        return (items, ctx) -> {
            long start = System.nanoTime();
            FileSystem stagingFs = fs(staging.root);
            List<String> names = new ArrayList<>();
            int resumed = 0;
            for (SplitItem it : items) {
                SequenceFile f = it.file;
                names.add(f.name);
                String unit = unit("assemble", it.sequence, -1);
                if (staging.alreadyDone(stagingFs, unit)) {
                    resumed++;
                    continue;
                }
                Staging.Written w = Staging.writeAtomically(stagingFs, staging.stagedOutput(f.name), attempt(ctx),
                        out -> assembleInto(stagingFs, f, it.sequence, it.pieceTokens, out));
                staging.markDone(stagingFs, unit, attempt(ctx), List.of(w));
                FaultPoints.reach("assemble");
            }
            return report("assemble", ctx, items.size(), 0, null, start, List.of(), resumed, names);
        };
    }

    private static void copy(FileSystem fs, Path part, long expect, OutputStream out) throws IOException {
        long len = fs.getFileStatus(part).getLen();
        if (len != expect) {
            throw new IOException(part + " holds " + len + " bytes, expected " + expect);
        }
        byte[] buf = new byte[1 << 20];
        try (InputStream in = fs.open(part)) {
            for (int r; (r = in.read(buf)) > 0; ) {
                out.write(buf, 0, r);
            }
        }
    }

    /**
     * Copies, from a part holding {@code count} records of {@code record} bytes, bytes
     * [skip, skip + take) of each record, in order (the S or the z of recorded states).
     */
    private static void copyStrided(FileSystem fs, Path part, long count, long record, long skip, long take,
                                    OutputStream out) throws IOException {
        long len = fs.getFileStatus(part).getLen();
        if (len != count * record) {
            throw new IOException(part + " holds " + len + " bytes, expected " + count + " states of " + record);
        }
        byte[] buf = new byte[(int) Math.min(take, 1 << 20)];
        try (FSDataInputStream in = fs.open(part)) {
            for (long c = 0; c < count; c++) {
                for (long done = 0; done < take; ) {
                    int n = (int) Math.min(buf.length, take - done);
                    in.readFully(c * record + skip + done, buf, 0, n);
                    out.write(buf, 0, n);
                    done += n;
                }
            }
        }
    }

    private static LightningState readState(FileSystem fs, Path path, AttentionSpec spec) throws IOException {
        byte[] raw = new byte[Math.toIntExact(spec.stateBytes())];
        try (FSDataInputStream in = fs.open(path)) {
            in.readFully(0, raw, 0, raw.length);
        }
        return LightningState.fromBytes(spec, ByteBuffer.wrap(raw));
    }
}
