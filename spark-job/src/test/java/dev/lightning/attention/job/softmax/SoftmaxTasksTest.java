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

    /** A softmax output records this build's format, which OutputReader checks when it reads the output back. */
    @Test
    void anOutputRecordsItsFormat() throws java.io.IOException {
        dev.lightning.attention.stream.SequenceFile f = new dev.lightning.attention.stream.SyntheticSequence(10, 2, 4,
                4, dev.lightning.attention.tensor.DType.F32, 1).describe(h -> new double[h], false);
        assertEquals("1", SoftmaxTasks.outputHeader(f, new dev.lightning.attention.engine.SoftmaxSpec(2, 2, 4, 4, 0.5,
                dev.lightning.attention.engine.SoftmaxSpec.NO_WINDOW), dev.lightning.attention.tensor.DType.F32, true)
                .metadata().get(dev.lightning.attention.stream.FormatVersion.KEY));
    }
}
