package dev.lightning.attention.it;

import dev.lightning.attention.it.JobHarness.Outcome;
import dev.lightning.attention.it.JobHarness.Sequence;
import dev.lightning.attention.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.Map;
import java.util.stream.Stream;

import static dev.lightning.attention.it.JobHarness.lightning;
import static dev.lightning.attention.it.JobHarness.succeed;
import static dev.lightning.attention.it.OutputSafetyTest.assertSameFiles;
import static dev.lightning.attention.it.OutputSafetyTest.snapshot;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Where a publication may write and what counts as its commit, through the command line in one
 * JVM: a symbolic link or a file in the way of a nested output, a commit record that is not whole,
 * a failure after the commit point, the other form of an output under --overwrite, an input
 * replaced by one of the same size and time, a read-only output. Each case was found by trying to
 * break a run (2026-12-04); the commit protocol itself is in {@code OutputSafetyTest}.
 */
class PublicationTest {
    static final String MASTER = "local[2]";

    @TempDir
    Path tmp;

    private static String[] run(Path in, Path out, String... more) {
        String[] base = {"run", "--input", in.toString(), "--output", out.toString(), "--master", MASTER,
                "--partition-tokens", "128", "--backend", "cpu"};
        String[] all = new String[base.length + more.length];
        System.arraycopy(base, 0, all, 0, base.length);
        System.arraycopy(more, 0, all, base.length, more.length);
        return all;
    }

    /** Two subdirectories of one sequence each: a/s.safetensors, b/t.safetensors. */
    private Path nestedInput() throws IOException {
        Path in = tmp.resolve("in");
        Sequence.random(11, 300, 2, 8, 6, DType.BF16, null, false).write(
                Files.createDirectories(in.resolve("a")).resolve("s.safetensors"));
        Sequence.random(12, 200, 2, 8, 6, DType.BF16, null, false).write(
                Files.createDirectories(in.resolve("b")).resolve("t.safetensors"));
        return in;
    }

    /**
     * A symbolic link inside --output where a nested result goes (here to the input's own
     * directory) is refused before compute: publishing through it would have replaced the input.
     */
    @Test
    void aSymbolicLinkInTheWayOfANestedOutputIsRefused() throws IOException {
        Path in = nestedInput();
        Map<String, byte[]> input = snapshot(in);
        Path out = Files.createDirectories(tmp.resolve("out"));
        Files.createSymbolicLink(out.resolve("b"), in.resolve("b"));
        Outcome refused = lightning(run(in, out, "--recursive", "--overwrite"));
        assertEquals(2, refused.status, refused.out + refused.err);
        assertTrue(refused.err.contains("is a symbolic link"), refused.err);
        assertFalse(refused.out.contains("pass 1/2"), "refused before compute:\n" + refused.out);
        assertSameFiles(input, snapshot(in));
        assertFalse(Files.exists(out.resolve("a")), "nothing published");
    }

    /** A file where a nested result needs a directory is refused before compute, not half-way through the publication. */
    @Test
    void aFileInTheWayOfANestedOutputIsRefusedBeforeCompute() throws IOException {
        Path in = nestedInput();
        Path out = Files.createDirectories(tmp.resolve("out"));
        Files.writeString(out.resolve("b"), "a user's file");
        Outcome refused = lightning(run(in, out, "--recursive"));
        assertEquals(2, refused.status, refused.out + refused.err);
        assertTrue(refused.err.contains("is a file where the output b/t.safetensors needs a directory"), refused.err);
        assertEquals("a user's file", Files.readString(out.resolve("b")));
        assertFalse(Files.exists(out.resolve("a")));
    }

    /**
     * A symbolic link as the output's _temporary (here to a directory outside the output that holds a directory
     * named as a run's staging) is refused before compute: the run had staged through it and removed that
     * directory, outside --output. A file there is refused in one line too (it had failed the run with a stack
     * trace when it first staged), and the refused runs let the lock go.
     */
    @Test
    void aSymbolicLinkOrAFileAsTheStagingDirectoryIsRefused() throws IOException {
        Path in = nestedInput();
        Path elsewhere = Files.createDirectories(tmp.resolve("elsewhere"));
        Files.writeString(Files.createDirectories(elsewhere.resolve("lightning-20200101-000000-00000000"))
                .resolve("keep"), "a user's file");
        Path out = Files.createDirectories(tmp.resolve("out"));
        Files.createSymbolicLink(out.resolve("_temporary"), elsewhere);
        Outcome refused = lightning(run(in, out, "--recursive"));
        assertEquals(2, refused.status, refused.out + refused.err);
        assertTrue(refused.err.contains("_temporary is a symbolic link"), refused.err);
        assertFalse(refused.out.contains("pass 1/2"), "refused before compute:\n" + refused.out);
        try (Stream<Path> left = Files.walk(elsewhere)) {
            assertEquals(3, left.count(), "the link's target as it was");
        }
        assertEquals("a user's file", Files.readString(elsewhere.resolve("lightning-20200101-000000-00000000/keep")));
        assertFalse(Files.exists(out.resolve("_lightning.lock")), "the lock is let go");

        Files.delete(out.resolve("_temporary"));
        Files.writeString(out.resolve("_temporary"), "a user's file");
        Outcome file = lightning(run(in, out, "--recursive"));
        assertEquals(2, file.status, file.out + file.err);
        assertTrue(file.err.contains("_temporary is a file"), file.err);
        assertEquals("a user's file", Files.readString(out.resolve("_temporary")));
        assertFalse(Files.exists(out.resolve("_lightning.lock")), "the lock is let go");
    }

