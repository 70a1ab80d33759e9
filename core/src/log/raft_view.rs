//! A [`Log`] as the Raft sees it ([`RaftLog`]): offsets are record offsets, an entry's epoch is
//! its batch's `partitionLeaderEpoch`, and a leader opens its epoch with a LeaderChange control
//! batch, as KRaft does in `__cluster_metadata` (consumers of a partition skip control batches,
//! as they skip transaction markers).

use std::io;

use bytes::Bytes;
use kafka_protocol::messages::leader_change_message::{LeaderChangeMessage, Voter};
use kafka_protocol::messages::BrokerId;
use kafka_protocol::protocol::Encodable;

use super::batch::build::control_batch;
use super::batch::{control_type, BatchHeader};
use super::Log;
use crate::ids::NodeId;
use crate::raft::{RaftLog, SnapshotId};
use crate::txn::producer::ProducerTable;

/// Kafka's control record type for a leader change (0 and 1 are the transaction markers).
pub const CONTROL_TYPE_LEADER_CHANGE: i16 = 2;

/// A log borrowed for one Raft input, with the time its appends are stamped with.
pub struct RaftView<'a> {
    pub log: &'a mut Log,
    pub now_ms: i64,
    /// The voters named in leader-change records.
    pub voters: &'a [NodeId],
    /// A partition's idempotent producers, kept in step with what is replicated and cut (the
    /// metadata log has none).
    pub producers: Option<&'a mut ProducerTable>,
}

impl RaftLog for RaftView<'_> {
    fn end_offset(&self) -> i64 {
        self.log.end_offset()
    }

    fn durable_offset(&self) -> i64 {
        self.log.durable_offset()
    }

    fn last_epoch(&self) -> i32 {
        self.log.last_epoch()
    }

    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.log.end_offset_for_epoch(epoch)
    }

    fn append_as_leader(&mut self, epoch: i32, batch: Bytes) -> io::Result<i64> {
        self.log.append(&mut batch.to_vec(), epoch, self.now_ms)
    }

    fn append_leader_change(&mut self, epoch: i32, leader: NodeId) -> io::Result<i64> {
        let voters: Vec<Voter> = self.voters.iter().map(|v| Voter::default().with_voter_id(v.0)).collect();
        // Which voters granted the vote is not kept; KRaft uses the field only for logs.
        let message =
            LeaderChangeMessage::default().with_version(0).with_leader_id(BrokerId(leader.0)).with_voters(voters);
        let mut value = bytes::BytesMut::new();
        message.encode(&mut value, 0).map_err(|e| io::Error::other(format!("encoding a leader change: {e}")))?;
        let mut key = Vec::with_capacity(4);
        key.extend_from_slice(&0i16.to_be_bytes());
        key.extend_from_slice(&CONTROL_TYPE_LEADER_CHANGE.to_be_bytes());
        let mut batch = control_batch(key, value.to_vec(), self.now_ms);
        self.log.append(&mut batch, epoch, self.now_ms)
    }

    fn append_replicated(&mut self, entries: &Bytes) -> io::Result<()> {
        self.log.append_replicated(entries, self.now_ms)?;
        if let Some(producers) = self.producers.as_deref_mut() {
            // The batches kept their offsets; the log checked each one whole.
            let mut at = 0;
            while let Some(header) = BatchHeader::parse(&entries[at..]) {
                let Some(size) = header.size_bytes() else { break };
                let control_type = header.is_control().then(|| control_type(&entries[at..at + size])).flatten();
                producers.replay(&header, control_type);
                at += size;
            }
        }
        Ok(())
    }

    fn truncate_to(&mut self, offset: i64) -> io::Result<()> {
        self.log.truncate_to(offset)?;
        if let Some(producers) = self.producers.as_deref_mut() {
            producers.truncate_to(self.log.end_offset());
        }
        Ok(())
    }

    /// Checked batch by batch: a damaged batch is never sent to a follower. The batches
    /// before it are; one that comes first is an error naming it, which the owner repairs.
    fn read(&self, offset: i64, max_bytes: usize) -> io::Result<Bytes> {
        match self.log.read_checked(offset, max_bytes, self.log.end_offset(), true)? {
            (read, Some(damaged)) if read.records.is_empty() => Err(damaged.into_io()),
            (read, _) => Ok(read.records),
        }
    }

    fn start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    fn snapshot(&self) -> Option<SnapshotId> {
        self.log.snapshot()
    }

    fn read_snapshot(&self, id: SnapshotId, position: u64, max_bytes: usize) -> io::Result<Option<(u64, Bytes)>> {
        self.log.read_snapshot(id, position, max_bytes)
    }

    fn install_snapshot(&mut self, id: SnapshotId, bytes: &[u8]) -> io::Result<()> {
        self.log.install_snapshot(id, bytes, self.now_ms)?;
        if let Some(producers) = self.producers.as_deref_mut() {
            // Kafka's follower out of range forgets its producers the same way: what they wrote
            // before the new start is gone from this replica.
            producers.truncate_to(i64::MIN);
        }
        Ok(())
    }
}
