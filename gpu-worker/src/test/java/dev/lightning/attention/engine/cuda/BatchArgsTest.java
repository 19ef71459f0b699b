package dev.lightning.attention.engine.cuda;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * BatchArgs mirrors {@code struct LightningBatchArgs} of lightning_batch_args.cuh field for field
 * (read from the header's text, so this fails without a GPU when one side changes alone), the
 * layout kernel reports every field, and {@link BatchArgs#verify} refuses a moved field. The same
 * checks KernelArgsTest makes for LightningArgs.
 */
class BatchArgsTest {
    private static final Path HEADER = Path.of("src", "main", "cuda", "lightning_batch_args.cuh");
    private static final Path KERNELS = Path.of("src", "main", "cuda", "lightning_batch.cu");

    @Test
    void fieldsMatchTheHeaderInOrderNameAndSize() throws IOException {
        String text = Files.readString(HEADER);
        Matcher body = Pattern.compile("struct\\s+LightningBatchArgs\\s*\\{(.*?)\\};", Pattern.DOTALL).matcher(text);
        assertTrue(body.find(), "struct LightningBatchArgs in " + HEADER);
        String code = body.group(1).replaceAll("//[^\\n]*", "");
        List<String> names = new ArrayList<>();
        List<Integer> sizes = new ArrayList<>();
        for (String part : code.split(";")) {
            String d = part.trim().replaceAll("\\s+", " ");
            if (d.isEmpty()) {
                continue;
            }
            Matcher m = Pattern.compile("^(.*?)(\\w+)$").matcher(d);
            assertTrue(m.matches(), d);
            String type = m.group(1).trim();
            sizes.add(type.endsWith("*") ? 8 : type.equals("int") || type.equals("float") ? 4 : -1);
            names.add(m.group(2));
        }
        List<String> java = new ArrayList<>();
        int at = 0;
        for (BatchArgs.Field f : BatchArgs.Field.values()) {
            java.add(camelCase(f.name()));
            assertEquals(sizes.get(f.ordinal()), f.size(), "size of " + f);
            assertEquals(at, f.offset(), f + " at the running sum of the fields before it");
            at += f.size();
        }
        assertEquals(names, java, "LightningBatchArgs and BatchArgs.Field must list the same fields in the same order");
        assertEquals(BatchArgs.SIZE, at);
        assertEquals(0, BatchArgs.SIZE % 8);
        Matcher count = Pattern.compile("#define\\s+LIGHTNING_BATCH_ARGS_FIELDS\\s+(\\d+)").matcher(text);
        assertTrue(count.find());
        assertEquals(names.size(), Integer.parseInt(count.group(1)));
        List<String> reported = new ArrayList<>();
        Matcher r = Pattern.compile("ARG_OFFSET\\(LightningBatchArgs, (\\w+)\\);").matcher(text);
        while (r.find()) {
            reported.add(r.group(1));
        }
        assertEquals(names, reported, "lightning_batch_args_layout must write every field's offset in order");
    }

    @Test
    void verifyRefusesAnotherLayout() {
        BatchArgs.Field[] fields = BatchArgs.Field.values();
        int[] layout = new int[fields.length + 1];
        layout[0] = BatchArgs.SIZE;
        for (BatchArgs.Field f : fields) {
            layout[f.ordinal() + 1] = f.offset();
        }
        BatchArgs.verify(layout.clone());
        int[] moved = layout.clone();
        moved[BatchArgs.Field.GROUP.ordinal() + 1] += 4;
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> BatchArgs.verify(moved));
        assertTrue(e.getMessage().contains("GROUP"), e.getMessage());
        int[] bigger = layout.clone();
        bigger[0] += 8;
        assertThrows(IllegalStateException.class, () -> BatchArgs.verify(bigger));
    }

    /** The host's kernel names are the ones the module defines. */
    @Test
    void theHostNamesKernelsTheModuleHas() throws IOException {
        String cu = Files.readString(KERNELS);
        for (String type : new String[] {"f32", "bf16", "f16"}) {
            for (int rows : new int[] {4, 8, 16}) {
                String name = "lightning_batch_step_" + type + "_r" + rows;
                assertTrue(cu.contains("BATCH_KERNEL(" + name + ","), name + " in " + KERNELS);
                if (rows <= BatchModule.STAGED_ROWS) {
                    assertTrue(cu.contains("BATCH_STAGED_KERNEL(" + name + "_staged,"), name + "_staged in " + KERNELS);
                } else {
                    assertTrue(!cu.contains(name + "_staged"), "no staged kernel above " + BatchModule.STAGED_ROWS + " rows");
                }
            }
        }
        assertEquals("lightning_batch_step_bf16_r8",
                CudaBatchStep.kernelName(dev.lightning.attention.tensor.DType.BF16, 8, false));
        assertEquals("lightning_batch_step_bf16_r8_staged",
                CudaBatchStep.kernelName(dev.lightning.attention.tensor.DType.BF16, 8, true));
    }

    /** The committed PTX (what the jar ships) holds every kernel the host launches, at the shipped PTX ISA. */
    @Test
    void theShippedPtxHoldsEveryKernelTheHostLaunches() throws IOException {
        String ptx;
        try (var in = BatchModule.class.getResourceAsStream(BatchModule.PTX_RESOURCE)) {
            assertTrue(in != null, BatchModule.PTX_RESOURCE + " in the jar");
            ptx = new String(in.readAllBytes());
        }
        assertEquals(PtxIsa.shipped(), PtxIsa.of(ptx, BatchModule.PTX_RESOURCE), "the ISA build-ptx.sh declares");
        for (var dtype : dev.lightning.attention.tensor.DType.values()) {
            for (int rows : new int[] {4, 8, 16}) {
                String name = CudaBatchStep.kernelName(dtype, rows, false);
                assertTrue(ptx.contains(".entry " + name + "("), name + " in the shipped PTX");
                if (rows <= BatchModule.STAGED_ROWS) {
                    String staged = CudaBatchStep.kernelName(dtype, rows, true);
                    assertTrue(ptx.contains(".entry " + staged + "("), staged + " in the shipped PTX");
                }
            }
        }
        assertTrue(ptx.contains(".entry " + BatchModule.ARGS_LAYOUT + "(") && ptx.contains(".entry "
                + BatchModule.SHAPES + "("));
    }

    private static String camelCase(String enumName) {
        StringBuilder b = new StringBuilder();
        boolean upper = false;
        for (char ch : enumName.toLowerCase(Locale.ROOT).toCharArray()) {
            if (ch == '_') {
                upper = true;
            } else {
                b.append(upper ? Character.toUpperCase(ch) : ch);
                upper = false;
            }
        }
        return b.toString();
    }
}
