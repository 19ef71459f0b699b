package dev.lightning.attention.job.tables;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.tensor.DType;
import org.apache.spark.Partitioner;
import org.apache.spark.api.java.JavaPairRDD;
import org.apache.spark.sql.Column;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.functions;
import scala.Tuple2;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;

import static dev.lightning.attention.job.tables.TableSchema.*;

/**
 * The checks of a blocks table before any compute, as Spark jobs over its small columns only
 * (name, start, tokens, dtype, head counts and widths; never q, k, v): the rows are sorted by
 * (sequence, start) with each sequence in one partition, and each sequence is walked in token
 * order. A sequence must start at token 0 and its blocks must follow one another without gaps
 * or overlaps, with one dtype, one set of head counts and widths that can be grouped, widths of
 * 1..256 and at least one token per block. What comes back to the driver is one small
 * {@link Summary} per sequence, which is what the plan needs anyway.
 *
 * <p>The byte lengths of q, k and v are the one check that needs the binaries: it runs on the map
 * side of the compute's shuffle ({@link TableCompute}), which Spark completes for every block
 * before the first compute task starts, so a wrong length still stops the run before any compute.
 * With --skip-invalid the lengths are checked here instead (an extra read of the binaries), so that
 * a sequence with a wrong length is dropped as a whole rather than failing the run.
 */
public final class TableValidation {
    private TableValidation() {
    }

    /** One sequence as the checks saw it: its shape and length, or why it is refused. */
    public static final class Summary implements Serializable {
        private static final long serialVersionUID = 1L;
        String name;
        long tokens;
        int rows;
        String dtype;
        int headsQ;
        int headsK;
        int headsV;
        int dk;
        int dv;
        /** Null when the sequence is valid; else the first problem found, naming the sequence and offsets. */
        String error;

        Summary() {
        }

        /** H, the heads of the state and the slopes ({@link AttentionSpec#heads(int, int, int)}). */
        int heads() {
            return AttentionSpec.heads(headsQ, headsK, headsV);
        }
    }

    /** The small columns of one block, keyed by (sequence, start). */
    public static final class Meta implements Serializable {
        private static final long serialVersionUID = 1L;
        int tokens;
        String dtype;
        int headsQ;
        int headsK;
        int headsV;
        int dk;
        int dv;
        /** The byte lengths of q, k, v, or -1 when they were not read. */
        long qBytes = -1;
        long kBytes = -1;
        long vBytes = -1;
        /** A column that was null, or null. */
        String nullColumn;

        Meta() {
        }
    }

    /** (sequence, start): sorts by name, then token; a null name sorts first. */
    public static final class SeqStart implements Serializable {
        private static final long serialVersionUID = 1L;
        String name;
        long start;

        SeqStart() {
        }

        SeqStart(String name, long start) {
            this.name = name;
            this.start = start;
        }
    }

    static final class SeqStartOrder implements Comparator<SeqStart>, Serializable {
        private static final long serialVersionUID = 1L;

        @Override
        public int compare(SeqStart a, SeqStart b) {
            if (a.name == null || b.name == null) {
                return a.name == null ? (b.name == null ? Long.compare(a.start, b.start) : -1) : 1;
            }
            int c = a.name.compareTo(b.name);
            return c != 0 ? c : Long.compare(a.start, b.start);
        }
    }

    /** Every row of one sequence in one partition: by the hash of the name alone. */
    static final class ByName extends Partitioner {
        private static final long serialVersionUID = 1L;
        private final int partitions;

        ByName(int partitions) {
            this.partitions = partitions;
        }

        @Override
        public int numPartitions() {
            return partitions;
        }

        @Override
        public int getPartition(Object key) {
            String name = ((SeqStart) key).name;
            return name == null ? 0 : Math.floorMod(name.hashCode(), partitions);
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof ByName && ((ByName) o).partitions == partitions;
        }

        @Override
        public int hashCode() {
            return partitions;
        }
    }

