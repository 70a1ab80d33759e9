//! Replicated partitions on in-process clusters of three brokers, talking through the Kafka
//! requests their peer links would carry (see `tests::QuorumCluster`).

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::tests::{
    fetch_request, fetched_offsets, heartbeat_request, idempotent, join_request, produce_request, produce_result,
    sync_request, QuorumCluster,
};
use crate::error::ErrorCode;
use crate::storage::Storage;

/// What a broker's Metadata says of a partition: (leader, epoch, replicas, in-sync replicas).
type Roles = (i32, i32, Vec<i32>, Vec<i32>);

pub(super) fn roles(c: &mut QuorumCluster, node: i32, topic: &str, index: i32) -> Roles {
    let body = RequestKind::Metadata(MetadataRequest::default().with_topics(None));
    let ResponseKind::Metadata(m) = c.ask(node, ApiKey::Metadata, 12, body) else { panic!() };
    let t = m.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)).expect("listed");
    let p = t.partitions.iter().find(|p| p.partition_index == index).expect("listed");
    let mut isr: Vec<i32> = p.isr_nodes.iter().map(|n| n.0).collect();
    isr.sort_unstable();
    let mut replicas: Vec<i32> = p.replica_nodes.iter().map(|n| n.0).collect();
    replicas.sort_unstable();
    (p.leader_id.0, p.leader_epoch, replicas, isr)
}

/// A cluster of three with topic `orders` (one partition per `partitions`, three replicas each)
/// created and its leaders reported.
pub(super) fn cluster_with_topic(partitions: i32) -> QuorumCluster {
    let mut c = QuorumCluster::new();
    c.run_until(10_000);
    let controller = c.describe(1).topics[0].partitions[0].leader_id.0;
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("orders")))
        .with_num_partitions(partitions)
        .with_replication_factor(3);
    let create = RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![topic]));
    let ResponseKind::CreateTopics(r) = c.call(controller, ApiKey::CreateTopics, 7, create) else { panic!() };
    assert_eq!(r.topics[0].error_code, 0, "{r:?}");
    assert_eq!(r.topics[0].replication_factor, 3);
    c.run_until(c.now_ms + 3_000);
    c
}

/// The stored bytes of a node's replica of `orders-<index>`, from offset 0 to its log end.
fn stored(c: &QuorumCluster, node: i32, index: i32) -> Vec<u8> {
    let p = c.brokers[&node].1.partition("orders", index).expect("a replica here");
    p.log.read(0, 1 << 30, p.log.end_offset(), true).unwrap().records.to_vec()
}

fn produce(c: &mut QuorumCluster, node: i32, records: Vec<u8>) -> (i16, i64) {
    let request = produce_request("orders", 0, -1, records);
    produce_result(&c.call(node, ApiKey::Produce, 9, request))
}

#[test]
fn a_partition_of_three_replicas_is_led_by_one_and_every_broker_says_so() {
    let mut c = cluster_with_topic(3);
    let mut leaders = Vec::new();
    for index in 0..3 {
        let seen: Vec<Roles> = (1..=3).map(|node| roles(&mut c, node, "orders", index)).collect();
        assert!(seen.iter().all(|r| *r == seen[0]), "partition {index}: every broker names the same roles: {seen:?}");
        let (leader, epoch, replicas, isr) = seen[0].clone();
        assert!((1..=3).contains(&leader) && epoch >= 1, "{seen:?}");
        assert_eq!(replicas, vec![1, 2, 3]);
        assert_eq!(isr, vec![1, 2, 3], "all three in sync");
        leaders.push(leader);
        // Only the leader takes writes, and serves consumers before Fetch v11 (KIP-392).
        for node in (1..=3).filter(|&n| n != leader) {
            let request = produce_request("orders", index, -1, idempotent(7, 0, 0, 1));
            let (error, _) = produce_result(&c.call(node, ApiKey::Produce, 9, request));
            assert_eq!(error, ErrorCode::NotLeaderOrFollower.code());
            let (error, _, _) =
                fetched_offsets(&c.ask(node, ApiKey::Fetch, 10, fetch_request("orders", index, 0, 0, 0)));
            assert_eq!(error, ErrorCode::NotLeaderOrFollower.code());
        }
    }
    leaders.sort_unstable();
    assert_eq!(leaders, vec![1, 2, 3], "the preferred leaders placement chose, one per broker");
}

