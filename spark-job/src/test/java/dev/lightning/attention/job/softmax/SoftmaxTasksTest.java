package dev.lightning.attention.job.softmax;

import dev.lightning.attention.job.config.JobConfig;
import org.junit.jupiter.api.Test;

import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;

class SoftmaxTasksTest {
    private static final Map<String, String> PATHS = Map.of("--input", "in", "--output", "out");

    @Test
    void softmaxQueryBlocksAreTheSameOnEveryTaskOfARun() {
        Map<String, String> flags = new java.util.HashMap<>(PATHS);
        flags.put("--window-bytes", "8m");
        flags.put("--gpu-window-bytes", "2g");
        assertEquals(4L << 20, SoftmaxTasks.queryBlockBytes(JobConfig.resolve(flags, Map.of(), k -> null)),
                "--backend auto may mix CPU and GPU executors: the CPU window");
        flags.put("--backend", "cpu");
        assertEquals(4L << 20, SoftmaxTasks.queryBlockBytes(JobConfig.resolve(flags, Map.of(), k -> null)));
        flags.put("--backend", "gpu");
        assertEquals(1L << 30, SoftmaxTasks.queryBlockBytes(JobConfig.resolve(flags, Map.of(), k -> null)),
                "--backend gpu: every task on a GPU (or its CPU fallback with the same blocks)");
    }
}
