package dev.lightning.attention.stream;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lightning.attention.tensor.InvalidInputException;
import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The one check of a record's format_version, in both forms a record carries it (an output's metadata string, a JSON
 * record's top-level number). OutputReaderTest holds the metadata form through a real output; the JSON form's readers
 * live in spark-job, so this module held none of it.
 */
class FormatVersionTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    private static int checkJson(String record) throws Exception {
        return FormatVersion.check("r.json", JSON.readTree(record));
    }

    /**
     * check returns the format a record is in, which a reader of older formats branches on: the one stated, 1 where
     * none is (written before versions were recorded), and what put writes reads back as CURRENT.
     */
    @Test
    void aRecordReadsAsTheFormatItStatesAndOneWithoutItAsFormat1() throws Exception {
        assertEquals(1, FormatVersion.check("o.safetensors", Map.of()));
        assertEquals(1, FormatVersion.check("o.safetensors", Map.of(FormatVersion.KEY, "1")));
        assertEquals(1, FormatVersion.check("o.safetensors", (String) null));
        assertEquals(1, checkJson("{}"));
        assertEquals(1, checkJson("{\"format_version\": 1}"));
        // anything but an object carries no version: its reader refuses it as it always did
        assertEquals(1, FormatVersion.check("r.json", (JsonNode) null));
        assertEquals(1, checkJson("[2]"));

        Map<String, String> metadata = new HashMap<>();
        FormatVersion.put(metadata);
        assertEquals(FormatVersion.CURRENT, FormatVersion.check("o.safetensors", metadata));
        ObjectNode record = JSON.createObjectNode();
        FormatVersion.put(record);
        assertEquals(FormatVersion.CURRENT, FormatVersion.check("r.json", record));
    }

    /**
     * A JSON record of a later format is refused as TooNew (a number past a long too), naming the file and the
     * format; a value that is no whole number of at least 1 is refused as damaged, not as a later format.
     */
    @Test
    void aJsonRecordOfALaterFormatIsRefusedAndOneNotAWholeNumberIsDamaged() {
        for (String later : List.of("2", "99999999999999999999")) {
            FormatVersion.TooNew e = assertThrows(FormatVersion.TooNew.class,
                    () -> checkJson("{\"format_version\": " + later + "}"));
            assertTrue(e.getMessage().startsWith("r.json: format_version " + later + ": written by a later build"),
                    e.getMessage());
        }
        for (String bad : List.of("0", "-1", "1.5", "\"1\"", "null", "true", "{}")) {
            InvalidInputException e = assertThrows(InvalidInputException.class,
                    () -> checkJson("{\"format_version\": " + bad + "}"));
            assertFalse(e instanceof FormatVersion.TooNew, bad);
            assertTrue(e.getMessage().startsWith("r.json: format_version " + bad + " is not a format"), e.getMessage());
        }
    }
}
