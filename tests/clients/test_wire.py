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
