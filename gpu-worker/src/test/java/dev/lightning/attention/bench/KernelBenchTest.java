package dev.lightning.attention.bench;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The benchmark's integer options: what a value that is no integer, and one out of the option's range, are told. */
class KernelBenchTest {
    private static String refusal(String... args) {
        return assertThrows(IllegalArgumentException.class, () -> KernelBench.main(args)).getMessage();
    }

    /**
     * An integer too large for an int is out of the option's range, and says the range: it was said to be no
     * integer ("--check-tokens: expected an integer, got '99999999999'"), as 'abc' is.
     */
    @Test
    void anIntegerOutOfRangeSaysTheRange() {
        assertEquals("--check-tokens: expected an integer in 0..2147483647, got 99999999999",
                refusal("--check-tokens", "99999999999"));
        assertEquals("--tokens: expected an integer in 1..2147483647, got -99999999999",
                refusal("--tokens=-99999999999"));
        assertEquals("--heads-k: expected an integer in 1..65536, got 0", refusal("--heads-k", "0"));
        assertEquals("--dk: expected an integer in 1..256, got 300", refusal("--dk", "300"));
        // a head count above the spec's limit is the option's range, as a head width's is: it was told by the spec,
        // after parsing, in words that named no option ("head counts must be 1..65536, got Hq=70000, ...")
        assertEquals("--heads: expected an integer in 1..65536, got 70000", refusal("--heads", "70000"));
        assertEquals("--heads-v: expected an integer in 1..65536, got 65537", refusal("--heads-v", "65537"));
        assertEquals("--runs: expected an integer, got 'abc'", refusal("--runs", "abc"));
        assertEquals("--chunk: expected an integer, got '1.5'", refusal("--chunk", "1.5"));
        assertEquals(7, KernelBench.integer("--x", "+7", 1, 10), "the digits Integer.parseInt takes");
        assertEquals(Long.MAX_VALUE, KernelBench.integer("--window", String.valueOf(Long.MAX_VALUE), Long.MIN_VALUE,
                Long.MAX_VALUE));
    }
}
