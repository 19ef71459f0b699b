package dev.lightning.attention.job.tables;

import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.tensor.InvalidInputException;

/**
 * The options a run over tables refuses, before it reads anything: those of the files run that a
 * table run does not do. The command-line run ({@link TableRun}) and the Dataset API
 * ({@link LightningTables}, through {@link TablePlanning#prepare}) ask the same checks.
 */
final class TableOptions {
    private TableOptions() {
    }

    /**
     * Refuses what runs over tables do not do, each with the reason and what to use instead: it
     * would otherwise be ignored and compute something other than what was asked.
     *
     * @param cli          a command-line run (the Dataset API has no --input, --output or --resume)
     * @param parquetInput whether the input is a table (else safetensors files, written as tables)
     */
    static void check(JobConfig cfg, boolean cli, boolean parquetInput) {
        String use = parquetInput ? "; use safetensors input (--input-format safetensors) for it"
                : "; leave --output-format parquet out (a run over the files, writing safetensors, does it)";
        if (cfg.softmax()) {
            throw new InvalidInputException("--attention softmax with tables: only lightning attention reads and writes "
                    + "tables" + use);
        }
        if (cfg.checksums()) {
            throw new InvalidInputException("--output-mode checksums with tables: it keeps checksums of o instead of o "
                    + "(for sequences whose o the disk could not hold), and a table run writes the o table" + use);
        }
        if (cfg.get(Settings.SPOT_CHECK_TOLERANCE) != null) {
            throw new InvalidInputException("--spot-check-tolerance with tables: it is the tolerance of the spot checks "
                    + "of --output-mode checksums, which a table run does not make; leave it out");
        }
        if (cfg.get(Settings.SKIP_NONFINITE)) {
            throw new InvalidInputException("--skip-nonfinite with tables: a sequence with NaN/Inf fails the run; drop "
                    + "such rows before the run" + use.replace("for it", "to skip them"));
        }
        // a table run streams each piece's blocks as the shuffle hands them over, with no window read
        // ahead: `off` was taken and changed nothing (it is meant to move the bytes of o and the states)
        if (!Settings.READ_AHEAD.defaultValue.equals(cfg.get(Settings.READ_AHEAD))) {
            throw new InvalidInputException("--read-ahead " + cfg.get(Settings.READ_AHEAD) + " with tables: a table "
                    + "run reads no window ahead (its tasks take each piece's blocks from the shuffle as they come), "
                    + "so the option would change nothing; leave it out" + use.replace("for it", "to read ahead or not"));
        }
        if (cli && cfg.get(Settings.SYNTHETIC) != null) {
            throw new InvalidInputException("--synthetic with tables: generated sequences are for runs larger than the "
                    + "disk, written as safetensors files or checksums; leave --input-format and --output-format out");
        }
        if (cli && cfg.get(Settings.RESUME)) {
            throw new InvalidInputException("--resume with tables: a run over tables keeps no finished work to resume "
                    + "(its passes run as Spark jobs with no per-piece markers), and a failed one left the output "
                    + "directory as it was; rerun the same command without --resume");
        }
        if (cli && parquetInput && cfg.get(Settings.RECURSIVE)) {
            throw new InvalidInputException("--recursive with tables: Spark reads a table directory with its "
                    + "subdirectories already; leave --recursive out");
        }
        if (cli && !parquetInput && cfg.get(Settings.SEQUENCES) != null) {
            throw new InvalidInputException("--sequences with safetensors input: each file holds its own slope, "
                    + "initial_state and initial_normalizer; leave --sequences out");
        }
        if (cli && !"auto".equals(cfg.get(Settings.OUTPUT_FORM))) {
            throw new InvalidInputException("--output-form with tables: the o table is written by Spark's Parquet writer, "
                    + "which needs no output form; leave --output-form out");
        }
        if (cli && parquetInput && "safetensors".equals(cfg.get(Settings.OUTPUT_FORMAT))) {
            throw new InvalidInputException("--output-format safetensors with parquet input: not supported. A table run "
                    + "computes o as rows spread over its tasks; the files run's writers put each piece's bytes into a "
                    + "file the driver laid out from the input's safetensors header, which tables do not have. Leave "
                    + "--output-format out (the output is then the tables o/ and final_states/)");
        }
    }
}
