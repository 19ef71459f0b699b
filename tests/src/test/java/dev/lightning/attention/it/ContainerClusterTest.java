package dev.lightning.attention.it;

import dev.lightning.attention.it.JobHarness.Result;
import dev.lightning.attention.it.JobHarness.Sequence;
import dev.lightning.attention.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.testcontainers.containers.BindMode;
import org.testcontainers.containers.Container;
import org.testcontainers.containers.GenericContainer;
import org.testcontainers.containers.Network;
import org.testcontainers.containers.wait.strategy.Wait;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.testcontainers.DockerClientFactory;
import org.testcontainers.utility.DockerImageName;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The same submission against a containerized standalone cluster (Spark's own image): a master and
 * a worker container sharing a bind-mounted directory with the application jar, the input and the
 * output. Runs where a Docker engine exists, and skips itself, saying so, where none does.
 */
class ContainerClusterTest {
    static final DockerImageName SPARK = DockerImageName.parse("apache/spark:4.1.1-scala2.13-java17-ubuntu");

    @TempDir
    Path shared;

    @BeforeAll
    static void needsDocker() {
        boolean docker = DockerClientFactory.instance().isDockerAvailable();
        if (!docker) {
            System.out.println("ContainerClusterTest SKIPPED: no Docker engine is reachable here");
        }
        Assumptions.assumeTrue(docker, "no Docker engine is reachable here");
    }

    @Test
    void submissionToAContainerizedCluster() throws Exception {
        Path home = Path.of("..").toAbsolutePath().normalize();
        Path appJar;
        try (var s = Files.list(home.resolve("spark-job/target"))) {
            appJar = s.filter(p -> p.getFileName().toString().endsWith("-app.jar")).findFirst().orElseThrow();
        }
        Files.copy(appJar, shared.resolve("app.jar"), StandardCopyOption.REPLACE_EXISTING);
        Path in = Files.createDirectories(shared.resolve("in"));
        Sequence seq = Sequence.random(81, 3000, 3, 16, 24, DType.F32, null, true);
        seq.write(in.resolve("s.safetensors"));
        shared.toFile().setWritable(true, false);

        try (Network net = Network.newNetwork();
             GenericContainer<?> master = new GenericContainer<>(SPARK).withNetwork(net).withNetworkAliases("master")
                     .withFileSystemBind(shared.toString(), "/data", BindMode.READ_WRITE)
                     .withCommand("/opt/spark/bin/spark-class", "org.apache.spark.deploy.master.Master", "--host", "master")
                     .waitingFor(Wait.forLogMessage(".*I have been elected leader.*", 1)
                             .withStartupTimeout(Duration.ofMinutes(3)));
             GenericContainer<?> worker = new GenericContainer<>(SPARK).withNetwork(net)
                     .withFileSystemBind(shared.toString(), "/data", BindMode.READ_WRITE)
                     .withCommand("/opt/spark/bin/spark-class", "org.apache.spark.deploy.worker.Worker",
                             "spark://master:7077")
                     .waitingFor(Wait.forLogMessage(".*Successfully registered with master.*", 1)
                             .withStartupTimeout(Duration.ofMinutes(3)))) {
            master.start();
            worker.start();
            Container.ExecResult r = master.execInContainer("/opt/spark/bin/spark-submit", "--master",
                    "spark://master:7077", "--class", "dev.lightning.attention.job.LightningMain", "/data/app.jar", "run",
                    "--input", "/data/in", "--output", "/data/out", "--partition-tokens", "1024");
            assertEquals(0, r.getExitCode(), r.getStdout() + r.getStderr());
        }
        Result got = Result.read(shared.resolve("out/s.safetensors"));
        Result ref = seq.reference(1.0);
        assertTrue(JobHarness.relativeError(got.o, ref.o) <= 1e-5);
        assertTrue(JobHarness.relativeError(got.state, ref.state) <= 1e-5);
    }
}
