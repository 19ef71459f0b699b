package dev.lightning.attention.bench;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.NonFinite;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * The NaN/Inf scan alone ({@link NonFinite}), as a task calls it on one window: {@code --mib} MiB
 * of finite values (random normal values rounded to each dtype, so the scan runs to the end), in a
 * heap buffer as the CPU backend's windows are, and in a direct buffer as the GPU's host tensors
 * are. Per dtype and path, the first call of the JVM (the JIT has not compiled the loop yet) and
 * the best and median of {@code --runs} more, in milliseconds of this thread's CPU time and in GB
 * per CPU-second. The paths:
 * <ul>
 *   <li>words: {@link NonFinite#scanWords}, eight bytes at a time (the scan before the vector pass);</li>
 *   <li>heap: {@link NonFinite#scan} on the heap buffer (the vector pass where the JVM has
 *       jdk.incubator.vector, else the word scan);</li>
 *   <li>direct: {@link NonFinite#scan} on the direct buffer (the word scan, in parts on several
 *       threads from 8 MiB on where the machine has 4 cores or more: then the CPU time is this
 *       thread's only, and the wall time is the figure).</li>
 * </ul>
 * Every path's result is then checked against {@link NonFinite#scanEachValue} on the same bytes
 * with one NaN planted at the last value (the program fails if one disagrees).
 *
 * <pre>ScanBench [--mib 64] [--runs 15] [--dtypes F32,BF16,F16] [--paths words,heap,direct]</pre>
 *
 * Run it with the job's JVM options (jdk.incubator.vector), e.g.
 * {@code java --add-modules jdk.incubator.vector -cp gpu-worker/target/classes:$SLF4J dev.lightning.attention.bench.ScanBench}.
 */
public final class ScanBench {
    private ScanBench() {
    }

    public static void main(String[] args) throws Exception {
        int mib = 64;
        int runs = 15;
        String[] dtypes = {"F32", "BF16", "F16"};
        String[] paths = {"words", "heap", "direct"};
        for (int i = 0; i < args.length; i += 2) {
            String value = i + 1 < args.length ? args[i + 1] : "";
            switch (args[i]) {
                case "--mib" -> mib = Integer.parseInt(value);
                case "--runs" -> runs = Integer.parseInt(value);
                case "--dtypes" -> dtypes = value.split(",");
                case "--paths" -> paths = value.split(",");
                default -> throw new IllegalArgumentException("ScanBench: unknown option '" + args[i]
                        + "': expected --mib, --runs, --dtypes or --paths");
            }
        }
        ThreadMXBean threads = ManagementFactory.getThreadMXBean();
        int bytes = mib << 20;
        System.out.printf(Locale.ROOT, "ScanBench: %d MiB per scan, %d runs, %d cpus, load average %s, java %s, %s%n",
                mib, runs, Runtime.getRuntime().availableProcessors(), loadAverage(),
                System.getProperty("java.version"), ModuleLayer.boot().findModule("jdk.incubator.vector").isPresent()
                        ? "jdk.incubator.vector present" : "no jdk.incubator.vector: heap scans take the word path");
        System.out.println("dtype  path    first call ms  best ms  median ms  best GB/CPU-s  median GB/CPU-s  median wall ms");
        for (String name : dtypes) {
            DType dtype = DType.valueOf(name);
            int elements = bytes / dtype.bytes();
            byte[] raw = new byte[bytes];
            ByteBuffer heap = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
            SplittableRandom rnd = new SplittableRandom(13);
            for (int i = 0; i < elements; i++) {
                dtype.put(heap, i * dtype.bytes(), (float) rnd.nextGaussian());
            }
            ByteBuffer direct = ByteBuffer.allocateDirect(bytes).put(raw).clear();
            for (String path : paths) {
                ByteBuffer buf = path.equals("direct") ? direct : heap;
                long[] cpu = new long[runs + 1];
                long[] wall = new long[runs + 1];
                long sink = 0;
                for (int r = 0; r <= runs; r++) {
                    long w0 = System.nanoTime();
                    long c0 = threads.getCurrentThreadCpuTime();
                    NonFinite.Found f = path.equals("words") ? NonFinite.scanWords(buf, 0, elements, dtype)
                            : NonFinite.scan(buf, 0, elements, dtype);
                    cpu[r] = threads.getCurrentThreadCpuTime() - c0;
                    wall[r] = System.nanoTime() - w0;
                    sink += f.count;
                }
                if (sink != 0) {
                    throw new IllegalStateException("ScanBench: " + sink + " non-finite values found in finite data");
                }
                long[] timed = Arrays.copyOfRange(cpu, 1, runs + 1);
                long[] timedWall = Arrays.copyOfRange(wall, 1, runs + 1);
                Arrays.sort(timed);
                Arrays.sort(timedWall);
                double best = timed[0] * 1e-6;
                double median = timed[runs / 2] * 1e-6;
                System.out.printf(Locale.ROOT, "%-6s %-7s %13.1f %8.2f %10.2f %14.2f %16.2f %15.2f%n", name, path,
                        cpu[0] * 1e-6, best, median, bytes / (best * 1e6), bytes / (median * 1e6),
                        timedWall[runs / 2] * 1e-6);
            }
            for (String path : paths) { // after the timing, so that the first call above is the JVM's first
                check(raw, direct, path, elements, dtype);
            }
        }
    }

    /** Fails unless the path finds exactly the NaN planted at the last value (and only it), as the value-by-value scan does. */
    private static void check(byte[] raw, ByteBuffer direct, String path, int elements, DType dtype) {
        int last = (elements - 1) * dtype.bytes();
        byte[] saved = Arrays.copyOfRange(raw, last, raw.length);
        ByteBuffer heap = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
        dtype.put(heap, last, Float.NaN);
        direct.put(last, raw, last, dtype.bytes());
        NonFinite.Found want = NonFinite.scanEachValue(raw, 0, elements, dtype);
        NonFinite.Found got = path.equals("words") ? NonFinite.scanWords(heap, 0, elements, dtype)
                : NonFinite.scan(path.equals("direct") ? direct : heap, 0, elements, dtype);
        System.arraycopy(saved, 0, raw, last, saved.length);
        direct.put(last, raw, last, saved.length);
        if (want.count != 1 || got.count != want.count || got.first != want.first) {
            throw new IllegalStateException("ScanBench: " + dtype + " " + path + " found " + got.count + " from "
                    + got.first + ", the value-by-value scan " + want.count + " from " + want.first);
        }
    }

    /** The load average over 1, 5 and 15 minutes, for a benchmark's header line. */
    static String loadAverage() {
        try {
            String[] f = Files.readString(Path.of("/proc/loadavg")).trim().split("\\s+");
            return f[0] + " " + f[1] + " " + f[2];
        } catch (Exception e) {
            return String.format(Locale.ROOT, "%.2f", ManagementFactory.getOperatingSystemMXBean().getSystemLoadAverage());
        }
    }
}
