package dev.lightning.attention.it;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.Stream;

/**
 * The job's command line in a JVM of its own, started the way {@code bin/lightning} starts it:
 * the options of {@code spark-job/target/jvm.options}, the application jar and
 * {@code spark-job/target/lib/*} on the classpath, {@code conf/log4j2.properties} and a private
 * {@code java.io.tmpdir}. Tests that kill a run need a process to kill: the in-process
 * {@link JobHarness} cannot be stopped dead, and a killed run is what the output directory must
 * survive. Standard output and error go to files, so a test can wait for a line while the job
 * runs and show everything it printed when an assertion fails.
 */
final class JobProcess implements AutoCloseable {
    /** The notice every JVM with {@code --add-modules=jdk.incubator.vector} prints on stderr; not the job's. */
    static final String JVM_NOTICE = "WARNING: Using incubator modules";

    /**
     * What a job process runs: the jars, the JVM options, the logging configuration and, when set,
     * another user to run as. The build's own jars serve the current user; a user without access
     * to the build gets a world-readable copy ({@link #forOtherUser}).
     */
    static final class Installation {
        final Path appJar;
        final Path lib;
        final Path log4j;
        final List<String> jvmOptions;
        /** Null: as this process's user; otherwise uid and gid to switch to. */
        final int[] user;

        private Installation(Path appJar, Path lib, Path log4j, List<String> jvmOptions, int[] user) {
            this.appJar = appJar;
            this.lib = lib;
            this.log4j = log4j;
            this.jvmOptions = jvmOptions;
            this.user = user;
        }

        /** The jars of the Maven build in this repository (package spark-job first). */
        static Installation ofBuild() throws IOException {
            Path home = home();
            Path target = home.resolve("spark-job/target");
            Path options = target.resolve("jvm.options");
            Path lib = target.resolve("lib");
            if (!Files.isRegularFile(options) || !Files.isDirectory(lib)) {
                throw new IllegalStateException("expected " + options + " and " + lib + " from the build; run "
                        + "`mvn -pl tests -am verify` (it packages spark-job before these tests)");
            }
            Path appJar;
            try (Stream<Path> s = Files.list(target)) {
                appJar = s.filter(p -> p.getFileName().toString().matches("spark-job-.*-app\\.jar")).findFirst()
                        .orElseThrow(() -> new IllegalStateException("no spark-job-*-app.jar in " + target
                                + "; package spark-job first"));
            }
            List<String> jvm = Arrays.asList(Files.readString(options).trim().split("\\s+"));
            return new Installation(appJar, lib, home.resolve("conf/log4j2.properties"), jvm, null);
        }

        /**
         * A copy of this installation in {@code dir}, readable by every user, run as uid/gid
         * {@code id} through {@code setpriv}: as root the file system grants everything, so a test
         * of permission errors has to run the job as somebody else. Jars are hard-linked where
         * they are world-readable already (the same file system), else copied. Every directory
         * above {@code dir} must be open to others (mode o+x); the caller sees to that.
         */
        Installation forOtherUser(Path dir, int id) throws IOException {
            Path libCopy = Files.createDirectories(dir.resolve("lib"));
            Path jar = linkOrCopy(appJar, dir.resolve(appJar.getFileName()));
            try (Stream<Path> s = Files.list(lib)) {
                for (Path p : s.collect(Collectors.toList())) {
                    linkOrCopy(p, libCopy.resolve(p.getFileName()));
                }
            }
            Path conf = linkOrCopy(log4j, dir.resolve("log4j2.properties"));
            Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-xr-x"));
            Files.setPosixFilePermissions(libCopy, PosixFilePermissions.fromString("rwxr-xr-x"));
            return new Installation(jar, libCopy, conf, jvmOptions, new int[] {id, id});
        }

        private static Path linkOrCopy(Path from, Path to) throws IOException {
            Set<PosixFilePermission> perms = Files.getPosixFilePermissions(from);
            if (perms.contains(PosixFilePermission.OTHERS_READ)) {
                try {
                    return Files.createLink(to, from);
                } catch (IOException | UnsupportedOperationException e) {
                    // another file system or no hard links: copy below
                }
            }
            Files.copy(from, to);
            Files.setPosixFilePermissions(to, PosixFilePermissions.fromString("rw-r--r--"));
            return to;
        }
    }

    /** The repository root: the tests module runs with its own directory as the working directory. */
    static Path home() {
        return Path.of("..").toAbsolutePath().normalize();
    }

