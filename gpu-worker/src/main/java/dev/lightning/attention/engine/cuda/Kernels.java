package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.GpuUnusableException;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.cuda.KernelArgs.Field;
import dev.lightning.attention.tensor.DType;
import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUfunction;
import jcuda.driver.CUstream;
import jcuda.driver.JCudaDriver;

import java.util.EnumSet;
import java.util.Set;

/**
 * The kernels' host-side contract in one place: their names, which of them a launch uses, their
 * launch shapes, and their one argument, struct LightningArgs ({@link KernelArgs}), filled here and
 * nowhere else (lightning.cu, tensor_core.cuh, hopper.cuh all take it by value).
 *
 * <p>BF16/F16 use the tensor-core kernels (on an H100/H200 the wgmma ones of hopper.cuh where
 * Dk <= 128 and Dv > 64, and their paired form, two heads a CTA, where Dk = Dv = 64 and the heads
 * pair up; elsewhere the portable mma.sync ones); F32 (and "gpu-generic") the
 * float32 CUDA-core kernels. Every family computes every variant (grouped heads, feature maps,
 * normalization, checkpoints); {@link #NOT_ON_TENSOR_CORES} and {@link #NOT_ON_HOPPER} send a
 * variant elsewhere should one family's version of it be found wrong on a device.
 */
final class Kernels {
    private Kernels() {
    }

    /** The scan kernel (any dtype: it works on float32 states). */
    static final String SCAN = "lightning_scan";
    static final int SCAN_THREADS = 256;
    /** The kernel that reports the module's LightningArgs layout (lightning_args.cuh). */
    static final String ARGS_LAYOUT = "lightning_args_layout";
    /** The kernels that report each module's launch shapes ({@link LaunchShapes}). */
    static final String LAUNCH_SHAPES = "lightning_launch_shapes";
    static final String HOPPER_LAUNCH_SHAPES = "lightning_wg_launch_shapes";

    /** What a launch computes beyond plain multi-head attention; the routing switches name these. */
    enum Variant {
        /** Hq, Hk, Hv not all H. */
        GROUPED,
        /** phi other than the identity. */
        FEATURE_MAP,
        /** the normalizer z and the division by phi(q) . z + eps. */
        NORMALIZED,
        /** states recorded every N tokens by the forward kernel. */
        CHECKPOINTS;

        /** The variants of a launch of {@code spec}, with or without checkpoints. */
        static Set<Variant> of(AttentionSpec spec, boolean checkpoints) {
            Set<Variant> s = EnumSet.noneOf(Variant.class);
            if (!spec.ungrouped()) {
                s.add(GROUPED);
            }
            if (spec.featureMap() != FeatureMap.IDENTITY) {
                s.add(FEATURE_MAP);
            }
            if (spec.normalized()) {
                s.add(NORMALIZED);
            }
            if (checkpoints) {
                s.add(CHECKPOINTS);
            }
            return s;
        }
    }

    /**
     * Variants that run on the float32 kernels even for BF16/F16 input: the fallback switch for a
     * tensor-core version found wrong on a device (add the variant here; nothing else changes).
     * Empty: every variant runs on the tensor cores.
     */
    static final Set<Variant> NOT_ON_TENSOR_CORES = EnumSet.noneOf(Variant.class);
    /** Variants kept off the Hopper (wgmma) kernels, on the portable mma.sync ones instead; empty: none. */
    static final Set<Variant> NOT_ON_HOPPER = EnumSet.noneOf(Variant.class);

    /**
     * The kernels a launch uses and their launch shapes; {@code headsPerCta} 2 for the paired Hopper
     * kernels (a CTA takes two neighbouring heads), else 1; {@code ctaBytesPerSecond} what one forward
     * CTA moves a second where that was measured ({@link SegmentPlan#HOPPER_CTA_BYTES_PER_SECOND}: the
     * segment plans then weigh the memory), else 0.
     */
    record Choice(String forward, String states, int bv, int threads, int smemForward, int smemStates,
                  int headsPerCta, double ctaBytesPerSecond) {
        Choice(String forward, String states, int bv, int threads, int smemForward, int smemStates) {
            this(forward, states, bv, threads, smemForward, smemStates, 1, 0);
        }

        /** The grid's y extent: CTAs across the value columns. */
        int columnTiles(int dv) {
            return (dv + bv - 1) / bv;
        }

        /** The grid's x extent for {@code heads} heads. */
        int headCtas(int heads) {
            return heads / headsPerCta;
        }
    }

