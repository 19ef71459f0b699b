package dev.lightning.attention.job;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

import java.io.FileNotFoundException;
import java.io.FilterOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * Where one run keeps everything it writes before the commit publishes it:
 * {@code <output>/_temporary/lightning-<run>/} (a name Hadoop and Spark readers skip).
 * <pre>
 *   run.json             who made it, and the fingerprint of inputs and settings (for --resume)
 *   local/, incoming/    pass-1 local states and the scan's incoming states
 *   parts/               pass-2 outputs of the pieces of split sequences (and of every sequence with
 *                        --state-every), the states recorded in them, and their final states
 *   files/NAME           complete output files, published into the output directory by the commit
 *   done/UNIT.json       one marker per finished unit of work: its files with size and CRC32C
 *   _lightning_report.json, commit.json    the report, and the commit record (see {@link Commit})
 * </pre>
 * Every file is written aside and renamed into place, and its bytes are a function of the input
 * and settings alone, so a retried or resumed task writes the same file. A unit whose marker
 * still matches its files (sizes and checksums) is not computed again by {@code --resume}.
 */
final class Staging implements Serializable {
    private static final long serialVersionUID = 1L;
    static final String PARENT = "_temporary";
    static final String PREFIX = "lightning-";

    final String root;
    /** Whether tasks may keep units an earlier attempt of this run finished (--resume). */
    final boolean resume;

    Staging(Path output, String runId, boolean resume) {
        this.root = new Path(new Path(output, PARENT), PREFIX + runId).toString();
        this.resume = resume;
    }

    /** The staging directories of all runs in {@code output} (complete or not), oldest name first. */
    static List<Path> all(FileSystem fs, Path output) throws IOException {
        List<Path> found = new ArrayList<>();
        Path parent = new Path(output, PARENT);
        try {
            for (FileStatus s : fs.listStatus(parent)) {
                if (s.isDirectory() && s.getPath().getName().startsWith(PREFIX)) {
                    found.add(s.getPath());
                }
            }
        } catch (FileNotFoundException e) {
            return found;
        }
        found.sort(null);
        return found;
    }

    static String runIdOf(Path stagingDir) {
        return stagingDir.getName().substring(PREFIX.length());
    }

    Path path() {
        return new Path(root);
    }

    Path runFile() {
        return new Path(root, "run.json");
    }

    Path report() {
        return new Path(root, LightningJob.REPORT);
    }

    Path localState(int sequence, int piece) {
        return new Path(root, "local/s" + sequence + "-p" + piece + ".f32");
    }

    Path incomingState(int sequence, int piece) {
        return new Path(root, "incoming/s" + sequence + "-p" + piece + ".f32");
    }

    Path outputPart(int sequence, int piece) {
        return new Path(root, "parts/s" + sequence + "-p" + piece + ".o");
    }

    /** The states pass 2 recorded in a piece (--state-every): each LightningState.toBytes, in order. */
    Path checkpointsPart(int sequence, int piece) {
        return new Path(root, "parts/s" + sequence + "-p" + piece + ".states.f32");
    }

    /** What --output-mode checksums keeps of a piece's o instead of the part (OutputSummary.toBytes). */
    Path outputSummary(int sequence, int piece) {
        return new Path(root, "parts/s" + sequence + "-p" + piece + ".o-summary");
    }

    Path finalState(int sequence) {
        return new Path(root, "parts/s" + sequence + ".final.f32");
    }

    /** The complete output file of {@code name} (a name relative to the output directory). */
    Path stagedOutput(String name) {
        return HadoopPaths.child(new Path(root, "files"), name);
    }

    private Path marker(String unit) {
        return new Path(root, "done/" + unit + ".json");
    }

    // ---------------------------------------------------------------- units of work

    /** A file a unit wrote: where, how long, its CRC32C. */
    static final class Written {
        final Path path;
        final long size;
        final long crc;

        Written(Path path, long size, long crc) {
            this.path = path;
            this.size = size;
            this.crc = crc;
        }
    }

