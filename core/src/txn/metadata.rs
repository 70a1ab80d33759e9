//! One transactional id's state at its transaction coordinator, and the rules that move it
//! (Kafka's TransactionMetadata and TransactionCoordinator; KIP-98, KIP-360 and KIP-890).
//!
//! Nothing here writes: a request either gets its answer at once or yields the next state
//! (`TxnMetadata` with a new `state`), which the coordinator writes to `__transaction_state`
//! and makes current only once that record commits. While a write is in flight the id has a
//! pending state and every request gets CONCURRENT_TRANSACTIONS.
//!
//! Two protocol generations are served side by side, chosen per request by its version:
//! - **TV1** (EndTxn v0-4, every librdkafka): one producer epoch spans many transactions, and
//!   markers carry it.
//! - **TV2** (EndTxn v5+, KIP-890 part 2): each EndTxn bumps the epoch, markers carry the
//!   bumped epoch, and the client takes the new epoch from the answer. A late EndTxn from an
//!   earlier transaction then meets a newer epoch and can never end a later transaction
//!   (KAFKA-17754).

use std::collections::BTreeSet;

use crate::error::ErrorCode;

/// The highest epoch a producer uses; 32767 stays free so the coordinator can fence once more.
pub const EPOCH_EXHAUSTED: i16 = i16::MAX - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// Kafka's byte for the state, as stored and as DescribeTransactions names it.
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        Some(match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    /// No transaction is open or ending: a new one may start.
    fn is_settled(self) -> bool {
        matches!(self, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort)
    }
}

/// A topic partition in a transaction.
pub type TxnPartition = (String, i32);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    /// The id before the last rotation (epoch exhausted), so a retry across it is known.
    pub prev_producer_id: i64,
    /// TV2: the id the producer moves to when this transaction completes (its epoch ran out).
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, so a retried InitProducerId or EndTxn is recognised.
    /// Not stored (as in Kafka): -1 after a coordinator takes the id over.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TxnPartition>,
    pub last_update_ms: i64,
    /// When the open transaction started; -1 when none is open.
    pub start_ms: i64,
    /// Whether the transaction is driven by a TV2 client (EndTxn v5+).
    pub tv2: bool,
}

/// What a request leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to write: answer now (with the current producer id and epoch where the API
    /// carries them).
    Answer,
    /// Write this state; answer once it commits.
    Write(TxnMetadata),
}

/// An EndTxn or a fence moves an open transaction to Prepare*, which the markers follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub next: TxnMetadata,
    /// The epoch the markers carry.
    pub marker_epoch: i16,
}

impl TxnMetadata {
    /// A transactional id seen for the first time, with a new producer id at epoch 0.
    pub fn new(producer_id: i64, timeout_ms: i32, now_ms: i64) -> TxnMetadata {
        TxnMetadata {
            producer_id,
            prev_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 0,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            last_update_ms: now_ms,
            start_ms: -1,
            tv2: false,
        }
    }

    fn with(&self, state: TxnState, now_ms: i64) -> TxnMetadata {
        TxnMetadata { state, last_update_ms: now_ms, ..self.clone() }
    }

    /// InitProducerId for a settled id: the epoch moves on (fencing every older producer with
    /// this id), or a retry of the last bump is answered as it was. `expected` is the
    /// producer id and epoch the client says it has (KIP-360), if any. `fresh_id` gives a new
    /// producer id when the epoch is exhausted.
    pub fn init(
        &self,
        expected: Option<(i64, i16)>,
        timeout_ms: i32,
        now_ms: i64,
        fresh_id: impl FnOnce() -> i64,
    ) -> Result<Step, ErrorCode> {
        debug_assert!(self.state.is_settled(), "an open transaction is fenced first");
        if let Some((id, epoch)) = expected {
            if epoch < 0 {
                return Err(ErrorCode::InvalidRequest);
            }
            if id != self.producer_id && id != self.prev_producer_id {
                // As Kafka: a producer that knows an id this transactional id no longer has is
                // an old one, fenced.
                return Err(ErrorCode::ProducerFenced);
            }
            if id == self.producer_id && epoch == self.last_producer_epoch && self.last_producer_epoch >= 0 {
                return Ok(Step::Answer);
            }
            if id != self.producer_id || epoch != self.producer_epoch {
                return Err(ErrorCode::ProducerFenced);
            }
        }
        let mut next = self.with(TxnState::Empty, now_ms);
        next.timeout_ms = timeout_ms;
        next.partitions.clear();
        next.start_ms = -1;
        next.next_producer_id = -1;
        if self.producer_epoch >= EPOCH_EXHAUSTED {
            next.prev_producer_id = self.producer_id;
            next.producer_id = fresh_id();
            next.producer_epoch = 0;
            next.last_producer_epoch = -1;
        } else {
            next.producer_epoch = self.producer_epoch + 1;
            next.last_producer_epoch = if expected.is_some() { self.producer_epoch } else { -1 };
        }
        Ok(Step::Write(next))
    }

