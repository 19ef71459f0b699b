package dev.lightning.attention.engine;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

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
}
