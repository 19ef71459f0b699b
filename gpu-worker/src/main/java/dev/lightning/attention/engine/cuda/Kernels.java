package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.tensor.DType;
import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUfunction;
import jcuda.driver.CUstream;
import jcuda.driver.JCudaDriver;

/**
 * The kernels' host-side contract in one place: their names, which of them a launch uses, their
 * launch shapes, and their argument lists in the order the kernels declare them (lightning.cu,
 * tensor_core.cuh, hopper.cuh). A change of a kernel's signature is a change here only.
 *
 * <p>BF16/F16 use the tensor-core kernels (on an H100/H200 the wgmma ones of hopper.cuh where
 * Dk <= 128 and Dv > 64, elsewhere the portable mma.sync ones); F32 (and "gpu-generic") the
 * float32 CUDA-core kernels.
 */
final class Kernels {
    private Kernels() {
    }

    /** Value columns per CTA of the float32 kernels. */
    static final int GENERIC_BV = 32;
    static final int GENERIC_THREADS = 256;
    /** The scan kernel (any dtype: it works on float32 states). */
    static final String SCAN = "lightning_scan";
    static final int SCAN_THREADS = 256;

    /** The kernels a launch uses and their launch shapes. */
    record Choice(String forward, String states, int bv, int threads, int smemForward, int smemStates) {
        /** The grid's y extent: CTAs across the value columns. */
        int columnTiles(int dv) {
            return (dv + bv - 1) / bv;
        }
    }

    /** The dtype part of a kernel's name. */
    static String type(DType dtype) {
        return dtype == DType.F32 ? "f32" : dtype == DType.BF16 ? "bf16" : "f16";
    }

    /**
     * @param tensorCores   the backend may use the tensor-core kernels (false: "gpu-generic")
     * @param hopperKernels the Hopper kernels may run (tests turn them off to check the portable ones)
     */
    static Choice choose(CudaDevice device, boolean tensorCores, boolean hopperKernels, DType dtype, int dk, int dv) {
        String type = type(dtype);
        boolean tc = tensorCores && dtype != DType.F32 && device.has("lightning_forward_tc_bf16");
        // Hopper (wgmma) kernels where the device has them and the shape suits them: they pad Dk
        // to 128 and cover 128 columns, so Dk <= 64 or Dv <= 64 would be half zeros or half idle;
        // the mma.sync kernels (64 columns a CTA) keep those.
        boolean hopper = tc && hopperKernels && TensorCoreLayout.hopperFits(dk, dv)
                && device.has("lightning_forward_wg_" + type);
        if (hopper) {
            return new Choice("lightning_forward_wg_" + type, "lightning_states_wg_" + type,
                    TensorCoreLayout.HOPPER_COLUMNS, TensorCoreLayout.HOPPER_THREADS,
                    TensorCoreLayout.hopperSharedBytes(dk, true), TensorCoreLayout.hopperSharedBytes(dk, false));
        }
        if (tc) {
            return new Choice("lightning_forward_tc_" + type + TensorCoreLayout.kernelSuffix(dk),
                    "lightning_states_tc_" + type + TensorCoreLayout.kernelSuffix(dk), TensorCoreLayout.COLUMNS,
                    TensorCoreLayout.threads(dk), tcSharedBytes(dk), tcSharedBytes(dk));
        }
        return new Choice("lightning_forward_generic_" + type, "lightning_states_generic_" + type, GENERIC_BV,
                GENERIC_THREADS, genericSharedBytes(dk), genericSharedBytes(dk));
    }

    /** The benchmark's fill kernel for a dtype. */
    static String fill(DType dtype) {
        return "lightning_fill_uniform_" + type(dtype);
    }

    /** Dynamic shared memory of the float32 kernels; the same formula as lightning.cu. */
    static int genericSharedBytes(int dk) {
        int chunk = TensorCoreLayout.CHUNK;
        return 4 * ((chunk + 4) + 2 * chunk * (dk + 1) + chunk * GENERIC_BV + chunk * (chunk + 1) + dk * GENERIC_BV);
    }

    /** Dynamic shared memory of the tensor-core kernels; the same formula as tensor_core.cuh. */
    static int tcSharedBytes(int dk) {
        return TensorCoreLayout.sharedBytes(dk);
    }

    /** Enqueues {@code kernel} on {@code stream}: grid (gx, gy, gz), {@code threads} x 1 x 1. */
    static void launch(CudaDevice device, CUstream stream, String kernel, int gx, int gy, int gz, int threads,
                       int smem, Pointer params) {
        CUfunction f = device.function(kernel);
        JCudaDriver.cuLaunchKernel(f, gx, gy, gz, threads, 1, 1, smem, stream, params, null);
    }

    // ---------------------------------------------------------------- argument lists, in the kernels' order

    /** The states kernel: local states of {@code n} tokens of k, v in pieces of {@code pieceTokens}. */
    static Pointer statesArgs(CUdeviceptr k, CUdeviceptr v, int n, int heads, int dk, int dv, int pieceTokens,
                              CUdeviceptr slopes, CUdeviceptr localStates) {
        return Pointer.to(Pointer.to(k), Pointer.to(v), ints(n), ints(heads), ints(dk), ints(dv), ints(pieceTokens),
                Pointer.to(slopes), Pointer.to(localStates));
    }

    /**
     * The scan kernel over {@code locals} local states, every {@code every}-th of which starts a
     * segment: writes the incoming state of each of {@code segments} segments to
     * {@code segmentIncoming} and, when {@code result} is given, the state after the window.
     */
    static Pointer scanArgs(CUdeviceptr localStates, int locals, int every, int pieceTokens, int n,
                            CUdeviceptr incoming, CUdeviceptr segmentIncoming, int segments, CUdeviceptr result,
                            int heads, int dk, int dv, CUdeviceptr slopes) {
        return Pointer.to(Pointer.to(localStates), ints(locals), ints(every), ints(pieceTokens), ints(n),
                Pointer.to(incoming), Pointer.to(segmentIncoming), ints(segments), Pointer.to(result),
                ints(heads), ints(dk), ints(dv), Pointer.to(slopes));
    }

    /** The forward kernel: o of {@code n} tokens in segments of {@code segTokens}, and the states after them. */
    static Pointer forwardArgs(CUdeviceptr q, CUdeviceptr k, CUdeviceptr v, CUdeviceptr o, int n, int heads, int dk,
                               int dv, int segTokens, CUdeviceptr slopes, double scale, CUdeviceptr incoming,
                               CUdeviceptr after) {
        return Pointer.to(Pointer.to(q), Pointer.to(k), Pointer.to(v), Pointer.to(o), ints(n),
                ints(heads), ints(dk), ints(dv), ints(segTokens), Pointer.to(slopes),
                Pointer.to(new float[] {(float) scale}), Pointer.to(incoming), Pointer.to(after));
    }

    /** The fill kernel: {@code count} uniform values from {@code seed}. */
    static Pointer fillArgs(CUdeviceptr target, long count, long seed) {
        return Pointer.to(Pointer.to(target), Pointer.to(new long[] {count}), Pointer.to(new long[] {seed}));
    }

    private static Pointer ints(int v) {
        return Pointer.to(new int[] {v});
    }
}
