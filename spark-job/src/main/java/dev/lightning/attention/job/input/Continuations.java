package dev.lightning.attention.job.input;

import dev.lightning.attention.job.failure.Examples;
import dev.lightning.attention.tensor.InvalidInputException;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

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
    private final List<Map.Entry<String, Refusal>> problems = new ArrayList<>();

    /**
     * Why a sequence cannot continue from its stored state, and what to do about it (null where there is nothing to
     * do but what the why says), kept apart so that a message naming several sequences says each advice once, after
     * them: a message that joined them per sequence repeated the same advice for each of the five it names.
     */
    public record Refusal(String why, String todo) {
        /** The message for one sequence: why, then what to do. */
        @Override
        public String toString() {
            return todo == null ? why : why + "; " + todo;
        }
    }

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
        refuse(label, new Refusal("it has its own " + own + ", given by " + ownWhere + ", and a stored state in "
                + (location != null ? location : stored) + "; a sequence starts from one state", removeOwn + ", or "
                + removeStored));
        return false;
    }

    /**
     * Whether the stored state fits sequence {@code label} in this run: {@code mismatch} is
     * {@link StoredStates#mismatch}'s answer for them (null: it fits); a refusal is recorded and
     * false returned.
     */
    public boolean fits(String label, Refusal mismatch) {
        if (mismatch == null) {
            return true;
        }
        refuse(label, new Refusal("the stored state does not fit: " + mismatch.why(), mismatch.todo()));
        return false;
    }

    /** Records that sequence {@code label} cannot continue its stored state, why, and what to do (null: nothing more). */
    public void refuse(String label, String why, String todo) {
        refuse(label, new Refusal(why, todo));
    }

    /** Records that sequence {@code label} cannot continue its stored state, and why. */
    public void refuse(String label, Refusal why) {
        problems.add(Map.entry(label, why));
    }

    /** Throws the refusals recorded so far, if any, in one message (the first 5, then a count: {@link #listed}). */
    public void throwIfAny() {
        if (!problems.isEmpty()) {
            throw new InvalidInputException(stored + ": " + problems.size() + " sequence(s) cannot continue from "
                    + "their stored state: " + listed(problems, 5));
        }
    }

    /**
     * The refused sequences of a one-line message: the first {@code shown} of them with their reasons ("label:
     * why", then a count), then what to do, each distinct advice among those named once. Where the named ones need
     * different things done, each advice names the sequences it is for.
     */
    static String listed(List<Map.Entry<String, Refusal>> refused, int shown) {
        List<String> whys = new ArrayList<>();
        Map<String, List<String>> todos = new LinkedHashMap<>(); // advice -> its sequences, in the order named
        for (Map.Entry<String, Refusal> r : refused) {
            whys.add(r.getKey() + ": " + r.getValue().why());
            if (whys.size() <= shown && r.getValue().todo() != null) {
                todos.computeIfAbsent(r.getValue().todo(), t -> new ArrayList<>()).add(r.getKey());
            }
        }
        List<String> advice = new ArrayList<>();
        for (Map.Entry<String, List<String>> t : todos.entrySet()) {
            advice.add(todos.size() == 1 ? t.getKey() : t.getKey() + " (" + String.join(", ", t.getValue()) + ")");
        }
        return Examples.of(whys, shown, "; ") + (advice.isEmpty() ? "" : ". What to do: " + String.join("; ", advice));
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
