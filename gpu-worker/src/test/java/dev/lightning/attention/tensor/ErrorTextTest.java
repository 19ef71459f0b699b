package dev.lightning.attention.tensor;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** What a one-line error quotes of another exception's message. */
class ErrorTextTest {
    @Test
    void quotesTheFirstLineCutToTheLimit() {
        assertEquals("Unexpected character ('x')", ErrorText.firstLine("Unexpected character ('x')\n at [Source: q]"));
        assertEquals("one line", ErrorText.firstLine("one line"));
        assertEquals("no detail", ErrorText.firstLine(null));
        assertEquals("no detail", ErrorText.firstLine(null, 3));
        assertEquals("abc...", ErrorText.firstLine("abcdef\nmore", 3));
        assertEquals("abc", ErrorText.firstLine("abc\nmore", 3), "no cut at the limit itself");
        assertEquals("", ErrorText.firstLine("\nsecond"));
    }
}
