package dev.lightning.attention.engine.cuda;

/**
 * How one GPU launch cuts a window of {@code n} tokens: pass 2 runs {@code segments} segments of
 * {@code segTokens} tokens side by side (the last one shorter); pass 1 computes local states of
 * the tokens before the last segment only, in {@code locals} sub-segments of {@code subTokens}
 * tokens, of which every {@code every}-th starts a segment of pass 2. Host arithmetic only (no
 * GPU), so that it is tested everywhere.
 *
 * <p>The cut is chosen by a model of the two passes' time ({@link #modelChunks}): a kernel's CTA
 * walks its tokens chunk after chunk at a rate taken not to depend on how many CTAs run beside it
 * (the kernels are bound by their own instruction issue, BENCHMARKS.md; near a full GPU that holds
 * only roughly: 128 Hopper CTAs move 1.5 times what 64 move, not twice), so a launch of C CTAs of
 * L chunks each, on a GPU that holds R of them at once, takes {@code ceil(C / R) * L} chunk times
 * (where the memory is the limit, longer: "The memory" below).
 * Pass 2 has {@code ctasPerSegment * segments} CTAs of a segment each; pass 1
 * {@code ctasPerSegment * locals} CTAs of a sub-segment each, at {@link Fill#pass1Cost} of a pass-2
 * chunk time, plus a fixed cost for its launch and the scan. The plan minimizes that over segments
 * and sub-segments, so the last wave of either pass is as full as the tokens allow (for H = 48 on
 * 132 SMs: 2 segments, and pass 1 in 5 sub-segments, 240 CTAs in 2 waves, instead of 2 in 96 CTAs
 * of one half-empty wave), and leaves the window whole where no even cut pays for its pass 1 (H =
 * 96: 96 CTAs of 132, since cutting it in s segments of 96 CTAs each costs a pass 1 of {@code
 * (s - 1) / s} of its tokens to save at most 27% of pass 2; the uneven cut below does pay there).
 * Measured on the H200 (BENCHMARKS.md, 2026-12-03): H = 96 whole is faster than every even cut
 * tried, and the cuts this model adds at H = 48 and H = 8 time the same as the plan before it
 * (within 0.5%, alternated in one process).
 *
 * <p>Uneven plans (issue 13: a plan that fills the GPU whatever H is): two segments, the first, the
 * "lead", shorter ({@code lead < segTokens}), so that pass 1 covers only the lead. The forward
 * launches the long segment's CTAs first (grid z = 0 is segment 1; lightning_args.cuh's
 * lightning_segment), the hardware hands out CTAs in that order as slots free, so the lead's CTAs
 * fill the slots the long segment leaves idle, one after another. Modelled as that greedy list
 * schedule ({@link #modelUnevenChunks}). For H = 96 on 132 slots: 96 long CTAs and 36 lead CTAs
 * start together, the other 60 lead CTAs follow in two rounds; a lead of a quarter of the window
 * ends both at 0.75 n chunk times, plus pass 1 over the lead (0.45 x 0.25 n): 0.86 of the whole
 * window's time in the model, where no uniform cut gains anything. A uniform plan has {@code lead
 * == segTokens} and launches exactly what it did before uneven plans existed. Timed on the H200
 * (session 9): the model's rate a CTA is its weak part, since the GPU goes from 96 busy slots to
 * 132 (Hopper forward: 128 CTAs at 3.0 us a chunk, 96 at 2.64 us), so the gains are smaller than
 * modelled ({@link #UNEVEN_MARGIN}): H = 96 41.3 -> 40.1 ms, H = 80 14.8% against its 3-segment cut.
 *
 * <p>The memory: where the kernels' rate a CTA is known ({@link #HOPPER_CTA_BYTES_PER_SECOND}), each
 * wave (and each stretch of an uneven schedule) takes its CTAs' work and the time the device's memory
 * needs for their bytes ({@link Fill#forwardMemory}) together ({@link #overlap}), and an uneven cut
 * needs only the tie's margin, its extra CTAs being charged. On an H100, whose memory 88 Hopper CTAs
 * fill, that favours cuts with fewer bytes and fewer CTAs at once: timed there (2026-12-05, T =
 * 2^19, against the plans chosen without the memory) H = 8, 24, 36, 48 and 52 in fewer segments or
 * sub-segments 1.005x to 1.051x faster, H = 80, 96, 112 whole 0.994x to 1.067x; H = 64 unchanged.
 * On an H200 the memory is not weighed ({@link #MEMORY_BOUND}).
 *
 * @param segments  segments of pass 2 (1: no pass 1)
 * @param segTokens tokens a segment but the first, a multiple of the 64-token chunk
 * @param every     sub-segments of pass 1 a segment
 * @param subTokens tokens a sub-segment of pass 1 ({@code lead / every})
 * @param locals    sub-segments of pass 1 ({@code (segments - 1) * every}; 0 with one segment)
 * @param lead      tokens of segment 0: {@code segTokens} (uniform), or fewer, whole chunks (uneven:
 *                  then {@code segments == 2} and {@code locals == every})
 */
