"""Bad input from the network: the offending client gets a Kafka error or a closed
connection, and every other client is unaffected. Raw frames, since no real client sends
these. Runs against Headwater; the Kafka-specific parts also hold for Apache Kafka."""

import struct

import pytest

import kafkawire as kw


@pytest.fixture(scope="module")
def topic(broker):
    name = "bad-input"
    kw.metadata_v1(broker.bootstrap, [name])
    error, _ = kw.produce_error(broker.bootstrap, name, 0, kw.record_batch([b"first"]))
    assert error == 0
    return name


def assert_alive(broker):
    error, keys = kw.api_versions_v0(broker.bootstrap)
    assert error == 0 and 0 in keys and 1 in keys


def test_api_versions_lists_produce_and_fetch(broker):
    error, keys = kw.api_versions_v0(broker.bootstrap)
    assert error == 0
    assert keys[0][1] >= 3 and keys[1][1] >= 4, keys  # v2 batches need Produce>=3, Fetch>=4


def test_api_versions_too_new_gets_v0_error_and_key_list(broker):
    with kw.connect(broker.bootstrap) as sock:
        sock.sendall(kw.frame(18, 99, 42, b"", flexible=True))
        body = kw.read_response(sock)
        correlation_id, error_code, count = struct.unpack(">ihi", body[:10])
        assert (correlation_id, error_code) == (42, 35)
        assert count > 5
        # The connection stays usable: ask again at v0.
        sock.sendall(kw.frame(18, 0, 43, b""))
        assert struct.unpack(">ih", kw.read_response(sock)[:6]) == (43, 0)


@pytest.mark.parametrize("size", [-1, 100 * 1024 * 1024 + 1, 2**31 - 1])
def test_oversized_or_negative_frame_closes_connection(broker, size):
    with kw.connect(broker.bootstrap) as sock:
        sock.sendall(struct.pack(">i", size) + b"\x00" * 16)
        assert kw.closed_by_peer(sock)
    assert_alive(broker)


def test_unknown_api_key_closes_connection(broker):
    with kw.connect(broker.bootstrap) as sock:
        sock.sendall(kw.frame(4242, 0, 1, b""))
        assert kw.closed_by_peer(sock)
    assert_alive(broker)


def test_garbage_body_closes_connection(broker):
    with kw.connect(broker.bootstrap) as sock:
        sock.sendall(kw.frame(3, 1, 1, b"\x00\x00\x00\x05\xff"))
        assert kw.closed_by_peer(sock)
    assert_alive(broker)


def test_allocation_bomb_does_not_kill_the_broker(broker):
    # Metadata v0 claiming 2^31-1 topics in a 4-byte body: the codec would reserve ~100 GiB.
    with kw.connect(broker.bootstrap) as sock:
        sock.sendall(kw.frame(3, 0, 1, struct.pack(">i", 2**31 - 1)))
        assert kw.closed_by_peer(sock)
    assert_alive(broker)


def test_truncated_frame_then_hangup(broker):
    with kw.connect(broker.bootstrap) as sock:
        full = kw.frame(3, 1, 1, struct.pack(">i", 0))
        sock.sendall(full[:-3])
    assert_alive(broker)


def test_corrupt_batch_is_refused_with_corrupt_message(broker, topic):
    batch = bytearray(kw.record_batch([b"hello", b"world"]))
    batch[-2] ^= 0xFF
    error, _ = kw.produce_error(broker.bootstrap, topic, 0, bytes(batch))
    assert error == 2  # CORRUPT_MESSAGE
    assert_alive(broker)


def test_oversized_batch_is_refused_with_message_too_large(broker, topic):
    error, _ = kw.produce_error(broker.bootstrap, topic, 0, kw.record_batch([b"x" * (1024 * 1024 + 100)]))
    assert error == 10  # MESSAGE_TOO_LARGE


def test_unknown_topic_and_partition(broker, topic):
    error, _ = kw.produce_error(broker.bootstrap, "no-such-topic-xyz", 0, kw.record_batch([b"a"]))
    assert error == 3  # UNKNOWN_TOPIC_OR_PARTITION
    error, _ = kw.produce_error(broker.bootstrap, topic, 99, kw.record_batch([b"a"]))
    assert error == 3


def test_client_sent_control_batch_is_refused(broker, topic):
    error, _ = kw.produce_error(broker.bootstrap, topic, 0, kw.record_batch([b"a"], attributes=0x20))
    assert error != 0


def test_truncated_batch_is_refused(broker, topic):
    batch = kw.record_batch([b"hello"])
    error, _ = kw.produce_error(broker.bootstrap, topic, 0, batch[:-3])
    assert error == 2


def test_valid_produce_after_all_that(broker, topic):
    error, base_offset = kw.produce_error(broker.bootstrap, topic, 0, kw.record_batch([b"still", b"here"]))
    assert error == 0 and base_offset >= 1
