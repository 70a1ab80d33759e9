// A consumer-group member for tests/clients/test_groups.py, the Java counterpart of
// group_worker.py: it appends "partition offset value" for every record it processes to OUT,
// commits after processing each poll (at-least-once), and logs assignments as "# assign ...".
// SIGTERM closes it cleanly. HEADWATER_GROUP_PROTOCOL=consumer selects the KIP-848 consumer
// protocol, where session timeout and heartbeat interval are the broker's.
//
// usage: GroupWorker BOOTSTRAP GROUP TOPIC OUT [INSTANCE_ID]

import java.io.FileWriter;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.stream.Collectors;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public final class GroupWorker {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], group = args[1], topic = args[2], outPath = args[3];
        String instance = args.length > 4 ? args[4] : null;
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        String protocol = System.getenv().getOrDefault("HEADWATER_GROUP_PROTOCOL", "classic");
        props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        if (protocol.equals("classic")) {
            props.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "6000");
            props.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        }
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        if (instance != null) {
            props.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instance);
        }
        PrintWriter out = new PrintWriter(new FileWriter(outPath, StandardCharsets.UTF_8, true), true);
        KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props);
        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            consumer.wakeup();
            try {
                closed.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }));
        consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                note(out, "revoke " + join(partitions));
            }

            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                note(out, "assign " + join(partitions));
            }
        });
        note(out, "started");
        try {
            while (true) {
                ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(200));
                Map<TopicPartition, OffsetAndMetadata> processed = new HashMap<>();
                for (ConsumerRecord<byte[], byte[]> record : records) {
                    out.println(record.partition() + " " + record.offset() + " " + new String(record.value(), StandardCharsets.UTF_8));
                    processed.put(new TopicPartition(record.topic(), record.partition()), new OffsetAndMetadata(record.offset() + 1));
                    Thread.sleep(2);
                }
                if (!processed.isEmpty()) {
                    consumer.commitSync(processed);
                }
            }
        } catch (WakeupException e) {
            // SIGTERM: fall through to close.
        } finally {
            consumer.close();
            note(out, "closed");
            out.close();
            closed.countDown();
        }
    }

    private static String join(Collection<TopicPartition> partitions) {
        return partitions.stream().map(p -> Integer.toString(p.partition())).sorted().collect(Collectors.joining(","));
    }

    private static void note(PrintWriter out, String event) {
        out.println("# " + event + " " + System.currentTimeMillis() / 1000.0);
    }
}
