"""Test data and checks shared by the real-client tests.

Every client test produces records made by `make_records`, reads them back,
converts what it read into `Got` tuples and hands both to `check_roundtrip`,
which compares every field and offset and raises AssertionError listing the
first problems found.
"""

import base64
import os
import random
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

REPO_ROOT = Path(__file__).resolve().parents[2]

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PARTITIONS = 3
RECORDS_PER_CODEC = int(os.environ.get("HEADWATER_CLIENT_RECORDS", "10000"))
MID_BATCH_CHECK = 50          # records checked after a mid-batch seek
MAX_PROBLEMS_SHOWN = 15

Headers = List[Tuple[str, bytes]]


@dataclass
class Rec:
    """One produced record and what the producer was told about it."""
    index: int
    key: bytes
    value: bytes
    headers: Headers
    timestamp: Optional[int]      # None: the client sets it (kcat)
    partition: int
    acked_partition: Optional[int] = None
    acked_offset: Optional[int] = None
    ack_error: Optional[str] = None


@dataclass
class Got:
    """One consumed record, normalised across clients."""
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: Headers
    timestamp: int
    create_time: bool = True      # timestamp type is CreateTime


def unique_topic(client, codec):
    return f"hw-{client}-{codec}-{uuid.uuid4().hex[:8]}"


def partition_for(key):
    return zlib.crc32(key) % PARTITIONS


