package dev.lightning.attention.job.input;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.tensor.InvalidInputException;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The continuation rules both runs apply, and the one message that lists their refusals. */
class ContinuationsTest {
    private static Continuations files() {
        return new Continuations("--initial-states prev/", "the input", "remove the tensor from the input",
                "remove the sequence from the stored set");
    }

    @Test
    void aSequenceStartsFromOneStateAndTheStoredOneMustFit() {
        Continuations match = files();
        assertTrue(match.oneStart("a", null, "prev/a.safetensors"), "no state of its own: continues");
        assertTrue(match.fits("a", null), "a stored state that fits");
        match.throwIfAny(); // nothing refused

        assertFalse(match.oneStart("b", "initial_state", "prev/b.safetensors"));
        AttentionSpec spec = new AttentionSpec(2, 4, 3, new double[] {0.1, 0.2}, 1.0, 1);
        assertFalse(match.fits("c", StoredStates.mismatch(3, 4, 3, false, null, "prev/c.safetensors", spec)));
        match.refuse("d", "its own reason", null);
        InvalidInputException e = assertThrows(InvalidInputException.class, match::throwIfAny);
        assertEquals("--initial-states prev/: 3 sequence(s) cannot continue from their stored state: "
                + "b: it has its own initial_state, given by the input, and a stored state in prev/b.safetensors; a "
                + "sequence starts from one state; c: the stored state does not fit: expected S [2, 4, 3] without a "
                + "normalizer z (no --normalize) for its input, found S [3, 4, 3] without a normalizer z in "
                + "prev/c.safetensors; a continued sequence keeps its heads and widths; d: its own reason. What to do: "
                + "remove the tensor from the input, or remove the sequence from the stored set (b); give it the next "
                + "segment of the sequence that state belongs to, or continue from another directory's states (c)",
                e.getMessage());
    }

    /**
     * Several sequences refused for the same cause are named with their reasons, and what to do is said once after
     * them: the message repeated the same advice for every sequence it named.
     */
    @Test
    void theAdviceIsSaidOnceAfterTheSequences() {
        Continuations match = files();
        for (String s : new String[] {"a", "b", "c"}) {
            assertFalse(match.oneStart(s, "initial_state", "prev/" + s + ".safetensors"));
        }
        String m = assertThrows(InvalidInputException.class, match::throwIfAny).getMessage();
        String advice = "remove the tensor from the input, or remove the sequence from the stored set";
        assertEquals(m.indexOf(advice), m.lastIndexOf(advice), m);
        assertTrue(m.startsWith("--initial-states prev/: 3 sequence(s) cannot continue from their stored state: a: it "
                + "has its own initial_state, given by the input, and a stored state in prev/a.safetensors; a sequence "
                + "starts from one state; b: ") && m.endsWith("c.safetensors; a sequence starts from one state. What to "
                + "do: " + advice), m);
    }

    /**
     * The message names the first 5 refused sequences and then a count; what to do is the advice of those 5, each
     * named where they differ (the fifth's included), and none of the sequences left to the count, which the user
     * sees no reason for.
     */
    @Test
    void theAdviceIsThatOfTheSequencesNamed() {
        Continuations match = files();
        for (int i = 1; i <= 6; i++) {
            match.refuse("s" + i, "reason " + i, "do " + i);
        }
        String m = assertThrows(InvalidInputException.class, match::throwIfAny).getMessage();
        assertEquals("--initial-states prev/: 6 sequence(s) cannot continue from their stored state: s1: reason 1; s2: "
                + "reason 2; s3: reason 3; s4: reason 4; s5: reason 5 (and 1 more). What to do: do 1 (s1); do 2 (s2); "
                + "do 3 (s3); do 4 (s4); do 5 (s5)", m);
    }

    /**
     * An input continuing a stored state must declare (token_offset) the count that state has absorbed: one past it
     * would skip tokens, one before it repeat them, and both are refused saying which and how many.
     */
    @Test
    void aDeclaredOffsetMustBeTheStoredStatesTokensNeitherMoreNorLess() {
        String at = "prev/s.safetensors";
        assertEquals(null, StoredStates.offsetProblem("100", false, true, at, 100), "where the state ends");
        assertEquals(null, StoredStates.offsetProblem(null, false, true, at, 100), "no offset declared");
        assertEquals(null, StoredStates.offsetProblem("7", false, true, at, -1), "what the state absorbed unknown");
        String skip = String.valueOf(StoredStates.offsetProblem("101", false, true, at, 100));
        assertTrue(skip != null && skip.contains("token_offset 101") && skip.contains("skip 1 tokens"), skip);
        String repeat = String.valueOf(StoredStates.offsetProblem("99", false, true, at, 100));
        assertTrue(repeat != null && repeat.contains("token_offset 99") && repeat.contains("repeat 1 tokens"), repeat);
        String fromStart = String.valueOf(StoredStates.offsetProblem("0", false, true, at, 100));
        assertTrue(fromStart != null && fromStart.contains("repeat 100 tokens"), fromStart);
    }

    @Test
    void withoutALocationTheStoredSetIsNamed() {
        Continuations match = new Continuations("--initial-states t/final_states", "--sequences s/",
                "leave the column null", "remove the row from the stored table");
        assertFalse(match.oneStart("'a'", "initial_state or initial_normalizer", null));
        InvalidInputException e = assertThrows(InvalidInputException.class, match::throwIfAny);
        assertTrue(e.getMessage().contains("'a': it has its own initial_state or initial_normalizer, given by "
                + "--sequences s/, and a stored state in --initial-states t/final_states; a sequence starts from one "
                + "state. What to do: leave the column null, or remove the row from the stored table"), e.getMessage());
    }

    /** Both runs name the sequences that continue nothing in one warning, the first 10 and then a count; none: no warning. */
    @Test
    void theSequencesThatStartFromZeroAreNamedInOneWarning() {
        assertEquals(null, Continuations.fromZero(java.util.List.of(), "input", "An input continues its namesake"));
        assertEquals("--initial-states: 2 sequence(s) have no stored state of their name and start from zero: 'a', 'b'. "
                + "A sequence continues its namesake; a renamed sequence continues nothing",
                Continuations.fromZero(java.util.List.of("'a'", "'b'"), "sequence", "A sequence continues its namesake"));
        java.util.List<String> many = new java.util.ArrayList<>();
        for (int i = 0; i < 12; i++) {
            many.add("s" + i);
        }
        String w = Continuations.fromZero(many, "input", "An input continues its namesake");
        assertTrue(w.startsWith("--initial-states: 12 input(s) have") && w.contains("s9") && !w.contains("s10"), w);
    }

    @Test
    void theSummaryLineCountsTheContinuedSequences() {
        assertEquals("--initial-states: 2 of 5 sequences continue from a stored state; 3 stored state(s) in all",
                Continuations.summary(2, 5, 3));
    }
}
