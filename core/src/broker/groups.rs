//! The group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup (through the
//! classic [`Coordinator`](crate::group::Coordinator)), ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe (through [`ConsumerGroups`](crate::group::ConsumerGroups), KIP-848),
//! and OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups and OffsetDelete over
//! the committed-offset store.
//!
//! A group id belongs to one protocol at a time: while a group has members of one protocol,
//! members of the other are refused (INCONSISTENT_GROUP_PROTOCOL for JoinGroup,
//! GROUP_ID_NOT_FOUND for ConsumerGroupHeartbeat, as Kafka answers with migration disabled).
//! An empty group changes protocol with its next member; its committed offsets stay.
//!
//! Committed offsets are records in the internal `__consumer_offsets` log. An OffsetCommit is
//! answered only after the fsync that covers its record, and is applied to the in-memory store
//! at that moment, so an offset a client was told is committed survives any crash and an offset
//! that was not acknowledged is never served.

use std::collections::BTreeMap;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::group_partitions::Home;
use super::txn_cluster::AskMode;
use super::{Broker, Parked, RequestId, Response, ResponseBody, StorageFault, StorageOp, WaitFor};
use crate::error::ErrorCode;
use crate::group::offsets::{record, OffsetKey};
use crate::group::{membership, CommittedOffset, GroupStore, OFFSETS_TOPIC};
use crate::ids::PartitionId;
use crate::log::batch::build::{batch, transactional, Idempotence, Record};
use crate::log::batch::BatchHeader;

/// `offset.metadata.max.bytes`
const OFFSET_METADATA_BYTES_MAX: usize = 4096;
/// How long a commit may wait for its fsync before it is answered with a timeout.
const COMMIT_WAIT_MS_MAX: i64 = 30_000;

/// No ACLs yet: every group operation is allowed (READ, DELETE, DESCRIBE).
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

