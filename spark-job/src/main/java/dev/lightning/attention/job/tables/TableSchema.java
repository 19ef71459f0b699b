package dev.lightning.attention.job.tables;

import dev.lightning.attention.job.input.StoredStates;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.spark.sql.Column;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.functions;
import org.apache.spark.sql.types.ArrayType;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

import java.util.ArrayList;
import java.util.List;

/**
 * The one definition of the tables lightning reads and writes as rows (Parquet through Spark, or
 * any {@code Dataset<Row>}): their columns, types, whether they may be null, and what they mean.
 * The README's layout table is {@link #markdownTable()}; the reader, the validation and the writer
 * use the column constants and {@link StructType}s here, never their own strings.
 *
 * <p>Tensors are binary columns of little-endian values, token-major like safetensors: a block's
 * q is {@code [tokens, heads_q, dk]} of its dtype, so its byte length is
 * {@code tokens * heads_q * dk * dtype bytes}. States are float32: {@code [H, Dk, Dv]} and the
 * normalizer {@code [H, Dk]}, H = max(heads_q, heads_k, heads_v).
 */
public final class TableSchema {
    private TableSchema() {
    }

    /** One column: name, type, nullability, meaning. */
    public static final class Col {
        public final String name;
        public final DataType type;
        public final boolean nullable;
        public final String doc;

        Col(String name, DataType type, boolean nullable, String doc) {
            this.name = name;
            this.type = type;
            this.nullable = nullable;
            this.doc = doc;
        }

        StructField field() {
            return DataTypes.createStructField(name, type, nullable);
        }
    }

    /** One table: its name in messages and in the output directory, and its columns. */
    public static final class Table {
        public final String name;
        public final String doc;
        public final List<Col> columns;

        Table(String name, String doc, Col... columns) {
            this.name = name;
            this.doc = doc;
            this.columns = List.of(columns);
        }

        /** The Spark schema of this table. */
        public StructType schema() {
            List<StructField> fields = new ArrayList<>();
            for (Col c : columns) {
                fields.add(c.field());
            }
            return DataTypes.createStructType(fields);
        }

        /** The position of column {@code name} in a conformed row (a programming error if there is none). */
        int at(String name) {
            return columns.indexOf(col(name));
        }

        /** The column named {@code name} (a programming error if there is none). */
        Col col(String name) {
            for (Col c : columns) {
                if (c.name.equals(name)) {
                    return c;
                }
            }
            throw new IllegalArgumentException(this.name + " has no column " + name);
        }

        /**
         * {@code data} with exactly this table's columns in this order: each column must be present
         * with its type; an integer column given as another integer type (a long where an int is
         * expected, as a Python writer may give) is cast, a value the type does not hold to null. Extra columns are
         * dropped. Throws InvalidInputException naming every missing or mistyped column and what was expected.
         */
        Dataset<Row> conform(Dataset<Row> data, String source) {
            StructType given = data.schema();
            // Spark matches column names regardless of case unless spark.sql.caseSensitive is set: so do we
            boolean caseSensitive = Boolean.parseBoolean(data.sparkSession().conf().get("spark.sql.caseSensitive",
                    "false"));
            List<String> problems = new ArrayList<>();
            List<Column> select = new ArrayList<>();
            for (Col c : columns) {
                int at = indexOf(given, c.name, caseSensitive);
                if (at < 0) {
                    if (c.nullable) {
                        select.add(functions.lit(null).cast(c.type).as(c.name));
                        continue;
                    }
                    problems.add("column `" + c.name + "` (" + c.type.simpleString() + ") is missing");
                    continue;
                }
                DataType t = given.fields()[at].dataType();
                Column col = functions.col("`" + given.fields()[at].name() + "`");
                if (t.equals(c.type)) {
                    select.add(col.as(c.name));
                } else if (isInteger(t) && isInteger(c.type)) {
                    // A wider integer is cast only where its value fits: a cast of one that does not wraps it
                    // without a word (ANSI off: a long token count 2^32 + 5 read as 5) or fails the run with Spark's
                    // CAST_OVERFLOW, naming neither column nor sequence (ANSI on, Spark 4's default). Out of range it
                    // reads as null, which the checks refuse naming the sequence, the block and the column.
                    select.add((width(t) > width(c.type) ? functions.when(col.between(minOf(c.type), maxOf(c.type)),
                            col.cast(c.type)) : col.cast(c.type)).as(c.name));
                } else if (t instanceof ArrayType && c.type instanceof ArrayType
                        && isNumeric(((ArrayType) t).elementType())) {
                    select.add(col.cast(c.type).as(c.name));
                } else {
                    problems.add("column `" + c.name + "` is " + t.simpleString() + ", expected " + c.type.simpleString());
                }
            }
            if (!problems.isEmpty()) {
                throw new InvalidInputException(source + ": not a lightning " + name + " table: " + String.join("; ", problems)
                        + ". The layout is in the README (\"Sequences as table rows\")");
            }
            return data.select(select.toArray(new Column[0]));
        }

