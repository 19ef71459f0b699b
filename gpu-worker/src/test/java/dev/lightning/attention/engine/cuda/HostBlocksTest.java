package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.NeedsGpu;
import dev.lightning.attention.engine.cuda.DeviceAllocator.Buffer;
import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The executor's registered host blocks against a fake driver that counts registrations: no GPU needed. */
class HostBlocksTest {
    /** Registers by counting; what is registered now, in bytes by pointer's buffer. */
    private static final class FakeCalls implements DeviceAllocator.Memory {
        final List<Pointer> registered = new ArrayList<>();
        int registrations;
        int unregistrations;
        RuntimeException failNextRegister;
        /** Thrown by every unregistration while set: a context an error broke. */
        RuntimeException failUnregister;
        /** Thrown by the next unregistration only. */
        RuntimeException failNextUnregister;
        CountDownLatch inRegister;
        CountDownLatch releaseRegister;

        @Override
        public CUdeviceptr allocDevice(long bytes) {
            throw new AssertionError("host blocks allocate no device memory");
        }

        @Override
        public void freeDevice(CUdeviceptr ptr) {
            throw new AssertionError("host blocks free no device memory");
        }

        @Override
        public Pointer allocHost(long bytes) {
            throw new AssertionError("host blocks are registered, not allocated by the driver");
        }

        @Override
        public void freeHost(Pointer host) {
            throw new AssertionError("host blocks are registered, not allocated by the driver");
        }

        @Override
        public void registerHost(Pointer host, long bytes) {
            if (failNextRegister != null) {
                RuntimeException e = failNextRegister;
                failNextRegister = null;
                throw e;
            }
            if (inRegister != null) {
                inRegister.countDown();
                try {
                    assertTrue(releaseRegister.await(10, TimeUnit.SECONDS), "registrations were serialized");
                } catch (InterruptedException e) {
                    throw new AssertionError(e);
                }
            }
            synchronized (this) {
                registered.add(host);
                registrations++;
            }
        }

        @Override
        public synchronized void unregisterHost(Pointer host) {
            if (failUnregister != null) {
                throw failUnregister;
            }
            if (failNextUnregister != null) {
                RuntimeException e = failNextUnregister;
                failNextUnregister = null;
                throw e;
            }
            assertTrue(registered.remove(host), "unregister of memory that is not registered");
            unregistrations++;
        }
    }

    private static ByteBuffer direct(long bytes) {
        return ByteBuffer.allocateDirect(Math.toIntExact(bytes));
    }

    @Test
    void blocksGivenBackAreTakenAgainStillRegistered() {
        FakeCalls calls = new FakeCalls();
        HostBlocks blocks = new HostBlocks("fake", calls, 1 << 20, true);
        Buffer a = blocks.take(100_000, HostBlocksTest::direct);
        Buffer b = blocks.take(300_000, HostBlocksTest::direct);
        assertEquals(2, calls.registrations);
        assertTrue(blocks.isTaken(a) && blocks.isTaken(b));
        blocks.give(a);
        blocks.give(b);
        assertFalse(blocks.isTaken(a));
        assertEquals(400_000, blocks.keptBytes());
        // the next task: the smallest kept block that holds the bytes, no registration
        assertSame(b, blocks.take(200_000, HostBlocksTest::direct));
        assertSame(a, blocks.take(50_000, HostBlocksTest::direct));
        Buffer c = blocks.take(100_000, HostBlocksTest::direct); // none kept: a new one
        assertNotSame(a, c);
        assertEquals(3, calls.registrations);
        assertEquals(0, calls.unregistrations);
        blocks.give(a);
        assertThrows(IllegalStateException.class, () -> blocks.give(a), "a block given back twice");
        blocks.give(b);
        blocks.give(c);
        blocks.close();
        assertEquals(0, calls.registered.size(), "close unregisters every kept block");
    }

    @Test
    void keptBytesStayWithinTheLimitLargestFirstToGo() {
        FakeCalls calls = new FakeCalls();
        HostBlocks blocks = new HostBlocks("fake", calls, 500_000, true);
        Buffer small = blocks.take(100_000, HostBlocksTest::direct);
        Buffer mid = blocks.take(200_000, HostBlocksTest::direct);
        Buffer large = blocks.take(400_000, HostBlocksTest::direct);
        blocks.give(small);
        blocks.give(large); // 500,000 kept: at the limit
        assertEquals(500_000, blocks.keptBytes());
        blocks.give(mid); // 700,000 would pass it: the large one goes
        assertEquals(300_000, blocks.keptBytes());
        assertEquals(1, calls.unregistrations);
        assertEquals(2, calls.registered.size());
        blocks.close();
        assertEquals(0, calls.registered.size());
    }

