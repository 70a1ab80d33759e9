//! The consumer against a real Headwater broker started in this process: assign and seek,
//! and groups over the KIP-848 consumer protocol.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headwater_client::{
    Admin, ClientConfig, Compression, Consumer, ConsumerConfig, ConsumerRecord, NewTopic, OffsetReset, Producer,
    ProducerConfig, ProducerRecord, Rebalance,
};
use headwater_server::embedded::{EmbeddedBroker, EmbeddedOptions};

fn broker() -> EmbeddedBroker {
    EmbeddedBroker::start(EmbeddedOptions {
        data_dir: None,
        settings: vec![
            ("group_consumer_heartbeat_interval_ms".into(), "200".into()),
            ("group_consumer_session_timeout_ms".into(), "3000".into()),
        ],
    })
    .expect("embedded broker starts")
}

async fn produce(bootstrap: &str, topic: &str, partitions: i32, count: usize, compression: Compression) {
    let mut config = ProducerConfig::new(bootstrap);
    config.compression = compression;
    let producer = Producer::new(config).unwrap();
    let mut deliveries = Vec::new();
    for i in 0..count {
        let record = ProducerRecord::new(topic, format!("{topic}-{i}"))
            .with_key(format!("k{i}"))
            .with_partition(i as i32 % partitions)
            .with_header("i", Some(i.to_string().into()))
            .with_header("i", None);
        deliveries.push(producer.send(record).await.unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    producer.close().await;
}

async fn drain(consumer: &Consumer, want: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::new();
    for _ in 0..200 {
        out.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
        if out.len() >= want {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_partitions_read_back_every_record_exactly_as_sent() {
    let broker = broker();
    let admin = Admin::new(ClientConfig::new(broker.bootstrap())).unwrap();
    for (topic, compression) in [("plain", Compression::None), ("zstd", Compression::Zstd), ("lz4", Compression::Lz4)] {
        admin.create_topic(NewTopic::new(topic, 2)).await.unwrap();
        produce(broker.bootstrap(), topic, 2, 1000, compression).await;
        let mut config = ConsumerConfig::new(broker.bootstrap());
        config.auto_offset_reset = OffsetReset::Earliest;
        let consumer = Consumer::new(config).unwrap();
        consumer.assign(&[(topic.into(), 0), (topic.into(), 1)]).await.unwrap();
        let records = drain(&consumer, 1000).await;
        assert_eq!(records.len(), 1000, "{topic}");
        for r in &records {
            let i: usize =
                String::from_utf8(r.value.clone().unwrap()).unwrap().rsplit('-').next().unwrap().parse().unwrap();
            assert_eq!((r.partition, r.offset), ((i % 2) as i32, (i / 2) as i64), "{topic}");
            assert_eq!(r.key.as_deref(), Some(format!("k{i}").as_bytes()));
            assert_eq!(r.headers, vec![("i".to_string(), Some(i.to_string().into_bytes())), ("i".to_string(), None)]);
        }
        // Seek into the middle of a batch; pause one partition.
        consumer.seek(&(topic.into(), 1), 250).await.unwrap();
        consumer.pause(&[(topic.into(), 0)]).await;
        produce(broker.bootstrap(), topic, 2, 2, compression).await;
        let again = drain(&consumer, 251).await;
        assert_eq!(again.first().map(|r| (r.partition, r.offset)), Some((1, 250)));
        assert!(again.iter().all(|r| r.partition == 1), "partition 0 is paused");
        consumer.resume(&[(topic.into(), 0)]).await;
        let resumed = drain(&consumer, 1).await;
        assert_eq!(resumed.iter().map(|r| (r.partition, r.offset)).collect::<Vec<_>>(), vec![(0, 500)]);
        consumer.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_shares_partitions_commits_and_takes_over_when_a_member_leaves() {
    let broker = broker();
    let admin = Admin::new(ClientConfig::new(broker.bootstrap())).unwrap();
    admin.create_topic(NewTopic::new("events", 4)).await.unwrap();
    produce(broker.bootstrap(), "events", 4, 400, Compression::None).await;
    let member = |events: Arc<Mutex<Vec<Rebalance>>>| {
        let mut config = ConsumerConfig::new(broker.bootstrap());
        config.group_id = Some("g".into());
        config.auto_offset_reset = OffsetReset::Earliest;
        let consumer = Consumer::new(config).unwrap();
        consumer.set_rebalance_listener(Arc::new(move |e: &Rebalance| events.lock().unwrap().push(e.clone())));
        consumer
    };
    let (events_a, events_b) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let a = member(events_a.clone());
    let b = member(events_b.clone());
    a.subscribe(&["events"]).await.unwrap();
    b.subscribe(&["events"]).await.unwrap();
    let mut seen: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for _ in 0..300 {
        for consumer in [&a, &b] {
            for r in consumer.poll(Duration::from_millis(50)).await.unwrap() {
                *seen.entry((r.partition, r.offset)).or_default() += 1;
            }
            consumer.commit().await.unwrap();
        }
        let (held_a, held_b) = (a.assignment().await, b.assignment().await);
        let all: BTreeSet<_> = held_a.iter().chain(held_b.iter()).collect();
        assert_eq!(all.len(), held_a.len() + held_b.len(), "a partition held twice: {held_a:?} {held_b:?}");
        if seen.len() == 400 && held_a.len() == 2 && held_b.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 400, "every record consumed");
    assert!(seen.values().all(|n| *n == 1), "no record consumed twice without a failure");
    assert_eq!((a.assignment().await.len(), b.assignment().await.len()), (2, 2));
    assert!(events_a.lock().unwrap().iter().any(|e| matches!(e, Rebalance::Assigned(_))));
    // b leaves: a takes everything; the group's offsets are at the end.
    b.close().await;
    for _ in 0..100 {
        a.poll(Duration::from_millis(50)).await.unwrap();
        if a.assignment().await.len() == 4 {
            break;
        }
    }
    assert_eq!(a.assignment().await.len(), 4);
    let partitions: Vec<(String, i32)> = (0..4).map(|p| ("events".to_string(), p)).collect();
    let committed = a.committed(&partitions).await.unwrap();
    assert!(committed.values().all(|o| *o == Some(100)), "{committed:?}");
    a.close().await;
    assert!(events_b.lock().unwrap().iter().any(|e| matches!(e, Rebalance::Assigned(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_lists_describes_and_deletes_groups_and_edits_topic_configs() {
    let broker = broker();
    let admin = Admin::new(ClientConfig::new(broker.bootstrap())).unwrap();
    admin.create_topic(NewTopic::new("audit", 2)).await.unwrap();
    produce(broker.bootstrap(), "audit", 2, 10, Compression::None).await;
    let mut config = ConsumerConfig::new(broker.bootstrap());
    config.group_id = Some("auditors".into());
    config.auto_offset_reset = OffsetReset::Earliest;
    let consumer = Consumer::new(config).unwrap();
    consumer.subscribe(&["audit"]).await.unwrap();
    drain(&consumer, 10).await;
    consumer.commit().await.unwrap();
    let listed = admin.list_groups().await.unwrap();
    let ours = listed.iter().find(|g| g.group_id == "auditors").expect("listed");
    assert_eq!(ours.group_type, "consumer");
    let described = admin.describe_group("auditors").await.unwrap();
    assert_eq!((described.group_type.as_str(), described.members.len()), ("consumer", 1));
    let mut held = described.members[0].assignment.clone();
    held.sort();
    assert_eq!(held, vec![("audit".to_string(), 0), ("audit".to_string(), 1)]);
    let offsets = admin.group_offsets("auditors").await.unwrap();
    assert_eq!(offsets.values().sum::<i64>(), 10);
    assert_eq!(admin.delete_group("auditors").await.unwrap_err().code, 68, "NON_EMPTY_GROUP while it has a member");
    consumer.close().await;
    admin.delete_group("auditors").await.unwrap();
    assert!(admin.group_offsets("auditors").await.unwrap().is_empty());

    let changes = BTreeMap::from([("retention.ms".to_string(), Some("60000".to_string()))]);
    admin.alter_topic_config("audit", &changes).await.unwrap();
    assert_eq!(
        admin.describe_topic_config("audit").await.unwrap().get("retention.ms").map(String::as_str),
        Some("60000")
    );
}
