package dev.lightning.attention.engine;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The CPU batch step under misuse and interruption: nothing may touch the store after a step
 * returns or throws, and a call it refuses leaves every state as it was.
 */
class BatchStepMisuseTest {
    private static final AttentionSpec SPEC = new AttentionSpec(4, 64, 64, Slopes.minimax(4), 1.0, 64);

    private static TokenBatch oneTokenEach(SplittableRandom rnd, int n) {
        TokenTensor q = Inputs.random(rnd, DType.F32, n, 4, 64);
        TokenTensor k = Inputs.random(rnd, DType.F32, n, 4, 64);
        TokenTensor v = Inputs.random(rnd, DType.F32, n, 4, 64);
        int[] offsets = new int[n + 1];
        int[] slots = new int[n];
        for (int i = 0; i < n; i++) {
            offsets[i + 1] = i + 1;
            slots[i] = i;
        }
        return TokenBatch.of(SPEC, q, k, v, offsets, slots);
    }

    /**
     * An interrupted caller of a threaded step: the step threw "interrupted during a batch step" at
     * once while its pool went on advancing the slots and writing o, so the store changed after the
     * call had ended (a retried step, or the caller's next one, then raced the first on the same
     * slots). Now the step finishes its work and keeps the interrupt for the caller.
     */
    @Test
    void anInterruptedThreadedStepFinishesBeforeItReturns() throws Exception {
        int n = 4000;
        TokenBatch batch = oneTokenEach(new SplittableRandom(7), n);
        float[][] want;
        try (BatchStep one = BatchStep.cpu(SPEC); StateStore store = one.allocate(n)) {
            one.step(store, batch, TokenTensor.allocate(DType.F32, n, 4, 64));
            want = BatchChecks.contents(store);
        }
        try (BatchStep step = BatchStep.cpu(SPEC, 2); StateStore store = step.allocate(n)) {
            TokenTensor o = TokenTensor.allocate(DType.F32, n, 4, 64);
            Thread.currentThread().interrupt();
            try {
                step.step(store, batch, o);
            } finally {
                assertTrue(Thread.interrupted(), "the interrupt is kept for the caller");
            }
            float[][] right = BatchChecks.contents(store);
            Thread.sleep(300);
            assertArrayEquals(right[0], BatchChecks.contents(store)[0], "the store changed after the step returned");
            assertArrayEquals(want[0], right[0], "every slot advanced once, as by an uninterrupted step");
        }
    }

    /**
     * o over a read-only buffer (a tensor's bytes() view, a read-only mapping): the step advanced the
     * first sequence's first head in place and then failed writing o, leaving that slot half advanced.
     * Now it is refused before any state is touched.
     */
    @Test
    void aReadOnlyOutputIsRefusedBeforeAnyStateMoves() {
        TokenBatch batch = oneTokenEach(new SplittableRandom(3), 3);
        for (int threads : new int[] {1, 2}) {
            try (BatchStep step = BatchStep.cpu(SPEC, threads); StateStore store = step.allocate(3)) {
                LightningState s = BatchCase.randomState(SPEC, new SplittableRandom(5));
                for (int slot = 0; slot < 3; slot++) {
                    store.write(slot, s);
                }
                ByteBuffer readOnly = ByteBuffer.allocate(3 * 4 * 64 * 4).asReadOnlyBuffer();
                TokenTensor o = TokenTensor.wrap(DType.F32, 3, 4, 64, readOnly);
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                        () -> step.step(store, batch, o));
                assertTrue(e.getMessage().contains("read-only"), e.getMessage());
                for (int slot = 0; slot < 3; slot++) {
                    assertArrayEquals(s.kv(), store.read(slot).kv(), "slot " + slot + " after a refused step");
                }
            }
        }
    }

    /**
     * A long sequence goes through CpuBackend's chunked form, whose buffers are bounded; the step's
     * own scratch for the recurrence was sized for the batch's longest sequence anyway: 4 arrays of
     * T x D floats, 16 MiB here for a sequence of 65,536 tokens at D = 16 (per thread), allocated at
     * every step and never used. (The scalar kernel: the Vector API's fallbacks allocate per
     * operation until C2 has compiled them, which would drown the count.)
     */
    @Test
    void aLongSequenceAllocatesNoRecurrenceScratchOfItsLength() {
        AttentionSpec spec = new AttentionSpec(1, 16, 16, new double[] {0.1}, 1.0, 64);
        int t = 65536;
        SplittableRandom rnd = new SplittableRandom(9);
        TokenTensor q = Inputs.random(rnd, DType.F32, t, 1, 16);
        TokenTensor k = Inputs.random(rnd, DType.F32, t, 1, 16);
        TokenTensor v = Inputs.random(rnd, DType.F32, t, 1, 16);
        TokenBatch batch = TokenBatch.of(spec, q, k, v, new int[] {0, t}, new int[] {0});
        com.sun.management.ThreadMXBean mx =
                (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
        String kernel = System.getProperty("lightning.cpu.kernel");
        System.setProperty("lightning.cpu.kernel", "scalar");
        try (BatchStep step = BatchStep.cpu(spec); StateStore store = step.allocate(1)) {
            TokenTensor o = TokenTensor.allocate(DType.F32, t, 1, 16);
            step.step(store, batch, o);
            long id = Thread.currentThread().getId();
            long before = mx.getThreadAllocatedBytes(id);
            step.step(store, batch, o);
            long allocated = mx.getThreadAllocatedBytes(id) - before;
            assertFalse(allocated > 8L << 20, "one step of one 65,536-token sequence allocated " + allocated + " bytes");
        } finally {
            if (kernel == null) {
                System.clearProperty("lightning.cpu.kernel");
            } else {
                System.setProperty("lightning.cpu.kernel", kernel);
            }
        }
    }

    /**
     * README: "A closed step refuses further calls." The reference step (BatchStep.reference) kept
     * taking them after close(), unlike the CPU and GPU steps.
     */
    @Test
    void aClosedReferenceStepRefusesCalls() {
        TokenBatch batch = oneTokenEach(new SplittableRandom(11), 2);
        BatchStep step = BatchStep.reference(SPEC);
        try (StateStore store = step.allocate(2)) {
            step.close();
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> step.step(store, batch, TokenTensor.allocate(DType.F32, 2, 4, 64)));
            assertTrue(e.getMessage().contains("closed"), e.getMessage());
            assertThrows(IllegalStateException.class, () -> step.allocate(1));
            assertArrayEquals(new float[SPEC.stateSize()], store.read(0).kv(), "the store stays as it was");
        }
    }
}
