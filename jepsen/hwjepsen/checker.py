"""The queue checker. It takes a history of events (see workers/history_out.py) and reports
anomalies under the names Jepsen's Kafka test gives them:

  lost-write            an acknowledged value, below the highest position some ok poll of its
                        partition reached, that no ok poll returned
  unseen                an acknowledged value no ok poll returned at all, by the end (the final
                        reads drain every partition, so this is a loss the reads could not reach)
  duplicate             one value at two offsets (or in two partitions)
  inconsistent-offsets  one offset of a partition holding two different values
  nonmonotonic-send     a producer's later acknowledged send to a partition landing at or below
                        its earlier one
  int-nonmonotonic-send the same, inside one operation
  nonmonotonic-poll     a consumer's poll of a partition starting at or below where its previous
                        poll ended, with no reassignment between
  poll-skip             a consumer's poll starting past the next record of the partition (some
                        record in between was never handed to it), with no reassignment between
  int-poll-skip         the same, inside one poll (int-nonmonotonic-poll: going back inside one)
  int-send-skip         another producer's record landing between two records of one send
                        operation: normal for Kafka without transactions, so only informational
  phantom-read          a polled value nobody sent
  committed-offset-moved-back
                        a read of a group's committed offset returning less than a commit that
                        had been acknowledged before the read began (or less than what an
                        earlier read, finished before it began, returned)
  node-crash            a broker process that exited on its own

Positions are compared on the dense version order: for each partition, the offsets at which any
value was observed (acknowledged sends and every poll), numbered 0, 1, 2, ...; offsets nothing
was seen at (control batches, never-read tails) do not count as skipped.

A process's position state ends at a crash event or an info (indeterminate) completion, as in
Jepsen, where a new process takes over; an assign keeps the state of the partitions it lists and
a revoke or loss drops the partitions it lists.
"""

from collections import defaultdict

INFORMATIONAL = {"int-send-skip"}
CASES_KEPT = 20


class Version:
    """The dense version order of one partition."""

    def __init__(self, offsets_to_values):
        self.offsets = sorted(offsets_to_values)
        self.index_of_offset = {o: i for i, o in enumerate(self.offsets)}
        self.first_index = {}
        self.last_index = {}
        for o in self.offsets:
            i = self.index_of_offset[o]
            for v in offsets_to_values[o]:
                self.first_index.setdefault(v, i)
                self.last_index[v] = i


def check(events):
    """Returns {anomaly name: [case, ...]} (every name present, possibly empty) and stats."""
    events = sorted(events, key=lambda e: e["time"])
    anomalies = defaultdict(list)
    ops = completed_ops(events)

    sends = [op for op in ops if op["f"] == "send" and op["type"] in ("ok", "info")]
    polls = [op for op in ops if op["f"] == "poll" and op["type"] == "ok"]

    # Every value any send invoked, and the acknowledged ones (a record whose delivery report
    # carried an offset was acknowledged by the broker, even if its operation as a whole is
    # indeterminate).
    invoked_values = set()
    acked = {}  # value -> (key, offset, op)
    for op in ops:
        if op["f"] == "send":
            for record in op["value"] or []:
                invoked_values.add(record[1])
    for op in sends:
        for key, value, offset in op["value"]:
            if offset is not None:
                acked[value] = (key, offset, op)

    raw = defaultdict(lambda: defaultdict(set))  # key -> offset -> values
    where = defaultdict(set)  # value -> {(key, offset)}
    for value, (key, offset, _) in acked.items():
        raw[key][offset].add(value)
        where[value].add((key, offset))
    for op in polls:
        for key, offset, value in op["value"]:
            raw[key][offset].add(value)
            where[value].add((key, offset))
    versions = {key: Version(offsets) for key, offsets in raw.items()}
    index = OpIndex(ops)

    for key, offsets in sorted(raw.items()):
        for offset, values in sorted(offsets.items()):
            if len(values) > 1:
                anomalies["inconsistent-offsets"].append(
                    {"key": key, "offset": offset, "values": sorted(values),
                     "ops": index.touching(key, offset)})
    for value, places in where.items():
        if len(places) > 1:
            anomalies["duplicate"].append({"value": value, "at": sorted(places),
                                           "ops": index.with_value(value)})
        if value not in invoked_values:
            anomalies["phantom-read"].append({"value": value, "at": sorted(places),
                                              "ops": index.with_value(value)})

    read = defaultdict(set)  # key -> values returned by ok polls
    for op in polls:
        for key, _, value in op["value"]:
            read[key].add(value)
    everything_read = set().union(*read.values()) if read else set()

    for key, version in versions.items():
        bound = max((version.first_index[v] for v in read[key] if v in version.first_index),
                    default=-1)
        for value, (k, offset, op) in acked.items():
            if k != key or value in read[key]:
                continue
            if version.last_index.get(value, bound + 1) <= bound:
                anomalies["lost-write"].append(
                    {"key": key, "value": value, "offset": offset, "writer": brief(op),
                     "highest_read_offset": version.offsets[bound]})
    lost = {c["value"] for c in anomalies["lost-write"]}
    for value, (key, offset, op) in sorted(acked.items()):
        if value not in everything_read and value not in lost:
            anomalies["unseen"].append({"key": key, "value": value, "offset": offset,
                                        "writer": brief(op)})

    check_sends(ops, versions, anomalies)
    check_polls(ops, versions, anomalies)
    check_committed_offsets(ops, anomalies)
    for event in events:
        if event["f"] == "node-exit":
            anomalies["node-crash"].append(event["value"])

    stats = {"ops": sum(1 for op in ops if op["type"] != "invoke"),
             "sends_ok": sum(1 for op in ops if op["f"] == "send" and op["type"] == "ok"),
             "sends_info": sum(1 for op in ops if op["f"] == "send" and op["type"] == "info"),
             "acked_values": len(acked), "polls": len(polls),
             "values_read": len(everything_read),
             "commits_ok": sum(1 for op in ops if op["f"] == "commit" and op["type"] == "ok")}
    return anomalies, stats


