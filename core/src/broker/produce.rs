//! Produce: validate each partition's batches without decoding records, check idempotent
//! sequences, append, and answer according to `acks`:
//!
//! - `acks=0`: no response at all.
//! - `acks=1`: answered once the batch is in the log (page cache).
//! - `acks=all` (-1): answered once an fsync covering the batch has completed (in a cluster,
//!   once the batch is committed, and held by `min.insync.replicas` replicas where that is
//!   more than a majority: NOT_ENOUGH_REPLICAS_AFTER_APPEND if they do not by the timeout).

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, BrokerId, ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::cluster_topics::moved_leader;
use super::txn_cluster::AskMode;
use super::{Broker, Parked, RequestId, Response, ResponseBody, WaitFor};
use crate::error::ErrorCode;
use crate::ids::PartitionId;
use crate::log::batch::{set_log_append_time, validate_produce, BatchHeader};
use crate::planted::{self, PlantedBug};
use crate::txn::producer::SequenceCheck;

/// A produce with acks=all waiting for its fsync.
pub(crate) struct ParkedProduce {
    pub id: RequestId,
    api_version: i16,
    response: ProduceResponse,
    waits: Vec<Wait>,
    pub deadline_ms: i64,
}

/// One partition of a parked produce: done when its high watermark reaches `offset_end`.
struct Wait {
    partition: PartitionId,
    offset_end: i64,
    /// The leader epoch it was written in: a replicated write is acknowledged only by the
    /// leader of that epoch, since after a change of leader the offsets it waits for may hold
    /// another leader's records.
    leader_epoch: i32,
    /// Replicas that must hold the write besides its commit: `min.insync.replicas` where that
    /// is more than a majority, else 0.
    copies: usize,
    /// Where the partition's entry sits in the response.
    at: (usize, usize),
}

impl ParkedProduce {
    pub(super) fn waits(&self) -> Vec<(PartitionId, i64, WaitFor)> {
        let mut waits: Vec<_> = self.waits.iter().map(|w| (w.partition, w.offset_end, WaitFor::Commit)).collect();
        waits.extend(
            self.waits.iter().filter(|w| w.copies > 0).map(|w| (w.partition, w.offset_end, WaitFor::Copies(w.copies))),
        );
        waits
    }
}

/// Outcome of appending one partition's record set.
pub(super) struct Appended {
    partition: PartitionId,
    pub(super) base_offset: i64,
    /// One past the last offset written (or found as a duplicate).
    offset_end: i64,
    log_start_offset: i64,
    log_append_time_ms: i64,
    leader_epoch: i32,
    copies: usize,
}

