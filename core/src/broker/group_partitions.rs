//! Groups in a cluster (D27): a group's coordinator is the leader of its `__consumer_offsets`
//! partition, and its committed offsets are records in that replicated partition.
//!
//! - **The topic** is made by the controller as soon as enough brokers are registered for its
//!   replication factor, min(3, voters): `offsets_topic_partitions` partitions (50 by
//!   default), placed like any topic. (Kafka makes it at the first FindCoordinator; here only
//!   the controller decides, and a broker has no call to ask it for a topic, so it does not
//!   wait to be asked.) Until it exists and has leaders, FindCoordinator answers
//!   COORDINATOR_NOT_AVAILABLE.
//! - **Loading.** A replica that becomes the partition's leader replays the partition's log
//!   into the offset store once its high watermark reaches the log end it had when elected
//!   (every record it holds is then committed); until then its groups answer
//!   COORDINATOR_LOAD_IN_PROGRESS. Classic groups' membership is in the log too
//!   ([`membership`](crate::group::membership)): a moved group carries on in its generation,
//!   its members' heartbeats answered as before. KIP-848 groups' membership is not: they hold
//!   back assignments for a moment, as after a restart, while their members come back.
//! - **Unloading.** A leader that loses the partition (a new epoch elsewhere, a failed disk)
//!   forgets its groups' offsets and members; their requests are sent to the new leader
//!   (NOT_COORDINATOR), and commits waiting for the quorum are answered NOT_COORDINATOR unless
//!   they committed in the epoch they were written in.
//!
//! On a single node the store is loaded at start-up from the one local offsets partition, and
//! none of this runs.

use std::collections::BTreeMap;

use super::groups::offsets_partition_of;
use super::Broker;
use crate::group::membership::{self, StoredGroup};
use crate::group::{OffsetStore, OFFSETS_TOPIC};
use crate::log::batch::BatchHeader;
use crate::metadata::quorum::Decision;
use crate::partition::Partition;
use crate::txn::producer::TxnEnd;

/// Which partitions of an internal topic whose leader coordinates their keys (the offsets
/// topic's groups, the transaction state topic's transactional ids) are led and loaded here.
#[derive(Debug, Default)]
pub(super) struct LedPartitions {
    /// Partitions led here and not loaded yet: (epoch, log end when elected).
    loading: BTreeMap<i32, (i32, i64)>,
    /// Partitions led and loaded here, with the epoch they were loaded in.
    loaded: BTreeMap<i32, i32>,
    pub next_create_ms: i64,
}

/// What to do with a partition's keys after its Raft spoke ([`LedPartitions::step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Forget them: not led here any more, or led again in a later epoch and not loadable yet.
    Unload,
    /// Forget them and replay the partition: led, and every record it held when elected is
    /// committed.
    Load,
}

impl LedPartitions {
    /// Brings partition `index` in line with this node's role for it: `led` is (leader epoch,
    /// high watermark, log end) while this node leads it, else `None`.
    pub(super) fn step(&mut self, index: i32, led: Option<(i32, i64, i64)>) -> Option<Step> {
        let Some((epoch, high_watermark, end)) = led else {
            let was_loaded = self.loaded.remove(&index).is_some();
            return (self.loading.remove(&index).is_some() || was_loaded).then_some(Step::Unload);
        };
        if self.loaded.get(&index) == Some(&epoch) {
            return None;
        }
        // Led again in a later epoch: another leader may have taken writes meanwhile.
        let stale = self.loaded.remove(&index).is_some();
        let until = match self.loading.get(&index) {
            Some(&(loading_epoch, until)) if loading_epoch == epoch => until,
            _ => {
                self.loading.insert(index, (epoch, end));
                end
            }
        };
        if high_watermark >= until {
            self.loading.remove(&index);
            self.loaded.insert(index, epoch);
            return Some(Step::Load);
        }
        stale.then_some(Step::Unload)
    }

    /// A partition whose replay failed: not loaded after all.
    pub(super) fn load_failed(&mut self, index: i32) {
        self.loaded.remove(&index);
    }

