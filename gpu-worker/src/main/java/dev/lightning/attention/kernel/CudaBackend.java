package dev.lightning.attention.kernel;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import jcuda.CudaException;
import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUfunction;
import jcuda.driver.CUstream;
import jcuda.driver.CUstream_flags;
import jcuda.driver.JCudaDriver;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * The GPU backend: one task's stream, device buffers and pinned host buffers on a shared
 * {@link CudaDevice}. Buffers grow to the largest window seen and are reused; {@link #close()}
 * frees them (after the stream drains) and destroys the stream, also when a task fails.
 *
 * <p>A window is cut into segments when its heads alone would leave the GPU idle; segments run
 * in parallel with the device-side two-level scan (local states, float32 exclusive scan,
 * outputs). A window larger than the device memory budget is processed in slices that carry the
 * state on the device.
 *
 * <p>Kernels: BF16/F16 use the tensor-core kernels (on an H100/H200 the wgmma ones of hopper.cuh
 * where Dk <= 128 and Dv > 64, elsewhere the portable mma.sync ones); F32 (and "gpu-generic") the
 * float32 CUDA-core kernels.
 */
public final class CudaBackend implements AttentionBackend {
    /** Tokens per chunk; segments and slices start at multiples of it. Fixed by the kernels. */
    static final int CHUNK = 64;
    private static final int GENERIC_BV = 32;
    private static final int GENERIC_THREADS = 256;

    private final CudaDevice device;
    private final boolean tensorCores;
    private long memoryBudget;
    private final CUstream stream = new CUstream();
    private final List<Buffer> buffers = new ArrayList<>();
    private final Buffer qDev = new Buffer(false);
    private final Buffer kDev = new Buffer(false);
    private final Buffer vDev = new Buffer(false);
    private final Buffer oDev = new Buffer(false);
    private final Buffer slopesDev = new Buffer(false);
    private final Buffer stateA = new Buffer(false);
    private final Buffer stateB = new Buffer(false);
    private final Buffer segmentStates = new Buffer(false);
    private final Buffer segmentIncoming = new Buffer(false);
    private final Buffer stateScratch = new Buffer(false);
    private final Buffer hostIn = new Buffer(true);
    private final Buffer hostOut = new Buffer(true);
    private boolean closed;
    /** At least this many segments per window (benchmark only: to time the two-pass path). */
    int minSegments = 1;
    /** Whether the Hopper kernels may run (tests turn them off to check the portable ones there). */
    boolean hopperKernels = true;
    /** Segments of the last launched window (for the benchmark's report). */
    int lastSegments;
    /** The forward kernel of the last launched window (for the benchmark's report). */
    String lastKernels = "";
    /** Tokens pass 1 covered in the last launched window with outputs (for the benchmark's report). */
    long lastPass1Tokens;

    /**
     * @param ordinal      the CUDA device
     * @param tensorCores  use the tensor-core kernels for BF16/F16 input (false: float32 kernels)
     * @param memoryBudget most device bytes this backend allocates; larger windows go in slices
     */
    public CudaBackend(int ordinal, boolean tensorCores, long memoryBudget) {
        this.device = CudaDevice.open(ordinal);
        this.tensorCores = tensorCores;
        this.memoryBudget = memoryBudget;
        device.makeCurrent();
        JCudaDriver.cuStreamCreate(stream, CUstream_flags.CU_STREAM_NON_BLOCKING);
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
        return tensorCores ? "gpu" : "gpu-generic";
    }

    @Override
    public String device() {
        return device.toString();
    }

    @Override
    public LightningState advance(AttentionSpec spec, TokenTensor k, TokenTensor v, LightningState state) {
        AttentionBackend.checkShapes(spec, null, k, v, state, null);
        return run(spec, null, k, v, state, null);
    }

    @Override
    public LightningState forward(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                                  LightningState state, TokenTensor o) {
        AttentionBackend.checkShapes(spec, q, k, v, state, o);
        if (o.dtype() != q.dtype()) {
            // the kernels write o in the input's dtype; convert on the host for other outputs
            TokenTensor same = TokenTensor.allocate(q.dtype(), o.tokens(), o.heads(), o.dim());
            LightningState last = run(spec, q, k, v, state, same);
            o.putBytes(TokenTensor.of(o.dtype(), o.tokens(), o.heads(), o.dim(), same.toFloats()).bytes());
            return last;
        }
        return run(spec, q, k, v, state, o);
    }

    private LightningState run(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                               LightningState state, TokenTensor o) {
        if (closed) {
            throw new IllegalStateException("backend is closed");
        }
        device.makeCurrent();
        int n = k.tokens();
        if (n == 0) {
            return state;
        }
        int heads = spec.heads();
        int dk = spec.dk();
        int dv = spec.dv();
        DType dtype = k.dtype();
        boolean outputs = q != null;
        long stateBytes = (long) spec.stateSize() * 4;
        long tokenBytes = (long) heads * (2L * dk + dv) * dtype.bytes() + (outputs ? (long) heads * dv * dtype.bytes() : 0);
        // Slices: as many whole chunks as the budget holds after the states. State slots: the two
        // carried ones, and per segment (at most resident CTAs / heads of them, resident <= 2 x SMs)
        // a local state, an incoming one and a state-after.
        long headState = (long) dk * dv * 4;
        long fixed = stateBytes * 5 + headState * 3 * 2L * device.multiprocessors + heads * 4L;
        long sliceTokens = Math.max(CHUNK, (memoryBudget - fixed) / Math.max(1, tokenBytes) / CHUNK * CHUNK);
        sliceTokens = Math.min(sliceTokens, Integer.MAX_VALUE / 2 / Math.max(1, tokenBytes) / CHUNK * CHUNK);
        sliceTokens = Math.max(CHUNK, sliceTokens);

        uploadSlopes(spec);
        upload(stateA, state.toBytes());
        stateB.ensure(stateBytes);
        Buffer incoming = stateA;
        Buffer result = stateB;
        String kernel = "";
        try {
            for (int from = 0; from < n; from += (int) Math.min(sliceTokens, n - from)) {
                int len = (int) Math.min(sliceTokens, n - from);
                kernel = "copy to device";
                upload(kDev, k.slice(from, len).bytes());
                upload(vDev, v.slice(from, len).bytes());
                if (outputs) {
                    upload(qDev, q.slice(from, len).bytes());
                    oDev.ensure((long) len * heads * dv * dtype.bytes());
                }
                kernel = launchWindow(spec, dtype, len, outputs, incoming, result);
                if (outputs) {
                    kernel = "copy to host";
                    TokenTensor out = o.slice(from, len);
                    out.putBytes(download(oDev, (long) len * heads * dv * dtype.bytes()));
                }
                Buffer t = incoming;
                incoming = result;
                result = t;
            }
            kernel = "copy to host";
            ByteBuffer finalBytes = download(incoming, stateBytes);
            return LightningState.fromBytes(heads, dk, dv, finalBytes);
        } catch (CudaException e) {
            device.noteError(e);
            boolean outOfMemory = String.valueOf(e.getMessage()).contains("OUT_OF_MEMORY");
            if (outOfMemory && sliceTokens > CHUNK) {
                // Shrink the work per launch and try again: half the slice, down to one chunk.
                releaseBuffers();
                long smaller = Math.max(CHUNK, sliceTokens / 2 / CHUNK * CHUNK);
                long budget = fixed + smaller * tokenBytes;
                System.err.println("lightning: GPU " + device + " out of memory for slices of " + sliceTokens
                        + " tokens; retrying with " + smaller);
                CudaBackend.this.memoryBudget = Math.min(memoryBudget, budget);
                return run(spec, q, k, v, state, o);
            }
            String what = "GPU " + device + ": " + kernel + " failed on a window of " + n + " tokens [H=" + heads + ", Dk="
                    + dk + ", Dv=" + dv + ", " + dtype + "]: " + e.getMessage();
            if (outOfMemory) {
                throw new DeviceMemoryException(what + " (even one chunk per launch does not fit)", e);
            }
            throw new IllegalStateException(what, e);
        }
    }

    /** Launches the kernels for one slice on the stream; returns the last kernel's name. */
    private String launchWindow(AttentionSpec spec, DType dtype, int n, boolean outputs, Buffer incoming, Buffer result) {
        int heads = spec.heads();
        int dk = spec.dk();
        int dv = spec.dv();
        String type = dtype == DType.F32 ? "f32" : dtype == DType.BF16 ? "bf16" : "f16";
        boolean tc = tensorCores && dtype != DType.F32 && device.has("lightning_forward_tc_bf16");
        // Hopper (wgmma) kernels where the device has them and Dk fits; Dv <= 64 would leave half
        // of their 128 columns idle, so the mma.sync kernels (64 columns a CTA) keep those.
        boolean hopper = tc && hopperKernels && dk <= TensorCoreLayout.HOPPER_MAX_DK && dv > TensorCoreLayout.COLUMNS
                && device.has("lightning_forward_wg_" + type);
        int bv;
        int threads;
        int smemForward;
        int smemStates;
        String forward;
        String states;
        if (hopper) {
            bv = TensorCoreLayout.HOPPER_COLUMNS;
            threads = TensorCoreLayout.HOPPER_THREADS;
            smemForward = TensorCoreLayout.hopperSharedBytes(dk, true);
            smemStates = TensorCoreLayout.hopperSharedBytes(dk, false);
            forward = "lightning_forward_wg_" + type;
            states = "lightning_states_wg_" + type;
        } else if (tc) {
            bv = TensorCoreLayout.COLUMNS;
            threads = TensorCoreLayout.threads(dk);
            smemForward = smemStates = tcSharedBytes(dk);
            forward = "lightning_forward_tc_" + type + TensorCoreLayout.kernelSuffix(dk);
            states = "lightning_states_tc_" + type + TensorCoreLayout.kernelSuffix(dk);
        } else {
            bv = GENERIC_BV;
            threads = GENERIC_THREADS;
            smemForward = smemStates = genericSharedBytes(dk);
            forward = "lightning_forward_generic_" + type;
            states = "lightning_states_generic_" + type;
        }
        lastKernels = forward;
        int columnTiles = (dv + bv - 1) / bv;
        int ctasPerSegment = heads * columnTiles;
        int resident = device.multiprocessors * Math.max(1, device.maxSharedPerMultiprocessor / (smemForward + 1024));
        SegmentPlan plan = SegmentPlan.of(n, ctasPerSegment, resident, minSegments);
        int segments = plan.segments();
        int segTokens = plan.segTokens();
        lastSegments = segments;
        long stateBytes = (long) spec.stateSize() * 4;
        int per = spec.stateSize();
        int scanBlocks = (per + 255) / 256;

        if (!outputs) {
            // pass 1 alone (advance): local states of every segment, then the scan to the final state
            segmentStates.ensure(stateBytes * segments);
            launch(states, heads, columnTiles, segments, threads, smemStates, Pointer.to(
                    Pointer.to(kDev.ptr), Pointer.to(vDev.ptr), ints(n), ints(heads), ints(dk), ints(dv),
                    ints(segTokens), Pointer.to(slopesDev.ptr), Pointer.to(segmentStates.ptr)));
            launch("lightning_scan", scanBlocks, 1, 1, 256, 0, Pointer.to(
                    Pointer.to(segmentStates.ptr), ints(segments), ints(1), ints(segTokens), ints(n),
                    Pointer.to(incoming.ptr), Pointer.to(new CUdeviceptr()), ints(0), Pointer.to(result.ptr),
                    ints(heads), ints(dk), ints(dv), Pointer.to(slopesDev.ptr)));
            return "lightning_scan";
        }
        lastPass1Tokens = plan.pass1Tokens();
        if (segments == 1) {
            // one segment: its CTAs start from the incoming state and write the state after it
            launch(forward, heads, columnTiles, 1, threads, smemForward, Pointer.to(
                    Pointer.to(qDev.ptr), Pointer.to(kDev.ptr), Pointer.to(vDev.ptr), Pointer.to(oDev.ptr), ints(n),
                    ints(heads), ints(dk), ints(dv), ints(segTokens), Pointer.to(slopesDev.ptr),
                    Pointer.to(new float[] {(float) spec.scale()}), Pointer.to(incoming.ptr), Pointer.to(result.ptr)));
            return forward;
        }
        // Pass 1: local states of the tokens before the last segment, in sub-segments (SegmentPlan).
        int before = segments - 1;
        int every = plan.every();
        int subTokens = plan.subTokens();
        int locals = plan.locals();
        segmentStates.ensure(stateBytes * locals);
        segmentIncoming.ensure(stateBytes * segments);
        stateScratch.ensure(stateBytes * segments);
        launch(states, heads, columnTiles, locals, threads, smemStates, Pointer.to(
                Pointer.to(kDev.ptr), Pointer.to(vDev.ptr), ints(before * segTokens), ints(heads), ints(dk), ints(dv),
                ints(subTokens), Pointer.to(slopesDev.ptr), Pointer.to(segmentStates.ptr)));
        launch("lightning_scan", scanBlocks, 1, 1, 256, 0, Pointer.to(
                Pointer.to(segmentStates.ptr), ints(locals), ints(every), ints(subTokens), ints(n),
                Pointer.to(incoming.ptr), Pointer.to(segmentIncoming.ptr), ints(segments), Pointer.to(new CUdeviceptr()),
                ints(heads), ints(dk), ints(dv), Pointer.to(slopesDev.ptr)));
        // Outputs; the per-segment states-after go to scratch, and the last one is the window's.
        launch(forward, heads, columnTiles, segments, threads, smemForward, Pointer.to(
                Pointer.to(qDev.ptr), Pointer.to(kDev.ptr), Pointer.to(vDev.ptr), Pointer.to(oDev.ptr), ints(n),
                ints(heads), ints(dk), ints(dv), ints(segTokens), Pointer.to(slopesDev.ptr),
                Pointer.to(new float[] {(float) spec.scale()}), Pointer.to(segmentIncoming.ptr),
                Pointer.to(stateScratch.ptr)));
        JCudaDriver.cuMemcpyDtoDAsync(result.ptr, stateScratch.ptr.withByteOffset(stateBytes * before), stateBytes, stream);
        return forward;
    }

    private void launch(String kernel, int gx, int gy, int gz, int threads, int smem, Pointer params) {
        CUfunction f = device.function(kernel);
        JCudaDriver.cuLaunchKernel(f, gx, gy, gz, threads, 1, 1, smem, stream, params, null);
    }

    /** Dynamic shared memory of the float32 kernels; the same formula as lightning.cu. */
    static int genericSharedBytes(int dk) {
        return 4 * ((CHUNK + 4) + 2 * CHUNK * (dk + 1) + CHUNK * GENERIC_BV + CHUNK * (CHUNK + 1) + dk * GENERIC_BV);
    }

    /** Dynamic shared memory of the tensor-core kernels; the same formula as tensor_core.cuh. */
    static int tcSharedBytes(int dk) {
        return TensorCoreLayout.sharedBytes(dk);
    }

    private static Pointer ints(int v) {
        return Pointer.to(new int[] {v});
    }

    /** The per-head decay rates as the kernels read them: float32 on the device. */
    private void uploadSlopes(AttentionSpec spec) {
        ByteBuffer b = ByteBuffer.allocate(spec.heads() * 4).order(ByteOrder.LITTLE_ENDIAN);
        for (int h = 0; h < spec.heads(); h++) {
            b.putFloat(h * 4, (float) spec.slope(h));
        }
        upload(slopesDev, b);
    }

    private void upload(Buffer dst, byte[] bytes) {
        upload(dst, ByteBuffer.wrap(bytes));
    }

    /** Host bytes -> pinned staging -> device, ordered on the stream. */
    private void upload(Buffer dst, ByteBuffer src) {
        long len = src.remaining();
        dst.ensure(len);
        hostIn.ensure(len);
        JCudaDriver.cuStreamSynchronize(stream); // the staging buffer may still feed an earlier copy
        ByteBuffer staging = hostIn.host.getByteBuffer(0, len);
        staging.put(src.duplicate());
        JCudaDriver.cuMemcpyHtoDAsync(dst.ptr, hostIn.host, len, stream);
    }

    /** Device -> pinned staging, waits for the stream, returns a view of the staging bytes. */
    private ByteBuffer download(Buffer src, long len) {
        hostOut.ensure(len);
        JCudaDriver.cuMemcpyDtoHAsync(hostOut.host, src.ptr, len, stream);
        JCudaDriver.cuStreamSynchronize(stream);
        return hostOut.host.getByteBuffer(0, len).order(ByteOrder.LITTLE_ENDIAN);
    }

    // ---------------------------------------------------------------- benchmark support (DeviceBench)

    /** Fills q, k, v of an n-token window on the device with uniform values; zero incoming state. */
    void prepareResident(AttentionSpec spec, DType dtype, int n, long seed) {
        device.makeCurrent();
        int heads = spec.heads();
        long qk = (long) n * heads * spec.dk();
        long vo = (long) n * heads * spec.dv();
        qDev.ensure(qk * dtype.bytes());
        kDev.ensure(qk * dtype.bytes());
        vDev.ensure(vo * dtype.bytes());
        oDev.ensure(vo * dtype.bytes());
        String fill = "lightning_fill_uniform_" + (dtype == DType.F32 ? "f32" : dtype == DType.BF16 ? "bf16" : "f16");
        Buffer[] targets = {qDev, kDev, vDev};
        long[] counts = {qk, qk, vo};
        for (int i = 0; i < 3; i++) {
            launch(fill, 4 * device.multiprocessors, 1, 1, 256, 0, Pointer.to(Pointer.to(targets[i].ptr),
                    Pointer.to(new long[] {counts[i]}), Pointer.to(new long[] {seed * 3 + i})));
        }
        uploadSlopes(spec);
        upload(stateA, new byte[spec.stateSize() * 4]);
        stateB.ensure((long) spec.stateSize() * 4);
        JCudaDriver.cuStreamSynchronize(stream);
    }

    /** Times pass 1 + scan + pass 2 over the resident window with device events; median of runs, in ms. */
    float timeResident(AttentionSpec spec, DType dtype, int n, int runs) {
        device.makeCurrent();
        launchWindow(spec, dtype, n, true, stateA, stateB); // warm-up: module JIT, first touch
        return medianMillis(runs, () -> launchWindow(spec, dtype, n, true, stateA, stateB));
    }

    /** Median over runs of the device time of what {@code work} enqueues on the stream, in ms. */
    private float medianMillis(int runs, Runnable work) {
        jcuda.driver.CUevent start = new jcuda.driver.CUevent();
        jcuda.driver.CUevent end = new jcuda.driver.CUevent();
        JCudaDriver.cuEventCreate(start, 0);
        JCudaDriver.cuEventCreate(end, 0);
        try {
            float[] times = new float[runs];
            for (int r = 0; r < runs; r++) {
                JCudaDriver.cuEventRecord(start, stream);
                work.run();
                JCudaDriver.cuEventRecord(end, stream);
                JCudaDriver.cuEventSynchronize(end);
                float[] ms = new float[1];
                JCudaDriver.cuEventElapsedTime(ms, start, end);
                times[r] = ms[0];
            }
            java.util.Arrays.sort(times);
            return times[runs / 2];
        } finally {
            JCudaDriver.cuEventDestroy(start);
            JCudaDriver.cuEventDestroy(end);
        }
    }

    /** The resident window's q, k, v and o, and the final state, copied to the host. */
    TokenTensor[] readResident(AttentionSpec spec, DType dtype, int n) {
        int heads = spec.heads();
        TokenTensor q = TokenTensor.allocate(dtype, n, heads, spec.dk());
        TokenTensor k = TokenTensor.allocate(dtype, n, heads, spec.dk());
        TokenTensor v = TokenTensor.allocate(dtype, n, heads, spec.dv());
        TokenTensor o = TokenTensor.allocate(dtype, n, heads, spec.dv());
        q.putBytes(download(qDev, (long) n * heads * spec.dk() * dtype.bytes()));
        k.putBytes(download(kDev, (long) n * heads * spec.dk() * dtype.bytes()));
        v.putBytes(download(vDev, (long) n * heads * spec.dv() * dtype.bytes()));
        o.putBytes(download(oDev, (long) n * heads * spec.dv() * dtype.bytes()));
        return new TokenTensor[] {q, k, v, o};
    }

    /** Device-to-device copy bandwidth, bytes read plus written per second, over a copy of {@code bytes}. */
    double copyBandwidth(long bytes, int runs) {
        device.makeCurrent();
        Buffer a = new Buffer(false);
        Buffer b = new Buffer(false);
        try {
            a.ensure(bytes);
            b.ensure(bytes);
            Runnable copy = () -> JCudaDriver.cuMemcpyDtoDAsync(b.ptr, a.ptr, bytes, stream);
            copy.run(); // warm-up
            return 2.0 * bytes / (medianMillis(runs, copy) / 1e3);
        } finally {
            a.free();
            b.free();
            buffers.remove(a);
            buffers.remove(b);
        }
    }

    /** Frees the window buffers now (the benchmark moves between very different sizes). */
    void releaseBuffers() {
        JCudaDriver.cuStreamSynchronize(stream);
        for (Buffer b : buffers) {
            b.free();
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        device.makeCurrent();
        try {
            JCudaDriver.cuStreamSynchronize(stream);
        } finally {
            for (Buffer b : buffers) {
                b.free();
            }
            JCudaDriver.cuStreamDestroy(stream);
        }
    }

    /** A device or pinned host allocation that grows to the largest size asked for. */
    private final class Buffer {
        final boolean pinned;
        CUdeviceptr ptr = new CUdeviceptr();
        Pointer host = new Pointer();
        long capacity;

        Buffer(boolean pinned) {
            this.pinned = pinned;
            buffers.add(this);
        }

        void ensure(long bytes) {
            if (bytes <= capacity) {
                return;
            }
            JCudaDriver.cuStreamSynchronize(stream);
            free();
            long size = Math.max(bytes, 1);
            if (pinned) {
                host = new Pointer();
                JCudaDriver.cuMemAllocHost(host, size);
            } else {
                ptr = new CUdeviceptr();
                JCudaDriver.cuMemAlloc(ptr, size);
            }
            capacity = size;
        }

        void free() {
            if (capacity == 0) {
                return;
            }
            if (pinned) {
                JCudaDriver.cuMemFreeHost(host);
            } else {
                JCudaDriver.cuMemFree(ptr);
            }
            capacity = 0;
        }
    }
}
