//! The Raft's messages as Kafka's KRaft requests and responses (Vote, BeginQuorumEpoch,
//! EndQuorumEpoch, Fetch, FetchSnapshot on `__cluster_metadata`), and DescribeQuorum from a
//! replica's view,
//! so that peers speak Kafka's own protocol and `kafka-metadata-quorum` can ask.
//!
//! A Raft request and its answer are a Kafka request and its response on one connection, so
//! what a response lacks (whether a vote was a pre-vote, the fetch's id) comes from the
//! request it answers: the transport keeps the sent [`Message`] beside the correlation id.

use bytes::Bytes;
use kafka_protocol::messages::begin_quorum_epoch_request as bqe_req;
use kafka_protocol::messages::begin_quorum_epoch_response as bqe_resp;
use kafka_protocol::messages::describe_quorum_response as dq;
use kafka_protocol::messages::end_quorum_epoch_request as eqe_req;
use kafka_protocol::messages::fetch_request as fetch_req;
use kafka_protocol::messages::fetch_response as fetch_resp;
use kafka_protocol::messages::fetch_snapshot_request as snap_req;
use kafka_protocol::messages::fetch_snapshot_response as snap_resp;
use kafka_protocol::messages::vote_request as vote_req;
use kafka_protocol::messages::vote_response as vote_resp;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::message::{Diverging, Message, SnapshotId};
use super::replica::Raft;
use crate::ids::NodeId;

/// The metadata log's topic, and the fixed id Kafka gives it (`AAAAAAAAAAAAAAAAAAAAAQ`).
pub const METADATA_TOPIC: &str = "__cluster_metadata";
pub const METADATA_TOPIC_ID: uuid::Uuid = uuid::Uuid::from_u128(1);

/// The log a Raft message is about: the metadata log, or one partition of a topic. Requests
/// name a topic by name (Vote, BeginQuorumEpoch, EndQuorumEpoch, Fetch below v13) or by id
/// (Fetch v13 and later), so a target read off the wire has one of the two; the receiver
/// resolves it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub topic: String,
    pub topic_id: uuid::Uuid,
    pub index: i32,
}

impl Target {
    pub fn metadata() -> Target {
        Target { topic: METADATA_TOPIC.to_string(), topic_id: METADATA_TOPIC_ID, index: 0 }
    }

    pub fn is_metadata(&self) -> bool {
        self.topic_id == METADATA_TOPIC_ID || self.topic == METADATA_TOPIC
    }

    fn name(&self) -> TopicName {
        TopicName(StrBytes::from_string(self.topic.clone()))
    }

    /// Whether a target read off the wire (by name or by id) names this one.
    pub fn matches(&self, other: &Target) -> bool {
        self.index == other.index && (self.topic == other.topic || self.topic_id == other.topic_id)
    }
}

/// Fetch versions that carry what the Raft needs (the last fetched epoch, the diverging
/// epoch and the current leader): 12 and later.
pub const RAFT_FETCH_VERSION_MIN: i16 = 12;

