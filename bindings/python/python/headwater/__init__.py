"""Headwater's Python SDK: a producer, a consumer and an admin client over Headwater's Rust
client, plus `headwater.testing.EmbeddedBroker`, a real broker inside your process for tests.

    from headwater import Producer, Consumer

    with Producer(bootstrap="127.0.0.1:9092") as producer:
        metadata = producer.send("orders", b"hello", key=b"customer-1")

    with Consumer(bootstrap="127.0.0.1:9092", group_id="billing", topics=["orders"],
                  auto_offset_reset="earliest") as consumer:
        for record in consumer:
            handle(record)
            consumer.commit()
"""

from __future__ import annotations

import atexit
import concurrent.futures
import weakref
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from . import _headwater
from .errors import (
    CommitFailedError,
    ConfigError,
    FatalError,
    HeadwaterError,
    HeadwaterTimeoutError,
    UnknownTopicError,
)

__all__ = [
    "AdminClient", "CommitFailedError", "ConfigError", "Consumer", "FatalError", "GroupDescription", "GroupMember",
    "HeadwaterError", "HeadwaterTimeoutError", "Producer", "Record", "RecordMetadata", "TopicDescription",
    "UnknownTopicError",
]
__version__ = _headwater.__version__

Bytes = Union[bytes, bytearray, memoryview, str]
Headers = Optional[Union[Dict[str, Optional[Bytes]], Sequence[Tuple[str, Optional[Bytes]]]]]


@dataclass(frozen=True)
class RecordMetadata:
    """Where a record was stored (offset -1 with acks=0)."""

    topic: str
    partition: int
    offset: int
    timestamp: int


@dataclass(frozen=True)
class Record:
    """A consumed record. Headers keep their order; a key may repeat."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: List[Tuple[str, Optional[bytes]]] = field(default_factory=list)


@dataclass(frozen=True)
class TopicDescription:
    name: str
    topic_id: str
    partitions: int


@dataclass(frozen=True)
class GroupMember:
    member_id: str
    instance_id: Optional[str]
    client_id: str
    host: str
    assignment: List[Tuple[str, int]]


@dataclass(frozen=True)
class GroupDescription:
    """`group_type` is "consumer" (KIP-848 members) or "classic"."""

    group_id: str
    state: str
    group_type: str
    assignor: str
    members: List[GroupMember]


def _bytes(value: Optional[Bytes]) -> Optional[bytes]:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    return bytes(value)


def _headers(headers: Headers) -> Optional[List[Tuple[str, Optional[bytes]]]]:
    if headers is None:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    return [(str(k), _bytes(v)) for k, v in items]


# Producers and consumers still open at interpreter exit are closed first, while the
# interpreter can still run their callbacks.
_open: "weakref.WeakSet[Union[Producer, Consumer]]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for client in list(_open):
        try:
            client.close()
        except Exception:
            pass


class Producer:
    """Sends records. Idempotent by default (acks="all"): a retried batch is never stored twice,
    and each partition keeps the order of `send` calls.

    `send` waits for the broker and returns RecordMetadata; `send_async` returns a
    concurrent.futures.Future resolved by the SDK's own threads (no polling needed)."""

    def __init__(self, bootstrap: str, *, acks: Union[str, int] = "all", linger_ms: int = 5,
                 batch_bytes: int = 16384, compression: str = "none", idempotence: bool = True,
                 client_id: Optional[str] = None, request_timeout_ms: Optional[int] = None,
                 delivery_timeout_ms: Optional[int] = None):
        self._native = _headwater.NativeProducer(
            bootstrap, str(acks), linger_ms, batch_bytes, compression, idempotence,
            client_id, request_timeout_ms, delivery_timeout_ms)
        self._closed = False
        _open.add(self)

    def send(self, topic: str, value: Optional[Bytes], key: Optional[Bytes] = None, headers: Headers = None,
             partition: Optional[int] = None, timestamp: Optional[int] = None) -> RecordMetadata:
        """Sends one record and waits until the broker has it."""
        return RecordMetadata(*self._native.send(topic, _bytes(value), _bytes(key), _headers(headers),
                                                 partition, timestamp))

    def send_async(self, topic: str, value: Optional[Bytes], key: Optional[Bytes] = None,
                   headers: Headers = None, partition: Optional[int] = None,
                   timestamp: Optional[int] = None) -> "concurrent.futures.Future[RecordMetadata]":
        """Queues one record; the future resolves with its RecordMetadata or its error."""
        future: "concurrent.futures.Future[RecordMetadata]" = concurrent.futures.Future()
        future.set_running_or_notify_cancel()

        def done(metadata, error):
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(RecordMetadata(*metadata))

        self._native.send_async(done, topic, _bytes(value), _bytes(key), _headers(headers), partition, timestamp)
        return future

    def flush(self) -> None:
        """Sends everything queued and waits until all of it is answered."""
        self._native.flush()

    def close(self) -> None:
        """Flushes and stops. Idempotent."""
        if not self._closed:
            self._closed = True
            self._native.close()
            _open.discard(self)

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


RebalanceCallback = Callable[[List[Tuple[str, int]]], None]