    /** The dtype part of a kernel's name. */
    static String type(DType dtype) {
        return dtype == DType.F32 ? "f32" : dtype == DType.BF16 ? "bf16" : "f16";
    }

    /** A block's most dynamic shared memory (cudaDevAttrMaxSharedMemoryPerBlockOptin) on an A100 (also A30, A800). */
    static final int A100_SHARED_BYTES = 166_912;
    /** The same on GPUs of compute capability 8.6, 8.9 and 12.0 (A10, A40, L4, L40S, RTX 30, 40 and 50 series). */
    static final int SMALL_SHARED_BYTES = 101_376;
    /** The same on an H100 or H200. */
    static final int HOPPER_SHARED_BYTES = 232_448;

    /**
     * Which kernel families a backend may choose from: all true is the product's choice; the tests
     * and the benchmark turn families off or on to run the others on the same GPU.
     *
     * @param tensorCores    the tensor-core kernels (false: "gpu-generic")
     * @param hopper         the Hopper kernels (tests turn them off to check the portable ones there)
     * @param hopperAnyWidth the Hopper kernels take every Dk they compute, also Dk <= 64 and Dv <= 64,
     *                       which they pad (benchmark only: to time them there against the mma.sync ones)
     * @param hopperPairs    the paired Hopper kernels where they fit (false: benchmark A/B only)
     * @param small          the "_n64" mma.sync kernels at Dk <= 64 (false: the narrow ones, same block
     *                       and shared memory; benchmark A/B only)
     * @param sharedLimit    the most dynamic shared memory a block may have: the device's
     *                       (CudaDevice.maxSharedPerBlock); tests give less, to run on a Hopper GPU what
     *                       an A100 ({@link #A100_SHARED_BYTES}) or a GPU of compute capability 8.6, 8.9 or
     *                       12.0 ({@link #SMALL_SHARED_BYTES}) runs
     */
    record Allowed(boolean tensorCores, boolean hopper, boolean hopperAnyWidth, boolean hopperPairs, boolean small,
                   int sharedLimit) {
    }

