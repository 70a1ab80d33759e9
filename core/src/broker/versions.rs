//! The API versions Headwater advertises: only what is implemented and tested against real
//! clients (see the compatibility table in README.md). Clients gate features on these ranges,
//! so advertising a version that is not handled breaks them in subtle ways.

use kafka_protocol::messages::ApiKey;

/// (api, min version, max version)
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    // v12: a transactional batch adds its partition to the transaction (KIP-890 part 2).
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    // Transactions (KIP-98, see broker/txn.rs), both generations: EndTxn v5 and TxnOffsetCommit
    // v5 are the second's (KIP-890 part 2). AddPartitionsToTxn v4 is the broker-to-broker form
    // a partition leader verifies (part 1) or adds (part 2) a partition with.
    (ApiKey::AddPartitionsToTxn, 0, 4),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    // Broker to broker: a transaction coordinator ends a transaction at a partition's leader.
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    // KRaft, between the voters of the metadata quorum (D22); DescribeQuorum for
    // `kafka-metadata-quorum`. A node that is not a voter answers them with an error.
    (ApiKey::Vote, 0, 2),
    (ApiKey::BeginQuorumEpoch, 0, 1),
    (ApiKey::EndQuorumEpoch, 0, 1),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::FetchSnapshot, 0, 1),
    // Brokers' calls to the active controller (D24).
    (ApiKey::BrokerRegistration, 0, 4),
    (ApiKey::BrokerHeartbeat, 0, 1),
    // Partition leaders report their leadership and in-sync replicas (D26). v2 names topics
    // by id with a plain ISR list; v3's per-replica broker epochs are not kept.
    (ApiKey::AlterPartition, 2, 2),
];

/// The supported range for an API key number, if Headwater serves it.
pub fn supported_range(api_key: i16) -> Option<(ApiKey, i16, i16)> {
    SUPPORTED.iter().copied().find(|(key, _, _)| *key as i16 == api_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_within_the_codec() {
        for &(key, min, max) in SUPPORTED {
            let codec = key.valid_versions();
            assert!(min <= max, "{key:?}");
            assert!(codec.min <= min && max <= codec.max, "{key:?} {min}..{max} outside codec {codec:?}");
        }
    }
}
