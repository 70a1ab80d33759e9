//! Partition replication in a cluster (D21, D26): every partition of a cluster topic has a
//! Raft among its replicas, which elects its leader and commits what a majority of them have
//! fsynced. This module runs those Rafts for the node: it routes their messages, keeps their
//! timers, and performs their outputs.
//!
//! - **Leader side.** A follower's Kafka Fetch carries the fetches of every partition it
//!   follows here. Each goes to its partition's Raft; the request is answered once one of them
//!   has something (entries, a diverging epoch, a new high watermark, news of a leader change),
//!   and the others are then released with what they have, or when the Rafts' wait runs out.
//! - **Follower side.** A replica fetcher per leader gathers its partitions' fetches (a Raft
//!   fetches only once its log is durable) and sends them as one Fetch when all are ready or
//!   [`REPLICA_FETCH_GATHER_MS_MAX`] has passed, one request in flight per leader. One request
//!   per partition would queue each answer behind the other partitions' parked fetches on the
//!   peer connection, which answers in order.
//! - **Votes** (Vote, BeginQuorumEpoch, EndQuorumEpoch) travel one partition per request.
//! - **Reports.** A leader tells the controller its leadership and in-sync replicas (KRaft's
//!   AlterPartition) whenever the metadata image says otherwise; the image is what every
//!   broker answers Metadata from.
//!
//! Per input, only the partitions it concerns are looked at: timers are a set ordered by
//! deadline, and the in-sync check of led partitions runs once a second, as Kafka's does.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use kafka_protocol::messages::{ApiKey, FetchRequest, ResponseKind};

use super::quorum::Answering;
use super::{partition_in, Broker, Output, RequestId, Response, ResponseBody, StorageFault, StorageOp};
use crate::constants::{
    ISR_CHECK_INTERVAL_MS, REPLICA_FETCH_GATHER_MS_MAX, REPLICA_FETCH_IN_FLIGHT_MS_MAX, REPLICA_FETCH_WAIT_MS_MAX,
    REPLICA_LAG_MS_MAX,
};
use crate::group::OFFSETS_TOPIC;
use crate::ids::{NodeId, PartitionId};
use crate::log::raft_view::RaftView;
use crate::metadata::calls::{ControllerMessage, LeaderReport};
use crate::metadata::quorum::Decision;
use crate::partition::Replica;
use crate::peer::PeerMessage;
use crate::raft::wire::{self, Target};
use crate::raft::{saved, Message, Raft, RaftConfig, RaftOutput};

/// Tokens of this node's own leadership reports decided by its own quorum; apart from admin
/// (bit 62), lifecycle (bit 63) and peers' calls (request ids).
const REPORT_TOKEN: u64 = 1 << 61;
/// A report call unanswered this long is sent again; after an answer the next waits this long
/// (the image may not show the recorded change here yet).
const REPORT_TIMEOUT_MS: i64 = 3_000;
const REPORT_PAUSE_MS: i64 = 250;

#[derive(Debug, Default)]
pub(super) struct Replication {
    /// When each partition's Raft next wants a timeout.
    timers: BTreeSet<(i64, PartitionId)>,
    /// The leader each partition follows here, and the partitions each leader is followed for.
    following: BTreeMap<PartitionId, NodeId>,
    followed: BTreeMap<NodeId, BTreeSet<PartitionId>>,
    fetchers: BTreeMap<NodeId, Fetcher>,
    /// Leader side: replica fetches not answered yet, by deadline too; and those with a first
    /// answer, to finish before the input ends.
    fetches: BTreeMap<RequestId, WaitingFetch>,
    fetch_deadlines: BTreeSet<(i64, RequestId)>,
    fetches_ready: BTreeSet<RequestId>,
    /// Partitions this node leads.
    leading: BTreeSet<PartitionId>,
    next_isr_check_ms: i64,
    /// Leaderships the image does not show yet, to report; one call in flight.
    reports: BTreeMap<PartitionId, LeaderReport>,
    report_in_flight: Option<(NodeId, i64)>,
    next_report_ms: i64,
    next_report_token: u64,
    /// Peers' reports being decided here (as the controller), by token.
    report_calls: BTreeMap<u64, (RequestId, i16)>,
    pub(super) scrub: super::scrub::Scrub,
}

