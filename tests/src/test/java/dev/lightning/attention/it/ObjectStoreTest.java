package dev.lightning.attention.it;

import dev.lightning.attention.it.JobHarness.Outcome;
import dev.lightning.attention.it.JobHarness.Sequence;
import dev.lightning.attention.job.input.RunFingerprint;
import dev.lightning.attention.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static dev.lightning.attention.it.JobHarness.lightning;
import static dev.lightning.attention.it.JobHarness.succeed;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Runs on a simulated object store ({@link ObjectStoreFileSystem}: a rename copies each file, then
 * deletes the sources; it never replaces a file), whose commit is cut short part way through a
 * rename, the copies made and the sources not yet deleted. The next run into the directory must
 * finish the commit as on a file system whose renames are single steps: it failed for good
 * ("exists and the run was not started with --overwrite"), and with --overwrite moved the part
 * already copied aside and published a table without it.
 */
class ObjectStoreTest {
    @TempDir
    Path tmp;

    private static String[] run(Path in, Path out, String... more) {
        List<String> a = new ArrayList<>(List.of("run", "--input", ObjectStoreFileSystem.SCHEME + "://" + in,
                "--output", ObjectStoreFileSystem.SCHEME + "://" + out, "--master", "local[2]", "--backend", "cpu",
                "--partition-tokens", "128", "--conf", ObjectStoreFileSystem.conf()));
        a.addAll(List.of(more));
        return a.toArray(new String[0]);
    }

    /** {@code args} run with the store's renames into or out of the staging failing once {@code files} files were copied. */
    private static Outcome cutShort(int files, String... args) {
        ObjectStoreFileSystem.failPublishAfter(files);
        try {
            return lightning(args);
        } finally {
            ObjectStoreFileSystem.failPublishAfter(-1);
        }
    }

    private Path input() throws IOException {
        Path in = Files.createDirectories(tmp.resolve("in"));
        Sequence.random(1, 300, 2, 8, 6, DType.F32, null, false).write(in.resolve("a.safetensors"));
        Sequence.random(2, 50, 2, 8, 6, DType.F32, null, false).write(in.resolve("b.safetensors"));
        return in;
    }

    /** Every file below {@code dir} (relative path to bytes), without the run report and hidden files. */
    private static Map<String, byte[]> files(Path dir) throws IOException {
        Map<String, byte[]> all = new TreeMap<>();
        try (var walk = Files.walk(dir)) {
            for (Path p : (Iterable<Path>) walk::iterator) {
                String rel = dir.relativize(p).toString();
                if (Files.isRegularFile(p) && !rel.equals("_lightning_report.json") && !p.getFileName().toString()
                        .startsWith(".")) {
                    all.put(rel, Files.readAllBytes(p));
                }
            }
        }
        return all;
    }

    private static void assertSameFiles(Map<String, byte[]> want, Map<String, byte[]> got, String what) {
        assertEquals(want.keySet(), got.keySet(), what);
        for (String name : want.keySet()) {
            assertArrayEquals(want.get(name), got.get(name), what + ": " + name);
        }
    }

    /** The staging directory of the one interrupted run in {@code out}. */
    private static Path staging(Path out) throws IOException {
        List<Path> staged;
        try (var list = Files.list(out.resolve("_temporary"))) {
            staged = list.toList();
        }
        assertEquals(1, staged.size(), staged.toString());
        return staged.get(0);
    }

    /** The tables still staged by the one interrupted run in {@code out}, by path below out. */
    private static Map<String, byte[]> stagedTables(Path out) throws IOException {
        return files(staging(out).resolve("files"));
    }

    /**
     * What the interrupted commit in {@code out} publishes: the files still staged, and those its
     * moves already put in place: the tables' files that are not {@code old}'s (the earlier
     * tables'), and in a table whose old files all went aside already (into the staging's
     * replaced/), every file, since what stands there now is this run's. (o/_SUCCESS has its name
     * in both the old and the new table: whether the new one was among the files copied before
     * the cut depends on the order the store copies a directory in, the local listing order.)
     */
    private static Map<String, byte[]> published(Path out, Map<String, byte[]> old) throws IOException {
        Map<String, byte[]> all = stagedTables(out);
        Path replaced = staging(out).resolve("replaced");
        for (Map.Entry<String, byte[]> e : tables(out).entrySet()) {
            String table = e.getKey().substring(0, e.getKey().indexOf('/') + 1);
            boolean oldAside = old.keySet().stream().filter(k -> k.startsWith(table))
                    .allMatch(k -> Files.exists(replaced.resolve(k)));
            if (!old.containsKey(e.getKey()) || oldAside) {
                all.put(e.getKey(), e.getValue());
            }
        }
        return all;
    }

