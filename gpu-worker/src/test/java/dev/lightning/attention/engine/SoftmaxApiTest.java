package dev.lightning.attention.engine;

import dev.lightning.attention.engine.reference.BlockedSoftmaxReference;
import dev.lightning.attention.engine.reference.SoftmaxReference;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The softmax engine API on the float64 references: the merge of partials (its identity, blocks
 * merged against one call, fixed order giving fixed bytes), windows, queries that see no key of a
 * block, the partials' bytes, scores large enough to overflow a naive exp, and the blockwise
 * float64 reference against the plain one.
 */
class SoftmaxApiTest {
    /** Float32 rounding of o and lse, plus the merge's own half ulp per block (measured: about 1e-7). */
    private static final double MERGE_TOLERANCE = 5e-7;

    private final SoftmaxBackend reference = new SoftmaxReference();

    @Test
    void aHandComputedCase() {
        // one head, Dk = Dv = 1, scale 1/2; q = (2, 4), k = (1, -1), v = (3, 5):
        // t = 0 sees key 0 only: s = 1, o = 3, lse = 1;
        // t = 1 sees s = (2, -2): lse = log(e^2 + e^-2), o = (3 e^2 + 5 e^-2) / (e^2 + e^-2)
        SoftmaxSpec spec = new SoftmaxSpec(1, 1, 1, 1, 0.5, SoftmaxSpec.NO_WINDOW);
        SoftmaxCase c = new SoftmaxCase(spec, TokenTensor.of(DType.F32, 2, 1, 1, new float[] {2, 4}),
                TokenTensor.of(DType.F32, 2, 1, 1, new float[] {1, -1}),
                TokenTensor.of(DType.F32, 2, 1, 1, new float[] {3, 5}));
        double e2 = Math.exp(2);
        double em2 = Math.exp(-2);
        for (SoftmaxBackend b : new SoftmaxBackend[] {reference, new BlockedSoftmaxReference(1)}) {
            SoftmaxPartial p = c.whole(b);
            assertEquals(3f, p.o()[0], b.name());
            assertEquals(1f, p.lse()[0], b.name());
            assertEquals((float) ((3 * e2 + 5 * em2) / (e2 + em2)), p.o()[1], 1e-6f, b.name());
            assertEquals((float) Math.log(e2 + em2), p.lse()[1], 1e-6f, b.name());
        }
    }

    @Test
    void theEmptyPartialIsTheMergeIdentity() {
        SoftmaxCase c = SoftmaxCase.random(11, DType.F32, 37, 6, 3, 48, 80, SoftmaxSpec.NO_WINDOW);
        SoftmaxPartial p = c.whole(reference);
        byte[] before = p.toBytes();
        SoftmaxPartial into = SoftmaxPartial.empty(c.spec, c.tokens());
        into.merge(p);
        assertArrayEquals(before, into.toBytes(), "empty.merge(p) must be p, bit for bit");
        p.merge(SoftmaxPartial.empty(c.spec, c.tokens()));
        assertArrayEquals(before, p.toBytes(), "p.merge(empty) must leave p as it was");
        // and clear() brings back the identity
        p.clear();
        assertArrayEquals(SoftmaxPartial.empty(c.spec, c.tokens()).toBytes(), p.toBytes());
    }

    @Test
    void keyBlocksMergedEqualOneCall() {
        Object[][] cases = {
            // T, Hq, Hk, Dk, Dv, window, query block (from, n), cuts
            {200, 1, 1, 16, 16, 0L, new int[] {0, 200}, new int[] {37, 100}},
            {200, 6, 3, 48, 80, 0L, new int[] {0, 200}, new int[] {1, 2, 64, 65, 199}},
            {300, 8, 1, 32, 24, 0L, new int[] {150, 63}, new int[] {10, 150, 170, 213}},
            {300, 4, 2, 24, 40, 40L, new int[] {100, 100}, new int[] {64, 128, 192}},
        };
        long seed = 100;
        for (Object[] x : cases) {
            SoftmaxCase c = SoftmaxCase.random(seed++, DType.F32, (int) x[0], (int) x[1], (int) x[2], (int) x[3],
                    (int) x[4], (long) x[5]);
            int[] queries = (int[]) x[6];
            int[] cuts = (int[]) x[7];
            SoftmaxPartial one = c.call(reference, queries[0], queries[1], 0, c.tokens());
            SoftmaxPartial merged = c.merged(reference, queries[0], queries[1], cuts);
            String what = c.spec + " queries " + Arrays.toString(queries) + " cuts " + Arrays.toString(cuts);
            double err = Inputs.relativeError(merged.o(), one.o());
            assertTrue(err < MERGE_TOLERANCE, what + ": merged o relative error " + err);
            assertLseClose(one.lse(), merged.lse(), 4, what);
        }
    }

