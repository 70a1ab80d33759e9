//! Leader epochs: which epoch's leader wrote each range of offsets. Followers truncate by it
//! (OffsetForLeaderEpoch) and consumers validate their position with it, so it is recorded
//! from the first write, in `leader-epoch-checkpoint` beside the segments.

use std::io;

use super::checkpoint;
use crate::storage::Storage;

pub const CHECKPOINT_NAME: &str = "leader-epoch-checkpoint";

/// (epoch, first offset written in it), both strictly increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    /// Reads the checkpoint as written; the caller drops the epochs its recovered log does not
    /// reach (`truncate_from`).
    pub fn load(storage: &dyn Storage, dir: &str) -> io::Result<LeaderEpochCache> {
        let path = format!("{dir}/{CHECKPOINT_NAME}");
        // A malformed checkpoint is rebuilt from the next append; it only guides truncation.
        let entries = checkpoint::read(storage, &path, 2).unwrap_or_default();
        let mut cache = LeaderEpochCache::default();
        for entry in entries {
            let (Ok(epoch), Ok(offset)) = (entry[0].parse::<i32>(), entry[1].parse::<i64>()) else {
                continue;
            };
            // Entries out of order are not ours; skip them rather than trust them.
            if cache
                .entries
                .last()
                .is_some_and(|&(last_epoch, last_offset)| epoch <= last_epoch || offset < last_offset)
            {
                continue;
            }
            cache.assign(epoch, offset);
        }
        Ok(cache)
    }

    pub fn write(&self, storage: &dyn Storage, dir: &str) -> io::Result<()> {
        let entries: Vec<Vec<String>> = self.entries.iter().map(|(e, o)| vec![e.to_string(), o.to_string()]).collect();
        checkpoint::write(storage, dir, CHECKPOINT_NAME, &entries)
    }

    /// Records that `epoch` starts at `start_offset`. Ignores an epoch not above the latest.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) {
        if let Some(&(last_epoch, last_offset)) = self.entries.last() {
            if epoch <= last_epoch {
                return;
            }
            assert!(start_offset >= last_offset, "epoch start offsets must not go backwards");
        }
        self.entries.push((epoch, start_offset));
    }

    /// Forgets the epochs that start at or after `offset` (the log was cut there).
    pub fn truncate_from(&mut self, offset: i64) {
        self.entries.retain(|&(_, start)| start < offset);
    }

    /// The epoch whose leader wrote `offset`, or `None` if the cache does not reach back so far.
    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        let index = self.entries.partition_point(|&(_, start)| start <= offset);
        index.checked_sub(1).map(|i| self.entries[i].0)
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(e, _)| e)
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// Kafka's OffsetForLeaderEpoch answer: for the largest epoch `<= epoch`, that epoch and
    /// the offset where the next epoch starts (or `end_offset`). `None` if `epoch` predates all.
    pub fn end_offset_for(&self, epoch: i32, end_offset: i64) -> Option<(i32, i64)> {
        let index = self.entries.partition_point(|&(e, _)| e <= epoch);
        if index == 0 {
            return None;
        }
        let found_epoch = self.entries[index - 1].0;
        let end = self.entries.get(index).map_or(end_offset, |&(_, o)| o);
        Some((found_epoch, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    #[test]
    fn end_offsets() {
        let mut cache = LeaderEpochCache::default();
        cache.assign(0, 0);
        cache.assign(3, 100);
        assert_eq!(cache.end_offset_for(0, 500), Some((0, 100)));
        assert_eq!(cache.end_offset_for(2, 500), Some((0, 100)));
        assert_eq!(cache.end_offset_for(3, 500), Some((3, 500)));
        assert_eq!(cache.end_offset_for(-1, 500), None);
        assert_eq!(cache.epoch_at(-1), None);
        assert_eq!(cache.epoch_at(0), Some(0));
        assert_eq!(cache.epoch_at(99), Some(0));
        assert_eq!(cache.epoch_at(100), Some(3));
        assert_eq!(cache.epoch_at(1_000), Some(3));
    }

    #[test]
    fn survives_restart() {
        let storage = MemStorage::new();
        storage.create_dir_all("p").unwrap();
        let mut cache = LeaderEpochCache::default();
        cache.assign(0, 0);
        cache.assign(1, 10);
        cache.write(&storage, "p").unwrap();
        assert_eq!(LeaderEpochCache::load(&storage, "p").unwrap(), cache);
        // Cut back to a recovered end of 10, the epoch starting there holds nothing.
        cache.truncate_from(10);
        assert_eq!(cache.entries(), &[(0, 0)]);
    }
}