/// A follower's fetcher for one leader.
#[derive(Debug, Default)]
struct Fetcher {
    pending: BTreeMap<PartitionId, (Target, Message)>,
    pending_since_ms: Option<i64>,
    in_flight_since_ms: Option<i64>,
}

#[derive(Debug)]
struct WaitingFetch {
    api_version: i16,
    from: NodeId,
    /// Each partition asked: as named, the local partition if it has a Raft, and its answer.
    parts: Vec<(Target, Option<PartitionId>, Option<Message>)>,
    deadline_ms: i64,
}

impl Broker {
    /// Gives a partition of a cluster topic its Raft among `replicas` (this node one of them),
    /// from the state saved in its directory.
    pub(super) fn open_replica(
        &mut self,
        now_ms: i64,
        id: PartitionId,
        topic: &str,
        replicas: &[NodeId],
    ) -> io::Result<()> {
        let own = NodeId(self.config.node_id);
        let seed = self.rng.next_u64();
        let storage = self.storage.clone();
        let Some(partition) = partition_in(&mut self.topics, &self.topic_names_by_id, id) else { return Ok(()) };
        let saved = saved::read(storage.as_ref(), partition.log.dir())?;
        let mut config = RaftConfig::new(own, replicas.iter().copied());
        config.stand_at_once = replicas.first() == Some(&own);
        let voters = replicas.to_vec();
        let mut view =
            RaftView { log: &mut partition.log, now_ms, voters: &voters, producers: Some(&mut partition.producers) };
        let raft = Raft::new(config, saved, seed, now_ms, &mut view);
        let target = Target { topic: topic.to_string(), topic_id: id.topic_id, index: id.index };
        let replica = Replica::new(raft, target, voters);
        self.replication.timers.insert((replica.timer_ms, id));
        partition.replica = Some(replica);
        self.drain_replica(now_ms, id, None);
        Ok(())
    }

    /// Forgets a partition's Raft bookkeeping (its topic was deleted here).
    pub(super) fn close_replica(&mut self, id: PartitionId, timer_ms: i64) {
        let r = &mut self.replication;
        r.timers.remove(&(timer_ms, id));
        r.leading.remove(&id);
        r.reports.remove(&id);
        if let Some(leader) = r.following.remove(&id) {
            r.followed.entry(leader).or_default().remove(&id);
            if let Some(fetcher) = r.fetchers.get_mut(&leader) {
                fetcher.pending.remove(&id);
            }
        }
    }

