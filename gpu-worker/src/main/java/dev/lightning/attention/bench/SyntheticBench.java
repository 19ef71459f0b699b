package dev.lightning.attention.bench;

import dev.lightning.attention.stream.RangeReader;
import dev.lightning.attention.stream.SyntheticSequence;
import dev.lightning.attention.tensor.DType;

import java.util.Locale;

/**
 * Times the synthetic source: values per second one thread gets from
 * {@link SyntheticSequence#reader()} reading q, k, v through windows, as pass 2 reads them. Not a
 * test; its numbers go to BENCHMARKS.md.
 * <pre>
 *   java -cp gpu-worker/target/classes:partitioner/target/classes:$JACKSON \
 *        dev.lightning.attention.bench.SyntheticBench [--tokens 4000000] [--heads 2] [--d 64] [--window-tokens 65536]
 * </pre>
 */
public final class SyntheticBench {
    private SyntheticBench() {
    }

    public static void main(String[] args) throws Exception {
        long tokens = 4_000_000;
        int heads = 2;
        int d = 64;
        int window = 65536;
        for (int i = 0; i < args.length; i += 2) {
            switch (args[i]) {
                case "--tokens":
                    tokens = Long.parseLong(args[i + 1]);
                    break;
                case "--heads":
                    heads = Integer.parseInt(args[i + 1]);
                    break;
                case "--d":
                    d = Integer.parseInt(args[i + 1]);
                    break;
                case "--window-tokens":
                    window = Integer.parseInt(args[i + 1]);
                    break;
                default:
                    throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        for (DType dtype : new DType[] {DType.BF16, DType.F32}) {
            SyntheticSequence s = new SyntheticSequence(tokens, heads, d, d, dtype, 1);
            RangeReader in = s.reader();
            int rowBytes = heads * d * dtype.bytes();
            byte[] buf = new byte[window * rowBytes];
            long[] begins = {s.header().tensor("q").begin(), s.header().tensor("k").begin(),
                    s.header().tensor("v").begin()};
            double best = 0;
            double bestCpu = 0;
            long check = 0;
            java.lang.management.ThreadMXBean mx = java.lang.management.ManagementFactory.getThreadMXBean();
            for (int run = 0; run < 5; run++) {
                long t0 = System.nanoTime();
                long c0 = mx.getCurrentThreadCpuTime();
                for (long at = 0; at < tokens; at += window) {
                    int n = (int) Math.min(window, tokens - at);
                    for (long b : begins) {
                        in.readFully(b + at * rowBytes, buf, 0, n * rowBytes);
                        check += buf[n * rowBytes - 1];
                    }
                }
                double seconds = (System.nanoTime() - t0) / 1e9;
                double cpu = (mx.getCurrentThreadCpuTime() - c0) / 1e9;
                best = Math.max(best, 3.0 * tokens * heads * d / seconds);
                bestCpu = Math.max(bestCpu, 3.0 * tokens * heads * d / cpu);
            }
            System.out.printf(Locale.ROOT, "synthetic %s: T=%d H=%d D=%d: %.2f G values/s on one thread "
                    + "(%.1f M tokens/s of q, k and v); per second of the thread's CPU time %.2f G values/s [%d]%n",
                    dtype, tokens, heads, d, best / 1e9, best / (3.0 * heads * d) / 1e6, bestCpu / 1e9, check & 1);
        }
    }
}
