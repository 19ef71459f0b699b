package dev.lightning.attention.engine;

import org.junit.jupiter.api.Test;

import java.io.File;
import java.lang.reflect.Method;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A JVM whose class path lacks JCuda (a stock Spark given an application jar without it): the
 * GPU's absence must read as a reason, so that backend auto computes on the CPU, instead of a
 * NoClassDefFoundError failing every task. The engine's classes are loaded again in a class loader
 * that sees this test's class path minus JCuda's jars.
 */
class BackendsWithoutJCudaTest {

    @Test
    void withoutJCudaTheGpuIsUnavailableWithAReasonAndTheCpuStillComputes() throws Exception {
        // surefire's booter jar hides the class path from java.class.path; it passes it here
        String classPath = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        List<URL> urls = new ArrayList<>();
        int dropped = 0;
        for (String entry : classPath.split(File.pathSeparator)) {
            if (entry.isEmpty()) {
                continue;
            }
            if (Path.of(entry).getFileName().toString().startsWith("jcuda")) {
                dropped++;
                continue;
            }
            urls.add(Path.of(entry).toUri().toURL());
        }
        assertEquals(2, dropped, "the test class path should hold jcuda and jcuda-natives: " + classPath);
        try (URLClassLoader loader = new URLClassLoader(urls.toArray(new URL[0]), ClassLoader.getPlatformClassLoader())) {
            assertThrows(ClassNotFoundException.class, () -> Class.forName("jcuda.driver.JCudaDriver", false, loader));
            Class<?> backends = Class.forName(Backends.class.getName(), true, loader);

            String reason = (String) backends.getMethod("gpuUnavailableReason").invoke(null);
            assertNotNull(reason, "a GPU reported usable without JCuda");
            assertTrue(reason.contains("JCuda") && reason.contains("app.jar"), reason);

            Method fit = backends.getMethod("gpuCheckpointsFit", long.class, long.class);
            assertEquals(true, fit.invoke(null, 256L, 64L));
            assertEquals(false, fit.invoke(null, 96L, 32L));

            Object cpu = backends.getMethod("cpu").invoke(null);
            assertEquals("cpu", cpu.getClass().getMethod("name").invoke(cpu));
            assertFalse(cpu.getClass().getName().contains("Cuda"));
        }
    }
}
