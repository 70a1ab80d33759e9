//! Requests parked on one partition, indexed by the offset each waits for, so an advance of the
//! high watermark wakes exactly the requests it satisfies: per-input work follows what changed,
//! not the number of parked requests or partitions.
//!
//! A waiter is only an index entry; the parked request itself lives with the node, which looks
//! at each woken request again (it may wait on other partitions too) and, once it is answered,
//! forgets its entries on every partition.

use std::collections::BTreeSet;

use crate::ids::Offset;
use crate::io::RequestId;

#[derive(Debug, Default)]
pub(crate) struct Waiters {
    /// Waiting for the high watermark to reach an offset: acks=all produce and offset commits,
    /// by the end offset of what they wrote.
    commit: BTreeSet<(Offset, RequestId)>,
    /// Long-polling fetches, by fetch offset: woken when the high watermark passes it.
    data: BTreeSet<(Offset, RequestId)>,
    /// acks=all produce under a `min.insync.replicas` above a majority, by (copies needed,
    /// end offset): woken when that many replicas hold the write.
    copies: BTreeSet<(usize, Offset, RequestId)>,
}

impl Waiters {
    pub fn wait_for_commit(&mut self, offset_end: Offset, id: RequestId) {
        self.commit.insert((offset_end, id));
    }

    pub fn wait_for_data(&mut self, fetch_offset: Offset, id: RequestId) {
        self.data.insert((fetch_offset, id));
    }

    pub fn wait_for_copies(&mut self, copies: usize, offset_end: Offset, id: RequestId) {
        self.copies.insert((copies, offset_end, id));
    }

    pub fn forget_copies(&mut self, copies: usize, offset_end: Offset, id: RequestId) {
        self.copies.remove(&(copies, offset_end, id));
    }

    /// Whether a write waits for more copies than a commit makes.
    pub fn wants_copies(&self) -> bool {
        !self.copies.is_empty()
    }

    /// The replicas' ends moved: wakes the writes that `held_by(copies)` now covers (at most
    /// one pass per distinct number of copies, which is at most the number of replicas).
    pub fn copies_held(&mut self, held_by: impl Fn(usize) -> i64, woken: &mut BTreeSet<RequestId>) {
        let mut next = self.copies.first().map(|&(copies, _, _)| copies);
        while let Some(copies) = next {
            let held = held_by(copies);
            let done: Vec<(usize, Offset, RequestId)> = self
                .copies
                .range((copies, Offset(i64::MIN), RequestId(0))..=(copies, Offset(held), RequestId(u64::MAX)))
                .copied()
                .collect();
            for key in done {
                self.copies.remove(&key);
                woken.insert(key.2);
            }
            next = self.copies.range((copies + 1, Offset(i64::MIN), RequestId(0))..).next().map(|&(c, _, _)| c);
        }
    }

    pub fn forget_commit(&mut self, offset_end: Offset, id: RequestId) {
        self.commit.remove(&(offset_end, id));
    }

    pub fn forget_data(&mut self, fetch_offset: Offset, id: RequestId) {
        self.data.remove(&(fetch_offset, id));
    }

    /// The high watermark is now `high_watermark`: moves the requests it satisfies to `woken`
    /// (commits whose end it reached, fetches whose offset it passed).
    pub fn advanced(&mut self, high_watermark: Offset, woken: &mut BTreeSet<RequestId>) {
        let Offset(hw) = high_watermark;
        let waiting = self.commit.split_off(&(Offset(hw.saturating_add(1)), RequestId(0)));
        woken.extend(std::mem::replace(&mut self.commit, waiting).into_iter().map(|(_, id)| id));
        let waiting = self.data.split_off(&(Offset(hw), RequestId(0)));
        woken.extend(std::mem::replace(&mut self.data, waiting).into_iter().map(|(_, id)| id));
    }

