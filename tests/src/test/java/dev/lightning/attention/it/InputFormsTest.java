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
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static dev.lightning.attention.it.JobHarness.lightning;
import static dev.lightning.attention.it.JobHarness.relativeError;
import static dev.lightning.attention.it.JobHarness.succeed;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The forms --input takes (a directory, one file, a list, a glob, a tree with --recursive), file
 * names any file system allows, and outputs that overlap the input, through the command line.
 */
class InputFormsTest {
    static final String MASTER = "local[2]";

    @TempDir
    Path tmp;

    /** Writes each sequence at its path relative to {@code dir}. */
    private Path write(String dir, Map<String, Sequence> files) throws IOException {
        return JobHarness.writeSequences(tmp.resolve(dir), files);
    }

    private static Outcome run(String input, Path output, String... more) {
        List<String> args = new ArrayList<>(List.of("run", "--input", input, "--output", output.toString(),
                "--master", MASTER, "--partition-tokens", "64"));
        args.addAll(List.of(more));
        return lightning(args.toArray(new String[0]));
    }

    private static Outcome done(Outcome o) {
        assertEquals(0, o.status, () -> "stdout:\n" + o.out + "\nstderr:\n" + o.err);
        return o;
    }

    /** Each expected result is in {@code out} under its name, equal to the float64 reference; nothing else is. */
    private static void results(Path out, Map<String, Sequence> expected) throws IOException {
        for (Map.Entry<String, Sequence> e : expected.entrySet()) {
            Path file = out.resolve(e.getKey());
            assertTrue(Files.isRegularFile(file), "missing result " + file);
            Result got = Result.read(file);
            Result ref = e.getValue().reference(1.0);
            assertTrue(relativeError(got.o, ref.o) <= 1e-5, e.getKey() + " o " + relativeError(got.o, ref.o));
            assertTrue(relativeError(got.state, ref.state) <= 1e-5, e.getKey() + " final state");
        }
        Set<String> want = new TreeSet<>(expected.keySet());
        want.add("_lightning_report.json");
        want.add("_SUCCESS");
        assertEquals(want, files(out).keySet(), "the results, the report and _SUCCESS, nothing else");
    }

    /** Every regular file below {@code dir} by relative path, with its bytes. */
    private static Map<String, byte[]> files(Path dir) throws IOException {
        Map<String, byte[]> m = new TreeMap<>();
        try (Stream<Path> all = Files.walk(dir)) {
            for (Path p : all.filter(Files::isRegularFile).collect(Collectors.toList())) {
                m.put(dir.relativize(p).toString(), Files.readAllBytes(p));
            }
        }
        return m;
    }

    private static void unchanged(Map<String, byte[]> before, Path dir) throws IOException {
        Map<String, byte[]> after = files(dir);
        assertEquals(before.keySet(), after.keySet(), "input files");
        for (String name : before.keySet()) {
            assertArrayEquals(before.get(name), after.get(name), name + " changed");
        }
    }

    private static void refused(Outcome o, String... phrases) {
        assertEquals(2, o.status, o.out + o.err);
        assertEquals(1, o.err.strip().lines().count(), "one line: " + o.err);
        for (String p : phrases) {
            assertTrue(o.err.contains(p), "expected '" + p + "' in: " + o.err);
        }
    }

    private static Sequence seq(long seed, int tokens) {
        return Sequence.random(seed, tokens, 2, 8, 12, DType.F32, null, seed % 2 == 0);
    }

    /** Names a URI parser reads differently; the 200-token one is split, so staging and the split outputs see it too. */
    @Test
    void oddFileNamesEachGetTheirOwnResult() throws IOException {
        Map<String, Sequence> files = new LinkedHashMap<>();
        files.put("run:1.safetensors", seq(1, 200));
        files.put("a b.safetensors", seq(2, 70));
        files.put("100%.safetensors", seq(3, 33));
        files.put("%41.safetensors", seq(4, 20));
        files.put("x#1.safetensors", seq(5, 129));
        files.put("q?.safetensors", seq(6, 5));
        files.put("x[1].safetensors", seq(7, 64));
        files.put("ünï.safetensors", seq(8, 1));
        Path in = write("in", files);
        Path out = tmp.resolve("out");
        Outcome o = done(run(in.toString(), out));
        assertTrue(o.out.contains("3 sequences split"), o.out); // run:1, "a b" and x#1
        results(out, files);
        // the same again with --overwrite replaces them in place
        Map<String, byte[]> first = files(out);
        done(run(in.toString(), out, "--overwrite"));
        for (String name : files.keySet()) {
            assertArrayEquals(first.get(name), files(out).get(name), name);
        }
    }

