"""The checker on small hand-written histories: each anomaly it names is found when present and
not reported when absent."""

import itertools

from hwjepsen import checker

clock = itertools.count(1)


def ev(process, type_, f, value=None):
    return {"time": next(clock), "process": process, "type": type_, "f": f, "value": value}


def send(process, records, type_="ok"):
    """records: [(key, value, offset)]; offset None when not acknowledged."""
    return [ev(process, "invoke", "send", [[k, v] for k, v, _ in records]),
            ev(process, type_, "send", [[k, v, o] for k, v, o in records])]


def poll(process, records):
    """records: [(key, offset, value)]"""
    return [ev(process, "invoke", "poll"), ev(process, "ok", "poll", [list(r) for r in records])]


def names(events):
    anomalies, _ = checker.check(events)
    return {name for name, cases in checker.invalid(anomalies).items()}


def test_a_clean_history_is_valid():
    h = send("p", [(0, 1, 0), (0, 2, 1)]) + send("p", [(1, 3, 0)])
    h += poll("c", [(0, 0, 1), (0, 1, 2)]) + poll("c", [(1, 0, 3)])
    assert names(h) == set()


def test_lost_write_below_a_read_position():
    h = send("p", [(0, 1, 0)]) + send("p", [(0, 2, 1)]) + send("p", [(0, 3, 2)])
    # The reader saw offsets 0 and 2 but never value 2 at offset 1.
    h += poll("c", [(0, 0, 1)]) + poll("c2", [(0, 2, 3)])
    found, _ = checker.check(h)
    assert [c["value"] for c in found["lost-write"]] == [2]


def test_acknowledged_but_never_read_is_unseen():
    h = send("p", [(0, 1, 0), (0, 2, 1)]) + poll("c", [(0, 0, 1)])
    found, _ = checker.check(h)
    assert [c["value"] for c in found["unseen"]] == [2]
    assert found["lost-write"] == []


def test_an_indeterminate_send_without_offset_need_not_be_read():
    h = send("p", [(0, 1, 0)]) + send("p", [(0, 2, None)], type_="info")
    h += poll("c", [(0, 0, 1)])
    assert names(h) == set()


def test_duplicate_and_inconsistent_offsets():
    h = send("p", [(0, 1, 0)]) + poll("c", [(0, 0, 1), (0, 1, 1)])
    assert "duplicate" in names(h)
    h = send("p", [(0, 1, 0)]) + poll("c", [(0, 0, 9)]) + send("q", [(0, 9, 5)])
    assert "inconsistent-offsets" in names(h)


def test_phantom_read():
    h = send("p", [(0, 1, 0)]) + poll("c", [(0, 0, 1), (0, 1, 77)])
    assert "phantom-read" in names(h)


def test_poll_skip_and_nonmonotonic_poll():
    h = send("p", [(0, 1, 0), (0, 2, 1), (0, 3, 2)])
    skip = h + poll("c", [(0, 0, 1)]) + poll("c", [(0, 2, 3)]) + poll("d", [(0, 1, 2)])
    assert "poll-skip" in names(skip)
    back = h + poll("c", [(0, 0, 1), (0, 1, 2)]) + poll("c", [(0, 1, 2), (0, 2, 3)])
    assert "nonmonotonic-poll" in names(back)
    inside = h + poll("c", [(0, 0, 1), (0, 2, 3)]) + poll("d", [(0, 1, 2)])
    assert "int-poll-skip" in names(inside)


def test_an_assign_or_a_crash_resets_positions():
    h = send("p", [(0, 1, 0), (0, 2, 1)])
    h += poll("c", [(0, 0, 1), (0, 1, 2)]) + [ev("c", "ok", "assign", [0])]
    h += poll("c", [(0, 0, 1), (0, 1, 2)]) + [ev("c", "info", "crash")]
    h += poll("c", [(0, 0, 1), (0, 1, 2)])
    assert names(h) == set()
    # Assigning another partition keeps partition 0's position.
    h += [ev("c", "ok", "assign", [1])] + poll("c", [(0, 0, 1)])
    assert names(h) == {"nonmonotonic-poll"}


def test_nonmonotonic_send():
    h = send("p", [(0, 1, 5)]) + send("p", [(0, 2, 3)]) + poll("c", [(0, 3, 2), (0, 5, 1)])
    assert names(h) == {"nonmonotonic-send"}
    # Another producer's interleaved record between two of one operation is normal.
    h = send("p", [(0, 1, 0), (0, 2, 2)]) + send("q", [(0, 3, 1)])
    h += poll("c", [(0, 0, 1), (0, 1, 3), (0, 2, 2)])
    found, _ = checker.check(h)
    assert found["int-send-skip"] and names(h) == set()


def commit(process, offsets, type_="ok", group="g"):
    value = {"group": group, "offsets": [list(x) for x in offsets]}
    return [ev(process, "invoke", "commit", value), ev(process, type_, "commit", value)]


def committed(process, offsets, group="g"):
    return [ev(process, "invoke", "committed", {"group": group}),
            ev(process, "ok", "committed", {"group": group,
                                            "offsets": [list(x) for x in offsets]})]


def test_committed_offsets_must_not_move_back():
    ok = commit("a", [(0, 5)]) + committed("a", [(0, 5)]) + commit("b", [(0, 9)])
    ok += committed("b", [(0, 9)])
    assert names(ok) == set()
    assert names(ok + committed("a", [(0, 5)])) == {"committed-offset-moved-back"}
    assert names(commit("a", [(0, 5)]) + committed("b", [(0, -1001)])) == {
        "committed-offset-moved-back"}
    # A refused commit sets nothing.
    assert names(commit("a", [(0, 5)], type_="fail") + committed("b", [(0, -1001)])) == set()


def test_a_broker_that_exits_on_its_own_is_reported():
    h = [ev("nemesis", "info", "node-exit", {"node": 2, "code": 101})]
    assert names(h) == {"node-crash"}
