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
 * KernelArgs mirrors {@code struct LightningArgs} of lightning_args.cuh: the same fields in the
 * same order with the same sizes, so the same offsets. Read from the header's text, so a field
 * added, removed or moved on one side only fails here, without a GPU (the load-time check,
 * {@link KernelArgs#verify}, needs one).
 */
class KernelArgsTest {
    private static final Path HEADER = Path.of("src", "main", "cuda", "lightning_args.cuh");

    /** A field of the C struct: its name and its size in bytes. */
    record CField(String name, int size) {
    }

    @Test
    void sizeIsTheSumOfTheFields() {
        assertEquals(208, KernelArgs.SIZE);
        int at = 0;
        for (KernelArgs.Field f : KernelArgs.Field.values()) {
            assertEquals(at, f.offset(), f + " is at the running sum of the fields before it");
            at += f.size();
        }
        assertEquals(KernelArgs.SIZE, at);
        assertEquals(0, KernelArgs.SIZE % 8, "a multiple of the largest field, as C pads it");
    }

    /**
     * Each setter writes its value little-endian at its field's offset and nowhere else, and refuses a field of the
     * other size (an int written into a pointer would leave its upper half stale).
     */
    @Test
    void settersWriteTheirFieldAndRefuseAFieldOfAnotherSize() {
        KernelArgs a = new KernelArgs().i64(KernelArgs.Field.POSITION, 0x0102030405060708L).i32(KernelArgs.Field.DV, 77)
                .f32(KernelArgs.Field.SCALE, 0.5f);
        java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(a.toBytes()).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        assertEquals(KernelArgs.SIZE, b.capacity());
        assertEquals(0x0102030405060708L, b.getLong(KernelArgs.Field.POSITION.offset()));
        assertEquals(77, b.getInt(KernelArgs.Field.DV.offset()));
        assertEquals(0.5f, b.getFloat(KernelArgs.Field.SCALE.offset()));
        int nonZero = 0;
        for (byte x : a.toBytes()) {
            nonZero += x != 0 ? 1 : 0;
        }
        assertEquals(8 + 1 + 1, nonZero, "the three values' bytes (77 is one, 0.5f = 0x3f000000 one), nothing else");
        org.junit.jupiter.api.Assertions.assertArrayEquals(a.toBytes(), a.copy().toBytes(), "a copy");
        assertEquals("DV is a 4-byte field, not 8", assertThrows(IllegalArgumentException.class,
                () -> new KernelArgs().i64(KernelArgs.Field.DV, 1)).getMessage());
        assertThrows(IllegalArgumentException.class, () -> new KernelArgs().i32(KernelArgs.Field.POSITION, 1));
        assertThrows(IllegalArgumentException.class, () -> new KernelArgs().f32(KernelArgs.Field.Q, 1));
        assertThrows(IllegalArgumentException.class, () -> new KernelArgs().ptr(KernelArgs.Field.N, null));
        assertEquals(0L, java.nio.ByteBuffer.wrap(new KernelArgs().ptr(KernelArgs.Field.Q, null).toBytes())
                .order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong(KernelArgs.Field.Q.offset()), "a null pointer is 0");
    }

    /** Every 8-byte field comes first: the order that makes the C layout free of padding. */
    @Test
    void eightByteFieldsComeFirst() {
        boolean fourSeen = false;
        for (KernelArgs.Field f : KernelArgs.Field.values()) {
            assertTrue(f.size() == 4 || f.size() == 8, f + " is " + f.size() + " bytes");
            if (f.size() == 4) {
                fourSeen = true;
            } else {
                assertTrue(!fourSeen, f + " (8 bytes) after a 4-byte field would be padded in C");
            }
        }
    }

    @Test
    void fieldsMatchTheHeaderInOrderNameAndSize() throws IOException {
        List<CField> header = structFields(Files.readString(HEADER), "LightningArgs");
        KernelArgs.Field[] java = KernelArgs.Field.values();
        List<String> headerNames = new ArrayList<>();
        for (CField f : header) {
            headerNames.add(f.name);
        }
        List<String> javaNames = new ArrayList<>();
        for (KernelArgs.Field f : java) {
            javaNames.add(camelCase(f.name()));
        }
        assertEquals(headerNames, javaNames, "LightningArgs (lightning_args.cuh) and KernelArgs.Field must list the same "
                + "fields in the same order");
        for (int i = 0; i < java.length; i++) {
            assertEquals(header.get(i).size, java[i].size(), "size of " + header.get(i).name);
        }
    }

    /** The layout kernel reports every field, in order, and the count the header declares. */
    @Test
    void theLayoutKernelListsEveryField() throws IOException {
        String text = Files.readString(HEADER);
        Matcher count = Pattern.compile("#define\\s+LIGHTNING_ARGS_FIELDS\\s+(\\d+)").matcher(text);
        assertTrue(count.find(), "LIGHTNING_ARGS_FIELDS in " + HEADER);
        assertEquals(KernelArgs.Field.values().length, Integer.parseInt(count.group(1)));
        List<String> reported = new ArrayList<>();
        Matcher m = Pattern.compile("LIGHTNING_ARG_OFFSET\\((\\w+)\\);").matcher(text);
        while (m.find()) {
            reported.add(m.group(1));
        }
        List<String> declared = new ArrayList<>();
        for (CField f : structFields(text, "LightningArgs")) {
            declared.add(f.name);
        }
        assertEquals(declared, reported, "lightning_args_layout must write the offset of every field in order");
    }

    /** The parser and the name conversion are what the tests above stand on: they must tell fields apart. */
    @Test
    void theParserSeesAFieldGainedOnEitherSide() throws IOException {
        String text = Files.readString(HEADER);
        String gained = text.replace("    int leadTokens;", "    int extraField;   // new\n    int leadTokens;");
        assertTrue(!gained.equals(text), "the header's last field is leadTokens");
        List<CField> fields = structFields(gained, "LightningArgs");
        assertEquals(KernelArgs.Field.values().length + 1, fields.size());
        assertEquals("extraField", fields.get(fields.size() - 2).name);
        assertEquals("checkpointNorms", camelCase("CHECKPOINT_NORMS"));
        assertEquals("q", camelCase("Q"));
        assertThrows(IllegalStateException.class, () -> structFields("struct Other { int a; };", "LightningArgs"));
    }

    @Test
    void verifyRefusesAnotherLayout() {
        KernelArgs.Field[] fields = KernelArgs.Field.values();
        int[] layout = new int[fields.length + 1];
        layout[0] = KernelArgs.SIZE;
        for (KernelArgs.Field f : fields) {
            layout[f.ordinal() + 1] = f.offset();
        }
        KernelArgs.verify(layout.clone());
        int[] moved = layout.clone();
        moved[KernelArgs.Field.EPS.ordinal() + 1] += 4;
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> KernelArgs.verify(moved));
        assertTrue(e.getMessage().contains("EPS"), e.getMessage());
        int[] longer = java.util.Arrays.copyOf(layout, layout.length + 1);
        longer[0] += 4;
        assertThrows(IllegalStateException.class, () -> KernelArgs.verify(longer));
    }

    /**
     * The fields of {@code struct <name>} in a header's text, in declaration order, with their C
     * sizes (x86-64/CUDA). Also read by SoftmaxArgsTest.
     */
    static List<CField> structFields(String text, String name) {
        Matcher body = Pattern.compile("struct\\s+" + name + "\\s*\\{(.*?)\\};", Pattern.DOTALL).matcher(text);
        if (!body.find()) {
            throw new IllegalStateException("no struct " + name + " in the header");
        }
        String code = body.group(1).replaceAll("//[^\\n]*", "").replaceAll("(?s)/\\*.*?\\*/", "");
        List<CField> out = new ArrayList<>();
        Pattern decl = Pattern.compile("^(.*?)(\\w+)$");
        for (String part : code.split(";")) {
            String d = part.trim().replaceAll("\\s+", " ");
            if (d.isEmpty()) {
                continue;
            }
            Matcher m = decl.matcher(d);
            if (!m.matches()) {
                throw new IllegalStateException("cannot read the declaration '" + d + "'");
            }
            String type = m.group(1).trim();
            int size;
            if (type.endsWith("*") || type.equals("long long")) {
                size = 8;
            } else if (type.equals("int") || type.equals("float")) {
                size = 4;
            } else {
                throw new IllegalStateException("field " + m.group(2) + " has type '" + type + "' of no known size");
            }
            out.add(new CField(m.group(2), size));
        }
        return out;
    }

    /** CHECKPOINT_NORMS -> checkpointNorms: the enum's names as the struct spells them. */
    static String camelCase(String enumName) {
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
