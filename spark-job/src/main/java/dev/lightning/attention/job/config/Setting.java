package dev.lightning.attention.job.config;

import dev.lightning.attention.tensor.InvalidInputException;

import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.function.Function;

/**
 * One option of the job, declared once: its command-line flag, its Spark configuration key (for
 * {@code --conf} and spark-defaults), its type, default, check and documentation. {@link Settings}
 * lists them all; the options table in the README is generated from that list.
 *
 * @param <T> the parsed value's type
 */
public final class Setting<T> {
    public final String flag;
    public final String key;
    public final String type;
    public final T defaultValue;
    public final String defaultText;
    public final String doc;
    private final Function<String, T> parser;
    private final Function<T, String> check;
    /** Defaults that differ by --attention (absent: {@link #defaultValue}); a null value: none in the configuration. */
    private final java.util.Map<String, T> attentionDefaults;
    /** How such a default is stated, by attention. */
    private final java.util.Map<String, String> attentionDefaultTexts;
    /**
     * Null for an option that a run over datasets ({@code LightningTables.compute}) uses too; else
     * it has a meaning for the command line only (files, the output directory, the Spark start),
     * and this says what a Spark program does instead. The Dataset API refuses such an option.
     */
    final String commandLineOnly;

    private Setting(String flag, String key, String type, T defaultValue, String defaultText, String doc,
                    Function<String, T> parser, Function<T, String> check) {
        this(flag, key, type, defaultValue, defaultText, doc, parser, check, java.util.Map.of(), java.util.Map.of(), null);
    }

    private Setting(String flag, String key, String type, T defaultValue, String defaultText, String doc,
                    Function<String, T> parser, Function<T, String> check, java.util.Map<String, T> attentionDefaults,
                    java.util.Map<String, String> attentionDefaultTexts, String commandLineOnly) {
        this.flag = flag;
        this.key = key;
        this.type = type;
        this.defaultValue = defaultValue;
        this.defaultText = defaultText;
        this.doc = doc;
        this.parser = parser;
        this.check = check;
        this.attentionDefaults = attentionDefaults;
        this.attentionDefaultTexts = attentionDefaultTexts;
        this.commandLineOnly = commandLineOnly;
    }

    /**
     * This option, marked as one of the command line only: {@code instead} says what a Spark
     * program calling {@code LightningTables.compute} does in its place (the Dataset API refuses it).
     */
    Setting<T> commandLineOnly(String instead) {
        return new Setting<>(flag, key, type, defaultValue, defaultText, doc, parser, check, attentionDefaults,
                attentionDefaultTexts, instead);
    }

    /**
     * This option with another default under {@code --attention attention}: {@code value}, or null
     * for one the job derives per file (then {@code text} says how, e.g. "1/sqrt(Dk)"). The
     * default text becomes "DEFAULT; ATTENTION: TEXT" in --help and the options table.
     */
    Setting<T> withDefaultFor(String attention, T value, String text) {
        java.util.Map<String, T> defaults = new java.util.HashMap<>(attentionDefaults);
        defaults.put(attention, value);
        java.util.Map<String, String> texts = new java.util.HashMap<>(attentionDefaultTexts);
        texts.put(attention, text);
        return new Setting<>(flag, key, type, defaultValue, defaultText + "; " + attention + ": " + text, doc, parser,
                check, java.util.Collections.unmodifiableMap(defaults), java.util.Collections.unmodifiableMap(texts),
                commandLineOnly);
    }

    /** How the default under {@code attention} is stated, or null when it is the plain default. */
    String defaultTextFor(String attention) {
        return attentionDefaultTexts.get(attention);
    }

    /** The default under {@code --attention attention} (null: none in the configuration). */
    T defaultFor(String attention) {
        return attentionDefaults.containsKey(attention) ? attentionDefaults.get(attention) : defaultValue;
    }

    /** A boolean switch: present on the command line means true; "true"/"false" by key. */
    public boolean isSwitch() {
        return "switch".equals(type);
    }

