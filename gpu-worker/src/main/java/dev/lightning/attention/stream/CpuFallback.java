package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.DeviceMemoryException;
import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.GpuUnusableException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

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
            DeviceMemoryException oom = find(e, DeviceMemoryException.class);
            GpuUnusableException unfit = find(e, GpuUnusableException.class);
            if (oom != null && oomToCpu) {
                LOG.warn("{}: GPU out of memory ({}); computing it on the CPU instead (--gpu-oom cpu)", what,
                        oom.getMessage());
            } else if (unfit != null && unfit.noKernel() && unfitToCpu) {
                LOG.warn("{}: computing it on the CPU (--backend auto): {}", what, unfit.getMessage());
            } else {
                throw e;
            }
            try (AttentionBackend cpu = Backends.cpu()) {
                return work.run(cpu);
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
