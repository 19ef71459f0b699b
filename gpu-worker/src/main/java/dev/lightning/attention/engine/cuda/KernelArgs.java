package dev.lightning.attention.engine.cuda;

/**
 * The Java mirror of {@code struct LightningArgs} (lightning_args.cuh): the one argument every
 * lightning kernel takes, by value. Fields are set by name and written at the struct's offsets
 * ({@link ArgStruct}); unset pointers are null and unset numbers 0, which the kernels read as
 * "absent". {@link #verify} holds this mirror against the layout the loaded module reports, so a
 * change on one side only fails loudly at load time, not as wrong numbers.
 */
final class KernelArgs extends ArgStruct<KernelArgs.Field, KernelArgs> {
    /** Fields in declaration order: 8-byte ones first, then 4-byte ones (no padding in C). */
    enum Field implements ArgStruct.Field {
        Q(8), K(8), V(8), O(8), SLOPES(8), INCOMING(8), INCOMING_NORM(8), STATES(8), STATES_NORM(8), CHECKPOINTS(8),
        CHECKPOINT_NORMS(8), SCAN_LOCALS(8), SCAN_LOCAL_NORMS(8), SCAN_FINAL(8), SCAN_FINAL_NORM(8), POSITION(8),
        FIRST_CHECKPOINT(8), N(4), HEADS(4), HEADS_Q(4), HEADS_K(4), HEADS_V(4), DK(4), DV(4), SEG_TOKENS(4),
        CHECKPOINT_EVERY(4), FEATURE_MAP(4), NORMALIZE(4), SCAN_COUNT(4), SCAN_EVERY(4), SCAN_SUB_TOKENS(4),
        SCAN_OUT_COUNT(4), SCALE(4), EPS(4), LEAD_TOKENS(4);

        private final int size;

        Field(int size) {
            this.size = size;
        }

        @Override
        public int size() {
            return size;
        }
    }

    /** sizeof(LightningArgs). */
    static final int SIZE = ArgStruct.sizeOf(Field.class);

    KernelArgs() {
        super(SIZE);
    }

    @Override
    KernelArgs self() {
        return this;
    }

    /** A copy of these arguments, to change a few fields for another launch. */
    KernelArgs copy() {
        return copyInto(new KernelArgs());
    }

    /**
     * Holds this mirror against {@code layout}: sizeof(LightningArgs) and every field's offset as
     * the module's {@code lightning_args_layout} kernel wrote them.
     */
    static void verify(int[] layout) {
        ArgStruct.verify("LightningArgs", "lightning_args.cuh", "KernelArgs", Field.values(), SIZE, layout);
    }
}
