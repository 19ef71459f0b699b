package dev.lightning.attention.it;

import dev.lightning.attention.it.JobHarness.Outcome;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static dev.lightning.attention.it.JobHarness.lightning;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The exit status the README promises (0 done, 1 the job failed, 2 bad usage or input) for the
 * mistakes a user makes before any compute: generate's values, the master URL, a file system
 * whose connector is missing. Each is one line on stderr, without a stack trace, that names what
 * was wrong. None of these starts a SparkContext.
 */
class ExitStatusTest {
    @TempDir
    Path tmp;

    /** Runs and checks the status and that stderr is one line holding every part of {@code expected}. */
    private static Outcome expect(int status, String[] args, String... expected) {
        Outcome o = lightning(args);
        String shown = "lightning " + String.join(" ", args) + "\nstatus " + o.status + "\nstderr:\n" + o.err;
        assertEquals(status, o.status, shown);
        String err = o.err.strip();
        assertFalse(err.isEmpty(), shown);
        assertFalse(err.contains("\n"), "expected one line:\n" + shown);
        assertFalse(o.err.contains("\tat "), "expected no stack trace:\n" + shown);
        for (String part : expected) {
            assertTrue(err.contains(part), "expected '" + part + "' in:\n" + shown);
        }
        return o;
    }

    private String[] generate(String... options) {
        List<String> a = new ArrayList<>(List.of("generate", "--output", tmp.resolve("gen").toString()));
        a.addAll(Arrays.asList(options));
        return a.toArray(new String[0]);
    }

    @ParameterizedTest(name = "generate {0}")
    @CsvSource(delimiter = '|', value = {
        "--tokens abc    | --tokens | expected integer | got 'abc'",
        "--tokens -5     | --tokens | must be in 1..    | got '-5'",
        "--tokens=0      | --tokens | must be in 1..    | got '0'",
        "--heads 2.5     | --heads  | expected integer | got '2.5'",
        "--dk 300        | --dk     | must be in 1..256 | got '300'",
        "--dtype f64     | --dtype  | must be one of f32 | got 'f64'",
        "--files 0       | --files  | must be in 1..    | got '0'",
        "--tokens        | --tokens | expected a value  | end of the command line",
        "--bogus 3       | --bogus  | expected one of   | --tokens",
        "--tokens 100000000 --heads 64 | --tokens 100000000 x --heads 64 | bytes free | fewer --tokens",
        "--tokens 2147483647 --heads 65536 --dk 256 --dtype f32 | --heads 65536 (Hk | bytes free | fewer --tokens",
        "--tokens 10 --heads 2147483647 | --heads 2147483647 | head counts must be 1..65536 | got Hq=2147483647",
        "--tokens 10 --files 2 --tokens 20 | --tokens given twice | give each option once | generate",
    })
    void generateRefusesBadValuesWithOneLine(String options, String option, String expected, String got) {
        expect(2, generate(options.trim().split("\\s+")), option, expected, got);
        assertFalse(Files.exists(tmp.resolve("gen")), "generate must check every value before writing anything");
    }

    /** generate never replaces a file unless told to. */
    @Test
    void generateKeepsExistingFilesUnlessOverwrite() throws IOException {
        Path gen = Files.createDirectories(tmp.resolve("gen"));
        Files.writeString(gen.resolve("seq-00001.safetensors"), "precious");
        expect(2, generate("--files", "2", "--tokens", "10"), "already holds 1 file", "seq-00001.safetensors",
                "--overwrite");
        assertEquals("precious", Files.readString(gen.resolve("seq-00001.safetensors")));
        assertFalse(Files.exists(gen.resolve("seq-00000.safetensors")), "nothing written after the refusal");
        JobHarness.succeed(generate("--files", "2", "--tokens", "10", "--overwrite"));
        assertTrue(Files.size(gen.resolve("seq-00001.safetensors")) > 100);
        try (var left = Files.list(gen)) {
            assertEquals(2, left.count(), "no partial files left");
        }
    }

