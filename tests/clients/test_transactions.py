"""Transactions with confluent-kafka (librdkafka speaks the first generation of the protocol:
AddPartitionsToTxn and EndTxn without an epoch bump) on a single node: what a read_committed
consumer sees of committed and aborted transactions, a second producer with the same
transactional.id fencing the first, and a transaction left open aborted at its timeout."""

import time
import uuid

import pytest

from clientlib import create_topics, unique_topic

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402

PARTITIONS = 2


def txn_producer(bootstrap, txn_id, **extra):
    return Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "acks": "all",
                     "linger.ms": 5, **extra})


def produce(producer, topic, values):
    for i, value in enumerate(values):
        producer.produce(topic, value=value.encode(), partition=i % PARTITIONS)
    producer.flush(30)


def read_all(bootstrap, topic, isolation, timeout_s=30.0):
    """Every value up to the end of each partition (for read_committed: its last stable
    offset), in offset order per partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"unused-{uuid.uuid4().hex[:8]}",
                         "isolation.level": isolation, "enable.auto.commit": False,
                         "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    values, at_end = [], set()
    deadline = time.monotonic() + timeout_s
    while len(at_end) < PARTITIONS and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is None:
            continue
        if message.error():
            if message.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition())
            continue
        values.append(message.value().decode())
    consumer.close()
    assert len(at_end) == PARTITIONS, f"did not reach the end of every partition: {at_end}"
    return values


@pytest.fixture
def topic(broker):
    name = unique_topic("txn", "none")
    create_topics(broker.bootstrap, [name], partitions=PARTITIONS)
    return name


def test_read_committed_sees_committed_transactions_and_no_aborted_record(broker, topic):
    producer = txn_producer(broker.bootstrap, f"tx-{uuid.uuid4().hex[:8]}")
    producer.init_transactions(30)
    committed = [f"c{i}" for i in range(20)]
    aborted = [f"a{i}" for i in range(7)]
    producer.begin_transaction()
    produce(producer, topic, committed[:10])
    producer.commit_transaction(30)
    producer.begin_transaction()
    produce(producer, topic, aborted)
    producer.abort_transaction(30)
    producer.begin_transaction()
    produce(producer, topic, committed[10:])
    producer.commit_transaction(30)

    seen = read_all(broker.bootstrap, topic, "read_committed")
    assert sorted(seen) == sorted(committed), f"read_committed saw {seen}"
    everything = read_all(broker.bootstrap, topic, "read_uncommitted")
    assert sorted(everything) == sorted(committed + aborted)


def test_a_second_producer_with_the_same_id_fences_the_first(broker, topic):
    check_a_second_producer_fences_the_first(broker.bootstrap, topic)


def check_a_second_producer_fences_the_first(bootstrap, topic):
    """A zombie: the first producer's commit is refused once a second one with its id
    started, and only the second's records are read."""
    txn_id = f"tx-{uuid.uuid4().hex[:8]}"
    zombie = txn_producer(bootstrap, txn_id)
    zombie.init_transactions(30)
    zombie.begin_transaction()
    produce(zombie, topic, ["zombie-0", "zombie-1"])

    successor = txn_producer(bootstrap, txn_id)
    successor.init_transactions(30)
    with pytest.raises(KafkaException) as failed:
        zombie.commit_transaction(30)
    error = failed.value.args[0]
    assert error.fatal() or error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                              KafkaError.INVALID_PRODUCER_EPOCH), error
    successor.begin_transaction()
    produce(successor, topic, ["fresh-0", "fresh-1"])
    successor.commit_transaction(30)

    assert sorted(read_all(bootstrap, topic, "read_committed")) == ["fresh-0", "fresh-1"]


def test_a_transaction_left_open_is_aborted_after_its_timeout(broker, topic):
    check_a_transaction_left_open_is_aborted_after_its_timeout(broker.bootstrap, topic)


def check_a_transaction_left_open_is_aborted_after_its_timeout(bootstrap, topic):
    """A transaction never ended holds read_committed back until its coordinator aborts it
    at its timeout; a later committed one is read then."""
    stale = txn_producer(bootstrap, f"tx-{uuid.uuid4().hex[:8]}", **{"transaction.timeout.ms": 10000})
    stale.init_transactions(30)
    stale.begin_transaction()
    produce(stale, topic, ["stale-0", "stale-1"])
    # Never committed: until the coordinator aborts it, it holds the last stable offset back,
    # and a later committed transaction stays invisible to read_committed consumers.
    other = txn_producer(bootstrap, f"tx-{uuid.uuid4().hex[:8]}")
    other.init_transactions(30)
    other.begin_transaction()
    produce(other, topic, ["later-0", "later-1"])
    other.commit_transaction(30)
    assert read_all(bootstrap, topic, "read_committed") == []

    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        seen = read_all(bootstrap, topic, "read_committed")
        if seen:
            break
        time.sleep(0.5)
    assert sorted(seen) == ["later-0", "later-1"]