#[test]
fn acks_all_is_answered_once_a_majority_holds_the_write_and_a_new_leader_keeps_it() {
    let mut c = cluster_with_topic(1);
    let (leader, epoch, _, _) = roles(&mut c, 1, "orders", 0);
    assert_eq!(produce(&mut c, leader, idempotent(7, 0, 0, 5)), (0, 0));
    assert_eq!(produce(&mut c, leader, idempotent(7, 0, 5, 5)), (0, 5));
    c.run_until(c.now_ms + 1_000);
    // Log matching: every replica holds the same bytes.
    let on_leader = stored(&c, leader, 0);
    for node in 1..=3 {
        assert_eq!(stored(&c, node, 0), on_leader, "broker {node} holds what the leader holds");
    }

    // The leader dies; the other two elect one of themselves, and every live broker names it.
    let storage = c.stop(leader);
    c.run_until(c.now_ms + 15_000);
    let survivors: Vec<i32> = (1..=3).filter(|&n| n != leader).collect();
    let (new_leader, new_epoch, _, isr) = roles(&mut c, survivors[0], "orders", 0);
    assert!(survivors.contains(&new_leader) && new_epoch > epoch, "{new_leader} at {new_epoch}");
    assert_eq!(roles(&mut c, survivors[1], "orders", 0).0, new_leader);
    assert!(!isr.contains(&leader), "the dead leader left the in-sync replicas: {isr:?}");

    // Every acknowledged record is there; a retried batch gets its original offset.
    let fetched = c.call(new_leader, ApiKey::Fetch, 11, fetch_request("orders", 0, 0, 0, 0));
    let (error, high_watermark, batches) = fetched_offsets(&fetched);
    assert_eq!((error, batches.first().copied()), (0, Some(0)), "{batches:?}");
    assert!(high_watermark >= 10 && batches.contains(&5), "hw {high_watermark}, batches {batches:?}");
    assert_eq!(produce(&mut c, new_leader, idempotent(7, 0, 5, 5)), (0, 5), "a retry is not written twice");
    let (error, offset) = produce(&mut c, new_leader, idempotent(7, 0, 10, 5));
    assert!(error == 0 && offset >= 10, "({error}, {offset})");

    // The old leader comes back as a follower and catches up.
    c.restart(leader, storage);
    c.run_until(c.now_ms + 10_000);
    let on_new_leader = stored(&c, new_leader, 0);
    assert_eq!(stored(&c, leader, 0), on_new_leader, "the restarted broker caught up");
    let (_, _, _, isr) = roles(&mut c, new_leader, "orders", 0);
    assert_eq!(isr, vec![1, 2, 3], "and rejoined the in-sync replicas");
}

#[test]
fn with_two_replicas_down_acks_all_fails_and_loses_nothing() {
    let mut c = cluster_with_topic(1);
    let (leader, _, _, _) = roles(&mut c, 1, "orders", 0);
    assert_eq!(produce(&mut c, leader, idempotent(9, 0, 0, 3)), (0, 0));
    let others: Vec<i32> = (1..=3).filter(|&n| n != leader).collect();
    let stopped: Vec<_> = others.iter().map(|&n| (n, c.stop(n))).collect();
    let request = RequestKind::Produce(match produce_request("orders", 0, -1, idempotent(9, 0, 3, 3)) {
        RequestKind::Produce(p) => p.with_timeout_ms(3_000),
        _ => unreachable!(),
    });
    let (error, _) = produce_result(&c.call(leader, ApiKey::Produce, 9, request));
    assert!(
        [ErrorCode::RequestTimedOut.code(), ErrorCode::NotLeaderOrFollower.code()].contains(&error),
        "a write no majority holds is not acknowledged: {error}"
    );
    for (node, storage) in stopped {
        c.restart(node, storage);
    }
    c.run_until(c.now_ms + 15_000);
    let (leader, _, _, _) = roles(&mut c, others[0], "orders", 0);
    assert!(leader > 0, "a leader again");
    // The retry lands once: either the unacknowledged batch survived and is found, or it is
    // written now.
    let (error, offset) = produce(&mut c, leader, idempotent(9, 0, 3, 3));
    assert_eq!(error, 0);
    assert!(offset >= 3, "{offset}");
    let (error, _, batches) = fetched_offsets(&c.call(leader, ApiKey::Fetch, 11, fetch_request("orders", 0, 0, 0, 0)));
    assert_eq!(error, 0);
    assert_eq!(batches.iter().filter(|&&b| b == 0).count(), 1, "the acknowledged batch is there once: {batches:?}");
}

#[test]
fn a_follower_below_the_leaders_log_start_starts_over_there() {
    let mut c = cluster_with_topic(1);
    let (leader, _, _, _) = roles(&mut c, 1, "orders", 0);
    assert_eq!(produce(&mut c, leader, idempotent(9, 0, 0, 3)), (0, 0));
    c.run_until(c.now_ms + 1_000);
    let behind = (1..=3).find(|&n| n != leader).expect("a follower");
    let storage = c.stop(behind);
    for batch in 1..4 {
        assert_eq!(produce(&mut c, leader, idempotent(9, 0, 3 * batch, 3)), (0, i64::from(3 * batch)));
    }
    let delete = || {
        let partition =
            delete_records_request::DeleteRecordsPartition::default().with_partition_index(0).with_offset(-1);
        let topic = delete_records_request::DeleteRecordsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partitions(vec![partition]);
        RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![topic]).with_timeout_ms(1_000))
    };
    let follower = (1..=3).find(|&n| n != leader && n != behind).expect("the other follower");
    let ResponseKind::DeleteRecords(r) = c.call(follower, ApiKey::DeleteRecords, 2, delete()) else { panic!() };
    assert_eq!(r.topics[0].partitions[0].error_code, ErrorCode::NotLeaderOrFollower.code(), "only the leader deletes");
    let ResponseKind::DeleteRecords(r) = c.call(leader, ApiKey::DeleteRecords, 2, delete()) else { panic!() };
    assert_eq!((r.topics[0].partitions[0].error_code, r.topics[0].partitions[0].low_watermark), (0, 12));

    c.restart(behind, storage);
    assert_eq!(produce(&mut c, leader, idempotent(9, 0, 12, 3)), (0, 12));
    c.run_until(c.now_ms + 5_000);
    let log = |c: &QuorumCluster, node| {
        let p = c.brokers[&node].1.partition("orders", 0).expect("a replica here");
        let start = p.log.log_start_offset();
        (start, p.log.end_offset(), p.log.read(start, 1 << 30, p.log.end_offset(), true).unwrap().records.to_vec())
    };
    let (start, end, records) = log(&c, leader);
    assert_eq!((start, end), (12, 15));
    assert_eq!(log(&c, behind), (start, end, records), "the follower fetched the leader's empty snapshot, then on");
    let (_, _, _, isr) = roles(&mut c, leader, "orders", 0);
    assert_eq!(isr, vec![1, 2, 3], "and is in sync again");
}

