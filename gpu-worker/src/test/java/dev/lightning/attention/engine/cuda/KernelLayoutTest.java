package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionSpec;
import org.junit.jupiter.api.Test;

import java.io.IOException;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The launch shapes the host reads from the modules' reports, and the committed PTX holds every
 * kernel the host launches (and the report kernels). Runs without a GPU; the reports themselves
 * are read on every device load (CudaDevice), so a GPU test run checks them.
 */
class KernelLayoutTest {
    @Test
    void launchShapesAreReadFromTheModulesReport() {
        int[] portable = new int[LaunchShapes.REPORT_INTS];
        int[] hopper = new int[LaunchShapes.REPORT_INTS];
        int[] head = {TensorCoreLayout.CHUNK, 32, 256, 384, 256, 64, 128, 64, 16};
        System.arraycopy(head, 0, portable, 0, head.length);
        hopper[0] = 128;
        hopper[1] = 384;
        hopper[2] = 128;
        hopper[3] = 64;
        hopper[4] = 5064;
        for (int dk = 1; dk < LaunchShapes.DK_SLOTS; dk++) {
            portable[LaunchShapes.DK_SLOTS + dk] = 1000 + dk;
            portable[2 * LaunchShapes.DK_SLOTS + dk] = 2000 + dk;
            portable[3 * LaunchShapes.DK_SLOTS + dk] = 1500 + dk;
            portable[4 * LaunchShapes.DK_SLOTS + dk] = 900 + dk;
            portable[5 * LaunchShapes.DK_SLOTS + dk] = dk <= 128 ? 1200 + dk : 0;
            if (dk <= 128) {
                hopper[LaunchShapes.DK_SLOTS + dk] = 3000 + dk;
                hopper[2 * LaunchShapes.DK_SLOTS + dk] = 4000 + dk;
            }
        }
        LaunchShapes s = LaunchShapes.of(portable, hopper);
        assertEquals(1040, s.genericSharedBytes(40));
        assertEquals(940, s.genericNarrowSharedBytes(40));
        assertEquals(16, s.genericNarrowColumns);
        // the float32 kernels within a block's limit: 32 columns where they fit, else 16, else none
        assertEquals(new LaunchShapes.Generic("", 32, 1040), s.genericWithin(40, 1040));
        assertEquals(new LaunchShapes.Generic("_c16", 16, 940), s.genericWithin(40, 1039));
        assertEquals(new LaunchShapes.Generic("_c16", 16, 940), s.genericWithin(40, 940));
        assertEquals(null, s.genericWithin(40, 939));
        assertEquals(2200, s.tensorCoreSharedBytes(200));
        assertEquals(1700, s.tensorCoreMinSharedBytes(200));
        assertEquals(1328, s.tensorCoreQ1SharedBytes(128));
        assertEquals(0, s.tensorCoreQ1SharedBytes(129), "no _q1 entries past the narrow family's widths");
        assertEquals(3100, s.hopperSharedBytes(100, true));
        assertEquals(4100, s.hopperSharedBytes(100, false));
        assertEquals(5064, s.hopperPairForwardBytes);
        assertEquals(384, s.tensorCoreThreads(128));
        assertEquals(256, s.tensorCoreThreads(129));
        assertEquals("", s.tensorCoreSuffix(128));
        assertEquals("", s.tensorCoreSuffix(65));
        assertEquals("_n64", s.tensorCoreSuffix(64));
        assertEquals("_n64", s.tensorCoreSuffix(1));
        assertEquals(384, s.tensorCoreThreads(64));
        assertEquals("_wide", s.tensorCoreSuffix(129));
        assertEquals("", s.tensorCoreSuffix(64, false), "the narrow kernels at dk <= 64 when _n64 is not allowed");
        assertEquals("_wide", s.tensorCoreSuffix(129, false));
        assertTrue(s.hopperFits(128, 128) && s.hopperFits(65, 65));
        assertFalse(s.hopperFits(64, 128) || s.hopperFits(129, 128) || s.hopperFits(128, 64));
        assertFalse(LaunchShapes.of(portable, null).hopperFits(128, 128), "no Hopper module, no Hopper kernels");
        assertTrue(s.hopperPairs(64, 64, 2) && s.hopperPairs(64, 64, 96));
        assertFalse(s.hopperPairs(64, 64, 3) || s.hopperPairs(64, 32, 4) || s.hopperPairs(128, 128, 4)
                || s.hopperPairs(32, 32, 4), "the paired kernels: dk = dv = 64, even H only");
        assertFalse(LaunchShapes.of(portable, null).hopperPairs(64, 64, 2), "no Hopper module, no paired kernels");
        int[] oldHopper = hopper.clone();
        oldHopper[3] = 0; // a module built before the paired kernels reports none
        assertFalse(LaunchShapes.of(portable, oldHopper).hopperPairs(64, 64, 2));
        int[] old = portable.clone();
        old[7] = 0; // a module built before the _n64 kernels reports none
        assertEquals("", LaunchShapes.of(old, hopper).tensorCoreSuffix(64));

        int[] noNarrow = portable.clone();
        noNarrow[8] = 0; // a module built before the float32 kernels' _c16 entries
        assertTrue(assertThrows(IllegalStateException.class, () -> LaunchShapes.of(noNarrow, hopper)).getMessage()
                .contains("_c16"));
        noNarrow[8] = 16;
        noNarrow[4 * LaunchShapes.DK_SLOTS + 9] = 0;
        assertTrue(assertThrows(IllegalStateException.class, () -> LaunchShapes.of(noNarrow, hopper)).getMessage()
                .contains("dk = 9"));

        portable[0] = 32;
        IllegalStateException chunk = org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                () -> LaunchShapes.of(portable, hopper));
        assertTrue(chunk.getMessage().contains("chunks of 32"), chunk.getMessage());
        portable[0] = TensorCoreLayout.CHUNK;
        hopper[4] = 0;
        IllegalStateException noPair = org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                () -> LaunchShapes.of(portable, hopper));
        assertTrue(noPair.getMessage().contains("paired kernels"), noPair.getMessage());
        hopper[4] = 5064;
        hopper[LaunchShapes.DK_SLOTS + 77] = 0;
        IllegalStateException missing = org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                () -> LaunchShapes.of(portable, hopper));
        assertTrue(missing.getMessage().contains("dk = 77"), missing.getMessage());
        hopper[LaunchShapes.DK_SLOTS + 77] = 3077;
        portable[3 * LaunchShapes.DK_SLOTS + 5] = 0; // a module built before the least sizes were reported
        IllegalStateException noLeast = org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                () -> LaunchShapes.of(portable, hopper));
        assertTrue(noLeast.getMessage().contains("dk = 5"), noLeast.getMessage());
        portable[3 * LaunchShapes.DK_SLOTS + 5] = 2006; // more than the bytes it asks for: a broken report
        assertThrows(IllegalStateException.class, () -> LaunchShapes.of(portable, hopper));
        portable[3 * LaunchShapes.DK_SLOTS + 5] = 1505;
        LaunchShapes.of(portable, hopper);
        portable[5 * LaunchShapes.DK_SLOTS + 100] = 0; // a module built before the _q1 entries
        IllegalStateException noQ1 = assertThrows(IllegalStateException.class, () -> LaunchShapes.of(portable, hopper));
        assertTrue(noQ1.getMessage().contains("_q1") && noQ1.getMessage().contains("dk = 100"), noQ1.getMessage());
        portable[5 * LaunchShapes.DK_SLOTS + 100] = 1300;
        portable[5 * LaunchShapes.DK_SLOTS + 129] = 1329; // a size where the narrow family computes nothing
        assertTrue(assertThrows(IllegalStateException.class, () -> LaunchShapes.of(portable, hopper)).getMessage()
                .contains("dk = 129"));
    }

    @Test
    void committedPtxHoldsEveryLaunchedKernel() throws IOException {
        String ptx = new String(CudaDevice.class.getResourceAsStream(CudaDevice.PTX_RESOURCE).readAllBytes());
        assertEquals(PtxIsa.shipped(), PtxIsa.of(ptx, CudaDevice.PTX_RESOURCE), "the ISA build-ptx.sh declares");
        for (String family : new String[] {"generic_f32", "generic_bf16", "generic_f16", "generic_f32_c16",
                "generic_bf16_c16", "generic_f16_c16", "tc_bf16", "tc_f16",
                "tc_bf16_wide", "tc_f16_wide", "tc_bf16_n64", "tc_f16_n64", "tc_bf16_norm", "tc_f16_norm",
                "tc_bf16_norm_wide", "tc_f16_norm_wide", "tc_bf16_norm_n64", "tc_f16_norm_n64"}) {
            assertTrue(ptx.contains(".entry lightning_forward_" + family), family);
            assertTrue(ptx.contains(".entry lightning_states_" + family), family);
        }
        for (String family : new String[] {"tc_bf16_q1", "tc_f16_q1", "tc_bf16_norm_q1", "tc_f16_norm_q1"}) {
            assertTrue(ptx.contains(".entry lightning_forward_" + family + "("),
                    family + ": forward only (they pair with the narrow states kernel)");
        }
        assertTrue(ptx.contains(".entry lightning_scan"));
        assertTrue(ptx.contains(".entry lightning_args_layout") && ptx.contains(".entry lightning_launch_shapes"),
                "the portable module reports its argument layout and launch shapes");
        String hopper = new String(CudaDevice.class.getResourceAsStream(CudaDevice.HOPPER_PTX_RESOURCE).readAllBytes());
        assertTrue(hopper.contains(".target sm_90a"), "sm_90a PTX expected (its ISA: PtxIsaTest)");
        for (String type : new String[] {"bf16", "f16"}) {
            assertTrue(hopper.contains(".entry lightning_forward_wg_" + type), type);
            assertTrue(hopper.contains(".entry lightning_states_wg_" + type), type);
            assertTrue(hopper.contains(".entry lightning_forward_wg_pair_" + type), type);
            assertTrue(hopper.contains(".entry lightning_states_wg_pair_" + type), type);
        }
        assertTrue(hopper.contains("wgmma.mma_async"), "the Hopper kernels use wgmma");
        assertTrue(hopper.contains(".entry lightning_args_layout") && hopper.contains(".entry lightning_wg_launch_shapes"),
                "the Hopper module reports its argument layout and launch shapes");
    }
}
