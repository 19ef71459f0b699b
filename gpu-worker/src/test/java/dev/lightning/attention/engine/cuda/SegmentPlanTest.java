package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.cuda.SegmentPlan.Fill;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * How a GPU launch cuts a window (host arithmetic, no GPU): invariants over many windows, head counts,
 * SM counts and CTAs a SM; the plan against a brute-force search of every cut under the same bounds;
 * the waves' fill; and the benchmark shapes on a 132-SM GPU.
 */
class SegmentPlanTest {
    private static final int CHUNK = SegmentPlan.CHUNK;

    @Test
    void everyPlanCoversTheWindowInWholeChunks() {
        int[] tokens = {1, 63, 64, 65, 1000, 4100, 20_000, 65_536, 1 << 20};
        int[] ctas = {1, 2, 3, 8, 16, 25, 33, 48, 50, 64, 66, 96, 128, 200};
        int[][] slots = {{16, 16}, {132, 132}, {264, 132}, {132, 264}, {108, 216}};
        for (int n : tokens) {
            for (int c : ctas) {
                for (int[] r : slots) {
                    for (int min : new int[] {1, 2}) {
                        Fill fill = new Fill(c, r[0], r[1], SegmentPlan.PASS1_COST);
                        SegmentPlan p = SegmentPlan.of(n, fill, min);
                        String at = "n=" + n + " " + fill + " min=" + min + ": " + p;
                        assertCovers(n, p, at);
                        assertTrue(p.segments() >= Math.min(min, (n + CHUNK - 1) / CHUNK), "the forced minimum: " + at);
                        assertTrue(p.segments() <= fill.maxSegments(min), at);
                        assertTrue(p.locals() <= fill.maxLocals(min), at);
                        assertTrue(p.locals() + 2L * p.segments() <= SegmentPlan.maxStates(fill, min),
                                "within the states the backend reserves: " + at);
                        // a launch holds at most three states a chunk (the backend's small-budget count)
                        assertTrue(p.locals() + 2L * p.segments() <= 3L * ((n + CHUNK - 1) / CHUNK), at);
                        if (p.segments() == 1) {
                            assertEquals(0, p.locals(), at);
                            assertEquals(0, p.pass1Tokens(), at);
                            continue;
                        }
                        assertEquals(p.lead(), p.every() * p.subTokens(), at);
                        assertEquals(0, p.subTokens() % CHUNK, at);
                        assertEquals((p.segments() - 1) * p.every(), p.locals(), at);
                        assertEquals(p.segmentStart(p.segments() - 1), p.pass1Tokens(), "pass 1 ends where the last segment starts: " + at);
                    }
                }
            }
        }
    }

    /**
     * The segments of {@code p} cover [0, n) exactly in whole chunks: segment 0 is the lead
     * (segTokens in a uniform plan, shorter in an uneven one of exactly two segments), each other
     * segTokens long (rounded up to whole sub-segments, so the last may reach past n by more than a
     * chunk), the last one ending at or after n and starting before it.
     */
    private static void assertCovers(int n, SegmentPlan p, String at) {
        assertTrue(p.segments() >= 1 && p.segTokens() % CHUNK == 0 && p.lead() % CHUNK == 0, at);
        assertTrue(p.lead() >= CHUNK && p.lead() <= p.segTokens(), at);
        assertEquals(p.uneven(), p.lead() < p.segTokens(), at);
        if (p.uneven()) {
            assertEquals(2, p.segments(), "an uneven plan has two segments: " + at);
            assertEquals(p.every(), p.locals(), at);
            assertEquals(p.lead(), p.pass1Tokens(), "pass 1 covers the lead alone: " + at);
        }
        assertEquals(0, p.segmentStart(0), at);
        for (int s = 1; s < p.segments(); s++) {
            long length = s == 1 ? p.lead() : p.segTokens();
            assertEquals(p.segmentStart(s - 1) + length, p.segmentStart(s), "segments abut: " + at);
        }
        long last = p.segmentStart(p.segments() - 1);
        assertTrue(last < n, "the last segment holds tokens: " + at);
        assertTrue(last + (p.segments() == 1 ? p.lead() : p.segTokens()) >= n, "the last segment reaches n: " + at);
    }