def make_records(client, codec, n=RECORDS_PER_CODEC, printable=False, timestamps=True,
                 base_ts=None):
    """n deterministic records with distinct keys, values of 1 B to 4 KB (half
    random, half repetitive), one or two headers, explicit non-monotonic
    CreateTime timestamps from the last ten minutes, and a partition derived
    from the key.

    printable=True keeps keys, values and headers to [A-Za-z0-9-_.:; ] so they
    survive line-oriented tools (kcat); then headers are the same for every
    record (kcat's -H applies to all records of one run).
    """
    rng = random.Random(f"{client}/{codec}/{n}")
    if base_ts is None:
        base_ts = int(time.time() * 1000) - 600_000
    out = []
    for i in range(n):
        key = f"{client}-{codec}-{i:06d}".encode()
        bucket = rng.randrange(10)
        if bucket < 6:
            length = 1 + rng.randrange(100)
        elif bucket < 9:
            length = 100 + rng.randrange(900)
        else:
            length = 1000 + rng.randrange(3000)
        if rng.random() < 0.5:
            raw = rng.randbytes(length)
            value = base64.b64encode(raw, altchars=b"-_")[:length] if printable else raw
        else:
            pattern = f"value {i} of {codec}; ".encode()
            value = (pattern * (length // len(pattern) + 1))[:length]
        if printable:
            headers = [("codec", codec.encode()), ("client", client.encode())]
        else:
            headers = [("seq", str(i).encode())]
            if i % 2 == 1:
                headers.append(("h2", b"" if i % 10 == 1 else rng.randbytes(1 + rng.randrange(24))))
        ts = base_ts + i * 3 + (i * 7919) % 1000 - 500 if timestamps else None
        out.append(Rec(i, key, value, headers, ts, partition_for(key)))
    return out


class Problems:
    def __init__(self, what):
        self.what = what
        self.items = []
        self.count = 0

    def add(self, msg):
        self.count += 1
        if len(self.items) < MAX_PROBLEMS_SHOWN:
            self.items.append(msg)

    def raise_if_any(self):
        if self.count:
            more = f"\n  ... and {self.count - len(self.items)} more" if self.count > len(self.items) else ""
            raise AssertionError(f"{self.what}: {self.count} problem(s):\n  "
                                 + "\n  ".join(self.items) + more)


def _diff(rec, got, ts_range=None):
    d = []
    if got.key != rec.key:
        d.append(f"key {got.key!r:.60} != {rec.key!r:.60}")
    if got.value != rec.value:
        glen = None if got.value is None else len(got.value)
        d.append(f"value differs (len {glen} vs {len(rec.value)})")
    if list(got.headers) != list(rec.headers):
        d.append(f"headers {got.headers!r:.120} != {rec.headers!r:.120}")
    if rec.timestamp is not None:
        if got.timestamp != rec.timestamp:
            d.append(f"timestamp {got.timestamp} != {rec.timestamp}")
    elif ts_range is not None and not (ts_range[0] <= got.timestamp <= ts_range[1]):
        d.append(f"timestamp {got.timestamp} outside produce window {ts_range}")
    if not got.create_time:
        d.append("timestamp type is not CreateTime")
    return d


def acked_index(records, what, problems=None):
    """{(partition, offset): Rec} from the producer's acks, checking that every
    record was acked on its partition and that each partition's offsets are
    exactly 0..count-1 (a fresh topic, one idempotent producer)."""
    own = problems is None
    problems = problems or Problems(what)
    by_pos = {}
    for r in records:
        if r.ack_error is not None or r.acked_offset is None:
            problems.add(f"record {r.index} not acknowledged: {r.ack_error}")
            continue
        if r.acked_partition != r.partition:
            problems.add(f"record {r.index} acked on partition {r.acked_partition}, sent to {r.partition}")
        pos = (r.acked_partition, r.acked_offset)
        if pos in by_pos:
            problems.add(f"records {by_pos[pos].index} and {r.index} both acked at {pos}")
        by_pos[pos] = r
    for p in range(PARTITIONS):
        offs = sorted(o for (pp, o) in by_pos if pp == p)
        if offs != list(range(len(offs))):
            problems.add(f"acked offsets of partition {p} are not 0..{len(offs) - 1}")
    if own:
        problems.raise_if_any()
    return by_pos


def check_roundtrip(records, consumed, what, ts_range=None):
    """Everything produced was consumed, in order, at its acked offset, with
    identical key, value, headers and timestamp; nothing else was consumed."""
    problems = Problems(what)
    by_pos = acked_index(records, what, problems)
    next_off = {p: 0 for p in range(PARTITIONS)}
    seen = set()
    for g in consumed:
        if g.partition not in next_off:
            problems.add(f"record from unknown partition {g.partition}")
            continue
        if g.offset != next_off[g.partition]:
            problems.add(f"partition {g.partition}: offset {g.offset} where {next_off[g.partition]} was next")
        next_off[g.partition] = g.offset + 1
        pos = (g.partition, g.offset)
        if pos in seen:
            problems.add(f"{pos} consumed twice")
        seen.add(pos)
        rec = by_pos.get(pos)
        if rec is None:
            problems.add(f"unexpected record at {pos} (key {g.key!r:.60})")
            continue
        for d in _diff(rec, g, ts_range):
            problems.add(f"record {rec.index} at {pos}: {d}")
    missing = set(by_pos) - seen
    if missing:
        problems.add(f"{len(missing)} acked record(s) never consumed, e.g. {sorted(missing)[:5]}")
    if len(consumed) != len(records):
        problems.add(f"consumed {len(consumed)} records, produced {len(records)}")
    problems.raise_if_any()


def check_mid_batch(records, got, partition, start, what, ts_range=None):
    """After seeking to `start` of `partition`: the first record has exactly
    that offset, the following ones come in order and match what was acked."""
    problems = Problems(f"{what}: seek to {partition}/{start}")
    by_pos = acked_index(records, what)
    end = sum(1 for (p, _) in by_pos if p == partition)
    want = min(MID_BATCH_CHECK, end - start)
    if want <= 0:
        raise AssertionError(f"{what}: partition {partition} too short ({end}) for a seek to {start}")
    if len(got) < want:
        problems.add(f"got {len(got)} records, wanted at least {want}")
    if got and got[0].offset != start:
        problems.add(f"first record returned has offset {got[0].offset}, not {start}")
    for k, g in enumerate(got[:want]):
        if g.partition != partition or g.offset != start + k:
            problems.add(f"record {k} after the seek is {g.partition}/{g.offset}, expected "
                         f"{partition}/{start + k}")
            break
        for d in _diff(by_pos[(partition, g.offset)], g, ts_range):
            problems.add(f"offset {g.offset}: {d}")
    problems.raise_if_any()


def mid_batch_offsets(records):
    """Offsets to seek to on partition 0: 5 (inside the first batch) and one
    past the middle of the partition."""
    count = sum(1 for r in records if r.partition == 0)
    return [5, count // 2 + 1]


def create_topics(bootstrap, names, partitions=PARTITIONS):
    """Create topics with confluent-kafka's AdminClient (CreateTopics) and wait
    until metadata lists all their partitions. Used by the confluent, kcat
    and crash tests."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": "hw-ck-admin"})
    futures = admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1)
                                   for n in names], operation_timeout=30, request_timeout=30)
    for fut in futures.values():
        fut.result(timeout=60)
    deadline = time.monotonic() + 30
    while True:
        md = admin.list_topics(timeout=10)
        ready = {n: sorted(md.topics[n].partitions)
                 if n in md.topics and md.topics[n].error is None else None for n in names}
        if all(v == list(range(partitions)) for v in ready.values()):
            return
        assert time.monotonic() < deadline, f"topics not in metadata: {ready}"
        time.sleep(0.1)
