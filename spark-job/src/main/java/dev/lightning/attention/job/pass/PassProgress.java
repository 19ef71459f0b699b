package dev.lightning.attention.job.pass;

import org.apache.spark.SparkContext;
import org.apache.spark.util.LongAccumulator;

import java.io.Serializable;
import java.util.function.LongConsumer;

/**
 * What the tasks of one pass count for the driver's progress line and the run report, in Spark
 * accumulators (merged once per successful task, so a retried task counts once): the units of work
 * done, and their tokens in two sums, those computed by this run and those of units an interrupted
 * run had finished and --resume kept. A rate is over the computed tokens only: a resumed run that
 * computed a quarter of the tokens did not compute the rest in its own seconds.
 *
 * <p>A unit's computed tokens are added as its windows are done ({@link #computing}; a softmax
 * item's as its key blocks are, {@link Computing#inProportion}), not only at its end: a task's
 * accumulators go to the driver with each executor heartbeat while it runs, so the progress line
 * can show a task's tokens before it ends ({@link InFlightCounts}). The figures
 * at the end stay exact: Spark merges a task's user accumulators only when it succeeds.
 */
public final class PassProgress implements Serializable {
    private static final long serialVersionUID = 1L;

    private final LongAccumulator units;
    private final LongAccumulator computed;
    private final LongAccumulator kept;

    /** The accumulators of pass {@code title}, named so in Spark's UI. */
    PassProgress(SparkContext sc, String title) {
        units = sc.longAccumulator("lightning " + title + ": pieces");
        computed = sc.longAccumulator("lightning " + title + ": tokens");
        kept = sc.longAccumulator("lightning " + title + ": tokens kept by --resume");
    }

    /** A unit of work (a piece, an item, a unit of the scan) computed by this task, holding {@code tokens}. */
    public void computed(long tokens) {
        computing(tokens).done();
    }

    /**
     * A unit of work of {@code tokens} that this task starts computing: its tokens count as they
     * are computed, and {@link Computing#done} counts the unit and the rest of its tokens.
     */
    public Computing computing(long tokens) {
        return new Computing(tokens);
    }

    /**
     * The tokens of one unit as they are computed ({@link #accept}, per window), never more than
     * the unit's: a piece computed again within its task (a GPU out of memory, then the CPU)
     * counts its tokens once, and one whose unclean windows were skipped gets the rest at its end.
     */
    public final class Computing implements LongConsumer {
        private final long tokens;
        private long counted;

        private Computing(long tokens) {
            this.tokens = tokens;
        }

        /** {@code n} more of the unit's tokens computed. */
        @Override
        public void accept(long n) {
            long add = Math.min(n, tokens - counted);
            if (add > 0) {
                computed.add(add);
                counted += add;
            }
        }

        /**
         * What counts this unit's tokens from its work in another measure, of which the unit holds
         * {@code total}: softmax's items, whose tokens are a share of their query piece's (in
         * proportion to their visible pairs), not rows they compute, take their pairs. The tokens
         * count in proportion to the work told so far, rounded down; {@link #done} adds the rest.
         * With no work to measure ({@code total} <= 0) they count at the end only.
         */
        public LongConsumer inProportion(long total) {
            long[] told = {0};
            return n -> {
                if (total > 0) {
                    told[0] += n;
                    // in double: tokens x pairs passes a long (a 64M-token query piece sees 2^51 pairs)
                    accept((long) Math.min(tokens, Math.floor((double) tokens * told[0] / total)) - counted);
                }
            };
        }

        /** The unit done: it counts, with whatever of its tokens has not. */
        public void done() {
            units.add(1);
            computed.add(tokens - counted);
            counted = tokens;
        }
    }

    /** A unit of work an interrupted run had finished, kept by --resume and not computed again. */
    public void kept(long tokens) {
        units.add(1);
        kept.add(tokens);
    }

    long units() {
        return units.value();
    }

    long computedTokens() {
        return computed.value();
    }

    /**
     * The driver's listener for what this pass's running tasks have counted: {@link #UNITS} and
     * {@link #COMPUTED}, the indexes of {@link InFlightCounts#value}.
     */
    InFlightCounts inFlight() {
        return new InFlightCounts(units.id(), computed.id());
    }

    static final int UNITS = 0;
    static final int COMPUTED = 1;

    long keptTokens() {
        return kept.value();
    }
}
