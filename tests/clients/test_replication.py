"""Replicated partitions on three Headwater processes (README, "A cluster of several nodes"):
a topic with three replicas keeps every acknowledged record when its leader is SIGKILLed in
the middle of a run, a new leader takes over, and the killed broker catches up and rejoins the
in-sync replicas when it returns.

Each check reads the data back from the cluster itself: every record a producer was told is
written (acks=all) must be there exactly once, at the offset the producer was told."""

import time

from test_cluster import ELECTION_TIMEOUT_S, agreed_leader, wait_listed

RECORDS = 3000


def partition_roles(bootstrap, topic):
    """{partition: (leader, sorted replicas, sorted in-sync replicas)} as the broker at
    `bootstrap` answers Metadata (librdkafka's view)."""
    from confluent_kafka.admin import AdminClient
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    partitions = metadata.topics[topic].partitions
    return {p.id: (p.leader, sorted(p.replicas), sorted(p.isrs)) for p in partitions.values()}


def wait_roles(cluster, topic, nodes, check, what):
    """Waits until every node in `nodes` gives the same roles and `check(roles)` holds."""
    deadline = time.monotonic() + ELECTION_TIMEOUT_S
    while True:
        try:
            seen = [partition_roles(cluster.nodes[n].bootstrap, topic) for n in nodes]
        except Exception as e:  # a broker still starting: ask again
            seen = [repr(e)]
        agreed = all(s == seen[0] for s in seen) and isinstance(seen[0], dict)
        try:
            if agreed and check(seen[0]):
                return seen[0]
        except KeyError:  # a broker that does not list the partition yet
            pass
        assert time.monotonic() < deadline, f"{what}: {seen}"
        time.sleep(0.3)


def create_replicated(cluster, topic, partitions=1):
    from confluent_kafka.admin import AdminClient, NewTopic
    agreed_leader(cluster)
    everyone = sorted(cluster.nodes)
    for node in cluster.nodes.values():
        wait_listed(node.bootstrap, everyone, "before creating the topic")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=3)])[topic].result(30)
    return wait_roles(
        cluster, topic, everyone,
        lambda roles: len(roles) == partitions and all(
            leader in everyone and replicas == everyone and isr == everyone
            for leader, replicas, isr in roles.values()),
        "three replicas in sync")


def read_all(bootstrap, topic, partition, last):
    """Every record of `topic`-`partition` up to offset `last` at least, as {offset: value}."""
    from confluent_kafka import Consumer, TopicPartition
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, partition, 0)])
    read = {}
    deadline = time.monotonic() + 60
    while (not read or max(read) < last) and time.monotonic() < deadline:
        msg = consumer.poll(1)
        if msg is not None and msg.error() is None:
            assert msg.offset() not in read, f"offset {msg.offset()} read twice"
            read[msg.offset()] = msg.value()
    consumer.close()
    return read


def delivery_recorder():
    """({value: acknowledged offset}, [errors], a librdkafka delivery callback filling them)."""
    acked, failed = {}, []

    def delivered(err, msg):
        if err is not None:
            failed.append(err)
        else:
            acked[msg.value()] = msg.offset()

    return acked, failed, delivered


def survives_leader_kill(cluster, topic, produce):
    """Creates `topic` with three replicas, runs `produce(kill)` (which sends RECORDS values
    "r<i>" with acks=all to partition 0, calls `kill()` once a third are acknowledged, and
    returns ({value: acknowledged offset}, [failures])), then checks the cluster kept every
    acknowledged record once at its offset, moved leadership, and takes the killed broker back
    into the ISR."""
    roles = create_replicated(cluster, topic)
    leader = roles[0][0]
    killed = []

    def kill():
        if not killed:
            cluster.nodes[leader].kill()
            killed.append(leader)

    acked, failed = produce(kill)
    assert killed, "the leader was killed mid-run"
    # Idempotence with acks=all: the producer retries through the failover, nothing fails.
    assert not failed, failed[:5]
    assert len(acked) == RECORDS, f"{len(acked)} of {RECORDS} acknowledged"

    survivors = [n for n in cluster.nodes if n != leader]
    roles = wait_roles(cluster, topic, survivors, lambda r: r[0][0] in survivors and leader not in r[0][2],
                       "a new leader, and the killed broker out of the ISR")
    new_leader = roles[0][0]

    # Every acknowledged record is there once, at the offset it was acknowledged at.
    read = read_all(cluster.bootstrap, topic, 0, max(acked.values()))
    by_value = {}
    for offset, value in read.items():
        assert value not in by_value, f"{value} stored twice, at {by_value[value]} and {offset}"
        by_value[value] = offset
    lost = [v for v in acked if v not in by_value]
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {lost[:5]}"
    moved = [(v, o, by_value[v]) for v, o in acked.items() if by_value[v] != o]
    assert not moved, f"records not at their acknowledged offsets: {moved[:5]}"

    # The killed broker returns as a follower, catches up and is in sync again.
    cluster.nodes[leader].start()
    roles = wait_roles(cluster, topic, sorted(cluster.nodes),
                       lambda r: r[0][2] == sorted(cluster.nodes), "the restarted broker rejoins the ISR")
    assert roles[0][0] == new_leader, "leadership stays where it moved"


