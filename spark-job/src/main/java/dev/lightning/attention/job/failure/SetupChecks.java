package dev.lightning.attention.job.failure;

import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.tensor.ErrorText;
import dev.lightning.attention.tensor.InvalidInputException;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * What is wrong with a run's setup, said in one line before Spark starts (or recognised when
 * Spark or Hadoop throw it later): a master URL Spark would not accept or cannot reach, a
 * file-system scheme without its connector on the classpath.
 */
public final class SetupChecks {
    private SetupChecks() {
    }

    /** Hadoop's words: UnsupportedFileSystemException's 'No FileSystem for scheme "s3a"'. */
    /** The most a message quotes of a library's first line: Spark's can hold a whole query plan. */
    private static final int LINE = 300;
    private static final java.util.regex.Pattern NO_FILE_SYSTEM =
            java.util.regex.Pattern.compile("scheme \"([^\"]*)\"");
    /** Spark's FAILED_READ_FILE.CANNOT_READ_FILE_FOOTER: 'Encountered error while reading file F. Could not read footer.' */
    private static final java.util.regex.Pattern UNREADABLE_FOOTER =
            java.util.regex.Pattern.compile("reading file (\\S+)\\. Could not read footer");
    /** Configuration.getClass's 'Class org.apache.hadoop.fs.s3a.S3AFileSystem not found'. */
    private static final java.util.regex.Pattern CLASS_NOT_FOUND =
            java.util.regex.Pattern.compile("Class (\\S+) not found");