impl Broker {
    pub(super) fn produce(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        request: ProduceRequest,
    ) -> Option<ResponseBody> {
        let acks = request.acks;
        let acks_valid = (-1..=1).contains(&acks);
        let transactional_id = request.transactional_id.as_ref().map(|t| t.0.to_string());
        // v12+ (KIP-890 part 2) adds the partitions to the transaction; before, a coordinator
        // on another broker is asked to verify them.
        let mode = if api_version >= 12 { AskMode::Add } else { AskMode::Verify };
        if let Some(txn_id) = transactional_id.as_deref().filter(|_| self.is_cluster() || mode == AskMode::Add) {
            let asks = self.txn_asks(&request);
            if let Some(needed) = self.asks_needed(id, txn_id, asks, mode) {
                self.hold_produce(now_ms, id, api_version, txn_id, needed, request);
                return None;
            }
        }
        let mut response = ProduceResponse::default();
        let mut waits = Vec::new();
        for (topic_index, topic_data) in request.topic_data.into_iter().enumerate() {
            let name = topic_data.name.0.to_string();
            let mut topic_response = TopicProduceResponse::default().with_name(topic_data.name.clone());
            for (partition_index, partition_data) in topic_data.partition_data.into_iter().enumerate() {
                let mut entry = PartitionProduceResponse::default().with_index(partition_data.index);
                let result = if !acks_valid {
                    Err(ErrorCode::InvalidRequiredAcks)
                } else if Broker::is_internal(&name) {
                    // Only the broker writes its internal topics.
                    Err(ErrorCode::InvalidTopicException)
                } else if let Some(txn_id) = &transactional_id {
                    self.verify_txn_produce(txn_id, &name, partition_data.index, partition_data.records.as_deref())
                        .and_then(|()| {
                            self.append_partition(
                                now_ms,
                                &name,
                                partition_data.index,
                                acks,
                                partition_data.records,
                                true,
                            )
                        })
                } else {
                    self.append_partition(now_ms, &name, partition_data.index, acks, partition_data.records, false)
                };
                match result {
                    Ok(appended) => {
                        entry.base_offset = appended.base_offset;
                        entry.log_append_time_ms = appended.log_append_time_ms;
                        if api_version >= 5 {
                            entry.log_start_offset = appended.log_start_offset;
                        }
                        waits.push(Wait {
                            partition: appended.partition,
                            offset_end: appended.offset_end,
                            leader_epoch: appended.leader_epoch,
                            copies: appended.copies,
                            at: (topic_index, partition_index),
                        });
                    }
                    Err(code) => {
                        entry.error_code = code.code();
                        entry.base_offset = -1;
                        if api_version >= 8 && !code.message().is_empty() {
                            entry.error_message = Some(StrBytes::from_static_str(code.message()));
                        }
                    }
                }
                topic_response.partition_responses.push(entry);
            }
            response.responses.push(topic_response);
        }
        self.add_produce_leader_hints(now_ms, api_version, &mut response);
        match acks {
            0 => Some(ResponseBody::Nothing),
            -1 if !waits.is_empty() && !planted::active(PlantedBug::AckBeforeFsync) => {
                let deadline_ms = now_ms + i64::from(request.timeout_ms.max(0));
                let parked = ParkedProduce { id, api_version, response, waits, deadline_ms };
                // Answer at once if already durable (e.g. every batch was a synced duplicate).
                if let Some(done) = self.try_finish_produce(now_ms, parked, false) {
                    self.outputs.push_back(super::Output::Response(done));
                }
                None
            }
            _ => Some(ResponseBody::Message(Box::new(ResponseKind::Produce(response)))),
        }
    }

    /// A transactional Produce's record set for one partition: its producer's first batch of a
    /// transaction here needs the coordinator's word that the partition is in that
    /// transaction (KIP-890 part 1); later ones find the transaction open.
    fn verify_txn_produce(
        &self,
        txn_id: &str,
        topic: &str,
        index: i32,
        records: Option<&[u8]>,
    ) -> Result<(), ErrorCode> {
        // A partition not led here answers as a plain Produce would, so the client looks for
        // its leader rather than retrying here.
        let known = self.topic(topic).is_some_and(|t| (0..t.record.partitions).contains(&index));
        match self.partition(topic, index) {
            None if known => return Err(ErrorCode::NotLeaderOrFollower),
            None => return Err(ErrorCode::UnknownTopicOrPartition),
            Some(p) if p.failed => return Err(ErrorCode::KafkaStorageError),
            Some(p) if !p.is_leader() => return Err(ErrorCode::NotLeaderOrFollower),
            Some(_) => {}
        }
        let records = records.unwrap_or_default();
        let mut headers = Vec::new();
        let mut at = 0;
        while let Some(header) = records.get(at..).and_then(BatchHeader::parse) {
            let Some(size) = header.size_bytes() else { break };
            headers.push(header);
            at += size;
        }
        let Some(&header) = headers.first() else { return Ok(()) };
        // As Kafka: one transactional producer per record set, every batch in its transaction
        // (a batch outside it, or another producer's, would go unverified).
        let same = |h: &BatchHeader| {
            h.is_transactional() && h.producer_id == header.producer_id && h.producer_epoch == header.producer_epoch
        };
        if !header.is_transactional() || !headers.iter().all(same) {
            return Err(ErrorCode::InvalidRecord);
        }
        let open = self
            .partition(topic, index)
            .is_some_and(|p| p.producers.has_open_txn(header.producer_id, header.producer_epoch));
        if open {
            return Ok(());
        }
        self.verify_txn_partition(txn_id, topic, index, header.producer_id, header.producer_epoch)
    }

