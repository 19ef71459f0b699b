package dev.lightning.attention.job.pass;

import dev.lightning.attention.job.input.StoredStates;
import dev.lightning.attention.job.output.Staging;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.stream.SequenceFile;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A piece with the file it belongs to, the block size of its sequence's scan (where pass 2
 * finds its incoming state: {@link Staging#prefixes}; 0 for a piece that needs none), and the
 * stored state its sequence continues (--initial-states) or null: piece 0 starts from it, and
 * every piece's header records its token_offset.
 */
final class PieceItem implements Serializable {
    private static final long serialVersionUID = 1L;
    final SequenceFile file;
    final Piece piece;
    final int scanBlock;
    final StoredStates.State stored;

    PieceItem(SequenceFile file, Piece piece, int scanBlock, StoredStates.State stored) {
        this.file = file;
        this.piece = piece;
        this.scanBlock = scanBlock;
        this.stored = stored;
    }

    /**
     * The runs of a task's items: consecutive items of one sequence (pieces in index order, as the
     * planner makes them). A run is one unit of work: one staged file of states or summaries and
     * one marker for all its pieces. The driver groups with this too ({@link PieceGroups}), so it
     * knows where each piece's files are.
     */
    static List<List<PieceItem>> runs(List<PieceItem> items) {
        List<List<PieceItem>> runs = new ArrayList<>();
        List<PieceItem> run = new ArrayList<>();
        for (PieceItem it : items) {
            if (!run.isEmpty()) {
                Piece before = run.get(run.size() - 1).piece;
                if (before.sequence() != it.piece.sequence() || before.index() + 1 != it.piece.index()) {
                    runs.add(run);
                    run = new ArrayList<>();
                }
            }
            run.add(it);
        }
        if (!run.isEmpty()) {
            runs.add(run);
        }
        return runs;
    }

    /** The groups of pieces of each sequence that the tasks {@code work} stage together: their {@link #runs}. */
    static Map<Integer, PieceGroups> groups(List<List<PieceItem>> work) {
        Map<Integer, PieceGroups.Builder> b = new java.util.TreeMap<>();
        for (List<PieceItem> task : work) {
            for (List<PieceItem> run : runs(task)) {
                Piece first = run.get(0).piece;
                b.computeIfAbsent(first.sequence(), s -> new PieceGroups.Builder()).add(first.index(),
                        run.get(run.size() - 1).piece.index());
            }
        }
        Map<Integer, PieceGroups> out = new java.util.TreeMap<>();
        b.forEach((s, g) -> out.put(s, g.build()));
        return out;
    }
}
