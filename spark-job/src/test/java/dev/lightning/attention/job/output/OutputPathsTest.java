package dev.lightning.attention.job.output;

import dev.lightning.attention.job.hadoop.HadoopPaths;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What stands in the way of a publication, on the local file system: the checks OutputPaths makes before compute and
 * at the commit, here without a run (the tests module holds them through runs).
 */
class OutputPathsTest {
    @TempDir
    java.nio.file.Path tmp;

    private FileSystem fs;
    private Path out;

    private void setUp() throws IOException {
        out = new Path(tmp.resolve("out").toUri());
        fs = HadoopPaths.fileSystem(out, new Configuration());
        Files.createDirectories(tmp.resolve("out"));
    }

    private java.nio.file.Path file(String relative) throws IOException {
        java.nio.file.Path p = tmp.resolve("out").resolve(relative);
        Files.createDirectories(p.getParent());
        return Files.writeString(p, relative);
    }

    /**
     * A name is published only through real directories inside the output: a parent that is a symbolic link (it could
     * lead to the input) or a file is named; a parent that does not exist yet, or no parent, is no problem.
     */
    @Test
    void aNameIsPublishedOnlyThroughRealDirectoriesInsideTheOutput() throws IOException {
        setUp();
        Files.createDirectories(tmp.resolve("elsewhere"));
        Files.createSymbolicLink(tmp.resolve("out/link"), tmp.resolve("elsewhere"));
        file("f");
        Files.createDirectories(tmp.resolve("out/a/b"));
        assertNull(OutputPaths.problem(fs, out, "x.safetensors"));
        assertNull(OutputPaths.problem(fs, out, "a/b/x.safetensors"));
        assertNull(OutputPaths.problem(fs, out, "a/new/x.safetensors"));
        String link = OutputPaths.problem(fs, out, "link/x.safetensors");
        assertTrue(link != null && link.endsWith("/out/link is a symbolic link; a result is published only into real "
                + "directories inside the output directory (the link could lead to the input or any other directory)"),
                link);
        String f = OutputPaths.problem(fs, out, "f/x.safetensors");
        assertTrue(f != null && f.endsWith("/out/f is a file where the output f/x.safetensors needs a directory"), f);
        assertEquals(2, OutputPaths.problems(fs, out, List.of("ok.safetensors", "link/x.safetensors",
                "f/y.safetensors")).size());
    }

    /**
     * What stands at an output's own place: a file (or a link, moved and never followed) is replaced; a directory is
     * a user's and is not, unless it is an earlier result's parts directory holding part files alone, or an earlier
     * table (a files run's --overwrite replacing a table run's) holding only what a table write leaves. A table
     * published whole has only its parents checked here (the commit checks the table itself).
     */
    @Test
    void onlyWhatAnEarlierRunLeftIsReplaced() throws IOException {
        setUp();
        file("old.safetensors");
        Files.createDirectories(tmp.resolve("out/d.safetensors"));
        Files.createSymbolicLink(tmp.resolve("out/dangling.safetensors"), tmp.resolve("nowhere"));
        assertTrue(OutputPaths.exists(fs, new Path(out, "dangling.safetensors")), "a link to nothing is something");
        assertFalse(OutputPaths.exists(fs, new Path(out, "none.safetensors")));
        assertEquals(List.of(out + "/d.safetensors is a directory where an output file goes; results replace files "
                + "only"), OutputPaths.problems(fs, out, List.of("old.safetensors", "d.safetensors",
                "dangling.safetensors"), List.of()));

        file("s.parts/s-00000-of-00002.safetensors");
        file("s.parts/s-00001-of-00002.safetensors");
        assertEquals(List.of(), OutputPaths.problems(fs, out, List.of("s.safetensors"), List.of("s.parts")));
        file("s.parts/notes.txt");
        assertEquals(List.of(out + "/s.parts holds notes.txt, which is not a part file of an earlier result; it would "
                + "be replaced with the directory"), OutputPaths.problems(fs, out, List.of(), List.of("s.parts")));
        file("t.parts");
        assertEquals(List.of(out + "/t.parts is a file where an output's parts directory goes"),
                OutputPaths.problems(fs, out, List.of(), List.of("t.parts")));

        file("o/part-00000-abc.snappy.parquet");
        file("o/.part-00000-abc.snappy.parquet.crc");
        file("o/_SUCCESS");
        assertEquals(List.of(), OutputPaths.problems(fs, out, List.of(), List.of("o")));
        assertNull(OutputPaths.tableProblem(fs, new Path(out, "o")));
        file("o/mine.csv");
        assertEquals(List.of(out + "/o holds mine.csv, which is not part of an earlier run's table; --overwrite would "
                + "delete it with the table"), OutputPaths.problems(fs, out, List.of(), List.of("o")));
        assertEquals(List.of(), OutputPaths.problems(fs, out, List.of(), List.of("o"), List.of()),
                "published whole: only its parents are checked");
        file("final_states");
        assertEquals(out + "/final_states is a file where the run's table of that name goes; --overwrite replaces "
                + "earlier tables only", OutputPaths.tableProblem(fs, new Path(out, "final_states")));
        assertNull(OutputPaths.tableProblem(fs, new Path(out, "states")), "nothing there");
        // a link is moved aside itself, never followed: whatever it leads to is not looked into
        Files.createSymbolicLink(tmp.resolve("out/states"), tmp.resolve("out/o"));
        assertNull(OutputPaths.tableProblem(fs, new Path(out, "states")));
        Files.createSymbolicLink(tmp.resolve("out/u.parts"), tmp.resolve("out/o"));
        assertEquals(List.of(), OutputPaths.problems(fs, out, List.of(), List.of("u.parts")));
    }

    /**
     * The earlier tables a files run with --overwrite moves aside are those a table run's report accounts for: only
     * where the directory's report is a table run's (it records the input's format), states/ only where that run
     * recorded states, and each only where it holds nothing but a table write's files; no report, or a files run's,
     * accounts for none.
     */
    @Test
    void earlierTablesAreThoseATableRunsReportAccountsFor() throws IOException {
        setUp();
        for (String t : OutputPaths.TABLES) {
            file(t + "/part-00000-abc.snappy.parquet");
            file(t + "/_SUCCESS");
        }
        java.nio.file.Path report = tmp.resolve("out").resolve(Commit.REPORT);
        assertEquals(List.of(), OutputPaths.earlierTables(fs, out), "no report");
        Files.writeString(report, "{\"status\": \"ok\", \"settings\": {}}");
        assertEquals(List.of(), OutputPaths.earlierTables(fs, out), "a files run's report");
        Files.writeString(report, "{\"format\": \"parquet\", \"settings\": {\"spark.lightning.stateEvery\": \"0\"}}");
        assertEquals(List.of("o", "final_states"), OutputPaths.earlierTables(fs, out));
        Files.writeString(report, "{\"format\": \"parquet\", \"settings\": {\"spark.lightning.stateEvery\": \"64\"}}");
        assertEquals(List.of("o", "final_states", "states"), OutputPaths.earlierTables(fs, out));
        file("final_states/mine.csv");
        assertEquals(List.of("o", "states"), OutputPaths.earlierTables(fs, out), "a user's file in it: the user's");
    }
}