def test_acks_all_records_survive_a_leader_sigkill_with_librdkafka(headwater_cluster):
    from confluent_kafka import Producer

    def produce(kill):
        producer = Producer({"bootstrap.servers": headwater_cluster.bootstrap, "acks": "all",
                             "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 120000})
        acked, failed, delivered = delivery_recorder()

        for i in range(RECORDS):
            producer.produce("replicated", value=f"r{i}".encode(), partition=0, on_delivery=delivered)
            producer.poll(0)
            if i % 100 == 0:
                time.sleep(0.02)
            if i == RECORDS // 3:
                # Wait for a third acknowledged, then kill the leader with the rest to send
                # (on a busy machine the loop can outrun the first acknowledgements).
                deadline = time.monotonic() + 60
                while len(acked) < RECORDS // 3 and time.monotonic() < deadline:
                    producer.poll(0.05)
                kill()
        assert producer.flush(120) == 0, "every record answered"
        return acked, failed

    survives_leader_kill(headwater_cluster, "replicated", produce)


def test_acks_all_records_survive_a_leader_sigkill_with_kafka_python(headwater_cluster):
    from kafka import KafkaProducer

    def produce(kill):
        producer = KafkaProducer(bootstrap_servers=headwater_cluster.bootstrap, acks="all",
                                 enable_idempotence=True, linger_ms=5, request_timeout_ms=10000,
                                 delivery_timeout_ms=120000)
        acked, failed = {}, []
        futures = []
        for i in range(RECORDS):
            value = f"r{i}".encode()
            future = producer.send("replicated", value=value, partition=0)
            future.add_callback(lambda md, v=value: acked.__setitem__(v, md.offset))
            future.add_errback(lambda e: failed.append(e))
            futures.append(future)
            if i % 100 == 0:
                time.sleep(0.02)
            if i == RECORDS // 3:
                # kafka-python answers its callbacks late; wait for a third acknowledged, then
                # kill the leader with the rest still to send.
                producer.flush(60)
                kill()
        producer.flush(120)
        producer.close()
        return acked, failed

    survives_leader_kill(headwater_cluster, "replicated", produce)


def test_acks_all_records_survive_a_leader_sigkill_with_java(headwater_cluster):
    import shutil
    import subprocess
    from test_java import CLASSES, JARS
    java = shutil.which("java")
    assert java and (CLASSES / "AckedProducer.class").exists(), "run scripts/setup-test-deps.sh"

    def produce(kill):
        cmd = [java, "-Xmx256m", "-cp", f"{CLASSES}:{JARS}/*", "AckedProducer",
               headwater_cluster.bootstrap, "replicated", str(RECORDS), "r"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        acked, failed = {}, []
        try:
            for line in proc.stdout:
                parts = line.split()
                if parts[:1] == ["ack"]:
                    acked[parts[1].encode()] = int(parts[2])
                    if len(acked) >= RECORDS // 3:
                        kill()
                elif parts[:1] == ["fail"]:
                    failed.append(line.strip())
            assert proc.wait(timeout=150) == 0, "the Java producer exited cleanly"
        finally:
            if proc.poll() is None:
                proc.kill()
        return acked, failed

    survives_leader_kill(headwater_cluster, "replicated", produce)


def produce_all(bootstrap, topic, values, timeout_ms):
    """Sends `values` to partition 0 with acks=all; returns ({value: offset} acknowledged,
    [errors])."""
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "message.timeout.ms": timeout_ms})
    acked, failed, delivered = delivery_recorder()

    for value in values:
        producer.produce(topic, value=value, partition=0, on_delivery=delivered)
    producer.flush(timeout_ms / 1000 + 30)
    return acked, failed


def describe_topic(bootstrap, topic):
    """Kafka's own `kafka-topics.sh --describe` (TopicCommand, Java AdminClient.describeTopics):
    {partition: (leader, replicas, isr)}."""
    import re
    import shutil
    import subprocess
    from test_durability import TOOLS_JARS
    java = shutil.which("java")
    assert java and any(TOOLS_JARS.glob("kafka-tools-*.jar")), "run scripts/setup-test-deps.sh"
    cmd = [java, "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", f"{TOOLS_JARS}/*",
           "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bootstrap, "--describe", "--topic", topic]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"exit {out.returncode}: {out.stdout[-2000:]} {out.stderr[-3000:]}"
    found = {}
    for line in out.stdout.splitlines():
        m = re.search(r"Partition: (\d+)\s+Leader: (-?\d+)\s+Replicas: ([\d,]+)\s+Isr: ([\d,]*)", line)
        if m:
            ids = lambda text: sorted(int(x) for x in text.split(",") if x)
            found[int(m.group(1))] = (int(m.group(2)), ids(m.group(3)), ids(m.group(4)))
    assert found, out.stdout
    return found


def test_with_two_of_three_down_acks_all_fails_loses_nothing_and_recovers(headwater_cluster):
    cluster = headwater_cluster
    topic = "majority"
    roles = create_replicated(cluster, topic)
    leader = roles[0][0]
    everyone = sorted(cluster.nodes)
    # Kafka's own tool (Java AdminClient) sees the same leader and all three in sync.
    assert describe_topic(cluster.bootstrap, topic) == {0: (leader, everyone, everyone)}

    first, failed = produce_all(cluster.bootstrap, topic, [f"a{i}".encode() for i in range(200)], 30000)
    assert not failed and len(first) == 200

    # Two of three down: the leader alone cannot commit, so acks=all fails with an error and
    # nothing it sends is acknowledged.
    followers = [n for n in everyone if n != leader]
    for n in followers:
        cluster.nodes[n].kill()
    during, failed = produce_all(cluster.nodes[leader].bootstrap, topic, [f"b{i}".encode() for i in range(20)], 6000)
    assert not during, f"acknowledged without a majority: {sorted(during.items())[:5]}"
    assert failed, "the producer was told each record failed"

    # They return: the partition takes writes again, and nothing acknowledged before is lost.
    for n in followers:
        cluster.nodes[n].start()
    wait_roles(cluster, topic, everyone, lambda r: r[0][0] in everyone and r[0][2] == everyone,
               "all three back in sync")
    after, failed = produce_all(cluster.bootstrap, topic, [f"c{i}".encode() for i in range(200)], 60000)
    assert not failed and len(after) == 200, failed[:5]
    read = read_all(cluster.bootstrap, topic, 0, max(after.values()))
    # Records sent while two were down were never acknowledged; each may or may not have
    # survived (the leader kept them, and they commit once the others return), but none twice.
    values = list(read.values())
    assert len(values) == len(set(values)), "a record stored twice"
    by_value = {v: o for o, v in read.items()}
    for value, offset in {**first, **after}.items():
        assert by_value.get(value) == offset, f"{value} acknowledged at {offset}, read at {by_value.get(value)}"
    leader, _, isr = describe_topic(cluster.bootstrap, topic)[0]
    assert leader in everyone and isr == everyone


def test_a_group_keeps_consuming_and_loses_no_commit_when_its_coordinator_is_killed(headwater_cluster):
    """The group's coordinator is the leader of its __consumer_offsets partition (three
    replicas). SIGKILL of that broker moves the partition's leadership; the new leader loads
    the group's offsets and membership, the members find it and go on in their generation
    (no rebalance), and no acknowledged commit is lost."""
    import uuid
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient
    from test_groups import events, holdings, processed, start_worker, stop_all, wait_for

    cluster = headwater_cluster
    partitions, per_partition = 3, 400
    create_replicated(cluster, "events", partitions)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True})
    values = [f"e{i}" for i in range(partitions * per_partition)]
    for i, value in enumerate(values):
        producer.produce("events", value=value.encode(), partition=i % partitions)
    assert producer.flush(60) == 0

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    group = f"g-{uuid.uuid4().hex[:8]}"

    # While a failover runs an admin call may fail or outlast its 10 s wait (librdkafka still
    # asking the dead broker): that is "not known yet", and the waits below ask again.
    def coordinator():
        try:
            return admin.describe_consumer_groups([group])[group].result(10).coordinator.id
        except (KafkaException, TimeoutError):
            return None

    def committed():
        request = ConsumerGroupTopicPartitions(group, [TopicPartition("events", p) for p in range(partitions)])
        try:
            result = admin.list_consumer_group_offsets([request])[group].result(10)
        except (KafkaException, TimeoutError):
            return None
        return {tp.partition: tp.offset for tp in result.topic_partitions}

    outs = [cluster.nodes[1].workdir.parent / f"member{i}.txt" for i in range(2)]
    # A commit sent to the coordinator as it is killed fails (the connection drops); the
    # workers note such failures and go on. librdkafka also keeps a session clock of its own:
    # a member with no successful heartbeat for session.timeout.ms revokes and rejoins by
    # itself, so the session must outlast the failover on a loaded machine (6 s did not, once,
    # in CI). A coordinator that forgot the members still answers UNKNOWN_MEMBER_ID at once.
    tolerant = {"HEADWATER_WORKER_COMMIT_FAILURES": "note", "HEADWATER_WORKER_SESSION_TIMEOUT_MS": "30000"}
    workers = [start_worker("confluent", cluster.bootstrap, group, "events", out, env=tolerant) for out in outs]
    try:
        wait_for(lambda: len(processed(outs)) > 200, "the group to process records")
        wait_for(lambda: sorted(holdings(outs[0]) + holdings(outs[1])) == list(range(partitions))
                 and all(holdings(out) for out in outs), "both members to hold partitions")
        assignments_before = [events(out) for out in outs]
        before = committed()
        victim = coordinator()
        assert before is not None and victim in cluster.nodes, (before, victim)
        killed_at = time.time()
        cluster.nodes[victim].kill()

        wait_for(lambda: coordinator() not in (None, victim), "a new coordinator")
        after = committed()
        assert after is not None
        lost = {p: (o, after.get(p)) for p, o in before.items() if o >= 0 and after.get(p, -1) < o}
        assert not lost, f"commits lost in the failover (before, after): {lost}"
        wait_for(lambda: set(values) <= {v for _, _, v in processed(outs)}, "every record processed", 120)
        wait_for(lambda: committed() == {p: per_partition for p in range(partitions)},
                 "commits to reach the end offsets", 120)
        # The new coordinator knew the members in their generation: nobody rejoined.
        errors = "\n".join(out.with_name(out.name + ".err").read_text()[-3000:] for out in outs)
        assert [events(out) for out in outs] == assignments_before, f"the failover caused a rebalance:\n{errors}"
    finally:
        stop_all(workers)
    failures = [line for out in outs for line in out.read_text().splitlines() if line.startswith("# commit-failed")]
    early = [line for line in failures if float(line.rsplit(" ", 1)[1]) < killed_at]
    assert not early, f"commits failed before the coordinator was killed: {early}"


