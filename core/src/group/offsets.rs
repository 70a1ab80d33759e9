//! Committed offsets: an in-memory map rebuilt at start-up from the internal
//! `__consumer_offsets` log, whose records Headwater writes in its own format (clients never
//! read this topic's records; they use OffsetFetch):
//!
//! ```text
//! key:   version u8 = 0 | group len u16 | group | topic len u16 | topic | partition i32
//! value: version u8 = 0 | offset i64 | leader epoch i32 | commit time ms i64 | metadata len u16 | metadata
//!        (absent: a tombstone, the offset was deleted)
//! ```

use std::collections::BTreeMap;

use crate::log::batch::build::Record;

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_ms: i64,
}

/// (group, topic, partition)
pub type OffsetKey = (String, String, i32);

#[derive(Debug, Default, Clone)]
pub struct OffsetStore {
    offsets: BTreeMap<OffsetKey, CommittedOffset>,
    /// Offsets producers committed inside their open transactions (TxnOffsetCommit), by
    /// producer id: they take effect when the transaction's marker commits them, and are
    /// dropped if it aborts.
    pending: BTreeMap<i64, BTreeMap<OffsetKey, CommittedOffset>>,
}

impl OffsetStore {
    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.offsets.get(&(group.to_string(), topic.to_string(), partition))
    }

    pub fn set(&mut self, key: OffsetKey, value: Option<CommittedOffset>) {
        match value {
            Some(v) => {
                self.offsets.insert(key, v);
            }
            None => {
                self.offsets.remove(&key);
            }
        }
    }

    /// Every committed offset of `group`, by (topic, partition).
    pub fn group(&self, group: &str) -> Vec<(&str, i32, &CommittedOffset)> {
        self.offsets
            .range((group.to_string(), String::new(), i32::MIN)..)
            .take_while(|((g, _, _), _)| g == group)
            .map(|((_, t, p), v)| (t.as_str(), *p, v))
            .collect()
    }

    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.offsets.keys().map(|(g, _, _)| g.clone()).collect();
        groups.dedup();
        groups
    }

    /// Keeps the offsets of the groups `keep` says yes to.
    pub fn retain_groups(&mut self, keep: impl Fn(&str) -> bool) {
        self.offsets.retain(|(group, _, _), _| keep(group));
        for offsets in self.pending.values_mut() {
            offsets.retain(|(group, _, _), _| keep(group));
        }
        self.pending.retain(|_, offsets| !offsets.is_empty());
    }

    /// Takes every offset of `other`, replacing this store's value for the same key.
    pub fn merge(&mut self, other: OffsetStore) {
        self.offsets.extend(other.offsets);
        for (producer_id, offsets) in other.pending {
            self.pending.entry(producer_id).or_default().extend(offsets);
        }
    }

    /// An offset `producer_id` committed inside its open transaction.
    pub fn add_pending(&mut self, producer_id: i64, key: OffsetKey, value: CommittedOffset) {
        self.pending.entry(producer_id).or_default().insert(key, value);
    }

    /// `producer_id`'s transaction ended in the offsets partition: its offsets take effect if
    /// it committed.
    pub fn end_txn(&mut self, producer_id: i64, commit: bool) {
        let Some(offsets) = self.pending.remove(&producer_id) else { return };
        if commit {
            self.offsets.extend(offsets);
        }
    }

    /// Whether an open transaction holds an offset for this partition of the group, which a
    /// consumer asking for stable offsets (KIP-447) must wait for.
    pub fn has_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        let key = (group.to_string(), topic.to_string(), partition);
        self.pending.values().any(|offsets| offsets.contains_key(&key))
    }

    /// Applies one record of a transactional batch read back from the offsets log.
    pub fn apply_pending_record(&mut self, producer_id: i64, key: Option<&[u8]>, value: Option<&[u8]>) {
        let (Some(key), Some(value)) = (key.and_then(decode_key), value.and_then(decode_value)) else { return };
        self.add_pending(producer_id, key, value);
    }

    pub fn has_group(&self, group: &str) -> bool {
        !self.group(group).is_empty()
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Applies one record read back from the offsets log. Malformed records are skipped: they
    /// can only come from a writer that is not this one.
    pub fn apply_record(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) {
        let Some(key) = key.and_then(decode_key) else { return };
        let value = value.and_then(decode_value);
        self.set(key, value);
    }
}

/// The log record for a commit (`Some`) or a deletion (`None`).
pub fn record(key: &OffsetKey, value: Option<&CommittedOffset>, timestamp_ms: i64) -> Record {
    Record { key: Some(encode_key(key)), value: value.map(encode_value), headers: Vec::new(), timestamp: timestamp_ms }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let len = u16::try_from(bytes.len()).expect("group, topic and metadata lengths are bounded below 64 KiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn encode_key((group, topic, partition): &OffsetKey) -> Vec<u8> {
    let mut out = vec![0u8];
    put_str(&mut out, group);
    put_str(&mut out, topic);
    out.extend_from_slice(&partition.to_be_bytes());
    out
}

fn encode_value(value: &CommittedOffset) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&value.offset.to_be_bytes());
    out.extend_from_slice(&value.leader_epoch.to_be_bytes());
    out.extend_from_slice(&value.commit_ms.to_be_bytes());
    put_str(&mut out, &value.metadata);
    out
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn str(&mut self) -> Option<String> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

fn decode_key(bytes: &[u8]) -> Option<OffsetKey> {
    let mut r = Reader(bytes);
    if r.take(1)? != [0] {
        return None;
    }
    Some((r.str()?, r.str()?, r.i32()?))
}

fn decode_value(bytes: &[u8]) -> Option<CommittedOffset> {
    let mut r = Reader(bytes);
    if r.take(1)? != [0] {
        return None;
    }
    let offset = r.i64()?;
    let leader_epoch = r.i32()?;
    let commit_ms = r.i64()?;
    let metadata = r.str()?;
    Some(CommittedOffset { offset, leader_epoch, metadata, commit_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_tombstones_delete() {
        let key = ("g".to_string(), "t".to_string(), 3);
        let value = CommittedOffset { offset: 42, leader_epoch: 0, metadata: "m".into(), commit_ms: 7 };
        let mut store = OffsetStore::default();
        let r = record(&key, Some(&value), 7);
        store.apply_record(r.key.as_deref(), r.value.as_deref());
        assert_eq!(store.get("g", "t", 3), Some(&value));
        assert_eq!(store.group("g").len(), 1);
        assert!(store.group("h").is_empty());
        let tombstone = record(&key, None, 8);
        store.apply_record(tombstone.key.as_deref(), tombstone.value.as_deref());
        assert!(store.is_empty());
        store.apply_record(Some(b"garbage"), Some(b"x"));
        assert!(store.is_empty());
    }
}
