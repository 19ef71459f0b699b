package dev.lightning.attention.job.output;

import com.fasterxml.jackson.databind.JsonNode;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A directory's published run report, as the runs that read one take it: none is null (an output written before
 * reports, or not a run's); a JSON object is the report; an empty file, a JSON value that is no object and text
 * that is not JSON are refused, naming the directory's role and the file.
 */
class CommitReportTest {
    @TempDir
    java.nio.file.Path tmp;

    @Test
    void aReportIsReadOrRefusedByName() throws Exception {
        FileSystem fs = FileSystem.getLocal(new Configuration());
        Path dir = new Path(tmp.toUri());
        assertNull(Commit.readReport(fs, dir, "--initial-states d"));

        java.nio.file.Path file = tmp.resolve(Commit.REPORT);
        Files.writeString(file, "{\"status\": \"ok\", \"inputFiles\": []}");
        JsonNode r = Commit.readReport(fs, dir, "--initial-states d");
        assertEquals("ok", r.path("status").asText());

        for (String[] bad : new String[][]{{"", "is empty"}, {"[1, 2]", "is not a JSON object"},
                {"{\"status\": ", "is not JSON: "}}) {
            Files.writeString(file, bad[0]);
            InvalidInputException e = assertThrows(InvalidInputException.class,
                    () -> Commit.readReport(fs, dir, "--initial-states d"));
            assertTrue(e.getMessage().startsWith("--initial-states d: its run report ")
                    && e.getMessage().contains(Commit.REPORT + " " + bad[1])
                    && e.getMessage().contains("restore the report"), e.getMessage());
        }
    }

    /**
     * The report's format (FormatVersion): every report a run stages carries this build's; one without the key (every
     * report written before versions were recorded) reads as before; a later one is refused naming the directory's
     * role, the file, its format and the formats this build reads, also where a run looks only for an earlier table
     * run's tables (OutputPaths.earlierTables, which takes a report it cannot read for none); a value that is not a
     * positive integer is refused as damaged.
     */
    @Test
    void aReportRecordsItsFormatAndOneOfALaterFormatIsRefused() throws Exception {
        FileSystem fs = FileSystem.getLocal(new Configuration());
        Path dir = fs.makeQualified(new Path(tmp.toUri()));
        Staging staging = new Staging(dir, "r", false);
        fs.mkdirs(staging.path());
        staging.stageReport(fs, new com.fasterxml.jackson.databind.ObjectMapper().createObjectNode().put("status", "ok"));
        JsonNode staged = new com.fasterxml.jackson.databind.ObjectMapper().readTree(
                Files.readAllBytes(tmp.resolve("_temporary/lightning-r/" + Commit.REPORT)));
        assertEquals(1, staged.path("format_version").asInt(), staged.toString());

        java.nio.file.Path file = tmp.resolve(Commit.REPORT);
        Files.writeString(file, "{\"status\": \"ok\", \"format\": \"parquet\", \"format_version\": 1}");
        assertEquals("ok", Commit.readReport(fs, dir, "--initial-states d").path("status").asText());
        Files.writeString(file, "{\"status\": \"ok\", \"format\": \"parquet\", \"format_version\": 2}");
        for (java.util.concurrent.Callable<?> read : List.<java.util.concurrent.Callable<?>>of(
                () -> Commit.readReport(fs, dir, "--initial-states d"), () -> OutputPaths.earlierTables(fs, dir))) {
            InvalidInputException e = assertThrows(dev.lightning.attention.stream.FormatVersion.TooNew.class,
                    read::call);
            assertTrue(e.getMessage().contains(": its run report " + new Path(dir, Commit.REPORT)
                    + ": format_version 2: written by a later build") && e.getMessage().contains("this build reads "
                    + "format 1") && e.getMessage().contains("Use a build of lightning that reads format 2"),
                    e.getMessage());
        }
        Files.writeString(file, "{\"status\": \"ok\", \"format_version\": \"2\"}");
        InvalidInputException e = assertThrows(InvalidInputException.class,
                () -> Commit.readReport(fs, dir, "--initial-states d"));
        assertTrue(e.getMessage().contains("format_version \"2\" is not a format") && e.getMessage().contains("damaged"),
                e.getMessage());
    }
}
