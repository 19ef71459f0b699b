package dev.lightning.attention.engine.cuda;

/**
 * The Java mirror of {@code struct SoftmaxArgs} (softmax_args.cuh): the one argument of the
 * softmax attention kernels, by value, filled by {@link SoftmaxKernels#args}. Held against the
 * module's {@code softmax_args_layout} at load time ({@link #verify}), like {@link KernelArgs}.
 */
final class SoftmaxArgs extends ArgStruct<SoftmaxArgs.Field, SoftmaxArgs> {
    /** Fields in declaration order: 8-byte ones first, then 4-byte ones (no padding in C). */
    enum Field implements ArgStruct.Field {
        Q(8), K(8), V(8), O(8), LSE(8), Q_START(8), K_START(8), WINDOW(8), NQ(4), NK(4), HEADS_Q(4), HEADS_K(4),
        DK(4), DV(4), SCALE_LOG2(4), RESERVED(4);

        private final int size;

        Field(int size) {
            this.size = size;
        }

        @Override
        public int size() {
            return size;
        }
    }

    /** sizeof(SoftmaxArgs). */
    static final int SIZE = ArgStruct.sizeOf(Field.class);

    SoftmaxArgs() {
        super(SIZE);
    }

    @Override
    SoftmaxArgs self() {
        return this;
    }

    /** Holds this mirror against the layout the module's {@code softmax_args_layout} kernel wrote. */
    static void verify(int[] layout) {
        ArgStruct.verify("SoftmaxArgs", "softmax_args.cuh", "SoftmaxArgs", Field.values(), SIZE, layout);
    }
}
