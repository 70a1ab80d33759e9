//! The broker state machine.
//!
//! # Contract
//!
//! A [`Broker`] is a value the driver owns and feeds. It never blocks on I/O it did not ask for,
//! never reads a clock and never spawns threads.
//!
//! - **Inputs**: [`Broker::handle_request`] for each decoded request, [`Broker::handle_io_done`]
//!   when an [`IoCommand`] finishes, [`Broker::handle_timeout`] when the time from
//!   [`Broker::next_timeout_ms`] arrives. Every input takes `now_ms`.
//! - **Outputs**: after any input, drain [`Broker::poll_output`] until `None`. Each output is
//!   either a [`Response`] to send (in any order across connections; the driver keeps each
//!   connection's responses in request order) or an [`IoCommand`] to run. Then re-read
//!   [`Broker::next_timeout_ms`].
//!
//! Small synchronous storage calls (appends, reads, metadata files) go straight to the
//! [`Storage`] the broker was opened with. The expensive one, fsync of log segments, is an
//! [`IoCommand::Sync`]: replies that promise durability (acks=all) and the high watermark wait
//! for its completion. One sync is in flight at a time and covers every partition written since
//! the last one, so many produce requests share one fsync (group commit).

mod admin;
mod cluster_topics;
mod fault;
mod fetch;
mod group_partitions;
mod groups;
mod info;
mod lifecycle;
mod log_dirs;
mod offsets;
mod produce;
mod quorum;
mod replication;
mod scrub;
mod txn;
mod txn_admin;
mod txn_cluster;
mod txn_markers;
pub mod versions;

pub use fault::{StorageFault, StorageOp, PARTITION_FAILED};
pub use info::api_versions_unsupported;

pub use crate::io::{ConnId, IoCommand, IoToken, Output, Request, RequestId, Response, ResponseBody};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use crate::constants::RETENTION_CHECK_INTERVAL_MS;
use crate::group::{ConsumerGroupConfig, ConsumerGroups, Coordinator, GroupConfig, OffsetStore, OFFSETS_TOPIC};
use crate::ids::{Offset, PartitionId};
use crate::log::batch::NO_PRODUCER_ID;
use crate::log::checkpoint;
use crate::log::{Log, RecoveryReport};
use crate::metadata::store::MetadataStore;
use crate::metadata::{TopicConfig, TopicRecord};
pub(crate) use crate::partition::Partition;
use crate::rng::Rng;
use crate::storage::Storage;
use crate::txn::producer::ProducerTable;

/// Settings the broker needs; the server builds them from its config file, flags and env.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub advertised_host: String,
    pub advertised_port: i32,
    /// `auto.create.topics.enable`
    pub auto_create_topics: bool,
    /// `num.partitions`: partitions of auto-created topics and of CreateTopics with -1.
    pub default_partitions: i32,
    /// `default.replication.factor`: replicas of auto-created topics and of CreateTopics
    /// with -1, in a cluster.
    pub default_replication_factor: i16,
    /// Broker-wide defaults for topic configs, by topic config name (from `log.retention.ms`
    /// and friends).
    pub topic_defaults: BTreeMap<String, String>,
    /// Seed for ids (topic ids, cluster id).
    pub seed: u64,
    /// The data directory as operators name it (DescribeLogDirs reports it).
    pub log_dir: String,
    /// `log.retention.check.interval.ms`: how often retention and `segment.ms` rolls run.
    pub retention_check_interval_ms: i64,
    /// Consumer-group settings (classic protocol).
    pub group: GroupConfig,
    /// Consumer-group settings (KIP-848 consumer protocol).
    pub consumer_group: ConsumerGroupConfig,
    /// `offsets.retention.minutes`, in ms: committed offsets of groups without members are
    /// deleted after this long without a commit.
    pub offsets_retention_ms: i64,
    /// When the offsets log grows past this, the live offsets are rewritten after it and the
    /// older segments deleted once the rewrite is durable (see `groups.rs`).
    pub offsets_log_compact_bytes: u64,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` in a cluster (one
    /// node keeps a single local one).
    pub offsets_topic_partitions: i32,
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state` in a cluster
    /// (one node keeps a single local one).
    pub txn_topic_partitions: i32,
    /// The voters of the metadata quorum, this node among them; `None` for a cluster of one,
    /// which keeps its metadata in `__headwater/metadata.json` as before.
    pub quorum_voters: Option<Vec<crate::ids::NodeId>>,
    /// The cluster's id, shared by every node (`cluster_id`); `None` lets a new data
    /// directory pick one at random. A data directory of another cluster refuses to open.
    pub cluster_id: Option<String>,
    /// `broker.rack`, registered with the controller for rack-aware placement.
    pub rack: Option<String>,
    /// KIP-392: a leader sends a consumer that names its rack to an in-sync replica in that
    /// rack (`replica_selector = rack`); off, every consumer reads from the leader.
    pub rack_aware_reads: bool,
    /// A cluster node snapshots its metadata image after this many new metadata-log entries.
    pub metadata_snapshot_records: i64,
    /// The metadata log's segment size (its start moves past a snapshot by whole segments).
    pub metadata_log_segment_bytes: i64,
    /// How fast a cluster node reads its replicas back to check them by CRC (0: never).
    pub scrub_bytes_per_sec: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            auto_create_topics: true,
            default_partitions: 1,
            default_replication_factor: 1,
            topic_defaults: BTreeMap::new(),
            seed: 0,
            log_dir: "data".into(),
            retention_check_interval_ms: RETENTION_CHECK_INTERVAL_MS,
            group: GroupConfig::default(),
            consumer_group: ConsumerGroupConfig::default(),
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_log_compact_bytes: 64 * 1024 * 1024,
            offsets_topic_partitions: 50,
            txn_topic_partitions: 50,
            quorum_voters: None,
            cluster_id: None,
            rack: None,
            rack_aware_reads: true,
            metadata_snapshot_records: crate::metadata::quorum::SNAPSHOT_RECORDS_DEFAULT,
            metadata_log_segment_bytes: crate::metadata::quorum::SEGMENT_BYTES_DEFAULT,
            scrub_bytes_per_sec: 8 << 20,
        }
    }
}

/// What start-up found, for the log.
#[derive(Debug, Clone, Default)]
pub struct StartupReport {
    pub created_metadata: bool,
    pub topics: usize,
    pub partitions: usize,
    pub recovery: RecoveryReport,
    pub producers: usize,
    pub committed_offsets: usize,
}

