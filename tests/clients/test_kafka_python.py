"""Round trip through kafka-python (pure-Python client, own protocol code)."""

import time

import pytest

from clientlib import (CODECS, PARTITIONS, Got, check_mid_batch, check_roundtrip,
                       make_records, mid_batch_offsets, unique_topic)

kafka = pytest.importorskip("kafka")
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

CLIENT = "kpy"


@pytest.fixture(scope="module")
def topics(broker):
    """One fresh 3-partition topic per codec, created with KafkaAdminClient."""
    names = {codec: unique_topic(CLIENT, codec) for codec in CODECS}
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="hw-kpy-admin",
                             request_timeout_ms=30000)
    try:
        resp = admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)
                                    for name in names.values()], timeout_ms=30000)
        errors = {t[0]: t[1:] for t in resp.topic_errors if t[1] != 0}
        assert not errors, f"CreateTopics errors: {errors}"
        # The new topics show up in metadata with all three partitions.
        deadline = time.monotonic() + 30
        while True:
            described = {t["topic"]: t for t in admin.describe_topics(list(names.values()))}
            found = {n: sorted(p["partition"] for p in described[n]["partitions"])
                     if n in described and described[n]["error_code"] == 0 else None
                     for n in names.values()}
            if all(v == list(range(PARTITIONS)) for v in found.values()):
                break
            assert time.monotonic() < deadline, f"topics not in metadata: {found}"
            time.sleep(0.1)
    finally:
        admin.close()
    return names


results = {}


def produce(bootstrap, topic, codec, records):
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="hw-kpy-producer",
        acks="all",
        enable_idempotence=True,
        compression_type=None if codec == "none" else codec,
        linger_ms=10,
        batch_size=256 * 1024,
        # kafka-python refuses idempotence with more than one request in flight.
        max_in_flight_requests_per_connection=1,
    )
    try:
        futures = [producer.send(topic, key=r.key, value=r.value, headers=r.headers,
                                 partition=r.partition, timestamp_ms=r.timestamp)
                   for r in records]
        producer.flush(timeout=120)
        for r, fut in zip(records, futures):
            try:
                md = fut.get(timeout=30)
            except Exception as e:  # recorded and reported by the checks
                r.ack_error = repr(e)
                continue
            r.acked_partition, r.acked_offset = md.partition, md.offset
    finally:
        producer.close(timeout=30)


def to_got(m):
    return Got(m.partition, m.offset, m.key, m.value,
               [(k, v) for k, v in (m.headers or [])], m.timestamp,
               create_time=(m.timestamp_type == 0))


def new_consumer(bootstrap):
    # No group: partitions are assigned by hand and nothing is committed.
    return KafkaConsumer(bootstrap_servers=bootstrap, client_id="hw-kpy-consumer",
                         group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", max_poll_records=5000)


def consume_all(bootstrap, topic, timeout=90):
    consumer = new_consumer(bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        got = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"timed out; consumed {len(got)} of {sum(end.values())}"
            for _tp, msgs in consumer.poll(timeout_ms=500).items():
                got.extend(to_got(m) for m in msgs)
        return got, {tp.partition: off for tp, off in end.items()}
    finally:
        consumer.close()


def consume_from(bootstrap, topic, partition, offset, count, timeout=30):
    consumer = new_consumer(bootstrap)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            for _tp, msgs in consumer.poll(timeout_ms=500).items():
                got.extend(to_got(m) for m in msgs)
        return got
    finally:
        consumer.close()


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume(broker, topics, codec):
    topic = topics[codec]
    records = make_records(CLIENT, codec)
    produce(broker.bootstrap, topic, codec, records)
    got, end = consume_all(broker.bootstrap, topic)
    check_roundtrip(records, got, f"kafka-python {codec}")
    assert sum(end.values()) == len(records)
    results[codec] = records


@pytest.mark.parametrize("codec", CODECS)
def test_seek_into_batch(broker, topics, codec):
    records = results.get(codec)
    if records is None:
        pytest.skip("produce/consume for this codec did not pass")
    for start in mid_batch_offsets(records):
        got = consume_from(broker.bootstrap, topics[codec], 0, start, 50)
        check_mid_batch(records, got, 0, start, f"kafka-python {codec}")
