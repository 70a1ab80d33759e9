//! The classic consumer-group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), as a
//! state machine driven with `now_ms`.
//!
//! Group states, as Kafka names them:
//!
//! ```text
//!   Empty ──join──> PreparingRebalance ──all joined / deadline──> CompletingRebalance
//!     ^                 ^        ^                                     │ leader's SyncGroup
//!     └─ last member    │        └──── join, leave, session expiry ────┤
//!        leaves         └───────────── join, leave, session expiry ── Stable
//! ```
//!
//! JoinGroup and SyncGroup requests wait (are parked) until the rebalance reaches the point
//! where they can be answered; answers come out of [`Coordinator::drain`]. Heartbeats and
//! leaves are answered at once.
//!
//! Membership is stored in the offsets log ([`membership`](super::membership)): the caller
//! drains [`GroupStore`]s with [`Coordinator::drain_stores`] and writes each. The leader's
//! SyncGroup decides a generation's assignment, but the group stays CompletingRebalance, its
//! members' SyncGroups parked, until the caller reports the record committed
//! ([`Coordinator::stored`]) or lost ([`Coordinator::store_failed`], which starts a new
//! rebalance). So no member acts on an assignment that a coordinator taking the group over
//! ([`Coordinator::restore`]) would not know, and a generation number never names two
//! assignments.
//!
//! Static membership (`group.instance.id`): a static member that comes back with an empty
//! member id before its session times out takes over its old identity; if the group is
//! stable, it gets the current generation and its old assignment without a rebalance.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ResponseKind, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::membership::{StoredGroup, StoredMember};
use crate::broker::RequestId;
use crate::error::ErrorCode;
use crate::rng::Rng;

/// Group settings, Kafka's broker configs of the same names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`
    pub session_timeout_min_ms: i32,
    /// `group.max.session.timeout.ms`
    pub session_timeout_max_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long a new group waits for more members.
    pub initial_rebalance_delay_ms: i64,
    /// `group.max.size`
    pub members_max: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            session_timeout_min_ms: 6_000,
            session_timeout_max_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            members_max: 1_000,
        }
    }
}

/// A response the coordinator produced for a parked request.
#[derive(Debug, Clone)]
pub struct GroupReply {
    pub id: RequestId,
    pub api_key: ApiKey,
    pub api_version: i16,
    pub body: ResponseKind,
}

/// A group record to write to the offsets log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStore {
    pub group: String,
    pub stored: StoredGroup,
    /// Set when SyncGroups wait for the record: the generation to report to
    /// [`Coordinator::stored`] or [`Coordinator::store_failed`], and the leader's SyncGroup
    /// request that decided it.
    pub syncs_wait: Option<(i32, RequestId)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone)]
struct Parked {
    id: RequestId,
    api_version: i16,
}

#[derive(Debug, Clone)]
struct Member {
    member_id: String,
    instance_id: Option<String>,
    client_id: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    /// (protocol name, metadata) in the member's order of preference.
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat_ms: i64,
    awaiting_join: Option<Parked>,
    awaiting_sync: Option<Parked>,
}

#[derive(Debug, Clone)]
struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Join order, for choosing a leader.
    join_order: Vec<String>,
    /// group.instance.id -> member id
    static_members: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pending: BTreeMap<String, i64>,
    rebalance_deadline_ms: i64,
    /// A new group waits at least until here before completing its first join.
    initial_delay_until_ms: i64,
    /// CompletingRebalance with the leader's assignment decided: its record is being stored.
    storing: bool,
}

impl Group {
    fn new(generation: i32) -> Group {
        Group {
            state: GroupState::Empty,
            generation,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            join_order: Vec::new(),
            static_members: BTreeMap::new(),
            pending: BTreeMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay_until_ms: 0,
            storing: false,
        }
    }

    /// The group's record: its members in join order.
    fn to_stored(&self) -> StoredGroup {
        let members = self
            .join_order
            .iter()
            .filter_map(|id| self.members.get(id))
            .map(|m| StoredMember {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                metadata: self.metadata_for(m),
                assignment: m.assignment.clone(),
            })
            .collect();
        StoredGroup {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members,
        }
    }