/// Flips one bit inside the records of the batch at `offset` in `node`'s replica of
/// `orders-0`, as a disk that rots under synced data would.
fn flip_bit(c: &mut QuorumCluster, node: i32, offset: i64) {
    c.damaged_disks.insert(node);
    let (storage, broker) = &c.brokers[&node];
    let log = &broker.partition("orders", 0).expect("a replica here").log;
    let stored = log.read(0, 1 << 30, log.end_offset(), true).unwrap().records;
    let mut position = 0;
    loop {
        let header = crate::log::batch::BatchHeader::parse(&stored[position..]).expect("the batch is stored");
        let size = header.size_bytes().unwrap();
        if header.base_offset == offset {
            let file = storage.open("orders-0/00000000000000000000.log", false).unwrap();
            let at = (position + size - 1) as u64;
            let byte = file.read_at(at, 1).unwrap()[0];
            file.write_at(at, &[byte ^ 0x10]).unwrap();
            return;
        }
        position += size;
    }
}

/// Whether every batch of a fetch response passes its CRC.
fn all_batches_intact(response: &ResponseKind) -> bool {
    let ResponseKind::Fetch(r) = response else { panic!("not a fetch response") };
    let records = r.responses[0].partitions[0].records.clone().unwrap_or_default();
    let mut position = 0;
    while position < records.len() {
        let header = crate::log::batch::BatchHeader::parse(&records[position..]).unwrap();
        let size = header.size_bytes().unwrap();
        if crate::log::batch::batch_crc(&records[position..position + size]) != header.crc {
            return false;
        }
        position += size;
    }
    true
}

#[test]
fn a_bit_flipped_in_a_followers_synced_data_is_found_by_the_scrub_and_fetched_again() {
    let mut c = cluster_with_topic(1);
    let (leader, _, _, _) = roles(&mut c, 1, "orders", 0);
    for batch in 0..4 {
        assert_eq!(produce(&mut c, leader, idempotent(9, 0, 3 * batch, 3)), (0, i64::from(3 * batch)));
    }
    c.run_until(c.now_ms + 1_000);
    let follower = (1..=3).find(|&n| n != leader).expect("a follower");
    assert_eq!(stored(&c, follower, 0), stored(&c, leader, 0));
    flip_bit(&mut c, follower, 6);
    assert_ne!(stored(&c, follower, 0), stored(&c, leader, 0));
    c.run_until(c.now_ms + 5_000);
    assert!(
        c.faults.iter().any(|(node, f)| *node == follower && f.path.ends_with(".log") && f.error.contains("CRC")),
        "the damage is reported, naming the file: {:?}",
        c.faults
    );
    assert_eq!(stored(&c, follower, 0), stored(&c, leader, 0), "repaired from the leader");
    let (_, _, _, isr) = roles(&mut c, leader, "orders", 0);
    assert_eq!(isr, vec![1, 2, 3], "and in sync again");
}

/// The same damage found by recovery at a restart, before the scrub came to it: the cut
/// batches may have been synced and counted toward a commit, so the replica saves, before
/// cutting, that it does not stand until it holds as much again and that meanwhile it votes
/// as its uncut log would. With the leader gone too, the third replica (which holds every
/// batch) still gets its vote, and the damaged one fetches the rest from it.
#[test]
fn a_bit_flipped_in_synced_data_found_at_restart_fences_the_replicas_vote() {
    let mut c = cluster_with_topic(1);
    let (leader, epoch, _, _) = roles(&mut c, 1, "orders", 0);
    for batch in 0..4 {
        assert_eq!(produce(&mut c, leader, idempotent(9, 0, 3 * batch, 3)), (0, i64::from(3 * batch)));
    }
    c.run_until(c.now_ms + 1_000);
    let follower = (1..=3).find(|&n| n != leader).expect("a follower");
    let intact = stored(&c, leader, 0);
    flip_bit(&mut c, follower, 6);
    let storage = c.stop(follower);
    c.stop(leader);
    // No recovery point: the restart checks the CRC of every batch.
    if storage.exists(super::RECOVERY_CHECKPOINT).unwrap() {
        storage.remove_file(super::RECOVERY_CHECKPOINT).unwrap();
    }
    c.restart(follower, storage.clone());
    // Long enough to open the partition, not for a new election.
    c.run_until(c.now_ms + 200);
    assert_eq!(c.brokers[&follower].1.partition("orders", 0).unwrap().log.end_offset(), 6, "cut at the damage");
    let saved = crate::raft::saved::read(&storage, "orders-0").unwrap();
    assert_eq!((saved.recovering_epoch, saved.recovering_to), (epoch, 12), "fenced up to where the log reached");
    assert!(
        c.faults.iter().any(|(node, f)| *node == follower && f.path == "orders-0" && f.error.contains("CRC")),
        "the cut is reported: {:?}",
        c.faults
    );
    c.run_until(c.now_ms + 10_000);
    let other = (1..=3).find(|&n| n != leader && n != follower).expect("the third replica");
    let (new_leader, _, _, _) = roles(&mut c, other, "orders", 0);
    assert_eq!(new_leader, other, "the replica that holds every batch is elected with the fenced one's vote");
    assert_eq!(stored(&c, follower, 0)[..intact.len()], intact[..], "fetched again");
    let saved = crate::raft::saved::read(&storage, "orders-0").unwrap();
    assert_eq!(saved.recovering_to, 0, "and it may stand again");
}

