//! Newtypes for the numbers that name things, so a partition index is never passed where an
//! offset is meant. Each is `Copy`, ordered, and prints as its number.

use std::fmt;

/// A broker, as `node.id` / `broker.id` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub i32);

/// A partition leader's epoch: bumped at each leadership change, stamped into every batch
/// (`partitionLeaderEpoch`) and checked by clients and followers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaderEpoch(pub i32);

/// A position in a partition's log: the offset of a record, or of the next one to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub i64);

/// One partition of one topic, by the topic's id (names can be reused after a deletion, ids
/// never are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionId {
    pub topic_id: uuid::Uuid,
    pub index: i32,
}

impl PartitionId {
    pub fn new(topic_id: uuid::Uuid, index: i32) -> PartitionId {
        PartitionId { topic_id, index }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for LeaderEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic_id, self.index)
    }
}