def test_consume_transform_produce_commits_each_input_exactly_once(broker):
    """The exactly-once loop: records read from one topic are written, transformed, to
    another in the same transaction as the consumer's offsets (send_offsets_to_transaction).
    One transaction is aborted midway and its inputs are read again from the committed
    offsets; the output still holds each input once, and the group's offsets reach the end."""
    source, sink = unique_topic("txn", "in"), unique_topic("txn", "out")
    create_topics(broker.bootstrap, [source, sink], partitions=PARTITIONS)
    plain = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    inputs = [f"v{i}" for i in range(60)]
    produce(plain, source, inputs)

    group = f"ctp-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    partitions = [TopicPartition(source, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    producer = txn_producer(broker.bootstrap, f"ctp-{uuid.uuid4().hex[:8]}")
    producer.init_transactions(30)
    done, rounds, aborted_once = set(), 0, False
    deadline = time.monotonic() + 60
    while len(done) < len(inputs) and time.monotonic() < deadline:
        messages = [m for m in consumer.consume(10, 1.0) if m.error() is None]
        if not messages:
            continue
        rounds += 1
        producer.begin_transaction()
        for m in messages:
            producer.produce(sink, value=b"out-" + m.value(), partition=m.partition())
        producer.send_offsets_to_transaction(consumer.position(partitions), consumer.consumer_group_metadata(), 30)
        if rounds == 3 and not aborted_once:
            aborted_once = True
            producer.abort_transaction(30)
            # Back to what the group committed: the aborted round's inputs come again.
            for tp in consumer.committed(partitions, 30):
                consumer.seek(TopicPartition(source, tp.partition, tp.offset if tp.offset >= 0 else 0))
            continue
        producer.commit_transaction(30)
        done.update(m.value().decode() for m in messages)
    consumer.close()
    assert aborted_once and done == set(inputs), f"{len(done)} of {len(inputs)} processed"

    output = read_all(broker.bootstrap, sink, "read_committed")
    assert sorted(output) == sorted(f"out-{v}" for v in inputs), "each input exactly once"
    checker = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    committed = checker.committed(partitions, 30)
    checker.close()
    assert sum(tp.offset for tp in committed) == len(inputs), committed


def test_kafka_transactions_tool_lists_describes_and_aborts_a_hanging_transaction(broker, topic):
    """Apache Kafka's kafka-transactions.sh (TransactionsCommand from the kafka-tools jar):
    list and describe a transaction left open, describe the partition's producers, and abort
    the transaction at the partition (a marker written through WriteTxnMarkers), after which
    read_committed consumers read past it."""
    import shutil
    import subprocess

    from test_durability import TOOLS_JARS

    java = shutil.which("java")
    if java is None or not any(TOOLS_JARS.glob("kafka-tools-*.jar")):
        pytest.fail("java or kafka-tools not set up: run scripts/setup-test-deps.sh", pytrace=False)

    def tool(*args):
        cmd = [java, "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", f"{TOOLS_JARS}/*",
               "org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server", broker.bootstrap, *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{args}: exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        return [line.split() for line in out.stdout.splitlines()[1:] if line.strip()]

    txn_id = f"tx-{uuid.uuid4().hex[:8]}"
    hanging = txn_producer(broker.bootstrap, txn_id)
    hanging.init_transactions(30)
    hanging.begin_transaction()
    hanging.produce(topic, value=b"hanging", partition=0)
    hanging.flush(30)

    assert [txn_id, "Ongoing"] in [[row[0], row[3]] for row in tool("list")]
    described = tool("describe", "--transactional-id", txn_id)
    assert described and described[0][4] == "Ongoing" and described[0][-1] == f"{topic}-0", described
    producers = tool("describe-producers", "--topic", topic, "--partition", "0")
    assert len(producers) == 1 and producers[0][-1] == "0", producers  # its transaction starts at 0

    tool("abort", "--topic", topic, "--partition", "0", "--start-offset", "0")
    producers = tool("describe-producers", "--topic", topic, "--partition", "0")
    assert producers[0][-1] == "None", producers
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    produce(plain, topic, ["after-0", "after-1"])
    assert sorted(read_all(broker.bootstrap, topic, "read_committed")) == ["after-0", "after-1"]


def test_java_consume_transform_produce_copies_each_input_exactly_once(broker):
    """The same loop with Java's KafkaProducer and KafkaConsumer (TxnCopier.java): a
    subscribed consumer group, sendOffsetsToTransaction with the group's metadata (generation
    and member id checked by TxnOffsetCommit), one round aborted and read again."""
    import json
    import shutil
    import subprocess

    from clientlib import REPO_ROOT

    java = shutil.which("java")
    classes, jars = REPO_ROOT / ".deps/java-classes", REPO_ROOT / ".deps/java"
    if java is None or not (classes / "TxnCopier.class").exists():
        pytest.fail("Java client not set up: run scripts/setup-test-deps.sh", pytrace=False)
    source, sink = unique_topic("txn-java", "in"), unique_topic("txn-java", "out")
    create_topics(broker.bootstrap, [source, sink], partitions=PARTITIONS)
    inputs = [f"j{i}" for i in range(80)]
    produce(Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"}), source, inputs)

    group, txn_id = f"jctp-{uuid.uuid4().hex[:8]}", f"jtx-{uuid.uuid4().hex[:8]}"
    cmd = [java, "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", f"{classes}:{jars}/*",
           "TxnCopier", broker.bootstrap, source, sink, group, txn_id, str(len(inputs)), "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0 and lines, f"exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    summary = json.loads(lines[-1])
    assert summary["copied"] == len(inputs) and summary["aborted"] == 1, summary

    output = read_all(broker.bootstrap, sink, "read_committed")
    assert sorted(output) == sorted(f"out-{v}" for v in inputs), "each input exactly once"
    checker = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    committed = checker.committed([TopicPartition(source, p) for p in range(PARTITIONS)], 30)
    checker.close()
    assert sum(tp.offset for tp in committed) == len(inputs), committed
