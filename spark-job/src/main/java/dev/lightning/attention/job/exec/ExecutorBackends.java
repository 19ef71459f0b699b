package dev.lightning.attention.job.exec;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.GpuUnusableException;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.spark.TaskContext;
import org.apache.spark.resource.ResourceInformation;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Function;
import java.util.function.IntFunction;
import java.util.function.Supplier;

/**
 * Chooses the backend a task computes with (built by the engine's one factory, {@link Backends}). The GPU is the one Spark assigned to the task (its
 * resource named by {@code --gpu-resource}, "gpu" by default); without an assignment, device 0
 * when one exists. {@code auto} falls back to the CPU when no GPU is usable; {@code gpu} fails
 * the task with the reason instead. The choice is logged once per executor and device.
 */
public final class ExecutorBackends {
    private static final Logger LOG = LoggerFactory.getLogger(ExecutorBackends.class);
    private static final Set<String> ANNOUNCED = ConcurrentHashMap.newKeySet();

    private ExecutorBackends() {
    }

    /**
     * Fails on the driver, before any work, when the choice cannot be honoured there: in local mode
     * the executors are this JVM, so a missing GPU is known up front.
     */
    public static void checkAvailable(String choice, String master) {
        if ("gpu".equals(choice) && master != null && master.startsWith("local") && !master.startsWith("local-cluster")) {
            String reason = Backends.gpuUnavailableReason();
            if (reason != null) {
                throw new InvalidInputException("--backend gpu: " + reason + "; use --backend auto or cpu");
            }
        }
    }

    /** A backend for one task; the caller closes it. */
    public static AttentionBackend open(String choice, String resourceName, long gpuMemory) {
        return choose(choice, resourceName, "", ordinal -> Backends.gpu(ordinal, gpuMemory), Backends::cpu,
                AttentionBackend::device);
    }

    /**
     * The backend of one task, for any kind of backend ({@code what} names the kind in messages:
     * "" for lightning, "softmax " for softmax): the CPU for {@code cpu}; for {@code gpu} and
     * {@code auto} the GPU Spark assigned (device 0 without an assignment). Where no GPU is
     * usable, {@code auto} falls back to the CPU and {@code gpu} fails the task with the reason:
     * no driver or device, a device its PTX does not load on, a device an earlier error broke in
     * this executor ({@link GpuUnusableException}), or a kind the GPU does not compute
     * (UnsupportedOperationException). Each choice is logged once per executor and reason.
     */
    public static <B> B choose(String choice, String resourceName, String what, IntFunction<B> gpu, Supplier<B> cpu,
                               Function<B, String> device) {
        if ("cpu".equals(choice)) {
            announce(what + "cpu", what + "backend cpu: computing on the CPU (float32)");
            return cpu.get();
        }
        Integer assigned = assignedGpu(resourceName);
        String reason = Backends.gpuUnavailableReason();
        RuntimeException why = null;
        if (reason == null) {
            int ordinal = assigned != null ? assigned : 0;
            try {
                B b = gpu.apply(ordinal);
                announce(what + device.apply(b), what + "backend " + choice + ": computing on " + device.apply(b)
                        + (assigned != null ? " (assigned by Spark as " + resourceName + " " + assigned + ")"
                        : " (no " + resourceName + " resource assigned; using device 0)"));
                return b;
            } catch (GpuUnusableException | UnsupportedOperationException e) {
                reason = e.getMessage();
                why = e;
            }
        }
        if ("gpu".equals(choice)) {
            // caused by a GpuUnusableException, so that the driver's line before this error tells it as what it is,
            // a GPU missing where the tasks run ("rerun with --resume once that is fixed there"), not a bad input
            throw new InvalidInputException("--backend gpu: no usable GPU " + what + "backend on this executor"
                    + (assigned != null ? " (Spark assigned " + resourceName + " " + assigned + ")" : "") + ": " + reason,
                    why instanceof GpuUnusableException ? why : new GpuUnusableException(reason, why));
        }
        announce(what + "auto-cpu " + reason, what + "backend auto: computing on the CPU (float32)"
                + (assigned != null ? " although Spark assigned " + resourceName + " " + assigned : "") + "; no GPU: " + reason);
        return cpu.get();
    }

    /** The first address of the task's GPU resource, or null when Spark assigned none. */
    public static Integer assignedGpu(String resourceName) {
        TaskContext ctx = TaskContext.get();
        if (ctx == null) {
            return null;
        }
        scala.Option<ResourceInformation> info = ctx.resources().get(resourceName);
        if (info.isEmpty() || info.get().addresses().length == 0) {
            return null;
        }
        String address = info.get().addresses()[0];
        try {
            return Integer.parseInt(address.trim());
        } catch (NumberFormatException e) {
            throw new InvalidInputException("Spark assigned " + resourceName + " address '" + address
                    + "', expected a CUDA device ordinal (0, 1, ...); check the GPU discovery script");
        }
    }

    private static void announce(String key, String message) {
        if (ANNOUNCED.add(key)) {
            LOG.info(message);
        }
    }
}
