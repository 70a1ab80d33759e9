//! Scrubbing: every replica's stored batches are read back and checked by CRC, a slice at a
//! time, so a bit that flipped on the disk in data nobody reads is found and repaired from
//! another replica (`Broker::repair_partition`) rather than waiting to be served or to become
//! the only copy. Reads served to consumers and followers are checked too; the scrub covers
//! what they do not reach. A single node has no replica to repair from and is not scrubbed.
//!
//! Once a second the scrub checks up to `scrub_bytes_per_sec` from where it stopped, partition
//! after partition in name order, wrapping around, and each partition at most once per tick:
//! the work per tick is bounded by bytes and by partitions visited, not by how many partitions
//! there are, and small logs are not read again and again within one tick. A partition is read
//! [`SCRUB_READ_BYTES_MAX`] at a time, so the scrub holds no more than that in memory however
//! large its budget.

use std::ops::Bound;

use super::{Broker, StorageOp};
use crate::log::batch::BatchHeader;

/// How often the scrub runs.
pub(super) const SCRUB_INTERVAL_MS: i64 = 1_000;
/// Partitions one tick may step past (empty or wholly checked ones cost a step each).
const SCRUB_PARTITIONS_PER_TICK: usize = 64;
/// The most one read of the scrub brings into memory (a whole tick's budget at once raised
/// each node's peak memory by tens of MiB in the cluster benchmark).
const SCRUB_READ_BYTES_MAX: usize = 1 << 20;

/// Where the scrub stands: the partition and offset it checks next.
#[derive(Debug, Default)]
pub(super) struct Scrub {
    cursor: Option<(String, i32, i64)>,
    pub next_ms: i64,
}

impl Broker {
    /// One tick of the scrub (see the module documentation).
    pub(super) fn scrub(&mut self, now_ms: i64) {
        let bytes_per_tick = self.config.scrub_bytes_per_sec.saturating_mul(SCRUB_INTERVAL_MS as u64) / 1_000;
        let mut budget = usize::try_from(bytes_per_tick).unwrap_or(usize::MAX);
        let mut visited = std::collections::BTreeSet::new();
        for _ in 0..SCRUB_PARTITIONS_PER_TICK {
            if budget == 0 {
                break;
            }
            let Some((name, index, offset)) = self.replication.scrub.cursor.take().or_else(|| self.scrub_next(None))
            else {
                return;
            };
            if !visited.insert((name.clone(), index)) {
                // Wrapped around to a partition this tick checked already: the next tick goes on.
                self.replication.scrub.cursor = Some((name, index, offset));
                return;
            }
            let Some(p) = self.partition(&name, index).filter(|p| p.replica.is_some() && !p.failed) else {
                self.replication.scrub.cursor = self.scrub_next(Some((&name, index)));
                continue;
            };
            let (id, limit) = (p.id, p.log.durable_offset());
            let mut from = offset.max(p.log.log_start_offset());
            if from >= limit {
                self.replication.scrub.cursor = self.scrub_next(Some((&name, index)));
                continue;
            }
            // Slice by slice while the budget lasts; the cursor stays here for the next tick
            // when it runs out, and moves on at the next step once the partition is checked.
            while let Some(p) = self.partition(&name, index) {
                match p.log.read_checked(from, budget.min(SCRUB_READ_BYTES_MAX), limit, true) {
                    Ok((read, damaged)) => {
                        budget = budget.saturating_sub(read.records.len().max(1));
                        let next = next_offset(&read.records).unwrap_or(limit);
                        self.replication.scrub.cursor = Some((name.clone(), index, next));
                        if let Some(damaged) = damaged {
                            self.replication.scrub.cursor = self.scrub_next(Some((&name, index)));
                            self.partition_error(now_ms, id, StorageOp::Read, &damaged.into_io());
                            break;
                        }
                        if budget == 0 || next >= limit {
                            break;
                        }
                        from = next;
                    }
                    Err(error) => {
                        self.replication.scrub.cursor = self.scrub_next(Some((&name, index)));
                        self.partition_error(now_ms, id, StorageOp::Read, &error);
                        break;
                    }
                }
            }
        }
    }

    /// The partition after `after` (the first with `None`), wrapping around, at its start.
    fn scrub_next(&self, after: Option<(&str, i32)>) -> Option<(String, i32, i64)> {
        let following = after.and_then(|(name, index)| {
            let in_topic = self.topics.get(name).and_then(|t| t.partitions.range(index + 1..).next().map(|(&i, _)| i));
            match in_topic {
                Some(i) => Some((name.to_string(), i)),
                None => self
                    .topics
                    .range::<str, _>((Bound::Excluded(name), Bound::Unbounded))
                    .find_map(|(n, t)| t.partitions.keys().next().map(|&i| (n.clone(), i))),
            }
        });
        let first = || self.topics.iter().find_map(|(n, t)| t.partitions.keys().next().map(|&i| (n.clone(), i)));
        following.or_else(first).map(|(name, index)| (name, index, 0))
    }
}

/// The offset after the last batch of `records`.
fn next_offset(records: &[u8]) -> Option<i64> {
    let mut at = 0;
    let mut next = None;
    while let Some(header) = BatchHeader::parse(&records[at..]) {
        let size = header.size_bytes()?;
        next = Some(header.last_offset() + 1);
        at += size;
    }
    next
}
