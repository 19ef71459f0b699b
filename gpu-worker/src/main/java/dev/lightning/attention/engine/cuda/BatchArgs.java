package dev.lightning.attention.engine.cuda;

/**
 * The Java mirror of {@code struct LightningBatchArgs} (lightning_batch_args.cuh): the one argument
 * of the batch-step kernels, by value, filled by {@link CudaBatchStep}. Held against the module's
 * {@code lightning_batch_args_layout} at load time ({@link #verify}), like {@link KernelArgs}.
 */
final class BatchArgs extends ArgStruct<BatchArgs.Field, BatchArgs> {
    /** Fields in declaration order: 8-byte ones first, then 4-byte ones (no padding in C). */
    enum Field implements ArgStruct.Field {
        Q(8), K(8), V(8), O(8), SLOPES(8), STATES(8), NORMS(8), OFFSETS(8), SLOTS(8), COUNT(4), HEADS(4), HEADS_Q(4),
        HEADS_K(4), HEADS_V(4), DK(4), DV(4), TILES_PER_CTA(4), GROUP(4), FEATURE_MAP(4), NORMALIZE(4), SCALE(4),
        EPS(4), RESERVED(4);

        private final int size;

        Field(int size) {
            this.size = size;
        }

        @Override
        public int size() {
            return size;
        }
    }

    /** sizeof(LightningBatchArgs). */
    static final int SIZE = ArgStruct.sizeOf(Field.class);

    BatchArgs() {
        super(SIZE);
    }

    @Override
    BatchArgs self() {
        return this;
    }

    /** Holds this mirror against the layout the module's {@code lightning_batch_args_layout} kernel wrote. */
    static void verify(int[] layout) {
        ArgStruct.verify("LightningBatchArgs", "lightning_batch_args.cuh", "BatchArgs", Field.values(), SIZE, layout);
    }
}
