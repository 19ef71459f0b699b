package dev.lightning.attention.stream;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.FileChannel;
import java.nio.channels.WritableByteChannel;
import java.util.zip.CRC32C;

/**
 * Bytes [begin, begin + size) of a local file written in order with positioned writes, and their
 * CRC32C: what a task's staged output or its range of an in-place output is. It is both an
 * {@code OutputStream} (headers, states) and a {@code WritableByteChannel}, so that
 * {@link PieceWork} hands it a window's o as the off-heap buffer it is ({@link LocalWrites}: no
 * heap copy, parallel parts on large writes). Writing past {@code size}, or finishing short of it
 * ({@link #finish}), is an error; an unbounded output ({@link #unbounded}) takes any length. The
 * channel stays the caller's: {@link #close} only ends this view of it.
 */
public final class PositionedOutput extends OutputStream implements WritableByteChannel {
    private final FileChannel channel;
    private final long begin;
    /** Bytes the range holds; Long.MAX_VALUE when unbounded. */
    private final long size;
    private long done;
    /** CRC32C of the bytes written so far. */
    private int crc;
    private boolean open = true;

    /** The range [begin, begin + size) of {@code channel}'s file. */
    public PositionedOutput(FileChannel channel, long begin, long size) {
        if (begin < 0 || size < 0) {
            throw new IllegalArgumentException("range [" + begin + ", +" + size + ")");
        }
        this.channel = java.util.Objects.requireNonNull(channel, "channel");
        this.begin = begin;
        this.size = size;
    }

    /** {@code channel}'s file from byte 0, of any length. */
    public static PositionedOutput unbounded(FileChannel channel) {
        return new PositionedOutput(channel, 0, Long.MAX_VALUE);
    }

    private void admit(long len) throws IOException {
        if (!open) {
            throw new ClosedChannelException();
        }
        if (len > size - done) {
            throw new IOException("a piece wrote past its range [" + begin + ", " + (begin + size) + ") of "
                    + size + " bytes");
        }
    }

    @Override
    public void write(int b) throws IOException {
        write(new byte[] {(byte) b}, 0, 1);
    }

    @Override
    public void write(byte[] b, int off, int len) throws IOException {
        java.util.Objects.checkFromIndexSize(off, len, b.length);
        admit(len);
        CRC32C c = new CRC32C();
        c.update(b, off, len);
        ByteBuffer buf = ByteBuffer.wrap(b, off, len);
        long at = begin + done;
        while (buf.hasRemaining()) {
            at += channel.write(buf, at);
        }
        crc = Crc32c.combine(crc, (int) c.getValue(), len);
        done += len;
    }

    /** Writes all of {@code src}'s remaining bytes (in parallel parts when large); returns their count. */
    @Override
    public int write(ByteBuffer src) throws IOException {
        int len = src.remaining();
        admit(len);
        crc = Crc32c.combine(crc, LocalWrites.write(channel, begin + done, src), len);
        done += len;
        return len;
    }

    @Override
    public boolean isOpen() {
        return open;
    }

    /** Ends this view; the channel stays open. */
    @Override
    public void close() {
        open = false;
    }

    /** Bytes written so far. */
    public long written() {
        return done;
    }

    /** The CRC32C of the bytes written so far, as {@link CRC32C#getValue} gives it. */
    public long crc32c() {
        return Integer.toUnsignedLong(crc);
    }

    /** Checks that the whole range was written (bounded outputs); throws otherwise. */
    public void finish() throws IOException {
        if (size != Long.MAX_VALUE && done != size) {
            throw new IOException("a piece wrote " + done + " bytes of its range of " + size + " at " + begin);
        }
    }
}
