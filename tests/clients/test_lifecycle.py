"""Start-up and shutdown of the headwater binary: config errors name the key, SIGTERM
finishes cleanly and loses nothing, the data directory is locked."""

import os
import subprocess

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import kafkawire as kw
from conftest import HeadwaterBroker


@pytest.fixture
def headwater(broker):
    if broker.kind != "headwater":
        pytest.skip("runs the headwater binary itself")
    return broker


def run_binary(binary, *args, env=None, timeout=10):
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args,env,key", [
    (["--node-id", "minus-one"], {}, "node_id"),
    (["--listen", "nowhere"], {}, "listen"),
    (["--log-level", "loud"], {}, "log_level"),
    (["--no-such-key", "1"], {}, "no_such_key"),
    ([], {"HEADWATER_NUM_PARTITIONS": "0"}, "num_partitions"),
    ([], {"HEADWATER_LOG_SEGMENT_BYTES": "3"}, "log_segment_bytes"),
    (["--cluster-nodes", "1@127.0.0.1:9092,1@127.0.0.1:9093"], {}, "cluster_nodes"),
    (["--cluster-nodes", "1@127.0.0.1:9092,2@127.0.0.1:9093", "--node-id", "3"], {}, "node_id"),
    # Every node of a cluster must be given the same id.
    ([], {"HEADWATER_CLUSTER_NODES": "1@127.0.0.1:9092,2@127.0.0.1:9093"}, "cluster_id"),
    (["--cluster-id", "not/a/cluster/id"], {}, "cluster_id"),
])
def test_bad_config_stops_startup_naming_the_key(headwater, tmp_path, args, env, key):
    result = run_binary(headwater.binary, "serve", "--data-dir", str(tmp_path / "d"), *args, env=env)
    assert result.returncode != 0
    assert key in result.stderr, result.stderr


def test_bad_config_file_names_the_key(headwater, tmp_path):
    config = tmp_path / "headwater.toml"
    config.write_text('listen = "127.0.0.1:0"\nretention = 5\n')
    result = run_binary(headwater.binary, "serve", "--config", str(config), "--data-dir", str(tmp_path / "d"))
    assert result.returncode != 0 and "retention" in result.stderr, result.stderr


def test_data_dir_of_another_cluster_stops_startup(headwater, tmp_path):
    """A data directory keeps the id of the cluster it was created in; started with another
    `cluster_id`, the node refuses to start instead of joining a cluster it does not belong to."""
    first = HeadwaterBroker(headwater.binary, tmp_path / "first")
    first.extra_args = ["--cluster-id", "first"]
    first.start()
    assert first.stop() == 0
    result = run_binary(headwater.binary, "serve", "--data-dir", str(first.data_dir), "--listen", "127.0.0.1:0",
                        "--cluster-id", "second")
    assert result.returncode != 0
    assert "`cluster_id`" in result.stderr and "first" in result.stderr and "second" in result.stderr, result.stderr


def test_data_dir_is_locked(headwater):
    result = run_binary(headwater.binary, "serve", "--data-dir", str(headwater.data_dir),
                        "--listen", "127.0.0.1:0")
    assert result.returncode != 0 and "in use" in result.stderr, result.stderr


def test_sigterm_is_graceful_and_keeps_acks_one_writes(headwater):
    topic = "lifecycle"
    producer = Producer({"bootstrap.servers": headwater.bootstrap, "acks": "1", "linger.ms": 5})
    delivered = []
    for i in range(2000):
        producer.produce(topic, value=f"v{i}".encode(), on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
    assert producer.flush(30) == 0
    assert all(err is None for err, _ in delivered) and len(delivered) == 2000
    assert headwater.stop() == 0, "SIGTERM should exit 0"
    headwater.start()
    consumer = Consumer({"bootstrap.servers": headwater.bootstrap, "group.id": "unused",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    values = []
    while len(values) < 2000:
        msg = consumer.poll(10)
        assert msg is not None, f"only {len(values)} records after restart"
        assert msg.error() is None, msg.error()
        values.append(msg.value())
    consumer.close()
    assert values == [f"v{i}".encode() for i in range(2000)]
    assert "final sync done" in open(headwater.log_path).read()


def test_topics_and_configs_survive_restart(headwater):
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType
    admin = AdminClient({"bootstrap.servers": headwater.bootstrap})
    admin.create_topics([NewTopic("persisted", num_partitions=3, replication_factor=1,
                                  config={"retention.ms": "4242"})])["persisted"].result(10)
    before = admin.list_topics(timeout=10).topics["persisted"]
    headwater.kill()
    headwater.start()
    admin = AdminClient({"bootstrap.servers": headwater.bootstrap})
    after = admin.list_topics(timeout=10).topics["persisted"]
    assert len(after.partitions) == len(before.partitions) == 3
    resource = ConfigResource(ResourceType.TOPIC, "persisted")
    configs = admin.describe_configs([resource])[resource].result(10)
    assert configs["retention.ms"].value == "4242"


def test_retention_by_size_deletes_old_segments(broker, tmp_path):
    """A broker with a fast retention check: a topic with tiny segments and a size limit
    loses its oldest segments, and its earliest offset moves forward."""
    if broker.kind != "headwater":
        pytest.skip("starts its own headwater")
    import time

    from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

    own = HeadwaterBroker(broker.binary, tmp_path)
    own.extra_args = ["--log-retention-check-interval-ms", "200"]
    own.start()
    try:
        admin = AdminClient({"bootstrap.servers": own.bootstrap})
        admin.create_topics([NewTopic("retained", num_partitions=1, replication_factor=1,
                                      config={"segment.bytes": "2048", "retention.bytes": "4096"})])["retained"].result(10)
        producer = Producer({"bootstrap.servers": own.bootstrap, "linger.ms": 0})
        for i in range(300):
            producer.produce("retained", value=b"x" * 100)
            producer.flush(10)
        tp = TopicPartition("retained", 0)

        def segments():
            return sorted(p.name for p in (own.data_dir / "retained-0").glob("*.log"))

        # Retention runs every 200 ms; wait (bounded) until a pass has run after the last write.
        deadline = time.monotonic() + 20
        earliest = 0
        while time.monotonic() < deadline:
            earliest = admin.list_offsets({tp: OffsetSpec.earliest()})[tp].result(10).offset
            if earliest > 0 and len(segments()) <= 4:
                break
            time.sleep(0.1)
        latest = admin.list_offsets({tp: OffsetSpec.latest()})[tp].result(10).offset
        assert latest == 300
        assert 0 < earliest < 300, earliest
        assert len(segments()) <= 4, segments()
    finally:
        own.close()
