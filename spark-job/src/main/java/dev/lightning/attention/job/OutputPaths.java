package dev.lightning.attention.job;

import org.apache.hadoop.fs.Path;

/**
 * Paths for file names with any characters a file system allows. Hadoop's
 * {@code new Path(dir, "run:1.safetensors")} parses the colon as a URI scheme and fails, so
 * children are built from a relative path that starts with "./" (no scheme can be read into
 * it); spaces, {@code %}, {@code #}, {@code ?}, brackets and non-ASCII letters are quoted by
 * Hadoop's URI handling. Every path the job builds from a file name goes through here.
 */
final class OutputPaths {
    private OutputPaths() {
    }

    /**
     * {@code dir/name}, where {@code name} may hold '/' separators (nested outputs), taken
     * literally. A name that is empty, absolute, or has empty, "." or ".." segments is refused: it
     * would point outside {@code dir} or at {@code dir} itself.
     */
    static Path child(Path dir, String name) {
        if (name.isEmpty() || name.startsWith("/") || name.endsWith("/")) {
            throw new IllegalArgumentException("expected a relative file name, got '" + name + "'");
        }
        for (String segment : name.split("/", -1)) {
            if (segment.isEmpty() || segment.equals(".") || segment.equals("..")) {
                throw new IllegalArgumentException("expected a relative file name without empty, '.' or '..' parts, "
                        + "got '" + name + "'");
            }
        }
        return new Path(dir, new Path(null, null, "./" + name));
    }
}
