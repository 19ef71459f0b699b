package dev.lightning.attention.it;

import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;

import java.io.File;
import java.net.URI;

/**
 * The local file system under the scheme {@code divergent://}, seen differently by the driver and
 * the executors: in a task's thread (a Spark executor's), every path below the system property
 * {@code lightning.test.executorView}'s FROM (in {@code FROM=TO}) is taken below TO instead. This
 * is a cluster whose workers do not share the driver's view of --output (a local directory on
 * each host), in one JVM and without containers. Everything goes through {@link #pathToFile}, as
 * in RawLocalFileSystem, including the in-place output's file channels.
 */
public final class DivergentLocalFileSystem extends RawLocalFileSystem {
    static final String SCHEME = "divergent";
    static final String PROPERTY = "lightning.test.executorView";
    private static final URI NAME = URI.create(SCHEME + ":///");

    @Override
    public URI getUri() {
        return NAME;
    }

    @Override
    public String getScheme() {
        return SCHEME;
    }

    @Override
    public File pathToFile(Path path) {
        File f = super.pathToFile(path);
        String view = System.getProperty(PROPERTY);
        if (view == null || org.apache.spark.TaskContext.get() == null) {
            return f;
        }
        String from = view.substring(0, view.indexOf('='));
        String to = view.substring(view.indexOf('=') + 1);
        String p = f.getPath();
        return p.equals(from) || p.startsWith(from + File.separator) ? new File(to + p.substring(from.length())) : f;
    }
}
