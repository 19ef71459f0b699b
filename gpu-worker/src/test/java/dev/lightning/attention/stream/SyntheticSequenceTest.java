package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.SafetensorsFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.EOFException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The virtual safetensors file: its bytes for any range, its values, and that it reads as a real file. */
class SyntheticSequenceTest {
    @TempDir
    Path tmp;

    @Test
    void anyRangeReadsTheSameBytesAsTheWholeFile() throws Exception {
        for (DType dtype : DType.values()) {
            SyntheticSequence s = new SyntheticSequence(1000, 3, 5, 7, dtype, 42);
            byte[] whole = new byte[Math.toIntExact(s.size())];
            s.reader().readFully(0, whole, 0, whole.length);
            SplittableRandom rnd = new SplittableRandom(7);
            for (int i = 0; i < 2000; i++) {
                int at = rnd.nextInt(whole.length);
                int len = rnd.nextInt(Math.min(whole.length - at, 3000) + 1);
                byte[] part = new byte[len + 3];
                s.reader().readFully(at, part, 3, len);
                for (int b = 0; b < len; b++) {
                    if (part[3 + b] != whole[at + b]) {
                        throw new AssertionError(dtype + ": byte " + (at + b) + " read in [" + at + ", " + (at + len)
                                + ") differs from the whole file's");
                    }
                }
            }
            // ranges that run into the next tensor, byte by byte across each boundary
            for (String t : new String[] {"q", "k", "v"}) {
                long begin = s.header().tensor(t).begin();
                for (long at = Math.max(0, begin - 5); at < begin + 5; at++) {
                    byte[] one = new byte[3];
                    s.reader().readFully(at, one, 0, 3);
                    assertArrayEquals(java.util.Arrays.copyOfRange(whole, (int) at, (int) at + 3), one);
                }
            }
            assertThrows(EOFException.class, () -> s.reader().readFully(s.size() - 2, new byte[4], 0, 4));
        }
    }

    /** The edges: a read that ends at the file's last byte, one a byte past it, and the smallest and widest shapes. */
    @Test
    void readsUpToTheLastByteAndShapesAtTheirBounds() throws Exception {
        SyntheticSequence s = new SyntheticSequence(10, 2, 3, 5, DType.F16, 4);
        byte[] whole = new byte[Math.toIntExact(s.size())];
        s.reader().readFully(0, whole, 0, whole.length);
        byte[] tail = new byte[7];
        s.reader().readFully(s.size() - 7, tail, 0, 7);
        assertArrayEquals(java.util.Arrays.copyOfRange(whole, whole.length - 7, whole.length), tail);
        s.reader().readFully(s.size(), new byte[0], 0, 0);
        assertThrows(java.io.EOFException.class, () -> s.reader().readFully(s.size() - 6, new byte[7], 0, 7));
        assertThrows(java.io.EOFException.class, () -> s.reader().readFully(-1, new byte[1], 0, 1));
        assertEquals(1, new SyntheticSequence(1, 1, 1, 1, DType.BF16, 0).tokens);
        assertEquals(256, new SyntheticSequence(1, 1, 256, 256, DType.F32, 0).dk);
        for (long[] bad : new long[][] {{0, 1, 1, 1}, {1, 0, 1, 1}, {1, 1, 0, 1}, {1, 1, 1, 0}, {1, 1, 257, 1}, {1, 1, 1, 257}}) {
            assertThrows(InvalidInputException.class, () -> new SyntheticSequence(bad[0], (int) bad[1], (int) bad[2],
                    (int) bad[3], DType.F32, 0), java.util.Arrays.toString(bad));
        }
    }

