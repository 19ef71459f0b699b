package dev.lightning.attention.it;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.SoftmaxBackend;
import dev.lightning.attention.engine.SoftmaxPartial;
import dev.lightning.attention.engine.SoftmaxSpec;
import dev.lightning.attention.it.JobHarness.Outcome;
import dev.lightning.attention.it.JobHarness.Sequence;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsFile;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code lightning run --attention softmax} through its command line (Spark local mode), against
 * the float64 definition ({@link Backends#softmaxReference}) computed here over the whole sequence
 * at once: split runs of many tiny pieces (partials merged across tasks), unsplit runs, windows,
 * grouped heads, Dk != Dv, F32 and BF16; split equals unsplit to float32 rounding; reruns are
 * byte-identical; bad input and options of the other attention are refused with clear messages.
 */
class SoftmaxJobTest {
    static final String MASTER = "local[2]";

    @TempDir
    static Path tmp;
    static Path input;
    static final Map<String, Sequence> FILES = new LinkedHashMap<>();

    @BeforeAll
    static void write() throws IOException {
        // name -> T, Hq, Hk, Dk, Dv, dtype: T = 1, 63, 1000; Hq/Hk = 1, 2, 8 and 6/3; Dk != Dv; F32 and BF16
        FILES.put("one.safetensors", Sequence.grouped(1, 1, 1, 1, 1, 8, 8, DType.F32, null, false, false));
        FILES.put("t63-gqa2.safetensors", Sequence.grouped(2, 63, 2, 1, 1, 16, 8, DType.BF16, null, false, false));
        FILES.put("t1000-gqa8.safetensors", Sequence.grouped(3, 1000, 8, 1, 1, 32, 24, DType.BF16, null, false, false));
        FILES.put("t1000-6-3.safetensors", Sequence.grouped(4, 1000, 6, 3, 3, 24, 40, DType.F32, null, false, false));
        FILES.put("t300-mha.safetensors", Sequence.grouped(5, 300, 3, 3, 3, 16, 12, DType.F32, null, false, false));
        input = JobHarness.writeSequences(tmp.resolve("in"), FILES);
    }

    /** o [T, Hq, Dv] and lse [T, Hq] of the float64 definition, over the inputs as rounded to their dtype. */
    static float[][] reference(Sequence s, long window) {
        SoftmaxSpec spec = new SoftmaxSpec(s.headsQ, s.headsK, s.dk, s.dv, SoftmaxSpec.defaultScale(s.dk), window);
        SoftmaxPartial p = SoftmaxPartial.empty(spec, s.tokens);
        try (SoftmaxBackend ref = Backends.softmaxReference()) {
            ref.forward(spec, TokenTensor.of(s.dtype, s.tokens, s.headsQ, s.dk, s.q), 0,
                    TokenTensor.of(s.dtype, s.tokens, s.headsK, s.dk, s.k),
                    TokenTensor.of(s.dtype, s.tokens, s.headsV, s.dv, s.v), 0, p);
        }
        return new float[][] {p.o().clone(), p.lse().clone()};
    }

    static Map<String, SafetensorsFile.Tensor> read(Path dir, String name) throws IOException {
        return SafetensorsFile.read(dir.resolve(name));
    }

    private static Outcome softmax(Path out, String... more) {
        List<String> args = new ArrayList<>(List.of("run", "--attention", "softmax", "--input", input.toString(),
                "--output", out.toString(), "--master", MASTER, "--backend", "cpu", "--progress-seconds", "60"));
        args.addAll(List.of(more));
        return JobHarness.succeed(args.toArray(new String[0]));
    }

    private static double limit(DType out) {
        return out == DType.F32 ? 1e-5 : 6e-3; // BF16 o: its rounding (2^-8 relative per value), as for lightning
    }

    @Test
    void splitAndUnsplitRunsMatchTheReferenceAndEachOther() throws IOException {
        // many tiny pieces: 64 tokens each, so T = 1000 is 16 query pieces whose partials merge across tasks
        Path split = tmp.resolve("split");
        Outcome o = softmax(split, "--partition-tokens", "64", "--write-lse");
        assertTrue(o.out.contains("task cost max/mean"), o.out);
        Path unsplit = tmp.resolve("unsplit");
        softmax(unsplit, "--write-lse", "--output-dtype", "f32");
        for (Map.Entry<String, Sequence> e : FILES.entrySet()) {
            Sequence s = e.getValue();
            float[][] ref = reference(s, 0);
            Map<String, SafetensorsFile.Tensor> a = read(split, e.getKey());
            Map<String, SafetensorsFile.Tensor> b = read(unsplit, e.getKey());
            assertEquals(s.dtype, a.get("o").dtype, "o in the input's dtype");
            assertArrayEquals(new long[] {s.tokens, s.headsQ, s.dv}, a.get("o").shape);
            assertArrayEquals(new long[] {s.tokens, s.headsQ}, a.get("lse").shape);
            double splitErr = JobHarness.relativeError(a.get("o").toFloats(), ref[0]);
            double unsplitErr = JobHarness.relativeError(b.get("o").toFloats(), ref[0]);
            assertTrue(splitErr <= limit(s.dtype), e.getKey() + " split o: " + splitErr);
            assertTrue(unsplitErr <= 1e-5, e.getKey() + " unsplit o (F32): " + unsplitErr);
            assertTrue(JobHarness.relativeError(a.get("lse").toFloats(), ref[1]) <= 1e-6, e.getKey() + " lse");
            assertTrue(JobHarness.relativeError(b.get("lse").toFloats(), ref[1]) <= 1e-6, e.getKey() + " lse");
            if (s.dtype == DType.F32) { // split and unsplit agree to float32 rounding
                double d = JobHarness.relativeError(a.get("o").toFloats(), b.get("o").toFloats());
                assertTrue(d <= 1e-6, e.getKey() + " split vs unsplit: " + d);
            }
        }
        JsonNode report = new ObjectMapper().readTree(split.resolve("_lightning_report.json").toFile());
        JsonNode plan = report.get("softmax");
        assertTrue(plan.get("mergedQueryPieces").asInt() > 0, "some query pieces were merged from partials");
        assertTrue(plan.get("maxOverMean").asDouble() < 1.5, plan.toString());
        // each query token counted once, though its rows are computed by several items (keys split among them)
        long tokens = FILES.values().stream().mapToLong(x -> x.tokens).sum();
        assertEquals(tokens, report.get("passes").get("softmax 1/2: blocks").get("tokens").asLong(),
                report.get("passes").toString());
        assertEquals("softmax", report.get("settings").get("spark.lightning.attention").asText());
        assertEquals("1/sqrt(Dk)", report.get("settings").get("spark.lightning.scale").asText());

        // a rerun writes the same bytes
        Path again = tmp.resolve("split-again");
        softmax(again, "--partition-tokens", "64", "--write-lse");
        for (String name : FILES.keySet()) {
            assertArrayEquals(Files.readAllBytes(split.resolve(name)), Files.readAllBytes(again.resolve(name)),
                    name + ": two runs differ");
        }
        try (var left = Files.list(split)) {
            assertFalse(left.anyMatch(x -> x.getFileName().toString().equals("_temporary")), "staging removed");
        }
    }

    @Test
    void windowsAcrossPiecesAndAnExplicitScale() throws IOException {
        Path out = tmp.resolve("window");
        long window = 100; // crosses 64-token pieces: each query piece needs two or three key pieces
        softmax(out, "--partition-tokens", "64", "--window", Long.toString(window), "--output-dtype", "f32");
        for (Map.Entry<String, Sequence> e : FILES.entrySet()) {
            float[][] ref = reference(e.getValue(), window);
            Map<String, SafetensorsFile.Tensor> got = read(out, e.getKey());
            assertFalse(got.containsKey("lse"), "no lse without --write-lse");
            double err = JobHarness.relativeError(got.get("o").toFloats(), ref[0]);
            assertTrue(err <= 1e-5, e.getKey() + " window: " + err);
        }
        // the window changes the result (the test could fail)
        float[][] full = reference(FILES.get("t1000-6-3.safetensors"), 0);
        assertTrue(JobHarness.relativeError(read(out, "t1000-6-3.safetensors").get("o").toFloats(), full[0]) > 1e-3);

        Path scaled = tmp.resolve("scaled");
        softmax(scaled, "--scale", "0.5", "--output-dtype", "f32", "--write-lse");
        Sequence s = FILES.get("t300-mha.safetensors");
        SoftmaxSpec spec = new SoftmaxSpec(s.headsQ, s.headsK, s.dk, s.dv, 0.5, 0);
        SoftmaxPartial p = SoftmaxPartial.empty(spec, s.tokens);
        Backends.softmaxReference().forward(spec, TokenTensor.of(s.dtype, s.tokens, s.headsQ, s.dk, s.q), 0,
                TokenTensor.of(s.dtype, s.tokens, s.headsK, s.dk, s.k),
                TokenTensor.of(s.dtype, s.tokens, s.headsV, s.dv, s.v), 0, p);
        Map<String, SafetensorsFile.Tensor> got = read(scaled, "t300-mha.safetensors");
        assertTrue(JobHarness.relativeError(got.get("lse").toFloats(), p.lse()) <= 1e-6, "--scale 0.5 is used");
    }

    @Test
    void badInputsAndOptionsOfTheOtherAttentionAreRefused() throws IOException {
        Path bad = Files.createDirectories(tmp.resolve("bad"));
        Map<String, String> cases = new LinkedHashMap<>();
        Map<String, Sequence> files = new LinkedHashMap<>();
        files.put("heads.safetensors", Sequence.grouped(9, 10, 6, 4, 4, 8, 8, DType.F32, null, false, false));
        cases.put("heads.safetensors", "Hq a multiple of Hk");
        files.put("kv-heads.safetensors", Sequence.grouped(9, 10, 4, 2, 4, 8, 8, DType.F32, null, false, false));
        cases.put("kv-heads.safetensors", "Hq a multiple of Hk");
        files.put("state.safetensors", Sequence.grouped(9, 10, 2, 2, 2, 8, 8, DType.F32, null, true, false));
        cases.put("state.safetensors", "'initial_state'");
        files.put("slope.safetensors", Sequence.grouped(9, 10, 2, 2, 2, 8, 8, DType.F32, new float[] {0.1f, 0.2f},
                false, false));
        cases.put("slope.safetensors", "'slope'");
        cases.put("tokens.safetensors", "one T");
        // a near miss of 'slope': renaming it, as lightning's check asks, would only meet the refusal above
        cases.put("slopes.safetensors", "'slopes', a near miss of 'slope', a tensor of lightning attention");
        Sequence a = Sequence.grouped(9, 10, 2, 2, 2, 8, 8, DType.F32, null, false, false);
        Sequence b = Sequence.grouped(9, 12, 2, 2, 2, 8, 8, DType.F32, null, false, false);
        for (String name : cases.keySet()) {
            Path dir = Files.createDirectories(bad.resolve(name + ".d"));
            if (files.containsKey(name)) {
                files.get(name).write(dir.resolve(name));
            } else if (name.equals("slopes.safetensors")) {
                SafetensorsFile.write(dir.resolve(name), List.of(
                        SafetensorsFile.Tensor.of("q", DType.F32, new long[] {10, 2, 8}, a.q),
                        SafetensorsFile.Tensor.of("k", DType.F32, new long[] {10, 2, 8}, a.k),
                        SafetensorsFile.Tensor.of("v", DType.F32, new long[] {10, 2, 8}, a.v),
                        SafetensorsFile.Tensor.of("slopes", DType.F32, new long[] {2}, new float[] {0.1f, 0.2f})));
            } else { // v has 12 tokens, q and k 10
                SafetensorsFile.write(dir.resolve(name), List.of(
                        SafetensorsFile.Tensor.of("q", DType.F32, new long[] {10, 2, 8}, a.q),
                        SafetensorsFile.Tensor.of("k", DType.F32, new long[] {10, 2, 8}, a.k),
                        SafetensorsFile.Tensor.of("v", DType.F32, new long[] {12, 2, 8}, b.v)));
            }
            Path out = bad.resolve(name + ".out");
            Outcome o = JobHarness.lightning("run", "--attention", "softmax", "--input", dir.toString(), "--output",
                    out.toString(), "--master", MASTER, "--backend", "cpu");
            assertEquals(2, o.status, name + ": " + o.err);
            assertTrue(o.err.contains(name) && o.err.contains(cases.get(name)), name + ": " + o.err);
            assertFalse(o.err.contains("rename"), name + ": softmax reads no lightning tensor, by any name: " + o.err);
            assertFalse(Files.exists(out.resolve(name)), "nothing written");
        }
        String[][] options = {
            {"--attention", "softmax", "--feature-map", "elu1"},
            {"--attention", "softmax", "--normalize"},
            {"--attention", "softmax", "--state-every", "64"},
            {"--attention", "softmax", "--default-slopes", "transnormer"},
            {"--window", "16"},
            {"--write-lse"},
        };
        for (String[] opt : options) {
            List<String> args = new ArrayList<>(List.of("run", "--input", input.toString(), "--output",
                    tmp.resolve("never").toString(), "--master", MASTER));
            args.addAll(List.of(opt));
            Outcome o = JobHarness.lightning(args.toArray(new String[0]));
            assertEquals(2, o.status, String.join(" ", opt) + ": " + o.err);
            String flag = opt[opt.length - (opt[opt.length - 1].startsWith("--") ? 1 : 2)];
            assertTrue(o.err.contains(flag) && o.err.contains("only"), String.join(" ", opt) + ": " + o.err);
            assertFalse(Files.exists(tmp.resolve("never")), "no output directory");
        }
    }

    @Test
    void helpStatesTheSoftmaxContractAndDefaults() {
        Outcome o = JobHarness.succeed("--help");
        for (String s : new String[] {"--attention", "lightning|softmax", "--window", "--write-lse",
                "default 1.0; softmax: 1/sqrt(Dk)", "Lightning only. Feature map", "v [T,Hk,Dv]"}) {
            assertTrue(o.out.contains(s), "--help lacks '" + s + "':\n" + o.out);
        }
    }

    @Test
    void nonFiniteInputFailsOrIsSkippedAndListed() throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("nan-in"));
        Sequence good = Sequence.grouped(21, 200, 2, 1, 1, 8, 8, DType.F32, null, false, false);
        Sequence bad = Sequence.grouped(22, 200, 2, 1, 1, 8, 8, DType.F32, null, false, false);
        bad.k[150 * 8 + 3] = Float.NaN; // k[150, 0, 3]: read by query pieces 2 and 3 only
        good.write(dir.resolve("good.safetensors"));
        bad.write(dir.resolve("bad.safetensors"));
        List<String> args = new ArrayList<>(List.of("run", "--attention", "softmax", "--input", dir.toString(),
                "--master", MASTER, "--backend", "cpu", "--partition-tokens", "64"));
        args.addAll(List.of("--output", tmp.resolve("nan-fail").toString()));
        Outcome failed = JobHarness.lightning(args.toArray(new String[0]));
        assertTrue(failed.status != 0, failed.out);
        assertTrue(failed.err.contains("bad.safetensors") && failed.err.contains("k[150, 0, 3]"), failed.err);
        assertFalse(Files.exists(tmp.resolve("nan-fail").resolve("good.safetensors")), "a failed run publishes nothing");

        Path out = tmp.resolve("nan-skip");
        args.set(args.size() - 1, out.toString());
        args.add("--skip-nonfinite");
        JobHarness.succeed(args.toArray(new String[0]));
        assertFalse(Files.exists(out.resolve("bad.safetensors")));
        float[][] ref = reference(good, 0);
        assertTrue(JobHarness.relativeError(read(out, "good.safetensors").get("o").toFloats(), ref[0]) <= 1e-5);
        JsonNode report = new ObjectMapper().readTree(out.resolve("_lightning_report.json").toFile());
        assertEquals("bad.safetensors", report.get("skipped").get(0).get("file").asText(), report.toString());
    }
}