    /**
     * In the parts form with --overwrite, a symbolic link or a file where an output's parts directory (NAME.parts)
     * goes is refused before compute, like one in the way of a nested output: the commit found it after all
     * compute and failed with exit status 1 and a stack trace.
     */
    @Test
    void aSymbolicLinkOrAFileAsAPartsDirectoryIsRefusedBeforeCompute() throws IOException {
        Path in = nestedInput();
        Path elsewhere = Files.createDirectories(tmp.resolve("elsewhere"));
        Files.writeString(elsewhere.resolve("o-00000-of-00001.safetensors"), "a user's file");
        Path out = Files.createDirectories(tmp.resolve("out/a"));
        Files.createSymbolicLink(out.resolve("s.safetensors.parts"), elsewhere);
        Outcome refused = lightning(run(in, out.getParent(), "--recursive", "--overwrite", "--output-form", "parts"));
        assertEquals(2, refused.status, refused.out + refused.err);
        assertTrue(refused.err.contains("s.safetensors.parts is a symbolic link"), refused.err);
        assertFalse(refused.out.contains("pass 1/2"), "refused before compute:\n" + refused.out);
        assertEquals("a user's file", Files.readString(elsewhere.resolve("o-00000-of-00001.safetensors")));

        Files.delete(out.resolve("s.safetensors.parts"));
        Files.writeString(out.resolve("s.safetensors.parts"), "a user's file");
        Outcome file = lightning(run(in, out.getParent(), "--recursive", "--overwrite", "--output-form", "parts"));
        assertEquals(2, file.status, file.out + file.err);
        assertTrue(file.err.contains("s.safetensors.parts is a file"), file.err);
        assertFalse(file.out.contains("pass 1/2"), "refused before compute:\n" + file.out);
        assertEquals("a user's file", Files.readString(out.resolve("s.safetensors.parts")));
    }

    /**
     * A run that fails after its commit point (after its first file is published) says so, not
     * that the output is unchanged; the next run into the directory, whatever its options,
     * finishes that commit: every file, the succeeded report and _SUCCESS.
     */
    @Test
    void aFailureAfterTheCommitPointIsFinishedByTheNextRun() throws IOException {
        Path in = nestedInput();
        Path expected = tmp.resolve("expected");
        succeed(run(in, expected, "--recursive"));
        Path out = tmp.resolve("out");
        Outcome failed = JobHarness.failingAt("commit:1", run(in, out, "--recursive"));
        assertEquals(1, failed.status, failed.out + failed.err);
        assertTrue(failed.out.contains("failed after its commit point"), failed.out);
        // the commit says that it runs (forcing many files takes a while, and a stop waits for it)
        assertTrue(failed.out.contains("lightning: committing 2 output(s)"), failed.out);
        assertFalse(failed.out.contains("nothing was published"), failed.out);
        assertFalse(Files.exists(out.resolve("_SUCCESS")));
        Outcome next = succeed(run(in, out, "--recursive", "--overwrite"));
        assertTrue(next.out.contains("finishing the commit of interrupted run"), next.out);
        assertTrue(Files.exists(out.resolve("_SUCCESS")));
        assertTrue(Files.readString(out.resolve("_lightning_report.json")).contains("\"succeeded\""));
        for (String name : new String[] {"a/s.safetensors", "b/t.safetensors"}) {
            assertArrayEquals(Files.readAllBytes(expected.resolve(name)), Files.readAllBytes(out.resolve(name)), name);
        }
    }

