package dev.lightning.attention.bench;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.stream.PieceWork;
import dev.lightning.attention.stream.PositionedOutput;
import dev.lightning.attention.stream.RangeReader;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.stream.WindowBuffers;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsHeader;
import dev.lightning.attention.tensor.TokenTensor;

import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.channels.WritableByteChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

/**
 * The executor's file-to-file path through {@link PieceWork}, as a task runs it: one BF16
 * sequence file (q, k, v), pass 2 over it as one piece (q, k, v read window by window, scanned,
 * forward(), o scanned and written to a file), on the paths before and after host tensors:
 * <ul>
 *   <li>heap: heap windows ({@link WindowBuffers#heap()}) filled by serial array reads, o written
 *       from the heap (the executor before this change: a stream's {@code readFully} into arrays);</li>
 *   <li>host: the backend's host tensors ({@link WindowBuffers#of}, one block for all runs, as one
 *       task holds it), filled by the file channel's parallel reads ({@link RangeReader#of}), o
 *       written from the block as the job writes a local output ({@link PositionedOutput}: positioned
 *       writes in parallel parts, with their CRC32C).</li>
 *   <li>ahead: host, reading one window ahead ({@link PieceWork#readAhead}): the next window is read
 *       and scanned on another thread while the current one computes and writes (two blocks). Its
 *       read time then overlaps the rest, so "other" is the total less the stages that did not.</li>
 * </ul>
 * Each mode runs once from a dropped page cache (with {@code --drop-cache true}, where this process
 * may drop it: root) and then
 * {@code --runs} times from the page cache; the stages are the time inside the reader, the
 * backend's forward(), the output stream, and the rest (NaN/Inf scans, views). The modes' o files
 * and final states are compared by digest.
 *
 * <pre>PieceWorkBench [--shape 262144x8x128] [--runs 5] [--backend gpu] [--window-bytes 1073741824] [--dir DIR] [--modes heap,host,ahead] [--drop-cache false]</pre>
 */
public final class PieceWorkBench {
    private PieceWorkBench() {
    }

