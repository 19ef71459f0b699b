package dev.lightning.attention.job;

import dev.lightning.attention.stream.RangeReader;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.stream.SyntheticSequence;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.StreamCapabilities;

import java.io.IOException;

/**
 * The Hadoop side of {@link SequenceFile}, which has none of its own: its header read through a
 * Hadoop file system, and its path rebuilt as a Hadoop path.
 */
final class SequenceFiles {
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
            return SequenceFile.describe(status.getPath().toUri().toString(), name, status.getLen(), in::readFully,
                    defaultSlopes, normalize);
        }
    }

    /** {@link #inspect(FileSystem, FileStatus, String, java.util.function.IntFunction, boolean)} for a run that does not normalize. */
    static SequenceFile inspect(FileSystem fs, FileStatus status, String name,
                                java.util.function.IntFunction<double[]> defaultSlopes) throws IOException {
        return inspect(fs, status, name, defaultSlopes, false);
    }

    /**
     * A sequence opened for positioned reads: a local file's channel, a Hadoop stream, or a
     * synthetic sequence (nothing to close).
     */
    static final class Opened implements java.io.Closeable {
        final dev.lightning.attention.stream.RangeReader reader;
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
    static Opened open(SequenceFile f, org.apache.hadoop.conf.Configuration conf) throws IOException {
        if (SyntheticSequence.isSynthetic(f.path)) {
            return new Opened(SyntheticSequence.ofUri(f.path).reader(), () -> { });
        }
        Path p = hadoopPath(f);
        FileSystem fs = HadoopPaths.fileSystem(p, conf);
        java.io.File local = localFile(fs, p);
        if (local != null) {
            java.nio.channels.FileChannel channel = java.nio.channels.FileChannel.open(local.toPath(),
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
     * The local file behind {@code p} when its file system is the local one and no checksum file
     * goes with it, so that reading its channel skips nothing Hadoop would verify; else null.
     * A channel reads straight into off-heap host tensors and in parallel, which Hadoop's local
     * streams do not.
     */
    private static java.io.File localFile(FileSystem fs, Path p) throws IOException {
        // Hadoop's own classes only: a subclass (a connector standing on the local one) may read differently
        if (fs.getClass() == LocalFileSystem.class
                && ((LocalFileSystem) fs).getRawFileSystem().getClass() == RawLocalFileSystem.class) {
            LocalFileSystem checked = (LocalFileSystem) fs;
            return checked.exists(checked.getChecksumFile(p)) ? null : checked.pathToFile(p);
        }
        if (fs.getClass() == RawLocalFileSystem.class) {
            return ((RawLocalFileSystem) fs).pathToFile(p);
        }
        return null;
    }

    /**
     * The file's path, rebuilt from its URI. {@code new Path(String)} would read a name holding
     * {@code %}, {@code #} or a colon differently from the name listed; a URI round trip does not.
     */
    static Path hadoopPath(SequenceFile f) {
        return new Path(java.net.URI.create(f.path));
    }
}
