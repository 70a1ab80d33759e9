//! The broker's side of the metadata quorum (D22): KRaft requests from peers (Vote,
//! BeginQuorumEpoch, EndQuorumEpoch, Fetch, FetchSnapshot) go to the
//! node's [`MetadataQuorum`], its answers go back as their responses, and the requests it
//! sends to peers leave as [`Output::Peer`], whose answers come back through
//! [`Broker::handle_peer`]. The quorum's log syncs run as [`IoCommand::Sync`]s of their own.
//!
//! A node without `cluster_nodes` has no quorum and answers these requests with an error.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{Broker, IoCommand, IoToken, Output, RequestId, Response, ResponseBody};
use crate::error::ErrorCode;
use crate::ids::NodeId;
use crate::metadata::calls::ControllerMessage;
use crate::metadata::quorum::QuorumOutput;
use crate::peer::PeerMessage;
use crate::raft::{wire, Message};

/// A peer request being answered during this input: its answer is this request's response.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answering {
    pub id: RequestId,
    pub api_key: ApiKey,
    pub api_version: i16,
    pub from: NodeId,
}

impl Broker {
    /// A KRaft request from a peer (Vote, BeginQuorumEpoch, EndQuorumEpoch, a Fetch of the
    /// metadata log) or DescribeQuorum. Returns the response if it is known now.
    pub(super) fn quorum_request(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_key: ApiKey,
        api_version: i16,
        body: RequestKind,
    ) -> Option<ResponseBody> {
        let reply = |body: ResponseKind| Some(ResponseBody::Message(Box::new(body)));
        let cluster_id = &self.metadata.document.cluster_id;
        let Some(quorum) = &mut self.quorum else {
            return reply(quorum_error(api_key, ErrorCode::InvalidRequest, NOT_A_VOTER));
        };
        if let RequestKind::DescribeQuorum(_) = body {
            return reply(ResponseKind::DescribeQuorum(quorum.describe()));
        }
        // A peer of another cluster (a node pointed at the wrong `cluster_nodes`, or a data
        // directory of another cluster) must not vote here or replicate this log.
        if request_cluster_id(&body).is_some_and(|theirs| theirs.as_str() != cluster_id) {
            return reply(quorum_error(api_key, ErrorCode::InconsistentClusterId, "the request names another cluster"));
        }
        let parsed = match &body {
            RequestKind::Fetch(fetch) => {
                wire::fetch_from_request(fetch, id.0).and_then(|(from, mut parts)| match parts.pop() {
                    Some((target, message)) if parts.is_empty() && target.is_metadata() => Ok((target, from, message)),
                    _ => Err("a fetch of the metadata log names one partition, of it alone".into()),
                })
            }
            other => wire::message_from_request(other),
        };
        let (target, from, message) = match parsed {
            Ok(parsed) => parsed,
            Err(reason) => return Some(ResponseBody::Close(format!("malformed KRaft request: {reason}"))),
        };
        if !target.is_metadata() {
            return self.partition_raft_request(now_ms, Answering { id, api_key, api_version, from }, target, message);
        }
        let Some(quorum) = &mut self.quorum else { unreachable!("checked above") };
        let end_quorum_epoch = matches!(message, Message::EndQuorumEpoch { .. });
        quorum.handle_message(now_ms, from, message);
        let answered = self.drain_quorum(now_ms, Some(Answering { id, api_key, api_version, from }));
        if end_quorum_epoch {
            // The Raft has no answer for it; Kafka's is an empty success.
            return reply(ResponseKind::EndQuorumEpoch(EndQuorumEpochResponse::default()));
        }
        if answered {
            return None;
        }
        // A fetch waits in the Raft (nothing new yet) and is answered later by its id; any
        // other request gets no answer only if the quorum stopped taking part.
        match api_key {
            ApiKey::Fetch => None,
            _ => reply(quorum_error(api_key, ErrorCode::InvalidRequest, NOT_A_VOTER)),
        }
    }

    /// The metadata quorum's epoch and leader as this node knows them; `None` without a quorum.
    pub fn quorum_leader(&self) -> Option<(i32, Option<NodeId>)> {
        self.quorum.as_ref().map(|q| (q.raft().epoch(), q.raft().leader()))
    }

    /// The answer to a request this node sent to `from` ([`Output::Peer`]).
    pub fn handle_peer(&mut self, now_ms: i64, from: NodeId, message: PeerMessage) {
        match message {
            PeerMessage::Raft(message) => {
                if let Some(quorum) = &mut self.quorum {
                    quorum.handle_message(now_ms, from, message);
                    self.drain_quorum(now_ms, None);
                }
            }
            PeerMessage::Partition { target, message } => self.partition_raft_answer(now_ms, from, &target, message),
            PeerMessage::ReplicaFetchAnswers(answers) => self.replica_fetch_answers(now_ms, from, answers),
            PeerMessage::ReplicaFetch(_) => {}
            PeerMessage::Controller(ControllerMessage::ReportLeadersResponse { .. }) => {
                self.report_answered(now_ms, from)
            }
            PeerMessage::Controller(ControllerMessage::Forwarded { token, response }) => {
                self.forward_answered(token, *response)
            }
            PeerMessage::Controller(answer) => self.lifecycle_answer(now_ms, from, answer),
            PeerMessage::Txn(call) => self.txn_call_answered(now_ms, call),
        }
        // A new leader is where the next registration or heartbeat goes; one due now leaves.
        self.lifecycle_tick(now_ms);
        self.wake_parked(now_ms);
        self.replication_send(now_ms);
        self.after_input();
        self.report_faults(now_ms);
    }

