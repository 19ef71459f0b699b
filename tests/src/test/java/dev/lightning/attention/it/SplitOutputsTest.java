package dev.lightning.attention.it;

import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.it.JobHarness.Outcome;
import dev.lightning.attention.it.JobHarness.Result;
import dev.lightning.attention.it.JobHarness.Sequence;
import dev.lightning.attention.stream.OutputReader;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static dev.lightning.attention.it.JobHarness.lightning;
import static dev.lightning.attention.it.JobHarness.relativeError;
import static dev.lightning.attention.it.JobHarness.succeed;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The outputs of split sequences (issue 16): each pass-2 piece writes its own share, in place
 * into the one output file, or as parts with an index; no task copies a sequence. Runs in one
 * JVM, local mode, CPU backend, sequences cut into many tiny pieces.
 */
class SplitOutputsTest {
    static final String MASTER = "local[2]";
    /** elu1, normalized, states every 128 tokens: every tensor an output can hold. */
    static final List<String> VARIANT = List.of("--feature-map", "elu1", "--normalize", "--state-every", "128");

    @TempDir
    Path tmp;

    private static Map<String, Sequence> inputs() {
        Map<String, Sequence> files = new LinkedHashMap<>();
        // 1000 tokens in pieces of 128: 8 pieces, the last short; states at 127, 255, ... (7 of them)
        files.put("a.safetensors", Sequence.grouped(31, 1000, 3, 3, 3, 8, 6, DType.BF16, null, true, true));
        files.put("b.safetensors", Sequence.grouped(32, 640, 6, 2, 3, 5, 7, DType.F32, null, false, false));
        files.put("c.safetensors", Sequence.grouped(33, 63, 2, 2, 2, 4, 3, DType.F32, null, true, false));
        files.put("d.safetensors", Sequence.grouped(34, 1, 2, 1, 2, 3, 5, DType.BF16, null, false, false));
        return files;
    }

    private static String[] args(Path in, Path out, List<String> variant, String... more) {
        List<String> a = new ArrayList<>(List.of("run", "--input", in.toString(), "--output", out.toString(),
                "--master", MASTER, "--backend", "cpu", "--scale", "0.5", "--chunk-size", "64"));
        a.addAll(variant);
        a.addAll(Arrays.asList(more));
        return a.toArray(new String[0]);
    }

    /** Pieces of two chunks, windows of one: every piece boundary and window boundary is exercised. */
    private static final String[] SPLIT = {"--partition-tokens", "128", "--window-bytes", "4k"};
    private static final String[] WHOLE = {"--partition-tokens", "1000000"};

