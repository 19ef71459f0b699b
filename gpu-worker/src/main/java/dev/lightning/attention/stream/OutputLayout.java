package dev.lightning.attention.stream;

import dev.lightning.attention.tensor.SafetensorsHeader;
import dev.lightning.attention.tensor.TensorEntry;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A sequence's output file as the pieces of the sequence write it: every tensor of the file is cut
 * along its first dimension among the pieces, by how its rows follow the tokens ({@link Cut}), and
 * a piece writes its rows through a few streams, each a list of tensors it writes one after the
 * other. The attentions differ only in their columns:
 * <pre>
 *   lightning  stream o: o (a row per token), then final_state and final_normalizer (whole, with the last token)
 *              stream states: states (a row per N tokens); stream normalizers: normalizers (likewise)
 *   softmax    stream o: o (a row per token); stream lse: lse (a row per token)
 * </pre>
 * A stream's rows of one piece lie back to back in the file (checked), so what a piece writes
 * through a stream is one byte range of the file: written there in place, as one part that a
 * concat moves into the file, or as one part file of the parts form ({@link OutputParts}). The
 * shares of all pieces tile the file's data exactly (checked by {@link #tiling}), so the split
 * forms hold the same bytes as the file an unsplit writer gives.
 *
 * <p>The one owner of this cut ({@link #lightning}, {@link #softmax}): the job's split outputs,
 * the parts format and their tests all ask it which rows and bytes a piece writes.
 */
public final class OutputLayout {
    /** How a tensor's rows follow the tokens: how many of them lie before token t. */
    public static final class Cut {
        /** A row per token (o, lse). */
        public static final Cut PER_TOKEN = new Cut(1);
        /** The whole tensor at the end: written with the sequence's last token (the final state). */
        public static final Cut AT_END = new Cut(0);

        /** > 0: a row after every {@code every}-th token; 0: {@link #AT_END}. */
        private final long every;

        private Cut(long every) {
            this.every = every;
        }

        /** A row after every {@code n}-th token (the states recorded every n tokens: after token (c+1)n - 1). */
        public static Cut every(long n) {
            if (n < 1) {
                throw new IllegalArgumentException("a row every " + n + " tokens");
            }
            return n == 1 ? PER_TOKEN : new Cut(n);
        }

        /** The rows of a tensor of {@code rows} rows that lie before token {@code t} of {@code tokens}. */
        long rowsBefore(long t, long tokens, long rows) {
            return every > 0 ? t / every : t >= tokens ? rows : 0;
        }

        @Override
        public String toString() {
            return every == 0 ? "at the end" : every == 1 ? "a row per token" : "a row per " + every + " tokens";
        }
    }

    /** One tensor of a stream and its cut. */
    public static final class Column {
        final String tensor;
        final Cut cut;

        private Column(String tensor, Cut cut) {
            this.tensor = tensor;
            this.cut = cut;
        }
    }

    public static Column column(String tensor, Cut cut) {
        return new Column(tensor, cut);
    }

    /** Rows [from, to) of a tensor. */
    public static final class Slice {
        public final String tensor;
        public final long from;
        public final long to;

        Slice(String tensor, long from, long to) {
            this.tensor = tensor;
            this.from = from;
            this.to = to;
        }
    }

    /** What one piece writes through one stream: its slices, back to back in bytes [begin, begin + bytes) of the file. */
    public static final class Share {
        public final String stream;
        public final List<Slice> slices;
        public final long begin;
        public final long bytes;

        Share(String stream, List<Slice> slices, long begin, long bytes) {
            this.stream = stream;
            this.slices = Collections.unmodifiableList(slices);
            this.begin = begin;
            this.bytes = bytes;
        }
    }

    /** A share with the index of the piece that writes it (see {@link #tiling}). */
    public static final class PieceShare {
        public final int piece;
        public final Share share;

        PieceShare(int piece, Share share) {
            this.piece = piece;
            this.share = share;
        }
    }

    private final SafetensorsHeader header;
    private final long tokens;
    /** Stream name to its columns, only tensors the header holds, no empty stream. */
    private final Map<String, List<Column>> streams = new LinkedHashMap<>();

    /**
     * The layout of the file {@code header} describes, over {@code tokens} tokens, written through
     * {@code streams} (name to columns, in stream order). Columns of tensors the header lacks are
     * left out (optional tensors: final_normalizer, states, lse), and a stream left with none.
     *
     * @throws IllegalArgumentException when a tensor of the header is in no column or in two, or a
     *                                  column's cut does not give its tensor's row count over the tokens
     */
    public OutputLayout(SafetensorsHeader header, long tokens, Map<String, List<Column>> streams) {
        this.header = header;
        this.tokens = tokens;
        Set<String> seen = new HashSet<>();
        for (Map.Entry<String, List<Column>> e : streams.entrySet()) {
            List<Column> present = new ArrayList<>();
            for (Column c : e.getValue()) {
                TensorEntry t = header.tensor(c.tensor);
                if (t == null) {
                    continue;
                }
                if (!seen.add(c.tensor)) {
                    throw new IllegalArgumentException(header.file() + ": tensor " + c.tensor + " is in two columns");
                }
                long rows = c.cut.rowsBefore(tokens, tokens, t.dim(0));
                if (rows != t.dim(0)) {
                    throw new IllegalArgumentException(header.file() + ": tensor " + c.tensor + " has " + t.dim(0)
                            + " rows, its cut (" + c.cut + ") gives " + rows + " over " + tokens + " tokens");
                }
                present.add(c);
            }
            if (!present.isEmpty()) {
                this.streams.put(e.getKey(), present);
            }
        }
        for (String t : header.tensors().keySet()) {
            if (!seen.contains(t)) {
                throw new IllegalArgumentException(header.file() + ": tensor " + t + " is in no stream of the layout");
            }
        }
    }

    /**
     * Lightning attention's output file, as its pieces write it: o a row per token, followed in
     * the same stream by final_state and final_normalizer, which the last piece writes whole after
     * its rows (as a state is written: S, then z, the order of the header); with {@code stateEvery}
     * > 0 (0: none), states and normalizers a row per stateEvery tokens, each a stream of its own
     * (one pass over a piece computes them along with o).
     */
    public static OutputLayout lightning(SafetensorsHeader header, long tokens, int stateEvery) {
        Map<String, List<Column>> streams = new LinkedHashMap<>();
        streams.put("o", List.of(column("o", Cut.PER_TOKEN), column("final_state", Cut.AT_END),
                column("final_normalizer", Cut.AT_END)));
        if (stateEvery > 0) {
            streams.put("states", List.of(column("states", Cut.every(stateEvery))));
            streams.put("normalizers", List.of(column("normalizers", Cut.every(stateEvery))));
        }
        return new OutputLayout(header, tokens, streams);
    }

    /**
     * Softmax attention's output file, as its pieces write it: o and (with --write-lse) lse, each a
     * row per token and each a stream of its own (a query block's rows of o and of lse are written
     * one after the other).
     */
    public static OutputLayout softmax(SafetensorsHeader header, long tokens) {
        Map<String, List<Column>> streams = new LinkedHashMap<>();
        streams.put("o", List.of(column("o", Cut.PER_TOKEN)));
        streams.put("lse", List.of(column("lse", Cut.PER_TOKEN)));
        return new OutputLayout(header, tokens, streams);
    }

    public SafetensorsHeader header() {
        return header;
    }

    public long tokens() {
        return tokens;
    }

    /** The stream names, in order. */
    public List<String> streams() {
        return List.copyOf(streams.keySet());
    }

    /**
     * What the piece of tokens [from, to) writes: per stream, its rows of each column, in stream
     * order; streams in which it has no rows are left out.
     *
     * @throws IllegalStateException when a stream's rows of the piece do not lie back to back in the
     *                               file (a layout whose columns do not follow one another there)
     */
    public List<Share> share(long from, long to) {
        if (from < 0 || to < from || to > tokens) {
            throw new IllegalArgumentException("tokens [" + from + ", " + to + ") of " + tokens);
        }
        List<Share> shares = new ArrayList<>();
        for (Map.Entry<String, List<Column>> e : streams.entrySet()) {
            List<Slice> slices = new ArrayList<>();
            long begin = -1;
            long end = -1;
            for (Column c : e.getValue()) {
                TensorEntry t = header.tensor(c.tensor);
                long rows = t.dim(0);
                long lo = c.cut.rowsBefore(from, tokens, rows);
                long hi = c.cut.rowsBefore(to, tokens, rows);
                if (hi == lo) {
                    continue;
                }
                long rowBytes = t.byteLength() / rows;
                long at = t.begin() + lo * rowBytes;
                if (end >= 0 && at != end) {
                    throw new IllegalStateException(header.file() + ": stream " + e.getKey() + " of tokens [" + from
                            + ", " + to + "): rows [" + lo + ", " + hi + ") of " + c.tensor + " start at byte " + at
                            + ", not where the stream's previous rows end (" + end + ")");
                }
                if (begin < 0) {
                    begin = at;
                }
                end = at + (hi - lo) * rowBytes;
                slices.add(new Slice(c.tensor, lo, hi));
            }
            if (!slices.isEmpty()) {
                shares.add(new Share(e.getKey(), slices, begin, end - begin));
            }
        }
        return shares;
    }

    /**
     * The shares of every piece of a sequence cut into pieces of {@code pieceTokens} tokens, in
     * the order of their bytes in the file.
     *
     * @throws IllegalStateException when they do not tile the file's data exactly: a gap or an
     *                               overlap, or pieces that do not add up to the tokens
     */
    public List<PieceShare> tiling(long[] pieceTokens) {
        List<PieceShare> all = new ArrayList<>();
        long start = 0;
        for (int i = 0; i < pieceTokens.length; i++) {
            for (Share s : share(start, start + pieceTokens[i])) {
                all.add(new PieceShare(i, s));
            }
            start += pieceTokens[i];
        }
        if (start != tokens) {
            throw new IllegalStateException(header.file() + ": pieces of " + start + " tokens, the file has " + tokens);
        }
        all.sort((a, b) -> Long.compare(a.share.begin, b.share.begin));
        long at = header.dataStart();
        for (PieceShare p : all) {
            if (p.share.begin != at) {
                throw new IllegalStateException(header.file() + ": piece " + p.piece + "'s " + p.share.stream
                        + " starts at byte " + p.share.begin + ", the shares before it end at " + at);
            }
            at += p.share.bytes;
        }
        if (at != header.fileSize()) {
            throw new IllegalStateException(header.file() + ": the shares end at byte " + at + ", the file at "
                    + header.fileSize());
        }
        return all;
    }
}