/// The Kafka request, at `version`, for a Raft request `message` about `target` from `from`
/// to `to`; `None` for an answer (answers travel as responses, see [`response_for`]), and
/// `None` for a pre-vote below Vote v2: without the flag it would be a real vote for the next
/// epoch, and the epochs would climb with every round. Such a peer is simply not asked.
pub fn request_for(
    cluster_id: &str,
    from: NodeId,
    to: NodeId,
    target: &Target,
    message: &Message,
    version: i16,
) -> Option<RequestKind> {
    let cluster = Some(StrBytes::from_string(cluster_id.to_string()));
    let voter = BrokerId(if version >= 1 { to.0 } else { -1 });
    if matches!(message, Message::Vote { pre_vote: true, .. }) && version < 2 {
        return None;
    }
    Some(match message {
        Message::Vote { epoch, last_epoch, end_offset, pre_vote } => {
            let partition = vote_req::PartitionData::default()
                .with_partition_index(target.index)
                .with_replica_epoch(*epoch)
                .with_replica_id(BrokerId(from.0))
                .with_last_offset_epoch(*last_epoch)
                .with_last_offset(*end_offset)
                .with_pre_vote(*pre_vote);
            let topic = vote_req::TopicData::default().with_topic_name(target.name()).with_partitions(vec![partition]);
            RequestKind::Vote(
                VoteRequest::default().with_cluster_id(cluster).with_voter_id(voter).with_topics(vec![topic]),
            )
        }
        Message::BeginQuorumEpoch { epoch } => {
            let partition = bqe_req::PartitionData::default()
                .with_partition_index(target.index)
                .with_leader_id(BrokerId(from.0))
                .with_leader_epoch(*epoch);
            let topic = bqe_req::TopicData::default().with_topic_name(target.name()).with_partitions(vec![partition]);
            RequestKind::BeginQuorumEpoch(
                BeginQuorumEpochRequest::default()
                    .with_cluster_id(cluster)
                    .with_voter_id(voter)
                    .with_topics(vec![topic]),
            )
        }
        Message::EndQuorumEpoch { epoch, preferred_successors } => {
            let mut partition = eqe_req::PartitionData::default()
                .with_partition_index(target.index)
                .with_leader_id(BrokerId(from.0))
                .with_leader_epoch(*epoch);
            if version == 0 {
                partition.preferred_successors = preferred_successors.iter().map(|n| n.0).collect();
            } else {
                partition.preferred_candidates = preferred_successors
                    .iter()
                    .map(|n| eqe_req::ReplicaInfo::default().with_candidate_id(BrokerId(n.0)))
                    .collect();
            }
            let topic = eqe_req::TopicData::default().with_topic_name(target.name()).with_partitions(vec![partition]);
            RequestKind::EndQuorumEpoch(
                EndQuorumEpochRequest::default().with_cluster_id(cluster).with_topics(vec![topic]),
            )
        }
        Message::Fetch { .. } => return fetch_request(cluster_id, from, &[(target.clone(), message.clone())], version),
        Message::FetchSnapshot { epoch, snapshot, position, .. } => {
            let partition = snap_req::PartitionSnapshot::default()
                .with_partition(target.index)
                .with_current_leader_epoch(*epoch)
                .with_snapshot_id(
                    snap_req::SnapshotId::default().with_end_offset(snapshot.end_offset).with_epoch(snapshot.epoch),
                )
                .with_position(i64::try_from(*position).unwrap_or(i64::MAX));
            let topic = snap_req::TopicSnapshot::default().with_name(target.name()).with_partitions(vec![partition]);
            RequestKind::FetchSnapshot(
                FetchSnapshotRequest::default()
                    .with_cluster_id(cluster)
                    .with_replica_id(BrokerId(from.0))
                    .with_max_bytes(i32::MAX)
                    .with_topics(vec![topic]),
            )
        }
        Message::VoteResponse { .. }
        | Message::BeginQuorumEpochResponse { .. }
        | Message::FetchResponse { .. }
        | Message::FetchSnapshotResponse { .. } => return None,
    })
}

/// One Kafka Fetch carrying the Raft fetches `parts` (each a [`Message::Fetch`] about its
/// target), as a follower's replica fetcher sends the fetches of every partition it follows
/// on one leader together. `None` if a part is not a fetch.
pub fn fetch_request(cluster_id: &str, from: NodeId, parts: &[(Target, Message)], version: i16) -> Option<RequestKind> {
    let mut topics: Vec<fetch_req::FetchTopic> = Vec::new();
    for (target, message) in parts {
        let Message::Fetch { epoch, offset, last_epoch, .. } = message else { return None };
        let partition = fetch_req::FetchPartition::default()
            .with_partition(target.index)
            .with_current_leader_epoch(*epoch)
            .with_fetch_offset(*offset)
            .with_last_fetched_epoch(*last_epoch)
            .with_partition_max_bytes(1 << 20);
        let same = |t: &fetch_req::FetchTopic| {
            if version >= 13 {
                t.topic_id == target.topic_id
            } else {
                t.topic.0.as_str() == target.topic
            }
        };
        match topics.iter_mut().find(|t| same(t)) {
            Some(topic) => topic.partitions.push(partition),
            None => {
                let mut topic = fetch_req::FetchTopic::default().with_partitions(vec![partition]);
                if version >= 13 {
                    topic.topic_id = target.topic_id;
                } else {
                    topic.topic = target.name();
                }
                topics.push(topic);
            }
        }
    }
    let mut request = FetchRequest::default()
        .with_cluster_id(Some(StrBytes::from_string(cluster_id.to_string())))
        .with_max_wait_ms(500)
        .with_max_bytes(8 << 20)
        .with_topics(topics);
    if version >= 15 {
        request.replica_id = BrokerId(-1);
        request.replica_state =
            fetch_req::ReplicaState::default().with_replica_id(BrokerId(from.0)).with_replica_epoch(-1);
    } else {
        request.replica_id = BrokerId(from.0);
    }
    Some(RequestKind::Fetch(request))
}