    /** Records that {@code unit} is finished with these files (written after the files are in place). */
    void markDone(FileSystem fs, String unit, String attempt, List<Written> files) throws IOException {
        ObjectMapper json = new ObjectMapper();
        ObjectNode n = json.createObjectNode();
        ArrayNode list = n.putArray("files");
        for (Written w : files) {
            list.addObject().put("path", w.path.toUri().toString()).put("size", w.size).put("crc32c", w.crc);
        }
        byte[] bytes = json.writeValueAsBytes(n);
        writeAtomically(fs, marker(unit), attempt, o -> o.write(bytes));
    }

    /**
     * Whether {@code unit} was finished by an earlier attempt of this run and its files are still
     * exactly as recorded (read back and checksummed). Only with --resume; otherwise false.
     */
    boolean alreadyDone(FileSystem fs, String unit) throws IOException {
        if (!resume) {
            return false;
        }
        JsonNode n;
        try (InputStream in = fs.open(marker(unit))) {
            n = new ObjectMapper().readTree(in);
        } catch (FileNotFoundException e) {
            return false;
        } catch (IOException e) {
            return false; // a marker that does not parse is no proof: compute the unit again
        }
        for (JsonNode f : n.path("files")) {
            Path p = new Path(java.net.URI.create(f.path("path").asText()));
            try {
                FileStatus s = fs.getFileStatus(p);
                if (s.getLen() != f.path("size").asLong(-1) || crc(fs, p) != f.path("crc32c").asLong(-1)) {
                    return false;
                }
            } catch (FileNotFoundException e) {
                return false;
            }
        }
        return n.path("files").size() > 0;
    }

    static long crc(FileSystem fs, Path p) throws IOException {
        CRC32C crc = new CRC32C();
        byte[] buf = new byte[1 << 20];
        try (InputStream in = fs.open(p)) {
            for (int r; (r = in.read(buf)) > 0; ) {
                crc.update(buf, 0, r);
            }
        }
        return crc.getValue();
    }

    // ---------------------------------------------------------------- atomic writes

    /** Something that writes a file's whole content. */
    interface Content {
        void writeTo(OutputStream out) throws IOException;
    }

    /**
     * Writes {@code dst} completely under a hidden temporary name, then renames it into place, so
     * no reader ever sees a partial file. If another attempt of the same task got there first,
     * its file (the same bytes) stays. Returns the size and CRC32C of what was written.
     */
    static Written writeAtomically(FileSystem fs, Path dst, String attempt, Content content) throws IOException {
        Path tmp = HadoopPaths.child(dst.getParent(), "." + dst.getName() + ".inprogress-" + attempt);
        boolean done = false;
        CRC32C crc = new CRC32C();
        long[] size = {0};
        try {
            try (OutputStream raw = fs.create(tmp, true);
                 OutputStream out = new FilterOutputStream(raw) {
                     @Override
                     public void write(int b) throws IOException {
                         crc.update(b);
                         size[0]++;
                         raw.write(b);
                     }

                     @Override
                     public void write(byte[] b, int off, int len) throws IOException {
                         crc.update(b, off, len);
                         size[0] += len;
                         raw.write(b, off, len);
                     }
                 }) {
                content.writeTo(out);
            }
            if (!fs.rename(tmp, dst)) {
                if (!fs.exists(dst)) {
                    throw new IOException("cannot rename " + tmp + " to " + dst);
                }
            }
            done = true;
        } finally {
            if (fs.exists(tmp)) {
                fs.delete(tmp, false);
            }
            if (!done && fs.exists(tmp)) {
                throw new IOException("cannot remove the partial file " + tmp);
            }
        }
        return new Written(dst, size[0], crc.getValue());
    }

    static void writeAtomically(FileSystem fs, Path dst, String attempt, byte[] bytes) throws IOException {
        writeAtomically(fs, dst, attempt, o -> o.write(bytes));
    }
}
