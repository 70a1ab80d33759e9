"""What the broker promises survives a restart (issue 11), with real clients, real processes
and real files.

test_delete_records_survives_restarts
    DeleteRecords moves a partition's log start to 5. A graceful stop, a SIGKILL, and a SIGKILL
    after more writes each leave it at 5, and a fetch from offset 0 never returns records 0-4:
    it gets OFFSET_OUT_OF_RANGE (auto.offset.reset=error) or is reset to 5 (earliest).
test_retention_log_start_survives_sigkill
    Retention by size deletes old segments and moves the earliest offset to some L > 0; after a
    SIGKILL the earliest offset is still at least L.
test_restart_reads_the_recovery_checkpoint (Headwater only)
    The start-up line "log recovered ... scanned_bytes=N trusted_bytes=M" shows that after a
    graceful stop nothing is CRC-scanned (all bytes are trusted from the checkpoint), and after a
    SIGKILL only what was written since the checkpoint is scanned.
test_full_disk_answers_kafka_storage_error (Headwater only, needs root for a tmpfs)
    On a full filesystem an acks=all produce is answered KAFKA_STORAGE_ERROR (the broker answers;
    the client neither retries nor times out), and so is the next one; acknowledged records stay
    readable; DescribeLogDirs reports the log dir with KAFKA_STORAGE_ERROR. With more space and a
    restart every acknowledged record is there at its offset and produce works again.
test_no_file_outside_the_data_dir (Headwater only)
    A broker run from directory T with data in T/data writes nothing in T besides data/ and
    nothing in /; both offset checkpoints are in the data directory, the log-start one holding
    the DeleteRecords offset.
test_describe_log_dirs_versions
    DescribeLogDirs v1-v4 in raw frames: one log dir (the data directory's absolute path), no
    error, every partition with its size on disk, and in v4 the filesystem's total and usable bytes.
test_kafka_log_dirs_describe
    Apache Kafka's own kafka-log-dirs.sh (org.apache.kafka.tools.LogDirsCommand 4.3.1) --describe
    prints one broker with one log dir holding the topic's partitions and their sizes.

Tests that restart the broker are skipped when HEADWATER_BOOTSTRAP is set; with
HEADWATER_KAFKA_REFERENCE=1 the tests not marked "Headwater only" run against Apache Kafka.
Times are printed (pytest -s), never asserted.
"""

import json
import os
import random
import re
import shutil
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

import kafkawire as kw
from clientlib import REPO_ROOT, create_topics
from conftest import HeadwaterBroker

# Retention runs often, so test_retention_log_start_survives_sigkill need not wait long.
BROKER_ARGS = ["--log-retention-check-interval-ms", "200"]
KAFKA_PROPS = ["log.retention.check.interval.ms=200"]

KAFKA_STORAGE_ERROR = 56
DELETE_TO = 5
SEGMENT_BYTES = 1 << 20          # Kafka 4's minimum segment.bytes (Headwater accepts 14 and up)
FULL_DISK_MIB = 16               # room for the broker's own files, then about 150 records
BIG_VALUE = 100_000
TOOLS_JARS = REPO_ROOT / ".deps/kafka-tools"


def fresh(prefix):
    return f"hw-{prefix}-{uuid.uuid4().hex[:8]}"


def values(prefix, count, size=20):
    """`count` distinct values of `size` bytes: a readable head, then seeded random bytes."""
    out = []
    for i in range(count):
        head = f"{prefix}-{i:06d};".encode()
        out.append(head + random.Random(f"{prefix}/{i}").randbytes(max(0, size - len(head))))
    return out


def produce(bootstrap, topic, vals, **conf):
    """Produces `vals` to partition 0 with acks=all and returns their acknowledged offsets
    in order; any delivery error fails the test."""
    acks = []
    producer = Producer({"bootstrap.servers": bootstrap, "client.id": "hw-durability",
                         "acks": "all", "enable.idempotence": True, "linger.ms": 5, **conf})
    for v in vals:
        while True:
            try:
                producer.produce(topic, value=v, partition=0,
                                 on_delivery=lambda err, msg: acks.append((err, msg.offset())))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(120) == 0, "records still unacknowledged after 120 s"
    errors = [err for err, _ in acks if err is not None]
    assert not errors, f"{len(errors)} delivery errors, first {errors[0]}"
    return [offset for _, offset in acks]


