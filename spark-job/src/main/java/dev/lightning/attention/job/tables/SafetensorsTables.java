package dev.lightning.attention.job.tables;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.hadoop.HadoopConf;
import dev.lightning.attention.job.input.SequenceFiles;
import dev.lightning.attention.stream.PieceWork;
import dev.lightning.attention.stream.SequenceFile;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.List;

/**
 * Safetensors files as the tables of a table run ({@code --output-format parquet} with safetensors
 * input), so that one run converts and computes: each file is one sequence, named as the files run
 * names its result (the file's name, or with --recursive its path below --input); its q, k and v
 * become rows of the blocks layout ({@link TableSchema#BLOCKS}) and its {@code slope},
 * {@code initial_state} and {@code initial_normalizer} its row of the sequences layout
 * ({@link TableSchema#SEQUENCES}). The driver reads only the headers, checked as a files run checks
 * them, so the rows are well formed by construction and need no table checks; tasks read each row's
 * token range with positioned reads when the compute's shuffle reads the rows, once.
 */
final class SafetensorsTables {
    /** The most bytes of q, k and v in one block row (whole chunks, at least one). */
    static final long ROW_BYTES = 8L << 20;

    /** The blocks, one row per token range of a file. */
    final Dataset<Row> blocks;
    /** The sequences table: a row per file with a slope or an initial state; null when no file has one. */
    final Dataset<Row> sequences;
    /** What the table checks would have found: one summary per file, sorted by name. */
    final List<TableValidation.Summary> summaries;

    private SafetensorsTables(Dataset<Row> blocks, Dataset<Row> sequences, List<TableValidation.Summary> summaries) {
        this.blocks = blocks;
        this.sequences = sequences;
        this.summaries = summaries;
    }

    /** The tables of {@code inspected}, files whose headers were read and checked. */
    static SafetensorsTables of(SparkSession spark, JobConfig cfg, org.apache.hadoop.conf.Configuration conf,
                                List<SequenceFile> inspected) {
        SequenceFile[] files = inspected.toArray(new SequenceFile[0]);
        java.util.Arrays.sort(files, Comparator.comparing((SequenceFile f) -> f.name));
        List<TableValidation.Summary> summaries = new ArrayList<>();
        List<long[]> ranges = new ArrayList<>();
        List<Integer> withSequenceRow = new ArrayList<>();
        for (int i = 0; i < files.length; i++) {
            SequenceFile f = files[i];
            long rowTokens = rowTokens(f, cfg.chunkSize());
            int rows = 0;
            for (long t = 0; t < f.tokens; t += rowTokens) {
                ranges.add(new long[] {i, t, Math.min(rowTokens, f.tokens - t)});
                rows++;
            }
            AttentionSpec l = f.layout();
            TableValidation.Summary s = new TableValidation.Summary();
            s.name = f.name;
            s.tokens = f.tokens;
            s.rows = rows;
            s.dtype = f.dtype.name();
            s.headsQ = l.headsQ();
            s.headsK = l.headsK();
            s.headsV = l.headsV();
            s.dk = l.dk();
            s.dv = l.dv();
            summaries.add(s);
            if (f.slopesFromFile || f.initialStateOffset >= 0 || f.initialNormalizerOffset >= 0) {
                withSequenceRow.add(i);
            }
        }
        JavaSparkContext sc = JavaSparkContext.fromSparkContext(spark.sparkContext());
        HadoopConf hadoop = new HadoopConf(conf);
        int slices = Math.max(1, Math.min(ranges.size(), 4 * sc.defaultParallelism()));
        JavaRDD<Row> blockRows = sc.parallelize(ranges, slices).mapPartitions(it -> readBlocks(hadoop, files, it));
        Dataset<Row> blocks = spark.createDataFrame(blockRows, TableSchema.BLOCKS.schema());
        Dataset<Row> sequences = null;
        if (!withSequenceRow.isEmpty()) {
            AttentionSpec[] specs = new AttentionSpec[files.length];
            for (int i : withSequenceRow) {
                specs[i] = files[i].spec(1.0, 1, cfg.variant());
            }
            JavaRDD<Row> seqRows = sc.parallelize(withSequenceRow, Math.max(1, Math.min(withSequenceRow.size(), slices)))
                    .mapPartitions(it -> readSequences(hadoop, files, specs, it));
            sequences = spark.createDataFrame(seqRows, TableSchema.SEQUENCES.schema());
        }
        return new SafetensorsTables(blocks, sequences, summaries);
    }