def completed_ops(events):
    """Pairs each invocation with its process's next completion of the same function; events
    that are not invocations or completions (assign, crash, ...) pass through as ops of their
    own. Each op gets `invoke_time` and `process_epoch`, the process's incarnation: it grows
    after a crash or an indeterminate completion."""
    pending = {}
    epoch = defaultdict(int)
    ops = []
    for e in events:
        process = e["process"]
        if e["type"] == "invoke":
            pending[(process, e["f"])] = e
            continue
        op = dict(e)
        inv = pending.pop((process, e["f"]), None)
        op["invoke_time"] = inv["time"] if inv else e["time"]
        op["invoke_value"] = inv["value"] if inv else None
        op["process_epoch"] = (process, epoch[process])
        ops.append(op)
        if e["f"] == "crash" or (e["type"] == "info" and e["f"] in ("send", "poll")):
            epoch[process] += 1
    # Invocations that never completed (the worker was killed) are indeterminate.
    for (process, f), inv in pending.items():
        op = dict(inv, type="info", invoke_time=inv["time"], invoke_value=inv["value"],
                  process_epoch=(process, epoch[process]))
        if f == "send":
            op["value"] = [[k, v, None] for k, v in inv["value"]]
        ops.append(op)
    return ops


def check_sends(ops, versions, anomalies):
    last = {}  # (process epoch, key) -> (index, value, op)
    for op in ops:
        if op["f"] != "send" or op["type"] not in ("ok", "info"):
            continue
        within = {}
        for key, value, offset in op["value"]:
            if offset is None or key not in versions:
                continue
            index = versions[key].first_index.get(value)
            if index is None:
                continue
            if key in within:
                delta = index - within[key][0]
                if delta < 1:
                    anomalies["int-nonmonotonic-send"].append(
                        {"key": key, "values": [within[key][1], value], "op": brief(op)})
                elif delta > 1:
                    anomalies["int-send-skip"].append(
                        {"key": key, "values": [within[key][1], value], "op": brief(op)})
            else:
                prev = last.get((op["process_epoch"], key))
                if prev is not None and index - prev[0] < 1:
                    anomalies["nonmonotonic-send"].append(
                        {"key": key, "values": [prev[1], value], "ops": [brief(prev[2]),
                                                                          brief(op)]})
            within[key] = (index, value)
        for key, (index, value) in within.items():
            last[(op["process_epoch"], key)] = (index, value, op)