    @Test
    void writtenFileReadsBackAsTheValuesAndDescribesAsARealFile() throws Exception {
        SyntheticSequence s = new SyntheticSequence(63, 3, 5, 7, DType.BF16, 3);
        Path file = tmp.resolve(s.name());
        s.writeTo(file);
        assertEquals(s.size(), Files.size(file));
        Map<String, SafetensorsFile.Tensor> t = SafetensorsFile.read(file);
        float[] v = t.get("v").toFloats();
        float[] q = t.get("q").toFloats();
        double sum = 0;
        double sumSq = 0;
        int zeros = 0;
        for (int i = 0; i < v.length; i++) {
            float expect = s.value(SyntheticSequence.V, i / (3 * 7), (i / 7) % 3, i % 7);
            assertEquals(expect, v[i], 0, "v element " + i);
            assertTrue(Math.abs(v[i]) <= 1, "amplitude 1 (BF16 rounds the largest values up to 1)");
            zeros += v[i] == 0 ? 1 : 0;
            sum += v[i];
            sumSq += v[i] * v[i];
        }
        assertEquals(0, zeros, "values are (u - 32767.5) / 32768, never 0 before rounding");
        assertEquals(0, sum / v.length, 0.1, "mean near 0");
        assertEquals(1 / 3.0, sumSq / v.length, 0.08, "variance near 1/3 for amplitude 1");
        float[] row = new float[5];
        s.row(SyntheticSequence.Q, 62, 2, row);
        for (int d = 0; d < 5; d++) {
            assertEquals(q[(62 * 3 + 2) * 5 + d], row[d], 0);
            assertTrue(Math.abs(row[d]) < 1 / Math.sqrt(5) + 1e-3, "q amplitude 1/sqrt(Dk)");
        }
        SequenceFile f = s.describe(Slopes::minimax, false);
        assertEquals(63, f.tokens);
        assertEquals(DType.BF16, f.dtype);
        assertEquals(s.uri(), f.path);
        assertEquals("synthetic-63-3-5-7-bf16-3.safetensors", f.name);
        assertArrayEquals(Slopes.minimax(3), f.layout().slopes(), 0);
        AttentionSpec spec = f.spec(1.0, 16);
        assertEquals(3, spec.heads());
        assertEquals(s, SyntheticSequence.ofUri(f.path));
    }

    @Test
    void everyElementOfEveryDtypeIsItsValue() throws Exception {
        for (DType dtype : DType.values()) {
            SyntheticSequence s = new SyntheticSequence(257, 3, 6, 5, dtype, -5);
            Path file = tmp.resolve(dtype + ".safetensors");
            s.writeTo(file);
            Map<String, SafetensorsFile.Tensor> t = SafetensorsFile.read(file);
            int[] tensors = {SyntheticSequence.Q, SyntheticSequence.K, SyntheticSequence.V};
            String[] names = {"q", "k", "v"};
            for (int x = 0; x < 3; x++) {
                int width = x == 2 ? 5 : 6;
                float[] got = t.get(names[x]).toFloats();
                for (int i = 0; i < got.length; i++) {
                    float expect = s.value(tensors[x], i / (3 * width), (i / width) % 3, i % width);
                    if (Float.floatToIntBits(expect) != Float.floatToIntBits(got[i])) {
                        throw new AssertionError(dtype + " " + names[x] + " element " + i + ": file " + got[i]
                                + ", value() " + expect);
                    }
                }
            }
        }
    }

    @Test
    void seedsAndTensorsGiveDifferentValues() {
        SyntheticSequence a = new SyntheticSequence(100, 2, 4, 4, DType.F32, 1);
        SyntheticSequence b = new SyntheticSequence(100, 2, 4, 4, DType.F32, 2);
        int same = 0;
        for (int t = 0; t < 100; t++) {
            same += a.value(SyntheticSequence.K, t, 1, 3) == b.value(SyntheticSequence.K, t, 1, 3) ? 1 : 0;
            same += a.value(SyntheticSequence.K, t, 1, 3) == a.value(SyntheticSequence.V, t, 1, 3) ? 1 : 0;
        }
        assertTrue(same < 3, same + " equal values of 200");
        assertNotEquals(a.name(), b.name());
    }