/// Whether a Fetch is a replica's fetch of the metadata log (rather than a consumer's).
pub fn is_metadata_fetch(request: &FetchRequest) -> bool {
    request.topics.iter().any(|t| t.topic_id == METADATA_TOPIC_ID || t.topic.0.as_str() == METADATA_TOPIC)
}

/// The replica a Fetch comes from; `None` for a consumer's.
pub fn fetching_replica(request: &FetchRequest) -> Option<NodeId> {
    let replica =
        if request.replica_state.replica_id.0 >= 0 { request.replica_state.replica_id.0 } else { request.replica_id.0 };
    (replica >= 0).then_some(NodeId(replica))
}

/// A peer's Raft request (Vote, BeginQuorumEpoch or EndQuorumEpoch about one log) as
/// (target, sender, message). Fetches go through [`fetch_from_request`].
pub fn message_from_request(request: &RequestKind) -> Result<(Target, NodeId, Message), String> {
    let one = |count: usize| if count == 1 { Ok(()) } else { Err(format!("expected one partition, got {count}")) };
    let target =
        |name: &TopicName, index: i32| Target { topic: name.0.to_string(), topic_id: uuid::Uuid::nil(), index };
    match request {
        RequestKind::Vote(r) => {
            let parts: Vec<_> =
                r.topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (&t.topic_name, p))).collect();
            one(parts.len())?;
            let (name, p) = parts[0];
            let message = Message::Vote {
                epoch: p.replica_epoch,
                last_epoch: p.last_offset_epoch,
                end_offset: p.last_offset,
                pre_vote: p.pre_vote,
            };
            Ok((target(name, p.partition_index), NodeId(p.replica_id.0), message))
        }
        RequestKind::BeginQuorumEpoch(r) => {
            let parts: Vec<_> =
                r.topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (&t.topic_name, p))).collect();
            one(parts.len())?;
            let (name, p) = parts[0];
            Ok((
                target(name, p.partition_index),
                NodeId(p.leader_id.0),
                Message::BeginQuorumEpoch { epoch: p.leader_epoch },
            ))
        }
        RequestKind::EndQuorumEpoch(r) => {
            let parts: Vec<_> =
                r.topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (&t.topic_name, p))).collect();
            one(parts.len())?;
            let (name, p) = parts[0];
            let mut preferred: Vec<NodeId> = p.preferred_successors.iter().map(|&n| NodeId(n)).collect();
            if preferred.is_empty() {
                preferred = p.preferred_candidates.iter().map(|c| NodeId(c.candidate_id.0)).collect();
            }
            Ok((
                target(name, p.partition_index),
                NodeId(p.leader_id.0),
                Message::EndQuorumEpoch { epoch: p.leader_epoch, preferred_successors: preferred },
            ))
        }
        RequestKind::FetchSnapshot(r) => {
            let parts: Vec<_> = r.topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (&t.name, p))).collect();
            one(parts.len())?;
            let (name, p) = parts[0];
            let message = Message::FetchSnapshot {
                epoch: p.current_leader_epoch,
                snapshot: SnapshotId { end_offset: p.snapshot_id.end_offset, epoch: p.snapshot_id.epoch },
                position: u64::try_from(p.position).map_err(|_| "a negative snapshot position")?,
                // The transport matches the answer to the request; the Raft echoes this.
                id: 0,
            };
            Ok((target(name, p.partition), NodeId(r.replica_id.0), message))
        }
        RequestKind::Fetch(_) => Err("a fetch carries many partitions; see fetch_from_request".into()),
        _ => Err("not a Raft request".into()),
    }
}

/// A replica's Fetch as (sender, one Raft fetch per partition). `id` becomes every fetch's
/// id (the transport passes something that names the request, so the answers find their way
/// back to it).
pub fn fetch_from_request(request: &FetchRequest, id: u64) -> Result<(NodeId, Vec<(Target, Message)>), String> {
    let replica = fetching_replica(request).ok_or("a replica fetch names no replica")?;
    let mut parts = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            let target = Target { topic: topic.topic.0.to_string(), topic_id: topic.topic_id, index: p.partition };
            let message = Message::Fetch {
                epoch: p.current_leader_epoch,
                offset: p.fetch_offset,
                last_epoch: p.last_fetched_epoch,
                id,
            };
            parts.push((target, message));
        }
    }
    if parts.is_empty() {
        return Err("a replica fetch names no partition".into());
    }
    Ok((replica, parts))
}