#[test]
fn a_leader_that_finds_a_damaged_batch_never_serves_it_and_hands_over() {
    let mut c = cluster_with_topic(1);
    let (leader, epoch, _, _) = roles(&mut c, 1, "orders", 0);
    for batch in 0..4 {
        assert_eq!(produce(&mut c, leader, idempotent(9, 0, 3 * batch, 3)), (0, i64::from(3 * batch)));
    }
    c.run_until(c.now_ms + 1_000);
    let intact = stored(&c, (1..=3).find(|&n| n != leader).unwrap(), 0);
    flip_bit(&mut c, leader, 3);
    // A consumer reading from the start gets the batch before the damaged one, never that one.
    let response = c.call(leader, ApiKey::Fetch, 11, fetch_request("orders", 0, 0, 0, 0));
    let (_, _, offsets) = fetched_offsets(&response);
    assert_eq!(offsets, vec![0]);
    assert!(all_batches_intact(&response));
    let response = c.call(leader, ApiKey::Fetch, 11, fetch_request("orders", 0, 3, 0, 0));
    assert!(all_batches_intact(&response));
    assert_ne!(fetched_offsets(&response).0, 0, "the damaged batch is an error, not data");
    // It hands its leadership over, cuts its log, and fetches the batch again.
    c.run_until(c.now_ms + 5_000);
    let (new_leader, new_epoch, _, isr) = roles(&mut c, leader, "orders", 0);
    assert_ne!(new_leader, leader);
    assert!(new_epoch > epoch);
    for node in 1..=3 {
        assert_eq!(stored(&c, node, 0)[..intact.len()], intact[..], "node {node}");
    }
    assert_eq!(isr, vec![1, 2, 3]);
    let response = c.call(new_leader, ApiKey::Fetch, 11, fetch_request("orders", 0, 0, 0, 0));
    assert_eq!(&fetched_offsets(&response).2[..4], &[0, 3, 6, 9]);
    assert!(all_batches_intact(&response));
}

#[test]
fn a_leader_stopped_gracefully_hands_its_partitions_over_at_once() {
    let mut c = cluster_with_topic(1);
    let (leader, epoch, _, _) = roles(&mut c, 1, "orders", 0);
    let now = c.now_ms;
    c.brokers.get_mut(&leader).unwrap().1.begin_shutdown(now);
    c.settle();
    c.stop(leader);
    // Well before a follower's fetch timeout (2 s) would start an election.
    c.run_until(c.now_ms + 500);
    let led = raft_leaders(&c, "orders", 0);
    assert_eq!(led.len(), 1, "one survivor leads: {led:?}");
    assert!(led[0].0 != leader && led[0].1 > epoch, "{led:?}");
}

/// The running brokers whose Raft leads the partition, with its epoch there.
fn raft_leaders(c: &QuorumCluster, topic: &str, index: i32) -> Vec<(i32, i32)> {
    c.brokers
        .iter()
        .filter_map(|(&n, (_, broker))| {
            let raft = &broker.partition(topic, index)?.replica.as_ref()?.raft;
            raft.is_leader().then_some((n, raft.epoch()))
        })
        .collect()
}

#[test]
fn acks_all_is_refused_while_fewer_than_min_insync_replicas_are_in_sync() {
    let mut c = QuorumCluster::new();
    c.run_until(10_000);
    let controller = c.describe(1).topics[0].partitions[0].leader_id.0;
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("orders")))
        .with_num_partitions(1)
        .with_replication_factor(3)
        .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("min.insync.replicas"))
            .with_value(Some(StrBytes::from_static_str("3")))]);
    let create = RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![topic]));
    let ResponseKind::CreateTopics(r) = c.call(controller, ApiKey::CreateTopics, 7, create) else { panic!() };
    assert_eq!(r.topics[0].error_code, 0, "{r:?}");
    c.run_until(c.now_ms + 3_000);
    let (leader, _, _, _) = roles(&mut c, 1, "orders", 0);
    assert_eq!(produce(&mut c, leader, idempotent(4, 0, 0, 1)), (0, 0), "three in sync hold it");
    // One follower goes. While it still counts as in sync, a write is taken, commits on the
    // two others, and is answered NOT_ENOUGH_REPLICAS_AFTER_APPEND at its timeout.
    let follower =
        (1..=3).find(|&n| n != leader && n != controller).unwrap_or_else(|| (1..=3).find(|&n| n != leader).unwrap());
    c.stop(follower);
    let request = RequestKind::Produce(match produce_request("orders", 0, -1, idempotent(4, 0, 1, 1)) {
        RequestKind::Produce(p) => p.with_timeout_ms(3_000),
        _ => unreachable!(),
    });
    assert_eq!(
        produce_result(&c.call(leader, ApiKey::Produce, 9, request)).0,
        ErrorCode::NotEnoughReplicasAfterAppend.code()
    );
    // Once it is out of sync (10 s), acks=all is refused up front, while acks=1 is still taken.
    c.run_until(c.now_ms + 12_000);
    let (leader, _, _, isr) = roles(&mut c, leader, "orders", 0);
    assert_eq!(isr.len(), 2, "{isr:?}");
    assert_eq!(produce(&mut c, leader, idempotent(4, 0, 1, 1)).0, ErrorCode::NotEnoughReplicas.code());
    let request = produce_request("orders", 0, 1, idempotent(4, 0, 1, 1));
    assert_eq!(produce_result(&c.call(leader, ApiKey::Produce, 9, request)).0, 0);
}

