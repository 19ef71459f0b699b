package dev.lightning.attention.job.config;

import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.spark.SparkConf;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A run's options as given on a command line ({@code bin/lightning run}, {@code spark-submit}) or
 * to {@code LightningTables.compute}: flags and {@code --conf} pairs, resolved into a
 * {@link JobConfig} over the Spark configuration's defaults.
 */
public final class OptionParser {
    private OptionParser() {
    }

    /**
     * Parses flags and {@code --conf} pairs; {@code demoDir} receives {@code --dir} when non-null.
     * {@code datasets}: the options of a run over datasets given in code (no --input or --output: {@code LightningTables}).
     */
    public static JobConfig parse(List<String> args, String[] demoDir, boolean datasets) {
        SparkConf defaults = new SparkConf(); // before the SparkContext: spark-submit's settings, as system properties
        Map<String, String> spark = new LinkedHashMap<>();
        for (scala.Tuple2<String, String> kv : defaults.getAll()) {
            spark.put(kv._1(), kv._2());
        }
        return parse(args, demoDir, datasets, spark);
    }

    /**
     * {@link #parse(List, String[], boolean)} over the Spark configuration {@code spark} (for
     * {@code LightningTables}: the caller's session, whose builder and runtime settings the system
     * properties do not hold).
     */
    public static JobConfig parse(List<String> args, String[] demoDir, boolean datasets, Map<String, String> spark) {
        Map<String, String> flags = new LinkedHashMap<>();
        Map<String, String> conf = new LinkedHashMap<>();
        for (int i = 0; i < args.size(); i++) {
            String[] split = split(args.get(i));
            String a = split[0];
            String value = split[1];
            if ("--conf".equals(a)) {
                String pair = value != null ? value : next(args, ++i, a);
                int e = pair.indexOf('=');
                if (e <= 0) {
                    throw new InvalidInputException("--conf expects KEY=VALUE, got '" + pair + "'");
                }
                conf.put(pair.substring(0, e).trim(), pair.substring(e + 1).trim());
                continue;
            }
            if (demoDir != null && "--dir".equals(a)) {
                demoDir[0] = value != null ? value : next(args, ++i, a);
                continue;
            }
            Setting<?> s = Settings.byFlag(a);
            if (s == null) {
                throw new InvalidInputException(unknown(args, i));
            }
            String v = s.isSwitch() ? (value != null ? value : "true") : (value != null ? value : next(args, ++i, a));
            String before = flags.put(a, v);
            if (before != null && !before.equals(v)) {
                throw new InvalidInputException(a + " is given twice ('" + before + "' and '" + v + "'); give it once"
                        + ("--input".equals(a) ? " (several inputs: a comma-separated list, or a glob)" : ""));
            }
        }
        JobConfig.refuseUnknownSparkKeys(spark.keySet());
        return JobConfig.resolve(flags, conf, spark::get, datasets);
    }

    /**
     * What {@code args[i]}, which is no option, is said to be, with what was expected instead: a near miss of an
     * option's flag names that option; a value after a switch (--normalize true) says that a switch takes none; any
     * other word that an option's value goes right after the option. It said "unknown option 'WORD' (see --help)" for
     * all three, naming no option, and called a stray value an option.
     */
    static String unknown(List<String> args, int i) {
        String arg = args.get(i);
        if (arg.startsWith("-")) {
            Setting<?> near = Settings.nearFlag(split(arg)[0]);
            return "unknown option '" + arg + "': " + (near != null ? "did you mean " + near.flag + "? (--help and "
                    + "`lightning options` list the options)" : "expected one of the options that --help and `lightning "
                    + "options` list");
        }
        Setting<?> before = i > 0 ? Settings.byFlag(args.get(i - 1)) : null;
        if (before != null && before.isSwitch()) {
            return "unexpected '" + arg + "' after " + before.flag + ", a switch that takes no value: give " + before.flag
                    + " alone to turn it on (" + before.flag + "=false turns it off)";
        }
        return "unexpected argument '" + arg + "': expected options only, each value right after its option (--output "
                + "DIR or --output=DIR); see --help";
    }

    /** An argument as {flag, value}: {@code --flag=value} split at its first '=', else {arg, null}. */
    public static String[] split(String arg) {
        int eq = arg.indexOf('=');
        return arg.startsWith("--") && eq > 0 ? new String[] {arg.substring(0, eq), arg.substring(eq + 1)}
                : new String[] {arg, null};
    }

    /** The value after {@code flag} at {@code args[i]}; an option there instead (a value forgotten) is refused. */
    public static String next(List<String> args, int i, String flag) {
        if (i >= args.size()) {
            throw new InvalidInputException(flag + ": expected a value after it, got the end of the command line");
        }
        String v = args.get(i);
        // `--output --normalize` would make a directory named --normalize and drop the switch
        // (any --word: the job's options and generate's alike; a value that really starts so goes after '=')
        if (v.length() > 2 && v.startsWith("--") && Character.isLetter(v.charAt(2))) {
            throw new InvalidInputException(flag + ": expected a value after it, got the option " + v + "; give the "
                    + "value (or write " + flag + "=" + v + " if that is really the value)");
        }
        return v;
    }
}
