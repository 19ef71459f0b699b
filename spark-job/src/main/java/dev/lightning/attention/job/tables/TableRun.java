package dev.lightning.attention.job.tables;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lightning.attention.engine.EngineBuild;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.failure.Causes;
import dev.lightning.attention.job.failure.Examples;
import dev.lightning.attention.job.failure.SetupChecks;
import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.job.input.Continuations;
import dev.lightning.attention.job.input.InputFile;
import dev.lightning.attention.job.input.InputListing;
import dev.lightning.attention.job.input.InputSamples;
import dev.lightning.attention.job.input.PathOverlap;
import dev.lightning.attention.job.input.RunFingerprint;
import dev.lightning.attention.job.input.SequenceFiles;
import dev.lightning.attention.job.input.StoredStates;
import dev.lightning.attention.job.output.Commit;
import dev.lightning.attention.job.output.OutputDirectory;
import dev.lightning.attention.job.output.OutputLock;
import dev.lightning.attention.job.output.OutputPaths;
import dev.lightning.attention.job.output.Staging;
import dev.lightning.attention.job.output.Version;
import dev.lightning.attention.job.pass.PassRunner;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocatedFileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RemoteIterator;
import org.apache.spark.SparkContext;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;

import java.io.IOException;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static dev.lightning.attention.job.tables.TableSchema.*;

/**
 * A run over tables (--input-format parquet) from the command line: its inputs listed and checked
 * ({@link TablePlanning}, shared with {@link LightningTables}), computed, and published. The CLI run publishes its tables, {@code o/} and {@code final_states/} (and
 * {@code states/} with --state-every), the way every run publishes: written by Spark's Parquet
 * writer into the run's staging directory ({@code <output>/_temporary/lightning-<run>/files/}),
 * then moved into place by {@link Commit} under the output lock, so a failed run leaves the output
 * directory as it was and --overwrite replaces only those tables (and the run report).
 */
public final class TableRun {
    /** The published tables, in the output directory. */
    static final String O_DIR = O_BLOCKS.name;
    static final String STATES_DIR = FINAL_STATES.name;
    static final String CHECKPOINTS_DIR = CHECKPOINTS.name;
    /** Every table a run can publish; one with --state-every publishes them all (OutputPaths names them). */
    static final List<String> ALL_TABLES = dev.lightning.attention.job.output.OutputPaths.TABLES;

    private final JobConfig cfg;
    private final boolean parquetInput;
    private final org.apache.hadoop.conf.Configuration hadoopConf;
    private final PrintStream out;
    private final java.util.function.Supplier<SparkContext> sparkStarter;
    private final String runId;
    private final java.time.Instant started;
    private final long t0 = System.nanoTime();

    /**
     * @param parquetInput whether --input is a table; else it is safetensors files, read as table rows
     *                     ({@link SafetensorsTables}) for --output-format parquet
     */
    public TableRun(JobConfig cfg, org.apache.hadoop.conf.Configuration hadoopConf, PrintStream out,
                    java.util.function.Supplier<SparkContext> sparkStarter, String runId,
                    java.time.Instant started, boolean parquetInput) {
        this.parquetInput = parquetInput;
        this.cfg = cfg;
        this.hadoopConf = hadoopConf;
        this.out = out;
        this.sparkStarter = sparkStarter;
        this.runId = runId;
        this.started = started;
    }

    // ---------------------------------------------------------------- the command-line run

