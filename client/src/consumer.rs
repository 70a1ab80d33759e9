//! The consumer: `subscribe` joins a group (KIP-848 consumer protocol, see [`crate::group`]),
//! `assign` takes partitions directly. `poll` applies assignment changes (calling the rebalance
//! listener first), finds each new partition's position (its committed offset, else
//! `auto_offset_reset`), fetches from the leaders and returns records in offset order per
//! partition. Offsets are committed explicitly (`commit`), or every `auto_commit_interval`
//! from `poll` when `enable_auto_commit` is set (what earlier polls returned, so at least once).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, GroupId, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Mutex;
use tokio::time::Instant;

use headwater_core::log::batch::{decode_records, BatchHeader};

use crate::cluster::{ClientConfig, Cluster};
use crate::error::{Error, ErrorKind, Result};
use crate::group::{MemberConfig, Membership};
use crate::records::ConsumerRecord;

/// A partition by topic name.
pub type TopicPartition = (String, i32);

/// Where to start a partition that has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    /// Fail with an error instead.
    None,
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub client: ClientConfig,
    /// Needed for `subscribe` and for commits.
    pub group_id: Option<String>,
    /// Static membership (`group.instance.id`): a restart within the session keeps the
    /// partitions without a rebalance.
    pub group_instance_id: Option<String>,
    /// The broker's assignor (`group.remote.assignor`): `uniform` or `range`.
    pub remote_assignor: Option<String>,
    pub auto_offset_reset: OffsetReset,
    pub enable_auto_commit: bool,
    pub auto_commit_interval: Duration,
    /// Most records one `poll` returns.
    pub max_poll_records: usize,
    /// How long the broker may hold a fetch waiting for data.
    pub fetch_max_wait: Duration,
    pub fetch_max_bytes: i32,
    pub partition_fetch_max_bytes: i32,
    /// How long the coordinator waits for this member to give partitions up
    /// (`max.poll.interval.ms`).
    pub rebalance_timeout: Duration,
}

impl ConsumerConfig {
    pub fn new(bootstrap: &str) -> ConsumerConfig {
        ConsumerConfig {
            client: ClientConfig::new(bootstrap),
            group_id: None,
            group_instance_id: None,
            remote_assignor: None,
            auto_offset_reset: OffsetReset::Latest,
            enable_auto_commit: false,
            auto_commit_interval: Duration::from_secs(5),
            max_poll_records: 500,
            fetch_max_wait: Duration::from_millis(500),
            fetch_max_bytes: 50 * 1024 * 1024,
            partition_fetch_max_bytes: 1024 * 1024,
            rebalance_timeout: Duration::from_secs(300),
        }
    }
}

/// A change of the group's assignment, given to the rebalance listener from inside `poll`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalance {
    /// These partitions are now this consumer's; positions are found at the next fetch.
    Assigned(Vec<TopicPartition>),
    /// These are going away: commit what was processed now (the listener runs before they go).
    Revoked(Vec<TopicPartition>),
    /// The membership was lost (fenced, or the coordinator forgot it): these are gone already
    /// and may be another member's; do not commit them.
    Lost(Vec<TopicPartition>),
}

pub type RebalanceListener = Arc<dyn Fn(&Rebalance) + Send + Sync>;

#[derive(Debug, Default)]
struct PartitionState {
    /// The next offset to return; `None` until found.
    position: Option<i64>,
    paused: bool,
    buffered: VecDeque<ConsumerRecord>,
}

#[derive(Default)]
struct State {
    partitions: BTreeMap<TopicPartition, PartitionState>,
    next_auto_commit: Option<Instant>,
    closed: bool,
}

pub struct Consumer {
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    state: Mutex<State>,
    membership: std::sync::Mutex<Option<Arc<Membership>>>,
    listener: std::sync::Mutex<Option<RebalanceListener>>,
    /// Positions as of the last `poll`'s return: what `commit` and auto-commit commit. Apart
    /// from `state` so that `commit` works from a rebalance listener, which runs inside `poll`
    /// while `state` is held.
    consumed: std::sync::Mutex<BTreeMap<TopicPartition, i64>>,
}

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

