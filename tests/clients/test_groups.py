"""Consumer groups with real clients: members share a topic's partitions, a SIGKILLed member's
partitions move to the others, every record is processed at least once, committed offsets reach
the end offsets and survive a broker crash, and a restarted static member causes no rebalance."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

WORKER = str(Path(__file__).with_name("group_worker.py"))
PARTITIONS = 6


def produce(bootstrap, topic, values):
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for i, value in enumerate(values):
        producer.produce(topic, value=value.encode(), partition=i % PARTITIONS)
    assert producer.flush(30) == 0


REPO_ROOT = Path(__file__).resolve().parents[2]


def start_worker(client, bootstrap, group, topic, out, instance=None):
    if client == "java":
        args = ["java", "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-cp", f"{REPO_ROOT / '.deps/java-classes'}:{REPO_ROOT / '.deps/java'}/*",
                "GroupWorker", bootstrap, group, topic, str(out)]
    else:
        args = [sys.executable, WORKER, client, bootstrap, group, topic, str(out)]
    args += [instance] if instance else []
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(str(out) + ".err", "w"))


def processed(outs):
    seen = []
    for out in outs:
        if out.exists():
            for line in out.read_text().splitlines():
                if line and not line.startswith("#"):
                    partition, offset, value = line.split(" ", 2)
                    seen.append((int(partition), int(offset), value))
    return seen


def wait_for(condition, what, limit_s=90):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def group_members(admin, group):
    description = admin.describe_consumer_groups([group])[group].result(10)
    return description.state, [sorted(tp.partition for tp in m.assignment.topic_partitions) for m in description.members]


def committed(admin, group, topic):
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTITIONS)])
    result = admin.list_consumer_group_offsets([request])[group].result(10)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def stop_all(workers):
    for w in workers:
        if w.poll() is None:
            w.terminate()
    for w in workers:
        try:
            w.wait(30)
        except subprocess.TimeoutExpired:
            w.kill()


@pytest.fixture
def group_topic(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = f"groups-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(10)
    return admin, topic


@pytest.mark.parametrize("clients", [("confluent", "confluent", "confluent"), ("java", "kafka-python", "confluent")])
def test_killed_member_partitions_move_and_commits_survive_a_crash(broker, group_topic, tmp_path, clients):
    admin, topic = group_topic
    group = f"g-{uuid.uuid4().hex[:8]}"
    values = [f"{topic}-{i}" for i in range(3000)]
    produce(broker.bootstrap, topic, values)
    outs = [tmp_path / f"worker{i}.txt" for i in range(3)]
    workers = [start_worker(c, broker.bootstrap, group, topic, out) for c, out in zip(clients, outs)]
    try:
        wait_for(lambda: len(group_members(admin, group)[1]) == 3 and group_members(admin, group)[0].name == "STABLE",
                 "three members in a stable group")
        state, assignments = group_members(admin, group)
        assert sorted(p for a in assignments for p in a) == list(range(PARTITIONS)), assignments
        wait_for(lambda: len(processed([outs[0]])) > 50, "worker 0 to process records")
        workers[0].kill()
        wait_for(lambda: set(values) <= {v for _, _, v in processed(outs)}, "every record processed")
        wait_for(lambda: len(group_members(admin, group)[1]) == 2, "the dead member to leave the group")
        state, assignments = group_members(admin, group)
        assert sorted(p for a in assignments for p in a) == list(range(PARTITIONS)), assignments
        wait_for(lambda: committed(admin, group, topic) == {p: 500 for p in range(PARTITIONS)}, "commits to reach the end offsets")
    finally:
        stop_all(workers)
    seen = processed(outs)
    by_value = {}
    for partition, offset, value in seen:
        by_value.setdefault(value, set()).add((partition, offset))
    for i, value in enumerate(values):
        assert by_value[value] == {(i % PARTITIONS, i // PARTITIONS)}, value
    if broker.can_restart:
        broker.kill()
        broker.start()
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        assert committed(admin, group, topic) == {p: 500 for p in range(PARTITIONS)}


def test_restarted_static_member_causes_no_rebalance(broker, group_topic, tmp_path):
    admin, topic = group_topic
    group = f"static-{uuid.uuid4().hex[:8]}"
    produce(broker.bootstrap, topic, [f"s{i}" for i in range(60)])
    outs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    a = start_worker("confluent", broker.bootstrap, group, topic, outs[0], instance="instance-a")
    b = start_worker("confluent", broker.bootstrap, group, topic, outs[1], instance="instance-b")
    workers = [a, b]
    try:
        wait_for(lambda: len(group_members(admin, group)[1]) == 2 and group_members(admin, group)[0].name == "STABLE",
                 "two static members")
        wait_for(lambda: len(processed(outs)) >= 60, "all records processed")
        assigns_before = outs[0].read_text().count("# assign")
        # Restart b: a static member's close does not leave the group, and it comes back
        # within its session timeout under the same instance id.
        b.terminate()
        b.wait(30)
        b2 = start_worker("confluent", broker.bootstrap, group, topic, outs[1], instance="instance-b")
        workers.append(b2)
        wait_for(lambda: outs[1].read_text().count("# assign") >= 2, "the restarted member to get its partitions")
        produce(broker.bootstrap, topic, [f"t{i}" for i in range(60)])
        wait_for(lambda: len(processed(outs)) >= 120, "new records processed")
        assert outs[0].read_text().count("# assign") == assigns_before, "member a saw a rebalance"
        assert "# revoke" not in outs[0].read_text()
    finally:
        stop_all(workers)
