package dev.lightning.attention.job;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lightning.attention.engine.EngineBuild;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.exec.FaultPoints;
import dev.lightning.attention.job.failure.Causes;
import dev.lightning.attention.job.failure.Examples;
import dev.lightning.attention.job.failure.ExplainedFailure;
import dev.lightning.attention.job.failure.SetupChecks;
import dev.lightning.attention.job.hadoop.HadoopConf;
import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.job.input.Continuations;
import dev.lightning.attention.job.input.InputChangedException;
import dev.lightning.attention.job.input.InputFile;
import dev.lightning.attention.job.input.InputFormats;
import dev.lightning.attention.job.input.InputListing;
import dev.lightning.attention.job.input.PathOverlap;
import dev.lightning.attention.job.input.RunFingerprint;
import dev.lightning.attention.job.input.SafetensorsStates;
import dev.lightning.attention.job.input.SequenceFiles;
import dev.lightning.attention.job.input.StoredStates;
import dev.lightning.attention.job.output.Commit;
import dev.lightning.attention.job.output.OutputDirectory;
import dev.lightning.attention.job.output.OutputHeader;
import dev.lightning.attention.job.output.OutputLock;
import dev.lightning.attention.job.output.OutputPaths;
import dev.lightning.attention.job.output.SharedOutputCheck;
import dev.lightning.attention.job.output.SplitOutputs;
import dev.lightning.attention.job.output.Staging;
import dev.lightning.attention.job.output.Version;
import dev.lightning.attention.job.pass.LightningPasses;
import dev.lightning.attention.job.pass.PassReport;
import dev.lightning.attention.job.pass.PassRunner;
import dev.lightning.attention.job.softmax.SoftmaxJob;
import dev.lightning.attention.job.tables.TableRun;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.plan.PiecePlanner;
import dev.lightning.attention.stream.OutputLayout;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.SparkContext;

import java.io.IOException;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The driver side of a run: find the sequence files, plan pieces and partitions, run pass 1, the
 * scan and pass 2 as Spark jobs ({@link LightningPasses}), finish the outputs the pieces wrote
 * ({@link SplitOutputs}), then write the run report and commit. The driver holds file headers and
 * the plan (a few numbers per piece), never a state or a tensor: states travel between tasks
 * through the run's staging directory.
 */
final class LightningJob {
    private final JobConfig cfg;
    /** The Hadoop configuration of the run (Spark's, built before Spark starts). */
    private final org.apache.hadoop.conf.Configuration hadoopConf;
    /** Starts Spark, once the run has its inputs, its lock and its staging. */
    private final java.util.function.Supplier<SparkContext> sparkStarter;
    /** Null until Spark is started. */
    private SparkContext sc;
    private final PrintStream out;
    /** Files refused at inspection (with --skip-invalid): name to reason. */
    private final Map<String, String> rejected = new java.util.TreeMap<>();
    /** Sequences dropped for NaN/Inf (with --skip-nonfinite): index to "count, first position". */
    private final Map<Integer, String> skipped = new java.util.TreeMap<>();
    /** The outputs task attempts write into in place (SplitOutputs): the commit publishes them under a lock. */
    private final Set<String> writtenInPlace = new java.util.HashSet<>();
    /** This run's id: its staging directory and lock name it. */
    private final String runId;
    private final java.time.Instant started = java.time.Instant.now();
    private final long t0 = System.nanoTime();
    private double sparkStartSeconds;
    /** What the tasks of each pass reported, folded compactly (by pass title, in the order they ran). */
    private final Map<String, PassReport> reports = new java.util.LinkedHashMap<>();
    /** Per pass: seconds, tokens computed, tokens kept by --resume, and 1 when it finished (0: it failed). */
    private final Map<String, double[]> passes = new java.util.LinkedHashMap<>();
    /**
     * The tokens of the outputs pass (lightning's pass 2, softmax's blocks) that --resume kept from
     * the interrupted run: part of the results, not of what this run computed in its seconds.
     */
    private long keptTokens;
    /** The driver JVM's heap over the run, for the report. */
    private final DriverMemory memory = new DriverMemory();
    /** --output-mode checksums: per sequence index, its o checksum and spot checks, for the report. */
    private final Map<Integer, ObjectNode> checksums = new java.util.TreeMap<>();
    /** Plan figures for the report. */
    private final Map<String, Long> summary = new java.util.LinkedHashMap<>();
    /** With --initial-states: every stored state by name (the stored set); else null. */
    private Map<String, StoredStates.State> stored;
    /** With --initial-states: by sequence index, the stored state it continues (sequences without one are absent). */
    private final Map<Integer, StoredStates.State> continued = new HashMap<>();
    /** With --attention softmax, its plan and how even it is, for the report; else null. */
    private ObjectNode softmaxPlan;

    /** @param tables whether --input is read as tables ({@link InputFormats#parquetInput}, decided by the caller) */
    LightningJob(JobConfig cfg, org.apache.hadoop.conf.Configuration hadoopConf, PrintStream out,
                 java.util.function.Supplier<SparkContext> sparkStarter, boolean tables) {
        this.tables = tables;
        this.cfg = cfg;
        this.hadoopConf = hadoopConf;
        this.out = out;
        this.sparkStarter = sparkStarter;
        this.runId = java.time.format.DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")
                .withZone(java.time.ZoneOffset.UTC).format(started) + "-"
                + Long.toHexString(Double.doubleToLongBits(Math.random())).substring(0, 8);
    }