    /// The partitions of a transactional Produce whose first batch opens the producer's
    /// transaction at a partition this node leads: those the coordinator must vouch for.
    fn txn_asks(&self, request: &ProduceRequest) -> Vec<super::txn_cluster::Ask> {
        let mut asks = Vec::new();
        for topic in &request.topic_data {
            for data in &topic.partition_data {
                let Some(header) = data.records.as_deref().and_then(BatchHeader::parse) else { continue };
                let Some(partition) = self.partition(&topic.name.0, data.index) else { continue };
                if header.is_transactional()
                    && partition.is_leader()
                    && !partition.failed
                    && !partition.producers.has_open_txn(header.producer_id, header.producer_epoch)
                {
                    asks.push(super::txn_cluster::Ask {
                        partition: (topic.name.0.to_string(), data.index),
                        id: partition.id,
                        producer_id: header.producer_id,
                        epoch: header.producer_epoch,
                    });
                }
            }
        }
        asks
    }

    /// Appends one partition's record set. Transactional batches only in a `transactional`
    /// request (one with a transactional id, whose partition the coordinator has added).
    pub(super) fn append_partition(
        &mut self,
        now_ms: i64,
        topic: &str,
        index: i32,
        acks: i16,
        records: Option<Bytes>,
        transactional: bool,
    ) -> Result<Appended, ErrorCode> {
        let defaults = &self.config.topic_defaults;
        let topic_state = self.topics.get_mut(topic).ok_or(ErrorCode::UnknownTopicOrPartition)?;
        let message_bytes_max = topic_state.config.message_bytes_max(defaults);
        let log_append_time = topic_state.config.log_append_time(defaults);
        let min_insync = topic_state.config.min_insync_replicas(defaults);
        let known = (0..topic_state.record.partitions).contains(&index);
        let absent = if known { ErrorCode::NotLeaderOrFollower } else { ErrorCode::UnknownTopicOrPartition };
        let partition = topic_state.partitions.get_mut(&index).ok_or(absent)?;
        if partition.failed {
            return Err(ErrorCode::KafkaStorageError);
        }
        if !partition.is_leader() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        let mut copies = 0;
        if let Some(replica) = partition.replica.as_ref().filter(|_| acks == -1) {
            // Kafka's rule: acks=all is refused up front while too few replicas are in sync.
            // The write commits on a majority; a setting above that is also waited for.
            if replica.raft.in_sync_for_append(now_ms, crate::constants::REPLICA_LAG_MS_MAX) < min_insync {
                return Err(ErrorCode::NotEnoughReplicas);
            }
            if min_insync > replica.voters.len() / 2 + 1 {
                copies = min_insync;
            }
        }
        let leader_epoch = partition.leader_epoch();
        let records = records.ok_or(ErrorCode::CorruptMessage)?;
        let batches = validate_produce(&records, message_bytes_max)?;
        let mut first: Option<i64> = None;
        let mut offset_end = partition.log_end_offset();
        for batch in batches {
            let header = batch.header;
            if header.is_transactional() && !transactional {
                return Err(ErrorCode::TransactionalIdAuthorizationFailed);
            }
            if header.is_idempotent() {
                match partition.producers.check(&header) {
                    SequenceCheck::Append => {}
                    SequenceCheck::Duplicate { first_offset, last_offset } => {
                        first.get_or_insert(first_offset);
                        offset_end = offset_end.max(last_offset + 1);
                        continue;
                    }
                    SequenceCheck::Reject(code) => return Err(code),
                }
            }
            let mut bytes = records[batch.start..batch.end].to_vec();
            if log_append_time {
                set_log_append_time(&mut bytes, now_ms);
            }
            let base_offset = match partition.log.append(&mut bytes, leader_epoch, now_ms) {
                Ok(base_offset) => base_offset,
                Err(error) => {
                    if let Some(fault) = partition.fail(super::StorageOp::Append, &error, &mut self.woken) {
                        self.faults.push(fault);
                        self.newly_failed.push(partition.id);
                    }
                    return Err(ErrorCode::KafkaStorageError);
                }
            };
            self.unsynced.insert(partition.id);
            partition.producers.record(&header, base_offset);
            first.get_or_insert(base_offset);
            offset_end = partition.log_end_offset();
        }
        let partition_id = partition.id;
        if partition.replica.is_some() {
            // Followers waiting for entries are answered now.
            self.on_replica(now_ms, partition_id, None, |raft, view| raft.appended(view));
        }
        let partition = self.partition_by_id(partition_id).expect("looked up above");
        Ok(Appended {
            partition: partition.id,
            base_offset: first.expect("validation returns at least one batch"),
            offset_end,
            log_start_offset: partition.log.log_start_offset(),
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
            leader_epoch,
            copies,
        })
    }

