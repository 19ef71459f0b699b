package dev.lightning.attention.job.input;

import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.hadoop.fs.FileStatus;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * Which input format a run reads (safetensors files or Parquet tables), decided before Spark
 * starts. Apart from {@code TableRun} so that a safetensors run never loads Spark SQL's classes:
 * the lean runtime (bin/lean-runtime) carries only what runs load, and a files run must not need
 * Spark SQL to start.
 */
public final class InputFormats {
    private InputFormats() {
    }

    /**
     * Whether --input is read as tables: --input-format, or with {@code auto} a {@code .parquet}
     * file or a directory holding {@code .parquet} files (itself or in its partition directories,
     * {@code key=value/}, as Spark writes a partitioned table) and no {@code .safetensors} ones, over every
     * element of a list and what each glob matches (InputListing.matches; a glob that matches nothing
     * and ends in {@code .parquet} counts as parquet, so that its run says it matches nothing).
     * Anything else stays safetensors, as before.
     */
    public static boolean parquetInput(JobConfig cfg, org.apache.hadoop.conf.Configuration conf) throws IOException {
        String format = cfg.get(Settings.INPUT_FORMAT);
        if (!"auto".equals(format)) {
            return "parquet".equals(format);
        }
        String input = cfg.get(Settings.INPUT);
        if (input == null) {
            return false;
        }
        int parquet = 0;
        int safetensors = 0;
        for (String element : InputListing.elements(conf, input)) {
            FileStatus[] found;
            try {
                found = InputListing.matches(conf, "--input", element);
            } catch (IOException e) {
                continue; // unreachable or unreadable: the listing of the files run says why, as before
            }
            if (found.length == 0) {
                parquet += element.endsWith(".parquet") ? 1 : 0;
                continue;
            }
            List<FileStatus> children = new ArrayList<>();
            for (FileStatus st : found) {
                try {
                    if (st.isDirectory()) {
                        listWithPartitions(st.getPath().getFileSystem(conf), st.getPath(), children, 0);
                    } else {
                        children.add(st);
                    }
                } catch (IOException e) {
                    // as above
                }
            }
            for (FileStatus c : children) {
                String name = c.getPath().getName();
                if (InputListing.hidden(name)) {
                    continue;
                }
                parquet += name.endsWith(".parquet") ? 1 : 0;
                safetensors += name.endsWith(".safetensors") ? 1 : 0;
            }
        }
        if (parquet > 0 && safetensors > 0) {
            // a table run reads every file of a directory it is given as Parquet, the .safetensors ones too:
            // --input-format parquet alone over this directory failed on them
            throw new InvalidInputException("--input " + input + " holds both .parquet and .safetensors files: say which "
                    + "to read: --input-format safetensors reads the .safetensors files; a table is read from an "
                    + "--input that names its files only (a glob such as 'DIR/*.parquet', or a directory of its own), "
                    + "since a table run reads every file it is given as Parquet");
        }
        return parquet > 0;
    }

    /** Directories of a partitioned table (Spark's {@code day=2026-12-01/}) read, nested at most this deep. */
    static final int PARTITION_DEPTH = 8;

    /**
     * The entries of {@code dir}, and those of its partition directories ({@code key=value}, as Spark's writer makes
     * them and its reader takes them with the table), so that a table written with {@code partitionBy} counts as
     * parquet: its files lie only below such directories.
     */
    private static void listWithPartitions(org.apache.hadoop.fs.FileSystem fs, org.apache.hadoop.fs.Path dir,
                                           List<FileStatus> out, int depth) throws IOException {
        for (FileStatus c : fs.listStatus(dir)) {
            String name = c.getPath().getName();
            if (c.isDirectory() && depth < PARTITION_DEPTH && name.indexOf('=') > 0 && !InputListing.hidden(name)) {
                listWithPartitions(fs, c.getPath(), out, depth + 1);
            } else {
                out.add(c);
            }
        }
    }

    /**
     * Whether the run is a table run ({@code TableRun}): parquet input, or safetensors files written
     * as tables (--output-format parquet).
     */
    public static boolean tableRun(JobConfig cfg, boolean parquetInput) {
        return parquetInput || "parquet".equals(cfg.get(Settings.OUTPUT_FORMAT));
    }

    /** The table options a run over safetensors files that writes safetensors refuses, saying why. */
    public static void refuseWithFiles(JobConfig cfg) {
        if (cfg.get(Settings.SEQUENCES) != null) {
            throw new InvalidInputException("--sequences " + cfg.get(Settings.SEQUENCES) + " is the per-sequence table "
                    + "of parquet input, and this run reads safetensors files, which hold slope, initial_state and "
                    + "initial_normalizer themselves; leave --sequences out, or give a table of blocks as --input");
        }
        // taken and ignored, it would let a user believe the run's o was checked against float64
        Double tolerance = cfg.get(Settings.SPOT_CHECK_TOLERANCE);
        if (tolerance != null && !cfg.checksums()) {
            throw new InvalidInputException("--spot-check-tolerance " + tolerance + " is the tolerance of the float64 "
                    + "spot checks of --output-mode checksums, and this run writes files (--output-mode "
                    + cfg.get(Settings.OUTPUT_MODE) + "), which makes none; add --output-mode checksums, or leave "
                    + "--spot-check-tolerance out");
        }
    }
}
