"""The Python SDK against a broker inside this process (headwater.testing.EmbeddedBroker),
and interop with kafka-python and confluent-kafka."""

import os
import signal
import subprocess
import sys
import textwrap
import uuid

import pytest

import headwater
from headwater import AdminClient, Consumer, Producer
from headwater.testing import EmbeddedBroker


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker(settings={"group_consumer_heartbeat_interval_ms": 200}) as b:
        yield b


def new_topic(broker, partitions=1):
    name = f"t-{uuid.uuid4().hex[:8]}"
    AdminClient(broker.bootstrap).create_topic(name, partitions=partitions)
    return name


def drain(consumer, want, rounds=100):
    out = []
    for _ in range(rounds):
        out.extend(consumer.poll(0.2))
        if len(out) >= want:
            break
    return out


def test_send_send_async_and_consume_everything_back(broker):
    topic = new_topic(broker, partitions=2)
    with Producer(broker.bootstrap, compression="zstd") as producer:
        first = producer.send(topic, b"v0", key=b"k0", headers={"h": b"x"}, partition=0)
        assert (first.topic, first.partition, first.offset) == (topic, 0, 0)
        futures = [producer.send_async(topic, f"v{i}", key=f"k{i}", partition=i % 2) for i in range(1, 200)]
        metadata = [f.result(timeout=30) for f in futures]
    assert [m.offset for m in metadata if m.partition == 1] == list(range(100))
    with Consumer(broker.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([(topic, 0), (topic, 1)])
        records = drain(consumer, 200)
    assert len(records) == 200
    by_value = {r.value: r for r in records}
    assert by_value[b"v0"].headers == [("h", b"x")] and by_value[b"v0"].key == b"k0"
    assert {r.value for r in records} == {f"v{i}".encode() for i in range(200)}


def test_a_group_consumer_commits_and_a_new_member_resumes_there(broker):
    topic = new_topic(broker, partitions=3)
    with Producer(broker.bootstrap) as producer:
        for i in range(90):
            producer.send_async(topic, f"m{i}", partition=i % 3)
        producer.flush()
    assigned = []
    with Consumer(broker.bootstrap, group_id="g1", topics=[topic], auto_offset_reset="earliest",
                  on_assign=assigned.extend) as consumer:
        records = drain(consumer, 60)
        consumer.commit()
        seen = {(r.partition, r.offset) for r in records}
        assert sorted(assigned) == [(topic, 0), (topic, 1), (topic, 2)]
    with Consumer(broker.bootstrap, group_id="g1", topics=[topic], auto_offset_reset="earliest") as consumer:
        rest = drain(consumer, 90 - len(seen))
        consumer.commit()
        admin = AdminClient(broker.bootstrap)
        described = admin.describe_group("g1")
        assert (described.group_type, len(described.members)) == ("consumer", 1)
        assert sorted(described.members[0].assignment) == [(topic, 0), (topic, 1), (topic, 2)]
        assert ("g1", "Stable", "consumer") in admin.list_groups()
    assert seen.isdisjoint({(r.partition, r.offset) for r in rest})
    assert len(seen) + len(rest) == 90
    assert admin.group_offsets("g1") == {(topic, p): 30 for p in range(3)}
    admin.delete_group("g1")
    assert admin.group_offsets("g1") == {}
    admin.alter_topic_config(topic, {"retention.ms": 3600000})
    assert admin.topic_config(topic)["retention.ms"] == "3600000"


def test_on_revoke_can_commit_what_is_being_revoked(broker):
    topic = new_topic(broker, partitions=2)
    with Producer(broker.bootstrap) as producer:
        for i in range(20):
            producer.send_async(topic, f"r{i}", partition=i % 2)
        producer.flush()
    revoked, commit_errors = [], []
    group = f"g-{uuid.uuid4().hex[:8]}"

    def on_revoke(partitions):
        try:
            first.commit()  # inside poll: must neither deadlock nor fail
        except Exception as e:  # noqa: BLE001 - the test reports it below
            commit_errors.append(e)
        revoked.extend(partitions)

    first = Consumer(broker.bootstrap, group_id=group, topics=[topic], auto_offset_reset="earliest",
                     enable_auto_commit=False, on_revoke=on_revoke)
    assert len(drain(first, 20)) == 20
    with Consumer(broker.bootstrap, group_id=group, topics=[topic], auto_offset_reset="earliest",
                  enable_auto_commit=False) as second:
        for _ in range(100):
            first.poll(0.1)
            second.poll(0.1)
            if revoked:
                break
        assert revoked and not commit_errors, (revoked, commit_errors)
        committed = AdminClient(broker.bootstrap).group_offsets(group)
        assert committed[revoked[0]] == 10, committed
    first.close()


def test_poll_max_records_leaves_the_rest_unconsumed(broker):
    topic = new_topic(broker)
    with Producer(broker.bootstrap) as producer:
        for i in range(5):
            producer.send_async(topic, f"p{i}")
        producer.flush()
    group = f"g-{uuid.uuid4().hex[:8]}"
    with Consumer(broker.bootstrap, group_id=group, topics=[topic], auto_offset_reset="earliest",
                  enable_auto_commit=True) as consumer:
        got = []
        for _ in range(100):
            got = consumer.poll(0.2, max_records=2)
            if got:
                break
        assert [r.offset for r in got] == [0, 1]
    # Closing auto-commits what poll returned, and only that.
    assert AdminClient(broker.bootstrap).group_offsets(group) == {(topic, 0): 2}


def test_errors_are_typed_with_code_and_retriable(broker):
    admin = AdminClient(broker.bootstrap)
    topic = new_topic(broker)
    with pytest.raises(headwater.HeadwaterError) as exists:
        admin.create_topic(topic)
    assert exists.value.code == 36 and not exists.value.retriable
    with pytest.raises(headwater.ConfigError):
        Producer(broker.bootstrap, acks=1)
    with pytest.raises(ValueError):
        Consumer(broker.bootstrap, auto_offset_reset="sometimes")
    with Producer(broker.bootstrap) as producer:
        with pytest.raises(headwater.UnknownTopicError) as unknown:
            producer.send(topic, b"x", partition=7)
    assert unknown.value.code == 3


def test_records_cross_between_the_sdk_and_other_clients(broker):
    from confluent_kafka import Consumer as ConfluentConsumer, Producer as ConfluentProducer
    from kafka import KafkaConsumer

    topic = new_topic(broker)
    with Producer(broker.bootstrap, compression="lz4") as producer:
        for i in range(50):
            producer.send_async(topic, f"sdk-{i}", key=f"k{i}", headers=[("source", b"sdk")])
        producer.flush()
    kp = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                       consumer_timeout_ms=5000, enable_auto_commit=False)
    from_kafka_python = [(m.offset, m.key, m.value, m.headers) for m in kp]
    kp.close()
    assert from_kafka_python == [(i, f"k{i}".encode(), f"sdk-{i}".encode(), [("source", b"sdk")]) for i in range(50)]
    cc = ConfluentConsumer({"bootstrap.servers": broker.bootstrap, "group.id": f"cc-{topic}",
                            "auto.offset.reset": "earliest", "enable.auto.commit": False})
    cc.subscribe([topic])
    from_confluent = []
    for _ in range(100):
        m = cc.poll(0.5)
        if m is not None and not m.error():
            from_confluent.append(m.value())
        if len(from_confluent) == 50:
            break
    cc.close()
    assert from_confluent == [f"sdk-{i}".encode() for i in range(50)]
    cp = ConfluentProducer({"bootstrap.servers": broker.bootstrap, "compression.type": "snappy"})
    for i in range(30):
        cp.produce(topic, value=f"confluent-{i}".encode(), headers=[("n", str(i).encode())])
    assert cp.flush(30) == 0
    from kafka import KafkaProducer

    kp_producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", compression_type="gzip")
    for i in range(20):
        kp_producer.send(topic, key=f"kp{i}".encode(), value=f"kafka-python-{i}".encode())
    kp_producer.flush(30)
    kp_producer.close()
    with Consumer(broker.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([(topic, 0)])
        consumer.seek(topic, 0, 50)
        records = drain(consumer, 50)
    assert [r.value for r in records[:30]] == [f"confluent-{i}".encode() for i in range(30)]
    assert records[3].headers == [("n", b"3")]
    assert [(r.key, r.value) for r in records[30:]] == [(f"kp{i}".encode(), f"kafka-python-{i}".encode())
                                                         for i in range(20)]


def test_ctrl_c_interrupts_a_blocking_poll(broker, tmp_path):
    script = tmp_path / "poll.py"
    script.write_text(textwrap.dedent(f"""
        import faulthandler, signal, sys
        # Python leaves SIGINT ignored when it starts ignored, as it does under a shell's
        # background job (`make test &`); Ctrl-C in a terminal has Python's own handler.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # A hang (in the poll or at exit) dumps every thread's stack to stderr for the test.
        faulthandler.dump_traceback_later(45, exit=True)
        from headwater import Consumer
        consumer = Consumer({broker.bootstrap!r}, auto_offset_reset="earliest")
        consumer.assign([("ctrl-c", 0)])
        try:
            print("polling", flush=True)
            consumer.poll(600)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(0)
        sys.exit(1)
    """))
    AdminClient(broker.bootstrap).create_topic("ctrl-c")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "polling"
    proc.send_signal(signal.SIGINT)
    # The poll would block for 600 s; the bound here only keeps a broken build from hanging.
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    assert (proc.returncode, out.strip()) == (0, "interrupted"), f"stderr of the polling process:\n{err}"


def test_asyncio_producer_and_consumer_await_once_per_call(broker):
    import asyncio

    from headwater.aio import AsyncConsumer, AsyncProducer

    topic = new_topic(broker)

    async def main():
        async with AsyncProducer(broker.bootstrap) as producer:
            sent = await asyncio.gather(*(producer.send(topic, f"a{i}") for i in range(100)))
            await producer.flush()
        assert sorted(m.offset for m in sent) == list(range(100))
        got = []
        async with AsyncConsumer(broker.bootstrap, group_id=f"aio-{topic}", topics=[topic],
                                 auto_offset_reset="earliest") as consumer:
            async for record in consumer:
                got.append(record.value)
                if len(got) == 100:
                    await consumer.commit()
                    break
        return got

    assert asyncio.run(main()) == [f"a{i}".encode() for i in range(100)]
