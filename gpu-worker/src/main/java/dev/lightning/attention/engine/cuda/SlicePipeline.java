package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.cuda.DeviceAllocator.Buffer;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import jcuda.CudaException;
import jcuda.Pointer;
import jcuda.driver.CUevent;
import jcuda.driver.CUevent_flags;
import jcuda.driver.CUstream;
import jcuda.driver.CUstream_flags;
import jcuda.driver.JCudaDriver;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * A backend's streams, events and the two buffer sets its slices take in turn, and the loop that
 * moves a window's slices ({@link SlicePlan}) through them.
 *
 * <p>Three streams: copies in, kernels, copies out. Two sets of device buffers and of pinned
 * staging buffers take the slices in turn, so that while slice i's kernels run, slice i - 1's o
 * comes back and the host unstages it, and the host stages slice i + 1 and its q, k, v cross
 * PCIe. Events order each set's reuse. The state is carried from slice to slice on the kernel
 * stream. What runs on the kernel stream (slopes, state, the kernels, the final download) is the
 * backend's ({@link WindowKernels}), through {@link KernelSide}.
 *
 * <p>Tensors that are views of host memory registered by this pipeline's allocator, or of a block
 * its backend holds from the device's {@link HostBlocks} (the backend's {@code hostTensor}), skip the staging: the device copies read q, k, v and write o there directly,
 * at PCIe speed, and the host only waits. The others (Java heap, unregistered direct buffers) are
 * staged through the pinned buffers by {@link HostCopies} on several threads. Host waits block on
 * the event (blocking-sync events) instead of spinning, leaving the cores to those copies.
 */
final class SlicePipeline {
    /** Kernels, and everything else that must stay in order with them: slopes, state, benchmark. */
    final CUstream stream = new CUstream();
    /** Slices' q, k, v to the device. */
    private final CUstream copyIn = new CUstream();
    /** Slices' o to the host: its own stream, so it overlaps both the next copies in and the kernels. */
    private final CUstream copyOut = new CUstream();
    /** The streams created so far, in creation order (destroy() destroys what exists). */
    private final List<CUstream> streams = new ArrayList<>();
    /** The events created so far (destroy() destroys what exists). */
    private final List<CUevent> events = new ArrayList<>();
    /** Per buffer set: its slice's q, k, v are on the device (staging and set may be reused). */
    private final CUevent[] copiedIn = new CUevent[2];
    /** Per buffer set: its slice's kernels are done (its q, k, v may be overwritten). */
    private final CUevent[] computed = new CUevent[2];
    /** Per buffer set: its slice's o is in the output staging (its o may be overwritten). */
    private final CUevent[] copiedOut = new CUevent[2];
    /** Two sets of device buffers; set 0 is also the benchmark's resident window. */
    final Buffer[] qDev;
    final Buffer[] kDev;
    final Buffer[] vDev;
    final Buffer[] oDev;
    /** Per buffer set: a slice's q, k, v, back to back, on their way to the device. */
    private final Buffer[] stagingIn;
    /** Per buffer set: a slice's o on its way back. */
    private final Buffer[] stagingOut;
    /** Per buffer set: the checkpoints the slice's forward kernel writes, S of each, then z of each. */
    final Buffer[] checkpointDev;
    /** Per buffer set: those checkpoints on their way back. */
    private final Buffer[] checkpointStaging;
    /** The allocator of every buffer here, and of the registered host memory the copies may use directly. */
    private final DeviceAllocator memory;
    /** The staging copies' threads (the backend sets them; 1: the copies of the first pipeline). */
    HostCopies copies = new HostCopies(HostCopies.defaultThreads());
    /**
     * Host time of the last window: staging q, k, v (caller to pinned), unstaging o (pinned to
     * caller), and waiting on the device (events and the final download). Benchmark only.
     */
    long stagedNanos;
    long unstagedNanos;
    long waitedNanos;

    /** What a window needs on the kernel stream besides the slices' kernels: the backend's part. */
    interface KernelSide {
        /** Before the first slice: the slopes and the incoming state to the device, the result sized. */
        void begin(AttentionSpec spec, LightningState state);

