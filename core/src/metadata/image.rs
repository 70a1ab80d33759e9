//! The metadata image: the cluster as the committed metadata log describes it up to some
//! offset. It is immutable once published (`Arc<MetadataImage>`): a broker applies a batch of
//! committed records to a copy and swaps the copy in, so readers (Metadata responses, request
//! routing, and later other threads) never see half a change.
//!
//! Applying is strict: a record that does not fit the image (a partition of an unknown topic,
//! a replica on an unregistered broker) is an error and the image is left as it was. The
//! controller only writes records that fit, so an error is a bug to report, not input to
//! tolerate.

use std::collections::BTreeMap;

use super::records::MetadataRecord;
use crate::ids::NodeId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerImage {
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    pub incarnation: u64,
    pub fenced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionImage {
    pub replicas: Vec<NodeId>,
    pub leader: Option<NodeId>,
    pub leader_epoch: i32,
    pub in_sync: Vec<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub id: uuid::Uuid,
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionImage>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    /// One past the last metadata-log offset applied.
    pub applied_offset: i64,
    pub brokers: BTreeMap<NodeId, BrokerImage>,
    pub topics: BTreeMap<uuid::Uuid, TopicImage>,
    pub topic_ids: BTreeMap<String, uuid::Uuid>,
    pub producer_id_block_end: i64,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(self.topic_ids.get(name)?)
    }

    /// Brokers that may lead and take replicas.
    pub fn live_brokers(&self) -> impl Iterator<Item = (NodeId, &BrokerImage)> {
        self.brokers.iter().filter(|(_, b)| !b.fenced).map(|(&id, b)| (id, b))
    }

    /// Records that build this image from an empty one (a snapshot's content): brokers, then
    /// topics with their partitions, configs and leaders, then the producer-id block.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        for (&node, broker) in &self.brokers {
            records.push(MetadataRecord::RegisterBroker {
                node: node.0,
                host: broker.host.clone(),
                port: broker.port,
                rack: broker.rack.clone(),
                incarnation: broker.incarnation,
            });
            // Registered brokers start fenced.
            if !broker.fenced {
                records.push(MetadataRecord::UnfenceBroker { node: node.0 });
            }
        }
        for topic in self.topics.values() {
            records.push(MetadataRecord::Topic { name: topic.name.clone(), id: topic.id });
            records.extend(super::records::config_records(topic.id, &topic.configs));
            for (index, partition) in topic.partitions.iter().enumerate() {
                let index = index as i32;
                let replicas = partition.replicas.iter().map(|r| r.0).collect();
                records.push(MetadataRecord::Partition { topic_id: topic.id, index, replicas });
                records.push(MetadataRecord::PartitionLeader {
                    topic_id: topic.id,
                    index,
                    leader: partition.leader.map(|l| l.0),
                    leader_epoch: partition.leader_epoch,
                    in_sync: partition.in_sync.iter().map(|r| r.0).collect(),
                });
            }
        }
        if self.producer_id_block_end > 0 {
            records.push(MetadataRecord::ProducerIds { block_end: self.producer_id_block_end });
        }
        records
    }

    /// Applies committed records, which end at metadata-log offset `end_offset`, to a copy.
    /// On an error nothing is applied.
    pub fn with_records(&self, records: &[MetadataRecord], end_offset: i64) -> Result<MetadataImage, String> {
        let mut next = self.clone();
        for record in records {
            next.apply(record)?;
        }
        next.applied_offset = next.applied_offset.max(end_offset);
        Ok(next)
    }

    fn apply(&mut self, record: &MetadataRecord) -> Result<(), String> {
        match record {
            MetadataRecord::RegisterBroker { node, host, port, rack, incarnation } => {
                let broker = BrokerImage {
                    host: host.clone(),
                    port: *port,
                    rack: rack.clone(),
                    incarnation: *incarnation,
                    fenced: true,
                };
                self.brokers.insert(NodeId(*node), broker);
            }
            MetadataRecord::FenceBroker { node } | MetadataRecord::UnfenceBroker { node } => {
                let fenced = matches!(record, MetadataRecord::FenceBroker { .. });
                let broker =
                    self.brokers.get_mut(&NodeId(*node)).ok_or_else(|| format!("broker {node} is not registered"))?;
                broker.fenced = fenced;
                if fenced {
                    // A fenced broker leads nothing; its partitions elect among the others.
                    for topic in self.topics.values_mut() {
                        for partition in &mut topic.partitions {
                            if partition.leader == Some(NodeId(*node)) {
                                partition.leader = None;
                            }
                        }
                    }
                }
            }
            MetadataRecord::Topic { name, id } => {
                if self.topic_ids.contains_key(name) || self.topics.contains_key(id) {
                    return Err(format!("topic {name} ({id}) exists already"));
                }
                self.topic_ids.insert(name.clone(), *id);
                let topic =
                    TopicImage { name: name.clone(), id: *id, configs: BTreeMap::new(), partitions: Vec::new() };
                self.topics.insert(*id, topic);
            }
            MetadataRecord::Partition { topic_id, index, replicas } => {
                for replica in replicas {
                    if !self.brokers.contains_key(&NodeId(*replica)) {
                        return Err(format!("partition {topic_id}-{index} names unregistered broker {replica}"));
                    }
                }
                let topic =
                    self.topics.get_mut(topic_id).ok_or_else(|| format!("partition of unknown topic {topic_id}"))?;
                if usize::try_from(*index).ok() != Some(topic.partitions.len()) {
                    return Err(format!(
                        "partition {index} of {} out of order (it has {})",
                        topic.name,
                        topic.partitions.len()
                    ));
                }
                topic.partitions.push(PartitionImage {
                    replicas: replicas.iter().map(|&r| NodeId(r)).collect(),
                    leader: None,
                    leader_epoch: 0,
                    in_sync: Vec::new(),
                });
            }
            MetadataRecord::PartitionLeader { topic_id, index, leader, leader_epoch, in_sync } => {
                let topic =
                    self.topics.get_mut(topic_id).ok_or_else(|| format!("leader of unknown topic {topic_id}"))?;
                let name = topic.name.clone();
                let partition = usize::try_from(*index)
                    .ok()
                    .and_then(|i| topic.partitions.get_mut(i))
                    .ok_or_else(|| format!("leader of unknown partition {name}-{index}"))?;
                // Reports can arrive late: an older epoch never replaces a newer one.
                if *leader_epoch >= partition.leader_epoch {
                    partition.leader = leader.map(NodeId);
                    partition.leader_epoch = *leader_epoch;
                    partition.in_sync = in_sync.iter().map(|&r| NodeId(r)).collect();
                }
            }
            MetadataRecord::RemoveTopic { id } => {
                let topic = self.topics.remove(id).ok_or_else(|| format!("removing unknown topic {id}"))?;
                self.topic_ids.remove(&topic.name);
            }
            MetadataRecord::TopicConfig { id, name, value } => {
                let topic = self.topics.get_mut(id).ok_or_else(|| format!("config of unknown topic {id}"))?;
                match value {
                    Some(value) => topic.configs.insert(name.clone(), value.clone()),
                    None => topic.configs.remove(name),
                };
            }
            MetadataRecord::ProducerIds { block_end } => {
                self.producer_id_block_end = self.producer_id_block_end.max(*block_end);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(node: i32, rack: Option<&str>) -> MetadataRecord {
        MetadataRecord::RegisterBroker {
            node,
            host: "127.0.0.1".into(),
            port: 9091 + node,
            rack: rack.map(str::to_string),
            incarnation: 1,
        }
    }

    #[test]
    fn an_image_rebuilds_from_its_own_records() {
        let id = uuid::Uuid::from_u128(7);
        let records = vec![
            register(1, Some("r1")),
            register(2, None),
            register(3, None),
            MetadataRecord::UnfenceBroker { node: 1 },
            MetadataRecord::UnfenceBroker { node: 3 },
            MetadataRecord::Topic { name: "t".into(), id },
            MetadataRecord::Partition { topic_id: id, index: 0, replicas: vec![1, 3] },
            MetadataRecord::Partition { topic_id: id, index: 1, replicas: vec![3, 1] },
            MetadataRecord::TopicConfig { id, name: "retention.ms".into(), value: Some("5".into()) },
            MetadataRecord::PartitionLeader {
                topic_id: id,
                index: 1,
                leader: Some(3),
                leader_epoch: 4,
                in_sync: vec![3],
            },
            // Fenced after it led: its leadership is gone, its replica stays.
            MetadataRecord::PartitionLeader {
                topic_id: id,
                index: 0,
                leader: Some(1),
                leader_epoch: 2,
                in_sync: vec![1],
            },
            MetadataRecord::FenceBroker { node: 1 },
            MetadataRecord::ProducerIds { block_end: 2000 },
        ];
        let image = MetadataImage::default().with_records(&records, 40).unwrap();
        let rebuilt = MetadataImage::default().with_records(&image.to_records(), 40).unwrap();
        assert_eq!(rebuilt, image);
    }

    #[test]
    fn records_build_the_cluster_and_a_bad_record_changes_nothing() {
        let id = uuid::Uuid::from_u128(1);
        let records = vec![
            register(1, None),
            register(2, None),
            MetadataRecord::UnfenceBroker { node: 1 },
            MetadataRecord::UnfenceBroker { node: 2 },
            MetadataRecord::Topic { name: "t".into(), id },
            MetadataRecord::Partition { topic_id: id, index: 0, replicas: vec![1, 2] },
            MetadataRecord::TopicConfig { id, name: "retention.ms".into(), value: Some("5".into()) },
            MetadataRecord::PartitionLeader {
                topic_id: id,
                index: 0,
                leader: Some(2),
                leader_epoch: 3,
                in_sync: vec![1, 2],
            },
        ];
        let image = MetadataImage::default().with_records(&records, 8).unwrap();
        assert_eq!(image.applied_offset, 8);
        let topic = image.topic("t").unwrap();
        assert_eq!(topic.configs.get("retention.ms").map(String::as_str), Some("5"));
        assert_eq!(topic.partitions[0].leader, Some(NodeId(2)));
        assert_eq!(image.live_brokers().count(), 2);

        // A late report of an older epoch does not win.
        let stale = MetadataRecord::PartitionLeader {
            topic_id: id,
            index: 0,
            leader: Some(1),
            leader_epoch: 2,
            in_sync: vec![1],
        };
        assert_eq!(image.with_records(&[stale], 9).unwrap().topic("t").unwrap().partitions[0].leader, Some(NodeId(2)));

        // Fencing a broker takes its leaderships away.
        let fenced = image.with_records(&[MetadataRecord::FenceBroker { node: 2 }], 9).unwrap();
        assert_eq!(fenced.topic("t").unwrap().partitions[0].leader, None);
        assert_eq!(fenced.live_brokers().count(), 1);

        // A partition on an unknown broker is refused, and the image is as it was.
        let bad = [
            MetadataRecord::Topic { name: "u".into(), id: uuid::Uuid::from_u128(2) },
            MetadataRecord::Partition { topic_id: uuid::Uuid::from_u128(2), index: 0, replicas: vec![9] },
        ];
        assert!(image.with_records(&bad, 10).unwrap_err().contains("unregistered broker 9"));
        assert!(image.topic("u").is_none());

        let removed = image.with_records(&[MetadataRecord::RemoveTopic { id }], 9).unwrap();
        assert!(removed.topic("t").is_none() && removed.topics.is_empty());
    }
}
