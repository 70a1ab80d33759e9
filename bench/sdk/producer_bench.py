#!/usr/bin/env python3
"""Producer throughput and latency of one Python client against a running broker: the
Headwater Python SDK (`headwater`) or confluent-kafka (librdkafka). Prints one JSON object.

Both are used the way their own documentation shows: headwater's `send_async` futures (the
SDK's threads resolve them), confluent-kafka's `produce` with an `on_delivery` callback that
fires from `poll()`, which the sending loop calls between sends as librdkafka requires.

Throughput: --tput-records records of --record-size bytes sent as fast as the producer takes
them; rate = acknowledged / (last acknowledgement - first send).
Latency: --rate records/s for --lat-seconds, paced; latency = acknowledgement - scheduled send.
Every record must be acknowledged without error, or the run fails ("ok": false).

Usage: producer_bench.py --client headwater|confluent --bootstrap H:P --topic T [...]
"""

import argparse
import json
import os
import sys
import threading
import time


def percentile(sorted_ms, p):
    if not sorted_ms:
        return None
    i = min(len(sorted_ms) - 1, max(0, int(round(p / 100.0 * len(sorted_ms) + 0.5)) - 1))
    return sorted_ms[i]


class Acks:
    """Counts acknowledgements and errors; records each acknowledgement's time."""

    def __init__(self, n):
        self.lock = threading.Lock()
        self.at = [0.0] * n
        self.acked = 0
        self.errors = 0
        self.first_error = None
        self.done = threading.Event()
        self.expected = n

    def ack(self, i, error):
        now = time.perf_counter()
        with self.lock:
            if error is not None:
                self.errors += 1
                self.first_error = self.first_error or str(error)
            else:
                self.at[i] = now
                self.acked += 1
            if self.acked + self.errors == self.expected:
                self.done.set()


class HeadwaterClient:
    name = "headwater-python"

    def __init__(self, a):
        import headwater
        self.version = "this checkout"
        self.p = headwater.Producer(a.bootstrap, acks="all", idempotence=True, linger_ms=a.linger_ms,
                                    batch_bytes=a.batch_size)
        self.topic = a.topic

    def send(self, value, acks, i):
        f = self.p.send_async(self.topic, value)
        f.add_done_callback(lambda f: acks.ack(i, f.exception()))

    def idle(self, seconds):
        time.sleep(seconds)

    def wait(self, acks):
        self.p.flush()
        acks.done.wait(120)

    def close(self):
        self.p.close()


class ConfluentClient:
    name = "confluent-kafka"

    def __init__(self, a):
        import confluent_kafka
        self.version = f"confluent-kafka {confluent_kafka.__version__}, librdkafka {confluent_kafka.libversion()[0]}"
        self.p = confluent_kafka.Producer({
            "bootstrap.servers": a.bootstrap, "acks": "all", "enable.idempotence": True,
            "linger.ms": a.linger_ms, "batch.size": a.batch_size,
        })
        self.topic = a.topic

    def send(self, value, acks, i):
        cb = lambda err, _msg: acks.ack(i, err)  # noqa: E731
        while True:
            try:
                self.p.produce(self.topic, value, on_delivery=cb)
                break
            except BufferError:
                self.p.poll(0.005)
        self.p.poll(0)

    def idle(self, seconds):
        self.p.poll(seconds)

    def wait(self, acks):
        self.p.flush(120)
        acks.done.wait(120)

    def close(self):
        self.p.flush(30)


def throughput(c, n, value):
    acks = Acks(n)
    start = time.perf_counter()
    for i in range(n):
        c.send(value, acks, i)
    c.wait(acks)
    last = max(acks.at) if acks.acked else start
    seconds = last - start
    return {
        "records": n, "acked": acks.acked, "errors": acks.errors, "first_error": acks.first_error,
        "seconds": seconds,
        "records_per_sec": acks.acked / seconds if seconds > 0 else None,
        "mb_per_sec": acks.acked * len(value) / seconds / 1e6 if seconds > 0 else None,
    }


def latency(c, rate, seconds, value):
    n = int(rate * seconds)
    acks = Acks(n)
    scheduled = [0.0] * n
    start = time.perf_counter() + 0.05
    for i in range(n):
        at = start + i / rate
        while True:
            now = time.perf_counter()
            if now >= at:
                break
            c.idle(min(at - now, 0.001))
        scheduled[i] = at
        c.send(value, acks, i)
    sent_seconds = time.perf_counter() - start
    c.wait(acks)
    ms = sorted((acks.at[i] - scheduled[i]) * 1000 for i in range(n) if acks.at[i])
    return {
        "records": n, "acked": acks.acked, "errors": acks.errors, "first_error": acks.first_error,
        "achieved_send_rate": n / sent_seconds if sent_seconds > 0 else None,
        "produce_ms": {"p50": percentile(ms, 50), "p99": percentile(ms, 99), "p99.9": percentile(ms, 99.9)},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", choices=["headwater", "confluent"], required=True)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--record-size", type=int, default=1024)
    ap.add_argument("--linger-ms", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=65536)
    ap.add_argument("--warmup-records", type=int, default=10000)
    ap.add_argument("--tput-records", type=int, default=200000)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--lat-seconds", type=float, default=10)
    a = ap.parse_args()

    import headwater
    headwater.AdminClient(a.bootstrap).create_topic(a.topic, partitions=a.partitions)
    value = os.urandom(a.record_size)
    c = HeadwaterClient(a) if a.client == "headwater" else ConfluentClient(a)
    warm = throughput(c, a.warmup_records, value)
    t = throughput(c, a.tput_records, value)
    lat = latency(c, a.rate, a.lat_seconds, value)
    c.close()
    ok = all(r["errors"] == 0 and r["acked"] == r["records"] for r in (warm, t, lat))
    json.dump({"client": c.name, "version": c.version, "ok": ok, "throughput": t, "latency": lat,
               "config": {k: getattr(a, k) for k in ("partitions", "record_size", "linger_ms", "batch_size",
                                                       "warmup_records", "tput_records", "rate", "lat_seconds")}},
              sys.stdout, indent=2)
    print()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
