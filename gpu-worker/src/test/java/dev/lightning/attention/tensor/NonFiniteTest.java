package dev.lightning.attention.tensor;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

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

    /**
     * Scans large enough to run in parallel parts: counts and first positions in every part, and none at all. On 4
     * threads (24 MiB and more: 4 parts), on this machine's count and on one, so the parts path runs on a 2-core
     * machine too, where the machine's count is 1.
     */
    @Test
    void largeScansInPartsAgreeWithTheValueByValueScan() {
        // each count once: on a 2-core machine the machine's count is 1
        for (int threads : new java.util.LinkedHashSet<>(java.util.List.of(4, NonFinite.THREADS, 1))) {
            largeScansOn(threads);
        }
    }

    private static void largeScansOn(int threads) {
        SplittableRandom rnd = new SplittableRandom(77);
        for (DType dtype : DType.values()) {
            int elements = NonFinite.PARALLEL_BYTES * 3 / dtype.bytes() + 13;
            byte[] raw = new byte[elements * dtype.bytes() + 2];
            for (int i = 0; i < elements; i++) { // finite values of magnitude below 2
                int at = 2 + i * dtype.bytes() + dtype.bytes() - 1;
                raw[at] = (byte) (rnd.nextInt(0x3f) | (rnd.nextBoolean() ? 0x80 : 0));
            }
            java.nio.ByteBuffer direct = java.nio.ByteBuffer.allocateDirect(raw.length).put(raw);
            NonFinite.Found none = NonFinite.scan(direct, 2, elements, dtype, threads);
            assertEquals(0, none.count, dtype + " finite");
            assertEquals(-1, none.first);
            assertEquals(0, NonFinite.scan(java.nio.ByteBuffer.wrap(raw), 2, elements, dtype, threads).count,
                    dtype + " finite, heap");
            // later parts first; elements / 2 and elements / 4 are the first values of parts (of 2 and 4)
            for (int at : new int[] {elements - 1, elements / 2 + 1, elements / 2, elements / 4, elements / 5, 7}) {
                int hi = 2 + at * dtype.bytes() + dtype.bytes() - 1;
                raw[hi] = (byte) 0x7f;
                raw[hi - 1] = (byte) 0xff; // NaN in all three
                direct.put(hi, raw[hi]).put(hi - 1, raw[hi - 1]);
                NonFinite.Found want = NonFinite.scanEachValue(raw, 2, elements, dtype);
                NonFinite.Found got = NonFinite.scan(direct, 2, elements, dtype, threads);
                assertEquals(want.count, got.count, dtype + " count, " + threads + " threads");
                assertEquals(want.first, got.first, dtype + " first, " + threads + " threads");
                assertEquals(at, got.first);
                NonFinite.Found heap = NonFinite.scan(java.nio.ByteBuffer.wrap(raw), 2, elements, dtype, threads); // vector pass
                assertEquals(want.count, heap.count, dtype + " count, heap");
                assertEquals(at, heap.first, dtype + " first, heap");
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

    /** Bits of finite values a bit test could take for non-finite: zeros, subnormals, the largest finite, the smallest normal. */
    private static int[] awkwardFinite(DType dtype) {
        switch (dtype) {
            case F32:
                return new int[] {0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x7f7fffff, 0xff7fffff, 0x00800000,
                        0x3f800000};
            case BF16:
                return new int[] {0x0000, 0x8000, 0x0001, 0x807f, 0x7f7f, 0xff7f, 0x0080, 0x3f80};
            default:
                return new int[] {0x0000, 0x8000, 0x0001, 0x83ff, 0x7bff, 0xfbff, 0x0400, 0x3c00};
        }
    }

    /** Bits of +-Inf, quiet and signalling NaNs of either sign, and the all-ones NaN. */
    private static int[] nonFinite(DType dtype) {
        switch (dtype) {
            case F32:
                return new int[] {0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffffffff, 0xffc00000};
            case BF16:
                return new int[] {0x7f80, 0xff80, 0x7fc0, 0x7f81, 0xffff, 0xffc0};
            default:
                return new int[] {0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xffff, 0xfe00};
        }
    }

    private static void putBits(byte[] raw, int at, DType dtype, int bits) {
        for (int b = 0; b < dtype.bytes(); b++) {
            raw[at + b] = (byte) (bits >>> (8 * b));
        }
    }

    /** The count and first index of NaN/Inf, each value decoded by DType and asked of Float: independent of any bit test. */
    private static long[] decoded(byte[] raw, int offset, int elements, DType dtype) {
        java.nio.ByteBuffer view = java.nio.ByteBuffer.wrap(raw).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        long count = 0;
        long first = -1;
        for (int i = 0; i < elements; i++) {
            float value = dtype.get(view, offset + dtype.bytes() * i);
            if (Float.isNaN(value) || Float.isInfinite(value)) {
                count++;
                first = first < 0 ? i : first;
            }
        }
        return new long[] {count, first};
    }

    @Test
    void theVectorPassLoadsInTheTestJvm() {
        // surefire runs with --add-modules jdk.incubator.vector: were it lost, every heap scan
        // would take the word path and the tests below would not test the vector pass
        assertNotNull(NonFinite.Vectors.SKIP, "jdk.incubator.vector does not load in the test JVM");
    }

    /**
     * The vector pass (heap arrays) and the word scan (direct and read-only buffers, and
     * {@link NonFinite#scanWords}) against decoded values: finite data of every awkward kind
     * (signed zeros, subnormals, the largest finite, the smallest normal) with NaN/Inf planted at
     * the first and last value, at odd positions, on both sides of block, vector and copied-piece
     * boundaries and in the tail; lengths around those sizes, at odd byte offsets and array offsets.
     */
    @Test
    void vectorPassAgreesWithDecodedValuesAtEveryBoundary() {
        SplittableRandom rnd = new SplittableRandom(2026);
        for (DType dtype : DType.values()) {
            int es = dtype.bytes();
            int block = NonFinite.Vectors.SKIP.blockValues(dtype);
            int lanes = block / 16;
            int piece = NonFinite.COPY_BYTES / es; // values a direct buffer is copied by
            int[] lengths = {1, 3, lanes - 1, lanes, lanes + 1, block - 1, block, block + 1, 2 * block + lanes - 3,
                    5 * block + 7, 3001, 2 * piece + 3};
            int[] finite = awkwardFinite(dtype);
            int[] bad = nonFinite(dtype);
            int expMask = dtype == DType.F32 ? 0x7f800000 : dtype == DType.F16 ? 0x7c00 : 0x7f80;
            for (int elements : lengths) {
                for (int offset : new int[] {0, 1, 2, 3, 6}) {
                    int pad = 5;
                    byte[] raw = new byte[pad + offset + elements * es + 3];
                    int at0 = pad + offset;
                    for (int i = 0; i < elements; i++) {
                        int bits = rnd.nextInt(4) == 0 ? finite[rnd.nextInt(finite.length)] : rnd.nextInt();
                        if ((bits & expMask) == expMask) {
                            bits ^= expMask & -expMask; // clear the exponent's lowest bit: finite
                        }
                        putBits(raw, at0 + i * es, dtype, bits);
                    }
                    check(raw, at0, elements, dtype, pad, "finite");
                    byte[] clean = raw.clone();
                    java.util.List<Integer> spots = new java.util.ArrayList<>();
                    for (int spot : new int[] {elements - 1, 0, elements / 2 | 1, block - 1, block, lanes, lanes - 1,
                            elements - 2, 2 * block + 1, piece - 1, piece, 2 * piece + 1}) {
                        if (spot < 0 || spot >= elements) {
                            continue;
                        }
                        int bits = bad[rnd.nextInt(bad.length)];
                        byte[] alone = clean.clone(); // this one only, so that no other hides a miss
                        putBits(alone, at0 + spot * es, dtype, bits);
                        check(alone, at0, elements, dtype, pad, "NaN/Inf at " + spot + " only");
                        putBits(raw, at0 + spot * es, dtype, bits);
                        spots.add(spot);
                        check(raw, at0, elements, dtype, pad, "NaN/Inf at " + spots);
                    }
                }
            }
        }
    }

    /**
     * Every scan entry on {@code raw}'s values at byte {@code at0} against the decoded count: the
     * byte array, a heap buffer whose array starts {@code pad} bytes before its first byte
     * (arrayOffset != 0), a read-only and a direct copy, and the word scan.
     */
    private static void check(byte[] raw, int at0, int elements, DType dtype, int pad, String what) {
        long[] want = decoded(raw, at0, elements, dtype);
        String who = dtype + ", " + elements + " values at byte " + at0 + ", " + what;
        java.nio.ByteBuffer sliced = java.nio.ByteBuffer.wrap(raw, pad, raw.length - pad).slice();
        java.nio.ByteBuffer direct = java.nio.ByteBuffer.allocateDirect(raw.length).put(raw).clear();
        NonFinite.Found[] got = {
                NonFinite.scan(raw, at0, elements, dtype),
                NonFinite.scan(sliced, at0 - pad, elements, dtype),
                NonFinite.scan(sliced.asReadOnlyBuffer(), at0 - pad, elements, dtype),
                NonFinite.scan(direct, at0, elements, dtype),
                NonFinite.scanWords(java.nio.ByteBuffer.wrap(raw), at0, elements, dtype)};
        String[] path = {"array", "heap slice", "read-only", "direct", "words"};
        for (int p = 0; p < got.length; p++) {
            assertEquals(want[0], got[p].count, who + ", count, " + path[p]);
            assertEquals(want[1], got[p].first, who + ", first, " + path[p]);
        }
    }
}