    /// KIP-951 (Produce v10+): each partition answered NOT_LEADER_OR_FOLLOWER or
    /// FENCED_LEADER_EPOCH carries its current leader and epoch, and the response the leaders'
    /// addresses.
    fn add_produce_leader_hints(&self, now_ms: i64, api_version: i16, response: &mut ProduceResponse) {
        if api_version < 10 || !self.is_cluster() {
            return;
        }
        let mut endpoints: Vec<NodeEndpoint> = Vec::new();
        for topic in &mut response.responses {
            for entry in &mut topic.partition_responses {
                if !moved_leader(entry.error_code) {
                    continue;
                }
                let Some(hint) = self.leader_hint(now_ms, topic.name.0.as_str(), entry.index) else { continue };
                entry.current_leader =
                    LeaderIdAndEpoch::default().with_leader_id(BrokerId(hint.leader)).with_leader_epoch(hint.epoch);
                if !endpoints.iter().any(|e| e.node_id.0 == hint.leader) {
                    endpoints.push(
                        NodeEndpoint::default()
                            .with_node_id(BrokerId(hint.leader))
                            .with_host(StrBytes::from_string(hint.host))
                            .with_port(hint.port)
                            .with_rack(hint.rack.map(StrBytes::from_string)),
                    );
                }
            }
        }
        response.node_endpoints = endpoints;
    }

    /// Finishes a parked acks=all produce if every partition is durable (or failed), or at its
    /// deadline, or when `force`d at shutdown. Otherwise parks it again.
    pub(super) fn try_finish_produce(
        &mut self,
        now_ms: i64,
        mut parked: ParkedProduce,
        force: bool,
    ) -> Option<Response> {
        // With the parking lot full, time out at once rather than grow without bound; the
        // producer retries and idempotence removes the duplicate.
        let give_up =
            force || now_ms >= parked.deadline_ms || self.parked.len() >= crate::constants::PARKED_REQUESTS_MAX;
        let mut pending = false;
        for wait in &parked.waits {
            let (topic_index, partition_index) = wait.at;
            let entry = &mut parked.response.responses[topic_index].partition_responses[partition_index];
            if entry.error_code != 0 {
                continue;
            }
            match self.partition_by_id(wait.partition) {
                None => entry.error_code = ErrorCode::UnknownTopicOrPartition.code(),
                // Written in an epoch that ended: its offsets may now hold another leader's
                // records. The producer retries; idempotence finds the batch if it survived.
                Some(p) if !p.leads_in(wait.leader_epoch) => entry.error_code = ErrorCode::NotLeaderOrFollower.code(),
                // Committed (and held by as many replicas as asked) before the partition failed:
                // acknowledged as it is.
                Some(p) if p.high_watermark() >= wait.offset_end && p.held_by(wait.copies) >= wait.offset_end => {}
                Some(p) if p.failed => entry.error_code = ErrorCode::KafkaStorageError.code(),
                // Committed, but fewer replicas than `min.insync.replicas` took it in time.
                Some(p) if give_up && p.high_watermark() >= wait.offset_end => {
                    entry.error_code = ErrorCode::NotEnoughReplicasAfterAppend.code()
                }
                Some(_) if give_up => entry.error_code = ErrorCode::RequestTimedOut.code(),
                Some(_) => pending = true,
            }
            if entry.error_code != 0 {
                entry.base_offset = -1;
            }
        }
        if pending {
            self.park(Parked::Produce(parked));
            return None;
        }
        self.add_produce_leader_hints(now_ms, parked.api_version, &mut parked.response);
        Some(Response {
            id: parked.id,
            api_key: ApiKey::Produce,
            api_version: parked.api_version,
            body: ResponseBody::Message(Box::new(ResponseKind::Produce(parked.response))),
        })
    }
}
