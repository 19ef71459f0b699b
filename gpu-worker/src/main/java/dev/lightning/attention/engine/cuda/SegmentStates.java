package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.cuda.DeviceAllocator.Buffer;

import java.util.List;

/**
 * A backend's segments: how its launches cut a window into segments ({@link SegmentPlan}, for the
 * GPU the chosen kernels fill), and the device buffers the segments' states take, grown to what
 * each plan needs and bounded by {@link #segmentStateBytes}, which the backend's budget sets aside.
 *
 * <p>Within a slice, the heads are cut into segments when they alone would leave the GPU idle;
 * segments run in parallel with the device-side two-level scan (local states, float32 exclusive
 * scan, outputs). Per-segment states keep S and z in separate arrays, as the kernels' struct
 * points at them.
 */
final class SegmentStates {
    private final CudaDevice device;
    /** Per-segment states, S in one array and z (normalizing) in another, as the kernels read them. */
    final Buffer segmentStates;
    final Buffer segmentStatesNorm;
    final Buffer segmentIncoming;
    final Buffer segmentIncomingNorm;
    final Buffer stateScratch;
    final Buffer stateScratchNorm;
    /** At least this many segments per window (benchmark only: to time the two-pass path). */
    int minSegments = 1;
    /**
     * The plan of every window, from its tokens ({@link SegmentPlan#cut} or {@link SegmentPlan#cutLead};
     * benchmarks and tests only, with an unlimited memory budget: to time and check plans the model did
     * not choose); null: as SegmentPlan chooses.
     */
    java.util.function.IntFunction<SegmentPlan> forcedPlan;

    /** Makes the buffers (empty until a plan sizes them) in {@code memory}. */
    SegmentStates(DeviceAllocator memory, CudaDevice device) {
        this.device = device;
        this.segmentStates = memory.device("segment local states");
        this.segmentStatesNorm = memory.device("segment local normalizers");
        this.segmentIncoming = memory.device("segment incoming states");
        this.segmentIncomingNorm = memory.device("segment incoming normalizers");
        this.stateScratch = memory.device("segment states after");
        this.stateScratchNorm = memory.device("segment normalizers after");
    }

    SegmentPlan segmentPlan(AttentionSpec spec, Kernels.Choice kernels, int n) {
        if (forcedPlan != null) {
            return forcedPlan.apply(n);
        }
        SegmentPlan.Fill fill = fill(spec, kernels);
        synchronized (plans) {
            return plans.computeIfAbsent(java.util.List.of(n, fill, minSegments),
                    key -> SegmentPlan.of(n, fill, minSegments));
        }
    }

    /**
     * The plans of the latest window sizes, by window, GPU fill and minimum: a job's windows repeat
     * a few sizes, and an uneven plan's search (up to 64 lead sizes, each a list schedule) takes a
     * fraction of a millisecond that every window would otherwise pay on the host.
     */
    private final java.util.Map<java.util.List<Object>, SegmentPlan> plans =
            new java.util.LinkedHashMap<>(16, 0.75f, true) {
                @Override
                protected boolean removeEldestEntry(java.util.Map.Entry<java.util.List<Object>, SegmentPlan> eldest) {
                    return size() > 16;
                }
            };

    /**
     * The GPU as a segment plan sees it for these kernels: the CTAs of a segment, how many CTAs of
     * the forward and of the states kernel the device holds at once (the driver's occupancy for each
     * kernel as compiled: registers, shared memory and threads), and where the kernels' rate a CTA is
     * known ({@link Kernels.Choice#ctaBytesPerSecond}), the share of the memory's rate a CTA chunk of
     * each pass takes: the CTA's rate over what the device's memory moves ({@link SegmentPlan#COPY_SHARE}
     * of its peak), times the bytes a token of this spec holds in each pass over the bytes a forward
     * token of as many ungrouped heads holds (grouped k and v are read once a group).
     */
    private SegmentPlan.Fill fill(AttentionSpec spec, Kernels.Choice kn) {
        return fill(spec, kn.headCtas(spec.heads()) * kn.columnTiles(spec.dv()),
                device.residentCtas(kn.forward(), kn.threads(), kn.smemForward()),
                device.residentCtas(kn.states(), kn.threads(), kn.smemStates()), kn.ctaBytesPerSecond(),
                device.memoryBytesPerSecond);
    }

