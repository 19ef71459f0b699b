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
 * <p>A {@link #child child} allocator (arrow-java's model) has its own buffers, limit and leak
 * check, and its device bytes also count against every ancestor's limit: a batch step's state
 * stores are children of the step, so one limit (the task's {@code --gpu-memory}) bounds the step's
 * staging and all its stores together. A parent closed before its children fails loudly (with
 * leaks as errors) after closing them.
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
    /** Also charged with this allocator's device bytes; null for a root. */
    private final DeviceAllocator parent;
    /** Children still open, in the order they were made. */
    private final List<DeviceAllocator> children = new ArrayList<>();
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
        this(null, owner, limit, memory, quiesce, leaksAreErrors);
    }

    private DeviceAllocator(DeviceAllocator parent, String owner, long limit, Memory memory, Runnable quiesce,
                            boolean leaksAreErrors) {
        if (limit < 0) {
            throw new IllegalArgumentException("device memory limit of " + owner + " is " + limit
                    + " bytes; expected 0 or more");
        }
        this.parent = parent;
        this.owner = owner;
        this.limit = limit;
        this.memory = memory;
        this.quiesce = quiesce;
        this.leaksAreErrors = leaksAreErrors;
    }

    /**
     * A child allocator with its own buffers, {@code limit} and leak check, whose device bytes also
     * count against this allocator's limit (and its ancestors'); it shares this one's allocation
     * calls and quiesce step. Close it before this one.
     */
    DeviceAllocator child(String childOwner, long childLimit) {
        if (closed) {
            throw new IllegalStateException("device allocator of " + owner + " is closed; cannot open " + childOwner);
        }
        DeviceAllocator c = new DeviceAllocator(this, childOwner, childLimit, memory, quiesce, leaksAreErrors);
        children.add(c);
        return c;
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
        return adoptRegistered(name, direct, host);
    }

    /**
     * A buffer of this allocator for {@code direct}, which the caller has already registered at
     * {@code host} with this allocator's calls (outside any lock: registering a large block takes
     * a while); from then on it is this allocator's, unregistered when closed.
     */
    Buffer adoptRegistered(String name, java.nio.ByteBuffer direct, Pointer host) {
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

    /** Device bytes allocated now, by this allocator's buffers and its children's. */
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
        List<DeviceAllocator> openChildren = new ArrayList<>(children);
        List<Buffer> leaked = new ArrayList<>(buffers);
        String described = leaked.toString(); // with their sizes, before they are freed
        RuntimeException failure = null;
        for (DeviceAllocator c : openChildren) {
            try {
                c.close();
            } catch (RuntimeException e) {
                if (failure == null) {
                    failure = e;
                } else {
                    failure.addSuppressed(e);
                }
            }
        }
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
        if (parent != null) {
            parent.children.remove(this);
        }
        if (leaksAreErrors && (!leaked.isEmpty() || !openChildren.isEmpty())) {
            IllegalStateException leak = new IllegalStateException("device allocator of " + owner + " closed with "
                    + leaked.size() + " buffer(s) still open: " + described + (openChildren.isEmpty() ? ""
                    : " and " + openChildren.size() + " child allocator(s) still open: " + names(openChildren))
                    + "; close every buffer and child before its allocator");
            if (failure != null) {
                leak.addSuppressed(failure);
            }
            throw leak;
        }
        if (failure != null) {
            throw failure;
        }
    }

    private static String names(List<DeviceAllocator> allocators) {
        List<String> names = new ArrayList<>();
        for (DeviceAllocator a : allocators) {
            names.add(a.owner);
        }
        return names.toString();
    }

    /**
     * Refuses {@code growth} more device bytes where this allocator's limit or an ancestor's would
     * be passed, naming the allocator whose limit it is.
     */
    private void checkRoom(String buffer, long size, long capacity) {
        long growth = size - capacity;
        for (DeviceAllocator a = this; a != null; a = a.parent) {
            if (growth > a.limit - a.used) {
                throw new DeviceMemoryException("device buffer " + buffer + " of " + owner + ": " + size
                        + " bytes requested, " + a.used + " of the limit of " + a.limit + " bytes of " + a.owner
                        + " in use (" + capacity + " of them by this buffer); raise --gpu-memory or use smaller "
                        + "windows", null);
            }
        }
    }

    /** Adds {@code bytes} (negative: frees) to this allocator's device bytes and its ancestors'. */
    private void charge(long bytes) {
        for (DeviceAllocator a = this; a != null; a = a.parent) {
            a.used += bytes;
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
            if (!pinned) {
                checkRoom(name, size, capacity);
            }
            // any stream may still read or write the old allocation
            quiesce.run();
            free();
            if (pinned) {
                host = memory.allocHost(size);
            } else {
                ptr = memory.allocDevice(size);
                charge(size);
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
                charge(-capacity);
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
