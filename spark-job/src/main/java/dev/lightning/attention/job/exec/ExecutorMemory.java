package dev.lightning.attention.job.exec;

import javax.management.Notification;
import javax.management.NotificationEmitter;
import javax.management.NotificationListener;
import javax.management.openmbean.CompositeData;
import javax.management.openmbean.TabularData;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryType;
import java.lang.management.MemoryUsage;
import java.util.HashSet;
import java.util.Set;

/**
 * The heap of the JVM a task runs in (an executor's; in local mode the driver's), measured by the
 * JVM and carried back in every {@code TaskReport}: from the collectors' notifications, the
 * largest heap in use just before a collection (the peak, garbage included) and just after one
 * (the live set), over the current pass and over the JVM's life since the first task. Passes run
 * one after the other, so the figures of a pass are reset when its first task starts here.
 * One listener per JVM, installed by the first task; where the JVM's collectors send no
 * notifications (not HotSpot), the figures stay -1 and the report says so.
 */
public final class ExecutorMemory implements NotificationListener {
    private static final String GC_NOTIFICATION = "com.sun.management.gc.notification";
    private static ExecutorMemory installed;

    private final Set<String> heapPools = new HashSet<>();
    private boolean listening;
    private String pass = "";
    private long passBefore;
    private long passAfter;
    private long jvmBefore;
    private long jvmAfter;
    private long collections;

    private ExecutorMemory() {
        for (MemoryPoolMXBean p : ManagementFactory.getMemoryPoolMXBeans()) {
            if (p.getType() == MemoryType.HEAP) {
                heapPools.add(p.getName());
            }
        }
        for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
            if (gc instanceof NotificationEmitter) {
                ((NotificationEmitter) gc).addNotificationListener(this, null, null);
                listening = true;
            }
        }
    }

    /** What a task reports: {pass peak before GC, pass largest after GC, JVM peak before, JVM after, heap max, collections}. */
    public static synchronized long[] snapshot() {
        ExecutorMemory m = installed;
        if (m == null || !m.listening) {
            return new long[] {-1, -1, -1, -1, Runtime.getRuntime().maxMemory(), 0};
        }
        synchronized (m) {
            return new long[] {m.passBefore, m.passAfter, m.jvmBefore, m.jvmAfter, Runtime.getRuntime().maxMemory(),
                    m.collections};
        }
    }

    /** Called as a task of pass {@code title} starts: installs the listener once, and starts the pass's figures. */
    public static synchronized void taskStarts(String title) {
        if (installed == null) {
            installed = new ExecutorMemory();
        }
        ExecutorMemory m = installed;
        synchronized (m) {
            if (!m.pass.equals(title)) {
                m.pass = title;
                m.passBefore = 0;
                m.passAfter = 0;
            }
        }
    }

    @Override
    public synchronized void handleNotification(Notification n, Object handback) {
        if (!GC_NOTIFICATION.equals(n.getType()) || !(n.getUserData() instanceof CompositeData)) {
            return;
        }
        // GarbageCollectionNotificationInfo.gcInfo: memoryUsageBeforeGc / memoryUsageAfterGc, pool name -> MemoryUsage
        CompositeData info = (CompositeData) ((CompositeData) n.getUserData()).get("gcInfo");
        long before = heapUsed((TabularData) info.get("memoryUsageBeforeGc"));
        long after = heapUsed((TabularData) info.get("memoryUsageAfterGc"));
        passBefore = Math.max(passBefore, before);
        passAfter = Math.max(passAfter, after);
        jvmBefore = Math.max(jvmBefore, before);
        jvmAfter = Math.max(jvmAfter, after);
        collections++;
    }

    private long heapUsed(TabularData pools) {
        long used = 0;
        for (Object row : pools.values()) {
            CompositeData entry = (CompositeData) row;
            if (heapPools.contains((String) entry.get("key"))) {
                used += MemoryUsage.from((CompositeData) entry.get("value")).getUsed();
            }
        }
        return used;
    }
}