    /**
     * {@link #fill(AttentionSpec, Kernels.Choice)} from its parts: {@code ctaBytesPerSecond} or
     * {@code memoryBytesPerSecond} 0 where unknown. The memory is weighed only where the GPU's forward
     * CTAs together would ask {@link SegmentPlan#MEMORY_BOUND} times what it gives or more.
     */
    static SegmentPlan.Fill fill(AttentionSpec spec, int ctasPerSegment, int forwardSlots, int statesSlots,
                                 double ctaBytesPerSecond, double memoryBytesPerSecond) {
        double forwardMemory = 0;
        double statesMemory = 0;
        double cta = ctaBytesPerSecond > 0 && memoryBytesPerSecond > 0
                ? ctaBytesPerSecond / (SegmentPlan.COPY_SHARE * memoryBytesPerSecond) : 0;
        if (forwardSlots * cta >= SegmentPlan.MEMORY_BOUND) {
            double ungrouped = 2.0 * spec.heads() * (spec.dk() + spec.dv());
            forwardMemory = cta * SlicePlan.tokenElements(spec, true) / ungrouped;
            statesMemory = cta * SlicePlan.tokenElements(spec, false) / ungrouped;
        }
        return new SegmentPlan.Fill(ctasPerSegment, forwardSlots, statesSlots, SegmentPlan.PASS1_COST, forwardMemory,
                statesMemory);
    }

    /**
     * The most bytes the per-segment state buffers take for any window of {@code spec} on the kernels
     * {@code kn}: S and z for each of the local states, the incoming states and the states after, at most
     * {@link SegmentPlan#maxStates} of them on this GPU.
     */
    long segmentStateBytes(AttentionSpec spec, Kernels.Choice kn) {
        long states = SegmentPlan.maxStates(fill(spec, kn), minSegments);
        return states * LightningState.bytes(spec.heads(), spec.dk(), spec.dv(), spec.normalized());
    }

    /** The per-segment state buffers (S and, normalizing, z) a launch of that plan needs. */
    void ensureSegmentBuffers(AttentionSpec spec, SegmentPlan plan, boolean outputs) {
        long sBytes = LightningState.kvBytes(spec);
        long zBytes = LightningState.normalizerBytes(spec);
        if (!outputs) {
            segmentStates.ensure(sBytes * plan.segments());
            segmentStatesNorm.ensure(zBytes * plan.segments());
        } else if (plan.segments() > 1) {
            segmentStates.ensure(sBytes * plan.locals());
            segmentStatesNorm.ensure(zBytes * plan.locals());
            segmentIncoming.ensure(sBytes * plan.segments());
            segmentIncomingNorm.ensure(zBytes * plan.segments());
            stateScratch.ensure(sBytes * plan.segments());
            stateScratchNorm.ensure(zBytes * plan.segments());
        }
    }

    /** S and z arrays of per-segment states as the kernels take them (z absent when not normalizing). */
    static Kernels.States segmentArrays(AttentionSpec spec, Buffer s, Buffer z) {
        return new Kernels.States(s.ptr, spec.normalized() ? z.ptr : null);
    }

    /** Sizes the segment buffers for a launch of n tokens on the kernels {@code kn} ahead of it. */
    void reserveSegments(AttentionSpec spec, Kernels.Choice kn, int n, boolean outputs) {
        ensureSegmentBuffers(spec, segmentPlan(spec, kn, n), outputs);
    }

    /** Closes the buffers, going on past failures (collected); the streams must be drained. */
    void closeBuffers(List<RuntimeException> failures) {
        for (Buffer b : new Buffer[] {segmentStates, segmentStatesNorm, segmentIncoming, segmentIncomingNorm,
                stateScratch, stateScratchNorm}) {
            SlicePipeline.attempt(failures, b::close);
        }
    }
}