    @Test
    void aBlockNeverGivenBackIsALoudLeakAtCloseAndStillUnregistered() {
        FakeCalls calls = new FakeCalls();
        HostBlocks blocks = new HostBlocks("fake", calls, 1 << 20, true);
        blocks.give(blocks.take(1000, HostBlocksTest::direct));
        blocks.take(2000, HostBlocksTest::direct); // a backend that never closed
        IllegalStateException leak = assertThrows(IllegalStateException.class, blocks::close);
        assertTrue(leak.getMessage().contains("host blocks of fake"), leak.getMessage());
        assertEquals(0, calls.registered.size(), "both unregistered, the leaked one too");
        HostBlocks quiet = new HostBlocks("fake", calls, 1 << 20, false);
        quiet.take(2000, HostBlocksTest::direct);
        quiet.close(); // leaks are freed silently where they are not errors
        assertEquals(0, calls.registered.size());
    }

    @Test
    void aFailedRegistrationKeepsNothing() {
        FakeCalls calls = new FakeCalls();
        HostBlocks blocks = new HostBlocks("fake", calls, 1 << 20, true);
        calls.failNextRegister = new IllegalStateException("locked-memory limit");
        assertThrows(IllegalStateException.class, () -> blocks.take(1000, HostBlocksTest::direct));
        assertEquals(0, blocks.takenCount());
        assertEquals(0, blocks.keptBytes());
        blocks.close(); // no leak reported
    }

    /**
     * Kept blocks are a cache: when the JVM has no direct memory for a new block, they are let go
     * (unregistered) and the allocation tried again, instead of failing the task while they hold it.
     */
    @Test
    void noDirectMemoryLeftLetsTheKeptBlocksGoAndTriesAgain() {
        FakeCalls calls = new FakeCalls();
        HostBlocks blocks = new HostBlocks("fake", calls, 1 << 20, true);
        Buffer a = blocks.take(100_000, HostBlocksTest::direct);
        Buffer b = blocks.take(200_000, HostBlocksTest::direct);
        blocks.give(a);
        blocks.give(b);
        int[] attempts = {0};
        Buffer c = blocks.take(500_000, bytes -> {
            if (attempts[0]++ == 0) {
                throw new OutOfMemoryError("Direct buffer memory");
            }
            return direct(bytes);
        });
        assertEquals(2, attempts[0], "allocated again after letting the kept blocks go");
        assertEquals(0, blocks.keptBytes());
        assertEquals(2, calls.unregistrations, "both kept blocks unregistered");
        assertEquals(1, calls.registered.size(), "only the new block registered");
        blocks.give(c);
        // with nothing kept to let go, the error is the caller's
        Buffer d = blocks.take(500_000, HostBlocksTest::direct);
        assertSame(c, d);
        assertThrows(OutOfMemoryError.class, () -> blocks.take(700_000, bytes -> {
            throw new OutOfMemoryError("Direct buffer memory");
        }));
        assertEquals(2, calls.unregistrations, "nothing else let go: the one kept block is taken");
        blocks.give(d);
        blocks.close();
        assertEquals(0, calls.registered.size());
    }

    /**
     * An executor driving two GPUs: their pools keep blocks within one limit together (direct
     * memory is the JVM's), and a pool that finds no direct memory for a new block lets the other
     * device's kept blocks go too, instead of failing its task while they hold the memory.
     */
    @Test
    void theDevicesOfOneJvmShareTheLimitAndLetEachOthersKeptBlocksGo() {
        FakeCalls calls0 = new FakeCalls();
        FakeCalls calls1 = new FakeCalls();
        HostBlocks.Shared jvm = new HostBlocks.Shared(500_000);
        HostBlocks gpu0 = new HostBlocks("cuda:0", calls0, jvm, true);
        HostBlocks gpu1 = new HostBlocks("cuda:1", calls1, jvm, true);
        Buffer a = gpu0.take(400_000, HostBlocksTest::direct);
        Buffer b = gpu1.take(300_000, HostBlocksTest::direct);
        gpu0.give(a);
        assertEquals(400_000, jvm.keptBytes());
        gpu1.give(b); // 700,000 together would pass the limit: cuda:1 keeps nothing
        assertEquals(400_000, jvm.keptBytes());
        assertEquals(0, gpu1.keptBytes());
        assertEquals(1, calls1.unregistrations);
        assertEquals(0, calls0.unregistrations, "a pool drops only its own blocks to stay within the limit");

        // cuda:1's next task finds no direct memory: cuda:0's kept block goes, the allocation is tried again
        int[] attempts = {0};
        Buffer c = gpu1.take(450_000, bytes -> {
            if (attempts[0]++ == 0) {
                throw new OutOfMemoryError("Direct buffer memory");
            }
            return direct(bytes);
        });
        assertEquals(2, attempts[0]);
        assertEquals(1, calls0.unregistrations, "cuda:0's kept block unregistered");
        assertEquals(0, gpu0.keptBytes());
        assertEquals(0, jvm.keptBytes());
        // taken from a pool, a kept block leaves the shared count too
        gpu1.give(c);
        assertEquals(450_000, jvm.keptBytes());
        assertSame(c, gpu1.take(100_000, HostBlocksTest::direct));
        assertEquals(0, jvm.keptBytes());
        gpu1.give(c);
        gpu0.close();
        gpu1.close();
        assertEquals(0, jvm.keptBytes());
        assertEquals(0, calls0.registered.size());
        assertEquals(0, calls1.registered.size());
    }