record SegmentPlan(int segments, int segTokens, int every, int subTokens, int locals, int lead) {
    static final int CHUNK = TensorCoreLayout.CHUNK;
    /**
     * Most CTAs a pass may have, in full waves of the GPU: more waves shrink the last wave's share
     * further but each segment's and sub-segment's state takes device memory (the backend reserves
     * {@link #maxStates} of them) and a scan step. Nor do they pay in time: on the H200 cuts into 3 to 4
     * whole waves (H = 40, 48, 56 at T = 2^20, D = 128) took 0.996x to 1.064x the time of the plans this bound
     * gives, a full GPU moving about the bytes a second a partly idle one does at the card's power
     * limit (BENCHMARKS.md, "Cuts that fill whole waves", session 10). Pass 1 alone in more waves neither:
     * H = 96's lead in 4 to 11 sub-segments (3 to 8 waves) and H = 48's pass 1 in 8 or 11 ran 0.979x to 1.000x
     * the plans this bound gives, inside the 1.4% to 2.8% by which the same plan timed against itself varied,
     * where the model put them 1.4% to 3.3% ahead (BENCHMARKS.md, "Pass 1 in more waves, not kept", 2026-12-05).
     */
    static final int MAX_WAVES = 2;
    /**
     * Time of a CTA's pass-1 chunk over a pass-2 chunk's, as measured on an H200 with the Hopper
     * kernels (BENCHMARKS.md, 2026-11-22, tc_check --bench, T = 2^20, H = 64, D = 128: states
     * kernel 11.0 ms, forward 24.6 ms, both over every token on 128 CTAs: 0.45; on 64 CTAs 14.6 and
     * 37.6 ms: 0.39). The states kernel reads half the bytes and does under half the products.
     */
    static final double PASS1_COST = 0.45;
    /**
     * Bytes a second one CTA of the Hopper forward moves while the memory keeps up (BF16, Dk = Dv = 128:
     * the bytes of q, k, v and o of its head): on an H100 80GB HBM3 (2026-12-05, DeviceBench --ab, T =
     * 2^19, H = 64, one segment) 64 CTAs each moved 512 MiB in 15.67 ms, 34.3 GB/s. With the H100's
     * copy rate ({@link #COPY_SHARE}) 88 CTAs fill its memory, fewer than its 132 SMs: there the cut
     * that moves fewest bytes can win where the CTAs' work alone says otherwise (H = 96: the whole
     * window in 18.52 ms against the uneven cut's 19.77, which the CTAs' work puts 14% ahead). On an
     * H200 the same CTAs moved 27 GB/s each under its power limit (T = 2^20, one segment, 39.85 ms,
     * 2026-12-03), and its memory is not weighed ({@link #MEMORY_BOUND}). Other kernels: not measured,
     * not weighed.
     */
    static final double HOPPER_CTA_BYTES_PER_SECOND = 34.3e9;
    /**
     * The memory is weighed only on a GPU whose forward CTAs, all its slots busy, would ask at least
     * this many times what its memory gives: an H100's 132 ask 1.50 times (88 fill it), and there the
     * memory set the pace in every timing (BENCHMARKS.md, "The first H100 runs": 0.93 to 0.98 of its
     * copy rate; "Segment plans that weigh the memory"); an H200's 132 ask 1.05 times (the driver's
     * peak 4.814 TB/s: 126 fill it), and there the SMs at the 700 W limit set it (0.67 to 0.86 of the
     * copy rate, filling idle SMs gave nothing), the plans weighed by the memory ran no faster
     * (2026-12-05: 0.984x to 1.017x of the plans before, where the same plan against itself gave
     * 0.973x to 1.041x) and H = 8 in 16 segments took 3.76 ms at T = 2^20 against 3.33 to 3.58 ms in 33
     * in earlier runs: there the plans stay as the CTAs' work alone chooses them.
     */
    static final double MEMORY_BOUND = 1.25;
    /**
     * How a CTA's work and the memory's time for its bytes combine ({@link #overlap}): their
     * {@code KNEE}-norm, the longer where one dominates and up to 2^(1/4) = 1.19 times either where
     * they are equal, since CTAs that together ask exactly what the memory gives do not all get it.
     * Fitted on the H100 (2026-12-05, DeviceBench --ab, T = 2^19, logs
     * bench/results/2026-12-05-h100-s24-*): 14 pairs of plans at H = 8 to 116 whose time ratios the
     * model with the driver's memory rate puts within 2.3% rms of the measured ones, each pair the
     * right way round; the hard maximum (KNEE infinite) 5.4% and three the wrong way, a knee of 3 or
     * 5 1.9% to 3.2% and none wrong; no memory term 23% and four wrong.
     */
    static final double KNEE = 4;
    /**
     * A device-to-device copy's rate over the memory's peak ({@link CudaDevice#memoryBytesPerSecond}),
     * as DeviceBench measures it: H100 80GB HBM3 3.01 to 3.03 TB/s of 3.352 (0.90); H200 4.26 of 4.814 (0.885).
     */
    static final double COPY_SHARE = 0.9;
    /**
     * Fixed cost of a cut window, in chunk times: the states kernel's and the scan's launches and
     * the scan itself (some 5 to 10 us against about 3 us a 128-wide chunk).
     */
    static final double CUT_COST_CHUNKS = 2;
    /**
     * An uneven cut is taken only where the model puts it this share ahead of the fastest uniform
     * cut. The model takes a CTA's rate as fixed, but the Hopper forward's CTAs slow as more run
     * (2.64 us a chunk with 96 busy SMs, about 3.0 with 128), which an uneven cut's extra CTAs pay.
     * On the H200 (session 9, DeviceBench --ab, 7 alternated rounds in one process, T = 2^20,
     * D = 128, BENCHMARKS.md "Uneven two-segment plans"): H = 80, modelled 20% ahead of its 3-segment
     * cut, measured 14.8%; H = 96, 14% ahead of the whole window, 1.5% (2.4% to 3.5% in separate
     * processes); H = 100, 10%, 0.0%; H = 120, 4.3%, -0.7% (inside the noise): so 120 stays whole
     * and 100 goes uneven for nothing lost. Where the memory is weighed, which charges the extra
     * CTAs, the tie's margin instead ({@link Fill#unevenMargin}).
     */
    static final double UNEVEN_MARGIN = 0.06;
    /** Plans within this share of the fastest modelled one count as equal; the one with fewest states wins. */
    static final double TIE = 0.02;

