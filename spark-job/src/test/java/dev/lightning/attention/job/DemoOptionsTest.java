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

    /**
     * The demo's check starts each sequence from its file's initial_state or zero, so a demo that
     * continued stored states (--initial-states) was checked against the wrong reference (a
     * MISMATCH for a right run), or refused for two starting states the user cannot remove. Now
     * refused before anything is written, saying what to run instead.
     */
    @Test
    void theDemoRefusesStoredStatesItsCheckDoesNotFollow(@TempDir Path dir) throws Exception {
        // a committed output holding a stored state for doc-long (a demo file without initial_state)
        Path in = java.nio.file.Files.createDirectories(dir.resolve("in"));
        Demo.Spec longOne = Demo.SEQUENCES.get(0);
        Demo.write(in.resolve(longOne.name), longOne, new java.util.SplittableRandom(1));
        Path stored = dir.resolve("stored");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        assertEquals(0, LightningMain.run(new String[] {"run", "--input", in.toString(), "--output", stored.toString(),
                "--backend", "cpu", "--master", "local[1]", "--progress-seconds", "60"},
                new PrintStream(out, true), new PrintStream(err, true)), err.toString(StandardCharsets.UTF_8));
        out.reset();
        err.reset();
        int status = LightningMain.run(new String[] {"demo", "--dir", dir.resolve("demo").toString(), "--backend",
                "cpu", "--master", "local[1]", "--progress-seconds", "60", "--initial-states", stored.toString()},
                new PrintStream(out, true), new PrintStream(err, true));
        String log = out.toString(StandardCharsets.UTF_8) + err.toString(StandardCharsets.UTF_8);
        assertEquals(2, status, log);
        assertTrue(log.contains("demo checks each result") && log.contains("leave --initial-states out"), log);
        assertTrue(!java.nio.file.Files.exists(dir.resolve("demo")), "refused before the demo writes its input");
    }
}
