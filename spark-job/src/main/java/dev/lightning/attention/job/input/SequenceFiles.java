package dev.lightning.attention.job.input;

import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.stream.RangeReader;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.stream.SyntheticSequence;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.SafetensorsHeader;
import dev.lightning.attention.tensor.TensorEntry;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.StreamCapabilities;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * The Hadoop side of {@link SequenceFile}, which has none of its own: its header read through a
 * Hadoop file system (every input's, with what lightning and softmax each accept), and its path
 * rebuilt as a Hadoop path.
 */
public final class SequenceFiles {
    private SequenceFiles() {
    }

    /**
     * Reads and checks a file's header (and its slopes, when present).
     *
     * @param name          the result's name in the output directory ({@link InputFile#name})
     * @param defaultSlopes slopes for H heads when the file has no {@code slope} tensor
     * @param normalize     whether the run normalizes (only then may a file hold {@code initial_normalizer})
     * @throws dev.lightning.attention.tensor.InvalidInputException naming the file and what is wrong with it
     */
    static SequenceFile inspect(FileSystem fs, FileStatus status, String name,
                                java.util.function.IntFunction<double[]> defaultSlopes, boolean normalize)
            throws IOException {
        try (FSDataInputStream in = fs.open(status.getPath())) {
            return inspect(in, status, name, defaultSlopes, normalize);
        }
    }

    private static SequenceFile inspect(FSDataInputStream in, FileStatus status, String name,
                                        java.util.function.IntFunction<double[]> defaultSlopes, boolean normalize)
            throws IOException {
        return SequenceFile.describe(status.getPath().toUri().toString(), name, status.getLen(), in::readFully,
                defaultSlopes, normalize);
    }

    /** {@link #inspect(FileSystem, FileStatus, String, java.util.function.IntFunction, boolean)} for a run that does not normalize. */
    static SequenceFile inspect(FileSystem fs, FileStatus status, String name,
                                java.util.function.IntFunction<double[]> defaultSlopes) throws IOException {
        return inspect(fs, status, name, defaultSlopes, false);
    }

    /**
     * Reads and checks a softmax input's header: q [T, Hq, Dk], k [T, Hk, Dk], v [T, Hk, Dv], Hq a
     * multiple of Hk, and none of lightning's optional tensors (slope, initial_state,
     * initial_normalizer), which would mean something this attention does not compute: refused
     * rather than ignored. The rest (dtypes, one T, one Dk, widths up to 256, T >= 1) is checked
     * as for lightning ({@link SequenceFile#describe}).
     */
    private static SequenceFile inspectSoftmax(FSDataInputStream in, FileStatus status, String name,
                                               java.util.function.IntFunction<double[]> defaultSlopes)
            throws IOException {
        byte[] prefix = new byte[8];
        if (status.getLen() < 8) {
            SafetensorsHeader.headerLength(name, new byte[0], status.getLen()); // shorter than the prefix: said as such
        }
        try {
            in.readFully(0, prefix, 0, 8);
        } catch (java.io.EOFException e) {
            throw new InvalidInputException(name + ": truncated: cannot read the 8-byte header length", e);
        }
        long n = SafetensorsHeader.headerLength(name, prefix, status.getLen());
        byte[] json = new byte[(int) n];
        in.readFully(8, json, 0, json.length);
        SafetensorsHeader header = SafetensorsHeader.parse(name, json, status.getLen());
        for (String lightningOnly : SequenceFile.OPTIONAL) {
            if (header.tensor(lightningOnly) != null) {
                throw new InvalidInputException(name + ": holds '" + lightningOnly + "', a tensor of lightning "
                        + "attention; softmax attention (--attention softmax) has no decay, state or normalizer "
                        + "and would ignore it: remove it from the file, or run --attention lightning");
            }
        }
        for (String tensor : header.tensors().keySet()) {
            // lightning's check would ask to rename it to the name refused just above
            String near = SequenceFile.misspelledOptional(tensor);
            if (near != null) {
                throw new InvalidInputException(name + ": holds '" + tensor + "', a near miss of '" + near + "', a "
                        + "tensor of lightning attention; softmax attention (--attention softmax) reads neither name: "
                        + "remove it from the file, or run --attention lightning (with the tensor named '" + near
                        + "')");
            }
        }
        TensorEntry q = header.tensor("q");
        TensorEntry k = header.tensor("k");
        TensorEntry v = header.tensor("v");
        if (q != null && k != null && v != null && q.rank() == 3 && k.rank() == 3 && v.rank() == 3) {
            long hq = q.dim(1);
            long hk = k.dim(1);
            if (v.dim(1) != hk || hk < 1 || hq % hk != 0) {
                throw new InvalidInputException(name + ": softmax attention needs q [T, Hq, Dk], k [T, Hk, Dk], "
                        + "v [T, Hk, Dv] with Hq a multiple of Hk (query head h reads key/value head "
                        + "h / (Hq/Hk)); found q " + Arrays.toString(q.shape()) + ", k "
                        + Arrays.toString(k.shape()) + ", v " + Arrays.toString(v.shape()));
            }
        }
        return SequenceFile.describe(status.getPath().toUri().toString(), name, status.getLen(), in::readFully,
                defaultSlopes, true);
    }

    /**
     * Reads every header (in parallel: on object stores each is a round trip), adding the files it
     * reads to {@code accepted}; with --skip-invalid a file refused goes into {@code rejected}
     * (name to reason) instead. Shared by the files run and the table run over safetensors files.
     * With {@code samples} (the files run) each file also gets its content sample ({@link #sample})
     * from the same open stream: its outputs record it and the --resume fingerprint compares it.
     */
    public static List<SequenceFile> inspectAll(JobConfig cfg, org.apache.hadoop.conf.Configuration hadoopConf,
                                                List<InputFile> statuses, List<InputFile> accepted,
                                                Map<String, String> rejected, boolean samples) throws IOException {
        ExecutorService pool = Executors.newFixedThreadPool(Math.min(16, statuses.size()));
        try {
            List<Future<SequenceFile>> futures = new ArrayList<>();
            for (InputFile s : statuses) {
                // each file's own file system: a comma-separated --input may span several
                FileSystem fs = HadoopPaths.fileSystem(s.path(), hadoopConf);
                futures.add(pool.submit(() -> {
                    try (FSDataInputStream in = fs.open(s.status.getPath())) {
                        SequenceFile f = cfg.softmax() ? inspectSoftmax(in, s.status, s.name, cfg::defaultSlopes)
                                : inspect(in, s.status, s.name, cfg::defaultSlopes, cfg.get(Settings.NORMALIZE));
                        return samples ? f.withSample(sample(in::readFully, f.fileSize)) : f;
                    }
                }));
            }
            List<SequenceFile> files = new ArrayList<>();
            for (int i = 0; i < futures.size(); i++) {
                Future<SequenceFile> f = futures.get(i);
                try {
                    files.add(f.get());
                    accepted.add(statuses.get(i));
                } catch (java.util.concurrent.ExecutionException e) {
                    Throwable c = e.getCause();
                    if (c instanceof InvalidInputException && cfg.get(Settings.SKIP_INVALID)) {
                        rejected.put(statuses.get(i).name, c.getMessage());
                        continue;
                    }
                    if (c instanceof RuntimeException) {
                        throw (RuntimeException) c;
                    }
                    if (c instanceof IOException) {
                        throw (IOException) c;
                    }
                    throw new IOException(c);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IOException("interrupted while reading headers", e);
                }
            }
            if (files.isEmpty()) {
                throw new InvalidInputException("--input: all " + statuses.size() + " files were rejected, e.g. "
                        + rejected.values().iterator().next());
            }
            return files;
        } finally {
            pool.shutdownNow();
        }
    }

    /**
     * The sequences of --synthetic, described through their virtual files' headers as real files
     * are, with their virtual files' content samples: their outputs are those of a run over the
     * files they write out.
     */
    public static List<SequenceFile> describeSynthetic(JobConfig cfg) throws IOException {
        List<SequenceFile> files = new ArrayList<>();
        for (dev.lightning.attention.stream.SyntheticSequence s : cfg.synthetic()) {
            SequenceFile f = s.describe(cfg::defaultSlopes, cfg.get(Settings.NORMALIZE));
            files.add(f.withSample(sample(s.reader(), f.fileSize)));
        }
        return files;
    }

    /** Bytes a block of the content sample ({@link #sample}). */
    static final int SAMPLE_BLOCK = 4096;
    /** Blocks a file's content sample reads, evenly spread from its first byte to its last. */
    static final int SAMPLE_BLOCKS = 8;

    /**
     * CRC32C of {@link #SAMPLE_BLOCKS} blocks of {@link #SAMPLE_BLOCK} bytes spread evenly over
     * the {@code size} bytes {@code in} reads (the first holds the header, the last the last bytes),
     * in hex: a few reads a file, which any change of a sequence's content shows with near certainty.
     */
    static String sample(RangeReader in, long size) throws IOException {
        java.util.zip.CRC32C crc = new java.util.zip.CRC32C();
        byte[] block = new byte[(int) Math.min(SAMPLE_BLOCK, size)];
        long last = size - block.length;
        for (int i = 0; i < SAMPLE_BLOCKS && block.length > 0; i++) {
            in.readFully(last * i / (SAMPLE_BLOCKS - 1), block, 0, block.length);
            crc.update(block);
        }
        return Long.toHexString(crc.getValue());
    }

    /**
     * A sequence opened for positioned reads: a local file's channel, a Hadoop stream, or a
     * synthetic sequence (nothing to close).
     */
    public static final class Opened implements java.io.Closeable {
        public final dev.lightning.attention.stream.RangeReader reader;
        private final java.io.Closeable resource;

        private Opened(dev.lightning.attention.stream.RangeReader reader, java.io.Closeable resource) {
            this.reader = reader;
            this.resource = resource;
        }

        @Override
        public void close() throws IOException {
            resource.close();
        }
    }

    /**
     * Opens a sequence's bytes where a task reads them: its file, or its generator for --synthetic.
     * Reads into off-heap windows (the GPU backend's host tensors) go straight into them from a
     * local file's channel (in parallel parts) or a stream that reads into buffers (HDFS); other
     * streams fill them through bounded heap copies.
     */
    public static Opened open(SequenceFile f, org.apache.hadoop.conf.Configuration conf) throws IOException {
        if (SyntheticSequence.isSynthetic(f.path)) {
            return new Opened(SyntheticSequence.ofUri(f.path).reader(), () -> { });
        }
        Path p = hadoopPath(f);
        try {
            return openFile(p, conf);
        } catch (java.io.FileNotFoundException | java.nio.file.NoSuchFileException e) {
            throw gone(f, p, e);
        }
    }

    /** {@code fs.open} of a sequence's file as a stream, a file gone since the run listed it said as {@link #open} says it. */
    public static FSDataInputStream openStream(FileSystem fs, SequenceFile f) throws IOException {
        Path p = hadoopPath(f);
        try {
            return fs.open(p);
        } catch (java.io.FileNotFoundException e) {
            throw gone(f, p, e);
        }
    }

    /** A sequence file listed and read by the driver when the run started, gone when a task came to it. */
    private static InputChangedException gone(SequenceFile f, Path p, IOException e) {
        return new InputChangedException(f.name + ": " + p + " is gone: it was deleted or moved while the run read it, "
                + "and nothing was published. Put it back or leave it out, and run again without --resume (the work "
                + "done so far was planned with it)", e);
    }

    private static Opened openFile(Path p, org.apache.hadoop.conf.Configuration conf) throws IOException {
        FileSystem fs = HadoopPaths.fileSystem(p, conf);
        // a file of this machine's disk: a channel reads straight into off-heap host tensors and in parallel, which
        // Hadoop's local streams do not
        java.nio.file.Path local = HadoopPaths.localFile(fs, p);
        if (local != null) {
            java.nio.channels.FileChannel channel = java.nio.channels.FileChannel.open(local,
                    java.nio.file.StandardOpenOption.READ);
            return new Opened(RangeReader.of(channel), channel);
        }
        FSDataInputStream in = fs.open(p);
        if (in.hasCapability(StreamCapabilities.PREADBYTEBUFFER)) {
            // HDFS and others read into any buffer themselves, off-heap host tensors included
            return new Opened(RangeReader.of(in::readFully, in::readFully), in);
        }
        return new Opened(in::readFully, in); // buffers through bounded heap copies (RangeReader's default)
    }

    /**
     * The file's path, rebuilt from its URI. {@code new Path(String)} would read a name holding
     * {@code %}, {@code #} or a colon differently from the name listed; a URI round trip does not.
     */
    public static Path hadoopPath(SequenceFile f) {
        return new Path(java.net.URI.create(f.path));
    }
}
