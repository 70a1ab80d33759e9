//! DescribeLogDirs (`kafka-log-dirs.sh --describe`): the one log directory this broker has
//! (its data directory), the size of each partition in it, and the filesystem's total and
//! usable bytes (v4). A directory holding a failed partition answers KAFKA_STORAGE_ERROR, as
//! Kafka answers for an offline log directory, and still lists its partitions so an operator
//! sees which are there.

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Broker;
use crate::error::ErrorCode;

impl Broker {
    pub(super) fn describe_log_dirs(
        &mut self,
        api_version: i16,
        request: DescribeLogDirsRequest,
    ) -> DescribeLogDirsResponse {
        let wanted: Option<Vec<(String, Vec<i32>)>> =
            request.topics.map(|topics| topics.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect());
        let mut result = DescribeLogDirsResult::default()
            .with_log_dir(StrBytes::from_string(self.config.log_dir.clone()))
            .with_total_bytes(-1)
            .with_usable_bytes(-1);
        let mut any_failed = false;
        for topic in self.topics.values() {
            let name = &topic.record.name;
            let selected: Option<&Vec<i32>> = match &wanted {
                None => None,
                Some(list) => match list.iter().find(|(n, _)| n == name) {
                    Some((_, partitions)) => Some(partitions),
                    None => continue,
                },
            };
            let mut entry = DescribeLogDirsTopic::default().with_name(TopicName(StrBytes::from_string(name.clone())));
            for (&index, partition) in &topic.partitions {
                if selected.is_some_and(|list| !list.contains(&index)) {
                    continue;
                }
                any_failed |= partition.failed;
                entry.partitions.push(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(index)
                        .with_partition_size(partition.log.size_bytes() as i64)
                        .with_offset_lag(0),
                );
            }
            if !entry.partitions.is_empty() {
                result.topics.push(entry);
            }
        }
        if any_failed {
            result.error_code = ErrorCode::KafkaStorageError.code();
        }
        if api_version >= 4 {
            // Unknown sizes stay -1, as Kafka answers when it cannot tell.
            if let Ok(Some(space)) = self.storage.space() {
                result.total_bytes = i64::try_from(space.total_bytes).unwrap_or(i64::MAX);
                result.usable_bytes = i64::try_from(space.usable_bytes).unwrap_or(i64::MAX);
            }
        }
        DescribeLogDirsResponse::default().with_results(vec![result])
    }
}
