package dev.lightning.attention.it;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lightning.attention.it.JobHarness.Outcome;
import dev.lightning.attention.stream.OutputReader;
import dev.lightning.attention.stream.SyntheticSequence;
import dev.lightning.attention.tensor.SafetensorsFile;
import dev.lightning.attention.tensor.SafetensorsHeader;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.zip.CRC32C;

import static dev.lightning.attention.it.JobHarness.lightning;
import static dev.lightning.attention.it.JobHarness.succeed;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code --synthetic} and {@code --output-mode checksums} through the command line: a synthetic run
 * writes the same bytes as a run on the written-out virtual file; a checksums run's CRC32C is that
 * of the o bytes a files run writes, for any split, with the sampled rows and states of that run and
 * spot checks within tolerance.
 */
class SyntheticJobTest {
    static final String MASTER = "local[2]";
    /** H = 3, Dk 5 != Dv 7, T = 1000: four pieces of 256 tokens. */
    static final String SPEC = "1000,3,5,7,bf16,4";

    @TempDir
    Path tmp;

    @Test
    void syntheticRunEqualsARunOnTheWrittenOutFile() throws Exception {
        for (String spec : new String[] {SPEC, "63,3,5,7,f32,9"}) {
            SyntheticSequence s = SyntheticSequence.parse(spec);
            Path in = Files.createDirectories(tmp.resolve("in-" + s.tokens));
            s.writeTo(in.resolve(s.name()));
            Path fromFile = tmp.resolve("file-" + s.tokens);
            Path generated = tmp.resolve("synthetic-" + s.tokens);
            succeed("run", "--input", in.toString(), "--output", fromFile.toString(), "--master", MASTER,
                    "--partition-tokens", "256", "--backend", "cpu");
            Outcome o = succeed("run", "--synthetic", spec, "--output", generated.toString(), "--master", MASTER,
                    "--partition-tokens", "256", "--backend", "cpu");
            byte[] a = Files.readAllBytes(fromFile.resolve(s.name()));
            byte[] b = Files.readAllBytes(generated.resolve(s.name()));
            assertTrue(Arrays.equals(a, b), spec + ": the synthetic run's " + s.name() + " differs from the run on "
                    + "the written file\n" + o.out);
            JsonNode report = new ObjectMapper().readTree(generated.resolve("_lightning_report.json").toFile());
            assertEquals(s.uri(), report.get("files").get(0).get("synthetic").asText());
        }
    }

