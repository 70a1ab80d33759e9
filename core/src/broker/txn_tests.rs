//! Transactions at the partitions: transactional batches, markers, the last stable offset and
//! what read_committed consumers see.

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::*;
use kafka_protocol::messages::{
    add_partitions_to_txn_request, describe_producers_request, offset_fetch_request, txn_offset_commit_request,
};
use kafka_protocol::protocol::StrBytes;

use super::fetch::READ_COMMITTED;
use super::tests::{fetch_request, fetched_offsets, idempotent, Harness};
use crate::error::ErrorCode;
use crate::log::batch::build::transactional;
use crate::storage::MemStorage;
use crate::txn::producer::TxnEnd;

/// Appends a transactional batch as a verified transactional Produce would.
fn append_transactional(h: &mut Harness, producer_id: i64, sequence: i32, count: usize) -> i64 {
    let records = Bytes::from(transactional(idempotent(producer_id, 0, sequence, count)));
    let appended = h.broker.append_partition(h.now_ms, "t", 0, -1, Some(records), true).expect("appended");
    h.broker.after_input();
    h.run_io();
    appended.base_offset
}

fn markers_request(producer_id: i64, epoch: i16, end: TxnEnd, partitions: Vec<i32>) -> RequestKind {
    RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default().with_markers(vec![
        WritableTxnMarker::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_transaction_result(end == TxnEnd::Commit)
            .with_coordinator_epoch(0)
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_indexes(partitions)]),
    ]))
}

/// Each partition's error code in a WriteTxnMarkers answer.
fn marker_errors(response: ResponseKind) -> Vec<i16> {
    let ResponseKind::WriteTxnMarkers(response) = response else { panic!("not a markers response") };
    response.markers[0].topics[0].partitions.iter().map(|p| p.error_code).collect()
}

/// Ends `producer_id`'s transaction in partition 0 through WriteTxnMarkers; the marker's offset.
fn end(h: &mut Harness, producer_id: i64, end: TxnEnd) -> i64 {
    let marker_offset = h.broker.partition("t", 0).unwrap().log_end_offset();
    let response = h.one(ApiKey::WriteTxnMarkers, 1, markers_request(producer_id, 0, end, vec![0]));
    assert_eq!(marker_errors(response), vec![0]);
    marker_offset
}

fn fetch(h: &mut Harness, offset: i64, isolation_level: i8) -> FetchResponse {
    let RequestKind::Fetch(request) = fetch_request("t", 0, offset, 0, 0) else { unreachable!() };
    let ResponseKind::Fetch(response) =
        h.one(ApiKey::Fetch, 11, RequestKind::Fetch(request.with_isolation_level(isolation_level)))
    else {
        panic!("not a fetch response")
    };
    response
}

fn offsets(response: &FetchResponse) -> Vec<i64> {
    fetched_offsets(&ResponseKind::Fetch(response.clone())).2
}

fn aborted(response: &FetchResponse) -> Vec<(i64, i64)> {
    let partition = &response.responses[0].partitions[0];
    partition.aborted_transactions.iter().flatten().map(|t| (t.producer_id.0, t.first_offset)).collect()
}

fn latest(h: &mut Harness, isolation_level: i8) -> i64 {
    let request = ListOffsetsRequest::default().with_isolation_level(isolation_level).with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1)]),
    ]);
    let ResponseKind::ListOffsets(response) = h.one(ApiKey::ListOffsets, 7, RequestKind::ListOffsets(request)) else {
        panic!("not a list offsets response")
    };
    response.topics[0].partitions[0].offset
}

