package dev.lightning.attention.job.input;

import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.job.output.Commit;
import dev.lightning.attention.job.output.OutputLock;
import dev.lightning.attention.job.output.Staging;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.GlobFilter;
import org.apache.hadoop.fs.LocatedFileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RemoteIterator;
import org.apache.hadoop.fs.UnsupportedFileSystemException;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.net.URI;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Finds the sequence files {@code --input} names. It may be a directory, one file, a glob (Hadoop's
 * syntax: {@code * ? [a-z] [^a] {a,b}}) or a comma-separated list of these, on any Hadoop file system.
 * A path that exists as typed is taken as it is, so a name holding a comma or a glob character
 * still works: the whole string is tried first, then each element of the list, each as a path
 * before as a glob.
 *
 * <p>A directory gives its {@code *.safetensors} files, with {@code --recursive} also those of
 * its subdirectories; names starting with {@code .} or {@code _} (partial files, Hadoop and Spark
 * markers) are skipped there and in glob matches. A file named explicitly is taken whatever its
 * name: the user asked for it.
 */
public final class InputListing {
    static final String SUFFIX = ".safetensors";

    /** Names in the output directory that belong to the job: its report, marker, lock and staging. */
    static final List<String> RESERVED = List.of(Commit.REPORT, Commit.SUCCESS, OutputLock.NAME,
            Staging.PARENT);

    private InputListing() {
    }

    /**
     * The files to process, sorted by output name.
     *
     * @throws InvalidInputException when an element matches nothing, a directory holds no sequence
     *                               file, or two files would get the same output name
     */
    public static List<InputFile> list(Configuration conf, String input, boolean recursive) throws IOException {
        List<String> elements = elements(conf, input);
        Map<String, InputFile> byName = new TreeMap<>();
        for (String element : elements) {
            for (InputFile f : listElement(conf, element, recursive)) {
                String first = f.name.split("/", 2)[0];
                if (RESERVED.contains(first)) {
                    throw new InvalidInputException("--input: " + f.path() + " would be written as " + f.name
                            + ", a name the job keeps for itself in --output (" + String.join(", ", RESERVED)
                            + "); rename the file");
                }
                InputFile other = byName.putIfAbsent(f.name, f);
                if (other != null && !other.path().equals(f.path())) {
                    throw new InvalidInputException("--input: " + other.path() + " and " + f.path() + " would both be "
                            + "written as " + f.name + " in --output; rename one or process them in separate runs");
                }
            }
        }
        return new ArrayList<>(byName.values());
    }

    /**
     * The paths a table input names (--input or --sequences of a run over parquet, {@code flag} in messages),
     * qualified, for Spark's Parquet reader: the whole string when it exists as typed, else each element of its
     * comma-separated list (commas inside glob braces kept), each itself when it exists, else what it matches as
     * a glob ({@link #matches}: {@code 'blocks/day=2026-12-0*'}). Directories are not listed here: the reader
     * takes a table directory whole.
     *
     * @throws InvalidInputException when an element matches nothing
     */
    public static List<Path> tablePaths(Configuration conf, String flag, String input) throws IOException {
        List<Path> paths = new ArrayList<>();
        for (String element : elements(conf, input)) {
            for (FileStatus st : taken(conf, flag, element).visible()) {
                paths.add(st.getPath());
            }
        }
        return paths;
    }

    /**
     * What one element names, as {@link #named}, refused where that is nothing a run takes: every run's (files or
     * tables) one message for a path that does not exist, a glob that matches nothing and a glob that matches only
     * names it skips, each saying what was given, what it matched and what to do. The two runs worded them apart: a
     * run over files said "no such file or directory" for a glob too.
     */
    private static Named taken(Configuration conf, String flag, String element) throws IOException {
        Named named = named(conf, flag, element);
        if (named.visible().length > 0) {
            return named;
        }
        String given = flag + " " + element;
        if (named.all().length > 0) {
            throw new InvalidInputException(given + ": matches only names starting with '.' or '_', which a glob "
                    + "skips; name such a file without wildcards to take it");
        }
        throw new InvalidInputException(given + (named.pattern() ? ": the glob matches no file or directory; correct "
                + "the pattern or the directory it looks in" : ": no such file or directory"
                + resolved(named) + "; correct the name or the directory it is in") + spaced(element));
    }