    /**
     * The plan is the fastest cut the model knows (within the tie margin), found here by trying every
     * number of segments and sub-segments in the bounds by plain enumeration of whole-chunk cuts,
     * with the model's cost written out again: waves times chunks a CTA, for both passes, each wave's
     * work and memory's time overlapped where the memory is weighed (not; 88 forward CTAs filling it,
     * as on an H100; 129).
     */
    @Test
    void planIsTheFastestCutOfABruteForceSearch() {
        int[] tokens = {1000, 4100, 20_000, 65_536};
        int[] heads = {1, 3, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 100, 128, 132, 160};
        int[][] gpus = {{132, 1}, {108, 1}, {132, 2}, {80, 1}, {16, 3}};
        double[] memories = {0, 1 / 88.0, 1 / 129.0};
        int unevenChosen = 0;
        for (int n : tokens) {
            int chunks = (n + CHUNK - 1) / CHUNK;
            for (int h : heads) {
                for (int tiles : new int[] {1, 2}) {
                    for (int[] g : gpus) {
                      for (double mem : memories) {
                        int slots = g[0] * g[1];
                        Fill fill = new Fill(h * tiles, slots, slots, SegmentPlan.PASS1_COST, mem, mem / 2);
                        SegmentPlan p = SegmentPlan.of(n, fill, 1);
                        double best = Double.MAX_VALUE;
                        for (int segChunks = 1; segChunks <= chunks; segChunks++) {
                            int s = (chunks + segChunks - 1) / segChunks;
                            if (s > fill.maxSegments(1)) {
                                continue;
                            }
                            for (int e = 1; e <= segChunks; e++) {
                                if (segChunks % e != 0 || (s > 1 && (long) (s - 1) * e > fill.maxLocals(1))
                                        || (s == 1 && e > 1)) {
                                    continue;
                                }
                                best = Math.min(best, cost(h * tiles, slots, s, segChunks, e, mem));
                            }
                        }
                        // uneven cuts: every lead of whole chunks shorter than the rest, every pass-1 count
                        double bestUneven = Double.MAX_VALUE;
                        for (int lead = 1; fill.maxSegments(1) >= 2 && 2 * lead < chunks; lead++) {
                            for (int e = 1; e <= Math.min(lead, fill.maxLocals(1)); e++) {
                                if (lead % e == 0) {
                                    bestUneven = Math.min(bestUneven, unevenCost(h * tiles, slots, chunks - lead, lead, e, mem));
                                }
                            }
                        }
                        int segChunks = p.segTokens() / CHUNK;
                        double chosen = p.uneven() ? unevenCost(h * tiles, slots, segChunks, p.lead() / CHUNK, p.every(), mem)
                                : cost(h * tiles, slots, p.segments(), segChunks, p.every(), mem);
                        String at = "n=" + n + " H=" + h + " tiles=" + tiles + " slots=" + slots + " memory " + mem + ": " + p
                                + " costs " + chosen + ", best " + best + ", best uneven " + bestUneven;
                        assertEquals(chosen, p.modelChunks(fill), 1e-9, "the plan's own model: " + at);
                        // the uniform plans are searched exhaustively; the uneven ones on a grid of
                        // 1/64 of the window, within a 64th of the window's chunks of the exhaustive best
                        double fastest = Math.min(best, bestUneven);
                        assertTrue(chosen <= Math.max(best * (1 + SegmentPlan.TIE), bestUneven + 1.0 * chunks / 64) + 1e-9, at);
                        if (p.uneven()) {
                            assertTrue(best > chosen * (1 + fill.unevenMargin()),
                                    "uneven only where it beats every uniform plan by the margin: " + at);
                            unevenChosen++;
                        } else if (fill.maxSegments(1) >= 2) {
                            // nor does a uniform plan stand where an uneven cut (on the search's grid)
                            // beats it by the margin: Fill.unevenMayPay skips no cut that pays
                            assertTrue(best <= (bestUneven + 1.0 * chunks / 64) * (1 + fill.unevenMargin()) + 1e-9,
                                    "a paying uneven cut missed: " + at);
                        }
                        assertTrue(chosen <= fastest * 1.1 + 1, at);
                        // never slower than leaving the window whole
                        assertTrue(chosen <= cost(h * tiles, slots, 1, chunks, 1, mem) + 1e-9, at);
                      }
                    }
                }
            }
        }
        assertTrue(unevenChosen > 0, "some of these shapes are cut unevenly");
    }

    /** The work and the memory's time of a wave together: their 4-norm (SegmentPlan.KNEE); the work without the memory. */
    private static double knee(double work, double memory) {
        return memory == 0 ? work : Math.sqrt(Math.sqrt(work * work * work * work + memory * memory * memory * memory));
    }

