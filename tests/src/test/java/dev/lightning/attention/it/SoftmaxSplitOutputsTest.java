package dev.lightning.attention.it;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lightning.attention.it.JobHarness.Outcome;
import dev.lightning.attention.it.JobHarness.Sequence;
import dev.lightning.attention.stream.OutputReader;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsFile;
import org.junit.jupiter.api.BeforeAll;
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
 * The outputs of split softmax sequences are written by their pieces, as lightning's are
 * ({@code SplitOutputs} over the file's {@code OutputLayout}: o and lse a row per token): the
 * blocks pass (an item over a query piece's whole key range) and the merge pass write their
 * piece's rows in place into the one output file, or as parts with an index, and no task copies
 * a sequence. Many tiny pieces (16 tokens each), with and without --write-lse; against the
 * one-file form of the parts, an unsplit run (header bytes, values to float32 rounding), the
 * float64 definition and a rerun (bytes); a failure in the merge pass, then --resume.
 * The concat form on HDFS: {@code ConcatOnHdfsTest}.
 */
class SoftmaxSplitOutputsTest {
    static final String MASTER = "local[2]";

    @TempDir
    static Path tmp;
    static Path input;
    static final Map<String, Sequence> FILES = new LinkedHashMap<>();

    @BeforeAll
    static void write() throws IOException {
        // T = 1000 in 63 pieces (BF16, Hq/Hk = 8, Dk != Dv); T = 777 (F32, Hq 6, Hk 3); T = 63 in 4 pieces; T = 1 whole
        FILES.put("a.safetensors", Sequence.grouped(61, 1000, 8, 1, 1, 32, 24, DType.BF16, null, false, false));
        FILES.put("b.safetensors", Sequence.grouped(62, 777, 6, 3, 3, 24, 40, DType.F32, null, false, false));
        FILES.put("c.safetensors", Sequence.grouped(63, 63, 2, 1, 1, 16, 8, DType.F32, null, false, false));
        FILES.put("d.safetensors", Sequence.grouped(64, 1, 1, 1, 1, 8, 8, DType.F32, null, false, false));
        input = JobHarness.writeSequences(tmp.resolve("in"), FILES);
    }

    /** Pieces of one 16-token chunk, query blocks of a few tokens: every piece and block boundary is crossed. */
    private static final String[] SPLIT = {"--chunk-size", "16", "--partition-tokens", "16", "--window-bytes", "8k"};
    private static final String[] WHOLE = {"--partition-tokens", "1000000"};

    private static String[] args(Path out, String[] cut, String... more) {
        List<String> a = new ArrayList<>(List.of("run", "--attention", "softmax", "--input", input.toString(),
                "--output", out.toString(), "--master", MASTER, "--backend", "cpu", "--progress-seconds", "600"));
        a.addAll(Arrays.asList(cut));
        a.addAll(Arrays.asList(more));
        return a.toArray(new String[0]);
    }

    private static String[] lse(boolean withLse, String... more) {
        List<String> a = new ArrayList<>(Arrays.asList(more));
        if (withLse) {
            a.add("--write-lse");
        }
        return a.toArray(new String[0]);
    }

    @Test
    void everyFormIsTheOneFileOfTheUnsplitLayout() throws IOException {
        for (boolean withLse : new boolean[] {true, false}) {
            String tag = withLse ? "lse" : "o";
            Path inPlace = tmp.resolve("in-place-" + tag);
            Path parts = tmp.resolve("parts-" + tag);
            Path whole = tmp.resolve("whole-" + tag);
            Outcome s = succeed(args(inPlace, SPLIT, lse(withLse, "--output-form", "in-place")));
            assertTrue(s.out.contains("3 output(s) written by their pieces, --output-form in-place"), s.out);
            assertFalse(s.out.contains("assemble"), "no assembly pass:\n" + s.out);
            succeed(args(parts, SPLIT, lse(withLse, "--output-form", "parts")));
            succeed(args(whole, WHOLE, lse(withLse)));
            for (Map.Entry<String, Sequence> e : FILES.entrySet()) {
                String name = e.getKey();
                Sequence seq = e.getValue();
                byte[] file = Files.readAllBytes(inPlace.resolve(name));
                byte[] unsplit = Files.readAllBytes(whole.resolve(name));
                assertEquals(unsplit.length, file.length, name);
                int header = 8 + (int) ByteBuffer.wrap(file, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
                assertArrayEquals(Arrays.copyOf(unsplit, header), Arrays.copyOf(file, header), name + ": header");
                if (seq.tokens > 16) { // split: the parts form, laid out as one file, is the in-place file
                    assertFalse(Files.exists(parts.resolve(name)), name + ": parts form only");
                    assertArrayEquals(file, SplitOutputsTest.oneFileForm(parts.resolve(name + ".index.json"), file),
                            name + " " + tag + ": in place = the parts laid out as one file");
                    List<String> found = list(parts.resolve(name + ".parts"));
                    int pieces = Integer.parseInt(found.get(0).replaceAll(".*-of-(\\d+)\\.safetensors", "$1"));
                    assertTrue(pieces >= seq.tokens / 16, name + ": " + pieces + " pieces of at most 16 tokens");
                    List<String> expect = new ArrayList<>();
                    for (long p = 0; p < pieces; p++) {
                        expect.add(String.format("o-%05d-of-%05d.safetensors", p, pieces));
                        if (withLse) {
                            expect.add(String.format("lse-%05d-of-%05d.safetensors", p, pieces));
                        }
                    }
                    assertEquals(expect.stream().sorted().collect(Collectors.toList()), found, name);
                } else { // one piece: one file in every form
                    assertArrayEquals(file, Files.readAllBytes(parts.resolve(name)), name);
                }
                Map<String, SafetensorsFile.Tensor> split = SafetensorsFile.read(inPlace.resolve(name));
                Map<String, SafetensorsFile.Tensor> one = SafetensorsFile.read(whole.resolve(name));
                assertEquals(withLse, split.containsKey("lse"), name);
                float[][] ref = SoftmaxJobTest.reference(seq, 0);
                double tolerance = seq.dtype == DType.F32 ? 1e-5 : 6e-3; // BF16 o: its rounding, 2^-8 relative
                double vsUnsplit = relativeError(split.get("o").toFloats(), one.get("o").toFloats());
                assertTrue(vsUnsplit <= (seq.dtype == DType.F32 ? 1e-6 : 8e-3), name + " split vs unsplit: " + vsUnsplit);
                double vsRef = relativeError(split.get("o").toFloats(), ref[0]);
                assertTrue(vsRef <= tolerance, name + " o vs float64: " + vsRef);
                if (withLse) {
                    assertTrue(relativeError(split.get("lse").toFloats(), ref[1]) <= 1e-6, name + " lse vs float64");
                    try (OutputReader r = OutputReader.open(parts.resolve(name))) { // the reader, either form
                        assertArrayEquals(split.get("lse").bytes(), r.rows("lse", 0, seq.tokens), name + " lse");
                    }
                }
            }
            assertNoStaging(inPlace);
            assertNoStaging(parts);
            if (withLse) { // a rerun writes the same bytes
                Path again = tmp.resolve("again-" + tag);
                succeed(args(again, SPLIT, lse(true, "--output-form", "in-place")));
                for (String name : FILES.keySet()) {
                    assertArrayEquals(Files.readAllBytes(inPlace.resolve(name)), Files.readAllBytes(again.resolve(name)),
                            name + ": two runs differ");
                }
            }
        }
    }

    /**
     * A run that fails in the merge pass leaves the output directory as it was; --resume keeps
     * the units whose byte ranges still verify (one of them damaged on purpose and merged again)
     * and publishes the bytes of an undisturbed run.
     */
    @Test
    void resumeAfterAFailureInTheMergeKeepsVerifiedPieces() throws IOException {
        Path expected = tmp.resolve("expected");
        Outcome undisturbed = succeed(args(expected, SPLIT, "--write-lse"));
        JsonNode plan = new ObjectMapper().readTree(expected.resolve("_lightning_report.json").toFile()).get("softmax");
        assertTrue(plan.get("mergedQueryPieces").asInt() >= 8, "merges to fail among: " + plan + "\n" + undisturbed.out);
        Path out = Files.createDirectories(tmp.resolve("out"));
        Files.writeString(out.resolve("notes.txt"), "not the job's");
        Map<String, byte[]> before = OutputSafetyTest.snapshot(out);
        Outcome failed = JobHarness.failingAt("softmax-merge:6", args(out, SPLIT, "--write-lse"));
        assertNotEquals(0, failed.status, failed.out + failed.err);
        assertTrue((failed.out + failed.err).contains("lightning-test: failing at softmax-merge"), failed.out + failed.err);
        OutputSafetyTest.assertSameFiles(before, OutputSafetyTest.snapshot(out));

        // damage one byte of what a finished merge of a.safetensors wrote in place
        Path staging;
        try (Stream<Path> runs = Files.list(out.resolve("_temporary"))) {
            staging = runs.findFirst().orElseThrow();
        }
        Path staged = staging.resolve("files/a.safetensors");
        assertTrue(Files.exists(staged), "the driver created the in-place file before the blocks pass");
        int merged = 0;
        int damaged = 0;
        try (Stream<Path> markers = Files.list(staging.resolve("done"))) {
            for (Path m : (Iterable<Path>) markers.sorted()::iterator) {
                if (!m.getFileName().toString().startsWith("softmax-merge-")) {
                    continue;
                }
                merged++;
                JsonNode files = new ObjectMapper().readTree(m.toFile()).get("files");
                assertEquals(2, files.size(), "o and lse ranges: " + files);
                if (damaged == 0 && files.get(0).get("path").asText().endsWith("/files/a.safetensors")) {
                    long offset = files.get(1).get("offset").asLong(); // its lse rows
                    byte[] all = Files.readAllBytes(staged);
                    all[(int) offset + 1] ^= 0x40;
                    Files.write(staged, all);
                    damaged++;
                }
            }
        }
        assertTrue(merged >= 5, merged + " merges finished before the failure");
        assertEquals(1, damaged, "a finished merge of a.safetensors before the failure");

        Outcome resumed = succeed(args(out, SPLIT, "--write-lse", "--resume"));
        java.util.regex.Matcher kept = java.util.regex.Pattern.compile("resumed: (\\d+) unit").matcher(resumed.out);
        assertTrue(kept.find(), resumed.out);
        int units = plan.get("items").asInt() + plan.get("mergedQueryPieces").asInt();
        int keptUnits = Integer.parseInt(kept.group(1));
        // every work item was done before the merge pass; of the merges, those that finished, less the damaged one
        assertTrue(keptUnits >= plan.get("items").asInt() + merged - 1 && keptUnits < units, keptUnits + " of " + units);
        for (String name : FILES.keySet()) {
            assertArrayEquals(Files.readAllBytes(expected.resolve(name)), Files.readAllBytes(out.resolve(name)), name);
        }
        assertEquals("not the job's", Files.readString(out.resolve("notes.txt")));
        assertNoStaging(out);
    }

    private static List<String> list(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().collect(Collectors.toList());
        }
    }

    private static void assertNoStaging(Path out) throws IOException {
        try (Stream<Path> left = Files.list(out)) {
            assertFalse(left.anyMatch(p -> p.getFileName().toString().startsWith("_temporary")
                    || p.getFileName().toString().equals("_lightning.lock")), "no staging or lock left");
        }
    }
}
