package dev.lightning.attention.engine.cuda;

import jcuda.CudaException;

import dev.lightning.attention.engine.cuda.DeviceAllocator.Buffer;
import jcuda.driver.CUstream;
import jcuda.driver.JCudaDriver;

import java.util.ArrayList;
import java.util.List;

/**
 * The stream and the device memory of a GPU front end that computes on one stream
 * ({@link CudaSoftmaxBackend}, {@link CudaBatchStep}; {@link CudaBackend}'s three streams live in
 * {@link SlicePipeline}): the allocator its buffers come from, the stream, and their release in the
 * one safe order: drain the stream (a copy or kernel may still use a buffer), free the buffers,
 * close the allocator (its leak check), destroy the stream.
 */
final class StreamMemory {
    /** The front end's buffers come from here; waits on the stream before it frees one. */
    final DeviceAllocator memory;
    final CUstream stream = new CUstream();
    private boolean streamMade;

    /**
     * @param owner names the front end in the allocator's messages
     * @param limit most device bytes its buffers may hold ({@link DeviceAllocator#UNLIMITED} for none)
     */
    StreamMemory(String owner, long limit) {
        this.memory = new DeviceAllocator(owner, limit, DeviceAllocator.CUDA, this::synchronize,
                DeviceAllocator.LEAKS_ARE_ERRORS);
    }

    /** Creates the stream with {@code flags} (CUstream_flags); the device must be current. */
    void createStream(int flags) {
        JCudaDriver.cuStreamCreate(stream, flags);
        streamMade = true;
    }

    /** Waits for everything queued on the stream (nothing to wait for before it exists). */
    void synchronize() {
        if (streamMade) {
            JCudaDriver.cuStreamSynchronize(stream);
        }
    }

    /** {@link #synchronize} after a failure: the failure that brought us here is the one reported. */
    CudaException drainQuietly() {
        try {
            synchronize();
        } catch (CudaException e) {
            return e; // reported by the caller, which notes an error the context keeps (noteError)
        } catch (RuntimeException ignored) {
            // reported by the caller
        }
        return null;
    }

    /**
     * Drains the stream, frees {@code buffers}, closes the allocator, then destroys the stream, going
     * on past failures; returns the first (later ones suppressed in it), or null. Runs once: the
     * stream is gone afterwards.
     */
    RuntimeException release(Buffer... buffers) {
        List<RuntimeException> failures = new ArrayList<>();
        SlicePipeline.attempt(failures, this::synchronize);
        for (Buffer b : buffers) {
            SlicePipeline.attempt(failures, b::close);
        }
        SlicePipeline.attempt(failures, memory::close);
        if (streamMade) {
            SlicePipeline.attempt(failures, () -> JCudaDriver.cuStreamDestroy(stream));
            streamMade = false;
        }
        return SlicePipeline.firstOf(failures);
    }
}
