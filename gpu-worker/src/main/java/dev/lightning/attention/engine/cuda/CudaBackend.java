package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.DeviceMemoryException;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import jcuda.CudaException;

import java.util.ArrayList;
import java.util.List;

/**
 * The GPU backend: the front a task uses. One task's buffers (through its {@link DeviceAllocator})
 * and its {@link SlicePipeline} (streams, events, the two buffer sets) on a shared
 * {@link CudaDevice}; {@link Kernels} names the kernels and marshals their arguments. Buffers grow
 * to the largest window seen and are reused; {@link #close()} frees them (after the streams drain)
 * and destroys the events and streams, also when a task fails.
 *
 * <p>A window large enough for its copies to take real time is cut into slices ({@link SlicePlan})
 * that move through the pipeline; a window larger than the device memory budget is cut the same
 * way, and a launch the device has no memory for is retried with slices half the size. What each
 * slice runs on the kernel stream is {@link WindowKernels}' (within a slice, the heads are cut into
 * segments when they alone would leave the GPU idle: {@link SegmentStates}); every variant of the
 * spec runs there.
 */
public final class CudaBackend implements AttentionBackend {
    /**
     * Tokens per chunk of every GPU kernel. States are recorded between chunks, so checkpoints on
     * the GPU need an interval and window positions that are multiples of it.
     */
    public static final int CHUNK = TensorCoreLayout.CHUNK;

    private final CudaDevice device;
    private long memoryBudget;
    /**
     * This task's allocations, limited to the budget (--gpu-memory). Planning keeps a call within
     * it (SlicePlan sizes the slices to what the state buffers leave); the limit is the loud check
     * that it did, and a budget too small for one chunk a slice is refused before anything runs.
     */
    private final DeviceAllocator memory;
    /** The registered host tensors this backend hands out, and the blocks behind them. */
    private final HostTensors hostTensors;
    private final SlicePipeline pipeline;
    /** What a window runs on the pipeline's kernel stream: slopes, states, the kernels and their segments. */
    final WindowKernels kernels;
    private boolean closed;
    /**
     * Whether slices overlap (the pipeline); false: the serial path as it was before the pipeline,
     * one slice unless the budget forces more, each slice copied in, computed and copied out before
     * the next (benchmark: the comparison).
     */
    boolean overlapCopies = true;
    /** Slices of this many tokens (rounded up to a chunk, within the budget); 0: as SlicePlan chooses (tests). */
    int forcedSliceTokens;
    /** Slices of the last window run through forward() or advance() (for the benchmark's report). */
    int lastSlices;
    /** The kind of the last call (spec, dtype, outputs, checkpoint interval): see run(). */
    private List<Object> lastKind;

    /**
     * @param ordinal      the CUDA device
     * @param tensorCores  use the tensor-core kernels for BF16/F16 input (false: float32 kernels)
     * @param memoryBudget most device bytes this backend allocates; larger windows go in slices
     */
    public CudaBackend(int ordinal, boolean tensorCores, long memoryBudget) {
        this.device = CudaDevice.open(ordinal);
        this.memoryBudget = memoryBudget;
        this.memory = new DeviceAllocator("GPU backend on " + device, memoryBudget, DeviceAllocator.CUDA,
                this::synchronizeAll, DeviceAllocator.LEAKS_ARE_ERRORS);
        this.hostTensors = new HostTensors(device, memory, this::synchronizeAll);
        this.pipeline = new SlicePipeline(memory, hostTensors::holds);
        this.kernels = new WindowKernels(device, memory, pipeline.stream, tensorCores);
        device.makeCurrent();
        try {
            pipeline.create();
        } catch (RuntimeException | Error e) {
            closed = true;
            release(e);
            if (e instanceof CudaException) {
                throw device.setupFailed((CudaException) e);
            }
            throw e;
        }
    }

    /**
     * The GPU backend of causal softmax attention on CUDA device {@code ordinal}, allocating at
     * most {@code memoryBytes} of device memory (larger block calls are computed in slices). Throws
     * IllegalStateException, saying why, where no GPU is usable ({@link #unavailableReason()}).
     */
    public static dev.lightning.attention.engine.SoftmaxBackend softmax(int ordinal, long memoryBytes) {
        return new CudaSoftmaxBackend(ordinal, memoryBytes);
    }

    /** Why the GPU backend cannot run here, or null when it can. */
    public static String unavailableReason() {
        return CudaDevice.unavailableReason();
    }

    /** CUDA devices usable here (0 without a driver or GPU). */
    public static int deviceCount() {
        return CudaDevice.deviceCount();
    }

    @Override
    public String name() {
        return kernels.tensorCores ? "gpu" : "gpu-generic";
    }

    @Override
    public String device() {
        return device.toString();
    }

    @Override
    public int gpuOrdinal() {
        return device.ordinal;
    }

