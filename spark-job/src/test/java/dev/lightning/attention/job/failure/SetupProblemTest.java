package dev.lightning.attention.job.failure;

import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.spark.SparkConf;
import org.apache.spark.SparkContext;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.net.URI;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The master URL check before Spark starts agrees with Spark, and the exceptions Spark and Hadoop
 * themselves throw for a bad master or a missing file system connector (what the job meets where
 * the early checks do not look) are recognised as set-up mistakes. The exceptions are real ones,
 * not built by hand, so a Spark or Hadoop that words them differently fails here.
 */
class SetupProblemTest {
    @Test
    void mastersSparkTakesPassTheCheck() {
        for (String m : new String[] {"local", "local[4]", "local[*]", "local[2,3]", "local[*, 4]",
                "local-cluster[2, 1, 1024]", "spark://h:7077", "spark://h1:7077,h2:7077", "spark://[::1]:7077"}) {
            SetupChecks.checkMaster(m, "--master");
        }
    }

    @Test
    void mastersSparkRefusesAreUsageErrors() {
        for (String m : new String[] {"foo://x", "local[x]", "local[2,x]", "locall", "local-cluster[2,1]",
                "spark://h", "spark://h:7077/path", "spark://,h:7077", "spark://h:x", "yarn", "k8s://https://h:443"}) {
            InvalidInputException e = assertThrows(InvalidInputException.class,
                    () -> SetupChecks.checkMaster(m, "--master"), m);
            assertTrue(e.getMessage().contains("got '" + m + "'"), e.getMessage());
        }
    }

    /**
     * A local master of no threads, or of more than an int counts, is refused before Spark starts: Spark took the form
     * and failed its start with a stack trace ("Asked to run locally with 0 threads", a NumberFormatException), and
     * the run's line advised --resume.
     */
    @Test
    void aLocalMasterOfNoThreadsIsRefusedBeforeSparkStarts() {
        for (String m : new String[] {"local[0]", "local[00]", "local[0,2]", "local[99999999999]"}) {
            InvalidInputException e = assertThrows(InvalidInputException.class,
                    () -> SetupChecks.checkMaster(m, "--master"), m);
            assertEquals("--master: expected local[N] with N threads from 1 to 999999999 (or local[*], one per core), "
                    + "got '" + m + "'", e.getMessage());
        }
        SetupChecks.checkMaster("local[01]", "--master");
        SetupChecks.checkMaster("local[999999999,3]", "--master");
    }

    /**
     * A Spark setting the SparkContext refuses as it starts is a set-up problem said in one line, naming the setting
     * where Spark does, with what to do: the run printed Spark's trace twice, "lightning: failed:
     * org.apache.spark.SparkIllegalArgumentException: ..." and advice to --resume (exit 1). The exceptions are
     * Spark's own, from a SparkContext started with the setting.
     */
    @Test
    void aSparkSettingTheContextRefusesAtItsStartIsASetupProblem() {
        String[][] cases = {{"spark.network.timeout", "xyz", "The value 'xyz' in the config \"spark.network.timeout\" is "
                + "invalid"}, {"spark.task.cpus", "0", "/ by zero"}};
        for (String[] c : cases) {
            SparkConf conf = new SparkConf().setMaster("local[2]").setAppName("setup-problem-test")
                    .set("spark.ui.enabled", "false").set(c[0], c[1]);
            Exception e = assertThrows(Exception.class, () -> new SparkContext(conf).stop(), c[0]);
            String problem = SetupChecks.setupProblem(new RuntimeException("wrapped", e));
            assertNotNull(problem, e.toString());
            assertTrue(problem.startsWith("Spark did not start with this run's Spark settings (") && problem.contains(c[2])
                    && problem.endsWith("); correct the setting it names, given as --conf KEY=VALUE or in the Spark "
                    + "configuration, and run again") && !problem.contains("org.apache"), problem);
        }
        // the job's own failures are not Spark's start
        assertNull(SetupChecks.setupProblem(new IllegalArgumentException("a bad piece")));
    }

