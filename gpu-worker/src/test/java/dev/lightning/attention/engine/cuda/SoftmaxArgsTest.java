package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.SoftmaxSpec;
import dev.lightning.attention.tensor.DType;
import jcuda.driver.CUdeviceptr;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * SoftmaxArgs mirrors {@code struct SoftmaxArgs} of softmax_args.cuh (read from the header's text,
 * with KernelArgsTest's parser, so this runs without a GPU; the load-time check needs one), and
 * SoftmaxKernels fills it and picks kernels as the module's report says.
 */
class SoftmaxArgsTest {
    private static final Path HEADER = Path.of("src", "main", "cuda", "softmax_args.cuh");

    @Test
    void fieldsMatchTheHeaderInOrderNameAndSize() throws IOException {
        String text = Files.readString(HEADER);
        List<KernelArgsTest.CField> header = KernelArgsTest.structFields(text, "SoftmaxArgs");
        List<String> names = new ArrayList<>();
        for (KernelArgsTest.CField f : header) {
            names.add(f.name());
        }
        List<String> java = new ArrayList<>();
        for (SoftmaxArgs.Field f : SoftmaxArgs.Field.values()) {
            java.add(KernelArgsTest.camelCase(f.name()));
        }
        assertEquals(names, java, "SoftmaxArgs (softmax_args.cuh) and SoftmaxArgs.Field must list the same fields");
        int at = 0;
        for (int i = 0; i < header.size(); i++) {
            SoftmaxArgs.Field f = SoftmaxArgs.Field.values()[i];
            assertEquals(header.get(i).size(), f.size(), "size of " + f);
            assertEquals(at, f.offset(), f + " at the running sum of the fields before it");
            at += f.size();
        }
        assertEquals(96, SoftmaxArgs.SIZE);
        assertEquals(at, SoftmaxArgs.SIZE);
        Matcher count = Pattern.compile("#define\\s+SOFTMAX_ARGS_FIELDS\\s+(\\d+)").matcher(text);
        assertTrue(count.find());
        assertEquals(header.size(), Integer.parseInt(count.group(1)));
        List<String> reported = new ArrayList<>();
        Matcher m = Pattern.compile("ARG_OFFSET\\(SoftmaxArgs, (\\w+)\\);").matcher(text);
        while (m.find()) {
            reported.add(m.group(1));
        }
        assertEquals(names, reported, "softmax_args_layout must write the offset of every field in order");
    }

    @Test
    void verifyRefusesAnotherLayout() {
        SoftmaxArgs.Field[] fields = SoftmaxArgs.Field.values();
        int[] layout = new int[fields.length + 1];
        layout[0] = SoftmaxArgs.SIZE;
        for (SoftmaxArgs.Field f : fields) {
            layout[f.ordinal() + 1] = f.offset();
        }
        SoftmaxArgs.verify(layout.clone());
        int[] moved = layout.clone();
        moved[SoftmaxArgs.Field.SCALE_LOG2.ordinal() + 1] += 4;
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> SoftmaxArgs.verify(moved));
        assertTrue(e.getMessage().contains("SCALE_LOG2") && e.getMessage().contains("SoftmaxArgs"), e.getMessage());
        assertThrows(IllegalStateException.class, () -> SoftmaxArgs.verify(java.util.Arrays.copyOf(layout, 5)));
    }

    /** Every field of a block call lands at its offset with its value. */
    @Test
    void argsCarryTheBlockCall() {
        SoftmaxSpec spec = new SoftmaxSpec(12, 3, 40, 24, 0.2, 77);
        SoftmaxArgs a = SoftmaxKernels.args(spec, at(0x1000), 5000, 31, at(0x2000), at(0x3000), 4096, 900, at(0x4000),
                at(0x5000));
        ByteBuffer b = ByteBuffer.wrap(a.toBytes()).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(0x1000, b.getLong(SoftmaxArgs.Field.Q.offset()));
        assertEquals(0x2000, b.getLong(SoftmaxArgs.Field.K.offset()));
        assertEquals(0x3000, b.getLong(SoftmaxArgs.Field.V.offset()));
        assertEquals(0x4000, b.getLong(SoftmaxArgs.Field.O.offset()));
        assertEquals(0x5000, b.getLong(SoftmaxArgs.Field.LSE.offset()));
        assertEquals(5000, b.getLong(SoftmaxArgs.Field.Q_START.offset()));
        assertEquals(4096, b.getLong(SoftmaxArgs.Field.K_START.offset()));
        assertEquals(77, b.getLong(SoftmaxArgs.Field.WINDOW.offset()));
        assertEquals(31, b.getInt(SoftmaxArgs.Field.NQ.offset()));
        assertEquals(900, b.getInt(SoftmaxArgs.Field.NK.offset()));
        assertEquals(12, b.getInt(SoftmaxArgs.Field.HEADS_Q.offset()));
        assertEquals(3, b.getInt(SoftmaxArgs.Field.HEADS_K.offset()));
        assertEquals(40, b.getInt(SoftmaxArgs.Field.DK.offset()));
        assertEquals(24, b.getInt(SoftmaxArgs.Field.DV.offset()));
        assertEquals((float) (0.2 / Math.log(2)), b.getFloat(SoftmaxArgs.Field.SCALE_LOG2.offset()));
    }

    /** Kernel choice by padded width and dtype, shapes as the module reports them (a made-up report). */
    @Test
    void choiceFollowsTheReport() {
        int[] r = new int[SoftmaxKernels.Shapes.REPORT_INTS];
        r[0] = 64;
        r[1] = 128;
        r[2] = 256;
        for (int i = 0; i < 9; i++) {
            r[3 + 3 * i] = 100 + i;
            r[4 + 3 * i] = 200 + i;
            r[5 + 3 * i] = 300 + i;
        }
        r[30] = 256;
        r[31] = 32;
        r[32] = 32;
        SoftmaxKernels.Shapes s = SoftmaxKernels.Shapes.of(r, null);
        SoftmaxSpec spec = new SoftmaxSpec(8, 2, 33, 129, 0.1, 0);
        SoftmaxKernels.Choice c = SoftmaxKernels.choose(s, DType.BF16, spec, true);
        assertEquals("softmax_forward_bf16_k64_v256", c.kernel());
        assertEquals(102, c.threads());
        assertEquals(202, c.rows());
        assertEquals(302, c.smem());
        assertEquals((1000 * 4 + 201) / 202, c.rowTiles(spec, 1000));
        SoftmaxKernels.Choice f = SoftmaxKernels.choose(s, DType.F32, spec, true);
        assertEquals("softmax_forward_f32", f.kernel());
        assertEquals(4 * (32 * 33 + 32 * 34 + 32 * 129), f.smem());
        SoftmaxSpec wide = new SoftmaxSpec(4, 4, 128, 65, 0.1, 0);
        assertEquals("softmax_forward_f16_k128_v128", SoftmaxKernels.choose(s, DType.F16, wide, true).kernel());
        // with the Hopper module: widths in 65..128 go to the wgmma kernel unless turned off
        SoftmaxKernels.Shapes h = SoftmaxKernels.Shapes.of(r, new int[] {256, 128, 165888, 128});
        SoftmaxKernels.Choice wg = SoftmaxKernels.choose(h, DType.F16, wide, true);
        assertEquals("softmax_sm90_forward_f16_k128_v128", wg.kernel());
        assertEquals(165888, wg.smem());
        assertEquals("softmax_forward_f16_k128_v128", SoftmaxKernels.choose(h, DType.F16, wide, false).kernel());
        assertEquals("softmax_forward_bf16_k64_v256", SoftmaxKernels.choose(h, DType.BF16, spec, true).kernel());
        assertEquals("softmax_forward_f32", SoftmaxKernels.choose(h, DType.F32, wide, true).kernel());
        // the edges: a width equal to a padded width takes it; the wgmma range is 65..128 in both widths
        int[][] edges = {{64, 64}, {65, 65}, {128, 128}, {129, 128}, {128, 129}, {65, 64}, {256, 256}};
        String[] expect = {"softmax_forward_bf16_k64_v64", "softmax_sm90_forward_bf16_k128_v128",
            "softmax_sm90_forward_bf16_k128_v128", "softmax_forward_bf16_k256_v128", "softmax_forward_bf16_k128_v256",
            "softmax_forward_bf16_k128_v64", "softmax_forward_bf16_k256_v256"};
        for (int i = 0; i < edges.length; i++) {
            SoftmaxSpec e = new SoftmaxSpec(4, 2, edges[i][0], edges[i][1], 0.1, 0);
            assertEquals(expect[i], SoftmaxKernels.choose(h, DType.BF16, e, true).kernel(), edges[i][0] + " x " + edges[i][1]);
        }
        assertThrows(IllegalArgumentException.class, () -> s.widthIndex(257));
        assertEquals(1, new SoftmaxKernels.Choice("k", 1, 4, 0).rowTiles(spec, 1),
                "4 packed rows (1 query x 4 heads a group) fill one tile of 4");
        assertEquals(2, new SoftmaxKernels.Choice("k", 1, 4, 0).rowTiles(spec, 2));
    }

    /** The committed softmax.ptx holds every kernel the host can ask for, and the two report kernels. */
    @Test
    void thePtxHoldsEveryKernelTheHostNames() throws IOException {
        String ptx;
        try (var in = SoftmaxArgsTest.class.getResourceAsStream(CudaDevice.SOFTMAX_PTX_RESOURCE)) {
            assertTrue(in != null, CudaDevice.SOFTMAX_PTX_RESOURCE + " is on the class path");
            ptx = new String(in.readAllBytes(), java.nio.charset.StandardCharsets.US_ASCII);
        }
        List<String> names = new ArrayList<>(List.of(SoftmaxKernels.ARGS_LAYOUT, SoftmaxKernels.LAUNCH_SHAPES,
                "softmax_forward_f32"));
        for (String type : new String[] {"bf16", "f16"}) {
            for (int dk : new int[] {64, 128, 256}) {
                for (int dv : new int[] {64, 128, 256}) {
                    names.add("softmax_forward_" + type + "_k" + dk + "_v" + dv);
                }
            }
        }
        for (String n : names) {
            assertTrue(ptx.contains(".entry " + n + "("), n + " in softmax.ptx (rebuild it with build-ptx.sh)");
        }
        try (var in = SoftmaxArgsTest.class.getResourceAsStream(CudaDevice.SOFTMAX_HOPPER_PTX_RESOURCE)) {
            assertTrue(in != null, CudaDevice.SOFTMAX_HOPPER_PTX_RESOURCE + " is on the class path");
            String hopper = new String(in.readAllBytes(), java.nio.charset.StandardCharsets.US_ASCII);
            for (String n : List.of(SoftmaxKernels.ARGS_LAYOUT, SoftmaxKernels.HOPPER_LAUNCH_SHAPES,
                    "softmax_sm90_forward_bf16_k128_v128", "softmax_sm90_forward_f16_k128_v128")) {
                assertTrue(hopper.contains(".entry " + n + "("), n + " in softmax_sm90a.ptx");
            }
        }
    }

    private static CUdeviceptr at(long address) {
        return new CUdeviceptr().withByteOffset(address);
    }
}
