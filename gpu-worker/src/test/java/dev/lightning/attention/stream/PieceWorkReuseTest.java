package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.cpu.CpuBackend;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.RandomAccessFile;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * One PieceWork computing piece after piece (as a task of many pieces does, reusing its window
 * buffers) gives bit for bit what a fresh PieceWork gives for each piece, also after a piece that
 * failed on a NaN in its input, and for pieces of different lengths (a shorter last piece).
 */
class PieceWorkReuseTest {
    @TempDir
    Path tmp;

    @Test
    void aReusedPieceWorkEqualsFreshOnes() throws Exception {
        int t = 1000;
        int h = 3;
        int dk = 12;
        int dv = 20;
        SplittableRandom rnd = new SplittableRandom(31);
        float[] q = uniform(rnd, t * h * dk);
        float[] k = uniform(rnd, t * h * dk);
        float[] v = uniform(rnd, t * h * dv);
        k[70 * h * dk + 5] = Float.NaN; // in the first piece only
        Path file = tmp.resolve("s.safetensors");
        SafetensorsFile.write(file, List.of(SafetensorsFile.Tensor.of("q", DType.F32, new long[] {t, h, dk}, q),
                SafetensorsFile.Tensor.of("k", DType.F32, new long[] {t, h, dk}, k),
                SafetensorsFile.Tensor.of("v", DType.F32, new long[] {t, h, dv}, v)));
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "r"); CpuBackend cpu = new CpuBackend()) {
            RangeReader in = (position, buf, off, len) -> {
                raf.seek(position);
                raf.readFully(buf, off, len);
            };
            SequenceFile f = SequenceFile.describe(file.toString(), "s.safetensors", raf.length(), in,
                    Slopes::minimax, false);
            PieceWork reused = new PieceWork(0.5, 64, 64 << 20, DType.BF16);
            AttentionSpec spec = reused.spec(f);
            Piece[] pieces = {new Piece(0, 0, 8, 0, 128), new Piece(0, 1, 8, 128, 256), new Piece(0, 2, 8, 256, 384),
                    new Piece(0, 7, 8, 896, t)};
            assertThrows(NonFiniteInputException.class, () -> reused.localState(cpu, in, f, pieces[0]));
            assertThrows(NonFiniteInputException.class, () -> reused.outputs(cpu, in, f, pieces[0],
                    LightningState.zeros(spec), new ByteArrayOutputStream()));
            for (int i = 1; i < pieces.length; i++) {
                Piece p = pieces[i];
                PieceWork fresh = new PieceWork(0.5, 64, 64 << 20, DType.BF16);
                assertArrayEquals(fresh.localState(cpu, in, f, p).toBytes(), reused.localState(cpu, in, f, p).toBytes(),
                        p + ": local state");
                LightningState incoming = LightningState.zeros(spec).then(spec, 100,
                        fresh.localState(cpu, in, f, pieces[1]));
                ByteArrayOutputStream a = new ByteArrayOutputStream();
                ByteArrayOutputStream b = new ByteArrayOutputStream();
                LightningState sa = new PieceWork(0.5, 64, 64 << 20, DType.BF16).outputs(cpu, in, f, p, incoming, a);
                LightningState sb = reused.outputs(cpu, in, f, p, incoming, b);
                assertArrayEquals(a.toByteArray(), b.toByteArray(), p + ": o");
                assertArrayEquals(sa.toBytes(), sb.toBytes(), p + ": final state");
            }
        }
    }

    private static float[] uniform(SplittableRandom rnd, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (rnd.nextDouble() * 2 - 1);
        }
        return x;
    }
}
