package dev.lightning.attention.engine.cuda;

/**
 * How one GPU launch cuts a window of {@code n} tokens: pass 2 runs {@code segments} segments of
 * {@code segTokens} tokens side by side (the last one shorter); pass 1 computes local states of
 * the tokens before the last segment only, in {@code locals} sub-segments of {@code subTokens}
 * tokens, of which every {@code every}-th starts a segment of pass 2. Host arithmetic only (no
 * GPU), so that it is tested everywhere.
 *
 * @param segments  segments of pass 2 (1: no pass 1)
 * @param segTokens tokens a segment, a multiple of the 64-token chunk
 * @param every     sub-segments of pass 1 a segment
 * @param subTokens tokens a sub-segment of pass 1 ({@code segTokens / every})
 * @param locals    sub-segments of pass 1 ({@code (segments - 1) * every}; 0 with one segment)
 */
record SegmentPlan(int segments, int segTokens, int every, int subTokens, int locals) {
    static final int CHUNK = TensorCoreLayout.CHUNK;

    /**
     * @param n              tokens of the window, at least 1
     * @param ctasPerSegment CTAs a segment runs on (heads x column tiles)
     * @param resident       CTAs the GPU holds at once
     * @param minSegments    at least this many segments (benchmark only: the two-pass path)
     */
    static SegmentPlan of(int n, int ctasPerSegment, int resident, int minSegments) {
        int chunks = (n + CHUNK - 1) / CHUNK;
        // Segments only pay when the heads leave resident CTA slots empty: each costs a read of k
        // and v in pass 1 and a scan step. As many as fill one wave, never a partial second one;
        // none when the heads alone fill half of one.
        int want = 2 * ctasPerSegment >= resident ? 1 : resident / ctasPerSegment;
        want = Math.max(want, minSegments);
        int segments = Math.min(chunks, want);
        int segTokens = (chunks + segments - 1) / segments * CHUNK;
        segments = (n + segTokens - 1) / segTokens;
        if (segments == 1) {
            return new SegmentPlan(1, segTokens, 1, segTokens, 0);
        }
        // Pass 1 covers the tokens before the last segment (pass 2 writes the state after it), cut
        // finer when that fills more of the GPU; sub-segments stay whole chunks.
        int before = segments - 1;
        int segChunks = segTokens / CHUNK;
        int every = Math.max(1, Math.min(segChunks, resident / (before * ctasPerSegment)));
        while (segChunks % every != 0) {
            every--;
        }
        return new SegmentPlan(segments, segTokens, every, segTokens / every, before * every);
    }

    /** Tokens pass 1 covers. */
    long pass1Tokens() {
        return (long) locals * subTokens;
    }
}