#[test]
fn a_leader_whose_disk_fails_answers_storage_errors_and_its_partition_moves_to_a_healthy_replica() {
    let mut c = cluster_with_topic(1);
    let (leader, epoch, _, _) = roles(&mut c, 1, "orders", 0);
    assert_eq!(produce(&mut c, leader, idempotent(5, 0, 0, 3)), (0, 0));
    // The leader's fsyncs start failing (EIO): its partition goes offline there, logged once
    // as an error naming the file, and its writes are refused rather than left to time out.
    c.failing_syncs.insert(leader);
    let request = produce_request("orders", 0, -1, idempotent(5, 0, 3, 3));
    let (error, _) = produce_result(&c.call(leader, ApiKey::Produce, 9, request));
    assert!(
        [ErrorCode::KafkaStorageError.code(), ErrorCode::NotLeaderOrFollower.code()].contains(&error),
        "error {error}"
    );
    assert!(
        c.faults.iter().any(|(node, fault)| *node == leader && fault.to_string().contains("orders-0")),
        "the failure is reported naming the partition: {:?}",
        c.faults
    );
    // The healthy replicas stop hearing from it and elect one of themselves, which takes the
    // retry; what was acknowledged before is still there.
    c.run_until(c.now_ms + 10_000);
    let healthy: Vec<i32> = (1..=3).filter(|&n| n != leader).collect();
    let (new_leader, new_epoch, _, _) = roles(&mut c, healthy[0], "orders", 0);
    assert!(healthy.contains(&new_leader) && new_epoch > epoch, "{new_leader} at {new_epoch}");
    let (error, offset) = produce(&mut c, new_leader, idempotent(5, 0, 3, 3));
    assert_eq!(error, 0);
    assert!(offset >= 3);
    let (_, _, batches) = fetched_offsets(&c.call(new_leader, ApiKey::Fetch, 11, fetch_request("orders", 0, 0, 0, 0)));
    assert_eq!(batches.first(), Some(&0), "{batches:?}");
}

fn find_coordinator(c: &mut QuorumCluster, node: i32, group: &'static str) -> (i16, i32) {
    let body =
        RequestKind::FindCoordinator(FindCoordinatorRequest::default().with_key(StrBytes::from_static_str(group)));
    let ResponseKind::FindCoordinator(r) = c.ask(node, ApiKey::FindCoordinator, 3, body) else { panic!() };
    (r.error_code, r.node_id.0)
}

/// A simple commit (no membership) of `orders-0` at `offset`: its error.
fn commit(c: &mut QuorumCluster, node: i32, group: &'static str, offset: i64) -> i16 {
    let partition = offset_commit_request::OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(offset);
    let topic = offset_commit_request::OffsetCommitRequestTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("orders")))
        .with_partitions(vec![partition]);
    let body = RequestKind::OffsetCommit(
        OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![topic]),
    );
    let ResponseKind::OffsetCommit(r) = c.call(node, ApiKey::OffsetCommit, 8, body) else { panic!() };
    r.topics[0].partitions[0].error_code
}

/// The committed offset of `orders-0` for `group` as `node` answers it: (error, offset).
fn committed(c: &mut QuorumCluster, node: i32, group: &'static str) -> (i16, i64) {
    let body = RequestKind::OffsetFetch(
        OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_static_str(group))).with_topics(None),
    );
    let ResponseKind::OffsetFetch(r) = c.ask(node, ApiKey::OffsetFetch, 7, body) else { panic!() };
    let offset =
        r.topics.iter().flat_map(|t| &t.partitions).find(|p| p.partition_index == 0).map_or(-1, |p| p.committed_offset);
    (r.error_code, offset)
}