    /**
     * A uniform cut's model written out again: each wave its work and its memory's time together ({@link #knee};
     * {@code mem} chunk times a forward CTA chunk, half that a pass-1 CTA chunk, which moves k and v alone).
     */
    private static double cost(int ctas, int slots, int s, int segChunks, int e, double mem) {
        double t = 0;
        for (int left = ctas * s; left > 0; left -= slots) { // the waves of pass 2
            t += segChunks * knee(1, Math.min(left, slots) * mem);
        }
        if (s > 1) {
            t += pass1Cost(ctas, slots, (s - 1) * e, segChunks / e, mem) + SegmentPlan.CUT_COST_CHUNKS;
        }
        return t;
    }

    private static double pass1Cost(int ctas, int slots, int subSegments, int subChunks, double mem) {
        double t = 0;
        for (int left = ctas * subSegments; left > 0; left -= slots) {
            t += subChunks * knee(SegmentPlan.PASS1_COST, Math.min(left, slots) * mem / 2);
        }
        return t;
    }

    /**
     * An uneven cut's model written out again: pass 2 as CTAs handed out in launch order (the long
     * segment's first) to the slot that frees first, found by scanning the slots (not a heap); pass 1
     * over the lead as the waves of {@link #cost}; each chunk time of pass 2 stretched by the memory's
     * time of the CTAs running in it ({@link #knee}).
     */
    private static double unevenCost(int ctas, int slots, int restChunks, int leadChunks, int e, double mem) {
        long[] free = new long[slots];
        int[] running = new int[restChunks + 2 * leadChunks + 2]; // CTAs running in each chunk time, by differences
        int end = 0;
        for (int i = 0; i < 2 * ctas; i++) {
            int first = 0;
            for (int j = 1; j < slots; j++) {
                if (free[j] < free[first]) {
                    first = j;
                }
            }
            running[(int) free[first]]++;
            free[first] += i < ctas ? restChunks : leadChunks;
            running[(int) free[first]]--;
            end = (int) Math.max(end, free[first]);
        }
        // each chunk time stretched by the memory's time of the CTAs running in it
        double t = 0;
        for (int c = 0, k = 0; c < end; c++) {
            k += running[c];
            t += knee(1, k * mem);
        }
        return t + pass1Cost(ctas, slots, e, leadChunks / e, mem) + SegmentPlan.CUT_COST_CHUNKS;
    }

    /**
     * The uneven model's schedule by hand. 3 CTAs a segment on 4 slots, a lead of 2 chunks before 6:
     * at 0 the 3 long CTAs (6 chunks) and one lead CTA start; the lead CTA ends at 2, the next starts
     * there and ends at 4, the last at 4 and ends at 6: pass 2 ends at 6 (the lead fills the fourth
     * slot). Pass 1: 3 CTAs of the lead's 2 chunks (one sub-segment) in one wave, 0.45 x 2 = 0.9;
     * plus the cut's 2: 8.9. Fewer slots and H = 96 below.
     */
    @Test
    void theUnevenModelIsAListScheduleInLaunchOrder() {
        Fill four = new Fill(3, 4, 4, SegmentPlan.PASS1_COST);
        assertEquals(6 + 0.45 * 2 + 2, SegmentPlan.modelUnevenChunks(four, 6, 2, 1), 1e-9);
        // two sub-segments of pass 1: 6 CTAs of one chunk on 4 slots, two waves: 0.45 x 2 x 1
        assertEquals(6 + 0.45 * 2 + 2, SegmentPlan.modelUnevenChunks(four, 6, 2, 2), 1e-9);
        // 2 slots: long CTAs 0 [0, 6) and 1 [0, 6) on slots A and B; long 2 [6, 12) on A; lead 0 [6, 8)
        // on B, lead 1 [8, 10) on B, lead 2 [10, 12) on B: pass 2 ends at 12. Pass 1: 3 CTAs on 2 slots,
        // 2 waves of 2 chunks: 0.45 x 4.
        Fill two = new Fill(3, 2, 2, SegmentPlan.PASS1_COST);
        assertEquals(12 + 0.45 * 4 + 2, SegmentPlan.modelUnevenChunks(two, 6, 2, 1), 1e-9);
        // H = 96 on 132 slots, a quarter lead of a 2^20-token window (4096 of 16384 chunks): 96 long and
        // 36 lead CTAs at 0; lead CTAs in rounds of 36 end at 4096, 8192, 12288, with the long ones.
        Fill f96 = new Fill(96, 132, 132, SegmentPlan.PASS1_COST);
        assertEquals(12288 + 0.45 * 4096 + 2, SegmentPlan.modelUnevenChunks(f96, 12288, 4096, 1), 1e-9);
        SegmentPlan p = new SegmentPlan(2, 12288 * CHUNK, 1, 4096 * CHUNK, 1, 4096 * CHUNK);
        assertEquals(SegmentPlan.modelUnevenChunks(f96, 12288, 4096, 1), p.modelChunks(f96), 1e-9);
        assertEquals((96.0 * 16384 + 0.45 * 96 * 4096) / (132 * (12288 + 0.45 * 4096 + 2)), p.waveEfficiency(f96), 1e-12);
    }

