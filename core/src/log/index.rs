//! A segment's sparse offset index and time index, kept in memory and written beside the
//! segment in Kafka's layout when the segment is sealed:
//!
//! - `.index`: 8-byte entries, (offset - base_offset) as u32 and byte position as u32.
//! - `.timeindex`: 12-byte entries, timestamp as i64 and (offset - base_offset) as u32.
//!
//! The active segment's indexes are not written: recovery rebuilds them by scanning, which it
//! must do anyway to find a torn tail.

/// Offset index: relative offset to byte position, one entry per `index.interval.bytes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        if let Some(&(last_offset, last_position)) = self.entries.last() {
            assert!(relative_offset > last_offset && position > last_position, "offset index must grow");
        }
        self.entries.push((relative_offset, position));
    }

    /// Position of the last indexed batch starting at or before `relative_offset`, or 0.
    pub fn floor_position(&self, relative_offset: u32) -> u32 {
        let index = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if index == 0 {
            0
        } else {
            self.entries[index - 1].1
        }
    }

    /// Drops entries at or past `position`, after the segment was truncated there.
    pub fn truncate_to_position(&mut self, position: u32) {
        self.entries.retain(|&(_, p)| p < position);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.entries.len() * 8);
        for &(offset, position) in &self.entries {
            bytes.extend_from_slice(&offset.to_be_bytes());
            bytes.extend_from_slice(&position.to_be_bytes());
        }
        bytes
    }

    /// Loads an index file. `None` if it is malformed or points past `segment_bytes`; the caller
    /// then rebuilds it from the segment.
    pub fn decode(bytes: &[u8], segment_bytes: u64) -> Option<OffsetIndex> {
        if !bytes.len().is_multiple_of(8) {
            return None;
        }
        let mut index = OffsetIndex::default();
        for chunk in bytes.chunks_exact(8) {
            let offset = u32::from_be_bytes(chunk[0..4].try_into().expect("4 bytes"));
            let position = u32::from_be_bytes(chunk[4..8].try_into().expect("4 bytes"));
            if u64::from(position) >= segment_bytes {
                return None;
            }
            if let Some(&(o, p)) = index.entries.last() {
                if offset <= o || position <= p {
                    return None;
                }
            }
            index.entries.push((offset, position));
        }
        Some(index)
    }
}

/// Time index: the first relative offset at which each new maximum timestamp appears.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Records that the batch at `relative_offset` raised the segment's max timestamp.
    pub fn push(&mut self, timestamp: i64, relative_offset: u32) {
        if let Some(&(last_timestamp, _)) = self.entries.last() {
            if timestamp <= last_timestamp {
                return;
            }
        }
        self.entries.push((timestamp, relative_offset));
    }

    /// Relative offset of the first entry whose timestamp is at least `timestamp`, if any.
    /// Batches before that offset all have smaller max timestamps.
    pub fn first_at_or_after(&self, timestamp: i64) -> Option<u32> {
        let index = self.entries.partition_point(|&(t, _)| t < timestamp);
        self.entries.get(index).map(|&(_, o)| o)
    }

    pub fn max_timestamp(&self) -> Option<i64> {
        self.entries.last().map(|&(t, _)| t)
    }

    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        self.entries.retain(|&(_, o)| o < relative_offset);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.entries.len() * 12);
        for &(timestamp, offset) in &self.entries {
            bytes.extend_from_slice(&timestamp.to_be_bytes());
            bytes.extend_from_slice(&offset.to_be_bytes());
        }
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<TimeIndex> {
        if !bytes.len().is_multiple_of(12) {
            return None;
        }
        let mut index = TimeIndex::default();
        for chunk in bytes.chunks_exact(12) {
            let timestamp = i64::from_be_bytes(chunk[0..8].try_into().expect("8 bytes"));
            let offset = u32::from_be_bytes(chunk[8..12].try_into().expect("4 bytes"));
            if let Some(&(t, o)) = index.entries.last() {
                if timestamp <= t || offset < o {
                    return None;
                }
            }
            index.entries.push((timestamp, offset));
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_lookup() {
        let mut index = OffsetIndex::default();
        index.push(10, 4096);
        index.push(20, 8192);
        assert_eq!(index.floor_position(5), 0);
        assert_eq!(index.floor_position(10), 4096);
        assert_eq!(index.floor_position(19), 4096);
        assert_eq!(index.floor_position(25), 8192);
    }

    #[test]
    fn offset_index_round_trip_and_rejects_garbage() {
        let mut index = OffsetIndex::default();
        index.push(1, 100);
        index.push(9, 900);
        assert_eq!(OffsetIndex::decode(&index.encode(), 1000), Some(index.clone()));
        assert_eq!(OffsetIndex::decode(&index.encode(), 500), None);
        assert_eq!(OffsetIndex::decode(&[1, 2, 3], 1000), None);
    }

    #[test]
    fn time_index_keeps_only_new_maxima() {
        let mut index = TimeIndex::default();
        index.push(100, 0);
        index.push(90, 5);
        index.push(200, 9);
        assert_eq!(index.first_at_or_after(50), Some(0));
        assert_eq!(index.first_at_or_after(150), Some(9));
        assert_eq!(index.first_at_or_after(201), None);
        assert_eq!(TimeIndex::decode(&index.encode()), Some(index));
    }
}