    /**
     * Where a relative path was looked for ("" for an absolute path or a URI): a relative name is resolved against the
     * file system's working directory (for local paths the directory the command ran in), which the name alone does
     * not show, so a run started from another directory than the user thinks is told where it looked.
     */
    private static String resolved(Named named) {
        return named.path().isAbsolute() ? "" : " (resolved: " + named.fs().makeQualified(named.path()) + ")";
    }

    /** The hint for a path with spaces around it (most often "a, b": a list's paths are separated by commas alone). */
    private static String spaced(String element) {
        return element.strip().equals(element) ? ""
                : " (the name has spaces around it: separate the paths of a list with commas alone)";
    }

    /** The elements of {@code input}: itself when it exists as typed or holds no comma, else its list ({@link #split}). */
    static List<String> elements(Configuration conf, String input) throws IOException {
        return input.indexOf(',') < 0 || existsAsTyped(conf, input) ? List.of(input) : split(input);
    }

    /**
     * What one element names, qualified: itself when it exists as typed, else its glob's matches but those whose
     * names start with '.' or '_' (as a directory listing skips them), in path order; empty when nothing.
     */
    static FileStatus[] matches(Configuration conf, String flag, String element) throws IOException {
        return named(conf, flag, element).visible();
    }

    /**
     * What one element ({@code path}, parsed) names, before hidden names are skipped: itself when it exists as typed
     * ({@code globbed} false), else every match of it as a glob (none where it is not a valid glob either), qualified,
     * in path order; {@code pattern}: whether it is a valid glob with wildcards (not a plain path), for the message
     * where it matches nothing.
     */
    private record Named(Path path, FileSystem fs, FileStatus[] all, boolean globbed, boolean pattern) {
        /** The matches a listing takes: a glob's without the names starting with '.' or '_'; a path as typed always. */
        FileStatus[] visible() {
            return globbed ? Arrays.stream(all).filter(st -> !hidden(st.getPath().getName())).toArray(FileStatus[]::new)
                    : all;
        }
    }

    private static Named named(Configuration conf, String flag, String element) throws IOException {
        Path p;
        try {
            p = HadoopPaths.parse(element);
        } catch (IllegalArgumentException e) {
            throw new InvalidInputException(flag + " " + element + ": not a valid path or URI: " + e.getMessage());
        }
        FileSystem fs = HadoopPaths.fileSystem(p, conf);
        FileStatus[] all;
        boolean globbed = false;
        boolean pattern = false;
        try {
            all = new FileStatus[] {fs.getFileStatus(p)};
        } catch (FileNotFoundException e) {
            FileStatus[] g = glob(fs, p);
            all = g == null ? new FileStatus[0] : g;
            globbed = true;
            try {
                pattern = g != null && new GlobFilter(p.toUri().getPath()).hasPattern();
            } catch (IOException notAGlob) {
                pattern = false; // glob() walked it segment by segment; whole, it is no pattern either
            }
        }
        for (FileStatus st : all) {
            st.setPath(fs.makeQualified(st.getPath()));
        }
        Arrays.sort(all, java.util.Comparator.comparing(st -> st.getPath().toString()));  // listings come in any order
        return new Named(p, fs, all, globbed, pattern);
    }

    private static boolean existsAsTyped(Configuration conf, String path) throws IOException {
        try {
            Path p = HadoopPaths.parse(path);
            return p.getFileSystem(conf).exists(p);
        } catch (IllegalArgumentException | UnsupportedFileSystemException e) {
            return false; // not one path: read it as a list
        }
    }

    /** Splits on the commas outside glob braces, so that {@code dir/{a,b}.safetensors} stays one element. */
    private static List<String> split(String input) {
        List<String> parts = new ArrayList<>();
        int depth = 0;
        int start = 0;
        for (int i = 0; i <= input.length(); i++) {
            char c = i < input.length() ? input.charAt(i) : ',';
            if (c == '{') {
                depth++;
            } else if (c == '}' && depth > 0) {
                depth--;
            } else if (c == ',' && (depth == 0 || i == input.length())) {
                String part = input.substring(start, i);
                if (part.isEmpty()) {
                    throw new InvalidInputException("--input " + input + ": empty element in the comma-separated "
                            + "list; separate paths with single commas");
                }
                parts.add(part);
                start = i + 1;
            }
        }
        return parts;
    }

