//! Transactions at this node (KIP-98, with KIP-890's verification): the transaction
//! coordinator of the ids whose `__transaction_state` partition is here, the requests that
//! reach it, and the state records and markers it asks for.
//!
//! On a single node `__transaction_state` is one local partition, made at the first request
//! that needs it (FindCoordinator for a transaction, or InitProducerId with a transactional id)
//! and replayed into the coordinator at start-up. In a cluster the controller makes it, asked
//! at the same first request, with `transaction_state_num_partitions` partitions replicated like
//! `__consumer_offsets`; a transactional id's coordinator is the leader of its partition (the
//! same hash as a group's), which loads the partition's state once every record it held when
//! elected is committed, and forgets it when it loses the partition (`txn_cluster.rs` holds
//! what crosses brokers).
//!
//! - **State records** are appended to that partition and parked like an acks=all write; once
//!   committed the coordinator makes the state current and answers, or sends markers.
//! - **Markers** are written at each partition's leader (here, or sent to it as
//!   WriteTxnMarkers) and parked until committed; a partition that could not take one gets it
//!   again at the next tick.
//! - **Produce** with a transactional id: a partition where the producer has no open
//!   transaction takes its first transactional batch only if the coordinator knows the
//!   partition is in the producer's transaction (KIP-890 part 1), so a stray or late batch
//!   cannot open a transaction nobody will end (a "hanging" transaction that would hold the
//!   last stable offset back for ever).

use std::collections::BTreeMap;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind, TopicName,
    TransactionalId,
};

use super::group_partitions::{Home, Step};
use super::groups::offsets_partition_of;
use super::{Broker, Output, Parked, RequestId, Response, ResponseBody, StorageOp, WaitFor};
use crate::constants::{INTERNAL_TOPIC_CREATE_RETRY_MS, TXN_TICK_MS, TXN_TIMEOUT_MS_MAX, TXN_WRITE_WAIT_MS};
use crate::error::ErrorCode;
use crate::group::OFFSETS_TOPIC;
use crate::ids::{NodeId, PartitionId};
use crate::log::batch::build::batch;
use crate::metadata::TopicConfig;
use crate::txn::coordinator::{MarkerJob, TxnReply, TxnStore, Waiter};
use crate::txn::metadata::{TxnMetadata, TxnPartition, EPOCH_EXHAUSTED};
use crate::txn::producer::TxnEnd;
use crate::txn::records;

/// The internal topic of the transaction coordinators' state.
pub(crate) const TXN_TOPIC: &str = "__transaction_state";

/// What a request waiting on the coordinator needs to be answered.
pub(super) enum TxnRequest {
    InitProducerId,
    AddPartitions(Vec<(TopicName, Vec<i32>)>),
    AddOffsets,
    EndTxn,
    /// A partition leader's AddPartitionsToTxn v4 adding a producer's partitions (KIP-890
    /// part 2), answered per partition.
    LeaderAdd(TransactionalId, Vec<(TopicName, Vec<i32>)>),
    /// An add this node's own held request asked for (`txn_cluster.rs`), by its token.
    Implicit(u64),
}

/// A state record waiting to commit.
pub(crate) struct ParkedTxnStore {
    pub id: RequestId,
    txn_id: String,
    written: (PartitionId, i64, i32),
    pub deadline_ms: i64,
}

/// A marker waiting to commit, for the coordinator here.
pub(crate) struct ParkedTxnMarker {
    pub id: RequestId,
    txn_id: String,
    partition: TxnPartition,
    producer_id: i64,
    commit: bool,
    written: (PartitionId, i64, i32),
    pub deadline_ms: i64,
}

impl ParkedTxnStore {
    pub(super) fn waits(&self) -> Vec<(PartitionId, i64, WaitFor)> {
        vec![(self.written.0, self.written.1, WaitFor::Commit)]
    }
}