        /** Sizes the segment buffers for a launch of n tokens (with or without checkpoints) ahead of it. */
        void reserveSegments(AttentionSpec spec, DType dtype, int n, boolean outputs, boolean checkpoints);

        /**
         * Enqueues one slice's kernels on the kernel stream, the forward kernel writing the slice's
         * checkpoints to {@code checkpoints}; returns the last kernel's name.
         */
        String launch(AttentionSpec spec, DType dtype, int n, boolean outputs, Buffer q, Buffer k, Buffer v, Buffer o,
                      Buffer incoming, Buffer result, Kernels.CheckpointTarget checkpoints);

        /** Device -> host on the kernel stream, waited for. */
        ByteBuffer download(Buffer src, long len);

        /** The forward kernel of the last launch, for messages. */
        String lastKernels();
    }

    /** Registered blocks not of {@link #memory} whose views may be copied directly: those the backend holds now. */
    private final java.util.function.Predicate<Object> held;

    /** Makes the buffers (empty until a window sizes them); {@link #create()} makes the streams and events. */
    SlicePipeline(DeviceAllocator memory) {
        this(memory, b -> false);
    }

    /** The same, with {@code held} saying which other registered blocks the backend holds now. */
    SlicePipeline(DeviceAllocator memory, java.util.function.Predicate<Object> held) {
        this.memory = memory;
        this.held = held;
        qDev = new Buffer[] {memory.device("q set 0"), memory.device("q set 1")};
        kDev = new Buffer[] {memory.device("k set 0"), memory.device("k set 1")};
        vDev = new Buffer[] {memory.device("v set 0"), memory.device("v set 1")};
        oDev = new Buffer[] {memory.device("o set 0"), memory.device("o set 1")};
        stagingIn = new Buffer[] {memory.pinned("q, k, v staging 0"), memory.pinned("q, k, v staging 1")};
        stagingOut = new Buffer[] {memory.pinned("o staging 0"), memory.pinned("o staging 1")};
        checkpointDev = new Buffer[] {memory.device("checkpoints set 0"), memory.device("checkpoints set 1")};
        checkpointStaging = new Buffer[] {memory.pinned("checkpoints staging 0"), memory.pinned("checkpoints staging 1")};
    }

    /** Creates the streams, then the events; on a failure what exists is left for {@link #destroy}. */
    void create() {
        for (CUstream s : new CUstream[] {stream, copyIn, copyOut}) {
            JCudaDriver.cuStreamCreate(s, CUstream_flags.CU_STREAM_NON_BLOCKING);
            streams.add(s);
        }
        for (CUevent[] kind : new CUevent[][] {copiedIn, computed, copiedOut}) {
            for (int b = 0; b < kind.length; b++) {
                CUevent e = new CUevent();
                // ordering only: timing would make every record and wait dearer; a host wait sleeps
                // on the event rather than spinning a core the staging copies could use
                JCudaDriver.cuEventCreate(e, CUevent_flags.CU_EVENT_DISABLE_TIMING | CUevent_flags.CU_EVENT_BLOCKING_SYNC);
                events.add(e);
                kind[b] = e;
            }
        }
    }

    /** Waits for everything enqueued on these streams (not other tasks' on the same device). */
    void synchronizeAll() {
        for (CUstream s : streams) {
            JCudaDriver.cuStreamSynchronize(s);
        }
    }

    /**
     * Waits for what was enqueued after a failure. The failure is the caller's to report: errors
     * of these waits (the same sticky error, for one) add nothing to it; the first is returned (null
     * when none), for the caller to note on the device.
     */
    CudaException drainQuietly() {
        CudaException first = null;
        for (CUstream s : streams) {
            try {
                JCudaDriver.cuStreamSynchronize(s);
            } catch (CudaException e) {
                // reported by the caller; returned so that an error the context keeps is noted (noteError)
                if (first == null) {
                    first = e;
                }
            }
        }
        return first;
    }

    /** Waits for each stream, going on past failures (collected). */
    void synchronize(List<RuntimeException> failures) {
        for (CUstream s : streams) {
            attempt(failures, () -> JCudaDriver.cuStreamSynchronize(s));
        }
    }

