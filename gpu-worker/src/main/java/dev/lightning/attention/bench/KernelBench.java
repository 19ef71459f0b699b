package dev.lightning.attention.bench;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.reference.Accuracy;
import dev.lightning.attention.engine.reference.ChunkedReference;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Times a backend on one in-memory sequence, with no Spark and no I/O: pass 1 ({@code advance})
 * and pass 2 ({@code forward}) over the whole sequence, best of several runs, with the result
 * checked against the float64 chunked reference on a prefix. Run by {@code bin/lightning bench}.
 * Its options and their defaults are {@link #USAGE}, which {@code bin/lightning bench --help} prints.
 * {@code --heads} is Hq (and Hk, Hv unless given); H = max(Hq, Hk, Hv).
 * The FLOP counts are those of the plain formula, so a variant's GFLOP/s read as its speed
 * relative to plain at the same shape.
 */
public final class KernelBench {
    /** The options, their values and defaults: what {@link #main} accepts, for {@code --help}. */
    public static final String USAGE = String.join("\n",
            "usage: lightning bench [options]",
            "",
            "bench: times a backend's pass 1 (advance) and pass 2 (forward) on one in-memory sequence of random",
            "  q, k, v (no Spark, no I/O), best of --runs runs after one warm-up, and checks the output of the first",
            "  --check-tokens tokens against the float64 chunked reference (the relative error is printed).",
            "",
            "Options:",
            "  --backend NAME             cpu, gpu, gpu-generic, chunked-f64 or recurrent-f64 [default cpu]",
            "  --tokens N                 T, at least 1 [default 16384]",
            "  --heads N                  Hq, and Hk and Hv unless given; H = max(Hq, Hk, Hv) [default 8]",
            "  --heads-k N                Hk; each of Hq, Hk, Hv must divide H [default --heads]",
            "  --heads-v N                Hv, e.g. --heads 2 --heads-k 2 --heads-v 6 for grouped values [default --heads]",
            "  --dk N                     Dk, 1..256 [default 64]",
            "  --dv N                     Dv, 1..256 [default 64]",
            "  --dtype f32|f16|bf16       dtype of q, k, v and o [default bf16]",
            "  --feature-map identity|elu1|relu  phi applied to q and k [default identity]",
            "  --normalize                normalized attention, eps 1e-5 [default off]",
            "  --chunk N                  chunk size of the CPU kernels, at least 1 [default 64]",
            "  --runs N                   timed runs, at least 1 [default 3]",
            "  --check-tokens N           tokens checked against float64, 0 for none [default 1024]");

    private KernelBench() {
    }

    /** {@code v}, the value after {@code option}; throws where the command line ended before it. */
    private static String value(String option, String v) {
        if (v == null) {
            throw new IllegalArgumentException(option + " needs a value");
        }
        return v;
    }

    public static void main(String[] args) throws Exception {
        String backendName = "cpu";
        int tokens = 16384;
        int heads = 8;
        int dk = 64;
        int dv = 64;
        DType dtype = DType.BF16;
        int runs = 3;
        int chunk = 64;
        int checkTokens = 1024;
        Integer headsK = null;   // null: as --heads
        Integer headsV = null;
        FeatureMap phi = FeatureMap.IDENTITY;
        boolean normalize = false;
        // --option=value as the job takes it, and each option once (a repeated one used to win silently)
        java.util.List<String> split = new java.util.ArrayList<>();
        java.util.Set<String> given = new java.util.HashSet<>();
        for (String a : args) {
            int eq = a.startsWith("--") ? a.indexOf('=') : -1;
            String flag = eq > 0 ? a.substring(0, eq) : a;
            if (flag.startsWith("--") && !given.add(flag)) {
                throw new IllegalArgumentException(flag + " given twice; give each option once");
            }
            split.add(flag);
            if (eq > 0) {
                split.add(a.substring(eq + 1));
            }
        }
        args = split.toArray(new String[0]);
        for (int i = 0; i < args.length; i += 2) {
            if ("--normalize".equals(args[i])) {
                normalize = true;
                i--;
                continue;
            }
            // an option's value is asked for by its case, so that an unknown word (last, or a value after
            // --normalize) is said to be unknown, not to need a value
            String v = i + 1 < args.length ? args[i + 1] : null;
            int max = Integer.MAX_VALUE;
            switch (args[i]) {
                case "--backend": backendName = value(args[i], v); break;
                case "--tokens": tokens = integer(args[i], value(args[i], v), 1, max); break;
                case "--heads": heads = integer(args[i], value(args[i], v), 1, AttentionSpec.MAX_HEADS); break;
                case "--dk": dk = integer(args[i], value(args[i], v), 1, AttentionSpec.MAX_DIM); break;
                case "--dv": dv = integer(args[i], value(args[i], v), 1, AttentionSpec.MAX_DIM); break;
                case "--dtype": dtype = DType.fromSafetensors(value(args[i], v)); break;
                case "--runs": runs = integer(args[i], value(args[i], v), 1, max); break;
                case "--chunk": chunk = integer(args[i], value(args[i], v), 1, max); break;
                case "--check-tokens": checkTokens = integer(args[i], value(args[i], v), 0, max); break;
                // at least 1: 0 was taken as "as --heads"
                case "--heads-k": headsK = integer(args[i], value(args[i], v), 1, AttentionSpec.MAX_HEADS); break;
                case "--heads-v": headsV = integer(args[i], value(args[i], v), 1, AttentionSpec.MAX_HEADS); break;
                case "--feature-map": phi = FeatureMap.of(value(args[i], v)); break;
                default: throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        int headsQ = heads;
        headsK = headsK != null ? headsK : headsQ;
        headsV = headsV != null ? headsV : headsQ;
        heads = AttentionSpec.heads(headsQ, headsK, headsV); // H: --heads is Hq, as in generate
        SplittableRandom rnd = new SplittableRandom(42);
        AttentionSpec spec = new AttentionSpec(heads, dk, dv, Slopes.minimax(heads), 1.0, chunk)
                .withHeads(headsQ, headsK, headsV).withFeatureMap(phi);
        if (normalize) {
            spec = spec.withNormalization(1e-5);
        }
        TokenTensor q = random(rnd, dtype, tokens, spec.headsQ(), dk);
        TokenTensor k = random(rnd, dtype, tokens, spec.headsK(), dk);
        TokenTensor v = random(rnd, dtype, tokens, spec.headsV(), dv);
        TokenTensor o = TokenTensor.allocate(dtype, tokens, heads, dv);
        LightningState zero = LightningState.zeros(spec);
        try (AttentionBackend backend = Backends.create(backendName)) {
            // correctness first, on a prefix (the float64 reference is slow)
            int n = Math.min(checkTokens, tokens);
            TokenTensor got = TokenTensor.allocate(DType.F32, n, heads, dv);
            TokenTensor want = TokenTensor.allocate(DType.F32, n, heads, dv);
            backend.forward(spec, q.slice(0, n), k.slice(0, n), v.slice(0, n), zero, got);
            new ChunkedReference().forward(spec, q.slice(0, n), k.slice(0, n), v.slice(0, n), zero, want);
            double err = Accuracy.relativeError(got.toFloats(), want.toFloats());

            double bestForward = Double.MAX_VALUE;
            double bestAdvance = Double.MAX_VALUE;
            // the calling thread's own CPU time as well: on a shared machine the wall clock also
            // counts the time other processes held the core (the CPU backend computes on this thread)
            ThreadMXBean cpu = ManagementFactory.getThreadMXBean();
            double cpuForward = Double.MAX_VALUE;
            double cpuAdvance = Double.MAX_VALUE;
            for (int r = 0; r <= runs; r++) { // run 0 warms up
                long c0 = cpu.getCurrentThreadCpuTime();
                long t0 = System.nanoTime();
                backend.advance(spec, k, v, zero);
                long t1 = System.nanoTime();
                long c1 = cpu.getCurrentThreadCpuTime();
                backend.forward(spec, q, k, v, zero, o);
                long t2 = System.nanoTime();
                long c2 = cpu.getCurrentThreadCpuTime();
                if (r > 0) {
                    bestAdvance = Math.min(bestAdvance, (t1 - t0) / 1e9);
                    bestForward = Math.min(bestForward, (t2 - t1) / 1e9);
                    cpuAdvance = Math.min(cpuAdvance, (c1 - c0) / 1e9);
                    cpuForward = Math.min(cpuForward, (c2 - c1) / 1e9);
                }
            }
            // multiply-adds per token and head: state update Dk*Dv, inter Dk*Dv, intra ~chunk/2*(Dk+Dv)
            double fmaPerToken = (double) heads * (2.0 * dk * dv + (chunk + 1) / 2.0 * (dk + dv));
            System.out.printf(Locale.ROOT, "backend %s on %s: T=%d %s %s, best of %d runs%n",
                    backend.name(), backend.device(), tokens, spec, dtype, runs);
            double flopAdvance = 2.0 * heads * dk * dv * tokens;
            double flopForward = 2 * fmaPerToken * tokens;
            System.out.printf(Locale.ROOT, "| step | ms | tokens/s | GFLOP/s | CPU ms | GFLOP per CPU-second |%n"
                    + "|---|---|---|---|---|---|%n");
            System.out.printf(Locale.ROOT, "| pass 1 (advance) | %.1f | %.3g | %.2f | %.1f | %.2f |%n", bestAdvance * 1e3,
                    tokens / bestAdvance, flopAdvance / bestAdvance / 1e9, cpuAdvance * 1e3, flopAdvance / cpuAdvance / 1e9);
            System.out.printf(Locale.ROOT, "| pass 2 (forward) | %.1f | %.3g | %.2f | %.1f | %.2f |%n", bestForward * 1e3,
                    tokens / bestForward, flopForward / bestForward / 1e9, cpuForward * 1e3, flopForward / cpuForward / 1e9);
            System.out.printf(Locale.ROOT, "check: output relative error %.2e against chunked-f64 on the first %d tokens "
                    + "(float32 output)%n", err, n);
        }
    }

    /**
     * The value {@code v} of integer option {@code option}, which must lie in {@code min..max}: the benchmarks'
     * one parser of integer options. A value in digits outside the range says the range: Integer.parseInt refused
     * 99999999999, an integer too large for an int, as "expected an integer", as it refused 'abc'.
     */
    static int integer(String option, String v, int min, int max) {
        return (int) integer(option, v, (long) min, (long) max);
    }

    /** {@link #integer(String, String, int, int)} for an option of a long's range. */
    static long integer(String option, String v, long min, long max) {
        java.math.BigInteger n;
        try {
            n = new java.math.BigInteger(v); // the digits Integer.parseInt takes, of any length
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(option + ": expected an integer, got '" + v + "'");
        }
        if (n.compareTo(java.math.BigInteger.valueOf(min)) < 0 || n.compareTo(java.math.BigInteger.valueOf(max)) > 0) {
            throw new IllegalArgumentException(option + ": expected an integer in " + min + ".." + max + ", got " + v);
        }
        return n.longValueExact();
    }

    private static TokenTensor random(SplittableRandom rnd, DType dtype, int t, int h, int d) {
        float[] x = new float[t * h * d];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (rnd.nextDouble() * 2 - 1);
        }
        return TokenTensor.of(dtype, t, h, d, x);
    }
}
