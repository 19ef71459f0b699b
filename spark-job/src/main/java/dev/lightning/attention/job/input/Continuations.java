package dev.lightning.attention.job.input;

import dev.lightning.attention.job.failure.Examples;
import dev.lightning.attention.tensor.InvalidInputException;

import java.util.ArrayList;
import java.util.List;

/**
 * One run's matching of its sequences to the stored states of {@code --initial-states}: the rules
 * every run applies, whatever the format of its input and of the stored set (a run over safetensors
 * files, a run over tables). A sequence continues the stored state of its name. It is refused, before
 * any compute, when it also has a starting state of its own (a sequence starts from one state:
 * {@link #oneStart}), and when the stored state does not fit it ({@link #fits}); each run adds the refusals
 * only its format can find ({@link #refuse}). The refusals are collected, each naming its sequence,
 * and thrown together ({@link #throwIfAny}), so that one attempt lists every sequence to fix.
 */
public final class Continuations {
    /** The stored set as the messages name it (e.g. {@code --initial-states DIR}). */
    private final String stored;
    /** Where a sequence's own starting state is given, and how to remove it or the stored one. */
    private final String ownWhere;
    private final String removeOwn;
    private final String removeStored;
    private final List<String> problems = new ArrayList<>();

    /**
     * @param stored       the stored set as the messages name it
     * @param ownWhere     where this run's sequences give their own starting tensors (e.g. "the input")
     * @param removeOwn    how to remove a sequence's own starting tensors, as an imperative
     * @param removeStored how to remove a sequence's stored state, as an imperative
     */
    public Continuations(String stored, String ownWhere, String removeOwn, String removeStored) {
        this.stored = stored;
        this.ownWhere = ownWhere;
        this.removeOwn = removeOwn;
        this.removeStored = removeStored;
    }

    /**
     * Only the refusals a run finds itself ({@link #refuse}), with no {@link #oneStart}: a later check
     * of the same stored set (a table run's declared offsets, once its plan is made).
     */
    public Continuations(String stored) {
        this(stored, null, null, null);
    }

    /**
     * Whether sequence {@code label} (as the messages name it) starts from its stored state alone: one
     * that also has its own starting tensors is refused (recorded, and false returned), since a
     * sequence starts from one state.
     *
     * @param own      the sequence's own starting tensors ("initial_state", ...), or null when it has none
     * @param location where its stored state lies, or null where the stored set names it well enough
     */
    public boolean oneStart(String label, String own, String location) {
        if (own == null) {
            return true;
        }
        refuse(label, "it has its own " + own + ", given by " + ownWhere + ", and a stored state in "
                + (location != null ? location : stored) + "; a sequence starts from one state: " + removeOwn + ", or "
                + removeStored);
        return false;
    }

    /**
     * Whether the stored state fits sequence {@code label} in this run: {@code mismatch} is
     * {@link StoredStates#mismatch}'s answer for them (null: it fits); a refusal is recorded and
     * false returned.
     */
    public boolean fits(String label, String mismatch) {
        if (mismatch == null) {
            return true;
        }
        refuse(label, "the stored state does not fit: " + mismatch);
        return false;
    }

    /** Records that sequence {@code label} cannot continue its stored state, and why. */
    public void refuse(String label, String why) {
        problems.add(label + ": " + why);
    }

    /** Throws the refusals recorded so far, if any, in one message (the first 5, then a count). */
    public void throwIfAny() {
        if (!problems.isEmpty()) {
            throw new InvalidInputException(stored + ": " + problems.size() + " sequence(s) cannot continue from "
                    + "their stored state: " + Examples.of(problems, 5, "; "));
        }
    }

    /**
     * The warning a run prints for its sequences that continue nothing and start from zero (no stored
     * state of their name, no starting state of their own), or null where there are none: a renamed
     * sequence looks just like a new one, and would begin again from zero without a word.
     *
     * @param labels the sequences as the messages name them (the first 10 are listed, then a count)
     * @param what   what the run calls a sequence ("input", "sequence")
     * @param naming how a sequence finds its stored state in this run, as a sentence
     */
    public static String fromZero(List<String> labels, String what, String naming) {
        if (labels.isEmpty()) {
            return null;
        }
        return "--initial-states: " + labels.size() + " " + what + "(s) have no stored state of their name and start "
                + "from zero: " + Examples.of(labels, 10, ", ") + ". " + naming + "; a renamed " + what
                + " continues nothing";
    }

    /** The line a run prints once its sequences are matched: how many of {@code sequences} continue. */
    public static String summary(int continued, int sequences, int storedStates) {
        return "--initial-states: " + continued + " of " + sequences + " sequences continue from a stored state; "
                + storedStates + " stored state(s) in all";
    }
}