    /**
     * Where the heads leave three quarters of a wave empty or more and the window is long, the cut
     * keeps 70% of the slots busy over both passes or more (where a whole window would keep at
     * most 25%), and the two passes together take at most 2.2x the ideal (all slots busy in pass
     * 2, pass 1 free), over many SM counts and CTAs a SM.
     */
    @Test
    void longWindowsFillTheWaves() {
        int n = 1 << 20;
        for (int sms : new int[] {16, 46, 80, 108, 114, 132, 144}) {
            for (int perSm : new int[] {1, 2, 3}) {
                int slots = sms * perSm;
                for (int ctas = 1; 4 * ctas <= slots; ctas++) {
                    Fill fill = new Fill(ctas, slots, slots, SegmentPlan.PASS1_COST);
                    SegmentPlan p = SegmentPlan.of(n, fill, 1);
                    String at = "ctas=" + ctas + " slots=" + slots + ": " + p;
                    assertTrue(p.segments() > 1, at);
                    assertTrue(p.waveEfficiency(fill) >= 0.7, at + " fill " + p.waveEfficiency(fill));
                    double ideal = (double) ctas * ((n + CHUNK - 1) / CHUNK) / slots;
                    double model = p.modelChunks(fill);
                    assertTrue(model <= 2.2 * ideal, at + " model " + model + " ideal " + ideal);
                }
            }
        }
    }

    @Test
    void benchmarkShapesOnA132SmGpu() {
        // Hopper kernels (128 columns a CTA, one CTA a SM).
        // H = 64: two segments, pass 1 over the first in two sub-segments (128 CTAs, one wave).
        SegmentPlan h64 = SegmentPlan.of(1 << 20, 64, 132, 1);
        assertEquals(2, h64.segments());
        assertEquals(2, h64.every());
        assertEquals(1 << 19, h64.pass1Tokens());
        assertTrue(!h64.uneven(), h64.toString());
        assertTrue(h64.waveEfficiency(new Fill(64, 132, 132, SegmentPlan.PASS1_COST)) > 0.95, h64.toString());
        // H = 48: two segments (96 CTAs: a whole window of 48 CTAs would leave 64% idle), pass 1 in 5
        // sub-segments, 240 CTAs in two waves at 91%, where 2 sub-segments filled one at 73%.
        Fill f48 = new Fill(48, 132, 132, SegmentPlan.PASS1_COST);
        SegmentPlan h48 = SegmentPlan.of(1 << 20, f48, 1);
        assertEquals(2, h48.segments());
        assertEquals(5, h48.every());
        assertTrue(!h48.uneven(), h48.toString());
        assertTrue(h48.pass1WaveEfficiency(f48) > 0.9, h48.toString());
        assertTrue(h48.waveEfficiency(f48) > 0.75, h48.toString());
        assertTrue(SegmentPlan.of(1 << 20, f48, 2).equals(h48), "the forced two-pass plan is the same");
        // H = 96: no uniform cut pays for its pass 1 (a whole window leaves 36 of 132 slots idle), an
        // uneven one does: a lead of a quarter of the window in one sub-segment, whose 96 CTAs run in
        // the 36 slots the long segment leaves, in three rounds that end with it. Model: 0.86 of the
        // whole window's 16384 chunk times.
        Fill f96 = new Fill(96, 132, 132, SegmentPlan.PASS1_COST);
        SegmentPlan h96 = SegmentPlan.of(1 << 20, f96, 1);
        assertEquals(new SegmentPlan(2, 3 << 18, 1, 1 << 18, 1, 1 << 18), h96);
        assertTrue(h96.uneven());
        assertEquals(12288 + 0.45 * 4096 + 2, h96.modelChunks(f96), 1e-9);
        assertEquals(0.8625, h96.modelChunks(f96) / 16384, 1e-3);
        assertEquals(h96, SegmentPlan.of(1 << 20, f96, 2), "the forced two-pass plan is the same");
        // H = 8: 33 segments, 264 CTAs in exactly two waves (16 segments left 4 slots of 132 idle).
        Fill f8 = new Fill(8, 132, 132, SegmentPlan.PASS1_COST);
        SegmentPlan h8 = SegmentPlan.of(1 << 20, f8, 1);
        assertEquals(1.0, h8.pass2WaveEfficiency(f8), 0.03, h8.toString());
        assertTrue(h8.waveEfficiency(f8) > 0.95, h8.toString());
        assertEquals(33, h8.segments(), h8.toString());
        assertTrue(!h8.uneven(), h8.toString());
        // The portable kernels (64 columns a CTA) at H = 64: 128 CTAs fill the GPU, one segment.
        assertEquals(1, SegmentPlan.of(1 << 20, 128, 132, 1).segments());
        // forced two-pass
        assertEquals(2, SegmentPlan.of(1 << 20, 128, 132, 2).segments());
        // D = 64 (portable, one column tile) at T = 524,288, H = 16: 16 CTAs a segment fill the waves
        Fill f16 = new Fill(16, 132, 132, SegmentPlan.PASS1_COST);
        SegmentPlan h16 = SegmentPlan.of(524_288, f16, 1);
        assertTrue(h16.pass2WaveEfficiency(f16) >= 0.95, h16.toString());
        assertTrue(!h16.uneven(), h16.toString());
    }