    @Test
    void oneFileAListAndAGlob() throws IOException {
        Sequence a = seq(11, 100);
        Sequence b = seq(12, 10);
        Sequence c = seq(13, 65);
        Sequence d = seq(14, 7);
        Path one = write("one", Map.of("run:1.safetensors", a, "other.safetensors", b));
        Path two = write("two", Map.of("c.safetensors", c, "d.safetensors", d, "_skip.safetensors", seq(15, 3)));

        Path single = tmp.resolve("single");
        succeed("run", "--input", one.resolve("run:1.safetensors").toString(), "--output", single.toString(),
                "--master", MASTER, "--partition-tokens", "64");
        results(single, Map.of("run:1.safetensors", a));

        Path list = tmp.resolve("list");
        done(run(one.resolve("run:1.safetensors") + "," + two, list));
        results(list, Map.of("run:1.safetensors", a, "c.safetensors", c, "d.safetensors", d));

        Path glob = tmp.resolve("glob");
        done(run(tmp + "/{one,two}/[c-o]*.safetensors", glob));
        results(glob, Map.of("other.safetensors", b, "c.safetensors", c, "d.safetensors", d));
    }

    @Test
    void recursiveKeepsTheTreeInTheOutput() throws IOException {
        Map<String, Sequence> files = new LinkedHashMap<>();
        files.put("top.safetensors", seq(21, 90));
        files.put("a/mid.safetensors", seq(22, 30));
        files.put("a/b c/run:1.safetensors", seq(23, 150));
        files.put("x/top.safetensors", seq(24, 2));
        Path in = write("tree", files);
        write("tree/_temporary", Map.of("junk.safetensors", seq(25, 3)));
        Path out = tmp.resolve("out");
        done(run(in.toString(), out, "--recursive"));
        results(out, files);

        Path flat = write("flat", Map.of("sub/only.safetensors", seq(26, 4)));
        refused(run(flat.toString(), tmp.resolve("flat-out")), "no *.safetensors files", "--recursive");
    }

    @Test
    void aWrongPathIsNoSuchFileOrDirectory() throws IOException {
        Path in = write("in", Map.of("s.safetensors", seq(31, 5)));
        for (String wrong : new String[] {tmp.resolve("nothing").toString(), in + "/s.safetensor",
                in + "/*.bin", in + "/s.safetensors," + tmp.resolve("gone")}) {
            Outcome o = run(wrong, tmp.resolve("out"));
            // a glob is told it matches nothing, as in a run over tables (it was "no such file or directory")
            refused(o, wrong.endsWith("*.bin") ? ": the glob matches no file or directory; correct the pattern"
                    : ": no such file or directory");
            assertFalse(o.err.contains("no such directory"), o.err);
            assertFalse(Files.exists(tmp.resolve("out")), "nothing created for a refused run");
        }
    }

    /** The data-loss case of issue 11: --output a link to the input, with --overwrite deleting "results". */
    @Test
    void anOutputLinkedToTheInputIsRefusedAndTheInputKept() throws IOException {
        Map<String, Sequence> files = new LinkedHashMap<>();
        files.put("a.safetensors", seq(41, 20));
        files.put("run:1.safetensors", seq(42, 80));
        Path in = write("in", files);
        Map<String, byte[]> before = files(in);
        Path link = Files.createSymbolicLink(tmp.resolve("link"), in);
        for (String[] extra : new String[][] {{}, {"--overwrite"}}) {
            Outcome o = run(in.toString(), link, extra);
            refused(o, "--output " + link, "(resolved: " + in.toRealPath() + ")", "is the same as the input",
                    "choose an output directory outside the input");
            unchanged(before, in);
        }
        // a link to the input as --input, the input directory itself as --output
        refused(run(link.toString(), in, "--overwrite"), "is the same as the input");
        unchanged(before, in);
        // under a linked parent, not existing yet
        Path linkedParent = Files.createSymbolicLink(tmp.resolve("parent-link"), tmp);
        refused(run(in.toString(), linkedParent.resolve("in"), "--overwrite"), "is the same as the input");
        unchanged(before, in);
    }

    @Test
    void anOutputInsideOrAroundTheInputIsRefused() throws IOException {
        Path in = write("in", Map.of("a.safetensors", seq(51, 20), "sub/b.safetensors", seq(52, 9)));
        Map<String, byte[]> before = files(in);
        refused(run(in.toString(), in.resolve("results")), "lies inside the input");
        refused(run(in.toString(), in.resolve("sub"), "--recursive", "--overwrite"), "lies inside the input");
        refused(run(in.resolve("sub").toString(), in, "--overwrite"), "contains the input");
        refused(run(in.resolve("a.safetensors").toString(), in, "--overwrite"), "contains the input");
        unchanged(before, in);
        assertFalse(Files.exists(in.resolve("results")), "the refused output was not created");
    }
}
