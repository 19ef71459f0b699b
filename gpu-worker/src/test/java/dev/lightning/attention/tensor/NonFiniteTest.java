package dev.lightning.attention.tensor;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;

class NonFiniteTest {
    @Test
    void findsEveryNonFiniteValueInEveryDtype() {
        SplittableRandom rnd = new SplittableRandom(4);
        for (DType dtype : DType.values()) {
            float[] x = new float[1000];
            for (int i = 0; i < x.length; i++) {
                x[i] = (float) (rnd.nextDouble() * 200 - 100);
            }
            x[17] = Float.NaN;
            x[500] = Float.POSITIVE_INFINITY;
            x[999] = Float.NEGATIVE_INFINITY;
            x[3] = dtype == DType.F16 ? 65504f : Float.MAX_VALUE / 2; // largest finite stays finite
            TokenTensor t = TokenTensor.of(dtype, 1000, 1, 1, x);
            byte[] raw = new byte[1000 * dtype.bytes()];
            t.bytes().get(raw);
            NonFinite.Found f = NonFinite.scan(raw, 0, 1000, dtype);
            assertEquals(3, f.count, dtype.name());
            assertEquals(17, f.first, dtype.name());
            NonFinite.Found tail = NonFinite.scan(raw, 18 * dtype.bytes(), 400, dtype);
            assertEquals(0, tail.count);
            assertEquals(-1, tail.first);
        }
    }
}