    /**
     * A zero-filled tensor in host memory registered with the driver (a Java direct buffer,
     * page-locked until {@link #close()}): forward() and advance() copy it to and from the device
     * without staging, at PCIe speed, on this backend. On other backends, or after close, it is an
     * ordinary direct buffer and is staged like any other. Callers keep and reuse such tensors
     * (registration page-locks every page, which costs about as much as a copy).
     */
    @Override
    public TokenTensor hostTensor(DType dtype, int tokens, int heads, int dim) {
        return hostTensor(dtype, tokens, heads, dim, false);
    }

    /** {@inheritDoc} Here: a block of the device's {@link HostBlocks}, kept registered for later backends. */
    @Override
    public TokenTensor scratchHostTensor(DType dtype, int tokens, int heads, int dim) {
        return hostTensor(dtype, tokens, heads, dim, true);
    }

    private TokenTensor hostTensor(DType dtype, int tokens, int heads, int dim, boolean scratch) {
        if (closed) {
            throw new IllegalStateException("backend is closed");
        }
        return hostTensors.hostTensor(dtype, tokens, heads, dim, scratch);
    }

    /**
     * Ends the fast path of a tensor from {@link #hostTensor} now (its memory is no longer
     * page-locked; the bytes stay valid). Tensors not from this backend are left alone.
     */
    @Override
    public void releaseHostTensor(TokenTensor t) {
        hostTensors.releaseHostTensor(t);
    }

    @Override
    public LightningState advance(AttentionSpec spec, TokenTensor k, TokenTensor v, LightningState state) {
        spec.checkAdvance(k, v, state);
        return run(spec, null, k, v, state, null, Checkpoints.none());
    }

    @Override
    public LightningState forward(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                                  LightningState state, TokenTensor o, Checkpoints checkpoints) {
        spec.checkForward(q, k, v, state, o, checkpoints);
        if (checkpoints.requested() && !Backends.gpuCheckpointsFit(checkpoints.every(), checkpoints.position())) {
            throw new IllegalArgumentException("the GPU kernels record states between their " + CHUNK + "-token chunks: "
                    + "checkpoints every " + checkpoints.every() + " tokens from token " + checkpoints.position()
                    + " need both to be multiples of " + CHUNK + " (use --state-every and --chunk-size multiples of "
                    + CHUNK + ", or --backend cpu)");
        }
        if (o.dtype() == DType.F32 && q.dtype() != DType.F32) {
            // A float32 o asks for float32 results: 16-bit kernels would round o (and overflow it,
            // for F16) before any widening. 16-bit values widen exactly, so the float32 kernels on
            // the widened inputs compute the same sums, at twice the bytes moved.
            return run(spec, q.toF32(), k.toF32(), v.toF32(), state, o, checkpoints);
        }
        if (o.dtype() != q.dtype()) {
            // a narrower o: the kernels write o in the input's dtype, converted on the host
            TokenTensor same = TokenTensor.allocate(q.dtype(), o.tokens(), o.heads(), o.dim());
            LightningState last = run(spec, q, k, v, state, same, checkpoints);
            o.putBytes(TokenTensor.of(o.dtype(), o.tokens(), o.heads(), o.dim(), same.toFloats()).bytes());
            return last;
        }
        return run(spec, q, k, v, state, o, checkpoints);
    }