    /**
     * Parses and checks a value from {@code source} (a flag or key, for the message).
     *
     * @throws InvalidInputException saying what was expected and what came
     */
    public T parse(String raw, String source) {
        T value;
        try {
            value = parser.apply(raw.trim());
        } catch (RuntimeException e) {
            throw new InvalidInputException(source + ": expected " + type + ", got '" + raw + "'"
                    + (e.getMessage() == null ? "" : " (" + e.getMessage() + ")"));
        }
        String problem = check.apply(value);
        if (problem != null) {
            throw new InvalidInputException(source + ": " + problem + ", got '" + raw + "'");
        }
        return value;
    }

    // ---------------------------------------------------------------- constructors by type

    public static Setting<String> path(String flag, String key, String doc) {
        return new Setting<>(flag, key, "path", null, "(required)", doc, s -> s,
                s -> s.isEmpty() ? "a path is required" : null);
    }

    /** A path that may be left out (no default). */
    static Setting<String> optionalPath(String flag, String key, String doc) {
        return new Setting<>(flag, key, "path", null, "(none)", doc, s -> s,
                s -> s.isEmpty() ? "a path is required" : null);
    }

    static Setting<String> text(String flag, String key, String defaultText, String doc) {
        return new Setting<>(flag, key, "string", null, defaultText, doc, s -> s,
                s -> s.isEmpty() ? "a value is required" : null);
    }

    static Setting<String> word(String flag, String key, String def, String doc) {
        return new Setting<>(flag, key, "string", def, def, doc, s -> s,
                s -> s.isEmpty() ? "a value is required" : null);
    }

    public static Setting<Long> count(String flag, String key, long def, long min, long max, String doc) {
        return new Setting<>(flag, key, "integer", def, Long.toString(def), doc, s -> whole(s, min, max),
                v -> v < min || v > max ? "must be in " + min + ".." + max : null);
    }

    static Setting<Integer> optionalInt(String flag, String key, int min, String doc) {
        return optionalInt(flag, key, min, "(none)", doc);
    }

    /** An optional integer of at least {@code min}; defaultText says what stands in when it is absent. */
    public static Setting<Integer> optionalInt(String flag, String key, int min, String defaultText, String doc) {
        return new Setting<>(flag, key, "integer", null, defaultText, doc, s -> wholeInt(s, min),
                v -> v < min ? "must be >= " + min : null);
    }

    static Setting<Double> real(String flag, String key, double def, boolean positive, String doc) {
        return new Setting<>(flag, key, "number", def, Double.toString(def), doc, Setting::decimal,
                v -> !Double.isFinite(v) ? "must be finite" : positive && v <= 0 ? "must be > 0" : null);
    }

    /**
     * A number the kernels apply in float32 (--scale, --normalize-eps): of at least {@code min}, and 0 or of a
     * magnitude float32 holds as a normal number. Below 1.2e-38 it became 0 or a subnormal in float32 and the run
     * wrote o = 0 (or o of fewer bits), recording the value asked for: --scale 1e-50 gave o = 0 where o is 1e-12.
     * Above 3.4e38 it became Inf.
     */
    static Setting<Double> float32Real(String flag, String key, double def, double min, String doc) {
        return new Setting<>(flag, key, "number", def, Double.toString(def), doc, Setting::decimal,
                v -> !Double.isFinite(v) ? "must be finite" : v < min ? "must be >= " + min
                        : v != 0 && (Math.abs(v) < Float.MIN_NORMAL || Math.abs(v) > Float.MAX_VALUE)
                        ? "must be 0 or of a magnitude from 1.18e-38 to 3.4e38 (the kernels apply it in float32, "
                        + "where it would be " + (Math.abs(v) > Float.MAX_VALUE ? "Inf" : "0 or lose its bits") + ")"
                        : null);
    }

    /** An optional number above 0 (no default value: the caller derives one). */
    static Setting<Double> optionalPositive(String flag, String key, String defaultText, String doc) {
        return new Setting<>(flag, key, "number", null, defaultText, doc, Setting::decimal,
                v -> !Double.isFinite(v) || v <= 0 ? "must be a finite number > 0" : null);
    }

