//! The metadata quorum on one node: the `__cluster_metadata-0` log, the Raft replica that
//! replicates it among the voters, the image its committed records build, and, on the
//! quorum's leader, the controller.
//!
//! # Contract
//!
//! Inputs: [`MetadataQuorum::handle_message`] (a peer's Raft message),
//! [`MetadataQuorum::handle_timeout`], [`MetadataQuorum::handle_synced`] (the sync asked for
//! by [`QuorumOutput::Sync`] completed) and the controller requests ([`MetadataQuorum::decide`]).
//! Each takes `now_ms`; afterwards drain [`MetadataQuorum::poll_output`] and re-read
//! [`MetadataQuorum::next_timeout_ms`].
//!
//! The Raft's saved state (`quorum-state` in the log's directory) is written inline, before
//! any message that depends on it leaves, as the other small metadata files are (D1). The
//! log's own fsync is an output, run by the owner beside the partitions' syncs.
//!
//! The controller becomes active only once this leader has applied its whole log: entries of
//! earlier epochs are committed by then, so the image it starts from is the log's true state
//! (KRaft waits the same way). A decision is answered once its records are committed.
//!
//! Every node snapshots its own image every `snapshot_records` applied entries (KRaft's
//! `.checkpoint`, as metadata records) and its log then starts there, so the log stays about
//! that long plus a segment. A restarted node starts its image from the snapshot; a follower
//! that needs entries the leader no longer holds fetches the leader's snapshot (FetchSnapshot).

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::Arc;

use bytes::Bytes;

use super::controller::{Controller, ControllerConfig, Refusal};
use super::image::MetadataImage;
use super::records::MetadataRecord;
use crate::broker::{StorageFault, StorageOp};
use crate::error::ErrorCode;
use crate::ids::NodeId;
use crate::log::batch::build::{batch, Record};
use crate::log::batch::{payload_records, BatchHeader};
use crate::log::raft_view::RaftView;
use crate::log::{Log, LogConfig};
use crate::raft::{saved, Message, Raft, RaftConfig, RaftOutput, SnapshotId};
use crate::storage::{NamedFile, Storage};

/// The metadata log's directory, as Kafka names it.
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";

/// Metadata-log entries applied between two snapshots, by default.
pub const SNAPSHOT_RECORDS_DEFAULT: i64 = 20_000;
/// The metadata log's segment size by default: the log start moves by whole segments.
pub const SEGMENT_BYTES_DEFAULT: i64 = 8 << 20;
/// Metadata records per batch in a snapshot.
const SNAPSHOT_BATCH_RECORDS: usize = 1_000;

#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node: NodeId,
    pub voters: Vec<NodeId>,
    pub raft: RaftConfig,
    pub controller: ControllerConfig,
    /// Snapshot the image once this many log entries were applied since the last snapshot.
    pub snapshot_records: i64,
    pub segment_bytes: i64,
}

impl QuorumConfig {
    pub fn new(node: NodeId, voters: Vec<NodeId>) -> QuorumConfig {
        QuorumConfig {
            node,
            raft: RaftConfig::new(node, voters.iter().copied()),
            voters,
            controller: ControllerConfig::default(),
            snapshot_records: SNAPSHOT_RECORDS_DEFAULT,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
        }
    }

    fn log_config(&self) -> LogConfig {
        LogConfig { segment_bytes: self.segment_bytes, ..LogConfig::default() }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum QuorumOutput {
    Send {
        to: NodeId,
        message: Message,
    },
    /// Fsync these files of the metadata log, then call `handle_synced(durable_offset)`.
    Sync {
        files: Vec<NamedFile>,
        durable_offset: i64,
    },
    /// A decision's records are committed (`Ok`), or it was refused or lost (`Err`).
    Decided {
        token: u64,
        result: Result<(), Refusal>,
    },
    Fault(StorageFault),
}

/// What a broker asks the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Register(super::controller::Registration),
    Heartbeat {
        node: NodeId,
        incarnation: u64,
        caught_up: bool,
    },
    ShutDown {
        node: NodeId,
        incarnation: u64,
    },
    CreateTopic {
        name: String,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        count: i32,
    },
    /// Replaces a topic's config overrides (AlterConfigs).
    SetTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// Sets (`Some`) or removes (`None`) some of a topic's overrides and keeps the rest as the
    /// controller's latest state has them (IncrementalAlterConfigs): of two changes to
    /// different keys decided one after the other, neither undoes the other.
    ChangeTopicConfigs {
        name: String,
        changes: BTreeMap<String, Option<String>>,
    },
    /// Partition leaders on `node` report leadership and in-sync replicas; reports that are
    /// stale (an older epoch) or not from a replica are left out, the rest recorded.
    ReportLeaders {
        node: NodeId,
        reports: Vec<super::calls::LeaderReport>,
    },
}

pub struct MetadataQuorum {
    config: QuorumConfig,
    storage: Arc<dyn Storage>,
    log: Log,
    raft: Raft,
    image: Arc<MetadataImage>,
    controller: Option<Controller>,
    /// Decisions proposed and not yet committed: (end offset of their records, token).
    pending: BTreeMap<i64, u64>,
    sync_in_flight: bool,
    /// The quorum state could not be saved: this replica takes no further part (a vote it
    /// could not make durable must not be acted on) until a restart.
    failed: bool,
    seed: u64,
    outputs: VecDeque<QuorumOutput>,
}

impl std::fmt::Debug for MetadataQuorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataQuorum").field("node", &self.config.node).field("epoch", &self.raft.epoch()).finish()
    }
}

