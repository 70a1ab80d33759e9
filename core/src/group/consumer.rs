//! The consumer group protocol of KIP-848 (ConsumerGroupHeartbeat), as a state machine driven
//! with `now_ms`.
//!
//! The broker assigns partitions; members only heartbeat. Every change a member must make
//! comes back in a heartbeat response, and every change is safe on its own:
//!
//! - The **group epoch** goes up whenever the membership, a subscription or the subscribed
//!   topics' partitions change; the **target assignment** is then recomputed at that epoch by
//!   the group's server-side assignor (`uniform` or `range`).
//! - Each member moves toward its target on its own heartbeats. It first gives up the
//!   partitions it must lose (it keeps its epoch until it reports, with the partitions it owns,
//!   that it has revoked them), then takes the target's epoch and every target partition that no
//!   other member still holds. A partition held by another member is handed over on a later
//!   heartbeat, once that member has revoked it.
//!
//! So a partition is never held by two members at once: [`Group::owners`] records the one
//! member that holds each partition, from the heartbeat that hands it over until the heartbeat
//! that reports it revoked, or until the member is removed.
//!
//! Membership lives in memory only, as in the classic coordinator: after a broker restart a
//! member's heartbeat gets UNKNOWN_MEMBER_ID and it joins again with epoch 0.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member as DescribedMember,
    TopicPartitions as DescribedPartitions,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::error::ErrorCode;
use crate::rng::Rng;

/// The server-side assignors, by the names clients send in `group.remote.assignor`.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// Member epoch a member sends to leave for good.
const LEAVE_EPOCH: i32 = -1;
/// Member epoch a static member sends when it leaves and will come back (keeps its partitions).
const STATIC_LEAVE_EPOCH: i32 = -2;

/// Settings, Kafka's broker configs of the same names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.session.timeout.ms`: a member that does not heartbeat for this long is
    /// removed and its partitions reassigned.
    pub session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`, told to members in every response.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`
    pub members_max: usize,
    /// `group.consumer.assignors`: the first is the default.
    pub default_assignor: String,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            members_max: 1_000,
            default_assignor: "uniform".to_string(),
        }
    }
}

/// A partition, by topic id (what the protocol carries) and index.
pub type Tp = (Uuid, i32);

/// Where a member is on its way to its target assignment (Kafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberState {
    /// Holds its whole target at the target's epoch.
    Stable,
    /// Must revoke [`Member::revoking`] before it moves on.
    UnrevokedPartitions,
    /// At the target's epoch, waiting for partitions other members still hold.
    UnreleasedPartitions,
}

#[derive(Debug, Clone)]
struct Member {
    member_id: String,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    subscribed: Vec<String>,
    assignor: Option<String>,
    rebalance_timeout_ms: i32,
    epoch: i32,
    previous_epoch: i32,
    /// A static member that left with epoch -2 and keeps its partitions until it returns.
    away: bool,
    state: MemberState,
    /// Partitions the member may use now.
    assigned: BTreeSet<Tp>,
    /// Partitions the member was told to give up and has not yet reported revoked.
    revoking: BTreeSet<Tp>,
    /// What the member was last sent, so unchanged assignments are not resent.
    sent: Option<BTreeSet<Tp>>,
    last_heartbeat_ms: i64,
    /// A member that does not revoke by then is removed.
    revoke_deadline_ms: Option<i64>,
}

#[derive(Debug, Clone)]
struct Group {
    epoch: i32,
    target_epoch: i32,
    assignor: String,
    members: BTreeMap<String, Member>,
    /// group.instance.id -> member id
    static_members: BTreeMap<String, String>,
    target: BTreeMap<String, BTreeSet<Tp>>,
    /// Subscribed topics as of the last epoch: name -> (id, partition count).
    topics: BTreeMap<String, (Uuid, i32)>,
    /// The member holding each partition (assigned or still revoking).
    owners: BTreeMap<Tp, String>,
    /// Until then no partition is handed out (see [`ConsumerGroups::hold_back`]).
    hold_until_ms: i64,
}

