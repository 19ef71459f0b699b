package dev.lightning.attention.kernel;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
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
        Matcher threads = Pattern.compile("#define LIGHTNING_TC_THREADS (\\d+)").matcher(header);
        Matcher columns = Pattern.compile("#define LIGHTNING_TC_COLUMNS (\\d+)").matcher(header);
        assertTrue(threads.find() && columns.find(), "launch shape macros not found");
        assertEquals(Integer.parseInt(threads.group(1)), TensorCoreLayout.THREADS);
        assertEquals(Integer.parseInt(columns.group(1)), TensorCoreLayout.COLUMNS);
    }

    @Test
    void genericSharedMemoryFormulaMatchesTheSource() throws IOException {
        String source = Files.readString(CUDA.resolve("lightning.cu"));
        assertTrue(source.contains("return 4 * ((CHUNK + 4) + 2 * CHUNK * (dk + 1) + CHUNK * GENERIC_BV + CHUNK * (CHUNK + 1) "
                + "+ dk * GENERIC_BV);"), "lightning_generic_smem_bytes changed: update CudaBackend.genericSharedBytes");
        assertEquals(4 * (68 + 2 * 64 * 129 + 64 * 32 + 64 * 65 + 128 * 32), CudaBackend.genericSharedBytes(128));
    }

    @Test
    void committedPtxHoldsEveryLaunchedKernel() throws IOException {
        String ptx = new String(CudaDevice.class.getResourceAsStream(CudaDevice.PTX_RESOURCE).readAllBytes());
        assertTrue(ptx.contains(".version 9.0"), "PTX ISA 9.0 expected (nvcc 13)");
        for (String family : new String[] {"generic_f32", "generic_bf16", "generic_f16", "tc_bf16", "tc_f16"}) {
            assertTrue(ptx.contains(".entry lightning_forward_" + family), family);
            assertTrue(ptx.contains(".entry lightning_states_" + family), family);
        }
        assertTrue(ptx.contains(".entry lightning_scan"));
    }
}
