package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.DeviceMemoryException;
import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.JCudaDriver;

import java.util.ArrayList;
import java.util.List;

/**
 * One task's device allocations and pinned host staging: every {@link Buffer} of a backend comes
 * from here, so that what the task holds is counted in one place ({@link #used()}, device bytes
 * only: pinned host memory is not the GPU's), bounded ({@link #limit()}), and freed in one place.
 * Buffers grow to the largest size asked for and are reused; growing one first runs the
 * {@code quiesce} step, because a stream may still read or write the old allocation.
 *
 * <p>{@link #close()} frees whatever is still allocated. A buffer still open at that point is a
 * leak of the code that made it (a backend closes its own buffers before its allocator); with
 * {@code leaksAreErrors} (where assertions are on, as in the tests) close() then fails, naming
 * them, after freeing them, so that a leak in the code never becomes one on the device.
 *
 * <p>The actual allocation calls go through {@link Memory}, so that the accounting is tested
 * without a GPU.
 */
final class DeviceAllocator implements AutoCloseable {
    /** No limit beyond what the device itself refuses. */
    static final long UNLIMITED = Long.MAX_VALUE;
    /** Leaks fail close() where assertions are on (tests), and are freed silently elsewhere. */
    static final boolean LEAKS_ARE_ERRORS = DeviceAllocator.class.desiredAssertionStatus();

    /** The allocation calls: the CUDA driver's ({@link #CUDA}), or a test's fake. */
    interface Memory {
        CUdeviceptr allocDevice(long bytes);

        void freeDevice(CUdeviceptr ptr);

        Pointer allocHost(long bytes);

        void freeHost(Pointer host);

        /** Page-locks {@code bytes} of existing host memory at {@code host} for the device's copies. */
        void registerHost(Pointer host, long bytes);

        /** Undoes {@link #registerHost}; the memory itself stays its owner's. */
        void unregisterHost(Pointer host);
    }

    /** The CUDA driver API, in the current context. */
    static final Memory CUDA = new Memory() {
        @Override
        public CUdeviceptr allocDevice(long bytes) {
            CUdeviceptr ptr = new CUdeviceptr();
            JCudaDriver.cuMemAlloc(ptr, bytes);
            return ptr;
        }

        @Override
        public void freeDevice(CUdeviceptr ptr) {
            JCudaDriver.cuMemFree(ptr);
        }

        @Override
        public Pointer allocHost(long bytes) {
            Pointer host = new Pointer();
            JCudaDriver.cuMemAllocHost(host, bytes);
            return host;
        }

        @Override
        public void freeHost(Pointer host) {
            JCudaDriver.cuMemFreeHost(host);
        }

        @Override
        public void registerHost(Pointer host, long bytes) {
            JCudaDriver.cuMemHostRegister(host, bytes, 0);
        }

        @Override
        public void unregisterHost(Pointer host) {
            JCudaDriver.cuMemHostUnregister(host);
        }
    };

    private final String owner;
    private final long limit;
    private final Memory memory;
    private final Runnable quiesce;
    private final boolean leaksAreErrors;
    /** Open buffers, in the order they were made. */
    private final List<Buffer> buffers = new ArrayList<>();
    private long used;
    private boolean closed;

    /**
     * @param owner          what the buffers are for, in messages (the backend and its device)
     * @param limit          most device bytes allocated at once ({@link #UNLIMITED}: no limit)
     * @param memory         the allocation calls
     * @param quiesce        waits until no stream uses a buffer; runs before a buffer is regrown
     * @param leaksAreErrors whether close() fails on buffers still open
     */
    DeviceAllocator(String owner, long limit, Memory memory, Runnable quiesce, boolean leaksAreErrors) {
        if (limit < 0) {
            throw new IllegalArgumentException("device memory limit of " + owner + " is " + limit
                    + " bytes; expected 0 or more");
        }
        this.owner = owner;
        this.limit = limit;
        this.memory = memory;
        this.quiesce = quiesce;
        this.leaksAreErrors = leaksAreErrors;
    }

    /** A device buffer, empty until {@link Buffer#ensure}. */
    Buffer device(String name) {
        return open(name, false);
    }

    /** A pinned host buffer (staging for copies), empty until {@link Buffer#ensure}. */
    Buffer pinned(String name) {
        return open(name, true);
    }

