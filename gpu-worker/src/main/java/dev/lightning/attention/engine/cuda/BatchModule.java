package dev.lightning.attention.engine.cuda;

import jcuda.CudaException;
import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUfunction;
import jcuda.driver.CUmodule;
import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.HashMap;
import java.util.Map;

/**
 * The batch-step kernels (lightning_batch.ptx) on one device: loaded once per device per JVM into
 * the device's primary context, checked ({@link BatchArgs#verify} against the module's
 * {@code lightning_batch_args_layout}; its launch shapes read from {@code lightning_batch_shapes}),
 * and unloaded when the JVM ends.
 */
final class BatchModule {
    static final String PTX_RESOURCE = "/dev/lightning/attention/engine/cuda/lightning_batch.ptx";
    static final String ARGS_LAYOUT = "lightning_batch_args_layout";
    static final String SHAPES = "lightning_batch_shapes";

    private static final Map<Integer, BatchModule> OPEN = new HashMap<>();

    final CudaDevice device;
    private final CUmodule module;
    private final Map<String, CUfunction> functions = new HashMap<>();
    /** Value columns per tile (BATCH_BV). */
    final int columns;
    /** Threads per CTA. */
    final int threads;
    /** Most tokens staged in shared memory at once. */
    final int group;
    /** Tokens per z scan when normalizing. */
    final int chunk;
    /** Thread rows of a CTA (rows of S per thread = ceil(Dk / rowGroups)). */
    final int rowGroups;

    private BatchModule(CudaDevice device) {
        this.device = device;
        device.makeCurrent();
        CUmodule m = new CUmodule();
        try {
            int status = JCudaDriver.cuModuleLoadData(m, ptx());
            if (status != CUresult.CUDA_SUCCESS) {
                throw new CudaException(CUresult.stringFor(status));
            }
        } catch (CudaException e) {
            throw new IllegalStateException("cannot load the batch-step PTX (ISA 9.0, built by nvcc 13) on " + device
                    + ": " + e.getMessage() + "; it needs a driver for CUDA 13.0 or later", e);
        }
        try {
            int fields = BatchArgs.Field.values().length;
            int[] layout = report(m, ARGS_LAYOUT, 4 * (fields + 1) + 64);
            try {
                BatchArgs.verify(java.util.Arrays.copyOf(layout, fields + 1));
            } catch (IllegalStateException e) {
                throw new IllegalStateException("lightning_batch.ptx: " + e.getMessage() + " (rebuild the PTX with "
                        + "build-ptx.sh after changing either)", e);
            }
            int[] shapes = report(m, SHAPES, 16);
            columns = shapes[0];
            threads = shapes[1];
            group = shapes[2];
            chunk = shapes[3];
            rowGroups = shapes[4];
        } catch (RuntimeException e) {
            JCudaDriver.cuModuleUnload(m);
            throw e;
        }
        module = m;
    }

    /** The module on {@code device}, loaded on first use. */
    static synchronized BatchModule on(CudaDevice device) {
        BatchModule b = OPEN.get(device.ordinal);
        if (b == null) {
            b = new BatchModule(device);
            if (OPEN.isEmpty()) {
                Runtime.getRuntime().addShutdownHook(new Thread(BatchModule::unloadAll, "lightning-batch-release"));
            }
            OPEN.put(device.ordinal, b);
        }
        return b;
    }

    private static synchronized void unloadAll() {
        for (BatchModule b : OPEN.values()) {
            try {
                b.device.makeCurrent();
                JCudaDriver.cuModuleUnload(b.module);
            } catch (Throwable ignored) {
                // the process is ending (and the context may be gone already); the driver reclaims the rest
            }
        }
        OPEN.clear();
    }

    /** A kernel of the module. */
    synchronized CUfunction function(String kernel) {
        return functions.computeIfAbsent(kernel, k -> {
            CUfunction f = new CUfunction();
            JCudaDriver.cuModuleGetFunction(f, module, k);
            return f;
        });
    }

    /**
     * Shared memory of a launch, in bytes, as lightning_batch_smem_floats computes it: staged q and k
     * rows padded to 4 floats, v, the partial sums and the denominators.
     */
    int sharedBytes(int dk, int stagedTokens) {
        int row = (dk + 3) & ~3;
        return 4 * (stagedTokens * (2 * row + columns + rowGroups * columns) + chunk);
    }

    /** Runs a one-thread report kernel {@code kernel(int* out)} and returns the {@code ints} values it wrote. */
    private static int[] report(CUmodule m, String kernel, int ints) {
        CUfunction f = new CUfunction();
        try {
            JCudaDriver.cuModuleGetFunction(f, m, kernel);
        } catch (CudaException e) {
            throw new IllegalStateException("lightning_batch.ptx has no " + kernel + " kernel (" + e.getMessage()
                    + "): it was built from older sources; rebuild it with gpu-worker/src/main/cuda/build-ptx.sh", e);
        }
        CUdeviceptr out = new CUdeviceptr();
        JCudaDriver.cuMemAlloc(out, 4L * ints);
        int[] all = new int[ints];
        try {
            JCudaDriver.cuMemsetD32(out, 0, ints);
            JCudaDriver.cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, null, Pointer.to(Pointer.to(out)), null);
            JCudaDriver.cuCtxSynchronize();
            JCudaDriver.cuMemcpyDtoH(Pointer.to(all), out, 4L * ints);
        } finally {
            JCudaDriver.cuMemFree(out);
        }
        return all;
    }

    private static byte[] ptx() {
        try (InputStream in = BatchModule.class.getResourceAsStream(PTX_RESOURCE)) {
            if (in == null) {
                throw new IllegalStateException("the batch-step PTX (" + PTX_RESOURCE + ") is missing from the jar");
            }
            byte[] text = in.readAllBytes();
            byte[] terminated = new byte[text.length + 1]; // the driver reads a C string
            System.arraycopy(text, 0, terminated, 0, text.length);
            return terminated;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