/// The Kafka response, at `version`, carrying the Raft's answer `message` about `target`;
/// `None` for a request. A fetch's answer goes through [`fetch_response`].
pub fn response_for(target: &Target, message: &Message, version: i16) -> Option<ResponseKind> {
    Some(match message {
        Message::VoteResponse { epoch, granted, leader, .. } => {
            let partition = vote_resp::PartitionData::default()
                .with_partition_index(target.index)
                .with_leader_id(BrokerId(leader.map_or(-1, |n| n.0)))
                .with_leader_epoch(*epoch)
                .with_vote_granted(*granted);
            let topic = vote_resp::TopicData::default().with_topic_name(target.name()).with_partitions(vec![partition]);
            ResponseKind::Vote(VoteResponse::default().with_topics(vec![topic]))
        }
        Message::BeginQuorumEpochResponse { epoch } => {
            let partition = bqe_resp::PartitionData::default()
                .with_partition_index(target.index)
                .with_leader_epoch(*epoch)
                .with_leader_id(BrokerId(-1));
            let topic = bqe_resp::TopicData::default().with_topic_name(target.name()).with_partitions(vec![partition]);
            ResponseKind::BeginQuorumEpoch(BeginQuorumEpochResponse::default().with_topics(vec![topic]))
        }
        Message::FetchResponse { .. } => return fetch_response(&[(target.clone(), Some(message.clone()))], version),
        Message::FetchSnapshotResponse { epoch, leader, snapshot, position, chunk, .. } => {
            let current_leader = snap_resp::LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(leader.map_or(-1, |n| n.0)))
                .with_leader_epoch(*epoch);
            let mut partition = snap_resp::PartitionSnapshot::default()
                .with_index(target.index)
                .with_snapshot_id(
                    snap_resp::SnapshotId::default().with_end_offset(snapshot.end_offset).with_epoch(snapshot.epoch),
                )
                .with_current_leader(current_leader)
                .with_position(i64::try_from(*position).unwrap_or(i64::MAX));
            match chunk {
                Some((size, bytes)) => {
                    partition.size = i64::try_from(*size).unwrap_or(i64::MAX);
                    partition.unaligned_records = bytes.clone();
                }
                None if leader.is_some() => {
                    partition.error_code = crate::error::ErrorCode::SnapshotNotFound.code();
                }
                None => partition.error_code = crate::error::ErrorCode::NotLeaderOrFollower.code(),
            }
            let topic = snap_resp::TopicSnapshot::default().with_name(target.name()).with_partitions(vec![partition]);
            ResponseKind::FetchSnapshot(FetchSnapshotResponse::default().with_topics(vec![topic]))
        }
        _ => return None,
    })
}

/// One Kafka Fetch response answering every partition of a replica fetch: each with the Raft's
/// answer, or `None` for a partition this node does not replicate (NOT_LEADER_OR_FOLLOWER).
/// `None` if an answer is not a fetch answer.
pub fn fetch_response(parts: &[(Target, Option<Message>)], version: i16) -> Option<ResponseKind> {
    let mut topics: Vec<fetch_resp::FetchableTopicResponse> = Vec::new();
    for (target, answer) in parts {
        let partition = match answer {
            Some(Message::FetchResponse { epoch, leader, high_watermark, diverging, entries, snapshot, .. }) => {
                let leader = fetch_resp::LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(leader.map_or(-1, |n| n.0)))
                    .with_leader_epoch(*epoch);
                let mut partition = fetch_resp::PartitionData::default()
                    .with_partition_index(target.index)
                    .with_high_watermark(high_watermark.unwrap_or(-1))
                    .with_current_leader(leader)
                    .with_records(Some(entries.clone()));
                if let Some(d) = diverging {
                    partition.diverging_epoch =
                        fetch_resp::EpochEndOffset::default().with_epoch(d.epoch).with_end_offset(d.end_offset);
                }
                if let Some(id) = snapshot {
                    partition.snapshot_id =
                        fetch_resp::SnapshotId::default().with_end_offset(id.end_offset).with_epoch(id.epoch);
                }
                partition
            }
            Some(_) => return None,
            None => fetch_resp::PartitionData::default()
                .with_partition_index(target.index)
                .with_error_code(crate::error::ErrorCode::NotLeaderOrFollower.code()),
        };
        let same = |t: &fetch_resp::FetchableTopicResponse| {
            if version >= 13 {
                t.topic_id == target.topic_id
            } else {
                t.topic.0.as_str() == target.topic
            }
        };
        match topics.iter_mut().find(|t| same(t)) {
            Some(topic) => topic.partitions.push(partition),
            None => {
                let mut topic = fetch_resp::FetchableTopicResponse::default().with_partitions(vec![partition]);
                if version >= 13 {
                    topic.topic_id = target.topic_id;
                } else {
                    topic.topic = target.name();
                }
                topics.push(topic);
            }
        }
    }
    Some(ResponseKind::Fetch(FetchResponse::default().with_responses(topics)))
}