    /** Whether --input is read as tables rather than as safetensors files (a table run also takes files with --output-format parquet). */
    private final boolean tables;

    /** Runs the job; returns the report it wrote. */
    ObjectNode run() throws IOException {
        FaultPoints.newRun();
        try {
            if (InputFormats.tableRun(cfg, tables)) { // sequences as table rows: TableRun
                return new TableRun(cfg, hadoopConf, out, sparkStarter, runId, started, tables).run();
            }
            InputFormats.refuseWithFiles(cfg);
            return runAndReport();
        } finally {
            memory.close();
        }
    }

    private ObjectNode runAndReport() throws IOException {
        Path given = HadoopPaths.parse(cfg.get(Settings.OUTPUT));
        FileSystem outFs = HadoopPaths.fileSystem(given, hadoopConf);
        Path outputDir = outFs.makeQualified(given);

        boolean synthetic = cfg.get(Settings.SYNTHETIC) != null;
        List<InputFile> inputs = synthetic ? List.of()
                : InputListing.list(hadoopConf, cfg.get(Settings.INPUT), cfg.get(Settings.RECURSIVE));
        List<InputFile> statuses = new ArrayList<>(); // parallel to files: --skip-invalid drops some inputs
        List<SequenceFile> files = synthetic ? SequenceFiles.describeSynthetic(cfg)
                : SequenceFiles.inspectAll(cfg, hadoopConf, inputs, statuses, rejected, true);
        List<String> rejectedLines = new ArrayList<>();
        rejected.forEach((name, why) -> rejectedLines.add("lightning: rejected " + name + ": " + why));
        Examples.lines(rejectedLines, Examples.LINES_SHOWN, "lightning: ", "rejected file(s), listed with the reason in the "
                + "run report " + Commit.REPORT).forEach(out::println);
        PathOverlap.check(hadoopConf, inputs, given);
        if (cfg.get(Settings.INITIAL_STATES) != null) {
            PathOverlap.checkStates(hadoopConf, HadoopPaths.parse(cfg.get(Settings.INITIAL_STATES)), given);
            matchStoredStates(files);
            PathOverlap.checkStateFiles(hadoopConf, stored, cfg.get(Settings.INITIAL_STATES), given);
        } else {
            StoredStates.refuseOffsetsWithoutStates(files);
        }
        // refuses an --output-form the output's file system cannot give, before anything is written
        SplitOutputs.Form form = SplitOutputs.Form.choose(cfg.get(Settings.OUTPUT_FORM), outFs, outputDir);
        OutputDirectory outputs = new OutputDirectory(cfg, outFs, outputDir, out);
        try (OutputDirectory.Claim claim = outputs.claim(runId)) {
            OutputLock lock = claim.lock;
            // through JSON and back, to compare with what run.json holds (a long read back is an int node)
            ObjectMapper json = new ObjectMapper();
            JsonNode fingerprint = json.readTree(json.writeValueAsBytes(RunFingerprint.of(cfg, files, statuses, stored)));
            // an interrupted run with the same input and options: its results are this run's (tasks are deterministic)
            ObjectNode finished = Commit.recoverSame(outFs, outputDir, fingerprint, out, "results",
                    cfg.get(Settings.OUTPUT));
            if (finished != null) {
                return finished;
            }
            outputs.checkExisting(files, form, stored != null ? SafetensorsStates.MANIFEST : null);
            PiecePlanner planner = new PiecePlanner(cfg.get(Settings.PARTITION_TOKENS), cfg.chunkSize());
            long[] lengths = new long[files.size()];
            for (int i = 0; i < lengths.length; i++) {
                lengths[i] = files.get(i).tokens;
            }
            List<List<Piece>> plan = planner.plan(lengths);
            Staging staging = outputs.chooseStaging(fingerprint, runId, started);
            try {
                outputs.checkSpace(staging, cfg.softmax() ? SoftmaxJob.bytesToStage(cfg, files, plan)
                        : LightningPasses.bytesToStage(cfg, files, plan));
            } catch (InvalidInputException e) {
                if (!staging.resume) {
                    Commit.removeStaging(outFs, outputDir, staging.path()); // it holds nothing yet
                }
                throw e;
            }
            try {
                return compute(files, statuses, planner, plan, staging, outFs, outputDir, lock);
            } catch (Exception e) { // Spark's own exceptions are checked ones that Scala does not declare
                failed(outFs, staging, outputs, files, e);
                throw e;
            }
        }
    }