def offsets(bootstrap, topic):
    """(earliest, latest) of partition 0 by ListOffsets, retrying retriable errors for a while
    (a restarted Apache Kafka takes a moment to lead its partitions again)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": "hw-durability-admin"})
    tp = TopicPartition(topic, 0)
    deadline = time.monotonic() + 60
    while True:
        try:
            return tuple(admin.list_offsets({tp: spec})[tp].result(30).offset
                         for spec in (OffsetSpec.earliest(), OffsetSpec.latest()))
        except KafkaException as e:
            if not e.args[0].retriable() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def delete_records(bootstrap, topic, before):
    """DeleteRecords on partition 0 up to `before`; returns the new low watermark."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": "hw-durability-admin"})
    (future,) = admin.delete_records([TopicPartition(topic, 0, before)]).values()
    return future.result(30).low_watermark


def consumer(bootstrap, reset):
    return Consumer({"bootstrap.servers": bootstrap, "client.id": "hw-durability-reader",
                     "group.id": "hw-unused-assign-only", "enable.auto.commit": False,
                     "auto.offset.reset": reset})


def read(bootstrap, topic, start, end, timeout=60):
    """{offset: value} of partition 0 read from `start` (auto.offset.reset=earliest) until the
    record before `end`; a consume error fails the test."""
    c = consumer(bootstrap, "earliest")
    got = {}
    try:
        c.assign([TopicPartition(topic, 0, start)])
        deadline = time.monotonic() + timeout
        while not got or max(got) < end - 1:
            if time.monotonic() > deadline:
                raise AssertionError(f"reading {topic} from {start}: {len(got)} records in {timeout} s, "
                                     f"not up to offset {end - 1} (first {sorted(got)[:3]})")
            for m in c.consume(num_messages=1000, timeout=0.5):
                assert m.error() is None, f"consume error: {m.error()}"
                got[m.offset()] = m.value()
        return got
    finally:
        c.close()


def fetch_error_from(bootstrap, topic, start, timeout=30):
    """With auto.offset.reset=error, what a fetch from `start` gives: (the error, records
    returned before it); a record is a failure when DeleteRecords should have hidden it."""
    c = consumer(bootstrap, "error")
    records = []
    try:
        c.assign([TopicPartition(topic, 0, start)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                return m.error(), records
            records.append(m.offset())
        return None, records
    finally:
        c.close()


def check_log_start(bootstrap, topic, vals, when):
    """The log start is DELETE_TO: ListOffsets and a fetch from 0 both say so."""
    earliest, latest = offsets(bootstrap, topic)
    assert (earliest, latest) == (DELETE_TO, len(vals)), \
        f"{when}: earliest/latest offsets {earliest}/{latest}, want {DELETE_TO}/{len(vals)}" \
        + (" (DeleteRecords undone)" if earliest < DELETE_TO else "")
    error, records = fetch_error_from(bootstrap, topic, 0)
    assert records == [], f"{when}: a fetch from 0 returned deleted records {records}"
    assert error is not None and error.code() == KafkaError._AUTO_OFFSET_RESET \
        and "out of range" in error.str().lower(), f"{when}: a fetch from 0 gave {error}, not OFFSET_OUT_OF_RANGE"
    got = read(bootstrap, topic, 0, len(vals))
    assert sorted(got) == list(range(DELETE_TO, len(vals))), f"{when}: read offsets {sorted(got)}"
    assert all(got[o] == vals[o] for o in got), f"{when}: values differ from those produced"


def test_delete_records_survives_restarts(restartable_broker):
    broker = restartable_broker
    topic = fresh("delete-records")
    create_topics(broker.bootstrap, [topic], partitions=1)
    vals = values(topic, 10)
    assert produce(broker.bootstrap, topic, vals) == list(range(10))
    assert delete_records(broker.bootstrap, topic, DELETE_TO) == DELETE_TO
    check_log_start(broker.bootstrap, topic, vals, "after DeleteRecords")

    assert broker.stop() in (0, None), "SIGTERM should exit 0"
    broker.start()
    check_log_start(broker.bootstrap, topic, vals, "after a graceful restart")

    broker.kill()
    broker.start()
    check_log_start(broker.bootstrap, topic, vals, "after a SIGKILL")

    more = values(topic + "-more", 10)
    assert produce(broker.bootstrap, topic, more) == list(range(10, 20))
    broker.kill()
    broker.start()
    check_log_start(broker.bootstrap, topic, vals + more, "after more writes and a SIGKILL")


def test_retention_log_start_survives_sigkill(restartable_broker):
    broker = restartable_broker
    topic = fresh("retention")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config={
        "segment.bytes": str(SEGMENT_BYTES), "retention.bytes": str(SEGMENT_BYTES)})])[topic].result(30)
    vals = values(topic, 50, size=BIG_VALUE)   # about 5 segments
    assert produce(broker.bootstrap, topic, vals) == list(range(len(vals)))

    # Bounded wait for a retention pass (every 200 ms) to delete segments.
    started = time.monotonic()
    deadline = started + 120
    earliest = 0
    while earliest == 0 and time.monotonic() < deadline:
        earliest, _ = offsets(broker.bootstrap, topic)
        time.sleep(0.1)
    print(f"retention moved the earliest offset to {earliest} after {time.monotonic() - started:.2f} s")
    assert 0 < earliest < len(vals), f"retention did not move the earliest offset within 120 s: {earliest}"

    broker.kill()
    broker.start()
    after, latest = offsets(broker.bootstrap, topic)
    print(f"after SIGKILL + start: earliest {after}, latest {latest}")
    assert latest == len(vals)
    assert after >= earliest, f"retention undone by a SIGKILL: earliest {after}, was {earliest}"
    got = read(broker.bootstrap, topic, 0, len(vals))
    # Retention keeps running (every 200 ms) and may move the start again during the read:
    # the read starts at a log start, one no earlier than before it and no later than after it.
    final, _ = offsets(broker.bootstrap, topic)
    assert after <= min(got) <= final, f"a read from 0 started at {min(got)}, the log start moved {after} -> {final}"


