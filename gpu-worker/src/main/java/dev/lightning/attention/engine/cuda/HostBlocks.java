package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.cuda.DeviceAllocator.Buffer;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import java.util.function.LongFunction;

/**
 * The registered host blocks of one device, kept for the executor's life rather than a task's:
 * registering a block page-locks it, which costs about as much as copying it, and the job's tasks
 * each took and registered their window blocks (1 GiB, two with read-ahead) again at every
 * start, with the disk idle meanwhile. A backend takes a block here ({@link #take}) and gives it
 * back when it lets the tensor go or closes ({@link #give}), failed task or not; the next task's
 * backend on the device takes it again, still registered. Blocks given back are kept up to a
 * limit shared by the pools of every device of the JVM ({@link Shared}: direct memory is the
 * JVM's, and an executor often drives several GPUs, a task on each), the largest of the giving
 * pool first to go beyond it; a pool that finds no direct memory for a new block lets every
 * pool's kept blocks go, not only its own.
 *
 * <p>The blocks are buffers of an allocator of their own, closed with the device at executor
 * shutdown ({@link #close}), before its context goes: blocks kept are unregistered then, and a
 * block still taken by a backend that never closed is a leak, which that allocator's leak check
 * reports (an error where assertions are on) after freeing it.
 */
final class HostBlocks implements AutoCloseable {
    /**
     * What the pools of one JVM share: the limit on their kept bytes together, the bytes kept now
     * (each pool adds and removes its own under its own lock, so no pool ever takes another's
     * lock while holding its own), and the pools, for letting every pool's kept blocks go.
     */
    static final class Shared {
        final long keepBytes;
        private final java.util.concurrent.atomic.AtomicLong kept = new java.util.concurrent.atomic.AtomicLong();
        private final Set<HostBlocks> pools = java.util.concurrent.ConcurrentHashMap.newKeySet();

        /** @param keepBytes most bytes of blocks the pools keep together while no backend holds them */
        Shared(long keepBytes) {
            this.keepBytes = keepBytes;
        }

        /** Bytes the pools keep now, together. */
        long keptBytes() {
            return kept.get();
        }

        /** Lets every pool's kept blocks go (each under its own lock, one after the other); returns their bytes. */
        long letGoOfKept() {
            long bytes = 0;
            for (HostBlocks p : pools) {
                bytes += p.letGoOfKept();
            }
            return bytes;
        }
    }

    private final DeviceAllocator memory;
    /** The registration calls of {@link #memory}, made outside the lock. */
    private final DeviceAllocator.Memory calls;
    private final Shared shared;
    /** Registered blocks no backend holds, smallest first. */
    private final List<Buffer> kept = new ArrayList<>();
    /** Blocks a backend holds now. */
    private final Set<Buffer> taken = Collections.newSetFromMap(new IdentityHashMap<>());
    private int made;
    private long registrations;
    /** Set when the device's context broke ({@link #abandon}): nothing is kept any more. */
    private boolean abandoned;

    /**
     * @param owner     the device, in messages
     * @param memory    the registration calls (the driver's, or a test's fake)
     * @param shared    the limit on kept bytes this pool shares with the JVM's other pools
     */
    HostBlocks(String owner, DeviceAllocator.Memory memory, Shared shared, boolean leaksAreErrors) {
        this.memory = new DeviceAllocator("host blocks of " + owner, 0, memory, () -> { }, leaksAreErrors);
        this.calls = memory;
        this.shared = shared;
        shared.pools.add(this);
    }

    /** A pool of its own, keeping up to {@code keepBytes} (tests). */
    HostBlocks(String owner, DeviceAllocator.Memory memory, long keepBytes, boolean leaksAreErrors) {
        this(owner, memory, new Shared(keepBytes), leaksAreErrors);
    }

