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
            int status = JCudaDriver.cuModuleLoadData(m, CudaDevice.ptx(PTX_RESOURCE));
            if (status != CUresult.CUDA_SUCCESS) {
                throw new CudaException(CUresult.stringFor(status));
            }
        } catch (CudaException e) {
            throw new IllegalStateException("cannot load the batch-step PTX (ISA 9.0, built by nvcc 13) on " + device
                    + ": " + e.getMessage() + "; it needs a driver for CUDA 13.0 or later", e);
        }
        try {
            CudaDevice.checkArgsLayout(m, "lightning_batch.ptx", ARGS_LAYOUT, BatchArgs.Field.values().length,
                    BatchArgs::verify);
            int[] shapes = CudaDevice.report(m, "lightning_batch.ptx", SHAPES, 16);
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

}
