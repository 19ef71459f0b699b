package dev.lightning.attention.it;

import dev.lightning.attention.it.JobHarness.Outcome;
import dev.lightning.attention.it.JobHarness.Result;
import dev.lightning.attention.it.JobHarness.Sequence;
import dev.lightning.attention.tensor.DType;
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
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The Spark job through its command line, in local mode, against itself and the float64 reference. */
class JobEndToEndTest {
    static final String MASTER = "local[2]";

    @TempDir
    Path tmp;

    private Path write(String dir, Map<String, Sequence> files) throws IOException {
        return JobHarness.writeSequences(tmp.resolve(dir), files);
    }

    /**
     * Many partitions (and many windows per piece) against one partition: long sequences split into
     * up to 16 pieces, short ones sharing partitions; float32 results within 1e-5 of each other
     * and of the float64 recurrence.
     */
    @Test
    void manyPartitionsEqualOnePartition() throws IOException {
        Map<String, Sequence> files = new LinkedHashMap<>();
        files.put("a-long.safetensors", Sequence.random(1, 1000, 3, 32, 16, DType.F32, null, true));
        files.put("b-one.safetensors", Sequence.random(2, 1, 2, 8, 12, DType.F32, null, false));
        files.put("c-odd.safetensors", Sequence.random(3, 63, 6, 16, 24, DType.F32, new float[] {1e-6f, 8f, 0.5f,
                0.01f, 2f, 1e-3f}, false));
        files.put("d-edge.safetensors", Sequence.random(4, 65, 1, 5, 7, DType.F32, new float[] {0.2f}, true));
        files.put("e-long.safetensors", Sequence.random(5, 700, 5, 24, 40, DType.F32, null, false));
        Path in = write("in", files);
        Path split = tmp.resolve("split");
        Path whole = tmp.resolve("whole");
        Outcome s = succeed("run", "--input", in.toString(), "--output", split.toString(), "--partition-tokens", "64",
                "--window-bytes", "4k", "--master", MASTER, "--scale", "0.5");
        succeed("run", "--input", in.toString(), "--output", whole.toString(), "--partition-tokens", "100000",
                "--master", MASTER, "--scale", "0.5");
        assertTrue(s.out.contains("pass 1/2"), s.out);
        assertTrue(s.out.contains("scan"), s.out);

        for (Map.Entry<String, Sequence> e : files.entrySet()) {
            Result a = Result.read(split.resolve(e.getKey()));
            Result b = Result.read(whole.resolve(e.getKey()));
            Result ref = e.getValue().reference(0.5);
            String name = e.getKey();
            assertTrue(relativeError(a.o, b.o) <= 1e-5, name + " split vs whole o " + relativeError(a.o, b.o));
            assertTrue(relativeError(a.state, b.state) <= 1e-5, name + " split vs whole state");
            assertTrue(relativeError(a.o, ref.o) <= 1e-5, name + " vs float64 o " + relativeError(a.o, ref.o));
            assertTrue(relativeError(a.state, ref.state) <= 1e-5, name + " vs float64 state");
        }
        assertTrue(Files.exists(split.resolve("_lightning_report.json")));
        try (Stream<Path> left = Files.list(split)) {
            assertFalse(left.anyMatch(p -> p.getFileName().toString().startsWith("_temporary")
                    || p.getFileName().toString().startsWith(".")), "no staging or partial files left");
        }
    }

    /** A run over the first part whose final_state seeds a run over the rest equals one run over all. */
    @Test
    void finalStateContinuesASequence() throws IOException {
        Sequence all = Sequence.random(21, 900, 3, 16, 20, DType.F32, new float[] {1e-6f, 0.05f, 1f}, true);
        Path wholeIn = write("whole-in", Map.of("s.safetensors", all));
        Path wholeOut = tmp.resolve("whole-out");
        succeed("run", "--input", wholeIn.toString(), "--output", wholeOut.toString(), "--partition-tokens", "256",
                "--master", MASTER);
        Result whole = Result.read(wholeOut.resolve("s.safetensors"));

        int cut = 333; // not a chunk multiple: the continuation need not be aligned
        Path firstIn = write("first-in", Map.of("s.safetensors", all.range(0, cut, all.initialState)));
        Path firstOut = tmp.resolve("first-out");
        succeed("run", "--input", firstIn.toString(), "--output", firstOut.toString(), "--partition-tokens", "128",
                "--master", MASTER);
        Result first = Result.read(firstOut.resolve("s.safetensors"));

        Path restIn = write("rest-in", Map.of("s.safetensors", all.range(cut, 900, first.state)));
        Path restOut = tmp.resolve("rest-out");
        succeed("run", "--input", restIn.toString(), "--output", restOut.toString(), "--partition-tokens", "128",
                "--master", MASTER);
        Result rest = Result.read(restOut.resolve("s.safetensors"));

        int dv = 20 * 3;
        float[] joined = new float[whole.o.length];
        System.arraycopy(first.o, 0, joined, 0, cut * dv);
        System.arraycopy(rest.o, 0, joined, cut * dv, (900 - cut) * dv);
        assertTrue(relativeError(joined, whole.o) <= 1e-5, "continued o " + relativeError(joined, whole.o));
        assertTrue(relativeError(rest.state, whole.state) <= 1e-5, "continued final state");
        float[] restOnly = Arrays.copyOfRange(whole.o, cut * dv, whole.o.length);
        float[] restComputed = Arrays.copyOfRange(joined, cut * dv, joined.length);
        assertTrue(relativeError(restComputed, restOnly) <= 1e-5, "continued part alone");
    }

