//! Broker tests: drive the state machine in-process with virtual time and assert on the
//! drained outputs (responses and I/O commands). No sockets, no sleeps.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::*;
use crate::error::ErrorCode;
use crate::log::batch::build::{batch, simple, Idempotence};
use crate::log::batch::BatchHeader;
use crate::storage::failing::FailingStorage;
use crate::storage::{MemStorage, NamedFile};

pub(super) struct Harness {
    storage: MemStorage,
    pub(super) broker: Broker,
    pub(super) now_ms: i64,
    next_id: u64,
    pending_io: Vec<IoCommand>,
    /// Storage faults the broker reported, in order.
    faults: Vec<StorageFault>,
}

impl Harness {
    pub(super) fn new() -> Harness {
        Harness::on(MemStorage::new())
    }

    pub(super) fn on(storage: MemStorage) -> Harness {
        Harness::on_storage(storage.clone(), Arc::new(storage))
    }

    /// A broker on `disk` (perhaps `storage` behind a fault layer).
    fn on_storage(storage: MemStorage, disk: Arc<dyn Storage>) -> Harness {
        let (broker, _) = Broker::open(BrokerConfig::default(), disk, 1_000).unwrap();
        let mut harness =
            Harness { storage, broker, now_ms: 1_000, next_id: 1, pending_io: Vec::new(), faults: Vec::new() };
        harness.run_io();
        harness
    }

    fn send(&mut self, api_key: ApiKey, api_version: i16, body: RequestKind) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.broker
            .handle_request(self.now_ms, Request { id, conn: ConnId(1), api_key, api_version, client_id: None, body });
        id
    }

    /// Drains outputs without running I/O: responses only.
    fn responses(&mut self) -> Vec<Response> {
        let mut out = Vec::new();
        let mut pending_io = Vec::new();
        while let Some(output) = self.broker.poll_output() {
            match output {
                Output::Response(r) => out.push(r),
                Output::Io(io) => pending_io.push(io),
                Output::Fault(fault) => self.faults.push(fault),
                Output::Peer { to, .. } => panic!("a broker without a quorum wrote to peer {to}"),
            }
        }
        self.pending_io.extend(pending_io);
        out
    }

    /// Runs every outstanding sync command and reports completion.
    pub(super) fn run_io(&mut self) -> Vec<Response> {
        let mut out = self.responses();
        while let Some(IoCommand::Sync { token, files }) = self.pending_io.pop() {
            for named in files {
                named.file.sync().unwrap();
            }
            self.broker.handle_io_done(self.now_ms, token, Ok(()));
            out.extend(self.responses());
        }
        out
    }

    pub(super) fn one(&mut self, api_key: ApiKey, api_version: i16, body: RequestKind) -> ResponseKind {
        let id = self.send(api_key, api_version, body);
        let responses = self.run_io();
        let response = responses.into_iter().find(|r| r.id == id).expect("a response");
        match response.body {
            ResponseBody::Message(m) => *m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    pub(super) fn create_topic(&mut self, name: &str, partitions: i32, configs: &[(&str, &str)]) -> i16 {
        let topic = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            );
        let ResponseKind::CreateTopics(r) = self.one(
            ApiKey::CreateTopics,
            7,
            RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![topic])),
        ) else {
            panic!()
        };
        r.topics[0].error_code
    }
}

pub(super) fn produce_request(topic: &str, partition: i32, acks: i16, records: Vec<u8>) -> RequestKind {
    RequestKind::Produce(ProduceRequest::default().with_acks(acks).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(StrBytes::from_string(topic.into()))).with_partition_data(
            vec![PartitionProduceData::default().with_index(partition).with_records(Some(Bytes::from(records)))],
        ),
    ]))
}

pub(super) fn fetch_request(topic: &str, partition: i32, offset: i64, max_wait_ms: i32, min_bytes: i32) -> RequestKind {
    RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(min_bytes)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]),
    )
}

