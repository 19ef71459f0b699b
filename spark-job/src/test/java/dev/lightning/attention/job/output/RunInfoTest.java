package dev.lightning.attention.job.output;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** What a --resume refused for another run's fingerprint says differs. */
class RunInfoTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * The differences name each top-level key that differs, the earlier run's keys first and then those only the
     * new run has; within the settings, each option that differs with its earlier and new value, and each option only
     * the new run gives, since the user must give the same again; an option on one side only is "not given" on the
     * other. No fingerprint on either side: unreadable.
     */
    @Test
    void theDifferencesNameTheKeysAndTheOptionsToRepeat() throws Exception {
        JsonNode earlier = JSON.readTree("{\"input\": \"x\", \"same\": 1, \"settings\": {\"--scale\": \"1.0\", "
                + "\"--chunk-size\": \"64\"}, \"files\": [1, 2]}");
        JsonNode now = JSON.readTree("{\"input\": \"y\", \"same\": 1, \"settings\": {\"--scale\": \"2.0\", "
                + "\"--chunk-size\": \"64\", \"--normalize\": \"true\"}, \"files\": [1, 3], \"engine\": \"e\"}");
        assertEquals(List.of("input", "settings: --scale 1.0 (now 2.0), --normalize not given (now true)", "files",
                "engine"), RunInfo.differences(earlier, now));
        JsonNode without = JSON.readTree("{\"input\": \"x\", \"same\": 1, \"settings\": {\"--scale\": \"1.0\"}, "
                + "\"files\": [1, 2]}");
        assertEquals(List.of("settings: --chunk-size 64 (now not given)"), RunInfo.differences(earlier, without));
        assertEquals(List.of(), RunInfo.differences(earlier, earlier.deepCopy()));
        assertEquals(List.of("run.json unreadable"), RunInfo.differences(earlier, null));
        assertEquals(List.of("run.json unreadable"), RunInfo.differences(null, now));
    }
}
