package dev.lightning.attention.engine;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Which checkpoints a window holds (c with position < (c+1)N <= position + n), where in the
 * window each is taken, and the checks.
 */
class CheckpointsTest {
    private static final AttentionSpec PLAIN = new AttentionSpec(3, 4, 5, Slopes.minimax(3), 1.0, 64);
    private static final AttentionSpec NORMALIZED = PLAIN.withNormalization(1e-5);

    @Test
    void aWindowAtTheStart() {
        Checkpoints c = Checkpoints.of(PLAIN, 128, 0, 1000);
        assertTrue(c.requested());
        assertEquals(0, c.first());
        assertEquals(7, c.count()); // floor(1000 / 128)
        for (int i = 0; i < 7; i++) {
            assertEquals(128 * (i + 1) - 1, c.tokenAfter(i));
        }
        // a window ending exactly on a checkpoint holds it; one token short does not
        assertEquals(2, Checkpoints.of(PLAIN, 128, 0, 256).count());
        assertEquals(1, Checkpoints.of(PLAIN, 128, 0, 255).count());
        assertEquals(0, Checkpoints.of(PLAIN, 128, 0, 127).count());
        assertEquals(0, Checkpoints.of(PLAIN, 128, 0, 1).count());
    }

    @Test
    void aWindowInTheMiddle() {
        // tokens [192, 704): checkpoints after global tokens 255, 383, 511, 639 = c 1..4
        Checkpoints c = Checkpoints.of(PLAIN, 128, 192, 512);
        assertEquals(1, c.first());
        assertEquals(4, c.count());
        assertEquals(192, c.position());
        assertEquals(128, c.every());
        int[] after = {63, 191, 319, 447};
        for (int i = 0; i < 4; i++) {
            assertEquals(after[i], c.tokenAfter(i));
            assertEquals((c.first() + i + 1) * 128 - 1, c.position() + c.tokenAfter(i));
        }
    }

    @Test
    void windowsAcrossBoundaries() {
        // [128, 192): no multiple of 128 in (128, 192]
        Checkpoints none = Checkpoints.of(PLAIN, 128, 128, 64);
        assertEquals(1, none.first());
        assertEquals(0, none.count());
        // [64, 128): the checkpoint after token 127 is its last token
        Checkpoints last = Checkpoints.of(PLAIN, 128, 64, 64);
        assertEquals(0, last.first());
        assertEquals(1, last.count());
        assertEquals(63, last.tokenAfter(0));
        // [128, 256): the checkpoint at the window's start (after token 127) belongs to the window before
        Checkpoints next = Checkpoints.of(PLAIN, 128, 128, 128);
        assertEquals(1, next.first());
        assertEquals(1, next.count());
        assertEquals(127, next.tokenAfter(0));
        // far into a long sequence: positions past 2^31
        long position = 3L << 31;
        Checkpoints far = Checkpoints.of(PLAIN, 1024, position, 4096);
        assertEquals(position / 1024, far.first());
        assertEquals(4, far.count());
        assertEquals(1023, far.tokenAfter(0));
        // windows that tile a sequence hold every checkpoint once, in order
        int[] cuts = {0, 64, 320, 384, 777, 1000};
        long expectFirst = 0;
        for (int p = 0; p + 1 < cuts.length; p++) {
            Checkpoints w = Checkpoints.of(PLAIN, 64, cuts[p], cuts[p + 1] - cuts[p]);
            assertEquals(expectFirst, w.first(), "window " + p);
            expectFirst += w.count();
        }
        assertEquals(1000 / 64, expectFirst);
    }

    @Test
    void checksSayWhatIsWrong() {
        assertFalse(Checkpoints.none().requested());
        assertEquals(0, Checkpoints.none().count());
        String m = refused(() -> Checkpoints.of(PLAIN, 96, 0, 1000).check(PLAIN, 1000));
        assertTrue(m.contains("every 96") && m.contains("multiples of the chunk size 64"), m);
        m = refused(() -> Checkpoints.of(PLAIN, 128, 32, 1000).check(PLAIN, 1000));
        assertTrue(m.contains("from token 32"), m);
        m = refused(() -> Checkpoints.of(PLAIN, 128, 0, 1000).check(NORMALIZED, 1000));
        assertTrue(m.contains("another spec"), m);
        m = refused(() -> Checkpoints.of(NORMALIZED, 128, 0, 1000).check(PLAIN, 1000));
        assertTrue(m.contains("another spec"), m);
        m = refused(() -> Checkpoints.of(PLAIN, 128, 0, 1000).check(PLAIN, 500));
        assertTrue(m.contains("made for 7 states") && m.contains("holds 3"), m);
        assertTrue(refused(() -> Checkpoints.of(PLAIN, 0, 0, 10)).contains(">= 1"));
        assertTrue(refused(() -> Checkpoints.of(PLAIN, 64, -64, 10)).contains("non-negative"));
        assertTrue(refused(() -> Checkpoints.of(PLAIN, 64, 0, -1)).contains("non-negative"));
        // the edges that are allowed: one token between checkpoints, a window at token 0, an empty window
        assertEquals(5, Checkpoints.of(PLAIN, 1, 0, 5).count());
        assertEquals(0, Checkpoints.of(PLAIN, 64, 0, 0).count());
        Checkpoints.of(NORMALIZED, 128, 256, 1000).check(NORMALIZED, 1000);
    }

    @Test
    void putAndStateRoundTrip() {
        SplittableRandom rnd = new SplittableRandom(5);
        Checkpoints c = Checkpoints.of(NORMALIZED, 64, 0, 200);
        assertEquals(3, c.count());
        float[][] kv = new float[3][];
        float[][] z = new float[3][];
        for (int i = 0; i < 3; i++) {
            kv[i] = new float[NORMALIZED.stateSize()];
            z[i] = new float[NORMALIZED.normalizerSize()];
            for (int x = 0; x < kv[i].length; x++) {
                kv[i][x] = (float) rnd.nextDouble() - 0.5f;
            }
            for (int x = 0; x < z[i].length; x++) {
                z[i][x] = (float) rnd.nextDouble() + 0.5f;
            }
        }
        c.put(0, LightningState.of(3, 4, 5, kv[0], z[0]));
        // checkpoint 1 head by head, as the backends record it
        for (int h = 0; h < 3; h++) {
            float[] headKv = java.util.Arrays.copyOfRange(kv[1], h * 20, (h + 1) * 20);
            float[] headZ = java.util.Arrays.copyOfRange(z[1], h * 4, (h + 1) * 4);
            c.putHead(1, h, headKv, headZ);
        }
        c.put(2, LightningState.of(3, 4, 5, kv[2], z[2]));
        for (int i = 0; i < 3; i++) {
            LightningState s = c.state(NORMALIZED, i);
            assertArrayEquals(kv[i], s.kv(), "checkpoint " + i);
            assertArrayEquals(z[i], s.normalizer(), "checkpoint " + i);
        }
        assertArrayEquals(kv[1], java.util.Arrays.copyOfRange(c.kvData(), 60, 120));
        assertArrayEquals(z[2], java.util.Arrays.copyOfRange(c.normalizerData(), 24, 36));
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> Checkpoints.of(PLAIN, 64, 0, 200).normalizerData());
        assertTrue(e.getMessage().contains("without normalizer"));
    }

    private static String refused(Executable call) {
        return assertThrows(IllegalArgumentException.class, call).getMessage();
    }
}
