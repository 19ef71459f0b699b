package dev.lightning.attention.it;

import dev.lightning.attention.engine.FeatureMap;
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
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static dev.lightning.attention.it.JobHarness.lightning;
import static dev.lightning.attention.it.JobHarness.relativeError;
import static dev.lightning.attention.it.JobHarness.succeed;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The variants of issue 12 through the job's command line, on the CPU backend in local mode:
 * grouped heads, feature maps with normalization, recorded states. Each output is held against
 * the float64 recurrence over the whole file, and a run split into many pieces and windows
 * against one that computes every file in one piece.
 */
class VariantJobTest {
    static final String MASTER = "local[2]";

    @TempDir
    Path tmp;

    private Path write(String dir, Map<String, Sequence> files) throws IOException {
        return JobHarness.writeSequences(tmp.resolve(dir), files);
    }

    private static String[] args(Path in, Path out, List<String> variant, String... more) {
        List<String> a = new ArrayList<>(List.of("run", "--input", in.toString(), "--output", out.toString(),
                "--master", MASTER, "--scale", "0.5"));
        a.addAll(variant);
        a.addAll(Arrays.asList(more));
        return a.toArray(new String[0]);
    }

    /**
     * Runs {@code files} with the variant's options twice, split (pieces of three chunks, streamed
     * through windows of one or two) and whole (one piece and one window per file), and holds both against the float64 recurrence: o, final state, and where
     * the variant has them final normalizer, states and normalizers. Returns the split run's output.
     */
    private Path runAndCheck(Map<String, Sequence> files, List<String> variant, FeatureMap phi, double eps, int every)
            throws IOException {
        Path in = write("in", files);
        Path split = tmp.resolve("split");
        Path whole = tmp.resolve("whole");
        // pieces of three chunks (so checkpoints every 128 tokens fall at varying places in them), windows of one
        Outcome s = succeed(args(in, split, variant, "--partition-tokens", "192", "--window-bytes", "8k"));
        assertTrue(s.out.contains("scan"), "the split run scans states across pieces:\n" + s.out);
        succeed(args(in, whole, variant, "--partition-tokens", "100000"));
        for (Map.Entry<String, Sequence> e : files.entrySet()) {
            String name = e.getKey();
            Result a = Result.read(split.resolve(name));
            Result b = Result.read(whole.resolve(name));
            Result ref = e.getValue().reference(0.5, phi, eps, every);
            assertClose(name + " split vs whole", a, b);
            assertClose(name + " vs float64", a, ref);
            assertClose(name + " whole vs float64", b, ref);
            assertEquals(ref.normalizer == null, a.normalizer == null, name + ": final_normalizer exactly when normalizing");
            assertEquals(ref.states == null, a.states == null, name + ": states exactly with --state-every");
            assertEquals(ref.normalizers == null, a.normalizers == null, name + ": normalizers with both");
        }
        try (Stream<Path> left = Files.list(split)) {
            assertFalse(left.anyMatch(p -> p.getFileName().toString().startsWith("_temporary")),
                    "no staging left after the commit");
        }
        return split;
    }

    private static void assertClose(String what, Result got, Result expect) {
        double eo = relativeError(got.o, expect.o);
        assertTrue(eo <= 1e-5, what + ": o relative error " + eo);
        double es = relativeError(got.state, expect.state);
        assertTrue(es <= 1e-5, what + ": final_state relative error " + es);
        if (expect.normalizer != null) {
            double ez = relativeError(got.normalizer, expect.normalizer);
            assertTrue(ez <= 1e-5, what + ": final_normalizer relative error " + ez);
        }
        if (expect.states != null && expect.states.length > 0) {
            double ec = relativeError(got.states, expect.states);
            assertTrue(ec <= 1e-5, what + ": states relative error " + ec);
        }
        if (expect.normalizers != null && expect.normalizers.length > 0) {
            double ez = relativeError(got.normalizers, expect.normalizers);
            assertTrue(ez <= 1e-5, what + ": normalizers relative error " + ez);
        }
    }