    /** A uniform plan: every segment {@code segTokens} long (the last one shorter). */
    SegmentPlan(int segments, int segTokens, int every, int subTokens, int locals) {
        this(segments, segTokens, every, subTokens, locals, segTokens);
    }

    SegmentPlan {
        if (lead < 1 || lead > segTokens || (lead < segTokens && (segments != 2 || locals != every))
                || (segments > 1 && lead != every * subTokens)) {
            throw new IllegalArgumentException("a segment plan's lead is segTokens (uniform), or shorter with exactly 2 "
                    + "segments and pass 1 over the lead alone in `every` sub-segments; got " + segments + " segments of "
                    + segTokens + " tokens, lead " + lead + ", pass 1 " + locals + " x " + subTokens + " (every " + every
                    + ")");
        }
    }

    /**
     * The GPU a plan fills.
     *
     * @param ctasPerSegment CTAs a segment runs on (heads x column tiles), the same in both passes
     * @param forwardSlots   CTAs of the forward kernel the GPU holds at once (SMs x CTAs a SM)
     * @param statesSlots    CTAs of the states kernel the GPU holds at once
     * @param pass1Cost      time of a states-kernel chunk over a forward chunk ({@link #PASS1_COST})
     * @param forwardMemory  chunk times the memory takes to move a forward CTA's chunk while the GPU's
     *                       memory is what runs out (the CTA's rate over the memory's, so 1 / forwardMemory
     *                       CTAs saturate it); 0: the memory is not weighed
     * @param statesMemory   the same for a states-kernel CTA's chunk (it moves k and v alone)
     */
    record Fill(int ctasPerSegment, int forwardSlots, int statesSlots, double pass1Cost, double forwardMemory,
                double statesMemory) {
        Fill {
            if (ctasPerSegment < 1 || forwardSlots < 1 || statesSlots < 1 || !(pass1Cost > 0) || !(forwardMemory >= 0)
                    || !(statesMemory >= 0)) {
                throw new IllegalArgumentException("a segment plan needs at least one CTA a segment and one slot a "
                        + "kernel, a positive pass-1 cost and memory costs of 0 or more; got " + ctasPerSegment + " CTAs, "
                        + forwardSlots + " and " + statesSlots + " slots, cost " + pass1Cost + ", memory " + forwardMemory
                        + " and " + statesMemory);
            }
        }

        /** A GPU whose memory the model does not weigh: the CTAs' work alone sets the time. */
        Fill(int ctasPerSegment, int forwardSlots, int statesSlots, double pass1Cost) {
            this(ctasPerSegment, forwardSlots, statesSlots, pass1Cost, 0, 0);
        }

        /**
         * Whether an uneven cut can beat the uniform ones on this GPU: where a segment's CTAs leave
         * slots of their last wave idle ({@code ctasPerSegment} not a multiple of the slots) and two
         * segments do not fit one wave (else a uniform cut fills it). H = 96, 80, 100, 120 on 132
         * slots; not H = 8, 48 or 64, whose plans need no uneven search (weighing its lead sizes cost
         * 1.2 to 2 ms a window, which DeviceBench timed as kernel time; SegmentStates now keeps each
         * window size's plan). Where the memory is weighed, always: a short lead's smaller pass 1 can
         * pay even where two segments fit one wave.
         */
        boolean unevenMayPay() {
            return forwardMemory > 0 || ctasPerSegment % forwardSlots != 0 && 2L * ctasPerSegment > forwardSlots;
        }

        /**
         * The share by which an uneven cut must beat the uniform ones in the model: {@link #UNEVEN_MARGIN}
         * for the CTAs' work alone, which takes extra CTAs as free; {@link #TIE} where the memory is
         * weighed, which charges them.
         */
        double unevenMargin() {
            return forwardMemory > 0 ? TIE : UNEVEN_MARGIN;
        }

        /** Most segments a plan may cut: pass 2 within {@link #MAX_WAVES} waves, or the forced minimum. */
        int maxSegments(int minSegments) {
            return Math.max(Math.max(1, minSegments), MAX_WAVES * forwardSlots / ctasPerSegment);
        }

        /** Most pass-1 sub-segments a plan may cut: within {@link #MAX_WAVES} waves, or one a segment but the last. */
        int maxLocals(int minSegments) {
            return Math.max(maxSegments(minSegments) - 1, MAX_WAVES * statesSlots / ctasPerSegment);
        }
    }

