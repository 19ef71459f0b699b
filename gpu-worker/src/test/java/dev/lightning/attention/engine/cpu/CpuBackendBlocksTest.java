package dev.lightning.attention.engine.cpu;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The CPU backend's window blocks ({@link CpuBackend#scratchHostTensor}): off-heap, page-aligned,
 * exactly the tensor's size, given back at release or close and taken again by the next backend
 * (the next task) instead of new memory. Whether the windows compute the same bytes as heap ones
 * is PieceWorkHostWindowsTest's.
 */
class CpuBackendBlocksTest {
    @Test
    void blocksAreOffHeapAlignedAndSized() {
        try (CpuBackend cpu = new CpuBackend()) {
            for (int tokens : new int[] {1, 63, 1000}) {
                TokenTensor t = cpu.scratchHostTensor(DType.BF16, tokens, 3, 40);
                ByteBuffer b = t.writableBytes();
                assertTrue(b.isDirect(), "off-heap");
                assertEquals(0, b.alignmentOffset(0, 4096), "starts on a page");
                assertEquals(tokens * 3 * 40 * 2, b.remaining());
                assertEquals(tokens, t.tokens());
            }
        }
    }

    @Test
    void aReleasedOrClosedBlockServesTheNextBackend() {
        int tokens = 777; // a size no other test asks for, so that its block is the one found again
        int bytes = tokens * 5 * 24 * 4;
        long marker = 0x5eed_cafe_f00d_1234L;
        TokenTensor first;
        try (CpuBackend a = new CpuBackend()) {
            first = a.scratchHostTensor(DType.F32, tokens, 5, 24);
            first.writableBytes().putLong(bytes - 8, marker);
            a.releaseHostTensor(first);
            a.releaseHostTensor(first); // a second release gives nothing back twice
            TokenTensor again = a.scratchHostTensor(DType.F32, tokens, 5, 24);
            assertEquals(marker, again.writableBytes().getLong(bytes - 8), "the released block, taken again");
            TokenTensor other = a.scratchHostTensor(DType.F32, tokens, 5, 24);
            other.writableBytes().putLong(bytes - 8, ~marker); // both live at once: two blocks
            assertEquals(marker, again.writableBytes().getLong(bytes - 8), "live blocks are distinct");
        } // close gives both back
        try (CpuBackend b = new CpuBackend()) {
            long seen1 = b.scratchHostTensor(DType.F32, tokens, 5, 24).writableBytes().getLong(bytes - 8);
            long seen2 = b.scratchHostTensor(DType.F32, tokens, 5, 24).writableBytes().getLong(bytes - 8);
            assertTrue((seen1 == marker && seen2 == ~marker) || (seen1 == ~marker && seen2 == marker),
                    "the next backend takes the closed one's blocks: " + Long.toHexString(seen1) + ", "
                            + Long.toHexString(seen2));
        }
        assertTrue(OffHeapBlocks.waiting() <= OffHeapBlocks.KEEP, "at most " + OffHeapBlocks.KEEP + " kept");
    }

    @Test
    void theKeptBlocksAreBounded() {
        try (CpuBackend cpu = new CpuBackend()) {
            for (int i = 0; i < OffHeapBlocks.KEEP + 5; i++) {
                cpu.scratchHostTensor(DType.F32, 16 + i, 1, 4);
            }
        }
        assertEquals(OffHeapBlocks.KEEP, OffHeapBlocks.waiting());
    }
}