    /** GQA (Hq = 6, Hk = Hv = 2) and grouped values (Hq = Hk = 2, Hv = 6), plain formula: o is [T, H, Dv]. */
    @Test
    void groupedHeadsMatchTheReference() throws IOException {
        Map<String, Sequence> files = new LinkedHashMap<>();
        files.put("gqa.safetensors", Sequence.grouped(1, 1000, 6, 2, 2, 16, 24, DType.F32,
                new float[] {1e-6f, 8f, 0.5f, 0.01f, 2f, 1e-3f}, true, false));
        files.put("values.safetensors", Sequence.grouped(2, 63, 2, 2, 6, 12, 8, DType.F32, null, false, false));
        files.put("mixed.safetensors", Sequence.grouped(3, 300, 6, 3, 2, 8, 5, DType.BF16, null, true, false));
        files.put("one.safetensors", Sequence.grouped(4, 1, 3, 1, 3, 4, 7, DType.F32, null, false, false));
        // o in F32 (not the BF16 of mixed): held to 1e-5 against the float64 recurrence
        Path out = runAndCheck(files, List.of("--output-dtype", "f32"), FeatureMap.IDENTITY, -1, 0);
        Map<String, SafetensorsFile.Tensor> t = SafetensorsFile.read(out.resolve("gqa.safetensors"));
        assertArrayEquals(new long[] {1000, 6, 24}, t.get("o").shape);
        assertArrayEquals(new long[] {6, 16, 24}, t.get("final_state").shape);
        assertNull(t.get("final_normalizer"), "no normalizer without --normalize");
    }

    /**
     * elu1 with normalization, starting from an initial state and normalizer (and one file with
     * only the normalizer, one with neither), states every 128 tokens: C = floor(T / 128), also
     * 0 for a file shorter than the interval.
     */
    @Test
    void normalizedElu1WithInitialNormalizerAndStates() throws IOException {
        Map<String, Sequence> files = new LinkedHashMap<>();
        files.put("a.safetensors", Sequence.grouped(11, 1000, 3, 3, 3, 16, 20, DType.F32,
                new float[] {1e-6f, 0.05f, 1f}, true, true));
        files.put("b-gqa.safetensors", Sequence.grouped(12, 400, 6, 2, 3, 8, 12, DType.F32, null, false, true));
        files.put("c-short.safetensors", Sequence.grouped(13, 63, 2, 2, 2, 5, 3, DType.F32, null, true, false));
        files.put("d-exact.safetensors", Sequence.grouped(14, 256, 2, 1, 2, 6, 4, DType.F16, null, false, false));
        Path out = runAndCheck(files, List.of("--feature-map", "elu1", "--normalize", "--normalize-eps", "1e-4",
                "--state-every", "128", "--output-dtype", "f32"), FeatureMap.ELU1, 1e-4, 128);
        Map<String, SafetensorsFile.Tensor> t = SafetensorsFile.read(out.resolve("a.safetensors"));
        assertArrayEquals(new long[] {3, 16}, t.get("final_normalizer").shape);
        assertArrayEquals(new long[] {7, 3, 16, 20}, t.get("states").shape);
        assertArrayEquals(new long[] {7, 3, 16}, t.get("normalizers").shape);
        assertArrayEquals(new long[] {0, 2, 5, 3}, SafetensorsFile.read(out.resolve("c-short.safetensors"))
                .get("states").shape);
        assertArrayEquals(new long[] {2, 2, 6, 4}, SafetensorsFile.read(out.resolve("d-exact.safetensors"))
                .get("states").shape);
    }

    /** relu without normalization, states every chunk: no normalizer tensors anywhere. */
    @Test
    void reluStatesEveryChunk() throws IOException {
        Map<String, Sequence> files = new LinkedHashMap<>();
        files.put("r.safetensors", Sequence.grouped(21, 700, 4, 2, 4, 12, 9, DType.F32, null, true, false));
        Path out = runAndCheck(files, List.of("--feature-map", "relu", "--state-every", "64"), FeatureMap.RELU, -1, 64);
        Map<String, SafetensorsFile.Tensor> t = SafetensorsFile.read(out.resolve("r.safetensors"));
        assertArrayEquals(new long[] {10, 4, 12, 9}, t.get("states").shape);
        assertNull(t.get("normalizers"));
        assertNull(t.get("final_normalizer"));
    }

    /** The same split run twice writes the same bytes, states included (tasks are deterministic). */
    @Test
    void variantRunsAreByteIdentical() throws IOException {
        Path in = write("in", Map.of("x.safetensors",
                Sequence.grouped(31, 500, 4, 2, 1, 8, 6, DType.BF16, null, true, true)));
        List<String> variant = List.of("--feature-map", "elu1", "--normalize", "--state-every", "64");
        List<byte[]> outs = new ArrayList<>();
        for (String name : new String[] {"one", "two"}) {
            Path out = tmp.resolve(name);
            succeed(args(in, out, variant, "--partition-tokens", "128", "--window-bytes", "4k"));
            outs.add(Files.readAllBytes(out.resolve("x.safetensors")));
        }
        assertArrayEquals(outs.get(0), outs.get(1));
    }

