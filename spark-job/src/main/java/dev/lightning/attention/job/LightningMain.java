package dev.lightning.attention.job;

import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.spark.SparkConf;
import org.apache.spark.SparkContext;

import java.io.PrintStream;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The command line, for {@code bin/lightning} and {@code spark-submit} alike:
 * <pre>
 *   lightning run --input DIR --output DIR [options]     compute o and final_state for every file
 *   lightning demo [--dir DIR] [options]                 generate a built-in input, run, check it
 *   lightning options                                    the options table (Markdown)
 * </pre>
 * Exit status: 0 done, 1 the job failed, 2 bad usage or input.
 */
public final class LightningMain {
    static final String USAGE = String.join("\n",
            "usage: lightning run --input DIR --output DIR [--partition-tokens N] [--chunk-size N]",
            "                     [--scale X] [--backend auto|cpu|gpu] [--master URL] [more options]",
            "       lightning demo [--dir DIR] [run options]",
            "       lightning options",
            "       lightning generate --output DIR [--files N] [--tokens T] [--heads H] [--dk D] [--dv D] [--dtype bf16]",
            "       lightning bench [--backend cpu] [--tokens N] [--heads H] [--dk D] [--dv D] [--dtype bf16]",
            "",
            "run: computes lightning attention (causal linear attention with per-head decay) for every",
            "  *.safetensors file of --input (q [T,H,Dk], k [T,H,Dk], v [T,H,Dv] in F32, F16 or BF16;",
            "  optional slope [H] F32 and initial_state [H,Dk,Dv] F32) and writes, under the same name in",
            "  --output, o [T,H,Dv] in the input's dtype and final_state [H,Dk,Dv] F32, where",
            "  S_t = exp(-slope) S_{t-1} + k_t^T v_t and o_t = scale q_t S_t.",
            "demo: writes a built-in input to DIR/input (default: target/lightning-demo under the",
            "  project), runs the job into DIR/output and checks every result against a float64",
            "  reference.",
            "generate: writes N random sequence files (fixed seeds), an input for trying the job at scale.",
            "bench: times a backend's pass 1 and pass 2 on one in-memory sequence (no Spark, no I/O).",
            "",
            "Options (each also settable as --conf KEY=VALUE or in spark-defaults.conf by its key):");

    private LightningMain() {
    }

    public static void main(String[] args) {
        int status = run(args, System.out, System.err);
        if (status != 0) {
            System.exit(status);
        }
    }