    /** The benchmark's forced cuts: whole chunks covering the window, the sub-segments dividing a segment. */
    @Test
    void forcedCutsCoverTheWindow() {
        for (int n : new int[] {1, 63, 64, 1000, 65_536, 1 << 20}) {
            for (int s : new int[] {1, 2, 5, 11, 33}) {
                for (int e : new int[] {1, 2, 5}) {
                    SegmentPlan p = SegmentPlan.cut(n, s, e);
                    String at = "n=" + n + " s=" + s + " e=" + e + ": " + p;
                    assertTrue(p.segments() >= 1 && p.segments() <= s && p.segTokens() % CHUNK == 0, at);
                    assertTrue((long) (p.segments() - 1) * p.segTokens() < n && (long) p.segments() * p.segTokens() >= n, at);
                    if (p.segments() > 1) {
                        assertEquals(p.segTokens(), p.every() * p.subTokens(), at);
                        assertEquals((p.segments() - 1) * p.every(), p.locals(), at);
                    }
                }
            }
        }
        assertEquals(new SegmentPlan(2, 8195 * CHUNK, 5, 1639 * CHUNK, 5), SegmentPlan.cut(1 << 20, 2, 5));
    }

    /**
     * The benchmark's forced uneven cuts: the lead rounded up to whole sub-segments; where it would not
     * be shorter than the rest, the uniform cut of two segments instead.
     */
    @Test
    void forcedUnevenCutsCoverTheWindow() {
        for (int n : new int[] {1, 63, 64, 65, 200, 257, 1000, 4100, 65_536, 1 << 20}) {
            int chunks = (n + CHUNK - 1) / CHUNK;
            for (int lead : new int[] {1, 2, 3, 7, 100, 4096}) {
                for (int e : new int[] {1, 2, 3}) {
                    SegmentPlan p = SegmentPlan.cutLead(n, lead, e);
                    String at = "n=" + n + " lead=" + lead + " e=" + e + ": " + p;
                    assertCovers(n, p, at);
                    int rounded = (lead + e - 1) / e * e;
                    if (rounded < chunks - rounded) {
                        assertTrue(p.uneven(), at);
                        assertEquals(rounded * CHUNK, p.lead(), at);
                        assertEquals(e, p.every(), at);
                        assertEquals((chunks - rounded) * CHUNK, p.segTokens(), at);
                    } else {
                        assertEquals(SegmentPlan.cut(n, 2, e), p, at);
                    }
                }
            }
        }
        // 63 tokens, 1 chunk: nothing to cut. 1000 tokens (16 chunks, the last of 40 tokens): lead 3 chunks.
        assertEquals(SegmentPlan.cut(63, 2, 1), SegmentPlan.cutLead(63, 1, 1));
        assertEquals(1, SegmentPlan.cutLead(63, 1, 1).segments());
        assertEquals(new SegmentPlan(2, 13 * CHUNK, 1, 3 * CHUNK, 1, 3 * CHUNK), SegmentPlan.cutLead(1000, 3, 1));
        assertEquals(new SegmentPlan(2, 12 * CHUNK, 2, 2 * CHUNK, 2, 4 * CHUNK), SegmentPlan.cutLead(1000, 3, 2));
    }

