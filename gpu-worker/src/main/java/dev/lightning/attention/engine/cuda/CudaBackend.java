package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.DeviceMemoryException;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import jcuda.CudaException;
import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUevent;
import jcuda.driver.CUevent_flags;
import jcuda.driver.CUfunction;
import jcuda.driver.CUstream;
import jcuda.driver.CUstream_flags;
import jcuda.driver.JCudaDriver;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * The GPU backend: one task's streams, events, device buffers and pinned host buffers on a shared
 * {@link CudaDevice}. Buffers grow to the largest window seen and are reused; {@link #close()}
 * frees them (after the streams drain) and destroys the events and streams, also when a task fails.
 *
 * <p>A window large enough for its copies to take real time is cut into slices ({@link SlicePlan})
 * that move through a pipeline of three streams: copies in, kernels, copies out. Two sets of device
 * buffers and of pinned staging buffers take the slices in turn, so that while slice i's kernels
 * run, slice i - 1's o comes back and the host unstages it, and the host stages slice i + 1 and its
 * q, k, v cross PCIe. Events order each set's reuse. The state is carried from slice to slice on
 * the kernel stream. A window larger than the device memory budget is cut the same way.
 *
 * <p>Within a slice, the heads are cut into segments when they alone would leave the GPU idle;
 * segments run in parallel with the device-side two-level scan (local states, float32 exclusive
 * scan, outputs).
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
    /** Kernels, and everything else that must stay in order with them: slopes, state, benchmark. */
    private final CUstream stream = new CUstream();
    /** Slices' q, k, v to the device. */
    private final CUstream copyIn = new CUstream();
    /** Slices' o to the host: its own stream, so it overlaps both the next copies in and the kernels. */
    private final CUstream copyOut = new CUstream();
    /** The streams created so far, in creation order (close() destroys what exists). */
    private final List<CUstream> streams = new ArrayList<>();
    /** The events created so far (close() destroys what exists). */
    private final List<CUevent> events = new ArrayList<>();
    /** Per buffer set: its slice's q, k, v are on the device (staging and set may be reused). */
    private final CUevent[] copiedIn = new CUevent[2];
    /** Per buffer set: its slice's kernels are done (its q, k, v may be overwritten). */
    private final CUevent[] computed = new CUevent[2];
    /** Per buffer set: its slice's o is in the output staging (its o may be overwritten). */
    private final CUevent[] copiedOut = new CUevent[2];
    private final List<Buffer> buffers = new ArrayList<>();
    /** Two sets of device buffers; set 0 is also the benchmark's resident window. */
    private final Buffer[] qDev = {new Buffer(false), new Buffer(false)};
    private final Buffer[] kDev = {new Buffer(false), new Buffer(false)};
    private final Buffer[] vDev = {new Buffer(false), new Buffer(false)};
    private final Buffer[] oDev = {new Buffer(false), new Buffer(false)};
    private final Buffer slopesDev = new Buffer(false);
    private final Buffer stateA = new Buffer(false);
    private final Buffer stateB = new Buffer(false);
    private final Buffer segmentStates = new Buffer(false);
    private final Buffer segmentIncoming = new Buffer(false);
    private final Buffer stateScratch = new Buffer(false);
    /** Per buffer set: a slice's q, k, v, back to back, on their way to the device. */
    private final Buffer[] stagingIn = {new Buffer(true), new Buffer(true)};
    /** Per buffer set: a slice's o on its way back. */
    private final Buffer[] stagingOut = {new Buffer(true), new Buffer(true)};
    /** Small uploads on the kernel stream (slopes, state). */
    private final Buffer hostIn = new Buffer(true);
    /** Downloads on the kernel stream (final state, the benchmark's resident window). */
    private final Buffer hostOut = new Buffer(true);
    private boolean closed;
    /** At least this many segments per window (benchmark only: to time the two-pass path). */
    int minSegments = 1;
    /** Whether the Hopper kernels may run (tests turn them off to check the portable ones there). */
    boolean hopperKernels = true;
    /**
     * Whether slices overlap (the pipeline); false: the serial path as it was before the pipeline,
     * one slice unless the budget forces more, each slice copied in, computed and copied out before
     * the next (benchmark: the comparison).
     */
    boolean overlapCopies = true;
    /** Slices of this many tokens (rounded up to a chunk, within the budget); 0: as SlicePlan chooses (tests). */
    int forcedSliceTokens;
    /** Segments of the last launched window (for the benchmark's report). */
    int lastSegments;
    /** The forward kernel of the last launched window (for the benchmark's report). */
    String lastKernels = "";
    /** Tokens pass 1 covered in the last launched window with outputs (for the benchmark's report). */
    long lastPass1Tokens;
    /** Slices of the last window run through forward() or advance() (for the benchmark's report). */
    int lastSlices;

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
        try {
            for (CUstream s : new CUstream[] {stream, copyIn, copyOut}) {
                JCudaDriver.cuStreamCreate(s, CUstream_flags.CU_STREAM_NON_BLOCKING);
                streams.add(s);
            }
            for (CUevent[] kind : new CUevent[][] {copiedIn, computed, copiedOut}) {
                for (int b = 0; b < kind.length; b++) {
                    CUevent e = new CUevent();
                    // ordering only: timing would make every record and wait dearer
                    JCudaDriver.cuEventCreate(e, CUevent_flags.CU_EVENT_DISABLE_TIMING);
                    events.add(e);
                    kind[b] = e;
                }
            }
        } catch (RuntimeException | Error e) {
            closed = true;
            release(e);
            throw e;
        }
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
        if (o.dtype() == DType.F32 && q.dtype() != DType.F32) {
            // A float32 o asks for float32 results: 16-bit kernels would round o (and overflow it,
            // for F16) before any widening. 16-bit values widen exactly, so the float32 kernels on
            // the widened inputs compute the same sums, at twice the bytes moved.
            return run(spec, widen(q), widen(k), widen(v), state, o);
        }
        if (o.dtype() != q.dtype()) {
            // a narrower o: the kernels write o in the input's dtype, converted on the host
            TokenTensor same = TokenTensor.allocate(q.dtype(), o.tokens(), o.heads(), o.dim());
            LightningState last = run(spec, q, k, v, state, same);
            o.putBytes(TokenTensor.of(o.dtype(), o.tokens(), o.heads(), o.dim(), same.toFloats()).bytes());
            return last;
        }
        return run(spec, q, k, v, state, o);
    }

    private static TokenTensor widen(TokenTensor x) {
        return TokenTensor.of(DType.F32, x.tokens(), x.heads(), x.dim(), x.toFloats());
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
        long stateBytes = spec.stateBytes();
        long tokenBytes = (long) heads * (2L * dk + dv) * dtype.bytes() + (outputs ? (long) heads * dv * dtype.bytes() : 0);
        // Slices: as many whole chunks as the budget holds, for each buffer set, after the states.
        // State slots: the two carried ones, and per segment (at most resident CTAs / heads of them,
        // resident <= 2 x SMs) a local state, an incoming one and a state-after.
        long headState = LightningState.bytes(1, dk, dv);
        long fixed = stateBytes * 5 + headState * 3 * 2L * device.multiprocessors + heads * 4L;
        SlicePlan plan = SlicePlan.of(n, tokenBytes, memoryBudget - fixed, overlapCopies, forcedSliceTokens);
        lastSlices = plan.slices();
        Pipeline pipeline = new Pipeline(spec, dtype, plan, q, k, v, o);
        try {
            return pipeline.run(state);
        } catch (CudaException e) {
            // Copies and kernels of this window may still be queued: they must end before buffers
            // are freed, or before a later call refills the staging buffers they read and write.
            drainQuietly();
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
                return run(spec, q, k, v, state, o);
            }
            String what = "GPU " + device + ": " + pipeline.step + " failed on a window of " + n + " tokens [H=" + heads
                    + ", Dk=" + dk + ", Dv=" + dv + ", " + dtype + "]: " + e.getMessage();
            if (outOfMemory) {
                throw new DeviceMemoryException(what + " (even one chunk per launch does not fit)", e);
            }
            throw new IllegalStateException(what, e);
        } catch (RuntimeException | Error e) {
            drainQuietly();
            throw e;
        }
    }

    /**
     * One window's slices through the streams. For slice i on buffer set b = i % sets, the slice
     * before it on set b is i - sets: its copies in must have left staging b before the host refills
     * it, its kernels must have read set b before the copies in overwrite it, and its copy out must
     * have read o of set b before the kernels overwrite it.
     */
    private final class Pipeline {
        final AttentionSpec spec;
        final DType dtype;
        final SlicePlan plan;
        /** Null for advance(), as is o. */
        final TokenTensor q;
        final TokenTensor k;
        final TokenTensor v;
        final TokenTensor o;
        /** What was last enqueued or waited for, for the error message. */
        String step = "copy to device";

        Pipeline(AttentionSpec spec, DType dtype, SlicePlan plan, TokenTensor q, TokenTensor k, TokenTensor v,
                 TokenTensor o) {
            this.spec = spec;
            this.dtype = dtype;
            this.plan = plan;
            this.q = q;
            this.k = k;
            this.v = v;
            this.o = o;
        }

        LightningState run(LightningState state) {
            step = "copy to device";
            uploadSlopes(spec);
            upload(stateA, state.toBytes());
            stateB.ensure(spec.stateBytes());
            reserve();
            Buffer incoming = stateA;
            Buffer result = stateB;
            boolean outputs = o != null;
            int sets = plan.sets();
            int finished = 0;
            for (int i = 0; i < plan.slices(); i++) {
                int b = i % sets;
                int len = plan.length(i);
                copyIn(i, b);
                JCudaDriver.cuStreamWaitEvent(stream, copiedIn[b], 0);
                if (outputs && i >= sets) {
                    // the set's previous slice's copy out reads the o these kernels overwrite
                    JCudaDriver.cuStreamWaitEvent(stream, copiedOut[b], 0);
                }
                step = "slice " + i + " of " + plan.slices() + ": kernels";
                step = launchWindow(spec, dtype, len, outputs, outputs ? qDev[b] : null, kDev[b], vDev[b],
                        outputs ? oDev[b] : null, incoming, result);
                JCudaDriver.cuEventRecord(computed[b], stream);
                Buffer t = incoming;
                incoming = result;
                result = t;
                if (outputs) {
                    step = "copy to host";
                    JCudaDriver.cuStreamWaitEvent(copyOut, computed[b], 0);
                    JCudaDriver.cuMemcpyDtoHAsync(stagingOut[b].host, oDev[b].ptr, (long) len * o.tokenBytes(), copyOut);
                    JCudaDriver.cuEventRecord(copiedOut[b], copyOut);
                    // Unstage the slice before this one (this one itself on the serial path) now: its
                    // output staging is then free before slice i + 1's copy out is enqueued.
                    for (; finished <= i - (sets - 1); finished++) {
                        finish(finished);
                    }
                }
            }
            for (; outputs && finished < plan.slices(); finished++) {
                finish(finished);
            }
            step = "copy to host (or a kernel before it, " + lastKernels + ")";
            // the kernel stream waited for every copy in, and the host for every copy out: after this
            // download nothing of the window is left in flight
            ByteBuffer last = download(incoming, spec.stateBytes());
            return LightningState.fromBytes(spec.heads(), spec.dk(), spec.dv(), last);
        }

        /**
         * Sizes every buffer the slices use before the first one is enqueued: growing one later waits
         * for all streams, which would empty the pipeline.
         */
        private void reserve() {
            int longest = plan.length(0);
            for (int b = 0; b < plan.sets(); b++) {
                if (q != null) {
                    qDev[b].ensure((long) longest * q.tokenBytes());
                }
                kDev[b].ensure((long) longest * k.tokenBytes());
                vDev[b].ensure((long) longest * v.tokenBytes());
                if (o != null) {
                    oDev[b].ensure((long) longest * o.tokenBytes());
                }
            }
            for (int b = 0; b < plan.sets(); b++) {
                stagingIn[b].ensure((long) longest * inputTokenBytes());
                if (o != null) {
                    stagingOut[b].ensure((long) longest * o.tokenBytes());
                }
            }
            reserveSegments(spec, dtype, longest, o != null);
            reserveSegments(spec, dtype, plan.length(plan.slices() - 1), o != null);
        }

        private long inputTokenBytes() {
            return (q != null ? q.tokenBytes() : 0L) + k.tokenBytes() + v.tokenBytes();
        }

        /** Stages slice i's q, k, v in staging set b and enqueues their copies to device set b. */
        private void copyIn(int i, int b) {
            step = "copy to device";
            int from = plan.from(i);
            int len = plan.length(i);
            Buffer staging = stagingIn[b];
            if (i >= plan.sets()) {
                // The staging buffer feeds the copies of the set's previous slice until they end.
                // One set means the serial path (a single slice never gets here): wait for its
                // kernels too, as it always did, so that nothing overlaps there, also without outputs.
                JCudaDriver.cuEventSynchronize(plan.sets() == 1 ? computed[b] : copiedIn[b]);
            }
            TokenTensor[] inputs = q != null ? new TokenTensor[] {q, k, v} : new TokenTensor[] {k, v};
            Buffer[] targets = q != null ? new Buffer[] {qDev[b], kDev[b], vDev[b]} : new Buffer[] {kDev[b], vDev[b]};
            // views of the caller's bytes: one copy, heap to pinned, per tensor
            ByteBuffer view = staging.host.getByteBuffer(0, (long) len * inputTokenBytes());
            for (TokenTensor t : inputs) {
                view.put(t.slice(from, len).bytes());
            }
            if (i >= plan.sets()) {
                // the set's previous slice's kernels read its q, k, v
                JCudaDriver.cuStreamWaitEvent(copyIn, computed[b], 0);
            }
            long at = 0;
            for (int j = 0; j < inputs.length; j++) {
                long bytes = (long) len * inputs[j].tokenBytes();
                JCudaDriver.cuMemcpyHtoDAsync(targets[j].ptr, staging.host.withByteOffset(at), bytes, copyIn);
                at += bytes;
            }
            JCudaDriver.cuEventRecord(copiedIn[b], copyIn);
        }

        /** Waits for slice j's o in its output staging and copies it into the caller's o. */
        private void finish(int j) {
            step = "copy to host (or a kernel before it, " + lastKernels + ")";
            int b = j % plan.sets();
            int len = plan.length(j);
            JCudaDriver.cuEventSynchronize(copiedOut[b]);
            o.slice(plan.from(j), len).putBytes(stagingOut[b].host.getByteBuffer(0, (long) len * o.tokenBytes()));
        }
    }

    /** The kernels a launch uses and their launch shapes. */
    private record Kernels(String forward, String states, int bv, int threads, int smemForward, int smemStates) {
    }

    private Kernels kernels(AttentionSpec spec, DType dtype) {
        int dk = spec.dk();
        int dv = spec.dv();
        String type = dtype == DType.F32 ? "f32" : dtype == DType.BF16 ? "bf16" : "f16";
        boolean tc = tensorCores && dtype != DType.F32 && device.has("lightning_forward_tc_bf16");
        // Hopper (wgmma) kernels where the device has them and the shape suits them: they pad Dk
        // to 128 and cover 128 columns, so Dk <= 64 or Dv <= 64 would be half zeros or half idle;
        // the mma.sync kernels (64 columns a CTA) keep those.
        boolean hopper = tc && hopperKernels && TensorCoreLayout.hopperFits(dk, dv)
                && device.has("lightning_forward_wg_" + type);
        if (hopper) {
            return new Kernels("lightning_forward_wg_" + type, "lightning_states_wg_" + type,
                    TensorCoreLayout.HOPPER_COLUMNS, TensorCoreLayout.HOPPER_THREADS,
                    TensorCoreLayout.hopperSharedBytes(dk, true), TensorCoreLayout.hopperSharedBytes(dk, false));
        }
        if (tc) {
            return new Kernels("lightning_forward_tc_" + type + TensorCoreLayout.kernelSuffix(dk),
                    "lightning_states_tc_" + type + TensorCoreLayout.kernelSuffix(dk), TensorCoreLayout.COLUMNS,
                    TensorCoreLayout.threads(dk), tcSharedBytes(dk), tcSharedBytes(dk));
        }
        return new Kernels("lightning_forward_generic_" + type, "lightning_states_generic_" + type, GENERIC_BV,
                GENERIC_THREADS, genericSharedBytes(dk), genericSharedBytes(dk));
    }

    private SegmentPlan segmentPlan(AttentionSpec spec, Kernels kernels, int n) {
        int columnTiles = (spec.dv() + kernels.bv() - 1) / kernels.bv();
        int ctasPerSegment = spec.heads() * columnTiles;
        int resident = device.multiprocessors * Math.max(1, device.maxSharedPerMultiprocessor / (kernels.smemForward() + 1024));
        return SegmentPlan.of(n, ctasPerSegment, resident, minSegments);
    }

    /** The per-segment state buffers a launch of that plan needs. */
    private void ensureSegmentBuffers(AttentionSpec spec, SegmentPlan plan, boolean outputs) {
        long stateBytes = spec.stateBytes();
        if (!outputs) {
            segmentStates.ensure(stateBytes * plan.segments());
        } else if (plan.segments() > 1) {
            segmentStates.ensure(stateBytes * plan.locals());
            segmentIncoming.ensure(stateBytes * plan.segments());
            stateScratch.ensure(stateBytes * plan.segments());
        }
    }

    /** Sizes the segment buffers for a launch of n tokens ahead of it. */
    private void reserveSegments(AttentionSpec spec, DType dtype, int n, boolean outputs) {
        ensureSegmentBuffers(spec, segmentPlan(spec, kernels(spec, dtype), n), outputs);
    }

    /**
     * Launches the kernels for one slice on the kernel stream, reading q, k, v and writing o (q and
     * o unused without outputs); returns the last kernel's name.
     */
    private String launchWindow(AttentionSpec spec, DType dtype, int n, boolean outputs, Buffer qBuf, Buffer kBuf,
                                Buffer vBuf, Buffer oBuf, Buffer incoming, Buffer result) {
        int heads = spec.heads();
        int dk = spec.dk();
        int dv = spec.dv();
        Kernels kn = kernels(spec, dtype);
        String forward = kn.forward();
        String states = kn.states();
        int threads = kn.threads();
        int smemForward = kn.smemForward();
        int smemStates = kn.smemStates();
        lastKernels = forward;
        int columnTiles = (dv + kn.bv() - 1) / kn.bv();
        SegmentPlan plan = segmentPlan(spec, kn, n);
        int segments = plan.segments();
        int segTokens = plan.segTokens();
        lastSegments = segments;
        long stateBytes = spec.stateBytes();
        int per = spec.stateSize();
        int scanBlocks = (per + 255) / 256;
        ensureSegmentBuffers(spec, plan, outputs);

        if (!outputs) {
            // pass 1 alone (advance): local states of every segment, then the scan to the final state
            launch(states, heads, columnTiles, segments, threads, smemStates, Pointer.to(
                    Pointer.to(kBuf.ptr), Pointer.to(vBuf.ptr), ints(n), ints(heads), ints(dk), ints(dv),
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
                    Pointer.to(qBuf.ptr), Pointer.to(kBuf.ptr), Pointer.to(vBuf.ptr), Pointer.to(oBuf.ptr), ints(n),
                    ints(heads), ints(dk), ints(dv), ints(segTokens), Pointer.to(slopesDev.ptr),
                    Pointer.to(new float[] {(float) spec.scale()}), Pointer.to(incoming.ptr), Pointer.to(result.ptr)));
            return forward;
        }
        // Pass 1: local states of the tokens before the last segment, in sub-segments (SegmentPlan).
        int before = segments - 1;
        int every = plan.every();
        int subTokens = plan.subTokens();
        int locals = plan.locals();
        launch(states, heads, columnTiles, locals, threads, smemStates, Pointer.to(
                Pointer.to(kBuf.ptr), Pointer.to(vBuf.ptr), ints(before * segTokens), ints(heads), ints(dk), ints(dv),
                ints(subTokens), Pointer.to(slopesDev.ptr), Pointer.to(segmentStates.ptr)));
        launch("lightning_scan", scanBlocks, 1, 1, 256, 0, Pointer.to(
                Pointer.to(segmentStates.ptr), ints(locals), ints(every), ints(subTokens), ints(n),
                Pointer.to(incoming.ptr), Pointer.to(segmentIncoming.ptr), ints(segments), Pointer.to(new CUdeviceptr()),
                ints(heads), ints(dk), ints(dv), Pointer.to(slopesDev.ptr)));
        // Outputs; the per-segment states-after go to scratch, and the last one is the window's.
        launch(forward, heads, columnTiles, segments, threads, smemForward, Pointer.to(
                Pointer.to(qBuf.ptr), Pointer.to(kBuf.ptr), Pointer.to(vBuf.ptr), Pointer.to(oBuf.ptr), ints(n),
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

    // ---------------------------------------------------------------- benchmark support (DeviceBench, through BenchHooks)

    /** Fills q, k, v of an n-token window on the device with uniform values; zero incoming state. */
    void prepareResident(AttentionSpec spec, DType dtype, int n, long seed) {
        device.makeCurrent();
        int heads = spec.heads();
        long qk = (long) n * heads * spec.dk();
        long vo = (long) n * heads * spec.dv();
        qDev[0].ensure(qk * dtype.bytes());
        kDev[0].ensure(qk * dtype.bytes());
        vDev[0].ensure(vo * dtype.bytes());
        oDev[0].ensure(vo * dtype.bytes());
        String fill = "lightning_fill_uniform_" + (dtype == DType.F32 ? "f32" : dtype == DType.BF16 ? "bf16" : "f16");
        Buffer[] targets = {qDev[0], kDev[0], vDev[0]};
        long[] counts = {qk, qk, vo};
        for (int i = 0; i < 3; i++) {
            launch(fill, 4 * device.multiprocessors, 1, 1, 256, 0, Pointer.to(Pointer.to(targets[i].ptr),
                    Pointer.to(new long[] {counts[i]}), Pointer.to(new long[] {seed * 3 + i})));
        }
        uploadSlopes(spec);
        upload(stateA, new byte[Math.toIntExact(spec.stateBytes())]);
        stateB.ensure(spec.stateBytes());
        JCudaDriver.cuStreamSynchronize(stream);
    }

    /** Times pass 1 + scan + pass 2 over the resident window with device events; median of runs, in ms. */
    float timeResident(AttentionSpec spec, DType dtype, int n, int runs) {
        device.makeCurrent();
        Runnable window = () -> launchWindow(spec, dtype, n, true, qDev[0], kDev[0], vDev[0], oDev[0], stateA, stateB);
        window.run(); // warm-up: module JIT, first touch
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
        q.putBytes(download(qDev[0], (long) n * heads * spec.dk() * dtype.bytes()));
        k.putBytes(download(kDev[0], (long) n * heads * spec.dk() * dtype.bytes()));
        v.putBytes(download(vDev[0], (long) n * heads * spec.dv() * dtype.bytes()));
        o.putBytes(download(oDev[0], (long) n * heads * spec.dv() * dtype.bytes()));
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
        synchronizeAll();
        for (Buffer b : buffers) {
            b.free();
        }
    }

    /** Waits for everything enqueued on this backend's streams (not other tasks' on the same device). */
    private void synchronizeAll() {
        for (CUstream s : streams) {
            JCudaDriver.cuStreamSynchronize(s);
        }
    }

    /**
     * Waits for what this backend enqueued after a failure. The failure is the caller's to report:
     * errors of these waits (the same sticky error, for one) add nothing to it.
     */
    private void drainQuietly() {
        for (CUstream s : streams) {
            try {
                JCudaDriver.cuStreamSynchronize(s);
            } catch (CudaException ignored) {
                // reported by the caller
            }
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        device.makeCurrent();
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
        for (CUstream s : streams) {
            attempt(failures, () -> JCudaDriver.cuStreamSynchronize(s));
        }
        for (Buffer b : buffers) {
            attempt(failures, b::free);
        }
        for (CUevent e : events) {
            attempt(failures, () -> JCudaDriver.cuEventDestroy(e));
        }
        events.clear();
        for (CUstream s : streams) {
            attempt(failures, () -> JCudaDriver.cuStreamDestroy(s));
        }
        streams.clear();
        if (failures.isEmpty()) {
            return null;
        }
        RuntimeException first = failures.get(0);
        for (RuntimeException later : failures.subList(1, failures.size())) {
            first.addSuppressed(later);
        }
        if (cause != null) {
            cause.addSuppressed(first);
        }
        return first;
    }

    private static void attempt(List<RuntimeException> failures, Runnable step) {
        try {
            step.run();
        } catch (RuntimeException e) {
            failures.add(e);
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
            // any stream may still read or write the old allocation
            synchronizeAll();
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
