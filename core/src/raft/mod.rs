//! One pull-based Raft, after KRaft (KIP-595, with KIP-996's pre-vote and check-quorum), as a
//! state machine with no I/O. It replicates one log among a fixed set of voters; the metadata
//! log (`__cluster_metadata`) uses it, and partitions can.
//!
//! # Protocol
//!
//! - **Epochs and votes.** Every message carries the sender's epoch; a higher epoch seen makes
//!   the receiver adopt it (without a vote or a leader). A voter grants one vote per epoch, to
//!   a candidate whose log is at least as up to date as its own, comparing (last epoch, end
//!   offset). The epoch and the vote are saved ([`RaftOutput::SaveState`]) before anything
//!   that depends on them leaves.
//! - **Pre-vote.** A replica that lost its leader first asks, without changing any state,
//!   whether a majority would vote for it; only then does it bump the epoch and stand. A voter
//!   that still hears from its leader refuses the pre-vote, so a replica cut off and back
//!   cannot depose a healthy leader.
//! - **Leadership.** A candidate with a majority becomes leader, appends a leader-change entry
//!   in its epoch if its log may hold uncommitted entries, and tells the voters
//!   (BeginQuorumEpoch). Followers then pull: each Fetch
//!   names the follower's end offset and the epoch of its last entry. The leader checks that
//!   pair against its own log; on a mismatch it answers with the diverging epoch and that
//!   epoch's end offset, and the follower truncates there and fetches again.
//! - **Commit.** A follower fetches from its end only once everything before it is durable
//!   (fsynced), so its fetch offset is what it has on disk. The high watermark is the largest
//!   offset that a majority of voters (the leader with its durable offset) hold, once that
//!   includes an entry of the leader's own epoch (the leader-change entry, where there is
//!   one). It never moves back.
//! - **Snapshots.** The owner may replace a log's committed, durable prefix with a snapshot
//!   (the metadata image; for a partition, nothing: its records are its state) and start the
//!   log there. A follower that needs entries before the leader's log start is answered with
//!   the leader's latest snapshot id; it pulls the snapshot (FetchSnapshot, in chunks), stores
//!   it, starts its log over at the snapshot's end and fetches on from there.
//! - **Liveness.** A follower that hears nothing from its leader for `fetch_timeout_ms` starts
//!   a pre-vote; a leader that hears no fetch from a majority for as long steps down
//!   (check-quorum), so a leader cut off from the majority stops accepting writes. Election
//!   timeouts are randomised from the seed.
//!
//! # Contract
//!
//! Inputs: [`Raft::handle_message`], [`Raft::handle_timeout`], [`Raft::handle_durable`]
//! (the log's durable offset moved), [`Raft::propose`] (leader only). Every input takes `now_ms`
//! and the log ([`RaftLog`]), which the Raft reads and writes synchronously (appends land in the
//! page cache); the owner syncs the log and reports it with `handle_durable`. After each input
//! drain [`Raft::poll_output`] and perform the outputs in order: a `SaveState` must be durable
//! before any output after it is performed. Then re-read [`Raft::next_timeout_ms`].

mod message;
mod replica;
pub mod saved;
mod state;
pub mod wire;

#[cfg(test)]
mod mem_log;
#[cfg(test)]
mod tests;

pub use message::{Diverging, Message, SnapshotId};
pub use replica::{Raft, RaftConfig, RaftOutput};
pub use state::{QuorumState, Role};

use std::io;

use bytes::Bytes;

use crate::ids::NodeId;

/// The log a [`Raft`] replicates, as the Raft sees it. Offsets count entries (for a partition
/// log, records); every entry carries the epoch of the leader that wrote it.
pub trait RaftLog {
    /// One past the last entry.
    fn end_offset(&self) -> i64;
    /// Everything before it is durable.
    fn durable_offset(&self) -> i64;
    /// The epoch of the last entry; 0 for an empty log.
    fn last_epoch(&self) -> i32;
    /// The largest epoch in the log not above `epoch`, and the offset where it ends (where the
    /// next epoch starts, or the log end): Kafka's OffsetForLeaderEpoch. `None` if every entry
    /// has a higher epoch (or the log is empty).
    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)>;
    /// Appends `batch` as leader in `epoch`; returns the offset of its first entry.
    fn append_as_leader(&mut self, epoch: i32, batch: Bytes) -> io::Result<i64>;
    /// Appends the entry that opens `leader`'s `epoch`.
    fn append_leader_change(&mut self, epoch: i32, leader: NodeId) -> io::Result<i64>;
    /// Appends entries read from the leader's log ([`RaftLog::read`]), which start at this
    /// log's end and keep their epochs.
    fn append_replicated(&mut self, entries: &Bytes) -> io::Result<()>;
    /// Removes every entry at or after `offset`.
    fn truncate_to(&mut self, offset: i64) -> io::Result<()>;
    /// Whole entries from `offset`, up to about `max_bytes` (at least one if there is one).
    fn read(&self, offset: i64, max_bytes: usize) -> io::Result<Bytes>;
    /// The first entry still held; those before it are only in [`RaftLog::snapshot`].
    fn start_offset(&self) -> i64;
    /// The latest snapshot, which ends at or after the log start; `None` for a log that still
    /// starts at 0 and has none.
    fn snapshot(&self) -> Option<SnapshotId>;
    /// Up to `max_bytes` of the snapshot `id` from `position`, with its whole size; `None` if
    /// `id` is not the latest snapshot.
    fn read_snapshot(&self, id: SnapshotId, position: u64, max_bytes: usize) -> io::Result<Option<(u64, Bytes)>>;
    /// Stores the snapshot `id`, fetched whole, and starts the log over at its end: empty,
    /// durable, its last epoch the snapshot's. An error leaves the log as it was.
    fn install_snapshot(&mut self, id: SnapshotId, bytes: &[u8]) -> io::Result<()>;
}
