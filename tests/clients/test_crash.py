"""Acknowledged writes survive a SIGKILL of the broker.

Three idempotent confluent-kafka producers (acks=all) write continuously and
record every acknowledged (partition, offset, key, value). After ~2 s the
broker is SIGKILLed and restarted on the same data directory and port; the
producers keep going, then flush. Reading every partition from the beginning
must show every acknowledged record at exactly its acknowledged offset, and
no acknowledged key twice.

Needs a broker the test can kill: skipped when HEADWATER_BOOTSTRAP is set.
"""

import logging
import os
import threading
import time
import zlib
from collections import Counter

import pytest

from clientlib import PARTITIONS, create_topics, unique_topic

pytestmark = pytest.mark.skipif(bool(os.environ.get("HEADWATER_BOOTSTRAP")),
                                reason="needs a broker it can kill (HEADWATER_BOOTSTRAP is set)")
ck = pytest.importorskip("confluent_kafka")

THREADS = 3
RUN_BEFORE_KILL_S = 2.0
DOWN_S = 0.5
RUN_AFTER_RESTART_S = 1.5
# librdkafka's connection-refused noise while the broker is down goes to a
# logger (shown by pytest only when the test fails) instead of stderr.
RDKAFKA_LOG = logging.getLogger("rdkafka.crash")


class Writer(threading.Thread):
    def __init__(self, tid, bootstrap, topic, stop):
        super().__init__(name=f"writer-{tid}", daemon=True)
        self.tid, self.bootstrap, self.topic, self.stop = tid, bootstrap, topic, stop
        self.acked = []          # (partition, offset, key, value, monotonic time of the ack)
        self.failed = Counter()  # error name -> count
        self.sent = 0
        self.unflushed = None
        self.error = None

    def on_delivery(self, err, msg):
        if err is not None:
            self.failed[err.name()] += 1
        else:
            self.acked.append((msg.partition(), msg.offset(), msg.key(), msg.value(), time.monotonic()))

    def run(self):
        producer = None
        seq = 0
        try:
            producer = ck.Producer({
                "bootstrap.servers": self.bootstrap,
                "client.id": f"hw-crash-{self.tid}",
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": 30000,
                "reconnect.backoff.ms": 20,
                "reconnect.backoff.max.ms": 200,
                "retry.backoff.ms": 20,
                "retry.backoff.max.ms": 200,
                "logger": RDKAFKA_LOG,
            })
            while not self.stop.is_set():
                for _ in range(20):
                    key = f"w{self.tid}-{seq:08d}".encode()
                    value = key + b":" + (b"%d;" % seq) * (1 + seq % 40)
                    try:
                        producer.produce(self.topic, key=key, value=value,
                                         partition=zlib.crc32(key) % PARTITIONS,
                                         on_delivery=self.on_delivery)
                    except BufferError:
                        producer.poll(0.05)
                        break
                    seq += 1
                producer.poll(0)
                time.sleep(0.01)   # bounded rate: under 2,000 records/s per writer
        except Exception as e:  # e.g. a fatal idempotence error; reported by the test
            self.error = e
        finally:
            self.sent = seq
            if producer is not None:
                try:
                    self.unflushed = producer.flush(60)
                except Exception as e:
                    self.error = self.error or e


def read_all(bootstrap, topic, timeout=120):
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "client.id": "hw-crash-reader",
                            "group.id": "hw-unused-assign-only",
                            "enable.auto.commit": False, "enable.partition.eof": True,
                            "auto.offset.reset": "earliest"})
    try:
        consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(PARTITIONS)])
        log = {}
        at_eof = set()
        deadline = time.monotonic() + timeout
        while len(at_eof) < PARTITIONS:
            assert time.monotonic() < deadline, f"timed out reading back; have {len(log)} records"
            for m in consumer.consume(num_messages=10000, timeout=0.5):
                if m.error() is not None:
                    if m.error().code() == ck.KafkaError._PARTITION_EOF:
                        at_eof.add(m.partition())
                        continue
                    raise AssertionError(f"consume error: {m.error()}")
                at_eof.discard(m.partition())
                log[(m.partition(), m.offset())] = (m.key(), m.value())
        return log
    finally:
        consumer.close()


def test_acked_records_survive_sigkill(restartable_broker):
    broker = restartable_broker
    topic = unique_topic("crash", "none")
    create_topics(broker.bootstrap, [topic])

    stop = threading.Event()
    writers = [Writer(t, broker.bootstrap, topic, stop) for t in range(THREADS)]
    for w in writers:
        w.start()
    time.sleep(RUN_BEFORE_KILL_S)
    broker.kill()
    killed_at = time.monotonic()
    time.sleep(DOWN_S)
    broker.start()
    restarted_at = time.monotonic()
    time.sleep(RUN_AFTER_RESTART_S)
    stop.set()
    for w in writers:
        w.join(timeout=120)
        assert not w.is_alive(), f"{w.name} did not finish"

    acked = [a for w in writers for a in w.acked]
    before = sum(1 for a in acked if a[4] < killed_at)
    after = sum(1 for a in acked if a[4] >= restarted_at)
    stats = (f"sent {sum(w.sent for w in writers)}, acked {len(acked)} ({before} before the kill, "
             f"{after} after the restart), failed {sum((w.failed for w in writers), Counter())}, "
             f"unflushed {[w.unflushed for w in writers]}, "
             f"producer errors {[repr(w.error) for w in writers if w.error]}")
    print(stats)
    assert before > 0, f"nothing was acknowledged before the kill: {stats}"

    log = read_all(broker.bootstrap, topic)

    problems = []
    for p in range(PARTITIONS):
        offs = sorted(o for (pp, o) in log if pp == p)
        if offs != list(range(len(offs))):
            problems.append(f"partition {p}: offsets are not contiguous from 0")
    for p, off, key, value, _ in acked:
        if (p, off) not in log:
            problems.append(f"acked {key!r} at {p}/{off} is missing")
        elif log[(p, off)] != (key, value):
            problems.append(f"acked {key!r} at {p}/{off}, log holds {log[(p, off)][0]!r} there")
    counts = Counter(k for k, _ in log.values())
    acked_keys = {a[2] for a in acked}
    dups = sorted(k for k in acked_keys if counts[k] > 1)
    if dups:
        problems.append(f"{len(dups)} acked key(s) appear more than once, e.g. {dups[:5]}")
    # The writers must survive the restart: no fatal producer error (such as
    # an idempotence sequence error caused by lost data) and new acks.
    for w in writers:
        if w.error is not None:
            problems.append(f"{w.name} failed: {w.error!r}")
    if after == 0:
        problems.append("nothing was acknowledged after the restart")
    assert not problems, f"{len(problems)} problem(s) ({stats}):\n  " + "\n  ".join(problems[:20])