    @Test
    void benchRefusesBadValuesWithOneLine() {
        expect(2, new String[] {"bench", "--tokens", "abc"}, "--tokens", "expected an integer", "got 'abc'");
        expect(2, new String[] {"bench", "--bogus", "1"}, "unknown option --bogus");
        // an unknown word last, or a value after a switch, was said to need a value ("--bogus needs a value")
        expect(2, new String[] {"bench", "--bogus"}, "unknown option --bogus");
        expect(2, new String[] {"bench", "--normalize", "1"}, "unknown option 1");
        // --heads-k 0 ran as "--heads-k not given"; --tokens=abc was an unknown option; a repeated option won
        expect(2, new String[] {"bench", "--heads-k", "0"}, "--heads-k", "expected an integer in 1..", "got 0");
        expect(2, new String[] {"bench", "--tokens=abc"}, "--tokens", "expected an integer", "got 'abc'");
        expect(2, new String[] {"bench", "--runs", "2", "--runs=3"}, "--runs given twice");
        // counts below their minimum: once a NegativeArraySizeException with a stack trace (status 1),
        // or a table of Infinity ms (--runs 0)
        expect(2, new String[] {"bench", "--tokens", "-5"}, "--tokens", "expected an integer in 1..2147483647", "got -5");
        expect(2, new String[] {"bench", "--tokens", "0"}, "--tokens", "expected an integer in 1..", "got 0");
        expect(2, new String[] {"bench", "--runs", "0"}, "--runs", "expected an integer in 1..", "got 0");
        expect(2, new String[] {"bench", "--heads-k", "-2"}, "--heads-k", "expected an integer in 1..", "got -2");
        // an integer too large for an int was said to be no integer ("expected an integer, got '99999999999'")
        expect(2, new String[] {"bench", "--check-tokens", "99999999999"}, "--check-tokens",
                "expected an integer in 0..2147483647", "got 99999999999");
    }

    /** --heads is Hq, as in generate: grouped values (Hv above Hq) were refused with "H must be max(...)". */
    @Test
    void benchTakesGroupedValues() {
        Outcome o = lightning("bench", "--heads", "2", "--heads-k", "2", "--heads-v", "6", "--tokens", "128", "--dk", "8",
                "--dv", "8", "--runs", "1", "--check-tokens", "64");
        assertEquals(0, o.status, o.err); // its table goes to System.out, not to the harness's stream
    }

    /**
     * Each command's --help describes that command's options: generate's and bench's used to print
     * the run options (none of which they take) and never their own or their defaults.
     */
    @Test
    void helpOfEachCommandListsItsOwnOptions() {
        Outcome g = lightning("generate", "--help");
        assertEquals(0, g.status, g.err);
        for (String part : new String[] {"usage: lightning generate", "--files N", "[default 1]", "--tokens N",
                "[default 65536]", "--heads N", "[default 8]", "--heads-k N", "[default --heads]", "--dtype f32|f16|bf16",
                "[default bf16]", "--initial-normalizer", "--overwrite"}) {
            assertTrue(g.out.contains(part), "expected '" + part + "' in generate --help:\n" + g.out);
        }
        assertFalse(g.out.contains("--partition-tokens"), "generate takes no run options:\n" + g.out);

        Outcome b = lightning("bench", "--help");
        assertEquals(0, b.status, b.err);
        for (String part : new String[] {"usage: lightning bench", "--backend", "gpu-generic", "--tokens N",
                "[default 16384]", "--runs N", "[default 3]", "--chunk N", "--check-tokens N", "[default 1024]",
                "--normalize", "--feature-map identity|elu1|relu"}) {
            assertTrue(b.out.contains(part), "expected '" + part + "' in bench --help:\n" + b.out);
        }
        assertFalse(b.out.contains("--partition-tokens"), "bench takes no run options:\n" + b.out);

        Outcome r = lightning("run", "--help");
        assertEquals(0, r.status, r.err);
        assertTrue(r.out.contains("--synthetic T,H,Dk,Dv,dtype,seed) --output DIR"), r.out);
        assertTrue(r.out.contains("--partition-tokens N"), r.out);
    }