    /**
     * A parts-form run with --overwrite into a directory without an earlier parts directory,
     * failing after its first part is published: the next run finishes the commit. NAME.parts/
     * then holds this run's own published parts, not an earlier result to move aside (moving it
     * aside had left the commit unfinishable: "neither staged nor published").
     */
    @Test
    void aPartsFormCommitInterruptedInItsFirstPartsIsFinished() throws IOException {
        Path in = Files.createDirectories(tmp.resolve("flat"));
        Sequence.random(18, 600, 2, 8, 6, DType.F32, null, false).write(in.resolve("s.safetensors"));
        Path expected = tmp.resolve("expected");
        succeed(run(in, expected, "--output-form", "parts"));
        Path out = tmp.resolve("out");
        Outcome failed = JobHarness.failingAt("commit:1", run(in, out, "--output-form", "parts", "--overwrite"));
        assertEquals(1, failed.status, failed.out + failed.err);
        assertTrue(Files.isDirectory(out.resolve("s.safetensors.parts")), "a first part is published");
        Outcome next = succeed(run(in, out, "--output-form", "parts", "--overwrite", "--resume"));
        assertTrue(next.out.contains("finishing the commit of interrupted run"), next.out);
        assertTrue(Files.exists(out.resolve("_SUCCESS")));
        Map<String, byte[]> want = snapshot(expected);
        Map<String, byte[]> got = snapshot(out);
        want.remove("_lightning_report.json");
        got.remove("_lightning_report.json");
        assertSameFiles(want, got);
    }

    /**
     * A symbolic link of the user's where a result goes counts as an existing file even when it
     * leads nowhere (its target unmounted or not yet written): without --overwrite the run is
     * refused before compute and the link stays.
     */
    @Test
    void aDanglingLinkWhereAResultGoesIsNotReplacedWithoutOverwrite() throws IOException {
        Path in = Files.createDirectories(tmp.resolve("flat"));
        Sequence.random(19, 300, 2, 8, 6, DType.F32, null, false).write(in.resolve("s.safetensors"));
        Path out = Files.createDirectories(tmp.resolve("out"));
        Path target = tmp.resolve("archive").resolve("s.safetensors");
        Files.createSymbolicLink(out.resolve("s.safetensors"), target);
        Outcome refused = lightning(run(in, out));
        assertEquals(2, refused.status, refused.out + refused.err);
        assertTrue(refused.err.contains("already holds"), refused.err);
        assertTrue(Files.isSymbolicLink(out.resolve("s.safetensors")), "the user's link stays");
        assertEquals(target, Files.readSymbolicLink(out.resolve("s.safetensors")));
    }

    /**
     * --overwrite replaces files only: a user's directory where an output file goes, or a parts
     * directory of that output's name that holds a file of the user's, refuses the run before
     * compute, and both stay as they were.
     */
    @Test
    void overwriteNeverReplacesADirectoryOfTheUsers() throws IOException {
        Path in = Files.createDirectories(tmp.resolve("flat"));
        Sequence.random(17, 300, 2, 8, 6, DType.F32, null, false).write(in.resolve("s.safetensors"));
        Path out = Files.createDirectories(tmp.resolve("out"));
        Files.createDirectories(out.resolve("s.safetensors").resolve("deep"));
        Files.writeString(out.resolve("s.safetensors").resolve("user.txt"), "keep");
        Outcome refused = lightning(run(in, out, "--overwrite"));
        assertEquals(2, refused.status, refused.out + refused.err);
        assertTrue(refused.err.contains("is a directory where an output file goes"), refused.err);
        assertEquals("keep", Files.readString(out.resolve("s.safetensors").resolve("user.txt")));

        Path out2 = Files.createDirectories(tmp.resolve("out2"));
        Files.createDirectories(out2.resolve("s.safetensors.parts"));
        Files.writeString(out2.resolve("s.safetensors.parts").resolve("notes.txt"), "keep");
        refused = lightning(run(in, out2, "--overwrite"));
        assertEquals(2, refused.status, refused.out + refused.err);
        assertTrue(refused.err.contains("not a part file of an earlier result"), refused.err);
        assertEquals("keep", Files.readString(out2.resolve("s.safetensors.parts").resolve("notes.txt")));
        assertFalse(Files.exists(out2.resolve("s.safetensors")));
    }

