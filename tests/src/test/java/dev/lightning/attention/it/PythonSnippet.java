package dev.lightning.attention.it;

import dev.lightning.attention.tensor.SafetensorsFile;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Runs the README's Python lines that read a parts output (the code block after the marker
 * {@code <!-- parts-reader -->}) on a real one, and holds what they read against the one-file form
 * of the same run. Skipped, saying so on standard output, where python3 with numpy is missing.
 */
final class PythonSnippet {
    static final String MARKER = "<!-- parts-reader -->";

    private PythonSnippet() {
    }

    static void runIfPossible(Path tmp, Path index, Path oneFile) throws IOException, InterruptedException {
        Process probe;
        try {
            probe = new ProcessBuilder("python3", "-c", "import numpy").redirectErrorStream(true).start();
        } catch (IOException e) {
            skip("no python3 (" + e.getMessage() + ")");
            return;
        }
        String why = new String(probe.getInputStream().readAllBytes()).strip();
        if (!probe.waitFor(60, TimeUnit.SECONDS) || probe.exitValue() != 0) {
            skip("python3 has no numpy (" + why + ")");
            return;
        }
        Path readme = Path.of(System.getProperty("maven.multiModuleProjectDirectory", ".."), "README.md");
        if (!Files.exists(readme)) {
            readme = Path.of("..", "README.md");
        }
        String text = Files.readString(readme);
        int at = text.indexOf(MARKER);
        assertTrue(at >= 0, "README.md has the parts reader after " + MARKER);
        int open = text.indexOf("```python\n", at);
        int close = text.indexOf("\n```", open + 10);
        String snippet = text.substring(open + "```python\n".length(), close + 1);
        Path dump = Files.createDirectories(tmp.resolve("python-read"));
        Path script = tmp.resolve("read_parts.py");
        Files.writeString(script, snippet + "\nimport sys\n"
                + "for name, a in read_output(sys.argv[1]).items():\n"
                + "    np.ascontiguousarray(a, dtype=np.float32).tofile(os.path.join(sys.argv[2], name + '.f32'))\n");
        Process p = new ProcessBuilder("python3", script.toString(), index.toString(), dump.toString())
                .redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "python3 finished");
        assertEquals(0, p.exitValue(), "the README's Python lines ran:\n" + out);
        Map<String, SafetensorsFile.Tensor> expect = SafetensorsFile.read(oneFile);
        for (SafetensorsFile.Tensor t : expect.values()) {
            byte[] raw = Files.readAllBytes(dump.resolve(t.name + ".f32"));
            float[] got = new float[raw.length / 4];
            ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(got);
            assertArrayEquals(t.toFloats(), got, "Python read " + t.name + " of " + index);
        }
        System.out.println("PythonSnippet: the README's Python lines read " + expect.keySet() + " of " + index
                + " equal to the one-file form");
    }

    private static void skip(String why) {
        System.out.println("PythonSnippet SKIPPED: " + why + "; the README's Python lines were not run");
    }
}
