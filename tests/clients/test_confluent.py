"""Round trip through confluent-kafka (librdkafka bundled in the wheel)."""

import time

import pytest

from clientlib import (CODECS, PARTITIONS, Got, check_mid_batch, check_roundtrip,
                       create_topics, make_records, mid_batch_offsets, unique_topic)

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, Producer,  # noqa: E402
                             TIMESTAMP_CREATE_TIME, TopicPartition)

CLIENT = "ck"


@pytest.fixture(scope="module")
def topics(broker):
    """One fresh 3-partition topic per codec, created with confluent's AdminClient."""
    names = {codec: unique_topic(CLIENT, codec) for codec in CODECS}
    create_topics(broker.bootstrap, list(names.values()))
    return names


results = {}


def produce(bootstrap, topic, codec, records):
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "client.id": "hw-ck-producer",
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": codec,
        "linger.ms": 10,
        "batch.num.messages": 10000,
        "message.timeout.ms": 60000,
    })

    def on_delivery(rec):
        def cb(err, msg):
            if err is not None:
                rec.ack_error = str(err)
            else:
                rec.acked_partition, rec.acked_offset = msg.partition(), msg.offset()
        return cb

    for r in records:
        while True:
            try:
                producer.produce(topic, key=r.key, value=r.value, partition=r.partition,
                                 timestamp=r.timestamp, headers=r.headers,
                                 on_delivery=on_delivery(r))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(120)
    assert remaining == 0, f"{remaining} messages still undelivered after flush"


def to_got(m):
    ts_type, ts = m.timestamp()
    return Got(m.partition(), m.offset(), m.key(), m.value(), list(m.headers() or []), ts,
               create_time=(ts_type == TIMESTAMP_CREATE_TIME))


def new_consumer(bootstrap):
    # librdkafka's Python binding insists on a group.id even for assign();
    # nothing is subscribed or committed, so no group is ever joined.
    return Consumer({
        "bootstrap.servers": bootstrap,
        "client.id": "hw-ck-consumer",
        "group.id": "hw-unused-assign-only",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    })


def consume_all(bootstrap, topic, timeout=90):
    consumer = new_consumer(bootstrap)
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        got = []
        at_eof = set()
        deadline = time.monotonic() + timeout
        while len(at_eof) < PARTITIONS:
            assert time.monotonic() < deadline, f"timed out; consumed {len(got)}"
            for m in consumer.consume(num_messages=5000, timeout=0.5):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        at_eof.add(m.partition())
                        continue
                    raise AssertionError(f"consume error: {m.error()}")
                at_eof.discard(m.partition())
                got.append(to_got(m))
        return got
    finally:
        consumer.close()


def consume_from(bootstrap, topic, partition, offset, count, timeout=30):
    consumer = new_consumer(bootstrap)
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=count, timeout=0.5):
                if m.error() is None:
                    got.append(to_got(m))
                elif m.error().code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"consume error: {m.error()}")
        return got
    finally:
        consumer.close()


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume(broker, topics, codec):
    topic = topics[codec]
    records = make_records(CLIENT, codec)
    produce(broker.bootstrap, topic, codec, records)
    got = consume_all(broker.bootstrap, topic)
    check_roundtrip(records, got, f"confluent-kafka {codec}")
    results[codec] = records


@pytest.mark.parametrize("codec", CODECS)
def test_seek_into_batch(broker, topics, codec):
    records = results.get(codec)
    if records is None:
        pytest.skip("produce/consume for this codec did not pass")
    for start in mid_batch_offsets(records):
        got = consume_from(broker.bootstrap, topics[codec], 0, start, 50)
        check_mid_batch(records, got, 0, start, f"confluent-kafka {codec}")


def test_watermarks(broker, topics):
    """Low/high watermarks match what was produced (ListOffsets)."""
    if not results:
        pytest.skip("nothing was produced")
    consumer = new_consumer(broker.bootstrap)
    try:
        for codec, records in results.items():
            for p in range(PARTITIONS):
                lo, hi = consumer.get_watermark_offsets(TopicPartition(topics[codec], p), timeout=10)
                want = sum(1 for r in records if r.partition == p)
                assert (lo, hi) == (0, want), f"{codec} partition {p}"
    finally:
        consumer.close()
