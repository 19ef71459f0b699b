package dev.lightning.attention.engine;

import dev.lightning.attention.engine.cpu.CpuBackend;
import dev.lightning.attention.engine.cuda.CudaBackend;
import dev.lightning.attention.engine.reference.ChunkedReference;
import dev.lightning.attention.engine.reference.RecurrentReference;
import dev.lightning.attention.engine.reference.SoftmaxReference;

import java.util.List;

/** The backends by name: the fast ones a job uses and the float64 references tests hold them to. */
public final class Backends {
    /** Names {@link #create(String)} accepts. */
    public static final List<String> NAMES = List.of("cpu", "chunked-f64", "recurrent-f64", "gpu", "gpu-generic");

    /**
     * Tokens per chunk of the GPU kernels: GPU checkpoints need an interval and window positions
     * that are multiples of it.
     */
    public static final int GPU_CHUNK = CudaBackend.CHUNK;

    /**
     * Whether GPU checkpoints every {@code every} tokens fit windows that start at multiples of
     * {@code start} (a job's pieces and windows start at multiples of its chunk size).
     */
    public static boolean gpuCheckpointsFit(long every, long start) {
        return CudaBackend.checkpointsFit(every, start);
    }

    /** Device memory a GPU backend made here may take. */
    public static final long DEFAULT_GPU_MEMORY = 8L << 30;

    private Backends() {
    }

    /** The float32 CPU backend. */
    public static AttentionBackend cpu() {
        return new CpuBackend();
    }

    /**
     * The GPU backend on CUDA device {@code ordinal} (tensor-core kernels where the dtype has them),
     * allocating at most {@code memoryBytes} of device memory per window.
     */
    public static AttentionBackend gpu(int ordinal, long memoryBytes) {
        return new CudaBackend(ordinal, true, memoryBytes);
    }

    /** Why no GPU backend can be made in this process (no driver, no device, too old), or null when one can. */
    public static String gpuUnavailableReason() {
        return CudaBackend.unavailableReason();
    }

    /** The float64 definition of causal softmax attention, for tests and checks. */
    public static SoftmaxBackend softmaxReference() {
        return new SoftmaxReference();
    }

    // TEMPORARY: replaced by the backend's own branch at merge
    /** The float32 CPU softmax backend (until the CPU backend's branch lands: the float64 reference). */
    public static SoftmaxBackend softmaxCpu() {
        return new SoftmaxReference();
    }

    // TEMPORARY: replaced by the backend's own branch at merge
    /** The GPU softmax backend on CUDA device {@code ordinal} (until the GPU backend's branch lands: none). */
    public static SoftmaxBackend softmaxGpu(int ordinal, long memoryBytes) {
        throw new UnsupportedOperationException("the GPU softmax backend is not in this build");
    }

    /** A new backend of the given name; the GPU ones on device 0. */
    public static AttentionBackend create(String name) {
        switch (name) {
            case "cpu":
                return cpu();
            case "chunked-f64":
                return new ChunkedReference();
            case "recurrent-f64":
                return new RecurrentReference();
            case "gpu":
                return gpu(0, DEFAULT_GPU_MEMORY);
            case "gpu-generic":
                return new CudaBackend(0, false, DEFAULT_GPU_MEMORY);
            default:
                throw new IllegalArgumentException("unknown backend '" + name + "': expected one of " + NAMES);
        }
    }
}