    /** Tokens of one block row of {@code f}: as many whole chunks as {@link #ROW_BYTES} holds, at least one. */
    static long rowTokens(SequenceFile f, int chunkSize) {
        long chunks = Math.max(1, ROW_BYTES / (f.inputBytesPerToken() * chunkSize));
        return chunks * chunkSize;
    }

    /** The rows of token ranges (file index, start, tokens), in order; each file is opened once for its consecutive ranges. */
    private static Iterator<Row> readBlocks(HadoopConf hadoop, SequenceFile[] files, Iterator<long[]> ranges) {
        Reader reader = new Reader(hadoop);
        return new Iterator<>() {
            @Override
            public boolean hasNext() {
                if (ranges.hasNext()) {
                    return true;
                }
                reader.close();
                return false;
            }

            @Override
            public Row next() {
                long[] r = ranges.next();
                SequenceFile f = files[(int) r[0]];
                AttentionSpec l = f.layout();
                try {
                    byte[][] qkv = f.readTokens(reader.open(f), r[1], (int) r[2]);
                    return RowFactory.create(f.name, r[1], (int) r[2], f.dtype.name(), l.headsQ(), l.headsK(),
                            l.headsV(), l.dk(), l.dv(), qkv[0], qkv[1], qkv[2]);
                } catch (IOException e) {
                    throw new UncheckedIOException(f.name + ": reading tokens [" + r[1] + ", " + (r[1] + r[2]) + ")", e);
                }
            }
        };
    }

    /** The sequences-table rows of the files at {@code indices}: the file's own slope (else null) and initial tensors (else null). */
    private static Iterator<Row> readSequences(HadoopConf hadoop, SequenceFile[] files, AttentionSpec[] specs,
                                               Iterator<Integer> indices) {
        List<Row> rows = new ArrayList<>();
        try (Reader reader = new Reader(hadoop)) {
            while (indices.hasNext()) {
                int i = indices.next();
                SequenceFile f = files[i];
                AttentionSpec spec = specs[i];
                byte[] state = null;
                byte[] normalizer = null;
                if (f.initialStateOffset >= 0 || f.initialNormalizerOffset >= 0) {
                    // the file's initial tensors, NaN/Inf refused naming the file, as a files run reads them
                    byte[] all = PieceWork.initialState(reader.open(f), f, spec, i).toBytes();
                    int kv = (int) LightningState.kvBytes(spec);
                    state = f.initialStateOffset >= 0 ? java.util.Arrays.copyOfRange(all, 0, kv) : null;
                    normalizer = f.initialNormalizerOffset >= 0 ? java.util.Arrays.copyOfRange(all, kv, all.length)
                            : null;
                }
                rows.add(RowFactory.create(f.name, f.slopesFromFile ? TableCompute.boxed(f.layout().slopes()) : null,
                        state, normalizer));
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return rows.iterator();
    }

    /** The file a task reads, kept open while consecutive ranges read it; closed at the end (or when the task ends). */
    private static final class Reader implements AutoCloseable {
        private final HadoopConf hadoop;
        private SequenceFiles.Opened opened;
        private SequenceFile file;

        Reader(HadoopConf hadoop) {
            this.hadoop = hadoop;
            TableTask.atTaskEnd(this::close);
        }

        dev.lightning.attention.stream.RangeReader open(SequenceFile f) throws IOException {
            if (f != file) {
                close();
                opened = SequenceFiles.open(f, hadoop.get());
                file = f;
            }
            return opened.reader;
        }

        @Override
        public void close() {
            if (opened != null) {
                try {
                    opened.close();
                } catch (IOException e) {
                    // a read-only stream: nothing was written that a failed close could lose
                }
                opened = null;
                file = null;
            }
        }
    }
}
