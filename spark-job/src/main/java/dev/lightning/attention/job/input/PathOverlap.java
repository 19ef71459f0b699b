package dev.lightning.attention.job.input;

import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Refuses an output directory that overlaps the input, before anything is written or removed: a
 * run whose output is, contains or lies inside an input could read what it writes, and replacing
 * results (--overwrite) would delete the input. Paths are compared after resolving symbolic links,
 * so {@code --output} given as a link to the input directory is caught: on the local file system
 * through {@code toRealPath()}, elsewhere through {@code FileSystem.resolvePath}. Comparing the
 * strings as typed is not enough.
 */
public final class PathOverlap {
    private PathOverlap() {
    }

    /** A resolved location: the file system ({@code scheme://authority}) and an absolute path on it. */
    private record Where(String fs, String path) {
        boolean contains(Where other) {
            return fs.equals(other.fs) && (other.path.equals(path)
                    || other.path.startsWith(path.endsWith("/") ? path : path + "/"));
        }

        @Override
        public String toString() {
            return "file://".equals(fs) ? path : fs + path;
        }
    }

    /**
     * Refuses an output that is, lies inside or contains an input root, or that holds an input file.
     *
     * @param output {@code --output} as the user gave it (it need not exist yet)
     * @throws InvalidInputException naming both paths, as given and as resolved, and what to do
     */
    public static void check(Configuration conf, List<InputFile> inputs, Path output) throws IOException {
        Where out = resolve(conf, output);
        Map<Path, Where> roots = new LinkedHashMap<>();
        for (InputFile f : inputs) {
            if (!roots.containsKey(f.root)) {
                roots.put(f.root, resolve(conf, f.root));
            }
        }
        for (Map.Entry<Path, Where> r : roots.entrySet()) {
            refuseOverlap(output, out, r.getKey(), r.getValue());
        }
        // A file can reach into the output through a linked subdirectory even when its root does not.
        for (InputFile f : inputs) {
            Where in = resolveFile(conf, f.path());
            if (out.contains(in)) {
                refuse(output, out, "contains the input file", f.path(), in);
            }
        }
    }

    /**
     * Refuses an output that is, lies inside or contains {@code input}, a table of a table run
     * (--input or --sequences: a directory of Parquet files, or one file), links resolved as
     * {@link #check} resolves them: with --overwrite the run replaces its tables (o/, final_states/,
     * states/) as whole directories, so an output that reaches the input through a link could
     * replace, and delete, the input itself.
     */
    public static void checkTable(Configuration conf, Path input, Path output) throws IOException {
        refuseOverlap(output, resolve(conf, output), input, resolve(conf, input));
    }

    /** Refuses an output (resolved: {@code out}) that is, lies inside or contains an input root ({@code in}). */
    private static void refuseOverlap(Path output, Where out, Path input, Where in) {
        if (in.equals(out)) {
            refuse(output, out, "is the same as the input", input, in);
        }
        if (in.contains(out)) {
            refuse(output, out, "lies inside the input", input, in);
        }
        if (out.contains(in)) {
            refuse(output, out, "contains the input", input, in);
        }
    }

    /**
     * Refuses an {@code --initial-states} directory that is, lies inside or contains the output:
     * the run would read states from where it publishes (and with --overwrite replace them).
     */
    public static void checkStates(Configuration conf, Path states, Path output) throws IOException {
        Where out = resolve(conf, output);
        Where in = resolve(conf, states);
        if (in.contains(out) || out.contains(in)) {
            throw new InvalidInputException("--output " + output + " (resolved: " + out + ") overlaps --initial-states "
                    + states + " (resolved: " + in + "); the run would publish into the state set it reads: write the "
                    + "new outputs to another directory (there the new state set is complete: _states.json names "
                    + "the untouched states where they are, a table run's final_states/ carries them over)");
        }
    }

