package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionSpec;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The host's copies of the kernels' shared-memory formulas match the CUDA sources, and the
 * committed PTX holds every kernel the host launches. Runs without a GPU.
 */
class KernelLayoutTest {
    private static final Path CUDA = Path.of("src", "main", "cuda");

    @Test
    void tensorCoreSharedMemoryFormulaMatchesTheHeader() throws IOException {
        String header = Files.readString(CUDA.resolve("tensor_core.cuh"));
        Matcher m = Pattern.compile("lightning_tc_smem_bytes\\(int dk\\) \\{\\s*return (\\d+) \\* \\(\\(dk \\+ 15\\) / 16 \\* 16\\) \\+ (\\d+);")
                .matcher(header);
        assertTrue(m.find(), "formula not found in tensor_core.cuh");
        long a = Long.parseLong(m.group(1));
        long b = Long.parseLong(m.group(2));
        for (int dk = 1; dk <= AttentionSpec.MAX_DIM; dk++) {
            assertEquals(a * ((dk + 15) / 16 * 16) + b, TensorCoreLayout.sharedBytes(dk), "dk " + dk);
        }
        assertTrue(TensorCoreLayout.sharedBytes(256) <= 227 * 1024, "fits a Hopper SM");
        Matcher narrow = Pattern.compile("#define LIGHTNING_TC_THREADS_NARROW (\\d+)").matcher(header);
        Matcher wide = Pattern.compile("#define LIGHTNING_TC_THREADS_WIDE (\\d+)").matcher(header);
        Matcher columns = Pattern.compile("#define LIGHTNING_TC_COLUMNS (\\d+)").matcher(header);
        assertTrue(narrow.find() && wide.find() && columns.find(), "launch shape macros not found");
        assertEquals(Integer.parseInt(narrow.group(1)), TensorCoreLayout.THREADS_NARROW);
        assertEquals(Integer.parseInt(wide.group(1)), TensorCoreLayout.THREADS_WIDE);
        assertTrue(header.contains("body<T, true, 2, 4>") && header.contains("body<T, true, 4, 0>"),
                "narrow kernels are MT = 2 (Dk <= 32 * 4 = 128) with load warps; wide ones MT = 4 without");
        assertEquals(128, TensorCoreLayout.NARROW_MAX_DK);
        assertEquals(Integer.parseInt(columns.group(1)), TensorCoreLayout.COLUMNS);
    }

    @Test
    void hopperLaunchShapeMatchesTheHeader() throws IOException {
        String header = Files.readString(CUDA.resolve("hopper.cuh"));
        assertTrue(header.contains("return forward ? 3 * (2 * qk + 128 * nc) + 2 * qk + 128 * (nc + 8) + 1152 + 512\n"
                + "                   : 4 * (qk + 128 * nc) + 1152;"),
                "lightning_wg_smem_bytes changed: update TensorCoreLayout.hopperSharedBytes");
        assertTrue(header.contains("const int qk = 16384, nc = LIGHTNING_WG_COLUMNS;"), "Q/K tile size changed");
        for (String[] macro : new String[][] {{"LIGHTNING_WG_COLUMNS", "" + TensorCoreLayout.HOPPER_COLUMNS},
                {"LIGHTNING_WG_THREADS", "" + TensorCoreLayout.HOPPER_THREADS},
                {"LIGHTNING_WG_MAX_DK", "" + TensorCoreLayout.HOPPER_MAX_DK}}) {
            Matcher m = Pattern.compile("#define " + macro[0] + " (\\d+)").matcher(header);
            assertTrue(m.find(), macro[0]);
            assertEquals(macro[1], m.group(1), macro[0]);
        }
        // 3 x 48 KB stages, two 16 KB state copies, staging and tables: within the 227 KB a block may have
        assertEquals(199296, TensorCoreLayout.hopperSharedBytes(128, true));
        assertEquals(132224, TensorCoreLayout.hopperSharedBytes(128, false));
        for (int dk = 1; dk <= TensorCoreLayout.HOPPER_MAX_DK; dk++) {
            assertTrue(TensorCoreLayout.hopperSharedBytes(dk, true) <= 227 * 1024, "dk " + dk);
        }
        // the host's routing: Dk in (64, 128] and Dv > 64 (below, the products would be half zeros)
        assertTrue(TensorCoreLayout.hopperFits(128, 128) && TensorCoreLayout.hopperFits(65, 65));
        assertFalse(TensorCoreLayout.hopperFits(64, 128) || TensorCoreLayout.hopperFits(129, 128)
                || TensorCoreLayout.hopperFits(128, 64));
    }

    @Test
    void genericSharedMemoryFormulaMatchesTheSource() throws IOException {
        String source = Files.readString(CUDA.resolve("lightning.cu"));
        assertTrue(source.contains("return 4 * ((CHUNK + 4) + 2 * CHUNK * (dk + 1) + CHUNK * GENERIC_BV + CHUNK * (CHUNK + 1) "
                + "+ dk * GENERIC_BV);"), "lightning_generic_smem_bytes changed: update Kernels.genericSharedBytes");
        assertEquals(4 * (68 + 2 * 64 * 129 + 64 * 32 + 64 * 65 + 128 * 32), Kernels.genericSharedBytes(128));
    }

    @Test
    void committedPtxHoldsEveryLaunchedKernel() throws IOException {
        String ptx = new String(CudaDevice.class.getResourceAsStream(CudaDevice.PTX_RESOURCE).readAllBytes());
        assertTrue(ptx.contains(".version 9.0"), "PTX ISA 9.0 expected (nvcc 13)");
        for (String family : new String[] {"generic_f32", "generic_bf16", "generic_f16", "tc_bf16", "tc_f16",
                "tc_bf16_wide", "tc_f16_wide"}) {
            assertTrue(ptx.contains(".entry lightning_forward_" + family), family);
            assertTrue(ptx.contains(".entry lightning_states_" + family), family);
        }
        assertTrue(ptx.contains(".entry lightning_scan"));
        String hopper = new String(CudaDevice.class.getResourceAsStream(CudaDevice.HOPPER_PTX_RESOURCE).readAllBytes());
        assertTrue(hopper.contains(".version 9.0") && hopper.contains(".target sm_90a"), "sm_90a PTX expected");
        for (String type : new String[] {"bf16", "f16"}) {
            assertTrue(hopper.contains(".entry lightning_forward_wg_" + type), type);
            assertTrue(hopper.contains(".entry lightning_states_wg_" + type), type);
        }
        assertTrue(hopper.contains("wgmma.mma_async"), "the Hopper kernels use wgmma");
    }
}
