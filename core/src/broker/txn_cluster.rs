//! Transactions across the brokers of a cluster: what a transaction coordinator and the
//! leaders of its transactions' partitions send each other ([`TxnCall`]).
//!
//! - **Markers.** A coordinator sends the markers of partitions led elsewhere as one
//!   WriteTxnMarkers per leader; the leader answers once they committed. A partition that
//!   took its marker counts as written; any other answer, or none by [`TXN_WRITE_WAIT_MS`],
//!   leaves it to the next tick, which sends it again (to the leader of that moment).
//! - **Verification (KIP-890 part 1).** A leader that gets a producer's first transactional
//!   batch of a transaction, for an id coordinated elsewhere, holds the request and asks the
//!   coordinator (AddPartitionsToTxn v4, `verify_only`) whether the partition is in that
//!   transaction; once answered the request is handled again with the answer. The answer is
//!   kept only while the request that asked is handled again, and a marker written meanwhile
//!   for the producer at the partition throws it away (Kafka's verification guard): the
//!   coordinator may have ended the transaction after answering, and a batch let in then
//!   would open a transaction nobody ends.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, ProduceRequest, ProducerId, TopicName,
    TransactionalId, TxnOffsetCommitRequest, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::group_partitions::Home;
use super::txn::TxnRequest;
use super::{Broker, Output, RequestId, ResponseBody};
use crate::constants::{TXN_TICK_MS, TXN_VERIFY_WAIT_MS, TXN_WRITE_WAIT_MS};
use crate::error::ErrorCode;
use crate::ids::{NodeId, PartitionId};
use crate::peer::PeerMessage;
use crate::txn::calls::TxnCall;
use crate::txn::coordinator::{MarkerJob, Waiter};
use crate::txn::metadata::TxnPartition;

#[derive(Debug, Default)]
pub(super) struct TxnCluster {
    next_token: u64,
    /// Markers sent to other leaders, by token: the transactional id and when to give up.
    markers: BTreeMap<u64, (String, i64)>,
    /// Verifications asked, by token: what each asked about, and when to give up.
    verifying: BTreeMap<u64, Asked>,
    /// Requests held for verifications, by request id, with the tokens they wait for.
    held: BTreeMap<RequestId, Held>,
    /// Guards and answers by (partition, producer id) (see the module's note).
    verdicts: BTreeMap<(PartitionId, i64), Verdict>,
    /// The held request being handled again, which asks nothing more.
    rerunning: Option<RequestId>,
}

#[derive(Debug)]
struct Asked {
    partitions: Vec<(TxnPartition, PartitionId, i64)>,
    deadline_ms: i64,
}

#[derive(Debug)]
struct Held {
    api_version: i16,
    request: HeldRequest,
    tokens: BTreeSet<u64>,
}

#[derive(Debug)]
enum HeldRequest {
    Produce(ProduceRequest),
    TxnOffsetCommit(TxnOffsetCommitRequest),
}

#[derive(Debug, Clone, Copy)]
struct Verdict {
    epoch: i16,
    token: u64,
    /// `None` until the coordinator answers.
    result: Option<Result<(), ErrorCode>>,
}

/// Whether a request asks the coordinator to check its partitions (KIP-890 part 1) or to add
/// them to the transaction (part 2: Produce v12+, TxnOffsetCommit v5+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AskMode {
    Verify,
    Add,
}

/// What a request must ask, and of which coordinator (`None`: the one here).
pub(super) struct Needed {
    to: Option<NodeId>,
    mode: AskMode,
    asks: Vec<Ask>,
}

/// A partition a request needs verified or added: where, and by which producer.
pub(super) struct Ask {
    pub partition: TxnPartition,
    pub id: PartitionId,
    pub producer_id: i64,
    pub epoch: i16,
}

impl Broker {
    /// The node leading `topic`-`index`, if that is another, unfenced broker.
    pub(super) fn leader_elsewhere(&self, topic: &str, index: i32) -> Option<NodeId> {
        let image = self.quorum.as_ref()?.image();
        let topic_id = self.topic(topic)?.record.id;
        let leader = image.topics.get(&topic_id)?.partitions.get(usize::try_from(index).ok()?)?.leader?;
        let live = image.brokers.get(&leader).is_some_and(|b| !b.fenced);
        (leader.0 != self.config.node_id && live).then_some(leader)
    }

    fn txn_token(&mut self) -> u64 {
        self.txn_cluster.next_token += 1;
        self.txn_cluster.next_token
    }

    fn txn_tick_soon(&mut self, now_ms: i64) {
        self.next_txn_tick_ms = self.next_txn_tick_ms.min(now_ms + TXN_TICK_MS);
    }