impl Consumer {
    pub fn new(config: ConsumerConfig) -> Result<Consumer> {
        if config.max_poll_records == 0 {
            return Err(Error::config("max_poll_records must be positive"));
        }
        Ok(Consumer {
            cluster: Cluster::new(config.client.clone())?,
            config,
            state: Mutex::new(State::default()),
            membership: std::sync::Mutex::new(None),
            listener: std::sync::Mutex::new(None),
            consumed: std::sync::Mutex::default(),
        })
    }

    /// Called from `poll` when the group's assignment changes.
    pub fn set_rebalance_listener(&self, listener: RebalanceListener) {
        *self.listener.lock().expect("listener lock") = Some(listener);
    }

    fn membership(&self) -> Option<Arc<Membership>> {
        self.membership.lock().expect("membership lock").clone()
    }

    fn group_id(&self) -> Result<&str> {
        self.config.group_id.as_deref().ok_or_else(|| Error::config("this needs a group_id"))
    }

    /// Joins the group and consumes what it assigns from `topics`.
    pub async fn subscribe(&self, topics: &[&str]) -> Result<()> {
        let group_id = self.group_id()?.to_string();
        if topics.is_empty() {
            return Err(Error::config("subscribe to at least one topic"));
        }
        let mut current = self.membership.lock().expect("membership lock");
        if current.is_some() {
            return Err(Error::config("already subscribed (close and create a new consumer to change topics)"));
        }
        *current = Some(Membership::start(
            self.cluster.clone(),
            MemberConfig {
                group_id,
                topics: topics.iter().map(|t| t.to_string()).collect(),
                instance_id: self.config.group_instance_id.clone(),
                assignor: self.config.remote_assignor.clone(),
                rebalance_timeout: self.config.rebalance_timeout,
            },
        ));
        Ok(())
    }

    /// Consumes exactly `partitions`, outside any group's assignment.
    pub async fn assign(&self, partitions: &[TopicPartition]) -> Result<()> {
        if self.membership().is_some() {
            return Err(Error::config("a subscribed consumer cannot also assign partitions"));
        }
        let mut state = self.state.lock().await;
        state.partitions.retain(|tp, _| partitions.contains(tp));
        for tp in partitions {
            state.partitions.entry(tp.clone()).or_default();
        }
        Ok(())
    }

    /// The partitions this consumer holds now.
    pub async fn assignment(&self) -> Vec<TopicPartition> {
        self.state.lock().await.partitions.keys().cloned().collect()
    }

    /// Sets the next offset `poll` returns for `partition`.
    pub async fn seek(&self, partition: &TopicPartition, offset: i64) -> Result<()> {
        let mut state = self.state.lock().await;
        let p = state.partitions.get_mut(partition).ok_or_else(|| not_assigned(partition))?;
        p.position = Some(offset);
        p.buffered.clear();
        Ok(())
    }

    pub async fn position(&self, partition: &TopicPartition) -> Option<i64> {
        self.state.lock().await.partitions.get(partition).and_then(|p| p.position)
    }

    pub async fn pause(&self, partitions: &[TopicPartition]) {
        let mut state = self.state.lock().await;
        for tp in partitions {
            if let Some(p) = state.partitions.get_mut(tp) {
                p.paused = true;
            }
        }
    }

    pub async fn resume(&self, partitions: &[TopicPartition]) {
        let mut state = self.state.lock().await;
        for tp in partitions {
            if let Some(p) = state.partitions.get_mut(tp) {
                p.paused = false;
            }
        }
    }

    /// Waits up to `timeout` for records; returns at most `max_poll_records`.
    pub async fn poll(&self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        self.poll_max(timeout, self.config.max_poll_records).await
    }

