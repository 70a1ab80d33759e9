//! Transactions on an in-process cluster of three brokers: coordinators at the leaders of
//! `__transaction_state`'s partitions, markers and verifications sent between brokers, and a
//! coordinator's failover.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::replication_tests::{cluster_with_topic, roles};
use super::tests::{produce_result, QuorumCluster};
use super::txn::TXN_TOPIC;
use super::txn_tests::{
    add_request, add_result, end_request, end_result, init_request, init_result, txn_produce_request,
};
use crate::error::ErrorCode;

const TXN: &str = "txn-a";

/// The coordinator of `id` as node `node` names it: (error, node id).
fn txn_coordinator(c: &mut QuorumCluster, node: i32, id: &str) -> (i16, i32) {
    let body = RequestKind::FindCoordinator(
        FindCoordinatorRequest::default().with_key_type(1).with_key(StrBytes::from_string(id.into())),
    );
    let ResponseKind::FindCoordinator(r) = c.ask(node, ApiKey::FindCoordinator, 3, body) else { panic!() };
    (r.error_code, r.node_id.0)
}

/// Asks until `id` has a coordinator every broker names (the first ask makes the topic).
fn settled_coordinator(c: &mut QuorumCluster, id: &str) -> i32 {
    for _ in 0..30 {
        let nodes: Vec<i32> = c.brokers.keys().copied().collect();
        let named: Vec<(i16, i32)> = nodes.into_iter().map(|n| txn_coordinator(c, n, id)).collect();
        if named.iter().all(|&(e, n)| e == 0 && n == named[0].1) {
            return named[0].1;
        }
        c.run_until(c.now_ms + 1_000);
    }
    panic!("no coordinator settled for {id}");
}

/// The last stable offset of `orders-<index>` at its leader.
fn stable(c: &mut QuorumCluster, index: i32) -> i64 {
    let leader = roles(c, *c.brokers.keys().next().unwrap(), "orders", index).0;
    c.brokers[&leader].1.partition("orders", index).unwrap().last_stable_offset()
}

fn end_offset(c: &mut QuorumCluster, index: i32) -> i64 {
    let leader = roles(c, *c.brokers.keys().next().unwrap(), "orders", index).0;
    c.brokers[&leader].1.partition("orders", index).unwrap().log_end_offset()
}

/// A transactional produce of two records to `orders-<index>` at its leader: the error.
fn produce(c: &mut QuorumCluster, index: i32, producer: (i64, i16), sequence: i32) -> i16 {
    let leader = roles(c, *c.brokers.keys().next().unwrap(), "orders", index).0;
    let request = txn_produce_request(TXN, "orders", index, producer, sequence);
    produce_result(&c.call(leader, ApiKey::Produce, 9, request)).0
}

#[test]
fn a_transaction_across_three_leaders_commits_through_markers_sent_between_brokers() {
    let mut c = cluster_with_topic(3);
    let (error, _) = txn_coordinator(&mut c, 1, TXN);
    assert_eq!(error, ErrorCode::CoordinatorNotAvailable.code(), "the state topic is made at the first lookup");
    let coordinator = settled_coordinator(&mut c, TXN);
    assert_eq!(roles(&mut c, coordinator, TXN_TOPIC, super::groups::offsets_partition_of(TXN, 50)).2, vec![1, 2, 3]);
    let other = (1..=3).find(|&n| n != coordinator).unwrap();
    assert_eq!(
        init_result(c.call(other, ApiKey::InitProducerId, 4, init_request(TXN, 60_000))).0,
        ErrorCode::NotCoordinator.code(),
        "only the coordinator serves the id"
    );
    let (error, producer_id, epoch) =
        init_result(c.call(coordinator, ApiKey::InitProducerId, 4, init_request(TXN, 60_000)));
    assert_eq!(error, 0);

    // Partitions 0 and 1 join the transaction; 2 does not, and its leader refuses the batch
    // on the coordinator's word (asked across brokers where it leads elsewhere).
    let added = add_result(c.call(
        coordinator,
        ApiKey::AddPartitionsToTxn,
        3,
        add_request(TXN, producer_id, epoch, "orders", vec![0, 1]),
    ));
    assert_eq!(added, vec![0, 0]);
    for index in 0..2 {
        assert_eq!(produce(&mut c, index, (producer_id, epoch), 0), 0, "partition {index}");
        assert_eq!(stable(&mut c, index), 0, "the open transaction holds partition {index}'s last stable offset");
    }
    assert_eq!(produce(&mut c, 2, (producer_id, epoch), 0), ErrorCode::InvalidTxnState.code());
    // A broker that does not lead the partition sends the producer to the leader, whatever
    // the transaction's state, and one that does not coordinate the group sends it on too.
    let follower = (1..=3).find(|&n| n != roles(&mut c, 1, "orders", 2).0).unwrap();
    let request = txn_produce_request(TXN, "orders", 2, (producer_id, epoch), 0);
    assert_eq!(produce_result(&c.call(follower, ApiKey::Produce, 9, request)).0, ErrorCode::NotLeaderOrFollower.code());
    let body = RequestKind::FindCoordinator(FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")));
    let ResponseKind::FindCoordinator(group_home) = c.ask(1, ApiKey::FindCoordinator, 3, body) else { panic!() };
    let elsewhere = (1..=3).find(|&n| n != group_home.node_id.0).unwrap();
    let commit = RequestKind::TxnOffsetCommit(
        TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str(TXN)))
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_topics(vec![txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("orders")))
                .with_partitions(vec![txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(1)])]),
    );
    let ResponseKind::TxnOffsetCommit(refused) = c.call(elsewhere, ApiKey::TxnOffsetCommit, 3, commit) else {
        panic!()
    };
    assert_eq!(refused.topics[0].partitions[0].error_code, ErrorCode::NotCoordinator.code());
    let leaders: Vec<i32> = (0..3).map(|i| roles(&mut c, 1, "orders", i).0).collect();
    assert!(leaders.iter().any(|&l| l != coordinator), "some partition is led away from the coordinator: {leaders:?}");

    // The commit is answered once decided; the markers follow to each leader, and the last
    // stable offsets pass them.
    let committed = c.call(coordinator, ApiKey::EndTxn, 3, end_request(TXN, producer_id, epoch, true));
    assert_eq!(end_result(committed), 0);
    c.run_until(c.now_ms + 2_000);
    for index in 0..2 {
        assert_eq!(end_offset(&mut c, index), 3, "two records and a marker in partition {index}");
        assert_eq!(stable(&mut c, index), 3, "partition {index} is stable past its marker");
    }
    assert_eq!(end_offset(&mut c, 2), 0, "nothing was written to partition 2");
}

