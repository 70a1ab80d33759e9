"""Exceptions raised by the Headwater SDK. Every one is a HeadwaterError with the Kafka error
code (0 when the error did not come from a broker) and whether retrying may succeed."""


class HeadwaterError(Exception):
    """Base class: `.code` is Kafka's error code (0 if none), `.retriable` says whether the
    same call may succeed if repeated."""

    def __init__(self, message: str, code: int = 0, retriable: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.retriable = retriable

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code}, retriable={self.retriable})"


class HeadwaterTimeoutError(HeadwaterError, TimeoutError):
    """The call did not complete in time."""


class UnknownTopicError(HeadwaterError):
    """The topic or partition does not exist."""


class CommitFailedError(HeadwaterError):
    """An offset commit was refused: the group moved on or the member was fenced."""


class FatalError(HeadwaterError):
    """The client cannot continue (closed, fenced, or the broker does not support it)."""


class ConfigError(HeadwaterError, ValueError):
    """A setting or argument is invalid."""
