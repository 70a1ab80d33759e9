// Load generator for bench/run.sh: the same Java client (kafka-clients 4.3.1)
// against every broker.
//
// Phases, all against one topic:
//   1. create the topic (Admin, N partitions, --replication-factor, optionally
//      --min-insync-replicas) and wait until a producer sees a leader for every
//      partition;
//   2. warm-up: a few thousand records, not measured (JIT, connections);
//   3. throughput: send --tput-records records as fast as the producer will
//      take them (send() blocks when buffer.memory is full), stop early after
//      --tput-max-seconds; throughput = acknowledged records / (last ack -
//      first send);
//   4. fixed rate: a consumer assigned to every partition (no group) starts at
//      the end of the log; the producer sends --rate records/s for
//      --lat-seconds. Each value carries its intended send time (System.nanoTime,
//      one JVM, so consumer and producer share the clock) and a sequence number.
//      Produce latency = ack callback - intended send time; end-to-end latency
//      = the moment poll() returns the record in the consumer - intended send
//      time. Measuring from the intended (scheduled) time means a stalled
//      producer is charged for the records it could not send on time.
//      Every record must come back exactly once with its own payload.
//
// Producer: acks=all, enable.idempotence=true, linger.ms, batch.size as given
// (defaults 5 and 65536), no compression, null keys (built-in partitioner),
// everything else the client's defaults. Consumer: client defaults, no group.
//
// With --failover-pids NODE=PID,... it runs the failover phase instead (for a
// cluster; the topic should have one partition and --linger-ms 0): the producer
// sends --rate records/s; after 3 s the partition's leader (asked of the Admin
// client) is sent SIGKILL through its PID, and sending goes on at the same
// pace. Failover time = from just before the kill to the first acknowledgement
// of a record sent after it (the old leader is dead by then, so that answer
// came from the new leader). Sending stops 3 s after that answer (or 60 s after
// the kill), and the log must have grown by exactly the acknowledged count.
//
// Prints one JSON object on stdout (the last line). Exit status 0 when every
// phase ran without client errors and without lost, duplicated or corrupted
// records; 1 otherwise (the JSON still says what happened).
//
// Usage: java -cp '.deps/bench-classes:.deps/java/*' Bench --bootstrap HOST:PORT
//          [--topic bench] [--partitions 8] [--record-size 1024]
//          [--linger-ms 5] [--batch-size 65536] [--warmup-records 20000]
//          [--tput-records 500000] [--tput-max-seconds 30]
//          [--rate 5000] [--lat-seconds 20] [--replication-factor 1]
//          [--min-insync-replicas N] [--failover-pids NODE=PID,...]

import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.utils.AppInfoParser;

public final class Bench {
    static final long MAGIC = 0x4857_4245_4e43_4831L; // "HWBENCH1"

    // ---- options ----------------------------------------------------------------
    String bootstrap;
    String topic = "bench";
    int partitions = 8;
    int recordSize = 1024;
    int lingerMs = 5;
    int batchSize = 65536;
    int warmupRecords = 20_000;
    int tputRecords = 500_000;
    double tputMaxSeconds = 30;
    int rate = 5000;
    double latSeconds = 20;
    short replicationFactor = 1;
    Integer minInsyncReplicas = null; // the broker's default
    Map<Integer, Long> failoverPids = null; // node id -> PID; set = run the failover phase only

    final List<String> problems = Collections.synchronizedList(new ArrayList<>());

    void problem(String p) {
        if (problems.size() < 20) problems.add(p);
        System.err.println("bench: " + p);
    }