    /** An uneven plan's shape is checked where it is made: exactly two segments, pass 1 over the lead. */
    @Test
    void refusesMalformedUnevenPlans() {
        // three segments with a short lead
        assertThrows(IllegalArgumentException.class, () -> new SegmentPlan(3, 640, 1, 64, 2, 64));
        // pass 1 beyond the lead
        assertThrows(IllegalArgumentException.class, () -> new SegmentPlan(2, 640, 1, 128, 1, 64));
        // a lead longer than the other segments
        assertThrows(IllegalArgumentException.class, () -> new SegmentPlan(2, 640, 1, 704, 1, 704));
        assertThrows(IllegalArgumentException.class, () -> new SegmentPlan(1, 640, 1, 640, 0, 0));
    }

    /**
     * The GPU's bounds as their javadocs state them, at their edges: where an uneven search runs (the H its
     * comment names on 132 slots), the most segments and sub-segments, and pass 1's share of its slots.
     */
    @Test
    void fillBoundsAndWaveShares() {
        for (int h : new int[] {96, 80, 100, 120}) {
            assertTrue(new Fill(h, 132, 132, SegmentPlan.PASS1_COST).unevenMayPay(), "H = " + h);
        }
        for (int h : new int[] {8, 48, 64, 66, 132, 264}) {
            assertTrue(!new Fill(h, 132, 132, SegmentPlan.PASS1_COST).unevenMayPay(), "H = " + h);
        }
        assertTrue(new Fill(67, 132, 132, 0.45).unevenMayPay(), "two segments of 67 CTAs overflow a wave by 2");
        // most segments: two waves of pass 2 (or the forced minimum); sub-segments: two waves of pass 1, at
        // least one a segment but the last
        Fill wide = new Fill(100, 100, 10, 0.45);
        assertEquals(2, wide.maxSegments(1));
        assertEquals(5, wide.maxSegments(5));
        assertEquals(1, wide.maxLocals(1), "2 segments, and pass 1's 2 waves of 10 slots hold no 100-CTA segment");
        assertEquals(4, wide.maxLocals(5));
        assertEquals(66, new Fill(4, 132, 132, 0.45).maxLocals(1));
        assertEquals(1 + 2 * 2, SegmentPlan.maxStates(wide, 1));
        // pass 1's share of its slots: H = 48's 5 sub-segments are 240 CTAs in 2 waves of 132; H = 64's 2 are 128 of 132
        Fill f48 = new Fill(48, 132, 132, SegmentPlan.PASS1_COST);
        assertEquals(240.0 / 264, SegmentPlan.of(1 << 20, f48, 1).pass1WaveEfficiency(f48), 1e-12);
        Fill f64 = new Fill(64, 132, 132, SegmentPlan.PASS1_COST);
        assertEquals(128.0 / 132, SegmentPlan.of(1 << 20, f64, 1).pass1WaveEfficiency(f64), 1e-12);
        assertEquals(1.0, SegmentPlan.of(64, f64, 1).pass1WaveEfficiency(f64), "one chunk, one segment: no pass 1");
        // the smallest GPU and plans at the edge of their checks
        assertEquals(1, SegmentPlan.of(64, new Fill(1, 1, 1, 1e-9), 1).segments());
        assertEquals(64, new SegmentPlan(1, 64, 1, 64, 0, 64).lead());
        assertTrue(new SegmentPlan(2, 640, 1, 64, 1, 64).uneven());
        assertThrows(IllegalArgumentException.class, () -> new Fill(8, 132, 0, 0.45));
    }

    /** H100 80GB HBM3: the driver's memory clock 2,619 MHz on 5,120 bits. */
    private static final double H100_PEAK = 2 * 2619e6 * 5120 / 8;

    private static AttentionSpec spec(int h, int dk, int dv) {
        return new AttentionSpec(h, dk, dv, Slopes.minimax(h), 1.0, 64);
    }