    /// `poll` returning at most `max` records (and never more than `max_poll_records`); the
    /// rest stay buffered here, not counted as consumed.
    pub async fn poll_max(&self, timeout: Duration, max: usize) -> Result<Vec<ConsumerRecord>> {
        let max = max.clamp(1, self.config.max_poll_records);
        let deadline = Instant::now() + timeout;
        loop {
            let mut state = self.state.lock().await;
            if state.closed {
                return Err(Error::closed("consumer"));
            }
            self.reconcile(&mut state).await?;
            self.maybe_auto_commit(&mut state).await;
            let records = take_records(&mut state, max);
            if !records.is_empty() {
                let mut consumed = self.consumed();
                for record in &records {
                    consumed.insert((record.topic.clone(), record.partition), record.offset + 1);
                }
                return Ok(records);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wait = (deadline - now).min(self.config.fetch_max_wait);
            self.find_positions(&mut state).await?;
            let fetched = self.fetch(&mut state, wait).await;
            drop(state);
            if !fetched {
                // Nothing to fetch from (no partitions yet, or no leader): wait a little.
                let nap = (deadline - Instant::now().min(deadline)).min(Duration::from_millis(50));
                if let Some(membership) = self.membership() {
                    let _ = tokio::time::timeout(nap, membership.wake.notified()).await;
                } else {
                    tokio::time::sleep(nap).await;
                }
            }
        }
    }

    /// Applies the group's latest assignment, calling the listener first.
    async fn reconcile(&self, state: &mut State) -> Result<()> {
        let Some(membership) = self.membership() else { return Ok(()) };
        let (lost, target) = {
            let mut shared = membership.shared();
            if let Some(error) = shared.fatal.clone() {
                return Err(error);
            }
            let lost = std::mem::take(&mut shared.lost);
            if lost {
                shared.owned.clear();
            }
            (lost, shared.target.clone())
        };
        if lost && !state.partitions.is_empty() {
            let gone: Vec<TopicPartition> = std::mem::take(&mut state.partitions).into_keys().collect();
            self.consumed().clear();
            self.notify(&Rebalance::Lost(gone));
        }
        let Some(target) = target else { return Ok(()) };
        // Topic ids to names; a topic created since the last metadata load needs a refresh.
        if target.iter().any(|(id, _)| self.cluster.topic_name(*id).is_none()) {
            self.cluster.refresh(None, false).await.ok();
        }
        let mut named: BTreeSet<TopicPartition> = BTreeSet::new();
        for (id, partition) in &target {
            match self.cluster.topic_name(*id) {
                Some(name) => {
                    named.insert((name, *partition));
                }
                // Not in metadata yet: apply this assignment at a later poll.
                None => return Ok(()),
            }
        }
        let current: BTreeSet<TopicPartition> = state.partitions.keys().cloned().collect();
        let revoked: Vec<TopicPartition> = current.difference(&named).cloned().collect();
        let added: Vec<TopicPartition> = named.difference(&current).cloned().collect();
        if !revoked.is_empty() {
            if self.config.enable_auto_commit {
                let offsets: Vec<(TopicPartition, i64)> = self.consumed_of(&revoked);
                if let Err(e) = self.commit_offsets(&offsets).await {
                    tracing::debug!(error = %e, "auto-commit before revocation failed");
                }
            }
            self.notify(&Rebalance::Revoked(revoked.clone()));
            for tp in &revoked {
                state.partitions.remove(tp);
                self.consumed().remove(tp);
            }
        }
        for tp in &added {
            state.partitions.entry(tp.clone()).or_default();
        }
        if !added.is_empty() {
            self.notify(&Rebalance::Assigned(added));
        }
        {
            let mut shared = membership.shared();
            if shared.target.as_ref() == Some(&target) {
                shared.target = None;
            }
            shared.owned = target;
        }
        // Report the change now rather than at the next interval.
        membership.wake.notify_waiters();
        Ok(())
    }

    fn notify(&self, event: &Rebalance) {
        let listener = self.listener.lock().expect("listener lock").clone();
        if let Some(listener) = listener {
            listener(event);
        }
    }

    async fn maybe_auto_commit(&self, state: &mut State) {
        if !self.config.enable_auto_commit || self.config.group_id.is_none() {
            return;
        }
        let now = Instant::now();
        let due = *state.next_auto_commit.get_or_insert(now + self.config.auto_commit_interval);
        if now < due {
            return;
        }
        let offsets = self.consumed_all();
        if offsets.is_empty() {
            return;
        }
        state.next_auto_commit = Some(now + self.config.auto_commit_interval);
        if let Err(e) = self.commit_offsets(&offsets).await {
            tracing::debug!(error = %e, "auto-commit failed");
        }
    }

    /// Commits the position after the last record `poll` returned, for every partition held.
    /// May be called from the rebalance listener (to commit what is being revoked).
    pub async fn commit(&self) -> Result<()> {
        let offsets = self.consumed_all();
        self.commit_offsets(&offsets).await
    }

    fn consumed(&self) -> std::sync::MutexGuard<'_, BTreeMap<TopicPartition, i64>> {
        self.consumed.lock().expect("consumed lock")
    }

