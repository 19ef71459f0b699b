package dev.lightning.attention.job.tables;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lightning.attention.engine.EngineBuild;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.failure.Causes;
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
import dev.lightning.attention.plan.PiecePlanner;
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
import org.apache.spark.sql.functions;

import java.io.IOException;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static dev.lightning.attention.job.tables.TableSchema.*;

/**
 * A run over tables (--input-format parquet), and the preparation it shares with
 * {@link LightningTables}: the options tables support ({@link TableOptions}), the checks of both
 * tables before compute, and the plan. The CLI run publishes its tables, {@code o/} and {@code final_states/} (and
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

    // ---------------------------------------------------------------- preparation (CLI and API)

    /** The checked tables and the computation planned from them. */
    static final class Prepared {
        final Dataset<Row> blocks;
        final Dataset<Row> sequences;
        /** The stored final states (conformed), or null without them. */
        final Dataset<Row> stored;
        final TableCompute compute;
        /** With stored final states: the sequences that continue a stored state, and the stored rows in all. */
        final int continued;
        final int storedRows;
        /** With stored final states: the sequences that continue nothing and start from zero, as messages name them. */
        final List<String> fromZero;

        Prepared(Dataset<Row> blocks, Dataset<Row> sequences, Dataset<Row> stored, TableCompute compute, int continued,
                 int storedRows, List<String> fromZero) {
            this.blocks = blocks;
            this.sequences = sequences;
            this.stored = stored;
            this.compute = compute;
            this.continued = continued;
            this.storedRows = storedRows;
            this.fromZero = fromZero;
        }

        /** The run's outputs; its final states are the complete state set (stored rows it did not compute carried over). */
        TableCompute.Outputs outputs(SparkSession spark) {
            return compute.outputs(spark, blocks, sequences, stored);
        }
    }

    /**
     * Checks both tables (Spark jobs over their small columns) and plans the run. Throws
     * InvalidInputException for bad input; with --skip-invalid puts refused sequences in
     * {@code rejected} (name to reason) instead.
     *
     * @param known the blocks' summaries where they are known without the checks (safetensors files,
     *              whose headers were checked: {@link SafetensorsTables}), else null
     */
    static Prepared prepare(SparkSession spark, JobConfig cfg, Dataset<Row> blocksIn, String blocksSource,
                            Dataset<Row> sequencesIn, String sequencesSource, Dataset<Row> storedIn,
                            String storedSource, Map<String, String> rejected, List<TableValidation.Summary> known) {
        TableOptions.check(cfg, false, known == null);
        Dataset<Row> blocks = BLOCKS.conform(blocksIn, blocksSource);
        Dataset<Row> sequences = sequencesIn == null ? null : SEQUENCES.conform(sequencesIn, sequencesSource);
        Dataset<Row> stored = storedIn == null ? null : FINAL_STATES.conform(storedIn, storedSource);
        int parallel = spark.sparkContext().defaultParallelism();
        boolean skip = cfg.get(Settings.SKIP_INVALID);
        List<TableValidation.Summary> valid = new ArrayList<>();
        List<TableValidation.Summary> bad = new ArrayList<>();
        for (TableValidation.Summary s : known != null ? known : TableValidation.check(blocks, skip, Math.max(1, parallel))) {
            (s.error == null ? valid : bad).add(s);
        }
        if (!bad.isEmpty() && !skip) {
            throw new InvalidInputException(bad.get(0).error + (bad.size() == 1 ? ""
                    : " (and " + (bad.size() - 1) + " more sequence(s) with problems; --skip-invalid computes the "
                    + "others and lists these in the run report)"));
        }
        for (TableValidation.Summary s : bad) {
            rejected.put(String.valueOf(s.name), s.error);
        }
        if (valid.isEmpty()) {
            throw new InvalidInputException(blocksSource + ": no sequence to compute" + (bad.isEmpty()
                    ? " (the table has no rows)" : ": all " + bad.size() + " were rejected, e.g. " + bad.get(0).error));
        }
        String[] names = new String[valid.size()];
        for (int i = 0; i < names.length; i++) {
            names[i] = valid.get(i).name;
        }
        double[][] slopes = new double[names.length][];
        boolean[] initial = new boolean[names.length];
        if (sequences != null) {
            readSequences(cfg, sequences, sequencesSource, valid, names, rejected, slopes, initial);
        }
        long[] tokensBefore = new long[names.length];
        for (int i = 0; i < names.length; i++) {
            tokensBefore[i] = initial[i] ? -1 : 0; // a given initial_state: what it absorbed is not known
        }
        int[] counts = stored == null ? new int[2]
                : matchStored(cfg, stored, storedSource, sequencesSource, valid, names, slopes, initial, tokensBefore);
        List<String> fromZero = new ArrayList<>();
        for (int i = 0; stored != null && i < names.length; i++) {
            if (!initial[i]) { // neither continued nor given a state of its own
                fromZero.add("'" + names[i] + "'");
            }
        }
        for (int i = 0; i < names.length; i++) {
            if (slopes[i] == null) {
                TableValidation.Summary s = valid.get(i);
                slopes[i] = cfg.defaultSlopes(s.heads());
            }
        }
        TablePlan plan = new TablePlan(valid, slopes, initial, tokensBefore,
                new PiecePlanner(cfg.get(Settings.PARTITION_TOKENS), cfg.chunkSize()),
                PassRunner.maxTasksPerPass(parallel));
        return new Prepared(blocks, sequences, stored, new TableCompute(cfg, plan), counts[0], counts[1],
                fromZero);
    }

    /**
     * --initial-states over tables: the stored final_states table's small columns, on the driver (a
     * name, four integers, a flag and a string per row; the states stay in the table until the
     * shuffle), matched by name to the sequences this run computes. A continued sequence starts from
     * its stored state: S_{-1} is the stored S_{T-1}, so its outputs equal those of one run over the
     * old and the new tokens. Before any compute this refuses, naming the sequence, a stored name
     * with more than one row, a sequence that also has its own initial_state or initial_normalizer
     * in the sequences table (two starting states), and a stored state whose shape or feature map
     * does not fit its input here (what was expected and what was found, as for safetensors states).
     * A continued sequence keeps its decay rates: without a {@code slope} in the sequences table it
     * takes the stored row's (the run's defaults could differ, and the continuation would then not
     * be the one run over old and new tokens that it stands for); a given {@code slope} that
     * differs from the stored one is refused. Sequences without a stored row start from zero (or
     * their sequences-table state). Fills in {@code slopes}, {@code initial} and {@code tokensBefore};
     * returns the continued sequences and the stored rows.
     */
    private static int[] matchStored(JobConfig cfg, Dataset<Row> stored, String source, String sequencesSource,
                                    List<TableValidation.Summary> valid, String[] names, double[][] slopes,
                                    boolean[] initial, long[] tokensBefore) {
        List<Row> rows = stored.select(functions.col(SEQUENCE), functions.col(HEADS), functions.col(DK),
                functions.col(DV), functions.col(FINAL_NORMALIZER).isNotNull(), functions.col(FEATURE_MAP),
                functions.col(STATE_TOKENS), functions.col(FINAL_STATE).isNull(), functions.col(SLOPE)).collectAsList();
        java.util.Set<String> seen = new java.util.HashSet<>();
        Continuations match = new Continuations(source, sequencesSource, "leave the column null or drop the tensor "
                + "from the file", "remove the row from the stored table");
        int continued = 0;
        for (Row r : rows) {
            if (r.isNullAt(0)) {
                throw new InvalidInputException(source + ": a row has no sequence name (null in column `" + SEQUENCE
                        + "`); it is not a table lightning wrote");
            }
            String name = r.getString(0);
            String label = "'" + name + "'";
            if (!seen.add(name)) {
                match.refuse(label, "the stored table has more than one row for it; a state set has one");
                continue;
            }
            int s = java.util.Arrays.binarySearch(names, name);
            if (s < 0) {
                continue; // not computed here: carried over unchanged
            }
            if (!match.oneStart(label, initial[s] ? INITIAL_STATE + " or " + INITIAL_NORMALIZER : null, null)) {
                continue;
            }
            if (r.getBoolean(7) || r.isNullAt(1) || r.isNullAt(2) || r.isNullAt(3)) {
                match.refuse(label, "the stored row has no " + FINAL_STATE + " or no shape; it is not a row lightning "
                        + "wrote");
                continue;
            }
            TableValidation.Summary sum = valid.get(s);
            int h = sum.heads();
            if (!match.fits(label, StoredStates.mismatch(r.getInt(1), r.getInt(2), r.getInt(3), r.getBoolean(4),
                    r.isNullAt(5) ? null : r.getString(5), source, TablePlan.spec(sum.headsQ, sum.headsK, sum.headsV,
                            sum.dk, sum.dv, slopes[s] != null ? slopes[s] : cfg.defaultSlopes(h),
                            cfg.get(Settings.SCALE), cfg.chunkSize(), cfg.variant())))) {
                continue;
            }
            double[] storedSlopes = r.isNullAt(8) ? null : new double[r.getList(8).size()];
            for (int i = 0; storedSlopes != null && i < storedSlopes.length; i++) {
                Object x = r.getList(8).get(i);
                storedSlopes[i] = x == null ? Double.NaN : ((Number) x).doubleValue();
            }
            if (storedSlopes == null || storedSlopes.length != h || !validSlopes(storedSlopes)) {
                match.refuse(label, "the stored row's " + SLOPE + " is " + (storedSlopes == null ? "null"
                        : java.util.Arrays.toString(storedSlopes)) + ", expected " + h + " finite decay rates >= 0; "
                        + "it is not a row lightning wrote");
                continue;
            }
            if (slopes[s] != null && !java.util.Arrays.equals(slopes[s], storedSlopes)) {
                match.refuse(label, "the sequences table gives " + SLOPE + " "
                        + java.util.Arrays.toString(slopes[s]) + ", the stored state decayed at "
                        + java.util.Arrays.toString(storedSlopes) + "; a continued sequence keeps its decay rates: "
                        + "leave " + SLOPE + " null for it (the stored ones are taken)");
                continue;
            }
            slopes[s] = storedSlopes;
            initial[s] = true;
            tokensBefore[s] = r.isNullAt(6) ? -1 : r.getLong(6);
            continued++;
        }
        match.throwIfAny();
        return new int[] {continued, seen.size()};
    }

    /**
     * The sequences table's small columns, on the driver (a name, H slopes and two flags per row):
     * every row must name a sequence of the blocks, once, with H finite non-negative slopes, and an
     * initial normalizer only with --normalize (as a file holding one is refused without).
     */
    private static void readSequences(JobConfig cfg, Dataset<Row> sequences, String source,
                                      List<TableValidation.Summary> valid, String[] names, Map<String, String> rejected,
                                      double[][] slopes, boolean[] initial) {
        List<Row> rows = sequences.select(functions.col(SEQUENCE), functions.col(SLOPE),
                functions.col(INITIAL_STATE).isNotNull(), functions.col(INITIAL_NORMALIZER).isNotNull()).collectAsList();
        boolean[] seen = new boolean[names.length];
        for (Row r : rows) {
            if (r.isNullAt(0)) {
                throw new InvalidInputException(source + ": a row has no sequence name (null in column `" + SEQUENCE + "`)");
            }
            String name = r.getString(0);
            int s = java.util.Arrays.binarySearch(names, name);
            if (s < 0) {
                if (rejected.containsKey(name)) {
                    continue;
                }
                throw new InvalidInputException(source + ": sequence '" + name + "' has no blocks; every row of the "
                        + "sequences table must name a sequence of the blocks table");
            }
            String where = source + ", sequence '" + name + "': ";
            if (seen[s]) {
                throw new InvalidInputException(where + "it has more than one row; a sequence has at most one");
            }
            seen[s] = true;
            int h = valid.get(s).heads();
            if (!r.isNullAt(1)) {
                List<Object> given = r.getList(1);
                if (given.size() != h) {
                    throw new InvalidInputException(where + SLOPE + " has " + given.size() + " values, expected one per "
                            + "head, H = " + h);
                }
                double[] v = new double[h];
                for (int i = 0; i < h; i++) {
                    Object x = given.get(i);
                    v[i] = x == null ? Double.NaN : ((Number) x).doubleValue();
                    if (!Slopes.isDecayRate(v[i])) {  // (a null element named so, not as the NaN it was read as)
                        throw new InvalidInputException(where + SLOPE + "[" + i + "] is " + (x == null ? "null" : v[i])
                                + ", expected finite and >= 0" + (x == null ? " (a null slope takes the --default-slopes; "
                                + "give all " + h + " rates or none)" : ""));
                    }
                }
                slopes[s] = v;
            }
            if (r.getBoolean(3) && !cfg.get(Settings.NORMALIZE)) {
                throw new InvalidInputException(where + INITIAL_NORMALIZER + " is given, but the run does not normalize: "
                        + "add --normalize, or leave the column null");
            }
            initial[s] = r.getBoolean(2) || r.getBoolean(3);
        }
    }

    /**
     * --initial-states with safetensors files as input: a file whose metadata says where it starts
     * ({@code token_offset}) must start where its stored row's state ends ({@code state_tokens}), or
     * at token 0 when it continues nothing, as a run that writes safetensors refuses it
     * ({@link StoredStates#offsetProblem}); otherwise a segment given after the wrong directory (a
     * generation skipped or repeated) would continue from another state without a word. Before any
     * compute; files rejected with --skip-invalid are not in the plan.
     */
    private static void checkDeclaredOffsets(List<SequenceFile> files, TablePlan plan, String storedTable) {
        Continuations match = new Continuations("--initial-states " + storedTable);
        for (SequenceFile f : files) {
            int s = plan.index(f.name);
            if (s < 0) {
                continue;
            }
            // a sequence with its own initial tensors and a stored row was refused (matchStored): a given
            // state here is the stored one only for a file that holds none
            boolean own = f.initialStateOffset >= 0 || f.initialNormalizerOffset >= 0;
            boolean continues = plan.initial[s] && !own;
            String why = StoredStates.offsetProblem(f.declaredOffset, f.initialStateOffset >= 0, true,
                    continues ? storedTable : null, continues ? plan.tokensBefore[s] : -1);
            if (why != null) {
                match.refuse("'" + f.name + "'", why);
            }
        }
        match.throwIfAny();
    }

    private static boolean validSlopes(double[] v) {
        for (double x : v) {
            if (!Slopes.isDecayRate(x)) {
                return false;
            }
        }
        return true;
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
            refuseForeignTables(outFs, outputDir, "");
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
                    out.println("lightning: the run failed; nothing was published to the output directory. The "
                            + "report of the failed run is in " + staging.root);
                } catch (IOException | RuntimeException again) {
                    e.addSuppressed(again);
                }
                throw e;
            }
            report.put("status", "succeeded");
            report.put("ended", java.time.Instant.now().toString());
            staging.stageReport(outFs, report);
            // an earlier run's table this run does not write (states/ without --state-every) goes with --overwrite
            List<String> others = new ArrayList<>(ALL_TABLES);
            others.removeAll(tables());
            // again: a file put into a table during the compute
            refuseForeignTables(outFs, outputDir, " (found after the compute: nothing was "
                    + "published; run again once it is moved)");
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
     * With --overwrite, refuses an earlier table that holds more than a table write leaves, or a file
     * where a table goes ({@link OutputPaths#tableProblem}): the commit moves an earlier table aside
     * whole and deletes it with the staging, and a user's file must never go with it (as a files
     * run's NAME.parts/ holding a file that is not a part is refused). {@code then} ends the message.
     */
    private void refuseForeignTables(FileSystem outFs, Path outputDir, String then) throws IOException {
        if (!cfg.get(Settings.OVERWRITE)) {
            return;
        }
        for (String name : ALL_TABLES) {
            String problem = OutputPaths.tableProblem(outFs, HadoopPaths.child(outputDir, name));
            if (problem != null) {
                throw new InvalidInputException(problem + then);
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
        Prepared p;
        if (parquetInput) {
            Dataset<Row> blocks = spark.read().parquet(inputs.toArray(new String[0]));
            Dataset<Row> sequences = seqInputs.isEmpty() ? null : spark.read().parquet(seqInputs.toArray(new String[0]));
            p = prepare(spark, cfg, blocks, "--input " + String.join(",", inputs), sequences,
                    "--sequences " + String.join(",", seqInputs), stored, "--initial-states " + storedTable, rejected,
                    null);
        } else {
            SafetensorsTables source = SafetensorsTables.of(spark, cfg, hadoopConf, files);
            p = prepare(spark, cfg, source.blocks, "--input " + cfg.get(Settings.INPUT), source.sequences,
                    "--input " + cfg.get(Settings.INPUT) + " (slope, initial_state)", stored,
                    "--initial-states " + storedTable, rejected, source.summaries);
            if (stored != null) {
                checkDeclaredOffsets(files, p.compute.plan, storedTable);
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
        for (Map.Entry<String, String> r : rejected.entrySet()) {
            out.println("lightning: rejected sequence " + r.getKey() + ": " + r.getValue());
        }
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
