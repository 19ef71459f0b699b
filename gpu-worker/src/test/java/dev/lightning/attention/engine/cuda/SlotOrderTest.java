package dev.lightning.attention.engine.cuda;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The order in which the batch kernel takes a batch's sequences ({@link CudaBatchStep#slotOrder}):
 * by ascending slot, every sequence exactly once, and no order at all when the slots already ascend.
 * Host-side only, so it runs without a GPU.
 */
class SlotOrderTest {
    @Test
    void ascendingSlotsNeedNoOrder() {
        assertNull(CudaBatchStep.slotOrder(new int[0]));
        assertNull(CudaBatchStep.slotOrder(new int[] {5}));
        assertNull(CudaBatchStep.slotOrder(new int[] {0, 3, 4, 90}));
    }

    @Test
    void randomSlotsAreTakenInAscendingOrder() {
        Random random = new Random(20261203);
        for (int n : new int[] {2, 63, 1000, 65_537}) {
            int[] slots = new int[n];
            boolean[] used = new boolean[4 * n + 7];
            for (int i = 0; i < n; i++) {
                int s;
                do {
                    s = random.nextInt(used.length);
                } while (used[s]);
                used[s] = true;
                slots[i] = s;
            }
            if (n == 2 && slots[0] < slots[1]) {        // the smallest case must need an order
                int t = slots[0];
                slots[0] = slots[1];
                slots[1] = t;
            }
            int[] order = CudaBatchStep.slotOrder(slots);
            assertNotNull(order, "random slots, n = " + n);
            assertEquals(n, order.length);
            boolean[] seen = new boolean[n];
            for (int i = 0; i < n; i++) {
                assertTrue(!seen[order[i]], "sequence " + order[i] + " taken twice, n = " + n);
                seen[order[i]] = true;
                if (i > 0) {
                    assertTrue(slots[order[i - 1]] < slots[order[i]], "slots must ascend at " + i + ", n = " + n);
                }
            }
        }
    }
}
