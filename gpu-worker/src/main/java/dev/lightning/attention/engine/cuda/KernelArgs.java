package dev.lightning.attention.engine.cuda;

import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;

/**
 * The Java mirror of {@code struct LightningArgs} (lightning_args.cuh): the one argument every
 * kernel takes, by value. Fields are set by name and written at the struct's offsets; unset
 * pointers are null and unset numbers 0, which the kernels read as "absent". {@link #verify}
 * holds this mirror against the layout the loaded module reports, so a change on one side only
 * fails loudly at load time, not as wrong numbers.
 */
final class KernelArgs {
    /** Fields in declaration order: 8-byte ones first, then 4-byte ones (no padding in C). */
    enum Field {
        Q(8), K(8), V(8), O(8), SLOPES(8), INCOMING(8), INCOMING_NORM(8), STATES(8), STATES_NORM(8), CHECKPOINTS(8),
        CHECKPOINT_NORMS(8), SCAN_LOCALS(8), SCAN_LOCAL_NORMS(8), SCAN_FINAL(8), SCAN_FINAL_NORM(8), POSITION(8),
        FIRST_CHECKPOINT(8), N(4), HEADS(4), HEADS_Q(4), HEADS_K(4), HEADS_V(4), DK(4), DV(4), SEG_TOKENS(4),
        CHECKPOINT_EVERY(4), FEATURE_MAP(4), NORMALIZE(4), SCAN_COUNT(4), SCAN_EVERY(4), SCAN_SUB_TOKENS(4),
        SCAN_OUT_COUNT(4), SCALE(4), EPS(4), RESERVED(4);

        final int size;
        int offset;

        Field(int size) {
            this.size = size;
        }
    }

    /** sizeof(LightningArgs). */
    static final int SIZE;

    static {
        int at = 0;
        for (Field f : Field.values()) {
            f.offset = at;
            at += f.size;
        }
        SIZE = at;
    }

    private final ByteBuffer bytes = ByteBuffer.allocate(SIZE).order(ByteOrder.LITTLE_ENDIAN);

    /** Sets a pointer field; a null or unallocated buffer pointer is passed as null. */
    KernelArgs ptr(Field f, CUdeviceptr p) {
        check(f, 8);
        bytes.putLong(f.offset, p == null ? 0 : address(p));
        return this;
    }

    KernelArgs i64(Field f, long v) {
        check(f, 8);
        bytes.putLong(f.offset, v);
        return this;
    }

    KernelArgs i32(Field f, int v) {
        check(f, 4);
        bytes.putInt(f.offset, v);
        return this;
    }

    KernelArgs f32(Field f, float v) {
        check(f, 4);
        bytes.putFloat(f.offset, v);
        return this;
    }

    /** A copy of these arguments, to change a few fields for another launch. */
    KernelArgs copy() {
        KernelArgs c = new KernelArgs();
        c.bytes.put(0, bytes, 0, SIZE);
        return c;
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

    /** The device address a JCuda device pointer holds (its base plus byte offset; 0 when never allocated). */
    static long address(CUdeviceptr p) {
        return new Address(p).value();
    }

    /** Reads a device pointer's address through JCuda's protected accessors (a copy of the pointer). */
    private static final class Address extends CUdeviceptr {
        Address(CUdeviceptr p) {
            super(p);
        }

        long value() {
            return getNativePointer() + getByteOffset();
        }
    }

    /**
     * Holds this mirror against {@code layout}: sizeof(LightningArgs) and every field's offset as
     * the module's {@code lightning_args_layout} kernel wrote them.
     */
    static void verify(int[] layout) {
        List<Field> fields = List.of(Field.values());
        if (layout.length != fields.size() + 1 || layout[0] != SIZE) {
            throw new IllegalStateException("the kernels' LightningArgs is " + layout[0] + " bytes with "
                    + (layout.length - 1) + " fields, KernelArgs mirrors " + SIZE + " bytes with " + fields.size()
                    + ": lightning_args.cuh and KernelArgs.java must change together");
        }
        for (Field f : fields) {
            if (layout[f.ordinal() + 1] != f.offset) {
                throw new IllegalStateException("LightningArgs field " + f + " is at offset " + layout[f.ordinal() + 1]
                        + " in the kernels, at " + f.offset + " in KernelArgs: the two must change together");
            }
        }
    }
}
