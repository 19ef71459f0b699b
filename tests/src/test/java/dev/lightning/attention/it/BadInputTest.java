package dev.lightning.attention.it;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lightning.attention.it.JobHarness.Outcome;
import dev.lightning.attention.it.JobHarness.Result;
import dev.lightning.attention.it.JobHarness.Sequence;
import dev.lightning.attention.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.stream.Stream;

import static dev.lightning.attention.it.JobHarness.lightning;
import static dev.lightning.attention.it.JobHarness.relativeError;
import static dev.lightning.attention.it.JobHarness.succeed;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Broken files and non-finite values: a clear error naming the file, and nothing half-written. */
class BadInputTest {
    static final String MASTER = "local[2]";

    @TempDir
    Path tmp;

    /** A file from a header text and a data length (the data is zeros: these never reach compute). */
    private static void raw(Path file, String json, int dataBytes) throws IOException {
        byte[] j = json.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + j.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(j.length).put(j);
        Files.write(file, b.array());
    }

    private static String tensor(String name, String dtype, String shape, long begin, long end) {
        return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" + begin + ","
                + end + "]}";
    }

    /** q, k [4, 2, 3] and v [4, 2, 5] in F32, then what the case adds. */
    private static String qkv(String extra) {
        return "{" + tensor("q", "F32", "[4,2,3]", 0, 96) + "," + tensor("k", "F32", "[4,2,3]", 96, 192) + ","
                + tensor("v", "F32", "[4,2,5]", 192, 352) + extra + "}";
    }

    static Map<String, String[]> cases() {
        Map<String, String[]> c = new LinkedHashMap<>();
        // name -> {header json, data bytes, expected message part}
        c.put("truncated", new String[] {qkv(""), "200", "outside"});
        c.put("malformed-json", new String[] {"{\"q\":{\"dtype\":\"F32\",", "400", "not valid JSON"});
        c.put("overlap", new String[] {"{" + tensor("q", "F32", "[4,2,3]", 0, 96) + "," + tensor("k", "F32", "[4,2,3]", 64, 160)
                + "," + tensor("v", "F32", "[4,2,5]", 192, 352) + "}", "352", "overlap"});
        c.put("dtype", new String[] {"{" + tensor("q", "F64", "[4,2,3]", 0, 192) + "," + tensor("k", "F64", "[4,2,3]", 192, 384)
                + "," + tensor("v", "F64", "[4,2,5]", 384, 704) + "}", "704", "unsupported dtype 'F64'"});
        c.put("missing-v", new String[] {"{" + tensor("q", "F32", "[4,2,3]", 0, 96) + "," + tensor("k", "F32", "[4,2,3]", 96, 192)
                + "}", "192", "missing tensor 'v'"});
        c.put("length-mismatch", new String[] {"{" + tensor("q", "F32", "[4,2,3]", 0, 96) + ","
                + tensor("k", "F32", "[3,2,3]", 96, 168) + "," + tensor("v", "F32", "[4,2,5]", 168, 328) + "}", "328",
                "one T and one Dk"});
        c.put("size-mismatch", new String[] {"{" + tensor("q", "F32", "[4,2,3]", 0, 90) + ","
                + tensor("k", "F32", "[4,2,3]", 96, 192) + "," + tensor("v", "F32", "[4,2,5]", 192, 352) + "}", "352",
                "needs 96 bytes"});
        c.put("slope-length", new String[] {qkv("," + tensor("slope", "F32", "[3]", 352, 364)), "364",
                "'slope' must be F32 [2]"});
        c.put("state-shape", new String[] {qkv("," + tensor("initial_state", "F32", "[2,5,3]", 352, 472)), "472",
                "'initial_state' must be F32 [2, 3, 5]"});
        c.put("empty", new String[] {"{" + tensor("q", "F32", "[0,2,3]", 0, 0) + "," + tensor("k", "F32", "[0,2,3]", 0, 0)
                + "," + tensor("v", "F32", "[0,2,5]", 0, 0) + "}", "0", "0 tokens"});
        c.put("huge-header", new String[] {null, "0", "header length"});
        return c;
    }