    /** A GPU whose two kernels have the same slots, at the measured pass-1 cost (tests, and callers without the states kernel's occupancy). */
    static SegmentPlan of(int n, int ctasPerSegment, int resident, int minSegments) {
        return of(n, new Fill(ctasPerSegment, resident, resident, PASS1_COST), minSegments);
    }

    /**
     * @param n           tokens of the window, at least 1
     * @param fill        the CTAs a segment takes and the slots of each kernel
     * @param minSegments at least this many segments (benchmark only: the two-pass path), at most the chunks
     */
    static SegmentPlan of(int n, Fill fill, int minSegments) {
        if (n < 1) {
            throw new IllegalArgumentException("a segment plan of " + n + " tokens");
        }
        int chunks = (n + CHUNK - 1) / CHUNK;
        int lo = Math.min(chunks, Math.max(1, minSegments));
        int hi = Math.min(chunks, Math.max(lo, fill.maxSegments(minSegments)));
        int maxLocals = fill.maxLocals(minSegments);
        // Every (segments, every) the bounds allow, with its modelled time; the fastest, and among
        // those within TIE of it the one with fewest segments (pass 1 reads fewer tokens), then
        // fewest sub-segments.
        double best = Double.MAX_VALUE;
        java.util.List<Candidate> all = new java.util.ArrayList<>();
        for (int s = lo; s <= hi; s++) {
            int maxEvery = s == 1 ? 1 : Math.max(1, maxLocals / (s - 1));
            for (int e = 1; e <= maxEvery; e++) {
                int segChunks = ceil(ceil(chunks, s), e) * e;
                if (ceil(chunks, segChunks) != s) {
                    continue; // this cut has fewer segments: the same as a smaller s
                }
                Candidate c = new Candidate(s, segChunks, e, modelChunks(fill, s, segChunks, e));
                all.add(c);
                best = Math.min(best, c.chunkTimes);
            }
        }
        // Uneven cuts: the fastest of them (the first listed, fewest sub-segments then shortest
        // lead, among equals) where it beats every uniform cut by more than its margin (Fill.unevenMargin) in the
        // model; else the uniform cuts as before.
        if (lo <= 2 && hi >= 2 && fill.unevenMayPay()) {
            Candidate fastestUneven = null;
            for (Candidate c : unevenCandidates(fill, chunks, maxLocals)) {
                if (fastestUneven == null || c.chunkTimes < fastestUneven.chunkTimes) {
                    fastestUneven = c;
                }
            }
            if (fastestUneven != null && fastestUneven.chunkTimes * (1 + fill.unevenMargin()) < best) {
                return uneven(fastestUneven.segChunks, fastestUneven.leadChunks, fastestUneven.every);
            }
        }
        for (Candidate c : all) { // listed by segments, then every
            if (c.chunkTimes <= best * (1 + TIE)) {
                return of(c.segments, c.segChunks, c.every);
            }
        }
        // lo segments of whole chunks always exist (lo <= chunks); reached only if lo's cuts all merge
        int segChunks = ceil(chunks, lo);
        return of(ceil(chunks, segChunks), segChunks, 1);
    }