const RECOVERY_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
const LOG_START_CHECKPOINT: &str = "log-start-offset-checkpoint";
/// How often the recovery points are checkpointed, so a restart scans little.
const RECOVERY_CHECKPOINT_INTERVAL_MS: i64 = 60_000;

pub(crate) struct Topic {
    pub record: TopicRecord,
    pub config: TopicConfig,
    /// The partitions this node holds a replica of, by index: on a single node every
    /// partition of the topic, in a cluster those placed on this node.
    pub partitions: BTreeMap<i32, Partition>,
}

struct SyncInFlight {
    token: IoToken,
    /// Each partition covered, with the offset durable once the sync completes.
    targets: Vec<(PartitionId, i64)>,
}

pub(crate) enum Parked {
    Produce(produce::ParkedProduce),
    Fetch(fetch::ParkedFetch),
    Offsets(groups::ParkedOffsets),
    Markers(txn_markers::ParkedMarkers),
    TxnStore(txn::ParkedTxnStore),
    TxnMarker(txn::ParkedTxnMarker),
}

/// What a parked request waits for on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitFor {
    /// The high watermark reaching the offset (the end of what it wrote).
    Commit,
    /// The high watermark passing the offset (its fetch offset).
    Data,
    /// This many replicas holding everything before the offset (`min.insync.replicas` above
    /// a majority).
    Copies(usize),
}

impl Parked {
    fn id(&self) -> RequestId {
        match self {
            Parked::Produce(p) => p.id,
            Parked::Fetch(f) => f.id,
            Parked::Offsets(o) => o.id,
            Parked::Markers(m) => m.id,
            Parked::TxnStore(t) => t.id,
            Parked::TxnMarker(t) => t.id,
        }
    }

    fn deadline_ms(&self) -> i64 {
        match self {
            Parked::Produce(p) => p.deadline_ms,
            Parked::Fetch(f) => f.deadline_ms,
            Parked::Offsets(o) => o.deadline_ms,
            Parked::Markers(m) => m.deadline_ms,
            Parked::TxnStore(t) => t.deadline_ms,
            Parked::TxnMarker(t) => t.deadline_ms,
        }
    }

    /// Every (partition, offset, kind) the request waits on.
    fn waits(&self) -> Vec<(PartitionId, i64, WaitFor)> {
        match self {
            Parked::Produce(p) => p.waits(),
            Parked::Fetch(f) => f.waits(),
            Parked::Offsets(o) => o.waits(),
            Parked::Markers(m) => m.waits(),
            Parked::TxnStore(t) => t.waits(),
            Parked::TxnMarker(t) => t.waits(),
        }
    }
}

pub struct Broker {
    config: BrokerConfig,
    storage: Arc<dyn Storage>,
    metadata: MetadataStore,
    topics: BTreeMap<String, Topic>,
    topic_names_by_id: BTreeMap<uuid::Uuid, String>,
    next_producer_id: i64,
    /// The transaction coordinator of the ids whose `__transaction_state` partition is here.
    txn: crate::txn::coordinator::Coordinator,
    /// Requests waiting on the transaction coordinator, with what their answer needs.
    txn_requests: BTreeMap<RequestId, txn::TxnRequest>,
    next_txn_tick_ms: i64,
    /// In a cluster, the state partitions led here and whether their ids are loaded.
    txn_partitions: group_partitions::LedPartitions,
    /// Transaction calls between this node and other brokers.
    txn_cluster: txn_cluster::TxnCluster,
    /// Ids for the broker's own parked writes (state records, markers), above any request's.
    next_internal_id: u64,
    rng: Rng,
    groups: Coordinator,
    consumer_groups: ConsumerGroups,
    offsets: OffsetStore,
    /// A rewrite of the offsets log waiting to be durable: (first offset of the rewrite, end).
    offsets_rewrite: Option<(i64, i64)>,
    /// In a cluster, the offsets partitions led here and whether their groups are loaded.
    group_partitions: group_partitions::LedPartitions,
    outputs: VecDeque<Output>,
    /// Storage failures met during the current input; moved to `outputs` when it ends, after
    /// the parked requests they affect were answered.
    faults: Vec<StorageFault>,
    /// Partitions that storage failed during the current input; a leader among them hands its
    /// leadership over when the input ends ([`Broker::resign_failed`]).
    newly_failed: Vec<PartitionId>,
    /// Requests waiting for a commit, for data or for their deadline. Each is indexed by the
    /// partitions it waits on (`Partition::waiters`) and by its deadline, so an input looks
    /// only at the requests it may have satisfied.
    parked: BTreeMap<RequestId, Parked>,
    deadlines: BTreeSet<(i64, RequestId)>,
    /// Parked requests to look at again before this input ends: a partition they wait on
    /// advanced, failed or went away, or their deadline passed.
    woken: BTreeSet<RequestId>,
    /// Partitions written since their last sync was planned; the next sync covers them.
    unsynced: BTreeSet<PartitionId>,
    sync_in_flight: Option<SyncInFlight>,
    /// The metadata quorum this node votes in (D22), and its log's sync in flight.
    quorum: Option<crate::metadata::quorum::MetadataQuorum>,
    quorum_sync: Option<(IoToken, i64)>,
    /// Metadata-log fetches from peers waiting in the Raft, with the version to answer in.
    quorum_fetch_versions: BTreeMap<RequestId, i16>,
    /// This broker's registration and heartbeats, and (on the controller) brokers' calls.
    lifecycle: lifecycle::Lifecycle,
    controller_calls: lifecycle::ControllerCalls,
    /// In a cluster: the topics built from the metadata image, and admin requests waiting
    /// for the controller.
    cluster: cluster_topics::ClusterTopics,
    /// In a cluster: the partitions' Rafts, their timers, replica fetches and leader reports.
    replication: replication::Replication,
    /// How many times a parked request was looked at again (tests check it follows what
    /// changed, not how much is parked).
    #[cfg(test)]
    parked_looked_at: u64,
    next_token: u64,
    next_retention_check_ms: i64,
    next_recovery_checkpoint_ms: i64,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("node_id", &self.config.node_id).field("topics", &self.topics.len()).finish()
    }
}