    /** Closes this pipeline's buffers, going on past failures (collected); the streams must be drained. */
    void closeBuffers(List<RuntimeException> failures) {
        for (Buffer[] set : new Buffer[][] {qDev, kDev, vDev, oDev, stagingIn, stagingOut, checkpointDev,
                checkpointStaging}) {
            for (Buffer b : set) {
                attempt(failures, b::close);
            }
        }
    }

    /** Destroys the events and then the streams, going on past failures (collected). */
    void destroy(List<RuntimeException> failures) {
        for (CUevent e : events) {
            attempt(failures, () -> JCudaDriver.cuEventDestroy(e));
        }
        events.clear();
        for (CUstream s : streams) {
            attempt(failures, () -> JCudaDriver.cuStreamDestroy(s));
        }
        streams.clear();
    }

    /**
     * Where tokens [from, ...) of {@code t} lie in host memory registered by this pipeline's
     * allocator (still open), for a device copy straight from or to it; null when {@code t} is not
     * a view of such memory and must be staged.
     */
    Pointer registered(TokenTensor t, int from) {
        Object m = t.memory();
        if (m instanceof Buffer b && b.direct != null && (memory.owns(b) || held.test(b))) {
            // a slice of the block's buffer has its own address: no pointer arithmetic on JCuda's side
            ByteBuffer at = b.direct.duplicate();
            at.clear().position(Math.toIntExact(t.memoryOffset() + (long) from * t.tokenBytes()));
            return Pointer.to(at.slice());
        }
        return null;
    }

    /** Waits for {@code e} on the host, counting the time as waiting. */
    private void await(CUevent e) {
        long start = System.nanoTime();
        JCudaDriver.cuEventSynchronize(e);
        waitedNanos += System.nanoTime() - start;
    }

    /**
     * What a release that went on past failures reports: null where {@link #attempt} met none, else the first
     * failure with the later ones suppressed in it.
     */
    static RuntimeException firstOf(List<RuntimeException> failures) {
        if (failures.isEmpty()) {
            return null;
        }
        RuntimeException first = failures.get(0);
        for (RuntimeException later : failures.subList(1, failures.size())) {
            first.addSuppressed(later);
        }
        return first;
    }

    static void attempt(List<RuntimeException> failures, Runnable step) {
        try {
            step.run();
        } catch (RuntimeException e) {
            failures.add(e);
        }
    }

    /**
     * One window's slices through the streams. For slice i on buffer set b = i % sets, the slice
     * before it on set b is i - sets: its copies in must have left staging b before the host refills
     * it, its kernels must have read set b before the copies in overwrite it, and its copy out must
     * have read o of set b before the kernels overwrite it.
     */
    final class Window {
        final AttentionSpec spec;
        final DType dtype;
        final SlicePlan plan;
        /** Null for advance(), as is o. */
        final TokenTensor q;
        final TokenTensor k;
        final TokenTensor v;
        final TokenTensor o;
        /** What the window records (none for advance()); slices fill it at their offsets. */
        final Checkpoints checkpoints;
        private final KernelSide side;
        /** Inputs (q, k, v; k, v without outputs) and whether each goes through the staging buffers. */
        private final TokenTensor[] inputs;
        private final boolean[] staged;
        /** Bytes of a token of the staged inputs, which lie back to back in the input staging. */
        private final long stagedTokenBytes;
        /** Whether o goes through the output staging (false: the device writes it in place). */
        private final boolean oStaged;
        /** What was last enqueued or waited for, for the error message. */
        String step = "copy to device";

        Window(AttentionSpec spec, DType dtype, SlicePlan plan, TokenTensor q, TokenTensor k, TokenTensor v,
               TokenTensor o, Checkpoints checkpoints, KernelSide side) {
            this.spec = spec;
            this.checkpoints = checkpoints;
            this.dtype = dtype;
            this.plan = plan;
            this.q = q;
            this.k = k;
            this.v = v;
            this.o = o;
            this.side = side;
            this.inputs = q != null ? new TokenTensor[] {q, k, v} : new TokenTensor[] {k, v};
            this.staged = new boolean[inputs.length];
            long bytes = 0;
            for (int j = 0; j < inputs.length; j++) {
                staged[j] = registered(inputs[j], 0) == null;
                bytes += staged[j] ? inputs[j].tokenBytes() : 0;
            }
            this.stagedTokenBytes = bytes;
            this.oStaged = o != null && registered(o, 0) == null;
        }

