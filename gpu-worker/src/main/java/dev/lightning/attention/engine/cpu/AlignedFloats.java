package dev.lightning.attention.engine.cpu;

import java.lang.management.ManagementFactory;

/**
 * A float[] whose element {@link #BASE} starts on a 64-byte boundary, as far as the JVM lets one
 * know: the vector tiles load B's rows 64 bytes at a time, and a load that spans two cache lines
 * costs the 4 x 4 tile about a fifth of its rate (64 x 64 x 64 in L1, B's rows 64 floats apart:
 * 153 to 158 GFLOP per CPU-second at the aligned offset against 127 to 132 at the seven others,
 * 2026-12-03). Java 17 gives heap arrays 8 bytes of alignment and moves them, with one exception:
 * G1 places an array larger than half a region (a humongous object) at the start of its own
 * regions and never moves it, and a float[]'s data begins 16 bytes past its start (mark word,
 * compressed class pointer, length). So under G1 the array is made at least that large and
 * element 12 (48 bytes in) is aligned. Under another collector, or without the JDK's management
 * beans, nothing is known: BASE is 0 and the array has the size asked for. Only speed depends on
 * this; what the products compute does not.
 */
final class AlignedFloats {
    /** G1's region size in bytes, or 0 where G1 is not the collector (or it cannot be asked). */
    private static final long REGION = g1Region();
    /** The element that starts on a 64-byte boundary. */
    static final int BASE = REGION > 0 ? 12 : 0;

    private AlignedFloats() {
    }

    /**
     * An array whose elements [BASE, BASE + floats) are the caller's. Where {@code aligned} and under
     * G1 it is larger than half a region (1 to 16 MiB, for regions of 2 to 32 MiB), so element BASE
     * starts a line; otherwise it has the size asked for, and no known alignment.
     */
    static float[] allocate(int floats, boolean aligned) {
        long n = (long) BASE + floats;
        if (aligned && REGION > 0) {
            n = Math.max(n, REGION / 2 / Float.BYTES + 16);
        }
        return new float[Math.toIntExact(n)];
    }

    /** A length rounded up to whole 64-byte lines (16 floats), so that what follows it is aligned too. */
    static int lines(int floats) {
        return (floats + 15) & ~15;
    }

    private static long g1Region() {
        try {
            com.sun.management.HotSpotDiagnosticMXBean vm =
                    ManagementFactory.getPlatformMXBean(com.sun.management.HotSpotDiagnosticMXBean.class);
            if (vm == null || !Boolean.parseBoolean(vm.getVMOption("UseG1GC").getValue())) {
                return 0;
            }
            return Long.parseLong(vm.getVMOption("G1HeapRegionSize").getValue());
        } catch (RuntimeException | LinkageError e) {
            return 0;
        }
    }
}
