package dev.lightning.attention.it;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lightning.attention.it.JobHarness.Result;
import dev.lightning.attention.it.JobHarness.Sequence;
import dev.lightning.attention.tensor.DType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The application jar submitted through SparkSubmit to a standalone cluster of a master and two
 * workers (separate JVMs on 127.0.0.1), with GPU resources from the discovery script: outputs
 * match float64, each task reports the GPU address Spark gave it, two runs are byte-identical, and
 * a run that loses an executor in pass 2 still finishes with byte-identical outputs.
 */
class ClusterTest {
    @TempDir
    static Path tmp;
    static StandaloneCluster cluster;
    static Path input;
    static Map<String, Sequence> files = new LinkedHashMap<>();

    static final List<String> CONF = List.of("spark.executor.resource.gpu.amount=1", "spark.task.resource.gpu.amount=1",
            "spark.executor.cores=1", "spark.executor.memory=1g", "spark.cores.max=2",
            "spark.lightning.partitionTokens=16384", "spark.lightning.chunkSize=256",
            "spark.lightning.progressSeconds=0.5");

    @BeforeAll
    static void start() throws Exception {
        input = Files.createDirectories(tmp.resolve("in"));
        files.put("long-a.safetensors", Sequence.random(71, 100_000, 4, 32, 32, DType.BF16, null, true));
        files.put("long-b.safetensors", Sequence.random(72, 90_000, 4, 32, 24, DType.F16, null, false));
        files.put("short-1.safetensors", Sequence.random(73, 1000, 3, 16, 16, DType.F32, null, false));
        files.put("short-2.safetensors", Sequence.random(74, 63, 2, 8, 8, DType.BF16, null, false));
        for (Map.Entry<String, Sequence> e : files.entrySet()) {
            e.getValue().write(input.resolve(e.getKey()));
        }
        cluster = new StandaloneCluster(tmp.resolve("cluster"), 2);
    }

    @AfterAll
    static void stop() {
        if (cluster != null) {
            cluster.close();
        }
    }

    private static Path run(String name, boolean killAnExecutorInPass2) throws Exception {
        return run(name, killAnExecutorInPass2, List.of("run", "--input", input.toString()),
                "lightning: pass 2/2: outputs: ");
    }

    /** Submits {@code args} with --output tmp/name; kills an executor once the log shows {@code killAt}, if asked. */
    private static Path run(String name, boolean killAnExecutorInPass2, List<String> args, String killAt)
            throws Exception {
        Path out = tmp.resolve(name);
        List<String> all = new java.util.ArrayList<>(args);
        all.addAll(List.of("--output", out.toString()));
        Process p = cluster.submit(name, CONF, all);
        boolean killed = false;
        long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(5);
        while (p.isAlive() && System.nanoTime() < deadline) {
            if (killAnExecutorInPass2 && !killed && cluster.log(name).contains(killAt)) {
                List<ProcessHandle> executors = cluster.executors();
                assertFalse(executors.isEmpty(), "no executor to kill");
                executors.get(0).destroyForcibly();
                killed = true;
            }
            Thread.sleep(100);
        }
        assertTrue(p.waitFor(1, TimeUnit.SECONDS), "job did not finish; log:\n" + cluster.log(name));
        assertEquals(0, p.exitValue(), "job failed; log:\n" + cluster.log(name));
        if (killAnExecutorInPass2) {
            assertTrue(killed, "pass 2 ended before an executor could be killed; log:\n" + cluster.log(name));
        }
        return out;
    }

    @Test
    void submittedJobIsCorrectDeterministicAndSurvivesALostExecutor() throws Exception {
        Path first = run("first", false);
        for (Map.Entry<String, Sequence> e : files.entrySet()) {
            Result got = Result.read(first.resolve(e.getKey()));
            Result ref = e.getValue().reference(1.0);
            double limit = e.getValue().dtype == DType.F32 ? 1e-5 : e.getValue().dtype == DType.F16 ? 2e-3 : 6e-3;
            assertTrue(JobHarness.relativeError(got.o, ref.o) <= limit, e.getKey());
            assertTrue(JobHarness.relativeError(got.state, ref.state) <= 1e-5, e.getKey() + " state");
        }
        JsonNode report = new ObjectMapper().readTree(first.resolve("_lightning_report.json").toFile());
        Set<String> addresses = new HashSet<>();
        Set<String> executors = new HashSet<>();
        for (JsonNode t : report.get("tasks")) {
            addresses.add(t.get("gpuAddress").asText());
            executors.add(t.get("executor").asText());
        }
        assertEquals(Set.of("0", "1"), addresses, "each executor's tasks saw its worker's GPU address");
        assertEquals(2, executors.size());
        assertTrue(report.get("master").asText().startsWith("spark://127.0.0.1:"));

        Path second = run("second", false);
        Path disturbed = run("disturbed", true);
        for (String f : files.keySet()) {
            byte[] a = Files.readAllBytes(first.resolve(f));
            assertArrayEquals(a, Files.readAllBytes(second.resolve(f)), f + ": two runs differ");
            assertArrayEquals(a, Files.readAllBytes(disturbed.resolve(f)), f + ": the run that lost an executor differs");
        }
        try (var left = Files.list(disturbed)) {
            assertFalse(left.anyMatch(x -> x.getFileName().toString().startsWith(".")
                    || x.getFileName().toString().equals("_temporary")), "partial files of the killed tasks remain");
        }
    }