pub(super) fn produce_result(response: &ResponseKind) -> (i16, i64) {
    let ResponseKind::Produce(r) = response else { panic!("not a produce response: {response:?}") };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

pub(super) fn idempotent(producer_id: i64, epoch: i16, sequence: i32, count: usize) -> Vec<u8> {
    batch(&simple(count, 0), Some(Idempotence { producer_id, producer_epoch: epoch, base_sequence: sequence }))
}

pub(super) fn fetched_offsets(response: &ResponseKind) -> (i16, i64, Vec<i64>) {
    let ResponseKind::Fetch(r) = response else { panic!("not a fetch response") };
    let p = &r.responses[0].partitions[0];
    let records = p.records.clone().unwrap_or_default();
    let mut offsets = Vec::new();
    let mut position = 0;
    while position < records.len() {
        let header = BatchHeader::parse(&records[position..]).unwrap();
        offsets.push(header.base_offset);
        position += header.size_bytes().unwrap();
    }
    (p.error_code, p.high_watermark, offsets)
}

#[test]
fn acks_all_waits_for_the_sync() {
    let mut h = Harness::new();
    assert_eq!(h.create_topic("t", 2, &[]), 0);
    let id = h.send(ApiKey::Produce, 9, produce_request("t", 1, -1, batch(&simple(3, 5), None)));
    let early = h.responses();
    assert!(early.iter().all(|r| r.id != id), "acks=all answered before fsync");
    let [IoCommand::Sync { token, files }] = h.pending_io.as_slice() else { panic!("one sync: {:?}", h.pending_io) };
    let open = |path: &str| NamedFile::new(path, h.storage.open(path, false).unwrap());
    // The sync names exactly the segment written, and nothing of the idle partition.
    assert_eq!(
        h.pending_io,
        vec![IoCommand::Sync { token: *token, files: vec![open("t-1/00000000000000000000.log")] }]
    );
    assert_eq!(files.len(), 1);
    let after = h.run_io();
    let response = after.into_iter().find(|r| r.id == id).expect("answered after the sync");
    let ResponseBody::Message(body) = response.body else { panic!() };
    let body = *body;
    assert_eq!(produce_result(&body), (0, 0));
}

#[test]
fn acks_one_answers_at_once_and_acks_zero_not_at_all() {
    let mut h = Harness::new();
    h.create_topic("t", 1, &[]);
    let id = h.send(ApiKey::Produce, 9, produce_request("t", 0, 1, batch(&simple(2, 5), None)));
    let responses = h.responses();
    assert!(responses.iter().any(|r| r.id == id));
    let id = h.send(ApiKey::Produce, 9, produce_request("t", 0, 0, batch(&simple(2, 5), None)));
    let responses = h.run_io();
    let r = responses.into_iter().find(|r| r.id == id).unwrap();
    assert!(matches!(r.body, ResponseBody::Nothing));
}

#[test]
fn bad_batches_get_kafka_errors() {
    let mut h = Harness::new();
    h.create_topic("t", 1, &[("max.message.bytes", "200")]);
    let mut corrupt = batch(&simple(2, 0), None);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xFF;
    let r = h.one(ApiKey::Produce, 9, produce_request("t", 0, -1, corrupt));
    assert_eq!(produce_result(&r).0, ErrorCode::CorruptMessage.code());
    let r = h.one(ApiKey::Produce, 9, produce_request("t", 0, -1, batch(&simple(20, 0), None)));
    assert_eq!(produce_result(&r).0, ErrorCode::MessageTooLarge.code());
    let r = h.one(ApiKey::Produce, 9, produce_request("nope", 0, -1, batch(&simple(1, 0), None)));
    assert_eq!(produce_result(&r).0, ErrorCode::UnknownTopicOrPartition.code());
    let r = h.one(ApiKey::Produce, 9, produce_request("t", 5, -1, batch(&simple(1, 0), None)));
    assert_eq!(produce_result(&r).0, ErrorCode::UnknownTopicOrPartition.code());
    let r = h.one(ApiKey::Produce, 9, produce_request("t", 0, 2, batch(&simple(1, 0), None)));
    assert_eq!(produce_result(&r).0, ErrorCode::InvalidRequiredAcks.code());
}

#[test]
fn idempotent_retry_gets_original_offset_and_gap_is_refused() {
    let mut h = Harness::new();
    h.create_topic("t", 1, &[]);
    assert_eq!(produce_result(&h.one(ApiKey::Produce, 9, produce_request("t", 0, -1, idempotent(5, 0, 0, 3)))), (0, 0));
    assert_eq!(produce_result(&h.one(ApiKey::Produce, 9, produce_request("t", 0, -1, idempotent(5, 0, 3, 2)))), (0, 3));
    assert_eq!(produce_result(&h.one(ApiKey::Produce, 9, produce_request("t", 0, -1, idempotent(5, 0, 0, 3)))), (0, 0));
    let gap = produce_result(&h.one(ApiKey::Produce, 9, produce_request("t", 0, -1, idempotent(5, 0, 9, 1))));
    assert_eq!(gap.0, ErrorCode::OutOfOrderSequenceNumber.code());
    let ResponseKind::ListOffsets(_) =
        h.one(ApiKey::ListOffsets, 7, RequestKind::ListOffsets(ListOffsetsRequest::default()))
    else {
        panic!()
    };
    assert_eq!(h.broker.partition("t", 0).unwrap().log.end_offset(), 5, "the retry wrote nothing");
}

#[test]
fn idempotence_survives_restart() {
    let storage = MemStorage::new();
    let mut h = Harness::on(storage.clone());
    h.create_topic("t", 1, &[]);
    h.one(ApiKey::Produce, 9, produce_request("t", 0, -1, idempotent(5, 0, 0, 3)));
    drop(h);
    storage.crash();
    let mut h = Harness::on(storage);
    assert_eq!(produce_result(&h.one(ApiKey::Produce, 9, produce_request("t", 0, -1, idempotent(5, 0, 0, 3)))), (0, 0));
    assert_eq!(h.broker.partition("t", 0).unwrap().log.end_offset(), 3);
    // New producer ids never repeat one handed out before the restart.
    let ResponseKind::InitProducerId(r) = h.one(
        ApiKey::InitProducerId,
        4,
        RequestKind::InitProducerId(
            InitProducerIdRequest::default().with_transactional_id(None).with_producer_id(ProducerId(-1)),
        ),
    ) else {
        panic!()
    };
    assert!(r.producer_id.0 > 5, "{r:?}");
}

#[test]
fn fetch_long_poll_wakes_on_durable_data() {
    let mut h = Harness::new();
    h.create_topic("t", 1, &[]);
    let fetch_id = h.send(ApiKey::Fetch, 12, fetch_request("t", 0, 0, 5_000, 1));
    assert!(h.run_io().iter().all(|r| r.id != fetch_id), "nothing to return yet: parked");
    h.send(ApiKey::Produce, 9, produce_request("t", 0, 1, batch(&simple(4, 5), None)));
    // The acks=1 response comes at once; the fetch only after the sync makes data durable.
    let before_sync = h.responses();
    assert!(before_sync.iter().all(|r| r.id != fetch_id));
    let after_sync = h.run_io();
    let fetched = after_sync.into_iter().find(|r| r.id == fetch_id).expect("fetch woke up");
    let ResponseBody::Message(body) = fetched.body else { panic!() };
    let body = *body;
    assert_eq!(fetched_offsets(&body), (0, 4, vec![0]));
}

#[test]
fn fetch_times_out_empty_and_checks_ranges() {
    let mut h = Harness::new();
    h.create_topic("t", 1, &[]);
    let id = h.send(ApiKey::Fetch, 12, fetch_request("t", 0, 0, 500, 1));
    assert!(h.run_io().is_empty());
    assert_eq!(h.broker.next_timeout_ms(), 1_500);
    h.now_ms = 1_500;
    h.broker.handle_timeout(h.now_ms);
    let r = h.run_io().into_iter().find(|r| r.id == id).expect("answered at its deadline");
    let ResponseBody::Message(body) = r.body else { panic!() };
    let body = *body;
    assert_eq!(fetched_offsets(&body), (0, 0, vec![]));
    let out_of_range = h.one(ApiKey::Fetch, 12, fetch_request("t", 0, 99, 0, 1));
    assert_eq!(fetched_offsets(&out_of_range).0, ErrorCode::OffsetOutOfRange.code());
}

#[test]
fn a_sync_looks_only_at_the_requests_parked_on_what_it_covered() {
    let mut h = Harness::new();
    h.create_topic("t", 200, &[]);
    let fetches: Vec<RequestId> =
        (0..200).map(|p| h.send(ApiKey::Fetch, 12, fetch_request("t", p, 0, 5_000, 1))).collect();
    assert!(h.run_io().is_empty(), "every fetch parked");
    let before = h.broker.parked_looked_at;
    let produce = h.send(ApiKey::Produce, 9, produce_request("t", 7, -1, batch(&simple(2, 0), None)));
    let mut answered: Vec<RequestId> = h.run_io().into_iter().map(|r| r.id).collect();
    answered.sort();
    assert_eq!(answered, vec![fetches[7], produce], "the produce and the one fetch on its partition");
    // Each was looked at once: none of the other 199 fetches was.
    assert_eq!(h.broker.parked_looked_at - before, 2);
    assert_eq!(h.broker.parked.len(), 199);
}

#[test]
fn requests_parked_on_a_deleted_topic_are_answered_at_once() {
    let mut h = Harness::new();
    h.create_topic("t", 1, &[]);
    h.create_topic("other", 1, &[]);
    let produce = h.send(ApiKey::Produce, 9, produce_request("t", 0, -1, batch(&simple(1, 0), None)));
    // Still waiting for its sync (not run) when the topic goes.
    assert!(h.responses().iter().all(|r| r.id != produce));
    let fetch = h.send(ApiKey::Fetch, 12, fetch_request("t", 0, 0, 5_000, 1));
    assert!(h.responses().iter().all(|r| r.id != fetch), "parked: nothing durable yet");
    let delete = h.send(
        ApiKey::DeleteTopics,
        5,
        RequestKind::DeleteTopics(
            DeleteTopicsRequest::default().with_topic_names(vec![TopicName(StrBytes::from_static_str("t"))]),
        ),
    );
    // No sync ran and no time passed: the deletion itself answered both.
    let answered = h.responses();
    let body = |id: RequestId| match &answered.iter().find(|r| r.id == id).expect("answered").body {
        ResponseBody::Message(m) => (**m).clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(produce_result(&body(produce)).0, ErrorCode::UnknownTopicOrPartition.code());
    assert_eq!(fetched_offsets(&body(fetch)).0, ErrorCode::UnknownTopicOrPartition.code());
    assert!(answered.iter().any(|r| r.id == delete));
    assert!(h.broker.parked.is_empty());
}

#[test]
fn topics_and_configs_persist_across_restart() {
    let storage = MemStorage::new();
    let mut h = Harness::on(storage.clone());
    assert_eq!(h.create_topic("orders", 3, &[("retention.ms", "1000")]), 0);
    assert_eq!(h.create_topic("orders", 3, &[]), ErrorCode::TopicAlreadyExists.code());
    assert_eq!(h.create_topic("bad", 1, &[("retention.ms", "x")]), ErrorCode::InvalidConfig.code());
    assert_eq!(h.create_topic("bad/name", 1, &[]), ErrorCode::InvalidTopicException.code());
    let id_before = h.broker.topic("orders").unwrap().record.id;
    drop(h);
    let h = Harness::on(storage);
    let topic = h.broker.topic("orders").unwrap();
    assert_eq!(topic.record.id, id_before);
    assert_eq!(topic.partitions.len(), 3);
    assert_eq!(topic.config.overrides.get("retention.ms").map(String::as_str), Some("1000"));
    assert!(h.broker.topic("bad").is_none());
}

#[test]
fn delete_topic_removes_data_and_allows_recreation() {
    let mut h = Harness::new();
    h.create_topic("t", 2, &[]);
    h.one(ApiKey::Produce, 9, produce_request("t", 0, -1, batch(&simple(3, 0), None)));
    let ResponseKind::DeleteTopics(r) = h.one(
        ApiKey::DeleteTopics,
        5,
        RequestKind::DeleteTopics(
            DeleteTopicsRequest::default().with_topic_names(vec![TopicName(StrBytes::from_static_str("t"))]),
        ),
    ) else {
        panic!()
    };
    assert_eq!(r.responses[0].error_code, 0);
    assert!(!h.storage.exists("t-0").unwrap());
    assert_eq!(h.create_topic("t", 1, &[]), 0);
    assert_eq!(h.broker.partition("t", 0).unwrap().log.end_offset(), 0);
}

#[test]
fn metadata_auto_creates_and_lists() {
    let mut h = Harness::new();
    let request = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("auto"))))]))
        .with_allow_auto_topic_creation(true);
    let ResponseKind::Metadata(r) = h.one(ApiKey::Metadata, 12, RequestKind::Metadata(request)) else { panic!() };
    assert_eq!(r.topics[0].error_code, 0);
    assert_eq!(r.topics[0].partitions.len(), 1);
    assert!(!r.topics[0].topic_id.is_nil());
    assert_eq!(r.brokers[0].port, 9092);
}

