package dev.lightning.attention.engine.cuda;

import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The Java mirror of {@code struct LightningBatchArgs} (lightning_batch_args.cuh), the one argument
 * of the batch-step kernels, by value; the same mechanism as {@link KernelArgs}: fields set by name
 * at the struct's offsets, unset ones 0 (null pointers), and {@link #verify} holds the mirror
 * against the layout the loaded module reports, so that a change on one side alone fails at load.
 */
final class BatchArgs {
    /** Fields in declaration order: 8-byte ones first, then 4-byte ones (no padding in C). */
    enum Field {
        Q(8), K(8), V(8), O(8), SLOPES(8), STATES(8), NORMS(8), OFFSETS(8), SLOTS(8), COUNT(4), HEADS(4), HEADS_Q(4),
        HEADS_K(4), HEADS_V(4), DK(4), DV(4), TILES_PER_CTA(4), GROUP(4), FEATURE_MAP(4), NORMALIZE(4), SCALE(4),
        EPS(4), RESERVED(4);

        final int size;
        /** The running sum of the sizes before it (set with the enum, so it is right on first use). */
        int offset;

        Field(int size) {
            this.size = size;
        }

        static {
            int at = 0;
            for (Field f : values()) {
                f.offset = at;
                at += f.size;
            }
        }
    }

    /** sizeof(LightningBatchArgs). */
    static final int SIZE = Field.RESERVED.offset + Field.RESERVED.size;

    private final ByteBuffer bytes = ByteBuffer.allocate(SIZE).order(ByteOrder.LITTLE_ENDIAN);

    BatchArgs ptr(Field f, CUdeviceptr p) {
        check(f, 8);
        bytes.putLong(f.offset, p == null ? 0 : KernelArgs.address(p));
        return this;
    }

    BatchArgs i32(Field f, int v) {
        check(f, 4);
        bytes.putInt(f.offset, v);
        return this;
    }

    BatchArgs f32(Field f, float v) {
        check(f, 4);
        bytes.putFloat(f.offset, v);
        return this;
    }

    /** The kernel parameter list of a launch: one parameter, this struct's bytes. */
    Pointer params() {
        return Pointer.to(Pointer.to(toBytes()));
    }

    /** A copy of the struct's bytes, little-endian, as the kernel receives them. */
    byte[] toBytes() {
        byte[] b = new byte[SIZE];
        bytes.get(0, b);
        return b;
    }

    private static void check(Field f, int size) {
        if (f.size != size) {
            throw new IllegalArgumentException(f + " is a " + f.size + "-byte field, not " + size);
        }
    }

    /** Holds this mirror against {@code layout}: sizeof and every field's offset as lightning_batch_args_layout wrote them. */
    static void verify(int[] layout) {
        Field[] fields = Field.values();
        if (layout.length != fields.length + 1 || layout[0] != SIZE) {
            throw new IllegalStateException("the kernels' LightningBatchArgs is " + layout[0] + " bytes with "
                    + (layout.length - 1) + " fields, BatchArgs mirrors " + SIZE + " bytes with " + fields.length
                    + ": lightning_batch_args.cuh and BatchArgs.java must change together");
        }
        for (Field f : fields) {
            if (layout[f.ordinal() + 1] != f.offset) {
                throw new IllegalStateException("LightningBatchArgs field " + f + " is at offset "
                        + layout[f.ordinal() + 1] + " in the kernels, at " + f.offset + " in BatchArgs: the two must "
                        + "change together");
            }
        }
    }
}