# --- Headwater's own processes --------------------------------------------------------------

@pytest.fixture
def headwater_bin(broker):
    if broker.kind != "headwater":
        pytest.skip("runs the headwater binary itself")
    return broker.binary


@pytest.fixture
def own_broker(headwater_bin, tmp_path):
    """A Headwater process of this test alone, not yet started: cwd tmp_path/cwd, data in
    tmp_path/cwd/data, output in tmp_path/headwater.log (outside the cwd)."""
    b = HeadwaterBroker(headwater_bin, tmp_path / "cwd", log_path=tmp_path / "headwater.log")
    yield b
    b.close()


def recovery_report(broker):
    """The fields of the "log recovered" line of the broker's latest start, as ints where
    they are numbers."""
    text = Path(broker.log_path).read_text(errors="replace")
    this_start = text[text.rfind("\n=== "):]
    lines = [line for line in this_start.splitlines() if "log recovered" in line]
    assert lines, f"no 'log recovered' line since the last start:\n{this_start[-2000:]}"
    fields = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', lines[-1]))
    return {k: int(v) if v.isdigit() else v for k, v in fields.items()}


def log_bytes_on_disk(data_dir):
    """Bytes of every partition's segment files (*.log) under `data_dir`."""
    return sum(p.stat().st_size for p in Path(data_dir).glob("*/*.log"))


