package dev.lightning.attention.job;

import dev.lightning.attention.engine.reference.Accuracy;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.reference.RecurrentReference;
import dev.lightning.attention.stream.Variant;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.stream.OutputReader;
import dev.lightning.attention.tensor.SafetensorsFile;
import dev.lightning.attention.tensor.TokenTensor;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import java.util.function.IntFunction;

/**
 * Holds one output file against the float64 recurrence computed from its input file in one
 * piece, in memory: the independent check the demo prints. Every variant: grouped heads, the
 * feature map and normalization of the run, and the recorded states. For files that fit in memory.
 */
final class ReferenceCheck {
    /**
     * Relative errors ||x - ref|| / ||ref|| of o, and the largest of those of final_state,
     * final_normalizer, states and normalizers (those the output holds).
     */
    static final class Result {
        final double output;
        final double state;

        Result(double output, double state) {
            this.output = output;
            this.state = state;
        }
    }

    private ReferenceCheck() {
    }

    /** The output error the job is held to for an input dtype (reference from the rounded inputs). */
    static double tolerance(DType dtype) {
        switch (dtype) {
            case F32:
                return 1e-5;
            case F16:
                return 2e-3;
            default:
                return 6e-3;
        }
    }

    /** The plain formula without checkpoints. */
    static Result check(Path input, Path output, double scale, IntFunction<double[]> defaultSlopes) throws IOException {
        return check(input, output, scale, Variant.PLAIN, defaultSlopes);
    }

    static Result check(Path input, Path output, double scale, Variant variant, IntFunction<double[]> defaultSlopes)
            throws IOException {
        Map<String, SafetensorsFile.Tensor> in = SafetensorsFile.read(input);
        TokenTensor q = in.get("q").asTokens();
        TokenTensor k = in.get("k").asTokens();
        TokenTensor v = in.get("v").asTokens();
        AttentionSpec.checkGrouping(q.heads(), k.heads(), v.heads());
        int heads = AttentionSpec.heads(q.heads(), k.heads(), v.heads());
        double[] slopes;
        if (in.containsKey("slope")) {
            float[] s = in.get("slope").toFloats();
            slopes = new double[heads];
            for (int h = 0; h < heads; h++) {
                slopes[h] = s[h];
            }
        } else {
            slopes = defaultSlopes.apply(heads);
        }
        // chunk 1: the recurrence has no blocks, and any interval is a multiple of it
        AttentionSpec spec = variant.apply(AttentionSpec.grouped(q.heads(), k.heads(), v.heads(), q.dim(), v.dim(),
                slopes, scale, 1));
        float[] s0 = in.containsKey("initial_state") ? in.get("initial_state").toFloats() : new float[spec.stateSize()];
        LightningState initial = LightningState.own(heads, spec.dk(), spec.dv(), s0);
        if (spec.normalized()) {
            float[] z0 = in.containsKey("initial_normalizer") ? in.get("initial_normalizer").toFloats()
                    : new float[spec.normalizerSize()];
            initial = LightningState.own(heads, spec.dk(), spec.dv(), s0, z0);
        }
        TokenTensor expect = TokenTensor.allocate(DType.F32, q.tokens(), heads, v.dim());
        Checkpoints cp = variant.checkpoints() ? Checkpoints.of(spec, variant.stateEvery(), 0, q.tokens())
                : Checkpoints.none();
        LightningState last = new RecurrentReference().forward(spec, q, k, v, initial, expect, cp);
        // either form of the output: one file, or (--output-form parts) its index and parts
        try (OutputReader out = OutputReader.open(output)) {
            return compare(out, spec, last, cp, expect);
        }
    }

    private static Result compare(OutputReader out, AttentionSpec spec, LightningState last, Checkpoints cp,
                                  TokenTensor expect) throws IOException {
        double state = Accuracy.relativeError(out.floats("final_state"), last.kv());
        if (spec.normalized()) {
            state = Math.max(state, Accuracy.relativeError(out.floats("final_normalizer"), last.normalizer()));
        }
        if (cp.count() > 0) {
            state = Math.max(state, Accuracy.relativeError(out.floats("states"), cp.kvData()));
            if (spec.normalized()) {
                state = Math.max(state, Accuracy.relativeError(out.floats("normalizers"), cp.normalizerData()));
            }
        }
        return new Result(Accuracy.relativeError(out.floats("o"), expect.toFloats()), state);
    }
}