#[test]
fn sync_failure_fails_the_partition_not_the_broker() {
    let mut h = Harness::new();
    h.create_topic("t", 2, &[]);
    let id = h.send(ApiKey::Produce, 9, produce_request("t", 0, -1, batch(&simple(1, 0), None)));
    h.responses();
    let Some(IoCommand::Sync { token, .. }) = h.pending_io.pop() else { panic!("no sync") };
    h.broker.handle_io_done(h.now_ms, token, Err(std::io::Error::other("EIO")));
    let r = h.responses().into_iter().find(|r| r.id == id).unwrap();
    let ResponseBody::Message(body) = r.body else { panic!() };
    let body = *body;
    assert_eq!(produce_result(&body).0, ErrorCode::KafkaStorageError.code());
    // The other partition still works.
    let ok = h.one(ApiKey::Produce, 9, produce_request("t", 1, -1, batch(&simple(1, 0), None)));
    assert_eq!(produce_result(&ok), (0, 0));
}

#[test]
fn topic_ids_differ_across_restarts_with_the_same_seed() {
    // Regression (simulator, seed 2): the id generator restarted from the same seed, so a
    // topic created after a restart got the id of an existing topic, and fsync completions
    // were applied to the wrong partitions.
    let storage = MemStorage::new();
    let mut h = Harness::on(storage.clone());
    h.create_topic("first", 1, &[]);
    let first = h.broker.topic("first").unwrap().record.id;
    drop(h);
    let mut h = Harness::on(storage);
    h.create_topic("second", 1, &[]);
    assert_ne!(h.broker.topic("second").unwrap().record.id, first);
}

#[test]
fn offsets_log_is_rewritten_and_old_segments_deleted_only_when_durable() {
    use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    let storage = MemStorage::new();
    let config = BrokerConfig {
        offsets_log_compact_bytes: 2_000,
        retention_check_interval_ms: 1_000,
        ..BrokerConfig::default()
    };
    let (broker, _) = Broker::open(config.clone(), Arc::new(storage.clone()), 1_000).unwrap();
    let mut h = Harness {
        storage: storage.clone(),
        broker,
        now_ms: 1_000,
        next_id: 1,
        pending_io: Vec::new(),
        faults: Vec::new(),
    };
    h.run_io();
    h.create_topic("t", 2, &[]);
    let commit = |offset: i64| {
        RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(offset),
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(1)
                            .with_committed_offset(offset * 2),
                    ])]),
        )
    };
    for i in 0..100 {
        h.one(ApiKey::OffsetCommit, 8, commit(i));
    }
    let size_before = h.broker.partition(OFFSETS_TOPIC, 0).unwrap().log.size_bytes();
    assert!(size_before > 2_000);
    h.now_ms += 1_000;
    h.broker.handle_timeout(h.now_ms);
    // The rewrite is appended but not yet synced: nothing may be deleted.
    h.responses();
    assert_eq!(h.broker.partition(OFFSETS_TOPIC, 0).unwrap().log.log_start_offset(), 0);
    h.run_io();
    let log = &h.broker.partition(OFFSETS_TOPIC, 0).unwrap().log;
    assert!(log.log_start_offset() > 0, "segments before the rewrite are gone");
    assert!(log.size_bytes() < size_before);
    drop(h);
    storage.crash();
    let (broker, report) = Broker::open(config, Arc::new(storage), 5_000).unwrap();
    assert_eq!(report.committed_offsets, 2);
    assert_eq!(broker.offsets.get("g", "t", 0).unwrap().offset, 99);
    assert_eq!(broker.offsets.get("g", "t", 1).unwrap().offset, 198);
}

fn delete_records_request(topic: &str, partition: i32, offset: i64) -> RequestKind {
    use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
    RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_timeout_ms(1_000).with_topics(vec![
        DeleteRecordsTopic::default().with_name(TopicName(StrBytes::from_string(topic.into()))).with_partitions(vec![
            DeleteRecordsPartition::default().with_partition_index(partition).with_offset(offset),
        ]),
    ]))
}