    private static Map<String, byte[]> tables(Path out) throws IOException {
        Map<String, byte[]> all = files(out);
        all.keySet().removeIf(k -> !k.startsWith("o/") && !k.startsWith("final_states/"));
        return all;
    }

    /**
     * A table run whose commit is cut short while the store moves o/ (two of its files moved; then,
     * over earlier tables with --overwrite, while it moves the old o/ aside, and while it moves the
     * new one): the next run finishes it, and the tables hold exactly the run's files. Before,
     * without --overwrite the output directory was stuck (every later run failed), and with it the
     * next run moved the two files already in o/ aside as an "old" table and published o/ without
     * them, saying done.
     */
    @Test
    void aTableCommitCutShortByTheStoreIsFinished() throws IOException {
        Path in = input();
        for (String overwrite : new String[] {"--overwrite", ""}) {
            Path out = tmp.resolve("tables" + overwrite);
            String[] args = overwrite.isEmpty() ? run(in, out, "--output-format", "parquet")
                    : run(in, out, "--output-format", "parquet", overwrite);
            Outcome cut = cutShort(2, args);
            assertEquals(1, cut.status, cut.out + cut.err);
            assertTrue(Files.exists(out.resolve("o")), "o/ is partly moved");
            Map<String, byte[]> staged = published(out, Map.of());
            Outcome next = succeed(args);
            assertTrue(next.out.contains("finishing the commit of interrupted run"), next.out);
            assertTrue(Files.exists(out.resolve("_SUCCESS")));
            assertFalse(Files.exists(out.resolve("_temporary")));
            assertSameFiles(staged, tables(out), "tables " + overwrite);
        }
        // over earlier tables: cut short while the old o/ goes aside, and while the new one is copied
        for (int copied : new int[] {1, 5}) {
            Path out = tmp.resolve("tables-over-" + copied);
            succeed(run(in, out, "--output-format", "parquet"));
            Map<String, byte[]> old = tables(out);
            String[] args = run(in, out, "--output-format", "parquet", "--overwrite");
            Outcome cut = cutShort(copied, args);
            assertEquals(1, cut.status, cut.out + cut.err);
            Map<String, byte[]> staged = published(out, old);
            Outcome next = succeed(args);
            assertTrue(next.out.contains("finishing the commit of interrupted run"), next.out);
            assertSameFiles(staged, tables(out), "tables over earlier ones, cut after " + copied);
        }
    }

    /**
     * A files run (parts form, the only one an object store gets) cut short after each number of
     * files copied, into a new directory and over an earlier result with --overwrite: the next run
     * finishes the commit, and the directory holds what an uninterrupted run publishes.
     */
    @Test
    void aFilesCommitCutShortByTheStoreIsFinished() throws IOException {
        Path in = input();
        Path expected = tmp.resolve("expected");
        succeed(run(in, expected));
        Map<String, byte[]> want = files(expected);
        for (int copied = 1; copied <= 6; copied++) {
            Path fresh = tmp.resolve("fresh-" + copied);
            Outcome cut = cutShort(copied, run(in, fresh));
            if (cut.status == 0) { // fewer files than that: nothing was cut short
                continue;
            }
            Outcome next = succeed(run(in, fresh));
            assertTrue(next.out.contains("finishing the commit of interrupted run"), next.out);
            assertSameFiles(want, files(fresh), "new directory, cut after " + copied);

            Path over = tmp.resolve("over-" + copied);
            succeed(run(in, over, "--state-every", "64")); // an earlier result of other bytes
            cut = cutShort(copied, run(in, over, "--overwrite"));
            assertEquals(1, cut.status, cut.out + cut.err);
            next = succeed(run(in, over, "--overwrite"));
            assertTrue(next.out.contains("finishing the commit of interrupted run"), next.out);
            assertSameFiles(want, files(over), "over an earlier result, cut after " + copied);
        }
    }