    @Test
    void mergingInOneOrderGivesTheSameBytesEveryTime() {
        SoftmaxCase c = SoftmaxCase.random(21, DType.BF16, 150, 4, 2, 32, 32, SoftmaxSpec.NO_WINDOW);
        int[] cuts = {13, 50, 51, 99};
        byte[] first = c.merged(reference, 0, c.tokens(), cuts).toBytes();
        byte[] again = c.merged(reference, 0, c.tokens(), cuts).toBytes();
        assertArrayEquals(first, again, "the same partials merged in the same order must give the same bytes");
        // a different merge order is the same to rounding (and is why the order is fixed)
        SoftmaxPartial reversed = SoftmaxPartial.empty(c.spec, c.tokens());
        int[] bounds = {99, 150, 51, 99, 50, 51, 13, 50, 0, 13};
        for (int i = 0; i < bounds.length; i += 2) {
            reversed.merge(c.call(reference, 0, c.tokens(), bounds[i], bounds[i + 1] - bounds[i]));
        }
        SoftmaxPartial p = c.merged(reference, 0, c.tokens(), cuts);
        assertTrue(Inputs.relativeError(reversed.o(), p.o()) < MERGE_TOLERANCE);
    }

    @Test
    void aWindowOfOneTokenSeesItsOwnKeyOnly() {
        SoftmaxCase c = SoftmaxCase.random(31, DType.F32, 70, 6, 2, 20, 12, 1L);
        SoftmaxPartial p = c.merged(reference, 0, c.tokens(), 5, 64);
        for (int t = 0; t < c.tokens(); t++) {
            for (int h = 0; h < 6; h++) {
                int kh = c.spec.kHead(h);
                int row = t * 6 + h;
                for (int d = 0; d < 12; d++) {
                    assertEquals(c.v.get(t, kh, d), p.o()[row * 12 + d], "o = v_t exactly, t=" + t + " h=" + h);
                }
                double s = 0;
                for (int d = 0; d < 20; d++) {
                    s += (double) c.q.get(t, h, d) * c.k.get(t, kh, d);
                }
                assertEquals((float) (s * c.spec.scale()), p.lse()[row], "lse = the one score, t=" + t);
            }
        }
    }

    @Test
    void windowsShorterThanABlockAndSpanningBlocks() {
        long[] windows = {3, 17, 64, 65, 150};
        long seed = 40;
        for (long w : windows) {
            SoftmaxCase c = SoftmaxCase.random(seed++, DType.F32, 260, 4, 4, 16, 24, w);
            SoftmaxPartial one = c.whole(reference);
            // blocks of 64 keys: a window of 3 or 17 lies inside one or two of them, 150 spans three
            SoftmaxPartial merged = c.merged(reference, 0, c.tokens(), 64, 128, 192, 256);
            assertTrue(Inputs.relativeError(merged.o(), one.o()) < MERGE_TOLERANCE, "window " + w);
            assertLseClose(one.lse(), merged.lse(), 4, "window " + w);
            // the window really cuts: query 259's o differs from the same query without a window
            SoftmaxCase open = new SoftmaxCase(new SoftmaxSpec(4, 4, 16, 24, c.spec.scale(), SoftmaxSpec.NO_WINDOW),
                    c.q, c.k, c.v);
            float[] last = Arrays.copyOfRange(one.o(), 259 * 4 * 24, 260 * 4 * 24);
            float[] lastOpen = Arrays.copyOfRange(open.whole(reference).o(), 259 * 4 * 24, 260 * 4 * 24);
            assertTrue(Inputs.relativeError(last, lastOpen) > 1e-3, "window " + w + " changed nothing");
        }
    }

    @Test
    void aQueryThatSeesNoKeyOfABlockGetsTheIdentity() {
        SoftmaxCase c = SoftmaxCase.random(51, DType.F32, 120, 2, 1, 8, 8, 10L);
        // keys after every query of the block: nothing visible
        SoftmaxPartial later = c.call(reference, 0, 40, 40, 80);
        assertIdentity(later, 0, 40 * 2, "keys [40, 120) from queries [0, 40)");
        // keys before the window of every query: nothing visible either
        SoftmaxPartial early = c.call(reference, 100, 20, 0, 80);
        assertIdentity(early, 0, 20 * 2, "keys [0, 80) from queries [100, 120) with W = 10");
        // keys [80, 100) from queries [85, 115): queries 85..108 see some, 109..114 none
        SoftmaxPartial mixed = c.call(reference, 85, 30, 80, 20);
        for (int t = 0; t < 30; t++) {
            boolean sees = 85 + t - 10 < 99;
            for (int h = 0; h < 2; h++) {
                float lse = mixed.lse()[t * 2 + h];
                assertEquals(sees, lse != Float.NEGATIVE_INFINITY, "query " + (85 + t) + " lse " + lse);
            }
        }
        assertIdentity(mixed, (109 - 85) * 2, 30 * 2, "queries 109..114 over keys [80, 100)");
        // merging such blocks changes nothing
        SoftmaxPartial one = c.whole(reference);
        SoftmaxPartial merged = c.merged(reference, 0, c.tokens(), 30, 31, 90);
        assertTrue(Inputs.relativeError(merged.o(), one.o()) < MERGE_TOLERANCE);
    }

