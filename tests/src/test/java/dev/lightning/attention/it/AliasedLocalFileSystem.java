package dev.lightning.attention.it;

import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;

import java.io.IOException;
import java.net.URI;

/**
 * The local file system under the scheme {@code lightningtest://}: a stand-in for an object store
 * connector, which is not on bin/lightning's classpath unless LIGHTNING_EXTRA_CLASSPATH adds it.
 * WrapperTest adds this module's test classes that way and names the class in
 * {@code spark.hadoop.fs.lightningtest.impl}, as a user does for a connector jar. File statuses
 * are plain ones: the local file system's own read permissions through java.io.File, which takes
 * file: URIs only.
 */
public final class AliasedLocalFileSystem extends RawLocalFileSystem {
    static final String SCHEME = "lightningtest";
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
    public FileStatus getFileStatus(Path f) throws IOException {
        return plain(super.getFileStatus(f));
    }

    @Override
    public FileStatus[] listStatus(Path f) throws IOException {
        FileStatus[] all = super.listStatus(f);
        for (int i = 0; i < all.length; i++) {
            all[i] = plain(all[i]);
        }
        return all;
    }

    private static FileStatus plain(FileStatus s) {
        return new FileStatus(s.getLen(), s.isDirectory(), s.getReplication(), s.getBlockSize(),
                s.getModificationTime(), s.getPath());
    }
}