/// How the error of a peer's answer that refused the request begins (see [`refused`]): a
/// refusal is the protocol at work, not a fault of the link.
pub const REFUSED: &str = "the request was refused";

fn refused(response: &ResponseKind) -> Result<(), String> {
    let code = match response {
        ResponseKind::Vote(r) => r.error_code,
        ResponseKind::BeginQuorumEpoch(r) => r.error_code,
        ResponseKind::EndQuorumEpoch(r) => r.error_code,
        ResponseKind::Fetch(r) => r.error_code,
        ResponseKind::FetchSnapshot(r) => r.error_code,
        _ => 0,
    };
    if code != 0 {
        return Err(format!("{REFUSED} with error code {code}"));
    }
    Ok(())
}

/// A peer's response to the Raft request `sent`, as the Raft's answer.
pub fn message_from_response(response: &ResponseKind, sent: &Message) -> Result<Message, String> {
    refused(response)?;
    let one = |count: usize| if count == 1 { Ok(()) } else { Err(format!("expected one partition, got {count}")) };
    let leader_of = |id: i32| (id >= 0).then_some(NodeId(id));
    match (response, sent) {
        (ResponseKind::Vote(r), Message::Vote { pre_vote, .. }) => {
            let parts: Vec<_> = r.topics.iter().flat_map(|t| &t.partitions).collect();
            one(parts.len())?;
            let p = parts[0];
            if p.error_code != 0 {
                return Err(format!("the vote was refused with error code {}", p.error_code));
            }
            Ok(Message::VoteResponse {
                epoch: p.leader_epoch,
                granted: p.vote_granted,
                pre_vote: *pre_vote,
                leader: leader_of(p.leader_id.0),
            })
        }
        (ResponseKind::BeginQuorumEpoch(r), Message::BeginQuorumEpoch { .. }) => {
            let parts: Vec<_> = r.topics.iter().flat_map(|t| &t.partitions).collect();
            one(parts.len())?;
            if parts[0].error_code != 0 {
                return Err(format!("the announcement was refused with error code {}", parts[0].error_code));
            }
            Ok(Message::BeginQuorumEpochResponse { epoch: parts[0].leader_epoch })
        }
        (ResponseKind::FetchSnapshot(r), Message::FetchSnapshot { id, snapshot, position, .. }) => {
            let parts: Vec<_> = r.topics.iter().flat_map(|t| &t.partitions).collect();
            one(parts.len())?;
            let p = parts[0];
            let answered = SnapshotId { end_offset: p.snapshot_id.end_offset, epoch: p.snapshot_id.epoch };
            let chunk = (p.error_code == 0 && answered == *snapshot && p.position == *position as i64)
                .then(|| Some((u64::try_from(p.size).ok()?, p.unaligned_records.clone())))
                .flatten();
            Ok(Message::FetchSnapshotResponse {
                epoch: p.current_leader.leader_epoch,
                id: *id,
                leader: leader_of(p.current_leader.leader_id.0),
                snapshot: *snapshot,
                position: *position,
                chunk,
            })
        }
        (ResponseKind::Fetch(_), Message::Fetch { .. }) => {
            let mut answers = fetch_from_response(response, &[(Target::metadata(), sent.clone())])?;
            match answers.pop() {
                Some((_, Some(answer))) if answers.is_empty() => Ok(answer),
                _ => Err("expected one answered partition".into()),
            }
        }
        _ => Err("the response does not answer the request sent".into()),
    }
}