    /** Reads, computes and publishes; returns the run report. */
    public ObjectNode run() throws IOException {
        TableOptions.check(cfg, true, parquetInput);
        Path given = HadoopPaths.parse(cfg.get(Settings.OUTPUT));
        FileSystem outFs = HadoopPaths.fileSystem(given, hadoopConf);
        Path outputDir = outFs.makeQualified(given);
        List<String> inputs = new ArrayList<>();
        List<String> seqInputs = new ArrayList<>();
        List<SequenceFile> files = null;
        // the data files of --input, listed once: the run's fingerprint and its report's samples
        List<LocatedFileStatus> inputListed;
        Map<String, String> rejected = new java.util.TreeMap<>();
        if (parquetInput) {
            for (Path e : InputListing.tablePaths(hadoopConf, "--input", cfg.get(Settings.INPUT))) {
                inputs.add(outsideOutput(e, outputDir));
            }
            if (cfg.get(Settings.SEQUENCES) != null) {
                for (Path e : InputListing.tablePaths(hadoopConf, "--sequences", cfg.get(Settings.SEQUENCES))) {
                    seqInputs.add(outsideOutput(e, outputDir));
                }
            }
            inputListed = InputSamples.list(hadoopConf, inputs);
        } else {
            // safetensors files: listed and their headers checked as a files run does, before Spark starts
            List<InputFile> listed = InputListing.list(hadoopConf, cfg.get(Settings.INPUT), cfg.get(Settings.RECURSIVE));
            List<InputFile> accepted = new ArrayList<>();
            // each file's content sample read from the stream of its header: the report records it (InputSamples)
            files = SequenceFiles.inspectAll(cfg, hadoopConf, listed, accepted, rejected, true);
            if (cfg.get(Settings.INITIAL_STATES) == null) {
                StoredStates.refuseOffsetsWithoutStates(files); // with it: checkDeclaredOffsets, against the stored rows
            }
            PathOverlap.check(hadoopConf, listed, given);
            accepted.forEach(f -> inputs.add(f.path().toString()));
            inputListed = accepted.stream().map(f -> f.status).toList();
        }
        String storedTable = cfg.get(Settings.INITIAL_STATES) == null ? null : storedTable(given);
        List<InputSamples.Entry> inputFiles = files == null ? InputSamples.of(hadoopConf, inputListed)
                : InputSamples.of(files);
        List<InputSamples.Absorbed> absorbed = null;
        if (storedTable != null) {
            Path storesRoot = new Path(storedTable).getParent();
            absorbed = InputSamples.absorbed(storesRoot.toString(), Commit.readReport(HadoopPaths.fileSystem(storesRoot,
                    hadoopConf), storesRoot, "--initial-states " + cfg.get(Settings.INITIAL_STATES)));
            InputSamples.refuseRepeated(cfg.get(Settings.INITIAL_STATES), absorbed, inputFiles);
            if (absorbed == null) {
                out.println("lightning: warning: --initial-states " + cfg.get(Settings.INITIAL_STATES) + ": its run "
                        + "report records no input files (written before they were recorded, or removed), so this "
                        + "run cannot tell whether its input repeats a segment those states already absorbed; make "
                        + "sure it does not");
            }
        }
        OutputDirectory outputs = new OutputDirectory(cfg, outFs, outputDir, out);
        try (OutputDirectory.Claim claim = outputs.claim(runId)) {
            OutputLock lock = claim.lock;
            ObjectMapper json = new ObjectMapper();
            // through JSON and back, to compare with what run.json holds (a long read back is an int node)
            JsonNode fingerprint = json.readTree(json.writeValueAsBytes(
                    fingerprint(json, inputListed, seqInputs, storedTable)));
            // an interrupted run with the same input and options: its tables are this run's (tasks are deterministic)
            ObjectNode finished = Commit.recoverSame(outFs, outputDir, fingerprint, out, "tables",
                    cfg.get(Settings.OUTPUT));
            if (finished != null) {
                return finished;
            }
            // the tables, and the report and _SUCCESS of the run that wrote them: a directory holding
            // any of them is an earlier result, replaced only with --overwrite
            // states/ too without --state-every: the commit moves an earlier one aside with --overwrite and
            // refuses it without, which must be found here, before compute, not after it
            // a states/ of the user's first: --overwrite would not replace it either, so it is not offered
            refuseForeignTables(outFs, outputDir, "");
            List<String> ours = new ArrayList<>(ALL_TABLES);
            ours.add(Commit.REPORT);
            ours.add(Commit.SUCCESS);
            for (String name : ours) {
                if (!cfg.get(Settings.OVERWRITE) && OutputPaths.exists(outFs, HadoopPaths.child(outputDir, name))) {
                    throw new InvalidInputException("--output " + outputDir + " already holds " + name
                            + (name.startsWith("_") ? "" : "/") + ", which this run would "
                            + (tables().contains(name) || name.startsWith("_") ? "write" : "replace (an earlier run's "
                            + "table, left beside new ones it does not belong to)") + "; pass --overwrite to "
                            + "replace it (at the commit, after all compute) or choose another output directory");
                }
            }
            Staging staging = outputs.chooseStaging(fingerprint, runId, started);
            ObjectNode report = json.createObjectNode();
            try {
                compute(inputs, inputFiles, absorbed, seqInputs, files, rejected, storedTable, staging, report);
                // every task has read what it reads: an input changed since the listing would publish a mix
                refuseChanged(fingerprint, inputListed, inputs, seqInputs, storedTable);
            } catch (Exception e) {
                if (Causes.inChain(e, InvalidInputException.class) != null
                        || SetupChecks.setupProblem(e) != null) {
                    // bad input (or a file that is no table at all), found by the checks, by Spark's
                    // reader or on the map side of the shuffle, before any compute task ran: there
                    // is no work to keep
                    Commit.removeStaging(outFs, outputDir, staging.path());
                    throw e;
                }
                report.put("status", "failed");
                report.put("error", String.valueOf(e.getMessage()));
                try {
                    staging.stageReport(outFs, report);
                    // a files run's line offers --resume here; a table run refuses it (TableOptions), so the
                    // user is told what works instead
                    out.println("lightning: the run failed; nothing was published to the output directory. The "
                            + "report of the failed run is in " + staging.root + "; once the cause (the error below) "
                            + "is fixed, run the same command again: a table run keeps no work to resume, and the "
                            + "next run on this output removes that staging");
                } catch (IOException | RuntimeException again) {
                    e.addSuppressed(again);
                }
                throw e;
            }
            report.put("status", "succeeded");
            report.put("ended", java.time.Instant.now().toString());
            staging.stageReport(outFs, report);
            // again: a file put into a table during the compute
            refuseForeignTables(outFs, outputDir, " (found after the compute: nothing was "
                    + "published; run again once it is moved)");
            // an earlier run's table this run does not write (states/ without --state-every) goes with --overwrite;
            // only that run's (refuseForeignTables refused any other): a user's states/ is no name of this run
            List<String> others = new ArrayList<>(OutputPaths.earlierTables(outFs, outputDir));
            others.removeAll(tables());
            try {
                Commit.commit(outFs, outputDir, staging, tables(), List.of(), others, cfg.get(Settings.OVERWRITE), lock,
                        out);
            } catch (IOException | RuntimeException e) {
                // as a files run says it: the error alone did not tell whether anything was published
                out.println(Commit.committed(outFs, staging.path()) ? Commit.failedAfterCommitPoint(staging.root)
                        : "lightning: the run failed before its commit point; nothing was published to the output "
                        + "directory");
                throw e;
            }
            double seconds = (System.nanoTime() - t0) / 1e9;
            long tokens = report.path("tokens").asLong();
            out.printf("lightning: done: %d sequences, %,d tokens in %.1f s (%s tokens/s); tables %s in %s%s%n",
                    report.path("sequences").asInt(), tokens, seconds, PassRunner.rate(tokens, seconds),
                    String.join("/, ", tables()) + "/", cfg.get(Settings.OUTPUT), report.path("rejected").size() == 0 ? ""
                            : " (" + report.path("rejected").size() + " rejected: see " + Commit.REPORT + ")");
            return report;
        }
    }

