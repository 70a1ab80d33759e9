//! One partition's state: its log, its idempotent producers, whether storage failed it, and
//! the requests parked on it. The offsets a replicated partition keeps apart are named here
//! already: the log end (written), the durable offset (fsynced here), the high watermark
//! (committed: on a single node, the durable offset) and the last stable offset (the high
//! watermark, or the first record of a transaction not yet decided and committed).

mod replica;
mod waiters;

use std::collections::BTreeSet;
use std::io;

pub(crate) use replica::Replica;
pub(crate) use waiters::Waiters;

use crate::broker::{StorageFault, StorageOp, PARTITION_FAILED};
use crate::ids::{Offset, PartitionId};
use crate::io::RequestId;
use crate::log::Log;
use crate::txn::producer::ProducerTable;

pub(crate) struct Partition {
    pub id: PartitionId,
    pub log: Log,
    pub producers: ProducerTable,
    /// A write or fsync failed: the page cache no longer says what is on disk past the durable
    /// offset. The partition refuses writes (KAFKA_STORAGE_ERROR) and serves reads of what is
    /// durable until a restart recovers it from what is really stored (see `broker/fault.rs`).
    pub failed: bool,
    pub waiters: Waiters,
    /// In a cluster, the Raft replicating this partition; `None` on a single node (and for the
    /// node's own offsets topic), where this node alone holds the partition.
    pub replica: Option<Replica>,
}

impl Partition {
    pub fn new(id: PartitionId, log: Log, producers: ProducerTable) -> Partition {
        Partition { id, log, producers, failed: false, waiters: Waiters::default(), replica: None }
    }

    /// One past the last record written (not necessarily durable).
    pub fn log_end_offset(&self) -> i64 {
        self.log.end_offset()
    }

    /// Everything before it is fsynced on this node.
    pub fn durable_offset(&self) -> i64 {
        self.log.durable_offset()
    }

    /// Everything before it is committed, so consumers may read it and acks=all may be
    /// answered for it. A single node commits what it has fsynced; a replicated partition
    /// what a majority of its replicas have fsynced (its Raft's high watermark).
    pub fn high_watermark(&self) -> i64 {
        match &self.replica {
            Some(replica)
                if replica.raft.is_leader() && crate::planted::active(crate::planted::PlantedBug::AckBeforeQuorum) =>
            {
                self.durable_offset()
            }
            Some(replica) => replica.high_watermark,
            None => self.durable_offset(),
        }
    }

    /// The offset below which `copies` replicas hold every record durably: the high watermark
    /// for 0 copies or on a single node; otherwise as the leader's Raft knows its followers.
    pub fn held_by(&self, copies: usize) -> i64 {
        match &self.replica {
            Some(replica) if copies > 0 => replica.raft.held_by(copies, self.durable_offset()),
            _ => self.high_watermark(),
        }
    }

    /// The partition's leader epoch here: its Raft's epoch, or 0 on a single node.
    pub fn leader_epoch(&self) -> i32 {
        self.replica.as_ref().map_or(0, |r| r.raft.epoch())
    }

    /// Whether a write made here as leader in `epoch` may still be answered by this node: on a
    /// single node always; a replica only while its Raft leads in that same epoch (after a
    /// change of leader, the offsets written may hold another leader's records).
    pub fn leads_in(&self, epoch: i32) -> bool {
        self.replica.as_ref().is_none_or(|r| r.raft.leader_epoch() == Some(epoch))
    }

    /// Whether this node may take writes and serve consumers for the partition: a single
    /// node always, a replica while its Raft leads.
    pub fn is_leader(&self) -> bool {
        self.replica.as_ref().is_none_or(|r| r.raft.is_leader() && !r.failed)
    }

    /// Whether this node is a healthy follower of the partition (its Raft follows a known
    /// leader in its epoch), which may serve consumers what it knows to be committed.
    pub fn is_follower(&self) -> bool {
        self.replica.as_ref().is_some_and(|r| {
            // One that cut damaged records serves nobody until it holds them again.
            !r.failed && r.raft.is_follower() && self.log.end_offset() >= r.raft.quorum_state().recovering_to
        })
    }

    /// Consumers with read_committed stop here: at the high watermark, or before it at the
    /// first record of a transaction that is open or whose marker has not committed.
    pub fn last_stable_offset(&self) -> i64 {
        let high_watermark = self.high_watermark();
        self.producers.first_unstable_offset().map_or(high_watermark, |first| first.min(high_watermark))
    }

    /// A sync planned up to `durable_offset` completed: the offsets move on and the requests
    /// waiting for them go to `woken`. (A replicated partition's high watermark moves when its
    /// Raft commits, see [`Partition::committed`].)
    pub fn synced(&mut self, durable_offset: i64, woken: &mut BTreeSet<RequestId>) {
        self.log.synced(durable_offset);
        self.producers.committed(self.high_watermark());
        self.waiters.advanced(Offset(self.high_watermark()), woken);
    }

    // (With the planted bug `ack-before-quorum`, `high_watermark` above is the leader's
    // durable offset, so `synced` wakes acks=all before any follower has the write.)

    /// The Raft committed everything before `high_watermark`.
    pub fn committed(&mut self, high_watermark: i64, woken: &mut BTreeSet<RequestId>) {
        let Some(replica) = &mut self.replica else { return };
        replica.high_watermark = replica.high_watermark.max(high_watermark);
        self.producers.committed(replica.high_watermark);
        self.waiters.advanced(Offset(replica.high_watermark), woken);
    }

    /// The leadership changed: every write waiting for its commit is looked at again (it was
    /// written in an epoch that ended, so it is answered NOT_LEADER_OR_FOLLOWER unless it
    /// committed already).
    pub fn leadership_changed(&mut self, woken: &mut BTreeSet<RequestId>) {
        self.waiters.failed(woken);
    }

    /// Fails the partition after a storage error; the requests waiting for a commit on it go
    /// to `woken`. Returns the fault to report the first time only, so a failed partition is
    /// logged once, not once per request.
    pub fn fail(&mut self, op: StorageOp, error: &io::Error, woken: &mut BTreeSet<RequestId>) -> Option<StorageFault> {
        self.waiters.failed(woken);
        if self.failed {
            return None;
        }
        self.failed = true;
        Some(StorageFault::new(op, self.log.dir(), error, PARTITION_FAILED))
    }
}
