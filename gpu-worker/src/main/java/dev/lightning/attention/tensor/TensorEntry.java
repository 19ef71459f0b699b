package dev.lightning.attention.tensor;

import java.util.Arrays;

/**
 * One tensor of a safetensors file: its name, dtype as written, shape, and absolute byte range
 * {@code [begin, end)} in the file.
 */
public final class TensorEntry {
    private final String name;
    private final String dtypeName;
    private final long[] shape;
    private final long begin;
    private final long end;

    TensorEntry(String name, String dtypeName, long[] shape, long begin, long end) {
        this.name = name;
        this.dtypeName = dtypeName;
        this.shape = shape.clone();
        this.begin = begin;
        this.end = end;
    }

    public String name() {
        return name;
    }

    /** The dtype string as the file has it, supported or not. */
    public String dtypeName() {
        return dtypeName;
    }

    /** The dtype, or an {@link IllegalArgumentException} naming the supported ones. */
    public DType dtype() {
        return DType.fromSafetensors(dtypeName);
    }

    public long[] shape() {
        return shape.clone();
    }

    public int rank() {
        return shape.length;
    }

    public long dim(int i) {
        return shape[i];
    }

    /** Absolute offset of the first byte in the file. */
    public long begin() {
        return begin;
    }

    /** Absolute offset one past the last byte. */
    public long end() {
        return end;
    }

    public long byteLength() {
        return end - begin;
    }

    @Override
    public String toString() {
        return name + " " + dtypeName + " " + Arrays.toString(shape);
    }
}
