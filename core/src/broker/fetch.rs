//! Fetch: whole stored batches from each requested partition, up to the high watermark (the
//! committed end), or for read_committed consumers up to the last stable offset, with the
//! aborted transactions among the batches returned. Long polls: if fewer than `min_bytes` are available the request is parked
//! until a sync makes more durable or `max_wait_ms` passes. Fetch sessions (KIP-227) are
//! declined: every response carries session id 0, so clients send full requests.
//!
//! Fetch from the closest replica (KIP-392): a leader asked by a consumer that names its rack
//! (Fetch v11+), when the leader is in another rack and an in-sync replica is in that one,
//! answers with that replica as the preferred read replica and no records; the consumer then
//! fetches there. A follower serves consumers' v11+ fetches up to the high watermark it has
//! been told, so a consumer reads only committed records wherever it reads.

use kafka_protocol::messages::fetch_response::{self, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, ResponseKind};

use super::{Broker, Parked, RequestId, Response, ResponseBody, WaitFor};
use crate::constants::FETCH_WAIT_MS_MAX;
use crate::error::ErrorCode;
use crate::ids::{NodeId, PartitionId};
use crate::partition::Partition;

/// Kafka's FETCH_SESSION_ID_NOT_FOUND.
const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;

/// A read that failed: (topic, partition, error).
type ReadFailure = (String, i32, std::io::Error);

pub(crate) struct ParkedFetch {
    pub id: RequestId,
    api_version: i16,
    request: FetchRequest,
    pub deadline_ms: i64,
    /// The partitions it reads and their fetch offsets, looked up when it is parked.
    waits: Vec<(PartitionId, i64)>,
}

impl ParkedFetch {
    pub(super) fn waits(&self) -> Vec<(PartitionId, i64, WaitFor)> {
        self.waits.iter().map(|&(partition, offset)| (partition, offset, WaitFor::Data)).collect()
    }
}

impl Broker {
    pub(super) fn fetch(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        request: FetchRequest,
    ) -> Option<FetchResponse> {
        if request.session_id != 0 {
            // We never hand out sessions, so any id is unknown: the client falls back to a
            // full fetch.
            return Some(FetchResponse::default().with_error_code(FETCH_SESSION_ID_NOT_FOUND));
        }
        let wait_ms = i64::from(request.max_wait_ms).clamp(0, FETCH_WAIT_MS_MAX);
        let parked = ParkedFetch { id, api_version, request, deadline_ms: now_ms + wait_ms, waits: Vec::new() };
        match self.try_finish_fetch(now_ms, parked, false) {
            Some(Response { body: ResponseBody::Message(body), .. }) => match *body {
                ResponseKind::Fetch(body) => Some(body),
                _ => unreachable!("try_finish_fetch only builds fetch responses"),
            },
            _ => None,
        }
    }

    /// Answers a fetch if it has `min_bytes`, hit an error, reached its deadline, or is
    /// `force`d; otherwise parks it (again).
    pub(super) fn try_finish_fetch(&mut self, now_ms: i64, mut parked: ParkedFetch, force: bool) -> Option<Response> {
        let (mut response, bytes, errors, read_failures) =
            self.build_fetch(now_ms, parked.api_version, &parked.request);
        for (topic, index, error) in read_failures {
            if let Some(id) = self.partition(&topic, index).map(|p| p.id) {
                self.partition_error(now_ms, id, super::StorageOp::Read, &error);
            }
        }
        let enough = bytes >= i64::from(parked.request.min_bytes.max(0));
        let give_up =
            force || now_ms >= parked.deadline_ms || self.parked.len() >= crate::constants::PARKED_REQUESTS_MAX;
        if enough || errors || give_up {
            if errors && parked.api_version >= 12 && self.is_cluster() {
                self.add_fetch_leader_hints(now_ms, &mut response);
            }
            return Some(Response {
                id: parked.id,
                api_key: ApiKey::Fetch,
                api_version: parked.api_version,
                body: ResponseBody::Message(Box::new(ResponseKind::Fetch(response))),
            });
        }
        parked.waits = self.fetch_waits(&parked.request);
        self.park(Parked::Fetch(parked));
        None
    }

