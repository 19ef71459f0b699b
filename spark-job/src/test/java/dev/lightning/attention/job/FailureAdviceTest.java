package dev.lightning.attention.job;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.assertNull;

/**
 * Which failures a bare "rerun with --resume" can help: a class or native library missing on the
 * executors (JCuda on a cluster) or no usable GPU stays until it is fixed there, so the advice
 * says that first; a lost executor or a killed task is continued by --resume alone.
 */
class FailureAdviceTest {
    @Test
    void missingClassesAndGpusAreSetupFailuresALostExecutorIsNot() {
        assertNotNull(LightningJob.setupFailure(new org.apache.spark.SparkException("Job aborted",
                new NoClassDefFoundError("jcuda/driver/JCudaDriver"))));
        assertNotNull(LightningJob.setupFailure(new RuntimeException(new UnsatisfiedLinkError("no JCudaDriver"))));
        assertNotNull(LightningJob.setupFailure(new org.apache.spark.SparkException("Job aborted",
                new dev.lightning.attention.engine.GpuUnusableException("no usable GPU: no device", null))));
        assertNull(LightningJob.setupFailure(new org.apache.spark.SparkException(
                "Job aborted due to stage failure: ExecutorLostFailure (executor 1 exited)")));
        assertNull(LightningJob.setupFailure(new IllegalStateException("lightning-test: failing at pass2")));
    }

    /**
     * --backend gpu on an executor without a usable GPU fails its task with a usage error (exit 2) that the driver's
     * line before it tells as a set-up failure of the executors: it was told as "the run stopped at a bad input", for
     * a run whose input was fine. On a machine with a GPU the backend's opening fails as on one without.
     */
    @Test
    void noUsableGpuUnderBackendGpuIsASetupFailureNotABadInput() {
        for (RuntimeException opening : new RuntimeException[] {
                new dev.lightning.attention.engine.GpuUnusableException("the device is taken", null),
                new UnsupportedOperationException("this GPU does not compute softmax")}) {
            dev.lightning.attention.tensor.InvalidInputException e = assertThrows(
                    dev.lightning.attention.tensor.InvalidInputException.class,
                    () -> dev.lightning.attention.job.exec.ExecutorBackends.choose("gpu", "gpu", "", ordinal -> {
                        throw opening;
                    }, () -> "cpu", b -> b));
            assertTrue(e.getMessage().startsWith("--backend gpu: no usable GPU backend on this executor"), e.getMessage());
            assertNotNull(LightningJob.setupFailure(new org.apache.spark.SparkException("Job aborted", e)),
                    e.getMessage());
        }
    }
}