    /**
     * Checks every sequence of {@code blocks} (conformed to {@link TableSchema#BLOCKS}); returns
     * one summary per sequence, sorted by name. {@code lengths}: also check the byte lengths of
     * q, k, v here (reads the binaries).
     */
    static List<Summary> check(Dataset<Row> blocks, boolean lengths, int partitions) {
        List<Column> cols = new ArrayList<>();
        for (String c : new String[] {SEQUENCE, START, TOKENS, DTYPE, HEADS_Q, HEADS_K, HEADS_V, DK, DV}) {
            cols.add(functions.col(c));
        }
        if (lengths) {
            cols.add(functions.octet_length(functions.col(Q)));
            cols.add(functions.octet_length(functions.col(K)));
            cols.add(functions.octet_length(functions.col(V)));
        }
        Dataset<Row> small = blocks.select(cols.toArray(new Column[0]));
        JavaPairRDD<SeqStart, Meta> keyed = small.javaRDD().mapToPair(TableValidation::meta);
        List<Summary> all = new ArrayList<>(keyed
                .repartitionAndSortWithinPartitions(new ByName(partitions), new SeqStartOrder())
                .mapPartitions(TableValidation::walk)
                .collect());
        all.sort(Comparator.comparing(s -> s.name == null ? "" : s.name));
        return all;
    }

    private static Tuple2<SeqStart, Meta> meta(Row r) {
        Meta m = new Meta();
        String[] names = {SEQUENCE, START, TOKENS, DTYPE, HEADS_Q, HEADS_K, HEADS_V, DK, DV};
        for (int i = 1; i < names.length; i++) {
            if (r.isNullAt(i)) {
                m.nullColumn = names[i];
            }
        }
        long start = r.isNullAt(1) ? 0 : r.getLong(1);
        if (m.nullColumn == null) {
            m.tokens = r.getInt(2);
            m.dtype = r.getString(3).toUpperCase(Locale.ROOT);
            m.headsQ = r.getInt(4);
            m.headsK = r.getInt(5);
            m.headsV = r.getInt(6);
            m.dk = r.getInt(7);
            m.dv = r.getInt(8);
            if (r.length() > 9) {
                // a null q, k or v is a block without its data: said as such, and skipped with --skip-invalid
                String[] data = {"q", "k", "v"};
                for (int i = 0; i < 3 && m.nullColumn == null; i++) {
                    if (r.isNullAt(9 + i)) {
                        m.nullColumn = data[i];
                    }
                }
                m.qBytes = r.isNullAt(9) ? -1 : r.getInt(9);
                m.kBytes = r.isNullAt(10) ? -1 : r.getInt(10);
                m.vBytes = r.isNullAt(11) ? -1 : r.getInt(11);
            }
        }
        return new Tuple2<>(new SeqStart(r.isNullAt(0) ? null : r.getString(0), start), m);
    }

    /** Walks the sorted rows of a partition, one sequence at a time. */
    private static Iterator<Summary> walk(Iterator<Tuple2<SeqStart, Meta>> rows) {
        List<Summary> out = new ArrayList<>();
        Summary cur = null;
        long prevStart = 0;
        while (rows.hasNext()) {
            Tuple2<SeqStart, Meta> t = rows.next();
            String name = t._1.name;
            long start = t._1.start;
            Meta m = t._2;
            if (cur == null || !java.util.Objects.equals(cur.name, name)) {
                cur = new Summary();
                cur.name = name;
                out.add(cur);
                if (name == null) {
                    cur.error = "a block has no sequence name (null in column `" + SEQUENCE + "`)";
                }
                if (m.nullColumn == null) {
                    cur.dtype = m.dtype;
                    cur.headsQ = m.headsQ;
                    cur.headsK = m.headsK;
                    cur.headsV = m.headsV;
                    cur.dk = m.dk;
                    cur.dv = m.dv;
                    if (cur.error == null) {
                        cur.error = shapeProblem(name, start, m);
                    }
                }
            }
            cur.rows++;
            if (cur.error != null) {
                continue;
            }
            String where = "sequence '" + name + "': ";
            if (m.nullColumn != null) {
                cur.error = isData(m.nullColumn) ? nullDataProblem(name, start, m.tokens, m.nullColumn)
                        : where + "the block at " + start + " has no `" + m.nullColumn + "` (null, or a long value "
                        + "outside the int range the layout gives the column)";
            } else if (start < 0) {
                cur.error = where + "a block starts at token " + start + ", expected a start of 0 or more";
            } else if (m.tokens < 1) {
                cur.error = where + "the block at " + start + " has " + m.tokens + " tokens, expected at least 1";
            } else if (start != cur.tokens) {
                cur.error = where + (start > cur.tokens
                        ? (cur.tokens == 0 ? "tokens [0, " + start + ") are missing: its first block starts at " + start
                        : "tokens [" + cur.tokens + ", " + start + ") are missing: the block at " + prevStart + " ends at "
                        + cur.tokens + ", the next starts at " + start)
                        : "the blocks at " + prevStart + " (to " + cur.tokens + ") and at " + start + " (to "
                        + (start + m.tokens) + ") overlap in tokens [" + start + ", " + Math.min(cur.tokens, start + m.tokens) + ")")
                        + "; a sequence's blocks must cover tokens 0..T-1 exactly once";
            } else if (!m.dtype.equals(cur.dtype) || m.headsQ != cur.headsQ || m.headsK != cur.headsK
                    || m.headsV != cur.headsV || m.dk != cur.dk || m.dv != cur.dv) {
                cur.error = where + "the block at " + start + " is " + describe(m) + ", but the block at 0 is "
                        + describe(cur) + "; one sequence has one dtype, head counts and widths";
            } else if (m.qBytes >= 0) {
                cur.error = byteLengthProblem(name, start, m.tokens, cur.headsQ, cur.headsK, cur.headsV, cur.dk, cur.dv,
                        DType.valueOf(cur.dtype.toUpperCase(Locale.ROOT)), m.qBytes, m.kBytes, m.vBytes);
            }
            prevStart = start;
            cur.tokens = start + Math.max(0, m.tokens);
        }
        return out.iterator();
    }

