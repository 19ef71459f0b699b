package dev.lightning.attention.job.pass;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.exec.FaultPoints;
import dev.lightning.attention.job.hadoop.HadoopConf;
import dev.lightning.attention.job.input.SequenceFiles;
import dev.lightning.attention.job.input.StoredStates;
import dev.lightning.attention.job.output.OutputHeader;
import dev.lightning.attention.job.output.SplitOutputs;
import dev.lightning.attention.job.output.Staging;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.stream.CpuFallback;
import dev.lightning.attention.stream.NonFiniteException;
import dev.lightning.attention.stream.OutputSummary;
import dev.lightning.attention.stream.PieceWork;
import dev.lightning.attention.stream.RangeReader;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.stream.SpotCheck;
import dev.lightning.attention.stream.Variant;
import dev.lightning.attention.stream.WindowBuffers;
import dev.lightning.attention.tensor.DType;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * Pass 2 on the executors: the outputs ({@link #pass2}), each piece computed from its incoming
 * state; with --output-mode checksums the checksum sink and its spot checks instead of o, and the
 * result files assembled from what the pieces staged ({@link #writeChecksumsResult}).
 */
final class Pass2Tasks extends PassTasks {
    private static final long serialVersionUID = 1L;

    Pass2Tasks(HadoopConf hadoop, Staging staging, JobConfig cfg, PassProgress progress) {
        super(hadoop, staging, cfg, progress);
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
            long kept = 0;
            FileSystem stagingFs = fs(staging.root);
            List<String> skipped = new ArrayList<>();
            List<String> names = new ArrayList<>();
            try (AttentionBackend backend = backend();
                 Staging.StateReader reader = new Staging.StateReader(stagingFs)) {
                WindowBuffers windows = WindowBuffers.of(backend); // the backend's close() releases them
                for (List<PieceItem> run : PieceItem.runs(items)) {
                    SequenceFile f = run.get(0).file;
                    names.add(f.name);
                    String unit = unit("pass2", run);
                    if (staging.alreadyDone(stagingFs, unit)) {
                        resumed++;
                        for (PieceItem it : run) {
                            kept += it.piece.tokens();
                            kept(it.piece);
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
                            PassProgress.Computing counted = computing(p);
                            try {
                                LightningState incoming = p.isFirst()
                                        ? initialState(in, f, spec, p.sequence(), it.stored)
                                        : prefixOf(reader, staging, p.sequence(), 0, p.index(), it.scanBlock, spec);
                                written.addAll(CpuFallback.run(backend, cfg.gpuOomToCpu(), cfg.gpuOptional(), f.name + " " + p,
                                        b -> outputsOf(b, windows, in.reader, f, p, incoming, it.stored, stagingFs,
                                                attempt(ctx), summaries, counted)));
                            } catch (NonFiniteException e) {
                                // nothing of this piece was renamed into place; in skip mode the driver drops the
                                // sequence, and the run gets no marker
                                skipped.add(skipOrThrow(e));
                                clean = false;
                            }
                            tokens += p.tokens();
                            counted.done();
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
                                                continued(run.get(0).stored), out)));
                            }
                        }
                    }
                    if (clean) {
                        staging.markDone(stagingFs, unit, attempt(ctx), written);
                        FaultPoints.reach("pass2");
                    }
                }
                return report("pass2", ctx, items.size(), tokens, backend, start, skipped, resumed, kept, names);
            }
        };
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
                                            java.io.ByteArrayOutputStream summaries, PassProgress.Computing counted)
            throws IOException {
        if (cfg.checksums()) {
            return checksumsOf(b, windows, in, f, p, incoming, stored, stagingFs, attempt, summaries, counted);
        }
        PieceWork work = work(b, f, windows, counted);
        Variant variant = cfg.variant();
        if (!SplitOutputs.needed(p.count(), variant)) {
            return List.of(Staging.writeAtomically(stagingFs, staging.stagedOutput(f.name), attempt, out -> {
                out.write(outputHeader(f, stored).encode());
                LightningState last = work.outputs(b, in, f, p, incoming, out);
                out.write(last.toBytes());
            }));
        }
        return SplitOutputs.of(cfg, stagingFs, staging).writePiece(stagingFs, f.name, outputLayout(f, stored), p,
                attempt, out -> {
                    LightningState last = work.outputs(b, in, f, p, incoming, out.get("o"),
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
                                              java.io.ByteArrayOutputStream summaries,
                                              PassProgress.Computing counted) throws IOException {
        PieceWork work = work(b, f, windows, counted);
        List<Staging.Written> files = new ArrayList<>();
        AttentionSpec spec = spec(f);
        DType oDtype = outputDtype(f);
        OutputSummary.Sink sink = new OutputSummary.Sink(oDtype, p.start(),
                Math.toIntExact(f.outputBytesPerToken(oDtype)), SpotCheck.samples(f.tokens, p));
        LightningState[] last = new LightningState[1];
        if (!cfg.variant().checkpoints()) {
            last[0] = work.outputs(b, in, f, p, incoming, sink);
        } else if (!spec.normalized()) {
            files.add(Staging.writeAtomically(stagingFs, staging.checksumsPart(p.sequence(), p.index(), "states"),
                    attempt, states -> last[0] = work.outputs(b, in, f, p, incoming, sink, states,
                            OutputStream.nullOutputStream())));
        } else {
            files.add(Staging.writeAtomically(stagingFs, staging.checksumsPart(p.sequence(), p.index(), "states"),
                    attempt, states -> files.add(Staging.writeAtomically(stagingFs,
                            staging.checksumsPart(p.sequence(), p.index(), "normalizers"), attempt,
                            z -> last[0] = work.outputs(b, in, f, p, incoming, sink, states, z)))));
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
                              OutputHeader.Continued continued) throws IOException {
        Path staged = staging.stagedOutput(f.name);
        if (fs.exists(staged)) {
            fs.delete(staged, false); // an earlier attempt's: the same bytes, written again
        }
        Staging.writeAtomically(fs, staged, "driver",
                out -> checksumsResult(fs, f, sequence, pieceTokens, groups, continued, out));
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
            long size;
            try {
                size = fs.getFileStatus(part).getLen();
            } catch (java.io.FileNotFoundException e) {
                // pass 2 succeeded, so its task staged them: where the driver looks, the executors did not write
                throw dev.lightning.attention.job.output.UnsharedOutputException.onDriver("the staged o summaries file",
                        part, e);
            }
            byte[] raw = new byte[Math.toIntExact(size)];
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
                                 OutputHeader.Continued continued, OutputStream out) throws IOException {
        AttentionSpec spec = spec(f);
        Variant variant = cfg.variant();
        DType oDtype = outputDtype(f);
        OutputSummary summary = combinedSummary(fs, f, sequence, pieceTokens, groups);
        out.write(OutputHeader.of(f, spec, variant, oDtype, cfg.get(Settings.SCALE), summary,
                cfg.spotCheckTolerance(oDtype), continued).encode());
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
}
