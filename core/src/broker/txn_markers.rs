//! Transaction markers: the control batches that end a producer's transaction in a partition
//! (commit or abort), written by the partition's leader when the transaction coordinator asks.
//! A marker is appended like a produced batch, replicated like one, and decided (its producer's
//! transaction leaves the partition's open set) when it is appended; the last stable offset
//! passes the transaction once the marker commits.

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{ApiKey, ResponseKind, WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::{Broker, Output, Parked, RequestId, Response, ResponseBody, WaitFor};
use crate::error::ErrorCode;
use crate::group::OFFSETS_TOPIC;
use crate::ids::PartitionId;
use crate::log::batch::marker_batch;
use crate::txn::producer::TxnEnd;

/// A marker written: where, and in which leader epoch (it is answered once committed in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MarkerWritten {
    pub offset: i64,
    pub leader_epoch: i32,
}

impl Broker {
    /// Appends the marker ending `producer_id`'s transaction in partition `id`, which this node
    /// must lead. A marker from an epoch older than the producer's batches here is refused
    /// (INVALID_PRODUCER_EPOCH): it comes from a coordinator that has been fenced.
    pub(crate) fn write_marker(
        &mut self,
        now_ms: i64,
        id: PartitionId,
        producer_id: i64,
        producer_epoch: i16,
        end: TxnEnd,
        coordinator_epoch: i32,
    ) -> Result<MarkerWritten, ErrorCode> {
        let partition = self.partition_by_id_mut(id).ok_or(ErrorCode::UnknownTopicOrPartition)?;
        if partition.failed {
            return Err(ErrorCode::KafkaStorageError);
        }
        if !partition.is_leader() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        partition.producers.check_marker(producer_id, producer_epoch)?;
        let leader_epoch = partition.leader_epoch();
        let mut batch = marker_batch(producer_id, producer_epoch, end.control_type(), coordinator_epoch, now_ms);
        let offset = match partition.log.append(&mut batch, leader_epoch, now_ms) {
            Ok(offset) => offset,
            Err(error) => {
                self.fail_partition(id, super::StorageOp::Append, &error);
                return Err(ErrorCode::KafkaStorageError);
            }
        };
        partition.producers.end_txn(producer_id, producer_epoch, offset, end);
        self.drop_verdict(id, producer_id);
        self.note_unsynced(id);
        if self.partition_by_id(id).is_some_and(|p| p.replica.is_some()) {
            self.on_replica(now_ms, id, None, |raft, view| raft.appended(view));
        }
        Ok(MarkerWritten { offset, leader_epoch })
    }
}

/// One marker written for a WriteTxnMarkers request, waiting to commit.
struct MarkerWait {
    partition: PartitionId,
    offset_end: i64,
    leader_epoch: i32,
    /// For a marker in an offsets partition: its producer and whether it commits, so the
    /// offsets the producer committed in the transaction are decided once it commits.
    offsets_txn: Option<(i64, bool)>,
    /// Seen committed (its offsets decided) at an earlier look.
    committed: bool,
    /// Where its result sits in the response: (marker, topic, partition).
    at: (usize, usize, usize),
}

pub(crate) struct ParkedMarkers {
    pub id: RequestId,
    api_version: i16,
    response: WriteTxnMarkersResponse,
    waits: Vec<MarkerWait>,
    pub deadline_ms: i64,
}

impl ParkedMarkers {
    pub(super) fn waits(&self) -> Vec<(PartitionId, i64, WaitFor)> {
        self.waits.iter().map(|w| (w.partition, w.offset_end, WaitFor::Commit)).collect()
    }
}

