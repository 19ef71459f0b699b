package dev.lightning.attention.job.pass;

import org.apache.spark.SparkContext;
import org.apache.spark.util.LongAccumulator;

import java.io.Serializable;

/**
 * What the tasks of one pass count for the driver's progress line and the run report, in Spark
 * accumulators (merged once per successful task, so a retried task counts once): the units of work
 * done, and their tokens in two sums, those computed by this run and those of units an interrupted
 * run had finished and --resume kept. A rate is over the computed tokens only: a resumed run that
 * computed a quarter of the tokens did not compute the rest in its own seconds.
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
        units.add(1);
        computed.add(tokens);
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

    long keptTokens() {
        return kept.value();
    }
}
