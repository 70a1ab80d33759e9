//! ListOffsets, DeleteRecords and OffsetForLeaderEpoch.

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};

use super::fetch::leader_epoch_error;
use super::Broker;
use crate::error::ErrorCode;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

impl Broker {
    pub(super) fn list_offsets(&self, api_version: i16, request: ListOffsetsRequest) -> ListOffsetsResponse {
        let mut response = ListOffsetsResponse::default();
        for topic in request.topics {
            let name = topic.name.0.to_string();
            let mut topic_response = ListOffsetsTopicResponse::default().with_name(topic.name.clone());
            for wanted in topic.partitions {
                let mut entry = ListOffsetsPartitionResponse::default().with_partition_index(wanted.partition_index);
                // A failed partition still answers from what is durable.
                let leader_epoch = self.partition(&name, wanted.partition_index).map_or(0, |p| p.leader_epoch());
                let result = match self.partition(&name, wanted.partition_index) {
                    None => Err(self.absent_partition(&name, wanted.partition_index)),
                    Some(p) => match leader_epoch_error(p, wanted.current_leader_epoch) {
                        Some(code) => Err(code),
                        None => {
                            let log = &p.log;
                            // As Kafka: a consumer sees up to the high watermark, or with
                            // read_committed up to the last stable offset, and no lookup by
                            // time answers an offset past that.
                            let fetchable = if request.isolation_level == super::fetch::READ_COMMITTED {
                                p.last_stable_offset()
                            } else {
                                p.high_watermark()
                            };
                            let visible = |found: Option<(i64, i64)>| found.filter(|&(offset, _)| offset < fetchable);
                            match wanted.timestamp {
                                LATEST => Ok(Some((fetchable, -1))),
                                EARLIEST | EARLIEST_LOCAL => Ok(Some((log.log_start_offset(), -1))),
                                MAX_TIMESTAMP => {
                                    log.offset_of_max_timestamp().map(visible).map_err(|_| ErrorCode::KafkaStorageError)
                                }
                                t if t >= 0 => {
                                    log.offset_for_timestamp(t).map(visible).map_err(|_| ErrorCode::KafkaStorageError)
                                }
                                _ => Err(ErrorCode::InvalidRequest),
                            }
                        }
                    },
                };
                match result {
                    Ok(Some((offset, timestamp))) => {
                        entry.offset = offset;
                        entry.timestamp = timestamp;
                        if api_version >= 4 {
                            entry.leader_epoch = leader_epoch;
                        }
                    }
                    // No record at or after the timestamp: Kafka answers offset -1.
                    Ok(None) => {
                        entry.offset = -1;
                        entry.timestamp = -1;
                    }
                    Err(code) => {
                        entry.error_code = code.code();
                        entry.offset = -1;
                        entry.timestamp = -1;
                    }
                }
                topic_response.partitions.push(entry);
            }
            response.topics.push(topic_response);
        }
        response
    }

    /// Moves log start offsets forward. The new start offsets are checkpointed before any log
    /// moves and before the reply, so deleted records stay deleted across a restart; if the
    /// checkpoint cannot be written, nothing moves and every partition asked gets
    /// KAFKA_STORAGE_ERROR.
    pub(super) fn delete_records(&mut self, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
        let mut response = DeleteRecordsResponse::default();
        let mut moves = Vec::new();
        for topic in request.topics {
            let name = topic.name.0.to_string();
            let mut topic_result = DeleteRecordsTopicResult::default().with_name(topic.name.clone());
            for wanted in topic.partitions {
                let mut entry = DeleteRecordsPartitionResult::default().with_partition_index(wanted.partition_index);
                match self.partition(&name, wanted.partition_index) {
                    None => entry.error_code = self.absent_partition(&name, wanted.partition_index).code(),
                    Some(p) if p.failed => entry.error_code = ErrorCode::KafkaStorageError.code(),
                    // In a cluster the leader moves its start, up to what is committed; a
                    // follower that falls below it later starts over there (an empty snapshot).
                    Some(p) if !p.is_leader() => entry.error_code = ErrorCode::NotLeaderOrFollower.code(),
                    Some(p) => {
                        let high_watermark = p.high_watermark();
                        let target = if wanted.offset == -1 { high_watermark } else { wanted.offset };
                        if target < 0 || target > high_watermark {
                            entry.error_code = ErrorCode::OffsetOutOfRange.code();
                            entry.low_watermark = -1;
                        } else {
                            let start = p.log.start_after_delete_records(target);
                            entry.low_watermark = start;
                            moves.push((name.clone(), wanted.partition_index, start));
                        }
                    }
                }
                topic_result.partitions.push(entry);
            }
            response.topics.push(topic_result);
        }
        if self.advance_log_starts(&moves).is_err() {
            for entry in response.topics.iter_mut().flat_map(|t| &mut t.partitions) {
                if entry.error_code == 0 {
                    entry.error_code = ErrorCode::KafkaStorageError.code();
                    entry.low_watermark = -1;
                }
            }
        }
        response
    }

    pub(super) fn offset_for_leader_epoch(&self, request: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
        let mut response = OffsetForLeaderEpochResponse::default();
        for topic in request.topics {
            let name = topic.topic.0.to_string();
            let mut topic_result = OffsetForLeaderTopicResult::default().with_topic(topic.topic.clone());
            for wanted in topic.partitions {
                let mut entry = EpochEndOffset::default().with_partition(wanted.partition);
                match self.partition(&name, wanted.partition) {
                    None => entry.error_code = self.absent_partition(&name, wanted.partition).code(),
                    Some(p) => match leader_epoch_error(p, wanted.current_leader_epoch) {
                        Some(code) => entry.error_code = code.code(),
                        None => match p.log.end_offset_for_epoch(wanted.leader_epoch) {
                            Some((epoch, end_offset)) => {
                                entry.leader_epoch = epoch;
                                entry.end_offset = end_offset;
                            }
                            None if p.log.epochs().latest_epoch().is_none() => {
                                // Empty log: epoch 0 ends at the log end.
                                entry.leader_epoch = 0;
                                entry.end_offset = p.log.end_offset();
                            }
                            None => {
                                entry.leader_epoch = -1;
                                entry.end_offset = -1;
                            }
                        },
                    },
                }
                topic_result.partitions.push(entry);
            }
            response.topics.push(topic_result);
        }
        response
    }
}
