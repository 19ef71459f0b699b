package dev.lightning.attention.it;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lightning.attention.it.JobHarness.Outcome;
import dev.lightning.attention.it.JobHarness.Result;
import dev.lightning.attention.it.JobHarness.Sequence;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import static dev.lightning.attention.it.JobHarness.lightning;
import static dev.lightning.attention.it.JobHarness.relativeError;
import static dev.lightning.attention.it.JobHarness.succeed;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code --output-dtype} through the command line: F16 outputs that overflow fail the job with
 * their position and the way out, {@code --output-dtype f32} holds them, {@code --skip-nonfinite}
 * lists the sequence as skipped.
 */
class OutputDtypeTest {
    static final String MASTER = "local[2]";
    static final int T = 300;
    static final int H = 2;
    static final int DK = 8;
    static final int DV = 4;

    @TempDir
    Path tmp;

    /**
     * F16 inputs below 1 except token 150 of head 1, where q, k and v are 200: its o is about
     * 200 * 8 * 200 * 200 = 6.4e7, far past F16's 65504, in all four indices. Head 1's other
     * queries are zero, so nothing else overflows.
     */
    private static Sequence overflowing() {
        Sequence s = Sequence.random(61, T, H, DK, DV, DType.F16, null, false);
        for (int t = 0; t < T; t++) {
            for (int d = 0; d < DK; d++) {
                s.q[(t * H + 1) * DK + d] = t == 150 ? 200f : 0f;
            }
        }
        for (int d = 0; d < DK; d++) {
            s.k[(150 * H + 1) * DK + d] = 200f;
        }
        for (int d = 0; d < DV; d++) {
            s.v[(150 * H + 1) * DV + d] = 200f;
        }
        return s;
    }

    @Test
    void f16OverflowFailsWithItsPositionAndF32OutputHoldsIt() throws IOException {
        Path in = Files.createDirectories(tmp.resolve("in"));
        Sequence big = overflowing();
        big.write(in.resolve("overflow.safetensors"));
        Sequence clean = Sequence.random(62, 200, H, DK, DV, DType.BF16, null, true);
        clean.write(in.resolve("clean.safetensors"));

        // split into pieces of 128 tokens: the overflow is in the second piece of three
        Path out = tmp.resolve("out");
        Outcome failed = lightning("run", "--input", in.toString(), "--output", out.toString(), "--master", MASTER,
                "--partition-tokens", "128");
        assertEquals(2, failed.status, failed.err);
        String line = failed.err.strip();
        System.out.println("OutputDtypeTest: the failed run printed: " + line);
        assertEquals(1, line.lines().count(), "one line: " + failed.err);
        assertTrue(line.startsWith("lightning: error: overflow.safetensors: 4 NaN/Inf value(s) in the output o (F16)"),
                line);
        assertTrue(line.contains("the first at o[150, 1, 0]") && line.contains("pass --output-dtype f32")
                && line.contains("--skip-nonfinite"), line);
        assertFalse(Files.exists(out.resolve("overflow.safetensors")), "no output for a failed sequence");

        Path wide = tmp.resolve("wide");
        succeed("run", "--input", in.toString(), "--output", wide.toString(), "--master", MASTER,
                "--partition-tokens", "128", "--output-dtype", "f32");
        for (Map.Entry<String, Sequence> e : Map.of("overflow.safetensors", big, "clean.safetensors", clean).entrySet()) {
            Path file = wide.resolve(e.getKey());
            Map<String, SafetensorsFile.Tensor> t = SafetensorsFile.read(file);
            assertEquals(DType.F32, t.get("o").dtype, e.getKey() + ": o");
            assertEquals(DType.F32, t.get("final_state").dtype, e.getKey() + ": final_state");
            Result got = Result.read(file);
            Result expect = e.getValue().reference(1.0);
            for (float x : got.o) {
                assertTrue(Float.isFinite(x), e.getKey() + ": o is finite in F32");
            }
            int tokens = e.getValue().tokens;
            for (int h = 0; h < H; h++) {
                double err = relativeError(head(got.o, tokens, h), head(expect.o, tokens, h));
                assertTrue(err <= 1e-5, e.getKey() + " head " + h + ": o relative error " + err);
            }
            assertTrue(relativeError(got.state, expect.state) <= 1e-5, e.getKey() + ": final_state");
        }

        Path skip = tmp.resolve("skip");
        Outcome skipped = succeed("run", "--input", in.toString(), "--output", skip.toString(), "--master", MASTER,
                "--partition-tokens", "128", "--skip-nonfinite");
        assertTrue(skipped.out.contains("skipped overflow.safetensors: 4 NaN/Inf value(s), the first at o[150, 1, 0]"),
                skipped.out);
        assertFalse(Files.exists(skip.resolve("overflow.safetensors")));
        assertEquals(DType.BF16, SafetensorsFile.read(skip.resolve("clean.safetensors")).get("o").dtype,
                "o in the input's dtype by default");
        JsonNode report = new ObjectMapper().readTree(skip.resolve("_lightning_report.json").toFile());
        assertEquals(1, report.get("skipped").size(), report.toString());
        assertEquals("overflow.safetensors", report.get("skipped").get(0).get("file").asText());
        assertTrue(report.get("skipped").get(0).get("reason").asText().contains("o[150, 1, 0]"), report.toString());
    }

    /** Head {@code h} of a {@code [tokens, H, Dv]} array. */
    private static float[] head(float[] o, int tokens, int h) {
        float[] x = new float[tokens * DV];
        for (int t = 0; t < tokens; t++) {
            System.arraycopy(o, (t * H + h) * DV, x, t * DV, DV);
        }
        return x;
    }
}
