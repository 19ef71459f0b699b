package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.cuda.DeviceAllocator.Buffer;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import jcuda.driver.CUDA_MEMCPY2D;
import jcuda.driver.CUevent;
import jcuda.driver.CUmemorytype;
import jcuda.driver.JCudaDriver;

import java.nio.ByteOrder;

/**
 * What the GPU benchmark ({@code dev.lightning.attention.bench.DeviceBench}) reaches inside a
 * {@link CudaBackend}: a window made and kept on the device and timed with device events, copy
 * rates, the two paths it compares (the two-pass path forced, the serial copies), and what the
 * last window ran. The benchmark lives outside this package; this is its public side, and it
 * reaches the backend's parts through package-private accessors, so that the backend's own
 * surface is what a job uses. Nothing here is needed to compute.
 */
public final class BenchHooks {
    private final CudaBackend backend;
    /** The backend's parts the hooks work on (the same objects, not copies). */
    private final CudaDevice device;
    private final DeviceAllocator memory;
    private final SlicePipeline pipeline;
    private final WindowKernels kernels;

    public BenchHooks(CudaBackend backend) {
        this.backend = backend;
        this.device = backend.cudaDevice();
        this.memory = backend.memory();
        this.pipeline = backend.pipeline();
        this.kernels = backend.kernels;
    }

    /** Fills q, k, v of an n-token window on the device with uniform values; zero incoming state. */
    public void prepareResident(AttentionSpec spec, DType dtype, int n, long seed) {
        device.makeCurrent();
        long qn = (long) n * spec.headsQ() * spec.dk();
        long kn = (long) n * spec.headsK() * spec.dk();
        long vn = (long) n * spec.headsV() * spec.dv();
        pipeline.qDev[0].ensure(qn * dtype.bytes());
        pipeline.kDev[0].ensure(kn * dtype.bytes());
        pipeline.vDev[0].ensure(vn * dtype.bytes());
        pipeline.oDev[0].ensure((long) n * spec.heads() * spec.dv() * dtype.bytes());
        String fill = Kernels.fill(dtype);
        Buffer[] targets = {pipeline.qDev[0], pipeline.kDev[0], pipeline.vDev[0]};
        long[] counts = {qn, kn, vn};
        for (int i = 0; i < 3; i++) {
            Kernels.launch(device, pipeline.stream, fill, 4 * device.multiprocessors, 1, 1, 256, 0,
                    Kernels.fillArgs(targets[i].ptr, counts[i], seed * 3 + i));
        }
        kernels.uploadSlopes(spec);
        kernels.upload(kernels.stateA, new byte[Math.toIntExact(spec.stateBytes())]);
        kernels.stateB.ensure(spec.stateBytes());
        JCudaDriver.cuStreamSynchronize(pipeline.stream);
    }

    /** Times pass 1 + scan + pass 2 over the resident window with device events; median of runs, in ms. */
    public float timeResident(AttentionSpec spec, DType dtype, int n, int runs) {
        device.makeCurrent();
        Runnable window = () -> kernels.launchWindow(spec, dtype, n, true, pipeline.qDev[0], pipeline.kDev[0],
                pipeline.vDev[0], pipeline.oDev[0], kernels.stateA, kernels.stateB, Kernels.CheckpointTarget.NONE);
        // Warm-up: the modules' JIT and first touch, and time for the JVM to compile the host's launch path. One
        // window had been the warm-up; where a window launches many kernels (T = 1M, H = 8: 33 segments) the first
        // timings then ran slow: on an H100 (2026-12-05) the first 10 timed windows took 4.86 ms, later ones 4.35
        // to 4.42 ms (the host launching slower than the GPU ran, most likely: the GPU had run the same kernels in
        // the warm-up). With windows until 100 ms have passed, 3 at least, the first timing took 4.345 ms.
        long until = System.nanoTime() + 100_000_000L;
        for (int i = 0; i < 3 || System.nanoTime() < until; i++) {
            window.run();
            JCudaDriver.cuStreamSynchronize(pipeline.stream);
        }
        return medianMillis(runs, window);
    }

