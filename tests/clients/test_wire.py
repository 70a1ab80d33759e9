"""Protocol details that real clients rely on but do not expose directly."""

import kafkawire as kw


def test_offset_for_leader_epoch(broker):
    topic = "epochs"
    kw.metadata_v1(broker.bootstrap, [topic])
    for _ in range(3):
        assert kw.produce_error(broker.bootstrap, topic, 0, kw.record_batch([b"a", b"b"]))[0] == 0
    # Single node: every batch was written in leader epoch 0, which ends at the log end.
    assert kw.offset_for_leader_epoch_v2(broker.bootstrap, topic, 0, 0) == (0, 0, 6)
    # A client that believes in a newer leader epoch than ours is told so.
    error, _, _ = kw.offset_for_leader_epoch_v2(broker.bootstrap, topic, 0, 0, current_leader_epoch=5)
    assert error == 75  # UNKNOWN_LEADER_EPOCH
    error, _, _ = kw.offset_for_leader_epoch_v2(broker.bootstrap, "no-such-topic-xyz", 0, 0)
    assert error == 3


def test_pipelined_responses_keep_request_order_and_other_connections_proceed(broker):
    import select
    import struct

    topic = "ordering"
    kw.metadata_v1(broker.bootstrap, [topic])
    with kw.connect(broker.bootstrap, timeout=20) as slow:
        # A long poll on an empty partition, then a quick request behind it on the same connection.
        slow.sendall(kw.frame(1, 4, 100, kw.fetch_v4(topic, 0, 0, max_wait_ms=5000)) + kw.frame(18, 0, 101, b""))
        # Another connection is served while the first one's fetch waits...
        error, _ = kw.api_versions_v0(broker.bootstrap)
        assert error == 0
        # ...and the quick request on the first connection is held back behind the fetch.
        readable, _, _ = select.select([slow], [], [], 0)
        assert not readable, "a response arrived on the slow connection before its long poll ended"
        first = kw.read_response(slow)
        second = kw.read_response(slow)
        assert struct.unpack(">i", first[:4])[0] == 100, "the fetch was asked first, so it is answered first"
        assert struct.unpack(">i", second[:4])[0] == 101