    @Test
    void checksumsAreThoseOfTheBytesAFilesRunWritesForAnySplit() throws Exception {
        SyntheticSequence s = SyntheticSequence.parse(SPEC);
        int rowBytes = 3 * 7 * 2;
        // 4 pieces, 8 pieces, 1 piece; each against a files run of the same split (splits agree to
        // float32 rounding only, so their BF16 o may differ in a last bit)
        for (String partition : new String[] {"256", "128", "1024"}) {
            Path files = tmp.resolve("files-" + partition);
            succeed("run", "--synthetic", SPEC, "--output", files.toString(), "--master", MASTER, "--partition-tokens",
                    partition, "--backend", "cpu");
            Map<String, SafetensorsFile.Tensor> full = SafetensorsFile.read(files.resolve(s.name()));
            byte[] o = full.get("o").bytes();
            CRC32C crc = new CRC32C();
            crc.update(o);
            String expected = String.format("%08x", (int) crc.getValue());
            Path out = tmp.resolve("checksums-" + partition);
            Outcome done = succeed("run", "--synthetic", SPEC, "--output", out.toString(), "--master", MASTER,
                    "--partition-tokens", partition, "--backend", "cpu", "--output-mode", "checksums");
            assertTrue(done.out.contains("o crc32c " + expected), done.out);
            Path result = out.resolve(s.name());
            Map<String, String> meta = metadata(result);
            assertEquals(expected, meta.get("o_crc32c"), "partition tokens " + partition);
            assertEquals(Long.toString(o.length), meta.get("o_bytes"));
            assertEquals("1000,3,7", meta.get("o_shape"));
            Map<String, SafetensorsFile.Tensor> t = SafetensorsFile.read(result);
            assertFalse(t.containsKey("o"));
            assertArrayEquals(full.get("final_state").bytes(), t.get("final_state").bytes());
            long[] tokens = Arrays.stream(meta.get("o_sampled_tokens").split(",")).mapToLong(Long::parseLong).toArray();
            assertEquals(0, tokens[0]);
            assertEquals(999, tokens[tokens.length - 1]);
            assertTrue(tokens.length >= 16, Arrays.toString(tokens));
            if (!"1024".equals(partition)) {
                assertTrue(Arrays.stream(tokens).anyMatch(x -> x == 255) && Arrays.stream(tokens).anyMatch(x -> x == 256)
                        || !"256".equals(partition), "piece boundaries sampled: " + Arrays.toString(tokens));
            }
            byte[] sampled = t.get("o_sampled").bytes();
            assertEquals(tokens.length * rowBytes, sampled.length);
            for (int i = 0; i < tokens.length; i++) {
                assertArrayEquals(Arrays.copyOfRange(o, (int) tokens[i] * rowBytes, (int) (tokens[i] + 1) * rowBytes),
                        Arrays.copyOfRange(sampled, i * rowBytes, (i + 1) * rowBytes), "row of token " + tokens[i]);
            }
            // sum and max |o| of the values the files run wrote
            ByteBuffer bb = ByteBuffer.wrap(o).order(ByteOrder.LITTLE_ENDIAN);
            double sum = 0;
            double max = 0;
            for (int i = 0; i < o.length / 2; i++) {
                float x = Float.intBitsToFloat((bb.getShort(2 * i) & 0xffff) << 16);
                sum += x;
                max = Math.max(max, Math.abs(x));
            }
            assertEquals(max, Double.parseDouble(meta.get("o_max_abs")), 0);
            assertEquals(sum, Double.parseDouble(meta.get("o_sum")), 1e-9 * Math.abs(sum) + 1e-9);
            // spot checks against float64: every sampled row checked, within the BF16 tolerance, above rounding 0
            JsonNode report = new ObjectMapper().readTree(out.resolve("_lightning_report.json").toFile());
            JsonNode c = report.get("files").get(0).get("checksums");
            assertEquals(expected, c.get("crc32c").asText());
            assertEquals(tokens.length, c.get("spotChecks").size());
            for (JsonNode row : c.get("spotChecks")) {
                assertFalse(row.has("unchecked"), row.toString());
                assertTrue(row.get("rel_error").asDouble() < 1e-2, row.toString());
            }
            assertTrue(c.get("spotCheckMaxRelError").asDouble() > 1e-5, c.toString());
        }
    }

    @Test
    void severalSequencesAndVariantsWithStatesKeepEverythingButO() throws Exception {
        // two sequences (one split in 4, one whole), normalized elu1 with states every 128 tokens
        String specs = SPEC + ";63,3,5,7,f32,9";
        String[] variant = {"--feature-map", "elu1", "--normalize", "--state-every", "128", "--chunk-size", "64"};
        Path files = tmp.resolve("files");
        Path sums = tmp.resolve("sums");
        succeed(concat(new String[] {"run", "--synthetic", specs, "--output", files.toString(), "--master", MASTER,
                "--partition-tokens", "256", "--backend", "cpu"}, variant));
        Outcome o = succeed(concat(new String[] {"run", "--synthetic", specs, "--output", sums.toString(), "--master",
                MASTER, "--partition-tokens", "256", "--backend", "cpu", "--output-mode", "checksums"}, variant));
        for (String spec : specs.split(";")) {
            SyntheticSequence s = SyntheticSequence.parse(spec);
            Map<String, SafetensorsFile.Tensor> full = SafetensorsFile.read(files.resolve(s.name()));
            Map<String, SafetensorsFile.Tensor> kept = SafetensorsFile.read(sums.resolve(s.name()));
            for (String t : new String[] {"final_state", "final_normalizer", "states", "normalizers"}) {
                assertArrayEquals(full.get(t).bytes(), kept.get(t).bytes(), spec + ": " + t);
            }
            CRC32C crc = new CRC32C();
            crc.update(full.get("o").bytes());
            assertEquals(String.format("%08x", (int) crc.getValue()), metadata(sums.resolve(s.name())).get("o_crc32c"),
                    spec + "\n" + o.out);
            assertEquals("elu1", metadata(sums.resolve(s.name())).get("feature_map"));
        }
        Outcome twice = lightning("run", "--synthetic", SPEC + ";" + SPEC, "--output", tmp.resolve("x").toString());
        assertEquals(2, twice.status, twice.err);
        assertTrue(twice.err.contains("twice"), twice.err);
    }

