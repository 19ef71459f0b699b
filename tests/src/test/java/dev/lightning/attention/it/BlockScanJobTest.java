package dev.lightning.attention.it;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.it.JobHarness.Outcome;
import dev.lightning.attention.it.JobHarness.Result;
import dev.lightning.attention.it.JobHarness.Sequence;
import dev.lightning.attention.tensor.DType;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
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

import static dev.lightning.attention.it.JobHarness.lightning;
import static dev.lightning.attention.it.JobHarness.relativeError;
import static dev.lightning.attention.it.JobHarness.succeed;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The blocked scan through the job: a sequence cut into 40 tiny pieces with blocks of 4
 * ({@code lightning.test.scanBlock}, read by the driver), so that its scan is a tree of three
 * levels (39 -> 9 -> 2 elements: five stages), against a run that does not split it and against
 * the float64 recurrence; with an initial state and normalizer, elu1, --normalize and
 * --state-every. And --resume keeps the scan's finished units.
 */
class BlockScanJobTest {
    static final String MASTER = "local[2]";
    static final String BLOCK = "lightning.test.scanBlock";
    static final String TASKS = "lightning.test.maxTasks";

    @TempDir
    Path tmp;

    @BeforeEach
    void smallBlocks() {
        System.setProperty(BLOCK, "4");
    }

    @AfterEach
    void defaultBlocks() {
        System.clearProperty(BLOCK);
    }

    private static List<String> args(Path in, Path out, String... more) {
        List<String> a = new ArrayList<>(List.of("run", "--input", in.toString(), "--output", out.toString(),
                "--master", MASTER, "--backend", "cpu", "--scale", "0.5", "--feature-map", "elu1", "--normalize",
                "--state-every", "128", "--output-dtype", "f32"));
        a.addAll(Arrays.asList(more));
        return a;
    }

    /** 2,543 tokens: 39 pieces of 64 and a last one of 47. */
    private static Map<String, Sequence> input() {
        Map<String, Sequence> files = new LinkedHashMap<>();
        files.put("long.safetensors", Sequence.grouped(81, 2543, 4, 2, 4, 6, 5, DType.F32,
                new float[] {1e-6f, 0.003f, 0.05f, 1f}, true, true));
        // a second split sequence, shallower (7 pieces: one level), scanned in the same stages
        files.put("short.safetensors", Sequence.grouped(82, 420, 2, 2, 2, 4, 3, DType.F32, null, true, false));
        return files;
    }

    private static void assertClose(String what, Result got, Result expect) {
        double eo = relativeError(got.o, expect.o);
        assertTrue(eo <= 1e-5, what + ": o relative error " + eo);
        assertTrue(relativeError(got.state, expect.state) <= 1e-5, what + ": final_state");
        assertTrue(relativeError(got.normalizer, expect.normalizer) <= 1e-5, what + ": final_normalizer");
        assertTrue(relativeError(got.states, expect.states) <= 1e-5, what + ": states");
        assertTrue(relativeError(got.normalizers, expect.normalizers) <= 1e-5, what + ": normalizers");
    }

    @Test
    void manyTinyPiecesEqualAnUnsplitRun() throws IOException {
        Map<String, Sequence> files = input();
        Path in = JobHarness.writeSequences(tmp.resolve("in"), files);
        Path split = tmp.resolve("split");
        Path whole = tmp.resolve("whole");
        Outcome s = succeed(args(in, split, "--partition-tokens", "64").toArray(new String[0]));
        for (String stage : new String[] {"scan 1/5: block summaries, level 0", "scan 2/5: block summaries, level 1",
                "scan 3/5: carries, level 2 (top)", "scan 4/5: carries, level 1", "scan 5/5: incoming states"}) {
            assertTrue(s.out.contains("lightning: " + stage), "stage '" + stage + "' ran:\n" + s.out);
        }
        succeed(args(in, whole, "--partition-tokens", "100000").toArray(new String[0]));
        for (Map.Entry<String, Sequence> e : files.entrySet()) {
            String name = e.getKey();
            Result a = Result.read(split.resolve(name));
            Result b = Result.read(whole.resolve(name));
            Result ref = e.getValue().reference(0.5, FeatureMap.ELU1, 1e-5, 128);
            assertClose(name + " split vs whole", a, b);
            assertClose(name + " split vs float64", a, ref);
            assertClose(name + " whole vs float64", b, ref);
        }
    }

