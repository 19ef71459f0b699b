package dev.lightning.attention.job;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What a run prints and reports says what this run did, in lines a terminal can hold. Two sequences
 * of 256 tokens in pieces of 64 (6 pieces in pass 1, 8 in pass 2), one task per piece on one core.
 */
class RunFiguresTest {
    private static final int PIECE = 64;

    @TempDir
    Path tmp;

    /**
     * A --resume run keeps the units the interrupted run finished: its report counted their tokens as
     * computed in its own seconds (pass 1 wholly kept showed 384 tokens at some thousand tokens/s,
     * the task rows of pass 1 said 0 tokens and those of pass 2 the kept ones), and its closing line
     * gave every result token over its seconds. Kept tokens are now counted apart, everywhere.
     */
    @Test
    void aResumedRunCountsTheKeptTokensApart() throws Exception {
        Path in = Files.createDirectories(tmp.resolve("in"));
        write(in.resolve("a.safetensors"), 0.25f);
        write(in.resolve("b.safetensors"), 0.5f);
        Path out = tmp.resolve("out");
        // pass 2's third unit is staged and marked, then its task fails: pieces of pass 2 are kept
        System.setProperty("lightning.test.failAt", "pass2:3");
        String[] failed;
        try {
            failed = run(in, out);
        } finally {
            System.clearProperty("lightning.test.failAt");
        }
        assertEquals("1", failed[0], failed[1]);
        assertFailedRunReport(out);

        String[] resumed = run(in, out, "--resume");
        assertEquals("0", resumed[0], resumed[1]);
        JsonNode report = new ObjectMapper().readTree(out.resolve("_lightning_report.json").toFile());
        // at least the three pieces the failed run marked (a task the scheduler started before the abort may add one)
        long kept = report.path("passes").path("pass 2/2: outputs").path("keptTokens").asLong();
        assertTrue(kept >= 3 * PIECE && kept < 8 * PIECE && kept % PIECE == 0, report.toString());
        long computed = 2 * 256 - kept;
        assertTrue(resumed[1].contains("512 tokens in ") && resumed[1].contains(
                String.format("(%,d computed, ", computed)) && resumed[1].contains(
                String.format("; %,d kept from the interrupted run)", kept)), resumed[1]);

        assertEquals(512, report.get("tokens").asLong(), report.toString());
        assertEquals(kept, report.get("keptTokens").asLong(), report.toString());
        assertEquals(computed / report.get("seconds").asDouble(), report.get("tokensPerSecond").asDouble(), 1e-6,
                report.toString());
        JsonNode pass1 = report.get("passes").get("pass 1/2: local states");
        assertEquals(0, pass1.get("tokens").asLong(), pass1.toString());
        assertEquals(6 * PIECE, pass1.get("keptTokens").asLong(), pass1.toString());
        assertEquals(0, pass1.get("tokensPerSecond").asDouble(), pass1.toString());
        JsonNode pass2 = report.get("passes").get("pass 2/2: outputs");
        assertEquals(computed, pass2.get("tokens").asLong(), pass2.toString());
        assertEquals(kept, pass2.get("keptTokens").asLong(), pass2.toString());
        assertEquals(computed / pass2.get("seconds").asDouble(), pass2.get("tokensPerSecond").asDouble(), 1e-6,
                pass2.toString());
        long[] rows = new long[4]; // pass 1 computed, kept; pass 2 computed, kept
        for (JsonNode task : report.get("tasks")) {
            int at = switch (task.get("pass").asText()) {
                case "pass1" -> 0;
                case "pass2" -> 2;
                default -> -1;
            };
            if (at >= 0) {
                rows[at] += task.get("tokens").asLong();
                rows[at + 1] += task.get("keptTokens").asLong();
            }
        }
        assertEquals(List.of(0L, 6L * PIECE, computed, kept), List.of(rows[0], rows[1], rows[2], rows[3]),
                report.get("tasks").toString());
    }