/// A peer's response to the replica fetch `sent` (see [`fetch_request`]): per partition sent,
/// the Raft's answer, or `None` where the peer refused it (it does not replicate the partition
/// or was not asked at a version it serves). Answers are matched to the fetches sent by
/// by topic (name or id, whichever the response carries) and partition index.
pub fn fetch_from_response(
    response: &ResponseKind,
    sent: &[(Target, Message)],
) -> Result<Vec<(Target, Option<Message>)>, String> {
    refused(response)?;
    let ResponseKind::Fetch(r) = response else { return Err("the response does not answer a fetch".into()) };
    let mut answers = Vec::with_capacity(sent.len());
    for (target, message) in sent {
        let Message::Fetch { id, offset, .. } = message else { return Err("a sent part is not a fetch".into()) };
        let found = r.responses.iter().find_map(|t| {
            let named = t.topic.0.as_str() == target.topic || (!t.topic_id.is_nil() && t.topic_id == target.topic_id);
            if !named {
                return None;
            }
            t.partitions.iter().find(|p| p.partition_index == target.index)
        });
        let answer = match found {
            Some(p) if p.error_code == 0 => {
                let diverging = (p.diverging_epoch.epoch >= 0 && p.diverging_epoch.end_offset >= 0)
                    .then_some(Diverging { epoch: p.diverging_epoch.epoch, end_offset: p.diverging_epoch.end_offset });
                let leader = p.current_leader.leader_id.0;
                let snapshot = (p.snapshot_id.end_offset >= 0 && p.snapshot_id.epoch >= 0)
                    .then_some(SnapshotId { end_offset: p.snapshot_id.end_offset, epoch: p.snapshot_id.epoch });
                Some(Message::FetchResponse {
                    epoch: p.current_leader.leader_epoch,
                    id: *id,
                    offset: *offset,
                    leader: (leader >= 0).then_some(NodeId(leader)),
                    high_watermark: (p.high_watermark >= 0).then_some(p.high_watermark),
                    diverging,
                    entries: p.records.clone().unwrap_or_else(Bytes::new),
                    snapshot,
                })
            }
            _ => None,
        };
        answers.push((target.clone(), answer));
    }
    Ok(answers)
}

/// DescribeQuorum from this replica's view: the leader, its epoch and high watermark, and
/// what it knows of each voter's log end (exact on the leader, -1 elsewhere).
pub fn describe_quorum(raft: &Raft, log_end_offset: i64) -> DescribeQuorumResponse {
    let ends = raft.voter_ends(log_end_offset);
    let voters = ends
        .into_iter()
        .map(|(id, end)| {
            dq::ReplicaState::default()
                .with_replica_id(BrokerId(id.0))
                .with_log_end_offset(end.unwrap_or(-1))
                .with_last_fetch_timestamp(-1)
                .with_last_caught_up_timestamp(-1)
        })
        .collect();
    let partition = dq::PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(raft.leader().map_or(-1, |n| n.0)))
        .with_leader_epoch(raft.epoch())
        .with_high_watermark(raft.high_watermark().unwrap_or(-1))
        .with_current_voters(voters);
    DescribeQuorumResponse::default().with_topics(vec![dq::TopicData::default()
        .with_topic_name(Target::metadata().name())
        .with_partitions(vec![partition])])
}

#[cfg(test)]
mod tests {
    use kafka_protocol::protocol::{Decodable, Encodable};

    use super::*;

    fn through_the_wire_request(request: RequestKind, version: i16) -> RequestKind {
        let mut bytes = bytes::BytesMut::new();
        match &request {
            RequestKind::Vote(r) => r.encode(&mut bytes, version).unwrap(),
            RequestKind::BeginQuorumEpoch(r) => r.encode(&mut bytes, version).unwrap(),
            RequestKind::EndQuorumEpoch(r) => r.encode(&mut bytes, version).unwrap(),
            RequestKind::Fetch(r) => r.encode(&mut bytes, version).unwrap(),
            RequestKind::FetchSnapshot(r) => r.encode(&mut bytes, version).unwrap(),
            _ => unreachable!(),
        }
        let mut bytes = bytes.freeze();
        match request {
            RequestKind::FetchSnapshot(_) => {
                RequestKind::FetchSnapshot(FetchSnapshotRequest::decode(&mut bytes, version).unwrap())
            }
            RequestKind::Vote(_) => RequestKind::Vote(VoteRequest::decode(&mut bytes, version).unwrap()),
            RequestKind::BeginQuorumEpoch(_) => {
                RequestKind::BeginQuorumEpoch(BeginQuorumEpochRequest::decode(&mut bytes, version).unwrap())
            }
            RequestKind::EndQuorumEpoch(_) => {
                RequestKind::EndQuorumEpoch(EndQuorumEpochRequest::decode(&mut bytes, version).unwrap())
            }
            RequestKind::Fetch(_) => RequestKind::Fetch(FetchRequest::decode(&mut bytes, version).unwrap()),
            _ => unreachable!(),
        }
    }

