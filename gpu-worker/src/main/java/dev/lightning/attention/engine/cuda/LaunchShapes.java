package dev.lightning.attention.engine.cuda;

/**
 * The kernels' launch shapes as the loaded modules report them ({@code lightning_launch_shapes} in
 * lightning.cu, {@code lightning_wg_launch_shapes} in lightning_sm90.cu): threads and value
 * columns per CTA of each family, and their dynamic shared memory for every Dk. The CUDA sources
 * define each of these once; the host reads them here instead of keeping copies of the formulas.
 * The chunk is the one value the host also holds itself ({@link TensorCoreLayout#CHUNK}, for the
 * plans it makes without a device): {@link #of} refuses a module that disagrees.
 */
final class LaunchShapes {
    /** Per-dk values sit at {@code row * DK_SLOTS + dk} of a report (LIGHTNING_SHAPES_DK). */
    static final int DK_SLOTS = 257;
    /** Ints a report holds. */
    static final int REPORT_INTS = 6 * DK_SLOTS;

    final int chunk;
    final int genericColumns;
    /** Value columns a CTA of the float32 kernels' "_c16" entries (blocks too small for {@link #genericColumns}). */
    final int genericNarrowColumns;
    final int genericThreads;
    final int tcThreadsNarrow;
    final int tcThreadsWide;
    final int tcColumns;
    final int tcNarrowMaxDk;
    /** The narrow family's "_n64" kernels (one state m-tile a state warp) take dk up to this; 0: none. */
    final int tcSmallMaxDk;
    /** 0 when there is no Hopper module. */
    final int hopperColumns;
    final int hopperThreads;
    final int hopperMaxDk;
    /** The Hopper module's paired kernels (two heads a CTA) take dk = dv = this; 0: none (or no module). */
    final int hopperPairD;
    /** Dynamic shared memory of the paired Hopper forward kernel (the unpaired one's less its masked S tiles). */
    final int hopperPairForwardBytes;
    private final int[] portable;
    private final int[] hopper;

    private LaunchShapes(int[] portable, int[] hopper) {
        this.portable = portable.clone();
        this.hopper = hopper == null ? null : hopper.clone();
        chunk = portable[0];
        genericColumns = portable[1];
        genericThreads = portable[2];
        genericNarrowColumns = portable[8];
        tcThreadsNarrow = portable[3];
        tcThreadsWide = portable[4];
        tcColumns = portable[5];
        tcNarrowMaxDk = portable[6];
        tcSmallMaxDk = portable[7];
        hopperColumns = hopper == null ? 0 : hopper[0];
        hopperThreads = hopper == null ? 0 : hopper[1];
        hopperMaxDk = hopper == null ? 0 : hopper[2];
        hopperPairD = hopper == null ? 0 : hopper[3];
        hopperPairForwardBytes = hopper == null ? 0 : hopper[4];
    }

    /**
     * The shapes of the portable module's report and the Hopper module's ({@code null} when it is
     * not loaded), checked for sense: a chunk other than the host's, or a size that is not positive,
     * is a broken build.
     */
    static LaunchShapes of(int[] portable, int[] hopper) {
        if (portable.length != REPORT_INTS || (hopper != null && hopper.length != REPORT_INTS)) {
            throw new IllegalStateException("a launch-shape report holds " + REPORT_INTS + " ints, got " + portable.length
                    + (hopper == null ? "" : " and " + hopper.length));
        }
        if (portable[0] != TensorCoreLayout.CHUNK) {
            throw new IllegalStateException("the kernels work in chunks of " + portable[0] + " tokens, the host plans "
                    + "with " + TensorCoreLayout.CHUNK + " (TensorCoreLayout.CHUNK): rebuild the PTX or change both");
        }
        LaunchShapes s = new LaunchShapes(portable, hopper);
        for (int dk = 1; dk < DK_SLOTS; dk++) {
            if (s.genericSharedBytes(dk) <= 0 || s.genericNarrowSharedBytes(dk) <= 0 || s.tensorCoreSharedBytes(dk) <= 0
                    || s.tensorCoreMinSharedBytes(dk) <= 0
                    || s.tensorCoreMinSharedBytes(dk) > s.tensorCoreSharedBytes(dk)
                    || (dk <= s.hopperMaxDk && (s.hopperSharedBytes(dk, true) <= 0 || s.hopperSharedBytes(dk, false) <= 0))) {
                throw new IllegalStateException("the kernels report no shared-memory size for dk = " + dk);
            }
        }
        for (int dk = 1; dk < DK_SLOTS; dk++) {
            if ((dk <= s.tcNarrowMaxDk) != (s.tensorCoreQ1SharedBytes(dk) > 0)) {
                throw new IllegalStateException("the mma.sync kernels' _q1 entries report "
                        + s.tensorCoreQ1SharedBytes(dk) + " bytes at dk = " + dk + ": expected a size up to dk = "
                        + s.tcNarrowMaxDk + ", 0 above; rebuild the PTX");
            }
        }
        if (s.genericNarrowColumns <= 0 || s.genericNarrowColumns >= s.genericColumns) {
            throw new IllegalStateException("the float32 kernels' _c16 entries report " + s.genericNarrowColumns
                    + " value columns a CTA, the others " + s.genericColumns + ": expected fewer; rebuild the PTX");
        }
        if (s.hopperPairD > 0 && s.hopperPairForwardBytes <= 0) {
            throw new IllegalStateException("the Hopper module reports paired kernels (dk = dv = " + s.hopperPairD
                    + ") but no shared-memory size for their forward kernel: rebuild the PTX");
        }
        return s;
    }

