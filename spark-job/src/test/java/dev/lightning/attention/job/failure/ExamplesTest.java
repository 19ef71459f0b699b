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

    @Test
    void printsTheFirstLinesAndCountsTheRestInOne() {
        List<String> twelve = new java.util.ArrayList<>();
        for (int i = 0; i < 12; i++) {
            twelve.add("x: rejected f" + i);
        }
        List<String> shown = Examples.lines(twelve, 10, "x: ", "rejected file(s)");
        assertEquals(11, shown.size());
        assertEquals(twelve.subList(0, 10), shown.subList(0, 10));
        assertEquals("x: ... and 2 more rejected file(s)", shown.get(10));
        assertEquals(twelve.subList(0, 10), Examples.lines(twelve.subList(0, 10), 10, "x: ", "rejected file(s)"));
    }
}
