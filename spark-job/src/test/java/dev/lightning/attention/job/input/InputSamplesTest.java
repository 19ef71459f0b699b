package dev.lightning.attention.job.input;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
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
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class InputSamplesTest {
    private static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    /**
     * A directory's data files, with what Spark's readers skip left out (names starting with _ or ., below
     * the directory at any depth) and empty files too; a file given by its own path counts whatever its name.
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
        List<InputSamples.Entry> got = InputSamples.of(new Configuration(), List.of(table.toString(), single.toString()));
        assertEquals(3, got.size(), got.toString());
        assertTrue(got.get(0).path().endsWith("_blocks/part-0.parquet") && got.get(0).bytes() == 70_000, got.toString());
        assertTrue(got.get(1).path().endsWith("_blocks/sub=1/part-1.parquet"), got.toString());
        assertTrue(got.get(2).path().endsWith("_single.safetensors"), got.toString());
        assertEquals(SequenceFiles.sample((pos, b, off, len) -> System.arraycopy(random(70_000, 1), (int) pos, b, off, len),
                70_000), got.get(0).sample(), "the files run's sample");
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
        List<InputSamples.Entry> stored = InputSamples.of(conf, List.of(a.toString()));
        ArrayNode recorded = new ObjectMapper().createArrayNode();
        InputSamples.record(recorded, stored);

        List<InputSamples.Entry> again = InputSamples.of(conf, List.of(a.toString(), b.toString()));
        assertNotEquals(again.get(0).sample(), again.get(1).sample());
        List<String> problems = InputSamples.repeated(recorded, again);
        assertEquals(1, problems.size(), problems.toString());
        assertTrue(problems.get(0).contains("a.parquet") && !problems.get(0).contains(", as '"), problems.toString());

        List<String> fromCopy = InputSamples.repeated(recorded, InputSamples.of(conf, List.of(copy.toString())));
        assertEquals(1, fromCopy.size(), fromCopy.toString());
        assertTrue(fromCopy.get(0).contains("a-copy.parquet") && fromCopy.get(0).contains(", as '"
                + stored.get(0).path() + "'"), fromCopy.toString());

        InvalidInputException e = assertThrows(InvalidInputException.class,
                () -> InputSamples.refuseRepeated("states-2/", recorded, again));
        assertTrue(e.getMessage().startsWith("--initial-states states-2/: its states were computed from 1 of this run's "
                + "input file(s)") && e.getMessage().contains("absorb them twice"), e.getMessage());
        InputSamples.refuseRepeated("states-2/", recorded, InputSamples.of(conf, List.of(b.toString())));
        InputSamples.refuseRepeated("states-2/", null, again);  // a report written before inputs were recorded
        assertTrue(InputSamples.repeated(new ObjectMapper().createArrayNode(), again).isEmpty());
    }
}
