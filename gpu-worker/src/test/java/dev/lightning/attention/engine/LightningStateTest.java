package dev.lightning.attention.engine;

import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The state's layout (bytes, with and without normalizer), its combine for the scan, and fits. */
class LightningStateTest {
    private static final AttentionSpec PLAIN = new AttentionSpec(3, 5, 7, Slopes.minimax(3), 1.0, 64);
    private static final AttentionSpec NORMALIZED = PLAIN.withNormalization(1e-5);

    @Test
    void bytesCountSAndTheNormalizer() {
        assertEquals(4L * 3 * 5 * 7, LightningState.bytes(3, 5, 7));
        assertEquals(4L * 3 * 5 * 7, LightningState.bytes(3, 5, 7, false));
        assertEquals(4L * 3 * 5 * 7 + 4L * 3 * 5, LightningState.bytes(3, 5, 7, true));
        assertEquals(LightningState.bytes(3, 5, 7, false), LightningState.bytes(PLAIN));
        assertEquals(LightningState.bytes(3, 5, 7, true), LightningState.bytes(NORMALIZED));
        assertEquals(LightningState.bytes(NORMALIZED), NORMALIZED.stateBytes());
        assertEquals(LightningState.bytes(NORMALIZED), random(NORMALIZED, 1).byteSize());
        assertEquals(LightningState.bytes(PLAIN), random(PLAIN, 1).byteSize());
        // the two parts: S first, then z (where the checkpoint records and the batch store cut a state)
        assertEquals(4L * 3 * 5 * 7, LightningState.kvBytes(NORMALIZED));
        assertEquals(4L * 3 * 5, LightningState.normalizerBytes(NORMALIZED));
        assertEquals(0, LightningState.normalizerBytes(PLAIN));
        // by head counts, for the table run's checks and plan, which have no spec at hand
        assertEquals(LightningState.normalizerBytes(NORMALIZED), LightningState.normalizerBytes(3, 5));
        assertEquals(4L * 65536 * 256, LightningState.normalizerBytes(65536, 256));
        // the largest head layout: no int overflow in the byte count
        assertEquals(4L * 65536 * 256 * 256, LightningState.bytes(65536, 256, 256));
    }

    @Test
    void bytesRoundTripWithAndWithoutNormalizer() {
        for (AttentionSpec spec : new AttentionSpec[] {PLAIN, NORMALIZED}) {
            LightningState s = random(spec, 2);
            byte[] b = s.toBytes();
            assertEquals(spec.stateBytes(), b.length);
            LightningState back = LightningState.fromBytes(spec, ByteBuffer.wrap(b));
            assertArrayEquals(s.kv(), back.kv());
            assertEquals(spec.normalized(), back.normalized());
            if (spec.normalized()) {
                assertArrayEquals(s.normalizer(), back.normalizer());
            }
            // the layout: S [H, Dk, Dv] little-endian float32 first, then z [H, Dk]
            ByteBuffer le = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
            assertEquals(s.get(2, 4, 6), le.getFloat(4 * ((2 * 5 + 4) * 7 + 6)));
            assertEquals(s.get(1, 0, 3), le.getFloat(4 * ((1 * 5) * 7 + 3)));
            if (spec.normalized()) {
                assertEquals(s.normalizer(2, 3), le.getFloat(4 * (3 * 5 * 7 + 2 * 5 + 3)));
            }
        }
        // decoding starts at the buffer's position
        LightningState s = random(NORMALIZED, 3);
        ByteBuffer shifted = ByteBuffer.allocate(11 + (int) NORMALIZED.stateBytes());
        shifted.position(11);
        shifted.put(s.toBytes());
        shifted.position(11);
        LightningState back = LightningState.fromBytes(NORMALIZED, shifted);
        assertArrayEquals(s.kv(), back.kv());
        assertArrayEquals(s.normalizer(), back.normalizer());
    }

    @Test
    void thenIsDecayTimesThisPlusLocalForSAndZ() {
        for (AttentionSpec spec : new AttentionSpec[] {PLAIN, NORMALIZED}) {
            LightningState a = random(spec, 4);
            LightningState b = random(spec, 5);
            long n = 37;
            LightningState c = a.then(spec, n, b);
            assertEquals(spec.normalized(), c.normalized());
            for (int h = 0; h < 3; h++) {
                float decay = (float) Math.exp(-spec.slope(h) * n);
                for (int i = 0; i < 5; i++) {
                    for (int j = 0; j < 7; j++) {
                        assertEquals(decay * a.get(h, i, j) + b.get(h, i, j), c.get(h, i, j), 1e-6);
                    }
                    if (spec.normalized()) {
                        assertEquals(decay * a.normalizer(h, i) + b.normalizer(h, i), c.normalizer(h, i), 1e-6);
                    }
                }
            }
            // the decay is per head: heads of different slopes get different factors
            assertTrue(spec.slope(0) != spec.slope(2));
        }
        LightningState plain = random(PLAIN, 6);
        LightningState normalized = random(NORMALIZED, 7);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> normalized.then(NORMALIZED, 5, plain));
        assertTrue(e.getMessage().contains("do not fit"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> plain.then(NORMALIZED, 5, plain));
    }

    @Test
    void fitsMatchesHeadsWidthsAndNormalizer() {
        assertTrue(LightningState.zeros(PLAIN).fits(PLAIN));
        assertTrue(LightningState.zeros(NORMALIZED).fits(NORMALIZED));
        assertFalse(LightningState.zeros(PLAIN).fits(NORMALIZED));
        assertFalse(LightningState.zeros(NORMALIZED).fits(PLAIN));
        assertFalse(LightningState.zeros(3, 7, 5).fits(PLAIN));
        assertFalse(LightningState.zeros(2, 5, 7).fits(PLAIN));
        // grouping does not change the state: H states of [Dk, Dv]
        AttentionSpec grouped = new AttentionSpec(6, 5, 7, Slopes.minimax(6), 1.0, 64).withHeads(6, 2, 3);
        assertTrue(LightningState.zeros(6, 5, 7).fits(grouped));
        assertFalse(LightningState.zeros(2, 5, 7).fits(grouped));
    }

    @Test
    void aStateWithoutNormalizerSaysSo() {
        LightningState s = random(PLAIN, 8);
        assertFalse(s.normalized());
        IllegalStateException e = assertThrows(IllegalStateException.class, s::normalizer);
        assertTrue(e.getMessage().contains("no normalizer"), e.getMessage());
        IllegalArgumentException wrong = assertThrows(IllegalArgumentException.class,
                () -> LightningState.of(3, 5, 7, new float[3 * 5 * 7], new float[14]));
        assertTrue(wrong.getMessage().contains("needs 15"), wrong.getMessage());
    }

    private static LightningState random(AttentionSpec spec, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        float[] kv = new float[spec.stateSize()];
        for (int i = 0; i < kv.length; i++) {
            kv[i] = (float) (rnd.nextDouble() * 4 - 2);
        }
        if (!spec.normalized()) {
            return LightningState.of(spec.heads(), spec.dk(), spec.dv(), kv);
        }
        float[] z = new float[spec.normalizerSize()];
        for (int i = 0; i < z.length; i++) {
            z[i] = (float) (rnd.nextDouble() * 3 + 0.5);
        }
        return LightningState.of(spec.heads(), spec.dk(), spec.dv(), kv, z);
    }
}
