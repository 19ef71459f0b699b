package dev.lightning.attention.engine.cuda;

import jcuda.CudaException;
import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUfunction;
import jcuda.driver.CUfunction_attribute;
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
 * and unloaded when the JVM ends by the device that adopted it ({@link CudaDevice#adopt}).
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
    /**
     * Most new tokens a sequence may have for a batch to run through the staged kernels (S in shared
     * memory; 0: never), which exist for up to {@link #STAGED_ROWS} rows a thread.
     */
    final int stagedTokens;
    /** Most rows of S a thread holds in the staged kernels. */
    static final int STAGED_ROWS = 8;
    /** CU_SHAREDMEM_CARVEOUT_MAX_SHARED: as much of the SM's L1 as shared memory as it can have. */
    private static final int MAX_SHARED_CARVEOUT = 100;

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
            throw new IllegalStateException("cannot load the batch-step module (lightning_batch) on " + device + ": "
                    + e.getMessage() + ". " + CudaDevice.loadAdvice(), e);
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
            stagedTokens = shapes[5];
        } catch (RuntimeException | Error e) {
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
            device.adopt(b.module); // unloaded at exit by the device's hook, before its context goes
            OPEN.put(device.ordinal, b);
        }
        return b;
    }

    /**
     * A kernel of the module. A staged kernel keeps its slice of S in shared memory and wants many
     * CTAs an SM, so it asks for the largest shared-memory carveout (a hint: the driver may choose
     * another, which costs speed, not correctness).
     */
    synchronized CUfunction function(String kernel) {
        return functions.computeIfAbsent(kernel, k -> {
            CUfunction f = new CUfunction();
            JCudaDriver.cuModuleGetFunction(f, module, k);
            if (k.endsWith(STAGED_SUFFIX)) {
                JCudaDriver.cuFuncSetAttribute(f, CUfunction_attribute.CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT,
                        MAX_SHARED_CARVEOUT);
            }
            return f;
        });
    }

    /** Ends the names of the staged kernels. */
    static final String STAGED_SUFFIX = "_staged";

    /**
     * Shared memory of a launch, in bytes, as lightning_batch_smem_floats computes it: q and k rows of
     * {@code groupTokens} tokens padded to 4 floats, v, the partial sums and the denominators, and for
     * a staged kernel of {@code stagedRows} rows a thread its slice of S (0 for the register kernels).
     */
    int sharedBytes(int dk, int groupTokens, int stagedRows) {
        int row = (dk + 3) & ~3;
        return 4 * (groupTokens * (2 * row + columns + rowGroups * columns) + chunk + stagedRows * rowGroups * columns);
    }

    /**
     * Whether a batch whose longest sequence has {@code maxTokens} new tokens runs through the staged
     * kernels at {@code rows} rows of S a thread: the decode step, once the module enables them
     * (BATCH_STAGED_TOKENS; BENCHMARKS.md, "Many short sequences").
     */
    boolean staged(int rows, int maxTokens) {
        return stagedTokens > 0 && rows <= STAGED_ROWS && maxTokens <= stagedTokens;
    }

}