    /**
     * In place, a split run's file is byte for byte the one-file form of the same pieces (the
     * parts form, read back and laid out again by the header), and it matches an unsplit run
     * (same header bytes, values to float32 rounding) and the float64 reference; F32 and BF16 o.
     */
    @Test
    void inPlaceIsTheOneFileFormOfTheParts() throws IOException {
        Path in = JobHarness.writeSequences(tmp.resolve("in"), inputs());
        for (String dtype : new String[] {"f32", "bf16"}) {
            Path inPlace = tmp.resolve("in-place-" + dtype);
            Path parts = tmp.resolve("parts-" + dtype);
            Path whole = tmp.resolve("whole-" + dtype);
            Outcome s = succeed(args(in, inPlace, VARIANT, cat(SPLIT, "--output-dtype", dtype, "--output-form",
                    "in-place")));
            assertTrue(s.out.contains("written by their pieces, --output-form in-place"), s.out);
            assertFalse(s.out.contains("assemble"), "no assembly pass:\n" + s.out);
            succeed(args(in, parts, VARIANT, cat(SPLIT, "--output-dtype", dtype, "--output-form", "parts")));
            succeed(args(in, whole, VARIANT, cat(WHOLE, "--output-dtype", dtype)));
            for (Map.Entry<String, Sequence> e : inputs().entrySet()) {
                String name = e.getKey();
                byte[] file = Files.readAllBytes(inPlace.resolve(name));
                assertArrayEquals(file, oneFileForm(parts.resolve(name + ".index.json"), file),
                        name + " " + dtype + ": in place = the parts laid out as one file");
                assertFalse(Files.exists(parts.resolve(name)), name + ": parts form only");
                byte[] unsplit = Files.readAllBytes(whole.resolve(name));
                assertEquals(unsplit.length, file.length, name);
                int header = 8 + (int) ByteBuffer.wrap(file, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
                assertArrayEquals(Arrays.copyOf(unsplit, header), Arrays.copyOf(file, header), name + ": header");
                Result split = Result.read(inPlace.resolve(name));
                Result one = Result.read(whole.resolve(name));
                Result ref = e.getValue().reference(0.5, FeatureMap.ELU1, 1e-5, 128);
                double tolerance = "bf16".equals(dtype) ? 8e-3 : 1e-5;
                assertTrue(relativeError(split.o, one.o) <= tolerance, name + " o split vs unsplit");
                assertTrue(relativeError(split.o, ref.o) <= tolerance, name + " o vs float64");
                assertTrue(relativeError(split.state, ref.state) <= 1e-5, name + " final_state vs float64");
                assertTrue(relativeError(split.normalizer, ref.normalizer) <= 1e-5, name + " final_normalizer");
                if (ref.states.length > 0) {
                    assertTrue(relativeError(split.states, ref.states) <= 1e-5, name + " states vs float64");
                    assertTrue(relativeError(split.normalizers, ref.normalizers) <= 1e-5, name + " normalizers");
                }
            }
            assertNoStaging(inPlace);
        }
    }

    /**
     * Speculative copies of a piece would write the same ranges of its output file at once: the
     * job turns spark.speculation off for file outputs, says so, and writes the same bytes.
     */
    @Test
    void speculationIsTurnedOffForFileOutputs() throws IOException {
        Path in = JobHarness.writeSequences(tmp.resolve("in"), inputs());
        Path plain = tmp.resolve("plain");
        Path speculative = tmp.resolve("speculative");
        Outcome p = succeed(args(in, plain, VARIANT, cat(SPLIT, "--output-form", "in-place")));
        assertFalse(p.out.contains("spark.speculation"), p.out);
        Outcome s = succeed(args(in, speculative, VARIANT, cat(SPLIT, "--output-form", "in-place", "--conf",
                "spark.speculation=true")));
        assertTrue(s.out.contains("spark.speculation=true is turned off for this run"), s.out);
        for (String name : inputs().keySet()) {
            assertArrayEquals(Files.readAllBytes(plain.resolve(name)), Files.readAllBytes(speculative.resolve(name)),
                    name);
        }
    }

    /**
     * The parts form: what the project's reader presents equals the one-file form tensor by
     * tensor, bytes included; the index and parts are where the README says; and the README's
     * Python lines read the same values (run where python3 with numpy is present).
     */
    @Test
    void partsReadBackEqualsTheOneFileForm() throws Exception {
        Path in = JobHarness.writeSequences(tmp.resolve("in"), inputs());
        Path parts = tmp.resolve("parts");
        Path inPlace = tmp.resolve("in-place");
        succeed(args(in, parts, VARIANT, cat(SPLIT, "--output-form", "parts")));
        succeed(args(in, inPlace, VARIANT, SPLIT));
        try (Stream<Path> s = Files.list(parts.resolve("a.safetensors.parts"))) {
            List<String> names = s.map(p -> p.getFileName().toString()).sorted().collect(Collectors.toList());
            assertTrue(names.contains("o-00000-of-00008.safetensors") && names.contains("o-00007-of-00008.safetensors")
                    && names.contains("states-00000-of-00008.safetensors")
                    && names.contains("normalizers-00006-of-00008.safetensors"), names.toString());
            // piece 7 (tokens 896..999) records no state: no states part for it
            assertFalse(names.contains("states-00007-of-00008.safetensors"), names.toString());
            for (String n : names) { // each part a valid safetensors file
                SafetensorsFile.read(parts.resolve("a.safetensors.parts").resolve(n));
            }
        }
        for (String name : inputs().keySet()) {
            Map<String, SafetensorsFile.Tensor> expect = SafetensorsFile.read(inPlace.resolve(name));
            try (OutputReader r = OutputReader.open(parts.resolve(name))) {
                assertEquals(new ArrayList<>(expect.keySet()), new ArrayList<>(r.tensors()), name);
                for (SafetensorsFile.Tensor t : expect.values()) {
                    assertArrayEquals(t.shape, r.shape(t.name), name + " " + t.name);
                    assertArrayEquals(t.bytes(), r.rows(t.name, 0, t.shape[0]), name + " " + t.name);
                }
                if (expect.get("o").shape[0] > 300) { // a range across pieces, read from three parts
                    long[] shape = expect.get("o").shape;
                    int row = (int) (shape[1] * shape[2] * expect.get("o").dtype.bytes());
                    assertArrayEquals(Arrays.copyOfRange(expect.get("o").bytes(), 100 * row, 300 * row),
                            r.rows("o", 100, 300), name + " o[100:300]");
                }
            }
            try (OutputReader r = OutputReader.open(inPlace.resolve(name))) { // the one-file form, same reader
                assertArrayEquals(expect.get("final_state").toFloats(), r.floats("final_state"), name);
            }
        }
        PythonSnippet.runIfPossible(tmp, parts.resolve("a.safetensors.index.json"), inPlace.resolve("a.safetensors"));
    }

    /**
     * A run that fails in pass 2 leaves the output directory as it was; --resume keeps the pieces
     * whose byte ranges still verify (one of them is damaged on purpose and computed again) and
     * publishes the bytes of an undisturbed run.
     */
    @Test
    void resumeAfterAFailureInPass2KeepsVerifiedPieces() throws IOException {
        Path in = JobHarness.writeSequences(tmp.resolve("in"), inputs());
        Path expected = tmp.resolve("expected");
        succeed(args(in, expected, VARIANT, SPLIT));
        Path out = Files.createDirectories(tmp.resolve("out"));
        Files.writeString(out.resolve("notes.txt"), "not the job's");
        Map<String, byte[]> before = OutputSafetyTest.snapshot(out);
        Outcome failed = JobHarness.failingAt("pass2:6", args(in, out, VARIANT, SPLIT));
        assertNotEquals(0, failed.status, failed.out + failed.err);
        assertTrue((failed.out + failed.err).contains("lightning-test: failing at pass2"), failed.out + failed.err);
        OutputSafetyTest.assertSameFiles(before, OutputSafetyTest.snapshot(out));

        // damage one byte of what the first verified piece of a.safetensors wrote in place
        Path staging;
        try (Stream<Path> runs = Files.list(out.resolve("_temporary"))) {
            staging = runs.findFirst().orElseThrow();
        }
        Path staged = staging.resolve("files/a.safetensors");
        assertTrue(Files.exists(staged), "the driver created the in-place file before pass 2");
        int damaged = 0;
        try (Stream<Path> markers = Files.list(staging.resolve("done"))) {
            for (Path m : (Iterable<Path>) markers.sorted()::iterator) {
                String json = Files.readString(m);
                if (m.getFileName().toString().startsWith("pass2-s0-") && damaged == 0) {
                    long offset = new com.fasterxml.jackson.databind.ObjectMapper().readTree(json).get("files").get(0)
                            .get("offset").asLong();
                    byte[] all = Files.readAllBytes(staged);
                    all[(int) offset + 3] ^= 0x40;
                    Files.write(staged, all);
                    damaged++;
                }
            }
        }
        assertEquals(1, damaged, "a finished piece of a.safetensors before the failure");

        Outcome resumed = succeed(args(in, out, VARIANT, cat(SPLIT, "--resume")));
        java.util.regex.Matcher kept = java.util.regex.Pattern.compile("resumed: (\\d+) unit").matcher(resumed.out);
        assertTrue(kept.find() && Integer.parseInt(kept.group(1)) >= 3, resumed.out);
        for (String name : inputs().keySet()) {
            assertArrayEquals(Files.readAllBytes(expected.resolve(name)), Files.readAllBytes(out.resolve(name)), name);
        }
        assertEquals("not the job's", Files.readString(out.resolve("notes.txt")));
        assertNoStaging(out);
    }

    /** An --output-form the file system cannot give is refused before anything is written; --resume must share it. */
    @Test
    void formsTheFileSystemCannotGiveAreRefused() throws IOException {
        Path in = JobHarness.writeSequences(tmp.resolve("in"), inputs());
        Path out = tmp.resolve("out");
        Outcome concat = lightning(args(in, out, VARIANT, "--output-form", "concat"));
        assertEquals(2, concat.status, concat.err);
        assertTrue(concat.err.contains("--output-form concat") && concat.err.contains("copies")
                && concat.err.contains("in-place"), concat.err);
        assertFalse(Files.exists(out), "nothing written");
    }

    private static void assertNoStaging(Path out) throws IOException {
        try (Stream<Path> left = Files.list(out)) {
            assertFalse(left.anyMatch(p -> p.getFileName().toString().startsWith("_temporary")
                    || p.getFileName().toString().equals("_lightning.lock")), "no staging or lock left");
        }
    }

    /** The bytes of the one-file form: {@code like}'s header, then every tensor the reader presents, in order. */
    static byte[] oneFileForm(Path index, byte[] like) throws IOException {
        int header = 8 + (int) ByteBuffer.wrap(like, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        java.io.ByteArrayOutputStream b = new java.io.ByteArrayOutputStream();
        b.write(like, 0, header);
        try (OutputReader r = OutputReader.open(index)) {
            for (String t : r.tensors()) {
                b.write(r.rows(t, 0, r.shape(t)[0]));
            }
        }
        return b.toByteArray();
    }

    private static String[] cat(String[] a, String... b) {
        String[] all = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, all, a.length, b.length);
        return all;
    }
}