    /**
     * What a table run shares with an interrupted one whose results are its own: the settings that
     * change the bytes ({@link Settings#RESULT_AFFECTING}) and every file it reads, by path, size and
     * modification time: the input tables' and --sequences' files (a directory's, below it) or the
     * safetensors files, and the --initial-states table's files. (Paths alone took a table rewritten
     * in place for the one the interrupted run read.)
     */
    private ObjectNode fingerprint(ObjectMapper json, List<LocatedFileStatus> inputs, List<String> seqInputs,
                                   String storedTable) throws IOException {
        ObjectNode n = json.createObjectNode();
        n.put("format", parquetInput ? "parquet" : "safetensors to parquet");
        ObjectNode settings = n.putObject("settings");
        Map<String, String> all = cfg.describe();
        for (dev.lightning.attention.job.config.Setting<?> setting : Settings.RESULT_AFFECTING) {
            settings.put(setting.key, all.get(setting.key));
        }
        record(n.putArray("input"), inputs);
        contents(n.putArray("sequences"), seqInputs);
        contents(n.putArray("initialStates"), storedTable == null ? List.of() : List.of(storedTable));
        return n;
    }

    /**
     * Refuses to publish tables whose input changed while the run read it: the data files of
     * --input (listed again for a table, so a file added to it counts too; each file again for
     * safetensors input), of --sequences and of the stored table, against what {@code planned} (the
     * run's fingerprint) recorded of them. Spark's reader and the tasks that read safetensors token
     * ranges read when they run, so a file rewritten under the run gave tables of neither the old
     * content nor the new, and a report whose samples (the chain's "same segment twice" check) name
     * the old content. The files run's own check: RunFingerprint.refuseChanged.
     */
    private void refuseChanged(JsonNode planned, List<LocatedFileStatus> inputListed, List<String> inputs,
                               List<String> seqInputs, String storedTable) throws IOException {
        List<LocatedFileStatus> now;
        if (parquetInput) {
            now = InputSamples.list(hadoopConf, inputs);
        } else {
            now = new ArrayList<>();
            List<Path> paths = new ArrayList<>();
            inputListed.forEach(st -> paths.add(st.getPath()));
            Map<Path, FileStatus> statuses = RunFingerprint.lookUp(hadoopConf, paths);
            for (Path p : paths) {
                if (statuses.containsKey(p)) { // else gone: named below
                    now.add(new LocatedFileStatus(statuses.get(p), null));
                }
            }
        }
        ObjectMapper json = new ObjectMapper();
        JsonNode current = json.readTree(json.writeValueAsBytes(fingerprint(json, now, seqInputs, storedTable)));
        List<String> changed = new ArrayList<>();
        for (String key : List.of("input", "sequences", "initialStates")) {
            Map<String, JsonNode> after = new java.util.LinkedHashMap<>();
            current.path(key).forEach(f -> after.put(f.path("path").asText(), f));
            for (JsonNode f : planned.path(key)) {
                String path = f.path("path").asText();
                JsonNode a = after.remove(path);
                String c = a == null ? RunFingerprint.gone(path) : RunFingerprint.change(path, f.path("bytes").asLong(),
                        f.path("modified").asLong(), a.path("bytes").asLong(), a.path("modified").asLong());
                if (c != null) {
                    changed.add(c);
                }
            }
            after.keySet().forEach(path -> changed.add(path + " appeared while the run read its table"));
        }
        if (!changed.isEmpty()) {
            throw RunFingerprint.changedInputs(changed, false); // a table run has no --resume
        }
    }

