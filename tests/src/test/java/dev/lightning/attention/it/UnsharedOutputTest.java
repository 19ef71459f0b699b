package dev.lightning.attention.it;

import dev.lightning.attention.it.JobHarness.Outcome;
import dev.lightning.attention.it.JobHarness.Sequence;
import dev.lightning.attention.job.output.SharedOutputCheck;
import dev.lightning.attention.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static dev.lightning.attention.it.JobHarness.lightning;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * An --output that the executors see elsewhere than the driver (DivergentLocalFileSystem: a
 * directory local to each host instead of shared storage). Split sequences failed with
 * NoSuchFileException stack traces of the in-place output (149 lines on a cluster), unsplit ones
 * with "the staged output ... is missing", and both advised "rerun with --resume", which cannot
 * help. Now one line says that every executor must see --output at the driver's path, and no
 * --resume is suggested.
 */
class UnsharedOutputTest {
    @TempDir
    Path tmp;

    private Outcome runDivergent(Path in, Path out, String partitionTokens, String... more) {
        Path elsewhere = tmp.resolve("executor-view");
        System.setProperty(DivergentLocalFileSystem.PROPERTY, out + "=" + elsewhere);
        try {
            java.util.List<String> args = new java.util.ArrayList<>(java.util.List.of("run", "--input", in.toString(),
                    "--output", DivergentLocalFileSystem.SCHEME + "://" + out,
                    "--master", "local[2]", "--partition-tokens", partitionTokens, "--backend", "cpu",
                    "--conf", "spark.hadoop.fs." + DivergentLocalFileSystem.SCHEME + ".impl="
                            + DivergentLocalFileSystem.class.getName()));
            args.addAll(java.util.List.of(more));
            return lightning(args.toArray(new String[0]));
        } finally {
            System.clearProperty(DivergentLocalFileSystem.PROPERTY);
        }
    }

    private Path input() throws IOException {
        Path in = Files.createDirectories(tmp.resolve("in"));
        Sequence.random(21, 300, 2, 8, 6, DType.BF16, null, false).write(in.resolve("a.safetensors"));
        return in;
    }

    private static void assertSaysSharedStorage(Outcome o) {
        String all = o.out + o.err;
        assertEquals(1, o.status, all);
        assertTrue(o.err.contains("must see --output at the same path") && o.err.contains("shared storage"), all);
        assertFalse(all.contains("--resume"), "--resume cannot help here:\n" + all);
        assertTrue(o.err.lines().count() <= 2, "said in a line, no stack trace:\n" + o.err);
    }

    /** Split: the driver prepares the in-place output file, which the executors do not find. */
    @Test
    void splitSequencesSayTheExecutorsMustSeeTheOutput() throws IOException {
        Path in = input();
        Path out = tmp.resolve("out");
        Outcome o = runDivergent(in, out, "128");
        assertSaysSharedStorage(o);
        assertTrue(o.err.contains("executor"), o.err);
        assertFalse(Files.exists(out.resolve("a.safetensors")), "nothing published");
    }

    /**
     * Unsplit: the executors would stage outputs the driver could not find at the commit; the first staged write
     * already finds no staging directory (Staging refuses to make it again), so the run stops there. The commit's own
     * check of every staged output is held by CommitRecordTest.
     */
    @Test
    void unsplitSequencesSayTheDriverMustSeeWhatTheExecutorsWrote() throws IOException {
        Path in = input();
        Path out = tmp.resolve("out");
        Outcome o = runDivergent(in, out, "65536");
        assertSaysSharedStorage(o);
        assertFalse(Files.exists(out.resolve("a.safetensors")), "nothing published");
    }

    /**
     * --output-mode checksums, unsplit: the driver would read each result's checksums back from the
     * staged file a task wrote; the task's first staged write already finds no staging directory
     * (Staging refuses to make it again). Was a FileNotFoundException stack trace and "rerun with --resume".
     */
    @Test
    void checksumsOfUnsplitSequencesSayTheDriverMustSeeWhatTheExecutorsWrote() throws IOException {
        Path in = input();
        Path out = tmp.resolve("out");
        Outcome o = runDivergent(in, out, "65536", "--output-mode", "checksums");
        assertSaysSharedStorage(o);
        assertTrue(o.err.contains("staging directory") && o.err.contains("missing on the executor"), o.err);
        assertFalse(Files.exists(out.resolve("a.safetensors")), "nothing published");
    }

