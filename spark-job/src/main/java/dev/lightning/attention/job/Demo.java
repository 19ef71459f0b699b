package dev.lightning.attention.job;

import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.output.Commit;
import dev.lightning.attention.job.output.OutputLock;
import dev.lightning.attention.job.output.Staging;
import dev.lightning.attention.stream.OutputParts;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsFile;
import dev.lightning.attention.tensor.SafetensorsHeader;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * The built-in input of {@code lightning demo}: a handful of sequences chosen to exercise what
 * matters (a long one split across partitions, an initial state and explicit slopes, every dtype,
 * odd lengths, Dk != Dv, H not a power of two, grouped-query heads), generated from fixed seeds.
 */
final class Demo {
    /** Partition size the demo runs with unless told otherwise: small, so the long sequence splits. */
    static final long PARTITION_TOKENS = 4096;

    private Demo() {
    }

    /**
     * One file to write: q [T, Hq, Dk], k [T, Hk, Dk], v [T, Hv, Dv] (each count dividing
     * H = max of them), optionally slope [H], initial_state [H, Dk, Dv], initial_normalizer [H, Dk].
     */
    static final class Spec {
        final String name;
        final int tokens;
        final int heads;
        final int headsQ;
        final int headsK;
        final int headsV;
        final int dk;
        final int dv;
        final DType dtype;
        final float[] slopes;
        final boolean initialState;
        final boolean initialNormalizer;

        /** Plain multi-head: Hq = Hk = Hv = {@code heads}, no initial normalizer. */
        Spec(String name, int tokens, int heads, int dk, int dv, DType dtype, float[] slopes, boolean initialState) {
            this(name, tokens, heads, heads, heads, dk, dv, dtype, slopes, initialState, false);
        }

        Spec(String name, int tokens, int headsQ, int headsK, int headsV, int dk, int dv, DType dtype, float[] slopes,
             boolean initialState, boolean initialNormalizer) {
            dev.lightning.attention.engine.AttentionSpec.checkGrouping(headsQ, headsK, headsV);
            this.name = name;
            this.tokens = tokens;
            this.heads = dev.lightning.attention.engine.AttentionSpec.heads(headsQ, headsK, headsV);
            this.headsQ = headsQ;
            this.headsK = headsK;
            this.headsV = headsV;
            this.dk = dk;
            this.dv = dv;
            this.dtype = dtype;
            this.slopes = slopes;
            this.initialState = initialState;
            this.initialNormalizer = initialNormalizer;
        }
    }

    static final List<Spec> SEQUENCES = List.of(
            new Spec("doc-long.safetensors", 20_000, 4, 64, 32, DType.BF16, null, false),
            new Spec("doc-state.safetensors", 5_000, 3, 24, 40, DType.F32, new float[] {1e-3f, 0.1f, 1f}, true),
            new Spec("doc-f16.safetensors", 1_000, 6, 32, 32, DType.F16, null, false),
            new Spec("doc-short.safetensors", 63, 2, 16, 8, DType.BF16, null, false),
            new Spec("doc-one.safetensors", 1, 1, 8, 8, DType.F32, null, false),
            new Spec("doc-gqa.safetensors", 3_000, 6, 2, 2, 32, 16, DType.F32, null, true, false));

    /** Writes the demo's input files into {@code dir}. */
    static void generate(Path dir) throws IOException {
        Files.createDirectories(dir);
        long seed = 20261121;
        for (Spec s : SEQUENCES) {
            writeInto(dir, s, new SplittableRandom(seed++));
        }
    }

