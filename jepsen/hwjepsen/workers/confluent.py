"""The queue workload's clients on librdkafka (confluent-kafka), unmodified.

    python -m hwjepsen.workers.confluent ROLE --bootstrap H:P,... --topic T --partitions N
        --process NAME [--index I] [--seed S] [--group G] [--protocol classic|consumer]

Roles:
  setup     create the topic (replication factor 3, min.insync.replicas 2) and wait until every
            partition has a leader and a full ISR
  producer  idempotent acks=all sends of unique integers, 1-3 per operation, each to a partition
            picked at random; each operation waits for its delivery reports
  assign    reads every partition by assign(), from the beginning, restarting now and then
  group     reads through a consumer group (classic or KIP-848), committing after each poll and
            reading its committed offsets every ~2 s
  final     reads every partition from the beginning up to the high watermark it saw first

Every operation is reported (history_out) as invoked and then ok, fail (it certainly did not
happen) or info (it may or may not have happened).
"""

import argparse
import random
import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

from .history_out import Reporter

VALUES_PER_PROCESS = 100_000_000
SEND_TIMEOUT_S = 15.0
# Commit errors that say the commit was refused, so it certainly did not happen.
DEFINITE_COMMIT_ERRORS = {
    KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS, KafkaError._NO_OFFSET,
    KafkaError.STALE_MEMBER_EPOCH if hasattr(KafkaError, "STALE_MEMBER_EPOCH") else -1,
}


def quiet_log(*_):
    pass


def producer_config(args):
    # acks=1 (leader only, no idempotence) exists for the run against Kafka's weak settings.
    return {"bootstrap.servers": args.bootstrap, "enable.idempotence": args.acks == "all",
            "acks": args.acks,
            "linger.ms": 2, "message.timeout.ms": 10_000, "request.timeout.ms": 5_000,
            "retry.backoff.ms": 100, "metadata.max.age.ms": 5_000,
            "socket.connection.setup.timeout.ms": 3_000, "logger": quiet_log}


def consumer_config(args, group):
    config = {"bootstrap.servers": args.bootstrap, "group.id": group,
              "enable.auto.commit": False, "auto.offset.reset": "earliest",
              "fetch.wait.max.ms": 100, "metadata.max.age.ms": 5_000,
              "socket.connection.setup.timeout.ms": 3_000, "logger": quiet_log}
    if args.protocol == "consumer":
        config["group.protocol"] = "consumer"
    else:
        config.update({"session.timeout.ms": 6_000, "heartbeat.interval.ms": 1_000})
    return config


# --- setup ----------------------------------------------------------------------------------


def setup(args, out):
    admin = AdminClient({"bootstrap.servers": args.bootstrap, "logger": quiet_log})
    deadline = time.monotonic() + 60
    topic = NewTopic(args.topic, args.partitions, args.replication_factor,
                     config={"min.insync.replicas": str(args.min_insync)})
    while True:
        try:
            admin.create_topics([topic], operation_timeout=10)[args.topic].result(15)
            break
        except KafkaException as e:
            if e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                break
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    while True:
        meta = admin.list_topics(args.topic, timeout=10).topics.get(args.topic)
        ready = (meta is not None and meta.error is None
                 and len(meta.partitions) == args.partitions
                 and all(p.leader >= 0 and len(p.isrs) == args.replication_factor
                         for p in meta.partitions.values()))
        if ready:
            out.emit("ok", "setup", {"topic": args.topic, "partitions": args.partitions})
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"setup: topic {args.topic} not ready after 60 s: {meta}")
        time.sleep(0.3)


# --- producer -------------------------------------------------------------------------------


def produce(args, out):
    rng = random.Random(args.seed)
    next_value = args.index * VALUES_PER_PROCESS
    producer = Producer(producer_config(args))
    while not out.stopping:
        sends = []
        for _ in range(rng.randint(1, 3)):
            sends.append([rng.randrange(args.partitions), next_value])
            next_value += 1
        out.emit("invoke", "send", sends)
        results = [None] * len(sends)

        def delivered(i):
            def report(err, msg):
                results[i] = err if err is not None else msg.offset()
            return report

        try:
            for i, (partition, value) in enumerate(sends):
                producer.produce(args.topic, value=str(value).encode(), partition=partition,
                                 on_delivery=delivered(i))
        except (BufferError, KafkaException) as e:
            # Not all enqueued: those that were may still go out, so the outcome is unknown.
            out.emit("info", "send", [s + [None] for s in sends])
            out.emit("info", "crash", str(e))
            producer = restart_producer(producer, args)
            continue
        producer.flush(SEND_TIMEOUT_S)
        acked = [s + [r] if isinstance(r, int) else s + [None] for s, r in zip(sends, results)]
        if all(isinstance(r, int) for r in results):
            out.emit("ok", "send", acked)
        else:
            errors = sorted({str(r) for r in results if not isinstance(r, int)})
            out.emit("info", "send", acked)
            out.emit("info", "crash", errors)
            producer = restart_producer(producer, args)
    producer.flush(SEND_TIMEOUT_S)


def restart_producer(producer, args):
    """A new producer (a new producer id): after an unknown outcome the old one may be wedged
    (an idempotent producer with a timed-out batch raises a fatal error)."""
    try:
        producer.purge()
        producer.flush(0)
    except KafkaException:
        pass
    time.sleep(0.2)
    return Producer(producer_config(args))