    /**
     * The report of a run that failed in pass 2 (in its staging) gave tokensPerSecond as the plan's
     * 512 tokens over its seconds, as if it had computed them all, and said nothing of pass 2. Now
     * it gives no rate for the run, and the failed pass with the tokens of its tasks that finished.
     */
    private static void assertFailedRunReport(Path out) throws Exception {
        Path staging;
        try (var runs = Files.list(out.resolve("_temporary"))) {
            staging = runs.findFirst().orElseThrow();
        }
        JsonNode report = new ObjectMapper().readTree(staging.resolve("_lightning_report.json").toFile());
        assertEquals("failed", report.get("status").asText(), report.toString());
        assertTrue(!report.has("tokensPerSecond"), report.toString());
        JsonNode pass1 = report.get("passes").get("pass 1/2: local states");
        assertEquals(6 * PIECE, pass1.get("tokens").asLong(), pass1.toString());
        assertTrue(!pass1.has("failed"), pass1.toString());
        JsonNode pass2 = report.get("passes").get("pass 2/2: outputs");
        assertTrue(pass2 != null && pass2.get("failed").asBoolean(), report.toString());
        long tokens = pass2.get("tokens").asLong();
        assertTrue(tokens >= 2 * PIECE && tokens < 8 * PIECE && tokens % PIECE == 0, pass2.toString());
    }

    /**
     * --skip-invalid over a directory of damaged files printed one long line per rejected file (2,000
     * lines for 2,000 files) before the run began; the report lists them all, so the console names the
     * first 10 and counts the rest in one line.
     */
    @Test
    void manyRejectedFilesAreNamedInTenLinesAndCounted() throws Exception {
        Path in = Files.createDirectories(tmp.resolve("in"));
        write(in.resolve("a.safetensors"), 0.25f);
        for (int i = 0; i < 25; i++) {
            Files.write(in.resolve(String.format("damaged-%02d.safetensors", i)), new byte[] {1, 2, 3});
        }
        Path out = tmp.resolve("out");
        String[] run = run(in, out, "--skip-invalid");
        assertEquals("0", run[0], run[1]);
        List<String> rejected = run[1].lines().filter(l -> l.startsWith("lightning: rejected ")).toList();
        assertEquals(10, rejected.size(), run[1]);
        assertTrue(run[1].contains("lightning: ... and 15 more rejected file(s), listed with the reason in the run "
                + "report _lightning_report.json"), run[1]);
        JsonNode report = new ObjectMapper().readTree(out.resolve("_lightning_report.json").toFile());
        assertEquals(25, report.get("rejected").size(), report.toString());
    }

    /**
     * The same for --skip-nonfinite: a line per skipped sequence (and a softmax run named a sequence
     * again for each of its passes that met the NaN); now the first 10 once, then a count.
     */
    @Test
    void manySkippedSequencesAreNamedInTenLinesAndCounted() throws Exception {
        Path in = Files.createDirectories(tmp.resolve("in"));
        write(in.resolve("a.safetensors"), 0.25f);
        for (int i = 0; i < 12; i++) {
            write(in.resolve(String.format("nan-%02d.safetensors", i)), Float.NaN);
        }
        Path out = tmp.resolve("out");
        String[] run = run(in, out, "--skip-nonfinite");
        assertEquals("0", run[0], run[1]);
        List<String> skipped = run[1].lines().filter(l -> l.startsWith("lightning: skipped ")).toList();
        assertEquals(10, skipped.size(), run[1]);
        assertTrue(run[1].contains("lightning: ... and 2 more skipped sequence(s), listed with the reason in the run "
                + "report _lightning_report.json"), run[1]);
        JsonNode report = new ObjectMapper().readTree(out.resolve("_lightning_report.json").toFile());
        assertEquals(12, report.get("skipped").size(), report.toString());
    }

    /** Runs the job in this JVM; returns its exit status and what it printed. */
    private static String[] run(Path in, Path out, String... more) {
        List<String> args = new ArrayList<>(List.of("run", "--input", in.toString(), "--output", out.toString(),
                "--backend", "cpu", "--master", "local[1]", "--partition-tokens", String.valueOf(PIECE),
                "--progress-seconds", "60"));
        args.addAll(List.of(more));
        ByteArrayOutputStream console = new ByteArrayOutputStream();
        int status;
        try (PrintStream o = new PrintStream(console, true, StandardCharsets.UTF_8)) {
            status = LightningMain.run(args.toArray(new String[0]), o, o);
        }
        return new String[] {String.valueOf(status), console.toString(StandardCharsets.UTF_8)};
    }

    /** A 256-token sequence, H = 2, Dk = Dv = 4, F32, its values from {@code seed} (NaN: all NaN). */

    /** The same input a run over changed files uses: T = 256, H = 2, D = 4, F32. */
    private static void write(Path file, float seed) throws Exception {
        InputChangedTest.write(file, seed);
    }
}
