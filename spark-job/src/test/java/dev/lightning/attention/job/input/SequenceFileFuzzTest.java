package dev.lightning.attention.job.input;

import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.SafetensorsFile;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocalFileSystem;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Thousands of corrupted sequence files through the reader the driver uses: each is accepted (a
 * corruption of data bytes changes no header) or rejected with the project's InvalidInputException
 * naming the file; nothing else escapes, and nothing hangs.
 */
class SequenceFileFuzzTest {
    @TempDir
    Path tmp;

    @Test
    void corruptedFilesOnlyEverRaiseInvalidInput() throws Exception {
        Path valid = tmp.resolve("valid.safetensors");
        SplittableRandom rnd = new SplittableRandom(77);
        float[] qk = new float[5 * 3 * 4];
        float[] v = new float[5 * 3 * 6];
        for (int i = 0; i < qk.length; i++) {
            qk[i] = (float) rnd.nextDouble();
        }
        SafetensorsFile.write(valid, List.of(
                SafetensorsFile.Tensor.of("q", DType.F16, new long[] {5, 3, 4}, qk),
                SafetensorsFile.Tensor.of("k", DType.F16, new long[] {5, 3, 4}, qk),
                SafetensorsFile.Tensor.of("v", DType.F16, new long[] {5, 3, 6}, v),
                SafetensorsFile.Tensor.of("slope", DType.F32, new long[] {3}, new float[] {0.1f, 0.2f, 0.3f}),
                SafetensorsFile.Tensor.of("initial_state", DType.F32, new long[] {3, 4, 6}, new float[72])));
        byte[] good = Files.readAllBytes(valid);
        LocalFileSystem fs = FileSystem.getLocal(new Configuration());
        int headerEnd = 8 + (int) java.nio.ByteBuffer.wrap(good, 0, 8).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
        int accepted = 0;
        long start = System.nanoTime();
        Path file = tmp.resolve("fuzz.safetensors");
        for (int trial = 0; trial < 3000; trial++) {
            byte[] b = good.clone();
            int kind = rnd.nextInt(5);
            if (kind == 0) {
                b = java.util.Arrays.copyOf(b, rnd.nextInt(b.length));      // truncated anywhere
            } else if (kind == 1) {
                b[rnd.nextInt(8)] = (byte) rnd.nextInt(256);                  // header length
            } else {
                for (int e = 0; e <= rnd.nextInt(3); e++) {                  // header text
                    b[8 + rnd.nextInt(headerEnd - 8)] = (byte) (kind == 2 ? rnd.nextInt(256) : "0123456789,[]{}\"".charAt(rnd.nextInt(16)));
                }
            }
            Files.write(file, b);
            try {
                SequenceFile f = SequenceFiles.inspect(fs, fs.getFileStatus(new org.apache.hadoop.fs.Path(file.toUri())),
                        "fuzz.safetensors", Slopes::minimax);
                assertTrue(f.tokens >= 1);
                accepted++;
            } catch (InvalidInputException e) {
                assertTrue(e.getMessage().startsWith("fuzz.safetensors"), e.getMessage());
            } catch (Throwable t) {
                fail("trial " + trial + " (kind " + kind + ") raised " + t, t);
            }
        }
        assertTrue((System.nanoTime() - start) / 1e9 < 60, "3,000 files took more than a minute");
        assertTrue(accepted > 0 && accepted < 3000, "accepted " + accepted + " of 3000: the corruptions must vary");
        assertEquals(good.length, Files.size(valid));
    }
}
