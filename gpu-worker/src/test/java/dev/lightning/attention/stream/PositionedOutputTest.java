package dev.lightning.attention.stream;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.zip.CRC32C;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Writes from buffers into ranges of a local file ({@link LocalWrites}, {@link PositionedOutput}),
 * held against the bytes given and against java.util.zip's CRC32C of them: parts on several
 * threads whatever this machine's cores, at odd positions, from heap and off-heap buffers,
 * mixed with array writes, and the range's bounds.
 */
class PositionedOutputTest {
    @TempDir
    Path tmp;

    private static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new SplittableRandom(seed).nextBytes(b);
        return b;
    }

    private static long crc(byte[] b, int off, int len) {
        CRC32C c = new CRC32C();
        c.update(b, off, len);
        return c.getValue();
    }

    private static ByteBuffer buffer(byte[] bytes, boolean direct) {
        // at an odd offset of a larger buffer, as a window's o lies in its block
        ByteBuffer whole = direct ? ByteBuffer.allocateDirect(bytes.length + 11) : ByteBuffer.allocate(bytes.length + 11);
        whole.position(7);
        whole.put(bytes);
        whole.position(7).limit(7 + bytes.length);
        return whole.slice();
    }

    /** Sizes below, at and above the parallel threshold, on 1 to 5 threads, at odd positions: the file's bytes and the CRC. */
    @Test
    void partsWriteTheBytesAndTheirCrc() throws Exception {
        int[] sizes = {1, 4095, LocalReads.PARALLEL_BYTES - 1, LocalReads.PARALLEL_BYTES, 9 * (1 << 20) + 12345};
        Path p = tmp.resolve("o.bin");
        for (int size : sizes) {
            for (int threads : new int[] {1, 2, 5}) {
                for (boolean direct : new boolean[] {false, true}) {
                    byte[] bytes = random(size, size * 31L + threads);
                    long at = 1_003;
                    Files.deleteIfExists(p);
                    try (FileChannel ch = FileChannel.open(p, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                        ByteBuffer src = buffer(bytes, direct);
                        int crc = LocalWrites.write(ch, at, src, threads);
                        String what = size + " bytes on " + threads + " threads" + (direct ? ", direct" : ", heap");
                        assertEquals(crc(bytes, 0, size), Integer.toUnsignedLong(crc), what + ": CRC32C");
                        assertEquals(src.limit(), src.position(), what + ": the source ends at its limit");
                        assertEquals(0, ch.position(), what + ": the channel's own position is untouched");
                    }
                    byte[] file = Files.readAllBytes(p);
                    assertEquals(at + size, file.length);
                    assertArrayEquals(bytes, Arrays.copyOfRange(file, (int) at, file.length), size + " bytes, " + threads);
                }
            }
        }
    }

    /** A range written by array and buffer writes in turn: the bytes in order, the CRC of all, and nothing outside it. */
    @Test
    void aRangeTakesArraysAndBuffersInOrder() throws Exception {
        Path p = tmp.resolve("range.bin");
        byte[] before = random(6 * (1 << 20) + 77, 1);
        Files.write(p, before);
        int begin = 4099;
        byte[] head = random(100, 2);
        byte[] body = random(5 * (1 << 20) + 3, 3);
        byte[] tail = random(9, 4);
        int size = head.length + body.length + tail.length + 1;
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.WRITE)) {
            PositionedOutput out = new PositionedOutput(ch, begin, size);
            out.write(head);
            assertEquals(body.length, out.write(buffer(body, true)));
            out.write(tail, 0, tail.length);
            IOException early = assertThrows(IOException.class, out::finish);
            assertTrue(early.getMessage().contains("of its range of " + size), early.getMessage());
            out.write(0x5A);
            out.finish();
            IOException past = assertThrows(IOException.class, () -> out.write(new byte[1]));
            assertTrue(past.getMessage().contains("past its range"), past.getMessage());
            assertThrows(IOException.class, () -> out.write(buffer(new byte[1], true)));
            byte[] all = new byte[size];
            System.arraycopy(head, 0, all, 0, head.length);
            System.arraycopy(body, 0, all, head.length, body.length);
            System.arraycopy(tail, 0, all, head.length + body.length, tail.length);
            all[size - 1] = 0x5A;
            assertEquals(crc(all, 0, size), out.crc32c());
            assertEquals(size, out.written());
            byte[] file = Files.readAllBytes(p);
            assertArrayEquals(all, Arrays.copyOfRange(file, begin, begin + size));
            assertArrayEquals(Arrays.copyOfRange(before, 0, begin), Arrays.copyOfRange(file, 0, begin), "before the range");
            assertArrayEquals(Arrays.copyOfRange(before, begin + size, before.length),
                    Arrays.copyOfRange(file, begin + size, file.length), "after the range");
        }
    }

    /** PieceWork's write of an off-heap window goes to the range's channel side, whole. */
    @Test
    void pieceWorkWritesOffHeapWindowsThroughTheChannel() throws Exception {
        Path p = tmp.resolve("piece.bin");
        byte[] o = random(LocalReads.PARALLEL_BYTES + 4096 * 3 + 5, 9);
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            PositionedOutput out = PositionedOutput.unbounded(ch);
            PieceWork.write(out, buffer(o, true));
            PieceWork.write(out, buffer(o, false));
            byte[] twice = new byte[2 * o.length];
            System.arraycopy(o, 0, twice, 0, o.length);
            System.arraycopy(o, 0, twice, o.length, o.length);
            assertEquals(crc(twice, 0, twice.length), out.crc32c());
            out.close();
            assertThrows(IOException.class, () -> out.write(1));
        }
        byte[] file = Files.readAllBytes(p);
        assertEquals(2 * o.length, file.length);
        assertArrayEquals(o, Arrays.copyOfRange(file, 0, o.length));
        assertArrayEquals(o, Arrays.copyOfRange(file, o.length, file.length));
    }
}
