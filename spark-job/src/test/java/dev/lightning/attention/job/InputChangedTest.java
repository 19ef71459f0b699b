package dev.lightning.attention.job;

import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.OptionParser;
import dev.lightning.attention.job.failure.Causes;
import dev.lightning.attention.job.input.InputChangedException;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsFile;
import org.apache.spark.SparkContext;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * README "How results are published": an input that changes between the listing that planned the
 * run and the tasks' reads of it. The tasks read their token ranges at the offsets of the planning
 * header, each when it runs, so a file rewritten under a run gave an output of neither the old
 * content nor the new (pass 2 went on from pass 1's states of the old), published with exit 0 and
 * with the old file's input_sample in its metadata. Here the file changes after the run's plan,
 * lock and staging and before Spark starts (the hook between them is the job's Spark starter):
 * the run must publish nothing and say which file changed.
 */
class InputChangedTest {
    @TempDir
    Path tmp;

    @Test
    void aFileRewrittenUnderTheRunIsNotPublished() throws Exception {
        Path in = Files.createDirectories(tmp.resolve("in"));
        write(in.resolve("a.safetensors"), 0.25f);
        Path b = in.resolve("b.safetensors");
        write(b, 0.5f);
        Path out = tmp.resolve("out");
        String log = failing(in, out, () -> {
            // the same size and shapes, other values, as a pipeline writing its next version in place does
            FileTime before = Files.getLastModifiedTime(b);
            write(b, 0.75f);
            Files.setLastModifiedTime(b, FileTime.fromMillis(before.toMillis() + 2000));
        });
        assertTrue(log.contains("b.safetensors") && log.contains("changed while the run read them")
                && !log.contains("a.safetensors:"), log);
        assertTrue(log.contains("without --resume"), log);
        assertNothingPublished(out);
    }

    /** The same for safetensors files written as tables (--output-format parquet): TableRun's own check. */
    @Test
    void aFileRewrittenUnderATableRunIsNotPublished() throws Exception {
        Path in = Files.createDirectories(tmp.resolve("in"));
        write(in.resolve("a.safetensors"), 0.25f);
        Path b = in.resolve("b.safetensors");
        write(b, 0.5f);
        Path out = tmp.resolve("out");
        String log = failing(in, out, () -> {
            FileTime before = Files.getLastModifiedTime(b);
            write(b, 0.75f);
            Files.setLastModifiedTime(b, FileTime.fromMillis(before.toMillis() + 2000));
        }, "--output-format", "parquet");
        assertTrue(log.contains("b.safetensors had ") && log.contains("changed while the run read them")
                && !log.contains("a.safetensors had"), log);
        // the run created the directory and removed it again with its staging: nothing of it is left
        assertFalse(Files.exists(out), out + " is left");
    }

    @Test
    void aFileDeletedUnderTheRunIsNamedInOneLine() throws Exception {
        Path in = Files.createDirectories(tmp.resolve("in"));
        write(in.resolve("a.safetensors"), 0.25f);
        Path b = in.resolve("b.safetensors");
        write(b, 0.5f);
        Path out = tmp.resolve("out");
        // before: the task's NoSuchFileException, through Spark, with the advice to --resume (which then refuses)
        String log = failing(in, out, () -> Files.delete(b));
        assertTrue(log.contains("b.safetensors") && log.contains("is gone"), log);
        assertFalse(log.contains("rerun with --resume"), log);
        assertNothingPublished(out);
    }

    /** The same in a softmax run, whose tasks open their files themselves (SoftmaxTasks). */
    @Test
    void aFileDeletedUnderASoftmaxRunIsNamedInOneLine() throws Exception {
        Path in = Files.createDirectories(tmp.resolve("in"));
        write(in.resolve("a.safetensors"), 0.25f);
        Path b = in.resolve("b.safetensors");
        write(b, 0.5f);
        Path out = tmp.resolve("out");
        String log = failing(in, out, () -> Files.delete(b), "--attention", "softmax");
        assertTrue(log.contains("b.safetensors") && log.contains("is gone"), log);
        assertFalse(log.contains("rerun with --resume"), log);
        assertNothingPublished(out);
    }

    private interface Change {
        void apply() throws Exception;
    }

    /**
     * Runs the job over {@code in} into {@code out} (and {@code more} options), applying {@code change}
     * just before Spark starts; returns its log.
     */
    private static String failing(Path in, Path out, Change change, String... more) {
        List<String> args = new java.util.ArrayList<>(List.of("--input", in.toString(), "--output", out.toString(),
                "--backend", "cpu", "--master", "local[1]", "--partition-tokens", "64", "--progress-seconds", "60"));
        args.addAll(List.of(more));
        JobConfig cfg = OptionParser.parse(args, null, false);
        org.apache.spark.SparkConf conf = LightningMain.sparkConf(cfg);
        org.apache.hadoop.conf.Configuration hadoop =
                org.apache.spark.deploy.SparkHadoopUtil.get().newConfiguration(conf);
        ByteArrayOutputStream console = new ByteArrayOutputStream();
        SparkContext[] sc = {null};
        Exception e;
        try {
            e = assertThrows(Exception.class, () -> new LightningJob(cfg, hadoop,
                    new PrintStream(console, true, StandardCharsets.UTF_8), () -> {
                        try {
                            change.apply();
                        } catch (Exception x) {
                            throw new IllegalStateException(x);
                        }
                        return sc[0] = new SparkContext(conf);
                    }, false).run());
        } finally {
            if (sc[0] != null) {
                sc[0].stop();
            }
        }
        InputChangedException changed = Causes.inChain(e, InputChangedException.class);
        String log = console.toString(StandardCharsets.UTF_8) + e;
        assertNotNull(changed, log);
        // exit status 2 and one line: the message is the input error the user reads
        assertEquals(changed.getMessage(), LightningMain.findInvalidInput(e).getMessage());
        return console.toString(StandardCharsets.UTF_8) + changed.getMessage();
    }

    private static void assertNothingPublished(Path out) throws Exception {
        try (var entries = Files.list(out)) {
            assertEquals(List.of("_temporary"), entries.map(p -> p.getFileName().toString()).sorted().toList());
        }
    }

    /** A 256-token sequence (split into 4 pieces), H = 2, Dk = Dv = 4, F32, its values from {@code seed}: one size for every seed. */
    /** A file of T = 256, H = 2, Dk = Dv = 4, F32, its q, k and v the same values from {@code seed} (RunFiguresTest too). */
    static void write(Path file, float seed) throws Exception {
        int n = 256 * 2 * 4;
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) Math.sin(seed * 1000 + i) / 4;
        }
        long[] shape = {256, 2, 4};
        SafetensorsFile.write(file, List.of(SafetensorsFile.Tensor.of("q", DType.F32, shape, x),
                SafetensorsFile.Tensor.of("k", DType.F32, shape, x), SafetensorsFile.Tensor.of("v", DType.F32, shape, x)));
    }
}
