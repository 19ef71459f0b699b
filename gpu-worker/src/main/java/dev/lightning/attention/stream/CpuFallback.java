package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.DeviceMemoryException;
import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.GpuUnusableException;
import dev.lightning.attention.tensor.DType;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.function.Function;

/**
 * Runs one piece's work on a backend and once more on the CPU where the GPU could not compute it:
 * where configured ({@code --gpu-oom cpu}), when the GPU ran out of memory even for one chunk per
 * launch; under {@code --backend auto}, when no GPU kernel fits the input's shape on this device
 * ({@link GpuUnusableException#noKernel}: too little shared memory a block for its head width). The
 * work must be repeatable: every piece's work writes aside and renames, so a failed attempt leaves
 * nothing.
 */
public final class CpuFallback {
    private static final Logger LOG = LoggerFactory.getLogger(CpuFallback.class);

    public interface Work<T> {
        T run(AttentionBackend backend) throws Exception;
    }

    private CpuFallback() {
    }

    /**
     * @param oomToCpu   --gpu-oom cpu: out of device memory, compute the piece on the CPU
     * @param unfitToCpu --backend auto: no GPU kernel for the shape, compute the piece on the CPU
     */
    public static <T> T run(AttentionBackend backend, boolean oomToCpu, boolean unfitToCpu, String what, Work<T> work)
            throws Exception {
        try {
            return work.run(backend);
        } catch (RuntimeException e) {
            toCpuOrRethrow(e, oomToCpu, unfitToCpu, what, "it");
            try (AttentionBackend cpu = Backends.cpu()) {
                return work.run(cpu);
            }
        }
    }

    /**
     * Logs why {@code e}, a GPU call's failure, sends the work ({@code what}; {@code unfitScope}: what
     * goes to the CPU when it is a shape no kernel fits) to the CPU and returns whether it is such a
     * shape (not out of memory); rethrows {@code e} where it does not send it there. For callers that
     * compute on something other than a backend (a batch step).
     */
    public static boolean toCpuOrRethrow(RuntimeException e, boolean oomToCpu, boolean unfitToCpu, String what,
                                          String unfitScope) {
        DeviceMemoryException oom = find(e, DeviceMemoryException.class);
        GpuUnusableException unfit = find(e, GpuUnusableException.class);
        if (oom != null && oomToCpu) {
            LOG.warn("{}: GPU out of memory ({}); computing it on the CPU instead (--gpu-oom cpu)", what,
                    oom.getMessage());
            return false;
        }
        if (unfit != null && unfit.noKernel() && unfitToCpu) {
            LOG.warn("{}: computing {} on the CPU (--backend auto): {}", what, unfitScope, unfit.getMessage());
            return true;
        }
        throw e;
    }

    /**
     * The same rules for a task that computes its pieces a window at a time and cannot start a piece
     * again (a table run's passes take each piece's blocks from the shuffle as they come): each window's
     * call is what goes to the CPU. A shape no GPU kernel fits (the spec with its input's dtype, all that
     * Kernels.choose looks at) goes there for the rest of the task, without asking the GPU again or a
     * warning a window; out of memory is asked again at the next window, whose memory may be there. A
     * window's call is repeatable: it writes its o and checkpoints whole and returns the state after it.
     * One CPU backend for the task, closed by {@link #close()}. Not thread-safe, as a backend is not.
     */
    public static final class Windows implements AutoCloseable {
        private final boolean oomToCpu;
        private final boolean unfitToCpu;
        private final Set<List<Object>> unfit = new HashSet<>();
        private AttentionBackend cpu;

        /**
         * @param oomToCpu   --gpu-oom cpu
         * @param unfitToCpu --backend auto
         */
        public Windows(boolean oomToCpu, boolean unfitToCpu) {
            this.oomToCpu = oomToCpu;
            this.unfitToCpu = unfitToCpu;
        }

        /** One window's call of {@code spec} over input of {@code dtype}, on {@code backend} or the CPU. */
        public <T> T run(AttentionBackend backend, AttentionSpec spec, DType dtype, String what,
                         Function<AttentionBackend, T> work) {
            List<Object> shape = List.of(spec, dtype);
            if (unfit.contains(shape)) {
                return work.apply(cpu());
            }
            try {
                return work.apply(backend);
            } catch (RuntimeException e) {
                String scope = "this window and the task's later ones of its shape";
                if (toCpuOrRethrow(e, oomToCpu, unfitToCpu, what, scope)) {
                    unfit.add(shape);
                }
                return work.apply(cpu());
            }
        }

        private AttentionBackend cpu() {
            if (cpu == null) {
                cpu = Backends.cpu();
            }
            return cpu;
        }

        @Override
        public void close() {
            if (cpu != null) {
                cpu.close();
                cpu = null;
            }
        }
    }

    private static <E extends Throwable> E find(Throwable e, Class<E> kind) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (kind.isInstance(t)) {
                return kind.cast(t);
            }
        }
        return null;
    }
}