    /** Median over runs of the device time of what {@code work} enqueues on the stream, in ms. */
    private float medianMillis(int runs, Runnable work) {
        CUevent start = new CUevent();
        CUevent end = new CUevent();
        JCudaDriver.cuEventCreate(start, 0);
        JCudaDriver.cuEventCreate(end, 0);
        try {
            float[] times = new float[runs];
            for (int r = 0; r < runs; r++) {
                JCudaDriver.cuEventRecord(start, pipeline.stream);
                work.run();
                JCudaDriver.cuEventRecord(end, pipeline.stream);
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

    /** The resident window's q, k, v and o on the device, in that order (readResidentHead's {@code which}). */
    private Buffer[] residentBuffers() {
        return new Buffer[] {pipeline.qDev[0], pipeline.kDev[0], pipeline.vDev[0], pipeline.oDev[0]};
    }

    /**
     * The resident window's q, k, v and o, whole, copied to the host (tests hold readResidentHead against it; a
     * tensor must fit a Java array).
     */
    TokenTensor[] readResident(AttentionSpec spec, DType dtype, int n) {
        TokenTensor q = TokenTensor.allocate(dtype, n, spec.headsQ(), spec.dk());
        TokenTensor k = TokenTensor.allocate(dtype, n, spec.headsK(), spec.dk());
        TokenTensor v = TokenTensor.allocate(dtype, n, spec.headsV(), spec.dv());
        TokenTensor o = TokenTensor.allocate(dtype, n, spec.heads(), spec.dv());
        TokenTensor[] out = {q, k, v, o};
        Buffer[] from = residentBuffers();
        for (int i = 0; i < out.length; i++) {
            out[i].putBytes(kernels.download(from[i], (long) n * out[i].tokenBytes()));
        }
        return out;
    }

    /**
     * One head of the resident window's q, k, v or o ({@code which} 0 to 3), [n, 1, D]: a strided copy of
     * that head's rows alone, so that a window whose tensors exceed a Java array (T = 1M, H = 64, D = 128:
     * 16 GiB each) can still be checked head by head.
     */
    public TokenTensor readResidentHead(AttentionSpec spec, DType dtype, int n, int which, int head) {
        int[] heads = {spec.headsQ(), spec.headsK(), spec.headsV(), spec.heads()};
        Buffer[] from = residentBuffers();
        if (which < 0 || which > 3 || head < 0 || head >= heads[which]) {
            throw new IllegalArgumentException("tensor " + which + " (0..3: q, k, v, o), head " + head
                    + ": no such head; it has " + (which < 0 || which > 3 ? 0 : heads[which]));
        }
        device.makeCurrent();
        long row = (long) (which < 2 ? spec.dk() : spec.dv()) * dtype.bytes();
        long len = n * row;
        kernels.hostOut.ensure(len);
        CUDA_MEMCPY2D copy = new CUDA_MEMCPY2D();
        copy.srcMemoryType = CUmemorytype.CU_MEMORYTYPE_DEVICE;
        copy.srcDevice = from[which].ptr.withByteOffset(head * row);
        copy.srcPitch = heads[which] * row;
        copy.dstMemoryType = CUmemorytype.CU_MEMORYTYPE_HOST;
        copy.dstHost = kernels.hostOut.host;
        copy.dstPitch = row;
        copy.WidthInBytes = row;
        copy.Height = n;
        JCudaDriver.cuMemcpy2DAsync(copy, pipeline.stream);
        JCudaDriver.cuStreamSynchronize(pipeline.stream);
        TokenTensor out = TokenTensor.allocate(dtype, n, 1, (int) (row / dtype.bytes()));
        out.putBytes(kernels.hostOut.host.getByteBuffer(0, len).order(ByteOrder.LITTLE_ENDIAN));
        return out;
    }

    /** The memory's peak rate as the segment plans read it ({@link CudaDevice#memoryBytesPerSecond}), bytes a second. */
    public double memoryPeak() {
        return device.memoryBytesPerSecond;
    }

    /** Device-to-device copy bandwidth, bytes read plus written per second, over a copy of {@code bytes}. */
    public double copyBandwidth(long bytes, int runs) {
        device.makeCurrent();
        Buffer a = memory.device("bandwidth source");
        Buffer b = memory.device("bandwidth target");
        try {
            a.ensure(bytes);
            b.ensure(bytes);
            Runnable copy = () -> JCudaDriver.cuMemcpyDtoDAsync(b.ptr, a.ptr, bytes, pipeline.stream);
            copy.run(); // warm-up
            return 2.0 * bytes / (medianMillis(runs, copy) / 1e3);
        } finally {
            a.close();
            b.close();
        }
    }

    /**
     * Pinned copy rates between host memory registered here and the device, host to device and
     * device to host, in bytes per second, over copies of {@code bytes} (at most 2 GiB); median of runs.
     */
    public double[] pinnedCopyRates(long bytes, int runs) {
        device.makeCurrent();
        Buffer host = memory.registered("copy rate host", HostTensors.guarded(bytes));
        Buffer dev = memory.device("copy rate device");
        try {
            dev.ensure(bytes);
            Runnable in = () -> JCudaDriver.cuMemcpyHtoDAsync(dev.ptr, host.host, bytes, pipeline.stream);
            Runnable out = () -> JCudaDriver.cuMemcpyDtoHAsync(host.host, dev.ptr, bytes, pipeline.stream);
            in.run(); // warm-up
            out.run();
            return new double[] {bytes / (medianMillis(runs, in) / 1e3), bytes / (medianMillis(runs, out) / 1e3)};
        } finally {
            JCudaDriver.cuStreamSynchronize(pipeline.stream);
            dev.close();
            host.close();
        }
    }

    /** Frees the window buffers now (the benchmark moves between very different sizes). */
    public void releaseBuffers() {
        backend.releaseBuffers();
    }

    /** At least this many segments per window (1: as the backend chooses; 2: the two-pass path). */
    public void minSegments(int segments) {
        kernels.perSegment.minSegments = segments;
    }

    /** Whether the Hopper kernels may run (false: the portable mma.sync ones, on a Hopper GPU too). */
    public void hopperKernels(boolean allowed) {
        kernels.hopperKernels = allowed;
    }

    /** A block's most dynamic shared memory on an A100, for {@link #sharedLimit} (Kernels owns the figure). */
    public static final int A100_SHARED_BYTES = Kernels.A100_SHARED_BYTES;
    /** The same on GPUs of compute capability 8.6, 8.9 and 12.0 (L40S, L4, A10, RTX). */
    public static final int SMALL_SHARED_BYTES = Kernels.SMALL_SHARED_BYTES;

    /**
     * The most dynamic shared memory a block may have, for the kernel choice (Kernels.Allowed#sharedLimit): less
     * than the device's runs here what a GPU of that limit runs ({@link #A100_SHARED_BYTES},
     * {@link #SMALL_SHARED_BYTES}).
     */
    public void sharedLimit(int bytes) {
        kernels.sharedLimit = Math.min(bytes, device.maxSharedPerBlock);
    }

    /** Whether slices overlap (the pipeline) or run one after the other (the serial path). */
    public void overlapCopies(boolean overlap) {
        backend.overlapCopies = overlap;
    }

    /** Every window cut into {@code segments} segments of {@code every} pass-1 sub-segments; 0: as planned. */
    public void forcePlan(int segments, int every) {
        kernels.perSegment.forcedPlan = segments < 1 ? null : n -> SegmentPlan.cut(n, segments, every);
    }

    /**
     * Every window cut unevenly: a lead of {@code leadChunks} chunks, pass 1 over it in {@code every}
     * sub-segments, then the rest ({@code SegmentPlan.cutLead}); 0: as planned.
     */
    public void forceLead(int leadChunks, int every) {
        kernels.perSegment.forcedPlan = leadChunks < 1 ? null : n -> SegmentPlan.cutLead(n, leadChunks, every);
    }

    /** Lets the Hopper kernels take narrow heads too (Dk, Dv <= 64), which they pad: timing only. */
    public void hopperAnyWidth(boolean allowed) {
        kernels.hopperAnyWidth = allowed;
    }

    /** Whether Dk = Dv = 64 runs the paired Hopper kernels (false: the unpaired choice, as before them). */
    public void hopperPairs(boolean allowed) {
        kernels.hopperPairs = allowed;
    }

    /** Whether Dk <= 64 runs the "_n64" kernels (false: the narrow kernels, as before them). */
    public void smallKernels(boolean allowed) {
        kernels.smallKernels = allowed;
    }

    /**
     * The segment plan of the last launched window: segments x tokens (an uneven plan: "+lead=" the
     * first segment's tokens), and pass 1's sub-segments.
     */
    public String lastPlan() {
        SegmentPlan p = kernels.lastPlan;
        return p == null ? "none" : p.segments() + "x" + p.segTokens() + (p.uneven() ? "+lead=" + p.lead() : "")
                + "/pass1=" + p.locals() + "x" + p.subTokens();
    }

    /** Segments of the last launched window. */
    public int lastSegments() {
        return kernels.lastSegments;
    }

    /** The forward kernel of the last launched window. */
    public String lastKernels() {
        return kernels.lastKernels;
    }

    /** Tokens pass 1 covered in the last launched window with outputs. */
    public long lastPass1Tokens() {
        return kernels.lastPass1Tokens;
    }

    /** Slices of the last window run through forward() or advance(). */
    public int lastSlices() {
        return backend.lastSlices;
    }

    /** Threads of the staging copies (1: one thread, as the pipeline first did; tests). */
    public void copyThreads(int threads) {
        pipeline.copies = new HostCopies(threads);
    }

    /**
     * Host time of the last window, in ms: staging q, k, v into pinned memory, unstaging o from it,
     * and waiting on the device.
     */
    public double[] lastHostStagesMillis() {
        return new double[] {pipeline.stagedNanos / 1e6, pipeline.unstagedNanos / 1e6, pipeline.waitedNanos / 1e6};
    }
}