    private LightningState run(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                               LightningState state, TokenTensor o, Checkpoints checkpoints) {
        if (closed) {
            throw new IllegalStateException("backend is closed");
        }
        device.makeCurrent();
        int n = k.tokens();
        if (n == 0) {
            return state;
        }
        int heads = spec.heads();
        DType dtype = k.dtype();
        boolean outputs = q != null;
        long stateBytes = spec.stateBytes();
        int every = checkpoints.requested() ? checkpoints.every() : 0;
        long tokenBytes = SlicePlan.tokenBytes(spec, dtype, outputs, every);
        // Slices: as many whole chunks as the budget holds, for each buffer set, after the states:
        // the two carried ones (with checkpoints one more a set: a slice holds up to one more
        // checkpoint than its tokens / N) and the segments' states, at most segmentStateBytes. Where
        // that most leaves no room for a chunk a set (small budgets), the segments' states are
        // counted per token instead: a launch holds at most three a chunk of its slice (segments
        // and sub-segments are whole chunks), so they shrink with the slices.
        long carried = stateBytes * (every > 0 ? 7 : 5) + heads * 4L;
        long fixed = carried + kernels.segmentStateBytes(spec, dtype, every > 0);
        SlicePlan plan = SlicePlan.of(n, tokenBytes, memoryBudget - fixed, overlapCopies, forcedSliceTokens);
        long perToken = tokenBytes;
        long need = fixed + plan.sets() * plan.sliceTokens() * perToken;
        if (need > memory.limit()) {
            int sets = overlapCopies ? 2 : 1;
            perToken = tokenBytes + (3 * stateBytes + (long) CHUNK * sets - 1) / ((long) CHUNK * sets);
            plan = SlicePlan.of(n, perToken, memoryBudget - carried, overlapCopies, forcedSliceTokens);
            fixed = carried;
            need = carried + plan.sets() * plan.sliceTokens() * perToken;
        }
        if (need > memory.limit()) {
            throw new DeviceMemoryException("GPU " + device + ": a window of " + n + " tokens [" + spec + ", " + dtype
                    + "] needs at least " + need + " bytes of device memory (" + fixed + " for states, and "
                    + plan.sets() + " x " + plan.sliceTokens() + " tokens of " + perToken + " bytes), more than the limit of "
                    + memory.limit() + "; raise --gpu-memory", null);
        }
        // Buffers kept from calls of another kind (spec, dtype, outputs, checkpoints) might push this
        // call over the limit: give them back first (they grow again as this call needs them). Calls
        // of one kind never do: every buffer they grow is bounded by the largest call's need, which
        // fits, so a run of same-shaped windows keeps its buffers.
        List<Object> kind = List.of(spec, dtype, outputs, every);
        if (!kind.equals(lastKind) && memory.used() + need > memory.limit()) {
            releaseBuffers();
        }
        lastKind = kind;
        lastSlices = plan.slices();
        SlicePipeline.Window window = pipeline.new Window(spec, dtype, plan, q, k, v, o, checkpoints, kernels);
        try {
            return window.run(state, kernels.stateA, kernels.stateB);
        } catch (CudaException e) {
            // Copies and kernels of this window may still be queued: they must end before buffers
            // are freed, or before a later call refills the staging buffers they read and write.
            device.noteError(pipeline.drainQuietly());
            device.noteError(e);
            boolean outOfMemory = String.valueOf(e.getMessage()).contains("OUT_OF_MEMORY");
            if (outOfMemory && plan.sliceTokens() > CHUNK) {
                // Shrink the work per launch and try again: half the slice, down to one chunk.
                releaseBuffers();
                long smaller = Math.max(CHUNK, plan.sliceTokens() / 2 / CHUNK * CHUNK);
                long budget = fixed + smaller * tokenBytes * (overlapCopies ? 2 : 1);
                System.err.println("lightning: GPU " + device + " out of memory for slices of " + plan.sliceTokens()
                        + " tokens; retrying with " + smaller);
                CudaBackend.this.memoryBudget = Math.min(memoryBudget, budget);
                return run(spec, q, k, v, state, o, checkpoints);
            }
            String what = "GPU " + device + ": " + window.step + " failed on a window of " + n + " tokens [" + spec
                    + ", " + dtype + "]: " + e.getMessage();
            if (outOfMemory) {
                throw new DeviceMemoryException(what + " (even one chunk per launch does not fit)", e);
            }
            throw new IllegalStateException(what, e);
        } catch (RuntimeException | Error e) {
            device.noteError(pipeline.drainQuietly()); // a kernel of the window may have broken the context
            throw e;
        }
    }


    /** The allocator of this backend's buffers (tests: its limit and what it holds; BenchHooks). */
    DeviceAllocator memory() {
        return memory;
    }

    /** The device this backend runs on (BenchHooks). */
    CudaDevice cudaDevice() {
        return device;
    }

    /** This backend's streams and window buffers (BenchHooks). */
    SlicePipeline pipeline() {
        return pipeline;
    }

    /** Frees the buffers' allocations now, after the streams drain; they grow again as calls need them. */
    void releaseBuffers() {
        synchronizeAll();
        memory.freeAll();
    }

    @Override
    public void releaseDeviceBuffers() {
        if (closed) {
            return;
        }
        device.makeCurrent();
        releaseBuffers();
    }

    /** Waits for everything enqueued on this backend's streams (not other tasks' on the same device). */
    private void synchronizeAll() {
        pipeline.synchronizeAll();
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        device.makeCurrentToRelease(); // also after an error broke the context: what this holds is still given back
        RuntimeException failure = release(null);
        if (failure != null) {
            throw failure;
        }
    }

    /**
     * Drains the streams, frees every buffer, then destroys the events and then the streams, going
     * on past failures so that one failed step does not leak the rest; returns the first failure
     * (attached to {@code cause} when there is one), or null.
     */
    private RuntimeException release(Throwable cause) {
        List<RuntimeException> failures = new ArrayList<>();
        pipeline.synchronize(failures);
        pipeline.closeBuffers(failures);
        kernels.closeBuffers(failures);
        hostTensors.letGoAll(failures);
        SlicePipeline.attempt(failures, memory::close);
        pipeline.destroy(failures);
        RuntimeException first = SlicePipeline.firstOf(failures);
        if (first == null) {
            return null;
        }
        device.noteErrors(first); // a sticky error met only here still makes later tasks fail fast
        if (cause != null) {
            cause.addSuppressed(first);
        }
        return first;
    }
}
