package dev.lightning.attention.job.output;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The earlier_inputs metadata: the keys it is written with read back in order, and a value that is not such a list refused. */
class OutputHeaderTest {
    @Test
    void earlierInputsReadBackAsWritten() {
        List<String> keys = List.of(OutputHeader.inputKey(23256, "cd5a03b0"), OutputHeader.inputKey(19416, "a9b5c1f5"));
        assertEquals("23256/cd5a03b0", keys.get(0));
        assertEquals(keys, OutputHeader.parseInputKeys(String.join(",", keys)));
        for (String bad : new String[] {"", "23256", "23256/", "x/cd5a03b0", "23256/cd5a03b0,", "23256/CD5A", "1/a, 2/b",
                "23256/1cd5a03b0"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> OutputHeader.parseInputKeys(bad), bad);
            assertTrue(e.getMessage().contains("is not bytes/sample"), e.getMessage());
        }
    }

    /**
     * Every output records this build's format (FormatVersion), a files run's and a checksums run's alike, which
     * --initial-states and OutputReader check when they read it back.
     */
    @Test
    void anOutputRecordsItsFormat() throws java.io.IOException {
        dev.lightning.attention.stream.SequenceFile f = new dev.lightning.attention.stream.SyntheticSequence(10, 2, 4,
                4, dev.lightning.attention.tensor.DType.F32, 1).describe(h -> new double[h], false);
        assertEquals("1", OutputHeader.of(f, f.spec(1.0, 1), dev.lightning.attention.stream.Variant.PLAIN,
                dev.lightning.attention.tensor.DType.F32, 1.0).metadata()
                .get(dev.lightning.attention.stream.FormatVersion.KEY));
    }
}
