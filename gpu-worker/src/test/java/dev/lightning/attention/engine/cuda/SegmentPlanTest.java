package dev.lightning.attention.engine.cuda;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** How a GPU launch cuts a window (host arithmetic, no GPU): invariants and the benchmark shapes. */
class SegmentPlanTest {
    private static final int CHUNK = SegmentPlan.CHUNK;

    @Test
    void everyPlanCoversTheWindowInWholeChunks() {
        int[] tokens = {1, 63, 64, 65, 1000, 4100, 20_000, 65_536, 1 << 20};
        int[] ctas = {1, 2, 3, 8, 16, 25, 33, 50, 64, 66, 128, 200};
        int[] residents = {16, 132, 264};
        for (int n : tokens) {
            for (int c : ctas) {
                for (int resident : residents) {
                    for (int min : new int[] {1, 2}) {
                        SegmentPlan p = SegmentPlan.of(n, c, resident, min);
                        String at = "n=" + n + " ctas=" + c + " resident=" + resident + " min=" + min + ": " + p;
                        assertTrue(p.segments() >= 1 && p.segTokens() % CHUNK == 0, at);
                        assertTrue((long) (p.segments() - 1) * p.segTokens() < n, at);
                        assertTrue((long) p.segments() * p.segTokens() >= n, at);
                        if (p.segments() == 1) {
                            assertEquals(0, p.locals(), at);
                            assertEquals(0, p.pass1Tokens(), at);
                            continue;
                        }
                        assertEquals(p.segTokens(), p.every() * p.subTokens(), at);
                        assertEquals(0, p.subTokens() % CHUNK, at);
                        assertEquals((p.segments() - 1) * p.every(), p.locals(), at);
                        assertEquals((long) (p.segments() - 1) * p.segTokens(), p.pass1Tokens(), at);
                        if (min == 1) {
                            // segments only when the heads leave a wave half empty; never past one wave
                            assertTrue(2 * c < resident && (long) p.segments() * c <= resident, at);
                        }
                        if (p.every() > 1) {
                            assertTrue((long) p.locals() * c <= resident, "pass 1 finer only within one wave: " + at);
                        }
                    }
                }
            }
        }
    }

    @Test
    void benchmarkShapesOnA132SmGpu() {
        // Hopper kernels (128 columns a CTA, one CTA a SM): H = 64 gives two segments, pass 1 over
        // the first in two sub-segments; H = 8 gives 16 segments, pass 1 over 15.
        SegmentPlan h64 = SegmentPlan.of(1 << 20, 64, 132, 1);
        assertEquals(2, h64.segments());
        assertEquals(2, h64.every());
        assertEquals(1 << 19, h64.pass1Tokens());
        SegmentPlan h8 = SegmentPlan.of(1 << 20, 8, 132, 1);
        assertEquals(16, h8.segments());
        assertEquals(1, h8.every());
        assertEquals(15 * (1 << 16), h8.pass1Tokens());
        // The portable kernels (64 columns a CTA) at H = 64: 128 CTAs fill the GPU, one segment.
        assertEquals(1, SegmentPlan.of(1 << 20, 128, 132, 1).segments());
        // forced two-pass
        assertEquals(2, SegmentPlan.of(1 << 20, 128, 132, 2).segments());
    }
}