impl Broker {
    /// WriteTxnMarkers: a transaction coordinator asks this node, the leader of each partition
    /// named, to end a producer's transaction there. Answered once every marker committed (as
    /// an acks=all produce), each partition with its own error; the coordinator sends again
    /// what failed.
    pub(super) fn write_txn_markers(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        request: WriteTxnMarkersRequest,
    ) -> Option<ResponseBody> {
        let mut response = WriteTxnMarkersResponse::default();
        let mut waits = Vec::new();
        for (m, marker) in request.markers.into_iter().enumerate() {
            let end = if marker.transaction_result { TxnEnd::Commit } else { TxnEnd::Abort };
            let mut result = WritableTxnMarkerResult::default().with_producer_id(marker.producer_id);
            for (t, topic) in marker.topics.into_iter().enumerate() {
                let mut topic_result = WritableTxnMarkerTopicResult::default().with_name(topic.name.clone());
                for (p, index) in topic.partition_indexes.into_iter().enumerate() {
                    let written = match self.partition(&topic.name.0, index).map(|partition| partition.id) {
                        // The coordinators' own state takes no markers.
                        _ if *topic.name.0 == *super::txn::TXN_TOPIC => Err(ErrorCode::InvalidTopicException),
                        None => Err(ErrorCode::UnknownTopicOrPartition),
                        Some(partition) => self
                            .write_marker(
                                now_ms,
                                partition,
                                marker.producer_id.0,
                                marker.producer_epoch,
                                end,
                                marker.coordinator_epoch,
                            )
                            .map(|w| (partition, w)),
                    };
                    let mut partition_result = WritableTxnMarkerPartitionResult::default().with_partition_index(index);
                    match written {
                        Ok((partition, w)) => waits.push(MarkerWait {
                            partition,
                            offset_end: w.offset + 1,
                            leader_epoch: w.leader_epoch,
                            offsets_txn: (*topic.name.0 == *OFFSETS_TOPIC)
                                .then_some((marker.producer_id.0, end == TxnEnd::Commit)),
                            committed: false,
                            at: (m, t, p),
                        }),
                        Err(code) => partition_result.error_code = code.code(),
                    }
                    topic_result.partitions.push(partition_result);
                }
                result.topics.push(topic_result);
            }
            response.markers.push(result);
        }
        let parked = ParkedMarkers {
            id,
            api_version,
            response,
            waits,
            deadline_ms: now_ms + crate::constants::TXN_MARKERS_COMMIT_WAIT_MS,
        };
        if let Some(done) = self.try_finish_markers(now_ms, parked, false) {
            self.outputs.push_back(Output::Response(done));
        }
        None
    }

    /// Answers a WriteTxnMarkers request once each of its markers committed, failed or timed
    /// out; otherwise parks it (again).
    pub(super) fn try_finish_markers(&mut self, now_ms: i64, parked: ParkedMarkers, force: bool) -> Option<Response> {
        let give_up = force || now_ms >= parked.deadline_ms;
        let mut parked = parked;
        let mut pending = false;
        for wait in &mut parked.waits {
            let (m, t, p) = wait.at;
            let entry = &mut parked.response.markers[m].topics[t].partitions[p];
            if entry.error_code != 0 || wait.committed {
                continue;
            }
            let code = match self.partition_by_id(wait.partition) {
                None => Some(ErrorCode::UnknownTopicOrPartition),
                Some(p) if !p.leads_in(wait.leader_epoch) => Some(ErrorCode::NotLeaderOrFollower),
                Some(p) if p.high_watermark() >= wait.offset_end => {
                    wait.committed = true;
                    if let Some((producer_id, commit)) = wait.offsets_txn {
                        self.offsets.end_txn(producer_id, commit);
                    }
                    None
                }
                Some(p) if p.failed => Some(ErrorCode::KafkaStorageError),
                Some(_) if give_up => Some(ErrorCode::RequestTimedOut),
                Some(_) => {
                    pending = true;
                    None
                }
            };
            if let Some(code) = code {
                entry.error_code = code.code();
            }
        }
        if pending {
            self.park(Parked::Markers(parked));
            return None;
        }
        Some(Response {
            id: parked.id,
            api_key: ApiKey::WriteTxnMarkers,
            api_version: parked.api_version,
            body: ResponseBody::Message(Box::new(ResponseKind::WriteTxnMarkers(parked.response))),
        })
    }
}