    /** Starts Spark, runs the passes of {@code plan} into {@code staging}, and commits. */
    private ObjectNode compute(List<SequenceFile> files, List<InputFile> statuses, PiecePlanner planner,
                               List<List<Piece>> plan, Staging staging, FileSystem outFs, Path outputDir,
                               OutputLock lock) throws IOException {
        long sparkStart = System.nanoTime();
        sc = sparkStarter.get();
        sparkStartSeconds = (System.nanoTime() - sparkStart) / 1e9;
        if (SharedOutputCheck.wanted(sc)) {
            SharedOutputCheck.run(sc, outFs, staging, out);
        }
        Map<Integer, List<Piece>> splits = new java.util.TreeMap<>();
        long totalTokens = 0;
        int pieceCount = 0;
        for (List<Piece> partition : plan) {
            for (Piece p : partition) {
                pieceCount++;
                totalTokens += p.tokens();
                if (p.isSplit()) {
                    splits.computeIfAbsent(p.sequence(), s -> new ArrayList<>()).add(p);
                }
            }
        }
        int maxTasks = PassRunner.maxTasksPerPass(sc.defaultParallelism());
        List<List<Piece>> tasks = PiecePlanner.pack(plan, maxTasks);
        out.printf("lightning: %d sequences, %,d tokens -> %d pieces in %d partitions (%,d tokens each, chunk %d); "
                        + "%d sequences split%s%n", files.size(), totalTokens, pieceCount, plan.size(),
                planner.partitionTokens(), cfg.chunkSize(), splits.size(),
                tasks == plan ? "" : String.format("; packed into %d tasks per pass", tasks.size()));
        if (!cfg.variant().plain()) {
            out.println("lightning: computing " + cfg.variant());
        }
        summary.put("partitions", (long) plan.size());
        summary.put("tasksPerPass", (long) tasks.size());
        summary.put("pieces", (long) pieceCount);
        summary.put("tokens", totalTokens);

        HadoopConf hadoop = new HadoopConf(sc.hadoopConfiguration());
        SplitOutputs splitOutputs = SplitOutputs.of(cfg, outFs, staging);
        PassRunner runner = new PassRunner(sc, cfg, out, reports, passes);
        if (cfg.softmax()) {
            SoftmaxJob softmax = new SoftmaxJob(cfg, hadoop, staging, files, plan, out);
            softmaxPlan = softmax.planReport();
            Map<Integer, long[]> shared = softmax.splitSequences();
            prepareShared(splitOutputs, outFs, files, shared, softmax::outputLayout);
            PassReport blocks = softmax.blocks(runner);
            keptTokens = blocks.keptTokens();
            collectSkipped(blocks, files);
            for (PassReport merged : softmax.merge(runner, skipped.keySet())) {
                collectSkipped(merged, files);
            }
            warnSkipped(files, outFs, outputDir);
            return publish(files, statuses, totalTokens, staging, outFs, outputDir, lock,
                    finishShared(splitOutputs, outFs, files, shared, softmax::outputLayout));
        }
        // pass 1 and the scan for the split sequences, then pass 2
        LightningPasses lightning = new LightningPasses(cfg, hadoop, staging, files, statuses, tasks, continued, out);
        lightning.states(runner, splits);
        // sequences written by SplitOutputs (split, or all with --state-every): their pieces' token counts;
        // with --output-mode checksums none (no o is written), and the driver writes the results of split
        // sequences from their pieces' staged summaries and states after pass 2
        Map<Integer, long[]> shared = new java.util.TreeMap<>();
        Map<Integer, long[]> checksumSplits = new java.util.TreeMap<>();
        for (List<Piece> partition : plan) {
            for (Piece p : partition) {
                if (cfg.checksums() ? p.isSplit() : SplitOutputs.needed(p.count(), cfg.variant())) {
                    (cfg.checksums() ? checksumSplits : shared).computeIfAbsent(p.sequence(),
                            s -> new long[p.count()])[p.index()] = p.tokens();
                }
            }
        }
        prepareShared(splitOutputs, outFs, files, shared, lightning::outputLayout);
        PassReport outputs = lightning.outputs(runner, totalTokens);
        keptTokens = outputs.keptTokens();
        collectSkipped(outputs, files);
        warnSkipped(files, outFs, outputDir);
        Map<Integer, List<String>> publishedAs = finishShared(splitOutputs, outFs, files, shared,
                lightning::outputLayout);
        lightning.checksumResults(runner, outFs, checksumSplits, skipped.keySet());
        return publish(files, statuses, totalTokens, staging, outFs, outputDir, lock, publishedAs);
    }

    /**
     * Before the pieces of the outputs in {@code shared} (sequence to its pieces' tokens) write
     * their shares ({@link SplitOutputs}): in place, the driver creates their staged files.
     * Lightning's and softmax's outputs alike, each by its {@code layouts}.
     */
    private void prepareShared(SplitOutputs splitOutputs, FileSystem outFs, List<SequenceFile> files,
                               Map<Integer, long[]> shared, java.util.function.IntFunction<OutputLayout> layouts)
            throws IOException {
        if (shared.isEmpty()) {
            return;
        }
        out.println("lightning: " + shared.size() + " output(s) written by their pieces, --output-form "
                + splitOutputs.form.key());
        List<String> names = new ArrayList<>();
        List<dev.lightning.attention.tensor.SafetensorsHeader> headers = new ArrayList<>();
        for (int s : shared.keySet()) {
            names.add(files.get(s).name);
            headers.add(layouts.apply(s).header());
        }
        splitOutputs.prepare(outFs, names, headers);
        if (splitOutputs.form == SplitOutputs.Form.IN_PLACE) {
            writtenInPlace.addAll(names);
        }
    }

