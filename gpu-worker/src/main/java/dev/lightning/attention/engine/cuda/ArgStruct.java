package dev.lightning.attention.engine.cuda;

import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The Java mirror of one kernel argument struct of C, passed by value: its bytes, written field
 * by field at the struct's offsets, and the load-time check of the mirror against the layout the
 * module reports (args_layout.cuh). {@link KernelArgs} mirrors {@code struct LightningArgs},
 * {@link SoftmaxArgs} {@code struct SoftmaxArgs}. Unset pointers are null and unset numbers 0.
 *
 * @param <F> the struct's fields, in declaration order: 8-byte ones first, then 4-byte ones, so
 *            the C layout has no padding and the offsets are running sums
 * @param <S> the mirror itself, so that setters chain
 */
abstract class ArgStruct<F extends Enum<F> & ArgStruct.Field, S extends ArgStruct<F, S>> {
    /**
     * A field of a mirror's enum: its size in bytes (4 or 8). Its offset is the sum of the sizes
     * declared before it (8-byte fields first, so C adds no padding), computed once per enum here.
     */
    interface Field {
        int size();

        default int offset() {
            Enum<?> self = (Enum<?>) this;
            return OFFSETS.get(self.getDeclaringClass())[self.ordinal()];
        }
    }

    /** Per enum of fields: the running sums of their sizes, the last one the struct's size. */
    private static final ClassValue<int[]> OFFSETS = new ClassValue<>() {
        @Override
        protected int[] computeValue(Class<?> fields) {
            Object[] values = fields.getEnumConstants();
            int[] at = new int[values.length + 1];
            for (int i = 0; i < values.length; i++) {
                at[i + 1] = at[i] + ((Field) values[i]).size();
            }
            return at;
        }
    };

    /** sizeof the struct whose fields are {@code fields}, in declaration order. */
    static int sizeOf(Class<? extends Field> fields) {
        int[] at = OFFSETS.get(fields);
        return at[at.length - 1];
    }

    private final ByteBuffer bytes;

    ArgStruct(int size) {
        bytes = ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
    }

    abstract S self();

    /** Sets a pointer field; a null or unallocated buffer pointer is passed as null. */
    S ptr(F f, CUdeviceptr p) {
        check(f, 8);
        bytes.putLong(f.offset(), p == null ? 0 : address(p));
        return self();
    }

    S i64(F f, long v) {
        check(f, 8);
        bytes.putLong(f.offset(), v);
        return self();
    }

    S i32(F f, int v) {
        check(f, 4);
        bytes.putInt(f.offset(), v);
        return self();
    }

    S f32(F f, float v) {
        check(f, 4);
        bytes.putFloat(f.offset(), v);
        return self();
    }

    /** Copies these bytes into {@code other} (a mirror of the same struct). */
    S copyInto(S other) {
        ((ArgStruct<F, S>) other).bytes.put(0, bytes, 0, bytes.capacity());
        return other;
    }

    /** The kernel parameter list of a launch: one parameter, this struct's bytes. */
    Pointer params() {
        return Pointer.to(Pointer.to(toBytes()));
    }

    /** A copy of the struct's bytes, little-endian, as the kernel receives them. */
    byte[] toBytes() {
        byte[] b = new byte[bytes.capacity()];
        bytes.get(0, b);
        return b;
    }

    private static void check(Field f, int size) {
        if (f.size() != size) {
            throw new IllegalArgumentException(f + " is a " + f.size() + "-byte field, not " + size);
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
     * Holds a mirror against {@code layout}: sizeof(struct) and then every field's offset, as the
     * module's layout kernel wrote them. Throws IllegalStateException naming what differs.
     *
     * @param struct the C struct's name, {@code header} its header, {@code mirror} the Java class
     */
    static void verify(String struct, String header, String mirror, Field[] fields, int size, int[] layout) {
        if (layout.length != fields.length + 1 || layout[0] != size) {
            throw new IllegalStateException("the kernels' " + struct + " is " + layout[0] + " bytes with "
                    + (layout.length - 1) + " fields, " + mirror + " mirrors " + size + " bytes with " + fields.length
                    + ": " + header + " and " + mirror + ".java must change together");
        }
        for (int i = 0; i < fields.length; i++) {
            if (layout[i + 1] != fields[i].offset()) {
                throw new IllegalStateException(struct + " field " + fields[i] + " is at offset " + layout[i + 1]
                        + " in the kernels, at " + fields[i].offset() + " in " + mirror + ": the two must change together");
            }
        }
    }
}
