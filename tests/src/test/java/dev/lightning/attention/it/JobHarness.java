package dev.lightning.attention.it;

import dev.lightning.attention.job.LightningMain;
import dev.lightning.attention.engine.AttentionSpec;
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

    /** Runs and insists on success, showing what the job printed otherwise. */
    static Outcome succeed(String... args) {
        Outcome o = lightning(args);
        assertEquals(0, o.status, () -> "lightning " + String.join(" ", args) + "\nstdout:\n" + o.out + "\nstderr:\n" + o.err);
        return o;
    }

    /** A sequence file's content before rounding to its dtype. */
    static final class Sequence {
        final int tokens;
        final int heads;
        final int dk;
        final int dv;
        final DType dtype;
        final float[] q;
        final float[] k;
        final float[] v;
        final float[] slopes;
        final float[] initialState;

        Sequence(int tokens, int heads, int dk, int dv, DType dtype, float[] q, float[] k, float[] v, float[] slopes,
                 float[] initialState) {
            this.tokens = tokens;
            this.heads = heads;
            this.dk = dk;
            this.dv = dv;
            this.dtype = dtype;
            this.q = q;
            this.k = k;
            this.v = v;
            this.slopes = slopes;
            this.initialState = initialState;
        }

        static Sequence random(long seed, int tokens, int heads, int dk, int dv, DType dtype, float[] slopes,
                               boolean initialState) {
            SplittableRandom rnd = new SplittableRandom(seed);
            return new Sequence(tokens, heads, dk, dv, dtype, uniform(rnd, tokens * heads * dk),
                    uniform(rnd, tokens * heads * dk), uniform(rnd, tokens * heads * dv), slopes,
                    initialState ? uniform(rnd, heads * dk * dv) : null);
        }

        /** Tokens [from, to) of this sequence, starting from {@code state}. */
        Sequence range(int from, int to, float[] state) {
            return new Sequence(to - from, heads, dk, dv, dtype,
                    java.util.Arrays.copyOfRange(q, from * heads * dk, to * heads * dk),
                    java.util.Arrays.copyOfRange(k, from * heads * dk, to * heads * dk),
                    java.util.Arrays.copyOfRange(v, from * heads * dv, to * heads * dv), slopes, state);
        }

        void write(Path file) throws IOException {
            List<SafetensorsFile.Tensor> t = new ArrayList<>();
            t.add(SafetensorsFile.Tensor.of("q", dtype, new long[] {tokens, heads, dk}, q));
            t.add(SafetensorsFile.Tensor.of("k", dtype, new long[] {tokens, heads, dk}, k));
            t.add(SafetensorsFile.Tensor.of("v", dtype, new long[] {tokens, heads, dv}, v));
            if (slopes != null) {
                t.add(SafetensorsFile.Tensor.of("slope", DType.F32, new long[] {heads}, slopes));
            }
            if (initialState != null) {
                t.add(SafetensorsFile.Tensor.of("initial_state", DType.F32, new long[] {heads, dk, dv}, initialState));
            }
            SafetensorsFile.write(file, t);
        }

        /** The float64 recurrence over the inputs as rounded to the file's dtype; o in float32. */
        Result reference(double scale) {
            double[] s = new double[heads];
            for (int h = 0; h < heads; h++) {
                s[h] = slopes != null ? slopes[h] : Slopes.minimax(heads)[h];
            }
            AttentionSpec spec = new AttentionSpec(heads, dk, dv, s, scale, 64);
            TokenTensor o = TokenTensor.allocate(DType.F32, tokens, heads, dv);
            LightningState s0 = initialState != null ? LightningState.of(heads, dk, dv, initialState)
                    : LightningState.zeros(heads, dk, dv);
            LightningState last = new RecurrentReference().forward(spec, TokenTensor.of(dtype, tokens, heads, dk, q),
                    TokenTensor.of(dtype, tokens, heads, dk, k), TokenTensor.of(dtype, tokens, heads, dv, v), s0, o);
            return new Result(o.toFloats(), last.kv());
        }

        private static float[] uniform(SplittableRandom rnd, int n) {
            float[] x = new float[n];
            for (int i = 0; i < n; i++) {
                x[i] = (float) (rnd.nextDouble() * 2 - 1);
            }
            return x;
        }
    }

    /** o and final_state of one sequence, as floats. */
    static final class Result {
        final float[] o;
        final float[] state;

        Result(float[] o, float[] state) {
            this.o = o;
            this.state = state;
        }

        static Result read(Path file) throws IOException {
            Map<String, SafetensorsFile.Tensor> t = SafetensorsFile.read(file);
            return new Result(t.get("o").toFloats(), t.get("final_state").toFloats());
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
