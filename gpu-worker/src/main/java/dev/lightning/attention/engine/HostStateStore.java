package dev.lightning.attention.engine;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;

/**
 * A {@link StateStore} in the JVM's heap: one float array of S ({@code [H*Dk*Dv]}) and one of z
 * ({@code [H*Dk]}, normalizing only) per slot, so that the store is not bounded by one array's
 * 2^31 elements and a step updates a slot in place. The CPU and reference steps read and write the
 * arrays directly ({@link #kv}, {@link #z}).
 */
final class HostStateStore implements StateStore {
    private final AttentionSpec spec;
    private final String owner;
    private float[][] kv;
    private float[][] z;

    HostStateStore(AttentionSpec spec, int slots, String owner) {
        if (slots < 0) {
            throw new IllegalArgumentException("a state store needs 0 or more slots, got " + slots);
        }
        this.spec = spec;
        this.owner = owner;
        kv = new float[slots][];
        z = spec.normalized() ? new float[slots][] : null;
        for (int s = 0; s < slots; s++) {
            kv[s] = new float[spec.stateSize()];
            if (z != null) {
                z[s] = new float[spec.normalizerSize()];
            }
        }
    }

    /** This store, if {@code states} is one made by the step named {@code owner}; else a clear error. */
    static HostStateStore of(StateStore states, String owner) {
        if (!(states instanceof HostStateStore) || !((HostStateStore) states).owner.equals(owner)) {
            String whose = states instanceof HostStateStore ? "the " + ((HostStateStore) states).owner + " step's"
                    : "a state store on " + states.device() + ", another step's";
            throw new IllegalArgumentException(whose + " state store given to the " + owner + " step: use a store "
                    + "from that step's allocate()");
        }
        HostStateStore h = (HostStateStore) states;
        h.open();
        return h;
    }

    private void open() {
        if (kv == null) {
            throw new IllegalStateException("state store is closed");
        }
    }

    /** S of {@code slot}, the live array {@code [H*Dk*Dv]}. */
    float[] kv(int slot) {
        return kv[slot];
    }

    /** z of {@code slot}, the live array {@code [H*Dk]}, or null when not normalizing. */
    float[] z(int slot) {
        return z == null ? null : z[slot];
    }

    @Override
    public AttentionSpec spec() {
        return spec;
    }

    @Override
    public int slots() {
        open();
        return kv.length;
    }

    @Override
    public String device() {
        return "cpu";
    }

    @Override
    public LightningState read(int slot) {
        StateStore.checkSlot(slots(), slot);
        return LightningState.own(spec.heads(), spec.dk(), spec.dv(), kv[slot].clone(), z == null ? null : z[slot].clone());
    }

    @Override
    public void write(int slot, LightningState state) {
        StateStore.checkSlot(slots(), slot);
        if (!state.fits(spec)) {
            throw new IllegalArgumentException("state " + state + " does not fit the store's " + spec);
        }
        System.arraycopy(state.data(), 0, kv[slot], 0, kv[slot].length);
        if (z != null) {
            System.arraycopy(state.normalizerData(), 0, z[slot], 0, z[slot].length);
        }
    }

    @Override
    public void copyIn(int first, int count, ByteBuffer kvBytes, ByteBuffer zBytes) {
        StateStore.checkRange(spec, slots(), first, count, kvBytes, zBytes);
        FloatBuffer f = kvBytes.slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
        FloatBuffer g = z == null ? null : zBytes.slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
        for (int s = first; s < first + count; s++) {
            f.get(kv[s]);
            if (g != null) {
                g.get(z[s]);
            }
        }
    }

    @Override
    public void copyOut(int first, int count, ByteBuffer kvBytes, ByteBuffer zBytes) {
        StateStore.checkRange(spec, slots(), first, count, kvBytes, zBytes);
        FloatBuffer f = kvBytes.slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
        FloatBuffer g = z == null ? null : zBytes.slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
        for (int s = first; s < first + count; s++) {
            f.put(kv[s]);
            if (g != null) {
                g.put(z[s]);
            }
        }
    }

    @Override
    public void close() {
        kv = null;
        z = null;
    }

    @Override
    public String toString() {
        return "HostStateStore[" + (kv == null ? "closed" : kv.length + " slots") + ", " + spec + "]";
    }
}