    /** A cut {@link #of(int, Fill, int)} considers, with its modelled time; {@code leadChunks == segChunks}: uniform. */
    private record Candidate(int segments, int segChunks, int every, double chunkTimes, int leadChunks) {
        Candidate(int segments, int segChunks, int every, double chunkTimes) {
            this(segments, segChunks, every, chunkTimes, segChunks);
        }
    }

    /** Lead sizes tried: whole chunks at every 1/LEAD_GRID of the window (all of them in short windows). */
    static final int LEAD_GRID = 64;

    /**
     * The uneven cuts of {@code chunks} chunks: a lead of {@code k / LEAD_GRID} of the window (k = 1,
     * 2, ...; every chunk count where the chunks are fewer), rounded up to whole sub-segments of
     * pass 1, shorter than the rest; pass 1 in every count of sub-segments the bounds allow. Some
     * LEAD_GRID x maxLocals candidates, each a list schedule of 2 x ctasPerSegment CTAs.
     */
    private static java.util.List<Candidate> unevenCandidates(Fill fill, int chunks, int maxLocals) {
        java.util.List<Candidate> out = new java.util.ArrayList<>();
        // pass 2's schedule depends on the lead alone: once a lead, not once a (lead, every)
        java.util.Map<Integer, Double> pass2 = new java.util.HashMap<>();
        for (int e = 1; e <= Math.max(1, maxLocals); e++) {
            int previous = 0;
            for (int k = 1; k < LEAD_GRID; k++) {
                int lead = ceil(Math.max(1, (int) ((long) chunks * k / LEAD_GRID)), e) * e;
                int rest = chunks - lead;
                if (lead >= rest) {
                    break;
                }
                if (lead == previous) {
                    continue;
                }
                previous = lead;
                double schedule = pass2.computeIfAbsent(lead, l -> listSchedule(fill, chunks - l, l));
                out.add(new Candidate(2, rest, e, unevenChunks(fill, schedule, lead, e), lead));
            }
        }
        return out;
    }