    @Test
    void generateNeedsAnOutput() {
        expect(2, new String[] {"generate", "--tokens", "10"}, "--output DIR is required");
    }

    @Test
    void generateRefusesAFileAsOutput() throws IOException {
        Path file = Files.writeString(tmp.resolve("a-file"), "not a directory");
        expect(2, new String[] {"generate", "--output", file.toString(), "--tokens", "10"}, "expected a directory",
                "got a file");
    }

    /** The good case, so the checks above cannot pass by refusing everything. */
    @Test
    void generateWritesWhatItIsAskedFor() {
        Outcome o = lightning(generate("--files=2", "--tokens", "100", "--heads", "2", "--dk", "8", "--dv=4", "--dtype",
                "F16"));
        assertEquals(0, o.status, o.err);
        assertTrue(Files.isRegularFile(tmp.resolve("gen/seq-00000.safetensors")));
        assertTrue(Files.isRegularFile(tmp.resolve("gen/seq-00001.safetensors")));
    }

    /**
     * --spot-check-tolerance belongs to --output-mode checksums; a files run took it and ignored it,
     * so a user could believe o had been checked against float64. Refused before the output exists.
     */
    @Test
    void spotCheckToleranceWithoutChecksumsIsRefused() {
        Outcome g = lightning("generate", "--output", tmp.resolve("in").toString(), "--tokens", "100", "--heads", "2",
                "--dk", "8", "--dv", "8");
        assertEquals(0, g.status, g.err);
        expect(2, run("--spot-check-tolerance", "0.1"), "--spot-check-tolerance 0.1", "--output-mode checksums",
                "leave --spot-check-tolerance out");
        assertFalse(Files.exists(tmp.resolve("out")), "refused before the output directory is made");
    }

    /**
     * Mistakes of the command line that used to run on silently or end in a stack trace: an option
     * that takes a value given none (the next option taken as its value: a directory named
     * --normalize, and no normalization), an option given twice with two values (the first
     * dropped), a softmax scale that is not positive, arguments to `options`. Each is refused in
     * one line before anything is written.
     */
    @Test
    void commandLineMistakesAreRefusedInOneLine() {
        Outcome g = lightning("generate", "--output", tmp.resolve("in").toString(), "--tokens", "100", "--heads", "2",
                "--dk", "8", "--dv", "8");
        assertEquals(0, g.status, g.err);
        expect(2, new String[] {"run", "--input", tmp.resolve("in").toString(), "--backend", "cpu", "--output",
                "--normalize"}, "--output: expected a value after it, got the option --normalize");
        assertFalse(Files.exists(Path.of("--normalize")), "no directory named after the option");
        expect(2, run("--input", tmp.resolve("in").toString(), "--input", tmp.resolve("other").toString()),
                "--input is given twice", "a comma-separated list");
        expect(2, run("--attention", "softmax", "--scale", "-3"), "--scale -3.0", "greater than 0");
        expect(2, new String[] {"options", "--bogus"}, "options takes no arguments", "--bogus");
        expect(2, new String[] {"generate", "--output", "--files", "3"}, "--output: expected a value after it",
                "got the option --files");
        assertFalse(Files.exists(tmp.resolve("out")), "refused before the output directory is made");
    }

    /**
     * The demo checks the o of each result file against float64. Runs that write no o (--output-mode
     * checksums) or tables instead of files (--output-format parquet) ran to the end and then failed in
     * the check with a stack trace (status 1); --synthetic was refused for an --input the user never gave.
     * Each is refused in one line before the demo writes its input.
     */
    @Test
    void demoRefusesRunsItsCheckCannotRead() {
        Path dir = tmp.resolve("demo");
        expect(2, new String[] {"demo", "--dir", dir.toString(), "--backend", "cpu", "--output-mode", "checksums"},
                "demo checks", "--output-mode checksums", "lightning run");
        expect(2, new String[] {"demo", "--dir", dir.toString(), "--backend", "cpu", "--output-format", "parquet"},
                "demo checks", "--output-format parquet", "lightning run");
        expect(2, new String[] {"demo", "--dir", dir.toString(), "--synthetic", "100,2,8,8,bf16,1"},
                "demo takes --dir DIR, not --synthetic");
        assertFalse(Files.exists(dir), "refused before the demo writes its input");
    }

