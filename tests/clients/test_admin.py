"""The admin APIs through real clients: confluent-kafka's AdminClient (librdkafka) and
kafka-python's KafkaAdminClient. Each advertised admin API is exercised here:
CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, AlterConfigs,
IncrementalAlterConfigs, DescribeCluster, DeleteRecords, ListOffsets (earliest, latest, by
timestamp, max timestamp) and Metadata with topic ids."""

import time
import uuid

import pytest
from confluent_kafka import KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, NewTopic, OffsetSpec, ResourceType)


def result(futures, timeout=30):
    return {k: f.result(timeout) for k, f in futures.items()}


@pytest.fixture(scope="module")
def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def fresh(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def produce(broker, topic, partition, count, timestamp_first):
    producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 0})
    offsets = []
    for i in range(count):
        producer.produce(topic, value=f"v{i}".encode(), partition=partition, timestamp=timestamp_first + i * 10,
                         on_delivery=lambda err, msg: offsets.append((err, msg.offset())))
        producer.flush(10)
    assert all(err is None for err, _ in offsets)
    return [o for _, o in offsets]


def test_create_describe_and_delete_topic(admin):
    name = fresh("admin-create")
    result(admin.create_topics([NewTopic(name, num_partitions=4, replication_factor=1,
                                         config={"retention.ms": "123456", "cleanup.policy": "delete"})]))
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.topics[name].partitions) == 4
    described = result(admin.describe_topics(TopicCollection([name])))[name]
    assert described.topic_id is not None and len(described.partitions) == 4
    with pytest.raises(KafkaException) as exists:
        result(admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)]))
    assert "TOPIC_ALREADY_EXISTS" in str(exists.value)
    result(admin.delete_topics([name]))
    assert name not in admin.list_topics(timeout=10).topics


def test_create_topic_errors_are_kafka_errors(admin):
    bad = [
        (NewTopic(fresh("rf"), num_partitions=1, replication_factor=3), "INVALID_REPLICATION_FACTOR"),
        (NewTopic(fresh("cfg"), num_partitions=1, replication_factor=1, config={"retention.ms": "soon"}), "INVALID_CONFIG"),
        (NewTopic(fresh("cfg"), num_partitions=1, replication_factor=1, config={"no.such.config": "1"}), "INVALID_CONFIG"),
        (NewTopic("bad/name", num_partitions=1, replication_factor=1), "TOPIC_EXCEPTION"),
    ]
    for topic, code in bad:
        with pytest.raises(KafkaException) as error:
            result(admin.create_topics([topic]))
        assert code in str(error.value), (topic, str(error.value))


def test_validate_only_creates_nothing(admin):
    name = fresh("validate")
    result(admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)], validate_only=True))
    assert name not in admin.list_topics(timeout=10).topics


def test_create_partitions(admin):
    name = fresh("grow")
    result(admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)]))
    result(admin.create_partitions([NewPartitions(name, 5)]))
    assert len(admin.list_topics(timeout=10).topics[name].partitions) == 5
    with pytest.raises(KafkaException) as error:
        result(admin.create_partitions([NewPartitions(name, 3)]))
    assert "INVALID_PARTITIONS" in str(error.value)


def test_describe_and_alter_configs(admin):
    name = fresh("configs")
    result(admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1, config={"retention.ms": "1000"})]))
    resource = ConfigResource(ResourceType.TOPIC, name)
    configs = result(admin.describe_configs([resource]))[resource]
    assert configs["retention.ms"].value == "1000"
    assert configs["segment.bytes"].value == "1073741824"
    # Incremental: set one key, leave the others.
    result(admin.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET)])]))
    configs = result(admin.describe_configs([resource]))[resource]
    assert configs["segment.bytes"].value == "1048576" and configs["retention.ms"].value == "1000"
    # Incremental delete returns the key to its default.
    result(admin.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])]))
    configs = result(admin.describe_configs([resource]))[resource]
    assert configs["retention.ms"].value == "604800000"
    # Legacy AlterConfigs replaces the whole set of overrides.
    result(admin.alter_configs([ConfigResource(ResourceType.TOPIC, name, set_config={"retention.bytes": "5000000"})]))
    configs = result(admin.describe_configs([resource]))[resource]
    assert configs["retention.bytes"].value == "5000000" and configs["segment.bytes"].value == "1073741824"
    with pytest.raises(KafkaException) as error:
        result(admin.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
            ConfigEntry("retention.ms", "never", incremental_operation=AlterConfigOpType.SET)])]))
    assert "retention.ms" in str(error.value)