#[test]
fn a_groups_coordinator_is_its_offsets_partitions_leader_and_its_commits_survive_the_coordinators_loss() {
    // Kafka's partition for a group: abs(Java hashCode) % 50 ("polygenelubricants" hashes to
    // i32::MIN, which Kafka's Utils.abs maps to 0).
    for (group, partition) in [("my-group", 12), ("console-consumer-1", 24), ("", 0), ("polygenelubricants", 0)] {
        assert_eq!(super::groups::offsets_partition_of(group, 50), partition, "{group:?}");
    }
    let mut c = cluster_with_topic(1);
    assert!(c.brokers[&1].1.topic("__consumer_offsets").is_some(), "the offsets topic was made");
    let coordinator = find_coordinator(&mut c, 1, "my-group").1;
    let (leader, _, replicas, _) = roles(&mut c, 1, "__consumer_offsets", 12);
    assert_eq!(replicas, vec![1, 2, 3], "min(3, brokers) replicas");
    assert_eq!(coordinator, leader, "the coordinator is the leader of partition 12");
    for node in 1..=3 {
        assert_eq!(find_coordinator(&mut c, node, "my-group"), (0, coordinator), "asked node {node}");
    }
    let others: Vec<i32> = (1..=3).filter(|&n| n != coordinator).collect();
    assert_eq!(commit(&mut c, others[0], "my-group", 7), ErrorCode::NotCoordinator.code());
    // A commit is answered once a majority of the partition's replicas hold it.
    assert_eq!(commit(&mut c, coordinator, "my-group", 42), 0);
    assert_eq!(committed(&mut c, coordinator, "my-group"), (0, 42));
    let stored = |c: &QuorumCluster, node: i32| {
        let p = c.brokers[&node].1.partition("__consumer_offsets", 12).expect("a replica");
        p.log.read(0, 1 << 30, p.log.end_offset(), true).unwrap().records.to_vec()
    };
    c.run_until(c.now_ms + 1_000);
    assert_eq!(stored(&c, others[0]), stored(&c, coordinator), "the commit is replicated");

    // The coordinator dies: the partition's new leader loads the group's offsets and takes
    // over; nothing committed is lost.
    let storage = c.stop(coordinator);
    c.run_until(c.now_ms + 15_000);
    let (error, new_coordinator) = find_coordinator(&mut c, others[0], "my-group");
    assert_eq!(error, 0);
    assert!(others.contains(&new_coordinator), "{new_coordinator}");
    assert_eq!(committed(&mut c, new_coordinator, "my-group"), (0, 42), "the commit survived its coordinator");
    assert_eq!(commit(&mut c, new_coordinator, "my-group", 43), 0);

    // The old coordinator comes back as a follower: it sends the group's clients on.
    c.restart(coordinator, storage);
    c.run_until(c.now_ms + 10_000);
    assert_eq!(find_coordinator(&mut c, coordinator, "my-group"), (0, new_coordinator));
    assert_eq!(commit(&mut c, coordinator, "my-group", 44), ErrorCode::NotCoordinator.code());
    assert_eq!(committed(&mut c, new_coordinator, "my-group"), (0, 43));
}

#[test]
fn a_groups_members_carry_on_through_a_coordinator_failover_without_a_rebalance() {
    let mut c = cluster_with_topic(1);
    let coordinator = find_coordinator(&mut c, 1, "g").1;
    let ResponseKind::JoinGroup(joined) = c.call(coordinator, ApiKey::JoinGroup, 3, join_request("")) else { panic!() };
    let (member, generation) = (joined.member_id.to_string(), joined.generation_id);
    let sync = sync_request(&member, generation, Some(b"orders-0"));
    let ResponseKind::SyncGroup(synced) = c.call(coordinator, ApiKey::SyncGroup, 3, sync) else { panic!() };
    assert_eq!((synced.error_code, synced.assignment.as_ref()), (0, &b"orders-0"[..]));

    // The coordinator dies. Once the offsets partition has a new leader, it coordinates the
    // group in the same generation: the member's heartbeats and its SyncGroup go on as before.
    let storage = c.stop(coordinator);
    let others: Vec<i32> = (1..=3).filter(|&n| n != coordinator).collect();
    let new_coordinator = loop {
        c.run_until(c.now_ms + 500);
        match find_coordinator(&mut c, others[0], "g") {
            (0, node) if node != coordinator => break node,
            _ => {}
        }
    };
    let beat = loop {
        let ResponseKind::Heartbeat(beat) =
            c.ask(new_coordinator, ApiKey::Heartbeat, 3, heartbeat_request(&member, generation))
        else {
            panic!()
        };
        if beat.error_code != ErrorCode::CoordinatorLoadInProgress.code() {
            break beat;
        }
        c.run_until(c.now_ms + 100);
    };
    assert_eq!(beat.error_code, 0, "the member is known in its generation");
    let sync = sync_request(&member, generation, None);
    let ResponseKind::SyncGroup(synced) = c.call(new_coordinator, ApiKey::SyncGroup, 3, sync) else { panic!() };
    assert_eq!((synced.error_code, synced.assignment.as_ref()), (0, &b"orders-0"[..]));
    c.restart(coordinator, storage);
}

#[test]
fn a_follower_tells_producers_and_consumers_where_the_leader_is() {
    // KIP-951: NOT_LEADER_OR_FOLLOWER comes with the current leader and epoch (and, for
    // Produce, the leader's address), so a client moves without asking Metadata first.
    let mut c = cluster_with_topic(1);
    let (leader, epoch, _, _) = roles(&mut c, 1, "orders", 0);
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let ResponseKind::Produce(r) =
        c.call(follower, ApiKey::Produce, 10, produce_request("orders", 0, -1, idempotent(3, 0, 0, 1)))
    else {
        panic!()
    };
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ErrorCode::NotLeaderOrFollower.code());
    assert_eq!((p.current_leader.leader_id.0, p.current_leader.leader_epoch), (leader, epoch));
    let endpoint = r.node_endpoints.iter().find(|e| e.node_id.0 == leader).expect("the leader's address");
    assert_eq!(endpoint.port, 9092 + leader - 1, "{endpoint:?}");
    // Older versions carry no hint (the fields do not exist there).
    let ResponseKind::Produce(r) =
        c.call(follower, ApiKey::Produce, 9, produce_request("orders", 0, -1, idempotent(3, 0, 0, 1)))
    else {
        panic!()
    };
    assert!(r.node_endpoints.is_empty());
    // A consumer still fetching at a deposed leader knows an epoch that ended.
    let ResponseKind::Fetch(r) = c.ask(follower, ApiKey::Fetch, 12, fetch_at_epoch(epoch - 1, None)) else { panic!() };
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, ErrorCode::FencedLeaderEpoch.code());
    assert_eq!((p.current_leader.leader_id.0, p.current_leader.leader_epoch), (leader, epoch));
}