    fn through_the_wire_response(response: ResponseKind, version: i16) -> ResponseKind {
        let mut bytes = bytes::BytesMut::new();
        match &response {
            ResponseKind::Vote(r) => r.encode(&mut bytes, version).unwrap(),
            ResponseKind::BeginQuorumEpoch(r) => r.encode(&mut bytes, version).unwrap(),
            ResponseKind::Fetch(r) => r.encode(&mut bytes, version).unwrap(),
            ResponseKind::FetchSnapshot(r) => r.encode(&mut bytes, version).unwrap(),
            _ => unreachable!(),
        }
        let mut bytes = bytes.freeze();
        match response {
            ResponseKind::FetchSnapshot(_) => {
                ResponseKind::FetchSnapshot(FetchSnapshotResponse::decode(&mut bytes, version).unwrap())
            }
            ResponseKind::Vote(_) => ResponseKind::Vote(VoteResponse::decode(&mut bytes, version).unwrap()),
            ResponseKind::BeginQuorumEpoch(_) => {
                ResponseKind::BeginQuorumEpoch(BeginQuorumEpochResponse::decode(&mut bytes, version).unwrap())
            }
            ResponseKind::Fetch(_) => ResponseKind::Fetch(FetchResponse::decode(&mut bytes, version).unwrap()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn requests_cross_the_wire_unchanged_at_old_and_new_versions() {
        let (from, to) = (NodeId(2), NodeId(3));
        let messages = [
            (Message::Vote { epoch: 4, last_epoch: 3, end_offset: 17, pre_vote: true }, 2),
            (Message::Vote { epoch: 4, last_epoch: 3, end_offset: 17, pre_vote: false }, 0),
            (Message::BeginQuorumEpoch { epoch: 5 }, 0),
            (Message::BeginQuorumEpoch { epoch: 5 }, 1),
            (Message::EndQuorumEpoch { epoch: 5, preferred_successors: vec![NodeId(3), NodeId(1)] }, 0),
            (Message::EndQuorumEpoch { epoch: 5, preferred_successors: vec![NodeId(3), NodeId(1)] }, 1),
            (Message::Fetch { epoch: 5, offset: 40, last_epoch: 4, id: 77 }, 12),
            (Message::Fetch { epoch: 5, offset: 40, last_epoch: 4, id: 77 }, 17),
            // The transport, not the request, names a snapshot fetch for its answer (id 0).
            (
                Message::FetchSnapshot {
                    epoch: 5,
                    snapshot: SnapshotId { end_offset: 90, epoch: 4 },
                    position: 7,
                    id: 0,
                },
                0,
            ),
            (
                Message::FetchSnapshot {
                    epoch: 5,
                    snapshot: SnapshotId { end_offset: 90, epoch: 4 },
                    position: 7,
                    id: 0,
                },
                1,
            ),
        ];
        for (message, version) in messages {
            for target in [Target::metadata(), orders(2)] {
                let request = request_for("cluster", from, to, &target, &message, version).expect("a request");
                let received = through_the_wire_request(request, version);
                let parsed = match &received {
                    RequestKind::Fetch(fetch) => {
                        let (sender, mut parts) = fetch_from_request(fetch, 77).unwrap();
                        assert_eq!(parts.len(), 1);
                        let (t, m) = parts.pop().unwrap();
                        (t, sender, m)
                    }
                    other => message_from_request(other).unwrap(),
                };
                assert!(target.matches(&parsed.0), "v{version}: {target:?} read as {:?}", parsed.0);
                assert_eq!((parsed.1, parsed.2), (from, message.clone()), "v{version}");
            }
        }
        let metadata = Target::metadata();
        assert!(request_for("c", from, to, &metadata, &Message::BeginQuorumEpochResponse { epoch: 1 }, 1).is_none());
        // Vote v0 and v1 have no pre-vote flag: a pre-vote is not sent at them.
        let pre_vote = Message::Vote { epoch: 4, last_epoch: 3, end_offset: 17, pre_vote: true };
        assert!(request_for("c", from, to, &metadata, &pre_vote, 1).is_none());
    }

    #[test]
    fn responses_cross_the_wire_and_take_what_they_lack_from_the_request() {
        let vote = Message::Vote { epoch: 4, last_epoch: 3, end_offset: 17, pre_vote: true };
        let answer = Message::VoteResponse { epoch: 4, granted: true, pre_vote: true, leader: None };
        let metadata = Target::metadata();
        let received = through_the_wire_response(response_for(&metadata, &answer, 2).unwrap(), 2);
        assert_eq!(message_from_response(&received, &vote), Ok(answer));

        let fetch = Message::Fetch { epoch: 5, offset: 40, last_epoch: 4, id: 9 };
        let snapshot = SnapshotId { end_offset: 60, epoch: 4 };
        for (diverging, entries, snapshot) in [
            (None, Bytes::from_static(b"batches"), None),
            (Some(Diverging { epoch: 3, end_offset: 31 }), Bytes::new(), None),
            (None, Bytes::new(), Some(snapshot)),
        ] {
            let answer = Message::FetchResponse {
                epoch: 5,
                id: 9,
                offset: 40,
                leader: Some(NodeId(1)),
                high_watermark: Some(38),
                diverging,
                entries,
                snapshot,
            };
            for version in [12, 17] {
                let received = through_the_wire_response(response_for(&metadata, &answer, version).unwrap(), version);
                assert_eq!(message_from_response(&received, &fetch), Ok(answer.clone()), "v{version}");
            }
        }
        let begin = Message::BeginQuorumEpoch { epoch: 5 };
        let received = through_the_wire_response(
            response_for(&metadata, &Message::BeginQuorumEpochResponse { epoch: 6 }, 1).unwrap(),
            1,
        );
        assert_eq!(message_from_response(&received, &begin), Ok(Message::BeginQuorumEpochResponse { epoch: 6 }));
        assert!(message_from_response(&received, &fetch).is_err(), "an answer to another request");

        // A snapshot's chunk; a snapshot the leader no longer has; a follower asking a non-leader.
        let fetch_snapshot = Message::FetchSnapshot { epoch: 5, snapshot, position: 3, id: 12 };
        for (leader, chunk) in
            [(Some(NodeId(1)), Some((9, Bytes::from_static(b"state")))), (Some(NodeId(1)), None), (None, None)]
        {
            let answer = Message::FetchSnapshotResponse { epoch: 5, id: 12, leader, snapshot, position: 3, chunk };
            for version in [0, 1] {
                let received = through_the_wire_response(response_for(&metadata, &answer, version).unwrap(), version);
                assert_eq!(message_from_response(&received, &fetch_snapshot), Ok(answer.clone()), "v{version}");
            }
        }
    }

    fn orders(index: i32) -> Target {
        Target { topic: "orders".into(), topic_id: uuid::Uuid::from_u128(9), index }
    }

    #[test]
    fn one_fetch_carries_many_partitions_and_each_answer_finds_its_fetch() {
        let fetch = |id, offset| Message::Fetch { epoch: 3, offset, last_epoch: 2, id };
        let sent = vec![(orders(0), fetch(11, 5)), (orders(1), fetch(12, 7)), (orders(2), fetch(13, 9))];
        for version in [12, 13] {
            let RequestKind::Fetch(request) =
                through_the_wire_request(fetch_request("c", NodeId(2), &sent, version).unwrap(), version)
            else {
                panic!()
            };
            let (from, received) = fetch_from_request(&request, 40).unwrap();
            assert_eq!(from, NodeId(2));
            assert_eq!(received.len(), 3);
            // The leader answers two partitions and does not replicate the third.
            let answer = |offset| Message::FetchResponse {
                epoch: 3,
                id: 40,
                offset,
                leader: Some(NodeId(1)),
                high_watermark: Some(offset),
                diverging: None,
                entries: Bytes::from_static(b"b"),
                snapshot: None,
            };
            let answers = vec![
                (received[0].0.clone(), Some(answer(5))),
                (received[1].0.clone(), Some(answer(7))),
                (received[2].0.clone(), None),
            ];
            let response = through_the_wire_response(fetch_response(&answers, version).unwrap(), version);
            let back = fetch_from_response(&response, &sent).unwrap();
            let ids: Vec<Option<u64>> = back
                .iter()
                .map(|(_, m)| match m {
                    Some(Message::FetchResponse { id, .. }) => Some(*id),
                    _ => None,
                })
                .collect();
            assert_eq!(ids, vec![Some(11), Some(12), None], "v{version}: each answer carries its own fetch's id");
        }
    }

    #[test]
    fn a_consumer_fetch_is_not_a_raft_fetch() {
        let consumer = FetchRequest::default().with_topics(vec![fetch_req::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("orders")))
            .with_partitions(vec![fetch_req::FetchPartition::default()])]);
        assert!(!is_metadata_fetch(&consumer));
        assert!(fetch_from_request(&consumer, 1).unwrap_err().contains("no replica"));
        let fetch = Message::Fetch { epoch: 1, offset: 0, last_epoch: 0, id: 1 };
        let RequestKind::Fetch(raft) = request_for("c", NodeId(1), NodeId(2), &Target::metadata(), &fetch, 17).unwrap()
        else {
            panic!()
        };
        assert!(is_metadata_fetch(&raft));
        assert_eq!(fetching_replica(&raft), Some(NodeId(1)));
    }
}
