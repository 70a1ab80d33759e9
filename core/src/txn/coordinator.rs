//! The transaction coordinator of the transactional ids whose `__transaction_state` partitions
//! this node leads. Sans-IO, like the group coordinator: requests come in as calls; what must
//! be written (state records), sent (markers) and answered comes out through `drain_*`, and the
//! broker reports back when a record committed or a marker was written.
//!
//! One id moves through [`TxnMetadata`]'s states one write at a time:
//!
//! ```text
//! InitProducerId ─▶ Empty ─AddPartitions─▶ Ongoing ─EndTxn─▶ Prepare* ─markers─▶ Complete*
//!                                              └─timeout or a new InitProducerId (fence)─▶ PrepareAbort
//! ```
//!
//! A state is current only once its record committed; until then the id is pending and every
//! request for it gets CONCURRENT_TRANSACTIONS (the client retries). EndTxn is answered once
//! Prepare* committed: the decision is durable, and the markers follow. Markers that fail are
//! sent again until each partition took its marker, then Complete* is written.

use std::collections::{BTreeMap, BTreeSet};

use super::metadata::{EndStep, Ending, Step, TxnMetadata, TxnPartition, TxnState};
use crate::error::ErrorCode;
use crate::io::RequestId;

/// A request waiting for the coordinator's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiter {
    pub id: RequestId,
    pub api_version: i16,
}

/// The producer id and epoch the client continues with, or an error.
pub type TxnResult = Result<(i64, i16), ErrorCode>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnReply {
    pub waiter: Waiter,
    pub result: TxnResult,
}

/// A state record to write to the id's `__transaction_state` partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnStore {
    pub id: String,
    pub meta: TxnMetadata,
}

/// Markers to write: end `producer_id`'s transaction in each of `partitions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    pub id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: BTreeSet<TxnPartition>,
}

impl MarkerJob {
    /// The markers of `meta`'s Prepare* state for `partitions`.
    fn of(id: &str, meta: &TxnMetadata, partitions: BTreeSet<TxnPartition>) -> MarkerJob {
        MarkerJob {
            id: id.to_string(),
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            commit: meta.state == TxnState::PrepareCommit,
            partitions,
        }
    }
}

/// What happens once an id's pending record commits.
#[derive(Debug, Clone, PartialEq, Eq)]
enum After {
    /// Answer the waiter with the new producer id and epoch.
    Answer,
    /// Answer the waiter CONCURRENT_TRANSACTIONS (a fence: the client asks again once the
    /// aborted transaction completed).
    AnswerConcurrent,
    /// Prepare* committed: answer EndTxn with these, then write the markers.
    Markers { answer: (i64, i16), marker_epoch: i16 },
    /// Complete* committed.
    Nothing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    next: TxnMetadata,
    waiter: Option<Waiter>,
    after: After,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// The committed state; `None` for an id whose first record is being written.
    meta: Option<TxnMetadata>,
    pending: Option<Pending>,
    /// Partitions of a Prepare* still waiting for their marker.
    unmarked: BTreeSet<TxnPartition>,
}

#[derive(Debug, Default)]
pub struct Coordinator {
    ids: BTreeMap<String, Entry>,
    stores: Vec<TxnStore>,
    replies: Vec<TxnReply>,
    markers: Vec<MarkerJob>,
}

