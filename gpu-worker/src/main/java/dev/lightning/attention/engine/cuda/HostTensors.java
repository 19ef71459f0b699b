package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.cuda.DeviceAllocator.Buffer;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import jcuda.CudaException;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * The host tensors a backend hands out ({@link CudaBackend#hostTensor},
 * {@link CudaBackend#scratchHostTensor}): direct buffers registered with the driver, which the
 * pipeline copies to and from the device without staging, and the registered blocks behind them,
 * which the backend holds until a tensor is released or the backend closes.
 */
final class HostTensors {
    /** Host page size, as far as registration goes (x86-64 and most ARM64 Linux kernels). */
    private static final int PAGE = 4096;

    private final CudaDevice device;
    /** The backend's allocator: it registers the blocks of hostTensor. */
    private final DeviceAllocator memory;
    /** Waits for everything enqueued on the backend's streams. */
    private final Runnable synchronizeAll;
    /**
     * The registered blocks this backend holds: those of {@link #hostTensor}, registered in
     * {@link #memory} and unregistered when released or at close(), and those of
     * {@link CudaBackend#scratchHostTensor}, taken from the device's {@link HostBlocks} and given back (still
     * registered, for the next task) then.
     */
    private final List<Buffer> hostTensors = new ArrayList<>();

    HostTensors(CudaDevice device, DeviceAllocator memory, Runnable synchronizeAll) {
        this.device = device;
        this.memory = memory;
        this.synchronizeAll = synchronizeAll;
    }

    /**
     * A zero-filled tensor in registered host memory: a block registered in {@link #memory} (the
     * backend's {@code hostTensor}), or with {@code scratch} one of the device's {@link HostBlocks}
     * (its {@code scratchHostTensor}); an ordinary direct buffer where the driver will not register it.
     */
    TokenTensor hostTensor(DType dtype, int tokens, int heads, int dim, boolean scratch) {
        long bytes = (long) tokens * heads * dim * dtype.bytes();
        if (bytes > Integer.MAX_VALUE - 2L * PAGE || tokens < 1 || heads < 1 || dim < 1) {
            throw new IllegalArgumentException("host tensor [" + tokens + ", " + heads + ", " + dim + "] " + dtype
                    + ": expected a non-empty tensor of at most 2 GiB, got " + bytes + " bytes");
        }
        device.makeCurrent();
        Buffer block;
        try {
            block = scratch ? device.hostBlocks().take(bytes, HostTensors::guarded)
                    : memory.registered("host tensor " + (hostTensors.size() + 1), guarded(bytes));
        } catch (CudaException e) {
            // the driver would not page-lock it (a locked-memory limit, say): an ordinary direct
            // buffer, staged like the heap, still computes; only the fast path is lost
            System.err.println("lightning: GPU " + device + " could not register " + bytes + " bytes of host memory ("
                    + e.getMessage() + "); that tensor is staged through pinned buffers instead");
            return TokenTensor.wrap(dtype, tokens, heads, dim, guarded(bytes));
        }
        hostTensors.add(block);
        // a kept block may be larger: the tensor is its first bytes
        ByteBuffer view = block.direct.duplicate();
        view.clear().limit(Math.toIntExact(bytes));
        return TokenTensor.wrap(dtype, tokens, heads, dim, view.slice(), block, 0);
    }

    /**
     * {@code bytes} of a new direct buffer, as a slice that starts a page into it and ends a page
     * before its end. The driver page-locks whole pages; a Java direct buffer may share its first
     * and last page with other memory (malloc packs small blocks), and two registrations of one
     * page conflict. The registered range's pages then lie inside this buffer's own allocation.
     */
    static ByteBuffer guarded(long bytes) {
        ByteBuffer padded = ByteBuffer.allocateDirect(Math.toIntExact(bytes + 2L * PAGE));
        padded.position(PAGE).limit(PAGE + (int) bytes);
        return padded.slice();
    }

    /**
     * Ends the fast path of a tensor from {@link #hostTensor} now (its memory is no longer
     * page-locked; the bytes stay valid). Tensors not from this backend are left alone.
     */
    void releaseHostTensor(TokenTensor t) {
        if (t.memory() instanceof Buffer b && hostTensors.contains(b)) {
            device.makeCurrent(); // the caller's thread may not be the one that made the tensor
            synchronizeAll.run(); // a copy may still read or write it
            hostTensors.remove(b);
            letGo(b);
        }
    }

    /** Unregisters a block of {@link #hostTensor}; gives a scratch one back to the device's blocks. */
    private void letGo(Buffer b) {
        if (memory.owns(b)) {
            b.close();
        } else {
            device.hostBlocks().give(b);
        }
    }

    /** Whether {@code b} is a block this backend holds now (the pipeline copies views of it directly). */
    boolean holds(Object b) {
        return hostTensors.contains(b);
    }

    /** Lets go of every block still held, going on past failures (collected); the streams must be drained. */
    void letGoAll(List<RuntimeException> failures) {
        for (Buffer b : hostTensors) { // the streams are drained: no copy uses them any more
            SlicePipeline.attempt(failures, () -> letGo(b));
        }
        hostTensors.clear();
    }
}