    @Test
    void partialBytesRoundTrip() {
        SoftmaxCase c = SoftmaxCase.random(61, DType.F16, 30, 3, 1, 8, 5, 4L);
        SoftmaxPartial p = c.call(reference, 0, 30, 10, 20); // queries 0..9 see nothing: lse -inf, o 0
        byte[] bytes = p.toBytes();
        assertEquals(p.bytes(), bytes.length);
        assertEquals(4L * 30 * 3 * (5 + 1), p.bytes());
        // read back from the middle of a larger buffer, which then stands just past it
        ByteBuffer buf = ByteBuffer.allocate(bytes.length + 10);
        buf.position(3);
        buf.put(bytes);
        buf.position(3);
        SoftmaxPartial back = SoftmaxPartial.fromBytes(c.spec, 30, buf);
        assertEquals(3 + bytes.length, buf.position());
        assertArrayEquals(bytes, back.toBytes());
        assertArrayEquals(p.o(), back.o());
        assertArrayEquals(p.lse(), back.lse());
        assertEquals(Float.NEGATIVE_INFINITY, back.lse()[0]);
        ByteBuffer tooShort = ByteBuffer.wrap(bytes, 0, bytes.length - 1);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> SoftmaxPartial.fromBytes(c.spec, 30, tooShort));
        assertTrue(e.getMessage().contains("needs " + bytes.length), e.getMessage());
    }

    @Test
    void scoresThatOverflowANaiveExpStayFinite() {
        // inputs in [-100, 100): scores of order scale * Dk * 100^2 / 3 = thousands; exp overflows
        // float64 above 709, so only the max-subtracted form works
        SoftmaxCase c = SoftmaxCase.random(71, DType.F32, 130, 4, 2, 32, 16, SoftmaxSpec.NO_WINDOW, 100.0);
        SoftmaxPartial one = c.whole(reference);
        SoftmaxPartial merged = c.merged(reference, 0, c.tokens(), 50, 64, 100);
        SoftmaxPartial blocked = c.whole(new BlockedSoftmaxReference(16));
        float maxLse = 0;
        for (SoftmaxPartial p : new SoftmaxPartial[] {one, merged, blocked}) {
            for (float x : p.o()) {
                assertTrue(Float.isFinite(x), "o " + x);
            }
            for (float x : p.lse()) {
                assertTrue(Float.isFinite(x), "lse " + x);
                maxLse = Math.max(maxLse, Math.abs(x));
            }
        }
        assertTrue(maxLse > 709, "scores too small to overflow a naive exp: |lse| <= " + maxLse);
        // the float64 blockwise merge matches to rounding; the float32 merge to lse's precision
        assertTrue(Inputs.relativeError(blocked.o(), one.o()) < 1e-7);
        double err = Inputs.relativeError(merged.o(), one.o());
        assertTrue(err < 1e-4, "float32 merge at |lse| up to " + maxLse + ": relative error " + err);
    }

    @Test
    void blockwiseFloat64ReferenceMatchesThePlainOne() {
        Object[][] cases = {
            // T, Hq, Hk, Dk, Dv, window, block
            {1, 1, 1, 4, 4, 0L, 1},
            {63, 2, 1, 48, 80, 0L, 1},
            {63, 6, 3, 48, 80, 0L, 7},
            {200, 8, 1, 16, 8, 0L, 64},
            {200, 8, 8, 16, 8, 33L, 64},
            {200, 2, 2, 8, 8, 1L, 300},
        };
        long seed = 80;
        for (Object[] x : cases) {
            SoftmaxCase c = SoftmaxCase.random(seed++, DType.F32, (int) x[0], (int) x[1], (int) x[2], (int) x[3],
                    (int) x[4], (long) x[5]);
            SoftmaxPartial plain = c.whole(reference);
            SoftmaxPartial blocked = c.whole(new BlockedSoftmaxReference((int) x[6]));
            String what = c.spec + " blocks of " + x[6];
            // both are float64 to 1e-15 before the final rounding: at most one ulp apart after it
            assertUlpsApart(plain.o(), blocked.o(), 1, what + " o");
            assertUlpsApart(plain.lse(), blocked.lse(), 1, what + " lse");
            assertTrue(Inputs.relativeError(blocked.o(), plain.o()) < 1e-7, what);
        }
    }

    @Test
    void visiblePairsCountWhatVisibleSays() {
        long[][] calls = {{0, 100, 0, 100}, {50, 30, 0, 200}, {0, 10, 10, 20}, {200, 17, 3, 190}, {5, 1, 5, 1}};
        for (long w : new long[] {SoftmaxSpec.NO_WINDOW, 1, 7, 64}) {
            SoftmaxSpec spec = new SoftmaxSpec(2, 1, 4, 4, 1, w);
            for (long[] c : calls) {
                long count = 0;
                for (long t = c[0]; t < c[0] + c[1]; t++) {
                    for (long j = c[2]; j < c[2] + c[3]; j++) {
                        count += spec.visible(t, j) ? 1 : 0;
                    }
                }
                assertEquals(count, spec.visiblePairs(c[0], c[1], c[2], c[3]), "window " + w + " " + Arrays.toString(c));
            }
        }
        assertEquals(100L * 101 / 2, new SoftmaxSpec(1, 1, 4, 4, 1, 0).visiblePairs(0, 100, 0, 100));
    }

    @Test
    void shapeErrorsSayWhatWasExpected() {
        SoftmaxCase c = SoftmaxCase.random(91, DType.F32, 10, 4, 2, 8, 8, 0L);
        SoftmaxPartial wrong = SoftmaxPartial.empty(c.spec, 9);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> reference.forward(c.spec, c.q, 0, c.k, c.v, 0, wrong));
        assertTrue(e.getMessage().contains("expected [10, 4, 8]"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> new SoftmaxSpec(6, 4, 8, 8, 1, 0));
        // each bound of a spec at its edge: accepted on it, refused one past it
        assertEquals(256, new SoftmaxSpec(1, 1, 1, 256, 1e-9, 0).dv());
        assertEquals(1, new SoftmaxSpec(1, 1, 256, 1, 1, 1).window());
        for (int[] bad : new int[][] {{1, 0, 8, 8}, {0, 1, 8, 8}, {1, 1, 0, 8}, {1, 1, 257, 8}, {1, 1, 8, 0}, {1, 1, 8, 257}}) {
            assertThrows(IllegalArgumentException.class, () -> new SoftmaxSpec(bad[0], bad[1], bad[2], bad[3], 1, 0),
                    java.util.Arrays.toString(bad));
        }
        for (double scale : new double[] {0, -1, Double.NaN, Double.POSITIVE_INFINITY}) {
            assertThrows(IllegalArgumentException.class, () -> new SoftmaxSpec(2, 1, 8, 8, scale, 0), "scale " + scale);
        }
        assertThrows(IllegalArgumentException.class, () -> new SoftmaxSpec(2, 1, 8, 8, 1, -1));
        SoftmaxPartial other = SoftmaxPartial.empty(new SoftmaxSpec(4, 2, 8, 7, 1, 0), 10);
        assertThrows(IllegalArgumentException.class, () -> SoftmaxPartial.empty(c.spec, 10).merge(other));
    }

    private static void assertIdentity(SoftmaxPartial p, int fromRow, int toRow, String what) {
        for (int r = fromRow; r < toRow; r++) {
            assertEquals(Float.NEGATIVE_INFINITY, p.lse()[r], what + ": lse of row " + r);
            for (int d = 0; d < p.dv(); d++) {
                assertEquals(0f, p.o()[r * p.dv() + d], what + ": o of row " + r);
            }
        }
    }

    /** lse within {@code ulps} float32 ulps (of the larger of |lse| and 1). */
    static void assertLseClose(float[] want, float[] got, int ulps, String what) {
        for (int i = 0; i < want.length; i++) {
            if (want[i] == Float.NEGATIVE_INFINITY || got[i] == Float.NEGATIVE_INFINITY) {
                assertEquals(want[i], got[i], what + ": lse " + i);
                continue;
            }
            float tol = ulps * Math.ulp(Math.max(1f, Math.abs(want[i])));
            assertEquals(want[i], got[i], tol, what + ": lse " + i);
        }
    }

    private static void assertUlpsApart(float[] a, float[] b, int ulps, String what) {
        for (int i = 0; i < a.length; i++) {
            if (a[i] == b[i]) {
                continue;
            }
            float tol = ulps * Math.ulp(Math.max(Math.abs(a[i]), Math.abs(b[i])));
            assertTrue(Math.abs(a[i] - b[i]) <= tol, what + " [" + i + "]: " + a[i] + " vs " + b[i]);
        }
    }
}