    /** Spark's own refusal, for a URL the check would let through, is a usage error too. */
    @Test
    void sparksUnparseableMasterIsRecognised() {
        SparkConf conf = new SparkConf().setMaster("local[x]").setAppName("setup-problem-test")
                .set("spark.ui.enabled", "false");
        Exception e = assertThrows(Exception.class, () -> new SparkContext(conf).stop());
        String problem = SetupChecks.setupProblem(new RuntimeException("wrapped", e));
        assertNotNull(problem, e.toString());
        assertTrue(problem.contains("Could not parse Master URL: 'local[x]'") && problem.contains("expected local"),
                problem);
    }

    /**
     * A driver heap below Spark's minimum is refused by Spark's own rule before anything is written, in one line
     * that names bin/lightning's setting (spark.testing.memory stands for the heap, as in Spark's own tests); the
     * test JVM's heap passes.
     */
    @Test
    void aHeapSparkCannotStartInIsRefusedBeforeSparkStarts() {
        SetupChecks.checkDriverMemory(new SparkConf());
        SparkConf small = new SparkConf().set("spark.testing.memory", Long.toString(96L << 20));
        InvalidInputException e = assertThrows(InvalidInputException.class, () -> SetupChecks.checkDriverMemory(small));
        assertTrue(e.getMessage().contains("heap is 96 MiB") && e.getMessage().contains("at least the 450 MiB")
                && e.getMessage().contains("LIGHTNING_DRIVER_MEMORY"), e.getMessage());
        SparkConf executors = new SparkConf().set("spark.executor.memory", "256m");
        e = assertThrows(InvalidInputException.class, () -> SetupChecks.checkDriverMemory(executors));
        assertTrue(e.getMessage().contains("spark.executor.memory is 256 MiB"), e.getMessage());
    }

    @Test
    void hadoopsMissingConnectorsAreRecognised() {
        Configuration conf = new Configuration();
        // s3a has an implementation class in Hadoop's defaults, absent from the classpath
        Exception s3a = assertThrows(Exception.class, () -> FileSystem.get(URI.create("s3a://bucket/x"), conf));
        String problem = SetupChecks.setupProblem(new IOException("reading the input", s3a));
        assertNotNull(problem, s3a.toString());
        assertTrue(problem.contains("scheme 's3a'") && problem.contains("org.apache.hadoop.fs.s3a.S3AFileSystem not found")
                && problem.contains("hadoop-aws"), problem);
        // an unknown scheme has none
        Exception foo = assertThrows(IOException.class, () -> FileSystem.get(URI.create("foo://bucket/x"), conf));
        problem = SetupChecks.setupProblem(foo);
        assertNotNull(problem, foo.toString());
        assertTrue(problem.contains("scheme 'foo'"), problem);
    }

    /**
     * Java 23 and later refuse Subject.getSubject, which Hadoop calls at the first FileSystem or SparkContext: the
     * run printed "lightning: failed" and the trace of Hadoop's service loader, saying nothing of the JDK. A usage
     * error (exit status 2, one line) naming the Java and the ones that work.
     */
    @Test
    void aJavaThatRefusesGetSubjectIsNamed() {
        String problem = SetupChecks.setupProblem(new java.util.ServiceConfigurationError("FileSystem: Provider "
                + "ViewFileSystem could not be instantiated", new UnsupportedOperationException("getSubject is not "
                + "supported")));
        assertNotNull(problem);
        assertTrue(problem.startsWith("Java " + Runtime.version().feature() + " (" + System.getProperty("java.home")
                + ") refuses Subject.getSubject") && problem.contains("Java 17 or 21") && problem.contains("JAVA_HOME"),
                problem);
        assertNull(SetupChecks.setupProblem(new UnsupportedOperationException("append")));
    }

