//! What goes into the core and what comes out of it: requests, responses, the I/O commands
//! the driver runs, and the ids that tie them together. Every output is `PartialEq`, so tests
//! assert on the drained list itself.

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use crate::broker::StorageFault;
use crate::storage::NamedFile;

/// Identifies one request for the driver, which maps it back to its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Identifies a client connection (for logs, and later for sessions and group members).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Identifies an [`IoCommand`] so its completion can be matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IoToken(pub u64);

/// A decoded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: RequestId,
    pub conn: ConnId,
    pub api_key: ApiKey,
    pub api_version: i16,
    pub client_id: Option<String>,
    pub body: RequestKind,
}

/// What goes back for a request.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseBody {
    Message(Box<ResponseKind>),
    /// acks=0 produce: Kafka sends nothing back.
    Nothing,
    /// The request was not acceptable at all (for example a body that does not match its
    /// API); Kafka closes the connection, and so does the driver, logging the reason.
    Close(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub id: RequestId,
    pub api_key: ApiKey,
    pub api_version: i16,
    pub body: ResponseBody,
}

/// Effects the driver performs for the broker.
#[derive(Debug, Clone, PartialEq)]
pub enum IoCommand {
    /// Make every write to these files durable (fsync), then report
    /// [`Broker::handle_io_done`](crate::Broker::handle_io_done) with the token. Exists
    /// because acks=all replies and the high watermark must wait for durability, and fsync is
    /// too slow to run inline.
    Sync { token: IoToken, files: Vec<NamedFile> },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Response(Response),
    Io(IoCommand),
    /// A storage failure the broker handled; the driver logs it at error level.
    Fault(StorageFault),
    /// A request for peer `to` (a Raft request, or a call to the controller): the driver
    /// sends it as its Kafka request ([`crate::peer::PeerMessage::request`]) and hands the
    /// answer to `Broker::handle_peer`. Lost requests are fine: the Raft and the broker's
    /// lifecycle send again.
    Peer {
        to: crate::ids::NodeId,
        message: crate::peer::PeerMessage,
    },
}