    /**
     * After the pieces: finishes the outputs in {@code shared} that were not skipped (joins the
     * parts with concat, or writes the parts index; nothing in place), then reaches the fault point
     * {@code assemble}. Returns the names each publishes.
     */
    private Map<Integer, List<String>> finishShared(SplitOutputs splitOutputs, FileSystem outFs,
                                                    List<SequenceFile> files, Map<Integer, long[]> shared,
                                                    java.util.function.IntFunction<OutputLayout> layouts)
            throws IOException {
        Map<Integer, List<String>> publishedAs = new HashMap<>();
        long finishStart = System.nanoTime();
        for (Map.Entry<Integer, long[]> e : shared.entrySet()) {
            if (!skipped.containsKey(e.getKey())) {
                publishedAs.put(e.getKey(), splitOutputs.finish(outFs, files.get(e.getKey()).name,
                        layouts.apply(e.getKey()), e.getValue()));
            }
        }
        if (!shared.isEmpty()) {
            double seconds = (System.nanoTime() - finishStart) / 1e9;
            passes.put("finish: outputs written by their pieces", new double[] {seconds, 0, 0, 1});
            out.printf("lightning: finished %d output(s) written by their pieces (%s), %.1f s%n", publishedAs.size(),
                    splitOutputs.form.key(), seconds);
            FaultPoints.reach("assemble");
        }
        return publishedAs;
    }

    /**
     * Names the skipped sequences (the first few: there may be thousands, and the report lists them
     * all), and warns about those whose name the output directory already holds (an older result,
     * left in place).
     */
    private void warnSkipped(List<SequenceFile> files, FileSystem outFs, Path outputDir) throws IOException {
        List<String> lines = new ArrayList<>();
        skipped.forEach((s, what) -> lines.add("lightning: skipped " + files.get(s).name + ": " + what));
        Examples.lines(lines, Examples.LINES_SHOWN, "lightning: ", "skipped sequence(s), listed with the reason in "
                + "the run report " + Commit.REPORT).forEach(out::println);
        List<String> older = new ArrayList<>();
        for (Map.Entry<Integer, String> e : skipped.entrySet()) {
            // the run produces no file of that name, so it leaves an older one alone: say so
            String name = files.get(e.getKey()).name;
            if (outFs.exists(HadoopPaths.child(outputDir, name))) {
                skipped.put(e.getKey(), e.getValue() + "; " + name + " in the output directory is an older result, "
                        + "left in place");
                older.add("lightning: warning: " + name + " was skipped, and the file of that name in "
                        + cfg.get(Settings.OUTPUT) + " is an older result, left in place");
            }
        }
        Examples.lines(older, Examples.LINES_SHOWN, "lightning: warning: ", "skipped sequence(s) whose file in "
                + cfg.get(Settings.OUTPUT) + " is an older result, left in place").forEach(out::println);
    }

    /**
     * Writes the report into the staging, commits, and prints the closing line. {@code publishedAs}:
     * the names a sequence is published under where they are not its file name alone (the parts form).
     */
    private ObjectNode publish(List<SequenceFile> files, List<InputFile> statuses, long totalTokens, Staging staging,
                               FileSystem outFs, Path outputDir, OutputLock lock,
                               Map<Integer, List<String>> publishedAs) throws IOException {
        // every task has read what it reads: an input rewritten since the listing would publish a mix
        RunFingerprint.refuseChanged(hadoopConf, statuses, stored);
        int resumed = resumedUnits();
        if (resumed > 0) {
            out.println("lightning: resumed: " + resumed + " unit(s) of work were kept from the interrupted run");
        }
        if (cfg.checksums()) {
            collectChecksums(files, outFs, staging);
        }

        List<String> published = new ArrayList<>();
        List<String> replaces = new ArrayList<>();
        for (int i = 0; i < files.size(); i++) {
            if (!skipped.containsKey(i)) {
                List<String> as = publishedAs.getOrDefault(i, List.of(files.get(i).name));
                published.addAll(as);
                replaces.addAll(OutputDirectory.otherForms(files.get(i).name, as));
            }
        }
        if (stored != null) {
            published.add(stageManifest(files, staging, outFs));
        }
        if (cfg.get(Settings.OVERWRITE)) {
            replaces.addAll(OutputPaths.earlierTables(outFs, outputDir)); // a table run's results there go too
        }
        ObjectNode report = report(files, reports, "succeeded", null);
        staging.stageReport(outFs, report);
        Commit.commit(outFs, outputDir, staging, published, writtenInPlace, replaces, cfg.get(Settings.OVERWRITE),
                lock, out);

        double seconds = (System.nanoTime() - t0) / 1e9;
        Set<String> used = backendsUsed();
        long publishedTokens = totalTokens; // a skipped sequence was computed, but it is no result
        for (Integer i : skipped.keySet()) {
            publishedTokens -= files.get(i).tokens;
        }
        // a rate over what this run computed: the tokens --resume kept were computed in the earlier run's time
        long computed = publishedTokens - keptTokens;
        String rate = keptTokens == 0 ? PassRunner.rate(publishedTokens, seconds) + " tokens/s"
                : String.format("%,d computed, %s tokens/s; %,d kept from the interrupted run", computed,
                PassRunner.rate(computed, seconds), keptTokens);
        out.printf("lightning: done: %d files, %,d tokens in %.1f s (%s) on %s; results in %s%s%n",
                files.size() - skipped.size(), publishedTokens, seconds, rate, String.join(", ", used),
                cfg.get(Settings.OUTPUT), rejected.isEmpty() && skipped.isEmpty() ? ""
                        : " (" + rejected.size() + " rejected, " + skipped.size() + " skipped: see " + Commit.REPORT
                        + ")");
        return report;
    }

