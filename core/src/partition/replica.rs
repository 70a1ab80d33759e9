//! A partition's replica in a cluster: the Raft (D21) that replicates its log among the
//! partition's replicas, which elects its leader and decides what is committed. The leader
//! epoch of the partition is the Raft's epoch, stamped into every batch the leader writes.

use crate::ids::NodeId;
use crate::raft::wire::Target;
use crate::raft::Raft;

pub(crate) struct Replica {
    pub raft: Raft,
    /// The partition as Raft messages name it on the wire.
    pub target: Target,
    /// The partition's replicas, in the order placement gave them (the first is the preferred
    /// leader); named in leader-change records.
    pub voters: Vec<NodeId>,
    /// Its entry in the node's timer set, so the entry can be replaced when the Raft's next
    /// timeout moves.
    pub timer_ms: i64,
    /// The highest high watermark this replica has learned. A new leader knows nothing is
    /// committed in its epoch until its first commit, but what was committed before stays
    /// committed, so consumers keep reading up to here meanwhile and it never moves back.
    pub high_watermark: i64,
    /// The quorum state could not be saved: this replica takes no further part (a vote that
    /// is not durable must not be acted on) until a restart.
    pub failed: bool,
}

impl Replica {
    pub fn new(raft: Raft, target: Target, voters: Vec<NodeId>) -> Replica {
        let timer_ms = raft.next_timeout_ms();
        Replica { raft, target, voters, timer_ms, high_watermark: 0, failed: false }
    }
}