    @Test
    void everyKindOfBrokenFileIsRejectedBeforeAnyOutput() throws IOException {
        for (Map.Entry<String, String[]> e : cases().entrySet()) {
            Path in = Files.createDirectories(tmp.resolve("in-" + e.getKey()));
            Sequence.random(9, 100, 2, 3, 5, DType.F32, null, false).write(in.resolve("a-good.safetensors"));
            Path bad = in.resolve("b-" + e.getKey() + ".safetensors");
            String[] c = e.getValue();
            if (c[0] == null) {
                Files.write(bad, new byte[] {(byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0x7f, 0, 0, 0, 0, '{', '}'});
            } else {
                raw(bad, c[0], Integer.parseInt(c[1]));
            }
            Path out = tmp.resolve("out-" + e.getKey());
            Outcome o = lightning("run", "--input", in.toString(), "--output", out.toString(), "--master", MASTER);
            assertEquals(2, o.status, e.getKey() + ": " + o.err);
            assertTrue(o.err.contains(bad.getFileName().toString()) && o.err.contains(c[2]),
                    e.getKey() + ": expected the file name and '" + c[2] + "' in: " + o.err);
            assertFalse(Files.exists(out.resolve("a-good.safetensors")), e.getKey() + ": no output at all by default");
        }
    }

    /** Slopes the header cannot show wrong: negative and non-finite values. */
    @Test
    void badSlopeValuesAreRejected() throws IOException {
        float[][] slopes = {{-1f, 0.5f}, {Float.NaN, 0.5f}, {0.5f, Float.POSITIVE_INFINITY}};
        for (int i = 0; i < slopes.length; i++) {
            Path in = Files.createDirectories(tmp.resolve("slope-in-" + i));
            new Sequence(4, 2, 3, 5, DType.F32, new float[24], new float[24], new float[40], slopes[i], null)
                    .write(in.resolve("s.safetensors"));
            Outcome o = lightning("run", "--input", in.toString(), "--output", tmp.resolve("slope-out-" + i).toString(),
                    "--master", MASTER);
            assertEquals(2, o.status, o.err);
            assertTrue(o.err.contains("s.safetensors: slope[") && o.err.contains("expected a finite value >= 0"), o.err);
        }
    }

    @Test
    void skipInvalidProcessesTheRestAndListsTheRejected() throws IOException {
        Path in = Files.createDirectories(tmp.resolve("in"));
        Sequence good = Sequence.random(3, 300, 2, 8, 4, DType.F32, null, false);
        good.write(in.resolve("good.safetensors"));
        raw(in.resolve("broken.safetensors"), qkv(""), 100);
        Path out = tmp.resolve("out");
        Outcome o = succeed("run", "--input", in.toString(), "--output", out.toString(), "--master", MASTER,
                "--skip-invalid");
        assertTrue(o.out.contains("rejected broken.safetensors"), o.out);
        assertTrue(relativeError(Result.read(out.resolve("good.safetensors")).o, good.reference(1.0).o) <= 1e-5);
        JsonNode report = new ObjectMapper().readTree(out.resolve("_lightning_report.json").toFile());
        assertEquals("broken.safetensors", report.get("rejected").get(0).get("file").asText());
        assertFalse(Files.exists(out.resolve("broken.safetensors")));
    }

    /** NaN deep inside a split sequence: the job fails naming where; with --skip-nonfinite it is listed. */
    @Test
    void nonFiniteValuesFailTheJobOrAreSkipped() throws IOException {
        Path in = Files.createDirectories(tmp.resolve("in"));
        Sequence clean = Sequence.random(5, 200, 2, 8, 4, DType.BF16, null, false);
        clean.write(in.resolve("clean.safetensors"));
        Sequence split = Sequence.random(6, 500, 2, 8, 4, DType.BF16, null, false);
        split.v[(300 * 2 + 1) * 4 + 2] = Float.NaN;      // v[300, 1, 2]
        split.v[(450 * 2) * 4] = Float.POSITIVE_INFINITY;  // v[450, 0, 0]
        split.write(in.resolve("nan-split.safetensors"));
        Sequence state = Sequence.random(7, 40, 2, 8, 4, DType.F32, null, true);
        state.initialState[5] = Float.NEGATIVE_INFINITY;
        state.write(in.resolve("nan-state.safetensors"));

        Path out = tmp.resolve("out");
        Outcome failed = lightning("run", "--input", in.toString(), "--output", out.toString(), "--master", MASTER,
                "--partition-tokens", "128");
        assertEquals(2, failed.status, failed.err);
        assertTrue(failed.err.contains("NaN/Inf") && failed.err.contains("--skip-nonfinite"), failed.err);
        assertFalse(Files.exists(out.resolve("nan-split.safetensors")));
        assertFalse(Files.exists(out.resolve("nan-state.safetensors")));

        Path out2 = tmp.resolve("out2");
        Outcome o = succeed("run", "--input", in.toString(), "--output", out2.toString(), "--master", MASTER,
                "--partition-tokens", "128", "--skip-nonfinite");
        assertTrue(o.out.contains("skipped nan-split.safetensors: 2 NaN/Inf value(s), the first at v[300, 1, 2]"), o.out);
        assertTrue(o.out.contains("skipped nan-state.safetensors: 1 NaN/Inf value(s), the first at initial_state[0, 1, 1]"),
                o.out);
        assertFalse(Files.exists(out2.resolve("nan-split.safetensors")));
        assertFalse(Files.exists(out2.resolve("nan-state.safetensors")));
        assertTrue(relativeError(Result.read(out2.resolve("clean.safetensors")).o, clean.reference(1.0).o) <= 6e-3);
        JsonNode report = new ObjectMapper().readTree(out2.resolve("_lightning_report.json").toFile());
        assertEquals(2, report.get("skipped").size());
        try (Stream<Path> left = Files.list(out2)) {
            assertFalse(left.anyMatch(p -> p.getFileName().toString().startsWith(".")
                    || p.getFileName().toString().startsWith("_temporary")), "no partial files");
        }
    }
}
