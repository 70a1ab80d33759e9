//! What nodes of a cluster send each other ([`PeerMessage`]): the Raft's messages and brokers'
//! calls to the controller. The driver's transport sends a request as the Kafka request this
//! module names, at a version both nodes serve, and hands the answer back as a message.

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use crate::ids::NodeId;
use crate::metadata::calls::{self, ControllerMessage};
use crate::raft::{wire, Message};

#[derive(Debug, Clone, PartialEq)]
pub enum PeerMessage {
    Raft(Message),
    Controller(ControllerMessage),
}

impl From<Message> for PeerMessage {
    fn from(message: Message) -> PeerMessage {
        PeerMessage::Raft(message)
    }
}

impl From<ControllerMessage> for PeerMessage {
    fn from(message: ControllerMessage) -> PeerMessage {
        PeerMessage::Controller(message)
    }
}

impl PeerMessage {
    /// The API that carries this request and the lowest version of it that can, or `None` for
    /// an answer (answers travel as responses).
    pub fn api(&self) -> Option<(ApiKey, i16)> {
        Some(match self {
            PeerMessage::Raft(Message::Vote { .. }) => (ApiKey::Vote, 0),
            PeerMessage::Raft(Message::BeginQuorumEpoch { .. }) => (ApiKey::BeginQuorumEpoch, 0),
            PeerMessage::Raft(Message::EndQuorumEpoch { .. }) => (ApiKey::EndQuorumEpoch, 0),
            PeerMessage::Raft(Message::Fetch { .. }) => (ApiKey::Fetch, wire::RAFT_FETCH_VERSION_MIN),
            PeerMessage::Controller(ControllerMessage::Register(_)) => (ApiKey::BrokerRegistration, 0),
            PeerMessage::Controller(ControllerMessage::Heartbeat { .. } | ControllerMessage::ShutDown { .. }) => {
                (ApiKey::BrokerHeartbeat, 0)
            }
            _ => return None,
        })
    }

    /// Whether this request may wait at the receiver (a Raft fetch that finds nothing new),
    /// so a transport keeps it apart from requests that must not queue behind it.
    pub fn may_wait(&self) -> bool {
        matches!(self, PeerMessage::Raft(Message::Fetch { .. }))
    }

    /// The Kafka request at `version`; `None` for an answer or a request that version cannot
    /// carry (see [`wire::request_for`]).
    pub fn request(&self, cluster_id: &str, from: NodeId, to: NodeId, version: i16) -> Option<RequestKind> {
        match self {
            PeerMessage::Raft(message) => wire::request_for(cluster_id, from, to, message, version),
            PeerMessage::Controller(message) => calls::request_for(cluster_id, message),
        }
    }

    /// The peer's answer to this request; `Ok(None)` for an answer nothing needs
    /// (EndQuorumEpoch's).
    pub fn answer(&self, response: &ResponseKind) -> Result<Option<PeerMessage>, String> {
        match self {
            PeerMessage::Raft(Message::EndQuorumEpoch { .. }) => Ok(None),
            PeerMessage::Raft(message) => wire::message_from_response(response, message).map(|m| Some(m.into())),
            PeerMessage::Controller(message) => calls::message_from_response(response, message).map(|m| Some(m.into())),
        }
    }
}
