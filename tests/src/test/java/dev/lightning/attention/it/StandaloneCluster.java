package dev.lightning.attention.it;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

/**
 * A Spark standalone cluster of separate JVMs on 127.0.0.1, started from the Maven build's jars
 * (no Spark distribution): a master and workers, each worker announcing one GPU address through
 * conf/gpu-discovery.sh (fake addresses where there is no GPU). Applications are submitted
 * through Spark's own SparkSubmit with the application jar, as a user submits them.
 */
final class StandaloneCluster implements AutoCloseable {
    final Path home;
    final Path sparkHome;
    final Path logs;
    final int port;
    private final Process master;
    private final List<Process> workers = new ArrayList<>();
    private final List<String> jvmOptions;

    StandaloneCluster(Path dir, int workerCount) throws IOException, InterruptedException {
        home = Path.of("..").toAbsolutePath().normalize();
        jvmOptions = Arrays.asList(Files.readString(home.resolve("spark-job/target/jvm.options")).trim().split("\\s+"));
        sparkHome = Files.createDirectories(dir.resolve("spark-home"));
        // Spark's jars as a stock Spark 4.1 has them: the build's runtime without JCuda, which only
        // the application jar brings (a cluster whose jars held it hid an app jar without it)
        Path jars = Files.createDirectories(sparkHome.resolve("jars"));
        try (var lib = Files.list(home.resolve("spark-job/target/lib"))) {
            for (Path jar : (Iterable<Path>) lib::iterator) {
                if (!jar.getFileName().toString().startsWith("jcuda")) {
                    Files.createSymbolicLink(jars.resolve(jar.getFileName()), jar);
                }
            }
        }
        Files.writeString(sparkHome.resolve("RELEASE"), "Spark from the lightning build, for tests\n");
        logs = Files.createDirectories(dir.resolve("logs"));
        port = freePort();
        master = start("master", List.of("org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port",
                Integer.toString(port), "--webui-port", Integer.toString(freePort())), Map.of(), List.of());
        waitForPort(port);
        for (int w = 0; w < workerCount; w++) {
            workers.add(start("worker-" + w, List.of("org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                            "--cores", "1", "--memory", "1536m", "--webui-port", Integer.toString(freePort()), url()),
                    Map.of("LIGHTNING_GPU_ADDRESSES", Integer.toString(w)),
                    List.of("-Dspark.worker.resource.gpu.amount=1",
                            "-Dspark.worker.resource.gpu.discoveryScript=" + home.resolve("conf/gpu-discovery.sh"))));
        }
        waitForLog(workerCount, "Successfully registered with master", 60);
    }

    String url() {
        return "spark://127.0.0.1:" + port;
    }

    Path appJar() throws IOException {
        try (var s = Files.list(home.resolve("spark-job/target"))) {
            return s.filter(p -> p.getFileName().toString().endsWith("-app.jar")).findFirst()
                    .orElseThrow(() -> new IllegalStateException("build the application jar first (mvn install)"));
        }
    }

    /** Starts spark-submit of the job; the caller waits. Output goes to logs/NAME.log. */
    Process submit(String name, List<String> sparkConf, List<String> jobArgs) throws IOException {
        List<String> args = new ArrayList<>(List.of("org.apache.spark.deploy.SparkSubmit", "--master", url(),
                "--class", "dev.lightning.attention.job.LightningMain"));
        for (String c : sparkConf) {
            args.add("--conf");
            args.add(c);
        }
        args.add(appJar().toString());
        args.addAll(jobArgs);
        return start(name, args, Map.of(), List.of("-Xmx1g"));
    }

    /** Executor JVMs the workers launched for applications. */
    List<ProcessHandle> executors() {
        return workers.stream().flatMap(w -> w.toHandle().descendants())
                .filter(h -> h.info().commandLine().orElse("").contains("CoarseGrainedExecutorBackend"))
                .collect(Collectors.toList());
    }

    String log(String name) throws IOException {
        return Files.readString(logs.resolve(name + ".log"));
    }

    private Process start(String name, List<String> mainAndArgs, Map<String, String> env, List<String> extraJvm)
            throws IOException {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(jvmOptions);
        cmd.addAll(extraJvm);
        cmd.add("-Dlog4j2.configurationFile=" + home.resolve("tests/src/test/resources/log4j2-cluster.properties"));
        cmd.add("-cp");
        cmd.add(sparkHome.resolve("jars") + "/*");
        cmd.addAll(mainAndArgs);
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(logs.resolve(name + ".log").toFile());
        pb.environment().put("SPARK_HOME", sparkHome.toString());
        pb.environment().put("SPARK_SCALA_VERSION", "2.13");
        pb.environment().put("SPARK_LOCAL_IP", "127.0.0.1");
        pb.environment().put("SPARK_WORKER_DIR", Files.createDirectories(logs.resolve(name + "-work")).toString());
        pb.environment().putAll(env);
        return pb.start();
    }

    private void waitForLog(int workerCount, String text, int seconds) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (System.nanoTime() < deadline) {
            int ready = 0;
            for (int w = 0; w < workerCount; w++) {
                if (log("worker-" + w).contains(text)) {
                    ready++;
                }
            }
            if (ready == workerCount) {
                return;
            }
            Thread.sleep(200);
        }
        throw new IllegalStateException("workers did not register in " + seconds + " s; logs in " + logs);
    }

    private static void waitForPort(int port) throws InterruptedException {
        for (int i = 0; i < 300; i++) {
            try (Socket s = new Socket("127.0.0.1", port)) {
                return;
            } catch (IOException e) {
                Thread.sleep(100);
            }
        }
        throw new IllegalStateException("master did not open port " + port);
    }

    private static int freePort() {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Stops the workers (and with them their executors) and the master: only processes this cluster started. */
    @Override
    public void close() {
        List<Process> all = new ArrayList<>(workers);
        all.add(master);
        for (Process p : all) {
            p.toHandle().descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
        }
        for (Process p : all) {
            try {
                p.waitFor(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