    /**
     * The accuracy targets against the float64 recurrence at T = 40,000 split into ten pieces:
     * F32 within 1e-5, F16 within 2e-3, BF16 within 6e-3 (reference from the rounded inputs).
     * One head decays with slope 1e-6, so its state sums nearly every token.
     */
    @Test
    void accuracyTargetsAtFortyThousandTokens() throws IOException {
        float[] slopes = {1e-6f, 0.01f, 0.7f};
        Map<String, Sequence> files = new LinkedHashMap<>();
        files.put("f32.safetensors", Sequence.random(31, 40_000, 3, 16, 24, DType.F32, slopes, false));
        files.put("f16.safetensors", Sequence.random(32, 40_000, 3, 16, 24, DType.F16, slopes, false));
        files.put("bf16.safetensors", Sequence.random(33, 40_000, 3, 16, 24, DType.BF16, slopes, true));
        Path in = write("in", files);
        Path out = tmp.resolve("out");
        succeed("run", "--input", in.toString(), "--output", out.toString(), "--partition-tokens", "4096",
                "--master", MASTER);
        Map<String, Double> limits = Map.of("f32.safetensors", 1e-5, "f16.safetensors", 2e-3,
                "bf16.safetensors", 6e-3);
        for (Map.Entry<String, Sequence> e : files.entrySet()) {
            Result got = Result.read(out.resolve(e.getKey()));
            Result ref = e.getValue().reference(1.0);
            double eo = relativeError(got.o, ref.o);
            double es = relativeError(got.state, ref.state);
            assertTrue(eo <= limits.get(e.getKey()), e.getKey() + " o relative error " + eo);
            assertTrue(es <= 1e-5, e.getKey() + " final state relative error " + es);
        }
    }

    /** A rerun writes the same bytes: tasks are deterministic, so a retried task would too. */
    @Test
    void runsAreByteIdentical() throws IOException {
        Map<String, Sequence> files = new LinkedHashMap<>();
        files.put("x.safetensors", Sequence.random(41, 500, 3, 16, 8, DType.BF16, null, true));
        files.put("y.safetensors", Sequence.random(42, 77, 2, 8, 8, DType.F16, null, false));
        Path in = write("in", files);
        List<Path> outs = new ArrayList<>();
        for (String name : new String[] {"one", "two"}) {
            Path out = tmp.resolve(name);
            succeed("run", "--input", in.toString(), "--output", out.toString(), "--partition-tokens", "128",
                    "--master", MASTER);
            outs.add(out);
        }
        for (String f : files.keySet()) {
            assertArrayEquals(Files.readAllBytes(outs.get(0).resolve(f)), Files.readAllBytes(outs.get(1).resolve(f)), f);
        }
    }

    @Test
    void refusesAnOutputThatHoldsResultsUnlessOverwrite() throws IOException {
        Path in = write("in", Map.of("s.safetensors", Sequence.random(51, 10, 1, 4, 4, DType.F32, null, false)));
        Path out = tmp.resolve("out");
        succeed("run", "--input", in.toString(), "--output", out.toString(), "--master", MASTER);
        byte[] before = Files.readAllBytes(out.resolve("s.safetensors"));
        Outcome again = lightning("run", "--input", in.toString(), "--output", out.toString(), "--master", MASTER);
        assertEquals(2, again.status);
        assertTrue(again.err.contains("already holds") && again.err.contains("--overwrite"), again.err);
        assertArrayEquals(before, Files.readAllBytes(out.resolve("s.safetensors")));
        succeed("run", "--input", in.toString(), "--output", out.toString(), "--master", MASTER, "--overwrite");
        assertArrayEquals(before, Files.readAllBytes(out.resolve("s.safetensors")));
    }

    @Test
    void usageErrorsSayWhatToDo() throws IOException {
        Path in = write("in", Map.of("s.safetensors", Sequence.random(61, 10, 1, 4, 4, DType.F32, null, false)));
        String out = tmp.resolve("out").toString();
        Outcome gpu = lightning("run", "--input", in.toString(), "--output", out, "--backend", "gpu");
        assertEquals(2, gpu.status);
        assertTrue(gpu.err.contains("--backend gpu"), gpu.err);
        Outcome badChunk = lightning("run", "--input", in.toString(), "--output", out, "--chunk-size", "0");
        assertEquals(2, badChunk.status);
        assertTrue(badChunk.err.contains("--chunk-size") && badChunk.err.contains("1..1024"), badChunk.err);
        Outcome unknown = lightning("run", "--input", in.toString(), "--output", out, "--partitions", "3");
        assertEquals(2, unknown.status);
        assertTrue(unknown.err.contains("unknown option '--partitions'"), unknown.err);
        Outcome noInput = lightning("run", "--output", out);
        assertEquals(2, noInput.status);
        assertTrue(noInput.err.contains("--input PATHS is required"), noInput.err);
        Outcome empty = lightning("run", "--input", tmp.resolve("nothing").toString(), "--output", out,
                "--master", MASTER);
        assertEquals(2, empty.status);
        assertTrue(empty.err.contains("no such file or directory"), empty.err);
        Outcome help = lightning("--help");
        assertEquals(0, help.status);
        assertTrue(help.out.contains("--partition-tokens N") && help.out.contains("spark.lightning.partitionTokens"));
    }

    /** The README's options table is the one the code generates, so the docs cannot drift. */
    @Test
    void readmeOptionsTableIsGenerated() throws IOException {
        Path readme = Path.of(System.getProperty("maven.multiModuleProjectDirectory", ".."), "README.md");
        if (!Files.exists(readme)) {
            readme = Path.of("..", "README.md");
        }
        String text = Files.readString(readme);
        Outcome table = succeed("options");
        assertTrue(text.contains(table.out), "README.md's options table differs from `bin/lightning options`:\n"
                + table.out);
    }
}