    /// The partition failed: no commit it waits for can come any more. Fetches stay, since a
    /// failed partition still serves what is durable.
    pub fn failed(&mut self, woken: &mut BTreeSet<RequestId>) {
        woken.extend(std::mem::take(&mut self.commit).into_iter().map(|(_, id)| id));
        woken.extend(std::mem::take(&mut self.copies).into_iter().map(|(_, _, id)| id));
    }

    /// The partition is gone (its topic deleted): every waiter must be answered.
    pub fn take_all(&mut self, woken: &mut BTreeSet<RequestId>) {
        self.failed(woken);
        woken.extend(std::mem::take(&mut self.data).into_iter().map(|(_, id)| id));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.commit.len() + self.data.len() + self.copies.len()
    }

    /// Every request with an entry here (for the broker's debug check that none is stale).
    #[cfg(debug_assertions)]
    pub fn requests(&self) -> impl Iterator<Item = RequestId> + '_ {
        self.commit.iter().chain(&self.data).map(|&(_, id)| id).chain(self.copies.iter().map(|&(_, _, id)| id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn woken_by(waiters: &mut Waiters, hw: i64) -> Vec<u64> {
        let mut woken = BTreeSet::new();
        waiters.advanced(Offset(hw), &mut woken);
        woken.into_iter().map(|id| id.0).collect()
    }

    #[test]
    fn an_advance_wakes_commits_it_reached_and_fetches_it_passed() {
        let mut w = Waiters::default();
        w.wait_for_commit(Offset(5), RequestId(1));
        w.wait_for_commit(Offset(6), RequestId(2));
        w.wait_for_data(Offset(5), RequestId(3));
        w.wait_for_data(Offset(4), RequestId(4));
        assert_eq!(woken_by(&mut w, 4), Vec::<u64>::new(), "nothing reached or passed");
        // hw 5: the commit ending at 5 is done, the fetch at 4 has a record, the fetch at 5 not.
        assert_eq!(woken_by(&mut w, 5), vec![1, 4]);
        assert_eq!(woken_by(&mut w, 6), vec![2, 3]);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn writes_waiting_for_copies_wake_when_that_many_replicas_hold_them() {
        let mut w = Waiters::default();
        w.wait_for_copies(3, Offset(10), RequestId(1));
        w.wait_for_copies(3, Offset(20), RequestId(2));
        w.wait_for_copies(5, Offset(10), RequestId(3));
        // Three replicas hold everything before 15, five everything before 8.
        let held = |copies: usize| if copies <= 3 { 15 } else { 8 };
        let mut woken = BTreeSet::new();
        w.copies_held(held, &mut woken);
        assert_eq!(woken, BTreeSet::from([RequestId(1)]));
        assert!(w.wants_copies());
        let mut woken = BTreeSet::new();
        w.copies_held(|_| 20, &mut woken);
        assert_eq!(woken, BTreeSet::from([RequestId(2), RequestId(3)]));
        assert!(!w.wants_copies());
    }

    #[test]
    fn forgotten_entries_are_not_woken() {
        let mut w = Waiters::default();
        w.wait_for_commit(Offset(3), RequestId(1));
        w.wait_for_data(Offset(0), RequestId(1));
        w.forget_commit(Offset(3), RequestId(1));
        w.forget_data(Offset(0), RequestId(1));
        assert_eq!(woken_by(&mut w, 10), Vec::<u64>::new());
    }

    #[test]
    fn a_failure_wakes_commits_only_and_a_deletion_everything() {
        let mut w = Waiters::default();
        w.wait_for_commit(Offset(9), RequestId(1));
        w.wait_for_data(Offset(9), RequestId(2));
        let mut woken = BTreeSet::new();
        w.failed(&mut woken);
        assert_eq!(woken.iter().map(|id| id.0).collect::<Vec<_>>(), vec![1]);
        w.take_all(&mut woken);
        assert_eq!(woken.iter().map(|id| id.0).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(w.len(), 0);
    }
}