impl Group {
    fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.target_epoch < self.epoch {
            "Assigning"
        } else if self.members.values().any(|m| m.epoch != self.target_epoch || m.state != MemberState::Stable) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    fn topic_name(&self, id: Uuid) -> Option<&str> {
        self.topics.iter().find(|(_, (tid, _))| *tid == id).map(|(name, _)| name.as_str())
    }

    fn release(&mut self, member_id: &str, partitions: &BTreeSet<Tp>) {
        for tp in partitions {
            if self.owners.get(tp).is_some_and(|owner| owner == member_id) {
                self.owners.remove(tp);
            }
        }
    }

    fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let member = self.members.remove(member_id)?;
        self.release(member_id, &member.assigned);
        self.release(member_id, &member.revoking);
        self.target.remove(member_id);
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).is_some_and(|id| id == member_id) {
                self.static_members.remove(instance);
            }
        }
        self.epoch += 1;
        Some(member)
    }

    /// The assignor most members asked for, or the default.
    fn choose_assignor(&self, default: &str) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(name) = &member.assignor {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max().unwrap_or(0);
        votes.into_iter().find(|(_, n)| *n == best && best > 0).map_or(default, |(name, _)| name).to_string()
    }

    /// Recomputes the target assignment if the group epoch moved past it.
    fn refresh_target(&mut self, default_assignor: &str) {
        if self.target_epoch == self.epoch {
            return;
        }
        self.assignor = self.choose_assignor(default_assignor);
        let subscriptions: BTreeMap<&str, &[String]> =
            self.members.iter().map(|(id, m)| (id.as_str(), m.subscribed.as_slice())).collect();
        self.target = if self.assignor == "range" {
            // Static members are ordered by instance id, so their ranges survive restarts.
            let order: BTreeMap<&str, &str> = self
                .members
                .iter()
                .map(|(id, m)| (id.as_str(), m.instance_id.as_deref().unwrap_or(id.as_str())))
                .collect();
            assign_range(&subscriptions, &order, &self.topics)
        } else {
            assign_uniform(&subscriptions, &self.topics, &self.target)
        };
        self.target_epoch = self.epoch;
    }

    /// Moves `member_id` toward its target. `owned` is what the member reported holding, if it
    /// reported anything in this heartbeat.
    fn reconcile(&mut self, member_id: &str, owned: Option<&BTreeSet<Tp>>, now_ms: i64) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let target_epoch = self.target_epoch;
        let member = self.members.get_mut(member_id).expect("reconciling a member");
        if member.state == MemberState::UnrevokedPartitions {
            // The target may have moved again while the member was revoking: it gets the
            // rebalance timeout again for the larger set.
            let dropped: BTreeSet<Tp> = member.assigned.difference(&target).copied().collect();
            if !dropped.is_empty() {
                member.assigned.retain(|tp| target.contains(tp));
                member.revoking.extend(dropped);
                member.revoke_deadline_ms = Some(now_ms + i64::from(member.rebalance_timeout_ms.max(0)));
            }
            let done = owned.is_some_and(|owned| owned.is_disjoint(&member.revoking));
            if !done {
                return;
            }
            let revoked = std::mem::take(&mut member.revoking);
            member.revoke_deadline_ms = None;
            member.state = MemberState::Stable;
            self.release(member_id, &revoked);
        }
        let member = self.members.get_mut(member_id).expect("reconciling a member");
        if member.epoch == target_epoch && member.state == MemberState::Stable {
            return;
        }
        let dropped: BTreeSet<Tp> = member.assigned.difference(&target).copied().collect();
        if !dropped.is_empty() {
            member.assigned.retain(|tp| target.contains(tp));
            if owned.is_some_and(|owned| owned.is_disjoint(&dropped)) {
                // The member says it does not hold them (it joined again, or never received
                // them): as Kafka does, it moves on without a revocation round trip, which
                // its client would never acknowledge (nothing changes for it).
                self.release(member_id, &dropped);
            } else {
                member.revoking = dropped;
                member.state = MemberState::UnrevokedPartitions;
                member.revoke_deadline_ms = Some(now_ms + i64::from(member.rebalance_timeout_ms.max(0)));
                return;
            }
        }
        let member = self.members.get_mut(member_id).expect("reconciling a member");
        if member.epoch != target_epoch {
            member.previous_epoch = member.epoch;
            member.epoch = target_epoch;
        }
        let mut waiting = false;
        for tp in target.iter().filter(|_| now_ms >= self.hold_until_ms) {
            match self.owners.get(tp) {
                Some(owner)
                    if owner != member_id && !crate::planted::active(crate::planted::PlantedBug::EarlyHandover) =>
                {
                    waiting = true
                }
                _ => {
                    self.owners.insert(*tp, member_id.to_string());
                    member.assigned.insert(*tp);
                }
            }
        }
        if now_ms < self.hold_until_ms {
            waiting = !target.is_empty();
        }
        member.state = if waiting { MemberState::UnreleasedPartitions } else { MemberState::Stable };
    }
}

