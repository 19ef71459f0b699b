package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.NeedsGpu;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The GPU tests are the ones tagged "gpu", and {@code bin/gpu-check} runs the tag, not a list of
 * classes. Its list had gone stale: on 2026-12-05 it left out the softmax, batch-step, host-window,
 * host-block and read-ahead tests, which ran on a GPU only when someone ran them by hand. So a
 * test that skips itself where no GPU is usable must carry the tag, or the GPU machine never runs it.
 * Since session 41 a GPU test says so with {@link NeedsGpu}, which is the tag and the skip in one; this
 * still holds any test that skips itself by hand (GpuSoftmaxTest, whose no-GPU case runs everywhere) to
 * the tag. The check reads files, not methods: where a class marks one case rather than itself
 * (HostBlocksTest, PieceWorkReadAheadTest), a second GPU case added there needs its own mark.
 */
class GpuTagTest {
    private static final Path ROOT = Path.of(System.getProperty("maven.multiModuleProjectDirectory", ".."));

    @Test
    void everyTestThatSkipsWithoutAGpuIsTaggedGpu() throws IOException {
        List<Path> sources;
        try (Stream<Path> files = Files.walk(ROOT.resolve("gpu-worker/src/test/java"))) {
            sources = files.filter(p -> p.toString().endsWith(".java"))
                    .filter(p -> !p.endsWith("GpuTagTest.java") && !p.endsWith("NeedsGpu.java")) // these name what it looks for
                    .sorted().toList();
        }
        int gpuTests = 0;
        for (Path p : sources) {
            String text = Files.readString(p);
            if (text.contains("@NeedsGpu")) {
                gpuTests++;
                continue;
            }
            // CudaBackend.unavailableReason() or Backends.gpuUnavailableReason(), then an assumption
            boolean skipsWithoutGpu = text.contains("navailableReason()") && text.contains("assumeTrue(");
            if (skipsWithoutGpu) {
                gpuTests++;
                assertTrue(text.contains("@Tag(\"gpu\")"), p + " skips itself where no GPU is usable, so it has "
                        + "cases for a GPU machine; tag the class (or the GPU cases) @Tag(\"gpu\") so that bin/gpu-check runs it");
            }
        }
        // the ten classes of 2026-12-07; fewer means the test above stopped seeing them
        assertTrue(gpuTests >= 10, "found " + gpuTests + " test classes that skip without a GPU, expected at least 10");
    }

    /** NeedsGpu carries the tag and the condition that skips, so marking a test with it is enough. */
    @Test
    void needsGpuIsTheTagAndTheSkip() {
        org.junit.jupiter.api.Tag tag = NeedsGpu.class.getAnnotation(org.junit.jupiter.api.Tag.class);
        assertEquals("gpu", tag == null ? null : tag.value());
        org.junit.jupiter.api.extension.ExtendWith with =
                NeedsGpu.class.getAnnotation(org.junit.jupiter.api.extension.ExtendWith.class);
        assertTrue(with != null && List.of(with.value()).contains(NeedsGpu.Condition.class));
    }

    @Test
    void gpuCheckRunsTheTagNotAList() throws IOException {
        String script = Files.readString(ROOT.resolve("bin/gpu-check"));
        assertTrue(script.contains("--include-tag gpu"), "bin/gpu-check runs the GPU tests by their tag from a bundle");
        assertTrue(script.contains("-Dgroups=gpu"), "bin/gpu-check runs the GPU tests by their tag with Maven");
        // a selection only where the caller names classes (TEST_CLASSES), never a list of the script's own
        assertFalse(script.matches("(?s).*--select-class\\s+\"?dev\\..*"), "bin/gpu-check lists no test classes of its own");
        int at = script.indexOf("-Dtest=");
        while (at >= 0) {
            assertTrue(script.startsWith("-Dtest=$TEST_CLASSES", at), "bin/gpu-check lists no test classes of its own");
            at = script.indexOf("-Dtest=", at + 1);
        }
        assertTrue(script.contains("--select-class \"${f//"), "the caller's TEST_CLASSES, as classes of the bundle");
    }
}