#[test]
fn read_committed_stops_at_an_open_transaction_and_learns_which_were_aborted() {
    let mut h = Harness::new();
    assert_eq!(h.create_topic("t", 1, &[]), 0);
    // Producer 7's transaction [0, 1], then producer 8's transaction from 2 on.
    assert_eq!(append_transactional(&mut h, 7, 0, 2), 0);
    assert_eq!(append_transactional(&mut h, 8, 0, 1), 2);
    let response = fetch(&mut h, 0, READ_COMMITTED);
    assert_eq!(response.responses[0].partitions[0].last_stable_offset, 0);
    assert_eq!(offsets(&response), Vec::<i64>::new(), "nothing is stable yet");
    assert_eq!(offsets(&fetch(&mut h, 0, 0)), vec![0, 2], "read_uncommitted sees it all");
    assert_eq!((latest(&mut h, READ_COMMITTED), latest(&mut h, 0)), (0, 3));

    // 7 aborts: its records and marker become readable, flagged as aborted.
    assert_eq!(end(&mut h, 7, TxnEnd::Abort), 3);
    let response = fetch(&mut h, 0, READ_COMMITTED);
    assert_eq!(response.responses[0].partitions[0].last_stable_offset, 2);
    assert_eq!(offsets(&response), vec![0]);
    assert_eq!(aborted(&response), vec![(7, 0)]);

    // 8 commits: everything is stable; a fetch past 7's abort no longer hears of it.
    assert_eq!(end(&mut h, 8, TxnEnd::Commit), 4);
    let response = fetch(&mut h, 0, READ_COMMITTED);
    assert_eq!(response.responses[0].partitions[0].last_stable_offset, 5);
    assert_eq!(offsets(&response), vec![0, 2, 3, 4]);
    assert_eq!(aborted(&response), vec![(7, 0)]);
    assert_eq!(aborted(&fetch(&mut h, 4, READ_COMMITTED)), vec![]);
    assert_eq!(latest(&mut h, READ_COMMITTED), 5);
}

#[test]
fn markers_survive_a_restart_and_a_fenced_coordinators_marker_is_refused() {
    let storage = MemStorage::new();
    let mut h = Harness::on(storage.clone());
    assert_eq!(h.create_topic("t", 1, &[]), 0);
    append_transactional(&mut h, 7, 0, 2);
    append_transactional(&mut h, 9, 0, 1);
    end(&mut h, 7, TxnEnd::Abort);
    // Producer 9 wrote at epoch 0 here; a marker at an older epoch is a fenced coordinator's.
    // A partition this node does not have is named as such.
    let response = h.one(ApiKey::WriteTxnMarkers, 1, markers_request(9, -1, TxnEnd::Commit, vec![0, 5]));
    assert_eq!(
        marker_errors(response),
        vec![ErrorCode::InvalidProducerEpoch.code(), ErrorCode::UnknownTopicOrPartition.code()]
    );

    // The partition rebuilds its open transactions and aborted index from the log.
    drop(h);
    storage.crash();
    let mut h = Harness::on(storage);
    let response = fetch(&mut h, 0, READ_COMMITTED);
    assert_eq!(response.responses[0].partitions[0].last_stable_offset, 2, "9's transaction is still open");
    assert_eq!(offsets(&response), vec![0]);
    assert_eq!(aborted(&response), vec![(7, 0)]);
}

// ----- a transactional producer against the single node's coordinator -----

fn txn_id(id: &str) -> Option<TransactionalId> {
    Some(TransactionalId(StrBytes::from_string(id.into())))
}

pub(super) fn init_request(id: &str, timeout_ms: i32) -> RequestKind {
    RequestKind::InitProducerId(
        InitProducerIdRequest::default()
            .with_transactional_id(txn_id(id))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    )
}

/// (error, producer id, epoch) of an InitProducerId answer.
pub(super) fn init_result(response: ResponseKind) -> (i16, i64, i16) {
    let ResponseKind::InitProducerId(r) = response else { panic!("not an InitProducerId answer: {response:?}") };
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

fn init(h: &mut Harness, id: &str, timeout_ms: i32) -> (i16, i64, i16) {
    init_result(h.one(ApiKey::InitProducerId, 4, init_request(id, timeout_ms)))
}

pub(super) fn add_request(id: &str, producer_id: i64, epoch: i16, topic: &str, partitions: Vec<i32>) -> RequestKind {
    RequestKind::AddPartitionsToTxn(
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_string(id.into())))
            .with_v3_and_below_producer_id(ProducerId(producer_id))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(partitions)]),
    )
}

