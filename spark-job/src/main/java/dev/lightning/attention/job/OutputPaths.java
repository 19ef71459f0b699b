package dev.lightning.attention.job;

import org.apache.hadoop.fs.Path;

/**
 * Output paths for file names with any characters a file system allows. Hadoop's
 * {@code new Path(dir, "run:1.safetensors")} parses the colon as a URI scheme and fails, so
 * children are built from a relative path that starts with "./" (no scheme can be read into
 * it); spaces, {@code %}, {@code #} and non-ASCII letters are quoted by Hadoop's URI handling.
 */
final class OutputPaths {
    private OutputPaths() {
    }

    /** {@code dir/name}, where {@code name} may hold '/' separators (nested outputs). */
    static Path child(Path dir, String name) {
        return new Path(dir, new Path(null, null, "./" + name));
    }
}
