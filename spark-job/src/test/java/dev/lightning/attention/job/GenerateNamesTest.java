package dev.lightning.attention.job;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** bin/lightning generate names its files seq-00000.safetensors, ... whatever the JVM's locale, and replaces none unasked. */
class GenerateNamesTest {
    /**
     * In an Arabic or Persian locale %05d wrote that locale's digits (seq-٠٠٠٠٠.safetensors), so a
     * generate --overwrite from another locale added a second set of files beside the first, and a
     * run over the directory read both.
     */
    @Test
    void generatedNamesAreAsciiInAnyLocale(@TempDir Path dir) throws Exception {
        Locale before = Locale.getDefault();
        try {
            Locale.setDefault(Locale.forLanguageTag("ar-EG"));
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            int status = LightningMain.run(new String[] {"generate", "--output", dir.toString(), "--files", "2",
                "--tokens", "8", "--heads", "1", "--dk", "4", "--dv", "4"}, new PrintStream(out, true),
                    new PrintStream(out, true));
            assertEquals(0, status, out.toString(StandardCharsets.UTF_8));
        } finally {
            Locale.setDefault(before);
        }
        try (Stream<Path> s = Files.list(dir)) {
            assertEquals(List.of("seq-00000.safetensors", "seq-00001.safetensors"),
                    s.map(p -> p.getFileName().toString()).sorted().collect(Collectors.toList()));
        }
    }

    /**
     * A symbolic link of a generated file's name that leads nowhere (its target on an unmounted disk) counted as no
     * file, so generate replaced the user's link without --overwrite. It is refused, and left as it was, like a file.
     */
    @Test
    void aDanglingLinkOfAGeneratedNameIsNotReplacedWithoutOverwrite(@TempDir Path dir) throws Exception {
        Path link = Files.createSymbolicLink(dir.resolve("seq-00000.safetensors"), dir.resolve("unmounted/big"));
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        int status = LightningMain.run(new String[] {"generate", "--output", dir.toString(), "--files", "1",
            "--tokens", "8", "--heads", "1", "--dk", "4", "--dv", "4"}, new PrintStream(out, true),
                new PrintStream(out, true));
        String log = out.toString(StandardCharsets.UTF_8);
        assertEquals(2, status, log);
        org.junit.jupiter.api.Assertions.assertTrue(log.contains("already holds 1 file(s) it would write, e.g. "
                + "seq-00000.safetensors; pass --overwrite"), log);
        org.junit.jupiter.api.Assertions.assertTrue(Files.isSymbolicLink(link), "left as it was");
        assertEquals(dir.resolve("unmounted/big"), Files.readSymbolicLink(link));
    }
}