/// Every consumer-protocol group this broker coordinates.
pub struct ConsumerGroups {
    config: ConsumerGroupConfig,
    /// Where new groups' epochs start: one range per broker start, like the classic
    /// coordinator's generations, so an epoch never names two assignments across restarts.
    epoch_base: i32,
    groups: BTreeMap<String, Group>,
    /// Groups that existed before this broker start, and until when they hand out nothing.
    held_back: BTreeMap<String, i64>,
    rng: Rng,
}

fn s(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

fn error(code: ErrorCode, message: &str) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default().with_error_code(code.code()).with_error_message(Some(s(message)))
}

/// Groups `partitions` by topic id, in the protocol's shape.
fn by_topic(partitions: &BTreeSet<Tp>) -> Vec<(Uuid, Vec<i32>)> {
    let mut out: Vec<(Uuid, Vec<i32>)> = Vec::new();
    for &(id, p) in partitions {
        match out.last_mut() {
            Some((last, list)) if *last == id => list.push(p),
            _ => out.push((id, vec![p])),
        }
    }
    out
}

impl ConsumerGroups {
    pub fn new(config: ConsumerGroupConfig, seed: u64, incarnation: u64) -> ConsumerGroups {
        // 32,000 ranges of 65,536 epochs stay clear of i32::MAX.
        let epoch_base = i32::try_from((incarnation % 32_000) << 16).expect("below 2^31");
        ConsumerGroups { config, epoch_base, groups: BTreeMap::new(), held_back: BTreeMap::new(), rng: Rng::new(seed) }
    }

    /// After a restart, membership is gone but the members of `groups` (known from their
    /// committed offsets) may still be consuming until their next heartbeat is refused. Their
    /// groups hand out no partition before `until_ms`, so the first member to rejoin does not
    /// take partitions the others are still working on. A mitigation, not a guarantee: a
    /// member that stalls longer is a zombie, fenced only when it commits (as in Kafka after a
    /// session timeout). Persisting membership would remove the need for it.
    pub fn hold_back(&mut self, groups: impl IntoIterator<Item = String>, until_ms: i64) {
        self.held_back.extend(groups.into_iter().map(|g| (g, until_ms)));
    }

    /// ConsumerGroupHeartbeat. `topics` looks a topic up by name: (id, partition count).
    pub fn heartbeat(
        &mut self,
        now_ms: i64,
        api_version: i16,
        client_id: &str,
        request: &ConsumerGroupHeartbeatRequest,
        topics: &dyn Fn(&str) -> Option<(Uuid, i32)>,
    ) -> ConsumerGroupHeartbeatResponse {
        match self.try_heartbeat(now_ms, api_version, client_id, request, topics) {
            Ok(response) => response,
            Err((code, message)) => error(code, &message),
        }
    }