# --- consumers ------------------------------------------------------------------------------


def poll_once(consumer, out, max_records=500, timeout_s=0.5):
    """One poll; reported only when it returned records. Returns {partition: last offset}."""
    at = out.now()
    try:
        messages = consumer.consume(num_messages=max_records, timeout=timeout_s)
    except KafkaException as e:
        out.emit("info", "poll-error", str(e))
        return {}
    records = []
    last = {}
    for m in messages:
        if m.error() is not None:
            if m.error().code() != KafkaError._PARTITION_EOF:
                out.emit("info", "poll-error", str(m.error()))
            continue
        records.append([m.partition(), m.offset(), int(m.value())])
        last[m.partition()] = m.offset()
    if records:
        out.emit("invoke", "poll", None, at=at)
        out.emit("ok", "poll", records)
    return last


def read_assigned(args, out):
    rng = random.Random(args.seed)
    while not out.stopping:
        consumer = Consumer(consumer_config(args, f"jepsen-assign-{args.process}"))
        partitions = list(range(args.partitions))
        consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])
        out.emit("ok", "assign", partitions)
        restart_at = time.monotonic() + rng.uniform(15, 45)
        while not out.stopping and time.monotonic() < restart_at:
            poll_once(consumer, out)
        consumer.close()
        if not out.stopping:
            out.emit("info", "crash", "restart")


def read_group(args, out):
    assigned = set()

    def on_assign(consumer, partitions):
        parts = sorted(p.partition for p in partitions)
        assigned.update(parts)
        out.emit("ok", "assign", parts)

    def on_revoke(consumer, partitions):
        parts = sorted(p.partition for p in partitions)
        assigned.difference_update(parts)
        out.emit("ok", "revoke", parts)

    def on_lost(consumer, partitions):
        parts = sorted(p.partition for p in partitions)
        assigned.difference_update(parts)
        out.emit("ok", "lost", parts)

    consumer = Consumer(consumer_config(args, args.group))
    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    next_read = time.monotonic() + 2
    while not out.stopping:
        last = poll_once(consumer, out)
        # Commit only partitions still held: a commit for a partition revoked during the poll
        # could overwrite its new owner's later commit, which Kafka allows.
        offsets = {p: o + 1 for p, o in last.items() if p in assigned}
        if offsets:
            commit(consumer, out, args, offsets)
        if time.monotonic() >= next_read and assigned:
            read_committed_offsets(consumer, out, args, sorted(assigned))
            next_read = time.monotonic() + 2
    consumer.close()


def commit(consumer, out, args, offsets):
    value = {"group": args.group, "offsets": sorted(offsets.items())}
    out.emit("invoke", "commit", value)
    try:
        consumer.commit(offsets=[TopicPartition(args.topic, p, o) for p, o in offsets.items()],
                        asynchronous=False)
        out.emit("ok", "commit", value)
    except KafkaException as e:
        code = e.args[0].code()
        out.emit("fail" if code in DEFINITE_COMMIT_ERRORS else "info", "commit",
                 dict(value, error=str(e)))


def read_committed_offsets(consumer, out, args, partitions):
    out.emit("invoke", "committed", {"group": args.group, "partitions": partitions})
    try:
        got = consumer.committed([TopicPartition(args.topic, p) for p in partitions], timeout=5)
    except KafkaException as e:
        out.emit("fail", "committed", {"group": args.group, "error": str(e)})
        return
    offsets = [[tp.partition, tp.offset] for tp in got if tp.error is None]
    out.emit("ok", "committed", {"group": args.group, "offsets": offsets})


def read_final(args, out):
    consumer = Consumer(consumer_config(args, f"jepsen-final-{args.process}"))
    deadline = time.monotonic() + args.final_timeout
    high = {}
    for p in range(args.partitions):
        while p not in high:
            try:
                high[p] = consumer.get_watermark_offsets(TopicPartition(args.topic, p),
                                                         timeout=5, cached=False)[1]
            except KafkaException as e:
                if time.monotonic() > deadline:
                    out.emit("fail", "final", {"error": str(e)})
                    return
                time.sleep(0.5)
    out.emit("ok", "final-start", {"high": sorted(high.items())})
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in high])
    out.emit("ok", "assign", sorted(high))
    reached = {p: -1 for p in high}
    while time.monotonic() < deadline:
        for p, o in poll_once(consumer, out, max_records=5000, timeout_s=1.0).items():
            reached[p] = max(reached[p], o)
        if all(reached[p] + 1 >= h for p, h in high.items()):
            break
    complete = all(reached[p] + 1 >= h for p, h in high.items())
    out.emit("ok" if complete else "fail", "final", {"reached": sorted(reached.items()),
                                                     "high": sorted(high.items())})
    consumer.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["setup", "producer", "assign", "group", "final"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", default="jepsen")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--replication-factor", type=int, default=3)
    parser.add_argument("--min-insync", type=int, default=2)
    parser.add_argument("--process", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--group", default="jepsen-group")
    parser.add_argument("--protocol", choices=["classic", "consumer"], default="classic")
    parser.add_argument("--final-timeout", type=float, default=60.0)
    parser.add_argument("--acks", choices=["all", "1"], default="all")
    args = parser.parse_args()
    out = Reporter(args.process)
    {"setup": setup, "producer": produce, "assign": read_assigned, "group": read_group,
     "final": read_final}[args.role](args, out)


if __name__ == "__main__":
    main()
