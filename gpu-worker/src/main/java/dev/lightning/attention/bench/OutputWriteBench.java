package dev.lightning.attention.bench;

import dev.lightning.attention.stream.Crc32c;
import dev.lightning.attention.stream.LocalWrites;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.zip.CRC32C;

/**
 * How fast a task can put its o (an off-heap block, as the GPU backend's registered host tensors
 * hold it) into a file's page cache, with the CRC32C its marker records, one way against another:
 * <ul>
 *   <li>{@code stream}: the path before this change: 1 MiB copies from the block to a heap array,
 *       the CRC of the array, and a positioned channel write of the array (which the JDK copies
 *       once more into a temporary direct buffer);</li>
 *   <li>{@code channel}: one positioned write of the block itself and the CRC of the block, on
 *       the caller's thread;</li>
 *   <li>{@code library}: {@link LocalWrites#write}, what the job uses now;</li>
 *   <li>{@code parts}: positioned writes of {@code --threads} parts on as many threads, each part's CRC
 *       on its thread, combined ({@link Crc32c#combine});</li>
 *   <li>{@code mapped}: the same parts copied into a shared mapping of the file on as many threads;</li>
 *   <li>{@code files}: each part into a file of its own (what one file's lock costs: the ceiling
 *       for parts).</li>
 * </ul>
 * Every run writes a new sparse file of the size (as the driver prepares an in-place output), at
 * an odd offset (a header's), and the CRCs of every mode are held against the block's. Median of
 * {@code --runs} after a warm-up run. Not a test: figures for BENCHMARKS.md.
 *
 * <pre>OutputWriteBench [--bytes 2147483648] [--runs 5] [--threads 8] [--dir DIR] [--modes stream,channel,library,parts,mapped,files]</pre>
 */
public final class OutputWriteBench {
    private OutputWriteBench() {
    }

    public static void main(String[] args) throws Exception {
        long bytes = 2L << 30;
        int runs = 5;
        int threads = 8;
        Path dir = Path.of(System.getProperty("java.io.tmpdir"));
        List<String> modes = List.of("stream", "channel", "library", "parts", "mapped", "files");
        for (int i = 0; i < args.length; i += 2) {
            switch (args[i]) {
                case "--bytes" -> bytes = Long.parseLong(args[i + 1]);
                case "--runs" -> runs = Integer.parseInt(args[i + 1]);
                case "--threads" -> threads = Integer.parseInt(args[i + 1]);
                case "--dir" -> dir = Path.of(args[i + 1]);
                case "--modes" -> modes = List.of(args[i + 1].split(","));
                default -> throw new IllegalArgumentException("unknown option " + args[i]
                        + "; usage: OutputWriteBench [--bytes N] [--runs N] [--threads N] [--dir DIR] [--modes ...]");
            }
        }
        int size = Math.toIntExact(bytes); // one block, as a window's o is one buffer
        ByteBuffer block = ByteBuffer.allocateDirect(size);
        SplittableRandom rnd = new SplittableRandom(13);
        while (block.remaining() >= 8) {
            block.putLong(rnd.nextLong());
        }
        block.clear();
        CRC32C whole = new CRC32C();
        whole.update(block.duplicate());
        int expected = (int) whole.getValue();
        Path work = Files.createTempDirectory(dir, "output-write-bench");
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        System.out.printf(Locale.ROOT, "OutputWriteBench: %d bytes from one off-heap block, %d threads, %d runs, in %s (%d cores)%n",
                size, threads, runs, work, Runtime.getRuntime().availableProcessors());
        try {
            for (String mode : modes) {
                double[] ms = new double[runs + 1];
                for (int r = 0; r <= runs; r++) {
                    clean(work);
                    long t0 = System.nanoTime();
                    int crc = run(mode, block.duplicate(), work, threads, pool);
                    ms[r] = (System.nanoTime() - t0) / 1e6;
                    if (crc != expected) {
                        throw new IllegalStateException(mode + ": CRC32C " + Integer.toHexString(crc) + ", expected "
                                + Integer.toHexString(expected));
                    }
                }
                double[] timed = Arrays.copyOfRange(ms, 1, ms.length);
                Arrays.sort(timed);
                double median = timed[timed.length / 2];
                System.out.printf(Locale.ROOT, "RESULT write mode=%s ms=%.1f GB/s=%.2f first_ms=%.1f min_ms=%.1f max_ms=%.1f%n",
                        mode, median, size / median / 1e6, ms[0], timed[0], timed[timed.length - 1]);
            }
        } finally {
            pool.shutdownNow();
            clean(work);
            Files.deleteIfExists(work);
        }
    }

