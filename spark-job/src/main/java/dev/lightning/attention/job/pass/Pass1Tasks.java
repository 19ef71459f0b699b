package dev.lightning.attention.job.pass;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.exec.FaultPoints;
import dev.lightning.attention.job.hadoop.HadoopConf;
import dev.lightning.attention.job.input.SequenceFiles;
import dev.lightning.attention.job.output.Staging;
import dev.lightning.attention.stream.CpuFallback;
import dev.lightning.attention.stream.NonFiniteInputException;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.stream.WindowBuffers;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/** Pass 1 on the executors: the local states of the pieces that have a successor ({@link #pass1}). */
final class Pass1Tasks extends PassTasks {
    private static final long serialVersionUID = 1L;

    Pass1Tasks(HadoopConf hadoop, Staging staging, JobConfig cfg, PassProgress progress) {
        super(hadoop, staging, cfg, progress);
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
            long kept = 0;
            List<String> skipped = new ArrayList<>();
            List<String> names = new ArrayList<>();
            FileSystem stagingFs = fs(staging.root);
            try (AttentionBackend backend = backend()) {
                WindowBuffers windows = WindowBuffers.of(backend); // the backend's close() releases them
                for (List<PieceItem> run : PieceItem.runs(items)) {
                    SequenceFile f = run.get(0).file;
                    names.add(f.name);
                    String unit = unit("pass1", run);
                    if (staging.alreadyDone(stagingFs, unit)) {
                        resumed++;
                        for (PieceItem it : run) {
                            kept += it.piece.tokens();
                            kept(it.piece);
                        }
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
                                PassProgress.Computing counted = computing(it.piece);
                                try {
                                    local = inStream(() -> CpuFallback.run(backend, cfg.gpuOomToCpu(), cfg.gpuOptional(),
                                            f.name + " " + it.piece,
                                            b -> work(b, f, windows, counted).localState(b, in.reader, f, it.piece)));
                                } catch (NonFiniteInputException e) {
                                    // skip mode: the sequence is dropped after pass 2; a zero state keeps the scan going
                                    skipped.add(skipOrThrow(e));
                                    local = LightningState.zeros(spec(f));
                                    clean[0] = false;
                                }
                                out.write(local.toBytes());
                                tokens[0] += it.piece.tokens();
                                counted.done();
                            }
                        });
                    }
                    if (clean[0]) {
                        staging.markDone(stagingFs, unit, attempt(ctx), List.of(w));
                    }
                    FaultPoints.reach("pass1");
                }
                return report("pass1", ctx, items.size(), tokens[0], backend, start, skipped, resumed, kept, names);
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
}
