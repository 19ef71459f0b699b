package dev.lightning.attention.job;

import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Writes a blocks table of random sequences for the table benchmarks (bench/tables-bench.sh):
 * {@code SEQUENCES} sequences of {@code TOKENS} tokens each, one row per sequence, H heads of width
 * D, BF16 values uniform in (-1, 1) (q in (-1, 1)/sqrt(D)), seeded by the sequence index, in
 * {@code FILES} Parquet files written by Spark.
 *
 * <pre>java ... dev.lightning.attention.job.TablesBench OUT SEQUENCES TOKENS H D [FILES]</pre>
 */
public final class TablesBench {
    private TablesBench() {
    }

    public static void main(String[] args) {
        String out = args[0];
        long sequences = Long.parseLong(args[1]);
        int tokens = Integer.parseInt(args[2]);
        int heads = Integer.parseInt(args[3]);
        int dim = Integer.parseInt(args[4]);
        int files = args.length > 5 ? Integer.parseInt(args[5]) : 8;
        SparkSession spark = SparkSession.builder().master("local[*]").appName("tables-bench-generate")
                .config("spark.ui.enabled", "false").getOrCreate();
        try {
            JavaRDD<Row> rows = spark.range(0, sequences, 1, files).javaRDD().mapPartitions(ids -> {
                List<Row> part = new ArrayList<>();
                while (ids.hasNext()) {
                    long id = ids.next();
                    SplittableRandom rnd = new SplittableRandom(id * 0x9E3779B97F4A7C15L + 15);
                    int n = tokens * heads * dim;
                    part.add(RowFactory.create(String.format("s%09d", id), 0L, tokens, "BF16", heads, heads, heads, dim,
                            dim, bf16(n, rnd, 1 / Math.sqrt(dim)), bf16(n, rnd, 1), bf16(n, rnd, 1)));
                }
                return part.iterator();
            });
            spark.createDataFrame(rows, TableSchema.BLOCKS.schema()).write().parquet(out);
        } finally {
            spark.stop();
        }
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
}
