//! What a replica is in its quorum, and the part of it that must survive a crash.

use std::collections::BTreeSet;

use crate::ids::NodeId;

/// Saved before it is acted on (KRaft's `quorum-state` file): a replica that forgot its epoch
/// or its vote could vote twice in one epoch and let two leaders be elected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuorumState {
    pub epoch: i32,
    pub voted_for: Option<NodeId>,
    pub leader: Option<NodeId>,
    /// A replica that cut damaged entries from its log (see `Raft::damaged`) does not stand
    /// until its log reaches this offset again; 0 when it need not. Meanwhile it votes as its
    /// log before the cut would have: only for a candidate whose log is at least as up to
    /// date as (`recovering_epoch`, `recovering_to`).
    pub recovering_to: i64,
    pub recovering_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Knows the epoch but no leader; waits for one, or for its election timeout.
    Unattached,
    /// Asking for pre-votes for `epoch + 1` (KIP-996); changes nothing until a majority agrees.
    Prospective {
        granted: BTreeSet<NodeId>,
    },
    /// Standing in the current epoch, having voted for itself.
    Candidate {
        granted: BTreeSet<NodeId>,
    },
    Follower {
        leader: NodeId,
    },
    Leader(Box<LeaderState>),
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Unattached => "unattached",
            Role::Prospective { .. } => "prospective",
            Role::Candidate { .. } => "candidate",
            Role::Follower { .. } => "follower",
            Role::Leader(_) => "leader",
        }
    }
}

/// What a leader knows of its followers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    /// The high watermark moves only past this offset: the leader-change entry that opened
    /// the epoch, so nothing of an earlier epoch is called committed on this leader's count
    /// alone; -1 when the epoch needed no such entry.
    pub commit_floor: i64,
    /// Per voter (not the leader): the end offset its last fetch proved it holds, on disk.
    pub follower_end: std::collections::BTreeMap<NodeId, i64>,
    /// Voters heard from (a fetch or an answer to BeginQuorumEpoch) since the last
    /// check-quorum, for stepping down when cut off from the majority.
    pub heard_from: BTreeSet<NodeId>,
    /// Voters that have not yet answered BeginQuorumEpoch nor fetched; it is sent again.
    pub unannounced: BTreeSet<NodeId>,
    /// Fetches waiting for new entries or a new high watermark.
    pub parked_fetches: std::collections::BTreeMap<NodeId, ParkedFetch>,
    /// The high watermark each follower was last told, so a newer one wakes its fetch.
    pub told_high_watermark: std::collections::BTreeMap<NodeId, i64>,
    /// Per voter: when it last held this leader's whole log (the in-sync replicas).
    pub caught_up_ms: std::collections::BTreeMap<NodeId, i64>,
    /// Per voter: its last fetch, (when, this log's end then).
    pub last_fetch: std::collections::BTreeMap<NodeId, (i64, i64)>,
    /// When this replica became leader.
    pub since_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkedFetch {
    pub id: u64,
    pub offset: i64,
    pub deadline_ms: i64,
}
