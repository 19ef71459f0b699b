package dev.lightning.attention.tensor;

import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Thousands of corrupted headers: the parser either accepts one (a corruption can still be a valid
 * header) or throws its documented InvalidInputException; nothing else, and quickly.
 */
class SafetensorsFuzzTest {

    @Test
    void corruptedHeadersOnlyEverRaiseInvalidInput() {
        SafetensorsHeader valid = SafetensorsHeader.layout("f", List.of(
                new SafetensorsHeader.Spec("q", DType.BF16, 7, 3, 16),
                new SafetensorsHeader.Spec("k", DType.BF16, 7, 3, 16),
                new SafetensorsHeader.Spec("v", DType.BF16, 7, 3, 8),
                new SafetensorsHeader.Spec("slope", DType.F32, 3)), Map.of("note", "x"));
        byte[] prefix = valid.encode();
        byte[] json = java.util.Arrays.copyOfRange(prefix, 8, prefix.length);
        long size = valid.fileSize();
        SplittableRandom rnd = new SplittableRandom(2026);
        byte[] alphabet = "{}[]\":,0123456789-+eE.tfnul \\\"Fa_".getBytes(StandardCharsets.US_ASCII);
        int accepted = 0;
        long start = System.nanoTime();
        for (int trial = 0; trial < 20_000; trial++) {
            byte[] j = json.clone();
            int edits = 1 + rnd.nextInt(4);
            for (int e = 0; e < edits; e++) {
                int kind = rnd.nextInt(4);
                int at = rnd.nextInt(j.length);
                if (kind == 0) {
                    j[at] = (byte) rnd.nextInt(256);
                } else if (kind == 1) {
                    j[at] = alphabet[rnd.nextInt(alphabet.length)];
                } else if (kind == 2) {
                    j = java.util.Arrays.copyOf(j, Math.max(1, at));
                } else {
                    // a digit run into a number: offsets and shapes become huge or negative
                    j[at] = (byte) ('0' + rnd.nextInt(10));
                }
            }
            long fileSize = rnd.nextInt(10) == 0 ? rnd.nextLong(0, size * 2) : size;
            byte[] p = prefix.clone();
            if (rnd.nextInt(10) == 0) {
                p[rnd.nextInt(8)] = (byte) rnd.nextInt(256);
            }
            try {
                SafetensorsHeader.headerLength("f", p, fileSize);
                SafetensorsHeader.parse("f", j, fileSize);
                accepted++;
            } catch (InvalidInputException expected) {
                assertTrue(expected.getMessage().startsWith("f: "), expected.getMessage());
            } catch (Throwable t) {
                fail("trial " + trial + " raised " + t + " for header " + new String(j, StandardCharsets.ISO_8859_1), t);
            }
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        assertTrue(seconds < 60, "20,000 parses took " + seconds + " s");
        assertTrue(accepted < 20_000, "no corruption was ever rejected: the test cannot fail");
    }
}