    pub(super) fn loaded_in(&self, index: i32) -> Option<i32> {
        self.loaded.get(&index).copied()
    }
}

/// Where a coordinator key (a group, a transactional id) is coordinated.
pub(super) enum Home {
    Here,
    /// This node leads the key's partition but has not loaded it yet.
    Loading,
    /// Another broker, not fenced: its id, host and port.
    There(kafka_protocol::messages::BrokerId, String, i32),
    /// No leader known now, or the topic does not exist yet.
    Unavailable,
}

impl Broker {
    /// The `__consumer_offsets` partition holding `group`: 0 on one node; in a cluster Kafka's
    /// hash over the partitions the offsets topic has.
    pub(super) fn offsets_partition(&self, group: &str) -> i32 {
        match self.topics.get(OFFSETS_TOPIC) {
            Some(topic) if self.is_cluster() => offsets_partition_of(group, topic.record.partitions),
            _ => 0,
        }
    }

    /// The group's coordinator: on one node this node; in a cluster the leader of its offsets
    /// partition.
    pub(super) fn group_home(&self, group: &str) -> Home {
        if self.quorum.is_none() {
            return Home::Here;
        }
        self.home_of(OFFSETS_TOPIC, group, &self.group_partitions)
    }

    /// The coordinator of `key` in a cluster: the leader of `topic`'s partition for it, this
    /// node once it has loaded that partition, else the image's leader while not fenced.
    pub(super) fn home_of(&self, topic: &str, key: &str, led: &LedPartitions) -> Home {
        let Some(quorum) = &self.quorum else { return Home::Unavailable };
        let Some(topic) = self.topics.get(topic) else { return Home::Unavailable };
        let index = offsets_partition_of(key, topic.record.partitions);
        if let Some(partition) = topic.partitions.get(&index).filter(|p| p.is_leader() && !p.failed) {
            return match led.loaded_in(index) {
                Some(epoch) if epoch == partition.leader_epoch() => Home::Here,
                _ => Home::Loading,
            };
        }
        let image = quorum.image();
        let leader = image
            .topics
            .get(&topic.record.id)
            .and_then(|t| t.partitions.get(index as usize))
            .and_then(|p| p.leader)
            .filter(|&l| l.0 != self.config.node_id);
        match leader.and_then(|l| image.brokers.get(&l).map(|b| (l, b))) {
            Some((l, b)) if !b.fenced => Home::There(kafka_protocol::messages::BrokerId(l.0), b.host.clone(), b.port),
            _ => Home::Unavailable,
        }
    }