/// Each partition's error in an AddPartitionsToTxn (v0-3) answer.
pub(super) fn add_result(response: ResponseKind) -> Vec<i16> {
    let ResponseKind::AddPartitionsToTxn(r) = response else { panic!("not an AddPartitionsToTxn answer") };
    r.results_by_topic_v3_and_below[0].results_by_partition.iter().map(|p| p.partition_error_code).collect()
}

fn add(h: &mut Harness, id: &str, producer_id: i64, epoch: i16, partitions: Vec<i32>) -> Vec<i16> {
    add_result(h.one(ApiKey::AddPartitionsToTxn, 3, add_request(id, producer_id, epoch, "t", partitions)))
}

/// A transactional Produce of two records at `sequence`.
pub(super) fn txn_produce_request(
    id: &str,
    topic: &str,
    partition: i32,
    (producer_id, epoch): (i64, i16),
    sequence: i32,
) -> RequestKind {
    let records = transactional(idempotent(producer_id, epoch, sequence, 2));
    let RequestKind::Produce(request) = super::tests::produce_request(topic, partition, -1, records) else {
        unreachable!()
    };
    RequestKind::Produce(request.with_transactional_id(txn_id(id)))
}

fn produce_txn(h: &mut Harness, id: &str, partition: i32, producer_id: i64, epoch: i16, sequence: i32) -> i16 {
    let request = txn_produce_request(id, "t", partition, (producer_id, epoch), sequence);
    super::tests::produce_result(&h.one(ApiKey::Produce, 9, request)).0
}

pub(super) fn end_request(id: &str, producer_id: i64, epoch: i16, commit: bool) -> RequestKind {
    RequestKind::EndTxn(
        EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(id.into())))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_committed(commit),
    )
}

pub(super) fn end_result(response: ResponseKind) -> i16 {
    let ResponseKind::EndTxn(r) = response else { panic!("not an EndTxn answer") };
    r.error_code
}

fn end_txn(h: &mut Harness, id: &str, producer_id: i64, epoch: i16, commit: bool) -> i16 {
    end_result(h.one(ApiKey::EndTxn, 3, end_request(id, producer_id, epoch, commit)))
}

#[test]
fn a_transaction_commits_or_aborts_for_read_committed_consumers() {
    let mut h = Harness::new();
    assert_eq!(h.create_topic("t", 1, &[]), 0);
    let (error, producer_id, epoch) = init(&mut h, "tx", 60_000);
    assert_eq!((error, epoch), (0, 0));
    // A batch for a partition not added to the transaction is refused: it would open a
    // transaction the coordinator does not know, and nobody would ever end it.
    assert_eq!(produce_txn(&mut h, "tx", 0, producer_id, epoch, 0), ErrorCode::InvalidTxnState.code());
    assert_eq!(add(&mut h, "tx", producer_id, epoch, vec![0]), vec![0]);
    // Every batch of a transactional record set must be the producer's, in its transaction:
    // a plain batch behind a transactional one would slip past the check.
    let mut mixed = transactional(idempotent(producer_id, epoch, 0, 1));
    mixed.extend(idempotent(producer_id + 1, 0, 0, 1));
    let RequestKind::Produce(request) = super::tests::produce_request("t", 0, -1, mixed) else { unreachable!() };
    let request = RequestKind::Produce(request.with_transactional_id(txn_id("tx")));
    assert_eq!(super::tests::produce_result(&h.one(ApiKey::Produce, 9, request)).0, ErrorCode::InvalidRecord.code());
    assert_eq!(produce_txn(&mut h, "tx", 0, producer_id, epoch, 0), 0);
    assert_eq!(produce_txn(&mut h, "tx", 0, producer_id, epoch, 2), 0);
    assert_eq!(offsets(&fetch(&mut h, 0, READ_COMMITTED)), Vec::<i64>::new());
    assert_eq!(end_txn(&mut h, "tx", producer_id, epoch, true), 0);
    let response = fetch(&mut h, 0, READ_COMMITTED);
    assert_eq!(offsets(&response), vec![0, 2, 4], "both batches and the commit marker");
    assert_eq!(aborted(&response), vec![]);

    // The next transaction aborts: its records are readable only as aborted.
    assert_eq!(add(&mut h, "tx", producer_id, epoch, vec![0]), vec![0]);
    assert_eq!(produce_txn(&mut h, "tx", 0, producer_id, epoch, 4), 0);
    assert_eq!(end_txn(&mut h, "tx", producer_id, epoch, false), 0);
    let response = fetch(&mut h, 5, READ_COMMITTED);
    assert_eq!(offsets(&response), vec![5, 7]);
    assert_eq!(aborted(&response), vec![(producer_id, 5)]);
}

