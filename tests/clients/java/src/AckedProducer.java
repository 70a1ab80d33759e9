// An acks=all idempotent producer for tests/clients/test_replication.py: it sends RECORDS values
// "PREFIX<i>" to partition 0 of TOPIC and prints "ack VALUE OFFSET" for each record the broker
// acknowledged, "fail VALUE ERROR" for each it did not, and "done" after flush. The test kills
// the partition's leader while the acks come in, then checks every acknowledged record is
// stored once, at its offset.
//
// usage: AckedProducer BOOTSTRAP TOPIC RECORDS PREFIX

import java.nio.charset.StandardCharsets;
import java.util.Properties;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class AckedProducer {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], prefix = args[3];
        int records = Integer.parseInt(args[2]);
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            for (int i = 0; i < records; i++) {
                String value = prefix + i;
                ProducerRecord<byte[], byte[]> record =
                        new ProducerRecord<>(topic, 0, null, value.getBytes(StandardCharsets.UTF_8));
                producer.send(record, (metadata, error) -> {
                    synchronized (System.out) {
                        if (error != null) {
                            System.out.println("fail " + value + " " + error.getClass().getSimpleName());
                        } else {
                            System.out.println("ack " + value + " " + metadata.offset());
                        }
                        System.out.flush();
                    }
                });
                if (i % 100 == 0) {
                    Thread.sleep(20);
                }
            }
            producer.flush();
        }
        System.out.println("done");
    }
}
