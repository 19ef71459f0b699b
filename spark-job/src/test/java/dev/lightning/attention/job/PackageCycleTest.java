package dev.lightning.attention.job;

import org.junit.jupiter.api.Test;

import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * No package of the job refers to another that refers back to it, directly or through others: the
 * packages stand in one order, each using only those below it (today config, failure, hadoop and
 * exec at the bottom, then output, input, pass, softmax, tables, and job on top; a package this
 * test does not know fails it, to be placed in that order). Checked twice: in the
 * compiled classes (every class a class file names, whatever the source wrote: a type reached
 * through a method's result needs no import), and in the sources (imports and full names, javadoc
 * links and the constants the compiler copies into the class files included). Main and test code
 * both: a test lives in the package of what it tests.
 */
class PackageCycleTest {
    private static final String ROOT = "dev.lightning.attention.job";
    /** The job's packages, below the root. */
    private static final Set<String> PACKAGES = Set.of("", ".config", ".failure", ".hadoop", ".exec", ".output",
            ".input", ".pass", ".softmax", ".tables");
    /** A class of the job named in a class file: its package (below the root, '/'-separated) and its first letter. */
    private static final Pattern IN_CLASS_FILE = Pattern.compile(
            "dev/lightning/attention/job((?:/[a-z][a-z0-9_]*)*)/[A-Z]");
    /** A class of the job named in a source file, or a whole package ({@code import ...pass.*}). */
    private static final Pattern IN_SOURCE = Pattern.compile(
            "dev\\.lightning\\.attention\\.job((?:\\.[a-z][a-z0-9_]*)*)\\.(?:[A-Z]|\\*)");

    @Test
    void theCompiledClassesFormNoPackageCycle() throws IOException, URISyntaxException {
        Map<String, Map<String, Set<String>>> graph = new TreeMap<>();
        for (Class<?> c : List.of(LightningMain.class, PackageCycleTest.class)) { // target/classes, target/test-classes
            Path dir = Path.of(c.getProtectionDomain().getCodeSource().getLocation().toURI());
            for (Path f : files(dir.resolve(ROOT.replace('.', '/')), ".class")) {
                String from = packageOf(dir.relativize(f).getParent().toString().replace('/', '.'));
                for (String s : utf8Constants(f)) {
                    Matcher m = IN_CLASS_FILE.matcher(s);
                    while (m.find()) {
                        edge(graph, from, ROOT + m.group(1).replace('/', '.'), dir.relativize(f).toString());
                    }
                }
            }
        }
        assertNoCycle(graph);
    }

