package dev.lightning.attention.engine;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SlopesTest {
    @Test
    void minimaxPowerOfTwo() {
        double[] s = Slopes.minimax(8);
        for (int h = 0; h < 8; h++) {
            assertEquals(Math.pow(2, -(h + 1)), s[h], 1e-15);
        }
    }

    /** H = 6: the 4 slopes of H = 4, then slopes 0 and 2 of H = 8. */
    @Test
    void minimaxOtherCounts() {
        double[] four = Slopes.minimax(4);
        double[] eight = Slopes.minimax(8);
        assertArrayEquals(new double[] {four[0], four[1], four[2], four[3], eight[0], eight[2]}, Slopes.minimax(6), 0);
        assertArrayEquals(new double[] {Math.pow(2, -8)}, Slopes.minimax(1), 0);
        double[] three = Slopes.minimax(3);
        assertEquals(Math.pow(2, -4), three[0], 1e-15);
        assertEquals(Math.pow(2, -8), three[1], 1e-15);
        assertEquals(Math.pow(2, -2), three[2], 1e-15);
    }

    @Test
    void layerFactorsAndTransnormer() {
        double[] base = Slopes.minimax(4);
        double[] last = Slopes.minimax(4, 3, 4);
        assertEquals(base[1] * 1e-5, last[1], 1e-18);
        double[] t = Slopes.transnormer(4, 1, 4);
        assertArrayEquals(new double[] {0, 1.5, 3.0, 4.5}, t, 1e-12);
    }

    /** The layer's bounds at each edge, for both formulas: 0 and layers - 1 accepted, one past refused, naming the range. */
    @Test
    void layerBounds() {
        assertArrayEquals(Slopes.minimax(4), java.util.Arrays.stream(Slopes.minimax(4, 0, 4)).map(x -> x / (1 + 1e-5)).toArray(),
                1e-18);
        assertArrayEquals(Slopes.minimax(3), java.util.Arrays.stream(Slopes.minimax(3, 0, 1)).map(x -> x / (1 + 1e-5)).toArray(),
                1e-18, "one layer");
        assertArrayEquals(new double[] {0, 8.0 / 3 / 2, 16.0 / 3 / 2}, Slopes.transnormer(3, 1, 2), 1e-12);
        for (int[] bad : new int[][] {{4, 4}, {-1, 4}, {0, 0}}) {
            String m = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                    () -> Slopes.minimax(2, bad[0], bad[1])).getMessage();
            assertEquals("layer must be in 0.." + (bad[1] - 1) + " of " + bad[1] + " layers, got " + bad[0], m);
            org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                    () -> Slopes.transnormer(2, bad[0], bad[1]));
        }
        org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> Slopes.transnormer(0, 0, 1));
        org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> Slopes.minimax(0));
    }

    @Test
    void aDecayRateIsFiniteAndNotNegative() {
        for (double ok : new double[] {0.0, -0.0, Double.MIN_VALUE, 1e-6, 8, Float.MAX_VALUE, Double.MAX_VALUE}) {
            assertTrue(Slopes.isDecayRate(ok), "" + ok);
        }
        for (double bad : new double[] {-Double.MIN_VALUE, -1e-6, Double.NaN, Double.POSITIVE_INFINITY,
                Double.NEGATIVE_INFINITY}) {
            assertFalse(Slopes.isDecayRate(bad), "" + bad);
        }
    }
}