    /// Performs the quorum's outputs. True if one of them answered `answering`.
    pub(super) fn drain_quorum(&mut self, now_ms: i64, answering: Option<Answering>) -> bool {
        let mut answered = false;
        loop {
            let Some(output) = self.quorum.as_mut().and_then(|q| q.poll_output()) else { break };
            match output {
                QuorumOutput::Send { to, message } => match &message {
                    Message::FetchResponse { id, .. } => {
                        let (api_version, done) = match answering {
                            Some(a) if a.id.0 == *id => (a.api_version, true),
                            _ => (
                                self.quorum_fetch_versions
                                    .remove(&RequestId(*id))
                                    .unwrap_or(wire::RAFT_FETCH_VERSION_MIN),
                                false,
                            ),
                        };
                        answered |= done;
                        self.respond_peer(RequestId(*id), ApiKey::Fetch, api_version, &message);
                    }
                    Message::VoteResponse { .. }
                    | Message::BeginQuorumEpochResponse { .. }
                    | Message::FetchSnapshotResponse { .. } => {
                        if let Some(a) = answering.filter(|a| a.from == to) {
                            answered = true;
                            self.respond_peer(a.id, a.api_key, a.api_version, &message);
                        }
                    }
                    _ => self.outputs.push_back(Output::Peer { to, message: message.into() }),
                },
                QuorumOutput::Sync { files, durable_offset } => {
                    let token = IoToken(self.next_token);
                    self.next_token += 1;
                    self.quorum_sync = Some((token, durable_offset));
                    self.outputs.push_back(Output::Io(IoCommand::Sync { token, files }));
                }
                QuorumOutput::Decided { token, result } => {
                    let error = result.as_ref().err().map_or(0, |(code, _)| code.code());
                    if self.report_decided(now_ms, token, error) {
                        continue;
                    }
                    if !self.admin_decided(token, result.clone()) {
                        self.call_decided(now_ms, token, result);
                    }
                }
                QuorumOutput::Fault(fault) => self.faults.push(fault),
            }
        }
        // A fetch still waiting in the Raft is answered later at the version it was asked in.
        if let Some(a) = answering.filter(|a| a.api_key == ApiKey::Fetch && !answered) {
            self.quorum_fetch_versions.insert(a.id, a.api_version);
        }
        // Newly committed records may have changed which partitions live here, and which
        // leaderships the image shows.
        if self.build_from_image(now_ms) {
            self.check_leaderships(now_ms);
        }
        answered
    }

    /// The metadata log's sync finished. A failed fsync leaves the quorum's durable offset
    /// where it was: the Raft counts only what is durable, and the next sync retries.
    pub(super) fn quorum_synced(&mut self, now_ms: i64, durable_offset: i64, result: std::io::Result<()>) {
        let Some(quorum) = &mut self.quorum else { return };
        match result {
            Ok(()) => quorum.handle_synced(now_ms, durable_offset),
            Err(error) => {
                self.faults.push(crate::broker::StorageFault::new(
                    crate::broker::StorageOp::Sync,
                    crate::metadata::quorum::METADATA_LOG_DIR,
                    &error,
                    "the metadata log's new entries do not count as durable; the next sync retries",
                ));
                quorum.handle_sync_failed();
            }
        }
        self.drain_quorum(now_ms, None);
        self.after_input();
        self.report_faults(now_ms);
    }

    fn respond_peer(&mut self, id: RequestId, api_key: ApiKey, api_version: i16, message: &Message) {
        let body = match wire::response_for(&wire::Target::metadata(), message, api_version) {
            Some(body) => ResponseBody::Message(Box::new(body)),
            None => ResponseBody::Close("a KRaft answer of the wrong kind (a broker bug)".into()),
        };
        self.outputs.push_back(Output::Response(Response { id, api_key, api_version, body }));
    }
}

const NOT_A_VOTER: &str = "this node is not a voter of a metadata quorum (cluster_nodes is empty)";

/// The cluster a KRaft request names, if it names one.
fn request_cluster_id(body: &RequestKind) -> Option<&StrBytes> {
    match body {
        RequestKind::Vote(r) => r.cluster_id.as_ref(),
        RequestKind::BeginQuorumEpoch(r) => r.cluster_id.as_ref(),
        RequestKind::EndQuorumEpoch(r) => r.cluster_id.as_ref(),
        RequestKind::Fetch(r) => r.cluster_id.as_ref(),
        RequestKind::FetchSnapshot(r) => r.cluster_id.as_ref(),
        _ => None,
    }
}

/// A KRaft request refused as a whole with `code`.
pub(super) fn quorum_error(api_key: ApiKey, code: ErrorCode, message: &'static str) -> ResponseKind {
    let code = code.code();
    match api_key {
        ApiKey::Vote => ResponseKind::Vote(VoteResponse::default().with_error_code(code)),
        ApiKey::BeginQuorumEpoch => {
            ResponseKind::BeginQuorumEpoch(BeginQuorumEpochResponse::default().with_error_code(code))
        }
        ApiKey::EndQuorumEpoch => ResponseKind::EndQuorumEpoch(EndQuorumEpochResponse::default().with_error_code(code)),
        ApiKey::FetchSnapshot => ResponseKind::FetchSnapshot(FetchSnapshotResponse::default().with_error_code(code)),
        ApiKey::DescribeQuorum => ResponseKind::DescribeQuorum(
            DescribeQuorumResponse::default()
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_static_str(message))),
        ),
        _ => ResponseKind::Fetch(FetchResponse::default().with_error_code(code)),
    }
}