    private static List<InputFile> listElement(Configuration conf, String element, boolean recursive)
            throws IOException {
        Named named = taken(conf, "--input", element);
        FileSystem fs = named.fs();
        List<InputFile> found = new ArrayList<>();
        for (FileStatus s : named.visible()) {
            String name = s.getPath().getName();
            Path root = s.getPath();
            if (s.isDirectory()) {
                found.addAll(listDirectory(fs, element, root, recursive));
            } else {
                refuseSpecialFile(fs, element, root, name);
                found.add(new InputFile(located(fs, s), name, root));
            }
        }
        return found;
    }

    /**
     * What the glob {@code pattern} matches, or null when it is not a valid glob either. Hadoop's
     * own {@code globStatus} builds each match with {@code new Path(parent, name)} and fails on any
     * directory holding a name with a colon; this walks the pattern one segment at a time with
     * {@link GlobFilter} and {@link HadoopPaths#child} instead. A brace may not hold a {@code /}.
     */
    private static FileStatus[] glob(FileSystem fs, Path pattern) throws IOException {
        URI uri = fs.makeQualified(pattern).toUri();
        List<Path> current = List.of(new Path(uri.getScheme(), uri.getAuthority(), "/"));
        for (String segment : uri.getPath().split("/")) {
            if (segment.isEmpty()) {
                continue;
            }
            GlobFilter filter;
            try {
                filter = new GlobFilter(segment);
            } catch (IOException e) {
                return null; // "Illegal file pattern": neither a path nor a glob
            }
            List<Path> next = new ArrayList<>();
            for (Path dir : current) {
                if (!filter.hasPattern()) {
                    next.add(HadoopPaths.child(dir, segment));
                    continue;
                }
                try {
                    refuseUndecodableNames(fs, pattern.toString(), dir,
                            e -> filter.accept(HadoopPaths.child(dir, e.getFileName().toString())));
                    for (FileStatus s : fs.listStatus(dir, filter)) {
                        next.add(s.getPath());
                    }
                } catch (FileNotFoundException e) {
                    // a literal segment before this one named nothing: no match under it
                }
            }
            current = next;
        }
        List<FileStatus> matches = new ArrayList<>();
        for (Path p : current) {
            try {
                matches.add(fs.getFileStatus(p));
            } catch (FileNotFoundException e) {
                // the last literal segments named nothing
            }
        }
        return matches.toArray(new FileStatus[0]);
    }

    private static List<InputFile> listDirectory(FileSystem fs, String element, Path dir, boolean recursive)
            throws IOException {
        List<InputFile> found = new ArrayList<>();
        collect(fs, element, dir, "", dir, recursive, found, above(fs, dir));
        if (!found.isEmpty()) {
            return found;
        }
        if (!recursive) {
            collect(fs, element, dir, "", dir, true, found, above(fs, dir));
            if (!found.isEmpty()) {
                throw new InvalidInputException("--input " + element + ": no *" + SUFFIX + " files in " + dir
                        + ", but its subdirectories hold " + found.size() + " (e.g. " + found.get(0).name
                        + "); pass --recursive to take them");
            }
        }
        throw new InvalidInputException("--input " + element + ": no *" + SUFFIX + " files in " + dir
                + (recursive ? " or its subdirectories" : "") + " (names starting with '.' or '_' are skipped)");
    }

    /**
     * Adds the sequence files below {@code dir}. {@code above} holds the real paths of {@code dir} and
     * the directories above it in this walk (local file system; null elsewhere): a symbolic link back
     * to one of them is refused, since following it lists the same files again at every level (one
     * such link, until the links nest too deep to resolve; two, without end).
     */
    private static void collect(FileSystem fs, String element, Path dir, String prefix, Path root, boolean recursive,
                                List<InputFile> found, List<java.nio.file.Path> above) throws IOException {
        refuseUnreadableEntries(fs, element, dir, prefix, recursive);
        for (RemoteIterator<? extends FileStatus> it = list(fs, dir); it.hasNext(); ) {
            FileStatus s = it.next();
            String name = s.getPath().getName();
            if (hidden(name)) {
                continue;
            }
            if (s.isDirectory()) {
                if (recursive) {
                    java.nio.file.Path real = real(fs, s.getPath());
                    if (real != null && above.contains(real)) {
                        throw new InvalidInputException("--input " + element + ": " + prefix + name + " leads back to "
                                + real + ", a directory above it, so --recursive would list its files again at every "
                                + "level; remove the link, or name the directories to take (a comma-separated list)");
                    }
                    above.add(real);
                    collect(fs, element, s.getPath(), prefix + name + "/", root, true, found, above);
                    above.remove(above.size() - 1);
                }
            } else if (name.endsWith(SUFFIX)) {
                found.add(new InputFile(located(fs, s), prefix + name, root));
            }
        }
    }

