//! The aborted transactions of a partition, in the order of their markers, so a read_committed
//! fetch can tell the consumer which of the records it returns to drop (Kafka's `.txnindex`).
//! Kept in memory and rebuilt from the log's markers when the partition opens.

use std::collections::VecDeque;

/// One aborted transaction: its producer's records from `first_offset` to its marker at
/// `last_offset` are not to be read by read_committed consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The partition's last stable offset once the marker was written (see
    /// `txn::producer::EndedTxn`): every transaction aborted later began at or after it.
    pub last_stable_offset: i64,
}

#[derive(Debug, Clone, Default)]
pub struct TxnIndex {
    /// By `last_offset`, ascending (markers are appended in offset order).
    entries: VecDeque<AbortedTxn>,
}

impl TxnIndex {
    pub fn push(&mut self, aborted: AbortedTxn) {
        debug_assert!(self.entries.back().is_none_or(|last| last.last_offset < aborted.last_offset));
        self.entries.push_back(aborted);
    }

    /// The aborted transactions with records in `[fetch_offset, upper_bound)`: those whose
    /// marker is at or after `fetch_offset` and whose first record is before `upper_bound`.
    /// The scan stops at an entry whose stable offset reached `upper_bound`, since every
    /// transaction aborted after it began at or after that offset.
    pub fn collect(&self, fetch_offset: i64, upper_bound: i64) -> Vec<AbortedTxn> {
        let start = self.entries.partition_point(|t| t.last_offset < fetch_offset);
        let mut found = Vec::new();
        for txn in self.entries.range(start..) {
            if txn.first_offset < upper_bound {
                found.push(*txn);
            }
            if txn.last_stable_offset >= upper_bound {
                break;
            }
        }
        found
    }

    /// Forgets the entries whose marker is at or after `offset` (the log was cut there).
    pub fn truncate_to(&mut self, offset: i64) {
        while self.entries.back().is_some_and(|t| t.last_offset >= offset) {
            self.entries.pop_back();
        }
    }

    /// Forgets the entries wholly before `log_start_offset` (retention removed them).
    pub fn trim_before(&mut self, log_start_offset: i64) {
        while self.entries.front().is_some_and(|t| t.last_offset < log_start_offset) {
            self.entries.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aborted(producer_id: i64, first_offset: i64, last_offset: i64, last_stable_offset: i64) -> AbortedTxn {
        AbortedTxn { producer_id, first_offset, last_offset, last_stable_offset }
    }

    #[test]
    fn a_fetch_gets_the_aborted_transactions_that_overlap_it() {
        let mut index = TxnIndex::default();
        // Producer 1 aborts [0, 3]; producer 2's [2, 9] is open meanwhile, then aborts; producer
        // 3 aborts [20, 22] much later.
        index.push(aborted(1, 0, 3, 2));
        index.push(aborted(2, 2, 9, 10));
        index.push(aborted(3, 20, 22, 23));
        let ids = |found: Vec<AbortedTxn>| found.iter().map(|t| t.producer_id).collect::<Vec<_>>();
        assert_eq!(ids(index.collect(0, 5)), vec![1, 2]);
        assert_eq!(ids(index.collect(4, 8)), vec![2]);
        assert_eq!(ids(index.collect(10, 20)), Vec::<i64>::new());
        assert_eq!(ids(index.collect(10, 21)), vec![3]);
        // Producer 1's entry says everything aborted after it began at 2 or later, so a fetch
        // ending before 2 stops there.
        assert_eq!(ids(index.collect(0, 2)), vec![1]);
    }

    #[test]
    fn truncation_and_retention_drop_entries() {
        let mut index = TxnIndex::default();
        index.push(aborted(1, 0, 3, 4));
        index.push(aborted(2, 5, 9, 10));
        index.truncate_to(9);
        assert_eq!(index.len(), 1);
        index.trim_before(4);
        assert!(index.is_empty());
    }
}
