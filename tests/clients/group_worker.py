"""A consumer-group member for the group tests, run as its own process so a test can SIGKILL
it. It appends `partition offset value` for every record it processes to OUT, and commits
after processing (at-least-once). SIGTERM closes it cleanly.

usage: group_worker.py CLIENT BOOTSTRAP GROUP TOPIC OUT [INSTANCE_ID]
CLIENT is confluent or kafka-python. HEADWATER_GROUP_PROTOCOL=consumer makes the confluent
client use the KIP-848 consumer protocol (the broker then owns session timeouts).
HEADWATER_WORKER_COMMIT_FAILURES=note makes a failed commit a `# commit-failed ERROR` line
instead of the end of the worker, as an application that handles CommitFailed goes on (its
records are processed again by whoever holds the partition next).
HEADWATER_WORKER_SESSION_TIMEOUT_MS sets the confluent client's classic session timeout
(6000 by default, so the group tests see a dead member soon)."""

import os
import signal
import sys
import time

client, bootstrap, group, topic, out_path = sys.argv[1:6]
instance_id = sys.argv[6] if len(sys.argv) > 6 else None
protocol = os.environ.get("HEADWATER_GROUP_PROTOCOL", "classic")
note_commit_failures = os.environ.get("HEADWATER_WORKER_COMMIT_FAILURES") == "note"
session_timeout_ms = int(os.environ.get("HEADWATER_WORKER_SESSION_TIMEOUT_MS", "6000"))
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
out = open(out_path, "a", buffering=1)


def note(event):
    out.write(f"# {event} {time.time():.3f}\n")


if client == "confluent":
    from confluent_kafka import Consumer

    config = {
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "group.protocol": protocol,
    }
    if protocol == "classic":
        config.update({"session.timeout.ms": session_timeout_ms, "heartbeat.interval.ms": 500})
    if instance_id:
        config["group.instance.id"] = instance_id
    consumer = Consumer(config)
    consumer.subscribe([topic], on_assign=lambda c, ps: note("assign " + ",".join(str(p.partition) for p in ps)),
                       on_revoke=lambda c, ps: note("revoke " + ",".join(str(p.partition) for p in ps)))
    note("started")
    while not stop:
        message = consumer.poll(0.2)
        if message is None or message.error():
            continue
        out.write(f"{message.partition()} {message.offset()} {message.value().decode()}\n")
        time.sleep(0.002)
        try:
            consumer.commit(message=message, asynchronous=False)
        except Exception as e:  # confluent_kafka.KafkaException
            if not note_commit_failures:
                raise
            note(f"commit-failed {e.args[0].name() if e.args else e}")
    consumer.close()
else:
    assert protocol == "classic", "kafka-python speaks only the classic group protocol"
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                             enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=500,
                             group_instance_id=instance_id)
    consumer.subscribe([topic])
    note("started")
    while not stop:
        for tp, records in consumer.poll(timeout_ms=200).items():
            for record in records:
                out.write(f"{record.partition} {record.offset} {record.value.decode()}\n")
                time.sleep(0.002)
                try:
                    consumer.commit({TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(record.offset + 1, "", -1)})
                except Exception as e:  # kafka.errors.CommitFailedError and friends
                    if not note_commit_failures:
                        raise
                    note(f"commit-failed {type(e).__name__}")
    consumer.close()
note("closed")
