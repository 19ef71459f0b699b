package dev.lightning.attention.it;

import dev.lightning.attention.it.JobHarness.Sequence;
import dev.lightning.attention.it.JobProcess.Installation;
import dev.lightning.attention.tensor.DType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.LinkedHashMap;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A softmax run killed with SIGKILL at each of its stages (a work item staged, a merged query piece
 * staged, the split sequence's output finished by the driver: fault point {@code assemble}, which
 * in place has nothing left to do) publishes nothing, and {@code --resume} keeps the finished
 * units and publishes exactly the bytes of an undisturbed run. Separate JVMs, as a user runs them.
 */
class SoftmaxResumeTest {
    static final Duration START_TO_PAUSE = Duration.ofSeconds(120);
    static final Duration RUN = Duration.ofSeconds(180);

    @TempDir
    static Path shared;
    static Path input;
    static Path expected;
    static Installation build;
    static final Map<String, Sequence> FILES = new LinkedHashMap<>();

    @TempDir
    Path tmp;

    static List<String> args(Path out, String... extra) {
        List<String> a = new ArrayList<>(List.of("run", "--attention", "softmax", "--input", input.toString(),
                "--output", out.toString(), "--master", "local[2]", "--backend", "cpu", "--partition-tokens", "64",
                "--write-lse", "--conf", "spark.ui.enabled=false"));
        a.addAll(List.of(extra));
        return a;
    }

    @BeforeAll
    static void runUndisturbed() throws Exception {
        build = Installation.ofBuild();
        FILES.put("a.safetensors", Sequence.grouped(31, 400, 4, 2, 2, 16, 8, DType.BF16, null, false, false));
        FILES.put("b.safetensors", Sequence.grouped(32, 50, 3, 1, 1, 8, 8, DType.F32, null, false, false));
        input = JobHarness.writeSequences(shared.resolve("input"), FILES);
        expected = shared.resolve("expected");
        try (JobProcess p = JobProcess.start(build, shared, "expected", List.of(), args(expected))) {
            assertEquals(0, p.waitFor(RUN), p::describe);
        }
    }

    @ParameterizedTest(name = "killed at {0}")
    @ValueSource(strings = {"softmax-blocks", "softmax-merge", "assemble"})
    void aKilledRunPublishesNothingAndResumesToTheSameBytes(String point) throws Exception {
        Path out = tmp.resolve("out");
        try (JobProcess killed = JobProcess.start(build, tmp, "killed", List.of("lightning.test.pauseAt=" + point),
                args(out))) {
            killed.waitForLine("lightning-test: paused at " + point, START_TO_PAUSE);
            for (String name : FILES.keySet()) {
                assertFalse(Files.exists(out.resolve(name)), name + " published before the commit");
            }
            killed.kill();
        }
        try (JobProcess resumed = JobProcess.start(build, tmp, "resumed", List.of(), args(out, "--resume"))) {
            assertEquals(0, resumed.waitFor(RUN), resumed::describe);
            java.util.regex.Matcher kept = java.util.regex.Pattern.compile("resumed: (\\d+) unit")
                    .matcher(resumed.out() + resumed.err());
            assertTrue(kept.find() && Integer.parseInt(kept.group(1)) > 0, resumed::describe);
        }
        for (String name : FILES.keySet()) {
            assertArrayEquals(Files.readAllBytes(expected.resolve(name)), Files.readAllBytes(out.resolve(name)),
                    name + ": the resumed run differs from an undisturbed one");
        }
    }
}