impl MetadataQuorum {
    /// Opens (or creates) the metadata log and the saved quorum state on `storage`.
    pub fn open(config: QuorumConfig, storage: Arc<dyn Storage>, seed: u64, now_ms: i64) -> io::Result<MetadataQuorum> {
        // The whole log is checked by CRC at every start (recovery point 0); it is short. It
        // starts at its latest snapshot, if it has one.
        let log = if storage.exists(METADATA_LOG_DIR)? {
            let mut fence = |reached| saved::fence(storage.as_ref(), METADATA_LOG_DIR, reached);
            Log::open_fenced(storage.clone(), METADATA_LOG_DIR, config.log_config(), 0, 0, now_ms, &mut fence)?.0
        } else {
            Log::create(storage.clone(), METADATA_LOG_DIR, config.log_config(), now_ms)?
        };
        let saved = saved::read(storage.as_ref(), METADATA_LOG_DIR)?;
        let mut log = log;
        let raft = Raft::new(
            config.raft.clone(),
            saved,
            seed,
            now_ms,
            &mut RaftView { log: &mut log, now_ms, voters: &config.voters, producers: None },
        );
        let mut quorum = MetadataQuorum {
            config,
            storage,
            log,
            raft,
            image: Arc::new(MetadataImage::default()),
            controller: None,
            pending: BTreeMap::new(),
            sync_in_flight: false,
            failed: false,
            seed,
            outputs: VecDeque::new(),
        };
        quorum.after_input(now_ms);
        Ok(quorum)
    }

    // ----- inputs -----

    pub fn handle_message(&mut self, now_ms: i64, from: NodeId, message: Message) {
        if self.failed {
            return;
        }
        let result = self.with_view(now_ms, |raft, view| raft.handle_message(now_ms, from, message, view));
        self.report(result);
        self.after_input(now_ms);
    }

    pub fn handle_timeout(&mut self, now_ms: i64) {
        if self.failed {
            return;
        }
        let result = self.with_view(now_ms, |raft, view| raft.handle_timeout(now_ms, view));
        self.report(result);
        if let Some(controller) = &mut self.controller {
            let records = controller.tick(now_ms);
            if !records.is_empty() {
                self.propose(now_ms, records, None);
            }
        }
        self.after_input(now_ms);
    }

    pub fn handle_synced(&mut self, now_ms: i64, durable_offset: i64) {
        self.sync_in_flight = false;
        self.log.synced(durable_offset);
        if self.failed {
            return;
        }
        let result = self.with_view(now_ms, |raft, view| raft.handle_durable(now_ms, view));
        self.report(result);
        self.after_input(now_ms);
    }

    /// The sync asked for failed: nothing new counts as durable. Linux may have dropped the
    /// dirty pages, so the log cannot be trusted past its durable offset: like a partition, the
    /// quorum stops taking part until a restart recovers the log from disk.
    pub fn handle_sync_failed(&mut self) {
        self.sync_in_flight = false;
        self.failed = true;
        self.controller = None;
        self.refuse_pending(ErrorCode::KafkaStorageError, "the metadata log's sync failed");
    }

    /// Answers every decision still waiting for its commit with an error (each waits for
    /// nothing else, and its asker would otherwise wait for ever).
    fn refuse_pending(&mut self, code: ErrorCode, why: &str) {
        for (_, token) in std::mem::take(&mut self.pending) {
            self.outputs.push_back(QuorumOutput::Decided { token, result: Err((code, why.to_string())) });
        }
    }

    /// A graceful stop: a leader hands its leadership over (see [`Raft::resign`]).
    pub fn resign(&mut self, now_ms: i64) {
        self.raft.resign(now_ms);
        self.after_input(now_ms);
    }