impl Coordinator {
    /// InitProducerId with a transactional id. `fresh_id` hands out a producer id.
    pub fn init_producer_id(
        &mut self,
        now_ms: i64,
        waiter: Waiter,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        fresh_id: impl FnOnce() -> i64,
    ) {
        let Some(entry) = self.ids.get(id) else {
            let next = TxnMetadata::new(fresh_id(), timeout_ms, now_ms);
            self.ids.insert(id.to_string(), Entry { meta: None, pending: None, unmarked: BTreeSet::new() });
            return self.write(id, next, Some(waiter), After::Answer);
        };
        if entry.pending.is_some() {
            return self.answer(waiter, Err(ErrorCode::ConcurrentTransactions));
        }
        let meta = entry.meta.clone().expect("an id without a pending write has a state");
        match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                self.answer(waiter, Err(ErrorCode::ConcurrentTransactions))
            }
            TxnState::Ongoing => {
                // A new producer with this id: the old one's transaction is aborted first.
                let Ending { next, .. } = meta.fence(now_ms);
                self.write(id, next, Some(waiter), After::AnswerConcurrent);
            }
            _ => match meta.init(expected, timeout_ms, now_ms, fresh_id) {
                Ok(Step::Answer) => self.answer(waiter, Ok((meta.producer_id, meta.producer_epoch))),
                Ok(Step::Write(next)) => self.write(id, next, Some(waiter), After::Answer),
                Err(code) => self.answer(waiter, Err(code)),
            },
        }
    }

    /// AddPartitionsToTxn (client form), or AddOffsetsToTxn with the group's offsets
    /// partition.
    #[allow(clippy::too_many_arguments)]
    pub fn add_partitions(
        &mut self,
        now_ms: i64,
        waiter: Waiter,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[TxnPartition],
        tv2: bool,
    ) {
        let meta = match self.settled(id) {
            Ok(meta) => meta,
            Err(code) => return self.answer(waiter, Err(code)),
        };
        match meta.add_partitions(producer_id, epoch, partitions, tv2, now_ms) {
            Ok(Step::Answer) => self.answer(waiter, Ok((meta.producer_id, meta.producer_epoch))),
            Ok(Step::Write(next)) => self.write(id, next, Some(waiter), After::Answer),
            Err(code) => self.answer(waiter, Err(code)),
        }
    }

    /// KIP-890 part 1: may a partition leader take this producer's transactional batch?
    pub fn verify(&self, id: &str, producer_id: i64, epoch: i16, partition: &TxnPartition) -> Result<(), ErrorCode> {
        let entry = self.ids.get(id).ok_or(ErrorCode::InvalidProducerIdMapping)?;
        // A write in flight may be the add of this very partition: not yet.
        let meta = entry.meta.as_ref().filter(|_| entry.pending.is_none()).ok_or(ErrorCode::ConcurrentTransactions)?;
        meta.verify(producer_id, epoch, partition)
    }

    /// EndTxn. `tv2` is the request's generation (v5+).
    #[allow(clippy::too_many_arguments)]
    pub fn end_txn(
        &mut self,
        now_ms: i64,
        waiter: Waiter,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        tv2: bool,
        fresh_id: impl FnOnce() -> i64,
    ) {
        let meta = match self.settled(id) {
            Ok(meta) => meta,
            Err(code) => return self.answer(waiter, Err(code)),
        };
        match meta.end(producer_id, epoch, commit, tv2, now_ms, fresh_id) {
            Ok(EndStep::Done) => self.answer(waiter, Ok(meta.after_completion())),
            Ok(EndStep::Prepare(Ending { next, marker_epoch })) => {
                let answer = next.after_completion();
                self.write(id, next, Some(waiter), After::Markers { answer, marker_epoch });
            }
            Err(code) => self.answer(waiter, Err(code)),
        }
    }

    /// Aborts the open transactions that outlived their timeout (a fence, as Kafka does: the
    /// producer that left them cannot go on with that epoch).
    pub fn expire(&mut self, now_ms: i64) {
        let due: Vec<(String, TxnMetadata)> = self
            .ids
            .iter()
            .filter(|(_, e)| e.pending.is_none())
            .filter_map(|(id, e)| Some((id.clone(), e.meta.clone().filter(|m| m.timed_out(now_ms))?)))
            .collect();
        for (id, meta) in due {
            let Ending { next, .. } = meta.fence(now_ms);
            self.write(&id, next, None, After::Nothing);
        }
    }

    /// The id's committed state, if no write is in flight for it.
    fn settled(&self, id: &str) -> Result<TxnMetadata, ErrorCode> {
        let entry = self.ids.get(id).ok_or(ErrorCode::InvalidProducerIdMapping)?;
        if entry.pending.is_some() {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        entry.meta.clone().ok_or(ErrorCode::ConcurrentTransactions)
    }

    fn write(&mut self, id: &str, next: TxnMetadata, waiter: Option<Waiter>, after: After) {
        let entry = self.ids.get_mut(id).expect("written ids are known");
        debug_assert!(entry.pending.is_none());
        self.stores.push(TxnStore { id: id.to_string(), meta: next.clone() });
        entry.pending = Some(Pending { next, waiter, after });
    }

    fn answer(&mut self, waiter: Waiter, result: TxnResult) {
        self.replies.push(TxnReply { waiter, result });
    }

    /// The pending record of `id` committed: its state becomes current, and what waited on
    /// it goes on.
    pub fn stored(&mut self, now_ms: i64, id: &str) {
        let Some(entry) = self.ids.get_mut(id) else { return };
        let Some(Pending { next, waiter, after }) = entry.pending.take() else { return };
        entry.meta = Some(next.clone());
        match after {
            After::Answer => {
                if let Some(waiter) = waiter {
                    self.answer(waiter, Ok((next.producer_id, next.producer_epoch)));
                }
            }
            After::AnswerConcurrent => {
                if let Some(waiter) = waiter {
                    self.answer(waiter, Err(ErrorCode::ConcurrentTransactions));
                }
            }
            After::Markers { answer, .. } => {
                if let Some(waiter) = waiter {
                    self.answer(waiter, Ok(answer));
                }
            }
            After::Nothing => {}
        }
        if matches!(next.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            self.start_markers(now_ms, id);
        }
    }

    /// The pending record of `id` could not be written or committed (`code` for its waiter):
    /// the state stays as it was. A first record's id is forgotten.
    pub fn store_failed(&mut self, id: &str, code: ErrorCode) {
        let Some(entry) = self.ids.get_mut(id) else { return };
        let Some(pending) = entry.pending.take() else { return };
        if entry.meta.is_none() {
            self.ids.remove(id);
        }
        if let Some(waiter) = pending.waiter {
            self.answer(waiter, Err(code));
        }
    }

    /// Sends the markers of a Prepare* state, or completes it if it has no partitions.
    fn start_markers(&mut self, now_ms: i64, id: &str) {
        let entry = self.ids.get_mut(id).expect("known");
        let meta = entry.meta.clone().expect("committed");
        entry.unmarked = meta.partitions.clone();
        if entry.unmarked.is_empty() {
            return self.write(id, meta.complete(now_ms), None, After::Nothing);
        }
        self.markers.push(MarkerJob::of(id, &meta, entry.unmarked.clone()));
    }

    /// A partition took its marker (or is gone for good: a deleted topic). Once every
    /// partition did, Complete* is written.
    pub fn marker_written(&mut self, now_ms: i64, id: &str, partition: &TxnPartition) {
        let Some(entry) = self.ids.get_mut(id) else { return };
        if !entry.unmarked.remove(partition) || !entry.unmarked.is_empty() || entry.pending.is_some() {
            return;
        }
        let meta = entry.meta.clone().expect("committed");
        self.write(id, meta.complete(now_ms), None, After::Nothing);
    }

    /// Markers not yet written, to send again (after a failure), for the ids `due` accepts
    /// (the broker leaves out those whose markers are still on their way); and the Complete*
    /// record of a transaction whose markers are all written, if writing it failed.
    pub fn resend_markers(&mut self, now_ms: i64, due: impl Fn(&str) -> bool) {
        let incomplete: Vec<(String, TxnMetadata)> = self
            .ids
            .iter()
            .filter(|(_, e)| e.unmarked.is_empty() && e.pending.is_none())
            .filter_map(|(id, e)| {
                let meta = e.meta.as_ref()?;
                matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
                    .then(|| (id.clone(), meta.clone()))
            })
            .collect();
        for (id, meta) in incomplete {
            self.write(&id, meta.complete(now_ms), None, After::Nothing);
        }
        let ids: Vec<String> = self
            .ids
            .iter()
            .filter(|(id, e)| !e.unmarked.is_empty() && e.pending.is_none() && due(id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let entry = &self.ids[&id];
            let meta = entry.meta.as_ref().expect("committed");
            self.markers.push(MarkerJob::of(&id, meta, entry.unmarked.clone()));
        }
    }

    /// Takes over ids from a replayed `__transaction_state` partition; a transaction caught
    /// in Prepare* sends its markers again.
    pub fn load(&mut self, now_ms: i64, loaded: BTreeMap<String, TxnMetadata>) {
        for (id, meta) in loaded {
            let preparing = matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort);
            self.ids.insert(id.clone(), Entry { meta: Some(meta), pending: None, unmarked: BTreeSet::new() });
            if preparing {
                self.start_markers(now_ms, &id);
            }
        }
    }

    /// Forgets the ids `gone` names (their partition is no longer led here); their waiters
    /// are answered NOT_COORDINATOR.
    pub fn unload(&mut self, gone: impl Fn(&str) -> bool) {
        let ids: Vec<String> = self.ids.keys().filter(|id| gone(id)).cloned().collect();
        for id in ids {
            if let Some(Entry { pending: Some(Pending { waiter: Some(waiter), .. }), .. }) = self.ids.remove(&id) {
                self.answer(waiter, Err(ErrorCode::NotCoordinator));
            }
        }
    }

    /// An id's committed state (DescribeTransactions, ListTransactions).
    pub fn state(&self, id: &str) -> Option<&TxnMetadata> {
        self.ids.get(id)?.meta.as_ref()
    }

    pub fn ids(&self) -> impl Iterator<Item = (&str, &TxnMetadata)> {
        self.ids.iter().filter_map(|(id, e)| Some((id.as_str(), e.meta.as_ref()?)))
    }

    /// State records to write, in order; drain before the replies.
    pub fn drain_stores(&mut self) -> Vec<TxnStore> {
        std::mem::take(&mut self.stores)
    }

    pub fn drain_replies(&mut self) -> Vec<TxnReply> {
        std::mem::take(&mut self.replies)
    }

    pub fn drain_markers(&mut self) -> Vec<MarkerJob> {
        std::mem::take(&mut self.markers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(id: u64) -> Waiter {
        Waiter { id: RequestId(id), api_version: 4 }
    }

    /// Commits every record the coordinator asked for, as the broker would.
    fn commit_all(c: &mut Coordinator, now_ms: i64) -> Vec<TxnStore> {
        let mut all = Vec::new();
        loop {
            let stores = c.drain_stores();
            if stores.is_empty() {
                return all;
            }
            for store in &stores {
                c.stored(now_ms, &store.id);
            }
            all.extend(stores);
        }
    }

    fn replies(c: &mut Coordinator) -> Vec<(u64, TxnResult)> {
        c.drain_replies().into_iter().map(|r| (r.waiter.id.0, r.result)).collect()
    }

    #[test]
    fn a_transaction_commits_through_its_records_and_markers() {
        let mut c = Coordinator::default();
        c.init_producer_id(0, waiter(1), "tx", 60_000, None, || 5);
        assert_eq!(replies(&mut c), vec![], "answered only once the record commits");
        commit_all(&mut c, 0);
        assert_eq!(replies(&mut c), vec![(1, Ok((5, 0)))]);

        c.add_partitions(1, waiter(2), "tx", 5, 0, &[("t".into(), 0), ("t".into(), 1)], false);
        // Until the add commits, verification and other requests wait.
        assert_eq!(c.verify("tx", 5, 0, &("t".into(), 0)), Err(ErrorCode::ConcurrentTransactions));
        c.end_txn(1, waiter(3), "tx", 5, 0, true, false, || unreachable!());
        commit_all(&mut c, 1);
        assert_eq!(replies(&mut c), vec![(3, Err(ErrorCode::ConcurrentTransactions)), (2, Ok((5, 0)))]);
        assert_eq!(c.verify("tx", 5, 0, &("t".into(), 0)), Ok(()));

        c.end_txn(2, waiter(4), "tx", 5, 0, true, false, || unreachable!());
        let stores = commit_all(&mut c, 2);
        assert_eq!(stores.iter().map(|s| s.meta.state).collect::<Vec<_>>(), vec![TxnState::PrepareCommit]);
        assert_eq!(replies(&mut c), vec![(4, Ok((5, 0)))], "answered once the decision is durable");
        let jobs = c.drain_markers();
        assert_eq!(jobs.len(), 1);
        assert!(jobs[0].commit && jobs[0].partitions.len() == 2);
        c.marker_written(3, "tx", &("t".into(), 0));
        assert!(c.drain_stores().is_empty(), "one marker is still missing");
        c.resend_markers(3, |_| true);
        assert_eq!(c.drain_markers()[0].partitions, BTreeSet::from([("t".to_string(), 1)]));
        c.marker_written(3, "tx", &("t".into(), 1));
        // The Complete record's write fails: the next tick writes it again, not leaving the id
        // in PrepareCommit with nothing left to send.
        assert_eq!(c.drain_stores().len(), 1);
        c.store_failed("tx", ErrorCode::CoordinatorNotAvailable);
        assert_eq!(c.state("tx").unwrap().state, TxnState::PrepareCommit);
        c.resend_markers(4, |_| true);
        assert!(c.drain_markers().is_empty());
        let stores = commit_all(&mut c, 4);
        assert_eq!(stores.iter().map(|s| s.meta.state).collect::<Vec<_>>(), vec![TxnState::CompleteCommit]);
    }

    #[test]
    fn a_second_producer_with_the_id_fences_the_first_and_aborts_its_transaction() {
        let mut c = Coordinator::default();
        c.init_producer_id(0, waiter(1), "tx", 60_000, None, || 5);
        commit_all(&mut c, 0);
        c.add_partitions(1, waiter(2), "tx", 5, 0, &[("t".into(), 0)], false);
        commit_all(&mut c, 1);
        replies(&mut c);
        // The new producer's InitProducerId aborts the open transaction at a newer epoch and is
        // told to retry.
        c.init_producer_id(2, waiter(3), "tx", 60_000, None, || unreachable!());
        commit_all(&mut c, 2);
        assert_eq!(replies(&mut c), vec![(3, Err(ErrorCode::ConcurrentTransactions))]);
        let job = c.drain_markers().remove(0);
        assert_eq!((job.commit, job.producer_epoch), (false, 1));
        c.marker_written(3, "tx", &("t".into(), 0));
        commit_all(&mut c, 3);
        c.init_producer_id(4, waiter(4), "tx", 60_000, None, || unreachable!());
        commit_all(&mut c, 4);
        assert_eq!(replies(&mut c), vec![(4, Ok((5, 2)))]);
        // The zombie, still at epoch 0, is fenced.
        c.end_txn(5, waiter(5), "tx", 5, 0, true, false, || unreachable!());
        assert_eq!(replies(&mut c), vec![(5, Err(ErrorCode::ProducerFenced))]);
    }

    #[test]
    fn an_abandoned_transaction_is_aborted_after_its_timeout() {
        let mut c = Coordinator::default();
        c.init_producer_id(0, waiter(1), "tx", 1_000, None, || 5);
        commit_all(&mut c, 0);
        c.add_partitions(10, waiter(2), "tx", 5, 0, &[("t".into(), 0)], false);
        commit_all(&mut c, 10);
        c.expire(1_010);
        assert!(c.drain_stores().is_empty(), "not yet");
        c.expire(1_011);
        commit_all(&mut c, 1_011);
        let job = c.drain_markers().remove(0);
        assert!(!job.commit);
        assert_eq!(c.state("tx").unwrap().state, TxnState::PrepareAbort);
    }

    #[test]
    fn a_failed_first_record_forgets_the_id_and_a_takeover_resends_markers() {
        let mut c = Coordinator::default();
        c.init_producer_id(0, waiter(1), "tx", 60_000, None, || 5);
        c.drain_stores();
        c.store_failed("tx", ErrorCode::NotCoordinator);
        assert_eq!(replies(&mut c), vec![(1, Err(ErrorCode::NotCoordinator))]);
        assert!(c.state("tx").is_none());

        let mut preparing = TxnMetadata::new(5, 60_000, 0);
        preparing.state = TxnState::PrepareAbort;
        preparing.partitions.insert(("t".into(), 2));
        c.load(1, BTreeMap::from([("tx".to_string(), preparing)]));
        let job = c.drain_markers().remove(0);
        assert_eq!(job.partitions, BTreeSet::from([("t".to_string(), 2)]));
        c.unload(|id| id == "tx");
        assert!(c.state("tx").is_none());
    }
}