    /**
     * The entries of {@code dir}. On the local file system its plain listing: Hadoop's
     * {@code listLocatedStatus} there builds each {@link LocatedFileStatus} from the file's permission,
     * owner and group, which the raw local file system reads by forking {@code ls -ld} per file where
     * the Hadoop native library is absent (as in Spark's own jars): 2,000 files took 45 s to list on the
     * 2-core VM (shared). {@link #located} adds the block locations without them. Elsewhere (HDFS) the
     * located listing, which brings the locations in the same calls.
     */
    private static RemoteIterator<? extends FileStatus> list(FileSystem fs, Path dir) throws IOException {
        if (!HadoopPaths.isLocal(fs)) {
            return fs.listLocatedStatus(dir);
        }
        java.util.Iterator<FileStatus> it = Arrays.asList(fs.listStatus(dir)).iterator();
        return new RemoteIterator<>() {
            @Override
            public boolean hasNext() {
                return it.hasNext();
            }

            @Override
            public FileStatus next() {
                return it.next();
            }
        };
    }

    /**
     * {@code s} with its block locations (kept for task locality), as a {@link LocatedFileStatus}. Built
     * from the fields the job reads (path, length, times, block size and replication): the permission,
     * owner and group are left out, since the local file system reads them with a forked {@code ls -ld}
     * per file (see {@link #list}) and nothing reads them.
     */
    private static LocatedFileStatus located(FileSystem fs, FileStatus s) throws IOException {
        if (s instanceof LocatedFileStatus) {
            return (LocatedFileStatus) s;
        }
        return new LocatedFileStatus(s.getLen(), s.isDirectory(), s.getReplication(), s.getBlockSize(),
                s.getModificationTime(), s.getAccessTime(), null, null, null, null, s.getPath(),
                fs.getFileBlockLocations(s, 0, s.getLen()));
    }

    /**
     * Refuses the sequence files of a local directory that cannot be read as files, which the file
     * system's listing does not tell apart: a symbolic link to nothing (its target moved, deleted or
     * not mounted), which the listing leaves out without a word, so the run would compute every
     * sequence but that one; and a named pipe, socket or device, which the listing calls a file of
     * length 0 and whose header read would wait for a writer without end. In the same pass, a
     * sequence file, or with {@code recursive} a directory, whose name this JVM cannot decode
     * ({@link #refuseUndecodableNames}), which the listing leaves out without a word too.
     */
    private static void refuseUnreadableEntries(FileSystem fs, String element, Path dir, String prefix,
                                                boolean recursive) throws IOException {
        java.nio.file.Path local = HadoopPaths.localFile(fs, dir);
        if (local == null) {
            return;
        }
        try (java.nio.file.DirectoryStream<java.nio.file.Path> entries = java.nio.file.Files.newDirectoryStream(local)) {
            for (java.nio.file.Path e : entries) {
                String name = e.getFileName().toString();
                if (hidden(name)) {
                    continue;
                }
                if (!decodable(e) && (name.endsWith(SUFFIX) || recursive && java.nio.file.Files.isDirectory(e))) {
                    throw undecodable(element, prefix, name, local);
                }
                if (!name.endsWith(SUFFIX)) {
                    continue;
                }
                if (java.nio.file.Files.isSymbolicLink(e) && !java.nio.file.Files.exists(e)) {
                    throw new InvalidInputException("--input " + element + ": " + prefix + name
                            + " is a symbolic link to " + java.nio.file.Files.readSymbolicLink(e) + ", which does not "
                            + "exist; restore its target, or remove the link to run without that sequence");
                }
                if (special(e)) {
                    throw notRegular(element, prefix + name);
                }
            }
        }
    }

