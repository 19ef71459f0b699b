package dev.lightning.attention.job;

import dev.lightning.attention.kernel.Slopes;
import dev.lightning.attention.tensor.InvalidInputException;

import java.io.Serializable;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Function;

/**
 * The job's options after resolution. Each comes from, in order of precedence: its command-line
 * flag, {@code --conf key=value}, the Spark configuration (spark-defaults.conf, spark-submit's
 * {@code --conf}), its default. Immutable.
 */
public final class JobConfig implements Serializable {
    private static final long serialVersionUID = 1L;

    final String input;
    final String output;
    final long partitionTokens;
    final int chunkSize;
    final double scale;
    final String backend;
    final String master;
    final String defaultSlopes;
    final Integer layer;
    final Integer layers;
    final long windowBytes;
    final long gpuWindowBytes;
    final String gpuResource;
    final long gpuMemory;
    final boolean gpuOomToCpu;
    final boolean overwrite;
    final boolean resume;
    final boolean recursive;
    /** "input", "f32", "bf16" or "f16". */
    final String outputDtype;
    final double lockStaleSeconds;
    final boolean skipNonFinite;
    final boolean skipInvalid;
    final double progressSeconds;
    /** Spark settings from {@code --conf} that are not ours, applied to the SparkConf. */
    final Map<String, String> sparkSettings;

    private JobConfig(Resolver r, Map<String, String> sparkSettings) {
        this.input = r.get(Settings.INPUT);
        this.output = r.get(Settings.OUTPUT);
        this.partitionTokens = r.get(Settings.PARTITION_TOKENS);
        this.chunkSize = Math.toIntExact(r.get(Settings.CHUNK_SIZE));
        this.scale = r.get(Settings.SCALE);
        this.backend = r.get(Settings.BACKEND);
        this.master = r.get(Settings.MASTER);
        this.defaultSlopes = r.get(Settings.DEFAULT_SLOPES);
        this.layer = r.get(Settings.LAYER);
        this.layers = r.get(Settings.LAYERS);
        this.windowBytes = r.get(Settings.WINDOW_BYTES);
        this.gpuWindowBytes = r.get(Settings.GPU_WINDOW_BYTES);
        this.gpuResource = r.get(Settings.GPU_RESOURCE);
        this.gpuMemory = r.get(Settings.GPU_MEMORY);
        this.gpuOomToCpu = "cpu".equals(r.get(Settings.GPU_OOM));
        this.overwrite = r.get(Settings.OVERWRITE);
        this.resume = r.get(Settings.RESUME);
        this.recursive = r.get(Settings.RECURSIVE);
        this.outputDtype = r.get(Settings.OUTPUT_DTYPE);
        this.lockStaleSeconds = r.get(Settings.LOCK_STALE_SECONDS);
        this.skipNonFinite = r.get(Settings.SKIP_NONFINITE);
        this.skipInvalid = r.get(Settings.SKIP_INVALID);
        this.progressSeconds = r.get(Settings.PROGRESS_SECONDS);
        this.sparkSettings = Collections.unmodifiableMap(new LinkedHashMap<>(sparkSettings));
        if (input == null) {
            throw new InvalidInputException("--input DIR is required (or the key " + Settings.INPUT.key + ")");
        }
        if (output == null) {
            throw new InvalidInputException("--output DIR is required (or the key " + Settings.OUTPUT.key + ")");
        }
        if ((layer == null) != (layers == null)) {
            throw new InvalidInputException("--layer and --layers go together: got layer " + layer + ", layers " + layers);
        }
        if (layer != null && layer >= layers) {
            throw new InvalidInputException("--layer must be below --layers: got layer " + layer + " of " + layers);
        }
    }

