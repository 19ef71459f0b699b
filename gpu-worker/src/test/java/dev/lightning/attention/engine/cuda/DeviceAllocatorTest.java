package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.DeviceMemoryException;
import dev.lightning.attention.engine.cuda.DeviceAllocator.Buffer;
import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The allocator's accounting against a fake device: no GPU needed. */
class DeviceAllocatorTest {
    /** Records live allocations by identity, and every call in order. */
    private static final class FakeMemory implements DeviceAllocator.Memory {
        final Map<Object, Long> live = new IdentityHashMap<>();
        final List<String> calls = new ArrayList<>();
        RuntimeException failNextFree;

        @Override
        public CUdeviceptr allocDevice(long bytes) {
            CUdeviceptr p = new CUdeviceptr();
            live.put(p, bytes);
            calls.add("alloc " + bytes);
            return p;
        }

        @Override
        public void freeDevice(CUdeviceptr ptr) {
            free(ptr);
        }

        @Override
        public Pointer allocHost(long bytes) {
            Pointer p = new Pointer();
            live.put(p, bytes);
            calls.add("allocHost " + bytes);
            return p;
        }

        @Override
        public void freeHost(Pointer host) {
            free(host);
        }

        RuntimeException failNextRegister;

        @Override
        public void registerHost(Pointer host, long bytes) {
            if (failNextRegister != null) {
                RuntimeException e = failNextRegister;
                failNextRegister = null;
                throw e;
            }
            live.put(host, bytes);
            calls.add("register " + bytes);
        }

        @Override
        public void unregisterHost(Pointer host) {
            if (live.remove(host) == null) {
                throw new AssertionError("unregister of memory that is not registered");
            }
            calls.add("unregister");
        }

        private void free(Object p) {
            if (failNextFree != null) {
                RuntimeException e = failNextFree;
                failNextFree = null;
                throw e;
            }
            Long bytes = live.remove(p);
            if (bytes == null) {
                throw new AssertionError("free of a pointer that is not allocated (double free?)");
            }
            calls.add("free " + bytes);
        }
    }

    private final FakeMemory fake = new FakeMemory();
    private int quiesced;

    private DeviceAllocator allocator(long limit, boolean strict) {
        return new DeviceAllocator("test task", limit, fake, () -> quiesced++, strict);
    }

    @Test
    void buffersGrowToTheLargestSizeAndCountDeviceBytesOnly() {
        try (DeviceAllocator a = allocator(1000, true)) {
            Buffer d = a.device("d");
            Buffer h = a.pinned("h");
            d.ensure(100);
            d.ensure(50); // smaller: kept, no call
            h.ensure(5000); // pinned: not device memory, not limited
            assertEquals(100, a.used());
            d.ensure(300);
            assertEquals(300, a.used());
            assertEquals(List.of("alloc 100", "allocHost 5000", "free 100", "alloc 300"), fake.calls);
            // a regrowth waits for the streams first; the first allocation of each buffer too
            assertEquals(3, quiesced);
            d.ensure(0);
            assertEquals(300, d.capacity);
            d.close();
            h.close();
            assertEquals(0, a.used());
        }
        assertTrue(fake.live.isEmpty());
    }

    @Test
    void aRequestOverTheLimitNamesRequestedUsedAndLimitAndKeepsTheOldAllocation() {
        try (DeviceAllocator a = allocator(1000, true)) {
            Buffer x = a.device("x");
            Buffer y = a.device("y");
            x.ensure(600);
            y.ensure(300);
            DeviceMemoryException e = assertThrows(DeviceMemoryException.class, () -> y.ensure(500));
            assertTrue(e.getMessage().contains("500 bytes requested") && e.getMessage().contains("900 of the limit of 1000")
                    && e.getMessage().contains("device buffer y"), e.getMessage());
            assertEquals(300, y.capacity);
            assertEquals(900, a.used());
            // growing within the limit counts the buffer's own old bytes as given back
            y.ensure(400);
            assertEquals(1000, a.used());
            x.close();
            y.close();
        }
    }

    @Test
    void aChildsBytesCountAgainstItsOwnLimitAndEveryAncestorsAndAreGivenBackOnClose() {
        try (DeviceAllocator root = allocator(1000, true)) {
            Buffer own = root.device("own");
            own.ensure(400);
            DeviceAllocator child = root.child("store", 700);
            DeviceAllocator grandchild = child.child("slots", DeviceAllocator.UNLIMITED);
            Buffer s = child.device("s");
            Buffer g = grandchild.device("g");
            s.ensure(300);
            g.ensure(200);
            assertEquals(200, grandchild.used());
            assertEquals(500, child.used());
            assertEquals(900, root.used());
            // the root's limit (100 left) refuses what the child's own (200 left) would allow
            DeviceMemoryException e = assertThrows(DeviceMemoryException.class, () -> g.ensure(350));
            assertTrue(e.getMessage().contains("device buffer g of slots") && e.getMessage().contains("900 of the limit "
                    + "of 1000 bytes of test"), e.getMessage());
            // the child's own limit refuses before the root's would
            own.close();
            e = assertThrows(DeviceMemoryException.class, () -> s.ensure(600));
            assertTrue(e.getMessage().contains("500 of the limit of 700 bytes of store"), e.getMessage());
            assertEquals(200, g.capacity);
            g.close();
            s.close();
            grandchild.close();
            child.close();
            assertEquals(0, root.used());
            // a closed child leaves no trace: the root closes without a leak
        }
        assertTrue(fake.live.isEmpty());
    }

