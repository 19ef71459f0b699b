package dev.lightning.attention.engine;

import java.nio.ByteBuffer;

/**
 * The states of many sequences of one {@link AttentionSpec}, kept where a {@link BatchStep}
 * computes (host memory for the CPU, device memory for a GPU) so that a serving JVM moves only
 * the new tokens between steps. Logically S {@code [slots, H, Dk, Dv]} and, when the spec
 * normalizes, z {@code [slots, H, Dk]}, float32, each slot the state of one sequence after the
 * tokens it has seen ({@link LightningState}'s convention: S itself, not lambda * S). A new store
 * holds zero states.
 *
 * <p>Owned by the caller, who closes it (a device store frees its memory) before the step that
 * made it. Not thread-safe; a step and copies on one store must not overlap.
 */
public interface StateStore extends AutoCloseable {

    AttentionSpec spec();

    /** Slots 0..slots()-1. */
    int slots();

    /** "cpu" or the device, e.g. "cuda:0". */
    String device();

    /** The state in {@code slot}, copied out. */
    LightningState read(int slot);

    /** Overwrites {@code slot} with {@code state}, which must fit the spec (with a normalizer exactly when it normalizes). */
    void write(int slot, LightningState state);

    /**
     * Bulk copy into slots {@code [first, first + count)}: {@code kv} holds {@code count * H*Dk*Dv}
     * little-endian float32 (the slots' S one after the other), {@code z} {@code count * H*Dk} of
     * them, or is null when the spec does not normalize. Read from the buffers' positions.
     */
    void copyIn(int first, int count, ByteBuffer kv, ByteBuffer z);

    /** Bulk copy out of slots {@code [first, first + count)} into {@code kv} and {@code z}, as {@link #copyIn} lays them out. */
    void copyOut(int first, int count, ByteBuffer kv, ByteBuffer z);

    /** Bytes of the S parts of {@code count} slots: what {@link #copyIn}'s {@code kv} holds. */
    static long kvBytes(AttentionSpec spec, int count) {
        return LightningState.kvBytes(spec) * count;
    }

    /** Bytes of the z parts of {@code count} slots (0 when the spec does not normalize). */
    static long normalizerBytes(AttentionSpec spec, int count) {
        return LightningState.normalizerBytes(spec) * count;
    }

    /** Frees the store's memory; closing twice does nothing. */
    @Override
    void close();

    /**
     * Checks a slot range and bulk buffers against a store of {@code slots} slots; the message
     * names what is off. For implementations.
     */
    static void checkRange(AttentionSpec spec, int slots, int first, int count, ByteBuffer kv, ByteBuffer z) {
        if (first < 0 || count < 0 || (long) first + count > slots) {
            throw new IndexOutOfBoundsException("slots [" + first + ", " + ((long) first + count) + ") of a store of "
                    + slots);
        }
        if (kv.remaining() < kvBytes(spec, count)) {
            throw new IllegalArgumentException("kv holds " + kv.remaining() + " bytes, " + count + " states of " + spec
                    + " need " + kvBytes(spec, count));
        }
        if (spec.normalized() && (z == null || z.remaining() < normalizerBytes(spec, count))) {
            throw new IllegalArgumentException("z holds " + (z == null ? "nothing" : z.remaining() + " bytes") + ", "
                    + count + " normalizers of " + spec + " need " + normalizerBytes(spec, count));
        }
    }

    /** Checks a slot index; for implementations. */
    static void checkSlot(int slots, int slot) {
        if (slot < 0 || slot >= slots) {
            throw new IndexOutOfBoundsException("slot " + slot + " of a store of " + slots + " slots");
        }
    }
}