    /// A request for the controller; answered with `Decided { token }` once committed, or at
    /// once when this node is not the active controller (NOT_CONTROLLER) or refuses it.
    pub fn decide(&mut self, now_ms: i64, token: u64, decision: Decision) {
        let Some(controller) = &mut self.controller else {
            let refusal = (ErrorCode::NotController, format!("node {} is not the active controller", self.config.node));
            self.outputs.push_back(QuorumOutput::Decided { token, result: Err(refusal) });
            return;
        };
        let answer_early = matches!(decision, Decision::CreateTopic { .. })
            && crate::planted::active(crate::planted::PlantedBug::CreateBeforeCommit);
        let decided = match decision {
            Decision::Register(registration) => controller.register(now_ms, registration),
            Decision::Heartbeat { node, incarnation, caught_up } => {
                controller.heartbeat(now_ms, node, incarnation, caught_up)
            }
            Decision::ShutDown { node, incarnation } => controller.shut_down(node, incarnation),
            Decision::CreateTopic { name, partitions, replication_factor, configs } => {
                controller.create_topic(&name, partitions, replication_factor, &configs)
            }
            Decision::DeleteTopic { name } => controller.delete_topic(&name),
            Decision::CreatePartitions { name, count } => controller.create_partitions(&name, count),
            Decision::SetTopicConfigs { name, configs } => controller.set_topic_configs(&name, &configs),
            Decision::ChangeTopicConfigs { name, changes } => controller.change_topic_configs(&name, &changes),
            Decision::ReportLeaders { node, reports } => {
                let mut records = Vec::new();
                for report in reports {
                    // A refused report (stale, or of a deleted topic) changes nothing; the others
                    // still count.
                    if let Ok(more) = controller.report_leader(
                        report.topic_id,
                        report.index,
                        node,
                        report.leader_epoch,
                        report.in_sync,
                    ) {
                        records.extend(more);
                    }
                }
                Ok(records)
            }
        };
        match decided {
            Ok(records) if records.is_empty() => {
                self.outputs.push_back(QuorumOutput::Decided { token, result: Ok(()) })
            }
            Ok(records) => {
                self.propose(now_ms, records, Some(token));
                if answer_early {
                    self.answer_before_commit(token);
                }
            }
            Err(refusal) => self.outputs.push_back(QuorumOutput::Decided { token, result: Err(refusal) }),
        }
        self.after_input(now_ms);
    }

    /// The planted bug `create-before-commit`: a decision proposed and waiting for its commit
    /// is answered at once, as if committed.
    fn answer_before_commit(&mut self, token: u64) {
        let waiting = self.pending.iter().find(|(_, &t)| t == token).map(|(&end, _)| end);
        if let Some(end) = waiting {
            self.pending.remove(&end);
            self.outputs.push_back(QuorumOutput::Decided { token, result: Ok(()) });
        }
    }

    // ----- outputs and queries -----

    pub fn poll_output(&mut self) -> Option<QuorumOutput> {
        self.outputs.pop_front()
    }

    pub fn next_timeout_ms(&self) -> i64 {
        // A failed quorum takes no input; a timeout it would not act on must not be asked for
        // again and again (the driver would spin on it).
        if self.failed {
            return i64::MAX;
        }
        let controller = self.controller.as_ref().and_then(Controller::next_timeout_ms).unwrap_or(i64::MAX);
        self.raft.next_timeout_ms().min(controller)
    }

    /// The latest committed image (every broker routes and answers Metadata from it).
    pub fn image(&self) -> &Arc<MetadataImage> {
        &self.image
    }

