//! What nodes of a cluster send each other ([`PeerMessage`]): the Raft's messages and brokers'
//! calls to the controller. The driver's transport sends a request as the Kafka request this
//! module names, at a version both nodes serve, and hands the answer back as a message.

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use crate::ids::NodeId;
use crate::metadata::calls::{self, ControllerMessage};
use crate::raft::wire::{self, Target};
use crate::raft::Message;
use crate::txn::calls::TxnCall;

/// The client id a node's peer links send with every request (`headwater-peer-<node>`).
pub const PEER_CLIENT_ID_PREFIX: &str = "headwater-peer-";

#[derive(Debug, Clone, PartialEq)]
pub enum PeerMessage {
    /// A message of the metadata quorum's Raft.
    Raft(Message),
    /// A Vote, BeginQuorumEpoch, EndQuorumEpoch or FetchSnapshot of one partition's Raft, or
    /// its answer.
    Partition {
        target: Target,
        message: Message,
    },
    /// A follower's fetches of the partitions it follows on one leader, sent as one Kafka
    /// Fetch (Kafka's replica fetcher), so a partition's answer never waits in line behind
    /// another partition's parked fetch on the same connection.
    ReplicaFetch(Vec<(Target, Message)>),
    /// The leader's answers to a [`PeerMessage::ReplicaFetch`], in its order; `None` where the
    /// leader refused the partition (it does not replicate it).
    ReplicaFetchAnswers(Vec<(Target, Option<Message>)>),
    Controller(ControllerMessage),
    /// Between transaction coordinators and partition leaders.
    Txn(TxnCall),
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
            PeerMessage::Raft(Message::FetchSnapshot { .. }) => (ApiKey::FetchSnapshot, 0),
            PeerMessage::Raft(Message::Fetch { .. }) | PeerMessage::ReplicaFetch(_) => {
                (ApiKey::Fetch, wire::RAFT_FETCH_VERSION_MIN)
            }
            PeerMessage::Partition { message: Message::Vote { .. }, .. } => (ApiKey::Vote, 0),
            PeerMessage::Partition { message: Message::BeginQuorumEpoch { .. }, .. } => (ApiKey::BeginQuorumEpoch, 0),
            PeerMessage::Partition { message: Message::EndQuorumEpoch { .. }, .. } => (ApiKey::EndQuorumEpoch, 0),
            PeerMessage::Partition { message: Message::FetchSnapshot { .. }, .. } => (ApiKey::FetchSnapshot, 0),
            PeerMessage::Controller(ControllerMessage::Register(_)) => (ApiKey::BrokerRegistration, 0),
            PeerMessage::Controller(ControllerMessage::Heartbeat { .. } | ControllerMessage::ShutDown { .. }) => {
                (ApiKey::BrokerHeartbeat, 0)
            }
            PeerMessage::Controller(ControllerMessage::ReportLeaders { .. }) => (ApiKey::AlterPartition, 2),
            PeerMessage::Controller(ControllerMessage::Forward { api_key, api_version, .. }) => {
                (*api_key, *api_version)
            }
            PeerMessage::Txn(call) => return call.api(),
            _ => return None,
        })
    }

    /// The one version this request must travel at, if it must (a forwarded client request:
    /// its answer goes back to the client at the client's version).
    pub fn exact_version(&self) -> Option<i16> {
        match self {
            PeerMessage::Controller(ControllerMessage::Forward { api_version, .. }) => Some(*api_version),
            PeerMessage::Txn(call) => call.api().map(|(_, version)| version),
            _ => None,
        }
    }

    /// Whether this request may wait at the receiver (a Raft fetch that finds nothing new),
    /// so a transport keeps it apart from requests that must not queue behind it.
    pub fn may_wait(&self) -> bool {
        matches!(self, PeerMessage::Raft(Message::Fetch { .. }) | PeerMessage::ReplicaFetch(_))
    }

    /// The Kafka request at `version`; `None` for an answer or a request that version cannot
    /// carry (see [`wire::request_for`]).
    pub fn request(&self, cluster_id: &str, from: NodeId, to: NodeId, version: i16) -> Option<RequestKind> {
        match self {
            PeerMessage::Raft(message) => {
                wire::request_for(cluster_id, from, to, &Target::metadata(), message, version)
            }
            PeerMessage::Partition { target, message } => {
                wire::request_for(cluster_id, from, to, target, message, version)
            }
            PeerMessage::ReplicaFetch(parts) => wire::fetch_request(cluster_id, from, parts, version),
            PeerMessage::ReplicaFetchAnswers(_) => None,
            PeerMessage::Controller(message) => calls::request_for(cluster_id, message),
            PeerMessage::Txn(call) => call.request(),
        }
    }

    /// The peer's answer to this request; `Ok(None)` for an answer nothing needs
    /// (EndQuorumEpoch's).
    pub fn answer(&self, response: &ResponseKind) -> Result<Option<PeerMessage>, String> {
        match self {
            PeerMessage::Raft(Message::EndQuorumEpoch { .. })
            | PeerMessage::Partition { message: Message::EndQuorumEpoch { .. }, .. } => Ok(None),
            PeerMessage::Raft(message) => wire::message_from_response(response, message).map(|m| Some(m.into())),
            PeerMessage::Partition { target, message } => wire::message_from_response(response, message)
                .map(|answer| Some(PeerMessage::Partition { target: target.clone(), message: answer })),
            PeerMessage::ReplicaFetch(sent) => {
                wire::fetch_from_response(response, sent).map(|answers| Some(PeerMessage::ReplicaFetchAnswers(answers)))
            }
            PeerMessage::ReplicaFetchAnswers(_) => Err("an answer answers nothing".into()),
            PeerMessage::Controller(message) => calls::message_from_response(response, message).map(|m| Some(m.into())),
            PeerMessage::Txn(call) => call.answer(response).map(|answer| Some(PeerMessage::Txn(answer))),
        }
    }
}