    /// Checks a client request's producer id and epoch against this id's.
    fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), ErrorCode> {
        if producer_id != self.producer_id {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        if epoch != self.producer_epoch {
            return Err(ErrorCode::ProducerFenced);
        }
        Ok(())
    }

    /// AddPartitionsToTxn (or AddOffsetsToTxn, for the group's offsets partition): the
    /// transaction opens or grows.
    pub fn add_partitions(
        &self,
        producer_id: i64,
        epoch: i16,
        partitions: &[TxnPartition],
        tv2: bool,
        now_ms: i64,
    ) -> Result<Step, ErrorCode> {
        self.check_producer(producer_id, epoch)?;
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => Err(ErrorCode::ConcurrentTransactions),
            TxnState::Ongoing if partitions.iter().all(|p| self.partitions.contains(p)) => Ok(Step::Answer),
            _ => {
                let mut next = self.with(TxnState::Ongoing, now_ms);
                if self.state.is_settled() {
                    next.start_ms = now_ms;
                    next.tv2 = tv2;
                }
                next.partitions.extend(partitions.iter().cloned());
                Ok(Step::Write(next))
            }
        }
    }

    /// KIP-890 part 1: whether a partition leader may take this producer's first
    /// transactional batch for `partition` (the client added it to the open transaction).
    pub fn verify(&self, producer_id: i64, epoch: i16, partition: &TxnPartition) -> Result<(), ErrorCode> {
        self.check_producer(producer_id, epoch)?;
        match self.state {
            TxnState::Ongoing if self.partitions.contains(partition) => Ok(()),
            // Ending: the client is retrying a batch of the transaction being decided, or is
            // early with the next one; either way it may ask again.
            TxnState::PrepareCommit | TxnState::PrepareAbort => Err(ErrorCode::ConcurrentTransactions),
            _ => Err(ErrorCode::InvalidTxnState),
        }
    }

    /// EndTxn from the client. `tv2` is the request's generation (EndTxn v5+). `fresh_id`
    /// gives the producer id to move to when a TV2 bump exhausts the epoch.
    pub fn end(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        tv2: bool,
        now_ms: i64,
        fresh_id: impl FnOnce() -> i64,
    ) -> Result<EndStep, ErrorCode> {
        if tv2 {
            self.end_tv2(producer_id, epoch, commit, now_ms, fresh_id)
        } else {
            self.end_tv1(producer_id, epoch, commit, now_ms)
        }
    }

    fn end_tv1(&self, producer_id: i64, epoch: i16, commit: bool, now_ms: i64) -> Result<EndStep, ErrorCode> {
        self.check_producer(producer_id, epoch)?;
        use TxnState::*;
        match (self.state, commit) {
            (Ongoing, _) => Ok(EndStep::Prepare(self.prepare(commit, self.producer_epoch, -1, now_ms))),
            (PrepareCommit, true) | (PrepareAbort, false) => Err(ErrorCode::ConcurrentTransactions),
            (CompleteCommit, true) | (CompleteAbort, false) => Ok(EndStep::Done),
            _ => Err(ErrorCode::InvalidTxnState),
        }
    }

    fn end_tv2(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
        fresh_id: impl FnOnce() -> i64,
    ) -> Result<EndStep, ErrorCode> {
        use TxnState::*;
        // A retry of the EndTxn that bumped the epoch, or of one that moved to a new id.
        let retry = i32::from(self.producer_epoch) == i32::from(epoch) + 1;
        let retry_on_overflow =
            self.prev_producer_id == producer_id && epoch == EPOCH_EXHAUSTED && self.producer_epoch == 0;
        if producer_id != self.producer_id && !retry_on_overflow {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        let current = epoch == self.producer_epoch && producer_id == self.producer_id;
        let stale_taken = retry && crate::planted::active(crate::planted::PlantedBug::AcceptStaleEnd);
        let valid = match self.state {
            Ongoing | Empty => current || stale_taken,
            PrepareCommit | PrepareAbort => retry,
            CompleteCommit | CompleteAbort => retry || retry_on_overflow || current,
        };
        if !valid {
            return Err(ErrorCode::ProducerFenced);
        }
        match (self.state, commit) {
            (Ongoing, _) => Ok(EndStep::Prepare(self.bumped(commit, now_ms, fresh_id))),
            // An abort with nothing open still bumps the epoch (KIP-890: a producer that does
            // not know whether its transaction ended aborts to be sure).
            (Empty | CompleteCommit | CompleteAbort, false) if current => {
                Ok(EndStep::Prepare(self.bumped(commit, now_ms, fresh_id)))
            }
            (CompleteAbort, false) | (CompleteCommit, true) if retry || retry_on_overflow => Ok(EndStep::Done),
            (PrepareAbort, false) | (PrepareCommit, true) => Err(ErrorCode::ConcurrentTransactions),
            _ => Err(ErrorCode::InvalidTxnState),
        }
    }

    /// TV2's Prepare*: the epoch moves on by one, or to a new producer id once exhausted.
    fn bumped(&self, commit: bool, now_ms: i64, fresh_id: impl FnOnce() -> i64) -> Ending {
        let next_id = if self.producer_epoch >= EPOCH_EXHAUSTED { fresh_id() } else { -1 };
        self.prepare(commit, self.producer_epoch + 1, next_id, now_ms)
    }

    /// Prepare*: the decision, written before any marker.
    fn prepare(&self, commit: bool, marker_epoch: i16, next_producer_id: i64, now_ms: i64) -> Ending {
        let state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
        let mut next = self.with(state, now_ms);
        next.last_producer_epoch = self.producer_epoch;
        next.producer_epoch = marker_epoch;
        next.next_producer_id = next_producer_id;
        if self.state.is_settled() {
            next.start_ms = now_ms;
        }
        Ending { next, marker_epoch }
    }

    /// Fences an open transaction (InitProducerId while it is open, or its timeout): the
    /// epoch moves on, so the old producer's requests are refused, and it is aborted.
    pub fn fence(&self, now_ms: i64) -> Ending {
        debug_assert_eq!(self.state, TxnState::Ongoing);
        let fenced = if self.producer_epoch < i16::MAX { self.producer_epoch + 1 } else { self.producer_epoch };
        let marker_epoch = if self.tv2 && fenced < i16::MAX { fenced + 1 } else { fenced };
        let mut ending =
            TxnMetadata { producer_epoch: fenced, ..self.clone() }.prepare(false, marker_epoch, -1, now_ms);
        ending.next.last_producer_epoch = -1;
        ending
    }

    /// Complete*: every marker is written. A TV2 producer whose epoch ran out moves to its
    /// next producer id at epoch 0.
    pub fn complete(&self, now_ms: i64) -> TxnMetadata {
        let state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => unreachable!("completing a transaction in state {other:?}"),
        };
        let mut next = self.with(state, now_ms);
        if self.next_producer_id >= 0 {
            next.prev_producer_id = self.producer_id;
            next.producer_id = self.next_producer_id;
            next.producer_epoch = 0;
            next.next_producer_id = -1;
        }
        next.partitions.clear();
        next.start_ms = -1;
        next
    }

    /// Whether an open transaction has outlived its timeout.
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing && self.start_ms >= 0 && now_ms > self.start_ms + i64::from(self.timeout_ms)
    }

    /// The producer id and epoch a TV2 client continues with after this EndTxn: those of the
    /// Complete* state that will follow.
    pub fn after_completion(&self) -> (i64, i16) {
        if self.next_producer_id >= 0 {
            (self.next_producer_id, 0)
        } else {
            (self.producer_id, self.producer_epoch)
        }
    }
}

