package dev.lightning.attention.engine.cuda;

import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ReadOnlyBufferException;
import java.util.Collections;
import java.util.HashSet;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The staging copies' parts and threads, on the CPU. */
class HostCopiesTest {
    @Test
    void cutsCoverEveryTokenOnceInBalancedPartsOfAtLeastTheMinimum() {
        long mib = HostCopies.MIN_PART_BYTES;
        int[][] cases = {{1, 4}, {63, 8}, {1000, 3}, {20_000, 8}, {5, 8}, {0, 4}};
        for (int[] c : cases) {
            int tokens = c[0];
            for (long tokenBytes : new long[] {1, 2048, 6144, mib / 3 + 1, 4 * mib}) {
                int[] cuts = HostCopies.cuts(tokens, tokenBytes, c[1]);
                String what = tokens + " tokens of " + tokenBytes + " bytes on " + c[1] + " threads";
                assertEquals(0, cuts[0], what);
                assertEquals(tokens, cuts[cuts.length - 1], what);
                int parts = cuts.length - 1;
                assertTrue(parts >= 1 && parts <= c[1], what + ": " + parts + " parts");
                int min = Integer.MAX_VALUE;
                int max = 0;
                for (int p = 0; p < parts; p++) {
                    int n = cuts[p + 1] - cuts[p];
                    min = Math.min(min, n);
                    max = Math.max(max, n);
                }
                assertTrue(max - min <= 1, what + ": part sizes " + min + " to " + max);
                if (parts > 1) {
                    assertTrue((long) min * tokenBytes >= mib / 2, what + ": a part of " + min * tokenBytes + " bytes");
                }
                // as many parts as the bytes allow, up to the threads
                long want = Math.max(1, Math.min(Math.min(c[1], tokens), tokens * tokenBytes / mib));
                assertEquals(want, parts, what);
            }
        }
        assertThrows(IllegalArgumentException.class, () -> HostCopies.cuts(10, 0, 4));
        assertThrows(IllegalArgumentException.class, () -> new HostCopies(0));
        assertThrows(IllegalArgumentException.class, () -> new HostCopies(HostCopies.MAX_THREADS + 1));
    }

    @Test
    void aStagingCopyOnSeveralThreadsEqualsOneOnOneThread() {
        int tokens = 3000;
        int tokenBytes = 2048;
        byte[] src = new byte[tokens * tokenBytes];
        new SplittableRandom(9).nextBytes(src);
        ByteBuffer heap = ByteBuffer.wrap(src).asReadOnlyBuffer();
        Set<String> threads = ConcurrentHashMap.newKeySet();
        AtomicIntegerArray seen = new AtomicIntegerArray(tokens);
        ByteBuffer[] targets = new ByteBuffer[2];
        for (int t = 0; t < 2; t++) {
            int n = t == 0 ? 1 : 4;
            ByteBuffer dst = ByteBuffer.allocateDirect(src.length);
            new HostCopies(n).run(tokens, tokenBytes, (first, count) -> {
                threads.add(Thread.currentThread().getName());
                for (int i = first; i < first + count; i++) {
                    seen.incrementAndGet(i);
                }
                ByteBuffer part = dst.duplicate();
                part.position(first * tokenBytes);
                ByteBuffer from = heap.duplicate();
                from.position(first * tokenBytes).limit((first + count) * tokenBytes);
                part.put(from);
            });
            targets[t] = dst;
        }
        for (int i = 0; i < tokens; i++) {
            assertEquals(2, seen.get(i), "token " + i + " copied once per run");
        }
        assertEquals(ByteBuffer.wrap(src), targets[0]);
        assertEquals(ByteBuffer.wrap(src), targets[1]);
        assertTrue(threads.size() >= 2, "the 4-thread run used " + threads);
    }

    @Test
    void theFirstFailureIsRethrownAsItWasAfterEveryPartEnded() {
        int tokens = 4096;
        long tokenBytes = 4096; // 16 MiB: 4 parts on 4 threads
        AtomicInteger ended = new AtomicInteger();
        Set<Integer> starts = Collections.synchronizedSet(new HashSet<>());
        ReadOnlyBufferException boom = new ReadOnlyBufferException();
        RuntimeException thrown = assertThrows(RuntimeException.class, () -> new HostCopies(4).run(tokens, tokenBytes,
                (first, count) -> {
                    starts.add(first);
                    if (first == HostCopies.cuts(tokens, tokenBytes, 4)[2]) {
                        throw boom;
                    }
                    try {
                        Thread.sleep(50); // the others end after the failure
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                    ended.incrementAndGet();
                }));
        assertSame(boom, thrown);
        assertEquals(4, starts.size());
        assertEquals(3, ended.get(), "every other part ended before run() returned");
        // the pool is still usable after a failure
        AtomicInteger again = new AtomicInteger();
        new HostCopies(4).run(tokens, tokenBytes, (first, count) -> again.addAndGet(count));
        assertEquals(tokens, again.get());
    }

    @Test
    void anErrorOnTheCallersPartIsThrownOnlyAfterEveryPartEnded() {
        // an Error (OutOfMemoryError, say) in part 0, on the caller's thread: the other parts still write into
        // the pinned staging, which the caller frees once the failure reaches it (release after a failed window)
        int tokens = 4096;
        long tokenBytes = 4096; // 16 MiB: 4 parts on 4 threads
        AtomicInteger ended = new AtomicInteger();
        OutOfMemoryError boom = new OutOfMemoryError("test: part 0 fails");
        Error thrown = assertThrows(Error.class, () -> new HostCopies(4).run(tokens, tokenBytes, (first, count) -> {
            if (first == 0) {
                throw boom;
            }
            try {
                Thread.sleep(200); // the others end well after the failure
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            ended.incrementAndGet();
        }));
        assertSame(boom, thrown);
        assertEquals(3, ended.get(), "every other part ended before run() threw");
    }

    @Test
    void smallCopiesStayOnTheCallersThread() {
        String caller = Thread.currentThread().getName();
        Set<String> threads = ConcurrentHashMap.newKeySet();
        new HostCopies(8).run(100, 1024, (first, count) -> threads.add(Thread.currentThread().getName()));
        assertEquals(Set.of(caller), threads);
    }
}