fn delete_records_result(response: &ResponseKind) -> (i16, i64) {
    let ResponseKind::DeleteRecords(r) = response else { panic!("not a delete-records response: {response:?}") };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

#[test]
fn checkpoints_are_written_at_the_storage_root_and_read_back() {
    let storage = MemStorage::new();
    let mut h = Harness::on(storage.clone());
    h.create_topic("t", 1, &[]);
    for _ in 0..10 {
        h.one(ApiKey::Produce, 9, produce_request("t", 0, -1, batch(&simple(1, 0), None)));
    }
    assert_eq!(delete_records_result(&h.one(ApiKey::DeleteRecords, 2, delete_records_request("t", 0, 5))), (0, 5));
    h.broker.finish_shutdown().unwrap();
    let files = storage.file_paths();
    assert!(files.contains(&"log-start-offset-checkpoint".to_string()), "{files:?}");
    assert!(files.contains(&"recovery-point-offset-checkpoint".to_string()), "{files:?}");
    assert!(files.iter().all(|f| !f.starts_with('/')), "{files:?}");
    let text = String::from_utf8(crate::storage::read_file(&storage, "log-start-offset-checkpoint").unwrap().unwrap());
    assert!(text.unwrap().lines().any(|l| l == "t 0 5"));
    drop(h);
    for restart in ["graceful", "crash"] {
        if restart == "crash" {
            storage.crash();
        }
        let h = Harness::on(storage.clone());
        let log = &h.broker.partition("t", 0).unwrap().log;
        assert_eq!(log.log_start_offset(), 5, "after a {restart} restart");
        assert_eq!(log.end_offset(), 10);
    }
}

fn failing_harness() -> (Harness, FailingStorage) {
    let disk = FailingStorage::default();
    let config = BrokerConfig { retention_check_interval_ms: 1_000, ..BrokerConfig::default() };
    let (broker, _) = Broker::open(config, Arc::new(disk.clone()), 1_000).unwrap();
    let mut h = Harness {
        storage: disk.tree.clone(),
        broker,
        now_ms: 1_000,
        next_id: 1,
        pending_io: Vec::new(),
        faults: Vec::new(),
    };
    h.run_io();
    (h, disk)
}

/// A topic of small segments with several of them due for retention.
fn retention_due_harness() -> (Harness, FailingStorage) {
    let (mut h, disk) = failing_harness();
    h.create_topic("t", 1, &[("segment.bytes", "100"), ("retention.bytes", "1")]);
    for _ in 0..5 {
        h.one(ApiKey::Produce, 9, produce_request("t", 0, -1, batch(&simple(1, 0), None)));
    }
    (h, disk)
}

impl Harness {
    /// Moves virtual time past the retention check interval of `failing_harness` and runs it.
    fn retention_check(&mut self) {
        self.now_ms += 1_000;
        self.broker.handle_timeout(self.now_ms);
        self.run_io();
    }
}

fn fault_ops(h: &Harness) -> Vec<StorageOp> {
    h.faults.iter().map(|f| f.op).collect()
}

#[test]
fn a_failed_periodic_recovery_checkpoint_is_reported() {
    let (mut h, disk) = failing_harness();
    disk.fail_under("recovery-point-offset-checkpoint");
    h.now_ms += RECOVERY_CHECKPOINT_INTERVAL_MS;
    h.broker.handle_timeout(h.now_ms);
    h.run_io();
    assert!(fault_ops(&h).contains(&StorageOp::RecoveryCheckpoint), "{:?}", h.faults);
    assert!(h.faults.iter().any(|f| f.error.contains("injected ENOSPC")));
}

#[test]
fn delete_records_whose_checkpoint_fails_moves_nothing() {
    let (mut h, disk) = failing_harness();
    h.create_topic("t", 1, &[]);
    for _ in 0..10 {
        h.one(ApiKey::Produce, 9, produce_request("t", 0, -1, batch(&simple(1, 0), None)));
    }
    disk.fail_under("log-start-offset-checkpoint");
    let result = delete_records_result(&h.one(ApiKey::DeleteRecords, 2, delete_records_request("t", 0, 5)));
    assert_eq!(result.0, ErrorCode::KafkaStorageError.code());
    assert_eq!(h.broker.partition("t", 0).unwrap().log.log_start_offset(), 0, "state unchanged");
    assert_eq!(fault_ops(&h), vec![StorageOp::LogStartCheckpoint]);
}

#[test]
fn retention_whose_checkpoint_fails_moves_nothing_and_retries() {
    let (mut h, disk) = retention_due_harness();
    disk.fail_under("log-start-offset-checkpoint");
    h.retention_check();
    assert_eq!(fault_ops(&h), vec![StorageOp::LogStartCheckpoint]);
    assert_eq!(h.broker.partition("t", 0).unwrap().log.log_start_offset(), 0);
    disk.heal();
    h.retention_check();
    assert!(h.broker.partition("t", 0).unwrap().log.log_start_offset() > 0, "the next check retries");
}

#[test]
fn a_failed_segment_deletion_is_reported_and_retried() {
    let (mut h, disk) = retention_due_harness();
    disk.fail_under("t-0/00000000000000000000.log");
    h.retention_check();
    assert_eq!(fault_ops(&h), vec![StorageOp::Delete]);
    assert!(h.broker.partition("t", 0).unwrap().log.log_start_offset() > 0, "the log start moved");
    disk.heal();
    h.retention_check();
    assert!(!h.storage.exists("t-0/00000000000000000000.log").unwrap(), "deleted at the next check");
}

#[test]
fn a_failed_append_answers_at_once_and_is_logged_once() {
    let (mut h, disk) = failing_harness();
    h.create_topic("t", 1, &[("segment.bytes", "100")]);
    h.one(ApiKey::Produce, 9, produce_request("t", 0, -1, batch(&simple(1, 0), None)));
    // The next append rolls, and the new segment cannot be created.
    disk.fail_under("t-0/");
    for _ in 0..3 {
        let id = h.send(ApiKey::Produce, 9, produce_request("t", 0, -1, batch(&simple(1, 0), None)));
        let response = h.responses().into_iter().find(|r| r.id == id).expect("answered without waiting for a sync");
        let ResponseBody::Message(body) = response.body else { panic!() };
        assert_eq!(produce_result(&body).0, ErrorCode::KafkaStorageError.code());
    }
    assert_eq!(fault_ops(&h), vec![StorageOp::Append], "one fault for the partition, not one per request");
    // What is durable is still served.
    let (error, high_watermark, offsets) = fetched_offsets(&h.one(ApiKey::Fetch, 12, fetch_request("t", 0, 0, 0, 1)));
    assert_eq!((error, high_watermark, offsets), (0, 1, vec![0]));
}

#[test]
fn a_failed_topic_deletion_keeps_the_topic() {
    let (mut h, disk) = failing_harness();
    h.create_topic("t", 2, &[]);
    disk.fail_under("t-1");
    let ResponseKind::DeleteTopics(r) = h.one(
        ApiKey::DeleteTopics,
        5,
        RequestKind::DeleteTopics(
            DeleteTopicsRequest::default().with_topic_names(vec![TopicName(StrBytes::from_static_str("t"))]),
        ),
    ) else {
        panic!()
    };
    assert_eq!(r.responses[0].error_code, ErrorCode::KafkaStorageError.code());
    assert!(h.broker.topic("t").is_some());
    assert!(h.storage.exists("t-0").unwrap(), "the first rename was undone");
    assert_eq!(fault_ops(&h), vec![StorageOp::Delete]);
}

#[test]
fn a_failed_auto_creation_is_reported() {
    let (mut h, disk) = failing_harness();
    disk.fail_under("auto-0/");
    let request = MetadataRequest::default()
        .with_topics(Some(vec![kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("auto"))))]));
    let ResponseKind::Metadata(r) = h.one(ApiKey::Metadata, 12, RequestKind::Metadata(request)) else { panic!() };
    assert_ne!(r.topics[0].error_code, 0);
    assert_eq!(fault_ops(&h), vec![StorageOp::CreateTopic]);
    assert!(!h.storage.exists("auto-0").unwrap());
}

