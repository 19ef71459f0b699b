package dev.lightning.attention.job.failure;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;

class ExamplesTest {
    @Test
    void namesTheFirstFewAndCountsTheRest() {
        List<String> seven = List.of("a", "b", "c", "d", "e", "f", "g");
        assertEquals("a; b; c; d; e (and 2 more)", Examples.of(seven, 5, "; "));
        assertEquals("a (and 6 more)", Examples.of(seven, 1, "; "));
        assertEquals("a, b", Examples.of(List.of("a", "b"), 10, ", "));
        assertEquals("a", Examples.of(List.of("a"), 1, "; "));
        assertEquals("a; b; c; d; e; f; g", Examples.of(seven, 7, "; "));
    }
}