    /**
     * @param flags        command-line flags to raw values (switches map to "true")
     * @param confPairs    {@code --conf} pairs, ours and Spark's
     * @param sparkDefault the Spark configuration's value for a key, or null
     */
    static JobConfig resolve(Map<String, String> flags, Map<String, String> confPairs,
                             Function<String, String> sparkDefault) {
        Map<String, String> spark = new LinkedHashMap<>();
        for (Map.Entry<String, String> e : confPairs.entrySet()) {
            boolean ours = false;
            for (Setting<?> s : Settings.ALL) {
                ours |= s.key.equals(e.getKey()) && s != Settings.MASTER;
            }
            if (!ours) {
                if (e.getKey().startsWith("spark.lightning.")) {
                    throw new InvalidInputException("--conf " + e.getKey() + ": unknown option; known keys are listed by "
                            + "`lightning options`");
                }
                spark.put(e.getKey(), e.getValue());
            }
        }
        return new JobConfig(new Resolver(flags, confPairs, sparkDefault), spark);
    }

    /** Default slopes for files without a {@code slope} tensor. */
    double[] defaultSlopes(int heads) {
        if ("transnormer".equals(defaultSlopes)) {
            return layer == null ? Slopes.transnormer(heads, 0, 1) : Slopes.transnormer(heads, layer, layers);
        }
        return layer == null ? Slopes.minimax(heads) : Slopes.minimax(heads, layer, layers);
    }

    /** The dtype of {@code o} for input of dtype {@code in}. */
    dev.lightning.attention.tensor.DType outputDtype(dev.lightning.attention.tensor.DType in) {
        return "input".equals(outputDtype) ? in : dev.lightning.attention.tensor.DType.fromSafetensors(outputDtype);
    }

    /** The settings as key = value lines, for the run summary and report. */
    Map<String, String> describe() {
        Map<String, String> m = new LinkedHashMap<>();
        m.put(Settings.INPUT.key, input);
        m.put(Settings.OUTPUT.key, output);
        m.put(Settings.PARTITION_TOKENS.key, Long.toString(partitionTokens));
        m.put(Settings.CHUNK_SIZE.key, Integer.toString(chunkSize));
        m.put(Settings.SCALE.key, Double.toString(scale));
        m.put(Settings.BACKEND.key, backend);
        m.put(Settings.DEFAULT_SLOPES.key, defaultSlopes + (layer == null ? "" : " layer " + layer + "/" + layers));
        m.put(Settings.WINDOW_BYTES.key, Long.toString(windowBytes));
        m.put(Settings.GPU_WINDOW_BYTES.key, Long.toString(gpuWindowBytes));
        m.put(Settings.GPU_RESOURCE.key, gpuResource);
        m.put(Settings.GPU_MEMORY.key, Long.toString(gpuMemory));
        m.put(Settings.GPU_OOM.key, gpuOomToCpu ? "cpu" : "shrink");
        m.put(Settings.OUTPUT_DTYPE.key, outputDtype);
        m.put(Settings.RECURSIVE.key, Boolean.toString(recursive));
        m.put(Settings.OVERWRITE.key, Boolean.toString(overwrite));
        m.put(Settings.RESUME.key, Boolean.toString(resume));
        m.put(Settings.SKIP_INVALID.key, Boolean.toString(skipInvalid));
        m.put(Settings.SKIP_NONFINITE.key, Boolean.toString(skipNonFinite));
        return m;
    }

    private static final class Resolver {
        private final Map<String, String> flags;
        private final Map<String, String> conf;
        private final Function<String, String> spark;

        Resolver(Map<String, String> flags, Map<String, String> conf, Function<String, String> spark) {
            this.flags = flags;
            this.conf = conf;
            this.spark = spark;
        }

        <T> T get(Setting<T> s) {
            if (flags.containsKey(s.flag)) {
                return s.parse(flags.get(s.flag), s.flag);
            }
            if (conf.containsKey(s.key)) {
                return s.parse(conf.get(s.key), "--conf " + s.key);
            }
            String fromSpark = spark.apply(s.key);
            if (fromSpark != null) {
                return s.parse(fromSpark, "Spark configuration " + s.key);
            }
            return s.defaultValue;
        }
    }
}
