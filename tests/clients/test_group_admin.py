"""Group administration through real clients: ListGroups, DescribeGroups, DeleteGroups and
committed offsets set and read by an admin client (OffsetCommit with no generation,
OffsetFetch), through confluent-kafka; OffsetDelete through raw frames (no Python client
has it)."""

import uuid

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import kafkawire as kw


@pytest.fixture
def setup(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = f"ga-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(10)
    return admin, topic


def set_offsets(admin, group, topic, offsets):
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, o) for p, o in offsets.items()])
    return admin.alter_consumer_group_offsets([request])[group].result(10)


def get_offsets(admin, group, topic):
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(3)])
    result = admin.list_consumer_group_offsets([request])[group].result(10)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def test_admin_sets_reads_lists_describes_and_deletes_a_group(setup, broker):
    admin, topic = setup
    group = f"admin-{uuid.uuid4().hex[:8]}"
    set_offsets(admin, group, topic, {0: 5, 1: 7})
    assert get_offsets(admin, group, topic) == {0: 5, 1: 7, 2: -1001}
    listed = admin.list_consumer_groups().result(10)
    assert group in [g.group_id for g in listed.valid]
    described = admin.describe_consumer_groups([group])[group].result(10)
    assert described.state.name == "EMPTY" and described.members == []
    admin.delete_consumer_groups([group])[group].result(10)
    assert group not in [g.group_id for g in admin.list_consumer_groups().result(10).valid]
    assert get_offsets(admin, group, topic) == {0: -1001, 1: -1001, 2: -1001}
    with pytest.raises(KafkaException) as error:
        admin.delete_consumer_groups([group])[group].result(10)
    assert "GROUP_ID_NOT_FOUND" in str(error.value)


def test_offset_delete(setup, broker):
    admin, topic = setup
    group = f"odel-{uuid.uuid4().hex[:8]}"
    set_offsets(admin, group, topic, {0: 3, 1: 4, 2: 5})
    error, results = kw.offset_delete_v0(broker.bootstrap, group, topic, [1])
    assert error == 0 and results == {1: 0}
    assert get_offsets(admin, group, topic) == {0: 3, 1: -1001, 2: 5}
    error, _ = kw.offset_delete_v0(broker.bootstrap, f"none-{uuid.uuid4().hex[:6]}", topic, [0])
    assert error == 69  # GROUP_ID_NOT_FOUND


def test_committed_offsets_survive_a_restart(setup, broker):
    if not broker.can_restart:
        pytest.skip("needs a broker it can restart")
    admin, topic = setup
    group = f"durable-{uuid.uuid4().hex[:8]}"
    set_offsets(admin, group, topic, {0: 11, 2: 13})
    broker.kill()
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert get_offsets(admin, group, topic) == {0: 11, 1: -1001, 2: 13}
