package dev.lightning.attention.tensor;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * A file written from value sources ({@link SafetensorsFile#writeStreamed}) against the same values written whole
 * ({@link SafetensorsFile#write}): the same bytes, over blocks of 4 MiB and tensors whose values do not fill one, in
 * every dtype, an odd count of 16-bit values before a float32 tensor, metadata in the header, over a longer file of
 * the same name; and read back.
 */
class SafetensorsFileTest {
    @TempDir
    Path tmp;

    @Test
    void readFullyPutsTheBytesAtTheGivenPositionWhereverTheBufferStands() throws IOException {
        Path f = tmp.resolve("bytes");
        byte[] all = new byte[100];
        for (int i = 0; i < all.length; i++) {
            all[i] = (byte) i;
        }
        Files.write(f, all);
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.READ)) {
            ByteBuffer dst = ByteBuffer.allocate(10);
            dst.position(4); // bytes 4..9 of the buffer take the file's bytes 50..55
            SafetensorsFile.readFully(ch, dst, 50);
            assertEquals(10, dst.position());
            assertArrayEquals(new byte[] {0, 0, 0, 0, 50, 51, 52, 53, 54, 55}, dst.array());
            assertEquals(0, ch.position(), "the channel's own position does not move");
            InvalidInputException e = assertThrows(InvalidInputException.class,
                    () -> SafetensorsFile.readFully(ch, ByteBuffer.allocate(8), 96));
            assertEquals("unexpected end of file at 100", e.getMessage());
        }
    }

    @Test
    void streamedAndWholeWritesGiveTheSameBytes() throws IOException {
        SplittableRandom rnd = new SplittableRandom(3);
        long[][] shapes = {{1_100_000, 3}, {63, 1, 5}, {7}, {1}};
        DType[] dtypes = {DType.BF16, DType.F16, DType.F32, DType.F32};
        List<SafetensorsFile.Tensor> whole = new ArrayList<>();
        List<SafetensorsFile.Streamed> streamed = new ArrayList<>();
        for (int i = 0; i < shapes.length; i++) {
            int n = 1;
            for (long d : shapes[i]) {
                n *= (int) d;
            }
            float[] x = new float[n];
            for (int j = 0; j < n; j++) {
                x[j] = (float) (rnd.nextDouble() * 2 - 1) * 3;
            }
            whole.add(SafetensorsFile.Tensor.of("t" + i, dtypes[i], shapes[i], x));
            int[] next = {0};
            streamed.add(new SafetensorsFile.Streamed(new SafetensorsHeader.Spec("t" + i, dtypes[i], shapes[i]),
                    () -> x[next[0]++]));
        }
        Path a = tmp.resolve("whole.safetensors");
        Path b = tmp.resolve("streamed.safetensors");
        Files.writeString(b, "an earlier, longer file of that name, replaced".repeat(1000));
        SafetensorsFile.write(a, whole, Map.of("k", "v"));
        SafetensorsFile.writeStreamed(b, streamed, Map.of("k", "v"));
        // every byte, header included (the file's name is not in it), and no byte left of the longer file before
        byte[] wa = Files.readAllBytes(a);
        byte[] wb = Files.readAllBytes(b);
        assertEquals(wa.length, wb.length);
        assertArrayEquals(wa, wb);
        Map<String, SafetensorsFile.Tensor> back = SafetensorsFile.read(b);
        for (SafetensorsFile.Tensor t : whole) {
            assertArrayEquals(t.toFloats(), back.get(t.name).toFloats(), t.name);
        }
    }
}