def test_a_consumer_with_client_rack_reads_from_the_replica_in_its_rack(tmp_path, broker):
    """KIP-392: librdkafka with `client.rack` set to a follower's rack is told by the leader to
    fetch from that follower, and reads every record there (its statistics name the broker
    each partition is fetched from)."""
    import json
    import pytest
    from confluent_kafka import Consumer, Producer, TopicPartition
    from conftest import HeadwaterCluster, started

    if broker.kind != "headwater":
        pytest.skip("starts Headwater nodes of its own")
    cluster = HeadwaterCluster(broker.binary, tmp_path)
    for node_id, node in cluster.nodes.items():
        node.extra_args += ["--rack", f"r{node_id}"]
    gen = started(cluster)
    next(gen)
    try:
        leader = create_replicated(cluster, "racked")[0][0]
        follower = min(n for n in cluster.nodes if n != leader)
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
        for i in range(100):
            producer.produce("racked", value=f"v{i}".encode(), partition=0)
        assert producer.flush(30) == 0

        fetched_from = []

        def stats(text):
            partition = json.loads(text).get("topics", {}).get("racked", {}).get("partitions", {}).get("0")
            if partition:
                fetched_from.append((partition["leader"], partition["broker"]))

        consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "unused",
                             "enable.auto.commit": False, "client.rack": f"r{follower}",
                             "statistics.interval.ms": 200, "stats_cb": stats})
        consumer.assign([TopicPartition("racked", 0, 0)])
        values = []
        deadline = time.monotonic() + 30
        while (len(values) < 100 or (leader, follower) not in fetched_from[-3:]) and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                values.append(msg.value().decode())
        consumer.close()
        assert values == [f"v{i}" for i in range(100)]
        assert fetched_from and fetched_from[-1] == (leader, follower), \
            f"leader {leader}, fetched from (leader, broker): {fetched_from[-5:]}"
    finally:
        next(gen, None)