    /** Each file at or below {@code paths}: path, bytes, modification time, in path order. */
    private void contents(ArrayNode into, List<String> paths) throws IOException {
        for (String p : paths) {
            Path path = HadoopPaths.parse(p);
            FileSystem fs = HadoopPaths.fileSystem(path, hadoopConf);
            List<LocatedFileStatus> found = new ArrayList<>();
            for (RemoteIterator<LocatedFileStatus> it = fs.listFiles(path, true); it.hasNext(); ) {
                found.add(it.next());
            }
            found.sort(java.util.Comparator.comparing(st -> st.getPath().toString()));
            record(into, found);
        }
    }

    private static void record(ArrayNode into, List<LocatedFileStatus> files) {
        for (LocatedFileStatus st : files) {
            into.addObject().put("path", st.getPath().toString()).put("bytes", st.getLen())
                    .put("modified", st.getModificationTime());
        }
    }

    /**
     * Refuses a table of a name this run does not write (states/ without --state-every) that is not
     * the earlier run's ({@link OutputPaths#earlierTables}): moving it aside with --overwrite deleted
     * a Parquet table the user keeps under that name, and left there it would stand beside tables it
     * does not belong to. With --overwrite, first an earlier table that holds more than a table write
     * leaves, or a file where a table goes ({@link OutputPaths#tableProblem}): the commit moves an
     * earlier table aside whole and deletes it with the staging, and a user's file must never go with
     * it (as a files run's NAME.parts/ holding a file that is not a part is refused); and a directory
     * where the report or _SUCCESS goes. {@code then} ends the message.
     */
    private void refuseForeignTables(FileSystem outFs, Path outputDir, String then) throws IOException {
        if (cfg.get(Settings.OVERWRITE)) {
            for (String name : ALL_TABLES) {
                String problem = OutputPaths.tableProblem(outFs, HadoopPaths.child(outputDir, name));
                if (problem != null) {
                    throw new InvalidInputException(problem + then);
                }
            }
            List<String> markers = Commit.markerProblems(outFs, outputDir);
            if (!markers.isEmpty()) {
                throw new InvalidInputException(markers.get(0) + "; move it out of the way or choose another output "
                        + "directory" + then);
            }
        }
        List<String> earlier = OutputPaths.earlierTables(outFs, outputDir);
        for (String name : ALL_TABLES) {
            Path at = HadoopPaths.child(outputDir, name);
            if (!tables().contains(name) && !earlier.contains(name) && OutputPaths.exists(outFs, at)) {
                throw new InvalidInputException(at + " is not a table of the run that last wrote --output (its run "
                        + "report " + Commit.REPORT + " is no table run's with --state-every), and this run writes "
                        + "no " + name + "/: --overwrite replaces only this run's tables and an earlier run's, never "
                        + "what no run wrote; move it out of the way or choose another output directory" + then);
            }
        }
    }

