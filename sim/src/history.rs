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

/// The high watermark one fetch response gave for a partition, on one connection (so from one
/// broker process: a restart breaks the connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HighWatermark {
    pub connection: u64,
    pub broker: i32,
    pub partition: i32,
    pub offset: i64,
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
    Acked {
        group: &'static str,
        partition: i32,
        offset: i64,
    },
    /// `sent_at`: how many commit events were recorded when the OffsetFetch was sent. Only
    /// commits acknowledged before then must be visible to it (an answer can arrive late).
    Fetched {
        group: &'static str,
        partition: i32,
        offset: i64,
        sent_at: usize,
    },
}

/// A consumer-protocol (KIP-848) member starting or stopping to use a partition, in the order
/// members did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub member: String,
    pub partition: i32,
    pub event: HoldEvent,
    /// For an acquire: a later heartbeat, reporting the partition held, succeeded. An
    /// unconfirmed acquire may come from a stale response (a delayed packet from before a
    /// restart) that the coordinator would have fenced.
    pub confirmed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEvent {
    /// The coordinator assigned the partition.
    Acquire,
    /// The coordinator took it back, or the member left: the member lets go before telling it.
    Release,
    /// The member gave up after an error (fenced, unknown, lost connection): it may have been
    /// presumed dead already, so another member may legitimately hold the partition meanwhile.
    Abandon,
}

/// How a CreateTopics call ended, as its client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    /// Error code 0: the broker promised the topic exists.
    Ok,
    /// An error the controller gives only before it proposes anything (the request was judged
    /// invalid), so the topic can never appear.
    Failed(i16),
    /// A timeout, a lost connection, or an error that can come after the records were proposed
    /// (NOT_CONTROLLER when a controller loses its leadership, KAFKA_STORAGE_ERROR when its log
    /// fails a sync): the records may still be committed by the next leader.
    Unknown,
}

/// One operation on the cluster's set of topics by a metadata client. Times are simulated
/// microseconds since the run started: `invoked_us` before the request was sent, `completed_us`
/// after its answer arrived (for an unknown outcome, when the client gave up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicOp {
    /// The connection (so one broker process: a restart breaks the connection).
    pub connection: u64,
    pub broker: i32,
    pub invoked_us: u64,
    pub completed_us: u64,
    pub kind: TopicOpKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOpKind {
    /// CreateTopics of one topic, whose name no other operation creates.
    Create { name: String, outcome: CreateOutcome },
    /// Metadata for all topics: the workload's topics the broker listed. `last`: the read of
    /// this broker after healing, which every acknowledged create must have reached.
    Read { names: std::collections::BTreeSet<String>, last: bool },
}

#[derive(Debug, Default)]
pub struct History {
    /// Group assignments as members received them.
    pub ownership: Vec<Ownership>,
    /// Consumer-protocol members' partitions, as they took and dropped them.
    pub holdings: Vec<Holding>,
    /// Commits acknowledged and committed offsets read, in simulated-time order.
    pub commits: Vec<CommitEvent>,
    pub acks: Vec<Ack>,
    pub polls: Vec<Poll>,
    /// (partition, leader epoch) -> the leaders brokers' Metadata named for it.
    pub leaders: BTreeMap<(i32, i32), std::collections::BTreeSet<i32>>,
    /// High watermarks in fetch responses, in the order each connection received them.
    pub high_watermarks: Vec<HighWatermark>,
    /// (partition, offset) -> values read there, by consumers and by the final read.
    pub reads: BTreeMap<(i32, i64), Vec<String>>,
    /// Every value any producer ever sent, so anything else read is garbage.
    pub sent: std::collections::BTreeSet<String>,
    /// Fetches whose bytes failed to decode or failed their CRC.
    pub corrupt_reads: Vec<String>,
    /// The log as read after healing: partition -> offset -> value.
    pub final_log: BTreeMap<i32, BTreeMap<i64, String>>,
    /// Creates and reads of the metadata clients' topics, in the order they completed.
    pub topic_ops: Vec<TopicOp>,
    /// Liveness failures after healing.
    pub stuck: Vec<String>,
}

impl History {
    pub fn read(&mut self, partition: i32, offset: i64, value: String) {
        self.reads.entry((partition, offset)).or_default().push(value);
    }
}
