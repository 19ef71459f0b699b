package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

/**
 * What the GPU benchmark ({@code dev.lightning.attention.bench.DeviceBench}) reaches inside a
 * {@link CudaBackend}: a window made and kept on the device and timed with device events, the two
 * paths it compares (the two-pass path forced, the serial copies), and what the last window ran.
 * The benchmark lives outside this package; these hooks stay package-private on the backend and
 * are public only here, so that the backend's own surface is what a job uses. Nothing here is
 * needed to compute.
 */
public final class BenchHooks {
    private final CudaBackend backend;

    public BenchHooks(CudaBackend backend) {
        this.backend = backend;
    }

    /** Device-to-device copy bandwidth, bytes read plus written per second, over a copy of {@code bytes}. */
    public double copyBandwidth(long bytes, int runs) {
        return backend.copyBandwidth(bytes, runs);
    }

    /** Fills q, k, v of an n-token window on the device with uniform values; zero incoming state. */
    public void prepareResident(AttentionSpec spec, DType dtype, int n, long seed) {
        backend.prepareResident(spec, dtype, n, seed);
    }

    /** Times pass 1 + scan + pass 2 over the resident window with device events; median of runs, in ms. */
    public float timeResident(AttentionSpec spec, DType dtype, int n, int runs) {
        return backend.timeResident(spec, dtype, n, runs);
    }

    /** One head of the resident window's q, k, v or o ({@code which} 0 to 3), [n, 1, D], copied alone. */
    public TokenTensor readResidentHead(AttentionSpec spec, DType dtype, int n, int which, int head) {
        return backend.readResidentHead(spec, dtype, n, which, head);
    }

    /** Frees the window buffers now (the benchmark moves between very different sizes). */
    public void releaseBuffers() {
        backend.releaseBuffers();
    }

    /** At least this many segments per window (1: as the backend chooses; 2: the two-pass path). */
    public void minSegments(int segments) {
        backend.kernels.perSegment.minSegments = segments;
    }

    /** Whether the Hopper kernels may run (false: the portable mma.sync ones, on a Hopper GPU too). */
    public void hopperKernels(boolean allowed) {
        backend.kernels.hopperKernels = allowed;
    }

    /** Whether slices overlap (the pipeline) or run one after the other (the serial path). */
    public void overlapCopies(boolean overlap) {
        backend.overlapCopies = overlap;
    }

    /** Every window cut into {@code segments} segments of {@code every} pass-1 sub-segments; 0: as planned. */
    public void forcePlan(int segments, int every) {
        backend.kernels.perSegment.forcedPlan = segments < 1 ? null : n -> SegmentPlan.cut(n, segments, every);
    }

    /**
     * Every window cut unevenly: a lead of {@code leadChunks} chunks, pass 1 over it in {@code every}
     * sub-segments, then the rest ({@code SegmentPlan.cutLead}); 0: as planned.
     */
    public void forceLead(int leadChunks, int every) {
        backend.kernels.perSegment.forcedPlan = leadChunks < 1 ? null : n -> SegmentPlan.cutLead(n, leadChunks, every);
    }

    /** Lets the Hopper kernels take narrow heads too (Dk, Dv <= 64), which they pad: timing only. */
    public void hopperAnyWidth(boolean allowed) {
        backend.kernels.hopperAnyWidth = allowed;
    }

    /** Whether Dk = Dv = 64 runs the paired Hopper kernels (false: the unpaired choice, as before them). */
    public void hopperPairs(boolean allowed) {
        backend.kernels.hopperPairs = allowed;
    }

    /** Whether Dk <= 64 runs the "_n64" kernels (false: the narrow kernels, as before them). */
    public void smallKernels(boolean allowed) {
        backend.kernels.smallKernels = allowed;
    }

    /**
     * The segment plan of the last launched window: segments x tokens (an uneven plan: "+lead=" the
     * first segment's tokens), and pass 1's sub-segments.
     */
    public String lastPlan() {
        SegmentPlan p = backend.kernels.lastPlan;
        return p == null ? "none" : p.segments() + "x" + p.segTokens() + (p.uneven() ? "+lead=" + p.lead() : "")
                + "/pass1=" + p.locals() + "x" + p.subTokens();
    }

    /** Segments of the last launched window. */
    public int lastSegments() {
        return backend.kernels.lastSegments;
    }

    /** The forward kernel of the last launched window. */
    public String lastKernels() {
        return backend.kernels.lastKernels;
    }

    /** Tokens pass 1 covered in the last launched window with outputs. */
    public long lastPass1Tokens() {
        return backend.kernels.lastPass1Tokens;
    }

    /** Slices of the last window run through forward() or advance(). */
    public int lastSlices() {
        return backend.lastSlices;
    }

    /** Threads of the staging copies (1: one thread, as the pipeline first did). */
    public void copyThreads(int threads) {
        backend.copyThreads(threads);
    }

    /**
     * Host time of the last window, in ms: staging q, k, v into pinned memory, unstaging o from it,
     * and waiting on the device.
     */
    public double[] lastHostStagesMillis() {
        return backend.lastHostStagesMillis();
    }

    /** Pinned copy rates host to device and device to host, bytes per second, over copies of {@code bytes}. */
    public double[] pinnedCopyRates(long bytes, int runs) {
        return backend.pinnedCopyRates(bytes, runs);
    }
}
