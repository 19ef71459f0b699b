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
        passes(Math.min(tokens, 2_000_000), heads, d);
    }

    /**
     * The generator inside the work it feeds: PieceWork's pass 1 and pass 2 (into the checksum
     * sink, then the spot checks) of one BF16 piece on the CPU backend, on one thread, best of 3 by
     * thread CPU time. Run once with -Dlightning.synthetic.vectors=false to see the generator's share.
     */
    private static void passes(long tokens, int heads, int d) throws Exception {
        SyntheticSequence s = new SyntheticSequence(tokens, heads, d, d, DType.BF16, 1);
        dev.lightning.attention.stream.SequenceFile f = s.describe(dev.lightning.attention.engine.Slopes::minimax,
                false);
        java.lang.management.ThreadMXBean mx = java.lang.management.ManagementFactory.getThreadMXBean();
        dev.lightning.attention.plan.Piece p = new dev.lightning.attention.plan.Piece(0, 0, 1, 0, tokens);
        double[] best = {Double.MAX_VALUE, Double.MAX_VALUE, Double.MAX_VALUE};
        int samples = 0;
        try (dev.lightning.attention.engine.cpu.CpuBackend b = new dev.lightning.attention.engine.cpu.CpuBackend()) {
            dev.lightning.attention.stream.PieceWork w = new dev.lightning.attention.stream.PieceWork(1.0, 64,
                    64L << 20, DType.BF16);
            for (int run = 0; run < 3; run++) {
                long c0 = mx.getCurrentThreadCpuTime();
                w.localState(b, s.reader(), f, p);
                long c1 = mx.getCurrentThreadCpuTime();
                dev.lightning.attention.stream.OutputSummary.Sink sink =
                        new dev.lightning.attention.stream.OutputSummary.Sink(DType.BF16, 0, heads * d * 2,
                                dev.lightning.attention.stream.SpotCheck.samples(tokens, p));
                w.outputs(b, s.reader(), f, p, dev.lightning.attention.engine.LightningState.zeros(w.spec(f)), sink);
                long c2 = mx.getCurrentThreadCpuTime();
                dev.lightning.attention.stream.OutputSummary sum = sink.summary();
                for (dev.lightning.attention.stream.SpotCheck.Point pt : sum.samples) {
                    dev.lightning.attention.stream.SpotCheck.check(s.reader(), f, w.spec(f), DType.BF16, pt);
                }
                long c3 = mx.getCurrentThreadCpuTime();
                samples = sum.samples.size();
                best[0] = Math.min(best[0], (c1 - c0) / 1e9);
                best[1] = Math.min(best[1], (c2 - c1) / 1e9);
                best[2] = Math.min(best[2], (c3 - c2) / 1e9);
            }
        }
        System.out.printf(Locale.ROOT, "PieceWork on the CPU backend, BF16 T=%d H=%d D=%d, thread CPU time: pass 1 %.2f s "
                        + "(%.2f M tokens/s), pass 2 into the checksum sink %.2f s (%.2f M tokens/s), %d spot checks "
                        + "%.2f s (vectors %s)%n", tokens, heads, d, best[0], tokens / best[0] / 1e6, best[1],
                tokens / best[1] / 1e6, samples, best[2], System.getProperty("lightning.synthetic.vectors", "true"));
    }
}
