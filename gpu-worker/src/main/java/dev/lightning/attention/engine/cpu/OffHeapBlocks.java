package dev.lightning.attention.engine.cpu;

import java.nio.ByteBuffer;
import java.util.ArrayDeque;

/**
 * The JVM's off-heap blocks for the CPU backend's window buffers ({@link CpuBackend#scratchHostTensor}),
 * kept between tasks. Why off-heap: a file channel reads into a heap buffer through a temporary
 * direct buffer of the JDK's and copies it again, and writes from one the same way, so every byte
 * of q, k, v and o crossed memory once more than it must; into and out of a direct buffer the
 * kernel copies straight. Why kept: a direct buffer's memory goes back only when the collector
 * finds it unreachable, which after the JIT's warm-up is seldom, and every task (every
 * {@code CpuBackend}) takes its blocks anew; a freshly mapped block also costs the kernel a page
 * fault and a zeroed page per 4 KiB on first touch. A task gives its blocks back when it is done
 * ({@link CpuBackend#close}) and the next task of the executor takes them again.
 *
 * <p>Blocks start on a page boundary (copies of whole cache lines). At most {@link #KEEP} blocks
 * wait here; a block given back beyond that is left to the collector.
 */
final class OffHeapBlocks {
    /** Blocks kept for the next tasks: two per core (a task reading ahead holds two). */
    static final int KEEP = 2 * Runtime.getRuntime().availableProcessors() + 2;
    private static final int PAGE = 4096;

    private static final ArrayDeque<ByteBuffer> FREE = new ArrayDeque<>();

    private OffHeapBlocks() {
    }

    /**
     * A block of at least {@code bytes} bytes (position 0, limit its capacity, a multiple of 4 KiB),
     * page-aligned: the smallest free one that holds them, else a new one. Its contents are
     * undefined; the caller slices what it needs and gives the block itself back.
     */
    static ByteBuffer take(int bytes) {
        synchronized (FREE) {
            ByteBuffer best = null;
            for (ByteBuffer b : FREE) {
                if (b.capacity() >= bytes && (best == null || b.capacity() < best.capacity())) {
                    best = b;
                }
            }
            if (best != null) {
                FREE.remove(best);
                return best.clear();
            }
        }
        long pages = ((long) bytes + PAGE - 1) / PAGE;
        long padded = (pages + 1) * PAGE; // room to start at a page boundary
        if (padded > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("an off-heap window block holds at most 2 GiB - 8 KiB; asked for "
                    + bytes + " bytes: use a smaller --window-bytes");
        }
        ByteBuffer fresh;
        try {
            fresh = ByteBuffer.allocateDirect((int) padded);
        } catch (OutOfMemoryError e) {
            // past -XX:MaxDirectMemorySize: let the kept blocks go (the JDK collects and retries
            // before it gives up), then try once more
            synchronized (FREE) {
                FREE.clear();
            }
            fresh = ByteBuffer.allocateDirect((int) padded);
        }
        return fresh.alignedSlice(PAGE).slice(0, (int) (pages * PAGE));
    }

    /**
     * Gives {@code block} back (a buffer {@link #take} returned): kept for the next {@code take}
     * while fewer than {@link #KEEP} wait, the smallest dropped first.
     */
    static void give(ByteBuffer block) {
        synchronized (FREE) {
            FREE.add(block);
            while (FREE.size() > KEEP) {
                ByteBuffer smallest = null;
                for (ByteBuffer b : FREE) {
                    if (smallest == null || b.capacity() < smallest.capacity()) {
                        smallest = b;
                    }
                }
                FREE.remove(smallest);
            }
        }
    }

    /** Blocks waiting now (tests). */
    static int waiting() {
        synchronized (FREE) {
            return FREE.size();
        }
    }
}
