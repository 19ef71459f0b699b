package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.SoftmaxSpec;
import dev.lightning.attention.engine.cuda.SoftmaxArgs.Field;
import dev.lightning.attention.tensor.DType;
import jcuda.driver.CUdeviceptr;

/**
 * The softmax kernels' host-side contract in one place (softmax.cu): their names, which one a
 * launch uses, its launch shape as the module reports it, and the one argument, struct
 * SoftmaxArgs ({@link SoftmaxArgs}), filled here and nowhere else.
 *
 * <p>BF16/F16 run on the tensor-core kernels: on an H100/H200 the wgmma ones (softmax_sm90.cu)
 * where Dk and Dv are both 65..128, elsewhere the portable mma.sync ones (sm_80+), one per pair of
 * padded widths (Dk, Dv each padded to 64, 128 or 256); F32 on the float32 CUDA-core kernel.
 * Measured on an H200 (BENCHMARKS.md, causal bf16, Hq = 64, Hk = 8, D = 128): wgmma 255-282
 * TFLOP/s, mma.sync 201-214. A CTA holds
 * {@code rows} packed (token, query head of a group) rows of one key/value head: grid
 * (ceil(nq G / rows), Hk), G = Hq / Hk.
 */
final class SoftmaxKernels {
    private SoftmaxKernels() {
    }

    /** The kernel that reports the module's SoftmaxArgs layout (softmax_args.cuh). */
    static final String ARGS_LAYOUT = "softmax_args_layout";
    /** The kernel that reports the launch shapes ({@link Shapes}). */
    static final String LAUNCH_SHAPES = "softmax_launch_shapes";
    /** The Hopper module's report: threads, rows a CTA, shared bytes, the padded width it covers. */
    static final String HOPPER_LAUNCH_SHAPES = "softmax_sm90_launch_shapes";

    /** The launch shapes as softmax_launch_shapes writes them (see softmax.cu for the layout). */
    record Shapes(int[] widths, int[] tc, int f32Threads, int f32Rows, int f32Keys, int[] hopper) {
        static final int REPORT_INTS = 34;
        static final int HOPPER_REPORT_INTS = 4;

        /** From the portable module's report and the Hopper module's (null: no Hopper kernels). */
        static Shapes of(int[] r, int[] hopper) {
            return new Shapes(java.util.Arrays.copyOfRange(r, 0, 3), java.util.Arrays.copyOfRange(r, 3, 30), r[30],
                    r[31], r[32], hopper == null ? null : hopper.clone());
        }

        /** Index of the smallest padded width that holds {@code d}. */
        int widthIndex(int d) {
            for (int i = 0; i < widths.length; i++) {
                if (d <= widths[i]) {
                    return i;
                }
            }
            throw new IllegalArgumentException("head width " + d + " exceeds the kernels' largest, " + widths[2]);
        }
    }

    /** One launch's kernel and shape. */
    record Choice(String kernel, int threads, int rows, int smem) {
        /** The grid's x extent for nq queries: row tiles of the nq G packed rows of a key/value head. */
        int rowTiles(SoftmaxSpec spec, int nq) {
            long rowsTotal = (long) nq * (spec.headsQ() / spec.headsK());
            long tiles = (rowsTotal + rows - 1) / rows;
            if (tiles > Integer.MAX_VALUE) {
                throw new IllegalArgumentException(nq + " queries x " + spec.headsQ() / spec.headsK()
                        + " heads a group is too many rows for one launch; use smaller query blocks");
            }
            return (int) tiles;
        }
    }

    /**
     * The kernel of a launch: on a Hopper GPU (when {@code hopperKernels}) the wgmma kernel for
     * BF16/F16 widths that pad to its width (Dk, Dv in 65..128), else the mma.sync one for the
     * padded widths, and the float32 kernel for F32.
     */
    static Choice choose(Shapes shapes, DType dtype, SoftmaxSpec spec, boolean hopperKernels) {
        int dk = spec.dk();
        int dv = spec.dv();
        int[] h = shapes.hopper();
        if (hopperKernels && h != null && dtype != DType.F32 && dk <= h[3] && dv <= h[3] && dk > h[3] / 2
                && dv > h[3] / 2) {
            String type = dtype == DType.BF16 ? "bf16" : "f16";
            return new Choice("softmax_sm90_forward_" + type + "_k" + h[3] + "_v" + h[3], h[0], h[1], h[2]);
        }
        if (dtype == DType.F32) {
            int smem = 4 * (shapes.f32Rows() * dk + shapes.f32Keys() * (dk + 1) + shapes.f32Keys() * dv);
            return new Choice("softmax_forward_f32", shapes.f32Threads(), shapes.f32Rows(), smem);
        }
        int i = shapes.widthIndex(dk);
        int j = shapes.widthIndex(dv);
        int at = 3 * (3 * i + j);
        String type = dtype == DType.BF16 ? "bf16" : "f16";
        return new Choice("softmax_forward_" + type + "_k" + shapes.widths()[i] + "_v" + shapes.widths()[j],
                shapes.tc()[at], shapes.tc()[at + 1], shapes.tc()[at + 2]);
    }

    /**
     * The argument of one block call: nq queries at absolute position qStart over nk keys at
     * kStart; o [nq, Hq, Dv] and lse [nq, Hq] float32.
     */
    static SoftmaxArgs args(SoftmaxSpec spec, CUdeviceptr q, long qStart, int nq, CUdeviceptr k, CUdeviceptr v,
                            long kStart, int nk, CUdeviceptr o, CUdeviceptr lse) {
        return new SoftmaxArgs()
                .ptr(Field.Q, q)
                .ptr(Field.K, k)
                .ptr(Field.V, v)
                .ptr(Field.O, o)
                .ptr(Field.LSE, lse)
                .i64(Field.Q_START, qStart)
                .i64(Field.K_START, kStart)
                .i64(Field.WINDOW, spec.window())
                .i32(Field.NQ, nq)
                .i32(Field.NK, nk)
                .i32(Field.HEADS_Q, spec.headsQ())
                .i32(Field.HEADS_K, spec.headsK())
                .i32(Field.DK, spec.dk())
                .i32(Field.DV, spec.dv())
                .f32(Field.SCALE_LOG2, (float) (spec.scale() / Math.log(2)));
    }
}