/// A consumer's fetch of `orders-0` from offset 0, knowing leader epoch `epoch` (-1: none),
/// from rack `rack`.
fn fetch_at_epoch(epoch: i32, rack: Option<String>) -> RequestKind {
    let RequestKind::Fetch(mut request) = fetch_request("orders", 0, 0, 0, 0) else { unreachable!() };
    request.topics[0].partitions[0].current_leader_epoch = epoch;
    request.rack_id = StrBytes::from_string(rack.unwrap_or_default());
    RequestKind::Fetch(request)
}

#[test]
fn a_consumer_that_names_its_rack_reads_from_an_in_sync_replica_there() {
    // KIP-392: brokers 1, 2 and 3 sit in racks r1, r2 and r3.
    let mut c = cluster_with_topic(1);
    let (leader, epoch, _, _) = roles(&mut c, 1, "orders", 0);
    assert_eq!(produce(&mut c, leader, idempotent(7, 0, 0, 3)), (0, 0));
    c.run_until(c.now_ms + 1_000);
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let from_rack = |node: i32| fetch_at_epoch(epoch, Some(format!("r{node}")));
    // The leader sends a consumer in the follower's rack there, with no records.
    let ResponseKind::Fetch(r) = c.ask(leader, ApiKey::Fetch, 11, from_rack(follower)) else { panic!() };
    let p = &r.responses[0].partitions[0];
    assert_eq!((p.error_code, p.preferred_read_replica.0), (0, follower));
    assert!(p.records.as_ref().is_none_or(|records| records.is_empty()));
    // The follower serves it what is committed.
    let response = c.ask(follower, ApiKey::Fetch, 11, from_rack(follower));
    assert_eq!(fetched_offsets(&response), (0, 3, vec![0]));
    // A consumer in the leader's rack, or naming none, reads from the leader.
    for request in [from_rack(leader), fetch_at_epoch(epoch, None)] {
        let response = c.ask(leader, ApiKey::Fetch, 11, request);
        let ResponseKind::Fetch(r) = &response else { panic!() };
        assert_eq!(r.responses[0].partitions[0].preferred_read_replica.0, -1);
        assert_eq!(fetched_offsets(&response), (0, 3, vec![0]));
    }
    // Before Fetch v11 only the leader serves consumers.
    let response = c.ask(follower, ApiKey::Fetch, 10, fetch_at_epoch(epoch, None));
    assert_eq!(fetched_offsets(&response).0, ErrorCode::NotLeaderOrFollower.code());
    // A follower that stopped hearing from its leader no longer counts as in sync, and the
    // leader keeps the consumer.
    let other = (1..=3).find(|&n| n != leader && n != follower).unwrap();
    c.stop(follower);
    c.run_until(c.now_ms + 12_000);
    let (still, _, _, isr) = roles(&mut c, other, "orders", 0);
    assert_eq!((still, isr.contains(&follower)), (leader, false));
    let ResponseKind::Fetch(r) = c.ask(leader, ApiKey::Fetch, 11, from_rack(follower)) else { panic!() };
    assert_eq!(r.responses[0].partitions[0].preferred_read_replica.0, -1);
}

#[test]
fn create_partitions_in_a_cluster_places_new_replicated_partitions() {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    let mut c = cluster_with_topic(1);
    let controller = c.describe(1).topics[0].partitions[0].leader_id.0;
    let grow = |count: i32, validate_only: bool| {
        RequestKind::CreatePartitions(
            CreatePartitionsRequest::default()
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("orders")))
                    .with_count(count)])
                .with_validate_only(validate_only)
                .with_timeout_ms(5_000),
        )
    };
    let result = |c: &mut QuorumCluster, node: i32, request: RequestKind| {
        let ResponseKind::CreatePartitions(r) = c.call(node, ApiKey::CreatePartitions, 3, request) else { panic!() };
        r.results[0].error_code
    };
    assert_eq!(result(&mut c, controller, grow(1, false)), ErrorCode::InvalidPartitions.code());
    assert_eq!(result(&mut c, controller, grow(3, true)), 0);
    c.run_until(c.now_ms + 1_000);
    let listed = |c: &mut QuorumCluster| {
        let body = RequestKind::Metadata(MetadataRequest::default().with_topics(None));
        let ResponseKind::Metadata(m) = c.ask(1, ApiKey::Metadata, 12, body) else { panic!() };
        let t = m.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "orders")).unwrap();
        t.partitions.len()
    };
    assert_eq!(listed(&mut c), 1, "validate_only changes nothing");
    // Asked of another broker, the request is forwarded to the controller (KIP-590).
    let other = (1..=3).find(|&n| n != controller).unwrap();
    assert_eq!(result(&mut c, other, grow(2, false)), 0);
    assert_eq!(result(&mut c, controller, grow(3, false)), 0);
    c.run_until(c.now_ms + 3_000);
    assert_eq!(listed(&mut c), 3);
    for index in 1..3 {
        let seen: Vec<Roles> = (1..=3).map(|node| roles(&mut c, node, "orders", index)).collect();
        assert!(seen.iter().all(|r| *r == seen[0]), "partition {index}: {seen:?}");
        let (leader, _, replicas, isr) = seen[0].clone();
        assert_eq!((replicas, isr), (vec![1, 2, 3], vec![1, 2, 3]));
        let request = produce_request("orders", index, -1, idempotent(9, 0, 0, 2));
        assert_eq!(produce_result(&c.call(leader, ApiKey::Produce, 9, request)), (0, 0));
    }
    // A request forwarded to a controller that died with it is handled where it was asked
    // once the forward times out: decided if that node leads now, else NOT_CONTROLLER.
    c.stop(controller);
    let started = c.now_ms;
    let error = result(&mut c, other, grow(4, false));
    assert!([0, ErrorCode::NotController.code()].contains(&error), "error {error}");
    assert!(c.now_ms - started >= crate::constants::FORWARD_TIMEOUT_MS, "answered after the forward timed out");
}