    /**
     * Below job.tables, no class names a class of Spark SQL (org.apache.spark.sql). Files runs
     * (safetensors in and out, --initial-states appends too) run from these packages and the root,
     * and the default lean runtime (bin/lean-runtime) leaves Spark SQL's jars out: until 6046797 a
     * safetensors append read a table directory's name from job.tables.TableRun, which loaded
     * Spark SQL's types, and stopped there with a NoClassDefFoundError. The root package reaches the
     * table run only through job.tables, whose classes load only for table runs.
     */
    @Test
    void thePackagesOfFilesRunsNameNoSparkSqlClass() throws IOException, URISyntaxException {
        Path dir = Path.of(LightningMain.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        List<String> found = new ArrayList<>();
        for (Path f : files(dir.resolve(ROOT.replace('.', '/')), ".class")) {
            String pkg = packageOf(dir.relativize(f).getParent().toString().replace('/', '.'));
            if (pkg.equals(ROOT + ".tables")) {
                continue;
            }
            for (String s : utf8Constants(f)) {
                if (s.contains("org/apache/spark/sql/")
                        || (s.contains("dev/lightning/attention/job/tables/") && !pkg.equals(ROOT))) {
                    found.add(dir.relativize(f) + ": " + s);
                }
            }
        }
        assertTrue(found.isEmpty(), "Spark SQL (or job.tables) named outside job.tables: " + found);
    }

    @Test
    void theSourcesFormNoPackageCycle() throws IOException {
        Map<String, Map<String, Set<String>>> graph = new TreeMap<>();
        for (Path dir : List.of(Path.of("src/main/java"), Path.of("src/test/java"))) {
            for (Path f : files(dir.resolve(ROOT.replace('.', '/')), ".java")) {
                String from = packageOf(dir.relativize(f).getParent().toString().replace('/', '.'));
                Matcher m = IN_SOURCE.matcher(Files.readString(f));
                while (m.find()) {
                    edge(graph, from, ROOT + m.group(1), f.toString());
                }
            }
        }
        assertNoCycle(graph);
    }

    private static String packageOf(String name) {
        assertTrue(PACKAGES.contains(name.substring(ROOT.length())), "a package this test does not know: " + name
                + "; add it to PACKAGES, and check where it stands in the order");
        return name;
    }

    private static void edge(Map<String, Map<String, Set<String>>> graph, String from, String to, String where) {
        graph.computeIfAbsent(to, k -> new TreeMap<>());
        if (!from.equals(to)) {
            graph.computeIfAbsent(from, k -> new TreeMap<>()).computeIfAbsent(to, k -> new TreeSet<>()).add(where);
        }
    }

    /** Fails with the first cycle found, and for each of its steps the files that make it. */
    private static void assertNoCycle(Map<String, Map<String, Set<String>>> graph) {
        assertEquals(PACKAGES.size(), graph.size(), "every package seen: " + graph.keySet());
        Map<String, Integer> state = new TreeMap<>(); // absent: not visited; 1: on the path; 2: done
        for (String start : graph.keySet()) {
            List<String> cycle = cycleFrom(graph, start, state, new ArrayList<>());
            if (cycle != null) {
                StringBuilder b = new StringBuilder("package cycle: ")
                        .append(String.join(" -> ", cycle.stream().map(PackageCycleTest::shortName).toList()));
                for (int i = 0; i + 1 < cycle.size(); i++) {
                    b.append("\n  ").append(shortName(cycle.get(i))).append(" -> ").append(shortName(cycle.get(i + 1)))
                            .append(": ").append(graph.get(cycle.get(i)).get(cycle.get(i + 1)));
                }
                fail(b.toString());
            }
        }
    }

    /** {@code job.input} for {@code dev.lightning.attention.job.input}. */
    private static String shortName(String pkg) {
        return "job" + pkg.substring(ROOT.length());
    }

    private static List<String> cycleFrom(Map<String, Map<String, Set<String>>> graph, String p,
                                          Map<String, Integer> state, List<String> path) {
        Integer s = state.get(p);
        if (s != null && s == 2) {
            return null;
        }
        path.add(p);
        if (s != null) { // on the path: the cycle is the path from its first visit
            return new ArrayList<>(path.subList(path.indexOf(p), path.size()));
        }
        state.put(p, 1);
        for (String next : graph.get(p).keySet()) {
            List<String> cycle = cycleFrom(graph, next, state, path);
            if (cycle != null) {
                return cycle;
            }
        }
        state.put(p, 2);
        path.remove(path.size() - 1);
        return null;
    }

    private static List<Path> files(Path dir, String suffix) throws IOException {
        assertTrue(Files.isDirectory(dir), dir + " is missing");
        try (Stream<Path> all = Files.walk(dir)) {
            return all.filter(f -> f.toString().endsWith(suffix)).sorted().toList();
        }
    }

    /**
     * The UTF-8 entries of a class file's constant pool: the names of the classes it refers to,
     * and the descriptors and signatures of its members and of those it calls (JVMS 4.4).
     */
    private static List<String> utf8Constants(Path classFile) throws IOException {
        List<String> found = new ArrayList<>();
        try (InputStream raw = Files.newInputStream(classFile); DataInputStream in = new DataInputStream(raw)) {
            assertEquals(0xCAFEBABE, in.readInt(), classFile + " is not a class file");
            in.readUnsignedShort(); // minor and major version
            in.readUnsignedShort();
            int count = in.readUnsignedShort();
            for (int i = 1; i < count; i++) {
                int tag = in.readUnsignedByte();
                switch (tag) {
                    case 1 -> found.add(in.readUTF()); // Utf8: u2 length and modified UTF-8, as readUTF reads it
                    case 7, 8, 16, 19, 20 -> in.skipNBytes(2); // Class, String, MethodType, Module, Package
                    case 15 -> in.skipNBytes(3); // MethodHandle
                    case 3, 4, 9, 10, 11, 12, 17, 18 -> in.skipNBytes(4); // numbers, member refs, NameAndType, dynamic
                    case 5, 6 -> { // Long, Double: two entries
                        in.skipNBytes(8);
                        i++;
                    }
                    default -> fail(classFile + ": constant pool tag " + tag + " at entry " + i);
                }
            }
        }
        return found;
    }
}