/// What an EndTxn leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndStep {
    /// A retry of an EndTxn already done: answer success now.
    Done,
    /// Write Prepare*, answer, then send the markers.
    Prepare(Ending),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ongoing(tv2: bool) -> TxnMetadata {
        let meta = TxnMetadata::new(7, 60_000, 0);
        let Step::Write(next) = meta.add_partitions(7, 0, &[("t".into(), 0)], tv2, 10).unwrap() else { panic!() };
        next
    }

    #[test]
    fn init_bumps_the_epoch_and_recognises_its_own_retry() {
        let meta = TxnMetadata::new(7, 60_000, 0);
        let Ok(Step::Write(next)) = meta.init(Some((7, 0)), 60_000, 5, || unreachable!()) else { panic!() };
        assert_eq!((next.producer_id, next.producer_epoch, next.last_producer_epoch), (7, 1, 0));
        // The same request again (its answer was lost): the bump is not repeated.
        assert_eq!(next.init(Some((7, 0)), 60_000, 6, || unreachable!()), Ok(Step::Answer));
        // A producer that knows an older epoch is a zombie.
        assert_eq!(next.init(Some((7, 5)), 60_000, 6, || unreachable!()), Err(ErrorCode::ProducerFenced));
        assert_eq!(next.init(Some((8, 1)), 60_000, 6, || unreachable!()), Err(ErrorCode::ProducerFenced));
        assert_eq!(next.init(Some((7, -1)), 60_000, 6, || unreachable!()), Err(ErrorCode::InvalidRequest));
        // An exhausted epoch moves to a new producer id.
        let worn = TxnMetadata { producer_epoch: EPOCH_EXHAUSTED, ..next };
        let Ok(Step::Write(rotated)) = worn.init(None, 60_000, 7, || 99) else { panic!() };
        assert_eq!((rotated.producer_id, rotated.producer_epoch, rotated.prev_producer_id), (99, 0, 7));
    }

    #[test]
    fn partitions_open_a_transaction_and_verification_needs_them() {
        let meta = ongoing(false);
        assert_eq!((meta.state, meta.start_ms), (TxnState::Ongoing, 10));
        assert_eq!(meta.add_partitions(7, 0, &[("t".into(), 0)], false, 11), Ok(Step::Answer));
        assert_eq!(meta.verify(7, 0, &("t".into(), 0)), Ok(()));
        assert_eq!(meta.verify(7, 0, &("t".into(), 1)), Err(ErrorCode::InvalidTxnState));
        assert_eq!(meta.verify(7, 1, &("t".into(), 0)), Err(ErrorCode::ProducerFenced));
        assert_eq!(meta.add_partitions(6, 0, &[], false, 11), Err(ErrorCode::InvalidProducerIdMapping));
    }

    #[test]
    fn tv1_end_keeps_the_epoch_and_answers_retries() {
        let meta = ongoing(false);
        let Ok(EndStep::Prepare(ending)) = meta.end(7, 0, true, false, 20, || unreachable!()) else { panic!() };
        assert_eq!((ending.next.state, ending.marker_epoch), (TxnState::PrepareCommit, 0));
        assert_eq!(ending.next.end(7, 0, true, false, 21, || unreachable!()), Err(ErrorCode::ConcurrentTransactions));
        assert_eq!(ending.next.end(7, 0, false, false, 21, || unreachable!()), Err(ErrorCode::InvalidTxnState));
        let done = ending.next.complete(30);
        assert_eq!((done.state, done.partitions.len(), done.start_ms), (TxnState::CompleteCommit, 0, -1));
        assert_eq!(done.end(7, 0, true, false, 31, || unreachable!()), Ok(EndStep::Done));
        assert_eq!(done.end(7, 0, false, false, 31, || unreachable!()), Err(ErrorCode::InvalidTxnState));
    }

    #[test]
    fn tv2_end_bumps_the_epoch_so_a_late_end_cannot_reach_the_next_transaction() {
        let meta = ongoing(true);
        let Ok(EndStep::Prepare(ending)) = meta.end(7, 0, true, true, 20, || unreachable!()) else { panic!() };
        assert_eq!((ending.next.producer_epoch, ending.marker_epoch), (1, 1));
        assert_eq!(ending.next.after_completion(), (7, 1));
        let done = ending.next.complete(30);
        // Its own retry is answered as done; the next transaction runs at epoch 1.
        assert_eq!(done.end(7, 0, true, true, 31, || unreachable!()), Ok(EndStep::Done));
        let Ok(Step::Write(next)) = done.add_partitions(7, 1, &[("t".into(), 1)], true, 40) else { panic!() };
        // KAFKA-17754: the first transaction's EndTxn, delayed, now meets epoch 1 in an open
        // transaction and is refused instead of ending it.
        assert_eq!(next.end(7, 0, false, true, 41, || unreachable!()), Err(ErrorCode::ProducerFenced));
        assert_eq!(next.end(7, 0, true, true, 41, || unreachable!()), Err(ErrorCode::ProducerFenced));
    }

    #[test]
    fn tv2_moves_to_a_new_producer_id_when_the_epoch_runs_out() {
        let meta = TxnMetadata { producer_epoch: EPOCH_EXHAUSTED, ..ongoing(true) };
        let Ok(EndStep::Prepare(ending)) = meta.end(7, EPOCH_EXHAUSTED, true, true, 20, || 50) else { panic!() };
        assert_eq!(ending.marker_epoch, i16::MAX);
        assert_eq!(ending.next.after_completion(), (50, 0));
        let done = ending.next.complete(30);
        assert_eq!((done.producer_id, done.producer_epoch, done.prev_producer_id), (50, 0, 7));
        assert_eq!(done.end(7, EPOCH_EXHAUSTED, true, true, 31, || unreachable!()), Ok(EndStep::Done));
    }

    #[test]
    fn a_fence_aborts_the_open_transaction_with_a_newer_epoch() {
        let ending = ongoing(false).fence(50);
        assert_eq!(
            (ending.next.state, ending.next.producer_epoch, ending.marker_epoch),
            (TxnState::PrepareAbort, 1, 1)
        );
        // The zombie's EndTxn at epoch 0 is fenced.
        assert_eq!(ending.next.end(7, 0, true, false, 51, || unreachable!()), Err(ErrorCode::ProducerFenced));
        let tv2 = ongoing(true).fence(50);
        assert_eq!((tv2.next.producer_epoch, tv2.marker_epoch), (2, 2));
        assert!(ongoing(false).timed_out(60_011) && !ongoing(false).timed_out(60_010));
    }
}