def check_polls(ops, versions, anomalies):
    last = {}  # process epoch -> {key: (index, value, op)}
    for op in ops:
        state = last.setdefault(op["process_epoch"], {})
        if op["f"] == "assign" and op["type"] == "ok":
            # A new assignment starts at the committed (or reset) offset: keep only the
            # positions of partitions not named in it.
            for key in op["value"] or []:
                state.pop(key, None)
            continue
        if op["f"] in ("revoke", "lost"):
            for key in op["value"] or []:
                state.pop(key, None)
            continue
        if op["f"] != "poll" or op["type"] != "ok":
            continue
        by_key = defaultdict(list)
        for key, offset, value in op["value"]:
            index = versions[key].index_of_offset.get(offset)
            by_key[key].append((index, value))
        for key, seen in by_key.items():
            prev = state.get(key)
            if prev is not None and seen[0][0] is not None and prev[0] is not None:
                delta = seen[0][0] - prev[0]
                case = {"key": key, "values": [prev[1], seen[0][1]], "ops": [brief(prev[2]),
                                                                              brief(op)]}
                if delta < 1:
                    anomalies["nonmonotonic-poll"].append(case)
                elif delta > 1:
                    case["skipped_offsets"] = versions[key].offsets[prev[0] + 1:seen[0][0]][:10]
                    anomalies["poll-skip"].append(case)
            for (i1, v1), (i2, v2) in zip(seen, seen[1:]):
                if i1 is None or i2 is None:
                    continue
                if i2 - i1 < 1:
                    anomalies["int-nonmonotonic-poll"].append(
                        {"key": key, "values": [v1, v2], "op": brief(op)})
                elif i2 - i1 > 1:
                    anomalies["int-poll-skip"].append(
                        {"key": key, "values": [v1, v2], "op": brief(op),
                         "skipped_offsets": versions[key].offsets[i1 + 1:i2][:10]})
            state[key] = (seen[-1][0], seen[-1][1], op)


def check_committed_offsets(ops, anomalies):
    """A group's committed offset of a partition is a register written by commits and read by
    OffsetFetch. A read must not return less than the largest commit acknowledged before the
    read was invoked, nor less than a read that completed before it was invoked. (Commits only
    move forward in this workload: each member commits past what it read, and the group
    protocols fence members that no longer own a partition.)"""
    commits = defaultdict(list)  # (group, key) -> [(complete time, offset)]
    reads = defaultdict(list)  # (group, key) -> [(invoke, complete, offset, op)]
    for op in ops:
        if op["type"] != "ok" or op["f"] not in ("commit", "committed"):
            continue
        group = op["value"]["group"]
        for key, offset in op["value"]["offsets"]:
            if op["f"] == "commit":
                commits[(group, key)].append((op["time"], offset, op))
            else:
                reads[(group, key)].append((op["invoke_time"], op["time"], offset, op))
    for gk, rs in reads.items():
        cs = sorted(commits.get(gk, []), key=lambda c: c[0])
        done_reads = sorted(rs, key=lambda r: r[1])
        for invoke, _, offset, op in rs:
            floor_commit = max((c for c in cs if c[0] < invoke), key=lambda c: c[1],
                               default=None)
            floor_read = max((r for r in done_reads if r[1] < invoke), key=lambda r: r[2],
                             default=None)
            shown = offset if offset >= 0 else None
            if floor_commit is not None and (shown is None or shown < floor_commit[1]):
                anomalies["committed-offset-moved-back"].append(
                    {"group": gk[0], "key": gk[1], "read": offset,
                     "acknowledged_commit": floor_commit[1],
                     "ops": [brief(floor_commit[2]), brief(op)]})
            elif floor_read is not None and floor_read[2] >= 0 and (
                    shown is None or shown < floor_read[2]):
                anomalies["committed-offset-moved-back"].append(
                    {"group": gk[0], "key": gk[1], "read": offset, "earlier_read": floor_read[2],
                     "ops": [brief(floor_read[3]), brief(op)]})


class OpIndex:
    """Which operations sent or returned each value and each (partition, offset), to print
    with an anomaly."""

    def __init__(self, ops):
        self.by_value = defaultdict(list)
        self.by_place = defaultdict(list)
        for op in ops:
            if op["f"] == "send":
                for key, value, offset in op["value"] or []:
                    self.by_value[value].append(op)
                    if offset is not None:
                        self.by_place[(key, offset)].append(op)
            elif op["f"] == "poll" and op["type"] == "ok":
                for key, offset, value in op["value"]:
                    self.by_value[value].append(op)
                    self.by_place[(key, offset)].append(op)

    def with_value(self, value):
        return [brief(op) for op in self.by_value.get(value, [])[:6]]

    def touching(self, key, offset):
        return [brief(op) for op in self.by_place.get((key, offset), [])[:6]]


def brief(op):
    """An operation as printed in a report: who, when, what, and the records that matter."""
    value = op["value"]
    if op["f"] == "poll" and isinstance(value, list) and len(value) > 8:
        value = value[:4] + ["..."] + value[-4:]
    return {"process": op["process"], "type": op["type"], "f": op["f"],
            "invoke_time": op["invoke_time"], "time": op["time"], "value": value}


def invalid(anomalies):
    return {name: cases for name, cases in anomalies.items()
            if cases and name not in INFORMATIONAL}