def test_create_partitions_grows_a_replicated_topic(headwater_cluster):
    """librdkafka's CreatePartitions (sent to the controller) adds partitions with three
    replicas in sync each, and records produced to a new partition are read back."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewPartitions
    cluster = headwater_cluster
    create_replicated(cluster, "grown")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_partitions([NewPartitions("grown", 3)])["grown"].result(30)
    everyone = sorted(cluster.nodes)
    wait_roles(cluster, "grown", everyone,
               lambda roles: len(roles) == 3 and all(
                   leader in everyone and replicas == everyone and isr == everyone
                   for leader, replicas, isr in roles.values()),
               "three partitions with three replicas in sync")
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(10):
        producer.produce("grown", value=f"g{i}".encode(), partition=2)
    assert producer.flush(30) == 0
    read = read_all(cluster.bootstrap, "grown", 2, 9)
    assert [read[o] for o in sorted(read)] == [f"g{i}".encode() for i in range(10)]


def test_topic_configs_change_across_the_cluster(headwater_cluster):
    """librdkafka's IncrementalAlterConfigs on a replicated topic is decided by the controller,
    and every broker then describes the new value."""
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                       ResourceType)
    cluster = headwater_cluster
    create_replicated(cluster, "configured")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, "configured", incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(30)
    deadline = time.monotonic() + 10
    for node in cluster.nodes.values():
        while True:
            asked = AdminClient({"bootstrap.servers": node.bootstrap})
            described = asked.describe_configs([ConfigResource(ResourceType.TOPIC, "configured")])
            value = list(described.values())[0].result(10)["retention.ms"].value
            if value == "3600000":
                break
            assert time.monotonic() < deadline, f"{node.bootstrap} still describes retention.ms={value}"
            time.sleep(0.2)


def test_a_broker_that_is_not_the_controller_forwards_admin_requests(headwater_cluster):
    """KIP-590: CreatePartitions sent (by hand, so no client routes it) to each broker that is
    not the controller is forwarded to the controller and answered with its result."""
    import struct
    import kafkawire
    from confluent_kafka.admin import AdminClient
    cluster = headwater_cluster
    create_replicated(cluster, "forwarded")
    controller = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(timeout=10).controller_id
    others = [n for n in sorted(cluster.nodes) if n != controller]
    for count, node in enumerate(others, start=2):
        name = b"forwarded"
        body = (struct.pack(">i", 1) + struct.pack(">h", len(name)) + name + struct.pack(">ii", count, -1)
                + struct.pack(">i?", 30000, False))
        with kafkawire.connect(cluster.nodes[node].bootstrap, timeout=30) as sock:
            sock.sendall(kafkawire.frame(37, 0, 5, body))
            answer = kafkawire.read_response(sock)
        correlation_id, _throttle, results = struct.unpack(">iii", answer[:12])
        (name_len,) = struct.unpack(">h", answer[12:14])
        (error_code,) = struct.unpack(">h", answer[14 + name_len:16 + name_len])
        assert (correlation_id, results, error_code) == (5, 1, 0), f"node {node} (controller {controller})"
    everyone = sorted(cluster.nodes)
    wait_roles(cluster, "forwarded", everyone,
               lambda roles: len(roles) == 1 + len(others) and all(isr == everyone for _, _, isr in roles.values()),
               "the partitions the forwarded requests added, in sync")
