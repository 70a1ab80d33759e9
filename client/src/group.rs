//! Group membership over KIP-848's consumer protocol: a task heartbeats to the coordinator,
//! which assigns partitions; the consumer applies assignments in `poll` (calling the rebalance
//! listener there) and the next heartbeat reports what it holds. The broker gives a partition
//! to a new member only after its old holder reported it gone, so two members of a group never
//! consume one partition at once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::cluster::Cluster;
use crate::error::{Error, ErrorKind};

/// A partition as the group protocol names it.
pub(crate) type GroupPartition = (Uuid, i32);

#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub member_id: String,
    pub epoch: i32,
    /// The latest assignment from the coordinator, not yet applied by `poll`.
    pub target: Option<BTreeSet<GroupPartition>>,
    /// What `poll` holds now (reported in heartbeats).
    pub owned: BTreeSet<GroupPartition>,
    /// The member was fenced or forgotten: `poll` must drop everything (partitions lost).
    pub lost: bool,
    /// An error that stops the consumer (reported by the next `poll`).
    pub fatal: Option<Error>,
    pub stopping: bool,
}

pub(crate) struct Membership {
    pub shared: Mutex<Shared>,
    pub wake: Notify,
    pub stopped: Notify,
}

pub(crate) struct MemberConfig {
    pub group_id: String,
    pub topics: Vec<String>,
    pub instance_id: Option<String>,
    pub assignor: Option<String>,
    pub rebalance_timeout: Duration,
}

impl Membership {
    pub fn start(cluster: Arc<Cluster>, config: MemberConfig) -> Arc<Membership> {
        let membership = Arc::new(Membership {
            shared: Mutex::new(Shared { member_id: random_member_id(), ..Shared::default() }),
            wake: Notify::new(),
            stopped: Notify::new(),
        });
        tokio::spawn(heartbeat_loop(cluster, config, membership.clone()));
        membership
    }

    pub fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("membership lock")
    }

    /// (member id, epoch) for offset commits.
    pub fn identity(&self) -> (String, i32) {
        let shared = self.shared();
        (shared.member_id.clone(), shared.epoch)
    }
}

/// A random member id (KIP-1082: consumer-protocol members choose their own, and keep it).
fn random_member_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let half = || std::collections::hash_map::RandomState::new().build_hasher().finish();
    let bits = (u128::from(half()) << 64) | u128::from(half());
    // Version 4, variant 1, like any random UUID.
    let bits = (bits & !(0xF << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    Uuid::from_u128(bits).to_string()
}

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

async fn heartbeat_loop(cluster: Arc<Cluster>, config: MemberConfig, membership: Arc<Membership>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let (member_id, epoch, owned, stopping) = {
            let shared = membership.shared();
            (shared.member_id.clone(), shared.epoch, shared.owned.clone(), shared.stopping)
        };
        if stopping {
            leave(&cluster, &config, &member_id, epoch).await;
            membership.stopped.notify_waiters();
            return;
        }
        let mut request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(&config.group_id)))
            .with_member_id(s(&member_id))
            .with_member_epoch(epoch)
            .with_instance_id(config.instance_id.as_deref().map(s))
            .with_topic_partitions(Some(by_topic(&owned)));
        if epoch == 0 {
            request.rebalance_timeout_ms = config.rebalance_timeout.as_millis().min(i32::MAX as u128) as i32;
            request.subscribed_topic_names = Some(config.topics.iter().map(|t| TopicName(s(t))).collect());
            request.server_assignor = config.assignor.as_deref().map(s);
        }
        let result = match cluster.coordinator(&config.group_id).await {
            Ok(connection) => connection.call(&request).await.map(|(_, r)| r),
            Err(e) => Err(e),
        };
        let wait = match result {
            Ok(response) if response.error_code == 0 => {
                backoff = Duration::from_millis(100);
                let interval = Duration::from_millis(response.heartbeat_interval_ms.max(100) as u64);
                let mut shared = membership.shared();
                if let Some(id) = response.member_id.filter(|id| !id.is_empty()) {
                    shared.member_id = id.to_string();
                }
                shared.epoch = response.member_epoch;
                if let Some(assignment) = response.assignment {
                    shared.target = Some(
                        assignment
                            .topic_partitions
                            .iter()
                            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
                            .collect(),
                    );
                }
                interval
            }
            Ok(response) => {
                let error = Error::from_code(response.error_code, format!("heartbeat to group {}", config.group_id))
                    .expect("nonzero");
                match response.error_code {
                    // FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER_ID: drop everything, join again.
                    110 | 25 => {
                        let mut shared = membership.shared();
                        shared.epoch = 0;
                        shared.lost = true;
                        shared.target = None;
                        Duration::ZERO
                    }
                    // NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS
                    14..=16 => {
                        cluster.forget_coordinator(&config.group_id);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        backoff
                    }
                    _ if error.retriable => {
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        backoff
                    }
                    _ => {
                        membership.shared().fatal = Some(error);
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, group = config.group_id, "heartbeat failed");
                if e.kind == ErrorKind::Fatal {
                    membership.shared().fatal = Some(e);
                    return;
                }
                cluster.forget_coordinator(&config.group_id);
                backoff = (backoff * 2).min(Duration::from_secs(1));
                backoff
            }
        };
        if !wait.is_zero() {
            let _ = tokio::time::timeout(wait, membership.wake.notified()).await;
        }
    }
}

async fn leave(cluster: &Cluster, config: &MemberConfig, member_id: &str, epoch: i32) {
    if epoch <= 0 {
        return;
    }
    // A static member leaves "for now" (-2) and keeps its partitions for its return.
    let leave_epoch = if config.instance_id.is_some() { -2 } else { -1 };
    let request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(&config.group_id)))
        .with_member_id(s(member_id))
        .with_member_epoch(leave_epoch)
        .with_instance_id(config.instance_id.as_deref().map(s));
    if let Ok(connection) = cluster.coordinator(&config.group_id).await {
        let _ = connection.call(&request).await;
    }
}

fn by_topic(partitions: &BTreeSet<GroupPartition>) -> Vec<TopicPartitions> {
    let mut out: Vec<TopicPartitions> = Vec::new();
    for &(id, p) in partitions {
        match out.last_mut() {
            Some(last) if last.topic_id == id => last.partitions.push(p),
            _ => out.push(TopicPartitions::default().with_topic_id(id).with_partitions(vec![p])),
        }
    }
    out
}
