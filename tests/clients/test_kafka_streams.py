"""Kafka Streams (the kafka-streams jar from Maven Central) with
processing.guarantee=exactly_once_v2 on three Headwater processes: a word count
(WordCountEos.java: a repartition topic, a changelog-backed store, two stream threads, each
with its transactional producer) whose output is exact after the broker coordinating the
application's group is SIGKILLed in the middle of the run.

Exactly once, as read by a read_committed consumer of the output: with the record cache off,
every increment goes out, so each word's counts read 1, 2, 3, ... up to its number of
occurrences in the input, each once. A line processed twice would show a count twice (or skip
past the end); a lost one would leave the last count short."""

import shutil
import subprocess
import time
import uuid
from collections import Counter

import pytest

from clientlib import REPO_ROOT
from kafkawire import find_coordinator_v1
from test_replication import create_replicated

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
LINES = 3000
PARTITIONS = 3


def lines(start, count):
    return [" ".join(WORDS[(7 * i + 3 * j + i // 11) % len(WORDS)] for j in range(4))
            for i in range(start, start + count)]


def send(bootstrap, topic, values):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i, value in enumerate(values):
        producer.produce(topic, key=str(i).encode(), value=value.encode())
    assert producer.flush(60) == 0, "every input line acknowledged"


class CountReader:
    """Reads the word count's output as a read_committed consumer, keeping every count of
    each word in order."""

    def __init__(self, bootstrap, topic):
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"wc-check-{uuid.uuid4().hex[:6]}",
                                  "isolation.level": "read_committed", "enable.auto.commit": False})
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        self.counts = {}

    def read_until(self, done, timeout_s):
        deadline = time.monotonic() + timeout_s
        while not done(self.last()) and time.monotonic() < deadline:
            message = self.consumer.poll(0.5)
            if message is None or message.error():
                assert message is None or message.error().code() == KafkaError._PARTITION_EOF, message.error()
                continue
            count = int.from_bytes(message.value(), "big", signed=True)
            self.counts.setdefault(message.key().decode(), []).append(count)
        return self.last()

    def last(self):
        return {word: counts[-1] for word, counts in self.counts.items()}


def test_word_count_with_exactly_once_v2_is_exact_after_a_broker_is_killed(headwater_cluster):
    cluster = headwater_cluster
    java = shutil.which("java")
    classes, jars = REPO_ROOT / ".deps/java-classes", REPO_ROOT / ".deps/java"
    if java is None or not (classes / "WordCountEos.class").exists():
        pytest.fail("Java client not set up: run scripts/setup-test-deps.sh", pytrace=False)
    suffix = uuid.uuid4().hex[:6]
    source, sink, app = f"wc-in-{suffix}", f"wc-out-{suffix}", f"wc-{suffix}"
    create_replicated(cluster, source, partitions=PARTITIONS)
    create_replicated(cluster, sink, partitions=PARTITIONS)
    first, second = lines(0, LINES // 2), lines(LINES // 2, LINES - LINES // 2)
    expected = Counter(word for line in first + second for word in line.split())
    send(cluster.bootstrap, source, first)

    cmd = [java, "-Xmx384m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", f"-Djava.io.tmpdir={cluster.workdir}",
           "-cp", f"{classes}:{jars}/*", "WordCountEos", cluster.bootstrap, app, source, sink, "3", "600"]
    log_path = cluster.workdir / "wordcount.log"
    with open(log_path, "w") as log:
        streams = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        reader = CountReader(cluster.bootstrap, sink)
        # Once some counts are out, the broker coordinating the application's group dies.
        reader.read_until(lambda last: sum(last.values()) >= sum(expected.values()) // 10, 120)
        assert reader.last(), f"no output from the word count\n{log_path.read_text()[-4000:]}"
        everyone = sorted(cluster.nodes)
        error, coordinator = find_coordinator_v1(cluster.nodes[everyone[0]].bootstrap, app, 0)
        assert error == 0, error
        cluster.nodes[coordinator].kill()
        live = ",".join(cluster.nodes[n].bootstrap for n in everyone if n != coordinator)
        send(live, source, second)
        last = reader.read_until(lambda last: last == dict(expected), 240)
        assert streams.poll() is None, f"the word count stopped\n{log_path.read_text()[-4000:]}"
    finally:
        streams.terminate()
        try:
            streams.wait(60)
        except subprocess.TimeoutExpired:
            streams.kill()
    assert last == dict(expected), (
        f"final counts {last} != {dict(expected)}\n{log_path.read_text()[-4000:]}")
    for word, counts in reader.counts.items():
        wrong = [(i + 1, c) for i, c in enumerate(counts) if c != i + 1]
        assert not wrong, f"{word}: count updates not 1, 2, 3, ...: first (expected, read): {wrong[:5]}"
