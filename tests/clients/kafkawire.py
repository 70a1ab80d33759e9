"""Hand-built Kafka frames, for tests that send what no well-behaved client would."""

import socket
import struct
import time

import crc32c


def frame(api_key, version, correlation_id, body, client_id=b"bad-input-test", flexible=False):
    """A request frame: size, header (v1, or v2 when flexible), body."""
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    if flexible:
        header += b"\x00"  # no tagged fields
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def read_response(sock):
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    return recv_exact(sock, size)


def connect(bootstrap, timeout=5.0):
    host, port = bootstrap.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def closed_by_peer(sock, timeout=5.0):
    """True if the broker closes the connection within `timeout` without sending anything."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def api_versions_v0(bootstrap):
    """ApiVersions v0 on a fresh connection: (error_code, {api_key: (min, max)})."""
    with connect(bootstrap) as sock:
        sock.sendall(frame(18, 0, 1, b""))
        body = read_response(sock)
    correlation_id, error_code, count = struct.unpack(">ihi", body[:10])
    assert correlation_id == 1
    keys = {}
    for i in range(count):
        key, lo, hi = struct.unpack(">hhh", body[10 + 6 * i: 16 + 6 * i])
        keys[key] = (lo, hi)
    return error_code, keys


def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def varint(n):
    n = (n << 1) ^ (n >> 63)
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def record_batch(values, timestamp_ms=None, attributes=0, producer=(-1, -1, -1)):
    """An uncompressed RecordBatch v2 holding `values` (bytes), with a correct CRC-32C."""
    timestamp_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    records = b""
    for i, value in enumerate(values):
        body = b"\x00" + varint(0) + varint(i) + varint(-1) + varint(len(value)) + value + varint(0)
        records += varint(len(body)) + body
    producer_id, producer_epoch, base_sequence = producer
    after_crc = struct.pack(">hiqqqhii", attributes, len(values) - 1, timestamp_ms, timestamp_ms,
                            producer_id, producer_epoch, base_sequence, len(values)) + records
    crc = crc32c.crc32c(after_crc)
    rest = struct.pack(">ibI", -1, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(rest)) + rest


def produce_v3(topic, partition, records, acks=-1, timeout_ms=10000):
    body = struct.pack(">hhi", -1, acks, timeout_ms)
    body += struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">i", partition) + struct.pack(">i", len(records)) + records
    return body


def produce_error(bootstrap, topic, partition, records, correlation_id=7):
    """Sends Produce v3 and returns (error_code, base_offset) of the one partition."""
    with connect(bootstrap) as sock:
        sock.sendall(frame(0, 3, correlation_id, produce_v3(topic, partition, records)))
        body = read_response(sock)
    assert struct.unpack(">i", body[:4])[0] == correlation_id
    at = 4
    (topics,) = struct.unpack(">i", body[at:at + 4]); at += 4
    assert topics == 1
    (name_len,) = struct.unpack(">h", body[at:at + 2]); at += 2 + name_len
    (partitions,) = struct.unpack(">i", body[at:at + 4]); at += 4
    assert partitions == 1
    index, error_code, base_offset = struct.unpack(">ihq", body[at:at + 14])
    assert index == partition
    return error_code, base_offset


def metadata_v1(bootstrap, topics):
    """Metadata v1 for `topics` (auto-creates them on a broker that allows it)."""
    body = struct.pack(">i", len(topics)) + b"".join(string(t) for t in topics)
    with connect(bootstrap) as sock:
        sock.sendall(frame(3, 1, 3, body))
        return read_response(sock)


def offset_for_leader_epoch_v2(bootstrap, topic, partition, leader_epoch, current_leader_epoch=-1):
    """Returns (error_code, leader_epoch, end_offset) for one partition."""
    body = struct.pack(">i", 1) + string(topic) + struct.pack(">iiii", 1, partition, current_leader_epoch, leader_epoch)
    with connect(bootstrap) as sock:
        sock.sendall(frame(23, 2, 9, body))
        response = read_response(sock)
    at = 4 + 4  # correlation id, throttle time
    (topics,) = struct.unpack(">i", response[at:at + 4]); at += 4
    assert topics == 1
    (name_len,) = struct.unpack(">h", response[at:at + 2]); at += 2 + name_len
    (partitions,) = struct.unpack(">i", response[at:at + 4]); at += 4
    error_code, index, epoch, end_offset = struct.unpack(">hiiq", response[at:at + 18])
    assert index == partition
    return error_code, epoch, end_offset


def fetch_v4(topic, partition, offset, max_wait_ms, min_bytes=1, max_bytes=1 << 20):
    body = struct.pack(">iiiib", -1, max_wait_ms, min_bytes, max_bytes, 0)
    body += struct.pack(">i", 1) + string(topic) + struct.pack(">iiqi", 1, partition, offset, max_bytes)
    return body


def offset_delete_v0(bootstrap, group, topic, partitions):
    """OffsetDelete v0: returns (top-level error, {partition: error})."""
    body = string(group) + struct.pack(">i", 1) + string(topic) + struct.pack(">i", len(partitions))
    body += b"".join(struct.pack(">i", p) for p in partitions)
    with connect(bootstrap) as sock:
        sock.sendall(frame(47, 0, 11, body))
        response = read_response(sock)
    at = 4
    error, _throttle, topics = struct.unpack(">hii", response[at:at + 10]); at += 10
    results = {}
    for _ in range(topics):
        (name_len,) = struct.unpack(">h", response[at:at + 2]); at += 2 + name_len
        (count,) = struct.unpack(">i", response[at:at + 4]); at += 4
        for _ in range(count):
            partition, code = struct.unpack(">ih", response[at:at + 6]); at += 6
            results[partition] = code
    return error, results


def uvarint(n):
    """Unsigned varint, the length prefix of compact (flexible-version) strings and arrays."""
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


class Reader:
    """Reads a response body field by field; `compact` selects flexible-version encodings."""

    def __init__(self, data, compact):
        self.data, self.at, self.compact = data, 0, compact

    def take(self, fmt):
        (value,) = struct.unpack_from(">" + fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return value

    def uvarint(self):
        shift = value = 0
        while True:
            byte = self.data[self.at]
            self.at += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def count(self):
        """An array's length (-1 for null)."""
        return self.uvarint() - 1 if self.compact else self.take("i")

    def string(self):
        n = self.count() if self.compact else self.take("h")
        if n < 0:
            return None
        s = self.data[self.at:self.at + n].decode()
        self.at += n
        return s

    def tags(self):
        """Skips the tagged fields that end each structure in flexible versions."""
        if self.compact:
            for _ in range(self.uvarint()):
                self.uvarint()
                self.at += self.uvarint()


