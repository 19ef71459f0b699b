package dev.lightning.attention.engine.cuda;

/**
 * The PTX ISA a shipped module declares, and the oldest driver that compiles it.
 *
 * <p>A driver compiles PTX of the ISAs its CUDA release knows and refuses newer ones
 * (CUDA_ERROR_UNSUPPORTED_PTX_VERSION). build-ptx.sh declares every module at one ISA (PTX_ISA in ptx-isa.sh,
 * lower than the nvcc 13 that writes them, so that CUDA 12 drivers load them too); this class reads
 * that declaration back from the PTX's {@code .version} line, so that the driver check and the
 * messages follow the shipped text rather than a constant kept in step by hand.
 *
 * @param major the ISA's major version (8 in {@code .version 8.0})
 * @param minor its minor version
 */
record PtxIsa(int major, int minor) {

    /**
     * The first CUDA release (1000 * major + 10 * minor, as cuDriverGetVersion reports a driver) that
     * compiles each PTX ISA from 8.0 on, after the PTX ISA's release notes: ISA 8.x came with CUDA
     * 12.x up to 8.5 (CUDA 12.5 and 12.6), then 8.6 with 12.7, 8.7 with 12.8, 8.8 with 12.9, and 9.x
     * with 13.x. Index: the ISA's minor version, for major 8.
     */
    private static final int[] ISA_8_DRIVER = {12000, 12010, 12020, 12030, 12040, 12050, 12070, 12080, 12090};

    /** The ISA of the portable lightning module, which every other module shares (ptx-isa.sh). */
    static PtxIsa shipped() {
        return Shipped.ISA;
    }

    private static final class Shipped { // read at first use: a jar without the resource fails there, loudly
        static final PtxIsa ISA = of(CudaDevice.ptxHeader(CudaDevice.PTX_RESOURCE), CudaDevice.PTX_RESOURCE);
    }

    /** The ISA {@code ptx} (a module's text) declares; {@code what} names it in the error. */
    static PtxIsa of(String ptx, String what) {
        for (String line : ptx.lines().limit(200).toList()) {
            String t = line.strip();
            if (t.startsWith(".version ")) {
                String v = t.substring(".version ".length()).strip();
                int dot = v.indexOf('.');
                try {
                    return new PtxIsa(Integer.parseInt(v.substring(0, dot)), Integer.parseInt(v.substring(dot + 1)));
                } catch (RuntimeException e) {
                    throw new IllegalStateException(what + " declares PTX ISA '" + v + "', not MAJOR.MINOR", e);
                }
            }
        }
        throw new IllegalStateException(what + " has no .version line in its first 200 lines: not PTX from nvcc");
    }

    /**
     * The oldest driver that compiles this ISA, as cuDriverGetVersion reports it (12000 for CUDA
     * 12.0). ISAs before 8.0 cannot hold the Hopper kernels and are not shipped.
     */
    int minimumDriver() {
        if (major == 8 && minor < ISA_8_DRIVER.length) {
            return ISA_8_DRIVER[minor];
        }
        if (major == 9) {
            return 13000 + 10 * minor;
        }
        throw new IllegalStateException("PTX ISA " + this + " is not one this build knows the driver for (8.0 to 9.x); "
                + "build-ptx.sh declares the modules at ptx-isa.sh's PTX_ISA: rebuild them with it");
    }

    /** The driver's CUDA release as text: 12020 is "12.2". */
    static String cudaText(int driverVersion) {
        return (driverVersion / 1000) + "." + (driverVersion % 1000) / 10;
    }

    /** Why a driver of {@code driverVersion} cannot compile this ISA, or null when it can. */
    String refusal(int driverVersion) {
        int needed = minimumDriver();
        if (driverVersion >= needed) {
            return null;
        }
        return "the NVIDIA driver supports CUDA " + cudaText(driverVersion) + ", but the kernels are PTX ISA " + this
                + ", which needs a driver for CUDA " + cudaText(needed) + " or later";
    }

    /** "the driver for CUDA 12.0 or later" this ISA needs, for messages after a refused load. */
    String driverNeeded() {
        return "a driver for CUDA " + cudaText(minimumDriver()) + " or later";
    }

    @Override
    public String toString() {
        return major + "." + minor;
    }
}
