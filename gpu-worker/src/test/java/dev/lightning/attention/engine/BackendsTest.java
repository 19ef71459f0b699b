package dev.lightning.attention.engine;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Backends.create by name, as `lightning bench --backend X` calls it. */
class BackendsTest {
    /**
     * A name in any case, as the job's --backend takes it: `bench --backend CPU` was refused as an unknown backend
     * while `run --backend CPU` computed on the CPU.
     */
    @Test
    void namesAreTakenInAnyCase() {
        try (AttentionBackend b = Backends.create("CPU")) {
            assertEquals("cpu", b.name());
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Backends.create("tpu"));
        assertTrue(e.getMessage().contains("unknown backend 'tpu'") && e.getMessage().contains("cpu"), e.getMessage());
    }
}
