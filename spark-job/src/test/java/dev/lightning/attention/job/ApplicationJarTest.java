package dev.lightning.attention.job;

import org.apache.spark.SparkConf;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

/**
 * The application jar reaches a cluster's executors when the driver was started from a class path
 * (bin/lightning run --master spark://...), and is not listed twice under spark-submit, which lists
 * it in spark.jars itself. ClusterTest runs bin/lightning against a standalone cluster.
 */
class ApplicationJarTest {
    static final String JAR = "/opt/l/spark-job/target/spark-job-0.1.0-SNAPSHOT-app.jar";

    @Test
    void addedWhereMissing() {
        SparkConf c = new SparkConf(false);
        LightningMain.withApplicationJar(c, JAR);
        assertEquals(JAR, c.get("spark.jars"));
        SparkConf other = new SparkConf(false).set("spark.jars", "/x/connector.jar");
        LightningMain.withApplicationJar(other, JAR);
        assertEquals("/x/connector.jar," + JAR, other.get("spark.jars"));
    }

    @Test
    void keptOnceUnderSparkSubmit() {
        for (String listed : List.of("file:/elsewhere/spark-job-0.1.0-SNAPSHOT-app.jar",
                "/x/a.jar, file:" + JAR, "spark-job-0.1.0-SNAPSHOT-app.jar")) {
            SparkConf c = new SparkConf(false).set("spark.jars", listed);
            LightningMain.withApplicationJar(c, JAR);
            assertEquals(listed, c.get("spark.jars"));
        }
        SparkConf c = new SparkConf(false);
        LightningMain.withApplicationJar(c, null); // the build's classes directory: nothing to ship
        assertFalse(c.contains("spark.jars"));
    }

    @Test
    void onlyForClusterMasters() {
        // the test classes load LightningMain from a directory: no jar to add, whatever the master
        SparkConf local = LightningMain.sparkConf(LightningMain.parse(List.of("--input", "in", "--output", "out",
                "--master", "local[2]"), null));
        assertFalse(local.contains("spark.jars"));
        SparkConf cluster = LightningMain.sparkConf(LightningMain.parse(List.of("--input", "in", "--output", "out",
                "--master", "spark://127.0.0.1:7077"), null));
        assertEquals(LightningMain.applicationJar() == null, !cluster.contains("spark.jars"));
    }
}