    /** A run of the test's input into its output directory, unless {@code options} give --input or --output themselves. */
    private String[] run(String... options) {
        List<String> given = Arrays.asList(options);
        List<String> a = new ArrayList<>(List.of("run"));
        if (!given.contains("--input")) {
            a.addAll(List.of("--input", tmp.resolve("in").toString()));
        }
        if (!given.contains("--output")) {
            a.addAll(List.of("--output", tmp.resolve("out").toString()));
        }
        a.addAll(List.of("--backend", "cpu"));
        a.addAll(given);
        return a.toArray(new String[0]);
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
        "--master foo://x                  | got 'foo://x'",
        "--master local[x]                 | got 'local[x]'",
        "--conf spark.master=local[2,x]    | got 'local[2,x]'",
        "--master spark://nohost           | 'nohost' is not HOST:PORT",
        "--master spark://h:7077/some/path | expected spark://HOST:PORT",
        "--master yarn                     | built with YARN support",
        "--master k8s://https://h:443      | built with Kubernetes support",
    })
    void malformedMasterIsAUsageError(String options, String expected) {
        expect(2, run(options.trim().split("\\s+")), "--master / spark.master", expected);
    }

    /** A well-formed master nobody answers at fails the job at once, rather than after Spark's minute of retries. */
    @Test
    void unreachableMasterFailsTheJobWithOneLine() throws IOException {
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        long start = System.nanoTime();
        expect(1, run("--master", "spark://127.0.0.1:" + port), "cannot reach the Spark master spark://127.0.0.1:" + port,
                "refused");
        expect(1, run("--master", "spark://nohost.invalid:7077"), "nohost.invalid: unknown host");
        assertTrue(System.nanoTime() - start < 30e9, "the reachability check should fail fast");
    }

    @Test
    void s3aWithoutHadoopAwsSaysWhatToAdd() {
        String hadoop = org.apache.hadoop.util.VersionInfo.getVersion();
        expect(2, run("--input", "s3a://bucket/qkv"), "--input s3a://bucket/qkv", "no Hadoop FileSystem for scheme 's3a'",
                "org.apache.hadoop:hadoop-aws:" + hadoop, "software.amazon.awssdk:bundle", "LIGHTNING_EXTRA_CLASSPATH",
                "\"Object stores\" in README.md");
    }

    @Test
    void otherMissingFileSystemsToo() {
        expect(2, run("--output", "abfss://c@account.dfs.core.windows.net/attn"), "--output abfss://",
                "org.apache.hadoop:hadoop-azure:");
        expect(2, run("--input", "nosuchscheme://bucket/qkv"), "no Hadoop FileSystem for scheme 'nosuchscheme'",
                "spark.hadoop.fs.nosuchscheme.impl");
        // a connector named in the configuration whose class is absent
        expect(2, run("--conf", "spark.hadoop.fs.mystore.impl=com.example.MyStoreFileSystem", "--input",
                "mystore://bucket/qkv"), "scheme 'mystore'", "com.example.MyStoreFileSystem not found");
    }

    /** The scheme check leaves local paths alone. */
    @Test
    void localPathsPassTheSchemeCheck() {
        // gets as far as the input listing: an error about the missing input, not about a file system
        Outcome local = lightning(run("--master", "local[1]"));
        assertEquals(2, local.status, local.err);
        assertFalse(local.err.contains("no Hadoop FileSystem"), local.err);
        assertTrue(local.err.contains(tmp.resolve("in").toString()), local.err);
    }
}