    /// On the controller, makes the offsets topic if the image has none, at most every
    /// [`INTERNAL_TOPIC_CREATE_RETRY_MS`](crate::constants::INTERNAL_TOPIC_CREATE_RETRY_MS): placement refuses it while fewer brokers than its replication
    /// factor are registered.
    pub(super) fn ensure_offsets_topic(&mut self, now_ms: i64) {
        let Some(quorum) = &self.quorum else { return };
        if now_ms < self.group_partitions.next_create_ms
            || quorum.raft().leader() != Some(crate::ids::NodeId(self.config.node_id))
            || quorum.image().topic(OFFSETS_TOPIC).is_some()
        {
            return;
        }
        self.group_partitions.next_create_ms = now_ms + crate::constants::INTERNAL_TOPIC_CREATE_RETRY_MS;
        let voters = self.config.quorum_voters.as_ref().map_or(1, Vec::len);
        let decision = Decision::CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: self.config.offsets_topic_partitions,
            replication_factor: voters.min(3) as i16,
            configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
        };
        self.decide_unanswered(now_ms, decision);
    }

    /// Brings the groups of offsets partition `index` in line with this node's role for it,
    /// after its Raft spoke: loads them once led and committed, forgets them once not led.
    pub(super) fn offsets_partition_changed(&mut self, now_ms: i64, index: i32) {
        let led = self.led_state(OFFSETS_TOPIC, index);
        match self.group_partitions.step(index, led) {
            Some(Step::Unload) => self.unload_groups(now_ms, index),
            Some(Step::Load) => self.load_groups(now_ms, index),
            None => {}
        }
    }

    /// (leader epoch, high watermark, log end) of `topic`-`index` while this node leads it.
    pub(super) fn led_state(&self, topic: &str, index: i32) -> Option<(i32, i64, i64)> {
        self.partition(topic, index)
            .filter(|p| p.is_leader() && !p.failed)
            .map(|p| (p.leader_epoch(), p.high_watermark(), p.log_end_offset()))
    }

    /// Replays offsets partition `index` into the offset store and the classic coordinator
    /// (its groups' entries are replaced).
    fn load_groups(&mut self, now_ms: i64, index: i32) {
        self.unload_groups(now_ms, index);
        let Some(partition) = self.partition(OFFSETS_TOPIC, index) else { return };
        match read_offsets_log(partition) {
            Ok(log) => self.take_over_groups(now_ms, log),
            Err(error) => {
                let id = partition.id;
                self.group_partitions.load_failed(index);
                self.fail_partition(id, super::StorageOp::Append, &error);
            }
        }
    }

    /// Forgets the offsets and members of the groups of offsets partition `index`.
    fn unload_groups(&mut self, now_ms: i64, index: i32) {
        let count = self.topics.get(OFFSETS_TOPIC).map_or(1, |t| t.record.partitions);
        let elsewhere = |group: &str| offsets_partition_of(group, count) != index;
        self.offsets.retain_groups(elsewhere);
        self.groups.unload(|group| !elsewhere(group));
        self.consumer_groups.unload(|group| !elsewhere(group));
        self.drain_group_replies(now_ms);
    }
}

/// What an offsets partition's log holds: committed offsets, and each classic group's last
/// record (`None`: deleted, or unreadable).
pub(super) struct OffsetsLog {
    pub offsets: OffsetStore,
    pub groups: BTreeMap<String, Option<StoredGroup>>,
}

/// Reads an offsets partition's log from its start; the last record of each key wins.
pub(super) fn read_offsets_log(partition: &Partition) -> std::io::Result<OffsetsLog> {
    let mut log = OffsetsLog { offsets: OffsetStore::default(), groups: BTreeMap::new() };
    partition.log.for_each_batch(|bytes| {
        let Some(header) = BatchHeader::parse(bytes) else { return };
        if header.is_control() {
            // A transaction marker decides the offsets its producer committed in the
            // transaction; the Raft's LeaderChange batches carry nothing here.
            let end = crate::log::batch::control_type(bytes).and_then(TxnEnd::from_control_type);
            if let (Some(end), true) = (end, header.is_transactional()) {
                log.offsets.end_txn(header.producer_id, end == TxnEnd::Commit);
            }
            return;
        }
        let records = crate::log::batch::payload_records(bytes).unwrap_or_default();
        if header.is_transactional() {
            for record in records {
                log.offsets.apply_pending_record(header.producer_id, record.key.as_deref(), record.value.as_deref());
            }
            return;
        }
        for record in records {
            let (key, value) = (record.key.as_deref(), record.value.as_deref());
            match membership::decode(key, value) {
                Some((group, stored)) => {
                    log.groups.insert(group, stored);
                }
                None => log.offsets.apply_record(key, value),
            }
        }
    })?;
    Ok(log)
}

impl Broker {
    /// Takes over what an offsets log holds: its offsets into the store, its classic groups
    /// into the coordinator (members keep their generation; each has a full session from now
    /// to heartbeat), and KIP-848 groups held back while their members come back.
    pub(super) fn take_over_groups(&mut self, now_ms: i64, log: OffsetsLog) {
        let held = log.offsets.groups();
        self.offsets.merge(log.offsets);
        for (group, stored) in log.groups {
            if let Some(stored) = stored {
                self.groups.restore(now_ms, &group, stored);
            }
        }
        let hold_ms = 2 * i64::from(self.config.consumer_group.heartbeat_interval_ms);
        self.consumer_groups.hold_back(held, now_ms + hold_ms);
    }
}