    fn try_heartbeat(
        &mut self,
        now_ms: i64,
        api_version: i16,
        client_id: &str,
        request: &ConsumerGroupHeartbeatRequest,
        topics: &dyn Fn(&str) -> Option<(Uuid, i32)>,
    ) -> Result<ConsumerGroupHeartbeatResponse, (ErrorCode, String)> {
        let invalid = |message: &str| Err((ErrorCode::InvalidRequest, message.to_string()));
        let group_id = request.group_id.0.to_string();
        let epoch = request.member_epoch;
        if group_id.is_empty() {
            return invalid("GroupId can't be empty.");
        }
        if (api_version >= 1 || epoch != 0) && request.member_id.is_empty() {
            return invalid("MemberId can't be empty.");
        }
        if request.instance_id.as_ref().is_some_and(|i| i.is_empty()) {
            return invalid("InstanceId can't be empty.");
        }
        if request.rack_id.as_ref().is_some_and(|r| r.is_empty()) {
            return invalid("RackId can't be empty.");
        }
        if epoch == 0 {
            if request.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if request.topic_partitions.as_ref().is_none_or(|tps| !tps.is_empty()) {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            if request.subscribed_topic_names.is_none() && request.subscribed_topic_regex.is_none() {
                return invalid("SubscribedTopicNames or SubscribedTopicRegex must be set in first request.");
            }
        } else if epoch == STATIC_LEAVE_EPOCH && request.instance_id.is_none() {
            return invalid("InstanceId can't be null.");
        } else if epoch < STATIC_LEAVE_EPOCH {
            return invalid("MemberEpoch is invalid.");
        }
        if request.subscribed_topic_regex.as_ref().is_some_and(|r| !r.is_empty()) {
            return Err((
                ErrorCode::InvalidRegularExpression,
                "Headwater does not support SubscribedTopicRegex yet; subscribe to topic names".to_string(),
            ));
        }
        if let Some(assignor) = &request.server_assignor {
            if !ASSIGNORS.contains(&assignor.as_str()) {
                return Err((ErrorCode::UnsupportedAssignor, format!("unknown server assignor {assignor}")));
            }
        }
        if epoch == LEAVE_EPOCH || epoch == STATIC_LEAVE_EPOCH {
            return Ok(self.leave(&group_id, request, epoch));
        }
        if epoch != 0 && !self.groups.contains_key(&group_id) {
            return Err((ErrorCode::UnknownMemberId, format!("group {group_id} has no member {}", request.member_id)));
        }
        let epoch_base = self.epoch_base;
        let hold_until_ms = self.held_back.remove(&group_id).unwrap_or(0);
        let group = self.groups.entry(group_id.clone()).or_insert_with(|| Group {
            epoch: epoch_base,
            target_epoch: epoch_base,
            assignor: String::new(),
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            target: BTreeMap::new(),
            topics: BTreeMap::new(),
            owners: BTreeMap::new(),
            hold_until_ms,
        });

        let owned: Option<BTreeSet<Tp>> = request
            .topic_partitions
            .as_ref()
            .map(|tps| tps.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p))).collect());
        let mut member_id = request.member_id.to_string();
        if epoch == 0 {
            if member_id.is_empty() {
                member_id = self.rng.uuid().to_string();
            }
            let instance = request.instance_id.as_ref().map(|i| i.to_string());
            let previous = instance.as_ref().and_then(|i| group.static_members.get(i).cloned());
            if let Some(previous_id) = previous.filter(|p| *p != member_id) {
                let returning = group.members.get(&previous_id).is_some_and(|m| m.away);
                if !returning {
                    return Err((
                        ErrorCode::UnreleasedInstanceId,
                        format!("instance id {} is in use by member {previous_id}", instance.unwrap_or_default()),
                    ));
                }
                // A static member came back: the new member id takes over the old identity,
                // its epoch and its partitions, without a rebalance.
                let mut member = group.members.remove(&previous_id).expect("checked");
                member.member_id = member_id.clone();
                member.away = false;
                member.sent = None;
                for owner in group.owners.values_mut().filter(|o| **o == previous_id) {
                    owner.clone_from(&member_id);
                }
                if let Some(target) = group.target.remove(&previous_id) {
                    group.target.insert(member_id.clone(), target);
                }
                group.static_members.insert(instance.clone().expect("static"), member_id.clone());
                group.members.insert(member_id.clone(), member);
            } else if let Some(member) = group.members.get_mut(&member_id) {
                // A known member joining again has dropped everything it held.
                member.away = false;
                member.sent = None;
            } else {
                if group.members.len() >= self.config.members_max {
                    return Err((ErrorCode::GroupMaxSizeReached, format!("group {group_id} is full")));
                }
                if let Some(instance) = &instance {
                    group.static_members.insert(instance.clone(), member_id.clone());
                }
                group.members.insert(
                    member_id.clone(),
                    Member {
                        member_id: member_id.clone(),
                        instance_id: instance,
                        rack_id: None,
                        client_id: client_id.to_string(),
                        subscribed: Vec::new(),
                        assignor: None,
                        rebalance_timeout_ms: request.rebalance_timeout_ms,
                        epoch: 0,
                        previous_epoch: 0,
                        away: false,
                        state: MemberState::Stable,
                        assigned: BTreeSet::new(),
                        revoking: BTreeSet::new(),
                        sent: None,
                        last_heartbeat_ms: now_ms,
                        revoke_deadline_ms: None,
                    },
                );
                group.epoch += 1;
            }
        } else {
            let Some(member) = group.members.get(&member_id) else {
                return Err((ErrorCode::UnknownMemberId, format!("group {group_id} has no member {member_id}")));
            };
            let fenced = if member.away || epoch > member.epoch {
                true
            } else if epoch < member.epoch {
                // The member missed the response that moved it on; it may catch up if it holds
                // nothing it was not given.
                epoch != member.previous_epoch || !owned.as_ref().is_some_and(|o| o.is_subset(&member.assigned))
            } else {
                false
            };
            if fenced {
                return Err((
                    ErrorCode::FencedMemberEpoch,
                    format!("member {member_id} sent epoch {epoch}; the coordinator knows {}", member.epoch),
                ));
            }
        }

        let member = group.members.get_mut(&member_id).expect("member exists");
        member.last_heartbeat_ms = now_ms;
        if !client_id.is_empty() {
            member.client_id = client_id.to_string();
        }
        if request.rebalance_timeout_ms != -1 {
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        if let Some(rack) = &request.rack_id {
            member.rack_id = Some(rack.to_string());
        }
        let mut changed = false;
        if let Some(names) = &request.subscribed_topic_names {
            let mut subscribed: Vec<String> = names.iter().map(|n| n.0.to_string()).collect();
            subscribed.sort();
            subscribed.dedup();
            if subscribed != member.subscribed {
                member.subscribed = subscribed;
                changed = true;
            }
        }
        if let Some(assignor) = &request.server_assignor {
            let assignor = Some(assignor.to_string());
            if assignor != member.assignor {
                member.assignor = assignor;
                changed = true;
            }
        }
        if changed {
            group.epoch += 1;
        }
        // Topics created, deleted or grown since the last epoch change the assignment too.
        let names: BTreeSet<&String> = group.members.values().flat_map(|m| m.subscribed.iter()).collect();
        let snapshot: BTreeMap<String, (Uuid, i32)> =
            names.into_iter().filter_map(|name| topics(name).map(|meta| (name.clone(), meta))).collect();
        if snapshot != group.topics {
            group.topics = snapshot;
            group.epoch += 1;
        }
        group.refresh_target(&self.config.default_assignor);
        let nothing = BTreeSet::new();
        group.reconcile(&member_id, if epoch == 0 { Some(&nothing) } else { owned.as_ref() }, now_ms);

        let member = group.members.get_mut(&member_id).expect("member exists");
        let resend = epoch == 0
            || member.sent.as_ref() != Some(&member.assigned)
            || owned.as_ref().is_some_and(|o| *o != member.assigned);
        let assignment = resend.then(|| {
            member.sent = Some(member.assigned.clone());
            Assignment::default().with_topic_partitions(
                by_topic(&member.assigned)
                    .into_iter()
                    .map(|(id, partitions)| TopicPartitions::default().with_topic_id(id).with_partitions(partitions))
                    .collect(),
            )
        });
        Ok(ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(s(member_id)))
            .with_member_epoch(member.epoch)
            .with_heartbeat_interval_ms(self.config.heartbeat_interval_ms)
            .with_assignment(assignment))
    }

    fn leave(
        &mut self,
        group_id: &str,
        request: &ConsumerGroupHeartbeatRequest,
        epoch: i32,
    ) -> ConsumerGroupHeartbeatResponse {
        let member_id = request.member_id.to_string();
        let mut response = ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(s(member_id.clone())))
            .with_member_epoch(epoch)
            .with_heartbeat_interval_ms(self.config.heartbeat_interval_ms);
        let Some(group) = self.groups.get_mut(group_id) else {
            return response
                .with_error_code(ErrorCode::UnknownMemberId.code())
                .with_error_message(Some(s(format!("group {group_id} has no members"))));
        };
        // A static member may leave under its instance id alone.
        let resolved = match &request.instance_id {
            Some(instance) => match group.static_members.get(&instance.to_string()) {
                Some(known) if member_id.is_empty() || *known == member_id => Some(known.clone()),
                Some(_) => {
                    return response
                        .with_error_code(ErrorCode::FencedInstanceId.code())
                        .with_error_message(Some(s(format!("instance id {instance} belongs to another member"))))
                }
                None => None,
            },
            None => Some(member_id.clone()).filter(|id| group.members.contains_key(id)),
        };
        let Some(resolved) = resolved else {
            response.error_code = ErrorCode::UnknownMemberId.code();
            response.error_message = Some(s(format!("group {group_id} has no member {member_id}")));
            return response;
        };
        if epoch == STATIC_LEAVE_EPOCH {
            // It keeps what it holds for its return, but it has stopped consuming: partitions
            // it was giving up are free now, and no revocation deadline can fence it.
            let member = group.members.get_mut(&resolved).expect("resolved");
            member.away = true;
            member.revoke_deadline_ms = None;
            let revoked = std::mem::take(&mut member.revoking);
            if member.state == MemberState::UnrevokedPartitions {
                member.state = MemberState::Stable;
            }
            group.release(&resolved, &revoked);
        } else {
            group.remove_member(&resolved);
            group.refresh_target(&self.config.default_assignor);
        }
        response
    }

    /// Time passed: remove members whose session ended, or who did not revoke in time.
    pub fn tick(&mut self, now_ms: i64) {
        let session_ms = i64::from(self.config.session_timeout_ms);
        for group in self.groups.values_mut() {
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| {
                    now_ms > m.last_heartbeat_ms + session_ms || m.revoke_deadline_ms.is_some_and(|d| now_ms > d)
                })
                .map(|m| m.member_id.clone())
                .collect();
            for id in &expired {
                group.remove_member(id);
            }
            group.refresh_target(&self.config.default_assignor);
        }
    }

    /// When [`ConsumerGroups::tick`] must next run.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let session_ms = i64::from(self.config.session_timeout_ms);
        self.groups
            .values()
            .flat_map(|g| g.members.values())
            .flat_map(|m| [Some(m.last_heartbeat_ms + session_ms + 1), m.revoke_deadline_ms.map(|d| d + 1)])
            .flatten()
            .min()
    }

    /// Validates an OffsetCommit from a member of a consumer-protocol group.
    pub fn validate_commit(&self, group_id: &str, member_epoch: i32, member_id: &str) -> Result<(), ErrorCode> {
        let group = self.groups.get(group_id).ok_or(ErrorCode::GroupIdNotFound)?;
        if member_epoch < 0 && group.members.is_empty() {
            // An admin or `assign` commit into a group without members.
            return Ok(());
        }
        let member = group.members.get(member_id).ok_or(ErrorCode::UnknownMemberId)?;
        // A static member that is away (epoch -2) commits nothing until it returns.
        if member.away || member_epoch != member.epoch {
            return Err(ErrorCode::StaleMemberEpoch);
        }
        Ok(())
    }

    /// Whether this coordinator knows `group_id` (with or without members).
    pub fn contains(&self, group_id: &str) -> bool {
        self.groups.contains_key(group_id)
    }

    /// Whether `group_id` has members.
    pub fn is_active(&self, group_id: &str) -> bool {
        self.groups.get(group_id).is_some_and(|g| !g.members.is_empty())
    }

    /// Whether a member of `group_id` subscribes to `topic`.
    pub fn subscribes_to(&self, group_id: &str, topic: &str) -> bool {
        self.groups.get(group_id).is_some_and(|g| g.members.values().any(|m| m.subscribed.iter().any(|t| t == topic)))
    }

    /// (group id, state name) of every group.
    pub fn list(&self) -> Vec<(String, &'static str)> {
        self.groups.iter().map(|(id, g)| (id.clone(), g.state_name())).collect()
    }

    /// ConsumerGroupDescribe of one group, or `None` if this coordinator does not know it.
    pub fn describe(&self, group_id: &str, api_version: i16) -> Option<DescribedGroup> {
        let group = self.groups.get(group_id)?;
        let described_partitions = |partitions: &BTreeSet<Tp>| {
            DescribedAssignment::default().with_topic_partitions(
                by_topic(partitions)
                    .into_iter()
                    .map(|(id, partitions)| {
                        DescribedPartitions::default()
                            .with_topic_id(id)
                            .with_topic_name(TopicName(s(group.topic_name(id).unwrap_or_default())))
                            .with_partitions(partitions)
                    })
                    .collect(),
            )
        };
        let none = BTreeSet::new();
        let members = group
            .members
            .values()
            .map(|m| {
                let mut member = DescribedMember::default()
                    .with_member_id(s(m.member_id.clone()))
                    .with_instance_id(m.instance_id.clone().map(s))
                    .with_rack_id(m.rack_id.clone().map(s))
                    .with_member_epoch(if m.away { STATIC_LEAVE_EPOCH } else { m.epoch })
                    .with_client_id(s(m.client_id.clone()))
                    .with_client_host(s("/127.0.0.1"))
                    .with_subscribed_topic_names(m.subscribed.iter().map(|t| TopicName(s(t.clone()))).collect())
                    .with_assignment(described_partitions(&m.assigned))
                    .with_target_assignment(described_partitions(group.target.get(&m.member_id).unwrap_or(&none)));
                if api_version >= 1 {
                    member.member_type = 1; // a consumer-protocol member (0 would be classic)
                }
                member
            })
            .collect();
        Some(
            DescribedGroup::default()
                .with_group_id(GroupId(s(group_id)))
                .with_group_state(s(group.state_name()))
                .with_group_epoch(group.epoch)
                .with_assignment_epoch(group.target_epoch)
                .with_assignor_name(s(if group.assignor.is_empty() {
                    self.config.default_assignor.clone()
                } else {
                    group.assignor.clone()
                }))
                .with_members(members),
        )
    }

    /// Forgets the groups `unloaded` says yes to, members and all: another broker coordinates
    /// them now.
    pub fn unload(&mut self, unloaded: impl Fn(&str) -> bool) {
        self.groups.retain(|id, _| !unloaded(id));
        self.held_back.retain(|id, _| !unloaded(id));
    }

    /// Forgets an empty group. Errors if it has members.
    pub fn delete(&mut self, group_id: &str) -> Result<(), ErrorCode> {
        match self.groups.get(group_id) {
            Some(g) if !g.members.is_empty() => Err(ErrorCode::NonEmptyGroup),
            _ => {
                self.groups.remove(group_id);
                Ok(())
            }
        }
    }

    /// Every (group, member, partition) currently held, for checkers.
    pub fn holdings(&self) -> Vec<(String, String, i32, String)> {
        let mut out = Vec::new();
        for (group_id, group) in &self.groups {
            for ((id, p), member) in &group.owners {
                let topic = group.topic_name(*id).unwrap_or_default().to_string();
                out.push((group_id.clone(), topic, *p, member.clone()));
            }
        }
        out
    }
}