    fn metadata_for(&self, member: &Member) -> Bytes {
        let protocol = self.protocol.as_deref().unwrap_or_default();
        member.protocols.iter().find(|(name, _)| name == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    /// The members in join order with their metadata for the chosen protocol, as the leader's
    /// JoinGroup response lists them.
    fn member_list(&self) -> Vec<JoinGroupResponseMember> {
        self.join_order
            .iter()
            .filter_map(|id| self.members.get(id))
            .map(|m| {
                JoinGroupResponseMember::default()
                    .with_member_id(s(m.member_id.clone()))
                    .with_group_instance_id(m.instance_id.clone().map(s))
                    .with_metadata(self.metadata_for(m))
            })
            .collect()
    }

    /// Protocols every member supports.
    fn common_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else { return Vec::new() };
        let mut common: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for member in members {
            common.retain(|name| member.protocols.iter().any(|(n, _)| n == name));
        }
        common
    }
}

fn s(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

pub struct Coordinator {
    config: GroupConfig,
    /// Where new groups' generations start. Each broker start gets its own range, so that a
    /// group whose record was never stored (or was lost with a failed disk) does not start
    /// again at a generation number it already used (found by the simulator's
    /// split-ownership checker, before membership was stored).
    generation_base: i32,
    groups: BTreeMap<String, Group>,
    rng: Rng,
    replies: Vec<GroupReply>,
    stores: Vec<GroupStore>,
}

impl Coordinator {
    pub fn new(config: GroupConfig, seed: u64, incarnation: u64) -> Coordinator {
        // 32,000 ranges of 65,536 generations stay clear of i32::MAX.
        let generation_base = i32::try_from((incarnation % 32_000) << 16).expect("below 2^31");
        Coordinator {
            config,
            generation_base,
            groups: BTreeMap::new(),
            rng: Rng::new(seed),
            replies: Vec::new(),
            stores: Vec::new(),
        }
    }

    /// Replies to parked requests that became answerable.
    pub fn drain(&mut self) -> Vec<GroupReply> {
        std::mem::take(&mut self.replies)
    }

    /// Group records to write, in order. Drain them before [`Coordinator::drain`]'s replies
    /// are sent: a record written later than a reply it caused would let a crash in between
    /// forget what the reply told.
    pub fn drain_stores(&mut self) -> Vec<GroupStore> {
        std::mem::take(&mut self.stores)
    }

    fn store(&mut self, group_id: &str, syncs_wait: Option<(i32, RequestId)>) {
        let stored = self.groups[group_id].to_stored();
        self.stores.push(GroupStore { group: group_id.to_string(), stored, syncs_wait });
    }

    /// The record of `group_id`'s generation `generation`, which its SyncGroups waited for,
    /// is committed: the group becomes Stable and they are answered with their assignments.
    /// Nothing happens if the group has moved on meanwhile.
    pub fn stored(&mut self, group_id: &str, generation: i32) {
        let Some(group) = self.groups.get_mut(group_id) else { return };
        if !group.storing || group.generation != generation {
            return;
        }
        assert_eq!(group.state, GroupState::CompletingRebalance, "only a completing rebalance stores its assignment");
        group.storing = false;
        group.state = GroupState::Stable;
        let waiting: Vec<(Parked, Bytes)> = group
            .members
            .values_mut()
            .filter_map(|m| m.awaiting_sync.take().map(|p| (p, m.assignment.clone())))
            .collect();
        for (parked, assignment) in waiting {
            let body = self.sync_body(group_id, parked.api_version, assignment);
            self.reply_sync(&parked, body);
        }
    }

    /// The record of `group_id`'s generation `generation` was not stored (the write failed, or
    /// the offsets partition moved): its SyncGroups are answered `code` and the group
    /// rebalances, so the members join a generation whose record can be stored.
    pub fn store_failed(&mut self, now_ms: i64, group_id: &str, generation: i32, code: ErrorCode) {
        let Some(group) = self.groups.get_mut(group_id) else { return };
        if !group.storing || group.generation != generation {
            return;
        }
        group.storing = false;
        let waiting: Vec<Parked> = group.members.values_mut().filter_map(|m| m.awaiting_sync.take()).collect();
        for parked in waiting {
            self.reply_sync(&parked, SyncGroupResponse::default().with_error_code(code.code()));
        }
        self.prepare_rebalance(group_id, now_ms);
    }

    /// Takes over a group from its stored record (at start-up, or when this node becomes the
    /// coordinator of its offsets partition): Stable with its members, each with a full
    /// session from `now_ms` to send its next heartbeat, or Empty. Replaces what was known.
    pub fn restore(&mut self, now_ms: i64, group_id: &str, stored: StoredGroup) {
        let mut group = Group::new(stored.generation);
        let protocol = stored.protocol.clone().unwrap_or_default();
        for m in stored.members {
            if let Some(instance) = &m.instance_id {
                group.static_members.insert(instance.clone(), m.member_id.clone());
            }
            group.join_order.push(m.member_id.clone());
            let member = Member {
                member_id: m.member_id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: vec![(protocol.clone(), m.metadata)],
                assignment: m.assignment,
                last_heartbeat_ms: now_ms,
                awaiting_join: None,
                awaiting_sync: None,
            };
            group.members.insert(member.member_id.clone(), member);
        }
        group.protocol_type = stored.protocol_type;
        group.protocol = stored.protocol;
        group.leader = stored.leader;
        group.state = if group.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        if let Some(old) = self.groups.insert(group_id.to_string(), group) {
            // Start-up and loading restore into a coordinator that does not know the group.
            debug_assert!(old.members.values().all(|m| m.awaiting_join.is_none() && m.awaiting_sync.is_none()));
        }
    }

    /// The records of the groups whose state is what their last record says (Stable and
    /// Empty groups), for rewriting the offsets log.
    pub fn stored_groups(&self) -> Vec<(String, StoredGroup)> {
        self.groups
            .iter()
            .filter(|(_, g)| matches!(g.state, GroupState::Stable | GroupState::Empty))
            .map(|(id, g)| (id.clone(), g.to_stored()))
            .collect()
    }

    fn reply_join(&mut self, parked: &Parked, body: JoinGroupResponse) {
        self.replies.push(GroupReply {
            id: parked.id,
            api_key: ApiKey::JoinGroup,
            api_version: parked.api_version,
            body: ResponseKind::JoinGroup(body),
        });
    }

    fn reply_sync(&mut self, parked: &Parked, body: SyncGroupResponse) {
        self.replies.push(GroupReply {
            id: parked.id,
            api_key: ApiKey::SyncGroup,
            api_version: parked.api_version,
            body: ResponseKind::SyncGroup(body),
        });
    }

    fn join_error(&mut self, parked: &Parked, code: ErrorCode, member_id: &str) {
        let body = JoinGroupResponse::default()
            .with_error_code(code.code())
            .with_generation_id(-1)
            .with_member_id(s(member_id));
        self.reply_join(parked, body);
    }

    /// JoinGroup. The answer comes from [`Coordinator::drain`], now or when the rebalance
    /// completes.
    pub fn join(&mut self, now_ms: i64, id: RequestId, api_version: i16, client_id: &str, request: JoinGroupRequest) {
        let parked = Parked { id, api_version };
        let group_id = request.group_id.0.to_string();
        let member_id = request.member_id.to_string();
        if group_id.is_empty() {
            return self.join_error(&parked, ErrorCode::InvalidGroupId, &member_id);
        }
        if request.session_timeout_ms < self.config.session_timeout_min_ms
            || request.session_timeout_ms > self.config.session_timeout_max_ms
        {
            return self.join_error(&parked, ErrorCode::InvalidSessionTimeout, &member_id);
        }
        let protocols: Vec<(String, Bytes)> =
            request.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect();
        let protocol_type = request.protocol_type.to_string();
        if protocols.is_empty() || protocol_type.is_empty() {
            return self.join_error(&parked, ErrorCode::InconsistentGroupProtocol, &member_id);
        }
        let members_max = self.config.members_max;
        let generation_base = self.generation_base;
        let group = self.groups.entry(group_id.clone()).or_insert_with(|| Group::new(generation_base));
        if !group.members.is_empty() {
            let same_type = group.protocol_type.as_deref() == Some(protocol_type.as_str());
            let shares_protocol = protocols.iter().any(|(name, _)| {
                group
                    .members
                    .values()
                    .filter(|m| m.member_id != member_id)
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            });
            if !same_type || !shares_protocol {
                return self.join_error(&parked, ErrorCode::InconsistentGroupProtocol, &member_id);
            }
        }
        let instance_id = request.group_instance_id.as_ref().map(|i| i.to_string());
        let rebalance_timeout_ms =
            if api_version == 0 { request.session_timeout_ms } else { request.rebalance_timeout_ms };
        let fresh = Member {
            member_id: String::new(),
            instance_id: instance_id.clone(),
            client_id: client_id.to_string(),
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms,
            protocols: protocols.clone(),
            assignment: Bytes::new(),
            last_heartbeat_ms: now_ms,
            awaiting_join: Some(parked.clone()),
            awaiting_sync: None,
        };

        let member_id = if member_id.is_empty() {
            let new_id = format!("{client_id}-{}", self.rng.uuid());
            let group = self.groups.get_mut(&group_id).expect("inserted above");
            if let Some(instance) = &instance_id {
                if let Some(old_id) = group.static_members.get(instance).cloned() {
                    // A static member back under a new member id: it takes over the old one.
                    let mut member = group.members.remove(&old_id).unwrap_or_else(|| fresh.clone());
                    let unchanged = member.protocols == protocols;
                    if let Some(old_parked) = member.awaiting_join.take() {
                        let body = JoinGroupResponse::default()
                            .with_error_code(ErrorCode::FencedInstanceId.code())
                            .with_member_id(s(old_id.clone()));
                        self.replies.push(GroupReply {
                            id: old_parked.id,
                            api_key: ApiKey::JoinGroup,
                            api_version: old_parked.api_version,
                            body: ResponseKind::JoinGroup(body),
                        });
                    }
                    member.member_id = new_id.clone();
                    member.client_id = client_id.to_string();
                    member.session_timeout_ms = request.session_timeout_ms;
                    member.rebalance_timeout_ms = rebalance_timeout_ms;
                    member.last_heartbeat_ms = now_ms;
                    let group = self.groups.get_mut(&group_id).expect("exists");
                    group.static_members.insert(instance.clone(), new_id.clone());
                    for entry in &mut group.join_order {
                        if *entry == old_id {
                            *entry = new_id.clone();
                        }
                    }
                    let was_leader = group.leader.as_deref() == Some(old_id.as_str());
                    if was_leader {
                        group.leader = Some(new_id.clone());
                    }
                    if group.state == GroupState::Stable && unchanged {
                        // No rebalance: answer with the current generation at once. A returning
                        // leader gets the member list (its SyncGroup in a stable group returns its
                        // current assignment whatever it computes); from v9 it is told not to
                        // assign at all (KIP-814).
                        let mut body = JoinGroupResponse::default()
                            .with_generation_id(group.generation)
                            .with_protocol_type(group.protocol_type.clone().map(s))
                            .with_protocol_name(group.protocol.clone().map(s))
                            .with_leader(s(group.leader.clone().unwrap_or_default()))
                            .with_member_id(s(new_id.clone()));
                        member.awaiting_join = None;
                        group.members.insert(new_id.clone(), member);
                        if was_leader {
                            body.members = group.member_list();
                            body.skip_assignment = api_version >= 9;
                        }
                        if api_version < 7 {
                            body.protocol_type = None;
                        }
                        if api_version < 5 {
                            body.members.iter_mut().for_each(|m| m.group_instance_id = None);
                        }
                        // The new member id replaces the old one in the group's record; the
                        // join is answered at once (a coordinator that took the group over
                        // without the record fences the new id, and the member rejoins).
                        self.store(&group_id, None);
                        self.reply_join(&parked, body);
                        return;
                    }
                    member.protocols = protocols;
                    member.awaiting_join = Some(parked.clone());
                    group.members.insert(new_id.clone(), member);
                    self.rebalance_after_join(&group_id, now_ms);
                    return;
                }
            } else if api_version >= 4 {
                // KIP-394: hand out an id and have the client join again with it.
                let expiry = now_ms + i64::from(request.session_timeout_ms);
                group.pending.insert(new_id.clone(), expiry);
                return self.join_error(&parked, ErrorCode::MemberIdRequired, &new_id);
            }
            new_id
        } else {
            let group = self.groups.get_mut(&group_id).expect("inserted above");
            if group.pending.remove(&member_id).is_none() && !group.members.contains_key(&member_id) {
                return self.join_error(&parked, ErrorCode::UnknownMemberId, &member_id);
            }
            if let Some(instance) = &instance_id {
                if group.static_members.get(instance).is_some_and(|known| *known != member_id) {
                    return self.join_error(&parked, ErrorCode::FencedInstanceId, &member_id);
                }
            }
            member_id
        };

        let group = self.groups.get_mut(&group_id).expect("inserted above");
        if !group.members.contains_key(&member_id) && group.members.len() >= members_max {
            return self.join_error(&parked, ErrorCode::GroupMaxSizeReached, &member_id);
        }
        match group.members.get_mut(&member_id) {
            Some(existing) => {
                if let Some(old) = existing.awaiting_join.replace(parked) {
                    // A retried join replaces the earlier one, which gets no useful answer.
                    let body = JoinGroupResponse::default()
                        .with_error_code(ErrorCode::RebalanceInProgress.code())
                        .with_member_id(s(member_id.clone()));
                    self.replies.push(GroupReply {
                        id: old.id,
                        api_key: ApiKey::JoinGroup,
                        api_version: old.api_version,
                        body: ResponseKind::JoinGroup(body),
                    });
                }
                let group = self.groups.get_mut(&group_id).expect("exists");
                let existing = group.members.get_mut(&member_id).expect("exists");
                existing.protocols = protocols;
                existing.session_timeout_ms = request.session_timeout_ms;
                existing.rebalance_timeout_ms = rebalance_timeout_ms;
                existing.last_heartbeat_ms = now_ms;
            }
            None => {
                let mut member = fresh;
                member.member_id = member_id.clone();
                group.members.insert(member_id.clone(), member);
                group.join_order.push(member_id.clone());
                if let Some(instance) = instance_id {
                    group.static_members.insert(instance, member_id.clone());
                }
                if group.protocol_type.is_none() {
                    group.protocol_type = Some(protocol_type);
                }
            }
        }
        self.rebalance_after_join(&group_id, now_ms);
    }

    fn rebalance_after_join(&mut self, group_id: &str, now_ms: i64) {
        let state = self.groups[group_id].state;
        match state {
            GroupState::PreparingRebalance => {}
            _ => self.prepare_rebalance(group_id, now_ms),
        }
        self.maybe_complete_join(group_id, now_ms);
    }

    fn prepare_rebalance(&mut self, group_id: &str, now_ms: i64) {
        let initial_delay = self.config.initial_rebalance_delay_ms;
        let group = self.groups.get_mut(group_id).expect("group exists");
        let mut parked_syncs = Vec::new();
        if group.state == GroupState::CompletingRebalance {
            for member in group.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(parked) = member.awaiting_sync.take() {
                    parked_syncs.push(parked);
                }
            }
        }
        let was_empty = group.state == GroupState::Empty;
        group.state = GroupState::PreparingRebalance;
        group.storing = false;
        let rebalance_timeout = group.members.values().map(|m| i64::from(m.rebalance_timeout_ms)).max().unwrap_or(0);
        group.rebalance_deadline_ms = now_ms + rebalance_timeout;
        group.initial_delay_until_ms = if was_empty { now_ms + initial_delay.min(rebalance_timeout) } else { now_ms };
        for parked in parked_syncs {
            self.reply_sync(
                &parked,
                SyncGroupResponse::default().with_error_code(ErrorCode::RebalanceInProgress.code()),
            );
        }
    }

    fn maybe_complete_join(&mut self, group_id: &str, now_ms: i64) {
        let group = &self.groups[group_id];
        if group.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = group.members.values().all(|m| m.awaiting_join.is_some()) && group.pending.is_empty();
        if (all_joined && now_ms >= group.initial_delay_until_ms) || now_ms >= group.rebalance_deadline_ms {
            self.complete_join(group_id, now_ms);
        }
    }

    fn complete_join(&mut self, group_id: &str, now_ms: i64) {
        let group = self.groups.get_mut(group_id).expect("group exists");
        // Members that did not rejoin in time are out.
        let gone: Vec<String> =
            group.members.values().filter(|m| m.awaiting_join.is_none()).map(|m| m.member_id.clone()).collect();
        for id in &gone {
            remove_member(group, id);
        }
        group.pending.clear();
        // The planted bug still lets a new group leave its base for a first generation; a
        // group restored from another start's range never moves again.
        if !(crate::planted::active(crate::planted::PlantedBug::SameGeneration)
            && group.generation != self.generation_base)
        {
            group.generation += 1;
        }
        if group.members.is_empty() {
            group.state = GroupState::Empty;
            group.protocol = None;
            group.protocol_type = None;
            group.leader = None;
            self.store(group_id, None);
            return;
        }
        let candidates = group.common_protocols();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in group.members.values() {
            if let Some((name, _)) = member.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let chosen =
            votes.iter().max_by_key(|(name, count)| (**count, std::cmp::Reverse(**name))).map(|(n, _)| n.to_string());
        group.protocol = chosen;
        if group.leader.as_ref().is_none_or(|l| !group.members.contains_key(l)) {
            group.leader = group.join_order.iter().find(|id| group.members.contains_key(*id)).cloned();
        }
        group.state = GroupState::CompletingRebalance;
        let leader = group.leader.clone().unwrap_or_default();
        let member_list = group.member_list();
        let mut replies = Vec::new();
        for member in group.members.values_mut() {
            let parked = member.awaiting_join.take().expect("every remaining member rejoined");
            member.last_heartbeat_ms = now_ms;
            let mut body = JoinGroupResponse::default()
                .with_generation_id(group.generation)
                .with_protocol_type(group.protocol_type.clone().map(s))
                .with_protocol_name(group.protocol.clone().map(s))
                .with_leader(s(leader.clone()))
                .with_member_id(s(member.member_id.clone()));
            if member.member_id == leader {
                body.members = member_list.clone();
            }
            if parked.api_version < 7 {
                body.protocol_type = None;
            }
            if parked.api_version < 5 {
                body.members.iter_mut().for_each(|m| m.group_instance_id = None);
            }
            replies.push((parked, body));
        }
        for (parked, body) in replies {
            self.reply_join(&parked, body);
        }
    }

    /// SyncGroup. Answered from [`Coordinator::drain`].
    pub fn sync(&mut self, now_ms: i64, id: RequestId, api_version: i16, request: SyncGroupRequest) {
        let parked = Parked { id, api_version };
        let error = |code: ErrorCode| SyncGroupResponse::default().with_error_code(code.code());
        let group_id = request.group_id.0.to_string();
        let member_id = request.member_id.to_string();
        let Some(group) = self.groups.get_mut(&group_id) else {
            return self.reply_sync(&parked, error(ErrorCode::UnknownMemberId));
        };
        if !group.members.contains_key(&member_id) {
            return self.reply_sync(&parked, error(ErrorCode::UnknownMemberId));
        }
        if let Some(instance) = &request.group_instance_id {
            if group.static_members.get(&instance.to_string()).is_some_and(|known| *known != member_id) {
                return self.reply_sync(&parked, error(ErrorCode::FencedInstanceId));
            }
        }
        if request.generation_id != group.generation {
            return self.reply_sync(&parked, error(ErrorCode::IllegalGeneration));
        }
        if request.protocol_type.as_ref().is_some_and(|t| Some(t.to_string()) != group.protocol_type)
            || request.protocol_name.as_ref().is_some_and(|n| Some(n.to_string()) != group.protocol)
        {
            return self.reply_sync(&parked, error(ErrorCode::InconsistentGroupProtocol));
        }
        group.members.get_mut(&member_id).expect("checked above").last_heartbeat_ms = now_ms;
        match group.state {
            GroupState::Empty | GroupState::PreparingRebalance => {
                self.reply_sync(&parked, error(ErrorCode::RebalanceInProgress))
            }
            GroupState::Stable => {
                let assignment = group.members[&member_id].assignment.clone();
                let body = self.sync_body(&group_id, api_version, assignment);
                self.reply_sync(&parked, body);
            }
            GroupState::CompletingRebalance => {
                let replaced =
                    group.members.get_mut(&member_id).expect("checked above").awaiting_sync.replace(parked.clone());
                let decides = group.leader.as_deref() == Some(member_id.as_str()) && !group.storing;
                if decides {
                    let assignments: BTreeMap<String, Bytes> =
                        request.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
                    for member in group.members.values_mut() {
                        member.assignment = assignments.get(&member.member_id).cloned().unwrap_or_default();
                    }
                    group.storing = true;
                    let generation = group.generation;
                    self.store(&group_id, Some((generation, id)));
                }
                if let Some(old) = replaced {
                    // A retried SyncGroup replaces the earlier one, which gets no useful answer.
                    self.reply_sync(&old, error(ErrorCode::RebalanceInProgress));
                }
            }
        }
    }

    fn sync_body(&self, group_id: &str, api_version: i16, assignment: Bytes) -> SyncGroupResponse {
        let group = &self.groups[group_id];
        let mut body = SyncGroupResponse::default().with_assignment(assignment);
        if api_version >= 5 {
            body.protocol_type = group.protocol_type.clone().map(s);
            body.protocol_name = group.protocol.clone().map(s);
        }
        body
    }

    pub fn heartbeat(&mut self, now_ms: i64, request: HeartbeatRequest) -> HeartbeatResponse {
        let code = self.heartbeat_code(now_ms, &request);
        HeartbeatResponse::default().with_error_code(code.code())
    }

    fn heartbeat_code(&mut self, now_ms: i64, request: &HeartbeatRequest) -> ErrorCode {
        let Some(group) = self.groups.get_mut(&request.group_id.0.to_string()) else {
            return ErrorCode::UnknownMemberId;
        };
        let member_id = request.member_id.to_string();
        if let Some(instance) = &request.group_instance_id {
            if group.static_members.get(&instance.to_string()).is_some_and(|known| *known != member_id) {
                return ErrorCode::FencedInstanceId;
            }
        }
        let Some(member) = group.members.get_mut(&member_id) else {
            return ErrorCode::UnknownMemberId;
        };
        member.last_heartbeat_ms = now_ms;
        match group.state {
            GroupState::Empty => ErrorCode::UnknownMemberId,
            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            _ if request.generation_id != group.generation => ErrorCode::IllegalGeneration,
            _ => ErrorCode::None,
        }
    }

    pub fn leave(&mut self, now_ms: i64, api_version: i16, request: LeaveGroupRequest) -> LeaveGroupResponse {
        let group_id = request.group_id.0.to_string();
        let leaving: Vec<(String, Option<String>)> = if api_version >= 3 {
            request
                .members
                .iter()
                .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|i| i.to_string())))
                .collect()
        } else {
            vec![(request.member_id.to_string(), None)]
        };
        let mut response = LeaveGroupResponse::default();
        let Some(group) = self.groups.get_mut(&group_id) else {
            response.error_code = ErrorCode::UnknownMemberId.code();
            if api_version >= 3 {
                response.error_code = 0;
                response.members = leaving
                    .iter()
                    .map(|(m, i)| {
                        MemberResponse::default()
                            .with_member_id(s(m.clone()))
                            .with_group_instance_id(i.clone().map(s))
                            .with_error_code(ErrorCode::UnknownMemberId.code())
                    })
                    .collect();
            }
            return response;
        };
        let mut removed_any = false;
        let mut orphaned = Vec::new();
        for (member_id, instance_id) in &leaving {
            let resolved = match instance_id {
                Some(instance) => match group.static_members.get(instance) {
                    Some(known) if member_id.is_empty() || known == member_id => Ok(known.clone()),
                    Some(_) => Err(ErrorCode::FencedInstanceId),
                    None => Err(ErrorCode::UnknownMemberId),
                },
                None if group.members.contains_key(member_id) => Ok(member_id.clone()),
                None => Err(ErrorCode::UnknownMemberId),
            };
            let code = match resolved {
                Ok(id) => {
                    if let Some(member) = remove_member(group, &id) {
                        orphaned.extend(member.awaiting_join);
                        orphaned.extend(member.awaiting_sync);
                    }
                    removed_any = true;
                    ErrorCode::None
                }
                Err(code) => code,
            };
            response.members.push(
                MemberResponse::default()
                    .with_member_id(s(member_id.clone()))
                    .with_group_instance_id(instance_id.clone().map(s))
                    .with_error_code(code.code()),
            );
        }
        if api_version < 3 {
            response.error_code = response.members.first().map_or(0, |m| m.error_code);
            response.members.clear();
        }
        for parked in orphaned {
            let body = JoinGroupResponse::default().with_error_code(ErrorCode::UnknownMemberId.code());
            self.replies.push(GroupReply {
                id: parked.id,
                api_key: ApiKey::JoinGroup,
                api_version: parked.api_version,
                body: ResponseKind::JoinGroup(body),
            });
        }
        if removed_any {
            self.after_departure(&group_id, now_ms);
        }
        response
    }

    fn after_departure(&mut self, group_id: &str, now_ms: i64) {
        let group = self.groups.get_mut(group_id).expect("group exists");
        match group.state {
            GroupState::Empty => {}
            GroupState::PreparingRebalance => self.maybe_complete_join(group_id, now_ms),
            GroupState::Stable | GroupState::CompletingRebalance => {
                if group.members.is_empty() {
                    group.state = GroupState::Empty;
                    group.generation += 1;
                    group.leader = None;
                    group.protocol = None;
                    group.protocol_type = None;
                    group.storing = false;
                    self.store(group_id, None);
                } else {
                    self.prepare_rebalance(group_id, now_ms);
                    self.maybe_complete_join(group_id, now_ms);
                }
            }
        }
    }

    /// Time passed: expire members whose session timed out and complete rebalances whose
    /// deadline passed.
    pub fn tick(&mut self, now_ms: i64) {
        let group_ids: Vec<String> = self.groups.keys().cloned().collect();
        for group_id in group_ids {
            let group = self.groups.get_mut(&group_id).expect("listed");
            group.pending.retain(|_, expiry| *expiry > now_ms);
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| m.awaiting_join.is_none() && now_ms > m.last_heartbeat_ms + i64::from(m.session_timeout_ms))
                .map(|m| m.member_id.clone())
                .collect();
            let mut orphaned = Vec::new();
            for id in &expired {
                if let Some(member) = remove_member(group, id) {
                    orphaned.extend(member.awaiting_sync);
                }
            }
            for parked in orphaned {
                self.reply_sync(
                    &parked,
                    SyncGroupResponse::default().with_error_code(ErrorCode::UnknownMemberId.code()),
                );
            }
            if !expired.is_empty() {
                self.after_departure(&group_id, now_ms);
            }
            self.maybe_complete_join(&group_id, now_ms);
        }
    }

    /// When [`Coordinator::tick`] must next run.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let mut next: Option<i64> = None;
        let mut consider = |t: i64| next = Some(next.map_or(t, |n| n.min(t)));
        for group in self.groups.values() {
            if group.state == GroupState::PreparingRebalance {
                consider(group.rebalance_deadline_ms);
                consider(group.initial_delay_until_ms);
            }
            for member in group.members.values().filter(|m| m.awaiting_join.is_none()) {
                consider(member.last_heartbeat_ms + i64::from(member.session_timeout_ms) + 1);
            }
            for expiry in group.pending.values() {
                consider(*expiry);
            }
        }
        next
    }

    /// Answers every parked request (shutdown): clients will find the coordinator again.
    pub fn abandon_parked(&mut self) {
        let mut parked = Vec::new();
        for group in self.groups.values_mut() {
            for member in group.members.values_mut() {
                parked.extend(member.awaiting_join.take().map(|p| (true, p)));
                parked.extend(member.awaiting_sync.take().map(|p| (false, p)));
            }
        }
        for (join, p) in parked {
            if join {
                self.join_error(&p, ErrorCode::NotCoordinator, "");
            } else {
                self.reply_sync(&p, SyncGroupResponse::default().with_error_code(ErrorCode::NotCoordinator.code()));
            }
        }
    }

    /// Validates an OffsetCommit's group membership. `generation < 0` is a commit from a
    /// client that manages its own partitions (`assign`), allowed while the group has no
    /// members.
    pub fn validate_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ErrorCode> {
        self.check_commit(group_id, generation, member_id, instance_id, false)
    }

    /// [`Coordinator::validate_commit`] for TxnOffsetCommit.
    pub fn validate_txn_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ErrorCode> {
        self.check_commit(group_id, generation, member_id, instance_id, true)
    }

    fn check_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        transactional: bool,
    ) -> Result<(), ErrorCode> {
        let Some(group) = self.groups.get(group_id) else {
            return if generation < 0 { Ok(()) } else { Err(ErrorCode::IllegalGeneration) };
        };
        if generation < 0 {
            return if group.members.is_empty() { Ok(()) } else { Err(ErrorCode::IllegalGeneration) };
        }
        if let Some(instance) = instance_id {
            if group.static_members.get(instance).is_some_and(|known| known != member_id) {
                return Err(ErrorCode::FencedInstanceId);
            }
        }
        if !group.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if generation != group.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        if transactional {
            // Kafka takes a transactional commit between the joins and the sync too: its
            // clients do not retry REBALANCE_IN_PROGRESS there.
            return Ok(());
        }
        // While the group prepares a rebalance its generation is still the members' one, and
        // (as in Kafka) their commits are taken: a member finishing its records before it
        // rejoins must not fail. Only between the joins and the sync is a commit refused.
        if group.state == GroupState::CompletingRebalance {
            return Err(ErrorCode::RebalanceInProgress);
        }
        Ok(())
    }

    /// (group, protocol type, state) of every group with members or a known state.
    pub fn list(&self) -> Vec<ListedGroup> {
        self.groups
            .iter()
            .map(|(id, g)| {
                ListedGroup::default()
                    .with_group_id(GroupId(s(id.clone())))
                    .with_protocol_type(s(g.protocol_type.clone().unwrap_or_default()))
                    .with_group_state(s(g.state.name()))
                    .with_group_type(s("classic"))
            })
            .collect()
    }

    pub fn state_of(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(|g| g.state)
    }

    pub fn describe(&self, group_id: &str) -> DescribedGroup {
        let mut described = DescribedGroup::default().with_group_id(GroupId(s(group_id)));
        match self.groups.get(group_id) {
            None => {
                described.group_state = s("Dead");
            }
            Some(group) => {
                described.group_state = s(group.state.name());
                described.protocol_type = s(group.protocol_type.clone().unwrap_or_default());
                described.protocol_data = s(group.protocol.clone().unwrap_or_default());
                described.members = group
                    .join_order
                    .iter()
                    .filter_map(|id| group.members.get(id))
                    .map(|m| {
                        DescribedGroupMember::default()
                            .with_member_id(s(m.member_id.clone()))
                            .with_group_instance_id(m.instance_id.clone().map(s))
                            .with_client_id(s(m.client_id.clone()))
                            .with_client_host(s("/127.0.0.1"))
                            .with_member_metadata(group.metadata_for(m))
                            .with_member_assignment(m.assignment.clone())
                    })
                    .collect();
            }
        }
        described
    }

    /// Whether `group_id` has members subscribed (consumer protocol) to `topic`.
    pub fn is_active(&self, group_id: &str) -> bool {
        self.groups.get(group_id).is_some_and(|g| !g.members.is_empty())
    }

    /// Forgets the groups `unloaded` says yes to, members and all: another broker coordinates
    /// them now. Their parked joins and syncs are answered NOT_COORDINATOR.
    pub fn unload(&mut self, unloaded: impl Fn(&str) -> bool) {
        let ids: Vec<String> = self.groups.keys().filter(|g| unloaded(g)).cloned().collect();
        for id in ids {
            let Some(group) = self.groups.remove(&id) else { continue };
            for member in group.members.into_values() {
                if let Some(parked) = member.awaiting_join {
                    self.join_error(&parked, ErrorCode::NotCoordinator, "");
                }
                if let Some(parked) = member.awaiting_sync {
                    self.reply_sync(
                        &parked,
                        SyncGroupResponse::default().with_error_code(ErrorCode::NotCoordinator.code()),
                    );
                }
            }
        }
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
}

fn remove_member(group: &mut Group, member_id: &str) -> Option<Member> {
    let member = group.members.remove(member_id)?;
    group.join_order.retain(|id| id != member_id);
    if let Some(instance) = &member.instance_id {
        if group.static_members.get(instance).is_some_and(|id| id == member_id) {
            group.static_members.remove(instance);
        }
    }
    if group.leader.as_deref() == Some(member_id) {
        group.leader = None;
    }
    Some(member)
}

#[cfg(test)]
mod tests;
