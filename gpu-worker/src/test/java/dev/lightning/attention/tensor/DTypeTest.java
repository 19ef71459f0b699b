package dev.lightning.attention.tensor;

import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class DTypeTest {

    @Test
    void everyHalfAndBfloatValueRoundTrips() {
        for (int bits = 0; bits < 0x10000; bits++) {
            short s = (short) bits;
            float h = DType.halfToFloat(s);
            if (!Float.isNaN(h)) {
                assertEquals(s, DType.floatToHalf(h), "half bits " + Integer.toHexString(bits));
            }
            float b = DType.bf16ToFloat(s);
            if (!Float.isNaN(b)) {
                assertEquals(s, DType.floatToBf16(b), "bf16 bits " + Integer.toHexString(bits));
            }
        }
    }

    /** Rounding picks the nearest representable value, ties to even, for random floats. */
    @Test
    void roundingIsToNearestEven() {
        SplittableRandom rnd = new SplittableRandom(3);
        for (int i = 0; i < 200_000; i++) {
            float x = (float) ((rnd.nextDouble() * 2 - 1) * Math.pow(2, rnd.nextInt(-26, 17)));
            checkNearest(DType.F16, x);
            checkNearest(DType.BF16, x);
        }
        // ties: 1 + 2^-11 lies halfway between two halves and goes to the even one (1.0)
        assertEquals(1.0f, DType.F16.round(1f + 0x1p-11f));
        assertEquals(1f + 0x1p-9f, DType.F16.round(1f + 0x1p-10f + 0x1p-11f));
        assertEquals(Float.POSITIVE_INFINITY, DType.F16.round(65520f));
        assertEquals(65504f, DType.F16.round(65519f));
        assertTrue(Float.isNaN(DType.BF16.round(Float.NaN)));
        assertTrue(Float.isNaN(DType.F16.round(Float.NaN)));
    }

    private static void checkNearest(DType t, float x) {
        float r = t.round(x);
        if (Float.isInfinite(r)) {
            assertTrue(Math.abs(x) >= 65520f, t + " " + x + " overflowed");
            return;
        }
        // the neighbours of r in t's grid: step by one unit in the last place of t
        short bits = t == DType.F16 ? DType.floatToHalf(r) : DType.floatToBf16(r);
        float up = t == DType.F16 ? DType.halfToFloat((short) (bits + 1)) : DType.bf16ToFloat((short) (bits + 1));
        float down = t == DType.F16 ? DType.halfToFloat((short) (bits - 1)) : DType.bf16ToFloat((short) (bits - 1));
        double err = Math.abs((double) r - x);
        if (Float.isFinite(up) && Math.signum(up) == Math.signum(r)) {
            assertTrue(err <= Math.abs((double) up - x), t + " " + x + " -> " + r + " but " + up + " is nearer");
        }
        if (Float.isFinite(down) && Math.signum(down) == Math.signum(r)) {
            assertTrue(err <= Math.abs((double) down - x), t + " " + x + " -> " + r + " but " + down + " is nearer");
        }
    }

    @Test
    void littleEndianBytes() {
        ByteBuffer b = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
        DType.BF16.put(b, 0, 1.0f);
        assertEquals(0x80, b.get(0) & 0xff);
        assertEquals(0x3f, b.get(1) & 0xff);
        DType.F16.put(b, 2, 1.0f);
        assertEquals(0x00, b.get(2) & 0xff);
        assertEquals(0x3c, b.get(3) & 0xff);
        DType.F32.put(b, 4, -2.5f);
        assertEquals(-2.5f, DType.F32.get(b, 4));
    }

    /** Widening to float32 keeps every value exactly (what the GPU backends' float32 paths rely on), and copies only when it must. */
    @Test
    void toF32KeepsEveryValueOfA16BitTensor() {
        SplittableRandom rnd = new SplittableRandom(7);
        for (DType t : new DType[] {DType.BF16, DType.F16}) {
            TokenTensor x = TokenTensor.allocate(t, 5, 3, 4);
            for (int i = 0; i < 5; i++) {
                for (int h = 0; h < 3; h++) {
                    for (int d = 0; d < 4; d++) {
                        x.set(i, h, d, (float) rnd.nextGaussian());
                    }
                }
            }
            TokenTensor w = x.toF32();
            assertEquals(DType.F32, w.dtype());
            assertEquals(List.of(5, 3, 4), List.of(w.tokens(), w.heads(), w.dim()));
            org.junit.jupiter.api.Assertions.assertArrayEquals(x.toFloats(), w.toFloats(), 0f, t.toString());
        }
        TokenTensor f = TokenTensor.allocate(DType.F32, 2, 1, 1);
        org.junit.jupiter.api.Assertions.assertSame(f, f.toF32());
    }

    @Test
    void unknownDtypeNamesTheSupportedOnes() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> DType.fromSafetensors("F64"));
        assertTrue(e.getMessage().contains("F32, F16, BF16"), e.getMessage());
    }
}