    /** The tables this run publishes: o/ and final_states/, and states/ with --state-every. */
    private List<String> tables() {
        return cfg.get(Settings.STATE_EVERY) > 0 ? ALL_TABLES : List.of(O_DIR, STATES_DIR);
    }

    /** An input path (qualified, existing: InputListing.tablePaths), refused when it and the output contain one another. */
    private String outsideOutput(Path input, Path outputDir) throws IOException {
        // compared with links resolved: the paths as written miss an output that reaches the input through a link
        PathOverlap.checkTable(hadoopConf, input, outputDir);
        return input.toString();
    }

    /**
     * --initial-states DIR of a table run: the {@code final_states} table of a committed output,
     * outside --output (the checks every --initial-states gets, whatever the format), qualified.
     */
    private String storedTable(Path output) throws IOException {
        String dir = cfg.get(Settings.INITIAL_STATES);
        PathOverlap.checkStates(hadoopConf, HadoopPaths.parse(dir), output);
        Path root = StoredStates.committed(hadoopConf, dir);
        Path table = HadoopPaths.child(root, STATES_DIR);
        if (!HadoopPaths.fileSystem(table, hadoopConf).exists(table)) {
            throw new InvalidInputException("--initial-states " + dir + " holds no " + STATES_DIR + "/ table: it is not "
                    + "the output of a run over tables (a safetensors run's states are continued by a run that writes "
                    + "safetensors: " + (parquetInput ? "--input-format safetensors" : "leave --output-format parquet out")
                    + "); give the --output directory of an earlier run that wrote tables");
        }
        return table.toString();
    }