    /** The uneven plan: a lead of {@code leadChunks} chunks in {@code every} sub-segments of pass 1, then {@code restChunks}. */
    private static SegmentPlan uneven(int restChunks, int leadChunks, int every) {
        return new SegmentPlan(2, restChunks * CHUNK, every, leadChunks / every * CHUNK, every, leadChunks * CHUNK);
    }

    /** The plan of {@code segments} segments of {@code segChunks} chunks, pass 1 in {@code every} sub-segments a segment (one segment: whole). */
    private static SegmentPlan of(int segments, int segChunks, int every) {
        int segTokens = segChunks * CHUNK;
        return segments == 1 ? new SegmentPlan(1, segTokens, 1, segTokens, 0)
                : new SegmentPlan(segments, segTokens, every, segTokens / every, (segments - 1) * every);
    }

    /**
     * The cut of a window of {@code n} tokens into (about) {@code segments} segments of whole chunks,
     * each cut into {@code every} pass-1 sub-segments (benchmark: to time a given plan). Segments are
     * {@code every} chunks apart in size, so fewer may come out than asked where the chunks are few.
     */
    static SegmentPlan cut(int n, int segments, int every) {
        if (n < 1 || segments < 1 || every < 1) {
            throw new IllegalArgumentException("a cut of " + n + " tokens into " + segments + " segments of " + every
                    + " sub-segments");
        }
        int chunks = (n + CHUNK - 1) / CHUNK;
        int segChunks = ceil(ceil(chunks, Math.min(segments, chunks)), every) * every;
        return of(ceil(chunks, segChunks), segChunks, every);
    }

    /**
     * The uneven cut of a window of {@code n} tokens (benchmark: to time a given plan): a lead of
     * {@code leadChunks} chunks (rounded up to whole sub-segments), pass 1 over it in {@code every}
     * sub-segments, then the rest. Where the lead would not be shorter than the rest, the uniform
     * cut of 2 segments ({@link #cut}) instead.
     */
    static SegmentPlan cutLead(int n, int leadChunks, int every) {
        if (n < 1 || leadChunks < 1 || every < 1) {
            throw new IllegalArgumentException("an uneven cut of " + n + " tokens with a lead of " + leadChunks
                    + " chunks in " + every + " sub-segments");
        }
        int chunks = (n + CHUNK - 1) / CHUNK;
        int lead = ceil(leadChunks, every) * every;
        return lead < chunks - lead ? uneven(chunks - lead, lead, every) : cut(n, 2, every);
    }

    /**
     * Modelled time of an uneven cut, in forward chunk times: pass 1 over the lead as
     * {@link #modelChunks} counts it, and pass 2 as the greedy list schedule of its CTAs in launch
     * order (the long segment's {@code ctasPerSegment} CTAs of {@code restChunks} chunks, then the
     * lead's of {@code leadChunks}), each taking the slot that frees first, on
     * {@code forwardSlots} slots: the hardware's dispatch of a grid's CTAs in block order.
     */
    static double modelUnevenChunks(Fill fill, int restChunks, int leadChunks, int every) {
        return unevenChunks(fill, listSchedule(fill, restChunks, leadChunks), leadChunks, every);
    }

