// Real-client check for Headwater using the Apache Kafka Java client.
//
// For each compression codec it creates a fresh 3-partition topic with the
// Java AdminClient, produces N records with an idempotent producer
// (acks=all), each with a distinct key, a value of varied length and content,
// one or two headers and an explicit CreateTime timestamp, then reads every
// partition back from the beginning with an assigned consumer (no group),
// compares every field and the offsets the producer was told, and finally
// seeks into the middle of a batch and checks that the first record returned
// has exactly the requested offset.
//
// Prints one line of JSON (the last line on stdout) and exits 0 only if every
// check passed.
//
// Usage: java -cp '.deps/java-classes:.deps/java/*' ClientCheck
//            --bootstrap HOST:PORT [--records N] [--codecs none,gzip,...]
//            [--prefix TOPIC_PREFIX]

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.zip.CRC32;

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
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.utils.AppInfoParser;

public final class ClientCheck {
    static final int PARTITIONS = 3;
    static final int MAX_REPORTED_PROBLEMS = 10;

    /** One record as produced; what the consumer must give back. */
    static final class Expected {
        final int index;
        final int partition;
        final byte[] key;
        final byte[] value;
        final List<Header> headers;
        final long timestamp;
        volatile long ackedOffset = -1;
        volatile int ackedPartition = -1;
        volatile String ackError;

        Expected(int index, int partition, byte[] key, byte[] value, List<Header> headers, long timestamp) {
            this.index = index;
            this.partition = partition;
            this.key = key;
            this.value = value;
            this.headers = headers;
            this.timestamp = timestamp;
        }
    }

    /** Per-codec outcome, rendered into the JSON summary. */
    static final class CodecResult {
        String topic;
        int produced;
        int acked;
        int consumed;
        int mismatches;
        boolean ok;
        final List<String> problems = new ArrayList<>();
        final List<String> midBatch = new ArrayList<>();
        long produceMillis;
        long consumeMillis;

        void problem(String p) {
            mismatches++;
            if (problems.size() < MAX_REPORTED_PROBLEMS) {
                problems.add(p);
            }
        }
    }