    /**
     * Refuses the entries of a local directory that {@code take} accepts and whose names this JVM
     * cannot decode: the glob walk's check (a directory's listing makes it in
     * {@link #refuseUnreadableEntries}). The JVM turns a file name's bytes into a String by its file
     * name encoding (sun.jnu.encoding, from LANG / LC_ALL / LC_CTYPE), and a name that is not valid in
     * it (any non-ASCII name under LANG=C or with no locale set, as in many services and containers; a
     * Latin-1 name under UTF-8) comes out with replacement characters, which name no file. The file
     * system's listing then leaves such a file out without a word (its status is looked up by the
     * mangled name), so the run computed and published every sequence but those, with exit status 0.
     */
    private static void refuseUndecodableNames(FileSystem fs, String element, Path dir,
                                               java.util.function.Predicate<java.nio.file.Path> take)
            throws IOException {
        java.nio.file.Path local = HadoopPaths.localFile(fs, dir);
        if (local == null || !java.nio.file.Files.isDirectory(local)) {
            return;
        }
        try (java.nio.file.DirectoryStream<java.nio.file.Path> entries = java.nio.file.Files.newDirectoryStream(local)) {
            for (java.nio.file.Path e : entries) {
                String name = e.getFileName().toString();
                if (!hidden(name) && !decodable(e) && take.test(e)) {
                    throw undecodable(element, "", name, local);
                }
            }
        }
    }

    private static InvalidInputException undecodable(String element, String prefix, String name,
                                                     java.nio.file.Path local) {
        return new InvalidInputException("--input " + element + ": " + prefix + name + " in " + local + " has a name "
                + "that is not valid " + System.getProperty("sun.jnu.encoding") + ", this JVM's file name encoding, so "
                + "it cannot be opened by name and would be left out; run with a UTF-8 locale (LANG=C.UTF-8 or "
                + "en_US.UTF-8, and LC_ALL unset or UTF-8: `locale charmap` says UTF-8), or rename the file");
    }

    /** Whether the name of {@code e} (a directory's entry, its bytes as listed) comes back to the same bytes. */
    private static boolean decodable(java.nio.file.Path e) {
        try {
            return e.resolveSibling(e.getFileName().toString()).equals(e);
        } catch (java.nio.file.InvalidPathException unmappable) {
            return false;
        }
    }

    /** Refuses a local file named directly or by a glob that is a named pipe, socket or device (see above). */
    private static void refuseSpecialFile(FileSystem fs, String element, Path file, String name) {
        java.nio.file.Path local = HadoopPaths.localFile(fs, file);
        if (local != null && special(local)) {
            throw notRegular(element, name);
        }
    }

    /** True for a path that exists, links followed, as neither a regular file nor a directory. */
    private static boolean special(java.nio.file.Path p) {
        return java.nio.file.Files.exists(p) && !java.nio.file.Files.isRegularFile(p)
                && !java.nio.file.Files.isDirectory(p);
    }

    private static InvalidInputException notRegular(String element, String name) {
        return new InvalidInputException("--input " + element + ": " + name + " is not a regular file (a named pipe, "
                + "socket or device) and cannot be read as a sequence; move it out of the input, or copy the sequence "
                + "into a file");
    }

    /** The walk's first list of directories above: {@code dir}'s real path, or null off the local file system. */
    private static List<java.nio.file.Path> above(FileSystem fs, Path dir) throws IOException {
        List<java.nio.file.Path> above = new ArrayList<>(); // not List.of: it refuses the null of another file system
        above.add(real(fs, dir));
        return above;
    }

    /** The real path of a directory of the local file system (links followed), or null on any other. */
    private static java.nio.file.Path real(FileSystem fs, Path dir) throws IOException {
        java.nio.file.Path local = HadoopPaths.localFile(fs, dir);
        return local != null ? local.toRealPath() : null;
    }

    /**
     * Whether a listing skips {@code name}: names starting with '.' or '_' (partial files, checksums, Hadoop and Spark
     * markers such as {@code _SUCCESS} and {@code _temporary}), as Spark's readers skip them.
     */
    static boolean hidden(String name) {
        return name.startsWith(".") || name.startsWith("_");
    }
}
