package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.DeviceMemoryException;
import dev.lightning.attention.engine.Backends;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs one piece's work on a backend and, where configured ({@code --gpu-oom cpu}), once more on
 * the CPU when the GPU ran out of memory even for one chunk per launch. The work must be
 * repeatable: every piece's work writes aside and renames, so a failed attempt leaves nothing.
 */
public final class CpuFallback {
    private static final Logger LOG = LoggerFactory.getLogger(CpuFallback.class);

    public interface Work<T> {
        T run(AttentionBackend backend) throws Exception;
    }

    private CpuFallback() {
    }

    public static <T> T run(AttentionBackend backend, boolean toCpu, String what, Work<T> work) throws Exception {
        try {
            return work.run(backend);
        } catch (RuntimeException e) {
            DeviceMemoryException oom = find(e);
            if (oom == null || !toCpu) {
                throw e;
            }
            LOG.warn("{}: GPU out of memory ({}); computing it on the CPU instead (--gpu-oom cpu)", what,
                    oom.getMessage());
            try (AttentionBackend cpu = Backends.cpu()) {
                return work.run(cpu);
            }
        }
    }

    private static DeviceMemoryException find(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof DeviceMemoryException) {
                return (DeviceMemoryException) t;
            }
        }
        return null;
    }
}
