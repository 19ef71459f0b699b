package dev.lightning.attention.job.input;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.hadoop.conf.Configuration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class InputSamplesTest {
    private static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    private static List<InputSamples.Entry> sampled(Configuration conf, List<String> paths) throws java.io.IOException {
        return InputSamples.of(conf, InputSamples.list(conf, paths));
    }

    /**
     * A directory's data files, with what Spark's readers skip left out (names starting with _ or ., below
     * the directory at any depth), and empty files too where samples are taken; a file given by its own path
     * counts whatever its name.
     */
    @Test
    void listsTheDataFilesAsSparkReadsThem(@TempDir Path dir) throws Exception {
        Path table = Files.createDirectories(dir.resolve("_blocks"));  // the root's own name does not hide it
        Files.write(table.resolve("part-0.parquet"), random(70_000, 1));
        Files.write(Files.createDirectories(table.resolve("sub=1")).resolve("part-1.parquet"), random(5_000, 2));
        Files.write(table.resolve("_SUCCESS"), new byte[0]);
        Files.write(table.resolve(".part-0.parquet.crc"), random(12, 3));
        Files.write(Files.createDirectories(table.resolve("_temporary").resolve("0")).resolve("part-9.parquet"),
                random(900, 4));
        Files.write(table.resolve("empty.parquet"), new byte[0]);
        Path single = Files.write(dir.resolve("_single.safetensors"), random(300, 5));
        List<InputSamples.Entry> got = sampled(new Configuration(), List.of(table.toString(), single.toString()));
        assertEquals(3, got.size(), got.toString());
        // the listing (a run's fingerprint) keeps the empty file, between the two parts in path order
        List<String> listed = InputSamples.list(new Configuration(), List.of(table.toString(), single.toString()))
                .stream().map(st -> st.getPath().getName()).toList();
        assertEquals(List.of("empty.parquet", "part-0.parquet", "part-1.parquet", "_single.safetensors"), listed);
        assertTrue(got.get(0).path().endsWith("_blocks/part-0.parquet") && got.get(0).bytes() == 70_000, got.toString());
        assertTrue(got.get(1).path().endsWith("_blocks/sub=1/part-1.parquet"), got.toString());
        assertTrue(got.get(2).path().endsWith("_single.safetensors"), got.toString());
        assertEquals(SequenceFiles.sample((pos, b, off, len) -> System.arraycopy(random(70_000, 1), (int) pos, b, off, len),
                70_000), got.get(0).sample(), "the files run's sample");
    }

    /** A run report as TableRun writes it: its inputs, and what the states it continued had absorbed (or none). */
    private static ObjectNode report(List<InputSamples.Entry> inputs, List<InputSamples.Absorbed> continued) {
        ObjectNode r = new ObjectMapper().createObjectNode();
        InputSamples.record(r.putArray(InputSamples.REPORT_KEY), inputs);
        if (continued != null) {
            InputSamples.recordEarlier(r.putArray(InputSamples.EARLIER_KEY), continued);
        }
        return r;
    }

    /**
     * A file of the size and sample a stored run recorded is named, by its path and by the recorded one where a
     * copy sits elsewhere; a file whose content differs where the sample reads it is not; a report that records
     * nothing compares nothing.
     */
    @Test
    void aRecordedFileGivenAgainIsRefused(@TempDir Path dir) throws Exception {
        Path a = Files.write(dir.resolve("a.parquet"), random(50_000, 7));
        byte[] changed = random(50_000, 7);
        changed[(50_000 - 4096) * 3 / 7] ^= 1;  // the first byte of the sample's fourth block of 8
        Path b = Files.write(dir.resolve("b.parquet"), changed);
        Path copy = Files.createDirectories(dir.resolve("elsewhere")).resolve("a-copy.parquet");
        Files.copy(a, copy);
        Configuration conf = new Configuration();
        List<InputSamples.Entry> stored = sampled(conf, List.of(a.toString()));
        List<InputSamples.Absorbed> recorded = InputSamples.absorbed("file:/states-1", report(stored, null));

        List<InputSamples.Entry> again = sampled(conf, List.of(a.toString(), b.toString()));
        assertNotEquals(again.get(0).sample(), again.get(1).sample());
        List<String> problems = InputSamples.repeated(recorded, again);
        assertEquals(1, problems.size(), problems.toString());
        assertTrue(problems.get(0).contains("a.parquet") && !problems.get(0).contains(", as '")
                && !problems.get(0).contains("earlier run"), problems.toString());

        List<String> fromCopy = InputSamples.repeated(recorded, sampled(conf, List.of(copy.toString())));
        assertEquals(1, fromCopy.size(), fromCopy.toString());
        assertTrue(fromCopy.get(0).contains("a-copy.parquet") && fromCopy.get(0).contains(", as '"
                + stored.get(0).path() + "'"), fromCopy.toString());

        InvalidInputException e = assertThrows(InvalidInputException.class,
                () -> InputSamples.refuseRepeated("states-2/", recorded, again));
        assertTrue(e.getMessage().startsWith("--initial-states states-2/: its states were computed from 1 of this run's "
                + "input file(s)") && e.getMessage().contains("absorb them twice"), e.getMessage());
        InputSamples.refuseRepeated("states-2/", recorded, sampled(conf, List.of(b.toString())));
        // a report written before inputs were recorded, and none at all: what the states absorbed is unknown
        assertNull(InputSamples.absorbed("file:/states-1", new ObjectMapper().createObjectNode()));
        assertNull(InputSamples.absorbed("file:/states-1", null));
        InputSamples.refuseRepeated("states-2/", null, again);
        assertTrue(InputSamples.repeated(List.of(), again).isEmpty());
    }

    /**
     * A chain of three appends: the third run's stored directory records its own input and, as the files its
     * states had absorbed before, the first run's, with the directory that read each; so the first segment given
     * a third time is refused, naming the run that read it, and so is the second; the third segment is not. Each
     * content is listed once, the stored directory's own entry first.
     */
    @Test
    void aFileReadEarlierInTheChainIsRefusedToo(@TempDir Path dir) throws Exception {
        Configuration conf = new Configuration();
        List<InputSamples.Entry> day1 = sampled(conf, List.of(
                Files.write(dir.resolve("day1.parquet"), random(9_000, 11)).toString()));
        List<InputSamples.Entry> day2 = sampled(conf, List.of(
                Files.write(dir.resolve("day2.parquet"), random(9_000, 12)).toString()));
        List<InputSamples.Entry> day3 = sampled(conf, List.of(
                Files.write(dir.resolve("day3.parquet"), random(9_000, 13)).toString()));

        // states-1 from day1; states-2 from day2 onto states-1 (records day1 as earlier, read by states-1)
        List<InputSamples.Absorbed> inStates1 = InputSamples.absorbed("file:/states-1", report(day1, null));
        ObjectNode states2 = report(day2, inStates1);
        assertEquals("file:/states-1", states2.get(InputSamples.EARLIER_KEY).get(0).get("output").asText());
        List<InputSamples.Absorbed> inStates2 = InputSamples.absorbed("file:/states-2", states2);
        assertEquals(2, inStates2.size(), inStates2.toString());
        assertTrue(inStates2.get(0).own() && !inStates2.get(1).own(), inStates2.toString());
        assertEquals(day2.get(0), inStates2.get(0).entry());
        assertEquals(day1.get(0), inStates2.get(1).entry());

        List<String> first = InputSamples.repeated(inStates2, day1);
        assertEquals(1, first.size(), first.toString());
        assertTrue(first.get(0).contains("day1.parquet") && first.get(0).contains("read by the earlier run that wrote "
                + "'file:/states-1'"), first.toString());
        assertEquals(1, InputSamples.repeated(inStates2, day2).size());
        assertTrue(InputSamples.repeated(inStates2, day3).isEmpty());

        // states-3 from day3 onto states-2 keeps the whole chain, each file once and where it was read
        ObjectNode states3 = report(day3, inStates2);
        List<InputSamples.Absorbed> inStates3 = InputSamples.absorbed("file:/states-3", states3);
        assertEquals(List.of("file:/states-3", "file:/states-2", "file:/states-1"),
                inStates3.stream().map(InputSamples.Absorbed::output).toList());
        // a file given twice in one chain (a reported duplicate) is listed once
        ObjectNode twice = report(day1, InputSamples.absorbed("file:/x", report(day1, null)));
        assertEquals(1, InputSamples.absorbed("file:/y", twice).size());
        InvalidInputException e = assertThrows(InvalidInputException.class,
                () -> InputSamples.refuseRepeated("states-3/", inStates3, day1));
        assertTrue(e.getMessage().contains("or a run before it") && e.getMessage().contains("'file:/states-1'"),
                e.getMessage());
    }
}
