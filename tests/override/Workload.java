// tests/override/Workload.java - a Java workload under the preload, run by
// the source launcher (java Workload.java: javac inside the JVM): the JVM's
// own C heap (HotSpot's malloc for its compilers, class data, threads),
// four Java threads, and the JIT. Deterministic output.
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.zip.CRC32;

public class Workload {
    public static void main(String[] args) throws Exception {
        Map<String, List<Integer>> groups = new HashMap<>();
        for (int i = 0; i < 300000; i++)
            groups.computeIfAbsent("k" + (i * 7919 % 1009), k -> new ArrayList<>()).add(i);
        long sum = 0;
        for (List<Integer> g : groups.values())
            for (int x : g)
                sum += x;
        System.out.println("groups " + groups.size() + " sum " + sum);

        Thread[] threads = new Thread[4];
        long[] crc = new long[4];
        for (int t = 0; t < 4; t++) {
            final int id = t;
            threads[t] = new Thread(() -> {
                TreeMap<Integer, String> m = new TreeMap<>();
                for (int k = 0; k < 100000; k++)
                    m.put((k * 31 + id) % 65521, Integer.toString(k * id));
                StringBuilder b = new StringBuilder();
                for (String s : m.values())
                    b.append(s).append(',');
                CRC32 c = new CRC32();
                c.update(b.toString().getBytes());
                crc[id] = c.getValue();
            });
            threads[t].start();
        }
        for (Thread t : threads)
            t.join();
        for (int t = 0; t < 4; t++)
            System.out.println("thread " + t + " crc " + Long.toHexString(crc[t]));
    }
}
