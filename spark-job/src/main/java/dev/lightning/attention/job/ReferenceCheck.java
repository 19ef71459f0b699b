package dev.lightning.attention.job;

import dev.lightning.attention.engine.reference.Accuracy;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.reference.RecurrentReference;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsFile;
import dev.lightning.attention.tensor.TokenTensor;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import java.util.function.IntFunction;

/**
 * Holds one output file against the float64 recurrence computed from its input file in one
 * piece, in memory: the independent check the demo prints. For files that fit in memory.
 */
final class ReferenceCheck {
    /** Relative errors ||x - ref|| / ||ref|| of o and final_state. */
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

    static Result check(Path input, Path output, double scale, IntFunction<double[]> defaultSlopes) throws IOException {
        Map<String, SafetensorsFile.Tensor> in = SafetensorsFile.read(input);
        Map<String, SafetensorsFile.Tensor> out = SafetensorsFile.read(output);
        TokenTensor q = in.get("q").asTokens();
        TokenTensor k = in.get("k").asTokens();
        TokenTensor v = in.get("v").asTokens();
        int heads = q.heads();
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
        AttentionSpec spec = new AttentionSpec(heads, q.dim(), v.dim(), slopes, scale, 64);
        LightningState s0 = in.containsKey("initial_state")
                ? LightningState.of(heads, q.dim(), v.dim(), in.get("initial_state").toFloats())
                : LightningState.zeros(heads, q.dim(), v.dim());
        TokenTensor expect = TokenTensor.allocate(DType.F32, q.tokens(), heads, v.dim());
        LightningState expectState = new RecurrentReference().forward(spec, q, k, v, s0, expect);
        return new Result(Accuracy.relativeError(out.get("o").toFloats(), expect.toFloats()),
                Accuracy.relativeError(out.get("final_state").toFloats(), expectState.kv()));
    }
}