    /**
     * --synthetic with every --output-form on this file system: the parts a split sequence's pieces
     * write hold, tensor by tensor, what the in-place file holds (o, final and recorded states). In
     * checksums mode --output-form changes nothing: the result is one file with the recorded states
     * of the files run, and no index.
     */
    @Test
    void syntheticWithEveryOutputFormAndChecksumsWithParts() throws Exception {
        String[] variant = {"--normalize", "--state-every", "128", "--chunk-size", "64"};
        SyntheticSequence s = SyntheticSequence.parse(SPEC);
        Path inPlace = tmp.resolve("in-place");
        Path parts = tmp.resolve("parts");
        Path sums = tmp.resolve("sums-parts");
        succeed(concat(new String[] {"run", "--synthetic", SPEC, "--output", inPlace.toString(), "--master", MASTER,
                "--partition-tokens", "256", "--backend", "cpu", "--output-form", "in-place"}, variant));
        succeed(concat(new String[] {"run", "--synthetic", SPEC, "--output", parts.toString(), "--master", MASTER,
                "--partition-tokens", "256", "--backend", "cpu", "--output-form", "parts"}, variant));
        Outcome o = succeed(concat(new String[] {"run", "--synthetic", SPEC, "--output", sums.toString(), "--master",
                MASTER, "--partition-tokens", "256", "--backend", "cpu", "--output-form", "parts", "--output-mode",
                "checksums"}, variant));
        Map<String, SafetensorsFile.Tensor> one = SafetensorsFile.read(inPlace.resolve(s.name()));
        try (OutputReader r = OutputReader.open(parts.resolve(s.name() + ".index.json"))) {
            for (String t : new String[] {"o", "final_state", "final_normalizer", "states", "normalizers"}) {
                long rows = r.shape(t)[0];
                assertArrayEquals(one.get(t).bytes(), r.rows(t, 0, rows), "parts vs in-place: " + t);
            }
        }
        assertFalse(Files.exists(sums.resolve(s.name() + ".index.json")), "checksums write no index");
        Map<String, SafetensorsFile.Tensor> kept = SafetensorsFile.read(sums.resolve(s.name()));
        for (String t : new String[] {"final_state", "final_normalizer", "states", "normalizers"}) {
            assertArrayEquals(one.get(t).bytes(), kept.get(t).bytes(), "checksums vs in-place: " + t);
        }
        CRC32C crc = new CRC32C();
        crc.update(one.get("o").bytes());
        assertEquals(String.format("%08x", (int) crc.getValue()), metadata(sums.resolve(s.name())).get("o_crc32c"),
                o.out);
    }

    /**
     * A checksums run that fails in pass 2 (after three pieces finished), and one that fails after
     * the driver wrote the split sequence's result, both publish nothing; --resume publishes the
     * bytes of an uninterrupted run (the result file is written again from the staged summaries and
     * states, which the kept pieces' markers verify).
     */
    @Test
    void aResumedChecksumsRunEqualsAnUninterruptedOne() throws Exception {
        String[] run = {"run", "--synthetic", SPEC, "--master", MASTER, "--partition-tokens", "256", "--backend",
                "cpu", "--output-mode", "checksums", "--normalize", "--state-every", "128", "--chunk-size", "64"};
        SyntheticSequence s = SyntheticSequence.parse(SPEC);
        Path expected = tmp.resolve("expected");
        succeed(concat(run, new String[] {"--output", expected.toString()}));
        for (String failAt : new String[] {"pass2:3", "assemble:1"}) {
            Path out = tmp.resolve("resumed-" + failAt.replace(':', '-'));
            Outcome failed = JobHarness.failingAt(failAt, concat(run, new String[] {"--output", out.toString()}));
            assertEquals(1, failed.status, failAt + ": " + failed.out + failed.err);
            assertFalse(Files.exists(out.resolve(s.name())), failAt + ": nothing published");
            Outcome resumed = succeed(concat(run, new String[] {"--output", out.toString(), "--resume"}));
            assertTrue(resumed.out.contains("resumed:"), failAt + ": " + resumed.out);
            assertArrayEquals(Files.readAllBytes(expected.resolve(s.name())), Files.readAllBytes(out.resolve(s.name())),
                    failAt + ": the resumed result differs from the uninterrupted one\n" + resumed.out);
        }
    }