    /**
     * Whether this process can start a JVM as uid/gid {@code id}: it is root and {@code setpriv}
     * switches user here (a container without CAP_SETUID refuses). Returns null when it can, else
     * why not.
     */
    static String cannotRunAs(int id) {
        if (!isRoot()) {
            return "this test process is not root (then it needs no other user)";
        }
        try {
            Process p = new ProcessBuilder(setpriv(id, List.of("true"))).redirectErrorStream(true).start();
            if (!p.waitFor(30, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                return "setpriv did not finish in 30 s";
            }
            String said = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
            return p.exitValue() == 0 ? null : "setpriv --reuid=" + id + " failed (status " + p.exitValue() + "): " + said;
        } catch (IOException e) {
            return "cannot run setpriv: " + e.getMessage();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "interrupted";
        }
    }

    private static List<String> setpriv(int id, List<String> command) {
        List<String> cmd = new ArrayList<>(List.of("setpriv", "--reuid=" + id, "--regid=" + id, "--clear-groups"));
        cmd.addAll(command);
        return cmd;
    }

    /** Whether the current user is root (and permission bits therefore do not apply to it). */
    static boolean isRoot() {
        try {
            return "0".equals(Files.getAttribute(Path.of("/proc/self"), "unix:uid").toString());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    final String name;
    final Path stdout;
    final Path stderr;
    final List<String> args;
    private final Process process;

    private JobProcess(String name, Path stdout, Path stderr, List<String> args, Process process) {
        this.name = name;
        this.stdout = stdout;
        this.stderr = stderr;
        this.args = args;
        this.process = process;
    }

    /**
     * Starts {@code lightning ARGS} with the JVM properties {@code properties} (each
     * {@code KEY=VALUE}, without {@code -D}). Its output goes to {@code dir/NAME.out} and
     * {@code dir/NAME.err}; its {@code java.io.tmpdir} (and working directory) is
     * {@code dir/NAME-tmp}, owned by the user it runs as.
     */
    static JobProcess start(Installation inst, Path dir, String name, List<String> properties, List<String> args)
            throws IOException {
        Path tmp = Files.createDirectories(dir.resolve(name + "-tmp"));
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(inst.jvmOptions);
        cmd.add("-Djava.io.tmpdir=" + tmp);
        cmd.add("-Dlog4j2.configurationFile=" + inst.log4j);
        cmd.add("-Dlightning.home=" + home());
        for (String p : properties) {
            cmd.add("-D" + p);
        }
        cmd.add("-cp");
        cmd.add(inst.appJar + ":" + inst.lib + "/*");
        cmd.add("dev.lightning.attention.job.LightningMain");
        cmd.addAll(args);
        if (inst.user != null) {
            Files.setAttribute(tmp, "unix:uid", inst.user[0]);
            Files.setAttribute(tmp, "unix:gid", inst.user[1]);
            cmd = setpriv(inst.user[0], cmd);
        }
        Path out = dir.resolve(name + ".out");
        Path err = dir.resolve(name + ".err");
        ProcessBuilder pb = new ProcessBuilder(cmd).directory(tmp.toFile())
                .redirectOutput(out.toFile()).redirectError(err.toFile());
        // Spark warns on stderr where the host name resolves to a loopback address; that warning
        // says nothing about the job and would blur the checks of what the job prints there.
        pb.environment().put("SPARK_LOCAL_IP", "127.0.0.1");
        if (inst.user != null) {
            pb.environment().put("HOME", tmp.toString());
        }
        return new JobProcess(name, out, err, List.copyOf(args), pb.start());
    }

    long pid() {
        return process.pid();
    }

    boolean isAlive() {
        return process.isAlive();
    }

    String out() {
        return read(stdout);
    }

    String err() {
        return read(stderr);
    }

    /** Standard error without the JVM's own notices: what the job and its libraries printed. */
    List<String> errLines() {
        return err().lines().filter(l -> !l.startsWith(JVM_NOTICE)).collect(Collectors.toList());
    }

    /** Both outputs, for assertion messages. */
    String describe() {
        return "lightning " + String.join(" ", args) + " (" + name + ", pid " + pid() + ")\n--- stdout:\n" + out()
                + "--- stderr:\n" + err() + "---";
    }

    /**
     * Waits until stdout or stderr holds a line containing {@code text}, and returns that line.
     * Fails when the process ends first or the time is up, showing what it printed.
     */
    String waitForLine(String text, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            boolean ended = !process.isAlive();
            for (String l : (out() + "\n" + err()).split("\n")) {
                if (l.contains(text)) {
                    return l;
                }
            }
            if (ended) {
                throw new AssertionError("expected a line containing '" + text + "', but the process ended with "
                        + "status " + process.exitValue() + ":\n" + describe());
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError("expected a line containing '" + text + "' within " + timeout.toSeconds()
                        + " s:\n" + describe());
            }
            Thread.sleep(100);
        }
    }

    /** Waits for the exit status; kills the process and fails when the time is up. */
    int waitFor(Duration timeout) throws InterruptedException {
        if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
            kill();
            throw new AssertionError("the job did not finish within " + timeout.toSeconds() + " s:\n" + describe());
        }
        return process.exitValue();
    }

    /**
     * SIGKILL to the process and its descendants, as a crash or {@code kill -9} would: no
     * finally block, no shutdown hook runs. Returns when the process is gone.
     */
    void kill() throws InterruptedException {
        process.toHandle().descendants().forEach(ProcessHandle::destroyForcibly);
        process.destroyForcibly();
        if (!process.waitFor(30, TimeUnit.SECONDS)) {
            throw new AssertionError("process " + pid() + " survived SIGKILL for 30 s");
        }
    }

    @Override
    public void close() throws InterruptedException {
        if (process.isAlive()) {
            kill();
        }
    }

    private static String read(Path p) {
        try {
            return Files.exists(p) ? Files.readString(p, StandardCharsets.UTF_8) : "";
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