/// Every partition of the subscribed topics, by topic name order.
fn partitions_of<'a>(topics: &'a BTreeMap<String, (Uuid, i32)>, names: &'a [String]) -> impl Iterator<Item = Tp> + 'a {
    names.iter().filter_map(|n| topics.get(n)).flat_map(|&(id, count)| (0..count).map(move |p| (id, p)))
}

/// Range: for each topic, its members (in `order`: instance id, else member id) take
/// contiguous ranges of partitions, the first `count % members` one more than the rest.
fn assign_range(
    members: &BTreeMap<&str, &[String]>,
    order: &BTreeMap<&str, &str>,
    topics: &BTreeMap<String, (Uuid, i32)>,
) -> BTreeMap<String, BTreeSet<Tp>> {
    let mut out: BTreeMap<String, BTreeSet<Tp>> = members.keys().map(|m| (m.to_string(), BTreeSet::new())).collect();
    for (name, &(id, count)) in topics {
        let mut subscribers: Vec<&str> =
            members.iter().filter(|(_, subs)| subs.contains(name)).map(|(m, _)| *m).collect();
        subscribers.sort_by_key(|m| (order.get(m).copied().unwrap_or(m), *m));
        if subscribers.is_empty() {
            continue;
        }
        let n = subscribers.len() as i32;
        let (each, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, member) in subscribers.iter().enumerate() {
            let take = each + i32::from((i as i32) < extra);
            let set = out.get_mut(*member).expect("listed");
            set.extend((next..next + take).map(|p| (id, p)));
            next += take;
        }
    }
    out
}