    /**
     * --initial-states: reads the stored set (headers only) and matches it to the inputs by name.
     * Before any compute it refuses, naming the sequence, an input that holds its own
     * initial_state or initial_normalizer and also has a stored state (two starting states), a
     * stored state whose shape or feature map does not fit the input in this run, an input that
     * is the one its stored state was computed from (its tokens would count twice), and an input
     * whose own token_offset metadata is not the count its stored state has absorbed (or that has
     * none to continue). Inputs without a stored state are named in a warning.
     */
    private void matchStoredStates(List<SequenceFile> files) throws IOException {
        // what to do about an input whose tokens its stored state has already absorbed, either way
        String redo = "give the sequence's next segment, or, to redo the append that read this input, the "
                + "--initial-states that append had";
        StoredStates set = StoredStates.open(hadoopConf, cfg.get(Settings.INITIAL_STATES));
        stored = set.states();
        Continuations match = new Continuations("--initial-states " + cfg.get(Settings.INITIAL_STATES), "the input",
                "remove the tensor from the input", "remove the sequence from the stored set");
        List<String> fromZero = new ArrayList<>();
        for (int i = 0; i < files.size(); i++) {
            SequenceFile f = files.get(i);
            StoredStates.State s = stored.get(f.name);
            if (s == null) {
                Continuations.Refusal offset = StoredStates.offsetProblem(f.declaredOffset, f.initialStateOffset >= 0,
                        true, null, -1);
                if (set.unreadable().containsKey(f.name)) {
                    match.refuse(f.name, "the stored result of that name holds no readable state ("
                            + set.unreadable().get(f.name) + ")", "fix or remove the stored result there");
                } else if (offset != null) {
                    match.refuse(f.name, offset);
                } else if (f.initialStateOffset < 0) {
                    fromZero.add(f.name);
                }
                continue;
            }
            String own = f.initialStateOffset >= 0 ? "initial_state"
                    : f.initialNormalizerOffset >= 0 ? "initial_normalizer" : null;
            if (!match.oneStart(f.name, own, s.location)
                    || !match.fits(f.name, s.mismatch(f.spec(cfg.get(Settings.SCALE), cfg.chunkSize(), cfg.variant())))) {
                continue;
            }
            if (s.computedFrom(f.fileSize, f.sample)) {
                match.refuse(f.name, "the stored state " + s.location + " was computed from this very input (the "
                        + "same size, " + f.fileSize + " bytes, and content sample " + f.sample + "): its tokens are "
                        + "already in that state, and appending them again would count them twice", redo);
                continue;
            }
            if (s.absorbedEarlier(f.fileSize, f.sample)) {
                match.refuse(f.name, "the stored state " + s.location + " continues a chain that had already "
                        + "absorbed this very input in an earlier segment (the same size, " + f.fileSize + " bytes, and "
                        + "content sample " + f.sample + ", in its metadata " + OutputHeader.EARLIER_INPUTS + "): "
                        + "appending it again would count its tokens twice", redo);
                continue;
            }
            Continuations.Refusal offset = StoredStates.offsetProblem(f.declaredOffset, false, true, s.location,
                    s.tokens);
            if (offset != null) {
                match.refuse(f.name, offset);
                continue;
            }
            continued.put(i, s);
        }
        match.throwIfAny();
        List<String> unrecorded = new ArrayList<>();
        for (StoredStates.State s : continued.values()) {
            if (s.sourceSample == null) {
                unrecorded.add(s.location);
            }
        }
        if (!unrecorded.isEmpty()) {
            out.println("lightning: warning: --initial-states: " + unrecorded.size() + " stored state(s) record no "
                    + "input they were computed from (written before inputs were recorded): " + Examples.of(unrecorded, 5,
                    ", ") + "; this run cannot tell whether their inputs repeat a segment those states already "
                    + "absorbed: make sure they do not");
        }
        String fromZeroWarning = Continuations.fromZero(fromZero, "input", "An input continues the stored result of the "
                + "same name (its name in --output: the file name, or with --recursive its path below --input)");
        if (fromZeroWarning != null) {
            out.println("lightning: warning: " + fromZeroWarning);
        }
        out.println("lightning: " + Continuations.summary(continued.size(), files.size(), stored.size()));
    }

