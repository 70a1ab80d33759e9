//! The records of the metadata log (`__cluster_metadata`): every change to the cluster's
//! shape is one of these, decided by the controller, committed by the metadata quorum, and
//! applied in offset order by every broker to its [`MetadataImage`](super::image::MetadataImage).
//!
//! They follow KRaft's record kinds (RegisterBrokerRecord, TopicRecord, PartitionRecord,
//! PartitionChangeRecord, RemoveTopicRecord, ConfigRecord, ProducerIdsRecord,
//! FenceBrokerRecord, UnfenceBrokerRecord), encoded as one JSON object per record value:
//! metadata changes are rare and small, and JSON keeps the log readable with any tool. The
//! `version` inside each record lets later fields be added without breaking old logs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The current encoding of every record kind.
pub const RECORD_VERSION: u16 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// A broker joined (or came back): where clients reach it, and its rack. Registered
    /// brokers start fenced and take partitions once unfenced.
    RegisterBroker {
        node: i32,
        host: String,
        port: i32,
        rack: Option<String>,
        incarnation: u64,
    },
    /// A broker stopped heartbeating (or shut down): it leads nothing and takes no new replicas.
    FenceBroker {
        node: i32,
    },
    UnfenceBroker {
        node: i32,
    },
    Topic {
        name: String,
        id: uuid::Uuid,
    },
    /// One partition and where its replicas live; the first replica is the preferred leader.
    Partition {
        topic_id: uuid::Uuid,
        index: i32,
        replicas: Vec<i32>,
    },
    /// A partition's leadership as its replicas last reported it (their own Raft elects it).
    PartitionLeader {
        topic_id: uuid::Uuid,
        index: i32,
        leader: Option<i32>,
        leader_epoch: i32,
        in_sync: Vec<i32>,
    },
    RemoveTopic {
        id: uuid::Uuid,
    },
    /// A topic config set (`value: Some`) or removed (`None`).
    TopicConfig {
        id: uuid::Uuid,
        name: String,
        value: Option<String>,
    },
    /// Producer ids below `block_end` may have been handed out by some broker.
    ProducerIds {
        block_end: i64,
    },
}

/// A record as stored: its encoding version and the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    version: u16,
    #[serde(flatten)]
    record: MetadataRecord,
}

impl MetadataRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&Stored { version: RECORD_VERSION, record: self.clone() })
            .expect("metadata records always serialize")
    }

    /// Decodes a stored record; a record of a newer version, or not a record, is an error (a
    /// broker must not apply what it cannot read, and must not skip it either).
    pub fn decode(bytes: &[u8]) -> Result<MetadataRecord, String> {
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| format!("undecodable metadata record: {e}"))?;
        if stored.version > RECORD_VERSION {
            return Err(format!(
                "metadata record version {} is newer than this build's {RECORD_VERSION}",
                stored.version
            ));
        }
        Ok(stored.record)
    }
}

/// Topic configs as records, in name order (the order the image keeps them in).
pub fn config_records(id: uuid::Uuid, configs: &BTreeMap<String, String>) -> Vec<MetadataRecord> {
    configs
        .iter()
        .map(|(name, value)| MetadataRecord::TopicConfig { id, name: name.clone(), value: Some(value.clone()) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_name_their_kind() {
        let record = MetadataRecord::Partition { topic_id: uuid::Uuid::from_u128(7), index: 2, replicas: vec![1, 3] };
        let bytes = record.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"type\":\"partition\"") && text.contains("\"version\":1"), "{text}");
        assert_eq!(MetadataRecord::decode(&bytes).unwrap(), record);
    }

    #[test]
    fn newer_or_broken_records_are_errors() {
        let newer = br#"{"version":99,"type":"fence_broker","node":1}"#;
        assert!(MetadataRecord::decode(newer).unwrap_err().contains("newer"));
        assert!(MetadataRecord::decode(b"{}").is_err());
        assert!(MetadataRecord::decode(br#"{"version":1,"type":"no_such_kind"}"#).is_err());
    }
}