    // ----- markers -----

    /// Sends `job`'s markers for `partitions` to their leader `to`.
    pub(super) fn send_remote_markers(
        &mut self,
        now_ms: i64,
        to: NodeId,
        job: &MarkerJob,
        partitions: Vec<TxnPartition>,
        coordinator_epoch: i32,
    ) {
        let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
        for (topic, index) in partitions {
            match topics.iter_mut().find(|t| *t.name.0 == *topic) {
                Some(t) => t.partition_indexes.push(index),
                None => topics.push(
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic)))
                        .with_partition_indexes(vec![index]),
                ),
            }
        }
        let marker = WritableTxnMarker::default()
            .with_producer_id(ProducerId(job.producer_id))
            .with_producer_epoch(job.producer_epoch)
            .with_transaction_result(job.commit)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(topics);
        let token = self.txn_token();
        self.txn_cluster.markers.insert(token, (job.id.clone(), now_ms + TXN_WRITE_WAIT_MS));
        let request = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
        self.outputs.push_back(Output::Peer { to, message: PeerMessage::Txn(TxnCall::Markers { token, request }) });
        self.txn_tick_soon(now_ms);
    }

    /// Transactional ids with markers on their way to other leaders.
    pub(super) fn markers_in_flight(&self) -> BTreeSet<String> {
        self.txn_cluster.markers.values().map(|(id, _)| id.clone()).collect()
    }

    // ----- verification, and the second generation's implicit adds -----

    /// What a transactional request must ask the coordinator before it is handled: the
    /// partitions whose first batch opens the producer's transaction here. `Verify` asks only
    /// a coordinator on another broker (one here answers at once); `Add` (KIP-890 part 2)
    /// asks wherever it is. `None` when nothing needs asking (or this request is being handled
    /// again).
    pub(super) fn asks_needed(&self, id: RequestId, txn_id: &str, asks: Vec<Ask>, mode: AskMode) -> Option<Needed> {
        if self.txn_cluster.rerunning == Some(id) || asks.is_empty() {
            return None;
        }
        let to = match (self.txn_home(txn_id), mode) {
            (Home::There(coordinator, ..), _) => Some(NodeId(coordinator.0)),
            (Home::Here, AskMode::Add) => None,
            _ => return None,
        };
        Some(Needed { to, mode, asks })
    }

    /// Holds a Produce until the coordinator answered what it needs.
    pub(super) fn hold_produce(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        txn_id: &str,
        needed: Needed,
        request: ProduceRequest,
    ) {
        self.hold(now_ms, id, api_version, txn_id, needed, HeldRequest::Produce(request));
    }

    /// Holds a TxnOffsetCommit until the coordinator answered what it needs.
    pub(super) fn hold_txn_offset_commit(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        needed: Needed,
        request: TxnOffsetCommitRequest,
    ) {
        let txn_id = request.transactional_id.0.to_string();
        self.hold(now_ms, id, api_version, &txn_id, needed, HeldRequest::TxnOffsetCommit(request));
    }

    fn hold(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        txn_id: &str,
        needed: Needed,
        request: HeldRequest,
    ) {
        let mut tokens = BTreeSet::new();
        // A verification asked already by an earlier request, in the same epoch: wait for
        // that answer.
        let mut new: BTreeMap<(i64, i16), Vec<Ask>> = BTreeMap::new();
        for ask in needed.asks {
            match self.txn_cluster.verdicts.get(&(ask.id, ask.producer_id)) {
                Some(v) if needed.mode == AskMode::Verify && v.epoch == ask.epoch && v.result.is_none() => {
                    tokens.insert(v.token);
                }
                _ => new.entry((ask.producer_id, ask.epoch)).or_default().push(ask),
            }
        }
        let mut calls = Vec::new();
        for ((producer_id, epoch), asks) in new {
            let token = self.txn_token();
            tokens.insert(token);
            // Only an answer from another broker needs a guard: one here is acted on at once.
            if needed.to.is_some() {
                for ask in &asks {
                    let verdict = Verdict { epoch, token, result: None };
                    self.txn_cluster.verdicts.insert((ask.id, producer_id), verdict);
                }
            }
            let partitions: Vec<(TxnPartition, PartitionId, i64)> =
                asks.into_iter().map(|a| (a.partition, a.id, a.producer_id)).collect();
            calls.push((token, (producer_id, epoch), partitions.iter().map(|p| p.0.clone()).collect::<Vec<_>>()));
            self.txn_cluster.verifying.insert(token, Asked { partitions, deadline_ms: now_ms + TXN_VERIFY_WAIT_MS });
        }
        self.txn_cluster.held.insert(id, Held { api_version, request, tokens });
        self.txn_tick_soon(now_ms);
        for (token, producer, partitions) in calls {
            match needed.to {
                Some(coordinator) => {
                    let request = leader_request(txn_id, producer, &partitions, needed.mode == AskMode::Verify);
                    let message = PeerMessage::Txn(TxnCall::Verify { token, request });
                    self.outputs.push_back(Output::Peer { to: coordinator, message });
                }
                None => {
                    let waiter = self.internal_request_id();
                    self.txn_requests.insert(waiter, TxnRequest::Implicit(token));
                    let waiter = Waiter { id: waiter, api_version: 0 };
                    self.txn.add_partitions(now_ms, waiter, txn_id, producer.0, producer.1, &partitions, true);
                }
            }
        }
        if needed.to.is_none() {
            self.drain_txn(now_ms);
        }
    }

    /// The answer a verification brought for `partition`, while its guard stands.
    pub(super) fn remote_verdict(
        &self,
        partition: &TxnPartition,
        producer_id: i64,
        epoch: i16,
    ) -> Result<(), ErrorCode> {
        let id = self.partition(&partition.0, partition.1).map(|p| p.id);
        let verdict = id.and_then(|id| self.txn_cluster.verdicts.get(&(id, producer_id)));
        match verdict {
            Some(Verdict { epoch: e, result: Some(result), .. }) if *e == epoch => *result,
            _ => Err(ErrorCode::CoordinatorNotAvailable),
        }
    }

    /// A marker for `producer_id` was written at `partition`: an answer not used yet may
    /// describe the transaction it ended.
    pub(super) fn drop_verdict(&mut self, partition: PartitionId, producer_id: i64) {
        self.txn_cluster.verdicts.remove(&(partition, producer_id));
    }

    /// The coordinator answered verification `token` (`None`: it did not in time).
    fn verified(&mut self, now_ms: i64, token: u64, response: Option<AddPartitionsToTxnResponse>) {
        let Some(asked) = self.txn_cluster.verifying.remove(&token) else { return };
        for (partition, id, producer_id) in &asked.partitions {
            let result = match &response {
                None => Err(ErrorCode::RequestTimedOut),
                Some(r) if r.error_code != 0 => {
                    Err(ErrorCode::from_code(r.error_code).unwrap_or(ErrorCode::CoordinatorNotAvailable))
                }
                Some(r) => partition_result(r, partition),
            };
            if let Some(v) = self.txn_cluster.verdicts.get_mut(&(*id, *producer_id)).filter(|v| v.token == token) {
                v.result = Some(result);
            }
        }
        self.token_answered(now_ms, token);
    }

    /// Every request that waited only for `token` is handled again; then the answers it
    /// brought are dropped.
    pub(super) fn token_answered(&mut self, now_ms: i64, token: u64) {
        self.txn_cluster.verifying.remove(&token);
        let ready: Vec<RequestId> = self
            .txn_cluster
            .held
            .iter_mut()
            .filter_map(|(&id, held)| (held.tokens.remove(&token) && held.tokens.is_empty()).then_some(id))
            .collect();
        for id in ready {
            self.rerun_held(now_ms, id);
        }
        self.txn_cluster.verdicts.retain(|_, v| v.token != token);
    }

    /// Handles a held request again, now that its verifications are answered.
    fn rerun_held(&mut self, now_ms: i64, id: RequestId) {
        let Some(held) = self.txn_cluster.held.remove(&id) else { return };
        self.txn_cluster.rerunning = Some(id);
        let (api_key, body) = match held.request {
            HeldRequest::Produce(request) => (ApiKey::Produce, self.produce(now_ms, id, held.api_version, request)),
            HeldRequest::TxnOffsetCommit(request) => (
                ApiKey::TxnOffsetCommit,
                self.txn_offset_commit(now_ms, id, held.api_version, request)
                    .map(|body| ResponseBody::Message(Box::new(body))),
            ),
        };
        self.txn_cluster.rerunning = None;
        if let Some(body) = body {
            self.respond(id, api_key, held.api_version, body);
        }
    }

    // ----- the coordinator's side of verification -----

    /// AddPartitionsToTxn v4+ (between brokers): each transaction's partitions checked against
    /// the coordinator's state. Only `verify_only` is taken; adding partitions this way (which
    /// Kafka's brokers never ask of each other) is refused.
    pub(super) fn verify_for_leader(&self, request: AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
        let mut response = AddPartitionsToTxnResponse::default();
        for transaction in request.transactions {
            let txn_id = transaction.transactional_id.0.to_string();
            let not_here = self.txn_not_here(&txn_id);
            let mut result = AddPartitionsToTxnResult::default().with_transactional_id(transaction.transactional_id);
            for topic in transaction.topics {
                let mut topic_result = AddPartitionsToTxnTopicResult::default().with_name(topic.name.clone());
                for index in topic.partitions {
                    let partition = (topic.name.0.to_string(), index);
                    let code = match not_here {
                        _ if !transaction.verify_only => ErrorCode::InvalidRequest,
                        Some(code) => code,
                        None => self
                            .txn
                            .verify(&txn_id, transaction.producer_id.0, transaction.producer_epoch, &partition)
                            .err()
                            .unwrap_or(ErrorCode::None),
                    };
                    topic_result.results_by_partition.push(
                        AddPartitionsToTxnPartitionResult::default()
                            .with_partition_index(index)
                            .with_partition_error_code(code.code()),
                    );
                }
                result.topic_results.push(topic_result);
            }
            response.results_by_transaction.push(result);
        }
        response
    }

    // ----- answers and time -----

    /// A peer answered a transaction call this node sent.
    pub(super) fn txn_call_answered(&mut self, now_ms: i64, call: TxnCall) {
        match call {
            TxnCall::Verified { token, response } => self.verified(now_ms, token, Some(response)),
            TxnCall::MarkersWritten { token, response } => {
                let Some((txn_id, _)) = self.txn_cluster.markers.remove(&token) else { return };
                for marker in &response.markers {
                    for topic in &marker.topics {
                        for partition in &topic.partitions {
                            // Taken, or refused as older than the producer's batches there
                            // (this decision is stale for that partition): nothing more to
                            // write. Anything else is sent again at the next tick.
                            let code = ErrorCode::from_code(partition.error_code);
                            if matches!(code, Some(ErrorCode::None | ErrorCode::InvalidProducerEpoch)) {
                                let written = (topic.name.0.to_string(), partition.partition_index);
                                self.txn.marker_written(now_ms, &txn_id, &written);
                            }
                        }
                    }
                }
                self.drain_txn(now_ms);
            }
            TxnCall::Verify { .. } | TxnCall::Markers { .. } => {}
        }
    }

    /// Calls past their time: markers are sent again by the tick that follows, verifications
    /// count as unanswered.
    pub(super) fn txn_cluster_tick(&mut self, now_ms: i64) {
        self.txn_cluster.markers.retain(|_, (_, deadline_ms)| *deadline_ms > now_ms);
        let due: Vec<u64> =
            self.txn_cluster.verifying.iter().filter(|(_, a)| a.deadline_ms <= now_ms).map(|(&t, _)| t).collect();
        for token in due {
            self.verified(now_ms, token, None);
        }
    }

    /// Whether calls wait for peers (the tick must run even where no state partition is).
    pub(super) fn txn_calls_waiting(&self) -> bool {
        !self.txn_cluster.markers.is_empty() || !self.txn_cluster.verifying.is_empty()
    }
}

