package dev.lightning.attention.stream;

import java.io.IOException;

/**
 * Positioned reads of one file: what a task needs from storage, and all it needs. The Spark job's
 * tasks pass Hadoop's {@code FSDataInputStream::readFully}; the tests (and so the GPU check) pass
 * a local file's.
 */
@FunctionalInterface
public interface RangeReader {
    /** Reads exactly {@code len} bytes at {@code position}; EOFException when the file ends first. */
    void readFully(long position, byte[] buf, int off, int len) throws IOException;
}