    fn consumed_all(&self) -> Vec<(TopicPartition, i64)> {
        self.consumed().iter().map(|(tp, o)| (tp.clone(), *o)).collect()
    }

    fn consumed_of(&self, partitions: &[TopicPartition]) -> Vec<(TopicPartition, i64)> {
        let consumed = self.consumed();
        partitions.iter().filter_map(|tp| consumed.get(tp).map(|o| (tp.clone(), *o))).collect()
    }

    /// Commits `offsets` (the next offset to read, per partition) for the group. A commit
    /// that races a heartbeat moving this member to a new epoch (STALE_MEMBER_EPOCH) is sent
    /// again under the new epoch, as Kafka's clients do.
    pub async fn commit_offsets(&self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let mut attempts = 0;
        loop {
            match self.commit_once(offsets).await {
                Err(e) if e.code == 113 && attempts < 20 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    async fn commit_once(&self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let group_id = self.group_id()?;
        if offsets.is_empty() {
            return Ok(());
        }
        let (member_id, epoch) = match self.membership() {
            Some(m) => m.identity(),
            None => (String::new(), -1),
        };
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            topics.entry(topic.as_str()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group_id)))
            .with_generation_id_or_member_epoch(epoch)
            .with_member_id(s(&member_id))
            .with_group_instance_id(self.config.group_instance_id.as_deref().map(s))
            .with_retention_time_ms(-1)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        OffsetCommitRequestTopic::default().with_name(TopicName(s(name))).with_partitions(partitions)
                    })
                    .collect(),
            );
        let connection = self.cluster.coordinator(group_id).await?;
        let (_, response) =
            connection.call(&request).await.inspect_err(|_| self.cluster.forget_coordinator(group_id))?;
        for topic in &response.topics {
            for partition in &topic.partitions {
                let context =
                    format!("committing {}-{} for group {group_id}", topic.name.0.as_str(), partition.partition_index);
                if let Some(mut e) = Error::from_code(partition.error_code, context) {
                    if matches!(partition.error_code, 14..=16) {
                        self.cluster.forget_coordinator(group_id);
                    } else if e.kind == ErrorKind::Broker && e.code != 3 {
                        e.kind = ErrorKind::Commit;
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The group's committed offsets for `partitions` (`None` where nothing is committed).
    pub async fn committed(&self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
        let group_id = self.group_id()?;
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in partitions {
            topics.entry(topic.as_str()).or_default().push(*partition);
        }
        let request = OffsetFetchRequest::default().with_group_id(GroupId(s(group_id))).with_topics(Some(
            topics
                .into_iter()
                .map(|(name, ps)| {
                    OffsetFetchRequestTopic::default().with_name(TopicName(s(name))).with_partition_indexes(ps)
                })
                .collect(),
        ));
        let connection = self.cluster.coordinator(group_id).await?;
        let (_, response) =
            connection.call(&request).await.inspect_err(|_| self.cluster.forget_coordinator(group_id))?;
        if let Some(e) = Error::from_code(response.error_code, format!("reading group {group_id}'s offsets")) {
            if matches!(response.error_code, 14..=16) {
                self.cluster.forget_coordinator(group_id);
            }
            return Err(e);
        }
        let mut out = BTreeMap::new();
        for topic in response.topics {
            for p in topic.partitions {
                if let Some(e) =
                    Error::from_code(p.error_code, format!("reading {}-{}", topic.name.0.as_str(), p.partition_index))
                {
                    return Err(e);
                }
                let offset = (p.committed_offset >= 0).then_some(p.committed_offset);
                out.insert((topic.name.0.to_string(), p.partition_index), offset);
            }
        }
        Ok(out)
    }

    /// Finds positions for partitions that have none: committed offset, else the reset policy.
    async fn find_positions(&self, state: &mut State) -> Result<()> {
        let missing: Vec<TopicPartition> =
            state.partitions.iter().filter(|(_, p)| p.position.is_none()).map(|(tp, _)| tp.clone()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let committed = match self.config.group_id {
            Some(_) => self.committed(&missing).await?,
            None => BTreeMap::new(),
        };
        let mut reset: Vec<TopicPartition> = Vec::new();
        for tp in missing {
            match committed.get(&tp).copied().flatten() {
                Some(offset) => {
                    if let Some(p) = state.partitions.get_mut(&tp) {
                        p.position = Some(offset);
                    }
                }
                None => reset.push(tp),
            }
        }
        for tp in reset {
            let offset = self.reset_offset(&tp).await?;
            if let Some(p) = state.partitions.get_mut(&tp) {
                p.position = Some(offset);
            }
        }
        Ok(())
    }

    async fn reset_offset(&self, tp: &TopicPartition) -> Result<i64> {
        let timestamp = match self.config.auto_offset_reset {
            OffsetReset::Earliest => -2,
            OffsetReset::Latest => -1,
            OffsetReset::None => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{}-{} has no committed offset and auto_offset_reset is none", tp.0, tp.1),
                ))
            }
        };
        self.list_offset(tp, timestamp).await
    }

    /// ListOffsets for one partition: -2 earliest, -1 latest, else the first offset at or
    /// after `timestamp`.
    pub async fn list_offset(&self, tp: &TopicPartition, timestamp: i64) -> Result<i64> {
        let request =
            ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(s(&tp.0)))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(tp.1)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(timestamp)])]);
        let connection = self.cluster.leader(&tp.0, tp.1).await?;
        let (_, response) = connection.call(&request).await?;
        let p = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| Error::new(ErrorKind::Broker, "ListOffsets answered nothing"))?;
        if let Some(e) = Error::from_code(p.error_code, format!("listing offsets of {}-{}", tp.0, tp.1)) {
            return Err(e);
        }
        Ok(p.offset)
    }

    /// One round of fetches (one request per leader, concurrently). Returns whether anything
    /// was asked for.
    async fn fetch(&self, state: &mut State, wait: Duration) -> bool {
        let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        for (tp, p) in &state.partitions {
            let (Some(position), false, true) = (p.position, p.paused, p.buffered.is_empty()) else { continue };
            let leader = self.cluster.topic(&tp.0).and_then(|t| t.partitions.get(tp.1 as usize).map(|m| m.leader));
            match leader {
                Some(leader) if leader >= 0 => by_leader.entry(leader).or_default().push((tp.clone(), position)),
                _ => {
                    let _ = self.cluster.refresh(Some(std::slice::from_ref(&tp.0)), false).await;
                }
            }
        }
        if by_leader.is_empty() {
            return false;
        }
        let mut requests = tokio::task::JoinSet::new();
        for (leader, partitions) in by_leader {
            let cluster = self.cluster.clone();
            let config = self.config.clone();
            requests.spawn(async move {
                let result = fetch_from(&cluster, &config, leader, &partitions, wait).await;
                (partitions, result)
            });
        }
        let mut refresh = false;
        while let Some(Ok((asked, result))) = requests.join_next().await {
            match result {
                Ok(response) => refresh |= self.absorb(state, &asked, response).await,
                Err(e) => {
                    tracing::debug!(error = %e, "fetch failed");
                    refresh = true;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        if refresh {
            let _ = self.cluster.refresh(None, false).await;
        }
        true
    }

    /// Buffers a fetch's records; returns whether metadata looks stale.
    async fn absorb(&self, state: &mut State, asked: &[(TopicPartition, i64)], response: FetchResponse) -> bool {
        let mut stale = false;
        for topic in response.responses {
            let name = topic.topic.0.to_string();
            for data in topic.partitions {
                let tp = (name.clone(), data.partition_index);
                let Some(&(_, asked_position)) = asked.iter().find(|(t, _)| *t == tp) else { continue };
                let Some(p) = state.partitions.get_mut(&tp) else { continue };
                if p.position != Some(asked_position) {
                    continue; // sought elsewhere meanwhile
                }
                match data.error_code {
                    0 => {}
                    1 => {
                        // OFFSET_OUT_OF_RANGE: start over by the reset policy.
                        p.position = None;
                        continue;
                    }
                    _ => {
                        stale = true;
                        continue;
                    }
                }
                let Some(mut bytes) = data.records else { continue };
                while bytes.len() >= headwater_core::constants::BATCH_HEADER_BYTES {
                    let Some(header) = BatchHeader::parse(&bytes) else { break };
                    let Some(size) = header.size_bytes().filter(|s| *s <= bytes.len()) else { break };
                    let batch = bytes.split_to(size);
                    if header.is_control() {
                        continue;
                    }
                    let Some(records) = decode_records(&batch) else { break };
                    for r in records.into_iter().filter(|r| r.offset >= asked_position) {
                        p.buffered.push_back(ConsumerRecord {
                            topic: name.clone(),
                            partition: tp.1,
                            offset: r.offset,
                            timestamp: r.timestamp,
                            key: r.key,
                            value: r.value,
                            headers: r.headers,
                        });
                    }
                }
            }
        }
        stale
    }

    /// Leaves the group (a static member only steps away) and stops. Commit first if needed.
    pub async fn close(&self) {
        let mut state = self.state.lock().await;
        if state.closed {
            return;
        }
        let offsets = self.consumed_all();
        if self.config.enable_auto_commit && !offsets.is_empty() {
            let _ = self.commit_offsets(&offsets).await;
        }
        state.closed = true;
        if let Some(membership) = self.membership() {
            let stopped = membership.stopped.notified();
            membership.shared().stopping = true;
            membership.wake.notify_waiters();
            let _ = tokio::time::timeout(self.config.client.request_timeout, stopped).await;
        }
    }
}

fn not_assigned(tp: &TopicPartition) -> Error {
    Error::config(format!("{}-{} is not assigned to this consumer", tp.0, tp.1))
}

/// Up to `max` buffered records, round-robin across partitions, advancing positions.
fn take_records(state: &mut State, max: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::new();
    for p in state.partitions.values_mut() {
        while out.len() < max {
            let Some(record) = p.buffered.pop_front() else { break };
            p.position = Some(record.offset + 1);
            out.push(record);
        }
    }
    out
}

async fn fetch_from(
    cluster: &Cluster,
    config: &ConsumerConfig,
    leader: i32,
    partitions: &[(TopicPartition, i64)],
    wait: Duration,
) -> Result<FetchResponse> {
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for ((topic, partition), position) in partitions {
        topics.entry(topic.as_str()).or_default().push(
            FetchPartition::default()
                .with_partition(*partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(*position)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(config.partition_fetch_max_bytes),
        );
    }
    let request = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(wait.as_millis().min(i32::MAX as u128) as i32)
        .with_min_bytes(1)
        .with_max_bytes(config.fetch_max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, ps)| FetchTopic::default().with_topic(TopicName(s(name))).with_partitions(ps))
                .collect(),
        );
    let connection = cluster.broker(leader).await?;
    let (_, response) = connection.call(&request).await?;
    if let Some(e) = Error::from_code(response.error_code, "fetch") {
        return Err(e);
    }
    Ok(response)
}