    /// KIP-951 (Fetch v12+): each partition answered NOT_LEADER_OR_FOLLOWER or
    /// FENCED_LEADER_EPOCH carries its current leader and epoch. (The leaders' addresses come
    /// with v16, which is not served.)
    fn add_fetch_leader_hints(&self, now_ms: i64, response: &mut FetchResponse) {
        for topic in &mut response.responses {
            for data in &mut topic.partitions {
                if !super::cluster_topics::moved_leader(data.error_code) {
                    continue;
                }
                if let Some(hint) = self.leader_hint(now_ms, topic.topic.0.as_str(), data.partition_index) {
                    data.current_leader = fetch_response::LeaderIdAndEpoch::default()
                        .with_leader_id(kafka_protocol::messages::BrokerId(hint.leader))
                        .with_leader_epoch(hint.epoch);
                }
            }
        }
    }

    /// The partitions a fetch reads, with their fetch offsets.
    fn fetch_waits(&self, request: &FetchRequest) -> Vec<(PartitionId, i64)> {
        let mut waits = Vec::new();
        for topic in &request.topics {
            let Some(state) = self.topic(&topic.topic.0) else { continue };
            for wanted in &topic.partitions {
                if let Some(p) = state.partitions.get(&wanted.partition) {
                    waits.push((p.id, wanted.fetch_offset));
                }
            }
        }
        waits
    }

    /// Reads every requested partition. Returns the response, the record bytes in it, whether
    /// any partition has an error (errors are answered at once), and the reads that failed.
    /// A failed partition still serves what is durable.
    fn build_fetch(
        &self,
        now_ms: i64,
        api_version: i16,
        request: &FetchRequest,
    ) -> (FetchResponse, i64, bool, Vec<ReadFailure>) {
        // Fetch v11 carries the consumer's rack; from then on followers serve consumers too.
        let replica_reads = api_version >= 11;
        let client_rack = Some(request.rack_id.as_str()).filter(|rack| replica_reads && !rack.is_empty());
        let mut read_failures = Vec::new();
        let max_bytes = usize::try_from(request.max_bytes.max(0)).unwrap_or(usize::MAX);
        let mut total_bytes: usize = 0;
        let mut errors = false;
        let mut response = FetchResponse::default();
        for topic in &request.topics {
            let name = topic.topic.0.to_string();
            let mut topic_response = FetchableTopicResponse::default().with_topic(topic.topic.clone());
            for wanted in &topic.partitions {
                let mut data = PartitionData::default().with_partition_index(wanted.partition);
                match self.partition(&name, wanted.partition) {
                    None => data.error_code = self.absent_partition(&name, wanted.partition).code(),
                    Some(p) => {
                        let log = &p.log;
                        let committed = if !p.is_leader()
                            && crate::planted::active(crate::planted::PlantedBug::FollowerReadsPastCommit)
                        {
                            log.end_offset()
                        } else {
                            p.high_watermark()
                        };
                        data.high_watermark = committed;
                        data.last_stable_offset = p.last_stable_offset();
                        // read_committed (isolation level 1) stops at the last stable offset.
                        let read_committed = request.isolation_level == READ_COMMITTED;
                        let readable = if read_committed { committed.min(data.last_stable_offset) } else { committed };
                        if api_version >= 5 {
                            data.log_start_offset = log.log_start_offset();
                        }
                        if let Some(code) = read_epoch_error(p, wanted.current_leader_epoch, replica_reads) {
                            data.error_code = code.code();
                        } else if let Some(closer) =
                            client_rack.and_then(|rack| self.preferred_read_replica(now_ms, p, rack))
                        {
                            data.preferred_read_replica = BrokerId(closer.0);
                        } else if wanted.fetch_offset < log.log_start_offset() || wanted.fetch_offset > log.end_offset()
                        {
                            data.error_code = ErrorCode::OffsetOutOfRange.code();
                        } else {
                            let partition_max = usize::try_from(wanted.partition_max_bytes.max(0)).unwrap_or(0);
                            let budget = partition_max.min(max_bytes.saturating_sub(total_bytes));
                            let first_data = total_bytes == 0;
                            if budget > 0 || first_data {
                                // A replica's batches are checked as they are read, so a damaged
                                // one is never served: it ends the read and is repaired from
                                // another replica. (A single node serves what it stored; the
                                // consumer's own CRC check is all there is.)
                                let read = if p.replica.is_some() {
                                    log.read_checked(wanted.fetch_offset, budget, readable, first_data).and_then(
                                        |(read, damaged)| match damaged {
                                            Some(damaged) if read.records.is_empty() => Err(damaged.into_io()),
                                            _ => Ok(read),
                                        },
                                    )
                                } else {
                                    log.read(wanted.fetch_offset, budget, readable, first_data)
                                };
                                match read {
                                    Ok(read) => {
                                        total_bytes += read.records.len();
                                        if read_committed && api_version >= 4 {
                                            let upper_bound = batches_end(&read.records).unwrap_or(readable);
                                            data.aborted_transactions =
                                                Some(aborted_in(p, wanted.fetch_offset, upper_bound));
                                        }
                                        data.records = Some(read.records);
                                    }
                                    Err(error) => {
                                        data.error_code = ErrorCode::KafkaStorageError.code();
                                        read_failures.push((name.clone(), wanted.partition, error));
                                    }
                                }
                            }
                        }
                    }
                }
                errors |= data.error_code != 0;
                topic_response.partitions.push(data);
            }
            response.responses.push(topic_response);
        }
        (response, total_bytes as i64, errors, read_failures)
    }
}