    /**
     * The memory weighs in each pass where the kernels' rate a CTA is known: on an H100 the Hopper
     * forward's 34.3 GB/s a CTA fills its memory (0.9 of 3.35 TB/s) with 88 CTAs. The cuts it then
     * chooses at T = 2^19 are the ones timed there as fast or faster than those chosen without it
     * (2026-12-05, DeviceBench --ab, 7 alternated rounds, logs bench/results/2026-12-05-h100-s24-*):
     * H = 8 in 15 segments (1.023x faster than 33), H = 24 in 5 (1.041x than 11), H = 36 in 3 (1.051x
     * than 7), H = 48 with pass 1 in 2 sub-segments (1.011x than 5), H = 80 whole (0.994x the uneven
     * cut), H = 96 whole (1.004x and 1.036x in two runs), H = 112 whole (1.061x and 1.067x); H = 64 as
     * before, in 2 segments. On an H200 the memory is not weighed (SegmentPlan.MEMORY_BOUND).
     */
    @Test
    void theMemoryWeighsInEachPass() {
        Fill h100 = SegmentStates.fill(spec(96, 128, 128), 96, 132, 132, SegmentPlan.HOPPER_CTA_BYTES_PER_SECOND,
                H100_PEAK);
        double cta = 34.3e9 / (0.9 * H100_PEAK);
        assertEquals(87.96, 1 / cta, 0.01);
        assertEquals(cta, h100.forwardMemory(), 1e-15);
        assertEquals(cta / 2, h100.statesMemory(), 1e-15, "pass 1 moves k and v alone");
        assertEquals(SegmentPlan.TIE, h100.unevenMargin(), "an uneven cut's extra CTAs are charged: the tie's margin");
        // the whole window of 8192 chunks: one wave of 96 CTAs, work 1 a chunk, memory 96 / 87.96
        assertEquals(8192 * knee(1, 96 * cta), SegmentPlan.modelChunks(h100, 1, 8192, 1), 1e-6);
        Fill work = new Fill(96, 132, 132, SegmentPlan.PASS1_COST);
        assertEquals(8192, SegmentPlan.modelChunks(work, 1, 8192, 1), 1e-9);
        assertEquals(SegmentPlan.UNEVEN_MARGIN, work.unevenMargin());
        // a quarter lead: 96 long CTAs and 36 lead CTAs run from 0, 36 more lead CTAs from 2048, the last 24
        // from 4096 (132, 132, then 120 running); pass 1 over the lead, one wave of 96 CTAs
        assertEquals(2048 * (2 * knee(1, 132 * cta) + knee(1, 120 * cta)) + 2048 * knee(0.45, 96 * cta / 2) + 2,
                SegmentPlan.modelUnevenChunks(h100, 6144, 2048, 1), 1e-6);
        // two segments of 64 CTAs, pass 1 in two sub-segments: one wave of 128 in each pass
        Fill h64 = SegmentStates.fill(spec(64, 128, 128), 64, 132, 132, SegmentPlan.HOPPER_CTA_BYTES_PER_SECOND,
                H100_PEAK);
        assertEquals(4096 * knee(1, 128 * cta) + 2048 * knee(0.45, 128 * cta / 2) + 2,
                SegmentPlan.modelChunks(h64, 2, 4096, 2), 1e-6);
        int t = 1 << 19;
        assertTrue(SegmentPlan.of(t, work, 1).uneven(), "the CTAs' work alone cuts H = 96 unevenly");
        int[][] timed = {{8, 15, 1}, {24, 5, 1}, {36, 3, 3}, {48, 2, 2}, {64, 2, 2}, {80, 1, 1}, {96, 1, 1}, {112, 1, 1}};
        for (int[] c : timed) {
            Fill f = SegmentStates.fill(spec(c[0], 128, 128), c[0], 132, 132, SegmentPlan.HOPPER_CTA_BYTES_PER_SECOND,
                    H100_PEAK);
            SegmentPlan p = SegmentPlan.of(t, f, 1);
            assertEquals(List.of(c[1], c[2], false), List.of(p.segments(), p.every(), p.uneven()), "H = " + c[0] + ": " + p);
        }
        // an H200 (the driver's peak 4.814 TB/s): its 132 CTAs would ask 1.05 times what its memory gives, under
        // MEMORY_BOUND, so nothing is weighed and every plan is the one the CTAs' work chooses
        for (int h : new int[] {1, 8, 36, 52, 64, 96, 112, 128}) {
            Fill h200 = SegmentStates.fill(spec(h, 128, 128), h, 132, 132, SegmentPlan.HOPPER_CTA_BYTES_PER_SECOND,
                    4.814e12);
            assertEquals(new Fill(h, 132, 132, SegmentPlan.PASS1_COST), h200, "H = " + h);
        }
        assertTrue(132 * cta >= SegmentPlan.MEMORY_BOUND, "the H100's CTAs ask " + 132 * cta + " times its memory");
        // the bound itself: a GPU of 100 slots on the H100's memory asks 1.14 times, one of 112 asks 1.27
        assertEquals(0, SegmentStates.fill(spec(8, 128, 128), 8, 100, 100, 34.3e9, H100_PEAK).forwardMemory());
        assertEquals(cta, SegmentStates.fill(spec(8, 128, 128), 8, 112, 112, 34.3e9, H100_PEAK).forwardMemory(), 1e-15);
        // weighing the memory never makes a plan faster, nor the chosen plan slower than the one chosen without
        // it (beyond the tie by which the model takes fewer segments and uniform cuts)
        for (int h = 1; h <= 160; h++) {
            Fill without = new Fill(h, 132, 132, SegmentPlan.PASS1_COST);
            Fill with = SegmentStates.fill(spec(h, 128, 128), h, 132, 132, SegmentPlan.HOPPER_CTA_BYTES_PER_SECOND,
                    H100_PEAK);
            SegmentPlan old = SegmentPlan.of(t, without, 1);
            SegmentPlan now = SegmentPlan.of(t, with, 1);
            assertTrue(old.modelChunks(with) >= old.modelChunks(without) - 1e-9, "H = " + h);
            assertTrue(now.modelChunks(with) <= old.modelChunks(with) * (1 + SegmentPlan.TIE) + 1e-9,
                    "H = " + h + ": " + now + " against " + old);
        }
    }

