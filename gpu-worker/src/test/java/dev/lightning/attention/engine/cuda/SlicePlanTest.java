package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.tensor.DType;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/** How the GPU backend cuts a window into pipelined slices (host arithmetic, no GPU). */
class SlicePlanTest {
    private static final int CHUNK = SlicePlan.CHUNK;
    private static final long MIN = SlicePlan.MIN_SLICE_BYTES;
    /** Bytes a token moves in forward() at H = 8, D = 128, BF16: q, k, v in, o out. */
    private static final long H8_BF16 = 8 * 128 * 2 * 4;
    private static final long UNLIMITED = Long.MAX_VALUE / 4;

    @Test
    void everyPlanTilesTheWindowInOrderFromChunkBoundariesWithinTheBudget() {
        int[] tokens = {1, 2, 63, 64, 65, 127, 128, 129, 1000, 4100, 20_000, 65_536, 262_144, 1 << 20, 3_000_001};
        long[] tokenBytes = {1, 96, 4096, H8_BF16, 65_536, 1 << 20};
        long[] free = {-5, 0, 1, 64 * 4096, 100L << 20, 8L << 30, UNLIMITED};
        int[] forced = {0, 1, 64, 100, 128, 192, 4096};
        for (int n : tokens) {
            for (long tb : tokenBytes) {
                for (long f : free) {
                    for (boolean overlap : new boolean[] {true, false}) {
                        for (int force : forced) {
                            check(n, tb, f, overlap, force);
                        }
                    }
                }
            }
        }
    }

    private static void check(int n, long tokenBytes, long free, boolean overlap, int forced) {
        SlicePlan p = SlicePlan.of(n, tokenBytes, free, overlap, forced);
        String at = "n=" + n + " tokenBytes=" + tokenBytes + " free=" + free + " overlap=" + overlap + " forced="
                + forced + ": " + p;
        assertEquals(n, p.tokens(), at);
        assertTrue(p.slices() >= 1 && p.sliceTokens() >= CHUNK && p.sliceTokens() % CHUNK == 0, at);
        // slices tile [0, n) exactly, in order, from chunk boundaries, each but the last a whole slice
        int next = 0;
        for (int i = 0; i < p.slices(); i++) {
            int len = p.length(i);
            boolean whole = i == p.slices() - 1 ? len >= 1 && len <= p.sliceTokens() : len == p.sliceTokens();
            if (p.from(i) != next || p.from(i) % CHUNK != 0 || !whole) {
                fail(at + ": slice " + i + " is [" + p.from(i) + ", +" + len + "), expected to start at " + next);
            }
            next += len;
        }
        assertEquals(n, next, at);
        // never longer than the window rounded up to a chunk
        assertTrue(p.sliceTokens() < n + CHUNK, at);
        // two buffer sets exactly when slices overlap
        assertEquals(overlap && p.slices() > 1 ? 2 : 1, p.sets(), at);
        // the budget: every set of buffers fits what the fixed buffers leave, unless even one chunk does not
        long setsWanted = overlap ? 2 : 1;
        if (p.sliceTokens() > CHUNK) {
            assertTrue(setsWanted * p.sliceTokens() * tokenBytes <= free, at);
        }
        // a slice's bytes stay within what one ByteBuffer view holds, with room to spare
        if (p.sliceTokens() > CHUNK) {
            assertTrue(p.sliceTokens() * tokenBytes <= Integer.MAX_VALUE / 2, at);
        }
        if (forced > 0) {
            long rounded = (forced + CHUNK - 1) / CHUNK * CHUNK;
            assertTrue(p.sliceTokens() <= rounded, at);
        }
        // deterministic: a retried task cuts its windows the same way
        assertEquals(p, SlicePlan.of(n, tokenBytes, free, overlap, forced), at);
    }

    @Test
    void smallWindowsStayOneSlice() {
        // under twice the minimum bytes: one slice, no per-slice cost
        int n = (int) ((2 * MIN - 1) / H8_BF16);
        SlicePlan p = SlicePlan.of(n, H8_BF16, UNLIMITED, true, 0);
        assertEquals(1, p.slices(), p.toString());
        assertEquals(1, p.sets());
        assertEquals(1, SlicePlan.of(20_000, 2 * 64 * 2 * 3 + 2 * 48 * 2, UNLIMITED, true, 0).slices());
        assertEquals(1, SlicePlan.of(1, 1 << 20, UNLIMITED, true, 0).slices());
    }

    @Test
    void largeWindowsAreCutIntoSeveralSlicesOfAtLeastTheMinimum() {
        for (int n : new int[] {(int) (4 * MIN / H8_BF16), 100_000, 262_144, 500_000}) {
            SlicePlan p = SlicePlan.of(n, H8_BF16, UNLIMITED, true, 0);
            String at = "n=" + n + ": " + p;
            assertTrue(p.slices() >= 4 && p.slices() <= SlicePlan.TARGET_SLICES, at);
            assertTrue(p.sliceTokens() * H8_BF16 >= MIN, at);
            assertEquals(2, p.sets(), at);
        }
        // between two and four minimums: as many slices as minimums fit
        SlicePlan p = SlicePlan.of((int) (3 * MIN / H8_BF16), H8_BF16, UNLIMITED, true, 0);
        assertEquals(3, p.slices(), p.toString());
    }

