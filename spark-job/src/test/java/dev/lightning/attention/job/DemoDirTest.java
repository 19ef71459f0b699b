package dev.lightning.attention.job;

import dev.lightning.attention.job.output.Staging;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code lightning demo --dir DIR} writes its input into DIR/input, runs every file there and replaces the results in
 * DIR/output (--overwrite). Given a directory of the user's, it wrote its input through a symbolic link of a demo
 * file's name into the file the link led to (outside DIR), replaced the user's files of the demo's names, ran the
 * user's other inputs and replaced their results. It now refuses such a directory before it writes anything, and
 * writes its files aside, replacing a link rather than writing through it.
 */
class DemoDirTest {
    @TempDir
    Path tmp;

    @Test
    void aDirectoryHoldingWhatNoDemoWroteIsRefusedAndLeftAsItWas() throws Exception {
        Path mine = Files.writeString(tmp.resolve("mine.bin"), "the user's data");
        Path linked = Files.createDirectories(tmp.resolve("linked/input"));
        Files.createSymbolicLink(linked.resolve("doc-one.safetensors"), mine);
        refused(tmp.resolve("linked"), "doc-one.safetensors, a symbolic link");
        assertEquals("the user's data", Files.readString(mine), "not written through the link");
        assertEquals(List.of(linked.resolve("doc-one.safetensors")), list(linked), "nothing written");

        Path own = Files.createDirectories(tmp.resolve("own/input"));
        Files.writeString(own.resolve("mine.safetensors"), "the user's input");
        refused(tmp.resolve("own"), "mine.safetensors, which is not one of the demo's input files");

        Path named = Files.createDirectories(tmp.resolve("named/input"));
        Files.writeString(named.resolve("doc-long.safetensors"), "the user's file of a demo's name");
        refused(tmp.resolve("named"), "doc-long.safetensors of 32 bytes, where the demo writes its input file");
        assertEquals("the user's file of a demo's name", Files.readString(named.resolve("doc-long.safetensors")));

        Path results = Files.createDirectories(tmp.resolve("results/output/final_states"));
        Files.writeString(results.resolve("part-00000.parquet"), "an earlier table run's");
        refused(tmp.resolve("results"), "final_states, which a demo run does not write");
        assertTrue(Files.exists(results.resolve("part-00000.parquet")));
        assertFalse(Files.exists(tmp.resolve("results/input")), "nothing written");
    }

    /**
     * A file given as --dir, or standing where the demo makes DIR/input or DIR/output, is refused in one line: the
     * demo's write of its input failed with a FileSystemException ("Not a directory") and its stack trace (exit 1).
     */
    @Test
    void aFileWhereTheDemoMakesADirectoryIsRefused() throws Exception {
        Path file = Files.writeString(tmp.resolve("a.safetensors"), "the user's file");
        refused(file, "demo --dir " + file + " holds nothing: it is a file, not a directory");
        assertEquals("the user's file", Files.readString(file));
        Path dir = Files.createDirectories(tmp.resolve("dir"));
        Files.writeString(dir.resolve("output"), "the user's file named output");
        refused(dir, dir.resolve("output") + ", a file where the demo makes a directory");
        assertFalse(Files.exists(dir.resolve("input")), "nothing written");
    }

    /** What a demo writes, and an interrupted demo's partial file, are the demo's own: a second demo takes them. */
    @Test
    void anEarlierDemosDirectoryIsTaken() throws Exception {
        Path input = tmp.resolve("input");
        Path output = Files.createDirectories(tmp.resolve("output"));
        Demo.generate(input);
        // named as the output's partial files are (one convention): the demo wrote its own apart
        Files.writeString(input.resolve(Staging.partialName("doc-gqa.safetensors", "123-abc")), "cut short");
        for (String name : List.of("doc-long.safetensors", "doc-f16.safetensors.index.json", "_SUCCESS",
                "_lightning_report.json", "_lightning.lock")) {
            Files.writeString(output.resolve(name), "");
        }
        Files.createDirectories(output.resolve("doc-f16.safetensors.parts"));
        Files.createDirectories(output.resolve("_temporary"));
        Demo.checkDir(tmp, input, output);
    }

