package dev.lightning.attention.engine.cuda;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Which image of a module the engine hands the driver: the build's fat binary where there is one, else the PTX. No GPU needed. */
class ModuleImageTest {
    private final Map<String, byte[]> resources = new HashMap<>();

    private InputStream open(String name) {
        byte[] b = resources.get(name);
        return b == null ? null : new ByteArrayInputStream(b);
    }

    @Test
    void thePtxAsACStringWhenTheBuildMadeNoFatBinary() {
        resources.put("/k/lightning.ptx", ".version 9.0".getBytes(StandardCharsets.US_ASCII));
        byte[] image = CudaDevice.image("/k/lightning.ptx", this::open);
        byte[] expect = ".version 9.0\0".getBytes(StandardCharsets.US_ASCII);
        assertArrayEquals(expect, image);
    }

    @Test
    void theFatBinaryBesideThePtxAsItIs() {
        byte[] fat = {0x50, (byte) 0xed, 0x55, (byte) 0xba, 1, 0, 2, 0};
        resources.put("/k/softmax.ptx", ".version 9.0".getBytes(StandardCharsets.US_ASCII));
        resources.put("/k/softmax.fatbin", fat);
        resources.put("/k/lightning.fatbin", new byte[] {9}); // another module's: not taken
        assertArrayEquals(fat, CudaDevice.image("/k/softmax.ptx", this::open));
    }

    @Test
    void aMissingModuleSaysWhich() {
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> CudaDevice.image("/k/lightning_batch.ptx", this::open));
        assertTrue(e.getMessage().contains("/k/lightning_batch.ptx") && e.getMessage().contains("missing"),
                e.getMessage());
    }
}
