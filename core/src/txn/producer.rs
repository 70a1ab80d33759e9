//! Idempotent and transactional producers: per partition, the recent batches of each producer,
//! so that a retried batch is answered with its original offset instead of being written twice,
//! a gap in sequence numbers is refused, and a producer with an older epoch is fenced; and each
//! producer's open transaction, which holds the partition's last stable offset back until a
//! marker (a control batch the broker writes) ends it and that marker commits.
//!
//! The table is rebuilt after a restart by reading the headers of the stored batches (the
//! producer id, epoch and sequence are in every batch header), so it survives crashes exactly
//! as far as the log does.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::constants::PRODUCER_BATCHES_CACHED_MAX;
use crate::error::ErrorCode;
use crate::log::batch::{sequence_add, BatchHeader};
use crate::log::txn_index::{AbortedTxn, TxnIndex};

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
    /// The offset of this producer's first batch in its open transaction here.
    txn_first_offset: Option<i64>,
}

/// How a transaction ended: the type of its marker's control record (Kafka's 0 and 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnEnd {
    Abort,
    Commit,
}

impl TxnEnd {
    pub const ABORT_TYPE: i16 = 0;
    pub const COMMIT_TYPE: i16 = 1;

    pub fn from_control_type(control_type: i16) -> Option<TxnEnd> {
        match control_type {
            TxnEnd::ABORT_TYPE => Some(TxnEnd::Abort),
            TxnEnd::COMMIT_TYPE => Some(TxnEnd::Commit),
            _ => None,
        }
    }

    pub fn control_type(self) -> i16 {
        match self {
            TxnEnd::Abort => TxnEnd::ABORT_TYPE,
            TxnEnd::Commit => TxnEnd::COMMIT_TYPE,
        }
    }
}

