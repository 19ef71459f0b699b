package dev.lightning.attention.job.input;

import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsFile;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SequenceFilesTest {
    @TempDir
    java.nio.file.Path tmp;

    /** The driver records the path as a URI; every task reopens exactly that file with SequenceFiles.hadoopPath(). */
    @Test
    void sequenceFileReopensTheExactFile() throws Exception {
        FileSystem fs = HadoopPaths.fileSystem(new Path(tmp.toString()), new Configuration());
        for (String name : List.of("run:1.safetensors", "100%.safetensors", "%41.safetensors", "x#1.safetensors",
                "ünï.safetensors", "a b.safetensors")) {
            SafetensorsFile.write(tmp.resolve(name), List.of(
                    SafetensorsFile.Tensor.of("q", DType.F32, new long[] {2, 1, 2}, new float[] {1, 2, 3, 4}),
                    SafetensorsFile.Tensor.of("k", DType.F32, new long[] {2, 1, 2}, new float[] {1, 2, 3, 4}),
                    SafetensorsFile.Tensor.of("v", DType.F32, new long[] {2, 1, 2}, new float[] {1, 2, 3, 4})));
            FileStatus s = fs.getFileStatus(HadoopPaths.child(new Path(tmp.toUri()), name));
            SequenceFile f = SequenceFiles.inspect(fs, s, "sub/" + name, Slopes::minimax);
            assertEquals("sub/" + name, f.name);
            assertEquals(s.getPath(), SequenceFiles.hadoopPath(f), name);
            assertEquals(Files.size(tmp.resolve(name)), fs.getFileStatus(SequenceFiles.hadoopPath(f)).getLen(), name);
            assertTrue(f.tokens == 2);
        }
    }
}