#[test]
fn a_new_producer_with_the_id_fences_the_old_one_and_aborts_its_transaction() {
    let mut h = Harness::new();
    assert_eq!(h.create_topic("t", 1, &[]), 0);
    let (_, producer_id, old) = init(&mut h, "tx", 60_000);
    add(&mut h, "tx", producer_id, old, vec![0]);
    assert_eq!(produce_txn(&mut h, "tx", 0, producer_id, old, 0), 0);
    // The replacement's first InitProducerId aborts the open transaction and asks it to retry.
    assert_eq!(init(&mut h, "tx", 60_000).0, ErrorCode::ConcurrentTransactions.code());
    let (error, same_id, new) = init(&mut h, "tx", 60_000);
    assert_eq!((error, same_id), (0, producer_id));
    assert!(new > old + 1, "the abort and the new producer each moved the epoch: {new}");
    let response = fetch(&mut h, 0, READ_COMMITTED);
    assert_eq!(aborted(&response), vec![(producer_id, 0)]);
    // The zombie is refused everywhere.
    assert_eq!(end_txn(&mut h, "tx", producer_id, old, true), ErrorCode::ProducerFenced.code());
    assert_eq!(add(&mut h, "tx", producer_id, old, vec![0]), vec![ErrorCode::ProducerFenced.code()]);
    assert_eq!(produce_txn(&mut h, "tx", 0, producer_id, old, 2), ErrorCode::InvalidProducerEpoch.code());
}

#[test]
fn an_abandoned_transaction_is_aborted_after_its_timeout_and_survives_a_restart_decided() {
    let storage = MemStorage::new();
    let mut h = Harness::on(storage.clone());
    assert_eq!(h.create_topic("t", 1, &[]), 0);
    let (_, producer_id, epoch) = init(&mut h, "tx", 5_000);
    add(&mut h, "tx", producer_id, epoch, vec![0]);
    assert_eq!(produce_txn(&mut h, "tx", 0, producer_id, epoch, 0), 0);
    assert_eq!(fetch(&mut h, 0, READ_COMMITTED).responses[0].partitions[0].last_stable_offset, 0);
    for _ in 0..8 {
        h.now_ms += 1_000;
        let now = h.now_ms;
        h.broker.handle_timeout(now);
        h.run_io();
    }
    let response = fetch(&mut h, 0, READ_COMMITTED);
    assert_eq!(response.responses[0].partitions[0].last_stable_offset, 3, "aborted by the coordinator");
    assert_eq!(aborted(&response), vec![(producer_id, 0)]);
    assert_eq!(end_txn(&mut h, "tx", producer_id, epoch, true), ErrorCode::ProducerFenced.code());

    // The coordinator's state is in __transaction_state: after a restart the producer id is
    // the same and its epoch moves on from the fence.
    drop(h);
    storage.crash();
    let mut h = Harness::on(storage);
    let (error, same_id, after) = init(&mut h, "tx", 5_000);
    assert_eq!((error, same_id), (0, producer_id));
    assert!(after > epoch + 1, "{after}");
}

fn add_offsets(h: &mut Harness, id: &str, producer_id: i64, epoch: i16, group: &str) -> i16 {
    let request = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(id.into())))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_group_id(GroupId(StrBytes::from_string(group.into())));
    let ResponseKind::AddOffsetsToTxn(r) = h.one(ApiKey::AddOffsetsToTxn, 3, RequestKind::AddOffsetsToTxn(request))
    else {
        panic!()
    };
    r.error_code
}