/// Three brokers whose metadata quorums talk through Kafka requests, as peers will over the
/// network: each Raft request leaves as `Output::Peer`, goes to the other broker as the KRaft
/// request `raft::wire` makes of it, and its response comes back through `handle_peer`.
pub(super) struct QuorumCluster {
    pub(super) brokers: BTreeMap<i32, (MemStorage, Broker)>,
    pub(super) now_ms: i64,
    next_id: u64,
    /// Requests delivered and not yet answered: (receiver, request id) -> (sender, message).
    waiting: BTreeMap<(i32, RequestId), (i32, crate::peer::PeerMessage)>,
    /// Answers to requests of clients (sent with `call`), by request id.
    answers: BTreeMap<RequestId, ResponseKind>,
    /// Brokers whose fsyncs fail (a disk error), and the faults they reported.
    pub(super) failing_syncs: std::collections::BTreeSet<i32>,
    /// Brokers whose stored data a test damaged: their faults are recorded, not a failure.
    pub(super) damaged_disks: std::collections::BTreeSet<i32>,
    pub(super) faults: Vec<(i32, StorageFault)>,
}

impl QuorumCluster {
    pub(super) fn new() -> QuorumCluster {
        let mut brokers = BTreeMap::new();
        for node in 1..=3 {
            let storage = MemStorage::new();
            let (broker, _) = Broker::open(Self::config(node), Arc::new(storage.clone()), 0).unwrap();
            brokers.insert(node, (storage, broker));
        }
        QuorumCluster {
            brokers,
            now_ms: 0,
            next_id: 1,
            waiting: BTreeMap::new(),
            answers: BTreeMap::new(),
            failing_syncs: Default::default(),
            damaged_disks: Default::default(),
            faults: Vec::new(),
        }
    }

    /// Performs every output until nothing moves at the current time.
    pub(super) fn settle(&mut self) {
        loop {
            let mut moved = false;
            let nodes: Vec<i32> = self.brokers.keys().copied().collect();
            for node in nodes {
                while let Some(output) = self.brokers.get_mut(&node).unwrap().1.poll_output() {
                    moved = true;
                    self.perform(node, output);
                }
            }
            if !moved {
                return;
            }
        }
    }

    pub(super) fn perform(&mut self, node: i32, output: Output) {
        let now = self.now_ms;
        match output {
            Output::Peer { to, message } => {
                // What the server's peer link does: the highest version this broker serves, or
                // the one a forwarded request must keep.
                let (api_key, _) = message.api().expect("a request");
                let (_, _, highest) = super::versions::supported_range(api_key as i16).unwrap();
                let version = message.exact_version().unwrap_or(highest);
                let from = crate::ids::NodeId(node);
                let body = message.request("c", from, to, version).expect("a request");
                let id = RequestId(self.next_id);
                self.next_id += 1;
                // A stopped broker (see `stop`) takes nothing.
                let Some((_, receiver)) = self.brokers.get_mut(&to.0) else { return };
                self.waiting.insert((to.0, id), (node, message));
                let client_id = Some(format!("{}{node}", crate::peer::PEER_CLIENT_ID_PREFIX));
                let request = Request { id, conn: ConnId(node as u64), api_key, api_version: version, client_id, body };
                receiver.handle_request(now, request);
            }
            Output::Response(response) => {
                let Some((sender, sent)) = self.waiting.remove(&(node, response.id)) else {
                    if let ResponseBody::Message(body) = response.body {
                        self.answers.insert(response.id, *body);
                    }
                    return;
                };
                let ResponseBody::Message(body) = response.body else { panic!("{:?}", response.body) };
                // EndQuorumEpoch's empty answer carries nothing; a refusal (a replica whose
                // partition failed, say) is dropped, as the server's peer link drops it.
                let answer = match sent.answer(&body) {
                    Ok(answer) => answer,
                    Err(e) if e.contains("refused with error code") => None,
                    Err(e) => panic!("broker {node}'s answer does not parse: {e}"),
                };
                let Some(answer) = answer else { return };
                let Some((_, asker)) = self.brokers.get_mut(&sender) else { return };
                asker.handle_peer(now, crate::ids::NodeId(node), answer);
            }
            Output::Io(IoCommand::Sync { token, files }) => {
                let result = if self.failing_syncs.contains(&node) {
                    Err(std::io::Error::other("EIO (injected)"))
                } else {
                    for named in files {
                        named.file.sync().unwrap();
                    }
                    Ok(())
                };
                self.brokers.get_mut(&node).unwrap().1.handle_io_done(now, token, result);
            }
            Output::Fault(fault) if self.failing_syncs.contains(&node) || self.damaged_disks.contains(&node) => {
                self.faults.push((node, fault))
            }
            Output::Fault(fault) => panic!("broker {node}: {fault}"),
        }
    }

    pub(super) fn run_until(&mut self, until_ms: i64) {
        self.settle();
        loop {
            let next = self.brokers.values().map(|(_, b)| b.next_timeout_ms()).min().unwrap();
            if next > until_ms {
                self.now_ms = until_ms;
                return;
            }
            self.now_ms = next.max(self.now_ms);
            let now = self.now_ms;
            for (_, broker) in self.brokers.values_mut() {
                if broker.next_timeout_ms() <= now {
                    broker.handle_timeout(now);
                }
            }
            self.settle();
        }
    }

    pub(super) fn config(node: i32) -> BrokerConfig {
        BrokerConfig {
            node_id: node,
            seed: node as u64,
            advertised_port: 9091 + node,
            quorum_voters: Some(vec![crate::ids::NodeId(1), crate::ids::NodeId(2), crate::ids::NodeId(3)]),
            cluster_id: Some("c".into()),
            rack: Some(format!("r{node}")),
            ..BrokerConfig::default()
        }
    }

    /// Stops a broker: it takes no more messages, and its storage stays for `restart`.
    pub(super) fn stop(&mut self, node: i32) -> MemStorage {
        let (storage, _) = self.brokers.remove(&node).unwrap();
        self.waiting.retain(|(to, _), (from, _)| *to != node && *from != node);
        storage
    }

    pub(super) fn restart(&mut self, node: i32, storage: MemStorage) {
        let (broker, _) = Broker::open(Self::config(node), Arc::new(storage.clone()), self.now_ms).unwrap();
        self.brokers.insert(node, (storage, broker));
    }

    /// Asks node `node` as a client would; the answer must come at once. The node's other
    /// outputs meanwhile are performed as usual.
    pub(super) fn ask(&mut self, node: i32, api_key: ApiKey, api_version: i16, body: RequestKind) -> ResponseKind {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let request = Request { id, conn: ConnId(99), api_key, api_version, client_id: None, body };
        let broker = &mut self.brokers.get_mut(&node).unwrap().1;
        broker.handle_request(self.now_ms, request);
        let outputs: Vec<Output> = std::iter::from_fn(|| broker.poll_output()).collect();
        let mut found = None;
        for output in outputs {
            match output {
                Output::Response(r) if r.id == id => found = Some(r),
                other => self.perform(node, other),
            }
        }
        let ResponseBody::Message(body) = found.expect("answered at once").body else { panic!() };
        *body
    }