    /**
     * checkJava refuses, before anything is read or written, exactly the Javas whose Subject.getSubject throws (23 and
     * later, unless java.security.manager=allow on 23), and lets the others run (this test passes on both kinds; the
     * refusal is seen with a Java 25 as JAVA_HOME of the test run).
     */
    @Test
    void checkJavaRefusesOnlyAJavaThatRefusesGetSubject() {
        int feature = Runtime.version().feature();
        boolean refuses = feature >= 24 || feature == 23 && !"allow".equals(System.getProperty("java.security.manager"));
        if (refuses) {
            InvalidInputException e = assertThrows(InvalidInputException.class, SetupChecks::checkJava);
            assertTrue(e.getMessage().startsWith("Java " + feature + " (") && e.getMessage().contains("Java 17 or 21"),
                    e.getMessage());
        } else {
            SetupChecks.checkJava();
        }
    }

    @Test
    void otherFailuresAreLeftAlone() {
        assertNull(SetupChecks.setupProblem(new IOException("disk full")));
        assertNull(SetupChecks.setupProblem(new RuntimeException(new ClassNotFoundException("com.example.Udf"))));
        assertNull(SetupChecks.setupProblem(new org.apache.spark.SparkException("Job aborted")));
    }

    /**
     * hdfs:///PATH without a NameNode in fs.defaultFS is a usage error (exit status 2, one line), not a failure
     * with a stack trace: Hadoop's own exception is recognised.
     */
    @Test
    void anHdfsPathWithoutItsNameNodeIsRecognised() {
        Exception e = assertThrows(IOException.class, () -> FileSystem.get(URI.create("hdfs:///data/x"),
                new Configuration()));
        String problem = SetupChecks.setupProblem(new RuntimeException("wrapped", e));
        assertNotNull(problem, e.toString());
        assertTrue(problem.startsWith("Incomplete HDFS URI, no host: hdfs:///data/x: an hdfs:// path names its "
                + "NameNode (hdfs://HOST:PORT/PATH)"), problem);
    }

    /**
     * yarn and k8s:// with no cluster manager on the class path are told which Spark distribution takes them; other
     * URLs get no such hint. A standalone master's port is checked as Spark checks it: any port, 0 included.
     */
    @Test
    void aClusterManagerUrlNamesTheSupportItNeeds() {
        String[][] cases = {{"yarn", " (no cluster manager on this classpath takes it: submit with spark-submit from a "
                + "Spark distribution built with YARN support)"}, {"k8s://https://h:443", "built with Kubernetes support)"},
                {"mesos://h:5050", "got 'mesos://h:5050'"}};
        for (String[] c : cases) {
            String m = assertThrows(InvalidInputException.class, () -> SetupChecks.checkMaster(c[0], "--master"))
                    .getMessage();
            assertTrue(m.startsWith("--master: expected local, ") && m.endsWith(c[1]), m);
        }
        SetupChecks.checkMaster("spark://h:0", "--master");
    }

    /**
     * A Spark setting missing as the SparkContext starts (Spark throws its own SparkException there, not an
     * IllegalArgumentException) is a set-up problem too; a SparkException from anywhere else is not (above).
     */
    @Test
    void aSparkExceptionOfTheContextsStartIsASetupProblem() {
        SparkConf noName = new SparkConf().setMaster("local[1]").set("spark.ui.enabled", "false");
        Exception e = assertThrows(org.apache.spark.SparkException.class, () -> new SparkContext(noName).stop());
        assertEquals("Spark did not start with this run's Spark settings (An application name must be set in your "
                + "configuration); correct the setting it names, given as --conf KEY=VALUE or in the Spark "
                + "configuration, and run again", SetupChecks.setupProblem(new RuntimeException("wrapped", e)));
    }