def test_restart_reads_the_recovery_checkpoint(own_broker):
    broker = own_broker
    broker.start()
    topic = fresh("recovery")
    create_topics(broker.bootstrap, [topic], partitions=1)
    first = values(topic, 300, size=10_000)             # 3 MB
    produce(broker.bootstrap, topic, first)
    first_bytes = sum(map(len, first))

    assert broker.stop() == 0, "SIGTERM should exit 0"
    on_disk = log_bytes_on_disk(broker.data_dir)
    broker.start()
    report = recovery_report(broker)
    print(f"after a graceful stop ({on_disk} log bytes on disk): {report}")
    assert "scanned_bytes" in report and "trusted_bytes" in report, \
        f"the 'log recovered' line has no scanned_bytes/trusted_bytes: {report}"
    assert report["scanned_bytes"] == 0, f"a graceful stop left bytes to CRC-check: {report}"
    assert first_bytes <= report["trusted_bytes"] <= on_disk, \
        f"trusted_bytes not between the {first_bytes} value bytes produced and the {on_disk} on disk: {report}"

    restarted = time.monotonic()
    second = values(topic + "-2", 100, size=10_000)     # 1 MB after the checkpoint
    produce(broker.bootstrap, topic, second)
    second_bytes = sum(map(len, second))
    broker.kill()
    # The broker also checkpoints every 60 s; a run this slow would have trusted part of `second`.
    print(f"SIGKILL {time.monotonic() - restarted:.2f} s after the restart")
    on_disk = log_bytes_on_disk(broker.data_dir)
    broker.start()
    report = recovery_report(broker)
    print(f"after a SIGKILL ({on_disk} log bytes on disk): {report}")
    scanned, trusted = report["scanned_bytes"], report["trusted_bytes"]
    assert second_bytes <= scanned < on_disk, \
        f"scanned_bytes not between the {second_bytes} value bytes written since the checkpoint " \
        f"and the {on_disk} on disk: {report}"
    assert first_bytes <= trusted and scanned + trusted <= on_disk, report
    assert offsets(broker.bootstrap, topic) == (0, len(first) + len(second))


