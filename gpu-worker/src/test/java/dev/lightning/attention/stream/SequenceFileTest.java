package dev.lightning.attention.stream;

import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.SafetensorsFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The engine's reading of a sequence file's header, without Spark: the optional tensors' dtype, shape and values
 * (each refused one past its edge, with a message naming the tensor, what was expected and what came), the head
 * widths' bounds, and the raw token ranges a table row is made of. The job's command line holds the same checks
 * end to end (BadInputTest); these hold the engine's own reader.
 */
class SequenceFileTest {
    private static final int T = 5;
    private static final int HQ = 4;
    private static final int HK = 2;
    private static final int DK = 3;
    private static final int DV = 2;

    @TempDir
    Path tmp;

    private int files;

    /** q [T, 4, 3], k [T, 2, 3], v [T, 2, 2] of random F32 values, then {@code extra}; described as {@code normalize} says. */
    private SequenceFile describe(boolean normalize, SafetensorsFile.Tensor... extra) throws Exception {
        return describe(normalize, DK, DV, extra);
    }

    private SequenceFile describe(boolean normalize, int dk, int dv, SafetensorsFile.Tensor... extra) throws Exception {
        Path file = write(dk, dv, extra);
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "r")) {
            return SequenceFile.describe(file.toString(), "s.safetensors", raf.length(), reader(raf), Slopes::minimax,
                    normalize);
        }
    }

    private Path write(int dk, int dv, SafetensorsFile.Tensor... extra) throws Exception {
        SplittableRandom rnd = new SplittableRandom(files);
        List<SafetensorsFile.Tensor> t = new ArrayList<>();
        t.add(SafetensorsFile.Tensor.of("q", DType.F32, new long[] {T, HQ, dk}, random(rnd, T * HQ * dk)));
        t.add(SafetensorsFile.Tensor.of("k", DType.F32, new long[] {T, HK, dk}, random(rnd, T * HK * dk)));
        t.add(SafetensorsFile.Tensor.of("v", DType.F32, new long[] {T, HK, dv}, random(rnd, T * HK * dv)));
        t.addAll(List.of(extra));
        Path file = tmp.resolve("s" + files++ + ".safetensors");
        SafetensorsFile.write(file, t);
        return file;
    }

    private static RangeReader reader(RandomAccessFile raf) {
        return (position, buf, off, len) -> {
            raf.seek(position);
            raf.readFully(buf, off, len);
        };
    }

    private static float[] random(SplittableRandom rnd, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (rnd.nextDouble() * 2 - 1);
        }
        return x;
    }

    private static SafetensorsFile.Tensor f32(String name, float[] values, long... shape) {
        return SafetensorsFile.Tensor.of(name, DType.F32, shape, values);
    }

    private String refused(boolean normalize, SafetensorsFile.Tensor... extra) {
        return assertThrows(InvalidInputException.class, () -> describe(normalize, extra)).getMessage();
    }

    @Test
    void slopesAreF32PerHeadFiniteAndNotNegative() throws Exception {
        SequenceFile f = describe(false, f32("slope", new float[] {0f, 0.5f, 8f, 1e-6f}, HQ));
        assertTrue(f.slopesFromFile);
        assertArrayEquals(new double[] {0, 0.5, 8, (double) 1e-6f}, f.spec(1.0, 64).slopes(), 0);
        assertEquals("s.safetensors: tensor 'slope' must be F32 [4], found F16 [4]",
                refused(false, SafetensorsFile.Tensor.of("slope", DType.F16, new long[] {HQ}, new float[HQ])));
        assertEquals("s.safetensors: tensor 'slope' must be F32 [4], found F32 [2]",
                refused(false, f32("slope", new float[2], HK)), "one a k head is not one a head");
        assertEquals("s.safetensors: slope[2] = -0.25, expected a finite value >= 0 (lambda = exp(-slope))",
                refused(false, f32("slope", new float[] {1, 1, -0.25f, 1}, HQ)));
        assertTrue(refused(false, f32("slope", new float[] {1, 1, 1, Float.NaN}, HQ)).contains("slope[3] = NaN"));
        assertTrue(refused(false, f32("slope", new float[] {Float.POSITIVE_INFINITY, 1, 1, 1}, HQ))
                .contains("slope[0] = Infinity"));
    }

    @Test
    void initialStateAndNormalizerHaveTheStateShape() throws Exception {
        float[] s = new float[HQ * DK * DV];
        float[] z = new float[HQ * DK];
        SequenceFile f = describe(true, f32("initial_state", s, HQ, DK, DV), f32("initial_normalizer", z, HQ, DK));
        assertTrue(f.initialStateOffset >= 0 && f.initialNormalizerOffset >= 0);
        assertEquals("s.safetensors: tensor 'initial_state' must be F32 [4, 3, 2], found F32 [4, 2, 3]",
                refused(false, f32("initial_state", s, HQ, DV, DK)));
        assertEquals("s.safetensors: tensor 'initial_state' must be F32 [4, 3, 2], found BF16 [4, 3, 2]",
                refused(false, SafetensorsFile.Tensor.of("initial_state", DType.BF16, new long[] {HQ, DK, DV}, s)));
        assertEquals("s.safetensors: tensor 'initial_normalizer' must be F32 [4, 3], found F32 [2, 3]",
                refused(true, f32("initial_normalizer", new float[HK * DK], HK, DK)));
        assertTrue(refused(false, f32("initial_normalizer", z, HQ, DK)).contains("pass --normalize"));
    }

    /** q, k and v as given (each a valid tensor of its own shape and dtype), described. */
    private String refusedQkv(SafetensorsFile.Tensor q, SafetensorsFile.Tensor k, SafetensorsFile.Tensor v)
            throws Exception {
        Path file = tmp.resolve("qkv" + files++ + ".safetensors");
        SafetensorsFile.write(file, List.of(q, k, v));
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "r")) {
            return assertThrows(InvalidInputException.class, () -> SequenceFile.describe(file.toString(),
                    "s.safetensors", raf.length(), reader(raf), Slopes::minimax, false)).getMessage();
        }
    }

    /**
     * k's width must be q's, and k and v must be q's dtype: the tasks read all three with q's Dk and element size.
     * Each refusal says what came.
     */
    @Test
    void kMustHaveQsWidthAndKAndVQsDtype() throws Exception {
        SplittableRandom rnd = new SplittableRandom(7);
        SafetensorsFile.Tensor q = f32("q", random(rnd, T * HQ * DK), T, HQ, DK);
        SafetensorsFile.Tensor k = f32("k", random(rnd, T * HK * DK), T, HK, DK);
        SafetensorsFile.Tensor v = f32("v", random(rnd, T * HK * DV), T, HK, DV);
        assertEquals("s.safetensors: expected q [T, Hq, Dk], k [T, Hk, Dk], v [T, Hv, Dv] with one T and one Dk; found "
                        + "q [5, 4, 3], k [5, 2, 4], v [5, 2, 2]",
                refusedQkv(q, f32("k", random(rnd, T * HK * (DK + 1)), T, HK, DK + 1), v));
        assertEquals("s.safetensors: q, k and v must share a dtype; q is F32, k is F16",
                refusedQkv(q, SafetensorsFile.Tensor.of("k", DType.F16, new long[] {T, HK, DK}, random(rnd, T * HK * DK)),
                        v));
        assertEquals("s.safetensors: q, k and v must share a dtype; q is F32, v is BF16",
                refusedQkv(q, k, SafetensorsFile.Tensor.of("v", DType.BF16, new long[] {T, HK, DV},
                        random(rnd, T * HK * DV))));
    }

    @Test
    void headWidthsWithinTheirBounds() throws Exception {
        assertEquals(1, describe(false, 1, 1).spec(1.0, 64).dk());
        assertEquals(256, describe(false, 256, 1).spec(1.0, 64).dk());
        String wide = assertThrows(InvalidInputException.class, () -> describe(false, 257, 1)).getMessage();
        assertEquals("s.safetensors: head width of 'q' is 257, expected 1..256", wide);
        String dv = assertThrows(InvalidInputException.class, () -> describe(false, 2, 257)).getMessage();
        assertTrue(dv.contains("head width of 'v' is 257"), dv);
    }

    /** The raw bytes of tokens [from, from + n) of q, k and v, as the file holds them; the range checked against T. */
    @Test
    void readTokensGivesTheFilesBytesOfARange() throws Exception {
        Path file = write(DK, DV);
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "r")) {
            RangeReader in = reader(raf);
            SequenceFile f = SequenceFile.describe(file.toString(), "s.safetensors", raf.length(), in, Slopes::minimax);
            var tensors = SafetensorsFile.read(file);
            for (int[] range : new int[][] {{0, T}, {2, 3}, {T, 0}, {4, 1}}) {
                byte[][] got = f.readTokens(in, range[0], range[1]);
                String[] names = {"q", "k", "v"};
                int[] widths = {HQ * DK, HK * DK, HK * DV};
                for (int i = 0; i < 3; i++) {
                    float[] expect = java.util.Arrays.copyOfRange(tensors.get(names[i]).toFloats(), range[0] * widths[i],
                            (range[0] + range[1]) * widths[i]);
                    float[] back = new float[got[i].length / 4];
                    ByteBuffer.wrap(got[i]).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(back);
                    assertArrayEquals(expect, back, names[i] + " tokens " + range[0] + " +" + range[1]);
                }
            }
            assertThrows(IndexOutOfBoundsException.class, () -> f.readTokens(in, 4, 2));
            assertThrows(IndexOutOfBoundsException.class, () -> f.readTokens(in, -1, 1));
            assertThrows(IndexOutOfBoundsException.class, () -> f.readTokens(in, 0, -1));
        }
    }

    /**
     * A missing q, k or v is refused with the layout a file holds as README's input table gives it: grouped head
     * counts (a file of Hq = 4 and Hk = 2, as here, is valid) and every optional tensor, initial_normalizer included.
     */
    @Test
    void aMissingTensorIsToldWithTheGroupedLayoutAndEveryOptionalTensor() throws Exception {
        SplittableRandom rnd = new SplittableRandom(7);
        Path file = tmp.resolve("nov.safetensors");
        SafetensorsFile.write(file, List.of(
                SafetensorsFile.Tensor.of("q", DType.F32, new long[] {T, HQ, DK}, random(rnd, T * HQ * DK)),
                SafetensorsFile.Tensor.of("k", DType.F32, new long[] {T, HK, DK}, random(rnd, T * HK * DK))));
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "r")) {
            String m = assertThrows(InvalidInputException.class, () -> SequenceFile.describe(file.toString(),
                    "s.safetensors", raf.length(), reader(raf), Slopes::minimax)).getMessage();
            assertEquals("s.safetensors: missing tensor 'v'; a sequence file holds q [T,Hq,Dk], k [T,Hk,Dk], "
                    + "v [T,Hv,Dv] (each of Hq, Hk, Hv dividing H, the largest), optionally slope [H], "
                    + "initial_state [H,Dk,Dv] and initial_normalizer [H,Dk]; found [q, k]", m);
        }
    }

    /** A file shorter than the 8-byte length prefix (an empty one) is refused as that, with its size. */
    @Test
    void aFileShorterThanTheLengthPrefixIsToldAsSuch() throws Exception {
        for (int size : new int[] {0, 3, 7}) {
            Path file = tmp.resolve("short" + size + ".safetensors");
            java.nio.file.Files.write(file, new byte[size]);
            try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "r")) {
                String m = assertThrows(InvalidInputException.class, () -> SequenceFile.describe(file.toString(),
                        "s.safetensors", raf.length(), reader(raf), Slopes::minimax)).getMessage();
                assertTrue(m.startsWith("s.safetensors: not a safetensors file: " + size + " bytes, expected at least "
                        + "an 8-byte header length"), m);
            }
        }
    }
}