/// Uniform: spreads every subscribed partition as evenly as the subscriptions allow, keeping
/// partitions where they were in the previous target when that keeps the balance.
fn assign_uniform(
    members: &BTreeMap<&str, &[String]>,
    topics: &BTreeMap<String, (Uuid, i32)>,
    previous: &BTreeMap<String, BTreeSet<Tp>>,
) -> BTreeMap<String, BTreeSet<Tp>> {
    let mut out: BTreeMap<String, BTreeSet<Tp>> = members.keys().map(|m| (m.to_string(), BTreeSet::new())).collect();
    if members.is_empty() {
        return out;
    }
    let all: BTreeSet<String> = members.values().flat_map(|subs| subs.iter().cloned()).collect();
    let all: Vec<String> = all.into_iter().collect();
    let partitions: Vec<Tp> = partitions_of(topics, &all).collect();
    let topic_of: BTreeMap<Uuid, &String> = topics.iter().map(|(name, (id, _))| (*id, name)).collect();
    let eligible = |member: &str, tp: &Tp| members[member].contains(topic_of[&tp.0]);
    // No member keeps more than an even share of all partitions, rounded up.
    let cap = partitions.len().div_ceil(members.len());
    let mut placed: BTreeSet<Tp> = BTreeSet::new();
    for (member, before) in previous {
        let Some(set) = out.get_mut(member) else { continue };
        for tp in before {
            if set.len() < cap
                && topic_of.contains_key(&tp.0)
                && tp.1 < topics[topic_of[&tp.0]].1
                && eligible(member, tp)
            {
                set.insert(*tp);
                placed.insert(*tp);
            }
        }
    }
    // The rest go to the least-loaded member that subscribes; the most constrained first.
    let mut rest: Vec<Tp> = partitions.iter().filter(|tp| !placed.contains(tp)).copied().collect();
    rest.sort_by_key(|tp| members.keys().filter(|m| eligible(m, tp)).count());
    for tp in rest {
        let best = members.keys().filter(|m| eligible(m, &tp)).min_by_key(|m| out[**m].len());
        if let Some(best) = best {
            out.get_mut(*best).expect("listed").insert(tp);
        }
    }
    // Even out what stickiness left uneven: move from the fullest to an eligible emptier member.
    loop {
        let mut moved = false;
        let names: Vec<String> = out.keys().cloned().collect();
        for from in &names {
            for to in &names {
                if out[from].len() <= out[to].len() + 1 {
                    continue;
                }
                let candidate = out[from].iter().rev().find(|tp| eligible(to, tp)).copied();
                if let Some(tp) = candidate {
                    out.get_mut(from).expect("listed").remove(&tp);
                    out.get_mut(to).expect("listed").insert(tp);
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests;