    /// Sends node `node` a request as a client would; its answer is kept for [`Self::answer`].
    pub(super) fn send(&mut self, node: i32, api_key: ApiKey, api_version: i16, body: RequestKind) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let request = Request { id, conn: ConnId(97), api_key, api_version, client_id: None, body };
        self.brokers.get_mut(&node).unwrap().1.handle_request(self.now_ms, request);
        id
    }

    /// The answer to a request sent with [`Self::send`], once it came.
    pub(super) fn answer(&mut self, id: RequestId) -> Option<ResponseKind> {
        self.answers.remove(&id)
    }

    /// Asks node `node` as a client would and runs the cluster until it answers (10 s at most).
    pub(super) fn call(&mut self, node: i32, api_key: ApiKey, api_version: i16, body: RequestKind) -> ResponseKind {
        let id = self.send(node, api_key, api_version, body);
        let give_up = self.now_ms + 10_000;
        loop {
            self.settle();
            if let Some(answer) = self.answers.remove(&id) {
                return answer;
            }
            assert!(self.now_ms < give_up, "node {node} did not answer {api_key:?}");
            self.run_until(self.now_ms + 10);
        }
    }

    /// The brokers node `node` lists in its Metadata answer.
    pub(super) fn listed(&mut self, node: i32) -> Vec<(i32, i32)> {
        let body = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![])));
        let ResponseKind::Metadata(metadata) = self.ask(node, ApiKey::Metadata, 12, body) else { panic!() };
        metadata.brokers.iter().map(|b| (b.node_id.0, b.port)).collect()
    }

    /// DescribeQuorum asked of node `node` (a follower forwards it to the leader).
    pub(super) fn describe(&mut self, node: i32) -> DescribeQuorumResponse {
        let body = RequestKind::DescribeQuorum(DescribeQuorumRequest::default());
        let ResponseKind::DescribeQuorum(described) = self.call(node, ApiKey::DescribeQuorum, 2, body) else {
            panic!()
        };
        described
    }
}

#[test]
fn brokers_elect_a_metadata_leader_through_kraft_requests() {
    let mut c = QuorumCluster::new();
    c.run_until(10_000);
    // Each node's own view of the quorum.
    let views: Vec<(i32, i32)> = (1..=3)
        .map(|node| {
            let described = c.brokers[&node].1.quorum.as_ref().unwrap().describe();
            let p = &described.topics[0].partitions[0];
            (p.leader_id.0, p.leader_epoch)
        })
        .collect();
    let (leader, epoch) = views[0];
    assert!((1..=3).contains(&leader) && epoch >= 1, "{views:?}");
    assert!(views.iter().all(|&v| v == (leader, epoch)), "every broker names the same leader: {views:?}");
    // DescribeQuorum asked of any node is answered by the leader, which knows how far every
    // voter's log reaches (a follower knows only its own).
    for node in 1..=3 {
        let described = c.describe(node);
        let p = &described.topics[0].partitions[0];
        assert_eq!((p.leader_id.0, p.leader_epoch), (leader, epoch), "asked of node {node}");
        let ends: Vec<i64> = p.current_voters.iter().map(|v| v.log_end_offset).collect();
        assert!(ends.len() == 3 && ends.iter().all(|&end| end > 0), "asked of node {node}: {ends:?}");
    }
    // Only the leader's quorum runs the controller.
    for (node, (_, broker)) in &c.brokers {
        assert_eq!(broker.quorum.as_ref().unwrap().is_active_controller(), *node == leader);
    }
}

#[test]
fn brokers_register_heartbeat_and_a_silent_one_is_fenced_until_it_returns() {
    let mut c = QuorumCluster::new();
    c.run_until(10_000);
    let everyone = vec![(1, 9092), (2, 9093), (3, 9094)];
    for node in 1..=3 {
        assert!(c.brokers[&node].1.is_registered(), "broker {node} registered");
        assert_eq!(c.listed(node), everyone, "broker {node} lists every registered broker");
    }
    // A broker that stops heartbeating is fenced once its session (9 s) runs out, and the
    // others stop listing it; whichever node it was, the other two keep a quorum.
    let stopped = c.stop(2);
    c.run_until(30_000);
    for node in [1, 3] {
        assert_eq!(c.listed(node), vec![(1, 9092), (3, 9094)], "broker {node} no longer lists broker 2");
        let image = c.brokers[&node].1.quorum.as_ref().unwrap().image().clone();
        assert!(image.brokers[&crate::ids::NodeId(2)].fenced);
    }
    // Back with a new incarnation, it registers again and is unfenced.
    c.restart(2, stopped);
    c.run_until(45_000);
    for node in 1..=3 {
        assert_eq!(c.listed(node), everyone, "broker {node} lists broker 2 again");
    }
    assert!(c.brokers[&2].1.is_registered());
}

#[test]
fn a_cluster_topic_is_created_by_the_controller_and_spread_over_the_brokers() {
    let mut c = QuorumCluster::new();
    c.run_until(10_000);
    let leader = c.describe(1).topics[0].partitions[0].leader_id.0;
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let create = |partitions: i32, replication_factor: i16| {
        let topic = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor);
        RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![topic]))
    };
    // The controller creates, with no more replicas than brokers; another broker forwards the
    // request to it (KIP-590) and hands its answer back.
    let ResponseKind::CreateTopics(r) = c.call(follower, ApiKey::CreateTopics, 7, create(3, 4)) else { panic!() };
    assert_eq!(r.topics[0].error_code, ErrorCode::InvalidReplicationFactor.code());
    let ResponseKind::CreateTopics(r) = c.call(follower, ApiKey::CreateTopics, 7, create(3, 1)) else { panic!() };
    assert_eq!(r.topics[0].error_code, 0, "{r:?}");
    assert_eq!(r.topics[0].num_partitions, 3);
    assert!(!r.topics[0].topic_id.is_nil());
    c.run_until(c.now_ms + 1_000);

    // Each partition lives on exactly one broker, and every broker tells the same leaders.
    let mut holders = BTreeMap::new();
    for node in 1..=3 {
        for &index in c.brokers[&node].1.topic("orders").expect("every node knows the topic").partitions.keys() {
            assert!(holders.insert(index, node).is_none(), "partition {index} is on two brokers");
        }
    }
    assert_eq!(holders.len(), 3, "{holders:?}");
    assert_eq!(holders.values().collect::<std::collections::BTreeSet<_>>().len(), 3, "spread evenly: {holders:?}");
    let metadata = || RequestKind::Metadata(MetadataRequest::default().with_topics(None));
    for node in 1..=3 {
        let ResponseKind::Metadata(m) = c.ask(node, ApiKey::Metadata, 12, metadata()) else { panic!() };
        let topic = m.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "orders")).unwrap();
        let leaders: BTreeMap<i32, i32> = topic.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect();
        assert_eq!(leaders, holders, "node {node}'s Metadata names the holders as leaders");
    }

    // A produce goes to the partition's leader; another broker says NOT_LEADER_OR_FOLLOWER.
    let (&index, &holder) = holders.iter().next().unwrap();
    let other = (1..=3).find(|&n| n != holder).unwrap();
    let produce = || produce_request("orders", index, 1, batch(&simple(2, 5), None));
    let ResponseKind::Produce(r) = c.call(other, ApiKey::Produce, 9, produce()) else { panic!() };
    assert_eq!(r.responses[0].partition_responses[0].error_code, ErrorCode::NotLeaderOrFollower.code());
    let ResponseKind::Produce(r) = c.call(holder, ApiKey::Produce, 9, produce()) else { panic!() };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);

    // A restarted broker opens its partitions again once its image names them, data included.
    let storage = c.stop(holder);
    c.restart(holder, storage);
    c.run_until(c.now_ms + 10_000);
    let log_end = c.brokers[&holder].1.partition("orders", index).map(|p| p.log.end_offset());
    assert_eq!(log_end, Some(2), "the produced records are back");

    // Deleting through the controller removes the topic on every broker.
    let leader = c.describe(other).topics[0].partitions[0].leader_id.0;
    let delete = RequestKind::DeleteTopics(
        DeleteTopicsRequest::default().with_topic_names(vec![TopicName(StrBytes::from_static_str("orders"))]),
    );
    let ResponseKind::DeleteTopics(r) = c.call(leader, ApiKey::DeleteTopics, 4, delete) else { panic!() };
    assert_eq!(r.responses[0].error_code, 0, "{r:?}");
    c.run_until(c.now_ms + 1_000);
    for node in 1..=3 {
        assert!(c.brokers[&node].1.topic("orders").is_none(), "node {node} deleted the topic");
    }
}