def describe_log_dirs(bootstrap, version, topics=None):
    """DescribeLogDirs (API key 35, v1-v4; flexible from v2). `topics` is {name: [partitions]}
    or None for every partition. Returns (top-level error_code, or None before v3; results),
    each result a dict: error_code, log_dir, topics {name: {partition: partition_size}},
    total_bytes and usable_bytes (None before v4)."""
    flexible = version >= 2

    def array(n):
        return uvarint(n + 1) if flexible else struct.pack(">i", n)

    def text(s):
        b = s.encode()
        return uvarint(len(b) + 1) + b if flexible else string(s)

    tag = b"\x00" if flexible else b""
    if topics is None:
        body = b"\x00" if flexible else struct.pack(">i", -1)
    else:
        body = array(len(topics))
        for name, partitions in topics.items():
            body += text(name) + array(len(partitions)) + b"".join(struct.pack(">i", p) for p in partitions) + tag
    body += tag
    with connect(bootstrap) as sock:
        sock.sendall(frame(35, version, 35, body, flexible=flexible))
        r = Reader(read_response(sock), flexible)
    assert r.take("i") == 35, "correlation id"
    r.tags()  # response header v1 (flexible versions)
    r.take("i")  # throttle_time_ms
    top_error = r.take("h") if version >= 3 else None
    results = []
    for _ in range(r.count()):
        result = {"error_code": r.take("h"), "log_dir": r.string(), "topics": {}}
        for _ in range(r.count()):
            partitions = result["topics"].setdefault(r.string(), {})
            for _ in range(r.count()):
                index, size, _lag, _future = r.take("i"), r.take("q"), r.take("q"), r.take("?")
                partitions[index] = size
                r.tags()
            r.tags()
        result["total_bytes"] = r.take("q") if version >= 4 else None
        result["usable_bytes"] = r.take("q") if version >= 4 else None
        r.tags()
        results.append(result)
    r.tags()
    assert r.at == len(r.data), f"{len(r.data) - r.at} bytes left over in DescribeLogDirs v{version}"
    return top_error, results


def describe_quorum_v0(bootstrap, timeout=5.0):
    """DescribeQuorum v0 (API key 55, flexible) for __cluster_metadata-0 as the node at
    `bootstrap` sees it: a dict with error_code, leader_id, leader_epoch, high_watermark and
    voters {replica_id: log_end_offset}."""
    topic = b"__cluster_metadata"
    partition = struct.pack(">i", 0) + b"\x00"
    body = uvarint(2) + uvarint(len(topic) + 1) + topic + uvarint(2) + partition + b"\x00" + b"\x00"
    with connect(bootstrap, timeout) as sock:
        sock.sendall(frame(55, 0, 55, body, flexible=True))
        r = Reader(read_response(sock), True)
    assert r.take("i") == 55, "correlation id"
    r.tags()
    result = {"error_code": r.take("h")}
    for _ in range(r.count()):
        r.string()
        for _ in range(r.count()):
            r.take("i")
            result["partition_error_code"] = r.take("h")
            result["leader_id"], result["leader_epoch"], result["high_watermark"] = r.take("i"), r.take("i"), r.take("q")
            voters = {}
            for _ in range(r.count()):
                replica, end = r.take("i"), r.take("q")
                r.tags()
                voters[replica] = end
            result["voters"] = voters
            for _ in range(r.count()):
                r.take("i"), r.take("q")
                r.tags()
            r.tags()
        r.tags()
    return result


def find_coordinator_v1(bootstrap, key, key_type):
    """FindCoordinator v1 (key_type 0: a group, 1: a transactional id): (error, node id)."""
    body = string(key) + struct.pack(">b", key_type)
    with connect(bootstrap) as sock:
        sock.sendall(frame(10, 1, 5, body))
        response = read_response(sock)
    # correlation id, throttle time, error code, error message (nullable), node id, ...
    error = struct.unpack(">h", response[8:10])[0]
    message_len = struct.unpack(">h", response[10:12])[0]
    at = 12 + max(message_len, 0)
    return error, struct.unpack(">i", response[at:at + 4])[0]
