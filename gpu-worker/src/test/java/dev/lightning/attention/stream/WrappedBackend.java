package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

/**
 * A test backend that hands every call to {@code inner}: the tests of the streaming path override the one call they
 * change (count it, fail it, poison its results, hand out other host tensors) and keep the rest.
 */
class WrappedBackend implements AttentionBackend {
    final AttentionBackend inner;

    WrappedBackend(AttentionBackend inner) {
        this.inner = inner;
    }

    @Override
    public String name() {
        return "wrapped-" + inner.name();
    }

    @Override
    public String device() {
        return inner.device();
    }

    @Override
    public LightningState advance(AttentionSpec spec, TokenTensor k, TokenTensor v, LightningState state) {
        return inner.advance(spec, k, v, state);
    }

    @Override
    public LightningState forward(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v, LightningState state,
                                  TokenTensor o, Checkpoints checkpoints) {
        return inner.forward(spec, q, k, v, state, o, checkpoints);
    }

    @Override
    public TokenTensor hostTensor(DType dtype, int tokens, int heads, int dim) {
        return inner.hostTensor(dtype, tokens, heads, dim);
    }

    @Override
    public void releaseHostTensor(TokenTensor t) {
        inner.releaseHostTensor(t);
    }
}