    /**
     * A commit record that is not whole (empty: what a power loss during its write leaves) is no
     * commit point: nothing of that run is published, no _SUCCESS is written, and --resume
     * continues it like any interrupted run, to the bytes of an uninterrupted one.
     */
    @Test
    void anIncompleteCommitRecordIsNoCommit() throws IOException {
        Path in = nestedInput();
        Path expected = tmp.resolve("expected");
        succeed(run(in, expected, "--recursive"));
        Path out = tmp.resolve("out");
        assertEquals(1, JobHarness.failingAt("pass2:2", run(in, out, "--recursive")).status);
        Path staging;
        try (Stream<Path> runs = Files.list(out.resolve("_temporary"))) {
            staging = runs.findFirst().orElseThrow();
        }
        Files.write(staging.resolve("commit.json"), new byte[0]);
        Outcome resumed = succeed(run(in, out, "--recursive", "--resume"));
        assertTrue(resumed.out.contains("commit record of interrupted run") && resumed.out.contains("is incomplete"),
                resumed.out);
        assertTrue(resumed.out.contains("resuming run"), resumed.out);
        for (String name : new String[] {"a/s.safetensors", "b/t.safetensors"}) {
            assertArrayEquals(Files.readAllBytes(expected.resolve(name)), Files.readAllBytes(out.resolve(name)), name);
        }
        assertTrue(Files.exists(out.resolve("_SUCCESS")));
    }

    /**
     * --overwrite replaces an output in either form: a one-file result after a parts-form one
     * leaves no index or parts beside it, and the parts form after a one-file result leaves no
     * one-file result. Without --overwrite the other form of a result refuses the run.
     */
    @Test
    void overwriteReplacesTheOtherFormOfAnOutput() throws IOException {
        Path in = Files.createDirectories(tmp.resolve("flat"));
        Sequence.random(13, 600, 2, 8, 6, DType.F32, null, false).write(in.resolve("s.safetensors"));
        Path out = tmp.resolve("out");
        succeed(run(in, out, "--output-form", "parts"));
        assertTrue(Files.exists(out.resolve("s.safetensors.index.json")));
        Outcome refused = lightning(run(in, out, "--output-form", "in-place"));
        assertEquals(2, refused.status, refused.err);
        assertTrue(refused.err.contains("already holds"), refused.err);
        succeed(run(in, out, "--output-form", "in-place", "--overwrite"));
        assertTrue(Files.exists(out.resolve("s.safetensors")));
        assertFalse(Files.exists(out.resolve("s.safetensors.index.json")), "the parts form's index went with it");
        assertFalse(Files.exists(out.resolve("s.safetensors.parts")), "and its parts");
        succeed(run(in, out, "--output-form", "parts", "--overwrite"));
        assertFalse(Files.exists(out.resolve("s.safetensors")), "the one-file result went");
        assertTrue(Files.exists(out.resolve("s.safetensors.index.json")));
        assertFalse(Files.exists(out.resolve("_temporary")));
    }

    /**
     * --resume refuses an input replaced by another of the same size whose modification time was
     * kept (cp -p, rsync -t): the fingerprint holds a sample of each input's content.
     */
    @Test
    void resumeRefusesAnInputReplacedWithTheSameSizeAndTime() throws IOException {
        Path in = Files.createDirectories(tmp.resolve("flat"));
        Path file = in.resolve("s.safetensors");
        Sequence.random(14, 600, 2, 8, 6, DType.F32, null, false).write(file);
        FileTime time = Files.getLastModifiedTime(file);
        long size = Files.size(file);
        Path out = tmp.resolve("out");
        assertEquals(1, JobHarness.failingAt("pass2:2", run(in, out)).status);
        Sequence.random(15, 600, 2, 8, 6, DType.F32, null, false).write(file);
        Files.setLastModifiedTime(file, time);
        assertEquals(size, Files.size(file));
        Outcome refused = lightning(run(in, out, "--resume"));
        assertEquals(2, refused.status, refused.out + refused.err);
        assertTrue(refused.err.contains("inputs") && refused.err.contains("without --resume"), refused.err);
    }

    /**
     * A read-only output directory is refused in one line with status 2. The directory is a
     * tmpfs mounted read-only for the test (needs root, as CI has); elsewhere the test says it
     * was skipped.
     */
    @Test
    void aReadOnlyOutputIsRefusedInOneLine() throws Exception {
        Path in = Files.createDirectories(tmp.resolve("flat"));
        Sequence.random(16, 100, 2, 8, 6, DType.F32, null, false).write(in.resolve("s.safetensors"));
        Path ro = Files.createDirectories(tmp.resolve("ro"));
        try (AutoCloseable mounted = JobHarness.tmpfs(ro, "ro,size=1m", "PublicationTest.aReadOnlyOutputIsRefusedInOneLine")) {
            Outcome refused = lightning(run(in, ro));
            assertEquals(2, refused.status, refused.out + refused.err);
            assertTrue(refused.err.contains("cannot write there"), refused.err);
            assertEquals(1, refused.err.strip().lines().count(), refused.err);
        }
    }
}