impl ParkedTxnMarker {
    pub(super) fn waits(&self) -> Vec<(PartitionId, i64, WaitFor)> {
        vec![(self.written.0, self.written.1, WaitFor::Commit)]
    }
}

/// Whether a write made in `epoch` at `partition` up to `offset_end` committed, failed, or
/// still waits.
enum Commit {
    Done,
    Waiting,
    Failed(ErrorCode),
}

impl Broker {
    // ----- requests -----

    /// The `__transaction_state` partition of `txn_id`: 0 on one node; in a cluster the same
    /// hash as a group's over the partitions the topic has.
    pub(super) fn txn_partition(&self, txn_id: &str) -> i32 {
        match self.topics.get(TXN_TOPIC) {
            Some(topic) if self.is_cluster() => offsets_partition_of(txn_id, topic.record.partitions),
            _ => 0,
        }
    }

    /// Where `txn_id` is coordinated: on one node here once the state topic exists; in a
    /// cluster at the leader of its state partition.
    pub(super) fn txn_home(&self, txn_id: &str) -> Home {
        match &self.quorum {
            None if self.topic(TXN_TOPIC).is_some() => Home::Here,
            None => Home::Unavailable,
            Some(_) => self.home_of(TXN_TOPIC, txn_id, &self.txn_partitions),
        }
    }

    /// Why `txn_id`'s requests cannot be served here, if they cannot: the codes a
    /// transactional client looks its coordinator up again on, or waits on.
    pub(super) fn txn_not_here(&self, txn_id: &str) -> Option<ErrorCode> {
        match self.txn_home(txn_id) {
            Home::Here => None,
            Home::Loading => Some(ErrorCode::CoordinatorLoadInProgress),
            Home::There(..) => Some(ErrorCode::NotCoordinator),
            Home::Unavailable => Some(ErrorCode::CoordinatorNotAvailable),
        }
    }