    public static void main(String[] args) throws Exception {
        int t = 262_144;
        int h = 8;
        int d = 128;
        int runs = 5;
        String backendName = "gpu";
        long windowBytes = 1L << 30;
        Path dir = null;
        List<String> modes = List.of("heap", "host");
        boolean cold = false;
        for (int i = 0; i < args.length; i += 2) {
            switch (args[i]) {
                case "--shape" -> {
                    String[] s = args[i + 1].split("x");
                    t = Integer.parseInt(s[0]);
                    h = Integer.parseInt(s[1]);
                    d = Integer.parseInt(s[2]);
                }
                case "--runs" -> runs = Integer.parseInt(args[i + 1]);
                case "--backend" -> backendName = args[i + 1];
                case "--window-bytes" -> windowBytes = Long.parseLong(args[i + 1]);
                case "--dir" -> dir = Path.of(args[i + 1]);
                case "--modes" -> modes = List.of(args[i + 1].split(","));
                case "--drop-cache" -> cold = Boolean.parseBoolean(args[i + 1]);
                default -> throw new IllegalArgumentException("unknown option " + args[i]
                        + "; expected --shape TxHxD, --runs N, --backend gpu|cpu, --window-bytes B, --dir DIR, --modes heap,host,ahead, "
                        + "--drop-cache true|false");
            }
        }
        Path work = dir != null ? Files.createDirectories(dir) : Files.createTempDirectory("lightning-piecework");
        Path input = work.resolve("qkv.safetensors");
        long t0 = System.nanoTime();
        writeInput(input, t, h, d);
        System.out.printf(Locale.ROOT, "input %s: T=%d H=%d D=%d BF16, %d bytes, written in %.1f s%n", input, t, h, d,
                Files.size(input), (System.nanoTime() - t0) / 1e9);
        scanRates((long) t * h * d * 2);
        Map<String, String> digests = new java.util.LinkedHashMap<>();
        try (AttentionBackend backend = "cpu".equals(backendName) ? Backends.cpu()
                : Backends.gpu(0, Backends.DEFAULT_GPU_MEMORY)) {
            Timed timed = new Timed(backend);
            for (String mode : modes) {
                boolean host = switch (mode) {
                    case "host", "ahead" -> true;
                    case "heap" -> false;
                    default -> throw new IllegalArgumentException("mode " + mode + ": expected heap, host or ahead");
                };
                boolean ahead = "ahead".equals(mode);
                WindowBuffers windows = host ? WindowBuffers.of(timed) : WindowBuffers.heap();
                Path out = work.resolve("o-" + mode + ".bin");
                double[][] stages = new double[runs + 1][];
                byte[] state = null;
                boolean dropped = false;
                for (int r = 0; r <= runs; r++) {
                    if (r == 0 && cold) {
                        dropped = dropPageCache();
                    }
                    Result res = once(timed, windows, input, out, windowBytes, host, ahead);
                    stages[r] = res.stages;
                    state = res.state;
                }
                double inBytes = 3.0 * t * h * d * 2;
                double outBytes = (double) t * h * d * 2;
                print(mode, "cold", stages[0], inBytes, outBytes, dropped ? "page cache dropped before it"
                        : "page cache NOT dropped (not asked, or no permission): the first run");
                double[] totals = new double[runs];
                for (int r = 0; r < runs; r++) {
                    totals[r] = stages[r + 1][4];
                }
                double[] sorted = totals.clone();
                Arrays.sort(sorted);
                int median = 0;
                for (int r = 0; r < runs; r++) {
                    if (totals[r] == sorted[runs / 2]) {
                        median = r;
                    }
                }
                print(mode, "warm", stages[median + 1], inBytes, outBytes, "median of " + runs + " runs by total; totals ms "
                        + Arrays.toString(Arrays.stream(totals).map(x -> Math.round(x * 10) / 10.0).toArray()));
                digests.put(mode, digest(out) + " state " + HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256")
                        .digest(state)).substring(0, 16));
                System.out.printf(Locale.ROOT, "mode %s: window block %d bytes, o digest %s%n", mode, windows.bytes(),
                        digests.get(mode));
                Files.deleteIfExists(out);
            }
        } finally {
            Files.deleteIfExists(input);
            if (dir == null) {
                Files.deleteIfExists(work);
            }
        }
        boolean same = digests.values().stream().distinct().count() <= 1;
        System.out.println("RESULT piecework outputs " + (same ? "byte-identical across modes ok" : "DIFFERENT FAILED")
                + " " + digests);
        if (!same) {
            System.exit(1);
        }
    }

    private record Result(double[] stages, byte[] state) {
    }

    /** Pass 2 over the whole file as one piece; stages in ms: read, forward, write, other, total. */
    private static Result once(Timed backend, WindowBuffers windows, Path input, Path out, long windowBytes,
                               boolean host, boolean ahead) throws IOException {
        long[] readNanos = new long[1];
        try (FileChannel channel = FileChannel.open(input, StandardOpenOption.READ);
             FileChannel outChannel = FileChannel.open(out, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
                     StandardOpenOption.READ, StandardOpenOption.WRITE);
             FileOutputStream file = host ? null : new FileOutputStream(out.toFile())) {
            RangeReader plain = host ? RangeReader.of(channel) : (position, buf, off, len) ->
                    readSerial(channel, position, ByteBuffer.wrap(buf, off, len));
            RangeReader in = new RangeReader() {
                @Override
                public void readFully(long position, byte[] buf, int off, int len) throws IOException {
                    long s = System.nanoTime();
                    plain.readFully(position, buf, off, len);
                    readNanos[0] += System.nanoTime() - s;
                }

                @Override
                public void readFully(long position, ByteBuffer dst) throws IOException {
                    long s = System.nanoTime();
                    plain.readFully(position, dst);
                    readNanos[0] += System.nanoTime() - s;
                }
            };
            SequenceFile f = SequenceFile.describe(input.toString(), "qkv", channel.size(), in, Slopes::minimax);
            readNanos[0] = 0;
            backend.nanos = 0;
            // host: as the job writes a local output (PositionedOutput: parallel parts, CRC32C); heap: a file stream
            TimedOut o = host ? new TimedOut(PositionedOutput.unbounded(outChannel)) : new TimedOut(file);
            PieceWork work = new PieceWork(1.0 / Math.sqrt(f.layout().dk()), 64, windowBytes, f.dtype).reusing(windows)
                    .readAhead(ahead);
            long s = System.nanoTime();
            LightningState last = work.outputs(backend, in, f, new Piece(0, 0, 1, 0, f.tokens),
                    LightningState.zeros(work.spec(f)), o);
            long total = System.nanoTime() - s;
            double read = readNanos[0] / 1e6;
            double fwd = backend.nanos / 1e6;
            double write = o.nanos / 1e6;
            return new Result(new double[] {read, fwd, write, total / 1e6 - read - fwd - write, total / 1e6},
                    last.toBytes());
        }
    }

    /**
     * The NaN/Inf scan of {@code bytes} bytes of BF16 (one tensor's worth), one value at a time
     * (the scan before this change) and word-wise in parts, on the heap and off it; best of 3.
     */
    private static void scanRates(long bytes) {
        int n = Math.toIntExact(bytes);
        byte[] raw = new byte[n];
        SplittableRandom rnd = new SplittableRandom(3);
        for (int i = 1; i < n; i += 2) {
            raw[i] = (byte) (rnd.nextInt(0x3f) | (rnd.nextBoolean() ? 0x80 : 0));
        }
        ByteBuffer direct = ByteBuffer.allocateDirect(n).put(raw);
        String[] names = {"one value at a time (before)", "word-wise, heap", "word-wise, direct"};
        for (int m = 0; m < 3; m++) {
            long best = Long.MAX_VALUE;
            long found = -2;
            for (int r = 0; r < 3; r++) {
                long s = System.nanoTime();
                dev.lightning.attention.tensor.NonFinite.Found f = m == 0
                        ? dev.lightning.attention.tensor.NonFinite.scanEachValue(raw, 0, n / 2, DType.BF16)
                        : m == 1 ? dev.lightning.attention.tensor.NonFinite.scan(raw, 0, n / 2, DType.BF16)
                        : dev.lightning.attention.tensor.NonFinite.scan(direct, 0, n / 2, DType.BF16);
                best = Math.min(best, System.nanoTime() - s);
                found = f.count;
            }
            System.out.printf(Locale.ROOT, "RESULT piecework scan %s: %d bytes in %.1f ms, %.2f GB/s (found %d)%n",
                    names[m], n, best / 1e6, n / (double) best, found);
        }
    }

    /** One thread's positioned reads, as a stream's readFully does them. */
    private static void readSerial(FileChannel c, long position, ByteBuffer dst) throws IOException {
        long at = position;
        while (dst.hasRemaining()) {
            int got = c.read(dst, at);
            if (got < 0) {
                throw new java.io.EOFException("input ends at " + at);
            }
            at += got;
        }
    }

    private static void print(String mode, String which, double[] st, double inBytes, double outBytes, String note) {
        System.out.printf(Locale.ROOT, "RESULT piecework mode=%s %s read_ms=%.1f read_GB_per_s=%.2f forward_ms=%.1f "
                        + "write_ms=%.1f write_GB_per_s=%.2f other_ms=%.1f total_ms=%.1f total_GB_per_s=%.2f (%s)%n",
                mode, which, st[0], inBytes / st[0] / 1e6, st[1], st[2], outBytes / st[2] / 1e6, st[3], st[4],
                (inBytes + outBytes) / st[4] / 1e6, note);
    }

    /** The backend with forward() and advance() timed; host tensors are the backend's own. */
    private static final class Timed implements AttentionBackend {
        final AttentionBackend b;
        long nanos;

        Timed(AttentionBackend b) {
            this.b = b;
        }

        @Override
        public String name() {
            return b.name();
        }

        @Override
        public String device() {
            return b.device();
        }

        @Override
        public LightningState advance(AttentionSpec spec, TokenTensor k, TokenTensor v, LightningState state) {
            long s = System.nanoTime();
            try {
                return b.advance(spec, k, v, state);
            } finally {
                nanos += System.nanoTime() - s;
            }
        }

        @Override
        public LightningState forward(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                                      LightningState state, TokenTensor o, Checkpoints checkpoints) {
            long s = System.nanoTime();
            try {
                return b.forward(spec, q, k, v, state, o, checkpoints);
            } finally {
                nanos += System.nanoTime() - s;
            }
        }

        @Override
        public TokenTensor hostTensor(DType dtype, int tokens, int heads, int dim) {
            return b.hostTensor(dtype, tokens, heads, dim);
        }

        @Override
        public TokenTensor scratchHostTensor(DType dtype, int tokens, int heads, int dim) {
            return b.scratchHostTensor(dtype, tokens, heads, dim);
        }

        @Override
        public void releaseHostTensor(TokenTensor t) {
            b.releaseHostTensor(t);
        }
    }

    /**
     * An output stream, timed, that is also a channel, so PieceWork writes off-heap o through it:
     * a file stream's channel (heap mode), or the job's local-output stream (host mode).
     */
    private static final class TimedOut extends OutputStream implements WritableByteChannel {
        final OutputStream stream;
        final WritableByteChannel channel;
        long nanos;

        TimedOut(FileOutputStream file) {
            this.stream = file;
            this.channel = file.getChannel();
        }

        TimedOut(PositionedOutput out) {
            this.stream = out;
            this.channel = out;
        }

        @Override
        public void write(int b) throws IOException {
            stream.write(b);
        }

        @Override
        public void write(byte[] buf, int off, int len) throws IOException {
            long s = System.nanoTime();
            stream.write(buf, off, len);
            nanos += System.nanoTime() - s;
        }

        @Override
        public int write(ByteBuffer src) throws IOException {
            long s = System.nanoTime();
            try {
                int n = src.remaining();
                while (src.hasRemaining()) {
                    channel.write(src);
                }
                return n;
            } finally {
                nanos += System.nanoTime() - s;
            }
        }

        @Override
        public boolean isOpen() {
            return channel.isOpen();
        }
    }

    /** A safetensors file of q, k, v [T, H, D] BF16: random finite values of magnitude 2^-7 to 2, on several threads. */
    private static void writeInput(Path file, int t, int h, int d) throws IOException {
        List<SafetensorsHeader.Spec> specs = new ArrayList<>();
        for (String name : new String[] {"q", "k", "v"}) {
            specs.add(new SafetensorsHeader.Spec(name, DType.BF16, t, h, d));
        }
        SafetensorsHeader header = SafetensorsHeader.layout(file.toString(), specs, Map.of());
        byte[] head = header.encode();
        long per = (long) t * h * d * 2;
        long start = header.dataStart();
        int chunk = 8 << 20;
        long chunks = (3 * per + chunk - 1) / chunk;
        try (FileChannel c = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            ByteBuffer hb = ByteBuffer.wrap(head);
            while (hb.hasRemaining()) {
                c.write(hb, hb.position());
            }
            IntStream.range(0, Math.toIntExact(chunks)).parallel().forEach(i -> {
                long from = (long) i * chunk;
                int len = (int) Math.min(chunk, 3 * per - from);
                ByteBuffer b = ByteBuffer.allocate(len).order(ByteOrder.LITTLE_ENDIAN);
                SplittableRandom rnd = new SplittableRandom(i * 0x9E3779B97F4A7C15L + 7);
                for (int j = 0; j < len; j += 2) {
                    int r = rnd.nextInt();
                    int bits = (r & 0x807f) | ((0x78 + ((r >>> 8) & 7)) << 7);
                    b.putShort(j, (short) bits);
                }
                try {
                    long at = start + from;
                    while (b.hasRemaining()) {
                        at += c.write(b, at);
                    }
                } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            });
            c.force(false);
        }
    }

    private static String digest(Path p) throws Exception {
        MessageDigest md = MessageDigest.getInstance("SHA-256");
        try (FileChannel c = FileChannel.open(p, StandardOpenOption.READ)) {
            ByteBuffer b = ByteBuffer.allocateDirect(16 << 20);
            while (c.read(b) > 0) {
                b.flip();
                md.update(b);
                b.clear();
            }
        }
        return HexFormat.of().formatHex(md.digest()).substring(0, 16);
    }

    /** Whether the page cache could be dropped (root on Linux); false elsewhere. */
    private static boolean dropPageCache() {
        try {
            new ProcessBuilder("sync").inheritIO().start().waitFor();
            Files.writeString(Path.of("/proc/sys/vm/drop_caches"), "3\n");
            return true;
        } catch (IOException | SecurityException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }
}