    public static void main(String[] args) {
        String bootstrap = null;
        int records = 10_000;
        List<String> codecs = Arrays.asList("none", "gzip", "snappy", "lz4", "zstd");
        String prefix = "java-" + UUID.randomUUID().toString().substring(0, 8);
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--bootstrap": bootstrap = args[++i]; break;
                case "--records": records = Integer.parseInt(args[++i]); break;
                case "--codecs": codecs = Arrays.asList(args[++i].split(",")); break;
                case "--prefix": prefix = args[++i]; break;
                default:
                    System.err.println("unknown argument: " + args[i]);
                    System.exit(2);
            }
        }
        if (bootstrap == null) {
            System.err.println("--bootstrap is required");
            System.exit(2);
        }

        Map<String, CodecResult> results = new LinkedHashMap<>();
        List<String> errors = new ArrayList<>();
        boolean allOk = true;
        for (String codec : codecs) {
            CodecResult r = new CodecResult();
            r.topic = prefix + "-" + codec;
            results.put(codec, r);
            try {
                runCodec(bootstrap, codec, records, r);
            } catch (Throwable t) {
                r.ok = false;
                errors.add(codec + ": " + t);
                t.printStackTrace();
            }
            allOk &= r.ok;
        }

        StringBuilder json = new StringBuilder();
        json.append("{\"client\":\"java\",\"kafka_clients\":").append(str(AppInfoParser.getVersion()));
        json.append(",\"ok\":").append(allOk);
        json.append(",\"records_per_codec\":").append(records);
        json.append(",\"codecs\":{");
        boolean first = true;
        for (Map.Entry<String, CodecResult> e : results.entrySet()) {
            CodecResult r = e.getValue();
            if (!first) json.append(',');
            first = false;
            json.append(str(e.getKey())).append(":{");
            json.append("\"topic\":").append(str(r.topic));
            json.append(",\"ok\":").append(r.ok);
            json.append(",\"produced\":").append(r.produced);
            json.append(",\"acked\":").append(r.acked);
            json.append(",\"consumed\":").append(r.consumed);
            json.append(",\"mismatches\":").append(r.mismatches);
            json.append(",\"produce_ms\":").append(r.produceMillis);
            json.append(",\"consume_ms\":").append(r.consumeMillis);
            json.append(",\"mid_batch\":[").append(String.join(",", r.midBatch)).append(']');
            json.append(",\"problems\":").append(strList(r.problems));
            json.append('}');
        }
        json.append("},\"errors\":").append(strList(errors)).append('}');
        System.out.println(json);
        System.out.flush();
        System.exit(allOk ? 0 : 1);
    }

    static void runCodec(String bootstrap, String codec, int n, CodecResult r) throws Exception {
        createTopic(bootstrap, r.topic);

        List<Expected> expected = generate(codec, n);
        long t0 = System.nanoTime();
        produce(bootstrap, codec, r.topic, expected);
        r.produceMillis = (System.nanoTime() - t0) / 1_000_000;
        r.produced = n;

        // (partition, offset) -> expected record, from the producer's acks.
        Map<Integer, Map<Long, Expected>> byOffset = new HashMap<>();
        for (int p = 0; p < PARTITIONS; p++) byOffset.put(p, new HashMap<>());
        for (Expected e : expected) {
            if (e.ackError != null) {
                r.problem("record " + e.index + " not acknowledged: " + e.ackError);
                continue;
            }
            r.acked++;
            if (e.ackedPartition != e.partition) {
                r.problem("record " + e.index + " acked on partition " + e.ackedPartition + ", sent to " + e.partition);
                continue;
            }
            Expected dup = byOffset.get(e.partition).put(e.ackedOffset, e);
            if (dup != null) {
                r.problem("records " + dup.index + " and " + e.index + " both acked at " + e.partition + "/" + e.ackedOffset);
            }
        }
        // A fresh topic written by one idempotent producer holds offsets 0..count-1.
        for (int p = 0; p < PARTITIONS; p++) {
            Map<Long, Expected> m = byOffset.get(p);
            for (long o = 0; o < m.size(); o++) {
                if (!m.containsKey(o)) {
                    r.problem("acked offsets of partition " + p + " are not contiguous: " + o + " missing");
                    break;
                }
            }
        }

        t0 = System.nanoTime();
        consumeAll(bootstrap, r, byOffset);
        r.consumeMillis = (System.nanoTime() - t0) / 1_000_000;

        // Seek into the middle of batches: offset 5, and one past the middle.
        int p0Count = byOffset.get(0).size();
        if (p0Count < 40) {
            r.problem("partition 0 holds only " + p0Count + " records; cannot test a mid-batch seek");
        } else {
            midBatch(bootstrap, r, byOffset, 0, 5);
            midBatch(bootstrap, r, byOffset, 0, p0Count / 2 + 1);
        }
        r.ok = r.mismatches == 0 && r.acked == n && r.consumed == n;
    }

    static void createTopic(String bootstrap, String topic) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "headwater-java-check-admin");
        try (Admin admin = Admin.create(props)) {
            admin.createTopics(Collections.singletonList(new NewTopic(topic, PARTITIONS, (short) 1)))
                 .all().get(30, TimeUnit.SECONDS);
        }
    }

    static int partitionFor(byte[] key) {
        CRC32 crc = new CRC32();
        crc.update(key);
        return (int) (crc.getValue() % PARTITIONS);
    }

    /** Deterministic, varied records: sizes 1 B..4 KB, random and repetitive bodies. */
    static List<Expected> generate(String codec, int n) {
        Random rnd = new Random(codec.hashCode() * 31L + n);
        long base = System.currentTimeMillis() - 600_000L;
        List<Expected> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            byte[] key = ("java-" + codec + "-" + i).getBytes(StandardCharsets.UTF_8);
            int bucket = rnd.nextInt(10);
            int len = bucket < 6 ? 1 + rnd.nextInt(100)
                    : bucket < 9 ? 100 + rnd.nextInt(900)
                    : 1000 + rnd.nextInt(3000);
            byte[] value = new byte[len];
            if (rnd.nextBoolean()) {
                rnd.nextBytes(value);
            } else {
                byte[] pattern = ("value " + i + " of " + codec + "; ").getBytes(StandardCharsets.UTF_8);
                for (int j = 0; j < len; j++) value[j] = pattern[j % pattern.length];
            }
            List<Header> headers = new ArrayList<>(2);
            headers.add(new RecordHeader("seq", Integer.toString(i).getBytes(StandardCharsets.UTF_8)));
            if (i % 2 == 1) {
                byte[] hv = new byte[i % 10 == 1 ? 0 : 1 + rnd.nextInt(24)];
                rnd.nextBytes(hv);
                headers.add(new RecordHeader("h2", hv));
            }
            // Explicit CreateTime, deliberately not monotonic within a batch.
            long ts = base + i * 3L + ((i * 7919L) % 1000) - 500;
            out.add(new Expected(i, partitionFor(key), key, value, headers, ts));
        }
        return out;
    }

    static void produce(String bootstrap, String codec, String topic, List<Expected> expected) {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "headwater-java-check-producer");
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        props.put(ProducerConfig.LINGER_MS_CONFIG, "10");
        props.put(ProducerConfig.BATCH_SIZE_CONFIG, "262144");
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        AtomicInteger pending = new AtomicInteger(expected.size());
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            for (Expected e : expected) {
                ProducerRecord<byte[], byte[]> rec =
                    new ProducerRecord<>(topic, e.partition, e.timestamp, e.key, e.value, e.headers);
                producer.send(rec, (md, ex) -> {
                    if (ex != null) {
                        e.ackError = ex.toString();
                    } else {
                        e.ackedPartition = md.partition();
                        e.ackedOffset = md.offset();
                    }
                    pending.decrementAndGet();
                });
            }
            producer.flush();
        }
        if (pending.get() != 0) {
            throw new IllegalStateException(pending.get() + " sends never completed");
        }
    }

    static Properties consumerProps(String bootstrap) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "headwater-java-check-consumer");
        // No group.id: partitions are assigned by hand and nothing is committed.
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "5000");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return props;
    }

    static String describeMismatch(Expected e, ConsumerRecord<byte[], byte[]> c) {
        List<String> diffs = new ArrayList<>();
        if (!Arrays.equals(e.key, c.key())) diffs.add("key");
        if (!Arrays.equals(e.value, c.value())) diffs.add("value (len " + e.value.length + " vs "
                + (c.value() == null ? "null" : c.value().length) + ")");
        if (e.timestamp != c.timestamp()) diffs.add("timestamp " + e.timestamp + " vs " + c.timestamp());
        if (c.timestampType() != TimestampType.CREATE_TIME) diffs.add("timestamp type " + c.timestampType());
        Header[] got = c.headers().toArray();
        if (got.length != e.headers.size()) {
            diffs.add("header count " + e.headers.size() + " vs " + got.length);
        } else {
            for (int h = 0; h < got.length; h++) {
                Header want = e.headers.get(h);
                if (!want.key().equals(got[h].key()) || !Arrays.equals(want.value(), got[h].value())) {
                    diffs.add("header " + h + " (" + want.key() + ")");
                }
            }
        }
        return diffs.isEmpty() ? null : String.join(", ", diffs);
    }

    static void consumeAll(String bootstrap, CodecResult r, Map<Integer, Map<Long, Expected>> byOffset) {
        List<TopicPartition> tps = new ArrayList<>();
        for (int p = 0; p < PARTITIONS; p++) tps.add(new TopicPartition(r.topic, p));
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(consumerProps(bootstrap))) {
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<TopicPartition, Long> end = consumer.endOffsets(tps, Duration.ofSeconds(30));
            Map<TopicPartition, Long> nextExpected = new HashMap<>();
            for (TopicPartition tp : tps) {
                nextExpected.put(tp, 0L);
                long want = byOffset.get(tp.partition()).size();
                if (end.get(tp) != want) {
                    r.problem("partition " + tp.partition() + " end offset " + end.get(tp) + ", expected " + want);
                }
            }
            long deadline = System.currentTimeMillis() + 90_000;
            while (true) {
                boolean done = true;
                for (TopicPartition tp : tps) done &= consumer.position(tp) >= end.get(tp);
                if (done) break;
                if (System.currentTimeMillis() > deadline) {
                    r.problem("timed out consuming; consumed " + r.consumed);
                    break;
                }
                ConsumerRecords<byte[], byte[]> batch = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<byte[], byte[]> c : batch) {
                    r.consumed++;
                    TopicPartition tp = new TopicPartition(c.topic(), c.partition());
                    long want = nextExpected.get(tp);
                    if (c.offset() != want) {
                        r.problem("partition " + c.partition() + ": got offset " + c.offset() + ", expected " + want);
                    }
                    nextExpected.put(tp, c.offset() + 1);
                    Expected e = byOffset.get(c.partition()).get(c.offset());
                    if (e == null) {
                        r.problem("unexpected record at " + c.partition() + "/" + c.offset());
                        continue;
                    }
                    String diff = describeMismatch(e, c);
                    if (diff != null) {
                        r.problem("record " + e.index + " at " + c.partition() + "/" + c.offset() + ": " + diff);
                    }
                }
            }
        }
    }

    static void midBatch(String bootstrap, CodecResult r, Map<Integer, Map<Long, Expected>> byOffset,
                         int partition, long offset) {
        TopicPartition tp = new TopicPartition(r.topic, partition);
        long end = byOffset.get(partition).size();
        long want = Math.min(end - offset, 50);
        List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(consumerProps(bootstrap))) {
            consumer.assign(Collections.singletonList(tp));
            consumer.seek(tp, offset);
            long deadline = System.currentTimeMillis() + 30_000;
            while (got.size() < want && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> c : consumer.poll(Duration.ofMillis(500))) got.add(c);
            }
        }
        boolean ok = got.size() >= want;
        if (!ok) r.problem("mid-batch seek to " + partition + "/" + offset + ": only " + got.size() + " records");
        long first = got.isEmpty() ? -1 : got.get(0).offset();
        for (int k = 0; k < Math.min(got.size(), want); k++) {
            ConsumerRecord<byte[], byte[]> c = got.get(k);
            if (c.offset() != offset + k) {
                ok = false;
                r.problem("mid-batch seek to " + partition + "/" + offset + ": record " + k + " has offset " + c.offset());
                break;
            }
            String diff = describeMismatch(byOffset.get(partition).get(c.offset()), c);
            if (diff != null) {
                ok = false;
                r.problem("mid-batch seek to " + partition + "/" + offset + ": offset " + c.offset() + ": " + diff);
            }
        }
        r.midBatch.add("{\"partition\":" + partition + ",\"offset\":" + offset + ",\"first\":" + first
                       + ",\"checked\":" + Math.min(got.size(), want) + ",\"ok\":" + ok + "}");
    }

    static String str(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            switch (ch) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default:
                    if (ch < 0x20) b.append(String.format("\\u%04x", (int) ch));
                    else b.append(ch);
            }
        }
        return b.append('"').toString();
    }

    static String strList(List<String> items) {
        List<String> quoted = new ArrayList<>();
        for (String s : items) quoted.add(str(s));
        return "[" + String.join(",", quoted) + "]";
    }
}