    /**
     * --output-mode checksums, split: the driver would combine the o summaries the pieces' tasks
     * staged; their first staged write already finds no staging directory. Was a
     * FileNotFoundException stack trace of parts/s0-p0-0.o-summaries and "rerun with --resume".
     */
    @Test
    void checksumsOfSplitSequencesSayTheDriverMustSeeWhatTheExecutorsWrote() throws IOException {
        Path in = input();
        Path out = tmp.resolve("out");
        Outcome o = runDivergent(in, out, "128", "--output-mode", "checksums");
        assertSaysSharedStorage(o);
        assertTrue(o.err.contains("staging directory") && o.err.contains("missing on the executor"), o.err);
        assertFalse(Files.exists(out.resolve("a.safetensors")), "nothing published");
    }

    /** --output-form parts, split: the pieces' first staged write finds no staging directory. */
    @Test
    void partsFormSaysTheDriverMustSeeWhatTheExecutorsWrote() throws IOException {
        Path in = input();
        Path out = tmp.resolve("out");
        Outcome o = runDivergent(in, out, "128", "--output-form", "parts");
        assertSaysSharedStorage(o);
        assertTrue(o.err.contains("staging directory") && o.err.contains("missing on the executor"), o.err);
        assertFalse(Files.exists(out.resolve("a.safetensors.index.json")), "nothing published");
    }

    /** Runs {@code run} with the check before the first pass on under the local master (its test property). */
    private static Outcome withTheCheck(java.util.function.Supplier<Outcome> run) {
        System.setProperty(SharedOutputCheck.ALWAYS, "true");
        try {
            return run.get();
        } finally {
            System.clearProperty(SharedOutputCheck.ALWAYS);
        }
    }

    private static void assertNoCheckFiles(Path out) throws IOException {
        try (java.util.stream.Stream<Path> all = Files.walk(out)) {
            assertTrue(all.noneMatch(f -> f.toString().contains("shared-check")), "the check's files are gone");
        }
    }

    /**
     * The check before the first pass (SharedOutputCheck, which a cluster runs and a local master
     * only with its test property): the executors do not find the driver's check file, so the run
     * stops before pass 1, in one line, whatever the sequences' split.
     */
    @Test
    void theCheckBeforeThePassesSaysTheExecutorsMustSeeTheOutput() throws IOException {
        Path in = input();
        for (String partitionTokens : new String[] {"128", "65536"}) {
            Path out = tmp.resolve("out-" + partitionTokens);
            Outcome o = withTheCheck(() -> runDivergent(in, out, partitionTokens));
            assertSaysSharedStorage(o);
            assertTrue(o.err.contains("the check file") && o.err.contains("missing on the executor"), o.err);
            assertFalse(o.out.contains("pass 1"), "stopped before pass 1:\n" + o.out);
            assertFalse(Files.exists(out.resolve("a.safetensors")), "nothing published");
            assertNoCheckFiles(out);
        }
    }

    /** The same check where the executors do see --output: one line says so, and the run goes on. */
    @Test
    void theCheckPassesWhereTheOutputIsShared() throws IOException {
        Path in = input();
        Path checked = tmp.resolve("checked");
        Outcome o = withTheCheck(() -> lightning("run", "--input", in.toString(), "--output", checked.toString(),
                "--master", "local[2]", "--partition-tokens", "128", "--backend", "cpu"));
        assertEquals(0, o.status, o.out + o.err);
        assertTrue(o.out.contains("--output is shared storage: 1 executor on 1 host"), o.out);
        Path plain = tmp.resolve("plain");
        Outcome p = lightning("run", "--input", in.toString(), "--output", plain.toString(), "--master", "local[2]",
                "--partition-tokens", "128", "--backend", "cpu");
        assertEquals(0, p.status, p.out + p.err);
        assertFalse(p.out.contains("--output is shared storage"), "a local master skips the check:\n" + p.out);
        assertTrue(java.util.Arrays.equals(Files.readAllBytes(plain.resolve("a.safetensors")),
                Files.readAllBytes(checked.resolve("a.safetensors"))), "the check changes no output");
        assertNoCheckFiles(checked);
    }

    /** Softmax, split and unsplit: the executors miss the in-place output, or the staging directory, the driver made. */
    @Test
    void softmaxSaysTheExecutorsMustSeeTheOutput() throws IOException {
        Path in = input();
        Outcome split = runDivergent(in, tmp.resolve("out"), "128", "--attention", "softmax");
        assertSaysSharedStorage(split);
        assertTrue(split.err.contains("missing on the executor"), split.err);
        Outcome unsplit = runDivergent(in, tmp.resolve("out2"), "65536", "--attention", "softmax");
        assertSaysSharedStorage(unsplit);
        assertTrue(unsplit.err.contains("staging directory") && unsplit.err.contains("missing on the executor"),
                unsplit.err);
    }
}