        /**
         * Runs the window from {@code state}, carrying it between {@code stateA} (which begin()
         * fills) and {@code stateB}; returns the state after the window.
         */
        LightningState run(LightningState state, Buffer stateA, Buffer stateB) {
            step = "copy to device";
            stagedNanos = 0;
            unstagedNanos = 0;
            waitedNanos = 0;
            side.begin(spec, state);
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
                step = side.launch(spec, dtype, len, outputs, outputs ? qDev[b] : null, kDev[b], vDev[b],
                        outputs ? oDev[b] : null, incoming, result, checkpointTarget(i, b));
                JCudaDriver.cuEventRecord(computed[b], stream);
                Buffer t = incoming;
                incoming = result;
                result = t;
                if (outputs) {
                    step = "copy to host";
                    JCudaDriver.cuStreamWaitEvent(copyOut, computed[b], 0);
                    Pointer target = oStaged ? stagingOut[b].host : registered(o, plan.from(i));
                    JCudaDriver.cuMemcpyDtoHAsync(target, oDev[b].ptr, (long) len * o.tokenBytes(), copyOut);
                    int count = checkpointCount(i);
                    if (count > 0) {
                        JCudaDriver.cuMemcpyDtoHAsync(checkpointStaging[b].host, checkpointDev[b].ptr,
                                count * spec.stateBytes(), copyOut);
                    }
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
            step = "copy to host (or a kernel before it, " + side.lastKernels() + ")";
            // the kernel stream waited for every copy in, and the host for every copy out: after this
            // download nothing of the window is left in flight
            long start = System.nanoTime();
            ByteBuffer last = side.download(incoming, spec.stateBytes());
            waitedNanos += System.nanoTime() - start;
            return LightningState.fromBytes(spec, last);
        }

        /** The global index of slice i's first checkpoint: floor(its sequence position / N). */
        private long checkpointFirst(int i) {
            return (checkpoints.position() + plan.from(i)) / checkpoints.every();
        }

        /** Checkpoints that fall in slice i (0 without checkpoints). */
        private int checkpointCount(int i) {
            if (!checkpoints.requested()) {
                return 0;
            }
            long end = checkpoints.position() + plan.from(i) + plan.length(i);
            return Math.toIntExact(end / checkpoints.every() - checkpointFirst(i));
        }

        /**
         * Where slice i's forward kernel writes its checkpoints: set b's buffer, S of each, then z of
         * each; none when no checkpoint falls in the slice.
         */
        private Kernels.CheckpointTarget checkpointTarget(int i, int b) {
            if (!checkpoints.requested()) {
                return Kernels.CheckpointTarget.NONE;
            }
            int count = checkpointCount(i);
            if (count == 0) {
                return Kernels.CheckpointTarget.NONE_HERE;
            }
            Buffer buf = checkpointDev[b];
            Kernels.States states = new Kernels.States(buf.ptr,
                    spec.normalized() ? buf.ptr.withByteOffset(count * LightningState.kvBytes(spec)) : null);
            return new Kernels.CheckpointTarget(states, checkpoints.every(), checkpoints.position() + plan.from(i),
                    checkpointFirst(i), true);
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
                if (stagedTokenBytes > 0) {
                    stagingIn[b].ensure((long) longest * stagedTokenBytes);
                }
                if (oStaged) {
                    stagingOut[b].ensure((long) longest * o.tokenBytes());
                }
            }
            boolean cp = checkpoints.requested();
            side.reserveSegments(spec, dtype, longest, o != null, cp);
            side.reserveSegments(spec, dtype, plan.length(plan.slices() - 1), o != null, cp);
            int most = 0;
            for (int i = 0; i < plan.slices(); i++) {
                most = Math.max(most, checkpointCount(i));
            }
            if (most > 0) {
                for (int b = 0; b < plan.sets(); b++) {
                    checkpointDev[b].ensure(most * spec.stateBytes());
                    checkpointStaging[b].ensure(most * spec.stateBytes());
                }
            }
        }

