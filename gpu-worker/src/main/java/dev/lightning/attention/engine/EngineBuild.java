package dev.lightning.attention.engine;

import dev.lightning.attention.plan.PiecePlanner;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.CodeSource;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Enumeration;
import java.util.HexFormat;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;
import java.util.stream.Stream;
import java.util.zip.CRC32;

/**
 * Which computation this build runs: a digest of the code whose results a run stages and publishes
 * (the plan, the engine with its kernels' PTX, the tensor formats and the streaming path), so that
 * work staged by one build is not continued by another that computes otherwise. The product version
 * is the same for every build of a release and cannot tell them apart: an interrupted run staged
 * by a build from before a fix of pass 1, resumed by one after it, published outputs of neither
 * build (1.6e-7 relative off each). A change of wording, options or Spark wiring leaves
 * the digest alone; any change of a class or resource in {@link #PACKAGES} changes it.
 * <p>
 * The digest is of each file's name, size and CRC-32, in name order, whether the classes sit in a
 * directory (a Maven build's {@code target/classes}) or a jar (the module's or the application's
 * shaded one): the same code gives the same digest in both, and jar timestamps do not count.
 */
public final class EngineBuild {
    private EngineBuild() {
    }

    /** The packages whose code decides the bytes of a run's results, as path prefixes of their files. */
    static final List<String> PACKAGES = List.of("dev/lightning/attention/plan/", "dev/lightning/attention/engine/",
            "dev/lightning/attention/tensor/", "dev/lightning/attention/stream/");

    private static volatile String digest;

    /**
     * This build's digest (32 hexadecimal digits), or null where the code's location cannot be read
     * (a class loader that gives none): then no staged work is taken for this build's.
     */
    public static String digest() {
        String d = digest;
        if (d == null) {
            Set<Path> roots = new LinkedHashSet<>();
            for (Class<?> c : List.of(PiecePlanner.class, EngineBuild.class)) {
                Path root = root(c);
                if (root == null) {
                    return null;
                }
                roots.add(root);
            }
            try {
                digest = d = digest(roots);
            } catch (IOException e) {
                return null;
            }
        }
        return d;
    }

    /** The jar or directory class {@code c} was loaded from, or null. */
    private static Path root(Class<?> c) {
        CodeSource source = c.getProtectionDomain().getCodeSource();
        if (source == null || source.getLocation() == null) {
            return null;
        }
        try {
            return Path.of(source.getLocation().toURI());
        } catch (URISyntaxException | IllegalArgumentException | java.nio.file.FileSystemNotFoundException e) {
            return null;
        }
    }

    /**
     * The digest of the files of {@link #PACKAGES} found in {@code roots} (jars or directories): of
     * each one's name, size and CRC-32, which a jar's directory holds for every entry (so nothing is
     * decompressed) and which a directory's files are read once for. Hashing the 14 MB of classes
     * and PTX themselves with SHA-256 took 0.4 to 0.5 s in a fresh JVM on the 2-core VM, this 0.08 to
     * 0.16 s from the application jar (computed once a driver). A change of a file that keeps both
     * its size and its CRC-32 goes unseen, 1 in 2^32 by chance.
     */
    static String digest(Iterable<Path> roots) throws IOException {
        Map<String, long[]> files = new TreeMap<>(); // name -> size, CRC-32
        for (Path root : roots) {
            if (Files.isDirectory(root)) {
                try (Stream<Path> walk = Files.walk(root)) {
                    for (Path p : (Iterable<Path>) walk::iterator) {
                        String name = root.relativize(p).toString().replace(p.getFileSystem().getSeparator(), "/");
                        if (Files.isRegularFile(p) && counts(name)) {
                            byte[] bytes = Files.readAllBytes(p);
                            CRC32 crc = new CRC32();
                            crc.update(bytes);
                            files.put(name, new long[] {bytes.length, crc.getValue()});
                        }
                    }
                }
            } else {
                try (JarFile jar = new JarFile(root.toFile())) {
                    for (Enumeration<JarEntry> en = jar.entries(); en.hasMoreElements(); ) {
                        JarEntry e = en.nextElement();
                        if (!e.isDirectory() && counts(e.getName())) {
                            files.put(e.getName(), new long[] {e.getSize(), e.getCrc()});
                        }
                    }
                }
            }
        }
        MessageDigest sha;
        try {
            sha = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every Java platform has SHA-256", e);
        }
        for (Map.Entry<String, long[]> f : files.entrySet()) {
            sha.update((f.getKey() + "\0" + f.getValue()[0] + "\0" + f.getValue()[1] + "\n").getBytes(StandardCharsets.UTF_8));
        }
        return HexFormat.of().formatHex(sha.digest(), 0, 16);
    }

    private static boolean counts(String name) {
        for (String prefix : PACKAGES) {
            if (name.startsWith(prefix)) {
                return true;
            }
        }
        return false;
    }
}