fn txn_commit_offset(h: &mut Harness, id: &str, producer_id: i64, epoch: i16, group: &str, offset: i64) -> i16 {
    txn_commit_offset_at(h, 3, id, (producer_id, epoch), group, offset)
}

fn txn_commit_offset_at(
    h: &mut Harness,
    version: i16,
    id: &str,
    (producer_id, epoch): (i64, i16),
    group: &str,
    offset: i64,
) -> i16 {
    let request = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(id.into())))
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_topics(vec![txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    let ResponseKind::TxnOffsetCommit(r) =
        h.one(ApiKey::TxnOffsetCommit, version, RequestKind::TxnOffsetCommit(request))
    else {
        panic!()
    };
    r.topics[0].partitions[0].error_code
}

/// The group's committed offset of t-0 as a consumer asking for stable offsets sees it:
/// (error, offset).
fn stable_offset(h: &mut Harness, group: &str) -> (i16, i64) {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_require_stable(true)
        .with_topics(Some(vec![offset_fetch_request::OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_indexes(vec![0])]));
    let ResponseKind::OffsetFetch(r) = h.one(ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(request)) else {
        panic!()
    };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.committed_offset)
}

#[test]
fn offsets_committed_in_a_transaction_take_effect_with_its_commit_only() {
    let storage = MemStorage::new();
    let mut h = Harness::on(storage.clone());
    assert_eq!(h.create_topic("t", 1, &[]), 0);
    let (_, producer_id, epoch) = init(&mut h, "tx", 60_000);
    // Without AddOffsetsToTxn the offsets partition is not in the transaction.
    assert_eq!(txn_commit_offset(&mut h, "tx", producer_id, epoch, "g", 5), ErrorCode::InvalidTxnState.code());
    assert_eq!(add_offsets(&mut h, "tx", producer_id, epoch, "g"), 0);
    assert_eq!(txn_commit_offset(&mut h, "tx", producer_id, epoch, "g", 5), 0);
    assert_eq!(stable_offset(&mut h, "g"), (ErrorCode::UnstableOffsetCommit.code(), -1));
    assert_eq!(end_txn(&mut h, "tx", producer_id, epoch, true), 0);
    assert_eq!(stable_offset(&mut h, "g"), (0, 5));

    // An aborted transaction's offsets never take effect.
    assert_eq!(add_offsets(&mut h, "tx", producer_id, epoch, "g"), 0);
    assert_eq!(txn_commit_offset(&mut h, "tx", producer_id, epoch, "g", 9), 0);
    assert_eq!(end_txn(&mut h, "tx", producer_id, epoch, false), 0);
    assert_eq!(stable_offset(&mut h, "g"), (0, 5));

    // A restart replays the offsets log: the marker decides again.
    drop(h);
    storage.crash();
    let mut h = Harness::on(storage);
    assert_eq!(stable_offset(&mut h, "g"), (0, 5));
}