def test_describe_cluster(admin, broker):
    cluster = admin.describe_cluster().result(10)
    assert cluster.cluster_id
    assert [n.id for n in cluster.nodes] == [1]
    assert cluster.controller.id == 1
    assert f"{cluster.nodes[0].host}:{cluster.nodes[0].port}" == broker.bootstrap


def test_list_offsets_and_delete_records(admin, broker):
    name = fresh("offsets")
    result(admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)]))
    base = int(time.time() * 1000) - 100_000
    offsets = produce(broker, name, 0, 20, base)
    assert offsets == list(range(20))
    tp = TopicPartition(name, 0)

    def offset(spec):
        return result(admin.list_offsets({tp: spec}))[tp].offset

    assert offset(OffsetSpec.earliest()) == 0
    assert offset(OffsetSpec.latest()) == 20
    assert offset(OffsetSpec.for_timestamp(base + 55)) == 6
    assert offset(OffsetSpec.for_timestamp(base + 10_000)) == -1
    assert offset(OffsetSpec.max_timestamp()) == 19
    deleted = result(admin.delete_records([TopicPartition(name, 0, 7)]))
    assert list(deleted.values())[0].low_watermark == 7
    assert offset(OffsetSpec.earliest()) == 7
    with pytest.raises(KafkaException):
        result(admin.delete_records([TopicPartition(name, 0, 500)]))


def test_kafka_python_admin(broker):
    from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic as KNewTopic
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    name = fresh("kpy-admin")
    response = admin.create_topics([KNewTopic(name, num_partitions=2, replication_factor=1, topic_configs={"retention.ms": "777"})])
    assert all(err == 0 for _, err, *_ in response.topic_errors)
    assert name in admin.list_topics()
    configs = admin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, name)])
    entries = {c[0]: c[1] for c in configs[0].resources[0][4]}
    assert entries["retention.ms"] == "777"
    cluster = admin.describe_cluster()
    assert cluster["controller_id"] == 1
    admin.delete_topics([name])
    assert name not in admin.list_topics()
    admin.close()


@pytest.mark.parametrize("producer_kind", ["confluent", "kafka-python"])
@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_offset_for_timestamp_inside_compressed_batches(admin, broker, codec, producer_kind):
    """The answer is the exact record, even in the middle of a compressed batch (snappy from
    librdkafka is raw; from kafka-python it is xerial-framed, like the Java client's)."""
    name = fresh(f"ts-{codec}")
    result(admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)]))
    base = int(time.time() * 1000) - 1_000_000
    if producer_kind == "confluent":
        producer = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec,
                             "linger.ms": 1000, "batch.num.messages": 1000, "enable.idempotence": True})
        for i in range(500):
            producer.produce(name, value=f"value-{i}".encode() * 3, timestamp=base + i * 10)
        assert producer.flush(30) == 0
    else:
        from kafka import KafkaProducer
        # acks=all: answered once the records are below the high watermark (fsynced), which is
        # what ListOffsets searches; acks=1 would race the fsync.
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=1000, batch_size=1 << 20,
                                 acks="all", compression_type=None if codec == "none" else codec)
        for i in range(500):
            producer.send(name, value=f"value-{i}".encode() * 3, timestamp_ms=base + i * 10)
        producer.flush(30)
        producer.close()
    tp = TopicPartition(name, 0)
    for i in [0, 1, 137, 250, 499]:
        found = result(admin.list_offsets({tp: OffsetSpec.for_timestamp(base + i * 10 - 5)}))[tp]
        assert (found.offset, found.timestamp) == (i, base + i * 10), (codec, i)
    newest = result(admin.list_offsets({tp: OffsetSpec.max_timestamp()}))[tp]
    assert (newest.offset, newest.timestamp) == (499, base + 4990)
