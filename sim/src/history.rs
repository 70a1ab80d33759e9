//! What the simulated clients observed, recorded as they observed it. Checkers read only this.

use std::collections::BTreeMap;

/// A record a producer was told is stored at `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub producer: u32,
    /// acks=all: the broker promised durability. acks=1 records may be lost in a crash.
    pub durable: bool,
    pub partition: i32,
    pub offset: i64,
    pub value: String,
}

/// One fetch by a consumer session: it asked for `position` and got `offsets` (records at or
/// after `position`, in the order returned) and `below` records before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    pub session: u64,
    pub partition: i32,
    pub position: i64,
    pub offsets: Vec<i64>,
    /// Largest offset in the response, including records before `position`.
    pub max_offset: Option<i64>,
}

/// A group member's view after a successful SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    pub generation: i32,
    pub member: String,
    pub partitions: Vec<i32>,
}

/// An acknowledged OffsetCommit, or an OffsetFetch answer, in the order clients saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitEvent {
    Acked { partition: i32, offset: i64 },
    Fetched { partition: i32, offset: i64 },
}

#[derive(Debug, Default)]
pub struct History {
    /// Group assignments as members received them.
    pub ownership: Vec<Ownership>,
    /// Commits acknowledged and committed offsets read, in simulated-time order.
    pub commits: Vec<CommitEvent>,
    pub acks: Vec<Ack>,
    pub polls: Vec<Poll>,
    /// (partition, offset) -> values read there, by consumers and by the final read.
    pub reads: BTreeMap<(i32, i64), Vec<String>>,
    /// Every value any producer ever sent, so anything else read is garbage.
    pub sent: std::collections::BTreeSet<String>,
    /// Fetches whose bytes failed to decode or failed their CRC.
    pub corrupt_reads: Vec<String>,
    /// The log as read after healing: partition -> offset -> value.
    pub final_log: BTreeMap<i32, BTreeMap<i64, String>>,
    /// Liveness failures after healing.
    pub stuck: Vec<String>,
}

impl History {
    pub fn read(&mut self, partition: i32, offset: i64, value: String) {
        self.reads.entry((partition, offset)).or_default().push(value);
    }
}
