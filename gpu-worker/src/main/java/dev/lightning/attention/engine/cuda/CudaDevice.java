package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.GpuUnusableException;
import dev.lightning.attention.tensor.ErrorText;
import jcuda.CudaException;
import jcuda.Pointer;
import jcuda.driver.CUcontext;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdevice_attribute;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUfunction;
import jcuda.driver.CUfunction_attribute;
import jcuda.driver.CUmodule;
import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * One GPU as this JVM uses it: the device's primary context and the kernels' modules, loaded once
 * per device per JVM (an executor) and shared by every task on it; released in order (modules,
 * then context) when the JVM shuts down. Tasks make the context current on their own thread
 * ({@link #makeCurrent()}) and keep their own streams and buffers ({@link CudaBackend}).
 *
 * <p>Two modules: the portable PTX (every kernel, target compute_80) and, on a device of compute
 * capability 9.0 (H100, H200), the Hopper PTX (target sm_90a: the wgmma kernels, names containing
 * "_wg_"). A Hopper module that fails to load is reported and left out; the portable kernels then
 * do the work. A third, the softmax attention kernels (softmax.ptx, target compute_80, names
 * starting "softmax_"), is loaded on first use ({@link #softmaxShapes()}), so lightning work never
 * pays for it.
 */
final class CudaDevice {
    /** The PTX this build ships, made from src/main/cuda by nvcc. */
    static final String PTX_RESOURCE = "/dev/lightning/attention/engine/cuda/lightning.ptx";
    /** The Hopper kernels' PTX (target sm_90a), made from lightning_sm90.cu. */
    static final String HOPPER_PTX_RESOURCE = "/dev/lightning/attention/engine/cuda/lightning_sm90a.ptx";
    /** The softmax attention kernels' PTX (target compute_80), made from softmax.cu. */
    static final String SOFTMAX_PTX_RESOURCE = "/dev/lightning/attention/engine/cuda/softmax.ptx";
    /** Kernel names of the softmax module start with this. */
    static final String SOFTMAX_PREFIX = "softmax_";
    /** Their wgmma version (target sm_90a), made from softmax_sm90.cu, loaded on compute capability 9.0. */
    static final String SOFTMAX_HOPPER_PTX_RESOURCE = "/dev/lightning/attention/engine/cuda/softmax_sm90a.ptx";
    /** Kernel names of the softmax Hopper module start with this. */
    static final String SOFTMAX_HOPPER_PREFIX = "softmax_sm90_";
    /** Kernel names of the Hopper module contain this. */
    static final String HOPPER_MARK = "_wg_";
    private static final Map<Integer, CudaDevice> OPEN = new HashMap<>();
    /**
     * The limit every device's pool of registered host blocks shares ({@link #hostBlocks()}): blocks
     * no task holds are kept up to half the heap's size in all, however many GPUs the executor
     * drives. Their direct memory is limited per JVM (by default to the heap's size), and the tasks'
     * own windows need the rest.
     */
    private static final HostBlocks.Shared HOST_BLOCKS = new HostBlocks.Shared(Runtime.getRuntime().maxMemory() / 2);
    /**
     * Why a device could not be opened (its PTX did not load), by ordinal: the answer stands for
     * the JVM's life, so later tasks do not retain its context and compile the PTX again to fail.
     */
    private static final Map<Integer, String> UNUSABLE = new HashMap<>();
    private static boolean initialized;
    private static String unavailable;

    final int ordinal;
    final String name;
    final int multiprocessors;
    /**
     * The memory's peak rate in bytes a second, from the driver's memory clock and bus width (two
     * transfers a clock); 0 where the driver reports neither. H100 80GB HBM3: 2,619 MHz x 5,120 bits,
     * 3.35 TB/s.
     */
    final double memoryBytesPerSecond;
    final int maxSharedPerBlock;
    final int maxSharedPerMultiprocessor;
    private final CUdevice device;
    private final CUcontext context;
    private final CUmodule module;
    /** The Hopper kernels, or null on other devices (or when they failed to load). */
    private final CUmodule hopperModule;
    /** The kernels' launch shapes as the loaded modules report them. */
    final LaunchShapes shapes;
    private final Map<String, CUfunction> functions = new HashMap<>();
    /** The softmax kernels and their launch shapes, once loaded (null until then). */
    private CUmodule softmaxModule;
    /** The softmax wgmma kernels, on a device of compute capability 9.0 (null elsewhere, or when they did not load). */
    private CUmodule softmaxHopperModule;
    private SoftmaxKernels.Shapes softmaxShapes;
    /** Set by the first error that poisons the context (an illegal address, a failed launch). */
    private volatile String broken;
    /** The registered host blocks the backends on this device share ({@link #hostBlocks()}); null until asked for. */
    private HostBlocks hostBlocks;
    /** Modules other classes loaded into this context ({@link #adopt}), unloaded at exit before the device's own. */
    private final List<CUmodule> adopted = new ArrayList<>();

    private CudaDevice(int ordinal) {
        this.ordinal = ordinal;
        device = new CUdevice();
        JCudaDriver.cuDeviceGet(device, ordinal);
        byte[] nameBytes = new byte[256];
        JCudaDriver.cuDeviceGetName(nameBytes, nameBytes.length, device);
        int len = 0;
        while (len < nameBytes.length && nameBytes[len] != 0) {
            len++;
        }
        name = new String(nameBytes, 0, len, StandardCharsets.US_ASCII);
        multiprocessors = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
        maxSharedPerBlock = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
        maxSharedPerMultiprocessor = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR);
        memoryBytesPerSecond = 2.0 * 1e3 * attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)
                * attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH) / 8;
        context = new CUcontext();
        JCudaDriver.cuDevicePrimaryCtxRetain(context, device);
        CUmodule loaded = new CUmodule();
        try {
            makeCurrent();
            int status = JCudaDriver.cuModuleLoadData(loaded, ptx(PTX_RESOURCE));
            if (status != CUresult.CUDA_SUCCESS) {
                throw new CudaException(CUresult.stringFor(status));
            }
        } catch (CudaException e) {
            releaseAfter(e);
            if (!refusesPtx(e)) {
                throw e; // out of memory, or the device busy: not the PTX's fault, and perhaps gone at the next task
            }
            throw ptxRefused("the kernels' PTX", e);
        } catch (RuntimeException | Error e) { // the PTX resource missing or unreadable: a broken jar
            releaseAfter(e);
            throw e;
        }
        try {
            checkArgsLayout(loaded, "lightning.ptx", Kernels.ARGS_LAYOUT, KernelArgs.Field.values().length,
                    KernelArgs::verify);
        } catch (RuntimeException | Error e) {
            releaseAfter(e, loaded);
            throw e;
        }
        module = loaded;
        CUmodule hopper = null;
        try {
            hopper = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) == 9
                    && attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR) == 0 ? loadHopper() : null;
            shapes = LaunchShapes.of(report(loaded, "lightning.ptx", Kernels.LAUNCH_SHAPES, LaunchShapes.REPORT_INTS),
                    hopper == null ? null
                            : report(hopper, "lightning_sm90a.ptx", Kernels.HOPPER_LAUNCH_SHAPES, LaunchShapes.REPORT_INTS));
        } catch (RuntimeException | Error e) {
            releaseAfter(e, hopper, loaded);
            throw e;
        }
        hopperModule = hopper;
    }

    /**
     * What the constructor holds, given back after {@code failure}: {@code modules} unloaded (null
     * ones skipped), then the primary context's reference released, each step attempted whatever
     * the others did (their failures suppressed in {@code failure}, which stays the one reported).
     * A module the driver will not unload must not keep the context referenced: the device is not
     * in {@link #OPEN} yet, so no exit hook would release it, and every later open would retain it
     * once more.
     */
    private void releaseAfter(Throwable failure, CUmodule... modules) {
        for (CUmodule m : modules) {
            if (m != null) {
                try {
                    JCudaDriver.cuModuleUnload(m);
                } catch (RuntimeException again) {
                    failure.addSuppressed(again);
                }
            }
        }
        try {
            JCudaDriver.cuDevicePrimaryCtxRelease(device);
        } catch (RuntimeException again) {
            failure.addSuppressed(again);
        }
    }

    private CUmodule loadHopper() {
        CUmodule m = new CUmodule();
        try {
            int status = JCudaDriver.cuModuleLoadData(m, ptx(HOPPER_PTX_RESOURCE));
            if (status != CUresult.CUDA_SUCCESS) {
                throw new CudaException(CUresult.stringFor(status));
            }
        } catch (CudaException | IllegalStateException e) {
            if (e instanceof CudaException && !refusesPtx((CudaException) e)) {
                throw e; // no memory for the module now: the portable kernels would stay for this process's life
            }
            System.err.println("lightning: cuda:" + ordinal + " (" + name + "): the Hopper kernels did not load ("
                    + e.getMessage() + "); using the portable tensor-core kernels");
            return null;
        }
        // A mismatch with KernelArgs is a broken build, not a device limit: it fails the load.
        try {
            checkArgsLayout(m, "lightning_sm90a.ptx", Kernels.ARGS_LAYOUT, KernelArgs.Field.values().length,
                    KernelArgs::verify);
        } catch (RuntimeException | Error e) {
            JCudaDriver.cuModuleUnload(m);
            throw e;
        }
        return m;
    }

    /**
     * Runs a module's argument-layout kernel ({@code lightning_args_layout}, {@code softmax_args_layout})
     * and holds the struct's Java mirror against the layout it reports ({@link ArgStruct#verify}):
     * the kernels read their one argument at the offsets of the C struct, so a header and a mirror
     * that disagree would compute wrong numbers, not fail. Throws IllegalStateException naming the
     * module when the kernel is missing or the layouts differ.
     */
    static void checkArgsLayout(CUmodule m, String which, String kernel, int fields,
                                        java.util.function.Consumer<int[]> verify) {
        // room for far more fields than either side has, so a larger struct cannot write past the end
        int[] all = report(m, which, kernel, 4 * (fields + 1) + 64);
        try {
            verify.accept(java.util.Arrays.copyOf(all, fields + 1));
        } catch (IllegalStateException e) {
            throw new IllegalStateException(which + ": " + e.getMessage() + " (rebuild the PTX with build-ptx.sh after "
                    + "changing either)", e);
        }
    }

    /**
     * Runs a module's one-thread report kernel ({@code kernel(int* out)}: the argument layout, the
     * launch shapes) and returns the {@code ints} values it wrote. Throws IllegalStateException
     * naming the module when it has no such kernel: a build from older sources.
     */
    static int[] report(CUmodule m, String which, String kernel, int ints) {
        CUfunction f = new CUfunction();
        try {
            JCudaDriver.cuModuleGetFunction(f, m, kernel);
        } catch (CudaException e) {
            throw new IllegalStateException(which + " has no " + kernel + " kernel (" + e.getMessage()
                    + "): it was built from older sources; rebuild the PTX with gpu-worker/src/main/cuda/build-ptx.sh", e);
        }
        CUdeviceptr out = new CUdeviceptr();
        JCudaDriver.cuMemAlloc(out, 4L * ints);
        int[] all = new int[ints];
        try {
            JCudaDriver.cuMemsetD32(out, 0, ints);
            JCudaDriver.cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, null, Pointer.to(Pointer.to(out)), null);
            JCudaDriver.cuCtxSynchronize();
            JCudaDriver.cuMemcpyDtoH(Pointer.to(all), out, 4L * ints);
        } catch (RuntimeException | Error e) {
            try {
                JCudaDriver.cuMemFree(out);
            } catch (RuntimeException again) { // after a launch error the context may refuse this too
                e.addSuppressed(again);
            }
            throw e;
        }
        JCudaDriver.cuMemFree(out);
        return all;
    }

    private int attribute(int attribute) {
        int[] v = new int[1];
        JCudaDriver.cuDeviceGetAttribute(v, attribute, device);
        return v[0];
    }

    /**
     * Why no GPU can be used here, or null when one can: JCuda's native library needs the NVIDIA
     * driver (libcuda.so.1), a device, and a driver new enough for the shipped PTX.
     */
    static synchronized String unavailableReason() {
        if (!initialized) {
            initialized = true;
            unavailable = initialize();
        }
        return unavailable;
    }

    private static String initialize() {
        try {
            loadNativeLibrary();
            JCudaDriver.setExceptionsEnabled(true);
            JCudaDriver.cuInit(0);
            int[] count = new int[1];
            JCudaDriver.cuDeviceGetCount(count);
            if (count[0] == 0) {
                return "the NVIDIA driver reports no CUDA device";
            }
            int[] version = new int[1];
            JCudaDriver.cuDriverGetVersion(version);
            return PtxIsa.shipped().refusal(version[0]);
        } catch (Throwable t) {
            return "CUDA is not usable here (" + t.getClass().getSimpleName() + ": " + ErrorText.firstLine(t.getMessage())
                    + "); the NVIDIA driver (libcuda.so.1) and a GPU are needed";
        }
    }

    /**
     * JCuda unpacks its native library into java.io.tmpdir under a fixed name, so executors starting
     * together on one host can overwrite each other's copy. Point it at a directory of this JVM's
     * own for the moment it loads (JCuda reads the property itself; the JDK's own temporary files
     * keep the directory they resolved at their first use), then delete that directory: the loaded
     * library stays mapped, and each executor would otherwise leave a copy (1.2 MB) behind.
     */
    private static void loadNativeLibrary() throws IOException {
        String saved = System.getProperty("java.io.tmpdir");
        Path own = Files.createTempDirectory("lightning-jcuda-");
        try {
            System.setProperty("java.io.tmpdir", own.toString());
            JCudaDriver.setLogLevel(jcuda.LogLevel.LOG_QUIET);
            JCudaDriver.cuDriverGetVersion(new int[1]); // forces the native library to load
        } finally {
            System.setProperty("java.io.tmpdir", saved);
            deleteTree(own);
        }
    }

    /** Deletes {@code dir} and what it holds, as far as it can (what is left goes at exit). */
    private static void deleteTree(Path dir) {
        try (java.util.stream.Stream<Path> all = Files.walk(dir)) {
            all.sorted(java.util.Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.delete(p);
                } catch (IOException e) {
                    p.toFile().deleteOnExit();
                }
            });
        } catch (IOException | UncheckedIOException e) {
            dir.toFile().deleteOnExit();
        }
    }

    /** Number of CUDA devices, or 0 when none can be used. */
    static int deviceCount() {
        if (unavailableReason() != null) {
            return 0;
        }
        int[] count = new int[1];
        JCudaDriver.cuDeviceGetCount(count);
        return count[0];
    }

    /** The device of that ordinal, opened on first use. */
    static synchronized CudaDevice open(int ordinal) {
        String reason = unavailableReason();
        if (reason != null) {
            throw new GpuUnusableException("no usable GPU: " + reason, null);
        }
        int count = deviceCount();
        if (ordinal < 0 || ordinal >= count) {
            throw new IllegalArgumentException("GPU " + ordinal + " does not exist: this machine has " + count
                    + " CUDA device(s)");
        }
        String failed = UNUSABLE.get(ordinal);
        if (failed != null) {
            throw new GpuUnusableException(failed, null);
        }
        CudaDevice d = OPEN.get(ordinal);
        if (d != null && d.broken != null) {
            throw new GpuUnusableException(d.brokenMessage(), null);
        }
        if (d == null) {
            try {
                d = new CudaDevice(ordinal);
            } catch (GpuUnusableException e) {
                UNUSABLE.put(ordinal, e.getMessage());
                throw e;
            } catch (CudaException e) {
                throw cannotOpen(ordinal, e);
            }
            if (OPEN.isEmpty()) {
                Runtime.getRuntime().addShutdownHook(new Thread(CudaDevice::closeAll, "lightning-cuda-release"));
            }
            OPEN.put(ordinal, d);
        }
        return d;
    }

    /**
     * Why this device cannot compute, after the driver refused {@code what} (a PTX module, or its fat
     * binary) with {@code e}: a GpuUnusableException, so that --backend auto falls back to the CPU.
     */
    private GpuUnusableException ptxRefused(String what, CudaException e) {
        return new GpuUnusableException("cannot load " + what + " on cuda:" + ordinal + " (" + name + ", driver "
                + driverVersionText() + "): " + e.getMessage() + ". " + loadAdvice() + ", or run with --backend cpu", e);
    }

    /**
     * Whether a module load failed because of the PTX itself (the driver cannot compile it for this
     * device), which stays so for the process's life, rather than for the device's state (no memory
     * left for the compiled module, the device busy), which a later task may find changed.
     */
    static boolean refusesPtx(CudaException e) {
        String m = String.valueOf(e.getMessage());
        return m.contains("PTX") || m.contains("NO_BINARY_FOR_GPU") || m.contains("INVALID_IMAGE")
                || m.contains("JIT_COMPILER") || m.contains("JIT_COMPILATION") || m.contains("INVALID_SOURCE");
    }

    /**
     * A device that could not be opened now for its state, not for our code: another process holds
     * it in exclusive-process compute mode (CUDA_ERROR_DEVICE_UNAVAILABLE), or other processes took
     * its memory (CUDA_ERROR_OUT_OF_MEMORY) before our context or modules had theirs. Unusable for
     * this task ({@code --backend auto} computes on the CPU, {@code gpu} fails the task saying why)
     * but not remembered: the next task tries the device again.
     */
    static GpuUnusableException cannotOpen(int ordinal, CudaException e) {
        return new GpuUnusableException("cannot open cuda:" + ordinal + " now (" + e.getMessage() + "): another "
                + "process may hold it in exclusive-process compute mode or have taken its memory (nvidia-smi shows "
                + "both); later tasks try it again", e);
    }

    /**
     * What a backend setting itself up on this device (its streams, its first buffers, a module)
     * throws for a CUDA error, before any work: the device is broken for this process when the
     * error is one the driver keeps ({@link #noteError}), otherwise taken for now ({@link #cannotOpen}).
     */
    GpuUnusableException setupFailed(CudaException e) {
        noteError(e);
        return broken != null ? new GpuUnusableException(brokenMessage(), e) : cannotOpen(ordinal, e);
    }

    private static synchronized void closeAll() {
        for (CudaDevice d : OPEN.values()) {
            try {
                // a release path: also where an error broke the context (makeCurrent would refuse, and the
                // blocks' leak report, the modules and the context's reference would all be skipped)
                d.makeCurrentToRelease();
                if (d.hostBlocks != null) {
                    try {
                        d.hostBlocks.close(); // before the context goes: the blocks are unregistered in it
                    } catch (RuntimeException e) { // a block a backend never gave back: say so
                        System.err.println("lightning: GPU " + d + " at exit: " + e.getMessage());
                    }
                }
                for (CUmodule m : d.adopted) {
                    JCudaDriver.cuModuleUnload(m);
                }
                if (d.softmaxHopperModule != null) {
                    JCudaDriver.cuModuleUnload(d.softmaxHopperModule);
                }
                if (d.softmaxModule != null) {
                    JCudaDriver.cuModuleUnload(d.softmaxModule);
                }
                if (d.hopperModule != null) {
                    JCudaDriver.cuModuleUnload(d.hopperModule);
                }
                JCudaDriver.cuModuleUnload(d.module);
                JCudaDriver.cuDevicePrimaryCtxRelease(d.device);
            } catch (Throwable ignored) {
                // the process is ending; the driver reclaims what is left
            }
        }
        OPEN.clear();
    }

    /**
     * Makes this device's context current on the calling thread; every task thread calls it first.
     * Fails at once when an earlier error left the context unusable: the driver keeps such errors
     * for the life of the process, so only a new executor can use this GPU again.
     */
    void makeCurrent() {
        if (broken != null) {
            throw new GpuUnusableException(brokenMessage(), null);
        }
        JCudaDriver.cuCtxSetCurrent(context);
    }

    private String brokenMessage() {
        return "GPU " + this + " is unusable in this executor since an earlier error (" + broken
                + "); the executor must be restarted to use it again";
    }

    /**
     * Makes the context current for a release path, even after an error broke it: a backend's
     * close still gives back, on the Java side, all it holds (its buffers, its host blocks), while
     * the driver's calls in it then fail and are collected. Only close and release paths call it.
     */
    void makeCurrentToRelease() {
        JCudaDriver.cuCtxSetCurrent(context);
    }

    /**
     * Hands a module loaded into this context to the device, which unloads it at exit before its
     * own modules and the context (one exit hook, in that order, instead of one per module owner).
     */
    synchronized void adopt(CUmodule m) {
        adopted.add(m);
    }

    /**
     * The registered host blocks of this device, kept across the backends (tasks) of this JVM, up
     * to half of its maximum heap (the default limit of direct memory, which they are), and
     * unregistered at exit before the context is released ({@link HostBlocks}).
     */
    synchronized HostBlocks hostBlocks() {
        if (hostBlocks == null) {
            hostBlocks = new HostBlocks(toString(), DeviceAllocator.CUDA, HOST_BLOCKS, DeviceAllocator.LEAKS_ARE_ERRORS);
        }
        return hostBlocks;
    }

    /**
     * Records an error the driver keeps for the context's life, so later tasks fail fast; other
     * errors, and null (a drain that met none), change nothing.
     */
    void noteError(CudaException e) {
        if (e == null) {
            return;
        }
        String m = String.valueOf(e.getMessage());
        if (m.contains("ILLEGAL_ADDRESS") || m.contains("LAUNCH_FAILED") || m.contains("ILLEGAL_INSTRUCTION")
                || m.contains("MISALIGNED_ADDRESS") || m.contains("HARDWARE_STACK_ERROR") || m.contains("ECC_UNCORRECTABLE")
                || m.contains("ASSERT") || m.contains("LAUNCH_TIMEOUT") || m.contains("INVALID_PC")
                || m.contains("INVALID_ADDRESS_SPACE")) {
            broken = m;
            HostBlocks blocks;
            synchronized (this) {
                blocks = hostBlocks;
            }
            if (blocks != null) {
                blocks.abandon(); // their registration died with the context: let the direct memory go
            }
        }
    }

    /**
     * {@link #noteError} for a release's failure and what it suppressed (a release goes on past
     * each failure, and an error the context keeps may be met only there); null: nothing.
     */
    void noteErrors(Throwable failure) {
        if (failure == null) {
            return;
        }
        for (Throwable t : java.util.stream.Stream.concat(java.util.stream.Stream.of(failure),
                java.util.Arrays.stream(failure.getSuppressed())).toList()) {
            if (t instanceof CudaException c) {
                noteError(c);
            }
        }
    }

    /** CTAs a SM holds, by kernel, threads and dynamic shared memory (the driver's occupancy answer). */
    private final Map<String, Integer> ctasPerSm = new HashMap<>();

    /**
     * CTAs of {@code kernel} the whole GPU holds at once with {@code threads} threads and {@code smem}
     * bytes of dynamic shared memory a CTA: the driver's occupancy for the kernel as compiled
     * (registers, shared memory, threads), times the multiprocessors; at least the multiprocessors.
     * The caller has made the context current.
     */
    synchronized int residentCtas(String kernel, int threads, int smem) {
        int perSm = ctasPerSm.computeIfAbsent(kernel + "/" + threads + "/" + smem, key -> {
            int[] blocks = new int[1];
            JCudaDriver.cuOccupancyMaxActiveBlocksPerMultiprocessor(blocks, function(kernel), threads, smem);
            return Math.max(1, blocks[0]);
        });
        return multiprocessors * perSm;
    }

    /** A kernel of the modules; raises its shared-memory limit to what the device allows. */
    synchronized CUfunction function(String kernel) {
        return functions.computeIfAbsent(kernel, k -> {
            CUfunction f = new CUfunction();
            boolean hopperKernel = k.contains(HOPPER_MARK);
            if (hopperKernel && hopperModule == null) {
                throw new CudaException("no Hopper kernels on " + this + " (" + k + ")");
            }
            CUmodule from = hopperKernel ? hopperModule : module;
            if (k.startsWith(SOFTMAX_PREFIX)) {
                softmaxShapes();
                from = k.startsWith(SOFTMAX_HOPPER_PREFIX) ? softmaxHopperModule : softmaxModule;
                if (from == null) {
                    throw new CudaException("no Hopper softmax kernels on " + this + " (" + k + ")");
                }
            }
            JCudaDriver.cuModuleGetFunction(f, from, k);
            JCudaDriver.cuFuncSetAttribute(f, CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    maxSharedPerBlock);
            return f;
        });
    }

    /**
     * The softmax kernels' launch shapes, loading their module on first use (and checking its
     * SoftmaxArgs layout). The caller has made the context current. Throws GpuUnusableException when
     * the driver refuses the PTX (as for the lightning module), IllegalStateException when the
     * module does not match this build.
     */
    synchronized SoftmaxKernels.Shapes softmaxShapes() {
        if (softmaxShapes == null) {
            CUmodule m = new CUmodule();
            try {
                int status = JCudaDriver.cuModuleLoadData(m, ptx(SOFTMAX_PTX_RESOURCE));
                if (status != CUresult.CUDA_SUCCESS) {
                    throw new CudaException(CUresult.stringFor(status));
                }
            } catch (CudaException e) {
                if (!refusesPtx(e)) {
                    throw e; // no memory for the module now, not the PTX: the backend's setup says so
                }
                // like the lightning module's refusal: --backend auto computes softmax on the CPU
                throw ptxRefused("the softmax kernels' PTX (softmax.ptx)", e);
            }
            try {
                checkArgsLayout(m, "softmax.ptx", SoftmaxKernels.ARGS_LAYOUT, SoftmaxArgs.Field.values().length,
                        SoftmaxArgs::verify);
                int[] portable = report(m, "softmax.ptx", SoftmaxKernels.LAUNCH_SHAPES, SoftmaxKernels.Shapes.REPORT_INTS);
                CUmodule h = attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) == 9
                        && attribute(CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR) == 0
                        ? loadSoftmaxHopper() : null;
                int[] hopper = null;
                if (h != null) {
                    try {
                        hopper = report(h, "softmax_sm90a.ptx", SoftmaxKernels.HOPPER_LAUNCH_SHAPES,
                                SoftmaxKernels.Shapes.HOPPER_REPORT_INTS);
                    } catch (RuntimeException | Error e) {
                        JCudaDriver.cuModuleUnload(h);
                        throw e;
                    }
                }
                try {
                    softmaxShapes = SoftmaxKernels.Shapes.of(portable, hopper);
                } catch (RuntimeException | Error e) {
                    if (h != null) {
                        JCudaDriver.cuModuleUnload(h);
                    }
                    throw e;
                }
                softmaxHopperModule = h;
            } catch (RuntimeException | Error e) {
                JCudaDriver.cuModuleUnload(m);
                throw e;
            }
            softmaxModule = m;
        }
        return softmaxShapes;
    }

    /**
     * The softmax wgmma module, or null when it does not load (reported; the portable kernels then
     * do the work). A layout mismatch is a broken build and fails.
     */
    private CUmodule loadSoftmaxHopper() {
        CUmodule m = new CUmodule();
        try {
            int status = JCudaDriver.cuModuleLoadData(m, ptx(SOFTMAX_HOPPER_PTX_RESOURCE));
            if (status != CUresult.CUDA_SUCCESS) {
                throw new CudaException(CUresult.stringFor(status));
            }
        } catch (CudaException | IllegalStateException e) {
            if (e instanceof CudaException && !refusesPtx((CudaException) e)) {
                throw e; // no memory for the module now: the next backend loads both modules again
            }
            System.err.println("lightning: " + this + ": the Hopper softmax kernels did not load (" + e.getMessage()
                    + "); using the portable ones");
            return null;
        }
        try {
            checkArgsLayout(m, "softmax_sm90a.ptx", SoftmaxKernels.ARGS_LAYOUT, SoftmaxArgs.Field.values().length,
                    SoftmaxArgs::verify);
        } catch (RuntimeException | Error e) {
            JCudaDriver.cuModuleUnload(m);
            throw e;
        }
        return m;
    }

    /** Whether a module has a kernel of that name (the Hopper kernels exist only on such devices). */
    synchronized boolean has(String kernel) {
        if (functions.containsKey(kernel)) {
            return true;
        }
        try {
            function(kernel);
            return true;
        } catch (CudaException e) {
            return false;
        }
    }

    @Override
    public String toString() {
        return "cuda:" + ordinal + " (" + name + ")";
    }

    /**
     * The image of a module for cuModuleLoadData: {@code NAME.fatbin} beside the PTX resource
     * {@code NAME.ptx} where the build made one (LIGHTNING_SASS, build-ptx.sh: SASS for chosen GPUs and
     * the PTX, so that those GPUs skip the driver's compilation at first load), else the PTX as a C
     * string.
     */
    static byte[] ptx(String resource) {
        return image(resource, CudaDevice.class::getResourceAsStream);
    }

    /** {@link #ptx} over any resource lookup (tests). */
    static byte[] image(String ptxResource, java.util.function.Function<String, InputStream> open) {
        String fatbin = ptxResource.replaceFirst("\\.ptx$", ".fatbin");
        try (InputStream machineCode = fatbin.equals(ptxResource) ? null : open.apply(fatbin)) {
            if (machineCode != null) {
                return machineCode.readAllBytes();
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        try (InputStream in = ptxStream(ptxResource, open)) {
            byte[] text = in.readAllBytes();
            byte[] terminated = new byte[text.length + 1]; // the driver reads a C string
            System.arraycopy(text, 0, terminated, 0, text.length);
            return terminated;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * What to do after a module the driver refused: the PTX (ISA {@link PtxIsa#shipped}) needs a driver
     * of that ISA's CUDA release; a fat binary's machine code (LIGHTNING_SASS) may need the newer driver
     * of the toolkit that built it.
     */
    static String loadAdvice() {
        String ptxNeeds = "The PTX (ISA " + PtxIsa.shipped() + ") needs " + PtxIsa.shipped().driverNeeded();
        boolean fatbins = CudaDevice.class.getResource(PTX_RESOURCE.replaceFirst("\\.ptx$", ".fatbin")) != null;
        return fatbins ? ptxNeeds + "; this jar also carries fat binaries (LIGHTNING_SASS), whose machine code may need "
                + "the driver of the CUDA that built them: rebuild the jar without LIGHTNING_SASS, or update the driver"
                : ptxNeeds + "; update the driver";
    }

    /**
     * The first 4 KiB of the PTX resource itself (not its fat binary): its header, with the {@code .version} line
     * (nvcc writes it after about ten lines of comments). The driver check at start reads only that, not the
     * module's megabytes (lightning.ptx is 5.9 MB).
     */
    static String ptxHeader(String resource) {
        try (InputStream in = ptxStream(resource, CudaDevice.class::getResourceAsStream)) {
            return new String(in.readNBytes(4096), java.nio.charset.StandardCharsets.US_ASCII);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static InputStream ptxStream(String resource, java.util.function.Function<String, InputStream> open) {
        InputStream in = open.apply(resource);
        if (in == null) {
            throw new IllegalStateException("the kernels' PTX (" + resource + ") is missing from the jar");
        }
        return in;
    }

    private static String driverVersionText() {
        try {
            int[] v = new int[1];
            JCudaDriver.cuDriverGetVersion(v);
            return "CUDA " + PtxIsa.cudaText(v[0]);
        } catch (Throwable t) {
            return "unknown";
        }
    }
}