    /** An uneven cut's modelled time from pass 2's schedule ({@link #listSchedule}): plus pass 1 over the lead and the cut's fixed cost. */
    private static double unevenChunks(Fill fill, double pass2, int leadChunks, int every) {
        return pass2 + pass1Chunks(fill, every, leadChunks / every) + CUT_COST_CHUNKS;
    }

    /**
     * Pass 1's modelled time, in forward chunk times: {@code subSegments} sub-segments of
     * {@code subChunks} chunks, each on every CTA of a segment, in waves of the states kernel's
     * slots, each wave at {@link Fill#pass1Cost} a chunk or its memory's time ({@link #waves}). Even and
     * uneven cuts alike.
     */
    private static double pass1Chunks(Fill fill, long subSegments, int subChunks) {
        return subChunks * waves(fill.ctasPerSegment() * subSegments, fill.statesSlots(), fill.pass1Cost(),
                fill.statesMemory());
    }

    /** Time of {@code work} and {@code memory} overlapped ({@link #KNEE}); the work alone where the memory is not weighed. */
    static double overlap(double work, double memory) {
        return memory == 0 ? work : Math.pow(Math.pow(work, KNEE) + Math.pow(memory, KNEE), 1 / KNEE);
    }

    /**
     * Time of a chunk for {@code ctas} CTAs in waves of {@code slots}: each wave a CTA's {@code work} and
     * the memory's time for its CTAs ({@code memory} each) {@link #overlap overlapped}. Without the memory
     * (0): the waves times the work.
     */
    private static double waves(long ctas, int slots, double work, double memory) {
        long full = ctas / slots;
        long last = ctas % slots;
        return full * overlap(work, slots * memory) + (last > 0 ? overlap(work, last * memory) : 0);
    }

    /**
     * Pass 2 of an uneven cut as the greedy list schedule of its CTAs in launch order, in chunk
     * times: the long segment's {@code ctasPerSegment} CTAs of {@code restChunks}, then the lead's of
     * {@code leadChunks}, each on the slot that frees first of {@code forwardSlots} (slot free times
     * in a heap of primitive longs: this runs for every lead size a plan weighs). Where the memory
     * is weighed, each stretch of the schedule in which k CTAs run takes {@code overlap(1, k x}
     * {@link Fill#forwardMemory}{@code )} times as long: the CTAs share the memory evenly, so they keep
     * their order and only the clock stretches.
     */
    private static double listSchedule(Fill fill, int restChunks, int leadChunks) {
        int ctas = fill.ctasPerSegment();
        int slots = Math.min(fill.forwardSlots(), 2 * ctas);
        long[] heap = new long[slots]; // all free at 0: a valid min-heap
        long[] starts = new long[2 * ctas];
        long[] ends = new long[2 * ctas];
        long end = 0;
        for (int i = 0; i < 2 * ctas; i++) {
            starts[i] = heap[0];
            long done = heap[0] + (i < ctas ? restChunks : leadChunks);
            ends[i] = done;
            end = Math.max(end, done);
            // replace the root (the earliest free slot) and sift it down
            int at = 0;
            while (true) {
                int child = 2 * at + 1;
                if (child >= slots) {
                    break;
                }
                if (child + 1 < slots && heap[child + 1] < heap[child]) {
                    child++;
                }
                if (heap[child] >= done) {
                    break;
                }
                heap[at] = heap[child];
                at = child;
            }
            heap[at] = done;
        }
        if (fill.forwardMemory() == 0) {
            return end;
        }
        // the running CTAs between consecutive starts and ends (starts come sorted from the heap's root)
        java.util.Arrays.sort(ends);
        double time = 0;
        long at = 0;
        int running = 0;
        for (int i = 0, j = 0; j < ends.length; ) {
            boolean start = i < starts.length && starts[i] <= ends[j];
            long next = start ? starts[i++] : ends[j++];
            time += (next - at) * overlap(1, running * fill.forwardMemory());
            at = next;
            running += start ? 1 : -1;
        }
        return time;
    }