/// A transaction a marker ended in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndedTxn {
    pub producer_id: i64,
    /// Its first batch here; `None` when the marker found no open transaction (the producer
    /// wrote nothing here in it, or a retried marker).
    pub first_offset: Option<i64>,
    pub marker_offset: i64,
    /// Where read_committed consumers could read up to once the marker was written, had it
    /// committed: the first offset of the earliest other open transaction, else past the
    /// marker. The aborted-transaction index keeps it so a fetch knows when to stop looking.
    pub last_stable_offset: i64,
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
    /// Open transactions: (first offset, producer id).
    open: BTreeSet<(i64, i64)>,
    /// Transactions whose marker is written but not yet committed here: (first offset, marker
    /// offset, producer id). They hold the last stable offset back as open ones do, until
    /// [`ProducerTable::committed`] passes the marker.
    ending: BTreeSet<(i64, i64, i64)>,
    /// The transactions aborted here, for read_committed fetches.
    pub aborted: TxnIndex,
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
        if !header.is_transactional() && entry.txn_first_offset.is_some() {
            // Kafka's rule: a producer with an open transaction here writes only inside it.
            return SequenceCheck::Reject(ErrorCode::InvalidTxnState);
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
    /// A transactional batch opens its producer's transaction here if none is open. Markers
    /// (control batches) go through [`ProducerTable::end_txn`] instead.
    pub fn record(&mut self, header: &BatchHeader, first_offset: i64) {
        if !header.is_idempotent() || header.is_control() {
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
        if header.is_transactional() && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(first_offset);
            self.open.insert((first_offset, header.producer_id));
        }
    }

    /// Whether a marker from this producer at `epoch` may be written: not from an epoch
    /// older than the producer's batches here (a coordinator that was fenced).
    pub fn check_marker(&self, producer_id: i64, epoch: i16) -> Result<(), ErrorCode> {
        match self.producers.get(&producer_id) {
            Some(entry) if epoch < entry.epoch => Err(ErrorCode::InvalidProducerEpoch),
            _ => Ok(()),
        }
    }

    /// Brings the table up to date with one stored batch (`control_type` for a control
    /// batch's record): data through [`ProducerTable::record`], markers through
    /// [`ProducerTable::end_txn`].
    pub fn replay(&mut self, header: &BatchHeader, control_type: Option<i16>) {
        match control_type.and_then(TxnEnd::from_control_type) {
            Some(end) if header.is_transactional() => {
                self.end_txn(header.producer_id, header.producer_epoch, header.base_offset, end);
            }
            _ => self.record(header, header.base_offset),
        }
    }

    /// A marker from `producer_id` at `epoch` was written at `marker_offset`: its open
    /// transaction here, if any, ends (into the aborted index if `end` is an abort). The
    /// marker's epoch becomes the producer's (a coordinator that bumped the epoch writes the
    /// markers with the new one).
    pub fn end_txn(&mut self, producer_id: i64, epoch: i16, marker_offset: i64, end: TxnEnd) -> EndedTxn {
        let entry = self.producers.entry(producer_id).or_default();
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        let first_offset = entry.txn_first_offset.take();
        if let Some(first) = first_offset {
            self.open.remove(&(first, producer_id));
            self.ending.insert((first, marker_offset, producer_id));
        }
        let last_stable_offset = self.open.first().map_or(marker_offset + 1, |&(first, _)| first);
        if let (TxnEnd::Abort, Some(first_offset)) = (end, first_offset) {
            self.aborted.push(AbortedTxn { producer_id, first_offset, last_offset: marker_offset, last_stable_offset });
        }
        EndedTxn { producer_id, first_offset, marker_offset, last_stable_offset }
    }

    /// Everything before `high_watermark` is committed: markers below it no longer hold the
    /// last stable offset back.
    pub fn committed(&mut self, high_watermark: i64) {
        self.ending.retain(|&(_, marker, _)| marker >= high_watermark);
    }

    /// The first offset read_committed consumers may not read yet for the transactions'
    /// sake: the earliest open transaction's, or one whose marker has not committed.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        let open = self.open.first().map(|&(first, _)| first);
        let ending = self.ending.first().map(|&(first, _, _)| first);
        open.into_iter().chain(ending).min()
    }

    /// Whether `producer_id` has a transaction open here at `epoch` (its later batches in it
    /// need no verification with the coordinator).
    pub fn has_open_txn(&self, producer_id: i64, epoch: i16) -> bool {
        self.producers.get(&producer_id).is_some_and(|e| e.txn_first_offset.is_some() && e.epoch == epoch)
    }

    /// Every producer known here: (id, epoch, last sequence or -1, first offset of its open
    /// transaction).
    pub fn describe(&self) -> impl Iterator<Item = (i64, i16, i32, Option<i64>)> + '_ {
        self.producers
            .iter()
            .map(|(&id, e)| (id, e.epoch, e.batches.back().map_or(-1, |b| b.last_sequence), e.txn_first_offset))
    }

    /// The open transactions: (producer id, epoch, first offset).
    pub fn open_txns(&self) -> impl Iterator<Item = (i64, i16, i64)> + '_ {
        self.open.iter().map(|&(first, id)| (id, self.producers.get(&id).map_or(0, |e| e.epoch), first))
    }

    /// Forgets batches at or after `offset`, after the log was truncated there. A transaction
    /// whose first batch is gone is no longer open; one whose marker is gone is open again
    /// (markers past the high watermark are all still in `ending`, and truncation never
    /// reaches below it).
    pub fn truncate_to(&mut self, offset: i64) {
        for entry in self.producers.values_mut() {
            entry.batches.retain(|b| b.last_offset < offset);
        }
        let gone: Vec<(i64, i64)> = self.open.range((offset, i64::MIN)..).copied().collect();
        for (first, id) in gone {
            self.open.remove(&(first, id));
            if let Some(entry) = self.producers.get_mut(&id) {
                entry.txn_first_offset = None;
            }
        }
        let unmarked: Vec<(i64, i64, i64)> =
            self.ending.iter().filter(|&&(_, marker, _)| marker >= offset).copied().collect();
        for (first, marker, id) in unmarked {
            self.ending.remove(&(first, marker, id));
            if first < offset {
                self.open.insert((first, id));
                self.producers.entry(id).or_default().txn_first_offset = Some(first);
            }
        }
        self.producers.retain(|_, e| !e.batches.is_empty() || e.txn_first_offset.is_some());
        self.aborted.truncate_to(offset);
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
    use crate::log::batch::build::{batch, simple, transactional, Idempotence};

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, count: usize) -> BatchHeader {
        let bytes = batch(&simple(count, 0), Some(Idempotence { producer_id, producer_epoch: epoch, base_sequence }));
        BatchHeader::parse(&bytes).unwrap()
    }

    fn txn_header(producer_id: i64, epoch: i16, base_sequence: i32, count: usize) -> BatchHeader {
        let bytes = batch(&simple(count, 0), Some(Idempotence { producer_id, producer_epoch: epoch, base_sequence }));
        BatchHeader::parse(&transactional(bytes)).unwrap()
    }

    #[test]
    fn open_transactions_hold_the_stable_offset_until_their_markers_commit() {
        let mut table = ProducerTable::default();
        table.record(&header(1, 0, 0, 2), 0);
        assert_eq!(table.first_unstable_offset(), None, "idempotent writes are stable");
        table.record(&txn_header(2, 0, 0, 2), 2);
        table.record(&txn_header(3, 0, 0, 1), 4);
        table.record(&txn_header(2, 0, 2, 1), 5);
        assert_eq!(table.first_unstable_offset(), Some(2));
        assert_eq!(table.open_txns().collect::<Vec<_>>(), vec![(2, 0, 2), (3, 0, 4)]);
        // Producer 2's marker: the stable offset stays at 2 until the marker commits.
        let ended = table.end_txn(2, 0, 6, TxnEnd::Commit);
        assert_eq!(ended, EndedTxn { producer_id: 2, first_offset: Some(2), marker_offset: 6, last_stable_offset: 4 });
        assert_eq!(table.first_unstable_offset(), Some(2));
        table.committed(6);
        assert_eq!(table.first_unstable_offset(), Some(2), "the marker at 6 is not below 6");
        table.committed(7);
        assert_eq!(table.first_unstable_offset(), Some(4));
        let ended = table.end_txn(3, 0, 7, TxnEnd::Abort);
        assert_eq!(ended.last_stable_offset, 8, "no other open transaction: past the marker");
        table.committed(8);
        assert_eq!(table.first_unstable_offset(), None);
        // A marker with nothing open here ends nothing and indexes nothing.
        assert_eq!(table.end_txn(3, 0, 8, TxnEnd::Abort).first_offset, None);
        assert_eq!(
            table.aborted.collect(0, 9),
            vec![AbortedTxn { producer_id: 3, first_offset: 4, last_offset: 7, last_stable_offset: 8 }]
        );
    }

    #[test]
    fn a_producer_in_a_transaction_writes_only_inside_it_and_markers_carry_the_epoch() {
        let mut table = ProducerTable::default();
        table.record(&txn_header(5, 1, 0, 1), 10);
        assert_eq!(table.check(&header(5, 1, 1, 1)), SequenceCheck::Reject(ErrorCode::InvalidTxnState));
        assert_eq!(table.check(&txn_header(5, 1, 1, 1)), SequenceCheck::Append);
        assert_eq!(table.check_marker(5, 0), Err(ErrorCode::InvalidProducerEpoch));
        assert_eq!(table.check_marker(5, 2), Ok(()));
        // A coordinator that bumped the epoch (transactions v2) writes the marker with it: the
        // producer's next transaction starts at sequence 0 of that epoch.
        table.end_txn(5, 2, 11, TxnEnd::Commit);
        assert_eq!(table.check(&txn_header(5, 1, 1, 1)), SequenceCheck::Reject(ErrorCode::InvalidProducerEpoch));
        assert_eq!(table.check(&txn_header(5, 2, 0, 1)), SequenceCheck::Append);
    }

    #[test]
    fn truncation_reopens_a_transaction_whose_marker_it_removed() {
        let mut table = ProducerTable::default();
        table.record(&txn_header(1, 0, 0, 1), 0);
        table.record(&txn_header(2, 0, 0, 1), 1);
        table.end_txn(1, 0, 2, TxnEnd::Abort);
        table.committed(1);
        // The marker at 2 and producer 2's batch at 1 were never committed; a new leader's log
        // replaces them from 1 on.
        table.truncate_to(1);
        assert!(table.aborted.is_empty(), "the abort's marker is gone");
        assert_eq!(table.open_txns().collect::<Vec<_>>(), vec![(1, 0, 0)]);
        assert_eq!(table.first_unstable_offset(), Some(0));
        assert_eq!(table.check(&txn_header(2, 0, 0, 1)), SequenceCheck::Append);
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