    /** Head counts that do not divide, checked from the header before anything is computed. */
    @Test
    void refusesHeadCountsThatDoNotDivide() throws IOException {
        Path in = write("in", Map.of("bad.safetensors",
                Sequence.grouped(41, 10, 4, 3, 4, 8, 8, DType.F32, null, false, false)));
        Path out = tmp.resolve("out");
        Outcome o = lightning(args(in, out, List.of()));
        assertEquals(2, o.status, o.err);
        assertTrue(o.err.contains("bad.safetensors") && o.err.contains("Hq=4, Hk=3, Hv=4")
                && o.err.contains("cannot be grouped"), o.err);
        assertTrue(o.err.contains("q [10, 4, 8]") && o.err.contains("k [10, 3, 8]"), o.err);
        assertFalse(o.out.contains("pass 1") || o.out.contains("pass 2"), "nothing computed:\n" + o.out);
        assertFalse(Files.exists(out.resolve("bad.safetensors")));
    }

    /** --state-every not a multiple of the chunk, and an initial normalizer without --normalize. */
    @Test
    void refusesAnIntervalOffTheChunksAndAStrayNormalizer() throws IOException {
        Path in = write("in", Map.of("z.safetensors",
                Sequence.grouped(51, 100, 2, 2, 2, 4, 4, DType.F32, null, false, true)));
        Path out = tmp.resolve("out");
        Outcome every = lightning(args(in, out, List.of("--normalize", "--state-every", "100")));
        assertEquals(2, every.status, every.err);
        assertTrue(every.err.contains("--state-every must be a multiple of --chunk-size 64")
                && every.err.contains("got 100") && every.err.contains("use 64 or 128"), every.err);
        assertFalse(every.out.contains("pass 1"), "refused before anything runs:\n" + every.out);

        // Off the GPU kernels' 64-token chunks: refused unless the CPU computes (auto might pick a GPU).
        Outcome gpuChunks = lightning(args(in, out, List.of("--normalize", "--chunk-size", "32", "--state-every", "96")));
        assertEquals(2, gpuChunks.status, gpuChunks.err);
        assertTrue(gpuChunks.err.contains("multiples of 64") && gpuChunks.err.contains("--backend cpu"), gpuChunks.err);

        Outcome stray = lightning(args(in, out, List.of()));
        assertEquals(2, stray.status, stray.err);
        assertTrue(stray.err.contains("z.safetensors") && stray.err.contains("initial_normalizer")
                && stray.err.contains("--normalize"), stray.err);
        assertFalse(Files.exists(out.resolve("z.safetensors")));

        Outcome eps = lightning(args(in, out, List.of("--normalize", "--normalize-eps", "-1")));
        assertEquals(2, eps.status, eps.err);
        assertTrue(eps.err.contains("--normalize-eps") && eps.err.contains(">= 0"), eps.err);
    }

    /**
     * A failed run continued with another --feature-map, or without --normalize, is refused: the
     * variant options are in the fingerprint, and the refusal names the option and both values.
     */
    @Test
    void resumeWithAnotherFeatureMapIsRefused() throws IOException {
        Path in = Files.createDirectories(tmp.resolve("in"));
        Sequence good = Sequence.grouped(61, 300, 4, 2, 2, 8, 4, DType.F32, null, false, false);
        good.write(in.resolve("good.safetensors"));
        Sequence bad = Sequence.grouped(62, 90, 4, 2, 2, 8, 4, DType.F32, null, false, false);
        bad.q[77] = Float.NaN;
        bad.write(in.resolve("bad.safetensors"));
        Path out = tmp.resolve("out");
        List<String> variant = List.of("--feature-map", "elu1", "--normalize");
        Outcome failed = lightning(args(in, out, variant, "--partition-tokens", "64"));
        assertEquals(2, failed.status, failed.err);
        assertTrue(Files.exists(out.resolve("_temporary")), "the failed run keeps its staging for --resume");

        Outcome other = lightning(args(in, out, List.of("--feature-map", "relu", "--normalize"), "--partition-tokens",
                "64", "--resume"));
        assertEquals(2, other.status, other.err);
        assertTrue(other.err.contains("spark.lightning.featureMap") && other.err.contains("elu1")
                && other.err.contains("without --resume"), other.err);

        Outcome unnormalized = lightning(args(in, out, List.of("--feature-map", "elu1"), "--partition-tokens", "64",
                "--resume"));
        assertEquals(2, unnormalized.status, unnormalized.err);
        assertTrue(unnormalized.err.contains("spark.lightning.normalize"), unnormalized.err);
    }