    @Test
    void parsesTheOptionAndRefusesBadOnes() {
        SyntheticSequence s = SyntheticSequence.parse("10000000, 2,64,64,BF16,1");
        assertEquals("10000000,2,64,64,bf16,1", s.spec());
        assertEquals(10_000_000L, s.tokens);
        for (String bad : new String[] {"1,2,3", "0,2,64,64,bf16,1", "10,2,64,64,i8,1", "10,2,300,64,f32,1",
                "x,2,64,64,f32,1"}) {
            InvalidInputException e = assertThrows(InvalidInputException.class, () -> SyntheticSequence.parse(bad));
            assertTrue(e.getMessage().contains("--synthetic"), e.getMessage());
        }
        // the whole spec is named, dtype and seed too
        InvalidInputException e = assertThrows(InvalidInputException.class,
                () -> SyntheticSequence.parse("0,2,16,16,bf16,3"));
        assertTrue(e.getMessage().startsWith("--synthetic 0,2,16,16,bf16,3:"), e.getMessage());
    }

    /**
     * A field that is no number is named, with what it takes, not said in Long's words ('For input string: "x"', which
     * named no field) or as Math's "long overflow" for a sequence of more bytes than a long counts, counting the
     * whole file (q, k and v, and the header), not its largest tensor.
     */
    @Test
    void aBadFieldIsNamedWithWhatItTakes() {
        String[][] cases = {{"100,2,16,16,bf16,x", "seed is 'x', expected a whole number up to 9223372036854775807"},
                {"1e6,2,16,16,bf16,1", "T is '1e6', expected a whole number"},
                {"100,3000000000,16,16,bf16,1", "H is '3000000000', expected a whole number up to 2147483647"},
                {"100,2,16,16k,bf16,1", "Dv is '16k'"},
                {"9000000000000000000,2,256,256,f32,1", "more bytes than a file can hold (2^63 - 1); use a smaller T or H"},
                // each tensor 2^62 bytes, which a long counts, but q, k and v together 3 x 2^62: not a negative size
                {"1152921504606846976,1,1,1,f32,1", "more bytes than a file can hold (2^63 - 1); use a smaller T or H"}};
        for (String[] c : cases) {
            String m = assertThrows(InvalidInputException.class, () -> SyntheticSequence.parse(c[0])).getMessage();
            assertTrue(m.startsWith("--synthetic '" + c[0] + "': ") && m.contains(c[1]) && !m.contains("input string")
                    && !m.contains("overflow"), m);
        }
    }

    @Test
    void crc32cCombinesLikeTheConcatenation() {
        SplittableRandom rnd = new SplittableRandom(11);
        for (int i = 0; i < 200; i++) {
            byte[] a = new byte[rnd.nextInt(i < 5 ? 1 : 5000)];
            byte[] b = new byte[rnd.nextInt(i < 10 ? 2 : 70000)];
            rnd.nextBytes(a);
            rnd.nextBytes(b);
            java.util.zip.CRC32C whole = new java.util.zip.CRC32C();
            whole.update(a);
            whole.update(b);
            assertEquals((int) whole.getValue(), Crc32c.combine(crc(a), crc(b), b.length), "|A| " + a.length + ", |B| "
                    + b.length);
        }
        // a part longer than 2^30 bytes (zeros, so the test stays fast)
        byte[] a = {1, 2, 3};
        byte[] zeros = new byte[1 << 20];
        long n = (1L << 30) + 12345;
        java.util.zip.CRC32C whole = new java.util.zip.CRC32C();
        java.util.zip.CRC32C partB = new java.util.zip.CRC32C();
        whole.update(a);
        for (long done = 0; done < n; done += zeros.length) {
            int len = (int) Math.min(zeros.length, n - done);
            whole.update(zeros, 0, len);
            partB.update(zeros, 0, len);
        }
        assertEquals((int) whole.getValue(), Crc32c.combine(crc(a), (int) partB.getValue(), n));
    }

    static int crc(byte[] b) {
        java.util.zip.CRC32C c = new java.util.zip.CRC32C();
        c.update(b);
        return (int) c.getValue();
    }
}