#[test]
fn topic_configs_are_changed_through_the_controller_and_every_replica_takes_them() {
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let mut c = cluster_with_topic(1);
    let controller = c.describe(1).topics[0].partitions[0].leader_id.0;
    let set = |key: &'static str, value: &'static str| {
        RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default().with_resources(
            vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("orders"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str(key))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_static_str(value)))])],
        ))
    };
    let result = |c: &mut QuorumCluster, node: i32, request: RequestKind| {
        let ResponseKind::IncrementalAlterConfigs(r) = c.call(node, ApiKey::IncrementalAlterConfigs, 1, request) else {
            panic!()
        };
        r.responses[0].error_code
    };
    let retention = |c: &QuorumCluster, node: i32| {
        c.brokers[&node].1.topic("orders").and_then(|t| t.config.overrides.get("retention.ms").cloned())
    };
    assert_eq!(result(&mut c, controller, set("retention.ms", "soon")), ErrorCode::InvalidConfig.code());
    // Asked of another broker, the change is forwarded to the controller (KIP-590).
    let other = (1..=3).find(|&n| n != controller).unwrap();
    assert_eq!(result(&mut c, other, set("retention.ms", "60000")), 0);
    c.run_until(c.now_ms + 1_000);
    for node in 1..=3 {
        assert_eq!(retention(&c, node).as_deref(), Some("60000"), "node {node}");
        let log = &c.brokers[&node].1.partition("orders", 0).expect("a replica").log;
        assert_eq!(log.config().retention_ms, 60_000, "node {node}'s log took it");
    }

    // Two changes to different keys, the second worked out before the first is applied: both
    // hold (each changes only its own key at the controller).
    let ids = [set("segment.ms", "3600000"), set("retention.ms", "120000")]
        .map(|request| c.send(controller, ApiKey::IncrementalAlterConfigs, 1, request));
    c.run_until(c.now_ms + 1_000);
    for id in ids {
        let Some(ResponseKind::IncrementalAlterConfigs(r)) = c.answer(id) else { panic!("answered") };
        assert_eq!(r.responses[0].error_code, 0);
    }
    for node in 1..=3 {
        let overrides = &c.brokers[&node].1.topic("orders").unwrap().config.overrides;
        assert_eq!(overrides.get("segment.ms").map(String::as_str), Some("3600000"), "node {node}");
        assert_eq!(overrides.get("retention.ms").map(String::as_str), Some("120000"), "node {node}");
    }
}

#[test]
fn offsets_of_an_empty_group_expire_through_the_leader_and_stay_expired_after_a_failover() {
    let mut c = cluster_with_topic(1);
    let coordinator = find_coordinator(&mut c, 1, "my-group").1;
    assert_eq!(commit(&mut c, coordinator, "my-group", 42), 0);
    for (_, broker) in c.brokers.values_mut() {
        broker.config.offsets_retention_ms = 5_000;
        broker.config.retention_check_interval_ms = 1_000;
        broker.next_retention_check_ms = 0;
    }
    c.run_until(c.now_ms + 8_000);
    assert_eq!(committed(&mut c, coordinator, "my-group"), (0, -1), "expired on the coordinator");
    // The tombstone is in the replicated log: the next coordinator does not bring it back.
    let storage = c.stop(coordinator);
    let others: Vec<i32> = (1..=3).filter(|&n| n != coordinator).collect();
    let new_coordinator = loop {
        c.run_until(c.now_ms + 500);
        match find_coordinator(&mut c, others[0], "my-group") {
            (0, node) if node != coordinator => break node,
            _ => {}
        }
    };
    let answer = loop {
        let answer = committed(&mut c, new_coordinator, "my-group");
        if answer.0 != ErrorCode::CoordinatorLoadInProgress.code() {
            break answer;
        }
        c.run_until(c.now_ms + 100);
    };
    assert_eq!(answer, (0, -1));
    c.restart(coordinator, storage);
}

#[test]
fn a_leader_whose_disk_fails_hands_its_partition_over_at_once() {
    let mut c = cluster_with_topic(1);
    let (leader, epoch, _, _) = roles(&mut c, 1, "orders", 0);
    assert_eq!(produce(&mut c, leader, idempotent(5, 0, 0, 3)), (0, 0));
    c.failing_syncs.insert(leader);
    let request = produce_request("orders", 0, -1, idempotent(5, 0, 3, 3));
    produce_result(&c.call(leader, ApiKey::Produce, 9, request));
    // The failed leader resigns (EndQuorumEpoch): a healthy replica leads well before the
    // followers' fetch timeout (2 s) would have started an election, and takes the retry.
    c.run_until(c.now_ms + 500);
    let led = raft_leaders(&c, "orders", 0);
    assert_eq!(led.len(), 1, "one replica leads: {led:?}");
    let (new_leader, new_epoch) = led[0];
    assert!(new_leader != leader && new_epoch > epoch, "{led:?}");
    assert_eq!(produce(&mut c, new_leader, idempotent(5, 0, 3, 3)).0, 0);
}