    /**
     * After the device's context broke, kept blocks are dropped at once and blocks given back are
     * dropped too (their unregistration fails in the dead context and is ignored), so their direct
     * memory goes back to the JVM; close() reports no leak.
     */
    @Test
    void anAbandonedDeviceKeepsNoBlock() {
        FakeCalls calls = new FakeCalls();
        HostBlocks blocks = new HostBlocks("fake", calls, 1 << 20, true);
        Buffer kept = blocks.take(1000, HostBlocksTest::direct);
        Buffer held = blocks.take(2000, HostBlocksTest::direct);
        blocks.give(kept);
        calls.failUnregister = new IllegalStateException("CUDA_ERROR_ILLEGAL_ADDRESS"); // the dead context
        blocks.abandon();
        assertEquals(0, blocks.keptBytes());
        blocks.give(held);
        assertEquals(0, blocks.keptBytes(), "a block given back after the break is not kept");
        assertEquals(0, blocks.takenCount());
        assertEquals(0, calls.unregistrations, "the driver refused both; neither was thrown");
        blocks.close(); // no leak reported: both blocks left the allocator
    }

    /**
     * The device closes its blocks at executor shutdown (a JVM exit hook) while a task may be
     * registering a new one, which runs outside the lock: that block can no longer join the closed
     * blocks, and its registration must be undone by the take that made it, since nothing else
     * holds it. Before, the take failed and left the memory page-locked with no owner.
     */
    @Test
    void aBlockRegisteredWhileTheBlocksCloseIsNotLeftRegistered() throws Exception {
        FakeCalls calls = new FakeCalls();
        HostBlocks blocks = new HostBlocks("fake", calls, 1 << 20, true);
        calls.inRegister = new CountDownLatch(1);
        calls.releaseRegister = new CountDownLatch(1);
        ExecutorService pool = Executors.newSingleThreadExecutor();
        try {
            Future<Buffer> taking = pool.submit(() -> blocks.take(1000, HostBlocksTest::direct));
            assertTrue(calls.inRegister.await(10, TimeUnit.SECONDS), "the registration under way");
            blocks.close(); // the exit hook, meanwhile
            calls.releaseRegister.countDown();
            java.util.concurrent.ExecutionException e = assertThrows(java.util.concurrent.ExecutionException.class,
                    () -> taking.get(10, TimeUnit.SECONDS));
            assertTrue(e.getCause() instanceof IllegalStateException && e.getCause().getMessage().contains("is closed"),
                    String.valueOf(e.getCause()));
        } finally {
            pool.shutdownNow();
        }
        assertEquals(0, calls.registered.size(), "the registration of the block that found the blocks closed");
        assertEquals(0, blocks.takenCount());
    }

    /**
     * close() goes on past a block whose unregistration fails, as every release here does: the
     * other kept blocks and those still taken are unregistered all the same, and the leak check
     * still reports the taken one. Before, the first failure ended close(): the rest stayed
     * registered and the leak went unsaid.
     */
    @Test
    void closeGoesOnPastAFailedUnregistration() {
        FakeCalls calls = new FakeCalls();
        HostBlocks blocks = new HostBlocks("fake", calls, 1 << 20, true);
        Buffer a = blocks.take(1000, HostBlocksTest::direct);
        Buffer b = blocks.take(2000, HostBlocksTest::direct);
        blocks.take(3000, HostBlocksTest::direct); // a backend that never closed
        blocks.give(a);
        blocks.give(b);
        IllegalStateException refused = new IllegalStateException("CUDA_ERROR_UNKNOWN");
        calls.failNextUnregister = refused; // the first kept block's
        RuntimeException e = assertThrows(RuntimeException.class, blocks::close);
        assertSame(refused, e, "the first failure is thrown");
        assertEquals(1, e.getSuppressed().length, java.util.Arrays.toString(e.getSuppressed()));
        assertTrue(e.getSuppressed()[0].getMessage().contains("1 buffer(s) still open"), e.getSuppressed()[0].getMessage());
        assertEquals(1, calls.registered.size(), "only the block the driver refused is still registered");
        assertEquals(2, calls.unregistrations);
    }

