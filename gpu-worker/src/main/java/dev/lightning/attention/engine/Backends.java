package dev.lightning.attention.engine;

import dev.lightning.attention.engine.cpu.CpuBackend;
import dev.lightning.attention.engine.cpu.SoftmaxCpu;
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
     * {@code start} (a job's pieces and windows start at multiples of its chunk size): the kernels
     * record states between their chunks, so both must be multiples of {@link #GPU_CHUNK}. Plain
     * arithmetic on a constant, so that a driver without JCuda can check options too.
     */
    public static boolean gpuCheckpointsFit(long every, long start) {
        return every % GPU_CHUNK == 0 && start % GPU_CHUNK == 0;
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

    /**
     * Why no GPU backend can be made in this process (no driver, no device, too old, JCuda's
     * classes missing from the class path), or null when one can.
     */
    public static String gpuUnavailableReason() {
        try {
            return CudaBackend.unavailableReason();
        } catch (LinkageError e) { // CudaBackend's class could not load: JCuda is not on this class path
            return "JCuda's classes are not on this JVM's class path (" + e + "); the application jar carries "
                    + "them: submit spark-job's *-app.jar, or add jcuda-12.6.0.jar and its natives with --jars";
        }
    }

    /** The float64 definition of causal softmax attention, for tests and checks. */
    public static SoftmaxBackend softmaxReference() {
        return new SoftmaxReference();
    }

    /**
     * Causal softmax attention on the CPU in float32: blockwise with the online softmax, on the
     * vector kernel where the JVM has jdk.incubator.vector (else the scalar one; the system
     * property lightning.cpu.kernel=scalar|vector forces one). One per task: not thread-safe.
     */
    public static SoftmaxBackend softmaxCpu() {
        return new SoftmaxCpu();
    }

    /**
     * The GPU backend of causal softmax attention on CUDA device {@code ordinal} (BF16/F16 on tensor
     * cores, F32 on the float32 kernel), allocating at most {@code memoryBytes} of device memory;
     * larger block calls are computed in slices. Fails, saying why, where no GPU is usable
     * ({@link #gpuUnavailableReason()}).
     */
    public static SoftmaxBackend softmaxGpu(int ordinal, long memoryBytes) {
        return CudaBackend.softmax(ordinal, memoryBytes);
    }

    /** A new backend of the given name; the GPU ones on device 0. */
    public static AttentionBackend create(String name) {
        switch (name.toLowerCase(java.util.Locale.ROOT)) { // as the job's --backend: "CPU" is cpu
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
