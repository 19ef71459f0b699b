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
        assertContains(reject("[1,2]", 100), "must start with '{'");
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

    private static byte[] lengthPrefix(long n) {
        return java.nio.ByteBuffer.allocate(8).order(java.nio.ByteOrder.LITTLE_ENDIAN).putLong(n).array();
    }

    /** Each bound of the header length at its edge: accepted on it, refused one past it, with the range said. */
    @Test
    void headerLengthEdges() {
        assertEquals(2, SafetensorsHeader.headerLength("f", lengthPrefix(2), 10), "\"{}\" filling the file");
        assertEquals("f: header length 3 is impossible for a file of 10 bytes (expected 2..2)"
                + SafetensorsHeader.REWRITE, assertThrows(InvalidInputException.class,
                () -> SafetensorsHeader.headerLength("f", lengthPrefix(3), 10)).getMessage());
        assertThrows(InvalidInputException.class, () -> SafetensorsHeader.headerLength("f", lengthPrefix(1), 10));
        long max = SafetensorsHeader.MAX_HEADER_BYTES;
        assertEquals(max, SafetensorsHeader.headerLength("f", lengthPrefix(max), 8 + max + 100));
        assertTrue(assertThrows(InvalidInputException.class,
                () -> SafetensorsHeader.headerLength("f", lengthPrefix(max + 1), 8 + max + 100)).getMessage()
                .contains("(expected 2.." + max + ")"));
        // a length with the top bit set is said unsigned, as the file holds it
        assertTrue(assertThrows(InvalidInputException.class,
                () -> SafetensorsHeader.headerLength("f", lengthPrefix(-1), 100)).getMessage()
                .contains("header length 18446744073709551615 is impossible"));
        assertEquals("f: not a safetensors file: 7 bytes, expected at least an 8-byte header length"
                        + SafetensorsHeader.REWRITE,
                assertThrows(InvalidInputException.class,
                        () -> SafetensorsHeader.headerLength("f", lengthPrefix(2), 7)).getMessage());
        assertThrows(InvalidInputException.class,
                () -> SafetensorsHeader.headerLength("f", java.util.Arrays.copyOf(lengthPrefix(2), 7), 100));
        assertEquals(8, SafetensorsHeader.headerLength("f", lengthPrefix(8), 16));
    }

    /**
     * The format's own reader refuses what a lenient JSON parser takes: a header starting with
     * anything but '{' (a byte order mark, a space), text that is not UTF-8, and a shape or offset
     * written as a number with a fraction or exponent. Every refusal says what to do.
     */
    @Test
    void refusesWhatTheFormatsOwnReaderRefuses() {
        String good = "{" + tensor("q", "F32", "[2,1]", 0, 8) + "}";
        assertEquals(8, accept(good, 8 + good.length() + 8).tensor("q").byteLength());
        byte[] bom = ("\uFEFF" + good).getBytes(StandardCharsets.UTF_8);
        assertEquals("f: header must start with '{', found a UTF-8 byte order mark" + SafetensorsHeader.REWRITE,
                assertThrows(InvalidInputException.class, () -> SafetensorsHeader.parse("f", bom, 1000)).getMessage());
        assertEquals("f: header must start with '{', found byte 0x20" + SafetensorsHeader.REWRITE, reject(" " + good, 1000));
        assertEquals("f: header must start with '{', found nothing" + SafetensorsHeader.REWRITE, reject("", 1000));
        byte[] latin1 = ("{" + tensor("q\u00e9", "F32", "[2,1]", 0, 8) + "}").getBytes(StandardCharsets.ISO_8859_1);
        assertEquals("f: header is not valid UTF-8 text" + SafetensorsHeader.REWRITE,
                assertThrows(InvalidInputException.class, () -> SafetensorsHeader.parse("f", latin1, 1000)).getMessage());
        // the same name in UTF-8 is fine
        String accented = "{" + tensor("q\u00e9", "F32", "[2,1]", 0, 8) + "}";
        assertEquals(8, SafetensorsHeader.parse("f", accented.getBytes(StandardCharsets.UTF_8),
                8 + accented.getBytes(StandardCharsets.UTF_8).length + 8).tensor("q\u00e9").byteLength());
        assertEquals("f: tensor 'q': shape[0] = 2.0 is not a non-negative integer" + SafetensorsHeader.REWRITE,
                reject("{" + tensor("q", "F32", "[2.0,1]", 0, 8) + "}", 1000));
        assertTrue(reject("{" + tensor("q", "F32", "[2,1]", 0, 8).replace(",8]", ",8.0]") + "}", 1000)
                .startsWith("f: tensor 'q': data_offsets[1] = 8.0 is not a non-negative integer"));
        assertTrue(reject("{" + tensor("q", "F32", "[2,1]", 0, 8).replace(",8]", ",8e0]") + "}", 1000)
                .contains("data_offsets[1] = 8.0 is not"));
        // trailing spaces are the format's padding
        String padded = good + "    ";
        assertEquals(8, accept(padded, 8 + padded.length() + 8).tensor("q").byteLength());
        for (String json : List.of("{\"a\":", "[1,2]", "{}")) {
            assertTrue(reject(json, 5).endsWith(SafetensorsHeader.REWRITE), json);
        }
    }

    private static SafetensorsHeader accept(String json, long fileSize) {
        return SafetensorsHeader.parse("f", json.getBytes(StandardCharsets.UTF_8), fileSize);
    }

    private static String tensor(String name, String dtype, String shape, long begin, long end) {
        return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" + begin + "," + end
                + "]}";
    }

    /**
     * Tensors that share one byte overlap (entryEdges' overlap shares a whole F32 element, 4 bytes); tensors that
     * only touch do not.
     */
    @Test
    void tensorsSharingOneByteOverlap() {
        String oneByte = "{" + tensor("a", "U8", "[4]", 0, 4) + "," + tensor("b", "U8", "[3]", 3, 6) + "}";
        assertEquals("f: tensors 'a' and 'b' overlap (data offsets 0..4 and 3..6)" + SafetensorsHeader.REWRITE,
                reject(oneByte, 1000));
        String touching = "{" + tensor("a", "U8", "[4]", 0, 4) + "," + tensor("b", "U8", "[3]", 4, 7) + "}";
        assertEquals(2, accept(touching, 8 + touching.length() + 7).tensors().size());
    }

    /**
     * A shape whose element count overflows a long is refused even where the overflow wraps to a count whose bytes
     * the data offsets give: [2^32, 2^32] wraps to 0 elements, and [0, 0] would pass the size check.
     */
    @Test
    void aShapeWhoseElementCountWrapsToTheGivenBytesIsRefused() {
        String wrapsToZero = "{" + tensor("q", "U8", "[4294967296,4294967296]", 0, 0) + "}";
        assertTrue(reject(wrapsToZero, 1000).contains("shape is too large (element count overflows)"),
                reject(wrapsToZero, 1000));
        // [2^62, 4] of F32: 2^64 elements, wrapped to 0 as well
        String f32 = "{" + tensor("k", "F32", "[4611686018427387904,4]", 0, 0) + "}";
        assertTrue(reject(f32, 1000).contains("element count overflows"), reject(f32, 1000));
    }

    /** Each rule of a tensor's entry at its edge: accepted on the edge, refused one past it. */
    @Test
    void entryEdges() {
        // a header that ends exactly at the end of the file, with no tensor: data start 10, nothing after it
        SafetensorsHeader empty = accept("{}", 10);
        assertEquals(10, empty.dataStart());
        assertEquals(10, empty.fileSize());
        assertTrue(empty.tensors().isEmpty());
        // tensors listed out of offset order, back to back (safetensors writers list names sorted, not offsets)
        String outOfOrder = "{" + tensor("k", "F32", "[2]", 8, 16) + "," + tensor("q", "F32", "[2]", 0, 8) + "}";
        SafetensorsHeader h = accept(outOfOrder, 8 + outOfOrder.length() + 16);
        assertEquals(8 + outOfOrder.length(), h.dataStart());
        assertEquals(List.of("k", "q"), List.copyOf(h.tensors().keySet()), "header order kept");
        assertEquals(h.dataStart() + 8, h.tensor("k").begin());
        assertEquals(h.dataStart() + 16, h.fileSize());
        // overlap by one byte, said in data offsets
        String overlap = "{" + tensor("a", "F32", "[2]", 8, 16) + "," + tensor("b", "F32", "[3]", 0, 12)
                + "," + tensor("c", "F32", "[1]", 16, 20) + "}";
        assertEquals("f: tensors 'b' and 'a' overlap (data offsets 0..12 and 8..16)" + SafetensorsHeader.REWRITE, reject(overlap, 1000));
        // rank 8 is the most; a zero dimension and an empty range are fine; a negative dimension is not
        String rank8 = "{" + tensor("r", "F32", "[1,1,1,1,1,1,1,2]", 0, 8) + "}";
        assertEquals(8, accept(rank8, 8 + rank8.length() + 8).tensor("r").shape().length);
        assertTrue(reject("{" + tensor("r", "F32", "[1,1,1,1,1,1,1,1,2]", 0, 8) + "}", 1000).contains("rank 9 is more than 8"));
        String zero = "{" + tensor("z", "F16", "[0,4]", 0, 0) + "}";
        assertEquals(0, accept(zero, 8 + zero.length()).tensor("z").byteLength());
        assertTrue(reject("{" + tensor("z", "F16", "[-1,4]", 0, 0) + "}", 1000).contains("shape[0] = -1 is not a non-negative"));
        assertTrue(reject("{" + tensor("z", "F16", "[1]", -2, 0) + "}", 1000).contains("data_offsets[0] = -2"));
        assertTrue(reject("{" + tensor("z", "F16", "[1]", 4, 2) + "}", 1000).contains("fall outside"));
        // the last data byte of the file is inside; one more is not
        String last = "{" + tensor("t", "F16", "[2]", 4, 8) + "}";
        assertEquals(8 + last.length() + 8, accept(last, 8 + last.length() + 8).fileSize());
        assertEquals("f: tensor 't': data_offsets [4, 8] fall outside the 7 data bytes of the file"
                + SafetensorsHeader.REWRITE,
                reject(last, 8 + last.length() + 7));
        // sizes are checked for the format's other dtypes too (8 and 1 bytes), not for unknown ones
        assertEquals("f: tensor 'i': shape 1-d [2] of I64 needs 16 bytes, data_offsets give 8"
                + SafetensorsHeader.REWRITE,
                reject("{" + tensor("i", "I64", "[2]", 0, 8) + "}", 1000));
        assertTrue(reject("{" + tensor("u", "U8", "[3]", 0, 4) + "}", 1000).contains("needs 3 bytes"));
        String foreign = "{" + tensor("x", "F4_PACKED", "[3]", 0, 5) + "}";
        assertEquals(5, accept(foreign, 8 + foreign.length() + 5).tensor("x").byteLength());
        // a JSON error is said in its first line only
        String bad = reject("{\"a\": [1, 2}", 100);
        assertTrue(bad.startsWith("f: header is not valid JSON: ") && !bad.contains("\n"), bad);
    }

    /**
     * The job takes q, k and v typed in any case ({@link DType#fromSafetensors}: 'f32' is F32), so their sizes are
     * checked in any case too: a lower-case 'f32' q of half the bytes its shape needs was accepted, and the tasks
     * read the rest of it from k's data.
     */
    @Test
    void sizesAreCheckedWhateverTheCaseOfTheDtype() {
        assertEquals("f: tensor 'q': shape 3-d [4, 2, 3] of f32 needs 96 bytes, data_offsets give 48"
                + SafetensorsHeader.REWRITE,
                reject("{" + tensor("q", "f32", "[4,2,3]", 0, 48) + "," + tensor("k", "F32", "[4,2,3]", 48, 144) + "}",
                        1000));
        assertTrue(reject("{" + tensor("v", "bf16", "[2,2]", 0, 4) + "}", 1000).contains("of bf16 needs 8 bytes"));
        String right = "{" + tensor("q", "Bf16", "[2,2]", 0, 8) + "}";
        assertEquals(DType.BF16, accept(right, 8 + right.length() + 8).tensor("q").dtype());
        // and named by the one spelling, which the checks of slope and the states compare with "F32"
        String slope = "{" + tensor("slope", "f32", "[2]", 0, 8) + "," + tensor("x", "i8", "[1]", 8, 9) + "}";
        SafetensorsHeader h = accept(slope, 8 + slope.length() + 9);
        assertEquals("F32", h.tensor("slope").dtypeName());
        assertEquals("I8", h.tensor("x").dtypeName());
    }

    /**
     * The padding rule as layout's javadoc states it, against a naive twin: the shortest header whose data start
     * is 8-aligned and aligns every tensor to its element size; else the shortest that aligns every tensor; else
     * (no length aligns them all) the shortest 8-aligned one.
     */
    @Test
    void layoutPadsToTheShortestAligningHeader() {
        List<List<SafetensorsHeader.Spec>> cases = List.of(
                List.of(new SafetensorsHeader.Spec("a", DType.F32, 3), new SafetensorsHeader.Spec("b", DType.F16, 5)),
                // 2 bytes of F16 before F32: the data start must be 2 mod 4, never 8-aligned
                List.of(new SafetensorsHeader.Spec("h", DType.F16, 1), new SafetensorsHeader.Spec("f", DType.F32, 2)),
                // then F32 at 2 mod 4 and at 0 mod 4: no start aligns both, so 8-aligned
                List.of(new SafetensorsHeader.Spec("h", DType.F16, 1), new SafetensorsHeader.Spec("f", DType.F32, 1),
                        new SafetensorsHeader.Spec("g", DType.F16, 1), new SafetensorsHeader.Spec("e", DType.F32, 1)),
                List.of(new SafetensorsHeader.Spec("bf", DType.BF16, 8, 3), new SafetensorsHeader.Spec("s", DType.F32, 1, 1)));
        List<Long> starts = new java.util.ArrayList<>();
        for (List<SafetensorsHeader.Spec> specs : cases) {
            SafetensorsHeader h = SafetensorsHeader.layout("l", specs, Map.of());
            String json = new String(h.encode(), 8, (int) h.dataStart() - 8, StandardCharsets.UTF_8);
            long minimal = 8 + json.stripTrailing().length();
            java.util.function.LongPredicate alignsAll = start -> specs.stream().allMatch(sp ->
                    (start + h.tensor(sp.name).begin() - h.dataStart()) % sp.dtype.bytes() == 0);
            long expected = -1;
            for (long st = minimal; st < minimal + 16 && expected < 0; st++) {
                expected = st % 8 == 0 && alignsAll.test(st) ? st : -1;
            }
            for (long st = minimal; st < minimal + 16 && expected < 0; st++) {
                expected = alignsAll.test(st) ? st : -1;
            }
            if (expected < 0) {
                expected = (minimal + 7) / 8 * 8;
            }
            assertEquals(expected, h.dataStart(), specs.toString());
            starts.add(h.dataStart());
        }
        assertEquals(List.of(0L, 2L, 0L, 0L), starts.stream().map(st -> st % 4).toList(), "the cases cover each branch");
    }
}