#[test]
fn nodes_of_a_cluster_never_hand_out_the_same_producer_id() {
    let mut c = QuorumCluster::new();
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..4 {
        for node in 1..=3 {
            let body = RequestKind::InitProducerId(
                InitProducerIdRequest::default().with_transactional_id(None).with_producer_id(ProducerId(-1)),
            );
            let ResponseKind::InitProducerId(r) = c.ask(node, ApiKey::InitProducerId, 4, body) else { panic!() };
            assert_eq!(r.error_code, 0);
            assert!(seen.insert(r.producer_id.0), "round {round}: node {node} repeated id {}", r.producer_id.0);
        }
    }
    // Restarted, a node goes on from where it was, still apart from the others.
    let storage = c.stop(2);
    c.restart(2, storage);
    let body = RequestKind::InitProducerId(
        InitProducerIdRequest::default().with_transactional_id(None).with_producer_id(ProducerId(-1)),
    );
    let ResponseKind::InitProducerId(r) = c.ask(2, ApiKey::InitProducerId, 4, body) else { panic!() };
    assert!(seen.insert(r.producer_id.0), "the restarted node repeated id {}", r.producer_id.0);
}

#[test]
fn a_metadata_leader_that_stops_gracefully_hands_over_at_once() {
    let mut c = QuorumCluster::new();
    c.run_until(10_000);
    let leader = c.describe(1).topics[0].partitions[0].leader_id.0;
    let epoch = c.describe(1).topics[0].partitions[0].leader_epoch;
    let now = c.now_ms;
    c.brokers.get_mut(&leader).unwrap().1.begin_shutdown(now);
    c.settle();
    c.stop(leader);
    // Within half the followers' fetch timeout (2 s): only an EndQuorumEpoch makes them stand.
    c.run_until(now + 1_000);
    let survivors: Vec<i32> = (1..=3).filter(|&n| n != leader).collect();
    let views: Vec<(i32, i32)> = survivors
        .iter()
        .map(|&n| {
            let d = c.describe(n);
            (d.topics[0].partitions[0].leader_id.0, d.topics[0].partitions[0].leader_epoch)
        })
        .collect();
    assert!(views.iter().all(|&(l, e)| l != leader && l != -1 && e > epoch), "{views:?}");
    assert_eq!(views[0], views[1], "{views:?}");
}

#[test]
fn a_broker_stopped_gracefully_is_fenced_at_once() {
    let mut c = QuorumCluster::new();
    c.run_until(10_000);
    let leader = c.describe(1).topics[0].partitions[0].leader_id.0;
    let stopping = (1..=3).find(|&n| n != leader).unwrap();
    let now = c.now_ms;
    c.brokers.get_mut(&stopping).unwrap().1.begin_shutdown(now);
    c.settle();
    c.stop(stopping);
    // Well inside the 9 s session: only the shut-down heartbeat fences it this soon.
    c.run_until(now + 500);
    let image = c.brokers[&leader].1.quorum.as_ref().unwrap().image().clone();
    assert!(image.brokers[&crate::ids::NodeId(stopping)].fenced);
    let listed: Vec<i32> = c.listed(leader).into_iter().map(|(id, _)| id).collect();
    assert!(!listed.contains(&stopping), "{listed:?}");
}

#[test]
fn a_leftover_directory_of_another_topic_is_not_taken_for_a_new_one() {
    let mut c = QuorumCluster::new();
    // Each node holds data under the names a new topic "orders" will take, with no marker of
    // its topic id: what a topic deleted while the node was down leaves behind.
    for (storage, _) in c.brokers.values() {
        for index in 0..3 {
            let disk: Arc<dyn Storage> = Arc::new(storage.clone());
            let mut log =
                Log::create(disk, &partition_dir("orders", index), crate::log::LogConfig::default(), 0).unwrap();
            let mut records = batch(&simple(4, 5), None);
            log.append(&mut records, 0, 0).unwrap();
        }
    }
    c.run_until(10_000);
    let leader = c.describe(1).topics[0].partitions[0].leader_id.0;
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("orders")))
        .with_num_partitions(3)
        .with_replication_factor(1);
    let body = RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![topic]));
    let ResponseKind::CreateTopics(r) = c.call(leader, ApiKey::CreateTopics, 7, body) else { panic!() };
    assert_eq!(r.topics[0].error_code, 0, "{r:?}");
    c.run_until(c.now_ms + 1_000);
    let mut held = 0;
    for node in 1..=3 {
        for (index, partition) in &c.brokers[&node].1.topic("orders").unwrap().partitions {
            held += 1;
            assert_eq!(partition.log.end_offset(), 0, "node {node} took the leftover data as orders-{index}");
        }
    }
    assert_eq!(held, 3);
}

#[test]
fn a_kraft_request_from_another_cluster_is_refused_and_changes_nothing() {
    let mut c = QuorumCluster::new();
    let vote = |cluster: &str| {
        let message = crate::raft::Message::Vote { epoch: 7, last_epoch: 0, end_offset: 0, pre_vote: false };
        crate::raft::wire::request_for(
            cluster,
            crate::ids::NodeId(2),
            crate::ids::NodeId(1),
            &crate::raft::wire::Target::metadata(),
            &message,
            2,
        )
        .unwrap()
    };
    let request = Request {
        id: RequestId(1_000),
        conn: ConnId(2),
        api_key: ApiKey::Vote,
        api_version: 2,
        client_id: None,
        body: vote("another"),
    };
    let broker = &mut c.brokers.get_mut(&1).unwrap().1;
    while broker.poll_output().is_some() {}
    broker.handle_request(0, request);
    let Some(Output::Response(response)) = broker.poll_output() else { panic!("answered at once") };
    let ResponseBody::Message(body) = response.body else { panic!("{:?}", response.body) };
    let ResponseKind::Vote(r) = *body else { panic!() };
    assert_eq!(r.error_code, ErrorCode::InconsistentClusterId.code());
    assert_eq!(broker.quorum_leader(), Some((0, None)), "the foreign vote moved no epoch");
    // The same vote from this cluster is taken.
    let request = Request {
        id: RequestId(1_001),
        conn: ConnId(2),
        api_key: ApiKey::Vote,
        api_version: 2,
        client_id: None,
        body: vote("c"),
    };
    broker.handle_request(0, request);
    assert_eq!(broker.quorum_leader().map(|(epoch, _)| epoch), Some(7));
}