    /** @param checkpoints the launch records checkpoints */
    static Choice choose(CudaDevice device, Allowed allowed, DType dtype, AttentionSpec spec, boolean checkpoints) {
        String type = type(dtype);
        int dk = spec.dk();
        int dv = spec.dv();
        Set<Variant> variants = Variant.of(spec, checkpoints);
        boolean tc = allowed.tensorCores() && dtype != DType.F32 && disjoint(variants, NOT_ON_TENSOR_CORES)
                && device.has("lightning_forward_tc_bf16");
        // Hopper (wgmma) kernels where the device has them and the shape suits them
        // (LaunchShapes.hopperFits); shapes and sizes as the modules report them.
        LaunchShapes shapes = device.shapes;
        boolean fits = allowed.hopperAnyWidth() ? shapes.hopperTakes(dk) : shapes.hopperFits(dk, dv);
        int limit = allowed.sharedLimit();
        boolean hopper = tc && allowed.hopper() && fits && disjoint(variants, NOT_ON_HOPPER)
                && device.has("lightning_forward_wg_" + type)
                && Math.max(shapes.hopperSharedBytes(dk, true), shapes.hopperSharedBytes(dk, false)) <= limit;
        // Dk = Dv = 64 (LaunchShapes.hopperPairs), ungrouped, not normalized: the paired Hopper kernels,
        // two heads a CTA, so that both consumer warpgroups work (the unpaired ones leave one idle there).
        boolean pairs = tc && allowed.hopper() && allowed.hopperPairs() && !allowed.hopperAnyWidth()
                && shapes.hopperPairs(dk, dv, spec.heads()) && spec.ungrouped() && !spec.normalized()
                && disjoint(variants, NOT_ON_HOPPER) && device.has("lightning_forward_wg_pair_" + type)
                && Math.max(shapes.hopperPairForwardBytes, shapes.hopperSharedBytes(dk, false)) <= limit;
        if (pairs) {
            return new Choice("lightning_forward_wg_pair_" + type, "lightning_states_wg_pair_" + type,
                    shapes.hopperColumns, shapes.hopperThreads, shapes.hopperPairForwardBytes,
                    shapes.hopperSharedBytes(dk, false), 2, 0);
        }
        if (hopper) {
            return new Choice("lightning_forward_wg_" + type, "lightning_states_wg_" + type, shapes.hopperColumns,
                    shapes.hopperThreads, shapes.hopperSharedBytes(dk, true), shapes.hopperSharedBytes(dk, false), 1,
                    SegmentPlan.HOPPER_CTA_BYTES_PER_SECOND);
        }
        // The mma.sync kernels take as many pipeline stages as the launch's bytes hold (2 to 4), so they run
        // wherever a block gets two stages' worth: an A100 (163 KB a block) at every Dk up to 192, a GPU of
        // 99 KB a block (compute capability 8.6, 8.9, 12.0) up to Dk = 80.
        // Each formula has entries of its own (tensor_core.cuh): the plain ones compile the plain body
        // alone, so a normalized launch must take the _norm entries (KernelLayoutTest checks they exist).
        String family = type + (spec.normalized() ? "_norm" : "");
        String suffix = shapes.tensorCoreSuffix(dk, allowed.small());
        if (tc && shapes.tensorCoreMinSharedBytes(dk) <= limit) {
            int bytes = Math.min(shapes.tensorCoreSharedBytes(dk), limit);
            return new Choice("lightning_forward_tc_" + family + suffix, "lightning_states_tc_" + family + suffix,
                    shapes.tcColumns, shapes.tensorCoreThreads(dk), bytes, bytes);
        }
        // Where two stages of the forward do not fit but its "_q1" entries do (one Q tile beside two stages of K
        // and V: a 99 KB block from Dk = 81 to 128, MiniMax's 128 among them), those, with the narrow states kernel
        // (both the narrow block).
        int q1 = shapes.tensorCoreQ1SharedBytes(dk);
        if (tc && q1 > 0 && q1 <= limit) {
            return new Choice("lightning_forward_tc_" + family + "_q1", "lightning_states_tc_" + family + suffix,
                    shapes.tcColumns, shapes.tensorCoreThreads(dk), q1,
                    Math.min(shapes.tensorCoreSharedBytes(dk), limit));
        }
        // The float32 kernels, 32 value columns a CTA; where a block cannot hold that many columns' state and values,
        // their "_c16" entries (16 a CTA): on a 99 KB GPU, Dk 118 to 137 for F32 input, 129 to 137 for BF16 and F16.
        LaunchShapes.Generic generic = shapes.genericWithin(dk, limit);
        if (generic != null) {
            return new Choice("lightning_forward_generic_" + type + generic.suffix(),
                    "lightning_states_generic_" + type + generic.suffix(), generic.columns(), shapes.genericThreads,
                    generic.bytes(), generic.bytes());
        }
        throw GpuUnusableException.noKernelFor(device + " gives a block at most " + limit + " bytes of shared memory, and "
                + "no GPU kernel computes Dk = " + dk + " in that: the tensor-core kernels need "
                + (q1 > 0 ? Math.min(q1, shapes.tensorCoreMinSharedBytes(dk)) : shapes.tensorCoreMinSharedBytes(dk))
                + " bytes there (BF16 and F16 input), the float32 ones "
                + shapes.genericNarrowSharedBytes(dk) + "; run this input with --backend cpu, or on GPUs whose blocks get "
                + String.format(java.util.Locale.ROOT, "that much (an A100 %,d bytes, an H100 or H200 %,d)",
                        A100_SHARED_BYTES, HOPPER_SHARED_BYTES));
    }

