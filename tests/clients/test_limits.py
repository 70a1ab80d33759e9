"""Limits under load: the bytes of requests buffered over all connections are capped
(queued_max_request_bytes) with reading paused rather than memory growing; idle connections
close (connections_max_idle_ms) but not while a request is in flight; and 10,000 connections or
clients that stop reading their responses leave every other client served."""

import resource
import socket
import struct
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import kafkawire as kw
from conftest import HeadwaterBroker

MIB = 1024 * 1024
IDLE_MS = 2000
BROKER_ARGS = ["--socket-request-max-bytes", str(8 * MIB),
               "--queued-max-request-bytes", str(16 * MIB),
               "--connections-max-idle-ms", str(IDLE_MS)]


@pytest.fixture(autouse=True)
def headwater_only(broker):
    if broker.kind != "headwater":
        pytest.skip("Headwater's own limits")


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def round_trip(bootstrap, topic, count=200):
    """A real client (librdkafka) produces `count` records with acks=all and reads them back."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "message.timeout.ms": 60_000})
    acked = []
    for i in range(count):
        producer.produce(topic, value=f"v{i}".encode(), partition=0,
                         on_delivery=lambda err, msg: acked.append(err))
    assert producer.flush(60) == 0
    assert acked == [None] * count
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"limits-{topic}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    values = []
    deadline = time.monotonic() + 60
    while len(values) < count and time.monotonic() < deadline:
        for m in consumer.consume(500, 1.0):
            if m.error() is None:
                values.append(m.value())
    consumer.close()
    assert values[-count:] == [f"v{i}".encode() for i in range(count)]


def test_half_sent_frames_are_capped_by_queued_max_request_bytes(broker):
    # Each connection announces a frame of almost socket_request_max_bytes and sends 6 MiB of
    # it. Without the cap the broker would hold 6 MiB per connection (40 x 6 = 240 MiB); with
    # it, only the two frames that fit in 16 MiB are read, and the rest wait in socket buffers.
    before = rss_bytes(broker.proc.pid)
    socks = []
    body = b"\x00" * (6 * MIB)

    def half_send(sock):
        try:
            sock.sendall(struct.pack(">i", 8 * MIB - 1) + body)
        except OSError:
            pass  # timed out: the broker stopped reading, which is the point

    threads = []
    for _ in range(40):
        sock = kw.connect(broker.bootstrap, timeout=5)
        socks.append(sock)
        t = threading.Thread(target=half_send, args=(sock,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    grown = rss_bytes(broker.proc.pid) - before
    # Every connection is still open (reading paused, not refused).
    for sock in socks:
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(1)
    for sock in socks:
        sock.close()
    assert grown < 100 * MIB, f"broker grew by {grown / MIB:.0f} MiB holding half-sent frames"
    # The budget comes back when those connections go: new requests are served.
    deadline = time.monotonic() + 30
    while True:
        try:
            error, _ = kw.api_versions_v0(broker.bootstrap)
            assert error == 0
            break
        except (OSError, ConnectionError):
            assert time.monotonic() < deadline, "no answer after the half-sent frames were closed"


def test_an_idle_connection_is_closed(broker):
    with kw.connect(broker.bootstrap) as sock:
        sock.sendall(kw.frame(18, 0, 1, b""))
        kw.read_response(sock)
        assert kw.closed_by_peer(sock, timeout=IDLE_MS / 1000 * 5)


def test_a_busy_connection_is_not_closed(broker):
    with kw.connect(broker.bootstrap) as sock:
        # Requests every quarter of the idle time, for twice the idle time.
        for i in range(8):
            sock.sendall(kw.frame(18, 0, i, b""))
            assert struct.unpack(">i", kw.read_response(sock)[:4])[0] == i
            time.sleep(IDLE_MS / 4000)


def test_a_long_fetch_in_flight_keeps_its_connection(broker):
    topic = "limits-long-fetch"
    kw.metadata_v1(broker.bootstrap, [topic])
    error, end = kw.produce_error(broker.bootstrap, topic, 0, kw.record_batch([b"x"]))
    assert error == 0
    with kw.connect(broker.bootstrap, timeout=10) as sock:
        # A fetch past the end that waits twice the idle time for data that never comes.
        sock.sendall(kw.frame(1, 4, 5, kw.fetch_v4(topic, 0, end + 1, max_wait_ms=2 * IDLE_MS)))
        assert struct.unpack(">i", kw.read_response(sock)[:4])[0] == 5


def test_clients_that_stop_reading_do_not_stall_others(broker):
    topic = "limits-stalled-readers"
    kw.metadata_v1(broker.bootstrap, [topic])
    error, _ = kw.produce_error(broker.bootstrap, topic, 0,
                                kw.record_batch([b"y" * 1000] * 900))
    assert error == 0
    before = rss_bytes(broker.proc.pid)
    stalled = []
    fetch = kw.frame(1, 4, 1, kw.fetch_v4(topic, 0, 0, max_wait_ms=0, max_bytes=1 << 20))
    for _ in range(10):
        sock = kw.connect(broker.bootstrap, timeout=2)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            # Pipelined fetches of ~1 MiB each whose answers are never read.
            for _ in range(300):
                sock.sendall(fetch)
        except OSError:
            pass  # the broker stopped reading this connection: back-pressure
        stalled.append(sock)
    round_trip(broker.bootstrap, "limits-served")
    grown = rss_bytes(broker.proc.pid) - before
    for sock in stalled:
        sock.close()
    # 10 connections x at most 16 MiB of unwritten fetch responses each, with room to spare;
    # bounded only by the 128 requests a connection may have in flight, they would hold
    # 10 x 128 x 0.9 MiB.
    assert grown < 10 * 16 * MIB + 150 * MIB, f"broker grew by {grown / MIB:.0f} MiB"


def test_ten_thousand_connections(broker, tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 10_500:
        pytest.skip(f"open files hard limit {hard} is below 10,500")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    own = HeadwaterBroker(broker.binary, tmp_path)
    socks = []
    own.start()
    try:
        for _ in range(10_000):
            socks.append(socket.create_connection(("127.0.0.1", own.port), timeout=10))
        # The last one is served: the broker accepted all of them.
        last = socks[-1]
        last.settimeout(10)
        last.sendall(kw.frame(18, 0, 77, b""))
        assert struct.unpack(">i", kw.read_response(last)[:4])[0] == 77
        round_trip(own.bootstrap, "limits-many-connections")
        print(f"broker RSS with 10,000 connections: {rss_bytes(own.proc.pid) / MIB:.0f} MiB")
    finally:
        for sock in socks:
            sock.close()
        own.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
