package dev.lightning.attention.engine;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

class EngineBuildTest {
    @TempDir
    Path tmp;

    private static void write(Path root, String name, String content) throws Exception {
        Path f = root.resolve(name);
        Files.createDirectories(f.getParent());
        Files.writeString(f, content);
    }

    @Test
    void thisBuildHasADigest() {
        String d = EngineBuild.digest();
        assertNotNull(d, "the classes' location is readable in a Maven build");
        assertTrue(d.matches("[0-9a-f]{32}"), d);
        assertEquals(d, EngineBuild.digest());
    }

    /**
     * The digest follows the engine's code (a class, a kernel's PTX, the plan), not what lies beside
     * it (the job's classes, the benchmarks), and is the same for a directory and a jar of the same
     * files, in whatever order the jar holds them.
     */
    @Test
    void theDigestFollowsTheComputingCodeAlone() throws Exception {
        Path dir = tmp.resolve("classes");
        write(dir, "dev/lightning/attention/engine/cpu/CpuBackend.class", "cpu 1");
        write(dir, "dev/lightning/attention/engine/cuda/lightning.ptx", "ptx 1");
        write(dir, "dev/lightning/attention/plan/PiecePlanner.class", "plan 1");
        write(dir, "dev/lightning/attention/job/LightningMain.class", "job 1");
        String base = EngineBuild.digest(List.of(dir));

        Path jar = tmp.resolve("app.jar");
        try (JarOutputStream out = new JarOutputStream(Files.newOutputStream(jar))) {
            for (String name : List.of("dev/lightning/attention/plan/PiecePlanner.class",
                    "dev/lightning/attention/engine/cuda/lightning.ptx", "dev/lightning/attention/engine/cpu/CpuBackend.class")) {
                JarEntry e = new JarEntry(name);
                e.setTime(12345L);
                out.putNextEntry(e);
                out.write(Files.readAllBytes(dir.resolve(name)));
                out.closeEntry();
            }
        }
        assertEquals(base, EngineBuild.digest(List.of(jar)), "a jar of the same files");

        write(dir, "dev/lightning/attention/job/LightningMain.class", "job 2");
        write(dir, "dev/lightning/attention/bench/KernelBench.class", "bench");
        assertEquals(base, EngineBuild.digest(List.of(dir)), "the job's wiring and the benchmarks do not count");

        for (String[] change : new String[][] {
                {"dev/lightning/attention/engine/cuda/lightning.ptx", "ptx 2"},
                {"dev/lightning/attention/plan/PiecePlanner.class", "plan 2"},
                {"dev/lightning/attention/tensor/Dtype.class", "new"}}) {
            Path copy = tmp.resolve("copy-" + change[1].replace(' ', '-'));
            copyTree(dir, copy);
            write(copy, change[0], change[1]);
            assertNotEquals(base, EngineBuild.digest(List.of(copy)), change[0]);
        }
    }

    private static void copyTree(Path from, Path to) throws Exception {
        try (var walk = Files.walk(from)) {
            for (Path p : (Iterable<Path>) walk::iterator) {
                Path q = to.resolve(from.relativize(p).toString());
                if (Files.isDirectory(p)) {
                    Files.createDirectories(q);
                } else {
                    Files.copy(p, q);
                }
            }
        }
    }
}
