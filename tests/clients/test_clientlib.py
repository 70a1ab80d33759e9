"""The checks in clientlib catch what they are meant to catch (no broker needed)."""

import copy

import pytest

from clientlib import (PARTITIONS, Got, check_mid_batch, check_roundtrip, make_records,
                       mid_batch_offsets)


def perfect_run(n=300):
    records = make_records("selftest", "none", n=n)
    next_off = {p: 0 for p in range(PARTITIONS)}
    got = []
    for r in records:
        r.acked_partition, r.acked_offset = r.partition, next_off[r.partition]
        next_off[r.partition] += 1
        got.append(Got(r.partition, r.acked_offset, r.key, r.value, list(r.headers), r.timestamp))
    return records, got


def test_records_are_varied():
    records = make_records("selftest", "gzip", n=2000)
    assert len({r.key for r in records}) == 2000
    assert len({len(r.value) for r in records}) > 500
    assert min(len(r.value) for r in records) >= 1 and max(len(r.value) for r in records) > 1000
    assert {len(r.headers) for r in records} == {1, 2}
    assert any(v == b"" for r in records for _, v in r.headers)
    assert {r.partition for r in records} == set(range(PARTITIONS))
    ts = [r.timestamp for r in records]
    assert any(a > b for a, b in zip(ts, ts[1:])), "timestamps should not be monotonic"
    assert make_records("selftest", "gzip", n=50, base_ts=1) == make_records("selftest", "gzip", n=50, base_ts=1)


def test_perfect_run_passes():
    records, got = perfect_run()
    check_roundtrip(records, got, "perfect")


@pytest.mark.parametrize("damage", [
    "value", "key", "header_value", "header_dropped", "timestamp", "timestamp_type",
    "missing", "duplicate", "extra", "swapped", "offset_shift", "unacked", "wrong_partition_ack",
])
def test_damage_is_detected(damage):
    records, got = perfect_run()
    g = got[37]
    if damage == "value":
        g.value = g.value[:-1] + bytes([g.value[-1] ^ 1])
    elif damage == "key":
        g.key = b"x" + g.key
    elif damage == "header_value":
        g.headers = [(g.headers[0][0], g.headers[0][1] + b"!")] + g.headers[1:]
    elif damage == "header_dropped":
        g.headers = g.headers[1:]
    elif damage == "timestamp":
        g.timestamp += 1
    elif damage == "timestamp_type":
        g.create_time = False
    elif damage == "missing":
        del got[37]
    elif damage == "duplicate":
        got.insert(38, copy.copy(g))
    elif damage == "extra":
        last = max(x.offset for x in got if x.partition == 0)
        got.append(Got(0, last + 1, b"k", b"v", [], 0))
    elif damage == "swapped":
        a = next(i for i in range(40, 300) if got[i].partition == g.partition)
        got[37], got[a] = got[a], got[37]
    elif damage == "offset_shift":
        for x in got:
            if x.partition == 1:
                x.offset += 1
    elif damage == "unacked":
        records[5].acked_offset = None
        records[5].ack_error = "timed out"
    elif damage == "wrong_partition_ack":
        records[5].acked_partition = (records[5].partition + 1) % PARTITIONS
    with pytest.raises(AssertionError):
        check_roundtrip(records, got, damage)


def test_mid_batch_check():
    records, got = perfect_run()
    start = mid_batch_offsets(records)[0]
    part0 = [g for g in got if g.partition == 0]
    check_mid_batch(records, part0[start:start + 50], 0, start, "ok")
    with pytest.raises(AssertionError):   # broker/client returned the whole batch
        check_mid_batch(records, part0[0:50], 0, start, "from batch start")
    with pytest.raises(AssertionError):   # one record short
        check_mid_batch(records, part0[start:start + 10], 0, start, "short")
    with pytest.raises(AssertionError):   # gap after the first record
        check_mid_batch(records, [part0[start]] + part0[start + 2:start + 52], 0, start, "gap")


def test_produce_window_check():
    records = make_records("selftest", "none", n=30, timestamps=False, printable=True)
    got = []
    for j, r in enumerate(records):
        r.acked_partition, r.acked_offset = r.partition, sum(1 for x in records[:j] if x.partition == r.partition)
        got.append(Got(r.partition, r.acked_offset, r.key, r.value, list(r.headers), 1000))
    check_roundtrip(records, got, "in window", ts_range=(900, 1100))
    with pytest.raises(AssertionError):
        check_roundtrip(records, got, "outside window", ts_range=(1001, 1100))
