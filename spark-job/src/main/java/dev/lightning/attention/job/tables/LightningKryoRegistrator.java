package dev.lightning.attention.job.tables;

import com.esotericsoftware.kryo.Kryo;
import dev.lightning.attention.job.pass.TaskReport;
import org.apache.spark.serializer.KryoRegistrator;

/**
 * Registers every class of ours that Spark serializes with Kryo. The job runs with
 * {@code spark.kryo.registrationRequired=true}, so an unregistered class fails loudly instead of
 * being written with its full name.
 */
public final class LightningKryoRegistrator implements KryoRegistrator {
    @Override
    public void registerClasses(Kryo kryo) {
        kryo.register(TaskReport.class);
        kryo.register(TaskReport[].class);
        kryo.register(String[].class);
        // runs over tables (TableValidation, TableShuffle, TablePass2): shuffled and collected records
        kryo.register(TableValidation.Summary.class);
        kryo.register(TableValidation.Meta.class);
        kryo.register(TableValidation.SeqStart.class);
        kryo.register(TableShuffle.Key.class);
        kryo.register(TableShuffle.Block.class);
        kryo.register(TablePass2.Out.class);
        kryo.register(byte[][].class);
    }
}