        /** The column named {@code name}: exactly, else (not {@code caseSensitive}) the one of that name in another case. */
        private static int indexOf(StructType s, String name, boolean caseSensitive) {
            String[] names = s.fieldNames();
            for (int i = 0; i < names.length; i++) {
                if (names[i].equals(name)) {
                    return i;
                }
            }
            for (int i = 0; !caseSensitive && i < names.length; i++) {
                if (names[i].equalsIgnoreCase(name)) {
                    return i;
                }
            }
            return -1;
        }

        private static boolean isInteger(DataType t) {
            return t.equals(DataTypes.IntegerType) || t.equals(DataTypes.LongType) || t.equals(DataTypes.ShortType)
                    || t.equals(DataTypes.ByteType);
        }

        /** The bytes of an integer type ({@link #isInteger}). */
        private static int width(DataType t) {
            return t.equals(DataTypes.LongType) ? 8 : t.equals(DataTypes.IntegerType) ? 4
                    : t.equals(DataTypes.ShortType) ? 2 : 1;
        }

        private static long minOf(DataType t) {
            return -1L << (8 * width(t) - 1);
        }

        private static long maxOf(DataType t) {
            return ~minOf(t);
        }

        private static boolean isNumeric(DataType t) {
            return isInteger(t) || t.equals(DataTypes.FloatType) || t.equals(DataTypes.DoubleType);
        }
    }

    // column names, shared by the tables that hold them
    public static final String SEQUENCE = "sequence";
    public static final String START = "start";
    public static final String TOKENS = "tokens";
    public static final String DTYPE = "dtype";
    public static final String HEADS_Q = "heads_q";
    public static final String HEADS_K = "heads_k";
    public static final String HEADS_V = "heads_v";
    public static final String HEADS = "heads";
    public static final String DK = "dk";
    public static final String DV = "dv";
    public static final String Q = "q";
    public static final String K = "k";
    public static final String V = "v";
    public static final String O = "o";
    public static final String SLOPE = "slope";
    public static final String INITIAL_STATE = "initial_state";
    public static final String INITIAL_NORMALIZER = "initial_normalizer";
    public static final String FINAL_STATE = "final_state";
    public static final String FINAL_NORMALIZER = "final_normalizer";
    public static final String STATE_TOKENS = "state_tokens";
    public static final String FEATURE_MAP = "feature_map";
    public static final String CHECKPOINT = "checkpoint";
    public static final String TOKEN = "token";
    public static final String STATE = "state";
    public static final String NORMALIZER = "normalizer";

    private static Col sequence(String doc) {
        return new Col(SEQUENCE, DataTypes.StringType, false, doc);
    }

    /** Input: one row per block of consecutive tokens of one sequence. */
    public static final Table BLOCKS = new Table("blocks",
            "input (`--input`): one row per block of consecutive tokens of one sequence",
            sequence("the sequence's name (any string); its rows may come in any order and from any files"),
            new Col(START, DataTypes.LongType, false, "the block's first token within its sequence (from 0)"),
            new Col(TOKENS, DataTypes.IntegerType, false, "n, the block's tokens (at least 1); a sequence's blocks "
                    + "cover tokens 0..T-1 exactly once, without gaps or overlaps"),
            new Col(DTYPE, DataTypes.StringType, false, "`F32`, `F16` or `BF16`, the dtype of q, k and v; one per sequence"),
            new Col(HEADS_Q, DataTypes.IntegerType, false, "Hq; each of Hq, Hk, Hv divides H = max of them; "
                    + "heads and widths are one per sequence"),
            new Col(HEADS_K, DataTypes.IntegerType, false, "Hk"),
            new Col(HEADS_V, DataTypes.IntegerType, false, "Hv"),
            new Col(DK, DataTypes.IntegerType, false, "Dk, 1..256"),
            new Col(DV, DataTypes.IntegerType, false, "Dv, 1..256"),
            new Col(Q, DataTypes.BinaryType, false, "[n, Hq, Dk] little-endian, of the dtype"),
            new Col(K, DataTypes.BinaryType, false, "[n, Hk, Dk]"),
            new Col(V, DataTypes.BinaryType, false, "[n, Hv, Dv]"));

    /** Input, optional: one row per sequence that has its own slopes or initial state. */
    public static final Table SEQUENCES = new Table("sequences",
            "input, optional (`--sequences`): at most one row per sequence of the blocks",
            sequence("a sequence of the blocks table"),
            new Col(SLOPE, DataTypes.createArrayType(DataTypes.DoubleType, true), true,
                    "[H] decay rates, finite, >= 0; null: the `--default-slopes`"),
            new Col(INITIAL_STATE, DataTypes.BinaryType, true, "[H, Dk, Dv] F32, the state before token 0; null: zero"),
            new Col(INITIAL_NORMALIZER, DataTypes.BinaryType, true,
                    "[H, Dk] F32, only with `--normalize`; null: zero"));

