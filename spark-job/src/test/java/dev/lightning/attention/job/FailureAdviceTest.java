package dev.lightning.attention.job;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertNotNull;
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
}