    /**
     * {@code generate} writes grouped files with an initial state and normalizer; the job runs them
     * normalized and matches the float64 recurrence over the generated tensors. Counts that do not
     * divide are a usage error of generate itself.
     */
    @Test
    void generatedGroupedFilesRunNormalized() throws IOException {
        Path in = tmp.resolve("gen");
        succeed("generate", "--output", in.toString(), "--files", "2", "--tokens", "200", "--heads", "6", "--heads-k",
                "2", "--heads-v", "3", "--dk", "8", "--dv", "5", "--dtype", "f32", "--initial-state",
                "--initial-normalizer");
        Path out = tmp.resolve("out");
        succeed(args(in, out, List.of("--feature-map", "elu1", "--normalize", "--state-every", "64"),
                "--partition-tokens", "64"));
        for (String name : new String[] {"seq-00000.safetensors", "seq-00001.safetensors"}) {
            Map<String, SafetensorsFile.Tensor> t = SafetensorsFile.read(in.resolve(name));
            assertArrayEquals(new long[] {200, 2, 8}, t.get("k").shape);
            assertArrayEquals(new long[] {6, 8}, t.get("initial_normalizer").shape);
            Sequence seq = new Sequence(200, 6, 2, 3, 8, 5, DType.F32, t.get("q").toFloats(), t.get("k").toFloats(),
                    t.get("v").toFloats(), null, t.get("initial_state").toFloats(),
                    t.get("initial_normalizer").toFloats());
            assertClose(name, Result.read(out.resolve(name)), seq.reference(0.5, FeatureMap.ELU1, 1e-5, 64));
        }
        Outcome bad = lightning("generate", "--output", tmp.resolve("bad").toString(), "--heads", "4", "--heads-k", "3");
        assertEquals(2, bad.status, bad.err);
        assertTrue(bad.err.contains("Hq=4, Hk=3, Hv=4") && bad.err.contains("cannot be grouped"), bad.err);
    }

    /** The demo's own check (ReferenceCheck) holds every output, grouped file included, to a variant run. */
    @Test
    void demoChecksAVariantRun() {
        Outcome demo = succeed("demo", "--dir", tmp.resolve("demo").toString(), "--master", MASTER, "--feature-map",
                "elu1", "--normalize", "--state-every", "128");
        assertTrue(demo.out.contains("doc-gqa.safetensors") && demo.out.contains("all results match"), demo.out);
    }

    /**
     * README: run options apply to the demo and its check follows them. With --output-dtype f16 the F32 files'
     * o is rounded to F16, and the check held it to the F32 limit (1e-5): MISMATCH and status 1 for a right run.
     */
    @Test
    void demoCheckFollowsTheOutputDtype() {
        Outcome demo = succeed("demo", "--dir", tmp.resolve("demo").toString(), "--master", MASTER, "--backend", "cpu",
                "--output-dtype", "f16");
        assertTrue(demo.out.contains("doc-gqa.safetensors") && demo.out.contains("all results match"), demo.out);
    }

    /**
     * A normalizer that overflows float32 (k near the float32 maximum, v zero: z = sum of phi(k) =
     * inf) fails the run like an overflowing final_state, and is skipped with --skip-nonfinite. By
     * the recurrence o stays 0 / inf = 0 and the check names final_normalizer; the blocked
     * backends (CPU, GPU) form the scores phi(q) . phi(k) first, which overflow to inf and give
     * o = inf * 0 = NaN, so their check stops at o: either names the file and the overflow.
     */
    @Test
    void anOverflowingNormalizerFailsTheRun() throws IOException {
        Sequence s = Sequence.grouped(71, 130, 2, 1, 1, 4, 3, DType.F32, null, false, false);
        Arrays.fill(s.k, 3e38f);
        Arrays.fill(s.v, 0f);
        Path in = write("in", Map.of("big.safetensors", s));
        Path out = tmp.resolve("out");
        List<String> variant = List.of("--feature-map", "elu1", "--normalize", "--state-every", "64");
        Outcome o = lightning(args(in, out, variant));
        assertEquals(2, o.status, o.err);
        assertTrue(o.err.contains("big.safetensors") && o.err.contains("NaN/Inf")
                && (o.err.contains("final_normalizer[0, 0]") || o.err.contains("in the output o")), o.err);
        assertFalse(Files.exists(out.resolve("big.safetensors")));
        Outcome skipped = succeed(args(in, out, variant, "--skip-nonfinite"));
        assertTrue(skipped.out.contains("skipped big.safetensors"), skipped.out);
    }
}
