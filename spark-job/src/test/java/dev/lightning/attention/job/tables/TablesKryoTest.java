package dev.lightning.attention.job.tables;

import dev.lightning.attention.tensor.DType;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A session that requires Kryo registration but lacks LightningKryoRegistrator: refused when
 * compute is called, naming the registrator and the setting (it failed at the first action with
 * Kryo's "Class is not registered: ...TableValidation$SeqStart").
 */
public class TablesKryoTest {
    private static SparkSession spark;

    @BeforeAll
    static void start() {
        spark = SparkSession.builder().master("local[1]").appName("tables-kryo-test")
                .config("spark.ui.enabled", "false")
                .config("spark.serializer", "org.apache.spark.serializer.KryoSerializer")
                .config("spark.kryo.registrationRequired", "true")
                .config("spark.sql.shuffle.partitions", "2")
                .getOrCreate();
    }

    @AfterAll
    static void stop() {
        spark.stop();
    }

    @Test
    void aSessionThatRequiresRegistrationWithoutOurRegistratorIsRefusedUpFront() {
        Random rnd = new Random(31);
        Dataset<Row> blocks = spark.createDataFrame(new TablesTest.Seq("x", 10, 1, 1, 1, 4, 4, DType.F32, rnd).rows(rnd, 4),
                TableSchema.BLOCKS.schema());
        String m = TablesTest.rejection(() -> {
            try (LightningTables.Result r = LightningTables.compute(blocks, "--backend", "cpu")) {
                r.o().count();
            }
        });
        assertTrue(m.contains("dev.lightning.attention.job.tables.LightningKryoRegistrator") && m.contains("spark.kryo.registrator")
                && m.contains("spark.kryo.registrationRequired=true"), m);
    }

    @Test
    void theRegistratorAmongOthersOrNoRequirementPasses() {
        org.apache.spark.SparkConf c = new org.apache.spark.SparkConf(false)
                .set("spark.serializer", "org.apache.spark.serializer.KryoSerializer")
                .set("spark.kryo.registrationRequired", "true");
        assertTrue(LightningTables.kryoProblem(c) != null);
        c.set("spark.kryo.registrator", "com.example.Mine, dev.lightning.attention.job.tables.LightningKryoRegistrator");
        assertTrue(LightningTables.kryoProblem(c) == null);
        c.remove("spark.kryo.registrator");
        c.set("spark.kryo.registrationRequired", "false");
        assertTrue(LightningTables.kryoProblem(c) == null);
        c.set("spark.kryo.registrationRequired", "true").set("spark.serializer",
                "org.apache.spark.serializer.JavaSerializer");
        assertTrue(LightningTables.kryoProblem(c) == null, "Java serialization registers nothing");
    }
}