    /**
     * Writes {@code s}'s file into {@code dir} aside, under a partial name of this writer's own (the output's
     * {@link Staging#partialName}, its attempt this process's id and a random number), and moves it into place: an interrupted write leaves no partial
     * file under the name, and a symbolic link of that name is replaced, never written through (into whatever file
     * it leads to). With one partial name for every writer, two generates (or demos) into one directory truncated and
     * wrote the same file: the first to finish moved it into place while the other still wrote into it (a file of
     * neither's content published), and the other failed on its move. Now the last to finish publishes a whole file
     * of its own. The partial file of a failed write is removed, and those of writers that are gone (killed) first.
     */
    static void writeInto(Path dir, Spec s, SplittableRandom rnd) throws IOException {
        removeAbandoned(dir, s.name);
        Path tmp = dir.resolve(Staging.partialName(s.name, ProcessHandle.current().pid() + "-"
                + Long.toHexString(new SplittableRandom().nextLong() >>> 1)));
        try {
            write(tmp, s, rnd);
        } catch (IOException | RuntimeException e) {
            Files.deleteIfExists(tmp); // this write's own partial file (a full disk, say)
            throw e;
        }
        Files.move(tmp, dir.resolve(s.name), java.nio.file.StandardCopyOption.REPLACE_EXISTING,
                java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    }

    /**
     * Removes the partial files of {@code name} in {@code dir} that {@link #writeInto} left in a process that is gone
     * (killed while it wrote): each would otherwise stay, as large as the file. Those of a live process are its
     * work in progress and stay, as does any other name.
     */
    private static void removeAbandoned(Path dir, String name) throws IOException {
        String prefix = Staging.partialName(name, "");
        try (java.util.stream.Stream<Path> entries = Files.list(dir)) {
            for (Path e : (Iterable<Path>) entries::iterator) {
                String n = e.getFileName().toString();
                int dash = n.indexOf('-', prefix.length());
                if (!n.startsWith(prefix) || dash < 0) {
                    continue;
                }
                long pid;
                try {
                    pid = Long.parseLong(n.substring(prefix.length(), dash));
                } catch (NumberFormatException x) {
                    continue;
                }
                if (ProcessHandle.of(pid).map(h -> !h.isAlive()).orElse(true)
                        && Files.isRegularFile(e, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
                    Files.deleteIfExists(e);
                }
            }
        }
    }

    /**
     * Refuses, before the demo writes anything, a {@code --dir} holding what an earlier demo did not write. The demo
     * writes its files into DIR/input, runs every input file there, and runs into DIR/output with --overwrite: a
     * user's file there was replaced (one named as a demo file in DIR/input, or a link of that name written
     * through, into the file it led to, outside DIR), run, or replaced by a result (an earlier table run's tables
     * included). So DIR/input may hold only the demo's files (regular files of their names and sizes, and their
     * partial files), and DIR/output only what a run over them publishes or stages.
     */
    static void checkDir(Path dir, Path input, Path output) throws IOException {
        java.util.Set<String> results = new java.util.HashSet<>(List.of(Commit.SUCCESS, Commit.REPORT, Staging.PARENT,
                OutputLock.NAME));
        for (Spec s : SEQUENCES) { // a result in either form (one file, or an index with its parts)
            results.add(s.name);
            results.add(OutputParts.indexName(s.name));
            results.add(s.name + OutputParts.PARTS_SUFFIX);
        }
        String foreign = null;
        // a file where a directory goes failed the input's write with a FileSystemException and its stack trace
        for (Path p : List.of(dir, input, output)) {
            if (foreign == null && Files.exists(p, java.nio.file.LinkOption.NOFOLLOW_LINKS) && !Files.isDirectory(p)) {
                foreign = p.equals(dir) ? "nothing: it is a file, not a directory"
                        : p + ", a file where the demo makes a directory";
            }
        }
        if (foreign == null && Files.isDirectory(input)) {
            try (java.util.stream.Stream<Path> entries = Files.list(input)) {
                for (Path e : (Iterable<Path>) entries.sorted()::iterator) {
                    String name = e.getFileName().toString();
                    Spec s = SEQUENCES.stream().filter(x -> x.name.equals(name)
                            || name.startsWith(Staging.partialName(x.name, ""))).findFirst().orElse(null);
                    if (s != null && !s.name.equals(name)) {
                        continue; // an interrupted demo's partial file: written again
                    }
                    if (s == null) {
                        foreign = e + ", which is not one of the demo's input files";
                    } else if (!Files.isRegularFile(e, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
                        foreign = e + ", " + (Files.isSymbolicLink(e) ? "a symbolic link" : "not a file")
                                + ", where the demo writes its input file of that name";
                    } else if (Files.size(e) != fileSize(s)) {
                        foreign = e + " of " + Files.size(e) + " bytes, where the demo writes its input file of that "
                                + "name (" + fileSize(s) + " bytes)";
                    }
                    if (foreign != null) {
                        break;
                    }
                }
            }
        }
        if (foreign == null && Files.isDirectory(output)) {
            try (java.util.stream.Stream<Path> entries = Files.list(output)) {
                foreign = entries.filter(e -> !results.contains(e.getFileName().toString())).sorted().findFirst()
                        .map(e -> e + ", which a demo run does not write").orElse(null);
            }
        }
        if (foreign != null) {
            throw new dev.lightning.attention.tensor.InvalidInputException("demo --dir " + dir + " holds " + foreign
                    + "; the demo writes its input into " + input + ", runs every file there and replaces the results "
                    + "in " + output + " (--overwrite), so it takes only a directory of its own: give a new --dir, or "
                    + "one an earlier demo wrote");
        }
    }

    /**
     * Writes the sequence file of {@code s}: q, k, v uniform in [-1, 1), then the slopes, an initial state uniform in
     * [-2, 2) and an initial normalizer in [0, 2) where asked, drawn from {@code rnd} in that order. Each tensor is
     * drawn and encoded a block at a time straight into the file, so a file of any size needs a few MB of memory
     * (`lightning generate` writes inputs of 100 GB and more this way).
     */
    static void write(Path file, Spec s, SplittableRandom rnd) throws IOException {
        SafetensorsFile.writeStreamed(file, contents(s, rnd), Map.of());
    }

    /** The bytes of the file {@link #write} writes for {@code s}. */
    static long fileSize(Spec s) {
        List<SafetensorsHeader.Spec> specs = new ArrayList<>();
        for (SafetensorsFile.Streamed t : contents(s, new SplittableRandom(0))) { // no value is drawn
            specs.add(t.spec());
        }
        return SafetensorsHeader.layout(s.name, specs, Map.of()).fileSize();
    }

    /** The tensors of {@code s}'s file in order, their values drawn from {@code rnd} as they are written. */
    private static List<SafetensorsFile.Streamed> contents(Spec s, SplittableRandom rnd) {
        List<SafetensorsFile.Streamed> tensors = new ArrayList<>();
        tensors.add(new SafetensorsFile.Streamed(new SafetensorsHeader.Spec("q", s.dtype, s.tokens, s.headsQ, s.dk),
                uniform(rnd, 1, 0)));
        tensors.add(new SafetensorsFile.Streamed(new SafetensorsHeader.Spec("k", s.dtype, s.tokens, s.headsK, s.dk),
                uniform(rnd, 1, 0)));
        tensors.add(new SafetensorsFile.Streamed(new SafetensorsHeader.Spec("v", s.dtype, s.tokens, s.headsV, s.dv),
                uniform(rnd, 1, 0)));
        if (s.slopes != null) {
            int[] next = {0};
            tensors.add(new SafetensorsFile.Streamed(new SafetensorsHeader.Spec("slope", DType.F32, s.heads),
                    () -> s.slopes[next[0]++]));
        }
        if (s.initialState) {
            tensors.add(new SafetensorsFile.Streamed(new SafetensorsHeader.Spec("initial_state", DType.F32, s.heads,
                    s.dk, s.dv), uniform(rnd, 2, 0)));
        }
        if (s.initialNormalizer) {
            // a normalizer sums phi(k) of earlier tokens, non-negative for elu1 and relu: drawn in [0, 2)
            tensors.add(new SafetensorsFile.Streamed(new SafetensorsHeader.Spec("initial_normalizer", DType.F32,
                    s.heads, s.dk), uniform(rnd, 1, 1)));
        }
        return tensors;
    }

    /** offset + uniform(-range, range), drawn from {@code rnd} a value a call. */
    private static SafetensorsFile.Values uniform(SplittableRandom rnd, double range, float offset) {
        return () -> offset + (float) ((rnd.nextDouble() * 2 - 1) * range);
    }

    /** Checks every output against the float64 recurrence; prints a table; true when all pass. */
    static boolean verify(Path input, Path output, JobConfig cfg, PrintStream out) throws IOException {
        out.println();
        out.println("check against the float64 recurrence (reference from the rounded inputs):");
        out.printf("  %-24s %8s %3s %4s %4s %5s  %-12s %-12s %s%n", "file", "T", "H", "Dk", "Dv", "dtype",
                "o rel.err", "state err", "limit");
        boolean ok = true;
        for (Spec s : SEQUENCES) {
            ReferenceCheck.Result r = ReferenceCheck.check(input.resolve(s.name), output.resolve(s.name),
                    cfg.get(Settings.SCALE), cfg.variant(), cfg::defaultSlopes);
            // o rounded to a coarser --output-dtype (F32 files with f16) is held to that dtype's limit
            double limit = Math.max(ReferenceCheck.tolerance(s.dtype), ReferenceCheck.tolerance(cfg.outputDtype(s.dtype)));
            boolean pass = r.output <= limit && r.state <= 1e-5;
            ok &= pass;
            out.printf("  %-24s %8d %3d %4d %4d %5s  %-12.3e %-12.3e %.0e %s%n", s.name, s.tokens, s.heads, s.dk, s.dv,
                    s.dtype, r.output, r.state, limit, pass ? "ok" : "FAILED");
        }
        return ok;
    }
}