    private static boolean disjoint(Set<Variant> a, Set<Variant> b) {
        return java.util.Collections.disjoint(a, b);
    }

    /** The benchmark's fill kernel for a dtype. */
    static String fill(DType dtype) {
        return "lightning_fill_uniform_" + type(dtype);
    }

    /** Enqueues {@code kernel} on {@code stream}: grid (gx, gy, gz), {@code threads} x 1 x 1. */
    static void launch(CudaDevice device, CUstream stream, String kernel, int gx, int gy, int gz, int threads,
                       int smem, Pointer params) {
        CUfunction f = device.function(kernel);
        JCudaDriver.cuLaunchKernel(f, gx, gy, gz, threads, 1, 1, smem, stream, params, null);
    }

    // ---------------------------------------------------------------- the argument struct of each launch

    /**
     * A state array on the device as the kernels see it: S {@code [count][H][Dk][Dv]} at {@code s}
     * and z {@code [count][H][Dk]} at {@code z} (null when the spec does not normalize, and for
     * an absent state). Both null: no state (the kernels read zero, or write nothing).
     */
    record States(CUdeviceptr s, CUdeviceptr z) {
        static final States NONE = new States(null, null);

        /**
         * One state stored as {@link dev.lightning.attention.engine.LightningState#toBytes} lays it
         * out: S, then z right after it (the carried states A and B).
         */
        static States packed(AttentionSpec spec, CUdeviceptr at) {
            return new States(at, spec.normalized() ? at.withByteOffset(LightningState.kvBytes(spec)) : null);
        }
    }

    /**
     * Where a forward launch writes the checkpoints that fall in its tokens: S of checkpoint c (global
     * index) at {@code states.s()[c - first]}, z likewise; the launch's first token is token
     * {@code position} of the sequence. {@code every} 0: the launch writes none.
     * {@code windowRecords}: its window records checkpoints, in this launch or another (the kernel
     * choice follows the window, so that all its slices run one family and share one segment plan).
     */
    record CheckpointTarget(States states, int every, long position, long first, boolean windowRecords) {
        /** A window without checkpoints. */
        static final CheckpointTarget NONE = new CheckpointTarget(States.NONE, 0, 0, 0, false);
        /** A slice of a window with checkpoints in which none falls. */
        static final CheckpointTarget NONE_HERE = new CheckpointTarget(States.NONE, 0, 0, 0, true);
    }

    /**
     * The fields every launch of {@code spec} shares: the window's tokens, head layout, widths,
     * feature map, normalization, scale, eps and the slopes. The launches below copy it and add theirs.
     */
    static KernelArgs common(AttentionSpec spec, int n, CUdeviceptr slopes) {
        return new KernelArgs()
                .ptr(Field.SLOPES, slopes)
                .i32(Field.N, n)
                .i32(Field.HEADS, spec.heads())
                .i32(Field.HEADS_Q, spec.headsQ())
                .i32(Field.HEADS_K, spec.headsK())
                .i32(Field.HEADS_V, spec.headsV())
                .i32(Field.DK, spec.dk())
                .i32(Field.DV, spec.dv())
                .i32(Field.FEATURE_MAP, spec.featureMap().code())
                .i32(Field.NORMALIZE, spec.normalized() ? 1 : 0)
                .f32(Field.SCALE, (float) spec.scale())
                .f32(Field.EPS, (float) spec.eps());
    }

    /**
     * The states kernel: local states of the tokens of k, v in pieces of {@code pieceTokens}
     * (grid z; piece 0 {@code leadTokens} long, {@link SegmentPlan#lead}: {@code pieceTokens} for
     * even pieces), from zero, into {@code locals}.
     */
    static KernelArgs statesArgs(KernelArgs common, CUdeviceptr k, CUdeviceptr v, int pieceTokens, int leadTokens,
                                 States locals) {
        return common.copy()
                .ptr(Field.K, k)
                .ptr(Field.V, v)
                .i32(Field.SEG_TOKENS, pieceTokens)
                .i32(Field.LEAD_TOKENS, lead(pieceTokens, leadTokens))
                .ptr(Field.STATES, locals.s())
                .ptr(Field.STATES_NORM, locals.z());
    }

