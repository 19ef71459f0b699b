package dev.lightning.attention.it;

import org.apache.spark.resource.ResourceInformation;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The cluster scripts as a user or Spark runs them: conf/gpu-discovery.sh against a fake
 * {@code nvidia-smi} (what Spark reads from it, parsed by Spark's own parser), and the --help of
 * the bin/ scripts that start clusters, builds or tests, which must answer without doing so.
 */
class ClusterScriptsTest {
    static final Path HOME = Path.of("..").toAbsolutePath().normalize();

    @TempDir
    Path dir;

    record Run(int status, String out, String err) {
    }

    private Run run(Map<String, String> env, String... command) throws IOException, InterruptedException {
        ProcessBuilder pb = new ProcessBuilder(command).directory(dir.toFile())
                .redirectOutput(dir.resolve("out").toFile()).redirectError(dir.resolve("err").toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        pb.environment().remove("CUDA_VISIBLE_DEVICES");
        pb.environment().remove("LIGHTNING_GPU_ADDRESSES");
        pb.environment().putAll(env);
        Process p = pb.start();
        if (!p.waitFor(30, TimeUnit.SECONDS)) {
            // a script that went on to start a cluster or a build: stop it and what it started
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
            throw new AssertionError("still running after 30 s: " + Arrays.toString(command));
        }
        return new Run(p.exitValue(), Files.readString(dir.resolve("out")), Files.readString(dir.resolve("err")));
    }

    /**
     * A directory holding an nvidia-smi that answers --query-gpu=index, uuid or index,uuid from the
     * given GPUs ("index, uuid" each), or, with a status other than 0, prints the one line given and exits so.
     */
    private Path fakeSmi(int status, String... gpus) throws IOException {
        Path bin = Files.createDirectories(dir.resolve("smi-" + status + "-" + gpus.length));
        String script = status != 0
                ? "#!/bin/sh\ncat <<'EOF'\n" + String.join("\n", gpus) + "\nEOF\nexit " + status + "\n"
                : "#!/bin/sh\n"
                + "case \"$*\" in *--query-gpu=index,uuid*) e='' ;; *--query-gpu=uuid*) e='s/.*, //' ;; "
                + "*--query-gpu=index*) e='s/,.*//' ;; *) exit 2 ;; esac\n"
                + "sed -e \"$e\" <<'EOF'\n" + String.join("\n", gpus) + (gpus.length > 0 ? "\n" : "") + "EOF\n";
        Path smi = bin.resolve("nvidia-smi");
        Files.writeString(smi, script, StandardCharsets.UTF_8);
        Files.setPosixFilePermissions(smi, PosixFilePermissions.fromString("rwxr-xr-x"));
        return bin;
    }

    private static String[] eightGpus() {
        String[] lines = new String[8];
        for (int i = 0; i < 8; i++) {
            lines[i] = i + ", GPU-0000000" + i + "-aaaa-bbbb-cccc-dddddddddddd";
        }
        return lines;
    }

    /** The addresses Spark takes from the discovery script run with nvidia-smi from bin and these variables. */
    private List<String> discovered(Path bin, Map<String, String> vars) throws Exception {
        Map<String, String> env = new java.util.HashMap<>(vars);
        env.put("PATH", bin + ":" + System.getenv("PATH"));
        Run r = run(env, HOME.resolve("conf/gpu-discovery.sh").toString());
        assertEquals(0, r.status, "status, stderr: " + r.err);
        ResourceInformation info = ResourceInformation.parseJson(r.out.trim());
        assertEquals("gpu", info.name());
        return Arrays.asList(info.addresses());
    }

    @Test
    void discoveryListsTheCudaDevicesOfTheHost() throws Exception {
        Path eight = fakeSmi(0, eightGpus());
        assertEquals(List.of("0", "1", "2", "3", "4", "5", "6", "7"), discovered(eight, Map.of()));
        assertEquals(List.of("0"), discovered(fakeSmi(0, "0, GPU-1234"), Map.of()));
        assertEquals(List.of(), discovered(fakeSmi(0), Map.of()));
    }

    /**
     * A worker started with CUDA_VISIBLE_DEVICES passes it on to its executors, whose CUDA then numbers
     * the devices it names 0, 1, ...: the addresses must be those ordinals, not nvidia-smi's indices of
     * every GPU of the host (it printed 0..7 for CUDA_VISIBLE_DEVICES=2,3, and a task given address 5
     * opened a device its process does not have).
     */
    @Test
    void discoveryFollowsCudaVisibleDevices() throws Exception {
        Path eight = fakeSmi(0, eightGpus());
        assertEquals(List.of("0", "1"), discovered(eight, Map.of("CUDA_VISIBLE_DEVICES", "2,3")));
        assertEquals(List.of("0", "1", "2"), discovered(eight, Map.of("CUDA_VISIBLE_DEVICES", "7,0,5")));
        assertEquals(List.of(), discovered(eight, Map.of("CUDA_VISIBLE_DEVICES", "")));
        assertEquals(List.of(), discovered(eight, Map.of("CUDA_VISIBLE_DEVICES", "-1")));
        // CUDA stops at the first entry that names no device
        assertEquals(List.of("0", "1"), discovered(eight, Map.of("CUDA_VISIBLE_DEVICES", "0,2,-1,1")));
        assertEquals(List.of("0"), discovered(eight, Map.of("CUDA_VISIBLE_DEVICES", "7,8")));
        // UUIDs and unique UUID prefixes; an ambiguous prefix names no device
        assertEquals(List.of("0", "1"), discovered(eight,
                Map.of("CUDA_VISIBLE_DEVICES", "GPU-00000003-aaaa-bbbb-cccc-dddddddddddd,GPU-00000005")));
        assertEquals(List.of(), discovered(eight, Map.of("CUDA_VISIBLE_DEVICES", "GPU-0000000")));
        assertEquals(List.of("0", "1"), discovered(eight, Map.of("CUDA_VISIBLE_DEVICES", "MIG-a/1/0,MIG-b/2/0")));
    }

    /** nvidia-smi failing (no driver, no devices) ends the script with its status and its message on stderr. */
    @Test
    void discoveryFailureSaysWhy() throws Exception {
        String message = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.";
        Path bin = fakeSmi(9, message);
        Run r = run(Map.of("PATH", bin + ":" + System.getenv("PATH")), HOME.resolve("conf/gpu-discovery.sh").toString());
        assertEquals(9, r.status);
        assertTrue(r.err.contains(message), r.err);
    }

    /**
     * bin/standalone starts its master, workers and SparkSubmit with the JVM options bin/lightning gives its java
     * (bin/jvm-options.sh): on Java 24 and later without --add-opens of sun.security.action, a package Java 24 removed
     * ("WARNING: package sun.security.action not in java.base" before every JVM's output); bin/standalone read
     * jvm.options whole after bin/lightning had dropped the flag. A java that records its arguments by the class it
     * is asked to run stands in for each JDK (as in WrapperTest): the master's listens on its port, the worker's
     * says it registered, so the script goes on at once to the submission.
     */
    @Test
    void standaloneFitsItsJvmOptionsToTheJdkAsTheWrapperDoes() throws Exception {
        String flag = "--add-opens=java.base/sun.security.action=ALL-UNNAMED";
        for (String version : new String[] {"17.0.15", "25.0.3", null}) {
            Path jdk = Files.createDirectories(dir.resolve("jdk-" + version));
            Path java = Files.createDirectories(jdk.resolve("bin")).resolve("java");
            Files.writeString(java, "#!/bin/sh\n"
                    + "case \"$*\" in *deploy.master.Master*) role=master ;; *deploy.worker.Worker*) role=worker ;; "
                    + "*SparkSubmit*) role=submit ;; *) role=other ;; esac\n"
                    + "printf '%s\\n' \"$@\" > \"$RECORD-$role\"\n"
                    + "if [ $role = master ]; then\n"
                    + "  while [ \"$1\" != --port ]; do shift; done\n"
                    + "  exec python3 -c 'import socket, sys, time; s = socket.socket(); "
                    + "s.bind((\"127.0.0.1\", int(sys.argv[1]))); s.listen(); time.sleep(30)' \"$2\"\n"
                    + "fi\n"
                    + "[ $role = worker ] && echo 'Successfully registered with master'\n"
                    + "exit 0\n", StandardCharsets.UTF_8);
            Files.setPosixFilePermissions(java, PosixFilePermissions.fromString("rwxr-xr-x"));
            if (version != null) {
                Files.writeString(jdk.resolve("release"), "IMPLEMENTOR=\"Test\"\nJAVA_VERSION=\"" + version
                        + "\"\nJAVA_RUNTIME_VERSION=\"" + version + "+1\"\n");
            }
            Path record = dir.resolve("args-" + version);
            Run r = run(Map.of("JAVA_HOME", jdk.toString(), "RECORD", record.toString(), "WORKERS", "1",
                    "GPUS_PER_WORKER", "0", "LOGS", dir.resolve("logs-" + version).toString()),
                    HOME.resolve("bin/standalone").toString(), "--input", "in", "--output", "out");
            assertEquals(0, r.status, "JAVA_VERSION " + version + ": " + r.err);
            boolean lacksPackage = version != null && Integer.parseInt(version.split("\\.")[0]) >= 24;
            for (String role : List.of("master", "worker", "submit")) {
                List<String> all = Files.readAllLines(Path.of(record + "-" + role));
                List<String> args = all.subList(0, Math.max(0, all.indexOf("-cp"))); // the JVM's options
                assertEquals(!lacksPackage, args.contains(flag), "JAVA_VERSION " + version + ", " + role + ": " + args);
                assertTrue(args.contains("--add-opens=java.base/java.nio=ALL-UNNAMED"),
                        "JAVA_VERSION " + version + ", " + role + ": the rest of the list is kept: " + args);
            }
        }
    }

    /** --help answers at once with the script's usage: no cluster, build or GPU test is started. */
    @Test
    void scriptsAnswerHelp() throws Exception {
        List<String[]> cases = new ArrayList<>();
        cases.add(new String[] {"bin/standalone", "WORKERS=N"});
        cases.add(new String[] {"bin/gpu-check", "LIGHTNING_BUNDLE"});
        cases.add(new String[] {"bin/gpu-bundle", "bin/gpu-bundle DIR"});
        for (String[] c : cases) {
            for (String flag : List.of("--help", "-h")) {
                long start = System.nanoTime();
                Run r = run(Map.of(), HOME.resolve(c[0]).toString(), flag);
                assertEquals(0, r.status, c[0] + " " + flag + ": " + r.err);
                assertTrue(r.out.contains(c[1]), c[0] + " " + flag + " printed: " + r.out);
                assertTrue(System.nanoTime() - start < 10_000_000_000L, c[0] + " " + flag + " took more than 10 s");
                assertTrue(r.err.isEmpty(), c[0] + " " + flag + ": " + r.err);
            }
        }
    }
}