/// Fetch's isolation level for consumers that skip open and aborted transactions.
pub(super) const READ_COMMITTED: i8 = 1;

/// The offset after the last whole batch in `records`, if there is one.
fn batches_end(records: &[u8]) -> Option<i64> {
    let mut at = 0;
    let mut end = None;
    while let Some(header) = crate::log::batch::BatchHeader::parse(&records[at..]) {
        let Some(size) = header.size_bytes().filter(|&size| at + size <= records.len()) else { break };
        end = Some(header.last_offset() + 1);
        at += size;
    }
    end
}

/// The aborted transactions a read_committed consumer must drop from records read from
/// `fetch_offset` up to `upper_bound`.
fn aborted_in(p: &Partition, fetch_offset: i64, upper_bound: i64) -> Vec<fetch_response::AbortedTransaction> {
    p.producers
        .aborted
        .collect(fetch_offset, upper_bound)
        .into_iter()
        .map(|t| {
            fetch_response::AbortedTransaction::default()
                .with_producer_id(kafka_protocol::messages::ProducerId(t.producer_id))
                .with_first_offset(t.first_offset)
        })
        .collect()
}

impl Broker {
    /// KIP-392: the replica a consumer in `rack` should read `p` from instead of this leader,
    /// an in-sync one in that rack (the lowest id of several). None: read here, because this
    /// leader is in the consumer's rack, no in-sync replica is, or rack-aware reads are off.
    fn preferred_read_replica(&self, now_ms: i64, p: &Partition, rack: &str) -> Option<NodeId> {
        if !self.config.rack_aware_reads || !p.is_leader() {
            return None;
        }
        let replica = p.replica.as_ref()?;
        let brokers = &self.quorum.as_ref()?.image().brokers;
        let in_rack = |node: &NodeId| brokers.get(node).and_then(|b| b.rack.as_deref()) == Some(rack);
        let here = NodeId(self.config.node_id);
        if in_rack(&here) {
            return None;
        }
        let mut candidates = replica.raft.in_sync(now_ms, crate::constants::REPLICA_LAG_MS_MAX);
        candidates.sort_unstable();
        candidates.into_iter().find(|node| *node != here && in_rack(node))
    }
}

/// Whether partition `p` serves a client's read or offset lookup here, checking the leader
/// epoch the client knows (-1: it does not check). Only the leader serves; a client that knows
/// a newer epoch than this replica is ahead of it (UNKNOWN_LEADER_EPOCH), one that knows an
/// older epoch must refresh its metadata (FENCED_LEADER_EPOCH). A single node is epoch 0.
pub(super) fn leader_epoch_error(p: &Partition, current_leader_epoch: i32) -> Option<ErrorCode> {
    read_epoch_error(p, current_leader_epoch, false)
}

/// As [`leader_epoch_error`], but with `replica_reads` a follower serves too (a consumer's
/// Fetch v11+, KIP-392), up to the high watermark it knows.
fn read_epoch_error(p: &Partition, current_leader_epoch: i32, replica_reads: bool) -> Option<ErrorCode> {
    let ours = p.leader_epoch();
    match current_leader_epoch {
        e if e > ours => Some(ErrorCode::UnknownLeaderEpoch),
        e if e >= 0 && e < ours => Some(ErrorCode::FencedLeaderEpoch),
        _ if !(p.is_leader() || replica_reads && p.is_follower()) => Some(ErrorCode::NotLeaderOrFollower),
        _ => None,
    }
}
