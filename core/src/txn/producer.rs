//! Idempotent producers: per partition, the recent batches of each producer, so that a retried
//! batch is answered with its original offset instead of being written twice, a gap in
//! sequence numbers is refused, and a producer with an older epoch is fenced.
//!
//! The table is rebuilt after a restart by reading the headers of the stored batches (the
//! producer id, epoch and sequence are in every batch header), so it survives crashes exactly
//! as far as the log does.

use std::collections::{BTreeMap, VecDeque};

use crate::constants::PRODUCER_BATCHES_CACHED_MAX;
use crate::error::ErrorCode;
use crate::log::batch::{sequence_add, BatchHeader};

/// A batch this producer wrote to the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CachedBatch {
    first_sequence: i32,
    last_sequence: i32,
    first_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<CachedBatch>,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New data: append it.
    Append,
    /// A retry of a batch already stored at these offsets: answer with them, write nothing.
    Duplicate { first_offset: i64, last_offset: i64 },
    /// Refuse the batch with this error.
    Reject(ErrorCode),
}

/// Producer state of one partition.
#[derive(Debug, Clone, Default)]
pub struct ProducerTable {
    producers: BTreeMap<i64, ProducerEntry>,
}

impl ProducerTable {
    /// Checks an idempotent batch against what this producer wrote before.
    pub fn check(&self, header: &BatchHeader) -> SequenceCheck {
        debug_assert!(header.is_idempotent());
        let Some(entry) = self.producers.get(&header.producer_id) else {
            // Unknown producer (new, or its state was trimmed with the log): accept any
            // sequence, as Kafka does since KIP-360.
            return SequenceCheck::Append;
        };
        if header.producer_epoch < entry.epoch {
            return SequenceCheck::Reject(ErrorCode::InvalidProducerEpoch);
        }
        if header.producer_epoch > entry.epoch {
            return if header.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Reject(ErrorCode::OutOfOrderSequenceNumber)
            };
        }
        let last_sequence = header.last_sequence();
        if let Some(batch) =
            entry.batches.iter().find(|b| b.first_sequence == header.base_sequence && b.last_sequence == last_sequence)
        {
            return SequenceCheck::Duplicate { first_offset: batch.first_offset, last_offset: batch.last_offset };
        }
        match entry.batches.back() {
            Some(previous) if sequence_add(previous.last_sequence, 1) != header.base_sequence => {
                SequenceCheck::Reject(ErrorCode::OutOfOrderSequenceNumber)
            }
            _ => SequenceCheck::Append,
        }
    }

    /// Records a batch that was appended at `first_offset`.
    pub fn record(&mut self, header: &BatchHeader, first_offset: i64) {
        if !header.is_idempotent() {
            return;
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch > entry.epoch || entry.batches.is_empty() {
            if header.producer_epoch != entry.epoch {
                entry.batches.clear();
            }
            entry.epoch = header.producer_epoch;
        }
        if header.producer_epoch < entry.epoch {
            // Only reachable while rebuilding from a log written before a fence; the newer
            // epoch's state wins.
            return;
        }
        entry.batches.push_back(CachedBatch {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            first_offset,
            last_offset: first_offset + i64::from(header.last_offset_delta),
        });
        while entry.batches.len() > PRODUCER_BATCHES_CACHED_MAX {
            entry.batches.pop_front();
        }
    }

    /// Forgets batches at or after `offset`, after the log was truncated there.
    pub fn truncate_to(&mut self, offset: i64) {
        for entry in self.producers.values_mut() {
            entry.batches.retain(|b| b.last_offset < offset);
        }
        self.producers.retain(|_, e| !e.batches.is_empty());
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Largest producer id seen, so that new ids never collide after a restart.
    pub fn max_producer_id(&self) -> Option<i64> {
        self.producers.keys().next_back().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::build::{batch, simple, Idempotence};

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, count: usize) -> BatchHeader {
        let bytes = batch(&simple(count, 0), Some(Idempotence { producer_id, producer_epoch: epoch, base_sequence }));
        BatchHeader::parse(&bytes).unwrap()
    }

    #[test]
    fn in_order_then_duplicate_then_gap() {
        let mut table = ProducerTable::default();
        let first = header(7, 0, 0, 3);
        assert_eq!(table.check(&first), SequenceCheck::Append);
        table.record(&first, 100);
        let second = header(7, 0, 3, 2);
        assert_eq!(table.check(&second), SequenceCheck::Append);
        table.record(&second, 103);
        assert_eq!(table.check(&first), SequenceCheck::Duplicate { first_offset: 100, last_offset: 102 });
        assert_eq!(table.check(&header(7, 0, 9, 1)), SequenceCheck::Reject(ErrorCode::OutOfOrderSequenceNumber));
        assert_eq!(table.check(&header(7, 0, 5, 1)), SequenceCheck::Append);
    }

    #[test]
    fn epochs_fence_and_reset() {
        let mut table = ProducerTable::default();
        table.record(&header(1, 3, 0, 1), 0);
        assert_eq!(table.check(&header(1, 2, 1, 1)), SequenceCheck::Reject(ErrorCode::InvalidProducerEpoch));
        assert_eq!(table.check(&header(1, 4, 5, 1)), SequenceCheck::Reject(ErrorCode::OutOfOrderSequenceNumber));
        let bumped = header(1, 4, 0, 1);
        assert_eq!(table.check(&bumped), SequenceCheck::Append);
        table.record(&bumped, 1);
        assert_eq!(table.check(&header(1, 3, 1, 1)), SequenceCheck::Reject(ErrorCode::InvalidProducerEpoch));
    }

    #[test]
    fn only_recent_batches_are_remembered() {
        let mut table = ProducerTable::default();
        for i in 0..8 {
            table.record(&header(1, 0, i, 1), i64::from(i));
        }
        assert_eq!(table.check(&header(1, 0, 7, 1)), SequenceCheck::Duplicate { first_offset: 7, last_offset: 7 });
        // Sequence 0 fell out of the window: it is neither a known duplicate nor next in line.
        assert_eq!(table.check(&header(1, 0, 0, 1)), SequenceCheck::Reject(ErrorCode::OutOfOrderSequenceNumber));
    }

    #[test]
    fn truncation_forgets() {
        let mut table = ProducerTable::default();
        table.record(&header(1, 0, 0, 1), 0);
        table.record(&header(1, 0, 1, 1), 1);
        table.truncate_to(1);
        assert_eq!(table.check(&header(1, 0, 1, 1)), SequenceCheck::Append);
        table.truncate_to(0);
        assert!(table.is_empty());
    }
}
