package dev.lightning.attention.job;

import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

import java.io.IOException;
import java.io.OutputStream;
import java.io.Serializable;

/**
 * Where one run keeps its intermediate files, under {@code <output>/_temporary/lightning-<run>}
 * (a name Hadoop readers skip): pass-1 local states, the scan's incoming states, and the output
 * parts of split sequences. Every file here and in the output is written aside and renamed into
 * place, and its bytes are a function of the input alone, so a retried task writes the same file.
 */
final class Staging implements Serializable {
    private static final long serialVersionUID = 1L;

    final String root;

    Staging(String output, String runId) {
        this.root = new Path(new Path(output, "_temporary"), "lightning-" + runId).toString();
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

    Path finalState(int sequence) {
        return new Path(root, "parts/s" + sequence + ".final.f32");
    }

    /**
     * The file system of {@code path} for writing results. On the local file system no {@code .crc}
     * side files are written: the results are self-describing files a user reads directly.
     */
    static FileSystem outputFileSystem(Path path, org.apache.hadoop.conf.Configuration conf) throws IOException {
        FileSystem fs = path.getFileSystem(conf);
        if (fs instanceof org.apache.hadoop.fs.LocalFileSystem) {
            ((org.apache.hadoop.fs.LocalFileSystem) fs).setWriteChecksum(false);
        }
        return fs;
    }

    /** Something that writes a file's whole content. */
    interface Content {
        void writeTo(OutputStream out) throws IOException;
    }

    /**
     * Writes {@code dst} completely under a hidden temporary name, then renames it into place, so
     * no reader ever sees a partial file. If another attempt of the same task got there first,
     * its file (the same bytes) stays.
     */
    static void writeAtomically(FileSystem fs, Path dst, String attempt, Content content) throws IOException {
        Path tmp = new Path(dst.getParent(), "." + dst.getName() + ".inprogress-" + attempt);
        boolean done = false;
        try {
            try (OutputStream out = fs.create(tmp, true)) {
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
    }
}