    public static void main(String[] args) throws Exception {
        Bench b = new Bench();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            String v = i + 1 < args.length ? args[i + 1] : null;
            if (v == null) usage("missing value for " + a);
            switch (a) {
                case "--bootstrap": b.bootstrap = v; break;
                case "--topic": b.topic = v; break;
                case "--partitions": b.partitions = Integer.parseInt(v); break;
                case "--record-size": b.recordSize = Integer.parseInt(v); break;
                case "--linger-ms": b.lingerMs = Integer.parseInt(v); break;
                case "--batch-size": b.batchSize = Integer.parseInt(v); break;
                case "--warmup-records": b.warmupRecords = Integer.parseInt(v); break;
                case "--tput-records": b.tputRecords = Integer.parseInt(v); break;
                case "--tput-max-seconds": b.tputMaxSeconds = Double.parseDouble(v); break;
                case "--rate": b.rate = Integer.parseInt(v); break;
                case "--lat-seconds": b.latSeconds = Double.parseDouble(v); break;
                case "--replication-factor": b.replicationFactor = Short.parseShort(v); break;
                case "--min-insync-replicas": b.minInsyncReplicas = Integer.parseInt(v); break;
                case "--failover-pids":
                    b.failoverPids = new LinkedHashMap<>();
                    for (String kv : v.split(",")) {
                        String[] nodePid = kv.split("=", 2);
                        if (nodePid.length != 2) usage("--failover-pids wants NODE=PID,... not " + v);
                        b.failoverPids.put(Integer.parseInt(nodePid[0]), Long.parseLong(nodePid[1]));
                    }
                    break;
                default: usage("unknown option " + a);
            }
            i++;
        }
        if (b.bootstrap == null) usage("--bootstrap is required");
        if (b.recordSize < 16) usage("--record-size must be at least 16");
        System.exit(b.run() ? 0 : 1);
    }

    static void usage(String why) {
        System.err.println("Bench: " + why);
        System.err.println("usage: Bench --bootstrap HOST:PORT [--topic T] [--partitions N] [--record-size B]"
                + " [--linger-ms MS] [--batch-size B] [--warmup-records N] [--tput-records N]"
                + " [--tput-max-seconds S] [--rate R] [--lat-seconds S] [--replication-factor N]"
                + " [--min-insync-replicas N] [--failover-pids NODE=PID,...]");
        System.exit(2);
    }

    boolean run() throws Exception {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("client", "kafka-clients " + AppInfoParser.getVersion());
        out.put("java", System.getProperty("java.vm.name") + " " + System.getProperty("java.version"));
        Map<String, Object> cfg = new LinkedHashMap<>();
        cfg.put("topic", topic);
        cfg.put("partitions", partitions);
        cfg.put("record_size", recordSize);
        cfg.put("acks", "all");
        cfg.put("enable_idempotence", true);
        cfg.put("linger_ms", lingerMs);
        cfg.put("batch_size", batchSize);
        cfg.put("compression", "none");
        cfg.put("warmup_records", warmupRecords);
        cfg.put("tput_records", tputRecords);
        cfg.put("tput_max_seconds", tputMaxSeconds);
        cfg.put("rate", rate);
        cfg.put("lat_seconds", latSeconds);
        cfg.put("replication_factor", (int) replicationFactor);
        cfg.put("min_insync_replicas", minInsyncReplicas);
        out.put("config", cfg);

        boolean ok = true;
        try {
            if (failoverPids != null) {
                out.put("failover", failover());
            } else {
                phases(out);
            }
        } catch (Exception e) {
            problem("aborted: " + e);
            e.printStackTrace();
            ok = false;
        }
        ok &= problems.isEmpty();
        // CPU time this JVM used (start-up included), so the caller can tell how
        // much of the machine's CPU went to neither client nor broker.
        java.lang.management.OperatingSystemMXBean os = java.lang.management.ManagementFactory.getOperatingSystemMXBean();
        if (os instanceof com.sun.management.OperatingSystemMXBean) {
            out.put("client_cpu_seconds", ((com.sun.management.OperatingSystemMXBean) os).getProcessCpuTime() / 1e9);
        }
        out.put("ok", ok);
        out.put("problems", new ArrayList<>(problems));
        System.out.println(toJson(out));
        System.out.flush();
        return ok;
    }

    void phases(Map<String, Object> out) throws Exception {
        createTopic();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerProps())) {
            waitForLeaders(producer);
            long before = totalEndOffset();
            Map<String, Object> w = throughput(producer, warmupRecords, 60, "warmup");
            out.put("warmup", w);
            Map<String, Object> t = throughput(producer, tputRecords, tputMaxSeconds, "throughput");
            long after = totalEndOffset();
            long acked = (Long) w.get("acked") + (Long) t.get("acked");
            t.put("log_growth_records", after - before);
            if (after - before != acked) {
                problem("the log grew by " + (after - before) + " records but " + acked
                        + " were acknowledged (warm-up + throughput)");
            }
            out.put("throughput", t);
            out.put("latency", fixedRate(producer));
        }
    }

    // ---- clients ----------------------------------------------------------------
    Properties producerProps() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "headwater-bench-producer");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.LINGER_MS_CONFIG, Integer.toString(lingerMs));
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, Integer.toString(batchSize));
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "none");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        return p;
    }

    Properties consumerProps() {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "headwater-bench-consumer");
        // No group.id: partitions are assigned by hand, nothing is committed.
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return p;
    }

    Admin admin() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "headwater-bench-admin");
        return Admin.create(p);
    }

    /** Creates the topic; in a cluster that has just started, retries for 60 s while not every
     *  broker has registered yet (the replication factor is then refused). */
    void createTopic() throws Exception {
        NewTopic t = new NewTopic(topic, partitions, replicationFactor);
        if (minInsyncReplicas != null) t.configs(Map.of("min.insync.replicas", minInsyncReplicas.toString()));
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        try (Admin admin = admin()) {
            while (true) {
                try {
                    admin.createTopics(List.of(t)).all().get(60, TimeUnit.SECONDS);
                    return;
                } catch (java.util.concurrent.ExecutionException e) {
                    if (!(e.getCause() instanceof org.apache.kafka.common.errors.InvalidReplicationFactorException)
                            || System.nanoTime() > deadline) {
                        throw e;
                    }
                    Thread.sleep(200);
                }
            }
        }
    }

    /** The partition's leader as the cluster's metadata has it now. */
    int leaderOf(int partition) throws Exception {
        try (Admin admin = admin()) {
            org.apache.kafka.clients.admin.TopicDescription d = admin.describeTopics(List.of(topic))
                    .allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
            org.apache.kafka.common.Node leader = d.partitions().get(partition).leader();
            return leader == null ? -1 : leader.id();
        }
    }

    void waitForLeaders(KafkaProducer<byte[], byte[]> producer) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (true) {
            List<PartitionInfo> infos = producer.partitionsFor(topic);
            long led = infos.stream().filter(i -> i.leader() != null && !i.leader().isEmpty()).count();
            if (infos.size() == partitions && led == partitions) return;
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("topic " + topic + ": " + led + " of " + partitions
                        + " partitions have a leader after 60 s");
            }
            Thread.sleep(50);
        }
    }

    List<TopicPartition> topicPartitions() {
        List<TopicPartition> tps = new ArrayList<>();
        for (int i = 0; i < partitions; i++) tps.add(new TopicPartition(topic, i));
        return tps;
    }

    long totalEndOffset() {
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(consumerProps())) {
            c.assign(topicPartitions());
            long sum = 0;
            for (long v : c.endOffsets(topicPartitions(), Duration.ofSeconds(30)).values()) sum += v;
            return sum;
        }
    }

    byte[] filler() {
        byte[] b = new byte[recordSize];
        new Random(42).nextBytes(b); // incompressible, deterministic
        return b;
    }

    // ---- phase: throughput ------------------------------------------------------
    Map<String, Object> throughput(KafkaProducer<byte[], byte[]> producer, int records, double maxSeconds,
                                   String what) {
        byte[] value = filler(); // the producer copies it into its batch on send()
        AtomicLong acked = new AtomicLong();
        AtomicLong errors = new AtomicLong();
        AtomicLong lastAck = new AtomicLong();
        AtomicReference<String> firstError = new AtomicReference<>();
        long start = System.nanoTime();
        long stopAt = start + (long) (maxSeconds * 1e9);
        int sent = 0;
        boolean cut = false;
        while (sent < records) {
            if ((sent & 255) == 0 && System.nanoTime() > stopAt) {
                cut = true;
                break;
            }
            producer.send(new ProducerRecord<>(topic, null, value), (md, e) -> {
                if (e != null) {
                    errors.incrementAndGet();
                    firstError.compareAndSet(null, e.toString());
                } else {
                    acked.incrementAndGet();
                }
                lastAck.set(System.nanoTime());
            });
            sent++;
        }
        producer.flush();
        long end = lastAck.get() > 0 ? lastAck.get() : System.nanoTime();
        double secs = (end - start) / 1e9;
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("sent", (long) sent);
        r.put("acked", acked.get());
        r.put("errors", errors.get());
        r.put("first_error", firstError.get());
        r.put("cut_by_time_limit", cut);
        r.put("seconds", secs);
        r.put("records_per_sec", acked.get() / secs);
        r.put("mb_per_sec", acked.get() * (double) recordSize / secs / 1e6);
        if (errors.get() > 0) problem(what + ": " + errors.get() + " sends failed, first: " + firstError.get());
        System.err.printf(Locale.ROOT, "bench: %s: %d acked in %.2f s = %.0f records/s, %.1f MB/s%n",
                what, acked.get(), secs, acked.get() / secs, acked.get() * (double) recordSize / secs / 1e6);
        return r;
    }

    // ---- phase: fixed rate with a concurrent consumer ---------------------------------
    Map<String, Object> fixedRate(KafkaProducer<byte[], byte[]> producer) throws Exception {
        final int n = (int) Math.round(rate * latSeconds);
        final long[] produceLat = new long[n];
        final long[] e2eLat = new long[n];
        Arrays.fill(produceLat, -1);
        Arrays.fill(e2eLat, -1);
        final AtomicLong errors = new AtomicLong();
        final AtomicReference<String> firstError = new AtomicReference<>();
        final AtomicLong consumed = new AtomicLong();
        final AtomicLong duplicates = new AtomicLong();
        final AtomicLong corrupt = new AtomicLong();
        final AtomicLong foreign = new AtomicLong();
        final byte[] fill = filler();
        final long interval = Math.round(1e9 / rate);

        KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(consumerProps());
        List<TopicPartition> tps = topicPartitions();
        consumer.assign(tps);
        consumer.seekToEnd(tps);
        for (TopicPartition tp : tps) consumer.position(tp, Duration.ofSeconds(30)); // resolve now

        final long[] stopConsumer = {0}; // 0 = run; else nanoTime deadline
        // Record i is due at startAt + i * interval; set before the first send.
        final AtomicLong startAt = new AtomicLong();
        final Object lock = new Object();
        Thread reader = new Thread(() -> {
            try {
                while (true) {
                    long deadline;
                    synchronized (lock) { deadline = stopConsumer[0]; }
                    if (consumed.get() >= n && deadline != 0) break;
                    if (deadline != 0 && System.nanoTime() > deadline) break;
                    ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(100));
                    long now = System.nanoTime();
                    for (ConsumerRecord<byte[], byte[]> rec : recs) {
                        byte[] v = rec.value();
                        if (v == null || v.length != recordSize) { corrupt.incrementAndGet(); continue; }
                        ByteBuffer bb = ByteBuffer.wrap(v);
                        long magic = bb.getLong(0);
                        if (magic != MAGIC) { foreign.incrementAndGet(); continue; }
                        int seq = bb.getInt(8);
                        long sentAt = bb.getLong(12);
                        if (seq < 0 || seq >= n || sentAt != startAt.get() + seq * interval
                                || !Arrays.equals(v, 20, recordSize, fill, 20, recordSize)) {
                            corrupt.incrementAndGet();
                            continue;
                        }
                        if (e2eLat[seq] >= 0) { duplicates.incrementAndGet(); continue; }
                        e2eLat[seq] = now - sentAt;
                        consumed.incrementAndGet();
                    }
                }
            } catch (Exception e) {
                problem("consumer failed: " + e);
            } finally {
                // Timestamped like the client's own log lines, so notes it logs
                // while closing can be told from ones logged during the run.
                System.err.println(java.time.LocalTime.now() + " bench: consumer done ("
                        + consumed.get() + " records), closing it");
                consumer.close();
            }
        }, "bench-consumer");
        reader.setDaemon(true);
        reader.start();
        Thread.sleep(500); // let the consumer's first fetches reach the broker

        final long start = System.nanoTime() + 1_000_000;
        startAt.set(start); // the consumer reads it only for records sent after this
        long maxBehind = 0;
        for (int i = 0; i < n; i++) {
            final long due = start + i * interval;
            long now;
            while ((now = System.nanoTime()) < due) {
                long wait = due - now;
                if (wait > 50_000) LockSupport.parkNanos(wait - 20_000);
                else Thread.onSpinWait();
            }
            maxBehind = Math.max(maxBehind, now - due);
            byte[] v = new byte[recordSize];
            System.arraycopy(fill, 0, v, 0, recordSize);
            ByteBuffer bb = ByteBuffer.wrap(v);
            bb.putLong(0, MAGIC);
            bb.putInt(8, i);
            bb.putLong(12, due);
            final int seq = i;
            producer.send(new ProducerRecord<>(topic, null, v), (md, e) -> {
                long t = System.nanoTime();
                if (e != null) {
                    errors.incrementAndGet();
                    firstError.compareAndSet(null, e.toString());
                } else {
                    produceLat[seq] = t - due;
                }
            });
        }
        long sendEnd = System.nanoTime();
        producer.flush();
        synchronized (lock) { stopConsumer[0] = System.nanoTime() + TimeUnit.SECONDS.toNanos(15); }
        reader.join(TimeUnit.SECONDS.toMillis(30));

        double sendSecs = (sendEnd - start) / 1e9;
        long acked = Arrays.stream(produceLat).filter(x -> x >= 0).count();
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("records", (long) n);
        r.put("target_rate", rate);
        r.put("achieved_send_rate", n / sendSecs);
        r.put("max_send_behind_schedule_ms", maxBehind / 1e6);
        r.put("acked", acked);
        r.put("errors", errors.get());
        r.put("first_error", firstError.get());
        r.put("consumed", consumed.get());
        r.put("duplicates", duplicates.get());
        r.put("corrupt", corrupt.get());
        r.put("foreign", foreign.get());
        r.put("produce_ms", percentiles(produceLat));
        r.put("e2e_ms", percentiles(e2eLat));
        if (errors.get() > 0) problem("fixed rate: " + errors.get() + " sends failed, first: " + firstError.get());
        if (consumed.get() != n) problem("fixed rate: consumer got " + consumed.get() + " of " + n + " records");
        if (duplicates.get() > 0) problem("fixed rate: " + duplicates.get() + " records consumed twice");
        if (corrupt.get() > 0) problem("fixed rate: " + corrupt.get() + " records with a wrong payload");
        if (foreign.get() > 0) problem("fixed rate: " + foreign.get() + " records from before the run were consumed");
        System.err.printf(Locale.ROOT, "bench: fixed rate: %d records at %.0f/s, produce p99 %.2f ms, e2e p99 %.2f ms%n",
                n, n / sendSecs, ((Map<?, ?>) r.get("produce_ms")).get("p99"), ((Map<?, ?>) r.get("e2e_ms")).get("p99"));
        return r;
    }

    // ---- phase: failover (cluster only) --------------------------------------------
    Map<String, Object> failover() throws Exception {
        createTopic();
        Map<String, Object> r = new LinkedHashMap<>();
        Properties props = producerProps();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            waitForLeaders(producer);
            byte[] value = filler();
            AtomicLong acked = new AtomicLong();
            AtomicLong errors = new AtomicLong();
            AtomicReference<String> firstError = new AtomicReference<>();
            // nanoTime of the first acknowledgement, after the kill, of a record sent after it.
            AtomicLong firstAnswer = new AtomicLong(Long.MAX_VALUE);
            long interval = Math.round(1e9 / rate);
            long start = System.nanoTime();
            long killAt = Long.MAX_VALUE;
            long stopAt = Long.MAX_VALUE;
            long sent = 0;
            int killed = -1;
            while (true) {
                long due = start + sent * interval;
                long now;
                while ((now = System.nanoTime()) < due) LockSupport.parkNanos(Math.min(due - now, 200_000));
                if (killed < 0 && now - start > TimeUnit.SECONDS.toNanos(3)) {
                    killed = leaderOf(0);
                    Long pid = failoverPids.get(killed);
                    if (pid == null) throw new IllegalStateException("no PID given for leader node " + killed);
                    ProcessHandle victim = ProcessHandle.of(pid).orElse(null);
                    if (victim == null) throw new IllegalStateException("node " + killed + "'s PID " + pid + " is not running");
                    killAt = System.nanoTime();
                    victim.destroyForcibly(); // SIGKILL
                    System.err.printf(Locale.ROOT, "bench: failover: killed node %d (PID %d), the leader%n", killed, pid);
                    stopAt = killAt + TimeUnit.SECONDS.toNanos(60);
                }
                if (firstAnswer.get() != Long.MAX_VALUE) stopAt = Math.min(stopAt, firstAnswer.get() + TimeUnit.SECONDS.toNanos(3));
                if (now > stopAt) break;
                final boolean afterKill = killed >= 0;
                producer.send(new ProducerRecord<>(topic, null, value), (md, e) -> {
                    long t = System.nanoTime();
                    if (e != null) {
                        errors.incrementAndGet();
                        firstError.compareAndSet(null, e.toString());
                        return;
                    }
                    acked.incrementAndGet();
                    if (afterKill) firstAnswer.accumulateAndGet(t, Math::min);
                });
                sent++;
            }
            producer.flush();
            r.put("killed_node", killed);
            r.put("failover_ms", firstAnswer.get() == Long.MAX_VALUE ? null : (firstAnswer.get() - killAt) / 1e6);
            r.put("new_leader", leaderOf(0));
            r.put("sent", sent);
            r.put("acked", acked.get());
            r.put("errors", errors.get());
            r.put("first_error", firstError.get());
            long growth = totalEndOffset();
            r.put("log_growth_records", growth);
            if (firstAnswer.get() == Long.MAX_VALUE) problem("failover: no record sent after the kill was acknowledged within 60 s");
            if (errors.get() > 0) problem("failover: " + errors.get() + " sends failed, first: " + firstError.get());
            if (growth != acked.get()) {
                problem("failover: the log grew by " + growth + " records but " + acked.get() + " were acknowledged");
            }
            System.err.printf(Locale.ROOT, "bench: failover: %s ms from the kill of node %d to the first answer from node %s%n",
                    r.get("failover_ms"), killed, r.get("new_leader"));
        }
        return r;
    }

    /** Percentiles (nearest rank) in milliseconds over the non-negative entries. */
    static Map<String, Object> percentiles(long[] nanos) {
        long[] v = Arrays.stream(nanos).filter(x -> x >= 0).sorted().toArray();
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("count", (long) v.length);
        if (v.length == 0) return m;
        double sum = 0;
        for (long x : v) sum += x;
        m.put("min", v[0] / 1e6);
        m.put("mean", sum / v.length / 1e6);
        for (double[] p : new double[][] {{50, 0.50}, {90, 0.90}, {99, 0.99}, {99.9, 0.999}}) {
            int idx = (int) Math.ceil(p[1] * v.length) - 1;
            String key = p[0] == 99.9 ? "p99.9" : "p" + (int) p[0];
            m.put(key, v[Math.max(0, idx)] / 1e6);
        }
        m.put("max", v[v.length - 1] / 1e6);
        return m;
    }

    // ---- minimal JSON writer ----------------------------------------------------
    static String toJson(Object o) {
        StringBuilder sb = new StringBuilder();
        json(sb, o);
        return sb.toString();
    }

    static void json(StringBuilder sb, Object o) {
        if (o == null) {
            sb.append("null");
        } else if (o instanceof Map) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) o).entrySet()) {
                if (!first) sb.append(',');
                first = false;
                json(sb, e.getKey().toString());
                sb.append(':');
                json(sb, e.getValue());
            }
            sb.append('}');
        } else if (o instanceof List) {
            sb.append('[');
            boolean first = true;
            for (Object x : (List<?>) o) {
                if (!first) sb.append(',');
                first = false;
                json(sb, x);
            }
            sb.append(']');
        } else if (o instanceof Double || o instanceof Float) {
            double d = ((Number) o).doubleValue();
            if (!Double.isFinite(d)) {
                sb.append("null");
            } else {
                // Six significant digits; trailing zeros go only from a fraction ("180740"
                // must not become "18074", as it once did).
                String g = String.format(Locale.ROOT, "%.6g", d);
                int e = g.indexOf('e');
                String mantissa = e < 0 ? g : g.substring(0, e);
                if (mantissa.indexOf('.') >= 0) {
                    mantissa = mantissa.replaceAll("\\.?0+$", "");
                }
                sb.append(mantissa).append(e < 0 ? "" : g.substring(e));
            }
        } else if (o instanceof Number || o instanceof Boolean) {
            sb.append(o);
        } else {
            String s = o.toString();
            sb.append('"');
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                if (c == '"' || c == '\\') sb.append('\\').append(c);
                else if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
                else sb.append(c);
            }
            sb.append('"');
        }
    }
}
