package dev.lightning.attention.stream;

import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.SafetensorsFile;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.RandomAccessFile;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Tensors of other names than q, k, v, slope, initial_state and initial_normalizer are ignored. A
 * misspelled optional one used to be ignored too: a file holding {@code slopes} ran with the default
 * slopes, one holding {@code initial_states} from a zero state, without a word. Such near misses
 * are refused, naming the tensor and the name the job reads; unrelated tensors still pass.
 */
class SequenceFileTensorNamesTest {
    @TempDir
    Path tmp;

    private SequenceFile describe(String extraName, long[] extraShape) throws Exception {
        int t = 4;
        int h = 2;
        int d = 3;
        List<SafetensorsFile.Tensor> tensors = new ArrayList<>();
        tensors.add(SafetensorsFile.Tensor.of("q", DType.F32, new long[] {t, h, d}, new float[t * h * d]));
        tensors.add(SafetensorsFile.Tensor.of("k", DType.F32, new long[] {t, h, d}, new float[t * h * d]));
        tensors.add(SafetensorsFile.Tensor.of("v", DType.F32, new long[] {t, h, d}, new float[t * h * d]));
        int n = 1;
        for (long x : extraShape) {
            n *= (int) x;
        }
        float[] values = new float[n];
        java.util.Arrays.fill(values, 0.25f);
        tensors.add(SafetensorsFile.Tensor.of(extraName, DType.F32, extraShape, values));
        Path file = tmp.resolve(extraName.replaceAll("[^A-Za-z0-9]", "_") + ".safetensors");
        SafetensorsFile.write(file, tensors);
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "r")) {
            RangeReader in = (position, buf, off, len) -> {
                raf.seek(position);
                raf.readFully(buf, off, len);
            };
            return SequenceFile.describe(file.toString(), "x.safetensors", raf.length(), in, Slopes::minimax, true);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"slopes", "Slope", "slop", "initial_states", "Initial-State", "init_state", "initialstate",
        "initial_normaliser", "initial_normalizers", "init_normalizer"})
    void aNearMissOfAnOptionalTensorIsRefused(String name) {
        InvalidInputException e = assertThrows(InvalidInputException.class, () -> describe(name, new long[] {2}));
        String m = e.getMessage();
        assertTrue(m.startsWith("x.safetensors: ") && m.contains("'" + name + "'") && m.contains("rename"), m);
    }

    @ParameterizedTest
    @ValueSource(strings = {"o", "bias", "score", "scale", "state", "states", "final_state", "lse", "mask", "position_ids"})
    void otherTensorsAreIgnored(String name) throws Exception {
        SequenceFile f = describe(name, new long[] {2});
        assertFalse(f.slopesFromFile, name + " is not a slope");
        assertArrayEquals(Slopes.minimax(2), f.spec(1.0, 64).slopes(), 0);
    }

    /** The real name still reads: the check above must not refuse what it protects. */
    @ParameterizedTest
    @ValueSource(strings = {"slope"})
    void theRealNameIsRead(String name) throws Exception {
        SequenceFile f = describe(name, new long[] {2});
        assertTrue(f.slopesFromFile);
        assertArrayEquals(new double[] {0.25, 0.25}, f.spec(1.0, 64).slopes(), 0);
    }
}
