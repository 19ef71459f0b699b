package dev.lightning.attention.job.input;

import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.job.hadoop.HadoopPathsTest;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class InputListingTest {
    private static final Configuration CONF = new Configuration();
    /** The directory the tests run in, as a qualified local path with its trailing slash: where relative names go. */
    private static final String CWD = "file:" + java.nio.file.Path.of("").toAbsolutePath() + "/";

    @TempDir
    java.nio.file.Path tmp;

    private java.nio.file.Path file(String relative) throws IOException {
        java.nio.file.Path p = tmp.resolve(relative);
        Files.createDirectories(p.getParent());
        return Files.write(p, relative.getBytes(java.nio.charset.StandardCharsets.UTF_8));
    }

    private static List<InputFile> list(Object input, boolean recursive) throws IOException {
        return InputListing.list(CONF, input.toString(), recursive);
    }

    private static List<String> names(List<InputFile> files) {
        return files.stream().map(f -> f.name).collect(Collectors.toList());
    }

    /** Checks every listed file is the file of that name on disk, found through a qualified path. */
    private static void sameFiles(List<InputFile> files, java.nio.file.Path... expected) throws IOException {
        assertEquals(expected.length, files.size(), names(files).toString());
        for (int i = 0; i < expected.length; i++) {
            InputFile f = files.get(i);
            assertEquals("file", f.path().toUri().getScheme(), f.toString());
            java.nio.file.Path listed = java.nio.file.Paths.get(f.path().toUri().getPath());
            assertEquals(expected[i].toRealPath(), listed.toRealPath(), f.toString());
            assertEquals(Files.size(expected[i]), f.status.getLen());
            assertTrue(f.status.getBlockLocations().length >= 1, "block locations kept for task locality");
        }
    }

    @Test
    void aDirectoryGivesItsVisibleSafetensorsFilesSortedByName() throws IOException {
        java.nio.file.Path b = file("in/b.safetensors");
        java.nio.file.Path a = file("in/a.safetensors");
        file("in/.a.safetensors.inprogress-1");
        file("in/_SUCCESS");
        file("in/_c.safetensors");
        file("in/notes.txt");
        file("in/sub/d.safetensors");
        List<InputFile> files = list(tmp.resolve("in"), false);
        assertEquals(List.of("a.safetensors", "b.safetensors"), names(files));
        sameFiles(files, a, b);
        assertEquals(new Path(tmp.resolve("in").toUri().toString().replaceAll("/$", "")), files.get(0).root);
    }

    @Test
    void oddNamesAreListedUnderTheirOwnNames() throws IOException {
        List<java.nio.file.Path> expected = new ArrayList<>();
        List<String> sorted = new ArrayList<>();
        for (String n : HadoopPathsTest.ODD_NAMES) {
            if (n.endsWith(InputListing.SUFFIX)) {
                sorted.add(n);
            }
        }
        java.util.Collections.sort(sorted);
        for (String n : sorted) {
            expected.add(file("odd/" + n));
        }
        List<InputFile> files = list(tmp.resolve("odd"), false);
        assertEquals(sorted, names(files));
        sameFiles(files, expected.toArray(new java.nio.file.Path[0]));
        // and each one alone, named explicitly (a comma, brackets or a '?' in the name notwithstanding)
        for (int i = 0; i < sorted.size(); i++) {
            List<InputFile> one = list(expected.get(i), false);
            assertEquals(List.of(sorted.get(i)), names(one));
            sameFiles(one, expected.get(i));
            assertEquals(one.get(0).path(), one.get(0).root);
        }
    }

    /** A file whose output would take the name of the job's report, marker, lock or staging is refused. */
    @Test
    void reservedOutputNamesAreRefused() throws IOException {
        for (String name : new String[] {"_SUCCESS", "_lightning_report.json", "_lightning.lock"}) {
            java.nio.file.Path f = file("reserved/" + name);
            InvalidInputException e = assertThrows(InvalidInputException.class, () -> list(f, false));
            assertTrue(e.getMessage().contains(name) && e.getMessage().contains("rename"), e.getMessage());
        }
    }

    @Test
    void aFileNamedExplicitlyIsTakenWhateverItsName() throws IOException {
        java.nio.file.Path hidden = file("in/_x.bin");
        java.nio.file.Path plain = file("in/seq.data");
        sameFiles(list(hidden, false), hidden);
        assertEquals(List.of("_x.bin"), names(list(hidden, false)));
        assertEquals(List.of("seq.data"), names(list("file://" + plain, false)));
    }

    @Test
    void listsAndGlobsCombine() throws IOException {
        java.nio.file.Path a = file("one/a.safetensors");
        java.nio.file.Path b = file("two/b.safetensors");
        java.nio.file.Path c = file("three/c.safetensors");
        java.nio.file.Path d = file("three/d.safetensors");
        file("three/_e.safetensors");
        file("three/f.txt");
        String glob = tmp.resolve("three") + "/*.safetensors";
        List<InputFile> files = list(tmp.resolve("one") + "," + b + "," + glob, false);
        assertEquals(List.of("a.safetensors", "b.safetensors", "c.safetensors", "d.safetensors"), names(files));
        sameFiles(files, a, b, c, d);
        assertEquals(new Path(c.toUri()), files.get(2).root, "a glob's match is its own root");
        // Hadoop's globStatus fails on a directory holding a name with a colon; the listing does not
        java.nio.file.Path colon = file("three/run:1.safetensors");
        assertEquals(List.of("c.safetensors", "d.safetensors", "run:1.safetensors"), names(list(glob, false)));
        sameFiles(list(tmp + "/*/r?n:[0-9].safetensors", false), colon);
        sameFiles(list(tmp + "/th*/[c-d]*", false), c, d);
        // braces hold commas that do not separate list elements
        assertEquals(List.of("a.safetensors", "c.safetensors"),
                names(list(tmp + "/{one,three}/{a,c}.safetensors", false)));
        // and a comma after the braces close separates again
        assertEquals(List.of("a.safetensors", "b.safetensors", "c.safetensors"),
                names(list(tmp + "/{one,three}/{a,c}.safetensors," + b, false)));
        // the same file reached twice is listed once
        assertEquals(List.of("a.safetensors"), names(list(tmp.resolve("one") + "," + a, false)));
    }

    /**
     * A list splits at each comma outside glob braces, and nowhere else: a '}' with no '{' before it is a name's own
     * character, so the comma after it still separates; a comma first of all leaves an empty element, refused as
     * such; an element that is no valid path is named alone, not with the rest of the list.
     */
    @Test
    void aListSplitsAtTheCommasOutsideBraces() throws IOException {
        java.nio.file.Path brace = file("in/x}.safetensors");
        java.nio.file.Path plain = file("in/y.safetensors");
        sameFiles(list(brace + "," + plain, false), brace, plain);
        InvalidInputException empty = assertThrows(InvalidInputException.class, () -> list("," + plain, false));
        assertEquals("--input ," + plain + ": empty element in the comma-separated list; separate paths with single "
                + "commas", empty.getMessage());
        InvalidInputException invalid = assertThrows(InvalidInputException.class, () -> list("//[x," + plain, false));
        assertTrue(invalid.getMessage().startsWith("--input //[x: not a valid path or URI: "), invalid.getMessage());
    }

    @Test
    void aPathThatExistsIsTakenAsTypedEvenWithCommasAndGlobCharacters() throws IOException {
        java.nio.file.Path weird = file("x,y[1]*/p,q.safetensors");
        file("x/nothing.safetensors");
        sameFiles(list(tmp.resolve("x,y[1]*"), false), weird);
        sameFiles(list(weird, false), weird);
        // in a list, each element is tried as typed before as a glob
        java.nio.file.Path literal = file("y[1]*/nothing.safetensors");
        java.nio.file.Path other = file("z/r.safetensors");
        file("y1/nothing.safetensors");
        sameFiles(list(tmp.resolve("y[1]*") + "," + other, false), literal, other);
    }

    @Test
    void recursiveGivesNestedNamesAndSkipsHiddenDirectories() throws IOException {
        java.nio.file.Path top = file("tree/top.safetensors");
        java.nio.file.Path mid = file("tree/a/mid.safetensors");
        java.nio.file.Path deep = file("tree/a/b c/run:1.safetensors");
        file("tree/_temporary/x.safetensors");
        file("tree/.hidden/y.safetensors");
        file("tree/a/_z.safetensors");
        List<InputFile> files = list(tmp.resolve("tree"), true);
        assertEquals(List.of("a/b c/run:1.safetensors", "a/mid.safetensors", "top.safetensors"), names(files));
        sameFiles(files, deep, mid, top);
        for (InputFile f : files) {
            assertEquals(new Path(tmp.resolve("tree").toUri().toString().replaceAll("/$", "")), f.root);
            assertEquals(f.path(), HadoopPaths.child(f.root, f.name), "name is the path below the root");
        }
    }

    /**
     * A symbolic link back to a directory above it (`latest -> ..`) was followed at every level: one such
     * link listed each file 41 times (until the links nested too deep to resolve), two never finished
     * listing. Refused, naming the link and where it leads; a link to a directory elsewhere is followed.
     */
    @Test
    void recursiveRefusesALinkBackToADirectoryAboveIt() throws IOException {
        java.nio.file.Path top = file("loop/top.safetensors");
        java.nio.file.Path inner = file("loop/a/inner.safetensors");
        java.nio.file.Path elsewhere = file("elsewhere/e.safetensors");
        Files.createSymbolicLink(tmp.resolve("loop/other"), tmp.resolve("elsewhere"));
        assertEquals(List.of("a/inner.safetensors", "other/e.safetensors", "top.safetensors"),
                names(list(tmp.resolve("loop"), true)));
        sameFiles(list(tmp.resolve("loop"), true), inner, elsewhere, top);
        Files.createSymbolicLink(tmp.resolve("loop/a/up"), tmp.resolve("loop"));
        InvalidInputException e = assertThrows(InvalidInputException.class, () -> list(tmp.resolve("loop"), true));
        assertTrue(e.getMessage().startsWith("--input " + tmp.resolve("loop") + ": a/up leads back to "),
                e.getMessage());
        assertTrue(e.getMessage().contains("remove the link"), e.getMessage());
        // the hint that points to --recursive walks the same tree
        Files.delete(top);
        assertThrows(InvalidInputException.class, () -> list(tmp.resolve("loop"), false));
    }

    /** A sequence file that is a link to nothing is refused, not left out of the run without a word. */
    @Test
    void aLinkToAMissingSequenceFileIsRefused() throws IOException {
        java.nio.file.Path kept = file("links/a.safetensors");
        Files.createDirectories(tmp.resolve("links/sub"));
        Files.createSymbolicLink(tmp.resolve("links/sub/b.safetensors"), tmp.resolve("gone/b.safetensors"));
        sameFiles(list(tmp.resolve("links"), false), kept); // sub/ is not walked without --recursive
        InvalidInputException e = assertThrows(InvalidInputException.class, () -> list(tmp.resolve("links"), true));
        assertTrue(e.getMessage().startsWith("--input " + tmp.resolve("links") + ": sub/b.safetensors is a symbolic "
                + "link to " + tmp.resolve("gone/b.safetensors") + ", which does not exist"), e.getMessage());
        Files.createSymbolicLink(tmp.resolve("links/c.safetensors"), tmp.resolve("gone/c.safetensors"));
        assertThrows(InvalidInputException.class, () -> list(tmp.resolve("links"), false));
        // a link whose target exists is read as the file
        Files.delete(tmp.resolve("links/c.safetensors"));
        Files.createSymbolicLink(tmp.resolve("links/c.safetensors"), kept);
        assertEquals(List.of("a.safetensors", "c.safetensors"), names(list(tmp.resolve("links"), false)));
    }

    /**
     * A named pipe (or socket, or device) called like a sequence file is refused while listing: reading
     * its header would wait for a writer that never comes, and the run would hang before any task.
     */
    @Test
    void aNamedPipeAmongTheSequenceFilesIsRefused() throws Exception {
        file("pipes/a.safetensors");
        java.nio.file.Path pipe = tmp.resolve("pipes/b.safetensors");
        org.junit.jupiter.api.Assumptions.assumeTrue(mkfifo(pipe), "mkfifo is not available here");
        InvalidInputException e = org.junit.jupiter.api.Assertions.assertTimeoutPreemptively(
                java.time.Duration.ofSeconds(20),
                () -> assertThrows(InvalidInputException.class, () -> list(tmp.resolve("pipes"), false)));
        assertEquals("--input " + tmp.resolve("pipes") + ": b.safetensors is not a regular file (a named pipe, "
                + "socket or device) and cannot be read as a sequence; move it out of the input, or copy the "
                + "sequence into a file", e.getMessage());
        // named on its own, through a link, in a glob and below --recursive alike
        Files.createDirectories(tmp.resolve("pipes2/sub"));
        Files.move(pipe, tmp.resolve("pipes2/sub/b.safetensors"));
        Files.createSymbolicLink(tmp.resolve("pipes/c.safetensors"), tmp.resolve("pipes2/sub/b.safetensors"));
        for (Object input : List.of(tmp.resolve("pipes2/sub/b.safetensors"), tmp.resolve("pipes"),
                tmp.resolve("pipes") + "/*.safetensors")) {
            InvalidInputException f = org.junit.jupiter.api.Assertions.assertTimeoutPreemptively(
                    java.time.Duration.ofSeconds(20),
                    () -> assertThrows(InvalidInputException.class, () -> list(input, false)));
            assertTrue(f.getMessage().contains("is not a regular file"), f.getMessage());
        }
        Files.delete(tmp.resolve("pipes/c.safetensors"));
        assertEquals(List.of("a.safetensors"), names(list(tmp.resolve("pipes"), false)));
        InvalidInputException g = assertThrows(InvalidInputException.class, () -> list(tmp.resolve("pipes2"), true));
        assertTrue(g.getMessage().contains(": sub/b.safetensors is not a regular file"), g.getMessage());
    }

    /**
     * A file whose name the JVM cannot decode in its file name encoding (here a Latin-1 name, byte 0xF3, in a UTF-8
     * JVM; any non-ASCII name under LANG=C) was left out of the listing without a word, so the run computed and
     * published the other sequences with exit status 0. Refused, in a directory, a glob and a subdirectory alike.
     */
    @Test
    void aFileNameTheJvmCannotDecodeIsRefused() throws Exception {
        file("latin/a.safetensors");
        file("latin/sub/b.safetensors");
        // made by the shell: a Java String cannot name these bytes in a UTF-8 JVM
        boolean made = new ProcessBuilder("sh", "-c", "cp a.safetensors \"$(printf 'd\\363c.safetensors')\" && "
                + "mkdir \"$(printf 'd\\363r')\" && cp a.safetensors \"$(printf 'd\\363r')/c.safetensors\"")
                .directory(tmp.resolve("latin").toFile()).inheritIO().start().waitFor() == 0;
        org.junit.jupiter.api.Assumptions.assumeTrue(made, "no sh here");
        String encoding = System.getProperty("sun.jnu.encoding");
        org.junit.jupiter.api.Assumptions.assumeTrue("UTF-8".equals(encoding), "file name encoding " + encoding);
        for (Object input : List.of(tmp.resolve("latin"), tmp.resolve("latin") + "/*.safetensors")) {
            InvalidInputException e = assertThrows(InvalidInputException.class, () -> list(input, false), input.toString());
            assertTrue(e.getMessage().startsWith("--input " + input + ": d\uFFFDc.safetensors in " + tmp.resolve("latin")
                    + " has a name that is not valid UTF-8") && e.getMessage().contains("LANG=C.UTF-8"), e.getMessage());
        }
        // a glob that does not match the name takes the rest
        assertEquals(List.of("a.safetensors"), names(list(tmp.resolve("latin") + "/a*.safetensors", false)));
        // the file gone: a directory of that kind is refused only where --recursive would walk it
        new ProcessBuilder("sh", "-c", "rm \"$(printf 'd\\363c.safetensors')\"").directory(tmp.resolve("latin").toFile())
                .inheritIO().start().waitFor();
        assertEquals(List.of("a.safetensors"), names(list(tmp.resolve("latin"), false)));
        InvalidInputException r = assertThrows(InvalidInputException.class, () -> list(tmp.resolve("latin"), true));
        assertTrue(r.getMessage().contains(": d\uFFFDr in "), r.getMessage());
    }

    private static boolean mkfifo(java.nio.file.Path at) throws InterruptedException {
        try {
            return new ProcessBuilder("mkfifo", at.toString()).inheritIO().start().waitFor() == 0;
        } catch (IOException e) {
            return false;
        }
    }

    @Test
    void aDirectoryWithoutSequenceFilesSaysSoAndPointsToRecursive() throws IOException {
        file("nested/sub/a.safetensors");
        file("nested/readme.txt");
        InvalidInputException e = assertThrows(InvalidInputException.class, () -> list(tmp.resolve("nested"), false));
        assertTrue(e.getMessage().startsWith("--input " + tmp.resolve("nested") + ": no *.safetensors files in "),
                e.getMessage());
        assertTrue(e.getMessage().contains("--recursive") && e.getMessage().contains("sub/a.safetensors"),
                e.getMessage());
        file("empty/readme.txt");
        file("empty/_hidden/a.safetensors");
        InvalidInputException f = assertThrows(InvalidInputException.class, () -> list(tmp.resolve("empty"), false));
        assertTrue(f.getMessage().contains("no *.safetensors files in"), f.getMessage());
        assertFalse(f.getMessage().contains("--recursive"), f.getMessage());
        InvalidInputException g = assertThrows(InvalidInputException.class, () -> list(tmp.resolve("empty"), true));
        assertTrue(g.getMessage().contains("or its subdirectories"), g.getMessage());
    }

    /** A path that names nothing, and a name that is no valid glob; a glob is told it matches nothing (below). */
    @Test
    void whatMatchesNothingIsNoSuchFileOrDirectory() throws IOException {
        file("in/a.safetensors");
        for (String missing : new String[] {tmp.resolve("nothing").toString(),
                tmp + "/in/x[1.safetensors", tmp + "/in/a.safetensors," + tmp + "/gone"}) {
            InvalidInputException e = assertThrows(InvalidInputException.class, () -> list(missing, false));
            assertTrue(e.getMessage().startsWith("--input ") && e.getMessage().endsWith(": no such file or directory; "
                    + "correct the name or the directory it is in"), e.getMessage());
            assertFalse(e.getMessage().contains("no such directory"));
        }
        InvalidInputException last = assertThrows(InvalidInputException.class,
                () -> list(tmp + "/in/a.safetensors," + tmp + "/gone", false));
        assertEquals("--input " + tmp + "/gone: no such file or directory; correct the name or the directory it is in",
                last.getMessage());
        file("in/_b.safetensors");
        InvalidInputException hidden = assertThrows(InvalidInputException.class,
                () -> list(tmp + "/in/_*", false));
        assertTrue(hidden.getMessage().contains("starting with '.' or '_'"), hidden.getMessage());
        InvalidInputException empty = assertThrows(InvalidInputException.class,
                () -> list(tmp + "/in/a.safetensors,,x", false));
        assertTrue(empty.getMessage().contains("empty element"), empty.getMessage());
    }

    /**
     * A glob that matches nothing, or only names a glob skips, is told the same in a run over files and a run over
     * tables, from one place: what was given, that it matched nothing, and what to do. A files run said "no such file
     * or directory" for a glob, a tables run "matches no file or directory (a glob skips ...)" for both.
     */
    @Test
    void aGlobThatMatchesNothingIsToldTheSameInEveryRun() throws IOException {
        file("in/a.safetensors");
        file("in/_b.safetensors");
        String none = tmp + "/in/*.bin";
        String hidden = tmp + "/in/_*";
        for (String glob : new String[] {none, hidden}) {
            String files = assertThrows(InvalidInputException.class, () -> list(glob, false)).getMessage();
            String tables = assertThrows(InvalidInputException.class,
                    () -> InputListing.tablePaths(CONF, "--input", glob)).getMessage();
            assertEquals(files, tables);
        }
        assertEquals("--input " + none + ": the glob matches no file or directory; correct the pattern or the "
                + "directory it looks in", assertThrows(InvalidInputException.class, () -> list(none, false))
                .getMessage());
        assertEquals("--input " + hidden + ": matches only names starting with '.' or '_', which a glob skips; name "
                + "such a file without wildcards to take it", assertThrows(InvalidInputException.class,
                () -> list(hidden, false)).getMessage());
    }

    /**
     * A path that does not exist says what to do, as a glob that matches nothing does, the same in a run over files
     * and one over tables: it said only "no such file or directory". A relative one also says where it was looked
     * for (the directory the command ran in), which its name alone does not show.
     */
    @Test
    void aMissingPathSaysWhatToDoInEveryRun() throws IOException {
        String absolute = tmp + "/gone.safetensors";
        String relative = "gone-" + tmp.getFileName() + ".safetensors";
        for (String missing : new String[] {absolute, relative}) {
            String files = assertThrows(InvalidInputException.class, () -> list(missing, false)).getMessage();
            String tables = assertThrows(InvalidInputException.class,
                    () -> InputListing.tablePaths(CONF, "--input", missing)).getMessage();
            assertEquals(files, tables);
        }
        assertEquals("--input " + absolute + ": no such file or directory; correct the name or the directory it is in",
                assertThrows(InvalidInputException.class, () -> list(absolute, false)).getMessage());
        assertEquals("--sequences " + relative + ": no such file or directory (resolved: " + CWD + relative + "); "
                + "correct the name or the directory it is in", assertThrows(InvalidInputException.class,
                () -> InputListing.tablePaths(CONF, "--sequences", relative)).getMessage());
    }

    /**
     * A table input (--input or --sequences of a run over parquet): each element itself where it exists (a table
     * directory is not listed: the Parquet reader takes it whole), else its glob's matches without hidden names,
     * commas inside braces kept; what matches nothing is named with the flag.
     */
    @Test
    void tablePathsTakeDirectoriesAndGlobs() throws IOException {
        file("t/day=1/part-0.parquet");
        file("t/day=2/part-0.parquet");
        file("t/day=3/part-0.parquet");
        file("t/_day=4/part-0.parquet");
        file("u/part-0.parquet");
        String base = tmp.toUri().getPath();
        java.util.function.Function<List<Path>, List<String>> rel = ps -> ps.stream()
                .map(p -> p.toUri().getPath().substring(base.length())).collect(Collectors.toList());
        List<Path> whole = InputListing.tablePaths(CONF, "--input", tmp.resolve("t").toString());
        assertEquals(1, whole.size(), whole.toString());
        assertEquals("file", whole.get(0).toUri().getScheme(), "qualified");
        assertEquals(List.of("t/day=1", "t/day=2", "t/day=3"),
                rel.apply(InputListing.tablePaths(CONF, "--input", tmp + "/t/*")));
        assertEquals(List.of("t/day=1", "t/day=3", "u"),
                rel.apply(InputListing.tablePaths(CONF, "--input", tmp + "/t/day={1,3}," + tmp + "/u")));
        assertEquals(List.of("t/day=2/part-0.parquet"),
                rel.apply(InputListing.tablePaths(CONF, "--sequences", tmp + "/t/day=2/*.parquet")));
        InvalidInputException none = assertThrows(InvalidInputException.class,
                () -> InputListing.tablePaths(CONF, "--sequences", tmp + "/t/day=9*"));
        assertEquals("--sequences " + tmp + "/t/day=9*: the glob matches no file or directory; correct the pattern "
                + "or the directory it looks in", none.getMessage());
        InvalidInputException missing = assertThrows(InvalidInputException.class,
                () -> InputListing.tablePaths(CONF, "--input", tmp + "/u," + tmp + "/gone"));
        assertEquals("--input " + tmp + "/gone: no such file or directory; correct the name or the directory it is in",
                missing.getMessage());
        InvalidInputException spaced = assertThrows(InvalidInputException.class,
                () -> InputListing.tablePaths(CONF, "--input", tmp + "/u, " + tmp + "/t"));
        // (a name that starts with a space is relative: where it was looked for shows that space too)
        assertEquals("--input  " + tmp + "/t: no such file or directory (resolved: " + CWD + " " + tmp + "/t); correct "
                + "the name or the directory it is in (the name has spaces around it: separate the paths of a list with "
                + "commas alone)", spaced.getMessage());
    }

    @Test
    void twoFilesForOneOutputNameAreRefused() throws IOException {
        java.nio.file.Path a1 = file("one/a.safetensors");
        java.nio.file.Path a2 = file("two/a.safetensors");
        InvalidInputException e = assertThrows(InvalidInputException.class,
                () -> list(tmp.resolve("one") + "," + tmp.resolve("two"), false));
        assertTrue(e.getMessage().contains(a1.toString()) && e.getMessage().contains(a2.toString())
                && e.getMessage().contains("as a.safetensors"), e.getMessage());
        InvalidInputException g = assertThrows(InvalidInputException.class,
                () -> list(tmp + "/*/a.safetensors", false));
        assertTrue(g.getMessage().contains("both be written as a.safetensors"), g.getMessage());
        // with --recursive from their common parent the names differ
        assertEquals(List.of("one/a.safetensors", "two/a.safetensors"), names(list(tmp, true)));
    }

    /** Counts the reads of a status's permission, owner and group: forks of {@code ls -ld} per file on the raw local file system. */
    static final java.util.concurrent.atomic.AtomicInteger PERMISSION_READS = new java.util.concurrent.atomic.AtomicInteger();

    /** The local file system whose statuses count {@link #PERMISSION_READS}. */
    public static final class CountingLocalFileSystem extends org.apache.hadoop.fs.LocalFileSystem {
        public CountingLocalFileSystem() {
            super(new org.apache.hadoop.fs.RawLocalFileSystem() {
                @Override
                public org.apache.hadoop.fs.FileStatus[] listStatus(Path f) throws IOException {
                    org.apache.hadoop.fs.FileStatus[] all = super.listStatus(f);
                    for (int i = 0; i < all.length; i++) {
                        all[i] = all[i] instanceof Counted ? all[i] : new Counted(all[i]); // listStatus may call getFileStatus
                    }
                    return all;
                }

                @Override
                public org.apache.hadoop.fs.FileStatus getFileStatus(Path f) throws IOException {
                    return new Counted(super.getFileStatus(f));
                }
            });
        }
    }

    private static final class Counted extends org.apache.hadoop.fs.FileStatus {
        private static final long serialVersionUID = 1L;

        Counted(org.apache.hadoop.fs.FileStatus s) throws IOException {
            super(s);
        }

        @Override
        public org.apache.hadoop.fs.permission.FsPermission getPermission() {
            PERMISSION_READS.incrementAndGet();
            return super.getPermission();
        }

        @Override
        public String getOwner() {
            PERMISSION_READS.incrementAndGet();
            return super.getOwner();
        }

        @Override
        public String getGroup() {
            PERMISSION_READS.incrementAndGet();
            return super.getGroup();
        }
    }

    /**
     * The listing reads no file's permission, owner or group: without the Hadoop native library the raw local
     * file system reads them by forking {@code ls -ld} per file, and building a located status from them took
     * 45 s for a directory of 2,000 files (the whole run 83 s, its compute 18 s).
     */
    @Test
    void listingReadsNoPermissionsOwnersOrGroups() throws IOException {
        java.nio.file.Path a = file("in/a.safetensors");
        java.nio.file.Path b = file("in/b.safetensors");
        java.nio.file.Path c = file("in/sub/c.safetensors");
        Configuration conf = new Configuration();
        conf.set("fs.file.impl", CountingLocalFileSystem.class.getName());
        conf.setBoolean("fs.file.impl.disable.cache", true);
        PERMISSION_READS.set(0);
        List<InputFile> dir = InputListing.list(conf, tmp.resolve("in").toString(), true);
        sameFiles(dir, a, b, c);
        List<InputFile> glob = InputListing.list(conf, tmp + "/in/*.safetensors", false);
        sameFiles(glob, a, b);
        List<InputFile> one = InputListing.list(conf, a.toString(), false);
        sameFiles(one, a);
        assertEquals(0, PERMISSION_READS.get(), "permission, owner or group reads while listing");
    }
}