    /** A link where a demo file goes is replaced by the file, not written through. */
    @Test
    void theInputIsWrittenAsideAndMovedIntoPlace() throws Exception {
        Path mine = Files.writeString(tmp.resolve("mine.bin"), "the user's data");
        Path input = Files.createDirectories(tmp.resolve("input"));
        Files.createSymbolicLink(input.resolve("doc-one.safetensors"), mine);
        Demo.generate(input);
        assertEquals("the user's data", Files.readString(mine));
        assertFalse(Files.isSymbolicLink(input.resolve("doc-one.safetensors")));
        Demo.Spec one = Demo.SEQUENCES.stream().filter(s -> s.name.equals("doc-one.safetensors")).findFirst().get();
        assertEquals(Demo.fileSize(one), Files.size(input.resolve("doc-one.safetensors")));
        assertEquals(Demo.SEQUENCES.size(), list(input).size(), "no partial file left");
    }

    /**
     * Two writers of one file at once (two generates into one directory): with one partial name for both, each
     * truncated and wrote the same file, the first to finish published it while the other still wrote into it, and
     * the other failed on its move. Each now writes its own partial file, and the file published is one writer's,
     * whole. A partial file of a writer that is gone (killed) is removed by the next write of that name.
     */
    @Test
    void twoWritersOfOneFileEachPublishAWholeFile() throws Exception {
        Path dir = Files.createDirectories(tmp.resolve("generated"));
        Path abandoned = Files.writeString(dir.resolve(Staging.partialName("seq.safetensors", Integer.MAX_VALUE
                + "-1")), "a killed writer's");
        Demo.Spec big = new Demo.Spec("seq.safetensors", 60_000, 4, 32, 32,
                dev.lightning.attention.tensor.DType.BF16, null, false);
        Demo.Spec small = new Demo.Spec("seq.safetensors", 20_000, 4, 32, 32,
                dev.lightning.attention.tensor.DType.BF16, null, false);
        java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(2);
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(2);
        try {
            List<java.util.concurrent.Future<?>> writes = new java.util.ArrayList<>();
            for (Demo.Spec s : List.of(big, small)) {
                writes.add(pool.submit(() -> {
                    start.await();
                    Demo.writeInto(dir, s, new java.util.SplittableRandom(1));
                    return null;
                }));
            }
            for (java.util.concurrent.Future<?> w : writes) {
                w.get(); // neither fails
            }
        } finally {
            pool.shutdownNow();
        }
        Path file = dir.resolve("seq.safetensors");
        List<Long> whole = new java.util.ArrayList<>();
        for (Demo.Spec s : List.of(big, small)) {
            Path alone = Files.createDirectories(tmp.resolve("alone-" + s.tokens));
            Demo.writeInto(alone, s, new java.util.SplittableRandom(1));
            whole.add(crc(alone.resolve(s.name)));
        }
        assertTrue(whole.contains(crc(file)), "the bytes of one writer alone");
        assertFalse(Files.exists(abandoned), "a killed writer's partial file is removed");
        assertEquals(List.of(file), list(dir), "no partial file left");
    }

    private static void refused(Path dir, String what) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = LightningMain.run(new String[] {"demo", "--dir", dir.toString(), "--backend", "cpu", "--master",
                "local[1]"}, new PrintStream(out, true), new PrintStream(err, true));
        String log = out.toString(StandardCharsets.UTF_8) + err.toString(StandardCharsets.UTF_8);
        assertEquals(2, status, log);
        assertTrue(log.contains(what) && log.contains("give a new --dir"), log);
        assertFalse(log.contains("writing the built-in input"), log);
    }

    private static long crc(Path file) throws Exception {
        java.util.zip.CRC32C crc = new java.util.zip.CRC32C();
        byte[] buf = new byte[1 << 20];
        try (java.io.InputStream in = Files.newInputStream(file)) {
            for (int r; (r = in.read(buf)) > 0; ) {
                crc.update(buf, 0, r);
            }
        }
        return crc.getValue();
    }

    private static List<Path> list(Path dir) throws Exception {
        try (java.util.stream.Stream<Path> s = Files.list(dir)) {
            return s.sorted().toList();
        }
    }
}