    private void compute(List<String> inputs, List<InputSamples.Entry> inputFiles,
                         List<InputSamples.Absorbed> absorbed, List<String> seqInputs,
                         List<SequenceFile> files,
                         Map<String, String> rejected, String storedTable, Staging staging, ObjectNode report)
            throws IOException {
        long sparkStart = System.nanoTime();
        SparkContext sc = sparkStarter.get();
        report.put("sparkStartSeconds", (System.nanoTime() - sparkStart) / 1e9);
        SparkSession spark = SparkSession.builder().sparkContext(sc).getOrCreate();
        report.put("version", Version.get());
        report.put("engine", EngineBuild.digest());
        report.put("run", runId);
        report.put("application", sc.applicationId());
        report.put("master", sc.master());
        report.put("started", started.toString());
        report.put("format", parquetInput ? "parquet" : "safetensors to parquet");
        InputSamples.record(report.putArray(InputSamples.REPORT_KEY), inputFiles);
        if (absorbed != null) {
            InputSamples.recordEarlier(report.putArray(InputSamples.EARLIER_KEY), absorbed);
        }
        ObjectNode settings = report.putObject("settings");
        cfg.describe().forEach(settings::put);
        long t = System.nanoTime();
        Dataset<Row> stored = storedTable == null ? null : spark.read().parquet(storedTable);
        TablePlanning.Prepared p;
        if (parquetInput) {
            Dataset<Row> blocks = spark.read().parquet(inputs.toArray(new String[0]));
            Dataset<Row> sequences = seqInputs.isEmpty() ? null : spark.read().parquet(seqInputs.toArray(new String[0]));
            p = TablePlanning.prepare(spark, cfg, blocks, "--input " + String.join(",", inputs), sequences,
                    "--sequences " + String.join(",", seqInputs), stored, "--initial-states " + storedTable, rejected,
                    null);
        } else {
            SafetensorsTables source = SafetensorsTables.of(spark, cfg, hadoopConf, files);
            p = TablePlanning.prepare(spark, cfg, source.blocks, "--input " + cfg.get(Settings.INPUT), source.sequences,
                    "--input " + cfg.get(Settings.INPUT) + " (slope, initial_state)", stored,
                    "--initial-states " + storedTable, rejected, source.summaries);
            if (stored != null) {
                TablePlanning.checkDeclaredOffsets(files, p.compute.plan, storedTable);
            }
        }
        if (stored != null) {
            String fromZero = Continuations.fromZero(p.fromZero, "sequence", "A sequence continues the stored row of "
                    + "the same name (column `" + SEQUENCE + "`) in --initial-states' " + STATES_DIR + "/");
            if (fromZero != null) {
                out.println("lightning: warning: " + fromZero);
            }
            out.println("lightning: " + Continuations.summary(p.continued, p.compute.plan.size(), p.storedRows)
                    + ", those not computed here carried over into " + STATES_DIR + "/");
            report.put("continued", p.continued);
            report.put("storedStates", p.storedRows);
        }
        TablePlan plan = p.compute.plan;
        double checkSeconds = (System.nanoTime() - t) / 1e9;
        List<String> rejectedLines = new ArrayList<>();
        rejected.forEach((name, why) -> rejectedLines.add("lightning: rejected sequence " + name + ": " + why));
        Examples.lines(rejectedLines, Examples.LINES_SHOWN, "lightning: ", "rejected sequence(s), listed "
                + "with the reason in the run report " + Commit.REPORT).forEach(out::println);
        int split = 0;
        for (int s = 0; s < plan.size(); s++) {
            split += plan.split(s) ? 1 : 0;
        }
        out.printf("lightning: tables: %d sequences, %,d tokens -> %d pieces in %d partitions, %d tasks per pass; "
                        + "%d sequences split; checked in %.1f s%n", plan.size(), plan.totalTokens, plan.pieceCount,
                plan.partitions, plan.tasks, split, checkSeconds);
        report.put("sequences", plan.size());
        report.put("tokens", plan.totalTokens);
        report.put("pieces", plan.pieceCount);
        report.put("partitions", plan.partitions);
        report.put("tasksPerPass", plan.tasks);
        report.put("splitSequences", split);
        ObjectNode passes = report.putObject("passes");
        passes.putObject("check").put("seconds", checkSeconds);
        TableCompute.Outputs outputs = p.outputs(spark);
        try {
            t = System.nanoTime();
            sc.setJobDescription("lightning tables: passes and the o table");
            outputs.o.write().parquet(staging.stagedOutput(O_DIR).toString());
            double oSeconds = (System.nanoTime() - t) / 1e9;
            passes.putObject("compute and write o").put("seconds", oSeconds).put("tokensPerSecond",
                    oSeconds > 0 ? plan.totalTokens / oSeconds : 0);
            out.printf("lightning: computed and wrote %s/: %,d tokens in %.1f s (%s tokens/s)%n", O_DIR, plan.totalTokens,
                    oSeconds, PassRunner.rate(plan.totalTokens, oSeconds));
            t = System.nanoTime();
            sc.setJobDescription("lightning tables: the final-states table");
            // states are float32 noise to a codec and never repeat: no dictionary, no compression
            outputs.finalStates.write().option("compression", "none").option("parquet.enable.dictionary", "false")
                    .parquet(staging.stagedOutput(STATES_DIR).toString());
            double statesSeconds = (System.nanoTime() - t) / 1e9;
            passes.putObject("write final states").put("seconds", statesSeconds);
            out.printf("lightning: wrote %s/ in %.1f s%n", STATES_DIR, statesSeconds);
            if (outputs.checkpoints != null) {
                t = System.nanoTime();
                sc.setJobDescription("lightning tables: the recorded states (--state-every)");
                outputs.checkpoints.write().option("compression", "none").option("parquet.enable.dictionary", "false")
                        .parquet(staging.stagedOutput(CHECKPOINTS_DIR).toString());
                double checkpointSeconds = (System.nanoTime() - t) / 1e9;
                passes.putObject("write recorded states").put("seconds", checkpointSeconds);
                out.printf("lightning: wrote %s/ in %.1f s%n", CHECKPOINTS_DIR, checkpointSeconds);
            }
            sc.setJobDescription(null);
        } finally {
            outputs.all.unpersist(false);
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        report.put("seconds", seconds);
        report.put("tokensPerSecond", seconds > 0 ? plan.totalTokens / seconds : 0);
        com.fasterxml.jackson.databind.node.ArrayNode rej = report.putArray("rejected");
        rejected.forEach((name, why) -> rej.addObject().put("sequence", name).put("reason", why));
    }


}
