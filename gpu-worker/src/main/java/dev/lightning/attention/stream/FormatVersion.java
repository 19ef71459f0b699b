package dev.lightning.attention.stream;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lightning.attention.tensor.InvalidInputException;

import java.math.BigInteger;
import java.util.Map;

/**
 * The version of the layout of the records the product writes and later reads back, and the one check of it.
 * Users keep outputs for months and give them back (--initial-states, the output readers, a run into the same
 * directory): a build reading a later build's record by its own layout would misread it without a word, so every
 * such record says which layout it has, under {@link #KEY}: a JSON record (the run report, {@code _states.json},
 * a staging's {@code run.json} and {@code commit.json}) as a top-level number, an output as a metadata string (a
 * safetensors output's {@code __metadata__}, whose values are strings; a parts index's {@code metadata}, which is
 * that same metadata). A table run's tables are versioned by their directory's run report, which holds their
 * metadata and which every reader of them reads first.
 *
 * <p>Reading: a record without the key was written before versions were recorded, which is format 1, and reads as
 * always. One of a later format than {@link #CURRENT} is refused ({@link TooNew}) before anything is computed or
 * changed on disk; a value that is not a positive integer is refused as a damaged record. A build never writes a
 * version into a record it did not write: an old output stays as its run left it.
 *
 * <p>Raise {@link #CURRENT} with any change to a versioned record that a build reading it by the older layout would
 * misread (a key's meaning, a tensor's place), and teach the readers the older formats they still read. A key or
 * tensor added that older builds may ignore needs no new version. The {@code format} names some records already
 * carry ({@link OutputParts#FORMAT}, the manifest's and the staging's) say which kind of record a file is.
 */
public final class FormatVersion {
    /** The format this build writes, and the latest it reads. */
    public static final int CURRENT = 1;
    /** The key under which a record carries its format. */
    public static final String KEY = "format_version";

    private FormatVersion() {
    }

    /** A record of a later format than this build reads: refused rather than read by this build's layout. */
    public static final class TooNew extends InvalidInputException {
        private static final long serialVersionUID = 1L;

        TooNew(String message) {
            super(message);
        }
    }

    /** Adds this build's format to an output's metadata (every value a string). */
    public static void put(Map<String, String> metadata) {
        metadata.put(KEY, Integer.toString(CURRENT));
    }

    /** Adds this build's format to a JSON record. */
    public static void put(ObjectNode record) {
        record.put(KEY, CURRENT);
    }

    /**
     * The format of an output whose metadata (safetensors {@code __metadata__}, a parts index's {@code metadata}) is
     * {@code metadata}; {@code where} names the file in a refusal.
     *
     * @throws TooNew                where it is later than {@link #CURRENT}
     * @throws InvalidInputException where the value is not a positive integer in decimal
     */
    public static int check(String where, Map<String, String> metadata) {
        return check(where, metadata.get(KEY));
    }

    /** {@link #check(String, Map)} of the metadata value {@code value} (null: not recorded, format 1). */
    public static int check(String where, String value) {
        if (value == null) {
            return 1;
        }
        if (!value.matches("[1-9][0-9]*")) {
            throw damaged(where, "'" + value + "'");
        }
        return checked(where, new BigInteger(value));
    }

    /**
     * The format of a JSON record (its top-level {@link #KEY}, a number); {@code where} names the file in a refusal.
     * Anything but an object carries none: the reader refuses such a record as it always did.
     *
     * @throws TooNew                where it is later than {@link #CURRENT}
     * @throws InvalidInputException where the value is not a positive integer
     */
    public static int check(String where, JsonNode record) {
        JsonNode value = record == null || !record.isObject() ? null : record.get(KEY);
        if (value == null) {
            return 1;
        }
        if (!value.isIntegralNumber() || value.bigIntegerValue().signum() <= 0) {
            throw damaged(where, value.toString());
        }
        return checked(where, value.bigIntegerValue());
    }

    private static int checked(String where, BigInteger version) {
        if (version.compareTo(BigInteger.valueOf(CURRENT)) > 0) {
            throw new TooNew(where + ": " + KEY + " " + version + ": written by a later build of lightning, in a "
                    + "layout this build would misread; this build reads " + readable() + ". Use a build of "
                    + "lightning that reads format " + version + " (the one that wrote it, or a later one)");
        }
        return version.intValue();
    }

    /** The formats this build reads, as a refusal names them. */
    private static String readable() {
        return (CURRENT == 1 ? "format 1" : "formats 1 to " + CURRENT) + " (records without " + KEY + " are format 1)";
    }

    private static InvalidInputException damaged(String where, String found) {
        return new InvalidInputException(where + ": " + KEY + " " + found + " is not a format (a whole number >= 1, "
                + "as lightning writes it): the record was edited or damaged; restore it as the run that wrote it left "
                + "it, or rerun that run");
    }
}