    /**
     * README, "Submitting to a cluster": "Without spark-submit, `bin/lightning run --master
     * spark://HOST:7077 ...` works too". The driver then starts from a class path, not from an
     * application jar spark-submit ships; the executors of this stock Spark failed its first task with
     * "unread block data" (the job's classes missing) until the job listed its jar in spark.jars.
     */
    @Test
    void binLightningWithAClusterMasterRunsOnTheCluster() throws Exception {
        Path out = tmp.resolve("wrapper");
        List<String> cmd = new java.util.ArrayList<>(List.of(cluster.home.resolve("bin/lightning").toString(), "run",
                "--master", cluster.url(), "--input", input.toString(), "--output", out.toString()));
        for (String c : CONF) {
            cmd.add("--conf");
            cmd.add(c);
        }
        Path log = cluster.logs.resolve("wrapper.log");
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        pb.environment().put("LIGHTNING_CDS", "off");
        pb.environment().put("SPARK_LOCAL_IP", "127.0.0.1");
        Process p = pb.start();
        if (!p.waitFor(5, TimeUnit.MINUTES)) {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
        }
        assertEquals(0, p.exitValue(), "bin/lightning --master " + cluster.url() + " failed; log:\n" + Files.readString(log));
        for (Map.Entry<String, Sequence> e : files.entrySet()) {
            Result got = Result.read(out.resolve(e.getKey()));
            Result ref = e.getValue().reference(1.0);
            double limit = e.getValue().dtype == DType.F32 ? 1e-5 : e.getValue().dtype == DType.F16 ? 2e-3 : 6e-3;
            assertTrue(JobHarness.relativeError(got.o, ref.o) <= limit, e.getKey());
        }
        JsonNode report = new ObjectMapper().readTree(out.resolve("_lightning_report.json").toFile());
        assertTrue(report.get("master").asText().startsWith("spark://127.0.0.1:"));
        Set<String> executors = new HashSet<>();
        for (JsonNode t : report.get("tasks")) {
            executors.add(t.get("executor").asText());
        }
        assertFalse(executors.contains("driver"), "tasks ran on the cluster's executors: " + executors);
    }

    /**
     * A softmax job (one sequence in 6 pieces whose partials merge across tasks, and a short one)
     * on the cluster: it matches float64, and a run that loses an executor while the work items run
     * writes the same bytes as an undisturbed one.
     */
    @Test
    void softmaxJobIsDeterministicAndSurvivesALostExecutor() throws Exception {
        Path in = Files.createDirectories(tmp.resolve("softmax-in"));
        Map<String, Sequence> seqs = new LinkedHashMap<>();
        seqs.put("sm-long.safetensors", Sequence.grouped(81, 6000, 4, 2, 2, 16, 24, DType.BF16, null, false, false));
        seqs.put("sm-short.safetensors", Sequence.grouped(82, 700, 6, 3, 3, 16, 8, DType.F32, null, false, false));
        JobHarness.writeSequences(in, seqs);
        List<String> args = List.of("run", "--attention", "softmax", "--input", in.toString(), "--partition-tokens",
                "1024", "--write-lse", "--output-dtype", "f32");
        Path first = run("softmax-first", false, args, null);
        Path disturbed = run("softmax-disturbed", true, args, "lightning: softmax 1/2: blocks: ");
        for (Map.Entry<String, Sequence> e : seqs.entrySet()) {
            float[][] ref = SoftmaxJobTest.reference(e.getValue(), 0);
            Map<String, dev.lightning.attention.tensor.SafetensorsFile.Tensor> got =
                    dev.lightning.attention.tensor.SafetensorsFile.read(first.resolve(e.getKey()));
            assertTrue(JobHarness.relativeError(got.get("o").toFloats(), ref[0]) <= 1e-5, e.getKey());
            assertTrue(JobHarness.relativeError(got.get("lse").toFloats(), ref[1]) <= 1e-6, e.getKey() + " lse");
            assertArrayEquals(Files.readAllBytes(first.resolve(e.getKey())),
                    Files.readAllBytes(disturbed.resolve(e.getKey())), e.getKey() + ": the run that lost an executor differs");
        }
    }
}
