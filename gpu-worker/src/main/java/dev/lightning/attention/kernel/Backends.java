package dev.lightning.attention.kernel;

import java.util.List;

/** The backends by name: the fast ones a job uses and the float64 references tests hold them to. */
public final class Backends {
    /** Names {@link #create(String)} accepts. */
    public static final List<String> NAMES = List.of("cpu", "chunked-f64", "recurrent-f64");

    private Backends() {
    }

    /** A new backend of the given name. */
    public static AttentionBackend create(String name) {
        switch (name) {
            case "cpu":
                return new CpuBackend();
            case "chunked-f64":
                return new ChunkedReference();
            case "recurrent-f64":
                return new RecurrentReference();
            default:
                throw new IllegalArgumentException("unknown backend '" + name + "': expected one of " + NAMES);
        }
    }
}