    /**
     * A registered block of at least {@code bytes}: the smallest kept one that holds them, else a
     * new one ({@code allocate} gives its direct buffer, which is then registered; a failed
     * registration is thrown and nothing is kept). Its {@code direct} buffer may be larger. A new
     * block is allocated and registered outside the lock, so that tasks starting together register
     * theirs at the same time. When the JVM has no direct memory left for it, the kept blocks of
     * every pool are let go (unregistered and dropped) and the allocation tried once more: kept
     * blocks are a cache, and a task must not fail while they, on this device or another, hold the
     * memory it needs.
     */
    Buffer take(long bytes, LongFunction<ByteBuffer> allocate) {
        synchronized (this) {
            for (int i = 0; i < kept.size(); i++) {
                Buffer b = kept.get(i);
                if (b.capacity >= bytes) {
                    kept.remove(i);
                    shared.kept.addAndGet(-b.capacity);
                    taken.add(b);
                    return b;
                }
            }
        }
        ByteBuffer direct;
        try {
            direct = allocate.apply(bytes);
        } catch (OutOfMemoryError e) {
            if (shared.letGoOfKept() == 0) { // outside this pool's lock: each pool takes its own
                throw e;
            }
            // allocateDirect runs the collector before it gives up, which frees the dropped blocks
            direct = allocate.apply(bytes);
        }
        jcuda.Pointer host = jcuda.Pointer.to(direct);
        calls.registerHost(host, direct.capacity());
        synchronized (this) {
            Buffer b;
            try {
                b = memory.adoptRegistered("host block " + (made + 1), direct, host);
            } catch (RuntimeException e) {
                // the blocks were closed meanwhile (the exit hook, during the registration above): no
                // allocator owns this block, so its registration is undone here or never
                try {
                    calls.unregisterHost(host);
                } catch (RuntimeException again) {
                    e.addSuppressed(again);
                }
                throw e;
            }
            made++;
            registrations++;
            taken.add(b);
            return b;
        }
    }

    /** Whether {@code b} is a block of this device that a backend holds now. */
    synchronized boolean isTaken(Object b) {
        return b instanceof Buffer buf && taken.contains(buf);
    }

    /**
     * Takes back a block from {@link #take} (no copy may use it any more); it is kept for the next
     * taker, or, where the JVM's pools together would keep more than their limit, this pool's
     * largest kept blocks (this one among them) are unregistered until they do not.
     */
    synchronized void give(Buffer b) {
        if (!taken.remove(b)) {
            throw new IllegalStateException("host block " + b + " was not taken from " + this + " (given back twice?)");
        }
        if (abandoned) {
            closeQuietly(b);
            return;
        }
        int at = 0;
        while (at < kept.size() && kept.get(at).capacity <= b.capacity) {
            at++;
        }
        kept.add(at, b);
        shared.kept.addAndGet(b.capacity);
        while (shared.kept.get() > shared.keepBytes && !kept.isEmpty()) {
            Buffer largest = kept.remove(kept.size() - 1);
            shared.kept.addAndGet(-largest.capacity);
            largest.close();
        }
    }

    /** Unregisters and drops every kept block; returns how many bytes they held. */
    synchronized long letGoOfKept() {
        long bytes = 0;
        for (Buffer k : kept) {
            bytes += k.capacity;
            closeQuietly(k);
        }
        kept.clear();
        shared.kept.addAndGet(-bytes);
        return bytes;
    }

    /**
     * The device's context broke (an error the driver keeps for the process's life): the kept
     * blocks and every block given back from now on are dropped, so that their direct memory goes
     * back to the JVM (the driver's calls to unregister them fail in the dead context and are
     * ignored). Blocks still taken are dropped as their backends give them back.
     */
    synchronized void abandon() {
        abandoned = true;
        letGoOfKept();
    }

    /** Closes a block, ignoring a driver failure (a dead context refuses the unregistration). */
    private static void closeQuietly(Buffer b) {
        try {
            b.close();
        } catch (RuntimeException ignored) {
            // the buffer has left its allocator either way; the driver reclaims the rest at exit
        }
    }

    /** Blocks registered so far (each registration, kept ones not counted again). */
    synchronized long registrations() {
        return registrations;
    }

    /** Bytes of the blocks kept now (held by no backend). */
    synchronized long keptBytes() {
        long total = 0;
        for (Buffer k : kept) {
            total += k.capacity;
        }
        return total;
    }

    /** Blocks held by backends now. */
    synchronized int takenCount() {
        return taken.size();
    }

    /**
     * Unregisters every kept block, then closes the allocator, whose leak check reports the blocks
     * still taken (after unregistering them too); goes on past failures, so that one block the
     * driver refuses to unregister leaves none of the others registered. Throws the first failure,
     * the later ones suppressed in it.
     */
    @Override
    public synchronized void close() {
        List<RuntimeException> failures = new ArrayList<>();
        shared.pools.remove(this);
        for (Buffer b : kept) {
            shared.kept.addAndGet(-b.capacity);
            SlicePipeline.attempt(failures, b::close);
        }
        kept.clear();
        taken.clear();
        SlicePipeline.attempt(failures, memory::close);
        RuntimeException first = SlicePipeline.firstOf(failures);
        if (first != null) {
            throw first;
        }
    }

    @Override
    public String toString() {
        return "host blocks (" + kept.size() + " kept, " + taken.size() + " taken)";
    }
}