    /** Output: one row per block of o, the input's blocks cut where the run cut the sequence into pieces. */
    public static final Table O_BLOCKS = new Table(dev.lightning.attention.job.output.OutputPaths.O_TABLE,
            "output `o/`: one row per block of o; the input's blocks, cut at the run's piece boundaries "
                    + "(multiples of `--partition-tokens`) where a sequence was split",
            sequence("the sequence"),
            new Col(START, DataTypes.LongType, false, "first token"),
            new Col(TOKENS, DataTypes.IntegerType, false, "n"),
            new Col(DTYPE, DataTypes.StringType, false, "the dtype of o: the input's or `--output-dtype`"),
            new Col(HEADS, DataTypes.IntegerType, false, "H"),
            new Col(DV, DataTypes.IntegerType, false, "Dv"),
            new Col(O, DataTypes.BinaryType, false, "[n, H, Dv] little-endian"));

    /**
     * Output: one row per sequence, its state after its last token; read back by a later run's
     * {@code --initial-states}. The two columns that make a chain of runs checkable come last, so
     * tables written before them still conform (they read as null: unknown). Its name is
     * {@link StoredStates#STATES_TABLE}, which a safetensors run's --initial-states refuses too.
     */
    public static final Table FINAL_STATES = new Table(StoredStates.STATES_TABLE,
            "output `final_states/`: one row per sequence, the complete state set (with `--initial-states`, the "
                    + "stored rows of sequences this run did not compute are carried over unchanged); "
                    + "`--initial-states` reads it back",
            sequence("the sequence"),
            new Col(TOKENS, DataTypes.LongType, false, "T, the sequence's tokens in the run that wrote the row"),
            new Col(HEADS, DataTypes.IntegerType, false, "H"),
            new Col(DK, DataTypes.IntegerType, false, "Dk"),
            new Col(DV, DataTypes.IntegerType, false, "Dv"),
            new Col(SLOPE, DataTypes.createArrayType(DataTypes.DoubleType, true), false, "[H] the decay rates used"),
            new Col(FINAL_STATE, DataTypes.BinaryType, false, "[H, Dk, Dv] F32, S after token T-1"),
            new Col(FINAL_NORMALIZER, DataTypes.BinaryType, true, "[H, Dk] F32 with `--normalize`, else null"),
            new Col(STATE_TOKENS, DataTypes.LongType, true, "tokens the state has absorbed since the first run of its "
                    + "chain (T plus the stored state's, with `--initial-states`); null: unknown (the run started from "
                    + "a given `initial_state`, or continued a row that does not say)"),
            new Col(FEATURE_MAP, DataTypes.StringType, true, "the `--feature-map` the state was computed with; "
                    + "`--initial-states` refuses a row of another; null: not recorded"));

    /**
     * Output with --state-every N: one row per recorded state (checkpoint), what a files run holds in
     * {@code states} and {@code normalizers}. Positions count from the sequence's first token in this
     * run's blocks, as a files run counts from its input's first token; {@code state_tokens} places
     * the state in the whole chain of runs, like the final states' column.
     */
    public static final Table CHECKPOINTS = new Table(dev.lightning.attention.job.output.OutputPaths.CHECKPOINTS_TABLE,
            "output `states/`, with `--state-every N`: one row per recorded state (checkpoint) of a computed "
                    + "sequence, C = floor(T / N) of them (none for T < N)",
            sequence("the sequence"),
            new Col(CHECKPOINT, DataTypes.IntegerType, false, "c, from 0"),
            new Col(TOKEN, DataTypes.LongType, false, "(c+1)N - 1: the state is the one after this token of the "
                    + "sequence's blocks in this run (counted from their token 0, also when continuing a stored state)"),
            new Col(STATE_TOKENS, DataTypes.LongType, true, "tokens the state has absorbed since the first run of its "
                    + "chain: (c+1)N plus the stored state's with `--initial-states`, so the state follows token "
                    + "state_tokens - 1 of the whole sequence; null: unknown, as in `final_states`"),
            new Col(HEADS, DataTypes.IntegerType, false, "H"),
            new Col(DK, DataTypes.IntegerType, false, "Dk"),
            new Col(DV, DataTypes.IntegerType, false, "Dv"),
            new Col(STATE, DataTypes.BinaryType, false, "[H, Dk, Dv] F32, S after token (c+1)N - 1; as an "
                    + "`initial_state` it continues the sequence from token (c+1)N"),
            new Col(NORMALIZER, DataTypes.BinaryType, true, "[H, Dk] F32, z after the same token, with "
                    + "`--normalize`; else null"));

    public static final List<Table> ALL = List.of(BLOCKS, SEQUENCES, O_BLOCKS, FINAL_STATES, CHECKPOINTS);

    /** The layout table of the README, generated from the definitions above. */
    static String markdownTable() {
        StringBuilder b = new StringBuilder();
        b.append("| table | column | type | null | meaning |\n");
        b.append("|---|---|---|---|---|\n");
        for (Table t : ALL) {
            boolean first = true;
            for (Col c : t.columns) {
                b.append("| ").append(first ? "**" + t.name + "**: " + t.doc : "").append(" | `").append(c.name)
                        .append("` | ").append(c.type.simpleString()).append(" | ").append(c.nullable ? "yes" : "no")
                        .append(" | ").append(c.doc.replace("|", "\\|")).append(" |\n");
                first = false;
            }
        }
        return b.toString();
    }
}
