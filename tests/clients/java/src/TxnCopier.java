import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * An exactly-once copier with the Java client: reads INPUT through a consumer group
 * (read_committed), writes "out-" + value to OUTPUT in a transaction together with the
 * consumer's offsets (sendOffsetsToTransaction), and commits. Round ABORT_ROUND is aborted
 * instead, and the consumer goes back to the group's committed offsets, so those inputs are
 * copied again in a later transaction. Stops once EXPECTED inputs were copied in committed
 * transactions, and prints one JSON line: {"copied": n, "rounds": r, "aborted": a, "failed": f}.
 *
 * A round that fails with an error the application can recover from (a broker killed under
 * it: a timeout, a coordinator that moved) is aborted and its inputs read again, as an
 * exactly-once application does; "failed" counts those rounds. A fenced producer stops the run.
 *
 * usage: TxnCopier BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID EXPECTED ABORT_ROUND [SECONDS]
 */
public class TxnCopier {
    public static void main(String[] args) {
        String bootstrap = args[0], input = args[1], output = args[2], group = args[3], txnId = args[4];
        int expected = Integer.parseInt(args[5]);
        int abortRound = Integer.parseInt(args[6]);
        long seconds = args.length > 7 ? Long.parseLong(args[7]) : 90;

        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "10");
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());

        int copied = 0, rounds = 0, aborted = 0, failed = 0;
        long deadline = System.currentTimeMillis() + seconds * 1000;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c);
             KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            producer.initTransactions();
            consumer.subscribe(List.of(input));
            while (copied < expected && System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(500));
                if (records.isEmpty()) {
                    continue;
                }
                rounds++;
                try {
                    producer.beginTransaction();
                    Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                    for (ConsumerRecord<String, String> r : records) {
                        producer.send(new ProducerRecord<>(output, r.partition(), null, "out-" + r.value()));
                        offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    }
                    producer.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
                    if (rounds == abortRound) {
                        producer.abortTransaction();
                        aborted++;
                        rewind(consumer);
                        continue;
                    }
                    commitUntilDone(producer, deadline);
                    copied += records.count();
                } catch (ProducerFencedException | InvalidProducerEpochException e) {
                    throw e;
                } catch (KafkaException e) {
                    System.err.println("round " + rounds + " failed (" + e + "); aborting it");
                    failed++;
                    abortUntilDone(producer, deadline);
                    rewind(consumer);
                }
            }
        }
        System.out.println("{\"copied\": " + copied + ", \"rounds\": " + rounds + ", \"aborted\": " + aborted
                + ", \"failed\": " + failed + "}");
    }

    /** Goes back to the group's committed offsets of every assigned partition. */
    static void rewind(KafkaConsumer<String, String> consumer) {
        Set<TopicPartition> assigned = consumer.assignment();
        Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(assigned);
        for (TopicPartition tp : assigned) {
            OffsetAndMetadata at = committed.get(tp);
            consumer.seek(tp, at == null ? 0 : at.offset());
        }
    }

    /**
     * Commits, asking again while the commit times out: the producer then does not know whether
     * the commit was decided, and only another commitTransaction may follow.
     */
    static void commitUntilDone(KafkaProducer<String, String> producer, long deadline) {
        while (true) {
            try {
                producer.commitTransaction();
                return;
            } catch (TimeoutException e) {
                if (System.currentTimeMillis() > deadline) {
                    throw e;
                }
            }
        }
    }

    /** Aborts the open transaction, asking again while the abort times out. */
    static void abortUntilDone(KafkaProducer<String, String> producer, long deadline) {
        while (true) {
            try {
                producer.abortTransaction();
                return;
            } catch (TimeoutException e) {
                if (System.currentTimeMillis() > deadline) {
                    throw e;
                }
            }
        }
    }
}
