package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.BatchCase;
import dev.lightning.attention.engine.BatchChecks;
import dev.lightning.attention.engine.BatchStep;
import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.NeedsGpu;
import dev.lightning.attention.engine.StateStore;
import dev.lightning.attention.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The GPU batch step (lightning_batch.cu through {@link CudaBatchStep}) on the {@link BatchCase}s,
 * held to what the CPU step is held to: the float64 reference (o in float32, which runs the float32
 * kernel on the widened inputs; o in the inputs' dtype, the 16-bit kernels, to the job's limits),
 * two steps against one over the concatenation, and the GPU backend's forward per sequence.
 * Skipped, with a message saying why, where no GPU is usable.
 */
@NeedsGpu
class CudaBatchStepTest {
    static final double TOLERANCE = 1e-5;

    static List<BatchCase> cases() {
        return BatchCase.cases();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void gpuAgreesWithTheReference(BatchCase c) {
        try (BatchStep step = BatchStep.gpu(c.spec(), 0)) {
            BatchChecks.againstReference(step, c, DType.F32, TOLERANCE);
        }
    }

    /** o in the inputs' own dtype: the 16-bit kernels, whose only extra error is o's rounding. */
    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void gpuInTheInputDtypeAgreesWithTheReference(BatchCase c) {
        double limit = c.dtype() == DType.F32 ? TOLERANCE : c.dtype() == DType.F16 ? 2e-3 : 6e-3;
        try (BatchStep step = BatchStep.gpu(c.spec(), 0)) {
            BatchChecks.againstReference(step, c, c.dtype(), limit);
        }
    }

    /**
     * Slowly decaying heads over 100,000 tokens (BatchChecks.slowHeads): the kernels decay by the
     * complement (lightning_decayed). A lambda rounded to float32 would be about 1.9e-3 off here (the CPU
     * step's figure before its fix); the first complement form, S - comp S rounded before k v was added,
     * was 3.9e-4 off on an H100 (2026-12-05), which this test caught.
     */
    @Test
    void aSlowlyDecayingHeadKeepsItsRateOverManyTokens() {
        BatchChecks.slowHeads(spec -> BatchStep.gpu(spec, 0), 3e-5);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void twoStepsEqualOneOverTheConcatenation(BatchCase c) {
        try (BatchStep step = BatchStep.gpu(c.spec(), 0)) {
            BatchChecks.twoStepsEqualOne(step, c, TOLERANCE);
        }
    }

    /** A retried task repeats its batches: the same bytes every time (BatchChecks.repeatable). */
    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void aRepeatedStepWritesTheSameBytes(BatchCase c) {
        try (BatchStep step = BatchStep.gpu(c.spec(), 0)) {
            BatchChecks.repeatable(step, c, 8);
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void gpuAgreesWithTheGpuBackendPerSequence(BatchCase c) {
        // the backend's tensor-core kernels round to 16 bits inside; its float32 kernels are the fair comparison
        try (BatchStep step = BatchStep.gpu(c.spec(), 0);
             AttentionBackend backend = new CudaBackend(0, false, Backends.DEFAULT_GPU_MEMORY)) {
            BatchChecks.againstBackend(step, backend, c, TOLERANCE);
        }
    }

    @Test
    void aStoreOfAnotherStepIsRefused() {
        BatchCase c = BatchCase.cases().get(1);
        try (BatchStep a = BatchStep.gpu(c.spec(), 0); BatchStep b = BatchStep.gpu(c.spec(), 0);
             StateStore foreign = b.allocate(8)) {
            java.util.SplittableRandom rnd = new java.util.SplittableRandom(1);
            var batch = c.batch(rnd, new int[] {1, 1, 1, 1, 1, 1, 1}, new int[] {0, 1, 2, 3, 4, 5, 6});
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> a.step(foreign, batch, c.output(batch)));
            assertTrue(e.getMessage().contains("allocate()"), e.getMessage());
        }
    }

    /**
     * The step's limit bounds its stores and staging together: a store that would pass it is refused
     * before anything is allocated for it, naming the limit, and the step still works within it.
     */
    @Test
    void theLimitCoversTheStoresAndIsLoud() {
        BatchCase c = BatchCase.cases().get(1);
        long state = c.spec().stateBytes();
        long limit = 24 * state;
        try (BatchStep step = BatchStep.gpu(c.spec(), 0, limit)) {
            dev.lightning.attention.engine.DeviceMemoryException e = assertThrows(
                    dev.lightning.attention.engine.DeviceMemoryException.class, () -> step.allocate(25));
            assertTrue(e.getMessage().contains("allocate fewer slots") && e.getMessage().contains("limit of " + limit),
                    e.getMessage());
            try (StateStore first = step.allocate(8)) {
                // 8 slots held: 17 more would pass the limit, though each store alone fits
                assertThrows(dev.lightning.attention.engine.DeviceMemoryException.class, () -> step.allocate(17));
                java.util.SplittableRandom rnd = new java.util.SplittableRandom(2);
                var batch = c.batch(rnd, new int[] {1, 2, 1}, new int[] {0, 5, 7});
                step.step(first, batch, c.output(batch));
            }
            try (StateStore again = step.allocate(16)) {      // what the first store held is given back
                assertTrue(again.slots() == 16);
            }
        }
    }

    /**
     * A store asked of a step on a device that an earlier error broke is refused, and leaves nothing
     * open in the step: its allocator was already a child of the step's when makeCurrent refused, so
     * the step's close (its leak check, on in the tests) failed naming a child allocator still open.
     */
    @Test
    void aStoreRefusedOnABrokenDeviceLeavesNothingOpenInTheStep() throws Exception {
        BatchCase c = BatchCase.cases().get(1);
        BatchStep step = BatchStep.gpu(c.spec(), 0);
        java.lang.reflect.Field broken = CudaDevice.class.getDeclaredField("broken");
        broken.setAccessible(true);
        CudaDevice device = CudaDevice.open(0);
        broken.set(device, "CUDA_ERROR_ILLEGAL_ADDRESS (a test's)");
        try {
            assertThrows(dev.lightning.attention.engine.GpuUnusableException.class, () -> step.allocate(8));
        } finally {
            broken.set(device, null); // the device is the JVM's: the other tests use it after this one
        }
        step.close(); // threw "... 1 child allocator(s) still open" before the store's constructor closed itself
    }
}
