package dev.lightning.attention.job.pass;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.exec.FaultPoints;
import dev.lightning.attention.job.hadoop.HadoopConf;
import dev.lightning.attention.job.input.SequenceFiles;
import dev.lightning.attention.job.input.StoredStates;
import dev.lightning.attention.job.output.Staging;
import dev.lightning.attention.stream.NonFiniteInputException;
import dev.lightning.attention.stream.SequenceFile;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

import java.io.IOException;
import java.io.OutputStream;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;

/**
 * The scan on the executors: the incoming states of a split sequence's pieces, in blocks
 * ({@link BlockScan}), from the local states pass 1 staged ({@link #scan}).
 */
final class ScanTasks extends PassTasks {
    private static final long serialVersionUID = 1L;

    ScanTasks(HadoopConf hadoop, Staging staging, JobConfig cfg, PassProgress progress) {
        super(hadoop, staging, cfg, progress);
    }

    /**
     * One unit of a split sequence's blocked scan, with the tokens of its elements, the scan's
     * block size, and where pass 1 staged the sequence's local states (read by units of level 0).
     */
    static final class ScanItem implements Serializable {
        private static final long serialVersionUID = 1L;
        final SequenceFile file;
        final int sequence;
        final BlockScan.Unit unit;
        final long[] tokens;
        final int block;
        final PieceGroups local;
        /** The stored state the sequence continues (--initial-states), or null. */
        final StoredStates.State stored;

        ScanItem(SequenceFile file, int sequence, BlockScan.Unit unit, long[] tokens, int block, PieceGroups local,
                 StoredStates.State stored) {
            this.file = file;
            this.sequence = sequence;
            this.unit = unit;
            this.tokens = tokens;
            this.block = block;
            this.local = local;
            this.stored = stored;
        }
    }

    /**
     * The scan: each item one unit of a split sequence's blocked scan ({@link BlockScan}), which
     * reads at most a block of states and one carry and writes at most a block, holding two
     * states at a time. The sequence's initial state is the carry into block 0 of every level. A
     * down unit writes its block's prefixes into one file ({@link Staging#prefixes}).
     */
    WorkRDD.Worker<ScanItem> scan() {
        return (items, ctx) -> {
            long start = System.nanoTime();
            FileSystem stagingFs = fs(staging.root);
            List<String> skipped = new ArrayList<>();
            List<String> names = new ArrayList<>();
            int resumed = 0;
            try (Staging.StateReader reader = new Staging.StateReader(stagingFs)) {
                for (ScanItem it : items) {
                    names.add(it.file.name);
                    String unit = it.unit.name(it.sequence);
                    if (staging.alreadyDone(stagingFs, unit)) {
                        resumed++;
                        progress.kept(0);
                        continue;
                    }
                    AttentionSpec spec = spec(it.file);
                    StagedStates states = new StagedStates(stagingFs, reader, it, spec, attempt(ctx), skipped);
                    if (it.unit.up) {
                        BlockScan.run(spec, it.unit, it.tokens, states);
                    } else {
                        states.written.add(Staging.writeAtomically(stagingFs,
                                staging.prefixes(it.sequence, it.unit.level, it.unit.block), attempt(ctx), out -> {
                                    states.prefixes = out;
                                    BlockScan.run(spec, it.unit, it.tokens, states);
                                }));
                        FaultPoints.reach("scan");
                    }
                    if (states.clean) {
                        staging.markDone(stagingFs, unit, attempt(ctx), states.written);
                    }
                    progress.computed(0); // units done, for the progress line
                }
            }
            return report("scan", ctx, items.size(), 0, null, start, skipped, resumed, 0, names);
        };
    }

    /** The states of one sequence's scan in the staging area, for one unit: what it wrote, and whether its input was clean. */
    private final class StagedStates implements BlockScan.States {
        private final FileSystem fs;
        private final Staging.StateReader reader;
        private final ScanItem item;
        private final AttentionSpec spec;
        private final String attempt;
        private final List<String> skipped;
        final List<Staging.Written> written = new ArrayList<>();
        private int group = -1;
        private Path groupPath;
        /** A down unit's file of prefixes, written in order. */
        OutputStream prefixes;
        private int prefixesWritten;
        /** False when the initial state held NaN/Inf in skip mode: zeros stood in, and the unit gets no marker. */
        boolean clean = true;

        StagedStates(FileSystem fs, Staging.StateReader reader, ScanItem item, AttentionSpec spec, String attempt,
                     List<String> skipped) {
            this.fs = fs;
            this.reader = reader;
            this.item = item;
            this.spec = spec;
            this.attempt = attempt;
            this.skipped = skipped;
        }

        @Override
        public LightningState initial() throws IOException {
            SequenceFile f = item.file;
            try (SequenceFiles.Opened in = SequenceFiles.open(f, hadoop.get())) {
                return initialState(in, f, spec, item.sequence, item.stored);
            } catch (NonFiniteInputException e) {
                // skip mode: the sequence is dropped after pass 2; zeros keep the scan going
                skipped.add(skipOrThrow(e));
                clean = false;
                return LightningState.zeros(spec);
            }
        }

        @Override
        public LightningState element(int level, int j) throws IOException {
            if (level > 0) {
                return readState(reader, staging.scanElement(item.sequence, level, j), 0, spec);
            }
            int g = item.local.groupOf(j);
            if (g != group) { // the same Path object for a group's states: the reader keeps its file open
                group = g;
                groupPath = staging.localStates(item.sequence, item.local.first(g), item.local.last(g));
            }
            return readState(reader, groupPath, (long) (j - item.local.first(g)) * spec.stateBytes(), spec);
        }

        @Override
        public void putElement(int level, int j, LightningState s) throws IOException {
            written.add(Staging.writeAtomically(fs, staging.scanElement(item.sequence, level, j), attempt,
                    out -> out.write(s.toBytes())));
            FaultPoints.reach("scan");
        }

        @Override
        public LightningState prefix(int level, int j) throws IOException {
            return prefixOf(reader, staging, item.sequence, level, j, item.block, spec);
        }

        @Override
        public void putPrefix(int level, int j, LightningState s) throws IOException {
            // the down unit of block b writes y_(bB+1) .. y_(bB+count) in order (BlockScan.run)
            int expected = item.unit.block * item.block + prefixesWritten + 1;
            if (prefixes == null || level != item.unit.level || j != expected) {
                throw new IllegalStateException("scan " + item.unit + ": prefix " + j + " of level " + level
                        + " out of order, expected " + expected + " of level " + item.unit.level);
            }
            prefixes.write(s.toBytes());
            prefixesWritten++;
        }
    }
}
