package dev.lightning.attention.job.input;

import dev.lightning.attention.job.config.OptionParser;
import dev.lightning.attention.tensor.InvalidInputException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class InputFormatsTest {
    /**
     * A directory of both formats: the refusal said to choose with --input-format parquet, and a
     * table run reads every file of the directory as Parquet, so that run failed on the
     * .safetensors files. It now says how a table is named alone, and that glob is read as one.
     */
    @Test
    void aDirectoryOfBothFormatsSaysHowToNameEither(@TempDir Path dir) throws Exception {
        Files.write(dir.resolve("part-0.parquet"), new byte[16]);
        Files.write(dir.resolve("a.safetensors"), new byte[16]);
        org.apache.hadoop.conf.Configuration conf = new org.apache.hadoop.conf.Configuration();
        String m = assertThrows(InvalidInputException.class, () -> InputFormats.parquetInput(
                OptionParser.parse(List.of("--input", dir.toString(), "--output", "out"), null, false), conf))
                .getMessage();
        assertTrue(m.contains("holds both .parquet and .safetensors files") && m.contains("--input-format safetensors")
                && m.contains("'DIR/*.parquet'") && !m.contains("with --input-format parquet or"), m);
        assertTrue(InputFormats.parquetInput(OptionParser.parse(
                List.of("--input", dir + "/*.parquet", "--output", "out"), null, false), conf));
        assertFalse(InputFormats.parquetInput(OptionParser.parse(
                List.of("--input", dir.toString(), "--output", "out", "--input-format", "safetensors"), null, false), conf));
    }

    /**
     * --sequences with a run over safetensors files that writes safetensors says what to do: it said only what
     * --sequences is, and that safetensors files hold slope and initial_state themselves.
     */
    @Test
    void sequencesWithSafetensorsFilesSaysWhatToDo() {
        String m = assertThrows(InvalidInputException.class, () -> InputFormats.refuseWithFiles(OptionParser.parse(
                List.of("--input", "in", "--output", "out", "--sequences", "seqs"), null, false))).getMessage();
        assertTrue(m.startsWith("--sequences seqs is the per-sequence table of parquet input, and this run reads "
                + "safetensors files") && m.endsWith("; leave --sequences out, or give a table of blocks as --input"), m);
    }
}