    /**
     * A standalone master is reached before Spark starts: one of several that takes a connection is enough; none
     * is a failure that names each address and why (a refused port here, on this machine's loopback). A master that
     * is not standalone is not checked.
     */
    @Test
    void aStandaloneMasterMustTakeAConnection() throws IOException {
        java.net.InetAddress loopback = java.net.InetAddress.getByName("127.0.0.1");
        try (java.net.ServerSocket open = new java.net.ServerSocket(0, 1, loopback)) {
            int closed;
            try (java.net.ServerSocket gone = new java.net.ServerSocket(0, 1, loopback)) {
                closed = gone.getLocalPort();
            }
            SetupChecks.checkMasterReachable("local[2]", "--master");
            SetupChecks.checkMasterReachable("spark://127.0.0.1:" + open.getLocalPort(), "--master");
            SetupChecks.checkMasterReachable("spark://127.0.0.1:" + closed + ",127.0.0.1:" + open.getLocalPort(),
                    "--master");
            String m = assertThrows(ExplainedFailure.class, () -> SetupChecks.checkMasterReachable("spark://127.0.0.1:"
                    + closed, "--master")).getMessage();
            assertTrue(m.startsWith("cannot reach the Spark master spark://127.0.0.1:" + closed + " (127.0.0.1:" + closed
                    + ": Connection refused") && m.endsWith("); check the URL, that the master is running, and that "
                    + "this host can reach it"), m);
            // the same refusal met later, from a file system's service, is a set-up problem naming it
            IOException refused = assertThrows(java.net.ConnectException.class, () -> {
                try (java.net.Socket s = new java.net.Socket()) {
                    s.connect(new java.net.InetSocketAddress(loopback, closed), 10_000);
                }
            });
            assertEquals("cannot reach a file system's service (Connection refused); check the address in --input, "
                    + "--output or --initial-states and that the service is running",
                    SetupChecks.setupProblem(new IOException("reading the input", refused)));
        }
    }

    /**
     * --input and --output on a file system with no connector are refused before Spark starts, each path of a list
     * by itself: a scheme Hadoop knows no class for, and one whose configured class is not on the class path.
     * Local paths, and a run with no --input (--synthetic), pass.
     */
    @Test
    void aPathWithoutItsConnectorIsRefusedBeforeSparkStarts() {
        Configuration hadoop = new Configuration();
        hadoop.set("fs.foo.impl", "com.example.NoSuchFileSystem");
        java.util.function.Function<java.util.List<String>, dev.lightning.attention.job.config.JobConfig> cfg =
                args -> dev.lightning.attention.job.config.OptionParser.parse(args, null, false, java.util.Map.of());
        SetupChecks.checkFileSystems(cfg.apply(java.util.List.of("--input", "in,file:/d/x", "--output", "out")), hadoop);
        SetupChecks.checkFileSystems(cfg.apply(java.util.List.of("--synthetic", "100,1,4,4,f32,1", "--output", "out")),
                hadoop);
        String m = assertThrows(InvalidInputException.class, () -> SetupChecks.checkFileSystems(cfg.apply(
                java.util.List.of("--input", "in, bar://b/x", "--output", "out")), hadoop)).getMessage();
        assertTrue(m.startsWith("--input bar://b/x: no Hadoop FileSystem for scheme 'bar' on the classpath: add the jar "
                + "that provides a Hadoop FileSystem for 'bar'"), m);
        m = assertThrows(InvalidInputException.class, () -> SetupChecks.checkFileSystems(cfg.apply(
                java.util.List.of("--input", "in", "--output", "foo://b/out")), hadoop)).getMessage();
        assertTrue(m.startsWith("--output foo://b/out: no Hadoop FileSystem for scheme 'foo' on the classpath "
                + "(com.example.NoSuchFileSystem not found): "), m);
    }

    /** A connector on the class path whose own dependency is not: its constructor's class lookup fails. */
    public static final class ConnectorWithoutItsSdk extends org.apache.hadoop.fs.RawLocalFileSystem {
        public ConnectorWithoutItsSdk() throws ClassNotFoundException {
            Class.forName("com.example.sdk.MissingClient");
        }
    }

    /**
     * A ClassNotFoundException is a missing connector only where Hadoop looked up the scheme's class
     * (FileSystem.getFileSystemClass); one met as a connector that was found starts (its SDK missing) is not called a
     * missing connector of that scheme, which would send the user for a jar that is already there.
     */
    @Test
    void aConnectorMissingItsOwnDependencyIsNotCalledMissing() {
        Configuration conf = new Configuration();
        conf.set("fs.sdkless.impl", ConnectorWithoutItsSdk.class.getName());
        Exception e = assertThrows(Exception.class, () -> FileSystem.get(URI.create("sdkless://b/x"), conf));
        assertNull(SetupChecks.setupProblem(new IOException("reading the input", e)), e.toString());
    }
}