    /** Softmax has neither the synthetic source nor the checksum sink: refused before any work, exit 2. */
    @Test
    void softmaxRefusesSyntheticAndChecksums() {
        Outcome synthetic = lightning("run", "--attention", "softmax", "--synthetic", SPEC, "--output",
                tmp.resolve("o").toString());
        assertEquals(2, synthetic.status, synthetic.err);
        assertTrue(synthetic.err.contains("--synthetic") && synthetic.err.contains("lightning attention only"),
                synthetic.err);
        Outcome sums = lightning("run", "--attention", "softmax", "--input", tmp.toString(), "--output",
                tmp.resolve("o").toString(), "--output-mode", "checksums");
        assertEquals(2, sums.status, sums.err);
        assertTrue(sums.err.contains("--output-mode checksums"), sums.err);
    }

    private static String[] concat(String[] a, String[] b) {
        String[] all = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, all, a.length, b.length);
        return all;
    }

    @Test
    void aSpotCheckBeyondTheToleranceFailsTheRunAndPublishesNothing() throws Exception {
        // BF16 o is about 3e-3 off float64 (its rounding): a tolerance of 1e-6 must fail the run
        Path out = tmp.resolve("strict");
        Outcome o = lightning("run", "--synthetic", SPEC, "--output", out.toString(), "--master", MASTER,
                "--partition-tokens", "256", "--backend", "cpu", "--output-mode", "checksums",
                "--spot-check-tolerance", "1e-6");
        assertEquals(1, o.status, o.out + o.err);
        assertFalse(o.err.contains("\tat "), "one line, no stack trace:\n" + o.err);
        assertTrue(o.err.contains("spot checks failed") && o.err.contains("above the tolerance 1.00e-06 (--spot-check-tolerance)"),
                o.err);
        // the advice: not --resume, which keeps the refused results and fails the same way
        assertTrue(o.out.contains("spot checks refused") && o.out.contains("run again without it")
                && !o.out.contains("rerun with --resume"), o.out);
        SyntheticSequence s = SyntheticSequence.parse(SPEC);
        assertFalse(Files.exists(out.resolve(s.name())), "nothing published");
        assertFalse(Files.exists(out.resolve("_SUCCESS")));
        Path report;
        try (var staged = Files.list(out.resolve("_temporary"))) {
            report = staged.filter(p -> p.getFileName().toString().startsWith("lightning-")).findFirst().orElseThrow()
                    .resolve("_lightning_report.json");
        }
        JsonNode r = new ObjectMapper().readTree(report.toFile());
        assertEquals("failed", r.get("status").asText());
        JsonNode c = r.get("files").get(0).get("checksums");
        assertTrue(c.get("spotCheckMaxRelError").asDouble() > 1e-6, c.toString());
        assertEquals(1e-6, c.get("spotCheckTolerance").asDouble(), 0);
        assertTrue(c.get("spotChecks").size() >= 16);
    }

    @Test
    void inputAndSyntheticExcludeEachOtherAndBadSpecsAreRefused() {
        Outcome both = lightning("run", "--input", tmp.toString(), "--synthetic", SPEC, "--output",
                tmp.resolve("o").toString());
        assertEquals(2, both.status, both.err);
        assertTrue(both.err.contains("--input and --synthetic exclude each other"), both.err);
        Outcome bad = lightning("run", "--synthetic", "1000,3,5", "--output", tmp.resolve("o").toString());
        assertEquals(2, bad.status, bad.err);
        assertTrue(bad.err.contains("expected T,H,Dk,Dv,dtype,seed"), bad.err);
        Outcome none = lightning("run", "--output", tmp.resolve("o").toString());
        assertEquals(2, none.status, none.err);
        assertTrue(none.err.contains("--synthetic"), none.err);
        Outcome mode = lightning("run", "--synthetic", SPEC, "--output", tmp.resolve("o").toString(),
                "--output-mode", "nothing");
        assertEquals(2, mode.status, mode.err);
    }

    static Map<String, String> metadata(Path file) throws Exception {
        byte[] all = Files.readAllBytes(file);
        long n = SafetensorsHeader.headerLength(file.toString(), Arrays.copyOf(all, 8), all.length);
        return SafetensorsHeader.parse(file.toString(), Arrays.copyOfRange(all, 8, 8 + (int) n), all.length).metadata();
    }
}
