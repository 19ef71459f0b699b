package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.cuda.SegmentPlan.Fill;
import org.junit.jupiter.api.Test;

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
                        assertTrue(p.segments() >= 1 && p.segTokens() % CHUNK == 0, at);
                        assertTrue((long) (p.segments() - 1) * p.segTokens() < n, at);
                        assertTrue((long) p.segments() * p.segTokens() >= n, at);
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
                        assertEquals(p.segTokens(), p.every() * p.subTokens(), at);
                        assertEquals(0, p.subTokens() % CHUNK, at);
                        assertEquals((p.segments() - 1) * p.every(), p.locals(), at);
                        assertEquals((long) (p.segments() - 1) * p.segTokens(), p.pass1Tokens(), at);
                    }
                }
            }
        }
    }

    /**
     * The plan is the fastest cut the model knows (within the tie margin), found here by trying every
     * number of segments and sub-segments in the bounds by plain enumeration of whole-chunk cuts,
     * with the model's cost written out again: waves times chunks a CTA, for both passes.
     */
    @Test
    void planIsTheFastestCutOfABruteForceSearch() {
        int[] tokens = {1000, 4100, 20_000, 65_536};
        int[] heads = {1, 3, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 100, 128, 132, 160};
        int[][] gpus = {{132, 1}, {108, 1}, {132, 2}, {80, 1}, {16, 3}};
        for (int n : tokens) {
            int chunks = (n + CHUNK - 1) / CHUNK;
            for (int h : heads) {
                for (int tiles : new int[] {1, 2}) {
                    for (int[] g : gpus) {
                        int slots = g[0] * g[1];
                        Fill fill = new Fill(h * tiles, slots, slots, SegmentPlan.PASS1_COST);
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
                                best = Math.min(best, cost(h * tiles, slots, s, segChunks, e));
                            }
                        }
                        int segChunks = p.segTokens() / CHUNK;
                        double chosen = cost(h * tiles, slots, p.segments(), segChunks, p.every());
                        String at = "n=" + n + " H=" + h + " tiles=" + tiles + " slots=" + slots + ": " + p
                                + " costs " + chosen + ", best " + best;
                        assertTrue(chosen <= best * (1 + SegmentPlan.TIE) + 1e-9, at);
                        // never slower than leaving the window whole
                        assertTrue(chosen <= cost(h * tiles, slots, 1, chunks, 1) + 1e-9, at);
                    }
                }
            }
        }
    }

    private static double cost(int ctas, int slots, int s, int segChunks, int e) {
        double t = Math.ceil((double) ctas * s / slots) * segChunks;
        if (s > 1) {
            t += SegmentPlan.PASS1_COST * Math.ceil((double) ctas * (s - 1) * e / slots) * (segChunks / e)
                    + SegmentPlan.CUT_COST_CHUNKS;
        }
        return t;
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
                    double model = SegmentPlan.modelChunks(fill, p.segments(), p.segTokens() / CHUNK, p.every());
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
        assertTrue(h64.waveEfficiency(new Fill(64, 132, 132, SegmentPlan.PASS1_COST)) > 0.95, h64.toString());
        // H = 48: two segments (96 CTAs: a whole window of 48 CTAs would leave 64% idle), pass 1 in 5
        // sub-segments, 240 CTAs in two waves at 91%, where 2 sub-segments filled one at 73%.
        Fill f48 = new Fill(48, 132, 132, SegmentPlan.PASS1_COST);
        SegmentPlan h48 = SegmentPlan.of(1 << 20, f48, 1);
        assertEquals(2, h48.segments());
        assertEquals(5, h48.every());
        assertTrue(h48.pass1WaveEfficiency(f48) > 0.9, h48.toString());
        assertTrue(h48.waveEfficiency(f48) > 0.75, h48.toString());
        assertTrue(SegmentPlan.of(1 << 20, f48, 2).equals(h48), "the forced two-pass plan is the same");
        // H = 96: one segment; any cut's pass 1 costs more than the 36 idle slots of its one wave.
        assertEquals(1, SegmentPlan.of(1 << 20, 96, 132, 1).segments());
        // H = 8: 33 segments, 264 CTAs in exactly two waves (16 segments left 4 slots of 132 idle).
        Fill f8 = new Fill(8, 132, 132, SegmentPlan.PASS1_COST);
        SegmentPlan h8 = SegmentPlan.of(1 << 20, f8, 1);
        assertEquals(1.0, h8.pass2WaveEfficiency(f8), 0.03, h8.toString());
        assertTrue(h8.waveEfficiency(f8) > 0.95, h8.toString());
        // The portable kernels (64 columns a CTA) at H = 64: 128 CTAs fill the GPU, one segment.
        assertEquals(1, SegmentPlan.of(1 << 20, 128, 132, 1).segments());
        // forced two-pass
        assertEquals(2, SegmentPlan.of(1 << 20, 128, 132, 2).segments());
        // D = 64 (portable, one column tile) at T = 524,288, H = 16: 16 CTAs a segment fill the waves
        Fill f16 = new Fill(16, 132, 132, SegmentPlan.PASS1_COST);
        SegmentPlan h16 = SegmentPlan.of(524_288, f16, 1);
        assertTrue(h16.pass2WaveEfficiency(f16) >= 0.95, h16.toString());
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

    @Test
    void refusesWhatCannotBePlanned() {
        assertThrows(IllegalArgumentException.class, () -> new Fill(0, 132, 132, 0.9));
        assertThrows(IllegalArgumentException.class, () -> new Fill(8, 0, 132, 0.9));
        assertThrows(IllegalArgumentException.class, () -> new Fill(8, 132, 132, 0));
        assertThrows(IllegalArgumentException.class, () -> SegmentPlan.of(0, 8, 132, 1));
    }
}
