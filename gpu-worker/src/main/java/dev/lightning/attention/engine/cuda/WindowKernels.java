package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.cuda.DeviceAllocator.Buffer;
import dev.lightning.attention.tensor.DType;
import jcuda.driver.CUstream;
import jcuda.driver.JCudaDriver;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;

/**
 * A backend's side of a window on its pipeline's kernel stream ({@link SlicePipeline.KernelSide}):
 * the slopes and the incoming state uploaded before the first slice, the two carried states the
 * slices pass between them, each slice's kernels, chosen by {@link Kernels} and launched over the
 * slice's segments ({@link SegmentStates}), and the final state downloaded. All of it is enqueued
 * on that one stream, in order.
 *
 * <p>Every variant of the spec runs here: grouped heads (q, k, v and o move with their own token
 * sizes), feature maps, normalization (the carried states hold S then z, as
 * {@link LightningState#toBytes} does; per-segment states keep S and z in separate arrays, as the
 * kernels' struct points at them) and checkpoints, which each slice's forward kernel writes into a
 * device buffer of its buffer set (every segment its own, from its incoming state) and which come
 * back with the slice's o.
 */
final class WindowKernels implements SlicePipeline.KernelSide {
    private final CudaDevice device;
    /** The pipeline's kernel stream: kernels, and everything that must stay in order with them. */
    private final CUstream stream;
    /** Use the tensor-core kernels for BF16/F16 input (false: float32 kernels). */
    final boolean tensorCores;
    private final Buffer slopesDev;
    /** The carried states a window's slices pass between them (begin() fills A). */
    final Buffer stateA;
    final Buffer stateB;
    /** The segments' plans and their states' buffers. */
    final SegmentStates perSegment;
    /** Small uploads on the kernel stream (slopes, state). */
    private final Buffer hostIn;
    /** Downloads on the kernel stream (final state, the benchmark's resident window). */
    final Buffer hostOut;
    /** Whether the Hopper kernels may run (tests turn them off to check the portable ones there). */
    boolean hopperKernels = true;
    /** Whether the Hopper kernels take also Dk <= 64 and Dv <= 64 (benchmark only: to time them there). */
    boolean hopperAnyWidth;
    /** Whether Dk <= 64 runs the "_n64" mma.sync kernels (false: the narrow ones, benchmark only: A/B). */
    boolean smallKernels = true;
    /** Whether Dk = Dv = 64 runs the paired Hopper kernels where they fit (false: benchmark only: A/B). */
    boolean hopperPairs = true;
    /**
     * The most dynamic shared memory a block may have (Kernels.Allowed#sharedLimit): the device's; tests
     * give less, to run here the kernels and stage counts of GPUs with less shared memory.
     */
    int sharedLimit;
    /** Segments of the last launched window (for the benchmark's report). */
    int lastSegments;
    /** The segment plan of the last launched window (for the benchmark's report). */
    SegmentPlan lastPlan;
    /** The forward kernel of the last launched window (for the benchmark's report). */
    String lastKernels = "";
    /** Tokens pass 1 covered in the last launched window with outputs (for the benchmark's report). */
    long lastPass1Tokens;

    /** Makes the buffers (empty until a window sizes them) in {@code memory}, for launches on {@code stream}. */
    WindowKernels(CudaDevice device, DeviceAllocator memory, CUstream stream, boolean tensorCores) {
        this.device = device;
        this.stream = stream;
        this.tensorCores = tensorCores;
        this.sharedLimit = device.maxSharedPerBlock;
        this.slopesDev = memory.device("slopes");
        this.stateA = memory.device("state A");
        this.stateB = memory.device("state B");
        this.perSegment = new SegmentStates(memory, device);
        this.hostIn = memory.pinned("upload staging");
        this.hostOut = memory.pinned("download staging");
    }

    @Override
    public void begin(AttentionSpec spec, LightningState state) {
        uploadSlopes(spec);
        upload(stateA, state.toBytes());
        stateB.ensure(spec.stateBytes());
    }

    @Override
    public void reserveSegments(AttentionSpec spec, DType dtype, int n, boolean outputs, boolean checkpoints) {
        perSegment.reserveSegments(spec, kernels(spec, dtype, checkpoints), n, outputs);
    }

