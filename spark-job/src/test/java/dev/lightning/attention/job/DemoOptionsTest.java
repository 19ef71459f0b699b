package dev.lightning.attention.job;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** README: run options apply to the demo too, by flag or by key. */
class DemoOptionsTest {
    /**
     * The demo added its partition size (4,096) as the flag, which outranks --conf: the user's
     * --conf spark.lightning.partitionTokens was taken and ignored, the run planned with 4,096.
     */
    @Test
    void theDemoTakesThePartitionSizeByKey(@TempDir Path dir) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = LightningMain.run(new String[] {"demo", "--dir", dir.toString(), "--backend", "cpu", "--master",
                "local[1]", "--progress-seconds", "60", "--conf", "spark.lightning.partitionTokens=8192"},
                new PrintStream(out, true), new PrintStream(err, true));
        String log = out.toString(StandardCharsets.UTF_8) + err.toString(StandardCharsets.UTF_8);
        assertEquals(0, status, log);
        assertTrue(log.matches("(?s).*partitions \\(8.?192 tokens each.*"), log);
        assertTrue(log.contains("all results match"), log);
    }
}