        /**
         * Stages slice i's q, k, v in staging set b (those not in registered memory, on several
         * threads) and enqueues their copies to device set b.
         */
        private void copyIn(int i, int b) {
            step = "copy to device";
            int from = plan.from(i);
            int len = plan.length(i);
            Buffer staging = stagingIn[b];
            if (i >= plan.sets()) {
                // The staging buffer feeds the copies of the set's previous slice until they end.
                // One set means the serial path (a single slice never gets here): wait for its
                // kernels too, as it always did, so that nothing overlaps there, also without outputs.
                if (plan.sets() == 1) {
                    await(computed[b]);
                } else if (stagedTokenBytes > 0) {
                    await(copiedIn[b]);
                }
            }
            Buffer[] targets = q != null ? new Buffer[] {qDev[b], kDev[b], vDev[b]} : new Buffer[] {kDev[b], vDev[b]};
            // staged inputs lie back to back in the staging buffer: input j at offsets[j]
            long[] offsets = new long[inputs.length];
            long at = 0;
            for (int j = 0; j < inputs.length; j++) {
                offsets[j] = at;
                at += staged[j] ? (long) len * inputs[j].tokenBytes() : 0;
            }
            if (stagedTokenBytes > 0) {
                long start = System.nanoTime();
                ByteBuffer view = staging.host.getByteBuffer(0, (long) len * stagedTokenBytes);
                copies.run(len, stagedTokenBytes, (first, count) -> {
                    for (int j = 0; j < inputs.length; j++) {
                        if (staged[j]) {
                            ByteBuffer part = view.duplicate();
                            part.position(Math.toIntExact(offsets[j] + (long) first * inputs[j].tokenBytes()));
                            part.put(inputs[j].slice(from + first, count).bytes());
                        }
                    }
                });
                stagedNanos += System.nanoTime() - start;
            }
            if (i >= plan.sets()) {
                // the set's previous slice's kernels read its q, k, v
                JCudaDriver.cuStreamWaitEvent(copyIn, computed[b], 0);
            }
            for (int j = 0; j < inputs.length; j++) {
                long bytes = (long) len * inputs[j].tokenBytes();
                Pointer source = staged[j] ? staging.host.withByteOffset(offsets[j]) : registered(inputs[j], from);
                JCudaDriver.cuMemcpyHtoDAsync(targets[j].ptr, source, bytes, copyIn);
            }
            JCudaDriver.cuEventRecord(copiedIn[b], copyIn);
        }

        /** Waits for slice j's o and, staged, copies it from its output staging into the caller's o. */
        private void finish(int j) {
            step = "copy to host (or a kernel before it, " + side.lastKernels() + ")";
            int b = j % plan.sets();
            int len = plan.length(j);
            await(copiedOut[b]);
            if (oStaged) {
                // o from the output staging into the caller's tensor, on several threads
                long start = System.nanoTime();
                int from = plan.from(j);
                int tokenBytes = o.tokenBytes();
                ByteBuffer view = stagingOut[b].host.getByteBuffer(0, (long) len * tokenBytes);
                copies.run(len, tokenBytes, (first, count) -> {
                    ByteBuffer part = view.duplicate();
                    part.position(first * tokenBytes);
                    o.slice(from + first, count).putBytes(part);
                });
                unstagedNanos += System.nanoTime() - start;
            }
            int count = checkpointCount(j);
            if (count > 0) {
                // staging: S of the slice's checkpoints [count][H][Dk][Dv], then their z [count][H][Dk]
                int at = Math.toIntExact(checkpointFirst(j) - checkpoints.first());
                int s = spec.stateSize();
                java.nio.FloatBuffer f = checkpointStaging[b].host.getByteBuffer(0, count * spec.stateBytes())
                        .order(java.nio.ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
                f.get(checkpoints.kvData(), at * s, count * s);
                if (spec.normalized()) {
                    int z = spec.normalizerSize();
                    f.get(checkpoints.normalizerData(), at * z, count * z);
                }
            }
        }
    }
}