    /** Runs a command; returns the exit status instead of exiting, for tests and embedding. */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        try {
            if (args.length == 0 || isHelp(args[0]) || "help".equals(args[0])) {
                out.println(USAGE);
                out.print(Settings.helpText());
                out.println("  --conf KEY=VALUE           any option by key, or any Spark setting (repeatable)");
                return args.length == 0 ? 2 : 0;
            }
            String command = args[0];
            List<String> rest = Arrays.asList(args).subList(1, args.length);
            if (rest.stream().anyMatch(LightningMain::isHelp)) {
                return run(new String[] {"help"}, out, err);
            }
            switch (command) {
                case "run":
                    runJob(parse(rest, null), out);
                    return 0;
                case "demo":
                    return demo(rest, out) ? 0 : 1;
                case "options":
                    out.print(Settings.markdownTable());
                    return 0;
                case "generate":
                    generate(rest, out);
                    return 0;
                case "bench":
                    dev.lightning.attention.kernel.KernelBench.main(rest.toArray(new String[0]));
                    return 0;
                default:
                    throw new InvalidInputException("unknown command '" + command + "': expected run, demo, generate, options or bench "
                            + "(see --help)");
            }
        } catch (Exception e) {
            InvalidInputException bad = findInvalidInput(e);
            if (bad != null) {
                err.println("lightning: error: " + bad.getMessage());
                return 2;
            }
            err.println("lightning: failed: " + e);
            e.printStackTrace(err);
            return 1;
        }
    }

    private static boolean isHelp(String a) {
        return "--help".equals(a) || "-h".equals(a);
    }

    /** Input errors found on executors reach the driver wrapped in Spark's exceptions. */
    private static InvalidInputException findInvalidInput(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof InvalidInputException) {
                return (InvalidInputException) t;
            }
            if (t.getCause() == t) {
                break;
            }
        }
        return null;
    }

    /** Parses flags and {@code --conf} pairs; {@code demoDir} receives {@code --dir} when non-null. */
    static JobConfig parse(List<String> args, String[] demoDir) {
        Map<String, String> flags = new LinkedHashMap<>();
        Map<String, String> conf = new LinkedHashMap<>();
        for (int i = 0; i < args.size(); i++) {
            String a = args.get(i);
            String value = null;
            int eq = a.indexOf('=');
            if (a.startsWith("--") && eq > 0) {
                value = a.substring(eq + 1);
                a = a.substring(0, eq);
            }
            if ("--conf".equals(a)) {
                String pair = value != null ? value : next(args, ++i, a);
                int e = pair.indexOf('=');
                if (e <= 0) {
                    throw new InvalidInputException("--conf expects KEY=VALUE, got '" + pair + "'");
                }
                conf.put(pair.substring(0, e).trim(), pair.substring(e + 1).trim());
                continue;
            }
            if (demoDir != null && "--dir".equals(a)) {
                demoDir[0] = value != null ? value : next(args, ++i, a);
                continue;
            }
            Setting<?> s = Settings.byFlag(a);
            if (s == null) {
                throw new InvalidInputException("unknown option '" + args.get(i) + "' (see --help)");
            }
            if (s.isSwitch()) {
                flags.put(a, value != null ? value : "true");
            } else {
                flags.put(a, value != null ? value : next(args, ++i, a));
            }
        }
        SparkConf defaults = new SparkConf();
        return JobConfig.resolve(flags, conf, key -> defaults.contains(key) ? defaults.get(key) : null);
    }

    private static String next(List<String> args, int i, String flag) {
        if (i >= args.size()) {
            throw new InvalidInputException(flag + " needs a value");
        }
        return args.get(i);
    }

    /** The Spark configuration of a run: the job's fixed settings over the user's. */
    static SparkConf sparkConf(JobConfig cfg) {
        SparkConf conf = new SparkConf();
        cfg.sparkSettings.forEach(conf::set);
        if (cfg.master != null) {
            conf.setMaster(cfg.master);
        } else if (!conf.contains("spark.master")) {
            conf.setMaster("local[*]");
        }
        if (!conf.contains("spark.app.name")) {
            conf.setAppName("lightning-attention");
        }
        String master = conf.get("spark.master");
        if (master.startsWith("local") && !master.startsWith("local-cluster")
                && conf.contains("spark.task.resource.gpu.amount")) {
            throw new InvalidInputException("spark.task.resource.gpu.amount is set but master " + master
                    + " hands out no GPU resources (Spark would wait forever); remove the setting for local runs or "
                    + "use a standalone, YARN or Kubernetes master");
        }
        conf.set("spark.serializer", "org.apache.spark.serializer.KryoSerializer");
        conf.set("spark.kryo.registrationRequired", "true");
        conf.set("spark.kryo.registrator", LightningKryoRegistrator.class.getName());
        return conf;
    }

    static void runJob(JobConfig cfg, PrintStream out) throws Exception {
        SparkConf conf = sparkConf(cfg);
        ExecutorBackends.checkAvailable(cfg.backend, conf.get("spark.master"));
        long start = System.nanoTime();
        SparkContext sc = new SparkContext(conf);
        try {
            new LightningJob(cfg, sc, out, (System.nanoTime() - start) / 1e9).run();
        } finally {
            sc.stop();
        }
    }

    private static boolean demo(List<String> args, PrintStream out) throws Exception {
        String[] dirArg = {null};
        List<String> withDefaults = new ArrayList<>(args);
        // parse once to learn --dir, then add the demo's input, output and partition size
        parseDemoDir(args, dirArg);
        Path dir = dirArg[0] != null ? Paths.get(dirArg[0])
                : Paths.get(System.getProperty("lightning.home", "."), "target", "lightning-demo");
        Path input = dir.resolve("input").toAbsolutePath();
        Path output = dir.resolve("output").toAbsolutePath();
        withDefaults.addAll(List.of("--input", input.toString(), "--output", output.toString(), "--overwrite"));
        if (!args.contains("--partition-tokens") && args.stream().noneMatch(a -> a.startsWith("--partition-tokens="))) {
            withDefaults.addAll(List.of("--partition-tokens", Long.toString(Demo.PARTITION_TOKENS)));
        }
        JobConfig cfg = parse(withDefaults, new String[1]);
        out.println("lightning demo: writing the built-in input to " + input);
        Demo.generate(input);
        runJob(cfg, out);
        boolean ok = Demo.verify(input, output, cfg, out);
        out.println(ok ? "lightning demo: all results match the float64 reference"
                : "lightning demo: MISMATCH against the float64 reference");
        return ok;
    }

    private static void generate(List<String> args, PrintStream out) throws java.io.IOException {
        Map<String, String> v = new LinkedHashMap<>(Map.of("--files", "1", "--tokens", "65536", "--heads", "8",
                "--dk", "64", "--dv", "64", "--dtype", "bf16"));
        String dir = null;
        for (int i = 0; i < args.size(); i += 2) {
            String flag = args.get(i);
            String value = next(args, i + 1, flag);
            if ("--output".equals(flag)) {
                dir = value;
            } else if (v.containsKey(flag)) {
                v.put(flag, value);
            } else {
                throw new InvalidInputException("generate: unknown option '" + flag + "'; expected --output, "
                        + String.join(", ", v.keySet()));
            }
        }
        if (dir == null) {
            throw new InvalidInputException("generate: --output DIR is required");
        }
        int files = Integer.parseInt(v.get("--files"));
        Path d = Paths.get(dir);
        java.nio.file.Files.createDirectories(d);
        for (int f = 0; f < files; f++) {
            Demo.Spec spec = new Demo.Spec(String.format("seq-%05d.safetensors", f), Integer.parseInt(v.get("--tokens")),
                    Integer.parseInt(v.get("--heads")), Integer.parseInt(v.get("--dk")), Integer.parseInt(v.get("--dv")),
                    dev.lightning.attention.tensor.DType.fromSafetensors(v.get("--dtype")), null, false);
            Demo.write(d.resolve(spec.name), spec, new java.util.SplittableRandom(1000L + f));
        }
        out.println("lightning generate: wrote " + files + " file(s) to " + d.toAbsolutePath());
    }

    private static void parseDemoDir(List<String> args, String[] dir) {
        for (int i = 0; i < args.size(); i++) {
            String a = args.get(i);
            if (a.startsWith("--dir=")) {
                dir[0] = a.substring("--dir=".length());
            } else if ("--dir".equals(a)) {
                dir[0] = next(args, i + 1, a);
            } else if ("--input".equals(a) || "--output".equals(a) || a.startsWith("--input=")
                    || a.startsWith("--output=")) {
                throw new InvalidInputException("demo takes --dir DIR, not " + a);
            }
        }
    }
}
