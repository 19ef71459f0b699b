package dev.lightning.attention.job.tables;

import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.input.Continuations;
import dev.lightning.attention.job.input.StoredStates;
import dev.lightning.attention.job.output.OutputPaths;
import dev.lightning.attention.job.pass.PassRunner;
import dev.lightning.attention.plan.PiecePlanner;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.functions;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static dev.lightning.attention.job.tables.TableSchema.*;

/**
 * The plan of a run over tables, shared by the command-line run ({@link TableRun}) and the API
 * ({@link LightningTables}): the options tables support ({@link TableOptions}), the checks of the
 * blocks, sequences and stored final_states tables before any compute (each refusal names the
 * sequence, what was expected and what came), the continuations of --initial-states, and the
 * {@link TablePlan} built from what passed.
 */
final class TablePlanning {
    private TablePlanning() {
    }

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
        // A table run's final_states holds every sequence of its chain once (the rows it did not compute are carried
        // over), so two rows of one name come from joining the tables of several runs; a row without its state, its
        // shape or its decay rates was made or changed by hand. Either way the set to give is one run's, as written.
        String oneRunsTable = "give the " + OutputPaths.FINAL_STATES_TABLE + " table of the latest table run alone, as "
                + "it was written (it holds every sequence's latest state, one row each)";
        String oneRunsOrNone = oneRunsTable + ", or remove the row to start the sequence from zero";
        int continued = 0;
        for (Row r : rows) {
            if (r.isNullAt(0)) {
                throw new InvalidInputException(source + ": a row has no sequence name (null in column `" + SEQUENCE
                        + "`); it is not a table lightning wrote");
            }
            String name = r.getString(0);
            String label = "'" + name + "'";
            if (!seen.add(name)) {
                match.refuse(label, "the stored table has more than one row for it; a state set has one", oneRunsTable);
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
                        + "wrote", oneRunsOrNone);
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
                        + "it is not a row lightning wrote", oneRunsOrNone);
                continue;
            }
            if (slopes[s] != null && !java.util.Arrays.equals(slopes[s], storedSlopes)) {
                match.refuse(label, "the sequences table gives " + SLOPE + " "
                        + java.util.Arrays.toString(slopes[s]) + ", the stored state decayed at "
                        + java.util.Arrays.toString(storedSlopes) + "; a continued sequence keeps its decay rates",
                        "leave " + SLOPE + " null for it (the stored ones are taken)");
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
    static void checkDeclaredOffsets(List<SequenceFile> files, TablePlan plan, String storedTable) {
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
            Continuations.Refusal why = StoredStates.offsetProblem(f.declaredOffset, f.initialStateOffset >= 0, true,
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
}
