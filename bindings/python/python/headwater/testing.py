"""A real Headwater broker inside your process, for tests: no Docker, no JVM.

    from headwater.testing import EmbeddedBroker

    with EmbeddedBroker() as broker:
        producer = Producer(bootstrap=broker.bootstrap)

As a pytest fixture (registered by installing the package): `def test_x(headwater_broker): ...`
"""

from __future__ import annotations

from typing import Dict, Iterator, Optional

from . import _headwater

try:
    import pytest
except ImportError:  # pytest is optional: the fixture exists only where pytest does.
    pytest = None  # type: ignore[assignment]


class EmbeddedBroker:
    """Starts at construction on 127.0.0.1 and a free port (`.bootstrap`); data lives in a
    temporary directory removed at `stop()` unless `data_dir` is given. `settings` takes any
    broker config key (`num_partitions`, `group_consumer_session_timeout_ms`, ...)."""

    def __init__(self, data_dir: Optional[str] = None, settings: Optional[Dict[str, object]] = None):
        pairs = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in (settings or {}).items()]
        self._native = _headwater.NativeBroker(data_dir, pairs)
        self.bootstrap: str = self._native.bootstrap

    def stop(self) -> None:
        self._native.stop()

    def __enter__(self) -> "EmbeddedBroker":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


if pytest is not None:

    @pytest.fixture
    def headwater_broker() -> Iterator[EmbeddedBroker]:
        """A fresh embedded broker for one test."""
        with EmbeddedBroker() as broker:
            yield broker
