package dev.lightning.attention.it;

import dev.lightning.attention.job.LightningMain;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.reference.RecurrentReference;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsFile;
import dev.lightning.attention.tensor.TokenTensor;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** Writes sequence files, runs the job through its command line, reads results back. */
final class JobHarness {
    /** Writes each sequence at its path relative to {@code dir} (directories created); returns {@code dir}. */
    static java.nio.file.Path writeSequences(java.nio.file.Path dir, java.util.Map<String, Sequence> files)
            throws java.io.IOException {
        java.nio.file.Path d = java.nio.file.Files.createDirectories(dir);
        for (java.util.Map.Entry<String, Sequence> e : files.entrySet()) {
            java.nio.file.Path f = d.resolve(e.getKey());
            java.nio.file.Files.createDirectories(f.getParent());
            e.getValue().write(f);
        }
        return d;
    }

    private JobHarness() {
    }

    /** What a command printed and returned. */
    static final class Outcome {
        final int status;
        final String out;
        final String err;

        Outcome(int status, String out, String err) {
            this.status = status;
            this.out = out;
            this.err = err;
        }
    }

    static Outcome lightning(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status;
        try (PrintStream o = new PrintStream(out, true, StandardCharsets.UTF_8);
             PrintStream e = new PrintStream(err, true, StandardCharsets.UTF_8)) {
            status = LightningMain.run(args, o, e);
        }
        return new Outcome(status, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    /**
     * {@code args} run with the fault point {@code point} ("NAME:K": the K-th time the run reaches
     * NAME it throws, like a task whose executor broke; FaultPoints), the property cleared after.
     */
    static Outcome failingAt(String point, String... args) {
        System.setProperty("lightning.test.failAt", point);
        try {
            return lightning(args);
        } finally {
            System.clearProperty("lightning.test.failAt");
        }
    }

    /**
     * A tmpfs mounted at {@code dir} with {@code options} (e.g. "size=2m", "ro,size=1m") until
     * closed. Mounting needs root, as CI has; elsewhere the calling test is aborted with a line
     * saying it was skipped and why.
     */
    static AutoCloseable tmpfs(Path dir, String options, String test) throws IOException, InterruptedException {
        Process mount = new ProcessBuilder("mount", "-t", "tmpfs", "-o", options, "tmpfs", dir.toString())
                .redirectErrorStream(true).start();
        String why = new String(mount.getInputStream().readAllBytes()).strip();
        if (mount.waitFor() != 0) {
            System.out.println(test + " SKIPPED: cannot mount a tmpfs (" + options + ") here (" + why + ")");
            org.junit.jupiter.api.Assumptions.abort("cannot mount a tmpfs: " + why);
        }
        return () -> new ProcessBuilder("umount", dir.toString()).inheritIO().start().waitFor();
    }

    /** Runs and insists on success, showing what the job printed otherwise. */
    static Outcome succeed(String... args) {
        Outcome o = lightning(args);
        assertEquals(0, o.status, () -> "lightning " + String.join(" ", args) + "\nstdout:\n" + o.out + "\nstderr:\n" + o.err);
        return o;
    }

    /**
     * A sequence file's content before rounding to its dtype: q [T, Hq, Dk], k [T, Hk, Dk],
     * v [T, Hv, Dv], and H = max(Hq, Hk, Hv) heads of state.
     */
    static final class Sequence {
        final int tokens;
        final int heads;
        final int headsQ;
        final int headsK;
        final int headsV;
        final int dk;
        final int dv;
        final DType dtype;
        final float[] q;
        final float[] k;
        final float[] v;
        final float[] slopes;
        final float[] initialState;
        final float[] initialNormalizer;

        Sequence(int tokens, int heads, int dk, int dv, DType dtype, float[] q, float[] k, float[] v, float[] slopes,
                 float[] initialState) {
            this(tokens, heads, heads, heads, dk, dv, dtype, q, k, v, slopes, initialState, null);
        }

        Sequence(int tokens, int headsQ, int headsK, int headsV, int dk, int dv, DType dtype, float[] q, float[] k,
                 float[] v, float[] slopes, float[] initialState, float[] initialNormalizer) {
            this.tokens = tokens;
            this.heads = Math.max(headsQ, Math.max(headsK, headsV));
            this.headsQ = headsQ;
            this.headsK = headsK;
            this.headsV = headsV;
            this.dk = dk;
            this.dv = dv;
            this.dtype = dtype;
            this.q = q;
            this.k = k;
            this.v = v;
            this.slopes = slopes;
            this.initialState = initialState;
            this.initialNormalizer = initialNormalizer;
        }

        static Sequence random(long seed, int tokens, int heads, int dk, int dv, DType dtype, float[] slopes,
                               boolean initialState) {
            SplittableRandom rnd = new SplittableRandom(seed);
            return new Sequence(tokens, heads, dk, dv, dtype, uniform(rnd, tokens * heads * dk),
                    uniform(rnd, tokens * heads * dk), uniform(rnd, tokens * heads * dv), slopes,
                    initialState ? uniform(rnd, heads * dk * dv) : null);
        }

        /**
         * Random grouped heads (the counts need not divide: files the job must refuse), with an
         * initial state and an initial normalizer (in (0.5, 1.5): a sum of positive phi(k)) when asked.
         */
        static Sequence grouped(long seed, int tokens, int hq, int hk, int hv, int dk, int dv, DType dtype,
                                float[] slopes, boolean initialState, boolean initialNormalizer) {
            SplittableRandom rnd = new SplittableRandom(seed);
            int h = Math.max(hq, Math.max(hk, hv));
            float[] z = null;
            if (initialNormalizer) {
                z = uniform(rnd, h * dk);
                for (int i = 0; i < z.length; i++) {
                    z[i] = 1 + z[i] / 2;
                }
            }
            return new Sequence(tokens, hq, hk, hv, dk, dv, dtype, uniform(rnd, tokens * hq * dk),
                    uniform(rnd, tokens * hk * dk), uniform(rnd, tokens * hv * dv), slopes,
                    initialState ? uniform(rnd, h * dk * dv) : null, z);
        }

        /** Tokens [from, to) of this sequence, starting from {@code state}. */
        Sequence range(int from, int to, float[] state) {
            return new Sequence(to - from, headsQ, headsK, headsV, dk, dv, dtype,
                    java.util.Arrays.copyOfRange(q, from * headsQ * dk, to * headsQ * dk),
                    java.util.Arrays.copyOfRange(k, from * headsK * dk, to * headsK * dk),
                    java.util.Arrays.copyOfRange(v, from * headsV * dv, to * headsV * dv), slopes, state, null);
        }

        void write(Path file) throws IOException {
            List<SafetensorsFile.Tensor> t = new ArrayList<>();
            t.add(SafetensorsFile.Tensor.of("q", dtype, new long[] {tokens, headsQ, dk}, q));
            t.add(SafetensorsFile.Tensor.of("k", dtype, new long[] {tokens, headsK, dk}, k));
            t.add(SafetensorsFile.Tensor.of("v", dtype, new long[] {tokens, headsV, dv}, v));
            if (slopes != null) {
                t.add(SafetensorsFile.Tensor.of("slope", DType.F32, new long[] {heads}, slopes));
            }
            if (initialState != null) {
                t.add(SafetensorsFile.Tensor.of("initial_state", DType.F32, new long[] {heads, dk, dv}, initialState));
            }
            if (initialNormalizer != null) {
                t.add(SafetensorsFile.Tensor.of("initial_normalizer", DType.F32, new long[] {heads, dk},
                        initialNormalizer));
            }
            SafetensorsFile.write(file, t);
        }

        /** The float64 recurrence over the inputs as rounded to the file's dtype; o in float32. */
        Result reference(double scale) {
            return reference(scale, FeatureMap.IDENTITY, -1, 0);
        }

        /**
         * The float64 recurrence of a variant: feature map {@code phi}, normalized with {@code eps}
         * when eps >= 0, states recorded every {@code every} tokens when every > 0.
         */
        Result reference(double scale, FeatureMap phi, double eps, int every) {
            double[] s = new double[heads];
            for (int h = 0; h < heads; h++) {
                s[h] = slopes != null ? slopes[h] : Slopes.minimax(heads)[h];
            }
            // chunk 1: the recurrence has no blocks, and every interval is a multiple of it
            AttentionSpec spec = new AttentionSpec(heads, dk, dv, s, scale, 1).withHeads(headsQ, headsK, headsV)
                    .withFeatureMap(phi);
            if (eps >= 0) {
                spec = spec.withNormalization(eps);
            }
            TokenTensor o = TokenTensor.allocate(DType.F32, tokens, heads, dv);
            float[] s0 = initialState != null ? initialState : new float[heads * dk * dv];
            LightningState start = spec.normalized()
                    ? LightningState.of(heads, dk, dv, s0, initialNormalizer != null ? initialNormalizer : new float[heads * dk])
                    : LightningState.of(heads, dk, dv, s0);
            Checkpoints cp = every > 0 ? Checkpoints.of(spec, every, 0, tokens) : Checkpoints.none();
            LightningState last = new RecurrentReference().forward(spec, TokenTensor.of(dtype, tokens, headsQ, dk, q),
                    TokenTensor.of(dtype, tokens, headsK, dk, k), TokenTensor.of(dtype, tokens, headsV, dv, v), start, o,
                    cp);
            return new Result(o.toFloats(), last.kv(), spec.normalized() ? last.normalizer() : null,
                    every > 0 ? cp.kvData().clone() : null,
                    every > 0 && spec.normalized() ? cp.normalizerData().clone() : null);
        }

        private static float[] uniform(SplittableRandom rnd, int n) {
            float[] x = new float[n];
            for (int i = 0; i < n; i++) {
                x[i] = (float) (rnd.nextDouble() * 2 - 1);
            }
            return x;
        }
    }

    /** o and final_state of one sequence, as floats, and those of the variants where the file holds them (else null). */
    static final class Result {
        final float[] o;
        final float[] state;
        final float[] normalizer;
        final float[] states;
        final float[] normalizers;

        Result(float[] o, float[] state) {
            this(o, state, null, null, null);
        }

        Result(float[] o, float[] state, float[] normalizer, float[] states, float[] normalizers) {
            this.o = o;
            this.state = state;
            this.normalizer = normalizer;
            this.states = states;
            this.normalizers = normalizers;
        }

        static Result read(Path file) throws IOException {
            Map<String, SafetensorsFile.Tensor> t = SafetensorsFile.read(file);
            return new Result(t.get("o").toFloats(), t.get("final_state").toFloats(), floats(t, "final_normalizer"),
                    floats(t, "states"), floats(t, "normalizers"));
        }

        private static float[] floats(Map<String, SafetensorsFile.Tensor> t, String name) {
            return t.containsKey(name) ? t.get(name).toFloats() : null;
        }
    }

    /** The project's error measure, refusing comparisons that could not fail. */
    static double relativeError(float[] a, float[] b) {
        assertEquals(b.length, a.length, "element count");
        boolean allZero = true;
        for (float x : b) {
            allZero &= x == 0;
        }
        if (allZero) {
            throw new AssertionError("reference is all zeros: the comparison could not fail");
        }
        return dev.lightning.attention.engine.reference.Accuracy.relativeError(a, b);
    }
}