@pytest.fixture
def tmpfs(tmp_path):
    """A FULL_DISK_MIB tmpfs mounted at tmp_path/tmpfs (skip if this process cannot mount);
    unmounted afterwards, lazily if it is still busy."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    try:
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FULL_DISK_MIB}m", "tmpfs",
                              str(mount_point)], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no mount command, so no small filesystem to fill")
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): {out.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def full_disk_broker(headwater_bin, tmp_path, tmpfs):
    """A Headwater process of this test alone whose data directory is the tmpfs (its log is
    not), started."""
    b = HeadwaterBroker(headwater_bin, tmp_path / "broker", data_dir=tmpfs)
    b.start()
    yield b
    b.close()


def produce_one(producer, topic, value):
    """One acks=all record on its own: (offset or None, error or None, seconds it took)."""
    result = []
    started = time.monotonic()
    producer.produce(topic, value=value, partition=0, on_delivery=lambda err, msg: result.append((err, msg)))
    producer.flush(300)
    elapsed = time.monotonic() - started
    assert result, f"no delivery report after {elapsed:.1f} s"
    err, msg = result[0]
    return (None if err else msg.offset()), err, elapsed


def test_full_disk_answers_kafka_storage_error(full_disk_broker, tmpfs):
    broker = full_disk_broker
    topic = fresh("full-disk")
    create_topics(broker.bootstrap, [topic], partitions=1)
    # No retries, no idempotence and timeouts far beyond the test: a delivery error can only
    # be the broker's own answer.
    producer = Producer({"bootstrap.servers": broker.bootstrap, "client.id": "hw-full-disk",
                         "acks": "all", "enable.idempotence": False, "retries": 0, "linger.ms": 0,
                         "message.timeout.ms": 120000, "request.timeout.ms": 120000})
    acked = {}
    error = None
    for i, value in enumerate(values(topic, 4 * FULL_DISK_MIB * (1 << 20) // BIG_VALUE, size=BIG_VALUE)):
        offset, error, elapsed = produce_one(producer, topic, value)
        if error is not None:
            break
        acked[offset] = value
    print(f"{len(acked)} records acknowledged, then {error} after {elapsed * 1000:.1f} ms")
    assert error is not None, f"{len(acked)} records of {BIG_VALUE} bytes fit in {FULL_DISK_MIB} MiB"
    assert acked, "nothing was acknowledged before the disk was full"
    assert sorted(acked) == list(range(len(acked)))
    assert error.code() == KafkaError.KAFKA_STORAGE_ERROR, f"a full disk answered {error}, not KAFKA_STORAGE_ERROR"

    _, again, elapsed = produce_one(producer, topic, b"after the failure")
    print(f"the next produce: {again} after {elapsed * 1000:.1f} ms")
    assert again is not None and again.code() == KafkaError.KAFKA_STORAGE_ERROR, \
        f"a produce to the failed partition got {again}, not KAFKA_STORAGE_ERROR"

    got = read(broker.bootstrap, topic, 0, len(acked))
    assert {o: got.get(o) for o in acked} == acked, "acknowledged records unreadable or changed"

    space = os.statvfs(tmpfs)
    for version in (1, 2, 3, 4):
        _, results = kw.describe_log_dirs(broker.bootstrap, version)
        assert len(results) == 1, f"v{version}: {results}"
        r = results[0]
        assert r["error_code"] == KAFKA_STORAGE_ERROR, f"v{version}: log dir error {r['error_code']}: {r}"
        assert r["log_dir"] == os.path.realpath(tmpfs), f"v{version}: {r}"
        assert 0 in r["topics"].get(topic, {}), f"v{version}: failed partition not listed: {r}"
        if version == 4:
            assert r["total_bytes"] == space.f_blocks * space.f_frsize, r
            assert 0 <= r["usable_bytes"] < r["total_bytes"], r

    started = time.monotonic()
    status = broker.stop()
    print(f"graceful stop on the full disk: exit {status} after {time.monotonic() - started:.2f} s")
    subprocess.run(["mount", "-o", "remount,size=256m", str(tmpfs)], check=True)
    broker.start()
    got = read(broker.bootstrap, topic, 0, len(acked))
    missing = [o for o in acked if got.get(o) != acked[o]]
    assert not missing, f"{len(missing)} acknowledged records lost or changed after the restart: {missing[:10]}"
    offset, error, _ = produce_one(producer, topic, b"after the restart")
    assert error is None, f"produce after the restart with room again: {error}"
    print(f"new record at offset {offset}")
    assert offset >= len(acked)
    producer.flush(10)


def root_entries():
    """The names in / and, for its regular files, (inode, mtime), so rewriting a stray file
    left there by an earlier run counts as writing it."""
    out = {}
    for name in os.listdir("/"):
        st = os.lstat(os.path.join("/", name))
        out[name] = (st.st_ino, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None
    return out


def read_checkpoint(path):
    """Kafka's offset checkpoint file: a version line "0", the entry count, then one
    "topic partition offset" line each. Returns {(topic, partition): offset}."""
    lines = Path(path).read_text().splitlines()
    assert lines[:1] == ["0"] and len(lines) >= 2 and int(lines[1]) == len(lines) - 2, \
        f"{path} is not a version-0 checkpoint with its entry count: {lines[:5]}"
    return {(t, int(p)): int(o) for t, p, o in (line.split(" ") for line in lines[2:])}


def test_no_file_outside_the_data_dir(own_broker):
    broker = own_broker
    before = root_entries()
    broker.start()
    topic = fresh("files")
    create_topics(broker.bootstrap, [topic], partitions=1)
    produce(broker.bootstrap, topic, values(topic, 10))
    assert delete_records(broker.bootstrap, topic, DELETE_TO) == DELETE_TO
    assert broker.stop() == 0, "SIGTERM should exit 0"

    problems = []
    after = root_entries()
    added = sorted(set(after) - set(before))
    changed = sorted(n for n in set(after) & set(before) if after[n] != before[n])
    if added or changed:
        problems.append(f"written in /: new {added}, rewritten {changed}")
    if sorted(os.listdir(broker.workdir)) != ["data"]:
        problems.append(f"the broker's cwd holds {sorted(os.listdir(broker.workdir))}, not only data/")
    checkpoints = {}
    for name in ("recovery-point-offset-checkpoint", "log-start-offset-checkpoint"):
        path = broker.data_dir / name
        if path.exists():
            checkpoints[name] = read_checkpoint(path)
        else:
            problems.append(f"no {name} in the data directory")
    start = checkpoints.get("log-start-offset-checkpoint", {}).get((topic, 0))
    if "log-start-offset-checkpoint" in checkpoints and start != DELETE_TO:
        problems.append(f"log-start-offset-checkpoint has {start} for {topic} 0, not {DELETE_TO}")
    # After a graceful stop everything is synced: the recovery point is the log end.
    point = checkpoints.get("recovery-point-offset-checkpoint", {}).get((topic, 0))
    if "recovery-point-offset-checkpoint" in checkpoints and point != 10:
        problems.append(f"recovery-point-offset-checkpoint has {point} for {topic} 0, not 10")
    assert not problems, "\n".join(problems)


# --- DescribeLogDirs ------------------------------------------------------------------------

def topic_with_data(broker, partitions=2, count=20):
    """A new topic with `count` records in each of its partitions."""
    topic = fresh("log-dirs")
    create_topics(broker.bootstrap, [topic], partitions=partitions)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
    for p in range(partitions):
        for v in values(f"{topic}/{p}", count, size=500):
            producer.produce(topic, value=v, partition=p)
    assert producer.flush(60) == 0
    return topic


def sizes_on_disk(broker, topic, partitions):
    """{partition: bytes of its segment files}, or None when the data directory is unknown."""
    data_dir = getattr(broker, "data_dir", None)
    if data_dir is None:
        return None
    return {p: sum(f.stat().st_size for f in (Path(data_dir) / f"{topic}-{p}").glob("*.log"))
            for p in range(partitions)}


def test_describe_log_dirs_versions(broker):
    topic = topic_with_data(broker)
    on_disk = sizes_on_disk(broker, topic, 2)
    data_dir = getattr(broker, "data_dir", None)
    for version in (1, 2, 3, 4):
        for wanted in (None, {topic: [1]}):
            top_error, results = kw.describe_log_dirs(broker.bootstrap, version, wanted)
            what = f"v{version} topics={wanted}: {results}"
            assert top_error in (None, 0), what
            assert len(results) == 1 and results[0]["error_code"] == 0, what
            r = results[0]
            assert os.path.isabs(r["log_dir"]), what
            if data_dir is not None:
                assert r["log_dir"] == os.path.realpath(data_dir), what
            partitions = r["topics"].get(topic, {})
            assert sorted(partitions) == ([0, 1] if wanted is None else [1]), what
            if wanted is not None:
                assert list(r["topics"]) == [topic], what
            for p, size in partitions.items():
                assert size > 0 and (on_disk is None or size == on_disk[p]), f"partition {p}: {what}"
            if version == 4 and data_dir is not None:
                space = os.statvfs(data_dir)
                assert r["total_bytes"] == space.f_blocks * space.f_frsize, what
                assert 0 < r["usable_bytes"] <= r["total_bytes"], what


def test_kafka_log_dirs_describe(broker):
    """kafka-log-dirs.sh --describe, i.e. LogDirsCommand from Kafka's kafka-tools jar."""
    java = shutil.which("java")
    if java is None:
        pytest.fail("java not found", pytrace=False)
    if not any(TOOLS_JARS.glob("kafka-tools-*.jar")):
        pytest.fail("kafka-tools not set up: run scripts/setup-test-deps.sh", pytrace=False)
    topic = topic_with_data(broker)
    on_disk = sizes_on_disk(broker, topic, 2)

    cmd = [java, "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
           "-cp", f"{TOOLS_JARS}/*", "org.apache.kafka.tools.LogDirsCommand",
           "--bootstrap-server", broker.bootstrap, "--describe"]
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    print(f"LogDirsCommand took {time.monotonic() - started:.2f} s")
    detail = f"exit {out.returncode}\n--- stdout ---\n{out.stdout[-4000:]}\n--- stderr ---\n{out.stderr[-4000:]}"
    assert out.returncode == 0, detail
    json_lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert json_lines, f"no JSON in the output: {detail}"
    described = json.loads(json_lines[-1])
    assert [b["broker"] for b in described["brokers"]] == [1], detail
    log_dirs = described["brokers"][0]["logDirs"]
    assert len(log_dirs) == 1 and log_dirs[0]["error"] is None, detail
    if getattr(broker, "data_dir", None) is not None:
        assert log_dirs[0]["logDir"] == os.path.realpath(broker.data_dir), detail
    sizes = {e["partition"]: e["size"] for e in log_dirs[0]["partitions"]}
    for p in range(2):
        name = f"{topic}-{p}"
        assert name in sizes, f"{name} not listed: {detail}"
        assert sizes[name] > 0 and (on_disk is None or sizes[name] == on_disk[p]), \
            f"{name}: size {sizes[name]}, {on_disk and on_disk[p]} bytes on disk"
