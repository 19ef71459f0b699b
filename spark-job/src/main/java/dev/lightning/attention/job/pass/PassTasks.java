package dev.lightning.attention.job.pass;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.exec.ExecutorBackends;
import dev.lightning.attention.job.hadoop.HadoopConf;
import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.job.input.SequenceFiles;
import dev.lightning.attention.job.input.StoredStates;
import dev.lightning.attention.job.output.Commit;
import dev.lightning.attention.job.output.OutputHeader;
import dev.lightning.attention.job.output.SplitOutputs;
import dev.lightning.attention.job.output.Staging;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.stream.NonFiniteException;
import dev.lightning.attention.stream.OutputLayout;
import dev.lightning.attention.stream.PieceWork;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.stream.WindowBuffers;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsHeader;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.TaskContext;

import java.io.IOException;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.util.List;

/**
 * What the three kinds of task of a run share, each a {@link WorkRDD.Worker}: pass 1
 * ({@link Pass1Tasks}: local states of the pieces that have a successor), the scan
 * ({@link ScanTasks}: incoming states, in blocks of pieces) and pass 2 ({@link Pass2Tasks}:
 * outputs, each piece writing its own share of its sequence's output file: {@link SplitOutputs}).
 * They share the run's settings, staging, Hadoop configuration and progress accumulators here,
 * with how a task opens its backend, names its units and reports.
 *
 * <p>Every task writes only into the run's {@link Staging}: nothing reaches the output directory
 * before the driver's {@link Commit}. Each unit of work (a piece of a pass, a block of the scan)
 * ends with a marker listing its files (or byte ranges) with size and CRC32C; with --resume a unit
 * whose marker still matches its files is skipped, so a resumed run computes only what is missing
 * and writes the same bytes as an uninterrupted one.
 */
abstract class PassTasks implements Serializable {
    private static final long serialVersionUID = 1L;

    final HadoopConf hadoop;
    final Staging staging;
    /** The run's options, read by entry. */
    final JobConfig cfg;
    final PassProgress progress;

    PassTasks(HadoopConf hadoop, Staging staging, JobConfig cfg, PassProgress progress) {
        this.hadoop = hadoop;
        this.staging = staging;
        this.cfg = cfg;
        this.progress = progress;
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
     * How the pieces of {@code f} write its output file in this run ({@link SplitOutputs}): the
     * header of {@link #outputHeader(SequenceFile, StoredStates.State)} cut as {@link OutputLayout#lightning}.
     */
    OutputLayout outputLayout(SequenceFile f, StoredStates.State stored) {
        return OutputLayout.lightning(outputHeader(f, stored), f.tokens, cfg.variant().stateEvery());
    }

    /**
     * The header of {@code f}'s output file in this run; {@code stored}: the stored state it
     * continues (--initial-states), or null.
     */
    SafetensorsHeader outputHeader(SequenceFile f, StoredStates.State stored) {
        return OutputHeader.of(f, spec(f), cfg.variant(), outputDtype(f), cfg.get(Settings.SCALE), null, 0,
                continued(stored));
    }

    /**
     * What the output of a sequence continued from {@code stored} records of its chain: the tokens it had absorbed
     * (token_offset; -1 when none or unknown) and the inputs it absorbed them from ({@link StoredStates.State#chain}).
     */
    static OutputHeader.Continued continued(StoredStates.State stored) {
        return stored == null ? OutputHeader.Continued.NONE
                : new OutputHeader.Continued(stored.tokens, stored.chain());
    }

    /**
     * The work of {@code f} on {@code backend}, in the task's window buffers (taken once per task,
     * see {@link WindowBuffers}): every piece of the task reads into the same block (with --read-ahead,
     * the same two blocks). Its windows' tokens go to {@code counted} as they are done
     * ({@link #computing}).
     */
    PieceWork work(AttentionBackend backend, SequenceFile f, WindowBuffers windows, PassProgress.Computing counted) {
        return new PieceWork(cfg.get(Settings.SCALE), cfg.chunkSize(), cfg.variant(),
                cfg.get(backend.gpuOrdinal() >= 0 ? Settings.GPU_WINDOW_BYTES : Settings.WINDOW_BYTES),
                outputDtype(f)).reusing(windows).readAhead("on".equals(cfg.get(Settings.READ_AHEAD)))
                .counting(counted);
    }

    AttentionBackend backend() {
        return ExecutorBackends.open(cfg.get(Settings.BACKEND), cfg.get(Settings.GPU_RESOURCE),
                cfg.get(Settings.GPU_MEMORY));
    }

    FileSystem fs(String path) throws IOException {
        return HadoopPaths.fileSystem(new Path(path), hadoop.get());
    }

    static String attempt(TaskContext ctx) {
        return ctx.stageId() + "-" + ctx.partitionId() + "-" + ctx.taskAttemptId();
    }

    String skipOrThrow(NonFiniteException e) {
        if (!cfg.get(Settings.SKIP_NONFINITE)) {
            throw e;
        }
        return e.record();
    }

    TaskReport report(String pass, TaskContext ctx, int pieces, long tokens, AttentionBackend b, long start,
                      List<String> skipped, int resumed, long keptTokens, List<String> files) {
        return TaskReport.ofTask(pass, ctx, pieces, tokens, b == null ? null : b.name(), b == null ? null : b.device(),
                cfg.get(Settings.GPU_RESOURCE), start, skipped, resumed, keptTokens, files);
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

    /**
     * Piece {@code p}, which this task starts computing, for the progress line: its windows count
     * as they are done, the piece at its {@link PassProgress.Computing#done}.
     */
    PassProgress.Computing computing(Piece p) {
        return progress.computing(p.tokens());
    }

    /** Piece {@code p} kept from the interrupted run (--resume), for the progress line. */
    void kept(Piece p) {
        progress.kept(p.tokens());
    }

    /** y_j of {@code level} of a sequence's scan with blocks of {@code block}: in the file of the down unit that wrote it. */
    static LightningState prefixOf(Staging.StateReader reader, Staging staging, int sequence, int level, int j,
                                   int block, AttentionSpec spec) throws IOException {
        int b = (j - 1) / block;
        Path file = reader.path(sequence, level, b, () -> staging.prefixes(sequence, level, b));
        return readState(reader, file, (long) (j - 1 - b * block) * spec.stateBytes(), spec);
    }

    /**
     * The state a sequence starts from: its stored state with --initial-states (read here, with
     * positioned reads; the driver checked its shape and that the file has no initial state of its
     * own), else the file's initial_state/initial_normalizer or zero.
     */
    LightningState initialState(SequenceFiles.Opened in, SequenceFile f, AttentionSpec spec, int sequence,
                                StoredStates.State stored) throws IOException {
        return stored != null ? stored.read(hadoop.get(), spec, f.name, sequence)
                : PieceWork.initialState(in.reader, f, spec, sequence);
    }

    static LightningState readState(Staging.StateReader reader, Path path, long offset, AttentionSpec spec)
            throws IOException {
        byte[] raw = reader.read(path, offset, new byte[Math.toIntExact(spec.stateBytes())]);
        return LightningState.fromBytes(spec, ByteBuffer.wrap(raw));
    }
}