    /** Dynamic shared memory of the float32 kernels at this dk. */
    int genericSharedBytes(int dk) {
        return portable[DK_SLOTS + dk];
    }

    /** Dynamic shared memory of the float32 kernels' "_c16" entries ({@link #genericNarrowColumns} a CTA) at this dk. */
    int genericNarrowSharedBytes(int dk) {
        return portable[4 * DK_SLOTS + dk];
    }

    /** One width of the float32 kernels: the entries' name suffix, value columns a CTA, dynamic shared memory. */
    record Generic(String suffix, int columns, int bytes) {
    }

    /**
     * The float32 kernels a block of {@code limit} bytes holds at this dk: the 32-column entries where they fit, else
     * the "_c16" ones (each of their CTAs forms the chunk's scores itself, so they do more work), else null.
     */
    Generic genericWithin(int dk, int limit) {
        if (genericSharedBytes(dk) <= limit) {
            return new Generic("", genericColumns, genericSharedBytes(dk));
        }
        if (genericNarrowSharedBytes(dk) <= limit) {
            return new Generic("_c16", genericNarrowColumns, genericNarrowSharedBytes(dk));
        }
        return null;
    }

    /** Dynamic shared memory of the mma.sync kernels at this dk (narrow or wide, as dk picks). */
    int tensorCoreSharedBytes(int dk) {
        return portable[2 * DK_SLOTS + dk];
    }

    /**
     * The least dynamic shared memory the mma.sync kernels run in at this dk (two pipeline stages,
     * tc_min_smem_bytes): they take as many stages as a launch's bytes hold, so a GPU whose blocks get
     * less than {@link #tensorCoreSharedBytes} (an A100) runs them with fewer.
     */
    int tensorCoreMinSharedBytes(int dk) {
        return portable[3 * DK_SLOTS + dk];
    }

    /**
     * The least dynamic shared memory the mma.sync kernels' "_q1" forward (one Q tile beside two stages of K and V,
     * the narrow family's block) and the narrow states kernel it pairs with run in at this dk, tc_q1_min_smem_bytes;
     * 0 above {@link #tcNarrowMaxDk} (none). A 99 KB block holds it from dk = 81, where two stages of the narrow
     * forward stop fitting, to 128 (100,448 bytes there).
     */
    int tensorCoreQ1SharedBytes(int dk) {
        return portable[5 * DK_SLOTS + dk];
    }

    /** Threads per CTA of the mma.sync kernels at this dk. */
    int tensorCoreThreads(int dk) {
        return dk <= tcNarrowMaxDk ? tcThreadsNarrow : tcThreadsWide;
    }

    /**
     * Appended to an mma.sync kernel's name: the wide family's kernels end in "_wide", the narrow
     * family's for dk up to {@link #tcSmallMaxDk} in "_n64" (the same code with one state m-tile a
     * state warp, which at dk <= 64 is all there is: the others compute a dead second tile).
     */
    String tensorCoreSuffix(int dk) {
        return tensorCoreSuffix(dk, true);
    }

    /** {@link #tensorCoreSuffix(int)}; {@code small} false: the narrow family's kernels at dk <= 64 too (benchmark A/B). */
    String tensorCoreSuffix(int dk, boolean small) {
        return small && dk <= tcSmallMaxDk ? "_n64" : dk <= tcNarrowMaxDk ? "" : "_wide";
    }

    /** Dynamic shared memory of the Hopper forward or states kernel at this dk (the module must be loaded). */
    int hopperSharedBytes(int dk, boolean forward) {
        return hopper[(forward ? 1 : 2) * DK_SLOTS + dk];
    }

    /**
     * Whether the Hopper kernels take this shape: loaded, Dk up to their maximum, and Dk and Dv
     * above {@link TensorCoreLayout#HOPPER_MIN_DK} - 1 and the mma.sync kernels' columns (they pad
     * Dk to their maximum and cover twice the columns, so smaller widths would be half zeros or
     * half idle; the mma.sync kernels keep those).
     */
    boolean hopperFits(int dk, int dv) {
        return hopperTakes(dk) && dk >= TensorCoreLayout.HOPPER_MIN_DK && dv > tcColumns;
    }

    /**
     * Whether the Hopper module's paired kernels take this head layout's widths and count: Dk = Dv =
     * {@link #hopperPairD} and an even number of heads (a CTA takes heads 2x and 2x + 1). The other
     * conditions (no grouping, no normalization) are the spec's, checked by {@link Kernels#choose}.
     */
    boolean hopperPairs(int dk, int dv, int heads) {
        return hopperPairD > 0 && dk == hopperPairD && dv == hopperPairD && heads % 2 == 0;
    }

    /** Whether the Hopper kernels are loaded and compute this Dk at all (they pad it to their maximum). */
    boolean hopperTakes(int dk) {
        return hopper != null && dk <= hopperMaxDk;
    }
}