    /**
     * The scan over {@code count} local states of {@code pieceTokens} tokens each (the first
     * {@code leadTokens}), every {@code every}-th of which starts a segment: from {@code before}
     * (the state before the window), writes the incoming state of each of {@code segments} segments
     * to {@code segmentIncoming} and, when {@code result} has an S part, the state after the window.
     */
    static KernelArgs scanArgs(KernelArgs common, States locals, int count, int every, int pieceTokens,
                               int leadTokens, States before, States segmentIncoming, int segments, States result) {
        return common.copy()
                .ptr(Field.SCAN_LOCALS, locals.s())
                .ptr(Field.SCAN_LOCAL_NORMS, locals.z())
                .i32(Field.SCAN_COUNT, count)
                .i32(Field.SCAN_EVERY, every)
                .i32(Field.SCAN_SUB_TOKENS, pieceTokens)
                .i32(Field.LEAD_TOKENS, lead(pieceTokens, leadTokens))
                .ptr(Field.INCOMING, before.s())
                .ptr(Field.INCOMING_NORM, before.z())
                .ptr(Field.STATES, segmentIncoming.s())
                .ptr(Field.STATES_NORM, segmentIncoming.z())
                .i32(Field.SCAN_OUT_COUNT, segments)
                .ptr(Field.SCAN_FINAL, result.s())
                .ptr(Field.SCAN_FINAL_NORM, result.z());
    }

    /**
     * The forward kernel: o in segments of {@code segTokens} (grid z; segment 0 {@code leadTokens}
     * long, {@link SegmentPlan#lead}, and launched last when shorter), segment s starting from
     * {@code incoming[s]} and writing the state after it to {@code after[s]}, and the checkpoints
     * that fall in its tokens.
     */
    static KernelArgs forwardArgs(KernelArgs common, CUdeviceptr q, CUdeviceptr k, CUdeviceptr v, CUdeviceptr o,
                                  int segTokens, int leadTokens, States incoming, States after,
                                  CheckpointTarget checkpoints) {
        return common.copy()
                .ptr(Field.Q, q)
                .ptr(Field.K, k)
                .ptr(Field.V, v)
                .ptr(Field.O, o)
                .i32(Field.SEG_TOKENS, segTokens)
                .i32(Field.LEAD_TOKENS, lead(segTokens, leadTokens))
                .ptr(Field.INCOMING, incoming.s())
                .ptr(Field.INCOMING_NORM, incoming.z())
                .ptr(Field.STATES, after.s())
                .ptr(Field.STATES_NORM, after.z())
                .ptr(Field.CHECKPOINTS, checkpoints.states().s())
                .ptr(Field.CHECKPOINT_NORMS, checkpoints.states().z())
                .i32(Field.CHECKPOINT_EVERY, checkpoints.every())
                .i64(Field.POSITION, checkpoints.position())
                .i64(Field.FIRST_CHECKPOINT, checkpoints.first());
    }

    /**
     * The struct's leadTokens for pieces of {@code pieceTokens} whose first is {@code leadTokens}
     * long: that where shorter (an uneven cut), else 0, which the kernels read as even pieces, so
     * that an even cut's launch is byte for byte what it was before uneven cuts existed.
     */
    private static int lead(int pieceTokens, int leadTokens) {
        if (leadTokens < 1 || leadTokens > pieceTokens) {
            throw new IllegalArgumentException("the first piece of a launch is 1 to " + pieceTokens
                    + " tokens (the others' length); got " + leadTokens);
        }
        return leadTokens < pieceTokens ? leadTokens : 0;
    }

    /**
     * The fill kernel: {@code count} uniform values from {@code seed}. A benchmark helper outside the
     * attention kernels' contract, so it keeps its own three parameters rather than the struct.
     */
    static Pointer fillArgs(CUdeviceptr target, long count, long seed) {
        return Pointer.to(Pointer.to(target), Pointer.to(new long[] {count}), Pointer.to(new long[] {seed}));
    }
}
