package dev.lightning.attention.job;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import javax.management.Notification;
import javax.management.NotificationEmitter;
import javax.management.NotificationListener;
import javax.management.openmbean.CompositeData;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryType;
import java.lang.management.MemoryUsage;
import java.util.ArrayList;
import java.util.List;

/**
 * The driver JVM's heap while a run lasts, from the JVM itself: the largest heap in use right
 * after a collection (what the driver retains, garbage gone) and the sum of the heap pools' peaks
 * (an upper bound of the peak in use, garbage included), for the run report. In local mode the
 * tasks run in this JVM too, so their memory counts here. Listens to the collectors'
 * notifications (HotSpot's {@code com.sun.management} ones); where there are none, says so.
 */
final class DriverMemory implements NotificationListener, AutoCloseable {
    private static final String GC_NOTIFICATION = "com.sun.management.gc.notification";
    private final List<NotificationEmitter> emitters = new ArrayList<>();
    private long maxAfterGc;
    private long collections;

    DriverMemory() {
        for (MemoryPoolMXBean pool : ManagementFactory.getMemoryPoolMXBeans()) {
            if (pool.getType() == MemoryType.HEAP) {
                pool.resetPeakUsage();
            }
        }
        for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
            if (gc instanceof NotificationEmitter) {
                NotificationEmitter e = (NotificationEmitter) gc;
                e.addNotificationListener(this, null, null);
                emitters.add(e);
            }
        }
    }

    @Override
    public synchronized void handleNotification(Notification n, Object handback) {
        if (!GC_NOTIFICATION.equals(n.getType()) || !(n.getUserData() instanceof CompositeData)) {
            return;
        }
        // GarbageCollectionNotificationInfo.gcInfo.memoryUsageAfterGc: pool name -> MemoryUsage
        CompositeData info = (CompositeData) ((CompositeData) n.getUserData()).get("gcInfo");
        long used = 0;
        for (Object row : ((javax.management.openmbean.TabularData) info.get("memoryUsageAfterGc")).values()) {
            CompositeData entry = (CompositeData) row;
            String pool = (String) entry.get("key");
            if (isHeap(pool)) {
                used += MemoryUsage.from((CompositeData) entry.get("value")).getUsed();
            }
        }
        maxAfterGc = Math.max(maxAfterGc, used);
        collections++;
    }

    private static boolean isHeap(String pool) {
        for (MemoryPoolMXBean p : ManagementFactory.getMemoryPoolMXBeans()) {
            if (p.getName().equals(pool)) {
                return p.getType() == MemoryType.HEAP;
            }
        }
        return false;
    }

    /** The figures for the run report, in bytes. */
    synchronized ObjectNode describe(ObjectMapper json) {
        ObjectNode n = json.createObjectNode();
        long peaks = 0;
        for (MemoryPoolMXBean pool : ManagementFactory.getMemoryPoolMXBeans()) {
            if (pool.getType() == MemoryType.HEAP) {
                peaks += pool.getPeakUsage().getUsed();
            }
        }
        n.put("heapMaxBytes", Runtime.getRuntime().maxMemory());
        n.put("collections", collections);
        if (emitters.isEmpty()) {
            n.put("retainedNote", "this JVM's collectors send no notifications: no figure after collections");
        } else {
            n.put("largestAfterCollectionBytes", maxAfterGc);
        }
        n.put("sumOfPoolPeaksBytes", peaks);
        n.put("note", "the driver JVM; in local mode the tasks run in it too");
        return n;
    }

    @Override
    public void close() {
        for (NotificationEmitter e : emitters) {
            try {
                e.removeNotificationListener(this);
            } catch (javax.management.ListenerNotFoundException ignored) {
                // already gone
            }
        }
        emitters.clear();
    }

}
