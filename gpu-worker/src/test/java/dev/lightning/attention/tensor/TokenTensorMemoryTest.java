package dev.lightning.attention.tensor;

import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ReadOnlyBufferException;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** Views of a backend's memory blocks keep saying where their bytes lie; writable views write through. */
class TokenTensorMemoryTest {
    @Test
    void slicesOfABlockViewCarryTheBlockAndTheirByteOffset() {
        Object block = new Object();
        ByteBuffer direct = ByteBuffer.allocateDirect(100 * 3 * 5 * 2).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        TokenTensor t = TokenTensor.wrap(DType.BF16, 100, 3, 5, direct, block, 64);
        assertSame(block, t.memory());
        assertEquals(64, t.memoryOffset());
        TokenTensor s = t.slice(7, 20);
        assertSame(block, s.memory());
        assertEquals(64 + 7 * 30, s.memoryOffset());
        TokenTensor ss = s.slice(3, 2);
        assertEquals(64 + 10 * 30, ss.memoryOffset());
        // the offset is where the view's bytes are: writing through the slice lands there
        ss.set(0, 0, 0, 1.5f);
        assertEquals(1.5f, DType.BF16.get(direct, 10 * 30), 0f);
        assertEquals(1.5f, t.get(10, 0, 0), 0f);
    }

    @Test
    void ordinaryTensorsHaveNoBlock() {
        TokenTensor t = TokenTensor.allocate(DType.F32, 10, 2, 4);
        assertNull(t.memory());
        assertNull(t.slice(3, 4).memory());
        assertEquals(0, t.slice(3, 4).memoryOffset());
        assertThrows(IllegalArgumentException.class,
                () -> TokenTensor.wrap(DType.F32, 1, 1, 1, ByteBuffer.allocate(4), null, 0));
        assertThrows(IllegalArgumentException.class,
                () -> TokenTensor.wrap(DType.F32, 1, 1, 1, ByteBuffer.allocate(4), new Object(), -1));
    }

    @Test
    void writableBytesFillTheTensorInPlace() {
        TokenTensor t = TokenTensor.allocate(DType.F32, 6, 2, 3);
        TokenTensor s = t.slice(2, 3);
        ByteBuffer w = s.writableBytes();
        assertEquals(3 * 2 * 3 * 4, w.remaining());
        for (int i = 0; w.hasRemaining(); i++) {
            w.putFloat(i + 0.25f);
        }
        assertEquals(0.25f, t.get(2, 0, 0), 0f);
        assertEquals(17.25f, t.get(4, 1, 2), 0f);
        assertEquals(0f, t.get(5, 0, 0), 0f);
        TokenTensor readOnly = TokenTensor.wrap(DType.F32, 1, 1, 1, ByteBuffer.allocate(4).asReadOnlyBuffer());
        assertThrows(ReadOnlyBufferException.class, () -> readOnly.writableBytes().putFloat(1f));
    }
}