    private static String describe(Meta m) {
        return m.dtype + " Hq=" + m.headsQ + " Hk=" + m.headsK + " Hv=" + m.headsV + " Dk=" + m.dk + " Dv=" + m.dv;
    }

    private static String describe(Summary s) {
        return s.dtype + " Hq=" + s.headsQ + " Hk=" + s.headsK + " Hv=" + s.headsV + " Dk=" + s.dk + " Dv=" + s.dv;
    }

    /** What is wrong with the first block's dtype, head counts or widths, or null. */
    private static String shapeProblem(String name, long start, Meta m) {
        String where = "sequence '" + name + "', the block at " + start + ": ";
        try {
            DType.fromSafetensors(m.dtype);
        } catch (IllegalArgumentException e) {
            return where + "dtype '" + m.dtype + "': expected F32, F16 or BF16";
        }
        try {
            AttentionSpec.checkGrouping(m.headsQ, m.headsK, m.headsV);
        } catch (IllegalArgumentException e) {
            return where + e.getMessage();
        }
        if (m.dk < 1 || m.dk > AttentionSpec.MAX_DIM || m.dv < 1 || m.dv > AttentionSpec.MAX_DIM) {
            return where + "head widths Dk=" + m.dk + ", Dv=" + m.dv + ": expected 1.." + AttentionSpec.MAX_DIM;
        }
        return null;
    }

    private static boolean isData(String column) {
        return Q.equals(column) || K.equals(column) || V.equals(column);
    }

    /** A block whose q, k or v ({@code column}) is null: the message, naming the sequence and the block. */
    static String nullDataProblem(String name, long start, int tokens, String column) {
        return "sequence '" + name + "', the block at " + start + " (tokens [" + start + ", " + (start + tokens) + ")): "
                + column + " is null, expected its bytes; give every block its q, k and v, or leave the sequence out "
                + "(--skip-invalid computes the others)";
    }

    /**
     * Null when q, k, v hold {@code tokens x heads x width x dtype bytes} each; else a message naming
     * the sequence, the block's offsets and the first tensor that is off.
     */
    static String byteLengthProblem(String name, long start, int tokens, int hq, int hk, int hv, int dk, int dv,
                                    DType dtype, long qBytes, long kBytes, long vBytes) {
        long[] given = {qBytes, kBytes, vBytes};
        int[] heads = {hq, hk, hv};
        int[] width = {dk, dk, dv};
        String[] tensor = {Q, K, V};
        for (int i = 0; i < 3; i++) {
            long expect = (long) tokens * heads[i] * width[i] * dtype.bytes();
            if (given[i] != expect) {
                return "sequence '" + name + "', the block at " + start + " (tokens [" + start + ", " + (start + tokens)
                        + ")): " + tensor[i] + " holds " + given[i] + " bytes, expected " + tokens + " tokens x "
                        + heads[i] + " heads x " + width[i] + " x " + dtype.bytes() + " bytes (" + dtype + ") = " + expect
                        + "; each tensor is little-endian [tokens, heads, width]";
            }
        }
        return null;
    }
}