#[test]
fn a_single_broker_answers_kraft_requests_with_an_error() {
    let mut h = Harness::new();
    let body = RequestKind::DescribeQuorum(DescribeQuorumRequest::default());
    let ResponseKind::DescribeQuorum(r) = h.one(ApiKey::DescribeQuorum, 2, body) else { panic!() };
    assert_eq!(r.error_code, ErrorCode::InvalidRequest.code());
    let vote = crate::raft::wire::request_for(
        "c",
        crate::ids::NodeId(2),
        crate::ids::NodeId(1),
        &crate::raft::wire::Target::metadata(),
        &crate::raft::Message::Vote { epoch: 1, last_epoch: 0, end_offset: 0, pre_vote: false },
        2,
    )
    .unwrap();
    let ResponseKind::Vote(r) = h.one(ApiKey::Vote, 2, vote) else { panic!() };
    assert_eq!(r.error_code, ErrorCode::InvalidRequest.code());
}

pub(super) fn join_request(member: &str) -> RequestKind {
    RequestKind::JoinGroup(
        JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(StrBytes::from_string(member.to_string()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"subscription"))]),
    )
}

pub(super) fn sync_request(member: &str, generation: i32, assignment: Option<&'static [u8]>) -> RequestKind {
    let assignments = assignment
        .map(|a| {
            vec![sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(member.to_string()))
                .with_assignment(Bytes::from_static(a))]
        })
        .unwrap_or_default();
    RequestKind::SyncGroup(
        SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member.to_string()))
            .with_assignments(assignments),
    )
}

pub(super) fn heartbeat_request(member: &str, generation: i32) -> RequestKind {
    RequestKind::Heartbeat(
        HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member.to_string())),
    )
}

#[test]
fn a_groups_generation_and_assignment_survive_a_crash_and_syncgroup_waits_for_them() {
    let storage = MemStorage::new();
    let mut h = Harness::on(storage.clone());
    h.create_topic("t", 1, &[]);
    let join = h.send(ApiKey::JoinGroup, 3, join_request(""));
    // A new group waits group.initial.rebalance.delay.ms for more members.
    h.now_ms += h.broker.config.group.initial_rebalance_delay_ms;
    h.broker.handle_timeout(h.now_ms);
    let answered = h.run_io();
    let ResponseBody::Message(body) = &answered.iter().find(|r| r.id == join).expect("joined").body else { panic!() };
    let ResponseKind::JoinGroup(joined) = body.as_ref() else { panic!() };
    let (member, generation) = (joined.member_id.to_string(), joined.generation_id);
    assert_eq!(joined.error_code, 0);
    // The leader's SyncGroup is answered only once the group's record is on disk.
    let sync = h.send(ApiKey::SyncGroup, 3, sync_request(&member, generation, Some(b"t-0")));
    assert!(h.responses().is_empty(), "no assignment before the record is durable");
    let answered = h.run_io();
    let ResponseBody::Message(body) = &answered.iter().find(|r| r.id == sync).expect("answered after the sync").body
    else {
        panic!()
    };
    let ResponseKind::SyncGroup(synced) = body.as_ref() else { panic!() };
    assert_eq!((synced.error_code, synced.assignment.as_ref()), (0, &b"t-0"[..]));

    drop(h);
    storage.crash();
    let mut h = Harness::on(storage);
    // The member carries on after the restart: same generation, same assignment, no rebalance.
    let ResponseKind::Heartbeat(beat) = h.one(ApiKey::Heartbeat, 3, heartbeat_request(&member, generation)) else {
        panic!()
    };
    assert_eq!(beat.error_code, 0);
    let ResponseKind::SyncGroup(synced) = h.one(ApiKey::SyncGroup, 3, sync_request(&member, generation, None)) else {
        panic!()
    };
    assert_eq!((synced.error_code, synced.assignment.as_ref()), (0, &b"t-0"[..]));
    let ResponseKind::DescribeGroups(described) = h.one(
        ApiKey::DescribeGroups,
        5,
        RequestKind::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(StrBytes::from_static_str("g"))]),
        ),
    ) else {
        panic!()
    };
    assert_eq!(described.groups[0].group_state.to_string(), "Stable");

    // Deleting the group (once empty) deletes its record too.
    let leave = RequestKind::LeaveGroup(
        LeaveGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_member_id(StrBytes::from_string(member.clone())),
    );
    h.one(ApiKey::LeaveGroup, 1, leave);
    let delete = RequestKind::DeleteGroups(
        DeleteGroupsRequest::default().with_groups_names(vec![GroupId(StrBytes::from_static_str("g"))]),
    );
    let ResponseKind::DeleteGroups(deleted) = h.one(ApiKey::DeleteGroups, 2, delete) else { panic!() };
    assert_eq!(deleted.results[0].error_code, 0);
    let storage = h.storage.clone();
    drop(h);
    storage.crash();
    let mut h = Harness::on(storage);
    let ResponseKind::Heartbeat(beat) = h.one(ApiKey::Heartbeat, 3, heartbeat_request(&member, generation)) else {
        panic!()
    };
    assert_eq!(beat.error_code, ErrorCode::UnknownMemberId.code(), "the group is gone");
}

#[test]
fn offsets_and_the_record_of_an_empty_group_expire_after_the_retention() {
    let storage = MemStorage::new();
    let mut h = Harness::on(storage.clone());
    h.create_topic("t", 1, &[]);
    let commit = |h: &mut Harness, group: &'static str| {
        let partition = offset_commit_request::OffsetCommitRequestPartition::default().with_committed_offset(7);
        let topic = offset_commit_request::OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![partition]);
        let body = RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![topic]),
        );
        let ResponseKind::OffsetCommit(r) = h.one(ApiKey::OffsetCommit, 8, body) else { panic!() };
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
    };
    commit(&mut h, "old");
    // "g" had a member once: its record stays as an Empty group until its offsets expire.
    let join = h.send(ApiKey::JoinGroup, 3, join_request(""));
    h.now_ms += h.broker.config.group.initial_rebalance_delay_ms;
    h.broker.handle_timeout(h.now_ms);
    let answered = h.run_io();
    let ResponseBody::Message(body) = &answered.iter().find(|r| r.id == join).expect("joined").body else { panic!() };
    let ResponseKind::JoinGroup(joined) = body.as_ref() else { panic!() };
    let member = joined.member_id.to_string();
    h.one(ApiKey::SyncGroup, 3, sync_request(&member, joined.generation_id, Some(b"t-0")));
    let leave = RequestKind::LeaveGroup(
        LeaveGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_member_id(StrBytes::from_string(member)),
    );
    h.one(ApiKey::LeaveGroup, 1, leave);
    commit(&mut h, "g");
    let retention_ms = h.broker.config.offsets_retention_ms;
    h.now_ms += retention_ms / 2;
    commit(&mut h, "recent");
    h.now_ms += retention_ms / 2 + h.broker.config.retention_check_interval_ms;
    h.broker.handle_timeout(h.now_ms);
    h.run_io();
    let groups = |h: &Harness| h.broker.offsets.groups();
    assert_eq!(groups(&h), vec!["recent".to_string()]);
    assert_eq!(h.broker.groups.state_of("g"), None, "the empty group is gone with its offsets");
    drop(h);
    storage.crash();
    let h = Harness::on(storage);
    assert_eq!(groups(&h), vec!["recent".to_string()], "the tombstones were durable");
    assert_eq!(h.broker.groups.state_of("g"), None);
}