    /** Where o starts in the file: past a safetensors header of odd length. */
    static final long OFFSET = 1_000;

    private static void clean(Path work) throws IOException {
        try (var s = Files.list(work)) {
            for (Path p : s.toList()) {
                Files.delete(p);
            }
        }
    }

    /** A new file of {@code length} bytes, a hole (as the driver prepares an in-place output). */
    private static FileChannel sparse(Path file, long length) throws IOException {
        FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE_NEW, StandardOpenOption.READ,
                StandardOpenOption.WRITE);
        ch.write(ByteBuffer.allocate(1), length - 1);
        return ch;
    }

    private static int run(String mode, ByteBuffer src, Path work, int threads, ExecutorService pool) throws Exception {
        int size = src.remaining();
        switch (mode) {
            case "stream": {
                try (FileChannel ch = sparse(work.resolve("o"), OFFSET + size)) {
                    CRC32C crc = new CRC32C();
                    byte[] chunk = new byte[1 << 20];
                    long at = OFFSET;
                    while (src.hasRemaining()) {
                        int len = Math.min(chunk.length, src.remaining());
                        src.get(chunk, 0, len);
                        crc.update(chunk, 0, len);
                        ByteBuffer b = ByteBuffer.wrap(chunk, 0, len);
                        while (b.hasRemaining()) {
                            at += ch.write(b, at);
                        }
                    }
                    return (int) crc.getValue();
                }
            }
            case "channel": {
                try (FileChannel ch = sparse(work.resolve("o"), OFFSET + size)) {
                    CRC32C crc = new CRC32C();
                    crc.update(src.duplicate());
                    long at = OFFSET;
                    while (src.hasRemaining()) {
                        at += ch.write(src, at);
                    }
                    return (int) crc.getValue();
                }
            }
            case "library": {
                try (FileChannel ch = sparse(work.resolve("o"), OFFSET + size)) {
                    return LocalWrites.write(ch, OFFSET, src);
                }
            }
            case "parts":
            case "mapped":
            case "files": {
                FileChannel[] chs = new FileChannel[mode.equals("files") ? threads : 1];
                try {
                    for (int i = 0; i < chs.length; i++) {
                        chs[i] = sparse(work.resolve("o" + i), OFFSET + size);
                    }
                    List<Future<int[]>> parts = new ArrayList<>();
                    for (int p = 0; p < threads; p++) {
                        int from = (int) ((long) size * p / threads);
                        int to = (int) ((long) size * (p + 1) / threads);
                        ByteBuffer part = src.duplicate();
                        part.limit(to).position(from);
                        FileChannel ch = chs[mode.equals("files") ? p : 0];
                        parts.add(pool.submit(() -> {
                            CRC32C crc = new CRC32C();
                            crc.update(part.duplicate());
                            if (mode.equals("mapped")) {
                                MappedByteBuffer m = ch.map(FileChannel.MapMode.READ_WRITE, OFFSET + from, to - from);
                                m.put(part);
                                unmap(m);
                            } else {
                                long at = OFFSET + from;
                                while (part.hasRemaining()) {
                                    at += ch.write(part, at);
                                }
                            }
                            return new int[] {(int) crc.getValue(), to - from};
                        }));
                    }
                    int crc = 0;
                    for (Future<int[]> f : parts) {
                        int[] r = f.get();
                        crc = Crc32c.combine(crc, r[0], r[1]);
                    }
                    return crc;
                } finally {
                    for (FileChannel ch : chs) {
                        if (ch != null) {
                            ch.close();
                        }
                    }
                }
            }
            default:
                throw new IllegalArgumentException("unknown mode " + mode);
        }
    }

    /** Unmaps {@code m} now (sun.misc.Unsafe.invokeCleaner), instead of when the collector finds it. */
    private static void unmap(MappedByteBuffer m) throws ReflectiveOperationException {
        Class<?> unsafeClass = Class.forName("sun.misc.Unsafe");
        java.lang.reflect.Field f = unsafeClass.getDeclaredField("theUnsafe");
        f.setAccessible(true);
        Object unsafe = f.get(null);
        unsafeClass.getMethod("invokeCleaner", ByteBuffer.class).invoke(unsafe, m);
    }
}
