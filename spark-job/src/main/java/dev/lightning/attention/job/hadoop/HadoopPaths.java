package dev.lightning.attention.job.hadoop;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Path;

import java.io.IOException;

/**
 * Hadoop paths for names with any character a file system allows: from what the user typed
 * ({@link #parse}), for a file of a directory ({@link #child}), and the file system to open them
 * through ({@link #fileSystem}). Hadoop's {@code new Path(dir, "run:1.safetensors")} parses the
 * colon as a URI scheme and fails, so children are built from a relative path that starts with
 * "./" (no scheme can be read into it); spaces, {@code %}, {@code #}, {@code ?}, brackets and
 * non-ASCII letters are quoted by Hadoop's URI handling. Every path the job builds from a file
 * name goes through here.
 */
public final class HadoopPaths {
    private HadoopPaths() {
    }

    /**
     * A path as the user typed it: a URI ({@code hdfs://nn/data}, {@code file:/tmp/x}) or a local
     * path, relative or absolute. A relative path whose first segment holds a colon
     * ({@code run:1.safetensors}) is not a valid URI and is taken as a local name.
     */
    public static Path parse(String userPath) {
        try {
            return new Path(userPath);
        } catch (IllegalArgumentException e) {
            if (userPath.isEmpty() || userPath.startsWith("/")) {
                throw e;
            }
            return new Path(null, null, userPath);
        }
    }

    /**
     * The file system to open, create, rename and delete the job's files through. For a local path
     * that is the raw local file system: {@code LocalFileSystem} names a checksum side file
     * {@code .NAME.crc} with {@code new Path(parent, String)}, so every open, create, rename or
     * delete of a name holding a colon fails with a URISyntaxException; and the results are
     * self-describing files a user reads directly, which need no side files. (Listing through
     * {@code LocalFileSystem} is fine: it only hides the side files.)
     */
    public static FileSystem fileSystem(Path path, Configuration conf) throws IOException {
        FileSystem fs = path.getFileSystem(conf);
        return fs instanceof LocalFileSystem ? ((LocalFileSystem) fs).getRawFileSystem() : fs;
    }

    /**
     * {@code dir/name}, where {@code name} may hold '/' separators (nested outputs), taken
     * literally. A name that is empty, absolute, or has empty, "." or ".." segments is refused: it
     * would point outside {@code dir} or at {@code dir} itself.
     */
    public static Path child(Path dir, String name) {
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