class Consumer:
    """Reads records. With `group_id` and `topics` it joins the group (Kafka's KIP-848 consumer
    protocol: the broker assigns partitions); without topics, `assign` picks partitions.

    Iterating yields records one by one; `poll` returns a batch. Commits are explicit
    (`commit()`) unless `enable_auto_commit=True`."""

    def __init__(self, bootstrap: str, *, group_id: Optional[str] = None, topics: Optional[Sequence[str]] = None,
                 auto_offset_reset: str = "latest", enable_auto_commit: bool = False,
                 max_poll_records: int = 500, group_instance_id: Optional[str] = None,
                 on_assign: Optional[RebalanceCallback] = None, on_revoke: Optional[RebalanceCallback] = None,
                 on_lost: Optional[RebalanceCallback] = None, client_id: Optional[str] = None,
                 request_timeout_ms: Optional[int] = None):
        self._native = _headwater.NativeConsumer(
            bootstrap, group_id, auto_offset_reset, enable_auto_commit, max_poll_records,
            group_instance_id, client_id, request_timeout_ms)
        self._closed = False
        self._callbacks = {"assigned": on_assign, "revoked": on_revoke, "lost": on_lost or on_revoke}
        if any(self._callbacks.values()):
            self._native.set_rebalance_listener(self._on_rebalance)
        _open.add(self)
        if topics:
            self.subscribe(topics)

    def _on_rebalance(self, kind: str, partitions: List[Tuple[str, int]]) -> None:
        callback = self._callbacks.get(kind)
        if callback is not None:
            callback(partitions)

    def subscribe(self, topics: Sequence[str]) -> None:
        self._native.subscribe(list(topics))

    def assign(self, partitions: Sequence[Tuple[str, int]]) -> None:
        self._native.assign([(t, int(p)) for t, p in partitions])

    def assignment(self) -> List[Tuple[str, int]]:
        return self._native.assignment()

    def poll(self, timeout: float = 1.0, max_records: Optional[int] = None) -> List[Record]:
        """Waits up to `timeout` seconds; returns at most `max_records` records."""
        if max_records is not None and max_records <= 0:
            return []
        # The limit is applied natively: records held back stay unconsumed there, so neither
        # commit() nor auto-commit can commit a record this method has not returned.
        return [Record(t, p, o, ts, k, v, h) for t, p, o, ts, k, v, h in self._native.poll(timeout, max_records)]

    def __iter__(self) -> Iterator[Record]:
        while not self._closed:
            for record in self.poll(1.0):
                yield record

    def commit(self, offsets: Optional[Dict[Tuple[str, int], int]] = None) -> None:
        """Commits what `poll` returned so far (or the given next offsets)."""
        if offsets is None:
            self._native.commit()
        else:
            self._native.commit_offsets([((t, p), o) for (t, p), o in offsets.items()])

    def committed(self, partitions: Sequence[Tuple[str, int]]) -> Dict[Tuple[str, int], Optional[int]]:
        return dict(self._native.committed([(t, int(p)) for t, p in partitions]))

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self._native.seek(topic, partition, offset)

    def close(self) -> None:
        """Leaves the group (a static member only steps away) and stops. Idempotent."""
        if not self._closed:
            self._closed = True
            self._native.close()
            _open.discard(self)

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AdminClient:
    """Topic administration."""

    def __init__(self, bootstrap: str, *, client_id: Optional[str] = None, request_timeout_ms: Optional[int] = None):
        self._native = _headwater.NativeAdmin(bootstrap, client_id, request_timeout_ms)

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1,
                     config: Optional[Dict[str, str]] = None) -> None:
        self._native.create_topic(name, partitions, replication_factor, config)

    def delete_topic(self, name: str) -> None:
        self._native.delete_topic(name)

    def list_topics(self) -> List[str]:
        return sorted(self._native.list_topics())

    def describe_topic(self, name: str) -> TopicDescription:
        return TopicDescription(*self._native.describe_topic(name))

    def topic_config(self, name: str) -> Dict[str, str]:
        return dict(self._native.describe_topic_config(name))

    def alter_topic_config(self, name: str, changes: Dict[str, Optional[str]]) -> None:
        """Sets configs; a value of None returns that config to its default."""
        self._native.alter_topic_config(name, [(k, None if v is None else str(v)) for k, v in changes.items()])

    def list_groups(self) -> List[Tuple[str, str, str]]:
        """(group id, state, type) of every group."""
        return self._native.list_groups()

    def describe_group(self, group_id: str) -> GroupDescription:
        group, state, kind, assignor, members = self._native.describe_group(group_id)
        return GroupDescription(group, state, kind, assignor, [GroupMember(*m) for m in members])

    def delete_group(self, group_id: str) -> None:
        self._native.delete_group(group_id)

    def group_offsets(self, group_id: str) -> Dict[Tuple[str, int], int]:
        """The group's committed offsets (the next offset it will read), by partition."""
        return dict(self._native.group_offsets(group_id))

    def __enter__(self) -> "AdminClient":
        return self

    def __exit__(self, *exc) -> None:
        pass