    /**
     * The memory's share a CTA chunk takes counts the bytes the spec's heads hold: grouped k and v are
     * read once a group; without a known rate or memory, nothing is weighed.
     */
    @Test
    void groupedHeadsWeighTheirOwnBytes() {
        double cta = 34.3e9 / (0.9 * H100_PEAK);
        // Hq = 64, Hk = Hv = 8, Dk = Dv = 128: a token holds q and o of 64 heads, k and v of 8, against 4 x 64
        Fill gqa = SegmentStates.fill(spec(64, 128, 128).withHeads(64, 8, 8), 64, 132, 132, 34.3e9, H100_PEAK);
        assertEquals(cta * (64 + 8 + 8 + 64) / 256, gqa.forwardMemory(), 1e-15);
        assertEquals(cta * (8 + 8) / 256, gqa.statesMemory(), 1e-15);
        // grouped values (Hq = Hk = 2, Hv = 6), Dk = 32, Dv = 96: q 2x32, k 2x32, v 6x96, o 6x96 of 2 x 6 x 128
        Fill gv = SegmentStates.fill(spec(6, 32, 96).withHeads(2, 2, 6), 6, 132, 132, 34.3e9, H100_PEAK);
        assertEquals(cta * (64 + 64 + 576 + 576) / 1536, gv.forwardMemory(), 1e-15);
        assertEquals(cta * (64 + 576) / 1536, gv.statesMemory(), 1e-15);
        for (double[] unknown : new double[][] {{0, H100_PEAK}, {34.3e9, 0}}) {
            Fill f = SegmentStates.fill(spec(64, 128, 128), 64, 132, 132, unknown[0], unknown[1]);
            assertEquals(0, f.forwardMemory());
            assertEquals(0, f.statesMemory());
            assertEquals(new Fill(64, 132, 132, SegmentPlan.PASS1_COST), f);
        }
    }

    @Test
    void refusesWhatCannotBePlanned() {
        assertThrows(IllegalArgumentException.class, () -> new Fill(0, 132, 132, 0.9));
        assertThrows(IllegalArgumentException.class, () -> new Fill(8, 0, 132, 0.9));
        assertThrows(IllegalArgumentException.class, () -> new Fill(8, 132, 132, 0));
        assertThrows(IllegalArgumentException.class, () -> new Fill(8, 132, 132, 0.45, -1e-3, 0));
        assertThrows(IllegalArgumentException.class, () -> new Fill(8, 132, 132, 0.45, 0, Double.NaN));
        assertThrows(IllegalArgumentException.class, () -> SegmentPlan.of(0, 8, 132, 1));
    }
}