    @Test
    void aParentClosedBeforeItsChildrenFreesTheirBuffersAndNamesThem() {
        DeviceAllocator root = allocator(DeviceAllocator.UNLIMITED, true);
        DeviceAllocator child = root.child("state store", DeviceAllocator.UNLIMITED);
        child.device("states").ensure(64);
        IllegalStateException e = assertThrows(IllegalStateException.class, root::close);
        assertTrue(e.getMessage().contains("1 child allocator(s) still open: [state store]"), e.getMessage());
        assertTrue(fake.live.isEmpty(), "the child's device memory is freed all the same");
        assertThrows(IllegalStateException.class, () -> root.child("late", 1));
    }

    @Test
    void closeFreesEverythingAndFailsLoudlyOnOpenBuffersWhenLeaksAreErrors() {
        DeviceAllocator a = allocator(DeviceAllocator.UNLIMITED, true);
        a.device("kept").ensure(64);
        a.pinned("staging").ensure(32);
        Buffer closed = a.device("closed");
        closed.ensure(16);
        closed.close();
        IllegalStateException e = assertThrows(IllegalStateException.class, a::close);
        assertTrue(e.getMessage().contains("2 buffer(s) still open") && e.getMessage().contains("kept (64 bytes)")
                && e.getMessage().contains("staging (pinned, 32 bytes)") && !e.getMessage().contains("closed ("),
                e.getMessage());
        assertTrue(fake.live.isEmpty(), "leaked buffers are freed before the failure");
        assertEquals(0, a.used());
        a.close(); // once
        assertThrows(IllegalStateException.class, () -> a.device("late"));
    }

    @Test
    void closeFreesOpenBuffersSilentlyWhenLeaksAreNotErrors() {
        DeviceAllocator a = allocator(DeviceAllocator.UNLIMITED, false);
        a.device("kept").ensure(64);
        a.close();
        assertTrue(fake.live.isEmpty());
    }

    @Test
    void closeGoesOnPastAFailedFreeAndThrowsIt() {
        DeviceAllocator a = allocator(DeviceAllocator.UNLIMITED, false);
        a.device("first").ensure(8);
        a.device("second").ensure(8);
        RuntimeException boom = new RuntimeException("free failed");
        fake.failNextFree = boom;
        assertSame(boom, assertThrows(RuntimeException.class, a::close));
        assertEquals(1, fake.live.size(), "the second buffer is freed after the first one's failure");
    }

    @Test
    void freeAllKeepsBuffersUsable() {
        try (DeviceAllocator a = allocator(DeviceAllocator.UNLIMITED, true)) {
            Buffer d = a.device("d");
            d.ensure(128);
            a.freeAll();
            assertEquals(0, a.used());
            assertTrue(fake.live.isEmpty());
            d.ensure(64);
            assertEquals(64, a.used());
            d.close();
            assertThrows(IllegalStateException.class, () -> d.ensure(256));
        }
    }

    @Test
    void registeredHostMemoryIsNotDeviceMemoryCannotGrowAndOutlivesFreeAll() {
        try (DeviceAllocator a = allocator(100, true)) {
            java.nio.ByteBuffer direct = java.nio.ByteBuffer.allocateDirect(4096);
            Buffer r = a.registered("tensor", direct);
            assertEquals(List.of("register 4096"), fake.calls);
            assertEquals(0, a.used(), "host memory is not counted against the device limit");
            assertEquals(4096, r.capacity);
            assertSame(direct, r.direct);
            assertTrue(a.owns(r));
            r.ensure(4000); // within: nothing to do
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> r.ensure(8192));
            assertTrue(e.getMessage().contains("cannot grow to 8192"), e.getMessage());
            a.freeAll(); // the benchmark's release of window buffers: callers' tensors stay registered
            assertEquals(1, fake.live.size());
            r.close();
            assertTrue(fake.live.isEmpty());
            assertEquals(List.of("register 4096", "unregister"), fake.calls);
            assertTrue(!a.owns(r), "a closed buffer is no longer the allocator's");
            assertTrue(!a.owns("something else"));
        }
    }

    @Test
    void registrationRefusesWhatItCannotPinAndLeavesNothingOpenWhenTheDriverFails() {
        DeviceAllocator a = allocator(DeviceAllocator.UNLIMITED, true);
        assertThrows(IllegalArgumentException.class, () -> a.registered("heap", java.nio.ByteBuffer.allocate(64)));
        java.nio.ByteBuffer moved = java.nio.ByteBuffer.allocateDirect(64);
        moved.position(8);
        assertThrows(IllegalArgumentException.class, () -> a.registered("moved", moved));
        RuntimeException boom = new RuntimeException("register failed");
        fake.failNextRegister = boom;
        assertSame(boom, assertThrows(RuntimeException.class, () -> a.registered("x", java.nio.ByteBuffer.allocateDirect(64))));
        a.close(); // nothing open: no leak reported
        assertTrue(fake.live.isEmpty());
        assertThrows(IllegalStateException.class, () -> a.registered("late", java.nio.ByteBuffer.allocateDirect(64)));
    }

    @Test
    void aRegisteredBufferLeftOpenIsUnregisteredAndNamedByTheLeakCheck() {
        DeviceAllocator a = allocator(DeviceAllocator.UNLIMITED, true);
        a.registered("forgotten", java.nio.ByteBuffer.allocateDirect(128));
        IllegalStateException e = assertThrows(IllegalStateException.class, a::close);
        assertTrue(e.getMessage().contains("forgotten (registered, 128 bytes)"), e.getMessage());
        assertTrue(fake.live.isEmpty(), "unregistered before the failure");
    }
}
