"""asyncio twins of Producer and Consumer: each call is a single `await`, and nothing blocks the
event loop (the Rust client does the work on its own threads and resolves an asyncio future).

    async with AsyncProducer(bootstrap) as producer:
        metadata = await producer.send("orders", b"hello")

    async with AsyncConsumer(bootstrap, group_id="g", topics=["orders"]) as consumer:
        async for record in consumer:
            ...
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable, List, Optional, Sequence

from . import Consumer, Headers, Producer, Record, RecordMetadata, _bytes, _headers


def _bridge() -> "tuple[asyncio.Future[Any], Callable[[Any, Optional[BaseException]], None]]":
    """An asyncio future and the callback (called from another thread) that resolves it."""
    loop = asyncio.get_running_loop()
    future: "asyncio.Future[Any]" = loop.create_future()

    def resolve(value: Any, error: Optional[BaseException]) -> None:
        def apply() -> None:
            if future.cancelled():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

        loop.call_soon_threadsafe(apply)

    return future, resolve


class AsyncProducer:
    """Producer for asyncio; takes the same keyword arguments as headwater.Producer."""

    def __init__(self, bootstrap: str, **settings: Any):
        self._producer = Producer(bootstrap, **settings)

    async def send(self, topic: str, value: Any, key: Any = None, headers: Headers = None,
                   partition: Optional[int] = None, timestamp: Optional[int] = None) -> RecordMetadata:
        future, resolve = _bridge()
        self._producer._native.send_async(
            lambda metadata, error: resolve(None if metadata is None else RecordMetadata(*metadata), error),
            topic, _bytes(value), _bytes(key), _headers(headers), partition, timestamp)
        return await future

    async def flush(self) -> None:
        future, resolve = _bridge()
        self._producer._native.flush_then(resolve)
        await future

    async def close(self) -> None:
        if self._producer._closed:
            return
        self._producer._closed = True
        future, resolve = _bridge()
        self._producer._native.close_then(resolve)
        await future

    async def __aenter__(self) -> "AsyncProducer":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class AsyncConsumer:
    """Consumer for asyncio; takes the same keyword arguments as headwater.Consumer."""

    def __init__(self, bootstrap: str, **settings: Any):
        self._consumer = Consumer(bootstrap, **settings)

    def assign(self, partitions: Sequence["tuple[str, int]"]) -> None:
        self._consumer.assign(partitions)

    async def poll(self, timeout: float = 1.0) -> List[Record]:
        future, resolve = _bridge()
        self._consumer._native.poll_then(timeout, resolve)
        rows = await future
        return [Record(t, p, o, ts, k, v, h) for t, p, o, ts, k, v, h in rows]

    async def commit(self) -> None:
        future, resolve = _bridge()
        self._consumer._native.commit_then(resolve)
        await future

    async def close(self) -> None:
        if self._consumer._closed:
            return
        self._consumer._closed = True
        future, resolve = _bridge()
        self._consumer._native.close_then(resolve)
        await future

    async def __aiter__(self) -> AsyncIterator[Record]:
        while not self._consumer._closed:
            for record in await self.poll(1.0):
                yield record

    async def __aenter__(self) -> "AsyncConsumer":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