    /** A finite number of at least {@code min}. */
    static Setting<Double> realAtLeast(String flag, String key, double def, double min, String doc) {
        return new Setting<>(flag, key, "number", def, Double.toString(def), doc, Setting::decimal,
                v -> !Double.isFinite(v) ? "must be finite" : v < min ? "must be >= " + min : null);
    }

    public static Setting<String> choice(String flag, String key, String def, String doc, String... choices) {
        // a declaration's own mistake, caught when the settings load (--read-ahead once listed "on" twice)
        if (new HashSet<>(List.of(choices)).size() != choices.length || !List.of(choices).contains(def)) {
            throw new IllegalArgumentException(flag + ": the choices " + String.join("|", choices)
                    + " must be distinct and include the default " + def);
        }
        String type = String.join("|", choices);
        return new Setting<>(flag, key, type, def, def, doc, s -> s.toLowerCase(Locale.ROOT), v -> {
            for (String c : choices) {
                if (c.equals(v)) {
                    return null;
                }
            }
            return "must be one of " + type;
        });
    }

    public static Setting<Boolean> flagSwitch(String flag, String key, String doc) {
        return new Setting<>(flag, key, "switch", false, "false", doc, s -> {
            switch (s.toLowerCase(Locale.ROOT)) {
                case "true":
                    return true;
                case "false":
                    return false;
                default:
                    throw new IllegalArgumentException("true or false");
            }
        }, v -> null);
    }

    /**
     * A whole number in digits, for an option whose values run from {@code min} to {@code max} (the range is for the
     * message; the option's check refuses values outside it). Long's own message ('For input string: "64k"', the
     * same for a number too large for a long) named neither the form nor the range.
     */
    static long whole(String s, long min, long max) {
        try {
            return Long.parseLong(s);
        } catch (NumberFormatException e) {
            throw new NumberFormatException(wholeIn(min, max));
        }
    }

    /** {@link #whole} for an int option of at least {@code min}: a value beyond an int is out of its range too. */
    static int wholeInt(String s, int min) {
        long v = whole(s, min, Integer.MAX_VALUE);
        if (v < Integer.MIN_VALUE || v > Integer.MAX_VALUE) {
            throw new NumberFormatException(wholeIn(min, Integer.MAX_VALUE));
        }
        return (int) v;
    }

    private static String wholeIn(long min, long max) {
        return "a whole number in " + min + ".." + max + ", in digits without a unit";
    }

    /**
     * A decimal number. Double's own messages ('For input string: "abc"', 'empty String') named neither the form nor
     * the value's kind.
     */
    static double decimal(String s) {
        try {
            return Double.parseDouble(s);
        } catch (NumberFormatException e) {
            throw new NumberFormatException("a decimal number such as 2, 0.5 or 1e-5");
        }
    }

    /** A byte size: a plain number of bytes, or with a k, m or g suffix (powers of 1024). */
    static Setting<Long> size(String flag, String key, long def, long min, String doc) {
        return new Setting<>(flag, key, "size", def, (def >> 20) + "m", doc, Setting::parseSize,
                v -> v < min ? "must be at least " + min + " bytes" : null);
    }

    static long parseSize(String s) {
        String t = s.toLowerCase(Locale.ROOT);
        long unit = 1;
        if (t.endsWith("b")) {
            t = t.substring(0, t.length() - 1);
        }
        if (t.endsWith("k")) {
            unit = 1L << 10;
        } else if (t.endsWith("m")) {
            unit = 1L << 20;
        } else if (t.endsWith("g")) {
            unit = 1L << 30;
        }
        if (unit != 1) {
            t = t.substring(0, t.length() - 1);
        }
        long n;
        try {
            n = Long.parseLong(t);
        } catch (NumberFormatException e) {
            // Long's own message ('For input string: "1.5"') named neither the form nor the units
            throw new NumberFormatException("a whole number of bytes, or of KiB, MiB or GiB with k, m or g: "
                    + "65536, 64m, 1g");
        }
        try {
            return Math.multiplyExact(n, unit);
        } catch (ArithmeticException e) {
            throw new NumberFormatException("more bytes than a long holds");
        }
    }
}
