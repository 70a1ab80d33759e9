"""Round trip through kcat (the command-line tool, librdkafka from Debian).

kcat cannot set a per-record timestamp or per-record headers, and does not
report offsets: headers (-H) apply to every record of a run, timestamps are
the producer's clock (checked against the produce window), and the expected
offsets follow from producing each partition's records in order with one
idempotent kcat run per partition (-p N) into a fresh topic.
"""

import json
import shutil
import subprocess
import time

import pytest

from clientlib import (CODECS, PARTITIONS, Got, check_mid_batch, check_roundtrip,
                       create_topics, make_records, mid_batch_offsets, unique_topic)

KCAT = shutil.which("kcat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat not installed (scripts/setup-test-deps.sh)")
pytest.importorskip("confluent_kafka")  # for topic creation

CLIENT = "kcat"
FORMAT = r"%p %o %T %K %S %h|%k%s\n"
results = {}


@pytest.fixture(scope="module")
def topics(broker):
    """One fresh 3-partition topic per codec, created with confluent's AdminClient."""
    names = {codec: unique_topic(CLIENT, codec) for codec in CODECS}
    create_topics(broker.bootstrap, list(names.values()))
    return names


def run(args, stdin=None, timeout=120):
    args = args + ["-X", "client.id=hw-kcat"]
    out = subprocess.run([KCAT] + args, input=stdin, capture_output=True, timeout=timeout)
    assert out.returncode == 0, (f"kcat {' '.join(args)} exited {out.returncode}:\n"
                                 + out.stderr.decode(errors="replace")[-3000:])
    return out


def produce(bootstrap, topic, codec, records):
    headers = []
    for name, value in records[0].headers:
        headers += ["-H", f"{name}={value.decode()}"]
    for p in range(PARTITIONS):
        mine = [r for r in records if r.partition == p]
        data = b"".join(r.key + b"\t" + r.value + b"\n" for r in mine)
        out = run(["-P", "-b", bootstrap, "-t", topic, "-p", str(p), "-K", r"\t",
                   "-z", codec, "-X", "enable.idempotence=true", "-X", "acks=all", *headers],
                  stdin=data)
        # kcat exits 1 when any delivery fails; say so plainly if it did not.
        err = out.stderr.decode(errors="replace")
        assert "Delivery failed" not in err, err[-3000:]
        # kcat prints no offsets: one idempotent producer, a fresh partition,
        # records in input order -> the j-th record is at offset j.
        for j, r in enumerate(mine):
            r.acked_partition, r.acked_offset = p, j


def parse(raw):
    """Records printed with FORMAT: '<p> <o> <ts> <keylen> <valuelen> <headers>|<key><value>\\n'."""
    got = []
    pos = 0
    while pos < len(raw):
        bar = raw.index(b"|", pos)
        p, o, ts, klen, vlen, hdrs = raw[pos:bar].split(b" ", 5)
        klen, vlen = int(klen), int(vlen)
        pos = bar + 1
        key = raw[pos:pos + klen] if klen >= 0 else None
        pos += max(klen, 0)
        value = raw[pos:pos + vlen] if vlen >= 0 else None
        pos += max(vlen, 0)
        assert raw[pos:pos + 1] == b"\n", f"unparsable kcat output near byte {pos}"
        pos += 1
        headers = []
        if hdrs:
            for item in hdrs.split(b","):
                name, _, val = item.partition(b"=")
                headers.append((name.decode(), val))
        got.append(Got(int(p), int(o), key, value, headers, int(ts)))
    return got


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume(broker, topics, codec):
    topic = topics[codec]
    records = make_records(CLIENT, codec, printable=True, timestamps=False)
    t0 = int(time.time() * 1000) - 1
    produce(broker.bootstrap, topic, codec, records)
    t1 = int(time.time() * 1000) + 1
    out = run(["-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
               "-f", FORMAT])
    got = parse(out.stdout)
    # kcat consumes the partitions concurrently; order within each is kept.
    check_roundtrip(records, got, f"kcat {codec}", ts_range=(t0, t1))
    results[codec] = (records, (t0, t1))


@pytest.mark.parametrize("codec", CODECS)
def test_seek_into_batch(broker, topics, codec):
    if codec not in results:
        pytest.skip("produce/consume for this codec did not pass")
    records, ts_range = results[codec]
    for start in mid_batch_offsets(records):
        out = run(["-C", "-b", broker.bootstrap, "-t", topics[codec], "-p", "0",
                   "-o", str(start), "-c", "50", "-e", "-q", "-f", FORMAT])
        check_mid_batch(records, parse(out.stdout), 0, start, f"kcat {codec}", ts_range)


def test_json_envelope_timestamp_type(broker, topics):
    """-J shows the timestamp type: CreateTime set by the producer."""
    if "none" not in results:
        pytest.skip("nothing was produced")
    out = run(["-C", "-b", broker.bootstrap, "-t", topics["none"], "-p", "1", "-o", "beginning",
               "-c", "20", "-e", "-q", "-J"])
    lines = [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()]
    assert len(lines) == 20
    records, (t0, t1) = results["none"]
    mine = [r for r in records if r.partition == 1]
    for k, m in enumerate(lines):
        assert m["offset"] == k and m["partition"] == 1
        assert m["tstype"] == "create", m
        assert t0 <= m["ts"] <= t1
        assert m["key"] == mine[k].key.decode() and m["payload"] == mine[k].value.decode()
        assert m["headers"] == ["codec", "none", "client", "kcat"]
