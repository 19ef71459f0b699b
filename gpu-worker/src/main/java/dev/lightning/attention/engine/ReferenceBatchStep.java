package dev.lightning.attention.engine;

import dev.lightning.attention.engine.reference.RecurrentReference;
import dev.lightning.attention.tensor.TokenTensor;

/**
 * The float64 definition of a batch step: each sequence on its own through
 * {@link RecurrentReference} (float64 inside the call, the state rounded to float32 once at its
 * end), from its slot's state, writing its rows of o and its new state back into the slot. What
 * the fast steps are held to; slow on purpose.
 */
final class ReferenceBatchStep implements BatchStep {
    private final AttentionSpec spec;
    private final RecurrentReference recurrence = new RecurrentReference();
    /** It holds nothing to free, but refuses calls once closed as the CPU and GPU steps do (README says so of every step). */
    private boolean closed;

    ReferenceBatchStep(AttentionSpec spec) {
        this.spec = spec;
    }

    @Override
    public String name() {
        return recurrence.name();
    }

    @Override
    public String device() {
        return "cpu";
    }

    @Override
    public AttentionSpec spec() {
        return spec;
    }

    @Override
    public StateStore allocate(int slots) {
        checkOpen();
        return new HostStateStore(spec, slots, name());
    }

    @Override
    public void step(StateStore states, TokenBatch batch, TokenTensor o) {
        checkOpen();
        BatchStep.check(this, states, batch, o);
        HostStateStore store = HostStateStore.of(states, name());
        for (int i = 0; i < batch.count(); i++) {
            int from = batch.start(i);
            int n = batch.length(i);
            int slot = batch.slot(i);
            LightningState next = recurrence.forward(spec, batch.q().slice(from, n), batch.k().slice(from, n),
                    batch.v().slice(from, n), store.read(slot), o.slice(from, n));
            store.write(slot, next);
        }
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("reference batch step is closed: make a new one (BatchStep.reference)");
        }
    }

    @Override
    public void close() {
        closed = true;
    }
}