impl Broker {
    /// Opens the broker's state from `storage`: metadata, then every partition's log (with
    /// crash recovery), then each partition's producer state from its batch headers.
    pub fn open(config: BrokerConfig, storage: Arc<dyn Storage>, now_ms: i64) -> io::Result<(Broker, StartupReport)> {
        let cluster_id = config.cluster_id.clone().unwrap_or_else(|| cluster_id_from(&mut Rng::new(config.seed)));
        let (mut metadata, created) = MetadataStore::load_or_create(storage.as_ref(), cluster_id)?;
        if let Some(configured) = config.cluster_id.as_ref().filter(|c| **c != metadata.document.cluster_id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "it belongs to cluster {}, but config key `cluster_id` is {configured}",
                    metadata.document.cluster_id
                ),
            ));
        }
        // Each start is a new incarnation with its own id stream, so a seed that repeats (always,
        // in the simulator) never repeats a topic id. Found by the simulator: see
        // docs/simulation.md.
        metadata.document.incarnation += 1;
        metadata.persist(storage.as_ref())?;
        let rng = Rng::new(config.seed ^ metadata.document.incarnation.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut report = StartupReport { created_metadata: created, ..StartupReport::default() };
        let mut faults = Vec::new();
        let recovery_points = read_offsets_checkpoint(
            storage.as_ref(),
            StorageOp::RecoveryCheckpoint,
            RECOVERY_CHECKPOINT,
            "read as empty: every log is checked from its first segment",
            &mut faults,
        );
        let start_offsets = read_offsets_checkpoint(
            storage.as_ref(),
            StorageOp::LogStartCheckpoint,
            LOG_START_CHECKPOINT,
            "read as empty: each log starts at its first segment, so records deleted by DeleteRecords may be readable again",
            &mut faults,
        );
        remove_deleted_dirs(storage.as_ref())?;
        let mut topics = BTreeMap::new();
        let mut topic_names_by_id = BTreeMap::new();
        let mut max_producer_id = NO_PRODUCER_ID;
        for record in &metadata.document.topics {
            let topic_config = TopicConfig::from_pairs(record.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("topic {}: {e}", record.name)))?;
            let log_config = topic_config.log_config(&config.topic_defaults);
            let mut partitions = BTreeMap::new();
            for index in 0..record.partitions {
                let dir = partition_dir(&record.name, index);
                let key = (record.name.clone(), index);
                let log = if storage.exists(&dir)? {
                    let recovery_point = recovery_points.get(&key).copied().unwrap_or(0);
                    let start = start_offsets.get(&key).copied().unwrap_or(0);
                    let (log, recovered) =
                        Log::open(storage.clone(), &dir, log_config.clone(), recovery_point, start, now_ms)?;
                    report.recovery.add(&recovered);
                    log
                } else {
                    Log::create(storage.clone(), &dir, log_config.clone(), now_ms)?
                };
                let mut producers = ProducerTable::default();
                if !crate::planted::active(crate::planted::PlantedBug::ForgetProducerState) {
                    log.for_each_producer_batch(|header, control_type| producers.replay(header, control_type))?;
                }
                // What is on disk at start-up counts as committed here: the markers in it no
                // longer hold the last stable offset back.
                producers.committed(log.durable_offset());
                max_producer_id = max_producer_id.max(producers.max_producer_id().unwrap_or(NO_PRODUCER_ID));
                report.producers += producers.len();
                partitions.insert(index, Partition::new(PartitionId::new(record.id, index), log, producers));
            }
            report.partitions += partitions.len();
            topic_names_by_id.insert(record.id, record.name.clone());
            topics.insert(record.name.clone(), Topic { record: record.clone(), config: topic_config, partitions });
        }
        report.topics = topics.len();
        let next_producer_id = metadata.document.producer_id_block_end.max(max_producer_id + 1);
        let retention_check_interval_ms = config.retention_check_interval_ms;
        let mut rng = rng;
        let groups = Coordinator::new(config.group.clone(), rng.next_u64(), metadata.document.incarnation);
        let consumer_groups =
            ConsumerGroups::new(config.consumer_group.clone(), rng.next_u64(), metadata.document.incarnation);
        let quorum = match &config.quorum_voters {
            Some(voters) => {
                let mut quorum_config =
                    crate::metadata::quorum::QuorumConfig::new(crate::ids::NodeId(config.node_id), voters.clone());
                quorum_config.snapshot_records = config.metadata_snapshot_records;
                quorum_config.segment_bytes = config.metadata_log_segment_bytes;
                Some(crate::metadata::quorum::MetadataQuorum::open(
                    quorum_config,
                    storage.clone(),
                    rng.next_u64(),
                    now_ms,
                )?)
            }
            None => None,
        };
        // A cluster's partitions open once the image names them; until then their checkpoint
        // entries are kept as read.
        let mut unopened = BTreeMap::new();
        if quorum.is_some() {
            for key in recovery_points.keys().chain(start_offsets.keys()) {
                if !topics.contains_key(&key.0) {
                    let recovery = recovery_points.get(key).copied().unwrap_or(0);
                    let start = start_offsets.get(key).copied().unwrap_or(0);
                    unopened.insert(key.clone(), (recovery, start));
                }
            }
        }
        let cluster = cluster_topics::ClusterTopics::new(unopened);
        let mut broker = Broker {
            config,
            storage,
            metadata,
            topics,
            topic_names_by_id,
            next_producer_id,
            txn: Default::default(),
            txn_requests: BTreeMap::new(),
            next_txn_tick_ms: i64::MAX,
            txn_partitions: group_partitions::LedPartitions::default(),
            txn_cluster: txn_cluster::TxnCluster::default(),
            next_internal_id: 1 << 62,
            rng,
            groups,
            consumer_groups,
            offsets: OffsetStore::default(),
            offsets_rewrite: None,
            group_partitions: group_partitions::LedPartitions::default(),
            outputs: VecDeque::new(),
            faults,
            newly_failed: Vec::new(),
            parked: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            woken: BTreeSet::new(),
            unsynced: BTreeSet::new(),
            sync_in_flight: None,
            quorum,
            quorum_sync: None,
            quorum_fetch_versions: BTreeMap::new(),
            lifecycle: lifecycle::Lifecycle::default(),
            controller_calls: lifecycle::ControllerCalls::default(),
            cluster,
            replication: replication::Replication::default(),
            #[cfg(test)]
            parked_looked_at: 0,
            next_token: 1,
            next_retention_check_ms: now_ms + retention_check_interval_ms,
            next_recovery_checkpoint_ms: now_ms + RECOVERY_CHECKPOINT_INTERVAL_MS,
        };
        broker.open_offsets(now_ms)?;
        broker.open_txn_state(now_ms)?;
        report.committed_offsets = broker.offsets.len();
        // Recovery may have left unsynced bytes (a cut tail, rebuilt indexes); start-up is the
        // one time every partition is looked at.
        let recovered: Vec<PartitionId> = broker
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.log.needs_sync())
            .map(|p| p.id)
            .collect();
        broker.unsynced.extend(recovered);
        broker.drain_quorum(now_ms, None);
        broker.maybe_start_sync();
        broker.report_faults(now_ms);
        Ok((broker, report))
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn cluster_id(&self) -> &str {
        &self.metadata.document.cluster_id
    }

    // ----- inputs -----

    /// Handles one decoded request. Its response comes out of [`Broker::poll_output`], now or
    /// after later inputs (fsync completion, new data, a timeout).
    pub fn handle_request(&mut self, now_ms: i64, request: Request) {
        self.dispatch_request(now_ms, request);
        // The request may have failed or deleted partitions that others are parked on.
        self.wake_parked(now_ms);
        self.replication_send(now_ms);
        self.after_input();
        self.report_faults(now_ms);
    }

    fn dispatch_request(&mut self, now_ms: i64, request: Request) {
        match self.forward_to_controller(now_ms, request) {
            Some(request) => self.handle_here(now_ms, request),
            None => self.after_input(),
        }
    }

    /// Handles a request on this node (not forwarded).
    fn handle_here(&mut self, now_ms: i64, request: Request) {
        let Request { id, api_key, api_version, body, client_id: request_client_id, .. } = request;
        let reply = |body: ResponseKind| ResponseBody::Message(Box::new(body));
        if let Some(refused) = self.not_this_coordinator(api_version, &body) {
            return self.respond(id, api_key, api_version, reply(refused));
        }
        let body = match body {
            RequestKind::ApiVersions(_) => reply(ResponseKind::ApiVersions(info::api_versions(api_version))),
            RequestKind::Metadata(r) => reply(ResponseKind::Metadata(self.metadata_response(now_ms, api_version, r))),
            RequestKind::DescribeCluster(r) => {
                reply(ResponseKind::DescribeCluster(self.describe_cluster(api_version, r)))
            }
            RequestKind::InitProducerId(r) if r.transactional_id.is_some() => {
                match self.init_transactional_producer(now_ms, id, api_version, r) {
                    Some(body) => reply(body),
                    None => return self.after_input(),
                }
            }
            RequestKind::InitProducerId(r) => reply(ResponseKind::InitProducerId(self.init_producer_id(r))),
            RequestKind::AddPartitionsToTxn(r) if api_version >= crate::txn::calls::VERIFY_VERSION => {
                match self.add_partitions_for_leader(now_ms, id, api_version, r) {
                    Some(body) => reply(body),
                    None => return self.after_input(),
                }
            }
            RequestKind::AddPartitionsToTxn(r) => match self.add_partitions_to_txn(now_ms, id, api_version, r) {
                Some(body) => reply(body),
                None => return self.after_input(),
            },
            RequestKind::AddOffsetsToTxn(r) => match self.add_offsets_to_txn(now_ms, id, api_version, r) {
                Some(body) => reply(body),
                None => return self.after_input(),
            },
            RequestKind::DescribeTransactions(r) => {
                reply(ResponseKind::DescribeTransactions(self.describe_transactions(r)))
            }
            RequestKind::ListTransactions(r) => {
                reply(ResponseKind::ListTransactions(self.list_transactions(now_ms, r)))
            }
            RequestKind::DescribeProducers(r) => reply(ResponseKind::DescribeProducers(self.describe_producers(r))),
            RequestKind::TxnOffsetCommit(r) => match self.txn_offset_commit(now_ms, id, api_version, r) {
                Some(body) => reply(body),
                None => return self.after_input(),
            },
            RequestKind::EndTxn(r) => match self.end_txn(now_ms, id, api_version, r) {
                Some(body) => reply(body),
                None => return self.after_input(),
            },
            RequestKind::WriteTxnMarkers(r) => match self.write_txn_markers(now_ms, id, api_version, r) {
                Some(body) => body,
                None => return self.after_input(),
            },
            RequestKind::Produce(r) => match self.produce(now_ms, id, api_version, r) {
                Some(body) => body,
                None => return self.after_input(),
            },
            RequestKind::Fetch(r)
                if self.quorum.is_some()
                    && !crate::raft::wire::is_metadata_fetch(&r)
                    && crate::raft::wire::fetching_replica(&r).is_some() =>
            {
                self.replica_fetch(now_ms, id, api_version, &r);
                return self.after_input();
            }
            body @ RequestKind::AlterPartition(_) => match self.report_call(now_ms, id, api_version, &body) {
                Some(body) => body,
                None => return self.after_input(),
            },
            RequestKind::Fetch(r) if self.quorum.is_some() && crate::raft::wire::is_metadata_fetch(&r) => {
                match self.quorum_request(now_ms, id, api_key, api_version, RequestKind::Fetch(r)) {
                    Some(body) => body,
                    None => return self.after_input(),
                }
            }
            body @ (RequestKind::Vote(_)
            | RequestKind::BeginQuorumEpoch(_)
            | RequestKind::EndQuorumEpoch(_)
            | RequestKind::FetchSnapshot(_)
            | RequestKind::DescribeQuorum(_)) => match self.quorum_request(now_ms, id, api_key, api_version, body) {
                Some(body) => body,
                None => return self.after_input(),
            },
            body @ (RequestKind::BrokerRegistration(_) | RequestKind::BrokerHeartbeat(_)) => {
                match self.controller_call(now_ms, id, api_key, api_version, &body) {
                    Some(body) => body,
                    None => return self.after_input(),
                }
            }
            RequestKind::Fetch(r) => match self.fetch(now_ms, id, api_version, r) {
                Some(body) => reply(ResponseKind::Fetch(body)),
                None => return self.after_input(),
            },
            RequestKind::ListOffsets(r) => reply(ResponseKind::ListOffsets(self.list_offsets(api_version, r))),
            RequestKind::DescribeLogDirs(r) => {
                reply(ResponseKind::DescribeLogDirs(self.describe_log_dirs(api_version, r)))
            }
            RequestKind::OffsetForLeaderEpoch(r) => {
                reply(ResponseKind::OffsetForLeaderEpoch(self.offset_for_leader_epoch(r)))
            }
            RequestKind::DeleteRecords(r) => reply(ResponseKind::DeleteRecords(self.delete_records(r))),
            RequestKind::CreateTopics(r) if self.is_cluster() => {
                match self.cluster_create_topics(now_ms, id, api_version, r) {
                    Some(body) => body,
                    None => return self.after_input(),
                }
            }
            RequestKind::DeleteTopics(r) if self.is_cluster() => {
                match self.cluster_delete_topics(now_ms, id, api_version, r) {
                    Some(body) => body,
                    None => return self.after_input(),
                }
            }
            body @ (RequestKind::AlterConfigs(_) | RequestKind::IncrementalAlterConfigs(_)) if self.is_cluster() => {
                match self.cluster_alter_configs(now_ms, id, api_version, body) {
                    Some(body) => body,
                    None => return self.after_input(),
                }
            }
            RequestKind::CreatePartitions(r) if self.is_cluster() => {
                match self.cluster_create_partitions(now_ms, id, api_version, r) {
                    Some(body) => body,
                    None => return self.after_input(),
                }
            }
            RequestKind::CreateTopics(r) => {
                reply(ResponseKind::CreateTopics(self.create_topics(now_ms, api_version, r)))
            }
            RequestKind::DeleteTopics(r) => reply(ResponseKind::DeleteTopics(self.delete_topics(api_version, r))),
            RequestKind::CreatePartitions(r) => {
                reply(ResponseKind::CreatePartitions(self.create_partitions(now_ms, r)))
            }
            RequestKind::DescribeConfigs(r) => {
                reply(ResponseKind::DescribeConfigs(self.describe_configs(api_version, r)))
            }
            RequestKind::AlterConfigs(r) => {
                reply(ResponseKind::AlterConfigs(self.alter_configs(r, &mut admin::ConfigApply::Here)))
            }
            RequestKind::IncrementalAlterConfigs(r) => {
                let apply = &mut admin::ConfigApply::Here;
                reply(ResponseKind::IncrementalAlterConfigs(self.incremental_alter_configs(r, apply)))
            }
            RequestKind::FindCoordinator(r) => {
                // Kafka makes the transaction state topic at the first lookup of a
                // transaction's coordinator.
                if api_version >= 1 && r.key_type == groups::TRANSACTION_KEY {
                    let _ = self.ensure_txn_topic(now_ms);
                }
                reply(ResponseKind::FindCoordinator(self.find_coordinator(api_version, r)))
            }
            RequestKind::JoinGroup(r) => {
                if let Some(refused) = self.classic_join_refused(&r) {
                    return self.respond(id, api_key, api_version, reply(ResponseKind::JoinGroup(refused)));
                }
                let client_id = request_client_id.unwrap_or_default();
                self.groups.join(now_ms, id, api_version, &client_id, r);
                self.drain_group_replies(now_ms);
                return self.after_input();
            }
            RequestKind::SyncGroup(r) => {
                self.groups.sync(now_ms, id, api_version, r);
                self.drain_group_replies(now_ms);
                return self.after_input();
            }
            RequestKind::Heartbeat(r) => reply(ResponseKind::Heartbeat(self.groups.heartbeat(now_ms, r))),
            RequestKind::LeaveGroup(r) => {
                let response = self.groups.leave(now_ms, api_version, r);
                self.drain_group_replies(now_ms);
                reply(ResponseKind::LeaveGroup(response))
            }
            RequestKind::OffsetCommit(r) => match self.offset_commit(now_ms, id, api_version, r) {
                Some(body) => reply(body),
                None => return self.after_input(),
            },
            RequestKind::OffsetFetch(r) => {
                let mut response = self.offset_fetch(api_version, r);
                self.refuse_groups_elsewhere(&mut response);
                reply(ResponseKind::OffsetFetch(response))
            }
            RequestKind::ListGroups(r) => reply(ResponseKind::ListGroups(self.list_groups(api_version, r))),
            RequestKind::DescribeGroups(r) => reply(ResponseKind::DescribeGroups(self.describe_groups(api_version, r))),
            RequestKind::DeleteGroups(r) => match self.delete_groups(now_ms, id, api_version, r) {
                Some(body) => reply(body),
                None => return self.after_input(),
            },
            RequestKind::ConsumerGroupHeartbeat(r) => {
                let client_id = request_client_id.unwrap_or_default();
                reply(ResponseKind::ConsumerGroupHeartbeat(self.consumer_group_heartbeat(
                    now_ms,
                    api_version,
                    &client_id,
                    r,
                )))
            }
            RequestKind::ConsumerGroupDescribe(r) => {
                reply(ResponseKind::ConsumerGroupDescribe(self.consumer_group_describe(api_version, r)))
            }
            RequestKind::OffsetDelete(r) => match self.offset_delete(now_ms, id, api_version, r) {
                Some(body) => reply(body),
                None => return self.after_input(),
            },
            other => ResponseBody::Close(format!(
                "no handler for {:?}",
                ApiKey::try_from(api_key as i16).map(|_| other_kind_name(&other))
            )),
        };
        self.respond(id, api_key, api_version, body);
    }

    fn respond(&mut self, id: RequestId, api_key: ApiKey, api_version: i16, body: ResponseBody) {
        self.outputs.push_back(Output::Response(Response { id, api_key, api_version, body }));
        self.after_input();
    }

    /// An [`IoCommand`] finished.
    pub fn handle_io_done(&mut self, now_ms: i64, token: IoToken, result: io::Result<()>) {
        if let Some((_, durable_offset)) = self.quorum_sync.take_if(|(t, _)| *t == token) {
            self.quorum_synced(now_ms, durable_offset, result);
            return;
        }
        let Some(sync) = self.sync_in_flight.take_if(|s| s.token == token) else {
            return;
        };

        let mut synced = Vec::new();
        for (id, durable_offset) in sync.targets {
            match &result {
                // One fsync failed: after an fsync error Linux may have dropped the dirty
                // pages, so nothing this sync covered can be called durable.
                Err(error) => self.fail_partition(id, StorageOp::Sync, error),
                Ok(()) => {
                    if let Some(partition) = partition_in(&mut self.topics, &self.topic_names_by_id, id) {
                        partition.synced(durable_offset, &mut self.woken);
                        if partition.replica.is_some() {
                            synced.push(id);
                        }
                    }
                }
            }
        }
        self.replicas_durable(now_ms, &synced);
        self.wake_parked(now_ms);
        self.finish_offsets_rewrite();
        self.replication_send(now_ms);
        self.after_input();
        self.report_faults(now_ms);
    }

    /// Time passed: expire waits, roll old segments, enforce retention, checkpoint.
    pub fn handle_timeout(&mut self, now_ms: i64) {
        if let Some(quorum) = self.quorum.as_mut().filter(|q| q.next_timeout_ms() <= now_ms) {
            quorum.handle_timeout(now_ms);
            self.drain_quorum(now_ms, None);
        }
        self.lifecycle_tick(now_ms);
        self.ensure_offsets_topic(now_ms);
        self.replication_timeout(now_ms);
        for request in self.forwards_timed_out(now_ms) {
            self.handle_here(now_ms, request);
        }
        while let Some(&(deadline_ms, id)) = self.deadlines.first() {
            if deadline_ms > now_ms {
                break;
            }
            self.deadlines.pop_first();
            self.woken.insert(id);
        }
        self.wake_parked(now_ms);
        self.groups.tick(now_ms);
        self.consumer_groups.tick(now_ms);
        self.drain_group_replies(now_ms);
        self.txn_tick(now_ms);
        if now_ms >= self.next_retention_check_ms {
            self.next_retention_check_ms = now_ms + self.config.retention_check_interval_ms;
            self.enforce_retention(now_ms);
            self.expire_offsets(now_ms);
            self.compact_offsets(now_ms);
        }
        self.replication_send(now_ms);
        if now_ms >= self.next_recovery_checkpoint_ms {
            self.next_recovery_checkpoint_ms = now_ms + RECOVERY_CHECKPOINT_INTERVAL_MS;
            if let Err(error) = self.write_recovery_checkpoint() {
                self.faults.push(StorageFault::new(
                    StorageOp::RecoveryCheckpoint,
                    RECOVERY_CHECKPOINT,
                    &error,
                    "the previous checkpoint stays (the next start scans more); retried at the next interval",
                ));
            }
        }
        self.after_input();
        self.report_faults(now_ms);
    }

    /// Starts a final sync for a clean shutdown. The driver drains outputs, runs the sync, and
    /// then calls [`Broker::finish_shutdown`].
    pub fn begin_shutdown(&mut self, now_ms: i64) {
        // The metadata quorum's leader hands over now rather than leave the others to notice
        // it is gone (KRaft's EndQuorumEpoch on a graceful stop).
        self.lifecycle_shut_down();
        if let Some(quorum) = &mut self.quorum {
            quorum.resign(now_ms);
            self.drain_quorum(now_ms, None);
        }
        // So do the partitions it leads (Kafka's controlled shutdown moves them first).
        self.resign_leaderships(now_ms);
        self.replication_send(now_ms);
        let ids: Vec<RequestId> = self.parked.keys().copied().collect();
        for id in ids {
            self.finish_parked(now_ms, id, true);
        }
        self.groups.abandon_parked();
        self.drain_group_replies(now_ms);
        self.after_input();
    }

    /// True while an fsync is outstanding.
    pub fn sync_pending(&self) -> bool {
        self.sync_in_flight.is_some()
    }

    /// Whether any partition has writes not yet covered by a completed sync.
    pub fn has_unsynced(&self) -> bool {
        self.unsynced.iter().any(|&id| self.partition_by_id(id).is_some_and(|p| !p.failed && p.log.needs_sync()))
    }

    /// Writes the recovery-point checkpoint after the final sync, so the next start scans
    /// nothing it does not have to.
    pub fn finish_shutdown(&mut self) -> io::Result<()> {
        self.write_recovery_checkpoint()
    }

    // ----- outputs -----

    /// The next output, in the order produced.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Broker::handle_timeout`] must next be called.
    pub fn next_timeout_ms(&self) -> i64 {
        let mut next = self.next_retention_check_ms.min(self.next_recovery_checkpoint_ms);
        if let Some(&(deadline_ms, _)) = self.deadlines.first() {
            next = next.min(deadline_ms);
        }
        if let Some(quorum) = &self.quorum {
            next = next.min(quorum.next_timeout_ms()).min(self.lifecycle_next_ms()).min(self.replication_next_ms());
            next = next.min(self.next_forward_deadline_ms().unwrap_or(i64::MAX));
        }
        for deadline in
            [self.groups.next_deadline_ms(), self.consumer_groups.next_deadline_ms(), self.next_txn_tick_ms()]
                .into_iter()
                .flatten()
        {
            next = next.min(deadline);
        }
        next
    }

    // ----- internals -----

    fn after_input(&mut self) {
        self.maybe_start_sync();
    }

    /// Ends an input that may have met storage failures: answers the parked requests a failed
    /// partition can no longer satisfy (so no producer waits for its timeout), then emits the
    /// faults for the driver to log.
    fn report_faults(&mut self, now_ms: i64) {
        if self.faults.is_empty() {
            return;
        }
        for id in std::mem::take(&mut self.newly_failed) {
            self.resign_failed(now_ms, id);
        }
        self.wake_parked(now_ms);
        for fault in self.faults.drain(..) {
            self.outputs.push_back(Output::Fault(fault));
        }
        self.after_input();
    }

    /// Starts a sync covering every partition with unsynced writes, unless one is running.
    fn maybe_start_sync(&mut self) {
        if self.sync_in_flight.is_some() {
            return;
        }
        // Debug builds (the unit tests) check the indexes against a full scan.
        #[cfg(debug_assertions)]
        for partition in self.topics.values().flat_map(|t| t.partitions.values()) {
            assert!(
                partition.failed || !partition.log.needs_sync() || self.unsynced.contains(&partition.id),
                "partition {} was written without being marked unsynced",
                partition.log.dir()
            );
            for id in partition.waiters.requests() {
                assert!(self.parked.contains_key(&id), "{} indexes request {id:?}, which is not parked", partition.id);
            }
        }
        debug_assert_eq!(self.deadlines.len(), self.parked.len(), "one deadline per parked request");
        let mut files = Vec::new();
        let mut targets = Vec::new();
        for id in std::mem::take(&mut self.unsynced) {
            let Some(partition) = self.partition_by_id_mut(id) else { continue };
            if partition.failed || !partition.log.needs_sync() {
                continue;
            }
            let plan = partition.log.plan_sync();
            files.extend(plan.files);
            targets.push((id, plan.durable_offset));
        }
        if targets.is_empty() {
            return;
        }
        let token = IoToken(self.next_token);
        self.next_token += 1;

        self.sync_in_flight = Some(SyncInFlight { token, targets });
        self.outputs.push_back(Output::Io(IoCommand::Sync { token, files }));
    }

    /// Looks again at the parked requests this input woke; answers those that are done.
    fn wake_parked(&mut self, now_ms: i64) {
        while let Some(id) = self.woken.pop_first() {
            self.finish_parked(now_ms, id, false);
        }
    }

    /// Takes a parked request out (off its partitions and its deadline) and answers it if it
    /// is done, past its deadline, or `force`d at shutdown; otherwise it is parked again.
    fn finish_parked(&mut self, now_ms: i64, id: RequestId, force: bool) {
        let Some(parked) = self.unpark(id) else { return };
        #[cfg(test)]
        {
            self.parked_looked_at += 1;
        }
        let response = match parked {
            Parked::Produce(p) => self.try_finish_produce(now_ms, p, force),
            Parked::Fetch(f) => self.try_finish_fetch(now_ms, f, force),
            Parked::Offsets(o) => self.try_finish_offsets(now_ms, o, force),
            Parked::Markers(m) => self.try_finish_markers(now_ms, m, force),
            Parked::TxnStore(t) => self.try_finish_txn_store(now_ms, t, force),
            Parked::TxnMarker(t) => self.try_finish_txn_marker(now_ms, t, force),
        };
        if let Some(response) = response {
            self.outputs.push_back(Output::Response(response));
        }
    }

    /// Parks a request: indexed on every partition it waits on and by its deadline.
    pub(crate) fn park(&mut self, parked: Parked) {
        let id = parked.id();
        for (partition, offset, wait) in parked.waits() {
            let Some(p) = self.partition_by_id_mut(partition) else { continue };
            match wait {
                WaitFor::Commit => p.waiters.wait_for_commit(Offset(offset), id),
                WaitFor::Data => p.waiters.wait_for_data(Offset(offset), id),
                WaitFor::Copies(copies) => p.waiters.wait_for_copies(copies, Offset(offset), id),
            }
        }
        self.deadlines.insert((parked.deadline_ms(), id));
        self.parked.insert(id, parked);
    }

    fn unpark(&mut self, id: RequestId) -> Option<Parked> {
        let parked = self.parked.remove(&id)?;
        for (partition, offset, wait) in parked.waits() {
            let Some(p) = self.partition_by_id_mut(partition) else { continue };
            match wait {
                WaitFor::Commit => p.waiters.forget_commit(Offset(offset), id),
                WaitFor::Data => p.waiters.forget_data(Offset(offset), id),
                WaitFor::Copies(copies) => p.waiters.forget_copies(copies, Offset(offset), id),
            }
        }
        self.deadlines.remove(&(parked.deadline_ms(), id));
        Some(parked)
    }

    /// Fails a partition after a storage error (see [`Partition::fail`]): its waiting
    /// commits are answered before this input ends, and the fault is reported once.
    /// A partition's storage error while it serves: a damaged batch in a replicated partition is
    /// repaired from a replica ([`Broker::repair_partition`]); anything else fails it.
    pub(crate) fn partition_error(&mut self, now_ms: i64, id: PartitionId, op: StorageOp, error: &io::Error) {
        if let Some(damaged) = crate::log::CorruptBatch::of(error) {
            if self.repair_partition(now_ms, id, damaged.clone()) {
                return;
            }
        }
        self.fail_partition(id, op, error);
    }

    pub(crate) fn fail_partition(&mut self, id: PartitionId, op: StorageOp, error: &io::Error) {
        if let Some(partition) = partition_in(&mut self.topics, &self.topic_names_by_id, id) {
            if let Some(fault) = partition.fail(op, error, &mut self.woken) {
                self.faults.push(fault);
                self.newly_failed.push(id);
            }
        }
    }

    /// A partition was written: the next sync must cover it.
    pub(crate) fn note_unsynced(&mut self, id: PartitionId) {
        self.unsynced.insert(id);
    }

    pub(crate) fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    pub(crate) fn topic_name_by_id(&self, id: uuid::Uuid) -> Option<&str> {
        self.topic_names_by_id.get(&id).map(String::as_str)
    }

    pub(crate) fn partition_by_id(&self, id: PartitionId) -> Option<&Partition> {
        let name = self.topic_names_by_id.get(&id.topic_id)?;
        self.topics.get(name)?.partitions.get(&id.index)
    }

    pub(crate) fn partition_by_id_mut(&mut self, id: PartitionId) -> Option<&mut Partition> {
        partition_in(&mut self.topics, &self.topic_names_by_id, id)
    }

    pub(crate) fn partition(&self, topic: &str, index: i32) -> Option<&Partition> {
        self.topics.get(topic)?.partitions.get(&index)
    }

    pub(crate) fn partition_mut(&mut self, topic: &str, index: i32) -> Option<&mut Partition> {
        self.topics.get_mut(topic)?.partitions.get_mut(&index)
    }

    /// Rolls segments older than `segment.ms` and applies retention to every partition.
    fn enforce_retention(&mut self, now_ms: i64) {
        let mut moves = Vec::new();
        for topic in self.topics.values_mut() {
            for (&index, partition) in topic.partitions.iter_mut().filter(|(_, p)| !p.failed) {
                let rolled = partition.log.roll_if_old(now_ms);
                if partition.log.needs_sync() {
                    self.unsynced.insert(partition.id);
                }
                if let Err(error) = rolled {
                    self.faults.push(StorageFault::new(
                        StorageOp::Roll,
                        partition.log.dir(),
                        &error,
                        "the active segment stays open; the roll is retried at the next append or retention check",
                    ));
                }
                if let Some(start) = partition.log.start_after_retention(now_ms) {
                    moves.push((topic.record.name.clone(), index, start));
                }
            }
        }
        // A failure is reported inside; nothing moved, and the next retention check retries.
        let _ = self.advance_log_starts(&moves);
    }

    /// Moves log start offsets (DeleteRecords, retention, the offsets log's rewrite): first the
    /// log-start checkpoint with the new offsets, then the logs, then their old segments. So a
    /// restart, graceful or not, never shows records a client was told are gone. If the
    /// checkpoint cannot be written nothing moves, the failure is reported, and the error
    /// returned. A segment that cannot be deleted stays, below the log start, for the next
    /// retention check.
    pub(crate) fn advance_log_starts(&mut self, moves: &[(String, i32, i64)]) -> io::Result<()> {
        let forward = moves.iter().any(|(topic, index, start)| {
            self.partition(topic, *index).is_some_and(|p| *start > p.log.log_start_offset())
        });
        if forward {
            if let Err(error) = self.write_log_start_checkpoint(moves) {
                self.faults.push(StorageFault::new(
                    StorageOp::LogStartCheckpoint,
                    LOG_START_CHECKPOINT,
                    &error,
                    "no log start moved; the request is refused or retried at the next retention check",
                ));
                return Err(error);
            }
        }
        for (topic, index, start) in moves {
            let Some(partition) = self.partition_mut(topic, *index) else { continue };
            // Aborted transactions wholly before the new start concern no reader any more.
            partition.producers.aborted.trim_before(*start);
            if let Err(error) = partition.log.advance_start(*start) {
                let dir = partition.log.dir().to_string();
                self.faults.push(StorageFault::new(
                    StorageOp::Delete,
                    dir,
                    &error,
                    "the log start moved; segments before it are deleted at the next retention check",
                ));
            }
        }
        Ok(())
    }

    fn write_recovery_checkpoint(&self) -> io::Result<()> {
        let mut entries: Vec<Vec<String>> =
            self.topics
                .values()
                .flat_map(|t| {
                    t.partitions.iter().filter(|(_, p)| !p.failed).map(move |(i, p)| {
                        vec![t.record.name.clone(), i.to_string(), p.log.durable_offset().to_string()]
                    })
                })
                .collect();
        let unopened = self.cluster.unopened().iter();
        entries
            .extend(unopened.map(|((name, i), (recovery, _))| vec![name.clone(), i.to_string(), recovery.to_string()]));
        checkpoint::write(self.storage.as_ref(), "", RECOVERY_CHECKPOINT, &entries)
    }

    /// Writes every partition's log start offset, with `moves` (topic, partition, new start)
    /// in place of the current ones where they are further on.
    fn write_log_start_checkpoint(&self, moves: &[(String, i32, i64)]) -> io::Result<()> {
        let moved: BTreeMap<(&str, i32), i64> = moves.iter().map(|(t, i, o)| ((t.as_str(), *i), *o)).collect();
        let entries: Vec<Vec<String>> = self
            .topics
            .values()
            .flat_map(|t| {
                let moved = &moved;
                t.partitions.iter().map(move |(&i, p)| {
                    let current = p.log.log_start_offset();
                    let start = moved.get(&(t.record.name.as_str(), i)).map_or(current, |&m| m.max(current));
                    vec![t.record.name.clone(), i.to_string(), start.to_string()]
                })
            })
            .collect();
        let mut entries = entries;
        let unopened = self.cluster.unopened().iter();
        entries.extend(unopened.map(|((name, i), (_, start))| vec![name.clone(), i.to_string(), start.to_string()]));
        checkpoint::write(self.storage.as_ref(), "", LOG_START_CHECKPOINT, &entries)
    }

    /// Rewrites both checkpoints from the current topics, so no entry of a deleted topic can
    /// apply to a new topic or partition of the same name. Part of creating one.
    pub(crate) fn write_checkpoints(&self) -> io::Result<()> {
        self.write_recovery_checkpoint()?;
        self.write_log_start_checkpoint(&[])
    }

    /// Creates the internal offsets topic if needed and replays it into the offset store and
    /// the classic coordinator.
    fn open_offsets(&mut self, now_ms: i64) -> io::Result<()> {
        if self.is_cluster() {
            // A cluster's offsets topic is replicated like any other; its partitions load
            // where they are led (`group_partitions.rs`).
            return Ok(());
        }
        if self.topic(OFFSETS_TOPIC).is_none() {
            let config = TopicConfig::from_pairs([("cleanup.policy", "compact")]).expect("valid internal config");
            self.create_topic(now_ms, OFFSETS_TOPIC, 1, config).map_err(|(_, message)| io::Error::other(message))?;
        }
        if let Some(partition) = self.partition(OFFSETS_TOPIC, 0) {
            let log = group_partitions::read_offsets_log(partition)?;
            self.take_over_groups(now_ms, log);
        }
        Ok(())
    }

    /// Topics only the broker writes.
    pub(crate) fn is_internal(name: &str) -> bool {
        name == OFFSETS_TOPIC || name == txn::TXN_TOPIC
    }

    fn persist_metadata(&mut self) -> io::Result<()> {
        // A cluster's topics live in the metadata log; this file keeps the node's own.
        let from_image = self.cluster.image_topics();
        self.metadata.document.topics =
            self.topics.values().filter(|t| !from_image.contains(&t.record.id)).map(|t| t.record.clone()).collect();
        self.metadata.persist(self.storage.as_ref())
    }
}

