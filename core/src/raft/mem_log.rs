//! An in-memory [`RaftLog`] for the Raft's tests: one entry per append, each with its epoch,
//! and a durable prefix that a crash keeps (everything after it is lost).
//!
//! Entries cross between replicas as `len:u32 epoch:i32 payload` frames. A snapshot
//! ([`MemLog::compact`]) is the payloads it replaces, joined, so a test can see what it holds.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{RaftLog, SnapshotId};
use crate::ids::NodeId;

#[derive(Debug, Clone, Default)]
pub struct MemLog {
    /// The entries from `start` on.
    pub entries: Vec<(i32, Bytes)>,
    pub durable: i64,
    pub start: i64,
    pub snapshot: Option<(SnapshotId, Bytes)>,
}

impl MemLog {
    pub fn sync(&mut self) {
        self.durable = self.end_offset();
    }

    /// What survives a power loss.
    pub fn crash(&mut self) {
        self.entries.truncate((self.durable - self.start) as usize);
    }

    /// Replaces the entries before `offset` (durable ones) with a snapshot of them.
    pub fn compact(&mut self, offset: i64) {
        assert!(offset > self.start && offset <= self.durable, "compacting what is not there");
        let gone: Vec<(i32, Bytes)> = self.entries.drain(..(offset - self.start) as usize).collect();
        let mut state = BytesMut::new();
        if let Some((_, before)) = &self.snapshot {
            state.put_slice(before);
        }
        for (_, payload) in &gone {
            state.put_slice(payload);
        }
        let epoch = gone.last().expect("at least one entry").0;
        self.snapshot = Some((SnapshotId { end_offset: offset, epoch }, state.freeze()));
        self.start = offset;
    }
}

impl RaftLog for MemLog {
    fn end_offset(&self) -> i64 {
        self.start + self.entries.len() as i64
    }

    fn durable_offset(&self) -> i64 {
        self.durable
    }

    fn last_epoch(&self) -> i32 {
        let snapshot = self.snapshot.as_ref().map_or(0, |(id, _)| id.epoch);
        self.entries.last().map_or(snapshot, |(epoch, _)| *epoch)
    }

    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        match self.entries.iter().rposition(|(e, _)| *e <= epoch) {
            Some(found) => Some((self.entries[found].0, self.start + found as i64 + 1)),
            None => self.snapshot.as_ref().filter(|(id, _)| id.epoch <= epoch).map(|(id, _)| (id.epoch, id.end_offset)),
        }
    }

    fn append_as_leader(&mut self, epoch: i32, batch: Bytes) -> io::Result<i64> {
        assert!(epoch >= self.last_epoch(), "epochs never go back in a log");
        self.entries.push((epoch, batch));
        Ok(self.end_offset() - 1)
    }

    fn append_leader_change(&mut self, epoch: i32, leader: NodeId) -> io::Result<i64> {
        self.append_as_leader(epoch, Bytes::from(format!("leader {leader}")))
    }

    fn append_replicated(&mut self, frames: &Bytes) -> io::Result<()> {
        let mut frames = frames.clone();
        while frames.has_remaining() {
            let len = frames.get_u32() as usize;
            let epoch = frames.get_i32();
            assert!(epoch >= self.last_epoch(), "epochs never go back in a log");
            self.entries.push((epoch, frames.split_to(len)));
        }
        Ok(())
    }

    fn truncate_to(&mut self, offset: i64) -> io::Result<()> {
        assert!(offset >= self.start, "truncating below the log start");
        self.entries.truncate((offset - self.start) as usize);
        self.durable = self.durable.min(offset);
        Ok(())
    }

    fn read(&self, offset: i64, max_bytes: usize) -> io::Result<Bytes> {
        assert!(offset >= self.start, "reading below the log start");
        let mut out = BytesMut::new();
        for (epoch, payload) in self.entries.iter().skip((offset - self.start) as usize) {
            if !out.is_empty() && out.len() + payload.len() > max_bytes {
                break;
            }
            out.put_u32(payload.len() as u32);
            out.put_i32(*epoch);
            out.put_slice(payload);
        }
        Ok(out.freeze())
    }

    fn start_offset(&self) -> i64 {
        self.start
    }

    fn snapshot(&self) -> Option<SnapshotId> {
        self.snapshot.as_ref().map(|(id, _)| *id)
    }

    fn read_snapshot(&self, id: SnapshotId, position: u64, max_bytes: usize) -> io::Result<Option<(u64, Bytes)>> {
        Ok(self.snapshot.as_ref().filter(|(have, _)| *have == id).map(|(_, state)| {
            let from = (position as usize).min(state.len());
            (state.len() as u64, state.slice(from..(from + max_bytes.max(1)).min(state.len())))
        }))
    }

    fn install_snapshot(&mut self, id: SnapshotId, bytes: &[u8]) -> io::Result<()> {
        self.snapshot = Some((id, Bytes::copy_from_slice(bytes)));
        self.entries.clear();
        self.start = id.end_offset;
        self.durable = id.end_offset;
        Ok(())
    }
}