    @Test
    void benchmarkAndJobShapes() {
        // DeviceBench's host path: T = 262144, H = 8, D = 128, BF16, 2 GiB moved: 8 slices of 32768
        SlicePlan bench = SlicePlan.of(262_144, H8_BF16, UNLIMITED, true, 0);
        assertEquals(8, bench.slices());
        assertEquals(32_768, bench.sliceTokens());
        // the serial path as before the pipeline: one slice unless a ByteBuffer's limit or the budget cuts it
        SlicePlan serial = SlicePlan.of(262_144, H8_BF16, UNLIMITED, false, 0);
        assertEquals(Integer.MAX_VALUE / 2 / H8_BF16 / CHUNK * CHUNK, serial.sliceTokens());
        assertEquals(3, serial.slices());
        assertEquals(1, SlicePlan.of(65_536, H8_BF16, UNLIMITED, false, 0).slices());
        // a job window of the default 1 GiB at H = 64, D = 128, BF16 (64 KiB a token): 8 slices of 2048
        SlicePlan job = SlicePlan.of(16_384, 65_536, 8L << 30, true, 0);
        assertEquals(8, job.slices());
        assertEquals(2048, job.sliceTokens());
    }

    @Test
    void theBudgetCountsBothBufferSets() {
        // room for 1000 tokens in one set: 500 (whole chunks: 448) in each of two
        long tb = 4096;
        SlicePlan piped = SlicePlan.of(10_000, tb, 1000 * tb, true, 0);
        assertEquals(448, piped.sliceTokens());
        assertEquals(2, piped.sets());
        SlicePlan serial = SlicePlan.of(10_000, tb, 1000 * tb, false, 0);
        assertEquals(960, serial.sliceTokens());
        assertEquals(1, serial.sets());
        assertEquals(11, serial.slices());
    }

    @Test
    void edgeCases() {
        for (boolean overlap : new boolean[] {true, false}) {
            SlicePlan one = SlicePlan.of(1, H8_BF16, UNLIMITED, overlap, 0);
            assertEquals(1, one.slices());
            assertEquals(CHUNK, one.sliceTokens());
            assertEquals(1, one.length(0));
            SlicePlan short63 = SlicePlan.of(63, H8_BF16, UNLIMITED, overlap, 0);
            assertEquals(1, short63.slices());
            assertEquals(63, short63.length(0));
            SlicePlan chunk = SlicePlan.of(64, H8_BF16, UNLIMITED, overlap, 0);
            assertEquals(1, chunk.slices());
            assertEquals(64, chunk.length(0));
            // a budget that fits only one chunk (or nothing): one chunk a slice
            for (long free : new long[] {CHUNK * H8_BF16, CHUNK * H8_BF16 * 2 - 1, 0, -1}) {
                SlicePlan tight = SlicePlan.of(1000, H8_BF16, free, overlap, 0);
                assertEquals(CHUNK, tight.sliceTokens(), tight.toString());
                assertEquals(16, tight.slices());
                assertEquals(1000 - 15 * 64, tight.length(15));
            }
        }
        // forced slices: rounded up to a chunk, a last partial slice
        SlicePlan forced = SlicePlan.of(1000, 96, UNLIMITED, true, 100);
        assertEquals(128, forced.sliceTokens());
        assertEquals(8, forced.slices());
        assertEquals(1000 - 7 * 128, forced.length(7));
        assertEquals(2, forced.sets());
        // forced larger than the budget allows: the budget wins
        assertEquals(64, SlicePlan.of(1000, 96, 64 * 96 * 2, true, 512).sliceTokens());
        assertThrows(IllegalArgumentException.class, () -> SlicePlan.of(0, 96, UNLIMITED, true, 0));
        assertThrows(IllegalArgumentException.class, () -> SlicePlan.of(10, 0, UNLIMITED, true, 0));
        assertThrows(IllegalArgumentException.class, () -> SlicePlan.of(10, 96, UNLIMITED, true, -1));
    }

    /**
     * A token's bytes follow the spec's head layout: q Hq x Dk and o H x Dv only with outputs, k
     * Hk x Dk, v Hv x Dv; checkpoints add a token's share of the states they bring back.
     */
    @Test
    void tokenBytesFollowTheGroupedHeads() {
        AttentionSpec grouped = new AttentionSpec(6, 32, 16, Slopes.minimax(6), 1.0, 64).withHeads(6, 3, 2);
        assertEquals((6 * 32 + 3 * 32 + 2 * 16 + 6 * 16) * 2, SlicePlan.tokenBytes(grouped, DType.BF16, true, 0));
        assertEquals((3 * 32 + 2 * 16) * 4, SlicePlan.tokenBytes(grouped, DType.F32, false, 0));
        AttentionSpec normalized = grouped.withNormalization(1e-5);
        long state = 4L * 6 * 32 * 16 + 4L * 6 * 32;
        assertEquals(normalized.stateBytes(), state);
        assertEquals((6 * 32 + 3 * 32 + 2 * 16 + 6 * 16) * 2 + (state + 127) / 128,
                SlicePlan.tokenBytes(normalized, DType.F16, true, 128));
        // grouped values: v and o larger than q and k; the plan's slices hold its bytes
        AttentionSpec values = new AttentionSpec(8, 16, 128, Slopes.minimax(8), 1.0, 64).withHeads(1, 1, 8);
        long tb = SlicePlan.tokenBytes(values, DType.BF16, true, 0);
        assertEquals((16 + 16 + 8 * 128 + 8 * 128) * 2, tb);
        SlicePlan plan = SlicePlan.of(100_000, tb, 64L << 20, true, 0);
        assertTrue(2L * plan.sliceTokens() * tb <= 64L << 20, plan.toString());
        assertEquals(100_000, (long) (plan.slices() - 1) * plan.sliceTokens() + plan.length(plan.slices() - 1));
    }
}
