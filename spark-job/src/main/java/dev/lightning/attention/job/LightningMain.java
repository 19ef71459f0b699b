package dev.lightning.attention.job;

import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.OptionParser;
import dev.lightning.attention.job.config.Setting;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.exec.ExecutorBackends;
import dev.lightning.attention.job.failure.Causes;
import dev.lightning.attention.job.failure.ExplainedFailure;
import dev.lightning.attention.job.failure.SetupChecks;
import dev.lightning.attention.job.input.InputFormats;
import dev.lightning.attention.job.tables.LightningKryoRegistrator;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.spark.SparkConf;
import org.apache.spark.SparkContext;

import java.io.PrintStream;
import java.nio.file.Files;
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
 *   lightning run --input PATHS --output DIR [options]     compute o and final_state for every file
 *   lightning demo [--dir DIR] [options]                 generate a built-in input, run, check it
 *   lightning options                                    the options table (Markdown)
 * </pre>
 * Exit status: 0 done, 1 the job failed, 2 bad usage or input.
 */
public final class LightningMain {
    static final String USAGE = String.join("\n",
            "usage: lightning run (--input PATHS | --synthetic T,H,Dk,Dv,dtype,seed) --output DIR [--partition-tokens N] [--chunk-size N]",
            "                     [--scale X] [--backend auto|cpu|gpu] [--master URL] [more options]",
            "       lightning demo [--dir DIR] [run options]",
            "       lightning options",
            "       lightning generate --output DIR [--files N] [--tokens T] [--heads H] [--heads-k HK] [--heads-v HV]",
            "                          [--dk D] [--dv D] [--dtype bf16] [--initial-state] [--initial-normalizer] [--overwrite]",
            "       lightning bench [--backend cpu|gpu|gpu-generic] [--tokens N] [--heads H] [--dk D] [--dv D] [--dtype bf16]",
            "                       [--heads-k HK] [--heads-v HV] [--feature-map identity|elu1|relu] [--normalize]",
            "                       [--runs N] [--chunk N] [--check-tokens N]",
            "       lightning COMMAND --help   (generate's and bench's own options and defaults)",
            "",
            "run: computes lightning attention (causal linear attention with per-head decay) for every",
            "  *.safetensors file of --input (q [T,Hq,Dk], k [T,Hk,Dk], v [T,Hv,Dv] in F32, F16 or BF16, each",
            "  head count dividing H = max(Hq,Hk,Hv); optional slope [H], initial_state [H,Dk,Dv] and, with",
            "  --normalize, initial_normalizer [H,Dk], all F32) and writes, under the same name in --output,",
            "  o [T,H,Dv] in the input's dtype (or --output-dtype) and final_state [H,Dk,Dv] F32 (with",
            "  --normalize also final_normalizer [H,Dk]; with --state-every N also states [T/N,H,Dk,Dv] and,",
            "  with --normalize, normalizers [T/N,H,Dk]), where S_t = exp(-slope) S_{t-1} + phi(k_t)^T v_t and o_t = scale",
            "  phi(q_t) S_t (--normalize: divided by phi(q_t).z_t + eps). Results are staged and",
            "  published in one commit when the run succeeds; a failed or killed run changes nothing in",
            "  --output and can be continued with --resume. Exit status: 0 done, 1 failed, 2 bad usage/input.",
            "run --attention softmax: computes causal softmax attention instead, for q [T,Hq,Dk], k [T,Hk,Dk],",
            "  v [T,Hk,Dv] (Hq a multiple of Hk; no slope or initial tensors): o_t = sum_{j<=t}",
            "  softmax_j(scale q_t.k_j) v_j, scale 1/sqrt(Dk) unless --scale is given (lightning's default",
            "  stays 1.0), with --window W only keys (t-W, t]; writes o [T,Hq,Dv] and, with --write-lse,",
            "  lse [T,Hq] F32. The options marked \"Lightning only\" are refused with it.",
            "run over tables: with --input-format parquet (auto: a .parquet file or a directory of them), --input",
            "  is a table of blocks (sequence, start, tokens, dtype, heads, widths, q, k, v) and --output gets the",
            "  Parquet tables o/ and final_states/ (and states/ with --state-every); --output-format parquet",
            "  writes those tables from *.safetensors files too. --resume, --output-mode checksums and the few",
            "  options README's \"Sequences as table rows\" lists are refused with tables.",
            "demo: writes a built-in input to DIR/input (default: target/lightning-demo under the",
            "  project), runs the job into DIR/output and checks every result against a float64",
            "  reference.",
            "generate: writes N random sequence files (fixed seeds), an input for trying the job at scale.",
            "bench: times a backend's pass 1 and pass 2 on one in-memory sequence (no Spark, no I/O).",
            "",
            "Options (each also settable as --conf KEY=VALUE by its key, or in spark-defaults.conf under spark-submit):");

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
                // each command's own options: generate's and bench's are not the job's
                switch (command) {
                    case "generate":
                        out.print(generateHelp());
                        return 0;
                    case "bench":
                        out.println(dev.lightning.attention.bench.KernelBench.USAGE);
                        return 0;
                    case "options":
                        out.println("usage: lightning options\n\noptions: prints the table of the run options "
                                + "(Markdown), the one in the README's \"Options\".");
                        return 0;
                    default:
                        return run(new String[] {"help"}, out, err);
                }
            }
            switch (command) {
                case "run":
                    runJob(parse(rest, null), out);
                    return 0;
                case "demo":
                    return demo(rest, out) ? 0 : 1;
                case "options":
                    if (!rest.isEmpty()) {
                        throw new InvalidInputException("options takes no arguments, got '" + rest.get(0) + "' (see "
                                + "options --help)");
                    }
                    out.print(Settings.markdownTable());
                    return 0;
                case "generate":
                    generate(rest, out);
                    return 0;
                case "bench":
                    try {
                        dev.lightning.attention.bench.KernelBench.main(rest.toArray(new String[0]));
                    } catch (IllegalArgumentException e) { // its options: a usage error, said in one line
                        throw new InvalidInputException("bench: " + e.getMessage() + " (see --help)", e);
                    } catch (dev.lightning.attention.engine.GpuUnusableException e) {
                        throw new InvalidInputException("bench: " + e.getMessage() + "; use --backend cpu", e);
                    }
                    return 0;
                default:
                    throw new InvalidInputException("unknown command '" + command + "': expected run, demo, generate, options or bench "
                            + "(see --help)");
            }
        } catch (Exception e) {
            InvalidInputException bad = findInvalidInput(e);
            String usage = bad != null ? bad.getMessage() : SetupChecks.setupProblem(e);
            if (usage != null) {
                err.println("lightning: error: " + usage);
                return 2;
            }
            // failures whose message says all there is to say: one line, no stack trace
            Throwable explained = Causes.inChain(e, dev.lightning.attention.job.output.UnsharedOutputException.class);
            if (explained == null) {
                explained = Causes.inChain(e, ExplainedFailure.class);
            }
            if (explained != null) {
                err.println("lightning: failed: " + explained.getMessage());
                return 1;
            }
            // a full disk, a quota, ulimit -f or ulimit -n: Spark's and the JDK's traces around it add nothing
            String storage = Causes.storageLimit(e);
            if (storage == null) {
                storage = Causes.descriptorLimit(e);
            }
            if (storage != null) {
                err.println("lightning: failed: " + storage + ", and run again");
                return 1;
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
    static InvalidInputException findInvalidInput(Throwable e) {
        return Causes.inChain(e, InvalidInputException.class);
    }

    /** Parses flags and {@code --conf} pairs; {@code demoDir} receives {@code --dir} when non-null. */
    static JobConfig parse(List<String> args, String[] demoDir) {
        return OptionParser.parse(args, demoDir, false);
    }

    /** The Spark configuration of a run: the job's fixed settings over the user's. */
    static SparkConf sparkConf(JobConfig cfg) {
        SparkConf conf = new SparkConf();
        cfg.sparkSettings.forEach(conf::set);
        if (cfg.get(Settings.MASTER) != null) {
            conf.setMaster(cfg.get(Settings.MASTER));
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
        if (master.startsWith("local") && !conf.contains("spark.ui.enabled")) {
            // A local run is one batch command whose progress the job prints itself; Spark's web UI
            // (up only while the run lasts) cost about half a second of each run's start (5.0 -> 4.5 s
            // for a small file on the 2-core VM, 2026-12-02). --conf spark.ui.enabled=true brings it back.
            conf.set("spark.ui.enabled", "false");
        }
        conf.set("spark.serializer", "org.apache.spark.serializer.KryoSerializer");
        conf.set("spark.kryo.registrationRequired", "true");
        conf.set("spark.kryo.registrator", LightningKryoRegistrator.class.getName());
        if (!master.equals("local") && !master.startsWith("local[")) {
            withApplicationJar(conf, applicationJar());
        }
        return conf;
    }

    /**
     * The jar this class was loaded from (bin/lightning puts the application jar first on its class
     * path), or null where it is not a jar (the build's classes directory).
     */
    static String applicationJar() {
        try {
            java.security.CodeSource source = LightningMain.class.getProtectionDomain().getCodeSource();
            if (source == null || source.getLocation() == null) {
                return null;
            }
            Path path = Paths.get(source.getLocation().toURI());
            return Files.isRegularFile(path) && path.toString().endsWith(".jar") ? path.toString() : null;
        } catch (java.net.URISyntaxException | IllegalArgumentException | SecurityException e) {
            return null;
        }
    }

    /**
     * Adds the application jar to {@code spark.jars} where no entry of that name is there, so that the
     * executors of a cluster load the job's classes: spark-submit lists its application jar there
     * itself, but `bin/lightning run --master spark://...` starts the driver from a class path, and
     * executors of a stock Spark then failed the first task with "unread block data" (the classes of
     * its closure missing).
     */
    static void withApplicationJar(SparkConf conf, String jar) {
        if (jar == null) {
            return;
        }
        String name = Paths.get(jar).getFileName().toString();
        String jars = conf.get("spark.jars", "").trim();
        for (String entry : jars.split(",")) {
            String e = entry.trim();
            if (!e.isEmpty() && (e.equals(name) || e.endsWith("/" + name))) {
                return;
            }
        }
        conf.set("spark.jars", jars.isEmpty() ? jar : jars + "," + jar);
    }

    static void runJob(JobConfig cfg, PrintStream out) throws Exception {
        SetupChecks.checkJava();
        SparkConf conf = sparkConf(cfg);
        String master = conf.get("spark.master");
        String masterSource = Settings.MASTER.flag + " / " + Settings.MASTER.key;
        SetupChecks.checkMaster(master, masterSource);
        SetupChecks.checkDriverMemory(conf); // before the lock and the staging, which a SparkContext refused would keep
        // The same Hadoop configuration Spark will give the job (spark.hadoop.* applied): the
        // file systems are checked, the inputs listed and the output locked and probed with it,
        // before Spark starts.
        org.apache.hadoop.conf.Configuration hadoop =
                org.apache.spark.deploy.SparkHadoopUtil.get().newConfiguration(conf);
        SetupChecks.checkFileSystems(cfg, hadoop);
        boolean tables = InputFormats.parquetInput(cfg, hadoop); // lists --input: decided once, here
        boolean tableRun = InputFormats.tableRun(cfg, tables);
        if (tableRun) {
            // Spark SQL sends its own classes through the configured serializer (the schemas its
            // Parquet reader merges, its writers' task results), which are not ours to register;
            // ours still are (LightningKryoRegistrator), so they stay compact
            conf.set("spark.kryo.registrationRequired", "false");
        }
        if (!tableRun && conf.getBoolean("spark.speculation", false)) {
            // A speculative copy of a task would run beside the first and write the same byte ranges
            // of a split sequence's output file (or the same part files) at the same time; the bytes
            // agree only when both attempts compute on the same kind of backend with the same plan.
            // A table run's writers are Spark's own, whose commit protocol handles speculation (also
            // for safetensors input written as tables, --output-format parquet).
            out.println("lightning: warning: spark.speculation=true is turned off for this run: two attempts of one "
                    + "piece would write the same places of its output at once");
            conf.set("spark.speculation", "false");
        }
        ExecutorBackends.checkAvailable(cfg.get(Settings.BACKEND), master);
        SetupChecks.checkMasterReachable(master, masterSource);
        SparkContext[] started = {null};
        try {
            new LightningJob(cfg, hadoop, out, () -> started[0] = new SparkContext(conf), tables).run();
        } catch (Exception e) {
            if (shuttingDown()) {
                throw new ExplainedFailure("stopped by a signal before the job finished (Spark shut down)", e);
            }
            if (started[0] != null && started[0].isStopped()) {
                throw new ExplainedFailure("the SparkContext was stopped while the job ran (" + e + "); Spark's log "
                        + "above says why, e.g. a master that stopped answering ('All masters are unresponsive') or "
                        + "that removed the application", e);
            }
            throw e;
        } finally {
            if (started[0] != null) {
                started[0].stop();
            }
        }
    }

    /**
     * True once the JVM is shutting down (INT, TERM or HUP, or an exit elsewhere): Spark's shutdown
     * hook then stops the context under the running job, whose failure is only the echo of that.
     */
    static boolean shuttingDown() {
        Thread probe = new Thread(() -> { });
        try {
            Runtime.getRuntime().addShutdownHook(probe);
            Runtime.getRuntime().removeShutdownHook(probe);
            return false;
        } catch (IllegalStateException e) {
            return true;
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
        // the demo's partition size as a --conf pair ahead of the user's arguments, so that the user's
        // own --partition-tokens or --conf spark.lightning.partitionTokens (a later pair of the same
        // key replaces it) still decides; added as the flag, it had outranked the user's --conf
        withDefaults.addAll(0, List.of("--conf", Settings.PARTITION_TOKENS.key + "=" + Demo.PARTITION_TOKENS));
        JobConfig cfg = parse(withDefaults, new String[1]);
        if (cfg.softmax()) {
            throw new InvalidInputException("demo runs and checks lightning attention; for softmax attention run "
                    + "`lightning run --attention softmax --input PATHS --output DIR` (`lightning generate` writes inputs)");
        }
        // the check reads o from each result file: a run that writes no o, or tables instead of
        // files, would run to the end and then fail in the check
        if (cfg.checksums() || "parquet".equals(cfg.get(Settings.OUTPUT_FORMAT))) {
            String option = cfg.checksums() ? "--output-mode checksums" : "--output-format parquet";
            throw new InvalidInputException("demo checks the o of each result file against float64, and " + option
                    + " writes " + (cfg.checksums() ? "no o (its runs check sampled rows against float64 themselves)"
                    : "tables instead of files") + "; leave " + option + " out, or run `lightning run " + option
                    + " --input PATHS --output DIR` (`lightning generate` writes inputs)");
        }
        // the check starts each sequence from its file's initial_state (or zero): a run continuing stored
        // states was reported as a MISMATCH, and one over the demo's own earlier output was refused for
        // the two starting states of its files with initial_state, which the user cannot remove
        if (cfg.get(Settings.INITIAL_STATES) != null) {
            throw new InvalidInputException("demo checks each result against float64 from the file's own "
                    + "initial_state (or zero), and --initial-states " + cfg.get(Settings.INITIAL_STATES)
                    + " continues sequences from stored states instead; leave --initial-states out, or run "
                    + "`lightning run --initial-states DIR --input PATHS --output DIR` (README: \"Appending to "
                    + "stored states\")");
        }
        SetupChecks.checkJava(); // before the demo writes its input
        Demo.checkDir(dir, input, output);
        out.println("lightning demo: writing the built-in input to " + input);
        Demo.generate(input);
        runJob(cfg, out);
        boolean ok = Demo.verify(input, output, cfg, out);
        out.println(ok ? "lightning demo: all results match the float64 reference"
                : "lightning demo: MISMATCH against the float64 reference");
        return ok;
    }

    /**
     * The options of {@code generate}. They are checked like the job's own ({@link Setting#parse}),
     * so a wrong value is a usage error naming the option, what it expects and what came.
     */
    private static final List<Setting<?>> GENERATE = List.of(
            Setting.path("--output", null, "Directory for the files."),
            Setting.count("--files", null, 1, 1, 1_000_000, "Number of files."),
            Setting.count("--tokens", null, 65536, 1, Integer.MAX_VALUE, "T of each file."),
            Setting.count("--heads", null, 8, 1, Integer.MAX_VALUE, "Heads of q (Hq) of each file, and of k and v unless given."),
            Setting.optionalInt("--heads-k", null, 1, "--heads", "Heads of k (Hk): Hq, Hk and Hv must each divide the largest "
                    + "(e.g. --heads 8 --heads-k 2 --heads-v 2 for grouped-query attention)."),
            Setting.optionalInt("--heads-v", null, 1, "--heads", "Heads of v (Hv), e.g. --heads 2 --heads-k 2 --heads-v 6 for "
                    + "grouped values."),
            Setting.count("--dk", null, 64, 1, 256, "Dk of each file."),
            Setting.count("--dv", null, 64, 1, 256, "Dv of each file."),
            Setting.choice("--dtype", null, "bf16", "Dtype of q, k and v.", "f32", "f16", "bf16"),
            Setting.flagSwitch("--initial-state", null, "Also write a random initial_state [H, Dk, Dv] F32."),
            Setting.flagSwitch("--initial-normalizer", null, "Also write a random initial_normalizer [H, Dk] F32 in "
                    + "[0, 2) (for runs with --normalize)."),
            Setting.flagSwitch("--overwrite", null, "Replace files of the same names already in --output."));

    /** {@code generate --help}: its own options, with their values and defaults. */
    static String generateHelp() {
        StringBuilder b = new StringBuilder();
        b.append("usage: lightning generate --output DIR [options]\n\n");
        b.append("generate: writes --files random sequence files seq-00000.safetensors, ... to --output (fixed seeds: the\n"
                + "  same options write the same bytes), q [T,Hq,Dk], k [T,Hk,Dk], v [T,Hv,Dv], an input for trying the\n"
                + "  job at scale. Files of the same names already there are refused unless --overwrite. Each file is\n"
                + "  written a block at a time (any size; refused before writing where the files do not fit the disk).\n\n");
        b.append("Options:\n");
        for (Setting<?> s : GENERATE) {
            String head = "  " + s.flag + (s.isSwitch() ? "" : " " + (s.type.equals("path") ? "DIR"
                    : s.type.equals("integer") ? "N" : s.type));
            b.append(String.format("%-28s %s [default %s]%n", head, s.doc, s.isSwitch() ? "off" : s.defaultText));
        }
        return b.toString();
    }

    private static void generate(List<String> args, PrintStream out) throws java.io.IOException {
        Map<String, Object> v = new LinkedHashMap<>();
        for (Setting<?> s : GENERATE) {
            v.put(s.flag, s.defaultValue);
        }
        java.util.Set<String> given = new java.util.HashSet<>();
        for (int i = 0; i < args.size(); i++) {
            String[] split = OptionParser.split(args.get(i));
            String flag = split[0];
            String raw = split[1];
            Setting<?> setting = null;
            for (Setting<?> s : GENERATE) {
                setting = s.flag.equals(flag) ? s : setting;
            }
            if (setting == null) {
                throw new InvalidInputException("generate: unknown option '" + args.get(i) + "': expected one of "
                        + String.join(", ", v.keySet()));
            }
            if (!given.add(flag)) {
                throw new InvalidInputException("generate: " + flag + " given twice; give each option once");
            }
            if (raw == null) {
                raw = setting.isSwitch() ? "true" : OptionParser.next(args, ++i, flag);
            }
            v.put(flag, setting.parse(raw, "generate " + flag));
        }
        if (v.get("--output") == null) {
            throw new InvalidInputException("generate: --output DIR is required");
        }
        int files = Math.toIntExact((Long) v.get("--files"));
        int tokens = Math.toIntExact((Long) v.get("--tokens"));
        int headsQ = Math.toIntExact((Long) v.get("--heads"));
        int headsK = v.get("--heads-k") == null ? headsQ : (Integer) v.get("--heads-k");
        int headsV = v.get("--heads-v") == null ? headsQ : (Integer) v.get("--heads-v");
        int dk = Math.toIntExact((Long) v.get("--dk"));
        int dv = Math.toIntExact((Long) v.get("--dv"));
        dev.lightning.attention.tensor.DType dtype =
                dev.lightning.attention.tensor.DType.fromSafetensors((String) v.get("--dtype"));
        try {
            dev.lightning.attention.engine.AttentionSpec.checkGrouping(headsQ, headsK, headsV);
        } catch (IllegalArgumentException e) {
            throw new InvalidInputException("generate --heads " + headsQ + " --heads-k " + headsK + " --heads-v " + headsV
                    + ": " + e.getMessage());
        }
        // the files are written a block at a time, so the disk, not the memory, bounds them: refused before anything
        // is written where they cannot fit
        double perFile = Demo.fileSize(fileSpec(0, tokens, headsQ, headsK, headsV, dk, dv, dtype, v));
        Path outDir = Paths.get((String) v.get("--output")).toAbsolutePath();
        Path existing = outDir;
        while (existing != null && !java.nio.file.Files.exists(existing)) {
            existing = existing.getParent();
        }
        if (existing != null) {
            long free = java.nio.file.Files.getFileStore(existing).getUsableSpace();
            if (perFile * files > free) {
                throw new InvalidInputException(String.format("generate: %d file(s) of --tokens %d x --heads %d (Hk %d, "
                        + "Hv %d) x Dk %d / Dv %d in %s are %,.0f bytes, expected at most the %,d bytes free where "
                        + "--output %s lies; use fewer --tokens, --heads or --files, or another --output", files, tokens,
                        headsQ, headsK, headsV, dk, dv, dtype, perFile * files, free, outDir));
            }
        }
        Path d = Paths.get((String) v.get("--output"));
        if (java.nio.file.Files.exists(d) && !java.nio.file.Files.isDirectory(d)) {
            throw new InvalidInputException("generate --output " + d + ": expected a directory, got a file");
        }
        java.nio.file.Files.createDirectories(d);
        List<String> present = new ArrayList<>();
        for (int f = 0; f < files; f++) {
            // a link counts as itself: one that leads nowhere (its target unmounted, not yet written) is the user's too,
            // and the move into place would replace it
            if (java.nio.file.Files.exists(d.resolve(generatedName(f)), java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
                present.add(generatedName(f));
            }
        }
        if (!present.isEmpty() && !Boolean.TRUE.equals(v.get("--overwrite"))) {
            throw new InvalidInputException("generate --output " + d + " already holds " + present.size()
                    + " file(s) it would write, e.g. " + present.get(0) + "; pass --overwrite to replace them or "
                    + "choose another directory");
        }
        for (int f = 0; f < files; f++) {
            Demo.Spec spec = fileSpec(f, tokens, headsQ, headsK, headsV, dk, dv, dtype, v);
            Demo.writeInto(d, spec, new java.util.SplittableRandom(1000L + f)); // an interrupted generate leaves no partial file
        }
        out.println("lightning generate: wrote " + files + " file(s) to " + d.toAbsolutePath());
    }

    /**
     * The name of generate's f-th file, {@code seq-00000.safetensors} on: in ASCII digits whatever the default locale
     * (%d writes an Arabic or Persian one's own digits), so that a generate --overwrite from another locale replaces
     * the files rather than adding a second set beside them.
     */
    static String generatedName(int f) {
        return String.format(java.util.Locale.ROOT, "seq-%05d.safetensors", f);
    }

    /** The f-th file of generate's options {@code v}. */
    private static Demo.Spec fileSpec(int f, int tokens, int headsQ, int headsK, int headsV, int dk, int dv,
                                      dev.lightning.attention.tensor.DType dtype, Map<String, Object> v) {
        return new Demo.Spec(generatedName(f), tokens, headsQ, headsK, headsV, dk, dv, dtype,
                null, Boolean.TRUE.equals(v.get("--initial-state")), Boolean.TRUE.equals(v.get("--initial-normalizer")));
    }

    private static void parseDemoDir(List<String> args, String[] dir) {
        for (int i = 0; i < args.size(); i++) {
            String a = args.get(i);
            if (a.startsWith("--dir=")) {
                dir[0] = a.substring("--dir=".length());
            } else if ("--dir".equals(a)) {
                dir[0] = OptionParser.next(args, i + 1, a);
            } else if ("--input".equals(a) || "--output".equals(a) || "--synthetic".equals(a) || a.startsWith("--input=")
                    || a.startsWith("--output=") || a.startsWith("--synthetic=")) {
                throw new InvalidInputException("demo takes --dir DIR, not " + a);
            }
        }
    }
}
