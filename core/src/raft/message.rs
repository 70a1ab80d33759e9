//! What replicas of one Raft log say to each other. These are KRaft's messages (Vote,
//! BeginQuorumEpoch, EndQuorumEpoch, Fetch) reduced to what the state machine needs; the wire
//! layer maps them to and from Kafka's request and response bodies.

use bytes::Bytes;

use crate::ids::NodeId;

/// A leader's answer to a fetch whose (offset, epoch) does not match its log: the follower's
/// last epoch there ends at `end_offset` (KRaft's DivergingEpoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Diverging {
    pub epoch: i32,
    pub end_offset: i64,
}

/// A snapshot of a log: the state of every entry before `end_offset`, the last of which has
/// `epoch` (KRaft's SnapshotId). Ordered by offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId {
    pub end_offset: i64,
    pub epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A (pre-)candidate asks for a vote in `epoch` (for a pre-vote, the epoch it would stand
    /// in; nothing is changed by a pre-vote).
    Vote {
        epoch: i32,
        last_epoch: i32,
        end_offset: i64,
        pre_vote: bool,
    },
    VoteResponse {
        epoch: i32,
        granted: bool,
        pre_vote: bool,
        leader: Option<NodeId>,
    },
    /// A new leader announces itself to the voters.
    BeginQuorumEpoch {
        epoch: i32,
    },
    BeginQuorumEpochResponse {
        epoch: i32,
    },
    /// A leader stepping down asks the voters to elect a successor now, the preferred ones first.
    EndQuorumEpoch {
        epoch: i32,
        preferred_successors: Vec<NodeId>,
    },
    /// A follower (or an observer) pulls from `offset`; `last_epoch` is the epoch of its entry
    /// just before it. `id` is the follower's own number for this fetch, echoed in the answer
    /// (on the wire, the request's correlation id does this).
    Fetch {
        epoch: i32,
        offset: i64,
        last_epoch: i32,
        id: u64,
    },
    FetchResponse {
        epoch: i32,
        /// The fetch answered: a follower takes only the answer to its outstanding fetch, so a
        /// late or repeated answer can neither append twice nor truncate anew.
        id: u64,
        /// That fetch's offset, where `entries` start.
        offset: i64,
        leader: Option<NodeId>,
        high_watermark: Option<i64>,
        diverging: Option<Diverging>,
        /// Entries from the fetch offset (empty when diverging or nothing new).
        entries: Bytes,
        /// The leader's log no longer holds what the follower needs: fetch this snapshot.
        snapshot: Option<SnapshotId>,
    },
    /// A follower pulls `snapshot` from `position` (its bytes so far), KRaft's FetchSnapshot.
    /// `id` matches the answer to it, as a fetch's does.
    FetchSnapshot {
        epoch: i32,
        snapshot: SnapshotId,
        position: u64,
        id: u64,
    },
    FetchSnapshotResponse {
        epoch: i32,
        id: u64,
        leader: Option<NodeId>,
        snapshot: SnapshotId,
        position: u64,
        /// The snapshot's whole size, and its bytes from `position`; `None` when the leader no
        /// longer has it (a newer one replaced it) or does not lead.
        chunk: Option<(u64, Bytes)>,
    },
}

impl Message {
    pub fn epoch(&self) -> i32 {
        match self {
            Message::Vote { epoch, .. }
            | Message::VoteResponse { epoch, .. }
            | Message::BeginQuorumEpoch { epoch }
            | Message::BeginQuorumEpochResponse { epoch }
            | Message::EndQuorumEpoch { epoch, .. }
            | Message::Fetch { epoch, .. }
            | Message::FetchResponse { epoch, .. }
            | Message::FetchSnapshot { epoch, .. }
            | Message::FetchSnapshotResponse { epoch, .. } => *epoch,
        }
    }
}