    @Override
    public String launch(AttentionSpec spec, DType dtype, int n, boolean outputs, Buffer q, Buffer k, Buffer v,
                         Buffer o, Buffer incoming, Buffer result, Kernels.CheckpointTarget checkpoints) {
        return launchWindow(spec, dtype, n, outputs, q, k, v, o, incoming, result, checkpoints);
    }

    @Override
    public String lastKernels() {
        return lastKernels;
    }

    private Kernels.Choice kernels(AttentionSpec spec, DType dtype, boolean checkpoints) {
        return Kernels.choose(device,
                new Kernels.Allowed(tensorCores, hopperKernels, hopperAnyWidth, hopperPairs, smallKernels, sharedLimit),
                dtype,
                spec, checkpoints);
    }

    /** The kernels a window of {@code spec} without checkpoints runs on (tests: which family was taken). */
    Kernels.Choice kernelsFor(AttentionSpec spec, DType dtype) {
        return kernels(spec, dtype, false);
    }

    /**
     * The most bytes the per-segment state buffers take for any window of {@code spec} on the kernels
     * it runs on ({@link SegmentStates#segmentStateBytes}).
     */
    long segmentStateBytes(AttentionSpec spec, DType dtype, boolean checkpoints) {
        return perSegment.segmentStateBytes(spec, kernels(spec, dtype, checkpoints));
    }

    /**
     * Launches the kernels for one slice on the kernel stream, reading q, k, v and writing o (q and
     * o unused without outputs) and the slice's checkpoints; returns the last kernel's name. The
     * carried states {@code incoming} and {@code result} hold S and then z
     * ({@link LightningState#toBytes}'s layout); per-segment states keep S and z in separate arrays.
     */
    String launchWindow(AttentionSpec spec, DType dtype, int n, boolean outputs, Buffer qBuf, Buffer kBuf,
                        Buffer vBuf, Buffer oBuf, Buffer incoming, Buffer result,
                        Kernels.CheckpointTarget checkpoints) {
        int dv = spec.dv();
        Kernels.Choice kn = kernels(spec, dtype, checkpoints.windowRecords());
        int heads = kn.headCtas(spec.heads());  // the grid's x extent (half the heads for the paired kernels)
        String forward = kn.forward();
        String states = kn.states();
        int threads = kn.threads();
        int smemForward = kn.smemForward();
        int smemStates = kn.smemStates();
        lastKernels = forward;
        int columnTiles = kn.columnTiles(dv);
        SegmentPlan plan = perSegment.segmentPlan(spec, kn, n);
        int segments = plan.segments();
        int segTokens = plan.segTokens();
        lastSegments = segments;
        lastPlan = plan;
        long sBytes = LightningState.kvBytes(spec);
        long zBytes = LightningState.normalizerBytes(spec);
        int scanBlocks = (spec.stateSize() + spec.normalizerSize() + Kernels.SCAN_THREADS - 1) / Kernels.SCAN_THREADS;
        perSegment.ensureSegmentBuffers(spec, plan, outputs);
        KernelArgs common = Kernels.common(spec, n, slopesDev.ptr);
        Kernels.States before = Kernels.States.packed(spec, incoming.ptr);
        Kernels.States after = Kernels.States.packed(spec, result.ptr);
        Kernels.States locals = SegmentStates.segmentArrays(spec, perSegment.segmentStates,
                perSegment.segmentStatesNorm);

        int lead = plan.lead();
        if (!outputs) {
            // pass 1 alone (advance): local states of every segment (an uneven plan's lead first),
            // then the scan over them, pieces of the segments' own lengths, to the final state
            launch(states, heads, columnTiles, segments, threads, smemStates,
                    Kernels.statesArgs(common, kBuf.ptr, vBuf.ptr, segTokens, lead, locals));
            launch(Kernels.SCAN, scanBlocks, 1, 1, Kernels.SCAN_THREADS, 0, Kernels.scanArgs(common, locals, segments,
                    1, segTokens, lead, before, Kernels.States.NONE, 0, after));
            return Kernels.SCAN;
        }
        lastPass1Tokens = plan.pass1Tokens();
        if (segments == 1) {
            // one segment: its CTAs start from the incoming state and write the state after it
            launch(forward, heads, columnTiles, 1, threads, smemForward, Kernels.forwardArgs(common, qBuf.ptr,
                    kBuf.ptr, vBuf.ptr, oBuf.ptr, segTokens, lead, before, after, checkpoints));
            return forward;
        }
        // Pass 1: local states of the tokens before the last segment (an uneven plan: the lead), in
        // even sub-segments (SegmentPlan); the scan's incoming state of segment s is the one after s
        // x every of them, which is the lead's end for s = 1 in an uneven plan too.
        int last = segments - 1;
        Kernels.States segmentIn = SegmentStates.segmentArrays(spec, perSegment.segmentIncoming,
                perSegment.segmentIncomingNorm);
        Kernels.States segmentAfter = SegmentStates.segmentArrays(spec, perSegment.stateScratch,
                perSegment.stateScratchNorm);
        KernelArgs pass1 = Kernels.common(spec, Math.toIntExact(plan.pass1Tokens()), slopesDev.ptr);
        launch(states, heads, columnTiles, plan.locals(), threads, smemStates,
                Kernels.statesArgs(pass1, kBuf.ptr, vBuf.ptr, plan.subTokens(), plan.subTokens(), locals));
        launch(Kernels.SCAN, scanBlocks, 1, 1, Kernels.SCAN_THREADS, 0, Kernels.scanArgs(common, locals,
                plan.locals(), plan.every(), plan.subTokens(), plan.subTokens(), before, segmentIn, segments,
                Kernels.States.NONE));
        // Outputs (and every segment's own checkpoints); the per-segment states-after go to scratch,
        // and the last segment's (it holds the window's last token, uneven plans too) is the window's.
        launch(forward, heads, columnTiles, segments, threads, smemForward, Kernels.forwardArgs(common, qBuf.ptr,
                kBuf.ptr, vBuf.ptr, oBuf.ptr, segTokens, lead, segmentIn, segmentAfter, checkpoints));
        JCudaDriver.cuMemcpyDtoDAsync(result.ptr, perSegment.stateScratch.ptr.withByteOffset(sBytes * last), sBytes,
                stream);
        if (spec.normalized()) {
            JCudaDriver.cuMemcpyDtoDAsync(result.ptr.withByteOffset(sBytes),
                    perSegment.stateScratchNorm.ptr.withByteOffset(zBytes * last), zBytes, stream);
        }
        return forward;
    }

