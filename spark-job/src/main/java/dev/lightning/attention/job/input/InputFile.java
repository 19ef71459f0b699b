package dev.lightning.attention.job.input;

import org.apache.hadoop.fs.LocatedFileStatus;
import org.apache.hadoop.fs.Path;

/**
 * One sequence file the job will process: its status (with block locations, for task locality),
 * the name its result gets in the output directory, and the {@code --input} path it was found
 * through. Immutable once built (the status is not modified after listing).
 */
public final class InputFile {
    /** The file, its path qualified, with its block locations. */
    public final LocatedFileStatus status;
    /**
     * The result's name in {@code --output}: the file's name, or under {@code --recursive} its path
     * below the directory given, segments joined by {@code /}.
     */
    final String name;
    /** The directory or file given in {@code --input} (or matched by its glob), qualified. */
    final Path root;

    InputFile(LocatedFileStatus status, String name, Path root) {
        this.status = status;
        this.name = name;
        this.root = root;
    }

    public Path path() {
        return status.getPath();
    }

    @Override
    public String toString() {
        return name + " (" + status.getPath() + ")";
    }
}