    pub fn is_active_controller(&self) -> bool {
        self.controller.is_some()
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// DescribeQuorum as this node sees the quorum (`kafka-metadata-quorum describe --status`).
    pub fn describe(&self) -> kafka_protocol::messages::DescribeQuorumResponse {
        crate::raft::wire::describe_quorum(&self.raft, self.log.end_offset())
    }

    // ----- internals -----

    fn with_view<R>(&mut self, now_ms: i64, f: impl FnOnce(&mut Raft, &mut RaftView<'_>) -> R) -> R {
        let mut view = RaftView { log: &mut self.log, now_ms, voters: &self.config.voters, producers: None };
        f(&mut self.raft, &mut view)
    }

    fn propose(&mut self, now_ms: i64, records: Vec<MetadataRecord>, token: Option<u64>) {
        let values: Vec<Record> = records
            .iter()
            .map(|r| Record { value: Some(r.encode()), timestamp: now_ms, ..Record::default() })
            .collect();
        let batch_bytes = Bytes::from(batch(&values, None));
        let proposed = self.with_view(now_ms, |raft, view| raft.propose(batch_bytes, view));
        match proposed {
            Ok(Some(_)) => {
                if let Some(token) = token {
                    self.pending.insert(self.log.end_offset(), token);
                }
            }
            Ok(None) => {
                // Lost the leadership on the way; the controller goes with the next output pass.
                if let Some(token) = token {
                    let refusal = (ErrorCode::NotController, "the controller lost its leadership".to_string());
                    self.outputs.push_back(QuorumOutput::Decided { token, result: Err(refusal) });
                }
            }
            Err(error) => {
                self.report(Err(error));
                if let Some(token) = token {
                    let refusal = (ErrorCode::KafkaStorageError, "the metadata log could not be written".to_string());
                    self.outputs.push_back(QuorumOutput::Decided { token, result: Err(refusal) });
                }
            }
        }
    }

    fn report(&mut self, result: io::Result<()>) {
        if let Err(error) = result {
            self.outputs.push_back(QuorumOutput::Fault(StorageFault::new(
                StorageOp::Append,
                METADATA_LOG_DIR,
                &error,
                "the metadata log was not changed; the Raft retries from its saved state",
            )));
        }
    }

    /// Performs the Raft's outputs in order, applies what became committed, and starts or
    /// stops the controller.
    fn after_input(&mut self, now_ms: i64) {
        while let Some(output) = self.raft.poll_output() {
            match output {
                RaftOutput::SaveState(state) => {
                    if let Err(error) = saved::write(self.storage.as_ref(), METADATA_LOG_DIR, state) {
                        // A vote or epoch that is not durable must not be acted on: nothing after
                        // it leaves, and this replica stops taking part until a restart.
                        self.outputs.push_back(QuorumOutput::Fault(StorageFault::new(
                            StorageOp::Metadata,
                            format!("{METADATA_LOG_DIR}/{}", saved::QUORUM_STATE_FILE),
                            &error,
                            "this node stops taking part in the metadata quorum until it restarts",
                        )));
                        while self.raft.poll_output().is_some() {}
                        self.failed = true;
                        self.controller = None;
                        break;
                    }
                }
                RaftOutput::Send { to, message } => self.outputs.push_back(QuorumOutput::Send { to, message }),
                RaftOutput::Committed { high_watermark } => self.apply_committed(high_watermark),
                RaftOutput::LeaderChanged { .. } => {}
            }
        }
        if !self.raft.is_leader() || self.failed {
            self.controller = None;
            self.refuse_pending(ErrorCode::NotController, "the controller lost its leadership");
        }
        let caught_up = self.image.applied_offset == self.log.end_offset();
        if !self.failed && self.raft.is_leader() && self.controller.is_none() && caught_up {
            let seed = self.seed ^ (self.raft.epoch() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            self.controller = Some(Controller::new(self.config.controller.clone(), &self.image, seed, now_ms));
        }
        // A failed quorum syncs nothing more: its disk failed a sync already, and asking again
        // would only fail again, as fast as the disk answers.
        if !self.failed && !self.sync_in_flight && self.log.needs_sync() {
            let plan = self.log.plan_sync();
            self.sync_in_flight = true;
            self.outputs.push_back(QuorumOutput::Sync { files: plan.files, durable_offset: plan.durable_offset });
        }
    }

    /// Applies the committed entries not applied yet to a new image, starting from the log's
    /// snapshot when the entries after the image are gone from the log (after a restart, or
    /// a snapshot fetched from the leader); then snapshots the image if it is due.
    fn apply_committed(&mut self, high_watermark: i64) {
        let result = self.image_from_snapshot_if_needed(high_watermark).and_then(|loaded| {
            let base = loaded.as_ref().unwrap_or(&self.image);
            // Nothing new, or the entries after the image are only in a snapshot this node
            // does not know committed yet.
            if high_watermark <= base.applied_offset || base.applied_offset < self.log.log_start_offset() {
                return Ok(loaded);
            }
            let records = self.committed_records(base.applied_offset, high_watermark)?;
            base.with_records(&records, high_watermark).map(Some)
        });
        match result {
            Ok(None) => {}
            Ok(Some(image)) => {
                self.image = Arc::new(image);
                self.snapshot_if_due();
                let done: Vec<i64> = self.pending.range(..=high_watermark).map(|(&end, _)| end).collect();
                for end in done {
                    let token = self.pending.remove(&end).expect("listed above");
                    self.outputs.push_back(QuorumOutput::Decided { token, result: Ok(()) });
                }
            }
            Err(reason) => {
                self.outputs.push_back(QuorumOutput::Fault(StorageFault::new(
                    StorageOp::Read,
                    METADATA_LOG_DIR,
                    &io::Error::new(io::ErrorKind::InvalidData, reason),
                    "the image stays at the last records that applied; this broker's metadata is stale until a fix",
                )));
                self.refuse_pending(ErrorCode::KafkaStorageError, "committed metadata records did not apply");
            }
        }
    }
}

impl MetadataQuorum {
    /// The metadata records at offsets `from..high_watermark`, read from `from` on (control
    /// batches, the leader changes, hold none).
    fn committed_records(&self, from: i64, high_watermark: i64) -> Result<Vec<MetadataRecord>, String> {
        let mut records = Vec::new();
        let mut position = from;
        while position < high_watermark {
            let read = self.log.read(position, 1 << 20, high_watermark, true).map_err(|e| e.to_string())?.records;
            if read.is_empty() {
                return Err(format!("the metadata log has nothing at {position}, below its high watermark"));
            }
            position = decode_batches(&read, position..high_watermark, &mut records)?.max(position);
        }
        Ok(records)
    }

    /// The image of the log's snapshot, when the image lags behind the log start (the entries
    /// between are only in the snapshot); `None` when the log holds what the image needs, or
    /// the snapshot is not committed yet as far as this node knows.
    fn image_from_snapshot_if_needed(&self, high_watermark: i64) -> Result<Option<MetadataImage>, String> {
        if self.image.applied_offset >= self.log.log_start_offset() {
            return Ok(None);
        }
        let Some(id) = self.log.snapshot() else {
            return Err(format!("the metadata log starts at {} with no snapshot", self.log.log_start_offset()));
        };
        if high_watermark < id.end_offset {
            return Ok(None);
        }
        let bytes = self
            .log
            .read_snapshot(id, 0, usize::MAX)
            .map_err(|e| e.to_string())?
            .ok_or("the metadata snapshot vanished")?
            .1;
        let mut records = Vec::new();
        // A snapshot's batches number their records from 0 each: all of them count.
        decode_batches(&bytes, 0..i64::MAX, &mut records)?;
        MetadataImage::default().with_records(&records, id.end_offset).map(Some)
    }

    /// Snapshots the image once `snapshot_records` entries were applied since the last one;
    /// the log then starts at the snapshot (as far as it is durable).
    fn snapshot_if_due(&mut self) {
        let applied = self.image.applied_offset;
        let last = self.log.snapshot().map_or(0, |id| id.end_offset);
        if applied - last < self.config.snapshot_records.max(1) || applied > self.log.end_offset() {
            return;
        }
        let epoch = self.log.epochs().epoch_at(applied - 1).unwrap_or_else(|| self.log.last_epoch());
        let id = SnapshotId { end_offset: applied, epoch };
        let records = self.image.to_records();
        let mut bytes = Vec::new();
        for chunk in records.chunks(SNAPSHOT_BATCH_RECORDS) {
            let values: Vec<Record> =
                chunk.iter().map(|r| Record { value: Some(r.encode()), ..Record::default() }).collect();
            bytes.extend(batch(&values, None));
        }
        if let Err(error) = self.log.save_snapshot(id, &bytes) {
            self.outputs.push_back(QuorumOutput::Fault(StorageFault::new(
                StorageOp::Metadata,
                format!("{METADATA_LOG_DIR}/{}", crate::log::snapshot::file_name(id)),
                &error,
                "the metadata log keeps its entries until the next snapshot",
            )));
        }
    }
}

/// Decodes the metadata records at offsets in `range` from whole batches (control batches, the
/// leader changes, hold none); returns the offset after the last batch.
fn decode_batches(bytes: &[u8], range: std::ops::Range<i64>, records: &mut Vec<MetadataRecord>) -> Result<i64, String> {
    let mut after = range.start;
    let mut at = 0;
    while let Some(header) = BatchHeader::parse(&bytes[at..]) {
        let size = header.size_bytes().filter(|&s| at + s <= bytes.len()).ok_or("a metadata batch has a bad size")?;
        if !header.is_control() {
            let batch = payload_records(&bytes[at..at + size])
                .ok_or_else(|| format!("the metadata batch at {} is undecodable", header.base_offset))?;
            for record in batch.into_iter().filter(|r| range.contains(&r.offset)) {
                let value = record.value.ok_or_else(|| format!("metadata record at {} has no value", record.offset))?;
                records.push(MetadataRecord::decode(&value)?);
            }
        }
        after = after.max(header.last_offset() + 1);
        at += size;
    }
    Ok(after)
}

#[cfg(test)]
mod tests;
