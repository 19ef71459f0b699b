package dev.lightning.attention.tensor;

import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SafetensorsHeaderTest {

    @Test
    void layoutRoundTripsAndAlignsEveryTensor() {
        // 3 * 1 * 3 half values = 18 bytes: a float32 tensor after them needs header padding.
        SafetensorsHeader h = SafetensorsHeader.layout("x.safetensors", List.of(
                new SafetensorsHeader.Spec("o", DType.F16, 3, 1, 3),
                new SafetensorsHeader.Spec("final_state", DType.F32, 1, 2, 3)), Map.of("producer", "test"));
        byte[] prefix = h.encode();
        long n = SafetensorsHeader.headerLength("x", prefix, h.fileSize());
        assertEquals(prefix.length - 8, n);
        byte[] json = java.util.Arrays.copyOfRange(prefix, 8, prefix.length);
        SafetensorsHeader back = SafetensorsHeader.parse("x", json, h.fileSize());
        assertEquals(18, back.tensor("o").byteLength());
        assertEquals(24, back.tensor("final_state").byteLength());
        assertArrayEquals(new long[] {1, 2, 3}, back.tensor("final_state").shape());
        assertEquals(0, back.tensor("final_state").begin() % 4);
        assertEquals(0, back.tensor("o").begin() % 2);
        assertEquals("test", back.metadata().get("producer"));
        assertEquals(h.fileSize(), back.fileSize());
    }

    @Test
    void eightAlignedDataStartWhenSizesAllowIt() {
        SafetensorsHeader h = SafetensorsHeader.layout("y", List.of(
                new SafetensorsHeader.Spec("o", DType.BF16, 4, 2, 8),
                new SafetensorsHeader.Spec("final_state", DType.F32, 2, 8, 8)), Map.of());
        assertEquals(0, h.dataStart() % 8);
    }

    @Test
    void rejectsOverlapsRangesAndSizeMismatch() {
        String overlap = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
        assertContains(reject(overlap, 1000), "overlap");
        String outside = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
        assertContains(reject(outside, 8 + outside.length() + 8), "outside");
        String size = "{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,16]}}";
        assertContains(reject(size, 1000), "needs 8 bytes");
        assertContains(reject("{\"a\":", 100), "not valid JSON");
        assertContains(reject("{}", 5), "past the end");
        assertContains(reject("[1,2]", 100), "must be a JSON object");
        String dup = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                + "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
        assertContains(reject(dup, 200), "not valid JSON");
    }

    @Test
    void rejectsImpossibleHeaderLengths() {
        byte[] huge = {(byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff, 0, 0, 0, 0};
        InvalidInputException e = assertThrows(InvalidInputException.class,
                () -> SafetensorsHeader.headerLength("f.safetensors", huge, 1000));
        assertTrue(e.getMessage().startsWith("f.safetensors: header length"), e.getMessage());
        assertThrows(InvalidInputException.class, () -> SafetensorsHeader.headerLength("f", new byte[8], 4));
    }

    private static void assertContains(String message, String part) {
        assertTrue(message.contains(part), message);
    }

    private static String reject(String json, long fileSize) {
        byte[] b = json.getBytes(StandardCharsets.UTF_8);
        return assertThrows(InvalidInputException.class, () -> SafetensorsHeader.parse("f", b, fileSize)).getMessage();
    }
}