    /**
     * The driver's check that no input changed while a run read it (RunFingerprint.lookUp) asks a
     * store for a directory of many inputs with one listing, not a status call per file (a HEAD
     * each on S3: minutes for 100,000 inputs), and sees what those calls see: each file's size,
     * a rewritten file, a deleted one, a directory gone. A directory of few inputs is asked file by
     * file, as is the local file system.
     */
    @Test
    void theInputCheckListsADirectoryOfManyInputsOnce() throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("many"));
        int n = RunFingerprint.LIST_FROM + 4;
        List<org.apache.hadoop.fs.Path> paths = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Path f = dir.resolve(String.format(java.util.Locale.ROOT, "f%02d.safetensors", i));
            Files.write(f, new byte[10 + i]);
            paths.add(new org.apache.hadoop.fs.Path(ObjectStoreFileSystem.SCHEME + "://" + f));
        }
        Files.write(dir.resolve("other.txt"), new byte[3]); // listed, not asked for
        org.apache.hadoop.conf.Configuration conf = new org.apache.hadoop.conf.Configuration();
        conf.set("fs." + ObjectStoreFileSystem.SCHEME + ".impl", ObjectStoreFileSystem.class.getName());

        Map<org.apache.hadoop.fs.Path, org.apache.hadoop.fs.FileStatus> now = lookUpCounting(conf, paths, 0, 1);
        assertEquals(n, now.size());
        for (int i = 0; i < n; i++) {
            assertEquals(10 + i, now.get(paths.get(i)).getLen(), paths.get(i).toString());
        }

        Files.delete(dir.resolve("f03.safetensors"));
        Files.write(dir.resolve("f07.safetensors"), new byte[1000]);
        now = lookUpCounting(conf, paths, 0, 1);
        assertFalse(now.containsKey(paths.get(3)), "a deleted file has no status");
        assertEquals(1000, now.get(paths.get(7)).getLen());
        assertEquals(n - 1, now.size());

        List<org.apache.hadoop.fs.Path> few = paths.subList(2, 5); // f03 among them: gone
        now = lookUpCounting(conf, few, 3, 0);
        assertEquals(2, now.size());

        try (var list = Files.list(dir)) {
            for (Path f : (Iterable<Path>) list::iterator) {
                Files.delete(f);
            }
        }
        Files.delete(dir);
        assertTrue(lookUpCounting(conf, paths, 0, 1).isEmpty(), "a directory gone takes its files with it");
    }

    /** RunFingerprint.lookUp of {@code paths}, asserting the store saw that many status calls and listings. */
    private static Map<org.apache.hadoop.fs.Path, org.apache.hadoop.fs.FileStatus> lookUpCounting(
            org.apache.hadoop.conf.Configuration conf, List<org.apache.hadoop.fs.Path> paths, int statusCalls,
            int listings) throws IOException {
        ObjectStoreFileSystem.statusCalls.set(0);
        ObjectStoreFileSystem.listCalls.set(0);
        Map<org.apache.hadoop.fs.Path, org.apache.hadoop.fs.FileStatus> now = RunFingerprint.lookUp(conf, paths);
        assertEquals(statusCalls, ObjectStoreFileSystem.statusCalls.get(), "status calls");
        assertEquals(listings, ObjectStoreFileSystem.listCalls.get(), "listings");
        return now;
    }

    /**
     * A store that fills up while the run stages its work: the run ends with status 1 and one line on stderr saying
     * the file system is full and what to do, with no trace (Spark's and the JDK's name no file); the advice to
     * --resume comes also when the failed run's report cannot be staged either (it came after that write, and went
     * with it); the earlier result stays as it was, and --resume with room again finishes the run.
     */
    @Test
    void aStoreThatFillsUpWhileStagingEndsInOneLineAndResumes() throws IOException {
        Path in = input();
        Path out = tmp.resolve("out");
        succeed(run(in, out, "--state-every", "64")); // an earlier result of other bytes
        Map<String, byte[]> earlier = files(out);
        ObjectStoreFileSystem.fillStagingAfter(4096); // past run.json, before the staged states and outputs
        Outcome full;
        try {
            full = lightning(run(in, out, "--overwrite"));
        } finally {
            ObjectStoreFileSystem.fillStagingAfter(-1);
        }
        String shown = "status " + full.status + "\nstdout:\n" + full.out + "\nstderr:\n" + full.err;
        assertEquals(1, full.status, shown);
        assertFalse(full.err.strip().contains("\n") || full.err.contains("\tat "), "expected one line:\n" + shown);
        assertTrue(full.err.contains("is full (No space left on device)") && full.err.contains("free some space"), shown);
        assertTrue(full.out.contains("rerun with --resume to keep the work done so far"), shown);
        Map<String, byte[]> after = files(out);
        assertTrue(after.keySet().removeIf(name -> name.startsWith("_temporary/")), "the staging kept for --resume");
        assertSameFiles(earlier, after, "the earlier result after the failed run");

        Outcome resumed = succeed(run(in, out, "--overwrite", "--resume"));
        assertTrue(resumed.out.contains("resuming run"), resumed.out);
        Path expected = tmp.resolve("expected");
        succeed(run(in, expected));
        assertSameFiles(files(expected), files(out), "the resumed run");
    }
}