fn other_kind_name(kind: &RequestKind) -> String {
    let text = format!("{kind:?}");
    text.split('(').next().unwrap_or("request").to_string()
}

/// A partition by id, borrowing only the topic maps (so the caller may use other fields).
fn partition_in<'a>(
    topics: &'a mut BTreeMap<String, Topic>,
    names_by_id: &BTreeMap<uuid::Uuid, String>,
    id: PartitionId,
) -> Option<&'a mut Partition> {
    let name = names_by_id.get(&id.topic_id)?;
    topics.get_mut(name)?.partitions.get_mut(&id.index)
}

/// `<topic>-<partition>`, Kafka's directory name.
pub fn partition_dir(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

/// A Kafka-style cluster id: 16 random bytes in unpadded URL-safe base64.
fn cluster_id_from(rng: &mut Rng) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = rng.uuid().into_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let symbols = chunk.len() + 1;
        for i in 0..symbols {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Reads a `topic partition offset` checkpoint at the storage root (the data directory, never
/// anywhere else). A missing file is empty; an unreadable one is reported and read as empty.
fn read_offsets_checkpoint(
    storage: &dyn Storage,
    op: StorageOp,
    name: &str,
    consequence: &'static str,
    faults: &mut Vec<StorageFault>,
) -> BTreeMap<(String, i32), i64> {
    let entries = checkpoint::read(storage, name, 3).unwrap_or_else(|error| {
        faults.push(StorageFault::new(op, name, &error, consequence));
        Vec::new()
    });
    entries.into_iter().filter_map(|e| Some(((e[0].clone(), e[1].parse().ok()?), e[2].parse().ok()?))).collect()
}

/// Finishes topic deletions a crash interrupted: directories renamed to `*-delete`.
fn remove_deleted_dirs(storage: &dyn Storage) -> io::Result<()> {
    for name in storage.list_dir("")? {
        if name.ends_with("-delete") {
            storage.remove_dir_all(&name)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod replication_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_cluster_tests;
#[cfg(test)]
mod txn_tests;