#[test]
fn a_coordinators_successor_loads_an_open_transaction_and_aborts_it_at_its_timeout() {
    let mut c = cluster_with_topic(3);
    txn_coordinator(&mut c, 1, TXN);
    let coordinator = settled_coordinator(&mut c, TXN);
    let (error, producer_id, epoch) =
        init_result(c.call(coordinator, ApiKey::InitProducerId, 4, init_request(TXN, 5_000)));
    assert_eq!(error, 0);
    let added = add_result(c.call(
        coordinator,
        ApiKey::AddPartitionsToTxn,
        3,
        add_request(TXN, producer_id, epoch, "orders", vec![0, 1, 2]),
    ));
    assert_eq!(added, vec![0, 0, 0]);
    for index in 0..3 {
        assert_eq!(produce(&mut c, index, (producer_id, epoch), 0), 0);
    }

    // The coordinator dies with the transaction open; the partition's new leader loads it and
    // aborts it once its timeout passed, writing the markers wherever the partitions are led.
    let storage = c.stop(coordinator);
    c.run_until(c.now_ms + 15_000);
    let successor = settled_coordinator(&mut c, TXN);
    assert_ne!(successor, coordinator);
    for index in 0..3 {
        let end = end_offset(&mut c, index);
        assert_eq!(stable(&mut c, index), end, "partition {index}: the abort's marker ended the transaction");
        assert_eq!(end, 3, "partition {index}: two records and one marker");
    }
    // The id carries on at the successor, its epoch bumped by the abort.
    let (error, same_id, new_epoch) =
        init_result(c.call(successor, ApiKey::InitProducerId, 4, init_request(TXN, 5_000)));
    assert_eq!((error, same_id), (0, producer_id));
    assert!(new_epoch > epoch + 1, "the abort and the new producer each bumped the epoch: {epoch} -> {new_epoch}");

    // The old coordinator comes back as a follower and sends clients on.
    c.restart(coordinator, storage);
    c.run_until(c.now_ms + 10_000);
    assert_eq!(txn_coordinator(&mut c, coordinator, TXN), (0, successor));
    let refused = end_result(c.call(coordinator, ApiKey::EndTxn, 3, end_request(TXN, same_id, new_epoch, true)));
    assert_eq!(refused, ErrorCode::NotCoordinator.code());
}

#[test]
fn a_second_generation_transaction_adds_its_partitions_through_their_leaders() {
    let mut c = cluster_with_topic(3);
    txn_coordinator(&mut c, 1, TXN);
    let coordinator = settled_coordinator(&mut c, TXN);
    let (error, producer_id, epoch) =
        init_result(c.call(coordinator, ApiKey::InitProducerId, 4, init_request(TXN, 60_000)));
    assert_eq!(error, 0);
    // Produce v12: each leader adds its partition to the transaction (AddPartitionsToTxn v4
    // to the coordinator when that is another broker), with no AddPartitionsToTxn from the
    // client.
    for index in 0..3 {
        let leader = roles(&mut c, 1, "orders", index).0;
        let request = txn_produce_request(TXN, "orders", index, (producer_id, epoch), 0);
        assert_eq!(produce_result(&c.call(leader, ApiKey::Produce, 12, request)).0, 0, "partition {index}");
    }
    let ResponseKind::EndTxn(ended) =
        c.call(coordinator, ApiKey::EndTxn, 5, end_request(TXN, producer_id, epoch, true))
    else {
        panic!()
    };
    assert_eq!((ended.error_code, ended.producer_epoch), (0, epoch + 1));
    c.run_until(c.now_ms + 2_000);
    for index in 0..3 {
        assert_eq!((end_offset(&mut c, index), stable(&mut c, index)), (3, 3), "partition {index} committed");
    }
}
