"""Consumer groups with real clients: members share a topic's partitions, a SIGKILLed member's
partitions move to the others, every record is processed at least once, committed offsets reach
the end offsets and survive a broker crash, and a restarted static member causes no rebalance.

Each test runs over the classic group protocol and over KIP-848's consumer protocol
(`group.protocol=consumer`) with the clients that speak it: Java kafka-clients and
confluent-kafka (librdkafka). With the consumer protocol the broker owns the session timeout,
so this module's broker gets a short one."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

WORKER = str(Path(__file__).with_name("group_worker.py"))
PARTITIONS = 6
COORDINATOR_NOT_READY = (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                         KafkaError.COORDINATOR_NOT_AVAILABLE)
BROKER_ARGS = ["--group-consumer-session-timeout-ms", "8000", "--group-consumer-heartbeat-interval-ms", "500"]


def produce(bootstrap, topic, values):
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for i, value in enumerate(values):
        producer.produce(topic, value=value.encode(), partition=i % PARTITIONS)
    assert producer.flush(30) == 0


REPO_ROOT = Path(__file__).resolve().parents[2]


def start_worker(client, bootstrap, group, topic, out, instance=None, protocol="classic", env=None):
    if client == "java":
        args = ["java", "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-cp", f"{REPO_ROOT / '.deps/java-classes'}:{REPO_ROOT / '.deps/java'}/*",
                "GroupWorker", bootstrap, group, topic, str(out)]
    else:
        args = [sys.executable, WORKER, client, bootstrap, group, topic, str(out)]
    args += [instance] if instance else []
    env = dict(os.environ, HEADWATER_GROUP_PROTOCOL=protocol, **(env or {}))
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(str(out) + ".err", "w"), env=env)


def processed(outs):
    seen = []
    for out in outs:
        if out.exists():
            for line in out.read_text().splitlines():
                if line and not line.startswith("#"):
                    partition, offset, value = line.split(" ", 2)
                    seen.append((int(partition), int(offset), value))
    return seen


def events(out):
    """A worker's rebalance callbacks, in order: "assign 0,1,2", "revoke 3"."""
    return [line.split(" ", 1)[1].rsplit(" ", 1)[0] for line in out.read_text().splitlines()
            if line.startswith("# assign") or line.startswith("# revoke")]


def holdings(out):
    """The partitions a worker holds after its callbacks so far (a revoke removes, an assign
    adds: right for eager and for incremental callbacks)."""
    held = set()
    for event in events(out):
        kind, _, partitions = event.partition(" ")
        parts = {int(p) for p in partitions.split(",") if p}
        held = held - parts if kind == "revoke" else held | parts
    return sorted(held)


def wait_for(condition, what, limit_s=90):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def describe(admin, group):
    return admin.describe_consumer_groups([group])[group].result(10)


def group_members(admin, group):
    description = describe(admin, group)
    return description.state, [sorted(tp.partition for tp in m.assignment.topic_partitions) for m in description.members]


def stable_with(admin, group, count):
    """Whether the group is stable with `count` members. A coordinator that is not ready yet
    (Kafka answers NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS just after it starts) means
    not yet."""
    try:
        state, members = group_members(admin, group)
    except KafkaException as e:
        if e.args and e.args[0].code() in COORDINATOR_NOT_READY:
            return False
        raise
    # Over the consumer protocol, members pick up a departed member's partitions at their next
    # heartbeats: until then, some partitions are in nobody's current assignment.
    covered = sorted(p for m in members for p in m) == list(range(PARTITIONS))
    return len(members) == count and state.name == "STABLE" and covered


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


@pytest.mark.parametrize("protocol,clients", [
    ("classic", ("confluent", "confluent", "confluent")),
    ("classic", ("java", "kafka-python", "confluent")),
    ("consumer", ("confluent", "confluent", "confluent")),
    ("consumer", ("java", "confluent", "java")),
])
def test_killed_member_partitions_move_and_commits_survive_a_crash(broker, group_topic, tmp_path, protocol, clients):
    admin, topic = group_topic
    group = f"g-{uuid.uuid4().hex[:8]}"
    values = [f"{topic}-{i}" for i in range(3000)]
    produce(broker.bootstrap, topic, values)
    outs = [tmp_path / f"worker{i}.txt" for i in range(3)]
    workers = [start_worker(c, broker.bootstrap, group, topic, out, protocol=protocol) for c, out in zip(clients, outs)]
    try:
        wait_for(lambda: stable_with(admin, group, 3), "three members in a stable group")
        state, assignments = group_members(admin, group)
        assert sorted(p for a in assignments for p in a) == list(range(PARTITIONS)), assignments
        assert describe(admin, group).type.name == protocol.upper()
        wait_for(lambda: len(processed([outs[0]])) > 50, "worker 0 to process records")
        workers[0].kill()
        wait_for(lambda: set(values) <= {v for _, _, v in processed(outs)}, "every record processed")
        wait_for(lambda: stable_with(admin, group, 2), "the two survivors to hold every partition")
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


@pytest.mark.parametrize("protocol,client", [("classic", "confluent"), ("consumer", "confluent"), ("consumer", "java")])
def test_restarted_static_member_causes_no_rebalance(broker, group_topic, tmp_path, protocol, client):
    admin, topic = group_topic
    group = f"static-{uuid.uuid4().hex[:8]}"
    produce(broker.bootstrap, topic, [f"s{i}" for i in range(60)])
    outs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    a = start_worker(client, broker.bootstrap, group, topic, outs[0], instance="instance-a", protocol=protocol)
    b = start_worker(client, broker.bootstrap, group, topic, outs[1], instance="instance-b", protocol=protocol)
    workers = [a, b]
    try:
        wait_for(lambda: stable_with(admin, group, 2), "two static members")
        wait_for(lambda: len(processed(outs)) >= 60, "all records processed")
        # Over the consumer protocol, callbacks are incremental: a member may first give up
        # partitions it got before the other joined. Wait until the two hold all six.
        wait_for(lambda: sorted(holdings(outs[0]) + holdings(outs[1])) == list(range(PARTITIONS)),
                 "the members' callbacks to cover every partition once")
        events_before = events(outs[0])
        # Restart b: a static member's close does not leave the group, and it comes back
        # within its session timeout under the same instance id.
        b.terminate()
        b.wait(30)
        b2 = start_worker(client, broker.bootstrap, group, topic, outs[1], instance="instance-b", protocol=protocol)
        workers.append(b2)
        wait_for(lambda: outs[1].read_text().count("# assign") >= 2, "the restarted member to get its partitions")
        produce(broker.bootstrap, topic, [f"t{i}" for i in range(60)])
        wait_for(lambda: len(processed(outs)) >= 120, "new records processed")
        assert events(outs[0]) == events_before, "member a saw a rebalance"
    finally:
        stop_all(workers)