    /**
     * Set-up mistakes that Spark or Hadoop report as exceptions of their own, by the time the job
     * meets them: a master URL Spark cannot parse, a file system scheme without a connector on the
     * classpath. The checks before the SparkContext starts ({@link #checkMaster}, {@link
     * #checkFileSystems}) catch the usual cases with a sharper message; this catches the rest
     * (paths the job resolves later, a Spark that parses differently). Null when {@code e} is none.
     */
    public static String setupProblem(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
            String m = t.getMessage();
            if (t instanceof org.apache.spark.SparkException && m != null
                    && (m.startsWith("Could not parse Master URL") || m.startsWith("Invalid master URL"))) {
                return m + "; expected " + MASTER_FORMS;
            }
            if ((t instanceof IllegalArgumentException || t instanceof ArithmeticException
                    || t instanceof org.apache.spark.SparkException)
                    && thrownIn(t, "org.apache.spark.SparkContext", "<init>")) {
                // a Spark setting the SparkContext refused as it started ("The value 'abc' in the config
                // spark.network.timeout is invalid", spark.task.cpus=0's "/ by zero"): it was printed with two
                // stack traces and advice to --resume, which starts Spark with the same settings
                return "Spark did not start with this run's Spark settings (" + ErrorText.firstLine(
                        m != null ? m : t.getClass().getSimpleName(), LINE) + "); correct the setting it names, given "
                        + "as --conf KEY=VALUE or in the Spark configuration, and run again";
            }
            if (t instanceof org.apache.hadoop.fs.UnsupportedFileSystemException && m != null) {
                java.util.regex.Matcher scheme = NO_FILE_SYSTEM.matcher(m);
                if (scheme.find()) {
                    return missingConnector(scheme.group(1), null);
                }
            }
            if (m != null && (m.contains("is not a Parquet file") || m.contains("CANNOT_READ_FILE_FOOTER"))) {
                // the innermost such message names the file; outer ones wrap it in Spark's job text
                Throwable inner = t;
                Throwable root = t;
                for (Throwable c = t.getCause(); c != null && c != root; c = c.getCause()) {
                    if (String.valueOf(c.getMessage()).contains("is not a Parquet file")) {
                        inner = c;
                    }
                    root = c;
                }
                m = inner.getMessage();
                if (!m.contains("is not a Parquet file")) {
                    // Parquet reads the footer's length before its magic number: a file that is not
                    // Parquet fails there as often as not ("footer is too large: 3149117172to be read",
                    // "the footer index is not within the file"), which Spark wraps as
                    // FAILED_READ_FILE.CANNOT_READ_FILE_FOOTER naming the file; that printed the whole trace
                    java.util.regex.Matcher file = UNREADABLE_FOOTER.matcher(m);
                    m = (file.find() ? file.group(1) : ErrorText.firstLine(m, LINE)) + " is not a Parquet file ("
                            + ErrorText.firstLine(String.valueOf(root.getMessage()), LINE).trim() + ")";
                }
                // Parquet's line names the file and says it is no Parquet file: said once (wrapped in "a file of
                // the input is not a Parquet file (...)" it read "... not a Parquet file (F is not a Parquet file (...))")
                return ErrorText.firstLine(m, LINE) + "; --input-format parquet reads tables of .parquet files: give "
                        + "those, or safetensors files with --input-format safetensors";
            }
            if (t instanceof UnsupportedOperationException && "getSubject is not supported".equals(m)) {
                return javaRefusesGetSubject(); // where checkJava did not run first (a Spark program's own JVM)
            }
            if (t instanceof java.io.IOException && m != null && m.startsWith("Incomplete HDFS URI, no host")) {
                // hdfs:///PATH with no fs.defaultFS naming a NameNode: DistributedFileSystem.initialize's words
                return ErrorText.firstLine(m, LINE) + ": an hdfs:// path names its NameNode "
                        + "(hdfs://HOST:PORT/PATH), or takes it from fs.defaultFS (--conf "
                        + "spark.hadoop.fs.defaultFS=hdfs://HOST:PORT); check --input, --output and --initial-states";
            }
            if (t instanceof java.net.ConnectException || t instanceof java.net.UnknownHostException
                    || t instanceof java.net.NoRouteToHostException) {
                return "cannot reach a file system's service (" + ErrorText.firstLine(String.valueOf(m), LINE)
                        + "); check the address in --input, --output or --initial-states and that the service is "
                        + "running";
            }
            if (t instanceof ClassNotFoundException && t != e && calledFrom(e, "getFileSystemClass")) {
                java.util.regex.Matcher cls = CLASS_NOT_FOUND.matcher(String.valueOf(m));
                String name = cls.find() ? cls.group(1) : String.valueOf(m);
                return missingConnector(schemeOf(name, new org.apache.hadoop.conf.Configuration()), name);
            }
        }
        return null;
    }

    /**
     * Refuses a Java that Hadoop cannot run on, before anything is read or written. Java 23 and later throw from
     * Subject.getSubject (unless a Security Manager may be allowed, which Java 24 removed), and Hadoop's login code
     * (UserGroupInformation) calls it for Spark and for every file system: the run failed at its first path with
     * the trace of Hadoop's service loader, naming neither the JDK nor what to use instead.
     */
    @SuppressWarnings("removal")
    public static void checkJava() {
        try {
            javax.security.auth.Subject.getSubject(java.security.AccessController.getContext());
        } catch (UnsupportedOperationException e) {
            throw new InvalidInputException(javaRefusesGetSubject(), e);
        }
    }

    /** What {@link #checkJava} says. */
    static String javaRefusesGetSubject() {
        return "Java " + Runtime.version().feature() + " (" + System.getProperty("java.home") + ") refuses "
                + "Subject.getSubject, which Hadoop's login code calls for Spark and every file system; run with "
                + "Java 17 or 21 (set JAVA_HOME to that JDK)";
    }

    /** True when {@code t} itself was thrown through {@code cls.method}. */
    private static boolean thrownIn(Throwable t, String cls, String method) {
        for (StackTraceElement f : t.getStackTrace()) {
            if (cls.equals(f.getClassName()) && method.equals(f.getMethodName())) {
                return true;
            }
        }
        return false;
    }

    /** True when some exception of {@code e}'s chain was thrown through {@code FileSystem.<method>}. */
    private static boolean calledFrom(Throwable e, String method) {
        for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
            for (StackTraceElement f : t.getStackTrace()) {
                if ("org.apache.hadoop.fs.FileSystem".equals(f.getClassName()) && method.equals(f.getMethodName())) {
                    return true;
                }
            }
        }
        return false;
    }

    /** The scheme whose {@code fs.<scheme>.impl} is {@code className}, or "?" when none is. */
    private static String schemeOf(String className, org.apache.hadoop.conf.Configuration hadoop) {
        for (Map.Entry<String, String> kv : hadoop.getValByRegex("^fs\\.[^.]+\\.impl$").entrySet()) {
            if (kv.getValue().trim().equals(className)) {
                return kv.getKey().substring("fs.".length(), kv.getKey().length() - ".impl".length());
            }
        }
        return "?";
    }

    /**
     * What to add for a file system scheme that has no connector on the classpath. bin/lightning
     * and the application jar ship Hadoop's client (local file system, HDFS, WebHDFS, HTTP) only;
     * object store connectors are separate jars that must match the Hadoop version on the
     * classpath.
     *
     * @param className the implementation Hadoop looked for, when configured; null when the scheme
     *                  has none
     */
    static String missingConnector(String scheme, String className) {
        String hadoop = org.apache.hadoop.util.VersionInfo.getVersion();
        String what;
        switch (scheme) {
            case "s3a":
                what = "add org.apache.hadoop:hadoop-aws:" + hadoop + " (the Hadoop version on this classpath) "
                        + "and the jars it depends on (the AWS SDK software.amazon.awssdk:bundle among them)";
                break;
            case "s3":
            case "s3n":
                what = "Apache Hadoop reads S3 through s3a:// (write s3a://BUCKET/PATH) with "
                        + "org.apache.hadoop:hadoop-aws:" + hadoop + " and the AWS SDK bundle it depends on";
                break;
            case "abfs":
            case "abfss":
            case "wasb":
            case "wasbs":
                what = "add org.apache.hadoop:hadoop-azure:" + hadoop + " (the Hadoop version on this classpath) "
                        + "and its dependencies";
                break;
            case "gs":
                what = "add Google's Cloud Storage connector for Hadoop " + hadoop.replaceAll("\\..*", "")
                        + " (com.google.cloud.bigdataoss:gcs-connector)";
                break;
            default:
                what = "add the jar that provides a Hadoop FileSystem for '" + scheme + "' and, if it does not "
                        + "register itself, set spark.hadoop.fs." + scheme + ".impl to its class";
        }
        return "no Hadoop FileSystem for scheme '" + scheme + "' on the classpath"
                + (className != null ? " (" + className + " not found)" : "") + ": " + what
                + ", with LIGHTNING_EXTRA_CLASSPATH for bin/lightning or --packages/--jars for spark-submit; "
                + "see \"Object stores\" in README.md";
    }

    /**
     * Refuses, before anything is written, a driver heap (or a {@code spark.executor.memory}) below the minimum of
     * Spark's memory manager. Spark checks it only as the SparkContext starts, after the run had taken the lock and
     * made its staging: the run then failed with Spark's trace, whose advice (--driver-memory, spark.driver.memory)
     * bin/lightning cannot take, and suggested a --resume that fails the same way. Spark's own rule decides
     * ({@code UnifiedMemoryManager}, as SparkEnv builds it for the driver), so the figures are its; the memory
     * manager is built on a copy of the configuration without its unmanaged-memory poller, which would start a thread.
     */
    public static void checkDriverMemory(org.apache.spark.SparkConf conf) {
        org.apache.spark.SparkConf probe = conf.clone().set(
                org.apache.spark.internal.config.package$.MODULE$.UNMANAGED_MEMORY_POLLING_INTERVAL().key(), "0");
        try {
            org.apache.spark.memory.UnifiedMemoryManager$.MODULE$.apply(probe, 1);
        } catch (org.apache.spark.SparkIllegalArgumentException e) {
            Map<String, String> p = e.getMessageParameters();
            String need = mebibytes(p.get("minSystemMemory"));
            if ("INVALID_DRIVER_MEMORY".equals(e.getCondition())) {
                throw new InvalidInputException("the driver's heap is " + mebibytes(p.get("systemMemory"))
                        + ", expected at least the " + need + " Spark needs to start; give the driver more (bin/lightning: "
                        + "LIGHTNING_DRIVER_MEMORY=1g or more; spark-submit: --driver-memory)", e);
            }
            if ("INVALID_EXECUTOR_MEMORY".equals(e.getCondition())) {
                throw new InvalidInputException("spark.executor.memory is " + mebibytes(p.get("executorMemory"))
                        + ", expected at least the " + need + " Spark needs to start an executor; give "
                        + "--conf spark.executor.memory=1g or more", e);
            }
            throw e;
        }
    }

    /** A byte count of Spark's message parameters in MiB, for messages (the text as it came where it is no number). */
    private static String mebibytes(String bytes) {
        try {
            return String.format(java.util.Locale.ROOT, "%.0f MiB", Long.parseLong(bytes.trim()) / (double) (1L << 20));
        } catch (RuntimeException e) {
            return bytes + " bytes";
        }
    }

    /** local[N] and local[N,F], N in group 1. */
    private static final java.util.regex.Pattern LOCAL_THREADS =
            java.util.regex.Pattern.compile("local\\[([0-9]+|\\*)(?:\\s*,\\s*[0-9]+)?]");

    /** The master URLs Spark itself accepts, for messages. */
    static final String MASTER_FORMS = "local, local[N], local[*], local[N,F], local-cluster[N,C,M], "
            + "spark://HOST:PORT[,HOST:PORT...], or the URL of a cluster manager on the classpath "
            + "(yarn, k8s://... under spark-submit from a Spark distribution that has them)";

    /**
     * Refuses, before Spark starts, a master URL that Spark would reject with a stack trace while
     * starting the SparkContext. The forms are those of {@code SparkContext.createTaskScheduler}:
     * local modes, standalone {@code spark://} URLs (each HOST:PORT parsed as Spark parses it), and
     * anything a cluster manager found through Spark's {@code ExternalClusterManager} service
     * accepts (YARN and Kubernetes are such managers, and not part of bin/lightning's classpath).
     */
    public static void checkMaster(String master, String source) {
        java.util.regex.Matcher threads = LOCAL_THREADS.matcher(master);
        if (threads.matches()) {
            // Spark takes the form and then refuses 0 threads ("Asked to run locally with 0 threads") or a count past
            // an int (its NumberFormatException) as the SparkContext starts: a stack trace, and advice to --resume
            if (!threads.group(1).equals("*") && !threads.group(1).matches("0*[1-9][0-9]{0,8}")) {
                throw new InvalidInputException(source + ": expected local[N] with N threads from 1 to 999999999 (or "
                        + "local[*], one per core), got '" + master + "'");
            }
            return;
        }
        if (master.equals("local")
                || master.matches("local-cluster\\[\\s*([0-9]+)\\s*,\\s*([0-9]+)\\s*,\\s*([0-9]+)\\s*]")) {
            return;
        }
        if (master.startsWith("spark://")) {
            standaloneMasters(master, source);
            return;
        }
        boolean managed = false;
        try {
            ClassLoader loader = Thread.currentThread().getContextClassLoader() != null
                    ? Thread.currentThread().getContextClassLoader() : SetupChecks.class.getClassLoader();
            for (org.apache.spark.scheduler.ExternalClusterManager m
                    : java.util.ServiceLoader.load(org.apache.spark.scheduler.ExternalClusterManager.class, loader)) {
                managed |= m.canCreate(master);
            }
        } catch (LinkageError | java.util.ServiceConfigurationError e) {
            return; // Spark's internals moved: leave the URL to Spark itself (setupProblem reports it)
        }
        if (managed) {
            return;
        }
        String hint = master.equals("yarn") || master.startsWith("k8s://")
                ? " (no cluster manager on this classpath takes it: submit with spark-submit from a Spark "
                        + "distribution built with " + (master.equals("yarn") ? "YARN" : "Kubernetes") + " support)"
                : "";
        throw new InvalidInputException(source + ": expected " + MASTER_FORMS + ", got '" + master + "'" + hint);
    }

    /** The HOST:PORT pairs of a standalone master URL, checked as Spark's RpcAddress.fromSparkURL checks them. */
    private static List<java.net.InetSocketAddress> standaloneMasters(String master, String source) {
        List<java.net.InetSocketAddress> addresses = new ArrayList<>();
        for (String hostPort : master.substring("spark://".length()).split(",")) {
            java.net.URI uri;
            try {
                uri = new java.net.URI("spark://" + hostPort);
            } catch (java.net.URISyntaxException e) {
                uri = null;
            }
            if (uri == null || uri.getHost() == null || uri.getPort() < 0 || !uri.getPath().isEmpty()
                    || uri.getQuery() != null || uri.getFragment() != null || uri.getUserInfo() != null) {
                throw new InvalidInputException(source + ": expected spark://HOST:PORT[,HOST:PORT...], got '"
                        + master + "' ('" + hostPort + "' is not HOST:PORT)");
            }
            addresses.add(java.net.InetSocketAddress.createUnresolved(uri.getHost(), uri.getPort()));
        }
        return addresses;
    }

    /**
     * Fails at once when no master of a standalone URL takes a TCP connection. Spark itself would
     * retry its registration for a minute, print three stack traces and then fail the job with
     * "SparkContext has been shutdown". One reachable master of several (high availability) is
     * enough; whether it is a working Spark master is for Spark to find out.
     */
    public static void checkMasterReachable(String master, String source) {
        if (!master.startsWith("spark://")) {
            return;
        }
        List<String> problems = new ArrayList<>();
        for (java.net.InetSocketAddress a : standaloneMasters(master, source)) {
            try (java.net.Socket socket = new java.net.Socket()) {
                socket.connect(new java.net.InetSocketAddress(a.getHostString(), a.getPort()), 10_000);
                return;
            } catch (java.net.UnknownHostException e) {
                problems.add(a.getHostString() + ": unknown host");
            } catch (java.io.IOException e) {
                problems.add(a.getHostString() + ":" + a.getPort() + ": " + e.getMessage());
            }
        }
        throw new ExplainedFailure("cannot reach the Spark master " + master + " (" + String.join("; ", problems)
                + "); check the URL, that the master is running, and that this host can reach it", null);
    }

    /**
     * Refuses, before Spark starts, an {@code --input} or {@code --output} whose file system has no
     * connector on the classpath (an {@code s3a://} path without hadoop-aws, say): Hadoop would
     * report it only once the job is under way, as an exception that does not say what to add.
     * The Hadoop configuration is the one the job will use: the defaults and {@code core-site.xml}
     * on the classpath, under the {@code spark.hadoop.*} settings.
     */
    public static void checkFileSystems(JobConfig cfg, org.apache.hadoop.conf.Configuration hadoop) {
        checkFileSystem(Settings.INPUT.flag, cfg.get(Settings.INPUT), hadoop);
        checkFileSystem(Settings.OUTPUT.flag, cfg.get(Settings.OUTPUT), hadoop);
    }

    private static void checkFileSystem(String flag, String paths, org.apache.hadoop.conf.Configuration hadoop) {
        if (paths == null) {
            return;
        }
        // --input may be a comma-separated list; each part must have a file system (a part that is
        // only a piece of a path with a comma in it has no scheme of its own, or the whole one's)
        for (String path : paths.split(",")) {
            String scheme;
            try {
                java.net.URI uri = new org.apache.hadoop.fs.Path(path.trim()).toUri();
                scheme = uri.getScheme() != null ? uri.getScheme()
                        : org.apache.hadoop.fs.FileSystem.getDefaultUri(hadoop).getScheme();
            } catch (IllegalArgumentException e) {
                continue; // not a path Hadoop can parse: the job reports it with its context
            }
            if (scheme == null) {
                continue;
            }
            try {
                org.apache.hadoop.fs.FileSystem.getFileSystemClass(scheme, hadoop);
            } catch (org.apache.hadoop.fs.UnsupportedFileSystemException e) {
                throw new InvalidInputException(flag + " " + path.trim() + ": " + missingConnector(scheme, null));
            } catch (RuntimeException e) {
                if (!(e.getCause() instanceof ClassNotFoundException)) {
                    throw e;
                }
                throw new InvalidInputException(flag + " " + path.trim() + ": "
                        + missingConnector(scheme, hadoop.get("fs." + scheme + ".impl", "?").trim()));
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }
    }
}
