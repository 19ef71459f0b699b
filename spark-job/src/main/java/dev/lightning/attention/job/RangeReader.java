package dev.lightning.attention.job;

import java.io.IOException;

/**
 * Positioned reads of one file: what a task needs from storage, and all it needs. Tasks pass
 * Hadoop's {@code FSDataInputStream::readFully}; the GPU check passes a local file's.
 */
@FunctionalInterface
interface RangeReader {
    /** Reads exactly {@code len} bytes at {@code position}; EOFException when the file ends first. */
    void readFully(long position, byte[] buf, int off, int len) throws IOException;
}