    /// Makes `__transaction_state` if it does not exist yet: the local partition on one node;
    /// in a cluster the controller is asked (at most every [`INTERNAL_TOPIC_CREATE_RETRY_MS`]) and the
    /// answer is COORDINATOR_NOT_AVAILABLE until the topic is in the image.
    pub(super) fn ensure_txn_topic(&mut self, now_ms: i64) -> Result<(), ErrorCode> {
        if self.topic(TXN_TOPIC).is_some() {
            return Ok(());
        }
        if self.is_cluster() {
            if now_ms >= self.txn_partitions.next_create_ms {
                self.txn_partitions.next_create_ms = now_ms + INTERNAL_TOPIC_CREATE_RETRY_MS;
                let voters = self.config.quorum_voters.as_ref().map_or(1, Vec::len);
                let partitions = self.config.txn_topic_partitions;
                let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
                self.create_internal_topic(now_ms, TXN_TOPIC, partitions, voters.min(3) as i16, configs);
            }
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        let config = TopicConfig::from_pairs([("cleanup.policy", "compact")]).expect("valid internal config");
        self.create_topic(now_ms, TXN_TOPIC, 1, config).map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
        self.next_txn_tick_ms = now_ms + TXN_TICK_MS;
        Ok(())
    }

    /// Replays the local `__transaction_state` partition into the coordinator (start-up, on
    /// one node).
    pub(super) fn open_txn_state(&mut self, now_ms: i64) -> std::io::Result<()> {
        if self.is_cluster() {
            return Ok(());
        }
        let Some(partition) = self.partition(TXN_TOPIC, 0) else { return Ok(()) };
        let loaded = read_txn_log(partition)?;
        self.txn.load(now_ms, loaded);
        self.next_txn_tick_ms = now_ms + TXN_TICK_MS;
        self.drain_txn(now_ms);
        Ok(())
    }

    /// Brings the transactional ids of state partition `index` in line with this node's role
    /// for it, after its Raft spoke (a cluster): loaded once led and committed, forgotten once
    /// not led.
    pub(super) fn txn_partition_changed(&mut self, now_ms: i64, index: i32) {
        let led = self.led_state(TXN_TOPIC, index);
        let Some(step) = self.txn_partitions.step(index, led) else { return };
        let count = self.topics.get(TXN_TOPIC).map_or(1, |t| t.record.partitions);
        self.txn.unload(|id| offsets_partition_of(id, count) == index);
        if step == Step::Load {
            let Some(partition) = self.partition(TXN_TOPIC, index) else { return };
            match read_txn_log(partition) {
                Ok(loaded) => {
                    self.txn.load(now_ms, loaded);
                    self.next_txn_tick_ms = self.next_txn_tick_ms.min(now_ms + TXN_TICK_MS);
                }
                Err(error) => {
                    let id = partition.id;
                    self.txn_partitions.load_failed(index);
                    self.fail_partition(id, StorageOp::Append, &error);
                }
            }
        }
        self.drain_txn(now_ms);
    }

    /// A new producer id, allocated beforehand when the coordinator may hand one out for
    /// `txn_id` (an id it does not know, or one whose epoch ran out).
    fn fresh_producer_id(&mut self, txn_id: &str) -> Result<Option<i64>, ErrorCode> {
        match self.txn.state(txn_id) {
            Some(meta) if meta.producer_epoch < EPOCH_EXHAUSTED => Ok(None),
            _ => self.allocate_producer_id().map(Some),
        }
    }

    fn waiter(&mut self, id: RequestId, api_version: i16, request: TxnRequest) -> Waiter {
        self.txn_requests.insert(id, request);
        Waiter { id, api_version }
    }

    /// InitProducerId with a transactional id.
    pub(super) fn init_transactional_producer(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        request: InitProducerIdRequest,
    ) -> Option<ResponseKind> {
        let answer = |code: ErrorCode| Some(ResponseKind::InitProducerId(init_response(Err(code))));
        let txn_id = request.transactional_id.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
        if txn_id.is_empty() || txn_id.len() > usize::from(u16::MAX) {
            return answer(ErrorCode::InvalidRequest);
        }
        if request.transaction_timeout_ms <= 0 || request.transaction_timeout_ms > TXN_TIMEOUT_MS_MAX {
            return answer(ErrorCode::InvalidTransactionTimeout);
        }
        if let Some(code) = self.ensure_txn_topic(now_ms).err().or_else(|| self.txn_not_here(&txn_id)) {
            return answer(code);
        }
        let expected = (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
        let fresh = match self.fresh_producer_id(&txn_id) {
            Ok(fresh) => fresh,
            Err(code) => return answer(code),
        };
        let waiter = self.waiter(id, api_version, TxnRequest::InitProducerId);
        self.txn.init_producer_id(now_ms, waiter, &txn_id, request.transaction_timeout_ms, expected, || {
            fresh.expect("allocated when the id may need one")
        });
        self.drain_txn(now_ms);
        None
    }

    /// AddPartitionsToTxn, the client form (v0-3).
    pub(super) fn add_partitions_to_txn(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        request: AddPartitionsToTxnRequest,
    ) -> Option<ResponseKind> {
        let topics: Vec<(TopicName, Vec<i32>)> =
            request.v3_and_below_topics.iter().map(|t| (t.name.clone(), t.partitions.clone())).collect();
        let unknown = |this: &Broker, name: &TopicName, index: i32| {
            !this.topic(&name.0).is_some_and(|t| (0..t.record.partitions).contains(&index))
        };
        let txn_id = request.v3_and_below_transactional_id.0.to_string();
        if let Some(code) = self.txn_not_here(&txn_id) {
            return Some(add_partitions_response(&topics, |_, _| code));
        }
        if topics.iter().any(|(name, indexes)| indexes.iter().any(|&i| unknown(self, name, i))) {
            // Kafka's answer: the unknown partitions say so, the others were not attempted.
            return Some(add_partitions_response(&topics, |name, index| {
                if unknown(self, name, index) {
                    ErrorCode::UnknownTopicOrPartition
                } else {
                    ErrorCode::OperationNotAttempted
                }
            }));
        }
        let partitions: Vec<TxnPartition> =
            topics.iter().flat_map(|(name, indexes)| indexes.iter().map(|&i| (name.0.to_string(), i))).collect();
        let (producer_id, epoch) = (request.v3_and_below_producer_id.0, request.v3_and_below_producer_epoch);
        let waiter = self.waiter(id, api_version, TxnRequest::AddPartitions(topics));
        self.txn.add_partitions(now_ms, waiter, &txn_id, producer_id, epoch, &partitions, false);
        self.drain_txn(now_ms);
        None
    }

    /// AddPartitionsToTxn v4+ from a partition leader: verifications are answered at once; an
    /// add (KIP-890 part 2; one transaction per request, as this node's leaders send it) once
    /// the coordinator's record of it committed.
    pub(super) fn add_partitions_for_leader(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        request: AddPartitionsToTxnRequest,
    ) -> Option<ResponseKind> {
        let adding = match request.transactions.as_slice() {
            [one] if !one.verify_only => one.clone(),
            _ => return Some(ResponseKind::AddPartitionsToTxn(self.verify_for_leader(request))),
        };
        let txn_id = adding.transactional_id.0.to_string();
        let topics: Vec<(TopicName, Vec<i32>)> =
            adding.topics.iter().map(|t| (t.name.clone(), t.partitions.clone())).collect();
        let refused = |code: ErrorCode| {
            let ResponseKind::AddPartitionsToTxn(per_topic) = add_partitions_response(&topics, |_, _| code) else {
                unreachable!("an AddPartitionsToTxn answer")
            };
            let result = AddPartitionsToTxnResult::default()
                .with_transactional_id(adding.transactional_id.clone())
                .with_topic_results(per_topic.results_by_topic_v3_and_below);
            Some(ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default().with_results_by_transaction(vec![result]),
            ))
        };
        if let Some(code) = self.txn_not_here(&txn_id) {
            return refused(code);
        }
        let partitions: Vec<TxnPartition> =
            topics.iter().flat_map(|(name, indexes)| indexes.iter().map(|&i| (name.0.to_string(), i))).collect();
        let (producer_id, epoch) = (adding.producer_id.0, adding.producer_epoch);
        let waiter = self.waiter(id, api_version, TxnRequest::LeaderAdd(adding.transactional_id.clone(), topics));
        self.txn.add_partitions(now_ms, waiter, &txn_id, producer_id, epoch, &partitions, true);
        self.drain_txn(now_ms);
        None
    }

    /// AddOffsetsToTxn: the group's offsets partition joins the transaction, so its marker
    /// decides the offsets the producer commits in it.
    pub(super) fn add_offsets_to_txn(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        request: AddOffsetsToTxnRequest,
    ) -> Option<ResponseKind> {
        let txn_id = request.transactional_id.0.to_string();
        if let Some(code) = self.txn_not_here(&txn_id) {
            return Some(ResponseKind::AddOffsetsToTxn(
                AddOffsetsToTxnResponse::default().with_error_code(code.code()),
            ));
        }
        let partition = (OFFSETS_TOPIC.to_string(), self.offsets_partition(&request.group_id.0));
        let waiter = self.waiter(id, api_version, TxnRequest::AddOffsets);
        self.txn.add_partitions(
            now_ms,
            waiter,
            &txn_id,
            request.producer_id.0,
            request.producer_epoch,
            &[partition],
            false,
        );
        self.drain_txn(now_ms);
        None
    }

    /// EndTxn (v0-4: the first generation of the protocol).
    pub(super) fn end_txn(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        request: EndTxnRequest,
    ) -> Option<ResponseKind> {
        let txn_id = request.transactional_id.0.to_string();
        if let Some(code) = self.txn_not_here(&txn_id) {
            return Some(ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(code.code())));
        }
        let fresh = match self.fresh_producer_id(&txn_id) {
            Ok(fresh) => fresh,
            Err(code) => return Some(ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(code.code()))),
        };
        let waiter = self.waiter(id, api_version, TxnRequest::EndTxn);
        self.txn.end_txn(
            now_ms,
            waiter,
            &txn_id,
            request.producer_id.0,
            request.producer_epoch,
            request.committed,
            api_version >= 5,
            || fresh.expect("allocated when the id may need one"),
        );
        self.drain_txn(now_ms);
        None
    }

    /// KIP-890 part 1, for a transactional Produce: may `producer_id` write its first
    /// transactional batch of this transaction to `topic`-`index`? The error is the one
    /// Kafka's leader answers the Produce with.
    pub(super) fn verify_txn_partition(
        &self,
        txn_id: &str,
        topic: &str,
        index: i32,
        producer_id: i64,
        epoch: i16,
    ) -> Result<(), ErrorCode> {
        match self.txn_verdict(txn_id, &(topic.to_string(), index), producer_id, epoch) {
            Ok(()) => Ok(()),
            Err(ErrorCode::ProducerFenced) => Err(ErrorCode::InvalidProducerEpoch),
            Err(code @ (ErrorCode::InvalidTxnState | ErrorCode::InvalidProducerIdMapping)) => Err(code),
            // Not known yet (a write in flight, a coordinator loading): every client retries
            // NOT_ENOUGH_REPLICAS without refreshing its metadata.
            Err(_) => Err(ErrorCode::NotEnoughReplicas),
        }
    }

    /// KIP-890 part 1 for TxnOffsetCommit: the group's offsets partition must be in the
    /// producer's transaction. Answers in the codes clients retry or act on for this API.
    pub(super) fn verify_txn_offsets(
        &self,
        txn_id: &str,
        offsets_partition: &TxnPartition,
        producer_id: i64,
        epoch: i16,
    ) -> Result<(), ErrorCode> {
        match self.txn_verdict(txn_id, offsets_partition, producer_id, epoch) {
            Ok(()) => Ok(()),
            Err(ErrorCode::ProducerFenced) => Err(ErrorCode::InvalidProducerEpoch),
            Err(code @ (ErrorCode::InvalidTxnState | ErrorCode::InvalidProducerIdMapping)) => Err(code),
            Err(_) => Err(ErrorCode::ConcurrentTransactions),
        }
    }

    /// The coordinator's word on whether `partition` is in the producer's ongoing
    /// transaction: asked of it when it is here, else the answer a verification sent to it
    /// brought back (`txn_cluster.rs`); COORDINATOR_NOT_AVAILABLE when there is none.
    fn txn_verdict(
        &self,
        txn_id: &str,
        partition: &TxnPartition,
        producer_id: i64,
        epoch: i16,
    ) -> Result<(), ErrorCode> {
        match self.txn_home(txn_id) {
            Home::Here => self.txn.verify(txn_id, producer_id, epoch, partition),
            _ => self.remote_verdict(partition, producer_id, epoch),
        }
    }

    // ----- what the coordinator asks for -----

    /// Writes the coordinator's state records, sends its markers, and answers its replies.
    pub(super) fn drain_txn(&mut self, now_ms: i64) {
        loop {
            let stores = self.txn.drain_stores();
            let markers = self.txn.drain_markers();
            if stores.is_empty() && markers.is_empty() {
                break;
            }
            for store in stores {
                self.write_txn_store(now_ms, store);
            }
            for job in markers {
                self.send_txn_markers(now_ms, job);
            }
        }
        for reply in self.txn.drain_replies() {
            self.answer_txn(now_ms, reply);
        }
    }

    pub(super) fn internal_request_id(&mut self) -> RequestId {
        self.next_internal_id += 1;
        RequestId(self.next_internal_id)
    }

    fn write_txn_store(&mut self, now_ms: i64, store: TxnStore) {
        let record = records::record(&store.id, Some(&store.meta), now_ms);
        let mut bytes = batch(&[record], None);
        let index = self.txn_partition(&store.id);
        let appended = match self.partition_mut(TXN_TOPIC, index) {
            Some(p) if !p.failed && p.is_leader() => {
                let epoch = p.leader_epoch();
                match p.log.append(&mut bytes, epoch, now_ms) {
                    Ok(_) => Ok(((p.id, p.log.end_offset(), epoch), p.replica.is_some())),
                    Err(error) => Err(Some((p.id, error))),
                }
            }
            _ => Err(None),
        };
        match appended {
            Ok((written, replicated)) => {
                self.note_unsynced(written.0);
                if replicated {
                    // Followers waiting for entries are answered now.
                    self.on_replica(now_ms, written.0, None, |raft, view| raft.appended(view));
                }
                if crate::planted::active(crate::planted::PlantedBug::MarkersBeforeCommit) {
                    // Planted: the state counts as decided once appended here, so EndTxn is
                    // answered and the markers go out before the decision has committed.
                    self.txn.stored(now_ms, &store.id);
                    return;
                }
                let id = self.internal_request_id();
                let deadline_ms = now_ms + TXN_WRITE_WAIT_MS;
                self.park(Parked::TxnStore(ParkedTxnStore { id, txn_id: store.id, written, deadline_ms }));
            }
            Err(failure) => {
                if let Some((partition, error)) = failure {
                    self.fail_partition(partition, StorageOp::Append, &error);
                }
                self.txn.store_failed(&store.id, ErrorCode::CoordinatorNotAvailable);
            }
        }
    }

    /// Writes a transaction's markers into its partitions: here for those this node leads,
    /// sent to the leader of each other one. A partition that no longer exists needs none;
    /// one that cannot take its marker now gets it again at the next tick.
    fn send_txn_markers(&mut self, now_ms: i64, job: MarkerJob) {
        let end = if job.commit { TxnEnd::Commit } else { TxnEnd::Abort };
        // The coordinator's epoch: its state partition's leader epoch.
        let index = self.txn_partition(&job.id);
        let coordinator_epoch = self.partition(TXN_TOPIC, index).map_or(0, |p| p.leader_epoch());
        let mut elsewhere: BTreeMap<NodeId, Vec<TxnPartition>> = BTreeMap::new();
        for partition in &job.partitions {
            let known = self.topic(&partition.0).is_some_and(|t| (0..t.record.partitions).contains(&partition.1));
            let here = self.partition(&partition.0, partition.1).filter(|p| p.is_leader() || !self.is_cluster());
            let Some(pid) = here.map(|p| p.id) else {
                if !known {
                    self.txn.marker_written(now_ms, &job.id, partition);
                } else if let Some(leader) = self.leader_elsewhere(&partition.0, partition.1) {
                    elsewhere.entry(leader).or_default().push(partition.clone());
                }
                continue;
            };
            match self.write_marker(now_ms, pid, job.producer_id, job.producer_epoch, end, coordinator_epoch) {
                Ok(written) => {
                    let id = self.internal_request_id();
                    self.park(Parked::TxnMarker(ParkedTxnMarker {
                        id,
                        txn_id: job.id.clone(),
                        partition: partition.clone(),
                        producer_id: job.producer_id,
                        commit: job.commit,
                        written: (pid, written.offset + 1, written.leader_epoch),
                        deadline_ms: now_ms + TXN_WRITE_WAIT_MS,
                    }));
                }
                // A marker from an older epoch than the producer's batches there: this
                // coordinator's decision is stale for that partition; nothing more to write.
                Err(ErrorCode::InvalidProducerEpoch) => self.txn.marker_written(now_ms, &job.id, partition),
                Err(_) => {}
            }
        }
        for (leader, partitions) in elsewhere {
            self.send_remote_markers(now_ms, leader, &job, partitions, coordinator_epoch);
        }
    }

    fn commit_state(&self, (partition, offset_end, epoch): (PartitionId, i64, i32), give_up: bool) -> Commit {
        match self.partition_by_id(partition) {
            None => Commit::Failed(ErrorCode::NotCoordinator),
            Some(p) if !p.leads_in(epoch) => Commit::Failed(ErrorCode::NotCoordinator),
            Some(p) if p.high_watermark() >= offset_end => Commit::Done,
            Some(p) if p.failed => Commit::Failed(ErrorCode::CoordinatorNotAvailable),
            Some(_) if give_up => Commit::Failed(ErrorCode::RequestTimedOut),
            Some(_) => Commit::Waiting,
        }
    }

    pub(super) fn try_finish_txn_store(
        &mut self,
        now_ms: i64,
        parked: ParkedTxnStore,
        force: bool,
    ) -> Option<Response> {
        match self.commit_state(parked.written, force || now_ms >= parked.deadline_ms) {
            Commit::Done => self.txn.stored(now_ms, &parked.txn_id),
            Commit::Waiting => {
                self.park(Parked::TxnStore(parked));
                return None;
            }
            // Kafka's answer when the coordinator's own write times out: the client retries.
            Commit::Failed(ErrorCode::RequestTimedOut) => {
                self.txn.store_failed(&parked.txn_id, ErrorCode::CoordinatorNotAvailable)
            }
            Commit::Failed(code) => self.txn.store_failed(&parked.txn_id, code),
        }
        self.drain_txn(now_ms);
        None
    }

    pub(super) fn try_finish_txn_marker(
        &mut self,
        now_ms: i64,
        parked: ParkedTxnMarker,
        force: bool,
    ) -> Option<Response> {
        match self.commit_state(parked.written, force || now_ms >= parked.deadline_ms) {
            Commit::Done => {
                if parked.partition.0 == OFFSETS_TOPIC {
                    // The offsets the producer committed in the transaction take effect now.
                    self.offsets.end_txn(parked.producer_id, parked.commit);
                }
                self.txn.marker_written(now_ms, &parked.txn_id, &parked.partition)
            }
            Commit::Waiting => {
                self.park(Parked::TxnMarker(parked));
                return None;
            }
            // Sent again at the next tick.
            Commit::Failed(_) => {}
        }
        self.drain_txn(now_ms);
        None
    }

    /// Timeouts and markers to send again, every [`TXN_TICK_MS`].
    pub(super) fn txn_tick(&mut self, now_ms: i64) {
        if now_ms < self.next_txn_tick_ms || (self.topic(TXN_TOPIC).is_none() && !self.txn_calls_waiting()) {
            return;
        }
        self.next_txn_tick_ms = now_ms + TXN_TICK_MS;
        self.txn.expire(now_ms);
        let waiting: std::collections::BTreeSet<String> = self
            .parked
            .values()
            .filter_map(|p| match p {
                Parked::TxnMarker(m) => Some(m.txn_id.clone()),
                _ => None,
            })
            .collect();
        self.txn_cluster_tick(now_ms);
        let in_flight = self.markers_in_flight();
        self.txn.resend_markers(now_ms, |id| !waiting.contains(id) && !in_flight.contains(id));
        self.drain_txn(now_ms);
    }

    pub(super) fn next_txn_tick_ms(&self) -> Option<i64> {
        (self.topic(TXN_TOPIC).is_some() || self.txn_calls_waiting()).then_some(self.next_txn_tick_ms)
    }

    fn answer_txn(&mut self, now_ms: i64, reply: TxnReply) {
        let Some(request) = self.txn_requests.remove(&reply.waiter.id) else { return };
        let (api_key, body) = match request {
            TxnRequest::Implicit(token) => return self.token_answered(now_ms, token),
            TxnRequest::LeaderAdd(txn_id, topics) => {
                let code = reply.result.err().unwrap_or(ErrorCode::None);
                let ResponseKind::AddPartitionsToTxn(per_topic) = add_partitions_response(&topics, |_, _| code) else {
                    unreachable!("an AddPartitionsToTxn answer")
                };
                let result = AddPartitionsToTxnResult::default()
                    .with_transactional_id(txn_id)
                    .with_topic_results(per_topic.results_by_topic_v3_and_below);
                let response = AddPartitionsToTxnResponse::default().with_results_by_transaction(vec![result]);
                (ApiKey::AddPartitionsToTxn, ResponseKind::AddPartitionsToTxn(response))
            }
            TxnRequest::InitProducerId => {
                (ApiKey::InitProducerId, ResponseKind::InitProducerId(init_response(reply.result)))
            }
            TxnRequest::AddPartitions(topics) => {
                let code = reply.result.err().unwrap_or(ErrorCode::None);
                (ApiKey::AddPartitionsToTxn, add_partitions_response(&topics, |_, _| code))
            }
            TxnRequest::AddOffsets => {
                let code = reply.result.err().unwrap_or(ErrorCode::None);
                (
                    ApiKey::AddOffsetsToTxn,
                    ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code.code())),
                )
            }
            TxnRequest::EndTxn => {
                let mut response = EndTxnResponse::default();
                match reply.result {
                    Ok((producer_id, epoch)) => {
                        response.producer_id = ProducerId(producer_id);
                        response.producer_epoch = epoch;
                    }
                    Err(code) => response.error_code = code.code(),
                }
                (ApiKey::EndTxn, ResponseKind::EndTxn(response))
            }
        };
        self.outputs.push_back(Output::Response(Response {
            id: reply.waiter.id,
            api_key,
            api_version: reply.waiter.api_version,
            body: ResponseBody::Message(Box::new(body)),
        }));
    }
}

