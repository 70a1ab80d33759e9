//! The client's one error type. Every error says what kind it is (the SDKs map kinds to their
//! exception classes and sentinel errors), the Kafka error code when a broker sent one, and
//! whether retrying the same call may succeed.

use std::fmt;

use kafka_protocol::ResponseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The call did not complete in time.
    Timeout,
    /// The topic or partition does not exist.
    UnknownTopic,
    /// An offset commit was refused (the group moved on, the member was fenced).
    Commit,
    /// The client cannot continue: fenced producer, unsupported broker, closed client.
    Fatal,
    /// Any other error a broker returned.
    Broker,
    /// The connection failed or broke.
    Connection,
    /// A setting or argument is invalid.
    Config,
    /// The producer, consumer or admin client was closed.
    Closed,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::UnknownTopic => "unknown topic",
            ErrorKind::Commit => "commit failed",
            ErrorKind::Fatal => "fatal",
            ErrorKind::Broker => "broker error",
            ErrorKind::Connection => "connection",
            ErrorKind::Config => "invalid config",
            ErrorKind::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// The Kafka error code, 0 when the error did not come from a broker.
    pub code: i16,
    pub message: String,
    pub retriable: bool,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        let retriable = matches!(kind, ErrorKind::Timeout | ErrorKind::Connection);
        Error { kind, code: 0, message: message.into(), retriable }
    }

    pub fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config, message)
    }

    pub fn closed(what: &str) -> Error {
        Error::new(ErrorKind::Closed, format!("the {what} is closed"))
    }

    pub fn timeout(what: impl fmt::Display) -> Error {
        Error::new(ErrorKind::Timeout, format!("timed out: {what}"))
    }

    /// The error for Kafka error `code`, with `context` (what the client was doing). `None`
    /// for code 0.
    pub fn from_code(code: i16, context: impl fmt::Display) -> Option<Error> {
        if code == 0 {
            return None;
        }
        let known = ResponseError::try_from_code(code);
        let name = known.map_or_else(|| format!("error code {code}"), |e| format!("{e:?}"));
        let retriable = known.is_some_and(|e| e.is_retriable());
        let kind = match code {
            3 | 100 => ErrorKind::UnknownTopic,
            7 => ErrorKind::Timeout,
            // ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS, FENCED_INSTANCE_ID,
            // STALE_MEMBER_EPOCH
            22 | 25 | 27 | 82 | 113 => ErrorKind::Commit,
            // INVALID_PRODUCER_EPOCH, UNSUPPORTED_VERSION, PRODUCER_FENCED, authorization errors
            47 | 35 | 90 | 29..=31 => ErrorKind::Fatal,
            _ => ErrorKind::Broker,
        };
        Some(Error { kind, code, message: format!("{context}: {name}"), retriable })
    }

    pub fn is(&self, kind: ErrorKind) -> bool {
        self.kind == kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind.name())
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::TimedOut {
            Error::timeout(e)
        } else {
            Error::new(ErrorKind::Connection, e.to_string())
        }
    }
}