/// A partition leader's AddPartitionsToTxn v4 for one producer of `txn_id`.
fn leader_request(
    txn_id: &str,
    producer: (i64, i16),
    partitions: &[TxnPartition],
    verify_only: bool,
) -> AddPartitionsToTxnRequest {
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (topic, index) in partitions {
        match topics.iter_mut().find(|t| *t.name.0 == **topic) {
            Some(t) => t.partitions.push(*index),
            None => topics.push(
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(vec![*index]),
            ),
        }
    }
    let transaction = AddPartitionsToTxnTransaction::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(txn_id.to_string())))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_verify_only(verify_only)
        .with_topics(topics);
    AddPartitionsToTxnRequest::default().with_transactions(vec![transaction])
}

/// The code `response` gives `partition`; a partition it leaves out was not verified.
fn partition_result(response: &AddPartitionsToTxnResponse, (topic, index): &TxnPartition) -> Result<(), ErrorCode> {
    let code = response
        .results_by_transaction
        .iter()
        .flat_map(|t| &t.topic_results)
        .filter(|t| *t.name.0 == **topic)
        .flat_map(|t| &t.results_by_partition)
        .find(|p| p.partition_index == *index)
        .map_or(Some(ErrorCode::CoordinatorNotAvailable), |p| ErrorCode::from_code(p.partition_error_code))
        .unwrap_or(ErrorCode::CoordinatorNotAvailable);
    if code == ErrorCode::None {
        Ok(())
    } else {
        Err(code)
    }
}