    private void launch(String kernel, int gx, int gy, int gz, int threads, int smem, KernelArgs args) {
        Kernels.launch(device, stream, kernel, gx, gy, gz, threads, smem, args.params());
    }

    /** The per-head decay rates as the kernels read them: float32 on the device. */
    void uploadSlopes(AttentionSpec spec) {
        ByteBuffer b = ByteBuffer.allocate(spec.heads() * 4).order(ByteOrder.LITTLE_ENDIAN);
        for (int h = 0; h < spec.heads(); h++) {
            b.putFloat(h * 4, (float) spec.slope(h));
        }
        upload(slopesDev, b);
    }

    void upload(Buffer dst, byte[] bytes) {
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
    @Override
    public ByteBuffer download(Buffer src, long len) {
        hostOut.ensure(len);
        JCudaDriver.cuMemcpyDtoHAsync(hostOut.host, src.ptr, len, stream);
        JCudaDriver.cuStreamSynchronize(stream);
        return hostOut.host.getByteBuffer(0, len).order(ByteOrder.LITTLE_ENDIAN);
    }

    /** Closes the buffers, going on past failures (collected); the streams must be drained. */
    void closeBuffers(List<RuntimeException> failures) {
        for (Buffer b : new Buffer[] {slopesDev, stateA, stateB}) {
            SlicePipeline.attempt(failures, b::close);
        }
        perSegment.closeBuffers(failures);
        for (Buffer b : new Buffer[] {hostIn, hostOut}) {
            SlicePipeline.attempt(failures, b::close);
        }
    }
}