    /**
     * Stages {@code _states.json}, the complete state set after this run: every sequence it wrote
     * (here, by name), and every stored one it did not (a skipped one included: its stored state is
     * still its current one) where that state lies. Returns its name for the commit.
     */
    private String stageManifest(List<SequenceFile> files, Staging staging, FileSystem fs) throws IOException {
        Map<String, Long> written = new java.util.TreeMap<>();
        Map<String, StoredStates.State> untouched = new java.util.TreeMap<>(stored);
        for (int i = 0; i < files.size(); i++) {
            if (skipped.containsKey(i)) {
                continue;
            }
            SequenceFile f = files.get(i);
            StoredStates.State s = continued.get(i);
            // tokens the state has absorbed: the stored chain's and this run's (-1 where the store did not say)
            written.put(f.name, s == null ? f.tokens : s.tokens < 0 ? -1 : s.tokens + f.tokens);
            untouched.remove(f.name);
        }
        Path staged = staging.stagedOutput(SafetensorsStates.MANIFEST);
        fs.delete(staged, false); // an earlier attempt's (before --resume): written again
        Staging.writeAtomically(fs, staged, "driver", o -> SafetensorsStates.writeManifest(written, untouched, o));
        return SafetensorsStates.MANIFEST;
    }

    private Set<String> backendsUsed() {
        Set<String> used = new LinkedHashSet<>();
        for (PassReport r : reports.values()) {
            used.addAll(r.backends());
        }
        return used;
    }

    private int resumedUnits() {
        int resumed = 0;
        for (PassReport r : reports.values()) {
            resumed += r.resumed();
        }
        return resumed;
    }

    /**
     * A failed run: the output directory is as it was; the work done so far and the report with
     * the error stay in the staging directory, for --resume.
     */
    private void failed(FileSystem fs, Staging staging, OutputDirectory outputs, List<SequenceFile> files,
                        Exception e) {
        if (Commit.committed(fs, staging.path())) {
            // past the commit point the output may already hold part of the results: say so, and
            // keep the staged report of the committed run (it is published with the rest)
            out.println(Commit.failedAfterCommitPoint(staging.root));
            return;
        }
        try {
            String storage = Causes.storageLimit(e);
            if (storage != null) {
                // said before the report is staged: on a full disk that write fails too, and the advice went with it
                out.println("lightning: the run stopped: " + storage + "; then rerun with --resume to keep the work "
                        + "done so far, in " + staging.root + ". Nothing was published to the output directory ("
                        + outputs.freeSpace() + ")");
            }
            ObjectNode report = report(files, reports, "failed", e);
            staging.stageReport(fs, report);
            if (storage != null) {
                return;
            } else if (Causes.inChain(e, dev.lightning.attention.job.output.UnsharedOutputException.class) != null) {
                // a rerun, with or without --resume, meets the same wall: the message says what to change
                out.println("lightning: the run failed because the driver and the executors do not see --output as "
                        + "the same storage (the error below); nothing was published to the output directory, and the "
                        + "failed run's report is in " + staging.root + " as the driver sees it");
            } else if (setupFailure(e) != null) {
                out.println("lightning: the run failed on where its tasks run (" + setupFailure(e) + "); nothing was "
                        + "published to the output directory. A rerun fails the same way until that is fixed on the "
                        + "executors (e.g. the application jar with JCuda shipped to them, a usable GPU); then rerun "
                        + "with --resume and the same options to keep the work done so far, in " + staging.root);
            } else if (Causes.inChain(e, InputChangedException.class) != null) {
                // the work kept in staging read the old content: --resume refuses it, and rightly
                out.println("lightning: the run stopped because an input changed while it ran (the error below); "
                        + "nothing was published to the output directory. Run again without --resume once the input "
                        + "no longer changes; the failed run's report is in " + staging.root);
            } else if (LightningMain.findInvalidInput(e) == null && SetupChecks.setupProblem(e) != null) {
                // a setting Spark or Hadoop refused once the run had started (a Spark setting at the SparkContext's
                // start, a file system's connector): the same settings meet it again, with or without --resume
                out.println("lightning: the run stopped at a set-up problem (the error below says what to change); "
                        + "nothing was published to the output directory, and a --resume would meet it again. The "
                        + "failed run's report is in " + staging.root);
            } else if (LightningMain.findInvalidInput(e) != null) {
                // a bad input: --resume cannot help, since the input or the options must change. What to change is
                // the error's to say: found by a task (a NaN, an overflowing o), it is not one --skip-invalid leaves
                // out, which this line advised with --skip-nonfinite, and the error gave that advice again
                out.println("lightning: the run stopped at a bad input (the error below says which, and what to "
                        + "change); nothing was published to the output directory, and a --resume would meet it again. "
                        + "The failed run's report is in " + staging.root);
            } else if (Causes.inChain(e, ExplainedFailure.SpotChecks.class) != null) {
                // the staged results are the ones refused: a --resume keeps them and fails the same way
                out.println("lightning: the spot checks refused the run's o (the error below); nothing was published "
                        + "to the output directory. A --resume would keep the checked results and fail the same way: "
                        + "run again without it, with --backend cpu to compare, or with another "
                        + "--spot-check-tolerance; the failed run's report, with every sampled row, is in "
                        + staging.root);
            } else {
                out.println("lightning: the run failed; nothing was published to the output directory. The work done "
                        + "so far and the report of the failed run are in " + staging.root + "; rerun with --resume to "
                        + "continue from it");
            }
        } catch (IOException | RuntimeException again) {
            e.addSuppressed(again);
        }
    }


