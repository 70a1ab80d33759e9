"""Transactions on three Headwater processes (README, "Transactions"): each transactional id's
coordinator is the leader of its `__transaction_state` partition, markers and KIP-890's
verifications travel between brokers, and a consume-transform-produce loop with Java's
KafkaProducer and KafkaConsumer copies each input exactly once while the broker coordinating
its transaction, or one leading its output, is SIGKILLed in the middle of the run.
kafka-transactions.sh lists and describes the cluster's transactions; a zombie producer is fenced
and a transaction left open is aborted at its timeout, as on one node.

Each check reads the output back with a read_committed consumer: every input exactly once, no
aborted record, and the group's committed offsets at the end of the input."""

import json
import shutil
import subprocess
import time
import uuid

import pytest

from clientlib import REPO_ROOT
from kafkawire import find_coordinator_v1
from test_replication import create_replicated, partition_roles
from test_transactions import (
    PARTITIONS,
    check_a_second_producer_fences_the_first,
    check_a_transaction_left_open_is_aborted_after_its_timeout,
    produce,
    read_all,
    txn_producer,
)

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

INPUTS = 3000


def txn_coordinator(cluster, txn_id, nodes):
    """The node every live broker names as `txn_id`'s coordinator."""
    deadline = time.monotonic() + 30
    while True:
        named = {find_coordinator_v1(cluster.nodes[n].bootstrap, txn_id, 1) for n in nodes}
        if len(named) == 1 and next(iter(named))[0] == 0:
            return next(iter(named))[1]
        assert time.monotonic() < deadline, f"no agreed coordinator for {txn_id}: {named}"
        time.sleep(0.3)


def transactions_tool(bootstrap, *args):
    """Apache Kafka's kafka-transactions.sh (TransactionsCommand): its table's rows, split."""
    from test_durability import TOOLS_JARS

    java = shutil.which("java")
    if java is None or not any(TOOLS_JARS.glob("kafka-tools-*.jar")):
        pytest.fail("java or kafka-tools not set up: run scripts/setup-test-deps.sh", pytrace=False)
    cmd = [java, "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", f"{TOOLS_JARS}/*",
           "org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server", bootstrap, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{args}: exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return [line.split() for line in out.stdout.splitlines()[1:] if line.strip()]


def test_confluent_commits_and_aborts_on_a_cluster(headwater_cluster):
    cluster = headwater_cluster
    topic = f"txc-{uuid.uuid4().hex[:8]}"
    create_replicated(cluster, topic, partitions=PARTITIONS)
    txn_id = f"ctx-{uuid.uuid4().hex[:8]}"
    producer = txn_producer(cluster.bootstrap, txn_id)
    producer.init_transactions(60)
    producer.begin_transaction()
    produce(producer, topic, ["c0", "c1", "c2", "c3"])
    producer.commit_transaction(60)
    producer.begin_transaction()
    produce(producer, topic, ["a0", "a1"])
    producer.abort_transaction(60)
    producer.begin_transaction()
    produce(producer, topic, ["c4", "c5"])
    producer.commit_transaction(60)
    assert sorted(read_all(cluster.bootstrap, topic, "read_committed")) == [f"c{i}" for i in range(6)]
    assert len(read_all(cluster.bootstrap, topic, "read_uncommitted")) == 8

    # kafka-transactions.sh: `list` asks every broker for the ids it coordinates, `describe`
    # finds the id's coordinator first.
    listed = transactions_tool(cluster.bootstrap, "list")
    coordinator = txn_coordinator(cluster, txn_id, sorted(cluster.nodes))
    assert [txn_id, str(coordinator), "CompleteCommit"] in [row[:2] + row[3:] for row in listed], listed
    described = transactions_tool(cluster.bootstrap, "describe", "--transactional-id", txn_id)
    assert described[0][:2] == [str(coordinator), txn_id] and described[0][4] == "CompleteCommit", described


def test_a_zombie_is_fenced_and_an_open_transaction_aborted_at_its_timeout_on_a_cluster(headwater_cluster):
    cluster = headwater_cluster
    for check in (check_a_second_producer_fences_the_first, check_a_transaction_left_open_is_aborted_after_its_timeout):
        topic = f"txz-{uuid.uuid4().hex[:8]}"
        create_replicated(cluster, topic, partitions=PARTITIONS)
        check(cluster.bootstrap, topic)


@pytest.mark.parametrize("victim", ["coordinator", "output-leader"])
def test_java_copier_is_exact_when_a_broker_is_killed_mid_run(headwater_cluster, victim):
    cluster = headwater_cluster
    java = shutil.which("java")
    classes, jars = REPO_ROOT / ".deps/java-classes", REPO_ROOT / ".deps/java"
    if java is None or not (classes / "TxnCopier.class").exists():
        pytest.fail("Java client not set up: run scripts/setup-test-deps.sh", pytrace=False)
    source, sink = f"txk-in-{uuid.uuid4().hex[:6]}", f"txk-out-{uuid.uuid4().hex[:6]}"
    create_replicated(cluster, source, partitions=PARTITIONS)
    roles = create_replicated(cluster, sink, partitions=PARTITIONS)
    inputs = [f"k{i}" for i in range(INPUTS)]
    produce(Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"}), source, inputs)

    group, txn_id = f"kctp-{uuid.uuid4().hex[:8]}", f"ktx-{uuid.uuid4().hex[:8]}"
    cmd = [java, "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", f"{classes}:{jars}/*",
           "TxnCopier", cluster.bootstrap, source, sink, group, txn_id, str(len(inputs)), "3", "200"]
    copier = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Once the copier has committed some output, its coordinator (or the leader of an
        # output partition) dies and stays down.
        everyone = sorted(cluster.nodes)
        deadline = time.monotonic() + 60
        while (done := len(read_all(cluster.bootstrap, sink, "read_committed"))) < INPUTS // 10:
            assert copier.poll() is None and time.monotonic() < deadline, "the copier made no progress"
            time.sleep(0.5)
        coordinator = txn_coordinator(cluster, txn_id, everyone)
        killed = coordinator if victim == "coordinator" else next(
            (leader for leader, _, _ in roles.values() if leader != coordinator), roles[0][0])
        cluster.nodes[killed].kill()
        # Mid-run: the kill must land while the copier still has input to copy.
        assert copier.poll() is None and done < INPUTS, f"the copier was done ({done}) before the kill"
        print(f"killed node {killed} ({victim}) with {done} of {INPUTS} inputs copied")
        out, err = copier.communicate(timeout=240)
    finally:
        if copier.poll() is None:
            copier.kill()
    lines = out.strip().splitlines()
    assert copier.returncode == 0 and lines, f"exit {copier.returncode}\n{out[-2000:]}\n{err[-4000:]}"
    summary = json.loads(lines[-1])
    assert summary["copied"] == len(inputs), f"{summary}\n{err[-4000:]}"

    live = ",".join(cluster.nodes[n].bootstrap for n in everyone if n != killed)
    output = read_all(live, sink, "read_committed", timeout_s=60)
    assert sorted(output) == sorted(f"out-{v}" for v in inputs), "each input exactly once, nothing aborted"
    checker = Consumer({"bootstrap.servers": live, "group.id": group})
    committed = checker.committed([TopicPartition(source, p) for p in range(PARTITIONS)], 30)
    checker.close()
    assert sum(tp.offset for tp in committed) == len(inputs), committed
    assert partition_roles(live, sink), "the output is still served"
