package dev.lightning.attention.job.tables;

import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.tensor.InvalidInputException;
import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The options a table run refuses ({@link TableOptions#check}), checked without Spark. */
class TableOptionsTest {
    private static JobConfig cfg(String... flagsAndValues) {
        Map<String, String> flags = new HashMap<>(Map.of("--input", "in", "--output", "out"));
        for (int i = 0; i < flagsAndValues.length; i += 2) {
            flags.put(flagsAndValues[i], flagsAndValues[i + 1]);
        }
        return JobConfig.resolve(flags, Map.of(), k -> null);
    }

    /**
     * A table run reads no window ahead: `--read-ahead off` (by flag or key) was taken and changed
     * nothing, on the command line and in LightningTables.compute alike, though README's list of
     * what table runs accept did not name it.
     */
    @Test
    void readAheadOffIsRefusedByTableRuns() {
        for (boolean parquetInput : new boolean[] {true, false}) {
            for (boolean cli : new boolean[] {true, false}) {
                String m = assertThrows(InvalidInputException.class,
                        () -> TableOptions.check(cfg("--read-ahead", "off"), cli, parquetInput)).getMessage();
                assertTrue(m.contains("--read-ahead off with tables") && m.contains("leave it out"), m);
            }
        }
        JobConfig byKey = JobConfig.resolve(Map.of("--input", "in", "--output", "out"),
                Map.of("spark.lightning.readAhead", "off"), k -> null);
        assertThrows(InvalidInputException.class, () -> TableOptions.check(byKey, true, true));
        // the default, given or not, is no choice the run ignores
        assertDoesNotThrow(() -> TableOptions.check(cfg(), true, true));
        assertDoesNotThrow(() -> TableOptions.check(cfg("--read-ahead", "on"), true, true));
    }

    /**
     * Sizes a table run holds in one Java array stay below 2 GiB however large the window: the batch step's staged
     * states (4,096 states of H = 8, D = 128 are 2 GiB: one fewer), and a window's tensors (8 GiB of F32 at H = 64,
     * D = 128 would be 65,536 tokens, q alone 2^31 bytes).
     */
    @Test
    void batchesAndWindowsStayBelowAnArraysSize() {
        dev.lightning.attention.engine.AttentionSpec spec = new dev.lightning.attention.engine.AttentionSpec(8, 128, 128,
                dev.lightning.attention.engine.Slopes.minimax(8), 1.0, 64);
        long kv = dev.lightning.attention.engine.LightningState.kvBytes(spec);
        org.junit.jupiter.api.Assertions.assertEquals(1024, TablePass2.batchSlots(1L << 30, spec), "half of 1 GiB");
        int slots = TablePass2.batchSlots(8L << 30, spec);
        org.junit.jupiter.api.Assertions.assertEquals(4095, slots);
        assertTrue(kv * slots < Integer.MAX_VALUE, kv * slots + " bytes of staged states");
        org.junit.jupiter.api.Assertions.assertEquals(1, TablePass2.batchSlots(1, spec), "at least one");
        long perToken = 4L * 64 * 128 * 4; // q, k, v, o in F32
        long tokens = TableTask.tokensWithin(8L << 30, perToken);
        assertTrue(tokens < 65536 && tokens * perToken < Integer.MAX_VALUE, tokens + " tokens");
        org.junit.jupiter.api.Assertions.assertEquals(512, TableTask.tokensWithin(512 * perToken, perToken));
    }
}
