package dev.lightning.attention.job.tables;

import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.tensor.InvalidInputException;
import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The options a table run refuses ({@link TableRun#checkOptions}), checked without Spark. */
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
                        () -> TableRun.checkOptions(cfg("--read-ahead", "off"), cli, parquetInput)).getMessage();
                assertTrue(m.contains("--read-ahead off with tables") && m.contains("leave it out"), m);
            }
        }
        JobConfig byKey = JobConfig.resolve(Map.of("--input", "in", "--output", "out"),
                Map.of("spark.lightning.readAhead", "off"), k -> null);
        assertThrows(InvalidInputException.class, () -> TableRun.checkOptions(byKey, true, true));
        // the default, given or not, is no choice the run ignores
        assertDoesNotThrow(() -> TableRun.checkOptions(cfg(), true, true));
        assertDoesNotThrow(() -> TableRun.checkOptions(cfg("--read-ahead", "on"), true, true));
    }
}