    /** Tasks starting together register their blocks at the same time, not one after the other. */
    @Test
    void registrationsRunOutsideTheLock() throws Exception {
        FakeCalls calls = new FakeCalls();
        HostBlocks blocks = new HostBlocks("fake", calls, 1 << 20, true);
        calls.inRegister = new CountDownLatch(2);
        calls.releaseRegister = new CountDownLatch(1);
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            Future<Buffer> one = pool.submit(() -> blocks.take(1000, HostBlocksTest::direct));
            Future<Buffer> two = pool.submit(() -> blocks.take(1000, HostBlocksTest::direct));
            assertTrue(calls.inRegister.await(10, TimeUnit.SECONDS), "both registrations under way at once");
            calls.releaseRegister.countDown();
            Buffer a = one.get(10, TimeUnit.SECONDS);
            Buffer b = two.get(10, TimeUnit.SECONDS);
            assertNotSame(a, b);
            assertEquals(2, blocks.takenCount());
            blocks.give(a);
            blocks.give(b);
        } finally {
            pool.shutdownNow();
        }
        blocks.close();
        assertEquals(0, calls.registered.size());
    }

    /**
     * On the GPU: a task's window block given back at its backend's close() is the next backend's,
     * still registered (no new registration), its copies straight from it (the result is the same
     * as from the heap); close() leaves no block taken. Skipped without a GPU.
     */
    @Test
    @NeedsGpu
    void gpuBackendsInARowShareTheirBlocks() {
        HostBlocks blocks = CudaDevice.open(0).hostBlocks();
        int t = 300;
        dev.lightning.attention.engine.AttentionSpec spec = new dev.lightning.attention.engine.AttentionSpec(4, 32, 32,
                dev.lightning.attention.engine.Slopes.minimax(4), 0.5, 64);
        java.util.SplittableRandom rnd = new java.util.SplittableRandom(5);
        dev.lightning.attention.tensor.TokenTensor[] qkv = new dev.lightning.attention.tensor.TokenTensor[3];
        for (int i = 0; i < 3; i++) {
            qkv[i] = dev.lightning.attention.tensor.TokenTensor.allocate(dev.lightning.attention.tensor.DType.BF16, t, 4, 32);
            java.nio.ByteBuffer b = qkv[i].writableBytes();
            for (int j = 0; j < b.capacity() / 2; j++) {
                b.putShort(j * 2, (short) (0x3c00 + rnd.nextInt(0x400) | (rnd.nextBoolean() ? 0x8000 : 0)));
            }
        }
        byte[] expect;
        try (CudaBackend gpu = new CudaBackend(0, true, dev.lightning.attention.engine.Backends.DEFAULT_GPU_MEMORY)) {
            dev.lightning.attention.tensor.TokenTensor o = dev.lightning.attention.tensor.TokenTensor.allocate(
                    dev.lightning.attention.tensor.DType.BF16, t, 4, 32);
            gpu.forward(spec, qkv[0], qkv[1], qkv[2], dev.lightning.attention.engine.LightningState.zeros(spec), o);
            expect = bytes(o);
        }
        long before = blocks.registrations();
        Object first = null;
        for (int task = 0; task < 3; task++) {
            try (CudaBackend gpu = new CudaBackend(0, true, dev.lightning.attention.engine.Backends.DEFAULT_GPU_MEMORY)) {
                dev.lightning.attention.tensor.TokenTensor[] r = new dev.lightning.attention.tensor.TokenTensor[4];
                for (int i = 0; i < 4; i++) {
                    r[i] = gpu.scratchHostTensor(dev.lightning.attention.tensor.DType.BF16, t, 4, 32);
                    if (i < 3) {
                        r[i].writableBytes().put(0, qkv[i].writableBytes(), 0, qkv[i].writableBytes().capacity());
                    }
                }
                if (task == 0) {
                    first = r[0].memory();
                }
                gpu.forward(spec, r[0], r[1], r[2], dev.lightning.attention.engine.LightningState.zeros(spec), r[3]);
                org.junit.jupiter.api.Assertions.assertArrayEquals(expect, bytes(r[3]), "task " + task + ": o");
                assertTrue(blocks.isTaken(r[0].memory()));
            }
            assertEquals(0, blocks.takenCount(), "blocks taken after task " + task + "'s close");
        }
        assertTrue(blocks.registrations() - before <= 4, "registrations " + (blocks.registrations() - before)
                + " for 3 tasks of 4 blocks each");
        assertTrue(first != null && blocks.keptBytes() > 0);
    }

    private static byte[] bytes(dev.lightning.attention.tensor.TokenTensor t) {
        java.nio.ByteBuffer b = t.writableBytes().duplicate();
        byte[] out = new byte[b.remaining()];
        b.get(out);
        return out;
    }
}
