"""Several Headwater processes as one cluster: the metadata quorum elects a leader over real
sockets, fails over when the leader dies, takes the old leader back as a follower, and
answers Kafka's own `kafka-metadata-quorum` tool.

Here topics have one replica per partition, spread over the brokers; replicated partitions and
their failovers are tested in test_replication.py."""

import shutil
import subprocess
import time

import pytest

import kafkawire as kw
from test_durability import TOOLS_JARS

ELECTION_TIMEOUT_S = 30.0


def quorum_views(cluster, nodes=None):
    """{node id: DescribeQuorum as asked of that node} for the running `nodes`. A follower
    forwards it to the leader it knows; if that leader is dead, the follower answers from its
    own view once the forward times out (5 s), hence the longer wait."""
    views = {}
    for node_id in nodes or cluster.nodes:
        views[node_id] = kw.describe_quorum_v0(cluster.nodes[node_id].bootstrap, timeout=12.0)
    return views


def agreed_leader(cluster, nodes=None, not_before_epoch=0):
    """Waits until every node in `nodes` names the same leader in the same epoch (at least
    `not_before_epoch`) and returns (leader, epoch)."""
    deadline = time.monotonic() + ELECTION_TIMEOUT_S
    while True:
        views = quorum_views(cluster, nodes)
        seen = {(v["leader_id"], v["leader_epoch"]) for v in views.values()}
        for view in views.values():
            assert view["error_code"] == 0 and view["partition_error_code"] == 0, views
            assert sorted(view["voters"]) == sorted(cluster.nodes), views
        if len(seen) == 1:
            leader, epoch = seen.pop()
            if leader != -1 and epoch >= not_before_epoch:
                return leader, epoch
        assert time.monotonic() < deadline, f"no agreed leader within {ELECTION_TIMEOUT_S:.0f}s: {views}"
        time.sleep(0.2)


def test_quorum_elects_fails_over_and_takes_the_old_leader_back(headwater_cluster):
    cluster = headwater_cluster
    leader, epoch = agreed_leader(cluster)
    assert leader in cluster.nodes

    cluster.nodes[leader].kill()
    survivors = [n for n in cluster.nodes if n != leader]
    new_leader, new_epoch = agreed_leader(cluster, survivors, not_before_epoch=epoch + 1)
    assert new_leader in survivors and new_epoch > epoch

    # The old leader comes back as a follower of the new epoch: pre-vote keeps it from
    # deposing a leader the others still hear from.
    cluster.nodes[leader].start()
    assert agreed_leader(cluster) == (new_leader, new_epoch)
    # The leader counts every voter again (its log end is known once the voter fetches).
    deadline = time.monotonic() + ELECTION_TIMEOUT_S
    while True:
        voters = kw.describe_quorum_v0(cluster.nodes[new_leader].bootstrap)["voters"]
        if all(end >= 0 for end in voters.values()):
            break
        assert time.monotonic() < deadline, f"the leader does not hear from every voter: {voters}"
        time.sleep(0.2)
    assert "metadata quorum leader known" in open(cluster.nodes[leader].log_path).read()

    # A leader stopped with SIGTERM hands over (EndQuorumEpoch) and exits cleanly.
    assert cluster.nodes[new_leader].stop() == 0
    others = [n for n in cluster.nodes if n != new_leader]
    third, third_epoch = agreed_leader(cluster, others, not_before_epoch=new_epoch + 1)
    assert third in others and third_epoch > new_epoch