fn s(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// A write to the offsets log waiting to be committed: commits, the tombstones of
/// OffsetDelete and DeleteGroups, and the group records that SyncGroups wait for.
pub(crate) struct ParkedOffsets {
    /// The request answered when the write is committed (for a group record, the leader's
    /// SyncGroup that decided it).
    pub id: RequestId,
    then: AfterOffsets,
    /// Each offsets partition written: the end of what was written to it, and its leader
    /// epoch then (the write counts only if that epoch commits it).
    written: Vec<(PartitionId, i64, i32)>,
    pub deadline_ms: i64,
}

/// What a committed write to the offsets log completes.
enum AfterOffsets {
    /// A request's reply, and the offsets it sets (applied to the store only once committed).
    Reply {
        api_key: ApiKey,
        api_version: i16,
        body: Box<ResponseKind>,
        entries: Vec<(OffsetKey, Option<CommittedOffset>)>,
        /// TxnOffsetCommit: the producer whose transaction holds the offsets until its marker.
        txn_producer: Option<i64>,
    },
    /// A group's record for a generation: the coordinator answers its SyncGroups.
    GroupStored { group: String, generation: i32 },
}

impl ParkedOffsets {
    pub(super) fn waits(&self) -> Vec<(PartitionId, i64, WaitFor)> {
        self.written.iter().map(|&(partition, offset_end, _)| (partition, offset_end, WaitFor::Commit)).collect()
    }
}

/// FindCoordinator's key type for a transactional id (0 is a group).
pub(super) const TRANSACTION_KEY: i8 = 1;

impl Broker {
    /// Refuses a classic JoinGroup for a group whose members use the consumer protocol; an
    /// empty consumer-protocol group becomes a classic one.
    pub(super) fn classic_join_refused(&mut self, request: &JoinGroupRequest) -> Option<JoinGroupResponse> {
        let group_id = request.group_id.0.as_str();
        if self.consumer_groups.is_active(group_id) {
            return Some(
                JoinGroupResponse::default()
                    .with_error_code(ErrorCode::InconsistentGroupProtocol.code())
                    .with_generation_id(-1)
                    .with_member_id(request.member_id.clone()),
            );
        }
        // Empty: forget its consumer-protocol state; the classic coordinator takes it over.
        self.consumer_groups.delete(group_id).ok();
        None
    }

    pub(super) fn consumer_group_heartbeat(
        &mut self,
        now_ms: i64,
        api_version: i16,
        client_id: &str,
        request: ConsumerGroupHeartbeatRequest,
    ) -> ConsumerGroupHeartbeatResponse {
        let group_id = request.group_id.0.as_str();
        if self.groups.is_active(group_id) {
            return ConsumerGroupHeartbeatResponse::default()
                .with_error_code(ErrorCode::GroupIdNotFound.code())
                .with_error_message(Some(s(format!("Group {group_id} is not a consumer group."))));
        }
        if !self.consumer_groups.contains(group_id) {
            // An empty classic group (or none): the consumer protocol takes it over.
            self.groups.delete(group_id).ok();
        }
        let topics = &self.topics;
        let lookup = |name: &str| topics.get(name).map(|t| (t.record.id, t.record.partitions));
        self.consumer_groups.heartbeat(now_ms, api_version, client_id, &request, &lookup)
    }

    pub(super) fn consumer_group_describe(
        &self,
        api_version: i16,
        request: ConsumerGroupDescribeRequest,
    ) -> ConsumerGroupDescribeResponse {
        let mut response = ConsumerGroupDescribeResponse::default();
        for group in request.group_ids {
            if let Some(code) = self.coordinated_elsewhere(&group.0) {
                response.groups.push(
                    consumer_group_describe_response::DescribedGroup::default()
                        .with_group_id(group)
                        .with_error_code(code.code())
                        .with_authorized_operations(i32::MIN),
                );
                continue;
            }
            let described = match self.consumer_groups.describe(&group.0, api_version) {
                Some(mut described) => {
                    if request.include_authorized_operations {
                        described.authorized_operations = GROUP_OPERATIONS;
                    }
                    described
                }
                None => {
                    let message = if self.groups.state_of(&group.0).is_some() || self.offsets.has_group(&group.0) {
                        format!("Group {} is not a consumer group.", group.0.as_str())
                    } else {
                        format!("Group {} not found.", group.0.as_str())
                    };
                    consumer_group_describe_response::DescribedGroup::default()
                        .with_group_id(group)
                        .with_error_code(ErrorCode::GroupIdNotFound.code())
                        .with_error_message(Some(s(message)))
                        .with_authorized_operations(i32::MIN)
                }
            };
            response.groups.push(described);
        }
        response
    }

    /// Whether a group has members of either protocol.
    fn group_is_active(&self, group_id: &str) -> bool {
        self.groups.is_active(group_id) || self.consumer_groups.is_active(group_id)
    }

    pub(super) fn find_coordinator(
        &self,
        api_version: i16,
        request: FindCoordinatorRequest,
    ) -> FindCoordinatorResponse {
        // (error, message, coordinator id, host, port)
        let answer = |key_type: i8, key: &str| -> (ErrorCode, Option<&'static str>, BrokerId, String, i32) {
            if key_type != 0 && key_type != TRANSACTION_KEY {
                let message = Some("unknown coordinator key type");
                return (ErrorCode::InvalidRequest, message, BrokerId(-1), String::new(), -1);
            }
            let home = if key_type == TRANSACTION_KEY { self.txn_home(key) } else { self.group_home(key) };
            match home {
                // A coordinator still loading is named all the same; its group requests
                // answer COORDINATOR_LOAD_IN_PROGRESS until it is ready (as in Kafka).
                Home::Here | Home::Loading => (
                    ErrorCode::None,
                    None,
                    BrokerId(self.config.node_id),
                    self.config.advertised_host.clone(),
                    self.config.advertised_port,
                ),
                Home::There(id, host, port) => (ErrorCode::None, None, id, host, port),
                Home::Unavailable => {
                    let message = Some("the coordinator is not available");
                    (ErrorCode::CoordinatorNotAvailable, message, BrokerId(-1), String::new(), -1)
                }
            }
        };
        let mut response = FindCoordinatorResponse::default();
        if api_version >= 4 {
            for key in request.coordinator_keys {
                let (code, message, node_id, host, port) = answer(request.key_type, key.as_str());
                let mut entry = CoordinatorEntry::default().with_key(key).with_error_code(code.code());
                if code == ErrorCode::None {
                    entry = entry.with_node_id(node_id).with_host(s(host)).with_port(port);
                } else {
                    entry = entry.with_node_id(BrokerId(-1)).with_port(-1).with_error_message(message.map(s));
                }
                response.coordinators.push(entry);
            }
        } else {
            let key_type = if api_version >= 1 { request.key_type } else { 0 };
            let (code, message, node_id, host, port) = answer(key_type, request.key.as_str());
            response.error_code = code.code();
            if code == ErrorCode::None {
                response = response.with_node_id(node_id).with_host(s(host)).with_port(port);
            } else {
                response = response.with_node_id(BrokerId(-1)).with_port(-1);
                if api_version >= 1 {
                    response.error_message = message.map(s);
                }
            }
        }
        response
    }

    /// Writes the coordinator's group records, then moves its finished replies to the
    /// outputs.
    pub(super) fn drain_group_replies(&mut self, now_ms: i64) {
        loop {
            let stores = self.groups.drain_stores();
            if stores.is_empty() {
                break;
            }
            for store in stores {
                self.write_group_store(now_ms, store);
            }
        }
        for reply in self.groups.drain() {
            self.outputs.push_back(super::Output::Response(Response {
                id: reply.id,
                api_key: reply.api_key,
                api_version: reply.api_version,
                body: ResponseBody::Message(Box::new(reply.body)),
            }));
        }
    }

    /// Appends a group's record; the SyncGroups that wait for it are answered when it is
    /// committed, or fail now if the offsets log cannot take it.
    fn write_group_store(&mut self, now_ms: i64, store: GroupStore) {
        let record = membership::record(&store.group, Some(&store.stored), now_ms);
        let appended = self.append_offsets_records(now_ms, vec![(store.group.clone(), record)], None);
        let Some((generation, id)) = store.syncs_wait else { return };
        match appended {
            Ok(written) => self.park(Parked::Offsets(ParkedOffsets {
                id,
                then: AfterOffsets::GroupStored { group: store.group, generation },
                written,
                deadline_ms: now_ms + COMMIT_WAIT_MS_MAX,
            })),
            Err(code) => self.groups.store_failed(now_ms, &store.group, generation, code),
        }
    }

    /// Appends offset records (and the tombstones of `forgotten_groups`' records) and parks
    /// the reply until they are committed. Returns the reply at once if there is nothing to
    /// write or the offsets log cannot take the write.
    #[allow(clippy::too_many_arguments)]
    fn write_offsets(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_key: ApiKey,
        api_version: i16,
        body: ResponseKind,
        entries: Vec<(OffsetKey, Option<CommittedOffset>)>,
        forgotten_groups: &[String],
    ) -> Option<ResponseKind> {
        self.write_offsets_as(now_ms, id, (api_key, api_version, body), entries, forgotten_groups, None)
    }

    /// [`Broker::write_offsets`], or for TxnOffsetCommit as a transactional batch of
    /// `producer` (id, epoch), whose offsets wait for its transaction's marker.
    fn write_offsets_as(
        &mut self,
        now_ms: i64,
        id: RequestId,
        (api_key, api_version, body): (ApiKey, i16, ResponseKind),
        entries: Vec<(OffsetKey, Option<CommittedOffset>)>,
        forgotten_groups: &[String],
        producer: Option<(i64, i16)>,
    ) -> Option<ResponseKind> {
        let txn_producer = producer.map(|(producer_id, _)| producer_id);
        let mut records: Vec<(String, Record)> =
            entries.iter().map(|(key, value)| (key.0.clone(), record(key, value.as_ref(), now_ms))).collect();
        records.extend(forgotten_groups.iter().map(|g| (g.clone(), membership::record(g, None, now_ms))));
        if records.is_empty() {
            return Some(body);
        }
        match self.append_offsets_records(now_ms, records, producer) {
            Ok(written) => {
                let then = AfterOffsets::Reply { api_key, api_version, body: Box::new(body), entries, txn_producer };
                self.park(Parked::Offsets(ParkedOffsets {
                    id,
                    then,
                    written,
                    deadline_ms: now_ms + COMMIT_WAIT_MS_MAX,
                }));
                None
            }
            Err(code) => Some(with_error(body, code)),
        }
    }

    /// Appends records, each of a group, to the offsets partitions of their groups led here:
    /// one batch per partition (several only for a DeleteGroups of groups that fall to
    /// different partitions). Returns what was written, or the error for the caller's reply
    /// if a partition cannot take its batch.
    /// With `producer` (id, epoch), the batch is that producer's transactional batch (a
    /// TxnOffsetCommit), which opens its transaction in the offsets partition.
    fn append_offsets_records(
        &mut self,
        now_ms: i64,
        records: Vec<(String, Record)>,
        producer: Option<(i64, i16)>,
    ) -> Result<Vec<(PartitionId, i64, i32)>, ErrorCode> {
        let mut by_partition: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        for (group, record) in records {
            by_partition.entry(self.offsets_partition(&group)).or_default().push(record);
        }
        let mut written = Vec::new();
        for (index, records) in by_partition {
            let mut bytes = match producer {
                None => batch(&records, None),
                Some((producer_id, producer_epoch)) => {
                    let idempotence = Idempotence { producer_id, producer_epoch, base_sequence: 0 };
                    transactional(batch(&records, Some(idempotence)))
                }
            };
            let appended = match self.partition_mut(OFFSETS_TOPIC, index) {
                Some(p) if !p.failed && p.is_leader() => {
                    let epoch = p.leader_epoch();
                    match p.log.append(&mut bytes, epoch, now_ms) {
                        Ok(base_offset) => {
                            if let Some(header) = BatchHeader::parse(&bytes).filter(|h| h.is_transactional()) {
                                p.producers.record(&header, base_offset);
                            }
                            Ok((p.id, p.log.end_offset(), epoch, p.replica.is_some()))
                        }
                        Err(error) => Err(Some((p.id, error))),
                    }
                }
                _ => Err(None),
            };
            match appended {
                Ok((partition, offset_end, epoch, replicated)) => {
                    self.note_unsynced(partition);
                    if replicated {
                        // Followers waiting for entries are answered now.
                        self.on_replica(now_ms, partition, None, |raft, view| raft.appended(view));
                    }
                    written.push((partition, offset_end, epoch));
                }
                Err(failure) => {
                    if let Some((partition, error)) = failure {
                        self.fail_partition(partition, StorageOp::Append, &error);
                    }
                    return Err(if self.is_cluster() {
                        ErrorCode::NotCoordinator
                    } else {
                        ErrorCode::CoordinatorNotAvailable
                    });
                }
            }
        }
        Ok(written)
    }

    /// Answers a parked offsets write once committed (applying it), failed, written in an
    /// epoch that ended, or timed out.
    pub(super) fn try_finish_offsets(&mut self, now_ms: i64, parked: ParkedOffsets, force: bool) -> Option<Response> {
        // The worst state among the partitions written.
        #[derive(PartialEq, Eq, PartialOrd, Ord)]
        enum State {
            Committed,
            Waiting,
            /// Written in an epoch that ended: the records may be gone; the client asks the
            /// new coordinator.
            Moved,
            Failed,
        }
        let mut state = State::Committed;
        for &(partition, offset_end, epoch) in &parked.written {
            let here = match self.partition_by_id(partition) {
                None => State::Failed,
                Some(p) if !p.leads_in(epoch) => State::Moved,
                Some(p) if p.high_watermark() >= offset_end => State::Committed,
                Some(p) if p.failed => State::Failed,
                Some(_) => State::Waiting,
            };
            state = state.max(here);
        }
        let (api_key, api_version, body, entries, txn_producer) = match parked.then {
            AfterOffsets::Reply { api_key, api_version, body, entries, txn_producer } => {
                (api_key, api_version, *body, entries, txn_producer)
            }
            AfterOffsets::GroupStored { group, generation } => {
                let code = match state {
                    State::Committed => None,
                    State::Waiting if !force && now_ms < parked.deadline_ms => {
                        let then = AfterOffsets::GroupStored { group, generation };
                        self.park(Parked::Offsets(ParkedOffsets { then, ..parked }));
                        return None;
                    }
                    // Kafka's answer to a SyncGroup whose record timed out.
                    State::Waiting if !force => Some(ErrorCode::CoordinatorNotAvailable),
                    State::Waiting | State::Moved => Some(ErrorCode::NotCoordinator),
                    State::Failed if self.is_cluster() => Some(ErrorCode::NotCoordinator),
                    State::Failed => Some(ErrorCode::CoordinatorNotAvailable),
                };
                match code {
                    None => self.groups.stored(&group, generation),
                    Some(code) => self.groups.store_failed(now_ms, &group, generation, code),
                }
                self.drain_group_replies(now_ms);
                return None;
            }
        };
        let body = match state {
            State::Committed => {
                for (key, value) in entries {
                    match (txn_producer, value) {
                        (Some(producer_id), Some(value)) => self.offsets.add_pending(producer_id, key, value),
                        (_, value) => self.offsets.set(key, value),
                    }
                }
                body
            }
            State::Waiting if !force && now_ms < parked.deadline_ms => {
                let then = AfterOffsets::Reply { api_key, api_version, body: Box::new(body), entries, txn_producer };
                self.park(Parked::Offsets(ParkedOffsets { then, ..parked }));
                return None;
            }
            State::Waiting => with_error(body, ErrorCode::RequestTimedOut),
            State::Moved => with_error(body, ErrorCode::NotCoordinator),
            State::Failed if self.is_cluster() => with_error(body, ErrorCode::NotCoordinator),
            State::Failed => with_error(body, ErrorCode::CoordinatorNotAvailable),
        };
        Some(Response { id: parked.id, api_key, api_version, body: ResponseBody::Message(Box::new(body)) })
    }

    pub(super) fn offset_commit(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        request: OffsetCommitRequest,
    ) -> Option<ResponseKind> {
        let group_id = request.group_id.0.to_string();
        let membership = if group_id.is_empty() {
            Err(ErrorCode::InvalidGroupId)
        } else if self.consumer_groups.contains(&group_id) {
            self.consumer_groups.validate_commit(&group_id, request.generation_id_or_member_epoch, &request.member_id)
        } else {
            self.groups.validate_commit(
                &group_id,
                request.generation_id_or_member_epoch,
                &request.member_id,
                request.group_instance_id.as_deref(),
            )
        };
        let mut response = OffsetCommitResponse::default();
        let mut entries = Vec::new();
        for topic in &request.topics {
            let name = topic.name.0.to_string();
            let mut topic_response = OffsetCommitResponseTopic::default().with_name(topic.name.clone());
            for partition in &topic.partitions {
                // The partition may live on another broker of a cluster; it must exist.
                let code = match self.offset_to_commit(
                    now_ms,
                    membership,
                    &group_id,
                    &name,
                    (
                        partition.partition_index,
                        partition.committed_offset,
                        partition.committed_leader_epoch,
                        partition.committed_metadata.as_deref(),
                    ),
                ) {
                    Ok(entry) => {
                        entries.push(entry);
                        ErrorCode::None
                    }
                    Err(code) => code,
                };
                topic_response.partitions.push(
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(code.code()),
                );
            }
            response.topics.push(topic_response);
        }
        let body = ResponseKind::OffsetCommit(response);
        self.write_offsets(now_ms, id, ApiKey::OffsetCommit, api_version, body, entries, &[])
    }

    /// One partition of an OffsetCommit or TxnOffsetCommit, given the request's verdict on
    /// the group and its member: the entry to write, or why not. `(index, offset, leader
    /// epoch, metadata)` as the request carries them.
    fn offset_to_commit(
        &self,
        now_ms: i64,
        verdict: Result<(), ErrorCode>,
        group_id: &str,
        topic: &str,
        (index, offset, leader_epoch, metadata): (i32, i64, i32, Option<&str>),
    ) -> Result<(OffsetKey, Option<CommittedOffset>), ErrorCode> {
        verdict?;
        if !self.topic(topic).is_some_and(|t| (0..t.record.partitions).contains(&index)) {
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
        if metadata.is_some_and(|m| m.len() > OFFSET_METADATA_BYTES_MAX) {
            return Err(ErrorCode::OffsetMetadataTooLarge);
        }
        let metadata = metadata.unwrap_or_default().to_string();
        let committed = CommittedOffset { offset, leader_epoch, metadata, commit_ms: now_ms };
        Ok(((group_id.to_string(), topic.to_string(), index), Some(committed)))
    }

    /// TxnOffsetCommit: offsets a transactional producer commits as part of its transaction
    /// (a consume-transform-produce loop). They are written to the group's offsets partition as
    /// the producer's transactional batch, which the coordinator must know is in the
    /// transaction (AddOffsetsToTxn; KIP-890 part 1), and take effect only when the
    /// transaction's marker commits them there.
    pub(super) fn txn_offset_commit(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        request: TxnOffsetCommitRequest,
    ) -> Option<ResponseKind> {
        let group_id = request.group_id.0.to_string();
        if let Some(code) = self.coordinated_elsewhere(&group_id).filter(|_| self.is_cluster()) {
            // Not the group's coordinator (or still loading it): the client looks it up again.
            return Some(ResponseKind::TxnOffsetCommit(refuse_txn_offsets(&request, code)));
        }
        let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
        let offsets_partition = (OFFSETS_TOPIC.to_string(), self.offsets_partition(&group_id));
        // v5+ (KIP-890 part 2) adds the group's offsets partition to the transaction; before,
        // in a cluster, a coordinator on another broker is asked to verify it.
        let mode = if api_version >= 5 { AskMode::Add } else { AskMode::Verify };
        let led = self.partition(OFFSETS_TOPIC, offsets_partition.1).filter(|p| p.is_leader() && !p.failed);
        if let Some(partition) = led.filter(|_| self.is_cluster() || mode == AskMode::Add) {
            let ask =
                super::txn_cluster::Ask { partition: offsets_partition.clone(), id: partition.id, producer_id, epoch };
            if let Some(needed) = self.asks_needed(id, &request.transactional_id.0, vec![ask], mode) {
                self.hold_txn_offset_commit(now_ms, id, api_version, needed, request);
                return None;
            }
        }
        // v3+ may name the member and generation (KIP-447); older clients name neither.
        let named_member = request.generation_id >= 0 || !request.member_id.is_empty();
        let verdict =
            if group_id.is_empty() {
                Err(ErrorCode::InvalidGroupId)
            } else if let Err(code) =
                self.verify_txn_offsets(&request.transactional_id.0, &offsets_partition, producer_id, epoch)
            {
                Err(code)
            } else if !named_member {
                Ok(())
            } else if self.consumer_groups.contains(&group_id) {
                // Kafka answers a stale KIP-848 member epoch here with ILLEGAL_GENERATION, which
                // transactional clients know.
                self.consumer_groups.validate_commit(&group_id, request.generation_id, &request.member_id).map_err(
                    |code| if code == ErrorCode::StaleMemberEpoch { ErrorCode::IllegalGeneration } else { code },
                )
            } else {
                self.groups.validate_txn_commit(
                    &group_id,
                    request.generation_id,
                    &request.member_id,
                    request.group_instance_id.as_deref(),
                )
            };
        let mut response = TxnOffsetCommitResponse::default();
        let mut entries = Vec::new();
        for topic in &request.topics {
            let name = topic.name.0.to_string();
            let mut topic_response =
                txn_offset_commit_response::TxnOffsetCommitResponseTopic::default().with_name(topic.name.clone());
            for partition in &topic.partitions {
                let fields = (
                    partition.partition_index,
                    partition.committed_offset,
                    partition.committed_leader_epoch,
                    partition.committed_metadata.as_deref(),
                );
                let code = match self.offset_to_commit(now_ms, verdict, &group_id, &name, fields) {
                    Ok(entry) => {
                        entries.push(entry);
                        ErrorCode::None
                    }
                    Err(code) => code,
                };
                topic_response.partitions.push(
                    txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(code.code()),
                );
            }
            response.topics.push(topic_response);
        }
        let reply = (ApiKey::TxnOffsetCommit, api_version, ResponseKind::TxnOffsetCommit(response));
        self.write_offsets_as(now_ms, id, reply, entries, &[], Some((producer_id, epoch)))
    }

    /// With `require_stable` (OffsetFetch v7+, KIP-447), a partition whose offset an open
    /// transaction may still change answers UNSTABLE_OFFSET_COMMIT, and the consumer asks again.
    fn fetch_offsets_of(
        &self,
        group: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> Vec<(String, Vec<FetchedOffset>)> {
        let wanted = wanted.unwrap_or_else(|| {
            let mut all: Vec<(String, Vec<i32>)> = Vec::new();
            for (topic, partition, _) in self.offsets.group(group) {
                match all.last_mut() {
                    Some((t, parts)) if t == topic => parts.push(partition),
                    _ => all.push((topic.to_string(), vec![partition])),
                }
            }
            all
        });
        wanted
            .into_iter()
            .map(|(topic, partitions)| {
                let rows = partitions
                    .into_iter()
                    .map(|p| match self.offsets.get(group, &topic, p) {
                        _ if require_stable && self.offsets.has_pending(group, &topic, p) => {
                            (p, -1, -1, String::new(), ErrorCode::UnstableOffsetCommit)
                        }
                        Some(c) => (p, c.offset, c.leader_epoch, c.metadata.clone(), ErrorCode::None),
                        None => (p, -1, -1, String::new(), ErrorCode::None),
                    })
                    .collect();
                (topic, rows)
            })
            .collect()
    }

    pub(super) fn offset_fetch(&self, api_version: i16, request: OffsetFetchRequest) -> OffsetFetchResponse {
        let mut response = OffsetFetchResponse::default();
        if api_version >= 8 {
            for group in request.groups {
                let wanted = group
                    .topics
                    .map(|topics| topics.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
                let topics = self
                    .fetch_offsets_of(&group.group_id.0, wanted, request.require_stable)
                    .into_iter()
                    .map(|(topic, rows)| {
                        OffsetFetchResponseTopics::default().with_name(TopicName(s(topic))).with_partitions(
                            rows.into_iter()
                                .map(|(p, offset, epoch, metadata, code)| {
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(s(metadata)))
                                        .with_error_code(code.code())
                                })
                                .collect(),
                        )
                    })
                    .collect();
                response
                    .groups
                    .push(OffsetFetchResponseGroup::default().with_group_id(group.group_id).with_topics(topics));
            }
            return response;
        }
        let wanted = request
            .topics
            .map(|topics| topics.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
        response.topics = self
            .fetch_offsets_of(&request.group_id.0, wanted, api_version >= 7 && request.require_stable)
            .into_iter()
            .map(|(topic, rows)| {
                OffsetFetchResponseTopic::default().with_name(TopicName(s(topic))).with_partitions(
                    rows.into_iter()
                        .map(|(p, offset, epoch, metadata, code)| {
                            let mut row = OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_metadata(Some(s(metadata)))
                                .with_error_code(code.code());
                            if api_version >= 5 {
                                row.committed_leader_epoch = epoch;
                            }
                            row
                        })
                        .collect(),
                )
            })
            .collect();
        response
    }

    pub(super) fn list_groups(&self, api_version: i16, request: ListGroupsRequest) -> ListGroupsResponse {
        let mut groups = self.groups.list();
        for (group_id, state) in self.consumer_groups.list() {
            groups.push(
                kafka_protocol::messages::list_groups_response::ListedGroup::default()
                    .with_group_id(GroupId(s(group_id)))
                    .with_protocol_type(s("consumer"))
                    .with_group_state(s(state))
                    .with_group_type(s("consumer")),
            );
        }
        for group in self.offsets.groups() {
            if !groups.iter().any(|g| *g.group_id.0 == *group) {
                groups.push(
                    kafka_protocol::messages::list_groups_response::ListedGroup::default()
                        .with_group_id(GroupId(s(group)))
                        .with_protocol_type(s("consumer"))
                        .with_group_state(s("Empty"))
                        .with_group_type(s("classic")),
                );
            }
        }
        let states: Vec<String> = request.states_filter.iter().map(|s| s.to_ascii_lowercase()).collect();
        let types: Vec<String> = request.types_filter.iter().map(|s| s.to_ascii_lowercase()).collect();
        groups.retain(|g| {
            (states.is_empty() || states.contains(&g.group_state.to_ascii_lowercase()))
                && (types.is_empty() || types.contains(&g.group_type.to_ascii_lowercase()))
        });
        for g in &mut groups {
            if api_version < 4 {
                g.group_state = StrBytes::default();
            }
            if api_version < 5 {
                g.group_type = StrBytes::default();
            }
        }
        ListGroupsResponse::default().with_groups(groups)
    }

    pub(super) fn describe_groups(&self, api_version: i16, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
        let mut response = DescribeGroupsResponse::default();
        for group in request.groups {
            if let Some(code) = self.coordinated_elsewhere(&group.0) {
                response.groups.push(
                    describe_groups_response::DescribedGroup::default()
                        .with_group_id(group.clone())
                        .with_error_code(code.code())
                        .with_group_state(s("Dead")),
                );
                continue;
            }
            if self.consumer_groups.contains(&group.0) {
                // Kafka's answer for a consumer-protocol group below v6 (v6 adds
                // GROUP_ID_NOT_FOUND): Dead. ConsumerGroupDescribe describes it.
                response.groups.push(
                    describe_groups_response::DescribedGroup::default()
                        .with_group_id(group.clone())
                        .with_group_state(s("Dead")),
                );
                continue;
            }
            let mut described = self.groups.describe(&group.0);
            if *described.group_state == *"Dead" && self.offsets.has_group(&group.0) {
                described.group_state = s("Empty");
                described.protocol_type = s("consumer");
            }
            for member in &mut described.members {
                if api_version < 4 {
                    member.group_instance_id = None;
                }
            }
            if api_version >= 3 && request.include_authorized_operations {
                described.authorized_operations = GROUP_OPERATIONS;
            }
            response.groups.push(described);
        }
        response
    }

    pub(super) fn delete_groups(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        request: DeleteGroupsRequest,
    ) -> Option<ResponseKind> {
        let mut response = DeleteGroupsResponse::default();
        let mut entries = Vec::new();
        let mut deleted = Vec::new();
        for group in request.groups_names {
            let name = group.0.to_string();
            if let Some(code) = self.coordinated_elsewhere(&name) {
                response
                    .results
                    .push(DeletableGroupResult::default().with_group_id(group).with_error_code(code.code()));
                continue;
            }
            let known = self.groups.state_of(&name).is_some()
                || self.consumer_groups.contains(&name)
                || self.offsets.has_group(&name);
            let code = if !known {
                ErrorCode::GroupIdNotFound
            } else {
                match self.groups.delete(&name).and_then(|()| self.consumer_groups.delete(&name)) {
                    Err(code) => code,
                    Ok(()) => {
                        for (topic, partition, _) in self.offsets.group(&name) {
                            entries.push(((name.clone(), topic.to_string(), partition), None));
                        }
                        deleted.push(name.clone());
                        ErrorCode::None
                    }
                }
            };
            response.results.push(DeletableGroupResult::default().with_group_id(group).with_error_code(code.code()));
        }
        let body = ResponseKind::DeleteGroups(response);
        self.write_offsets(now_ms, id, ApiKey::DeleteGroups, api_version, body, entries, &deleted)
    }

    pub(super) fn offset_delete(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        request: OffsetDeleteRequest,
    ) -> Option<ResponseKind> {
        let group = request.group_id.0.to_string();
        let mut response = OffsetDeleteResponse::default();
        if self.groups.state_of(&group).is_none()
            && !self.consumer_groups.contains(&group)
            && !self.offsets.has_group(&group)
        {
            response.error_code = ErrorCode::GroupIdNotFound.code();
            return Some(ResponseKind::OffsetDelete(response));
        }
        // A group with live members may be consuming these partitions; Kafka refuses when the
        // group is subscribed to the topic. Without decoding subscriptions, any member refuses.
        let active = self.groups.is_active(&group);
        let mut entries = Vec::new();
        for topic in request.topics {
            let name = topic.name.0.to_string();
            let mut topic_response = OffsetDeleteResponseTopic::default().with_name(topic.name.clone());
            for partition in topic.partitions {
                let code = if active || self.consumer_groups.subscribes_to(&group, &name) {
                    ErrorCode::GroupSubscribedToTopic
                } else {
                    if self.offsets.get(&group, &name, partition.partition_index).is_some() {
                        entries.push(((group.clone(), name.clone(), partition.partition_index), None));
                    }
                    ErrorCode::None
                };
                topic_response.partitions.push(
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(code.code()),
                );
            }
            response.topics.push(topic_response);
        }
        let body = ResponseKind::OffsetDelete(response);
        self.write_offsets(now_ms, id, ApiKey::OffsetDelete, api_version, body, entries, &[])
    }

    /// Deletes committed offsets of groups without members that have not committed for
    /// `offsets.retention.minutes`, and the record of a classic group left with none (as
    /// Kafka does). Only groups coordinated here: in a cluster the tombstones go through each
    /// offsets partition's leader like commits. Applied at once; the tombstones follow in the
    /// log (if a new leader takes over before they are committed, it still has the offsets,
    /// and expires them at its own next check).
    pub(super) fn expire_offsets(&mut self, now_ms: i64) {
        let retention_ms = self.config.offsets_retention_ms;
        let mut expired = Vec::new();
        let mut records = Vec::new();
        for group in self.offsets.groups() {
            if self.group_is_active(&group) || self.coordinated_elsewhere(&group).is_some() {
                continue;
            }
            let offsets = self.offsets.group(&group);
            let newest = offsets.iter().map(|(_, _, c)| c.commit_ms).max().unwrap_or(0);
            if now_ms - newest <= retention_ms {
                continue;
            }
            for (topic, partition, _) in offsets {
                let key = (group.clone(), topic.to_string(), partition);
                records.push((group.clone(), record(&key, None, now_ms)));
                expired.push(key);
            }
            if self.groups.state_of(&group).is_some() && self.groups.delete(&group).is_ok() {
                records.push((group.clone(), membership::record(&group, None, now_ms)));
            }
        }
        if records.is_empty() {
            return;
        }
        // On failure (the partition is failed and reported inside) nothing expired here; the
        // partition's next leader, or this node after a restart, expires them.
        if self.append_offsets_records(now_ms, records, None).is_ok() {
            for key in expired {
                self.offsets.set(key, None);
            }
        }
    }
}

/// One partition's answer to OffsetFetch: (partition, offset, leader epoch, metadata, error).
type FetchedOffset = (i32, i64, i32, String, ErrorCode);

impl Broker {
    /// Bounds the offsets log (until log compaction exists): once it is larger than
    /// `offsets_log_compact_bytes`, roll it and append every live offset and the record of
    /// every Stable or Empty group again (a group in a rebalance is left out: its members are
    /// joining anyway, and a restart before its next record makes them join once more). When that
    /// rewrite is durable, [`Broker::finish_offsets_rewrite`] deletes the segments before it.
    /// Old segments are never deleted before the rewrite is on disk.
    pub(super) fn compact_offsets(&mut self, now_ms: i64) {
        let limit = self.config.offsets_log_compact_bytes;
        // A replicated log is never rewritten by one replica alone (its bytes must match its
        // peers'); a cluster's offsets partitions wait for log compaction.
        if self.offsets_rewrite.is_some() || self.is_cluster() {
            return;
        }
        // The rewrite holds committed offsets only: an open transaction's offsets and its
        // marker must stay in the log together, so it waits while the offsets partition has
        // a transaction open (its batch written, whether or not yet committed) or undecided.
        if self.partition(OFFSETS_TOPIC, 0).is_some_and(|p| p.producers.first_unstable_offset().is_some()) {
            return;
        }
        let entries: Vec<(OffsetKey, CommittedOffset)> = self
            .offsets
            .groups()
            .into_iter()
            .flat_map(|g| {
                self.offsets
                    .group(&g)
                    .into_iter()
                    .map(move |(t, p, c)| ((g.clone(), t.to_string(), p), c.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let groups = self.groups.stored_groups();
        let Some(partition) = self.partition_mut(OFFSETS_TOPIC, 0) else { return };
        if partition.failed || partition.log.size_bytes() <= limit {
            return;
        }
        let id = partition.id;
        // A roll writes index files, even one that fails part way; the next sync covers them.
        self.unsynced.insert(id);
        let partition = self.partition_mut(OFFSETS_TOPIC, 0).expect("looked up above");
        if let Err(error) = partition.log.roll(now_ms) {
            let dir = partition.log.dir().to_string();
            self.faults.push(StorageFault::new(
                StorageOp::Roll,
                dir,
                &error,
                "the offsets log is not rewritten now; the next retention check tries again",
            ));
            return;
        }
        let start = partition.log.end_offset();
        let mut records: Vec<Record> = entries.iter().map(|(k, v)| record(k, Some(v), now_ms)).collect();
        records.extend(groups.iter().map(|(g, stored)| membership::record(g, Some(stored), now_ms)));
        for chunk in records.chunks(500) {
            let mut bytes = batch(chunk, None);
            if let Err(error) = partition.log.append(&mut bytes, 0, now_ms) {
                self.fail_partition(id, StorageOp::Append, &error);
                return;
            }
        }
        self.offsets_rewrite = Some((start, partition.log.end_offset()));
    }

    /// Deletes the offsets log's segments before a rewrite once the rewrite is durable.
    pub(super) fn finish_offsets_rewrite(&mut self) {
        let Some((start, end)) = self.offsets_rewrite else { return };
        let Some(partition) = self.partition_mut(OFFSETS_TOPIC, 0) else { return };
        if partition.log.durable_offset() < end {
            return;
        }
        self.offsets_rewrite = None;
        // On failure (reported inside) the old segments stay and the next retention check
        // rewrites the offsets log again.
        let _ = self.advance_log_starts(&[(OFFSETS_TOPIC.to_string(), 0, start)]);
    }
}

/// Sets `code` on every entry of a response that carries per-partition errors.
fn with_error(body: ResponseKind, code: ErrorCode) -> ResponseKind {
    match body {
        ResponseKind::OffsetCommit(mut r) => {
            for t in &mut r.topics {
                for p in &mut t.partitions {
                    if p.error_code == 0 {
                        p.error_code = code.code();
                    }
                }
            }
            ResponseKind::OffsetCommit(r)
        }
        ResponseKind::TxnOffsetCommit(mut r) => {
            for t in &mut r.topics {
                for p in &mut t.partitions {
                    if p.error_code == 0 {
                        p.error_code = code.code();
                    }
                }
            }
            ResponseKind::TxnOffsetCommit(r)
        }
        ResponseKind::OffsetDelete(mut r) => {
            r.error_code = code.code();
            ResponseKind::OffsetDelete(r)
        }
        ResponseKind::DeleteGroups(mut r) => {
            for g in &mut r.results {
                if g.error_code == 0 {
                    g.error_code = code.code();
                }
            }
            ResponseKind::DeleteGroups(r)
        }
        other => other,
    }
}

impl Broker {
    /// An OffsetFetch of several groups (v8+) in a cluster: the groups this node does not
    /// coordinate answer NOT_COORDINATOR, each on its own, rather than offsets of -1 that
    /// would reset their consumers.
    pub(super) fn refuse_groups_elsewhere(&self, response: &mut OffsetFetchResponse) {
        if !self.is_cluster() {
            return;
        }
        for group in &mut response.groups {
            if let Some(code) = self.coordinated_elsewhere(group.group_id.0.as_str()) {
                group.error_code = code.code();
                group.topics.clear();
            }
        }
    }

    /// In a cluster, the error for a request about a group this node does not coordinate
    /// now: COORDINATOR_LOAD_IN_PROGRESS while it loads the group's partition, else
    /// NOT_COORDINATOR. `None` where it does (and on one node).
    pub(super) fn coordinated_elsewhere(&self, group: &str) -> Option<ErrorCode> {
        match self.group_home(group) {
            Home::Here => None,
            Home::Loading => Some(ErrorCode::CoordinatorLoadInProgress),
            Home::There(..) | Home::Unavailable => Some(ErrorCode::NotCoordinator),
        }
    }
}

/// A TxnOffsetCommit answer refusing every partition with `code`.
fn refuse_txn_offsets(request: &TxnOffsetCommitRequest, code: ErrorCode) -> TxnOffsetCommitResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code.code())
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// The partition of `__consumer_offsets` a group's records belong to, as Kafka picks it
/// (the Java hash of the group id, modulo `offsets.topic.num.partitions`).
pub(super) fn offsets_partition_of(group: &str, partitions: i32) -> i32 {
    let mut hash: i32 = 0;
    for unit in group.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs: the lowest value maps to 0 rather than overflowing.
    (if hash == i32::MIN { 0 } else { hash.abs() }) % partitions.max(1)
}

impl Broker {
    /// In a cluster, the answer to a group request that reached a node that does not
    /// coordinate its group: NOT_COORDINATOR, so the client asks FindCoordinator again.
    pub(super) fn not_this_coordinator(&self, api_version: i16, body: &RequestKind) -> Option<ResponseKind> {
        if !self.is_cluster() {
            return None;
        }
        let group = match body {
            RequestKind::JoinGroup(r) => &r.group_id.0,
            RequestKind::SyncGroup(r) => &r.group_id.0,
            RequestKind::Heartbeat(r) => &r.group_id.0,
            RequestKind::LeaveGroup(r) => &r.group_id.0,
            RequestKind::OffsetCommit(r) => &r.group_id.0,
            RequestKind::OffsetDelete(r) => &r.group_id.0,
            RequestKind::ConsumerGroupHeartbeat(r) => &r.group_id.0,
            RequestKind::OffsetFetch(r) if api_version < 8 => &r.group_id.0,
            // Several groups: each is refused on its own (`refuse_groups_elsewhere`).
            _ => return None,
        };
        let code = self.coordinated_elsewhere(group)?.code();
        Some(match body {
            RequestKind::JoinGroup(_) => ResponseKind::JoinGroup(JoinGroupResponse::default().with_error_code(code)),
            RequestKind::SyncGroup(_) => ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(code)),
            RequestKind::Heartbeat(_) => ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code)),
            RequestKind::LeaveGroup(_) => ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(code)),
            RequestKind::OffsetDelete(_) => {
                ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_error_code(code))
            }
            RequestKind::ConsumerGroupHeartbeat(_) => ResponseKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default().with_error_code(code).with_heartbeat_interval_ms(0),
            ),
            RequestKind::OffsetCommit(r) => {
                let topics = r
                    .topics
                    .iter()
                    .map(|t| {
                        OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                    })
                    .collect();
                ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(topics))
            }
            _ => ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_error_code(code)),
        })
    }
}