    /** Whether segment 0 is shorter than the others (see the class comment). */
    boolean uneven() {
        return lead < segTokens;
    }

    /** The first token of segment {@code s}: segment 0 is the lead, the others {@code segTokens} each. */
    long segmentStart(int s) {
        return s == 0 ? 0 : lead + (long) (s - 1) * segTokens;
    }

    /**
     * Modelled time of a cut, in forward chunk times: pass 2's waves of {@code segChunks} chunks, and
     * with more than one segment pass 1's waves of {@code segChunks / every} chunks at the pass-1
     * cost plus the fixed cost of a cut; each wave its work and its memory's time overlapped ({@link #waves}).
     */
    static double modelChunks(Fill fill, int segments, int segChunks, int every) {
        double pass2 = segChunks * waves((long) fill.ctasPerSegment() * segments, fill.forwardSlots(), 1,
                fill.forwardMemory());
        if (segments == 1) {
            return pass2;
        }
        return pass2 + pass1Chunks(fill, (long) (segments - 1) * every, segChunks / every) + CUT_COST_CHUNKS;
    }

    /**
     * Share of pass 2's CTA slots its waves use: segments x CTAs over whole waves of slots (an uneven
     * plan's CTAs are not of one length and run in no waves: {@link #waveEfficiency} counts them).
     */
    double pass2WaveEfficiency(Fill fill) {
        long ctas = (long) fill.ctasPerSegment() * segments;
        return (double) ctas / (ceil(ctas, fill.forwardSlots()) * fill.forwardSlots());
    }

    /** Share of pass 1's CTA slots its waves use (1 with no pass 1). */
    double pass1WaveEfficiency(Fill fill) {
        if (locals == 0) {
            return 1;
        }
        long ctas = (long) fill.ctasPerSegment() * locals;
        return (double) ctas / (ceil(ctas, fill.statesSlots()) * fill.statesSlots());
    }

    /**
     * Share of the GPU's CTA slots the two passes keep busy over the modelled time: the chunk times
     * their CTAs work (pass 1's at the pass-1 cost) over the slots times the modelled time
     * ({@link #modelChunks}; pass 1's slots counted as pass 2's). 1: every slot busy throughout.
     */
    double waveEfficiency(Fill fill) {
        int segChunks = segTokens / CHUNK;
        int leadChunks = lead / CHUNK;
        double busy = (double) fill.ctasPerSegment() * ((segments - 1) * segChunks + leadChunks);
        if (segments > 1) {
            busy += fill.pass1Cost() * fill.ctasPerSegment() * locals * (subTokens / CHUNK);
        }
        return busy / ((double) fill.forwardSlots() * modelChunks(fill));
    }

    /** This plan's modelled time, in forward chunk times ({@link #modelChunks(Fill, int, int, int)}, {@link #modelUnevenChunks}). */
    double modelChunks(Fill fill) {
        return uneven() ? modelUnevenChunks(fill, segTokens / CHUNK, lead / CHUNK, every)
                : modelChunks(fill, segments, segTokens / CHUNK, every);
    }

    /**
     * Most per-segment states (local states, incoming states and states after, one each a
     * sub-segment or segment) any window's plan on {@code fill} holds: what the backend reserves.
     */
    static long maxStates(Fill fill, int minSegments) {
        return fill.maxLocals(minSegments) + 2L * fill.maxSegments(minSegments);
    }

    /** Tokens pass 1 covers. */
    long pass1Tokens() {
        return (long) locals * subTokens;
    }

    private static int ceil(int a, int b) {
        return (a + b - 1) / b;
    }

    private static long ceil(long a, long b) {
        return (a + b - 1) / b;
    }
}
