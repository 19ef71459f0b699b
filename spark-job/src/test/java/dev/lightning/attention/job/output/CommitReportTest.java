package dev.lightning.attention.job.output;

import com.fasterxml.jackson.databind.JsonNode;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;

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
}