    /**
     * Tasks of many pieces ({@code lightning.test.maxTasks} 5: about 10 consecutive pieces each,
     * their groups crossing the scan's blocks of 4) stage one file of states and one marker per
     * run of pieces: the outputs are byte for byte those of one task per piece, in place and in
     * --output-mode checksums; a packed run failing in pass 2 and resumed writes the same bytes.
     */
    @Test
    void tasksOfManyPiecesWriteTheBytesOfOneTaskPerPiece() throws Exception {
        Map<String, Sequence> files = input();
        Path in = JobHarness.writeSequences(tmp.resolve("in"), files);
        Path single = tmp.resolve("single");
        succeed(args(in, single, "--partition-tokens", "64").toArray(new String[0]));
        String synthetic = "3000,2,16,16,bf16,5";
        String[] sums = {"run", "--synthetic", synthetic, "--master", MASTER, "--backend", "cpu", "--partition-tokens",
                "64", "--output-mode", "checksums"};
        Outcome sumsSingle = succeed(cat(sums, "--output", tmp.resolve("sums-single").toString()));
        System.setProperty(TASKS, "5");
        try {
            Path packed = tmp.resolve("packed");
            Outcome p = succeed(args(in, packed, "--partition-tokens", "64").toArray(new String[0]));
            assertTrue(p.out.contains("packed into 5 tasks per pass"), p.out);
            Path resumed = tmp.resolve("resumed");
            Outcome failed = JobHarness.failingAt("pass2:2", args(in, resumed, "--partition-tokens", "64").toArray(new String[0]));
            assertEquals(1, failed.status, failed.out + failed.err);
            Outcome again = succeed(args(in, resumed, "--partition-tokens", "64", "--resume").toArray(new String[0]));
            java.util.regex.Matcher kept = java.util.regex.Pattern.compile("resumed: (\\d+) unit").matcher(again.out);
            assertTrue(kept.find(), again.out);
            for (String name : files.keySet()) {
                byte[] want = Files.readAllBytes(single.resolve(name));
                assertArrayEquals(want, Files.readAllBytes(packed.resolve(name)), name + " packed");
                assertArrayEquals(want, Files.readAllBytes(resumed.resolve(name)), name + " packed and resumed");
            }
            Outcome sumsPacked = succeed(cat(sums, "--output", tmp.resolve("sums-packed").toString()));
            assertTrue(sumsPacked.out.contains("packed into 5 tasks per pass"), sumsPacked.out);
            java.util.regex.Matcher crc = java.util.regex.Pattern.compile("o crc32c (\\w+)").matcher(sumsSingle.out);
            assertTrue(crc.find(), sumsSingle.out);
            assertTrue(sumsPacked.out.contains("o crc32c " + crc.group(1)), sumsSingle.out + sumsPacked.out);
            String name = dev.lightning.attention.stream.SyntheticSequence.parse(synthetic).name();
            assertArrayEquals(Files.readAllBytes(tmp.resolve("sums-single").resolve(name)),
                    Files.readAllBytes(tmp.resolve("sums-packed").resolve(name)), "checksums result");
        } finally {
            System.clearProperty(TASKS);
        }
    }

    private static String[] cat(String[] a, String... b) {
        String[] all = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, all, a.length, b.length);
        return all;
    }

    /**
     * A run that fails after its scan (a task of pass 2 fails) keeps the scan's units; resumed, it
     * says it kept them and writes the bytes of an uninterrupted run. (An input fixed in place is
     * not resumed: its content sample differs, see PublicationTest.)
     */
    @Test
    void resumeKeepsTheScanUnits() throws IOException {
        Map<String, Sequence> files = input();
        files.put("z-short.safetensors", Sequence.grouped(83, 50, 2, 2, 2, 4, 3, DType.F32, null, false, false));
        Path in = JobHarness.writeSequences(tmp.resolve("in"), files);
        Path out = tmp.resolve("out");
        // a task of pass 2 fails (as when its executor breaks): the scan is finished by then
        Outcome failed = JobHarness.failingAt("pass2:2", args(in, out, "--partition-tokens", "64").toArray(new String[0]));
        assertEquals(1, failed.status, failed.out + failed.err);
        assertTrue(failed.out.contains("scan 5/5: incoming states"), "the scan finished before the failure:\n"
                + failed.out);

        Outcome resumed = succeed(args(in, out, "--partition-tokens", "64", "--resume").toArray(new String[0]));
        java.util.regex.Matcher kept = java.util.regex.Pattern.compile("resumed: (\\d+) unit").matcher(resumed.out);
        assertTrue(kept.find(), resumed.out);
        // 39 + 6 pass-1 pieces; scan units: long 9 + 2 up, 1 + 3 + 10 down; short 1 up, 1 + 2 down
        JsonNode report = new ObjectMapper().readTree(out.resolve("_lightning_report.json").toFile());
        int scanKept = 0;
        for (java.util.Iterator<Map.Entry<String, JsonNode>> it = report.get("passes").fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> p = it.next();
            if (p.getKey().startsWith("scan")) {
                scanKept += p.getValue().get("resumed").asInt();
            }
        }
        assertEquals(29, scanKept, "every scan unit kept: " + report.get("passes"));
        assertTrue(Integer.parseInt(kept.group(1)) >= 45 + 29, resumed.out);

        Path fresh = tmp.resolve("fresh");
        succeed(args(in, fresh, "--partition-tokens", "64").toArray(new String[0]));
        for (String name : files.keySet()) {
            assertArrayEquals(Files.readAllBytes(fresh.resolve(name)), Files.readAllBytes(out.resolve(name)), name);
        }
        assertNotEquals(0, Files.size(out.resolve("long.safetensors")));
    }
}