    /**
     * A failure that stays until something where the tasks run is changed (no usable GPU, JCuda or
     * another class or native library missing on the executors), said briefly; else null. A
     * killed run or a lost executor is none: --resume alone continues those.
     */
    static String setupFailure(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
            if (t instanceof dev.lightning.attention.engine.GpuUnusableException) {
                return "no usable GPU: " + t.getMessage();
            }
            if (t instanceof LinkageError || t instanceof ClassNotFoundException) {
                return "a class or native library is missing there: " + t;
            }
        }
        return null;
    }

    /**
     * --output-mode checksums: each result's o checksum and spot-check table, read back from the
     * metadata of its staged file (a header per sequence: the driver holds nothing per piece), for
     * the run report and the console. Fails the run, before its commit, when a sampled row is off by
     * more than the tolerance of the output dtype: the outputs are then not published, and the
     * report kept in the staging directory lists every sampled row.
     */
    private void collectChecksums(List<SequenceFile> files, FileSystem fs, Staging staging) throws IOException {
        ObjectMapper json = new ObjectMapper();
        List<String> failures = new ArrayList<>();
        for (int i = 0; i < files.size(); i++) {
            if (skipped.containsKey(i)) {
                continue;
            }
            SequenceFile f = files.get(i);
            Path staged = staging.stagedOutput(f.name);
            long size;
            try {
                size = fs.getFileStatus(staged).getLen();
            } catch (java.io.FileNotFoundException e) {
                // its pass succeeded, so a task wrote it: where the driver looks, the executors did not write
                throw dev.lightning.attention.job.output.UnsharedOutputException.onDriver("the staged output", staged, e);
            }
            dev.lightning.attention.tensor.SafetensorsHeader header;
            try (org.apache.hadoop.fs.FSDataInputStream in = fs.open(staged)) {
                byte[] prefix = new byte[8];
                in.readFully(0, prefix);
                long n = dev.lightning.attention.tensor.SafetensorsHeader.headerLength(f.name, prefix, size);
                byte[] text = new byte[Math.toIntExact(n)];
                in.readFully(8, text);
                header = dev.lightning.attention.tensor.SafetensorsHeader.parse(f.name, text, size);
            }
            Map<String, String> m = header.metadata();
            ObjectNode node = json.createObjectNode();
            node.put("crc32c", m.get(dev.lightning.attention.stream.OutputSummary.CRC));
            node.put("bytes", Long.parseLong(m.get("o_bytes")));
            node.put("sum", Double.parseDouble(m.get("o_sum")));
            node.put("maxAbs", Double.parseDouble(m.get("o_max_abs")));
            double worst = Double.parseDouble(m.get(dev.lightning.attention.stream.OutputSummary.MAX_ERROR));
            double tolerance = Double.parseDouble(m.get(dev.lightning.attention.stream.OutputSummary.TOLERANCE));
            node.put("spotCheckMaxRelError", worst);
            node.put("spotCheckTolerance", tolerance);
            JsonNode table = json.readTree(m.get(dev.lightning.attention.stream.OutputSummary.SPOT_CHECKS));
            node.set("spotChecks", table);
            checksums.put(i, node);
            int unchecked = 0;
            long worstToken = -1;
            for (JsonNode row : table) {
                if (row.has("unchecked")) {
                    unchecked++;
                } else if (row.get("rel_error").asDouble() == worst) {
                    worstToken = row.get("token").asLong();
                }
            }
            out.printf("lightning: %s: o crc32c %s (%,d bytes, sum %.6g, max |o| %.4g); spot checks: %d rows against "
                            + "float64, max rel. error %.3g at token %d (tolerance %.3g)%s%n", f.name,
                    node.get("crc32c").asText(), node.get("bytes").asLong(), node.get("sum").asDouble(),
                    node.get("maxAbs").asDouble(), table.size() - unchecked, worst, worstToken, tolerance,
                    unchecked == 0 ? "" : "; " + unchecked + " rows unchecked (see " + Commit.REPORT + ")");
            if (!(worst <= tolerance)) {
                boolean given = cfg.get(Settings.SPOT_CHECK_TOLERANCE) != null;
                failures.add(String.format("%s: o at token %d is off by %.3g relative to the float64 value, above "
                        + "the tolerance %.3g (%s)", f.name, worstToken, worst, tolerance,
                        given ? "--spot-check-tolerance" : "the default for " + m.get("o_dtype") + " o"));
            }
        }
        if (!failures.isEmpty()) {
            throw new ExplainedFailure.SpotChecks("spot checks failed: " + String.join("; ", failures) + ". Nothing "
                    + "was published; the run report lists every sampled row with its error");
        }
    }

    /** Pass 2 saw every piece (and every initial state): its records say which sequences to drop. */
    private void collectSkipped(PassReport outputs, List<SequenceFile> files) {
        for (Map.Entry<Integer, long[]> e : outputs.skipCounts().entrySet()) {
            // softmax reads a key block in every work item of its query rows: a count would add those up
            String what = (cfg.softmax() ? "NaN/Inf value(s)" : e.getValue()[0] + " NaN/Inf value(s)") + ", the first at "
                    + outputs.skipFirst(e.getKey());
            skipped.put(e.getKey(), what); // printed once the last pass is in (warnSkipped)
        }
    }

    // ---------------------------------------------------------------- report

    /**
     * The run report: settings, sequences, passes (with their tasks' figures), the tasks of passes
     * small enough to list, the driver JVM's heap; for a failed run also the error.
     */
    private ObjectNode report(List<SequenceFile> files, Map<String, PassReport> tasks, String status, Exception error) {
        ObjectMapper json = new ObjectMapper();
        ObjectNode root = json.createObjectNode();
        root.put("status", status);
        if (error != null) {
            root.put("error", String.valueOf(error.getMessage() == null ? error : error.getMessage()));
        }
        root.put("version", Version.get());
        root.put("engine", EngineBuild.digest());
        root.put("run", runId);
        root.put("application", sc == null ? "(Spark not started)" : sc.applicationId());
        root.put("master", sc == null ? cfg.get(Settings.MASTER) : sc.master());
        root.put("started", started.toString());
        root.put("ended", java.time.Instant.now().toString());
        double seconds = (System.nanoTime() - t0) / 1e9;
        root.put("sparkStartSeconds", sparkStartSeconds);
        ArrayNode backends = root.putArray("backends");
        backendsUsed().forEach(backends::add);
        ObjectNode settings = root.putObject("settings");
        cfg.describe().forEach(settings::put);
        root.put("sequences", files.size());
        if (stored != null) {
            root.put(SafetensorsStates.REPORT_KEY, true); // this run publishes _states.json
        }
        summary.forEach(root::put);
        if (softmaxPlan != null) {
            root.set("softmax", softmaxPlan);
        }
        long tokens = summary.getOrDefault("tokens", 0L);
        root.put("seconds", seconds);
        root.put("keptTokens", keptTokens);
        if (error == null) {
            // a failed run computed part of the plan's tokens: its passes say how much
            root.put("tokensPerSecond", seconds > 0 ? (tokens - keptTokens) / seconds : 0);
        }
        root.put("resumedUnits", resumedUnits());
        root.set("driverMemory", memory.describe(json));
        ObjectNode ps = root.putObject("passes");
        passes.forEach((title, v) -> {
            ObjectNode p = ps.putObject(title);
            p.put("seconds", v[0]);
            if (v[3] == 0) {
                p.put("failed", true);
                p.put("note", "the pass failed: its tokens are those of the tasks that finished before");
            }
            if (v[1] > 0 || v[2] > 0) {
                // tokens: computed by this run, over its seconds; keptTokens: kept by --resume, computed before
                p.put("tokens", (long) v[1]);
                p.put("keptTokens", (long) v[2]);
                p.put("tokensPerSecond", v[0] > 0 ? v[1] / v[0] : 0);
            }
            PassReport r = tasks.get(title);
            if (r != null) {
                r.describe(p);
            }
        });
        ArrayNode seqs = root.putArray("files");
        for (int index = 0; index < files.size(); index++) {
            SequenceFile f = files.get(index);
            ObjectNode n = seqs.addObject();
            n.put("name", f.name);
            n.put("tokens", f.tokens);
            n.put("heads", f.layout().heads());
            if (!f.layout().ungrouped()) {
                n.put("headsQ", f.layout().headsQ());
                n.put("headsK", f.layout().headsK());
                n.put("headsV", f.layout().headsV());
            }
            n.put("dk", f.layout().dk());
            n.put("dv", f.layout().dv());
            n.put("dtype", f.dtype.name());
            n.put("outputDtype", cfg.outputDtype(f.dtype).name());
            n.put("slopes", f.slopesFromFile ? "file" : cfg.get(Settings.DEFAULT_SLOPES));
            n.put("initialState", f.initialStateOffset >= 0);
            n.put("initialNormalizer", f.initialNormalizerOffset >= 0);
            if (continued.containsKey(index)) {
                n.put("storedState", continued.get(index).location);
            }
            if (dev.lightning.attention.stream.SyntheticSequence.isSynthetic(f.path)) {
                n.put("synthetic", f.path);
            }
            if (checksums.containsKey(index)) {
                n.set("checksums", checksums.get(index));
            }
        }
        ArrayNode rej = root.putArray("rejected");
        rejected.forEach((name, why) -> rej.addObject().put("file", name).put("reason", why));
        ArrayNode skip = root.putArray("skipped");
        skipped.forEach((seq, why) -> skip.addObject().put("file", files.get(seq).name).put("reason", why));
        // every task's row for passes of at most PassReport.TASK_ROWS tasks; each pass says whether its are here
        ArrayNode ts = root.putArray("tasks");
        for (PassReport r : tasks.values()) {
            r.rows(ts);
        }
        return root;
    }
}