#[test]
fn the_admin_apis_describe_transactions_and_producers() {
    let mut h = Harness::new();
    assert_eq!(h.create_topic("t", 1, &[]), 0);
    let (_, producer_id, epoch) = init(&mut h, "tx", 60_000);
    add(&mut h, "tx", producer_id, epoch, vec![0]);
    assert_eq!(produce_txn(&mut h, "tx", 0, producer_id, epoch, 0), 0);

    let request = DescribeTransactionsRequest::default().with_transactional_ids(vec![
        TransactionalId(StrBytes::from_static_str("tx")),
        TransactionalId(StrBytes::from_static_str("unknown")),
    ]);
    let ResponseKind::DescribeTransactions(r) =
        h.one(ApiKey::DescribeTransactions, 0, RequestKind::DescribeTransactions(request))
    else {
        panic!()
    };
    let described = &r.transaction_states[0];
    assert_eq!((described.error_code, described.transaction_state.as_str()), (0, "Ongoing"));
    assert_eq!((described.producer_id.0, described.topics[0].partitions.clone()), (producer_id, vec![0]));
    assert_eq!(r.transaction_states[1].error_code, ErrorCode::TransactionalIdNotFound.code());

    let list = |h: &mut Harness, states: Vec<&'static str>| {
        let request = ListTransactionsRequest::default()
            .with_state_filters(states.into_iter().map(StrBytes::from_static_str).collect())
            .with_duration_filter(-1);
        let ResponseKind::ListTransactions(r) =
            h.one(ApiKey::ListTransactions, 1, RequestKind::ListTransactions(request))
        else {
            panic!()
        };
        r
    };
    let listed = list(&mut h, vec!["Ongoing", "Bogus"]);
    assert_eq!(listed.transaction_states.len(), 1);
    assert_eq!(listed.unknown_state_filters, vec![StrBytes::from_static_str("Bogus")]);
    assert!(list(&mut h, vec!["CompleteCommit"]).transaction_states.is_empty());

    let request =
        DescribeProducersRequest::default().with_topics(vec![describe_producers_request::TopicRequest::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_indexes(vec![0])]);
    let ResponseKind::DescribeProducers(r) =
        h.one(ApiKey::DescribeProducers, 0, RequestKind::DescribeProducers(request))
    else {
        panic!()
    };
    let producers = &r.topics[0].partitions[0].active_producers;
    assert_eq!(producers.len(), 1);
    assert_eq!(
        (producers[0].producer_id.0, producers[0].last_sequence, producers[0].current_txn_start_offset),
        (producer_id, 1, 0)
    );
}

/// EndTxn v5 (the second generation): (error, producer id, epoch).
fn end_v5(h: &mut Harness, id: &str, producer: (i64, i16), commit: bool) -> (i16, i64, i16) {
    let ResponseKind::EndTxn(r) = h.one(ApiKey::EndTxn, 5, end_request(id, producer.0, producer.1, commit)) else {
        panic!()
    };
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

#[test]
fn the_second_generation_adds_partitions_implicitly_and_bumps_the_epoch_at_every_end() {
    let mut h = Harness::new();
    assert_eq!(h.create_topic("t", 1, &[]), 0);
    let (error, producer_id, epoch) = init(&mut h, "tx", 60_000);
    assert_eq!(error, 0);
    // Produce v12 and TxnOffsetCommit v5 put their partitions in the transaction themselves:
    // no AddPartitionsToTxn, no AddOffsetsToTxn.
    let request = txn_produce_request("tx", "t", 0, (producer_id, epoch), 0);
    assert_eq!(super::tests::produce_result(&h.one(ApiKey::Produce, 12, request)).0, 0);
    assert_eq!(txn_commit_offset_at(&mut h, 5, "tx", (producer_id, epoch), "g", 7), 0);
    assert_eq!(stable_offset(&mut h, "g").0, ErrorCode::UnstableOffsetCommit.code());
    let (error, same_id, bumped) = end_v5(&mut h, "tx", (producer_id, epoch), true);
    assert_eq!((error, same_id, bumped), (0, producer_id, epoch + 1), "the commit bumps the epoch");
    assert_eq!(offsets(&fetch(&mut h, 0, READ_COMMITTED)), vec![0, 2], "the batch and its marker");
    assert_eq!(stable_offset(&mut h, "g"), (0, 7));

    // The next transaction runs on the bumped epoch, its sequence from 0. A late EndTxn of the
    // finished transaction (the old epoch) cannot end it (KAFKA-17754).
    let request = txn_produce_request("tx", "t", 0, (producer_id, bumped), 0);
    assert_eq!(super::tests::produce_result(&h.one(ApiKey::Produce, 12, request)).0, 0);
    let (late, _, _) = end_v5(&mut h, "tx", (producer_id, epoch), false);
    assert_ne!(late, 0, "an EndTxn from the previous transaction is refused");
    assert_eq!(fetch(&mut h, 3, READ_COMMITTED).responses[0].partitions[0].last_stable_offset, 3, "still open");
    let (error, _, next) = end_v5(&mut h, "tx", (producer_id, bumped), true);
    assert_eq!((error, next), (0, bumped + 1));
    assert_eq!(offsets(&fetch(&mut h, 3, READ_COMMITTED)), vec![3, 5]);
}