    /**
     * Refuses an output that holds a file of the stored state set {@code states} ({@code --initial-states} {@code dir}):
     * one that {@code dir}'s {@code _states.json} names in an earlier directory of the chain (the set's own directory
     * is {@link #checkStates}'s). Publishing there could replace that file, with --overwrite or with a result of the
     * same name, and the set would then name a state that is gone: every later append from {@code dir} is refused
     * (the file changed since it was recorded), and the replaced state cannot be restored. Each directory holding a
     * state is resolved once, links followed as {@link #check} follows them.
     */
    public static void checkStateFiles(Configuration conf, Map<String, StoredStates.State> states, String dir,
                                       Path output) throws IOException {
        Where out = resolve(conf, output);
        Map<Path, Where> parents = new java.util.HashMap<>();
        for (Map.Entry<String, StoredStates.State> e : states.entrySet()) {
            Path file = new Path(java.net.URI.create(e.getValue().file));
            Where parent = parents.get(file.getParent());
            if (parent == null) {
                parent = resolve(conf, file.getParent());
                parents.put(file.getParent(), parent);
            }
            Where at = new Where(parent.fs, (parent.path.endsWith("/") ? parent.path : parent.path + "/") + file.getName());
            if (out.contains(at)) {
                throw new InvalidInputException("--output " + output + " (resolved: " + out + ") holds " + at + ", the "
                        + "stored state of " + e.getKey() + " that --initial-states " + dir + " names (its "
                        + SafetensorsStates.MANIFEST + "): publishing there could replace that state, and the chain of "
                        + dir + " would then name a state that is gone; write the new outputs to another directory");
            }
        }
    }

    private static void refuse(Path output, Where out, String relation, Path input, Where in) {
        throw new InvalidInputException("--output " + output + " (resolved: " + out + ") " + relation + " " + input
                + " (resolved: " + in + "); the run would read what it writes or replace what it reads: choose an "
                + "output directory outside the input");
    }

    /** Where {@code p} is, or would be once created, with every symbolic link on the way followed. */
    private static Where resolve(Configuration conf, Path p) throws IOException {
        FileSystem fs = p.getFileSystem(conf);
        Path q = fs.makeQualified(p);
        if ("file".equals(q.toUri().getScheme())) {
            return new Where("file://", realLocal(Paths.get(q.toUri().getPath())).toString());
        }
        Deque<String> missing = new ArrayDeque<>();
        Path existing = q;
        Path resolved;
        while (true) {
            try {
                resolved = fs.makeQualified(fs.resolvePath(existing));
                break;
            } catch (FileNotFoundException e) {
                if (existing.getParent() == null) {
                    resolved = existing;
                    break;
                }
                missing.push(existing.getName());
                existing = existing.getParent();
            }
        }
        while (!missing.isEmpty()) {
            resolved = HadoopPaths.child(resolved, missing.pop());
        }
        String authority = resolved.toUri().getAuthority();
        return new Where(resolved.toUri().getScheme() + "://" + (authority == null ? "" : authority),
                resolved.toUri().getPath());
    }

    /** As {@link #resolve}, without a round trip per file on stores that have no links (object stores). */
    private static Where resolveFile(Configuration conf, Path file) throws IOException {
        FileSystem fs = file.getFileSystem(conf);
        if (fs.supportsSymlinks() || "file".equals(fs.getUri().getScheme())) {
            return resolve(conf, file);
        }
        Path q = fs.makeQualified(file);
        String authority = q.toUri().getAuthority();
        return new Where(q.toUri().getScheme() + "://" + (authority == null ? "" : authority), q.toUri().getPath());
    }

    /**
     * The real path of {@code p}; for a path that does not exist yet, the real path of its nearest
     * existing ancestor with the rest appended. A dangling link is followed to where it points, as
     * creating the directory would.
     */
    private static java.nio.file.Path realLocal(java.nio.file.Path p) throws IOException {
        java.nio.file.Path rest = p.getFileSystem().getPath("");
        p = p.toAbsolutePath();
        for (int links = 0; ; ) {
            if (Files.exists(p)) {
                return p.toRealPath().resolve(rest);
            }
            if (Files.isSymbolicLink(p) && links++ < 40) {
                p = p.resolveSibling(Files.readSymbolicLink(p));
                continue;
            }
            java.nio.file.Path parent = p.getParent();
            if (parent == null) {
                return p.resolve(rest);
            }
            rest = p.getFileName().resolve(rest);
            p = parent;
        }
    }
}
