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

    /** The word-wise scan against the scan of one value at a time: heap, direct and read-only buffers, odd offsets. */
    @Test
    void bufferScanAgreesWithArrayScan() {
        SplittableRandom rnd = new SplittableRandom(41);
        for (DType dtype : DType.values()) {
            for (int trial = 0; trial < 20; trial++) {
                int elements = 1 + rnd.nextInt(3000);
                int lead = rnd.nextInt(7) * dtype.bytes() + rnd.nextInt(2); // odd byte offsets too
                byte[] raw = new byte[lead + elements * dtype.bytes() + 5];
                rnd.nextBytes(raw); // random bits: every exponent occurs, all-ones ones included
                NonFinite.Found want = NonFinite.scanEachValue(raw, lead, elements, dtype);
                NonFinite.Found array = NonFinite.scan(raw, lead, elements, dtype);
                assertEquals(want.count, array.count);
                assertEquals(want.first, array.first);
                java.nio.ByteBuffer direct = java.nio.ByteBuffer.allocateDirect(raw.length + 3);
                direct.position(3);
                java.nio.ByteBuffer view = direct.slice();
                view.put(raw).flip();
                view.order(java.nio.ByteOrder.BIG_ENDIAN); // the scan must not depend on the caller's order
                for (java.nio.ByteBuffer b : new java.nio.ByteBuffer[] {view, view.asReadOnlyBuffer(),
                        java.nio.ByteBuffer.wrap(raw), java.nio.ByteBuffer.wrap(raw).asReadOnlyBuffer()}) {
                    NonFinite.Found got = NonFinite.scan(b, lead, elements, dtype);
                    String who = dtype + " " + elements + " at " + lead + " " + (b.isDirect() ? "direct" : "heap")
                            + (b.isReadOnly() ? " read-only" : "");
                    assertEquals(want.count, got.count, who);
                    assertEquals(want.first, got.first, who);
                }
            }
        }
    }

    /** Scans large enough to run in parallel parts: counts and first positions in every part, and none at all. */
    @Test
    void largeScansInPartsAgreeWithTheValueByValueScan() {
        SplittableRandom rnd = new SplittableRandom(77);
        for (DType dtype : DType.values()) {
            int elements = NonFinite.PARALLEL_BYTES * 3 / dtype.bytes() + 13;
            byte[] raw = new byte[elements * dtype.bytes() + 2];
            for (int i = 0; i < elements; i++) { // finite values of magnitude below 2
                int at = 2 + i * dtype.bytes() + dtype.bytes() - 1;
                raw[at] = (byte) (rnd.nextInt(0x3f) | (rnd.nextBoolean() ? 0x80 : 0));
            }
            java.nio.ByteBuffer direct = java.nio.ByteBuffer.allocateDirect(raw.length).put(raw);
            NonFinite.Found none = NonFinite.scan(direct, 2, elements, dtype);
            assertEquals(0, none.count, dtype + " finite");
            assertEquals(-1, none.first);
            for (int at : new int[] {elements - 1, elements / 2 + 1, elements / 5, 7}) { // later parts first
                int hi = 2 + at * dtype.bytes() + dtype.bytes() - 1;
                raw[hi] = (byte) 0x7f;
                raw[hi - 1] = (byte) 0xff; // NaN in all three
                direct.put(hi, raw[hi]).put(hi - 1, raw[hi - 1]);
                NonFinite.Found want = NonFinite.scanEachValue(raw, 2, elements, dtype);
                NonFinite.Found got = NonFinite.scan(direct, 2, elements, dtype);
                assertEquals(want.count, got.count, dtype + " count");
                assertEquals(want.first, got.first, dtype + " first");
                assertEquals(at, got.first);
            }
        }
    }

    /**
     * The word-at-a-time scan against a value-by-value count, on random bytes with NaN, +-Inf,
     * the largest finite values and signed zeros planted at random places, at every byte offset
     * 0..7 (words that straddle values' alignment) and lengths that leave tails of 0..3 values.
     */
    @Test
    void wordScanMatchesAValueByValueCount() {
        SplittableRandom rnd = new SplittableRandom(9);
        for (DType dtype : DType.values()) {
            int size = dtype.bytes();
            for (int trial = 0; trial < 200; trial++) {
                int elements = rnd.nextInt(1, 300);
                int offset = rnd.nextInt(0, 8);
                byte[] raw = new byte[offset + elements * size + rnd.nextInt(0, 8)];
                for (int i = 0; i < raw.length; i++) {
                    raw[i] = (byte) rnd.nextInt(256);
                }
                int planted = rnd.nextInt(0, 6);
                for (int p = 0; p < planted; p++) {
                    int at = offset + size * rnd.nextInt(elements);
                    float special = new float[]{Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY,
                            dtype == DType.F16 ? 65504f : Float.MAX_VALUE / 2, -0f}[rnd.nextInt(5)];
                    byte[] one = new byte[size];
                    TokenTensor.of(dtype, 1, 1, 1, new float[]{special}).bytes().get(one);
                    System.arraycopy(one, 0, raw, at, size);
                }
                // the reference decodes each value (DType's own conversion) and asks Float
                java.nio.ByteBuffer view = java.nio.ByteBuffer.wrap(raw).order(java.nio.ByteOrder.LITTLE_ENDIAN);
                long count = 0;
                long first = -1;
                for (int i = 0; i < elements; i++) {
                    float value = dtype.get(view, offset + size * i);
                    if (Float.isNaN(value) || Float.isInfinite(value)) {
                        count++;
                        first = first < 0 ? i : first;
                    }
                }
                NonFinite.Found f = NonFinite.scan(raw, offset, elements, dtype);
                String what = dtype + " trial " + trial + ", " + elements + " values at byte " + offset;
                assertEquals(count, f.count, what);
                assertEquals(first, f.first, what);
            }
        }
    }
}
