package dev.lightning.attention.job.tables;

import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.job.output.Commit;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.SplittableRandom;

/**
 * Writes a blocks table of random sequences for the table benchmarks (bench/tables-bench.sh,
 * bench/tables-device.sh): {@code SEQUENCES} sequences of {@code TOKENS} tokens each, one row per
 * sequence, H heads of width D, BF16 values uniform in (-1, 1) (q in (-1, 1)/sqrt(D)), seeded by
 * the sequence index, in {@code FILES} Parquet files written by Spark.
 *
 * <p>With {@code STATES}, also a stored state for every sequence, as an earlier run leaves them
 * for {@code --initial-states STATES}: {@code STATES/final_states/} (the layout of
 * {@link TableSchema#FINAL_STATES}: S uniform in (-0.5, 0.5), seeded by the sequence index, MiniMax
 * slopes, no normalizer, 1,000 tokens absorbed) and {@code STATES/_SUCCESS}. The decode benchmark
 * (one new token each) then reads and writes a 512 KiB state per token at H = 8, D = 128, as a
 * serving system that keeps its states in a table would.
 *
 * <pre>java ... dev.lightning.attention.job.tables.TablesBench OUT SEQUENCES TOKENS H D [FILES] [STATES]</pre>
 */
public final class TablesBench {
    /** The tokens a generated stored state claims to have absorbed (state_tokens). */
    static final long STORED_TOKENS = 1000;

    private TablesBench() {
    }

    public static void main(String[] args) throws Exception {
        String out = args[0];
        long sequences = Long.parseLong(args[1]);
        int tokens = Integer.parseInt(args[2]);
        int heads = Integer.parseInt(args[3]);
        int dim = Integer.parseInt(args[4]);
        int files = args.length > 5 ? Integer.parseInt(args[5]) : 8;
        String states = args.length > 6 ? args[6] : null;
        SparkSession spark = SparkSession.builder().master("local[*]").appName("tables-bench-generate")
                .config("spark.ui.enabled", "false").getOrCreate();
        try {
            // rows made one at a time as the writer asks (a partition's rows never all in memory)
            JavaRDD<Row> rows = spark.range(0, sequences, 1, files).javaRDD().mapPartitions(ids -> map(ids, id -> {
                SplittableRandom rnd = new SplittableRandom(id * 0x9E3779B97F4A7C15L + 15);
                int n = tokens * heads * dim;
                return RowFactory.create(name(id), 0L, tokens, "BF16", heads, heads, heads, dim, dim,
                        bf16(n, rnd, 1 / Math.sqrt(dim)), bf16(n, rnd, 1), bf16(n, rnd, 1));
            }));
            spark.createDataFrame(rows, TableSchema.BLOCKS.schema()).write().parquet(out);
            if (states != null) {
                scala.collection.immutable.List<Double> slopes = TableCompute.boxed(Slopes.minimax(heads));
                JavaRDD<Row> stored = spark.range(0, sequences, 1, files).javaRDD().mapPartitions(ids -> map(ids, id -> {
                    SplittableRandom rnd = new SplittableRandom(id * 0x9E3779B97F4A7C15L + 16);
                    return RowFactory.create(name(id), STORED_TOKENS, heads, dim, dim, slopes,
                            f32(heads * dim * dim, rnd, 0.5), null, STORED_TOKENS, null);
                }));
                spark.createDataFrame(stored, TableSchema.FINAL_STATES.schema()).write()
                        .parquet(states + "/" + TableSchema.FINAL_STATES.name);
                Files.writeString(Path.of(states, Commit.SUCCESS), "");
            }
        } finally {
            spark.stop();
        }
    }

    static String name(long id) {
        return String.format(java.util.Locale.ROOT, "s%09d", id); // ASCII digits in any locale
    }

    private static Iterator<Row> map(Iterator<Long> ids, java.util.function.LongFunction<Row> f) {
        return new Iterator<>() {
            @Override
            public boolean hasNext() {
                return ids.hasNext();
            }

            @Override
            public Row next() {
                return f.apply(ids.next());
            }
        };
    }

    /** {@code n} BF16 values uniform in (-amp, amp), little-endian: the top half of each float's bits. */
    private static byte[] bf16(int n, SplittableRandom rnd, double amp) {
        byte[] b = new byte[2 * n];
        for (int i = 0; i < n; i++) {
            int bits = Float.floatToIntBits((float) ((rnd.nextDouble() * 2 - 1) * amp)) >>> 16;
            b[2 * i] = (byte) bits;
            b[2 * i + 1] = (byte) (bits >>> 8);
        }
        return b;
    }

    /** {@code n} float32 values uniform in (-amp, amp), little-endian. */
    private static byte[] f32(int n, SplittableRandom rnd, double amp) {
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(4 * n).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < n; i++) {
            b.putFloat((float) ((rnd.nextDouble() * 2 - 1) * amp));
        }
        return b.array();
    }
}