def test_kafka_metadata_quorum_describe_status(headwater_cluster):
    """kafka-metadata-quorum.sh describe --status / --replication (MetadataQuorumCommand from
    Kafka's kafka-tools jar) against a follower and the leader."""
    java = shutil.which("java")
    if java is None:
        pytest.fail("java not found", pytrace=False)
    if not any(TOOLS_JARS.glob("kafka-tools-*.jar")):
        pytest.fail("kafka-tools not set up: run scripts/setup-test-deps.sh", pytrace=False)
    cluster = headwater_cluster
    leader, epoch = agreed_leader(cluster)
    follower = next(n for n in cluster.nodes if n != leader)

    def describe(node_id, what):
        cmd = [java, "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
               "-cp", f"{TOOLS_JARS}/*", "org.apache.kafka.tools.MetadataQuorumCommand",
               "--bootstrap-server", cluster.nodes[node_id].bootstrap, "describe", f"--{what}"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        detail = f"exit {out.returncode}\n--- stdout ---\n{out.stdout[-4000:]}\n--- stderr ---\n{out.stderr[-4000:]}"
        assert out.returncode == 0, detail
        return out.stdout, detail

    status, detail = describe(follower, "status")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    assert fields["ClusterId"] == "hw-test-cluster", detail
    assert fields["LeaderId"] == str(leader) and fields["LeaderEpoch"] == str(epoch), detail
    assert all(f'"id": {n}' in fields["CurrentVoters"] for n in cluster.nodes), detail

    replication, detail = describe(leader, "replication")
    rows = [line.split() for line in replication.splitlines()[1:] if line.strip()]
    statuses = {int(row[0]): row[-1] for row in rows}
    assert statuses == {n: "Leader" if n == leader else "Follower" for n in cluster.nodes}, detail


def listed_brokers(bootstrap):
    """The broker ids a client learns from the node at `bootstrap` (librdkafka's Metadata)."""
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return sorted(admin.list_topics(timeout=10).brokers)


def wait_listed(bootstrap, expected, what):
    deadline = time.monotonic() + ELECTION_TIMEOUT_S
    while True:
        listed = listed_brokers(bootstrap)
        if listed == expected:
            return
        assert time.monotonic() < deadline, f"{what}: {bootstrap} lists {listed}, expected {expected}"
        time.sleep(0.5)


def test_brokers_register_and_a_dead_one_is_fenced_until_it_returns(headwater_cluster):
    """Each node registers with the controller and heartbeats; clients are told of every
    registered broker. A broker that stops heartbeating is fenced after its session (9 s) and
    no longer listed; restarted, it registers again."""
    cluster = headwater_cluster
    agreed_leader(cluster)
    everyone = sorted(cluster.nodes)
    for node in cluster.nodes.values():
        wait_listed(node.bootstrap, everyone, "after start-up")
    victim = everyone[-1]
    cluster.nodes[victim].kill()
    survivors = [n for n in everyone if n != victim]
    for n in survivors:
        wait_listed(cluster.nodes[n].bootstrap, survivors, f"after broker {victim} was killed")
    cluster.nodes[victim].start()
    for node in cluster.nodes.values():
        wait_listed(node.bootstrap, everyone, f"after broker {victim} came back")

    # Stopped with SIGTERM, a broker tells the controller (a heartbeat with want_shut_down)
    # and exits cleanly; the others stop listing it.
    leader, _ = agreed_leader(cluster)
    stopping = next(n for n in everyone if n != leader)
    assert cluster.nodes[stopping].stop() == 0
    rest = [n for n in everyone if n != stopping]
    for n in rest:
        wait_listed(cluster.nodes[n].bootstrap, rest, f"after broker {stopping} stopped")


def test_a_topic_spread_over_the_brokers_serves_librdkafka(headwater_cluster):
    """CreateTopics goes to the controller (librdkafka sends it to Metadata's controller id);
    each partition lives on one broker, every broker names the same leaders, and a producer
    and a consumer bootstrapped on the whole cluster find each partition's leader."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    cluster = headwater_cluster
    agreed_leader(cluster)
    for node in cluster.nodes.values():
        wait_listed(node.bootstrap, sorted(cluster.nodes), "before creating the topic")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic("spread", num_partitions=3, replication_factor=1)])["spread"].result(30)

    def leaders(bootstrap):
        topic = AdminClient({"bootstrap.servers": bootstrap}).list_topics("spread", timeout=10).topics["spread"]
        return {p.id: p.leader for p in topic.partitions.values()}

    deadline = time.monotonic() + ELECTION_TIMEOUT_S
    while True:
        seen = [leaders(n.bootstrap) for n in cluster.nodes.values()]
        if all(s == seen[0] and len(s) == 3 and -1 not in s.values() for s in seen):
            break
        assert time.monotonic() < deadline, f"the brokers do not agree on the leaders: {seen}"
        time.sleep(0.3)
    assert sorted(seen[0].values()) == sorted(cluster.nodes), f"one partition per broker: {seen[0]}"

    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True})
    failures = []
    for i in range(300):
        producer.produce("spread", value=f"v{i}".encode(), partition=i % 3,
                         on_delivery=lambda err, msg: err and failures.append(err))
    assert producer.flush(30) == 0 and not failures, failures
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "unused",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition("spread", p, 0) for p in range(3)])
    values = set()
    deadline = time.monotonic() + 30
    while len(values) < 300 and time.monotonic() < deadline:
        msg = consumer.poll(1)
        if msg is not None and msg.error() is None:
            values.add(msg.value())
    consumer.close()
    assert values == {f"v{i}".encode() for i in range(300)}

    # A consumer group finds its one coordinator (whichever node it asks), reads every
    # partition and commits; the commit is there for the next member.
    group = {"bootstrap.servers": cluster.bootstrap, "group.id": "spread-readers",
             "auto.offset.reset": "earliest", "enable.auto.commit": False}
    member = Consumer(group)
    member.subscribe(["spread"])
    read = 0
    deadline = time.monotonic() + 60
    while read < 300 and time.monotonic() < deadline:
        msg = member.poll(1)
        if msg is not None and msg.error() is None:
            read += 1
    assert read == 300, f"the group read {read} of 300"
    member.commit(asynchronous=False)
    member.close()
    later = Consumer(group)
    committed = later.committed([TopicPartition("spread", p) for p in range(3)], timeout=10)
    later.close()
    assert sorted(tp.offset for tp in committed) == [100, 100, 100], committed
