//! An in-memory [`RaftLog`] for the Raft's tests: one entry per append, each with its epoch,
//! and a durable prefix that a crash keeps (everything after it is lost).
//!
//! Entries cross between replicas as `len:u32 epoch:i32 payload` frames.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::RaftLog;
use crate::ids::NodeId;

#[derive(Debug, Clone, Default)]
pub struct MemLog {
    pub entries: Vec<(i32, Bytes)>,
    pub durable: i64,
}

impl MemLog {
    pub fn sync(&mut self) {
        self.durable = self.entries.len() as i64;
    }

    /// What survives a power loss.
    pub fn crash(&mut self) {
        self.entries.truncate(self.durable as usize);
    }
}

impl RaftLog for MemLog {
    fn end_offset(&self) -> i64 {
        self.entries.len() as i64
    }

    fn durable_offset(&self) -> i64 {
        self.durable
    }

    fn last_epoch(&self) -> i32 {
        self.entries.last().map_or(0, |(epoch, _)| *epoch)
    }

    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let found = self.entries.iter().rposition(|(e, _)| *e <= epoch)?;
        let found_epoch = self.entries[found].0;
        Some((found_epoch, found as i64 + 1))
    }

    fn append_as_leader(&mut self, epoch: i32, batch: Bytes) -> io::Result<i64> {
        assert!(epoch >= self.last_epoch(), "epochs never go back in a log");
        self.entries.push((epoch, batch));
        Ok(self.entries.len() as i64 - 1)
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
        self.entries.truncate(offset.max(0) as usize);
        self.durable = self.durable.min(offset);
        Ok(())
    }

    fn read(&self, offset: i64, max_bytes: usize) -> io::Result<Bytes> {
        let mut out = BytesMut::new();
        for (epoch, payload) in self.entries.iter().skip(offset.max(0) as usize) {
            if !out.is_empty() && out.len() + payload.len() > max_bytes {
                break;
            }
            out.put_u32(payload.len() as u32);
            out.put_i32(*epoch);
            out.put_slice(payload);
        }
        Ok(out.freeze())
    }
}