    /// Runs one input on a partition's Raft and performs its outputs. Returns whether one of
    /// them answered `answering`; false if the partition has no working Raft here.
    pub(super) fn on_replica(
        &mut self,
        now_ms: i64,
        id: PartitionId,
        answering: Option<Answering>,
        input: impl FnOnce(&mut Raft, &mut RaftView<'_>) -> io::Result<()>,
    ) -> bool {
        let Some(partition) = partition_in(&mut self.topics, &self.topic_names_by_id, id) else { return false };
        let Some(replica) = partition.replica.as_mut().filter(|r| !r.failed && !partition.failed) else {
            return false;
        };
        let mut view = RaftView {
            log: &mut partition.log,
            now_ms,
            voters: &replica.voters,
            producers: Some(&mut partition.producers),
        };
        if let Err(error) = input(&mut replica.raft, &mut view) {
            // The log could not be written or read as the Raft needed: like a failed append,
            // the partition stops here, and its Raft with it (its leadership moves on when the
            // other replicas stop hearing from it).
            self.partition_error(now_ms, id, StorageOp::Append, &error);
        }
        let answered = self.drain_replica(now_ms, id, answering);
        // A follower's fetch or this leader's sync may complete a write that waits for more
        // copies than its commit (`min.insync.replicas` above a majority).
        if let Some(partition) = partition_in(&mut self.topics, &self.topic_names_by_id, id) {
            if partition.waiters.wants_copies() {
                if let Some(replica) = partition.replica.as_ref().filter(|r| r.raft.is_leader()) {
                    let durable = partition.log.durable_offset();
                    let raft = &replica.raft;
                    partition.waiters.copies_held(|copies| raft.held_by(copies, durable), &mut self.woken);
                }
            }
        }
        answered
    }

    /// Performs a partition Raft's outputs in order. True if one answered `answering`.
    fn drain_replica(&mut self, now_ms: i64, id: PartitionId, answering: Option<Answering>) -> bool {
        let own = NodeId(self.config.node_id);
        let mut answered = false;
        // An offsets partition whose Raft spoke: its groups may load or unload here.
        let mut offsets_partition = None;
        // A transaction state partition whose Raft spoke: its ids may load or unload here.
        let mut txn_partition = None;
        while let Some((partition, output)) = next_output(&mut self.topics, &self.topic_names_by_id, id) {
            let dir = partition.log.dir().to_string();
            let Some(replica) = partition.replica.as_mut() else { break };
            let target = replica.target.clone();
            if target.topic == OFFSETS_TOPIC {
                offsets_partition = Some(target.index);
            }
            if target.topic == super::txn::TXN_TOPIC {
                txn_partition = Some(target.index);
            }
            match output {
                RaftOutput::SaveState(state) => {
                    if let Err(error) = saved::write(self.storage.as_ref(), &dir, state) {
                        // A vote or epoch that is not durable must not be acted on: nothing
                        // after it leaves, and this replica stops until a restart.
                        while replica.raft.poll_output().is_some() {}
                        replica.failed = true;
                        self.faults.push(StorageFault::new(
                            StorageOp::Metadata,
                            format!("{dir}/{}", saved::QUORUM_STATE_FILE),
                            &error,
                            "this replica stops taking part in its partition's replication until the broker restarts",
                        ));
                        break;
                    }
                }
                RaftOutput::Committed { high_watermark } => partition.committed(high_watermark, &mut self.woken),
                RaftOutput::LeaderChanged { leader, .. } => {
                    partition.leadership_changed(&mut self.woken);
                    self.set_following(id, leader.filter(|&l| l != own));
                    if leader == Some(own) {
                        self.replication.leading.insert(id);
                    } else {
                        self.replication.leading.remove(&id);
                        self.replication.reports.remove(&id);
                    }
                }
                RaftOutput::Send { to, message } => match message {
                    Message::FetchResponse { id: fetch, .. } => {
                        self.replica_fetch_answered(RequestId(fetch), id, message)
                    }
                    Message::VoteResponse { .. }
                    | Message::BeginQuorumEpochResponse { .. }
                    | Message::FetchSnapshotResponse { .. } => {
                        if let Some(a) = answering.filter(|a| a.from == to) {
                            answered = true;
                            let body = match wire::response_for(&target, &message, a.api_version) {
                                Some(body) => ResponseBody::Message(Box::new(body)),
                                None => ResponseBody::Close("a Raft answer of the wrong kind (a broker bug)".into()),
                            };
                            self.outputs.push_back(Output::Response(Response {
                                id: a.id,
                                api_key: a.api_key,
                                api_version: a.api_version,
                                body,
                            }));
                        }
                    }
                    Message::Fetch { .. } => {
                        let fetcher = self.replication.fetchers.entry(to).or_default();
                        fetcher.pending.insert(id, (target, message));
                        fetcher.pending_since_ms.get_or_insert(now_ms);
                    }
                    _ => {
                        self.outputs.push_back(Output::Peer { to, message: PeerMessage::Partition { target, message } })
                    }
                },
            }
        }
        let Some(partition) = partition_in(&mut self.topics, &self.topic_names_by_id, id) else { return answered };
        if partition.log.needs_sync() && !partition.failed {
            self.unsynced.insert(id);
        }
        if let Some(replica) = partition.replica.as_mut() {
            self.replication.timers.remove(&(replica.timer_ms, id));
            if !replica.failed && !partition.failed {
                replica.timer_ms = replica.raft.next_timeout_ms();
                self.replication.timers.insert((replica.timer_ms, id));
            }
        }
        self.check_leadership(now_ms, id);
        if let Some(index) = offsets_partition {
            self.offsets_partition_changed(now_ms, index);
        }
        if let Some(index) = txn_partition {
            self.txn_partition_changed(now_ms, index);
        }
        answered
    }

    fn set_following(&mut self, id: PartitionId, leader: Option<NodeId>) {
        let r = &mut self.replication;
        if let Some(old) = r.following.remove(&id) {
            r.followed.entry(old).or_default().remove(&id);
            if let Some(fetcher) = r.fetchers.get_mut(&old) {
                fetcher.pending.remove(&id);
            }
        }
        if let Some(leader) = leader {
            r.following.insert(id, leader);
            r.followed.entry(leader).or_default().insert(id);
        }
    }

    /// Queues a report of `id`'s leadership if this node leads it and the image says otherwise.
    fn check_leadership(&mut self, now_ms: i64, id: PartitionId) {
        let own = NodeId(self.config.node_id);
        let Some(image) = self.quorum.as_ref().map(|q| q.image().clone()) else { return };
        let Some(partition) = self.partition_by_id(id) else { return };
        let Some(replica) = partition.replica.as_ref().filter(|r| r.raft.is_leader() && !r.failed && !partition.failed)
        else {
            self.replication.reports.remove(&id);
            return;
        };
        let report = LeaderReport {
            topic_id: id.topic_id,
            index: id.index,
            leader_epoch: replica.raft.epoch(),
            in_sync: replica.raft.in_sync(now_ms, REPLICA_LAG_MS_MAX),
        };
        let shown = image.topics.get(&id.topic_id).and_then(|t| t.partitions.get(usize::try_from(id.index).ok()?));
        let current = shown.is_some_and(|p| {
            p.leader == Some(own) && p.leader_epoch == report.leader_epoch && p.in_sync == report.in_sync
        });
        if current || shown.is_none() {
            self.replication.reports.remove(&id);
        } else {
            self.replication.reports.insert(id, report);
        }
    }

    /// After the image changed: the leaderships it does not show yet are reported.
    pub(super) fn check_leaderships(&mut self, now_ms: i64) {
        let leading: Vec<PartitionId> = self.replication.leading.iter().copied().collect();
        for id in leading {
            self.check_leadership(now_ms, id);
        }
    }

    /// A graceful stop: every partition this node leads hands its leadership to the most
    /// caught-up replica (EndQuorumEpoch), so producers move on in a round trip rather than
    /// after the followers' fetch timeout.
    pub(super) fn resign_leaderships(&mut self, now_ms: i64) {
        let leading: Vec<PartitionId> = self.replication.leading.iter().copied().collect();
        for id in leading {
            self.on_replica(now_ms, id, None, |raft, _| {
                raft.resign(now_ms);
                Ok(())
            });
        }
    }

    /// A partition that storage failed here (ENOSPC, EIO) takes no more writes and its Raft
    /// no more inputs. If this node leads it, the leadership is handed over as in a graceful
    /// stop (EndQuorumEpoch to the most caught-up replica first), so producers reach a working
    /// replica in a round trip instead of after the followers' fetch timeout, or never while
    /// the failed leader still answers their fetches. The replica does not stand again until
    /// the broker restarts: its timer is not set for a failed partition.
    pub(super) fn resign_failed(&mut self, now_ms: i64, id: PartitionId) {
        let Some(partition) = partition_in(&mut self.topics, &self.topic_names_by_id, id) else { return };
        let Some(replica) = partition.replica.as_mut().filter(|r| !r.failed && r.raft.is_leader()) else { return };
        replica.raft.resign(now_ms);
        self.drain_replica(now_ms, id, None);
    }

    // ----- requests from peers -----

    /// A Vote, BeginQuorumEpoch or EndQuorumEpoch about a partition.
    pub(super) fn partition_raft_request(
        &mut self,
        now_ms: i64,
        answering: Answering,
        target: Target,
        message: Message,
    ) -> Option<ResponseBody> {
        let end_quorum_epoch = matches!(message, Message::EndQuorumEpoch { .. });
        let from = answering.from;
        let answered = match self.resolve(&target) {
            Some(id) => self
                .on_replica(now_ms, id, Some(answering), |raft, view| raft.handle_message(now_ms, from, message, view)),
            None => false,
        };
        let reply = |body: ResponseKind| Some(ResponseBody::Message(Box::new(body)));
        if end_quorum_epoch {
            return reply(ResponseKind::EndQuorumEpoch(Default::default()));
        }
        if answered {
            return None;
        }
        reply(super::quorum::quorum_error(
            answering.api_key,
            crate::error::ErrorCode::NotLeaderOrFollower,
            "this broker has no working replica of the partition",
        ))
    }

    /// A replicated partition found a damaged batch (a bit flipped on the disk): it stops
    /// serving from there, hands over its leadership if it leads, cuts its log at the batch
    /// and fetches it again from the leader (see `Raft::damaged`). False for a partition that
    /// cannot repair itself (a single node's, or a replica already stopped): it fails instead.
    pub(super) fn repair_partition(&mut self, now_ms: i64, id: PartitionId, damaged: crate::log::CorruptBatch) -> bool {
        let Some(partition) = partition_in(&mut self.topics, &self.topic_names_by_id, id) else { return false };
        let Some(replica) = partition.replica.as_mut().filter(|r| !r.failed && !partition.failed) else {
            return false;
        };
        let view = RaftView { log: &mut partition.log, now_ms, voters: &replica.voters, producers: None };
        replica.raft.damaged(now_ms, &view);
        self.faults.push(StorageFault::new(
            StorageOp::Read,
            damaged.file.clone(),
            &damaged.clone().into_io(),
            "the replica cuts its log at the damaged batch and fetches it again from the leader (handing its \
             leadership over first if it leads); it votes again once it holds what it held",
        ));
        // What `damaged` saved is written as the outputs drain; only then is the log cut.
        self.drain_replica(now_ms, id, None);
        self.on_replica(now_ms, id, None, |raft, view| raft.cut_damaged(now_ms, damaged.offset, view));
        true
    }

    /// A follower's Fetch of partitions this node may lead. Answered through
    /// [`Broker::finish_replica_fetches`].
    pub(super) fn replica_fetch(&mut self, now_ms: i64, id: RequestId, api_version: i16, request: &FetchRequest) {
        let (from, parts) = match wire::fetch_from_request(request, id.0) {
            Ok(parsed) => parsed,
            Err(reason) => {
                let body = ResponseBody::Close(format!("malformed replica fetch: {reason}"));
                self.outputs.push_back(Output::Response(Response { id, api_key: ApiKey::Fetch, api_version, body }));
                return;
            }
        };
        let deadline_ms = now_ms + REPLICA_FETCH_WAIT_MS_MAX;
        let parts: Vec<(Target, Option<PartitionId>, Message)> =
            parts.into_iter().map(|(target, message)| (target.clone(), self.resolve(&target), message)).collect();
        let waiting = WaitingFetch {
            api_version,
            from,
            parts: parts.iter().map(|(t, id, _)| (t.clone(), *id, None)).collect(),
            deadline_ms,
        };
        self.replication.fetches.insert(id, waiting);
        self.replication.fetch_deadlines.insert((deadline_ms, id));
        for (_, partition, message) in parts {
            let Some(partition) = partition else { continue };
            self.on_replica(now_ms, partition, None, |raft, view| raft.handle_message(now_ms, from, message, view));
        }
        // A fetch of nothing this node replicates is answered now.
        if self.replication.fetches.get(&id).is_some_and(|w| w.parts.iter().all(|p| p.1.is_none())) {
            self.replication.fetches_ready.insert(id);
        }
    }

    /// A partition Raft's answer to the replica fetch `request`.
    fn replica_fetch_answered(&mut self, request: RequestId, id: PartitionId, answer: Message) {
        let Some(waiting) = self.replication.fetches.get_mut(&request) else { return };
        if let Some(part) = waiting.parts.iter_mut().find(|p| p.1 == Some(id) && p.2.is_none()) {
            part.2 = Some(answer);
            self.replication.fetches_ready.insert(request);
        }
    }

    /// Answers the replica fetches that have a first answer or reached their deadline: the
    /// partitions still waiting are released with what they have.
    pub(super) fn finish_replica_fetches(&mut self, now_ms: i64) {
        while let Some(&(deadline_ms, request)) = self.replication.fetch_deadlines.first() {
            if deadline_ms > now_ms {
                break;
            }
            self.replication.fetch_deadlines.pop_first();
            self.replication.fetches_ready.insert(request);
        }
        while let Some(request) = self.replication.fetches_ready.pop_first() {
            let Some(waiting) = self.replication.fetches.get(&request) else { continue };
            let from = waiting.from;
            let unanswered: Vec<PartitionId> =
                waiting.parts.iter().filter(|p| p.2.is_none()).filter_map(|p| p.1).collect();
            for id in unanswered {
                self.on_replica(now_ms, id, None, |raft, view| raft.release_fetch(from, view));
            }
            let Some(waiting) = self.replication.fetches.remove(&request) else { continue };
            self.replication.fetch_deadlines.remove(&(waiting.deadline_ms, request));
            self.replication.fetches_ready.remove(&request);
            let answers: Vec<(Target, Option<Message>)> =
                waiting.parts.into_iter().map(|(target, _, answer)| (target, answer)).collect();
            let body = match wire::fetch_response(&answers, waiting.api_version) {
                Some(body) => ResponseBody::Message(Box::new(body)),
                None => ResponseBody::Close("a Raft answer of the wrong kind (a broker bug)".into()),
            };
            self.outputs.push_back(Output::Response(Response {
                id: request,
                api_key: ApiKey::Fetch,
                api_version: waiting.api_version,
                body,
            }));
        }
    }

    /// The local partition a Raft message names, if it has a Raft here.
    fn resolve(&self, target: &Target) -> Option<PartitionId> {
        let name = if target.topic.is_empty() { self.topic_name_by_id(target.topic_id)? } else { &target.topic };
        let partition = self.partition(name, target.index)?;
        partition.replica.as_ref().map(|_| partition.id)
    }

    // ----- answers from peers -----

    /// A peer's answer to a Raft request about a partition.
    pub(super) fn partition_raft_answer(&mut self, now_ms: i64, from: NodeId, target: &Target, message: Message) {
        if let Some(id) = self.resolve(target) {
            self.on_replica(now_ms, id, None, |raft, view| raft.handle_message(now_ms, from, message, view));
        }
    }

    /// A leader's answers to this node's replica fetch.
    pub(super) fn replica_fetch_answers(&mut self, now_ms: i64, from: NodeId, answers: Vec<(Target, Option<Message>)>) {
        if let Some(fetcher) = self.replication.fetchers.get_mut(&from) {
            fetcher.in_flight_since_ms = None;
        }
        for (target, answer) in answers {
            let (Some(answer), Some(id)) = (answer, self.resolve(&target)) else { continue };
            self.on_replica(now_ms, id, None, |raft, view| raft.handle_message(now_ms, from, answer, view));
        }
    }

    // ----- time and durability -----

    /// Partitions whose sync completed: their Rafts count what became durable.
    pub(super) fn replicas_durable(&mut self, now_ms: i64, synced: &[PartitionId]) {
        for &id in synced {
            self.on_replica(now_ms, id, None, |raft, view| raft.handle_durable(now_ms, view));
        }
    }

    /// Runs the Raft timeouts that are due, the in-sync check, and the replica fetches and
    /// reports that can leave.
    pub(super) fn replication_timeout(&mut self, now_ms: i64) {
        while let Some(&(timer_ms, id)) = self.replication.timers.first() {
            if timer_ms > now_ms {
                break;
            }
            self.replication.timers.pop_first();
            // The entry is put back (or dropped) when the Raft's outputs are drained.
            if !self.on_replica(now_ms, id, None, |raft, view| raft.handle_timeout(now_ms, view)) {
                self.drain_replica(now_ms, id, None);
            }
        }
        if now_ms >= self.replication.next_isr_check_ms {
            self.replication.next_isr_check_ms = now_ms + ISR_CHECK_INTERVAL_MS;
            self.check_leaderships(now_ms);
        }
        if self.config.scrub_bytes_per_sec > 0 && now_ms >= self.replication.scrub.next_ms {
            self.replication.scrub.next_ms = now_ms + super::scrub::SCRUB_INTERVAL_MS;
            self.scrub(now_ms);
        }
    }

    /// Sends what the replica fetchers and the leadership reports have ready. Runs at the end
    /// of every input.
    pub(super) fn replication_send(&mut self, now_ms: i64) {
        self.finish_replica_fetches(now_ms);
        let leaders: Vec<NodeId> = self.replication.fetchers.keys().copied().collect();
        for leader in leaders {
            let followed = self.replication.followed.get(&leader).map_or(0, BTreeSet::len);
            let fetcher = self.replication.fetchers.get_mut(&leader).expect("listed above");
            let Some(since_ms) = fetcher.pending_since_ms else { continue };
            if fetcher.in_flight_since_ms.is_some_and(|t| now_ms < t + REPLICA_FETCH_IN_FLIGHT_MS_MAX) {
                continue;
            }
            // Wait for every followed partition to be ready (each fetches once its appends are
            // durable, all covered by the same group sync), so none misses this round.
            if fetcher.pending.len() < followed && now_ms < since_ms + REPLICA_FETCH_GATHER_MS_MAX {
                continue;
            }
            let parts: Vec<(Target, Message)> = std::mem::take(&mut fetcher.pending).into_values().collect();
            fetcher.pending_since_ms = None;
            if parts.is_empty() {
                continue;
            }
            fetcher.in_flight_since_ms = Some(now_ms);
            self.outputs.push_back(Output::Peer { to: leader, message: PeerMessage::ReplicaFetch(parts) });
        }
        self.send_reports(now_ms);
    }

    /// When replication next has something to do on its own.
    pub(super) fn replication_next_ms(&self) -> i64 {
        let r = &self.replication;
        let mut next = r.timers.first().map_or(i64::MAX, |&(t, _)| t);
        next = next.min(r.fetch_deadlines.first().map_or(i64::MAX, |&(t, _)| t));
        for fetcher in r.fetchers.values() {
            if let Some(since_ms) = fetcher.pending_since_ms {
                let gathered = since_ms + REPLICA_FETCH_GATHER_MS_MAX;
                let lost = fetcher.in_flight_since_ms.map_or(i64::MIN, |t| t + REPLICA_FETCH_IN_FLIGHT_MS_MAX);
                next = next.min(gathered.max(lost));
            }
        }
        if !r.leading.is_empty() {
            next = next.min(r.next_isr_check_ms);
        }
        if self.config.scrub_bytes_per_sec > 0 && !r.timers.is_empty() {
            next = next.min(r.scrub.next_ms);
        }
        if !r.reports.is_empty() {
            let retry = r.report_in_flight.map_or(r.next_report_ms, |(_, sent)| sent + REPORT_TIMEOUT_MS);
            next = next.min(retry);
        }
        next
    }

    // ----- leadership reports -----

    fn send_reports(&mut self, now_ms: i64) {
        let r = &self.replication;
        if r.reports.is_empty() || now_ms < r.next_report_ms {
            return;
        }
        if r.report_in_flight.is_some_and(|(_, sent)| now_ms < sent + REPORT_TIMEOUT_MS) {
            return;
        }
        let leader = self.quorum.as_ref().and_then(|q| q.raft().leader());
        let Some(leader) = leader.filter(|_| self.is_registered()) else {
            // No controller to tell yet (an election, or not registered): look again later,
            // not at every input (the driver would spin on a timeout that never moves).
            self.replication.next_report_ms = now_ms + REPORT_PAUSE_MS;
            return;
        };
        let node = NodeId(self.config.node_id);
        let reports: Vec<LeaderReport> = self.replication.reports.values().cloned().collect();
        self.replication.report_in_flight = Some((leader, now_ms));
        if leader == node {
            let token = REPORT_TOKEN | self.replication.next_report_token;
            self.replication.next_report_token += 1;
            if let Some(quorum) = &mut self.quorum {
                quorum.decide(now_ms, token, Decision::ReportLeaders { node, reports });
            }
            self.drain_quorum(now_ms, None);
        } else {
            let incarnation = self.metadata.document.incarnation;
            let message = ControllerMessage::ReportLeaders { node, incarnation, reports };
            self.outputs.push_back(Output::Peer { to: leader, message: message.into() });
        }
    }

    /// The controller answered this node's report.
    pub(super) fn report_answered(&mut self, now_ms: i64, from: NodeId) {
        if self.replication.report_in_flight.is_some_and(|(to, _)| to == from) {
            self.replication.report_in_flight = None;
            self.replication.next_report_ms = now_ms + REPORT_PAUSE_MS;
        }
    }

    /// A peer's AlterPartition, decided by this node's controller and answered once committed.
    pub(super) fn report_call(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        body: &kafka_protocol::messages::RequestKind,
    ) -> Option<ResponseBody> {
        let refuse = |code: crate::error::ErrorCode| {
            let answer = ControllerMessage::ReportLeadersResponse { error: code.code() };
            let response = crate::metadata::calls::response_for(&answer, 0).expect("an answer has a response");
            Some(ResponseBody::Message(Box::new(response)))
        };
        let Some(quorum) = &mut self.quorum else { return refuse(crate::error::ErrorCode::InvalidRequest) };
        let (node, reports) = match crate::metadata::calls::message_from_request(body) {
            Ok((_, ControllerMessage::ReportLeaders { node, reports, .. })) => (node, reports),
            Ok(_) => return refuse(crate::error::ErrorCode::InvalidRequest),
            Err(reason) => return Some(ResponseBody::Close(format!("malformed AlterPartition: {reason}"))),
        };
        self.replication.report_calls.insert(id.0, (id, api_version));
        quorum.decide(now_ms, id.0, Decision::ReportLeaders { node, reports });
        self.drain_quorum(now_ms, None);
        None
    }

    /// A decision on a report: answers the peer that asked, or this node's own report. False
    /// if `token` is not a report's.
    pub(super) fn report_decided(&mut self, now_ms: i64, token: u64, error: i16) -> bool {
        if token & REPORT_TOKEN != 0 && token < (1 << 62) {
            self.report_answered(now_ms, NodeId(self.config.node_id));
            return true;
        }
        let Some((id, api_version)) = self.replication.report_calls.remove(&token) else { return false };
        let answer = ControllerMessage::ReportLeadersResponse { error };
        let response = crate::metadata::calls::response_for(&answer, 0).expect("an answer has a response");
        self.outputs.push_back(Output::Response(Response {
            id,
            api_key: ApiKey::AlterPartition,
            api_version,
            body: ResponseBody::Message(Box::new(response)),
        }));
        true
    }
}

/// A partition and the next output of its Raft, if it has one.
fn next_output<'a>(
    topics: &'a mut BTreeMap<String, super::Topic>,
    names_by_id: &BTreeMap<uuid::Uuid, String>,
    id: PartitionId,
) -> Option<(&'a mut crate::partition::Partition, RaftOutput)> {
    let partition = partition_in(topics, names_by_id, id)?;
    let output = partition.replica.as_mut()?.raft.poll_output()?;
    Some((partition, output))
}
