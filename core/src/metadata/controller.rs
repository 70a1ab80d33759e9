//! The controller: the one place that decides changes to the cluster's shape. It runs on the
//! leader of the metadata quorum; its decisions are metadata records, proposed to the quorum
//! as one batch per decision and applied by every broker (this one included) once committed.
//!
//! It judges each request against the latest image, the committed one with its own proposals
//! not yet committed applied on top, so two requests in flight cannot both create one topic.
//! When it stops leading, what it proposed may be lost; a new controller starts from the
//! committed image ([`Controller::reset`]).
//!
//! Brokers register (and start fenced), heartbeat, and are unfenced once they report that
//! they have caught up with the metadata log. A broker whose heartbeats stop for
//! `session_timeout_ms` is fenced: it leads nothing and takes no new replicas.

use std::collections::BTreeMap;

use super::config::TopicConfig;
use super::image::MetadataImage;
use super::placement;
use super::records::{config_records, MetadataRecord};
use crate::error::ErrorCode;
use crate::ids::NodeId;
use crate::rng::Rng;

pub type Refusal = (ErrorCode, String);

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`: heartbeats missed this long fence a broker.
    pub session_timeout_ms: i64,
    /// Producer ids handed to a broker at a time.
    pub producer_id_block_size: i64,
}

impl Default for ControllerConfig {
    fn default() -> ControllerConfig {
        ControllerConfig { session_timeout_ms: 9_000, producer_id_block_size: 1_000 }
    }
}

#[derive(Debug)]
pub struct Controller {
    config: ControllerConfig,
    /// The committed image with this controller's uncommitted proposals applied.
    latest: MetadataImage,
    last_heartbeat_ms: BTreeMap<NodeId, i64>,
    rng: Rng,
}

/// A broker's registration request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub node: NodeId,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Grows at every start of the broker, so a registration from an older process is told
    /// apart (STALE_BROKER_EPOCH).
    pub incarnation: u64,
}

impl Controller {
    pub fn new(config: ControllerConfig, committed: &MetadataImage, seed: u64, now_ms: i64) -> Controller {
        let mut controller =
            Controller { config, latest: committed.clone(), last_heartbeat_ms: BTreeMap::new(), rng: Rng::new(seed) };
        controller.reset(committed, now_ms);
        controller
    }

    /// Starts again from the committed image (on taking over, or after proposals were lost).
    /// Every known broker gets a full session to heartbeat before it is fenced.
    pub fn reset(&mut self, committed: &MetadataImage, now_ms: i64) {
        self.latest = committed.clone();
        self.last_heartbeat_ms = committed.brokers.keys().map(|&id| (id, now_ms)).collect();
    }

    pub fn latest(&self) -> &MetadataImage {
        &self.latest
    }

    pub fn register(&mut self, now_ms: i64, registration: Registration) -> Result<Vec<MetadataRecord>, Refusal> {
        if let Some(known) = self.latest.brokers.get(&registration.node) {
            if registration.incarnation < known.incarnation {
                return Err((
                    ErrorCode::StaleBrokerEpoch,
                    format!("broker {} registered from a newer process already", registration.node),
                ));
            }
        }
        let record = MetadataRecord::RegisterBroker {
            node: registration.node.0,
            host: registration.host,
            port: registration.port,
            rack: registration.rack,
            incarnation: registration.incarnation,
        };
        self.last_heartbeat_ms.insert(registration.node, now_ms);
        self.decide(vec![record])
    }

    /// A heartbeat; `caught_up` once the broker has applied the metadata log up to what the
    /// controller had committed when the broker registered.
    pub fn heartbeat(
        &mut self,
        now_ms: i64,
        node: NodeId,
        incarnation: u64,
        caught_up: bool,
    ) -> Result<Vec<MetadataRecord>, Refusal> {
        let Some(broker) = self.latest.brokers.get(&node) else {
            return Err((ErrorCode::BrokerIdNotRegistered, format!("broker {node} is not registered")));
        };
        if broker.incarnation != incarnation {
            return Err((ErrorCode::StaleBrokerEpoch, format!("broker {node} heartbeats for an old registration")));
        }
        self.last_heartbeat_ms.insert(node, now_ms);
        if broker.fenced && caught_up {
            return self.decide(vec![MetadataRecord::UnfenceBroker { node: node.0 }]);
        }
        Ok(Vec::new())
    }

    /// A broker stopping gracefully (a heartbeat with `want_shut_down`): fenced now rather
    /// than when its session runs out, so clients stop being sent to it at once.
    pub fn shut_down(&mut self, node: NodeId, incarnation: u64) -> Result<Vec<MetadataRecord>, Refusal> {
        let Some(broker) = self.latest.brokers.get(&node) else {
            return Err((ErrorCode::BrokerIdNotRegistered, format!("broker {node} is not registered")));
        };
        if broker.incarnation != incarnation {
            return Err((ErrorCode::StaleBrokerEpoch, format!("broker {node} stops an old registration")));
        }
        self.last_heartbeat_ms.remove(&node);
        if broker.fenced {
            return Ok(Vec::new());
        }
        self.decide(vec![MetadataRecord::FenceBroker { node: node.0 }])
    }

    /// Fences brokers whose session expired.
    pub fn tick(&mut self, now_ms: i64) -> Vec<MetadataRecord> {
        let expired: Vec<NodeId> = self
            .latest
            .live_brokers()
            .map(|(id, _)| id)
            .filter(|id| self.last_heartbeat_ms.get(id).is_none_or(|&t| now_ms - t >= self.config.session_timeout_ms))
            .collect();
        let records: Vec<MetadataRecord> =
            expired.into_iter().map(|id| MetadataRecord::FenceBroker { node: id.0 }).collect();
        if records.is_empty() {
            return records;
        }
        self.decide(records).expect("fencing a live broker always fits the image")
    }

    /// When the next session may expire.
    pub fn next_timeout_ms(&self) -> Option<i64> {
        self.latest
            .live_brokers()
            .filter_map(|(id, _)| self.last_heartbeat_ms.get(&id))
            .map(|&t| t + self.config.session_timeout_ms)
            .min()
    }

    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<Vec<MetadataRecord>, Refusal> {
        super::validate_topic_name(name).map_err(|e| (ErrorCode::InvalidTopicException, e))?;
        if self.latest.topic(name).is_some() {
            return Err((ErrorCode::TopicAlreadyExists, format!("topic '{name}' already exists")));
        }
        if !(1..=crate::constants::PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err((
                ErrorCode::InvalidPartitions,
                format!("partition count must be between 1 and {}", crate::constants::PARTITIONS_PER_TOPIC_MAX),
            ));
        }
        let assignments = self.place(partitions as usize, replication_factor)?;
        let mut id = self.rng.uuid();
        while self.latest.topics.contains_key(&id) || id.is_nil() {
            id = self.rng.uuid();
        }
        let mut records = vec![MetadataRecord::Topic { name: name.to_string(), id }];
        records.extend(assignments.into_iter().enumerate().map(|(index, replicas)| MetadataRecord::Partition {
            topic_id: id,
            index: index as i32,
            replicas: replicas.into_iter().map(|r| r.0).collect(),
        }));
        records.extend(config_records(id, configs));
        self.decide(records)
    }

    pub fn create_partitions(&mut self, name: &str, count: i32) -> Result<Vec<MetadataRecord>, Refusal> {
        let topic = self
            .latest
            .topic(name)
            .ok_or_else(|| (ErrorCode::UnknownTopicOrPartition, format!("topic '{name}' does not exist")))?;
        let current = topic.partitions.len() as i32;
        if count <= current || count > crate::constants::PARTITIONS_PER_TOPIC_MAX {
            return Err((
                ErrorCode::InvalidPartitions,
                format!(
                    "topic '{name}' has {current} partitions; the new count must be larger and at most {}",
                    crate::constants::PARTITIONS_PER_TOPIC_MAX
                ),
            ));
        }
        let id = topic.id;
        let replication_factor = topic.partitions.first().map_or(1, |p| p.replicas.len()) as i16;
        let assignments = self.place((count - current) as usize, replication_factor)?;
        let records = assignments
            .into_iter()
            .zip(current..)
            .map(|(replicas, index)| MetadataRecord::Partition {
                topic_id: id,
                index,
                replicas: replicas.into_iter().map(|r| r.0).collect(),
            })
            .collect();
        self.decide(records)
    }

    pub fn delete_topic(&mut self, name: &str) -> Result<Vec<MetadataRecord>, Refusal> {
        let id = self
            .latest
            .topic(name)
            .ok_or_else(|| (ErrorCode::UnknownTopicOrPartition, format!("topic '{name}' does not exist")))?
            .id;
        self.decide(vec![MetadataRecord::RemoveTopic { id }])
    }

    /// Replaces a topic's config overrides with `configs` (validated by the asking broker):
    /// a record per key set or changed, and one per key removed. Nothing when they are equal.
    pub fn set_topic_configs(
        &mut self,
        name: &str,
        configs: &BTreeMap<String, String>,
    ) -> Result<Vec<MetadataRecord>, Refusal> {
        let topic = self
            .latest
            .topic(name)
            .ok_or_else(|| (ErrorCode::UnknownTopicOrPartition, format!("topic '{name}' does not exist")))?;
        let id = topic.id;
        let removed = topic.configs.keys().filter(|k| !configs.contains_key(*k));
        let mut records: Vec<MetadataRecord> =
            removed.map(|name| MetadataRecord::TopicConfig { id, name: name.clone(), value: None }).collect();
        records.extend(
            configs.iter().filter(|(k, v)| topic.configs.get(*k) != Some(*v)).map(|(name, value)| {
                MetadataRecord::TopicConfig { id, name: name.clone(), value: Some(value.clone()) }
            }),
        );
        if records.is_empty() {
            return Ok(records);
        }
        self.decide(records)
    }

    /// Applies some changes to a topic's overrides as they stand in the latest state, which
    /// may hold changes not yet applied where the request was worked out. The result is
    /// checked again as a whole.
    pub fn change_topic_configs(
        &mut self,
        name: &str,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<Vec<MetadataRecord>, Refusal> {
        let topic = self
            .latest
            .topic(name)
            .ok_or_else(|| (ErrorCode::UnknownTopicOrPartition, format!("topic '{name}' does not exist")))?;
        let mut configs = topic.configs.clone();
        for (key, value) in changes {
            match value {
                Some(value) => configs.insert(key.clone(), value.clone()),
                None => configs.remove(key),
            };
        }
        TopicConfig::from_pairs(configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| (ErrorCode::InvalidConfig, e.to_string()))?;
        self.set_topic_configs(name, &configs)
    }

    /// A partition leader reports its leadership and in-sync replicas; recorded if it changed.
    pub fn report_leader(
        &mut self,
        topic_id: uuid::Uuid,
        index: i32,
        leader: NodeId,
        leader_epoch: i32,
        in_sync: Vec<NodeId>,
    ) -> Result<Vec<MetadataRecord>, Refusal> {
        let unknown = || (ErrorCode::UnknownTopicOrPartition, format!("partition {topic_id}-{index} does not exist"));
        let partition = self
            .latest
            .topics
            .get(&topic_id)
            .and_then(|t| t.partitions.get(usize::try_from(index).ok()?))
            .ok_or_else(unknown)?;
        if !partition.replicas.contains(&leader) || in_sync.iter().any(|r| !partition.replicas.contains(r)) {
            return Err((
                ErrorCode::InvalidRequest,
                format!("broker {leader} reports replicas of {topic_id}-{index} that it does not have"),
            ));
        }
        if leader_epoch < partition.leader_epoch {
            return Err((
                ErrorCode::FencedLeaderEpoch,
                format!("epoch {leader_epoch} is older than {}", partition.leader_epoch),
            ));
        }
        if partition.leader == Some(leader) && partition.leader_epoch == leader_epoch && partition.in_sync == in_sync {
            return Ok(Vec::new());
        }
        self.decide(vec![MetadataRecord::PartitionLeader {
            topic_id,
            index,
            leader: Some(leader.0),
            leader_epoch,
            in_sync: in_sync.into_iter().map(|r| r.0).collect(),
        }])
    }

    /// Hands out the next block of producer ids; returns (first id, records).
    pub fn allocate_producer_ids(&mut self) -> Result<(i64, Vec<MetadataRecord>), Refusal> {
        let first = self.latest.producer_id_block_end;
        let records =
            self.decide(vec![MetadataRecord::ProducerIds { block_end: first + self.config.producer_id_block_size }])?;
        Ok((first, records))
    }

    fn place(&self, partitions: usize, replication_factor: i16) -> Result<Vec<Vec<NodeId>>, Refusal> {
        let brokers: Vec<(NodeId, Option<String>)> =
            self.latest.live_brokers().map(|(id, b)| (id, b.rack.clone())).collect();
        let existing: usize = self.latest.topics.values().map(|t| t.partitions.len()).sum();
        let replication_factor = usize::try_from(replication_factor)
            .map_err(|_| (ErrorCode::InvalidReplicationFactor, "replication factor must be at least 1".to_string()))?;
        placement::place(&brokers, partitions, replication_factor, existing)
            .map_err(|e| (ErrorCode::InvalidReplicationFactor, e))
    }

    /// Applies a decision to the latest image and returns it for proposing. A decision that
    /// does not fit the image is a controller bug, refused rather than proposed.
    fn decide(&mut self, records: Vec<MetadataRecord>) -> Result<Vec<MetadataRecord>, Refusal> {
        let offset = self.latest.applied_offset;
        self.latest = self.latest.with_records(&records, offset).map_err(|e| (ErrorCode::InvalidRequest, e))?;
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(node: i32, rack: Option<&str>) -> Registration {
        Registration {
            node: NodeId(node),
            host: "127.0.0.1".into(),
            port: 9091 + node,
            rack: rack.map(str::to_string),
            incarnation: 1,
        }
    }

    /// A controller with three unfenced brokers, its decisions applied as if committed.
    fn three_brokers() -> (Controller, MetadataImage) {
        let mut c = Controller::new(ControllerConfig::default(), &MetadataImage::default(), 7, 0);
        let mut records = Vec::new();
        for node in 1..=3 {
            records.extend(c.register(0, registration(node, None)).unwrap());
            records.extend(c.heartbeat(0, NodeId(node), 1, true).unwrap());
        }
        let image = MetadataImage::default().with_records(&records, records.len() as i64).unwrap();
        (c, image)
    }

    #[test]
    fn brokers_start_fenced_and_are_unfenced_when_caught_up() {
        let mut c = Controller::new(ControllerConfig::default(), &MetadataImage::default(), 1, 0);
        c.register(0, registration(1, None)).unwrap();
        assert_eq!(c.latest().live_brokers().count(), 0, "fenced until caught up");
        assert_eq!(c.heartbeat(10, NodeId(1), 1, false).unwrap(), vec![]);
        assert_eq!(c.heartbeat(20, NodeId(1), 1, true).unwrap(), vec![MetadataRecord::UnfenceBroker { node: 1 }]);
        assert_eq!(c.heartbeat(20, NodeId(1), 0, true).unwrap_err().0, ErrorCode::StaleBrokerEpoch);
        assert_eq!(c.heartbeat(20, NodeId(9), 1, true).unwrap_err().0, ErrorCode::BrokerIdNotRegistered);
    }

    #[test]
    fn a_topic_is_judged_against_uncommitted_decisions_too() {
        let (mut c, _) = three_brokers();
        let records = c.create_topic("t", 3, 3, &BTreeMap::from([("retention.ms".into(), "1".into())])).unwrap();
        assert_eq!(records.len(), 1 + 3 + 1);
        let MetadataRecord::Partition { replicas, .. } = &records[1] else { panic!("{records:?}") };
        assert_eq!(replicas.len(), 3);
        // Not committed yet, and still a duplicate.
        assert_eq!(c.create_topic("t", 1, 1, &BTreeMap::new()).unwrap_err().0, ErrorCode::TopicAlreadyExists);
        assert_eq!(c.create_topic("u", 1, 4, &BTreeMap::new()).unwrap_err().0, ErrorCode::InvalidReplicationFactor);
        assert_eq!(c.create_topic("bad/name", 1, 1, &BTreeMap::new()).unwrap_err().0, ErrorCode::InvalidTopicException);
        assert_eq!(c.create_partitions("t", 2).unwrap_err().0, ErrorCode::InvalidPartitions);
        assert_eq!(c.create_partitions("t", 5).unwrap().len(), 2);
        assert_eq!(c.latest().topic("t").unwrap().partitions.len(), 5);
        assert_eq!(c.delete_topic("t").unwrap().len(), 1);
        assert_eq!(c.delete_topic("t").unwrap_err().0, ErrorCode::UnknownTopicOrPartition);
    }

    #[test]
    fn a_silent_broker_is_fenced_and_loses_its_leaderships() {
        let (mut c, image) = three_brokers();
        c.reset(&image, 1_000);
        let records = c.create_topic("t", 1, 3, &BTreeMap::new()).unwrap();
        let MetadataRecord::Topic { id, .. } = records[0] else { panic!() };
        c.report_leader(id, 0, NodeId(2), 1, vec![NodeId(1), NodeId(2), NodeId(3)]).unwrap();
        // Unchanged reports write nothing; older epochs are refused.
        assert_eq!(c.report_leader(id, 0, NodeId(2), 1, vec![NodeId(1), NodeId(2), NodeId(3)]).unwrap(), vec![]);
        assert_eq!(c.report_leader(id, 0, NodeId(1), 0, vec![]).unwrap_err().0, ErrorCode::FencedLeaderEpoch);
        // Brokers 1 and 3 heartbeat; 2 goes silent.
        for t in [4_000, 8_000] {
            c.heartbeat(t, NodeId(1), 1, true).unwrap();
            c.heartbeat(t, NodeId(3), 1, true).unwrap();
            assert!(c.tick(t).is_empty());
        }
        assert_eq!(c.next_timeout_ms(), Some(10_000));
        assert_eq!(c.tick(10_000), vec![MetadataRecord::FenceBroker { node: 2 }]);
        assert_eq!(c.latest().topic("t").unwrap().partitions[0].leader, None);
        // New replicas avoid the fenced broker.
        assert_eq!(c.create_topic("u", 1, 3, &BTreeMap::new()).unwrap_err().0, ErrorCode::InvalidReplicationFactor);
        let records = c.create_topic("v", 4, 2, &BTreeMap::new()).unwrap();
        for record in &records {
            if let MetadataRecord::Partition { replicas, .. } = record {
                assert!(!replicas.contains(&2), "{replicas:?}");
            }
        }
    }

    #[test]
    fn producer_id_blocks_do_not_overlap() {
        let (mut c, _) = three_brokers();
        let (first, _) = c.allocate_producer_ids().unwrap();
        let (second, _) = c.allocate_producer_ids().unwrap();
        assert_eq!((first, second), (0, 1_000));
    }
}