fn init_response(result: Result<(i64, i16), ErrorCode>) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    match result {
        Ok((producer_id, epoch)) => {
            response.producer_id = ProducerId(producer_id);
            response.producer_epoch = epoch;
        }
        Err(code) => {
            response.error_code = code.code();
            response.producer_id = ProducerId(-1);
            response.producer_epoch = -1;
        }
    }
    response
}

fn add_partitions_response(
    topics: &[(TopicName, Vec<i32>)],
    code: impl Fn(&TopicName, i32) -> ErrorCode,
) -> ResponseKind {
    let results = topics
        .iter()
        .map(|(name, indexes)| {
            AddPartitionsToTxnTopicResult::default().with_name(name.clone()).with_results_by_partition(
                indexes
                    .iter()
                    .map(|&index| {
                        AddPartitionsToTxnPartitionResult::default()
                            .with_partition_index(index)
                            .with_partition_error_code(code(name, index).code())
                    })
                    .collect(),
            )
        })
        .collect();
    ResponseKind::AddPartitionsToTxn(AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results))
}

/// Each transactional id's last state in a `__transaction_state` partition's log (an id whose
/// last record is a tombstone is left out).
fn read_txn_log(partition: &crate::partition::Partition) -> std::io::Result<BTreeMap<String, TxnMetadata>> {
    let mut loaded: BTreeMap<String, Option<TxnMetadata>> = BTreeMap::new();
    partition.log.for_each_batch(|bytes| {
        if crate::log::batch::BatchHeader::parse(bytes).is_some_and(|h| h.is_control()) {
            return;
        }
        for record in crate::log::batch::payload_records(bytes).unwrap_or_default() {
            if let Some((id, meta)) = records::decode(record.key.as_deref(), record.value.as_deref()) {
                loaded.insert(id, meta);
            }
        }
    })?;
    Ok(loaded.into_iter().filter_map(|(id, meta)| Some((id, meta?))).collect())
}