    /**
     * {@code direct}, a direct buffer of the Java heap's owner (position 0, its whole capacity),
     * page-locked for the device's copies until the buffer is closed (or the allocator is). The
     * memory stays Java's: after close it is still valid, only no longer page-locked. Registered
     * memory is host memory and not counted in {@link #used()}.
     */
    Buffer registered(String name, java.nio.ByteBuffer direct) {
        if (!direct.isDirect() || direct.position() != 0 || direct.capacity() == 0) {
            throw new IllegalArgumentException("host memory to register for " + name + " must be a non-empty direct "
                    + "buffer at position 0; got " + direct);
        }
        if (closed) {
            throw new IllegalStateException("device allocator of " + owner + " is closed; cannot register " + name);
        }
        Pointer host = Pointer.to(direct);
        memory.registerHost(host, direct.capacity());
        Buffer b = open(name, true);
        b.host = host;
        b.direct = direct;
        b.capacity = direct.capacity();
        return b;
    }

    private Buffer open(String name, boolean pinned) {
        if (closed) {
            throw new IllegalStateException("device allocator of " + owner + " is closed; cannot open buffer " + name);
        }
        Buffer b = new Buffer(name, pinned);
        buffers.add(b);
        return b;
    }

    /** Whether {@code b} is a buffer of this allocator that is still open. */
    boolean owns(Object b) {
        return b instanceof Buffer buf && buffers.contains(buf);
    }

    /** Device bytes allocated now. */
    long used() {
        return used;
    }

    long limit() {
        return limit;
    }

    /**
     * Frees every open buffer's allocation; the buffers stay open and grow again when used.
     * Registered host memory stays registered: callers' tensors are views of it.
     */
    void freeAll() {
        for (Buffer b : buffers) {
            if (b.direct == null) {
                b.free();
            }
        }
    }

    /**
     * Frees every buffer still open, going on past failures (the first is thrown, the others
     * suppressed in it); then, with leaks as errors, fails if any buffer was still open.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        List<Buffer> leaked = new ArrayList<>(buffers);
        String described = leaked.toString(); // with their sizes, before they are freed
        RuntimeException failure = null;
        for (Buffer b : leaked) {
            try {
                b.close();
            } catch (RuntimeException e) {
                if (failure == null) {
                    failure = e;
                } else {
                    failure.addSuppressed(e);
                }
            }
        }
        if (leaksAreErrors && !leaked.isEmpty()) {
            IllegalStateException leak = new IllegalStateException("device allocator of " + owner + " closed with "
                    + leaked.size() + " buffer(s) still open: " + described + "; close every buffer before its allocator");
            if (failure != null) {
                leak.addSuppressed(failure);
            }
            throw leak;
        }
        if (failure != null) {
            throw failure;
        }
    }

    /** A device or pinned host allocation that grows to the largest size asked for. */
    final class Buffer implements AutoCloseable {
        private final String name;
        final boolean pinned;
        CUdeviceptr ptr = new CUdeviceptr();
        Pointer host = new Pointer();
        long capacity;
        /** The Java direct buffer of a registered buffer ({@link #registered}); null otherwise. */
        java.nio.ByteBuffer direct;

        private Buffer(String name, boolean pinned) {
            this.name = name;
            this.pinned = pinned;
        }

        /** Grows the allocation to at least {@code bytes} (at least 1); its contents are then undefined. */
        void ensure(long bytes) {
            if (bytes <= capacity) {
                return;
            }
            if (!buffers.contains(this)) {
                throw new IllegalStateException("buffer " + name + " of " + owner + " is closed; cannot grow it to "
                        + bytes + " bytes");
            }
            if (direct != null) {
                throw new IllegalStateException("registered host buffer " + name + " of " + owner + " holds "
                        + capacity + " bytes and cannot grow to " + bytes + "; register a larger one");
            }
            long size = Math.max(bytes, 1);
            if (!pinned && size - capacity > limit - used) {
                throw new DeviceMemoryException("device buffer " + name + " of " + owner + ": " + size
                        + " bytes requested, " + used + " of the limit of " + limit + " bytes in use (" + capacity
                        + " of them by this buffer); raise --gpu-memory or use smaller windows", null);
            }
            // any stream may still read or write the old allocation
            quiesce.run();
            free();
            if (pinned) {
                host = memory.allocHost(size);
            } else {
                ptr = memory.allocDevice(size);
                used += size;
            }
            capacity = size;
        }

        /** Frees the allocation (the buffer stays open and may grow again). */
        void free() {
            if (capacity == 0) {
                return;
            }
            if (direct != null) {
                memory.unregisterHost(host);
            } else if (pinned) {
                memory.freeHost(host);
            } else {
                memory.freeDevice(ptr);
                used -= capacity;
            }
            capacity = 0;
        }

        /** Frees the allocation and gives the buffer back to the allocator. */
        @Override
        public void close() {
            buffers.remove(this);
            free();
        }

        @Override
        public String toString() {
            return name + (direct != null ? " (registered, " : pinned ? " (pinned, " : " (") + capacity + " bytes)";
        }
    }
}
