package dev.lightning.attention.stream;

import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.cpu.CpuBackend;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * {@link PieceWork#counting}: each window's tokens, in order, once it is computed (pass 2: and
 * written), in both passes and with read-ahead, so that a task's progress can move while a piece
 * of many windows runs; a window found holding NaN/Inf is not computed and not counted.
 */
class PieceWorkCountingTest {
    @TempDir
    Path tmp;

    private Path write(int t, int nanAt) throws IOException {
        SplittableRandom rnd = new SplittableRandom(t);
        float[][] qkv = new float[3][t * 2 * 8];
        for (float[] x : qkv) {
            for (int i = 0; i < x.length; i++) {
                x[i] = (float) rnd.nextDouble(-1, 1);
            }
        }
        if (nanAt >= 0) {
            qkv[1][nanAt * 2 * 8] = Float.NaN;
        }
        Path file = tmp.resolve("t" + t + "-" + nanAt + ".st");
        SafetensorsFile.write(file, List.of(SafetensorsFile.Tensor.of("q", DType.F32, new long[] {t, 2, 8}, qkv[0]),
                SafetensorsFile.Tensor.of("k", DType.F32, new long[] {t, 2, 8}, qkv[1]),
                SafetensorsFile.Tensor.of("v", DType.F32, new long[] {t, 2, 8}, qkv[2])));
        return file;
    }

    /**
     * Pass 1 (or pass 2) of piece [start, end) of {@code file} in windows of 64 tokens, its counts
     * going to {@code counts}.
     */
    private static void run(Path file, long start, long end, boolean pass2, boolean readAhead, List<Long> counts)
            throws IOException {
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ);
             CpuBackend cpu = new CpuBackend()) {
            RangeReader in = RangeReader.of(channel);
            SequenceFile f = SequenceFile.describe(file.toString(), "f", channel.size(), in, Slopes::minimax);
            // 64 tokens of q, k, v and o in F32 (2 heads of 8): 16 KiB a window; twice that with read-ahead
            PieceWork work = new PieceWork(0.5, 64, readAhead ? 32 * 1024 : 16 * 1024, f.dtype).readAhead(readAhead)
                    .counting(counts::add);
            Piece p = new Piece(0, 1, 3, start, end);
            if (pass2) {
                work.outputs(cpu, in, f, p, PieceWork.initialState(in, f, 0), OutputStream.nullOutputStream());
            } else {
                work.localState(cpu, in, f, p);
            }
        }
    }

    @Test
    void eachWindowCountsItsTokensOnceComputed() throws IOException {
        Path file = write(1000, -1);
        for (boolean pass2 : new boolean[] {false, true}) {
            for (boolean ahead : new boolean[] {false, true}) {
                List<Long> counts = new ArrayList<>();
                run(file, 64, 340, pass2, ahead, counts);
                assertEquals(List.of(64L, 64L, 64L, 64L, 20L), counts,
                        "pass " + (pass2 ? 2 : 1) + (ahead ? ", reading ahead" : ""));
            }
        }
    }

    @Test
    void windowsFoundUncleanAreNotCounted() throws IOException {
        Path file = write(400, 200); // NaN in k of token 200: the fourth window, [192, 256)
        for (boolean pass2 : new boolean[] {false, true}) {
            for (boolean ahead : new boolean[] {false, true}) {
                List<Long> counts = new ArrayList<>();
                assertThrows(NonFiniteInputException.class, () -> run(file, 0, 400, pass2, ahead, counts));
                assertEquals(List.of(64L, 64L, 64L), counts, "pass " + (pass2 ? 2 : 1)
                        + (ahead ? ", reading ahead" : "") + ": the windows before the bad one");
            }
        }
    }
}
