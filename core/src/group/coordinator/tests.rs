//! Coordinator tests: drive joins, syncs, heartbeats and time; assert on the replies.

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;

use super::*;

const V: i16 = 5;

struct T {
    c: Coordinator,
    now: i64,
    next_id: u64,
}

impl T {
    fn new() -> T {
        T::with_delay(0)
    }

    fn with_delay(initial_rebalance_delay_ms: i64) -> T {
        T {
            c: Coordinator::new(GroupConfig { initial_rebalance_delay_ms, ..GroupConfig::default() }, 1, 0),
            now: 0,
            next_id: 1,
        }
    }

    fn id(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId(self.next_id)
    }

    fn join(&mut self, member: &str, instance: Option<&str>) -> RequestId {
        let id = self.id();
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(s(member))
            .with_group_instance_id(instance.map(s))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"meta"))]);
        self.c.join(self.now, id, V, "client", request);
        id
    }

    fn sync(&mut self, member: &str, generation: i32, assignments: &[(&str, &[u8])]) -> RequestId {
        let id = self.id();
        let request = SyncGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(generation)
            .with_member_id(s(member))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(s(*m))
                            .with_assignment(Bytes::copy_from_slice(a))
                    })
                    .collect(),
            );
        self.c.sync(self.now, id, V, request);
        self.commit_stores();
        id
    }

    /// Every group record drained is committed at once, as by a broker whose offsets log
    /// syncs instantly.
    fn commit_stores(&mut self) {
        for store in self.c.drain_stores() {
            if let Some((generation, _)) = store.syncs_wait {
                self.c.stored(&store.group, generation);
            }
        }
    }

    fn heartbeat(&mut self, member: &str, generation: i32) -> i16 {
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s(member))
            .with_generation_id(generation);
        self.c.heartbeat(self.now, request).error_code
    }

    fn joins(&mut self) -> BTreeMap<RequestId, JoinGroupResponse> {
        self.c
            .drain()
            .into_iter()
            .filter_map(|r| match r.body {
                ResponseKind::JoinGroup(b) => Some((r.id, b)),
                _ => None,
            })
            .collect()
    }

    fn syncs(replies: Vec<GroupReply>) -> BTreeMap<RequestId, SyncGroupResponse> {
        replies
            .into_iter()
            .filter_map(|r| match r.body {
                ResponseKind::SyncGroup(b) => Some((r.id, b)),
                _ => None,
            })
            .collect()
    }

    /// Joins with an empty id, gets MEMBER_ID_REQUIRED, returns the id to use.
    fn member_id(&mut self) -> String {
        let id = self.join("", None);
        let reply = self.joins().remove(&id).expect("answered at once");
        assert_eq!(reply.error_code, ErrorCode::MemberIdRequired.code());
        reply.member_id.to_string()
    }
}

#[test]
fn two_members_join_sync_and_get_their_assignments() {
    let mut t = T::new();
    let a = t.member_id();
    let b = t.member_id();
    let ja = t.join(&a, None);
    assert!(t.joins().is_empty(), "waits for the second member it handed an id to");
    let jb = t.join(&b, None);
    let joins = t.joins();
    let (ra, rb) = (&joins[&ja], &joins[&jb]);
    assert_eq!((ra.error_code, rb.error_code), (0, 0));
    assert_eq!(ra.generation_id, 1);
    assert_eq!(ra.leader.to_string(), a, "the first to join leads");
    assert_eq!(ra.members.len(), 2, "the leader sees every member");
    assert!(rb.members.is_empty());
    let sb = t.sync(&b, 1, &[]);
    assert!(t.c.drain().is_empty(), "followers wait for the leader's assignment");
    let sa = t.sync(&a, 1, &[(&a, b"A"), (&b, b"B")]);
    let syncs = T::syncs(t.c.drain());
    assert_eq!(syncs[&sa].assignment.as_ref(), b"A");
    assert_eq!(syncs[&sb].assignment.as_ref(), b"B");
    assert_eq!(t.c.state_of("g"), Some(GroupState::Stable));
    assert_eq!(t.heartbeat(&a, 1), 0);
    assert_eq!(t.heartbeat(&a, 0), ErrorCode::IllegalGeneration.code());
    assert_eq!(t.heartbeat("stranger", 1), ErrorCode::UnknownMemberId.code());
}

#[test]
fn a_dead_member_is_expired_and_the_group_rebalances() {
    let mut t = T::new();
    let a = t.member_id();
    let b = t.member_id();
    t.join(&a, None);
    t.join(&b, None);
    t.joins();
    t.sync(&b, 1, &[]);
    t.sync(&a, 1, &[(&a, b"A"), (&b, b"B")]);
    t.c.drain();
    // Only `a` heartbeats; `b` dies.
    for _ in 0..5 {
        t.now += 3_000;
        t.c.tick(t.now);
        assert_eq!(t.heartbeat(&a, 1), if t.now > 10_000 { ErrorCode::RebalanceInProgress.code() } else { 0 });
    }
    assert_eq!(t.c.state_of("g"), Some(GroupState::PreparingRebalance));
    let ja = t.join(&a, None);
    let joins = t.joins();
    assert_eq!(joins[&ja].generation_id, 2);
    assert_eq!(joins[&ja].members.len(), 1, "only the survivor remains");
    assert!(t.c.next_deadline_ms().is_some());
}

#[test]
fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_deadline() {
    let mut t = T::new();
    let a = t.member_id();
    let b = t.member_id();
    t.join(&a, None);
    t.join(&b, None);
    t.joins();
    t.sync(&b, 1, &[]);
    t.sync(&a, 1, &[]);
    t.c.drain();
    let c = t.member_id();
    let jc = t.join(&c, None);
    assert!(t.joins().is_empty());
    t.now += 30_001;
    t.c.tick(t.now);
    let joins = t.joins();
    assert_eq!(joins[&jc].generation_id, 2);
    assert_eq!(joins[&jc].leader.to_string(), c, "old members missed the deadline");
}

#[test]
fn leave_triggers_a_rebalance_and_the_last_leave_empties_the_group() {
    let mut t = T::new();
    let a = t.member_id();
    t.join(&a, None);
    t.joins();
    t.sync(&a, 1, &[(&a, b"A")]);
    t.c.drain();
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_members(vec![MemberIdentity::default().with_member_id(s(a.clone()))]);
    let response = t.c.leave(t.now, 3, request);
    assert_eq!(response.members[0].error_code, 0);
    assert_eq!(t.c.state_of("g"), Some(GroupState::Empty));
    assert!(t.c.validate_commit("g", -1, "", None).is_ok(), "an empty group accepts simple commits");
}

#[test]
fn restarted_static_member_takes_over_without_a_rebalance() {
    let mut t = T::with_delay(3_000);
    let j1 = t.join("", Some("instance-1"));
    let j2 = t.join("", Some("instance-2"));
    assert!(t.joins().is_empty(), "a new group waits for more members");
    t.now = 3_000;
    t.c.tick(t.now);
    let joins = t.joins();
    let (m1, m2) = (joins[&j1].member_id.to_string(), joins[&j2].member_id.to_string());
    t.sync(&m2, 1, &[]);
    t.sync(&m1, 1, &[(&m1, b"one"), (&m2, b"two")]);
    t.c.drain();
    assert_eq!(t.c.state_of("g"), Some(GroupState::Stable));
    // instance-2 restarts: new process, empty member id, same instance id.
    let j = t.join("", Some("instance-2"));
    let reply = t.joins().remove(&j).unwrap();
    assert_eq!(reply.error_code, 0);
    assert_eq!(reply.generation_id, 1, "same generation: no rebalance");
    assert_eq!(t.c.state_of("g"), Some(GroupState::Stable));
    let new_id = reply.member_id.to_string();
    assert_ne!(new_id, m2);
    let s = t.sync(&new_id, 1, &[]);
    assert_eq!(T::syncs(t.c.drain())[&s].assignment.as_ref(), b"two", "keeps its assignment");
    assert_eq!(t.heartbeat(&m2, 1), ErrorCode::UnknownMemberId.code(), "the old identity is gone");
}

#[test]
fn bad_joins_get_errors() {
    let mut t = T::new();
    let id = t.id();
    t.c.join(
        t.now,
        id,
        V,
        "c",
        JoinGroupRequest::default().with_group_id(GroupId(s(""))).with_session_timeout_ms(10_000),
    );
    assert_eq!(t.joins()[&id].error_code, ErrorCode::InvalidGroupId.code());
    let id = t.id();
    t.c.join(t.now, id, V, "c", JoinGroupRequest::default().with_group_id(GroupId(s("g"))).with_session_timeout_ms(10));
    assert_eq!(t.joins()[&id].error_code, ErrorCode::InvalidSessionTimeout.code());
    let id = t.join("not-a-member", None);
    assert_eq!(t.joins()[&id].error_code, ErrorCode::UnknownMemberId.code());
}

#[test]
fn commits_are_fenced_by_generation() {
    let mut t = T::new();
    let a = t.member_id();
    t.join(&a, None);
    t.joins();
    assert_eq!(t.c.validate_commit("g", 1, &a, None), Err(ErrorCode::RebalanceInProgress));
    t.sync(&a, 1, &[]);
    t.c.drain();
    assert_eq!(t.c.validate_commit("g", 1, &a, None), Ok(()));
    assert_eq!(t.c.validate_commit("g", 0, &a, None), Err(ErrorCode::IllegalGeneration));
    assert_eq!(
        t.c.validate_commit("g", -1, "", None),
        Err(ErrorCode::IllegalGeneration),
        "simple commits clash with live members"
    );
    assert_eq!(t.c.validate_commit("g", 1, "x", None), Err(ErrorCode::UnknownMemberId));
    let b = t.member_id();
    t.join(&b, None);
    assert_eq!(
        t.c.validate_commit("g", 1, &a, None),
        Ok(()),
        "a member of the current generation commits while the group prepares a rebalance"
    );
    assert_eq!(t.c.validate_commit("g", 2, &a, None), Err(ErrorCode::IllegalGeneration));
}

#[test]
fn restarted_static_leader_gets_members_without_a_rebalance() {
    let mut t = T::with_delay(3_000);
    let j1 = t.join("", Some("leader"));
    t.join("", Some("follower"));
    t.now = 3_000;
    t.c.tick(t.now);
    let joins = t.joins();
    let leader = joins[&j1].member_id.to_string();
    assert_eq!(joins[&j1].leader.to_string(), leader);
    let follower = joins.values().find(|r| r.member_id.to_string() != leader).unwrap().member_id.to_string();
    t.sync(&follower, 1, &[]);
    t.sync(&leader, 1, &[(&leader, b"L"), (&follower, b"F")]);
    t.c.drain();
    let j = t.join("", Some("leader"));
    let reply = t.joins().remove(&j).unwrap();
    assert_eq!(reply.generation_id, 1);
    assert_eq!(reply.members.len(), 2, "the returning leader sees the members");
    assert_eq!(t.c.state_of("g"), Some(GroupState::Stable));
    let new_leader = reply.member_id.to_string();
    let s = t.sync(&new_leader, 1, &[(&new_leader, b"other"), (&follower, b"other")]);
    assert_eq!(T::syncs(t.c.drain())[&s].assignment.as_ref(), b"L", "a stable group keeps its assignment");
    assert_eq!(t.heartbeat(&follower, 1), 0);
}

#[test]
fn generations_do_not_repeat_across_broker_starts() {
    let mut first = Coordinator::new(GroupConfig { initial_rebalance_delay_ms: 0, ..GroupConfig::default() }, 1, 1);
    let mut second = Coordinator::new(GroupConfig { initial_rebalance_delay_ms: 0, ..GroupConfig::default() }, 1, 2);
    let generation = |c: &mut Coordinator| {
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("range"))]);
        c.join(0, RequestId(1), 3, "c", request);
        match &c.drain()[0].body {
            ResponseKind::JoinGroup(r) => r.generation_id,
            _ => unreachable!(),
        }
    };
    assert_ne!(generation(&mut first), generation(&mut second));
}

/// Two members joined and the leader `a` synced generation 1 with assignments A and B; the
/// group's record is drained but not committed. Returns (a, b, a's sync, b's sync).
fn two_members_storing(t: &mut T) -> (String, String, RequestId, RequestId, GroupStore) {
    let a = t.member_id();
    let b = t.member_id();
    t.join(&a, None);
    t.join(&b, None);
    t.joins();
    // Not T::sync, which commits the record at once.
    let sync = |t: &mut T, member: &str, assignments: Vec<SyncGroupRequestAssignment>| {
        let id = t.id();
        let request = SyncGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(1)
            .with_member_id(s(member))
            .with_assignments(assignments);
        t.c.sync(t.now, id, V, request);
        id
    };
    let sb = sync(t, &b, Vec::new());
    let assignment = |m: &str, a: &'static [u8]| {
        SyncGroupRequestAssignment::default().with_member_id(s(m)).with_assignment(Bytes::from_static(a))
    };
    let sa = sync(t, &a, vec![assignment(&a, b"A"), assignment(&b, b"B")]);
    let mut stores = t.c.drain_stores();
    assert_eq!(stores.len(), 1, "the leader's assignment is stored");
    let store = stores.remove(0);
    (a, b, sa, sb, store)
}

#[test]
fn syncgroups_wait_for_the_groups_record_to_be_committed() {
    let mut t = T::new();
    let (a, b, sa, sb, store) = two_members_storing(&mut t);
    assert_eq!(store.syncs_wait, Some((1, sa)));
    assert_eq!(store.stored.generation, 1);
    let assignments: Vec<(&str, &[u8])> =
        store.stored.members.iter().map(|m| (m.member_id.as_str(), m.assignment.as_ref())).collect();
    assert_eq!(assignments, vec![(a.as_str(), &b"A"[..]), (b.as_str(), &b"B"[..])], "in join order");
    assert!(t.c.drain().is_empty(), "no member hears its assignment before the record is committed");
    assert_eq!(t.c.state_of("g"), Some(GroupState::CompletingRebalance));
    assert_eq!(t.heartbeat(&b, 1), 0, "members heartbeat while they wait");
    // A record of an older generation changes nothing.
    t.c.stored("g", 0);
    assert!(t.c.drain().is_empty());
    t.c.stored("g", 1);
    let syncs = T::syncs(t.c.drain());
    assert_eq!((syncs[&sa].assignment.as_ref(), syncs[&sb].assignment.as_ref()), (&b"A"[..], &b"B"[..]));
    assert_eq!(t.c.state_of("g"), Some(GroupState::Stable));
}

#[test]
fn a_record_that_is_not_stored_fails_the_syncgroups_and_starts_a_new_generation() {
    let mut t = T::new();
    let (a, b, sa, sb, _) = two_members_storing(&mut t);
    t.c.store_failed(t.now, "g", 1, ErrorCode::NotCoordinator);
    let syncs = T::syncs(t.c.drain());
    for id in [sa, sb] {
        assert_eq!(syncs[&id].error_code, ErrorCode::NotCoordinator.code());
        assert!(syncs[&id].assignment.is_empty());
    }
    assert_eq!(t.c.state_of("g"), Some(GroupState::PreparingRebalance));
    // The record, if it lands after all, is of a generation the group has left.
    t.c.stored("g", 1);
    assert_eq!(t.c.state_of("g"), Some(GroupState::PreparingRebalance));
    let (ja, jb) = (t.join(&a, None), t.join(&b, None));
    let joins = t.joins();
    assert_eq!((joins[&ja].generation_id, joins[&jb].generation_id), (2, 2));
}

#[test]
fn a_restored_group_carries_on_in_its_generation_with_its_assignments() {
    let mut t = T::new();
    let (a, b, _, _, store) = two_members_storing(&mut t);
    t.c.stored("g", 1);
    t.c.drain();
    // Another coordinator (another broker, or this one restarted) takes the group over.
    let mut next = T::new();
    next.c = Coordinator::new(GroupConfig { initial_rebalance_delay_ms: 0, ..GroupConfig::default() }, 2, 7);
    next.now = 50_000;
    next.c.restore(next.now, "g", store.stored.clone());
    assert_eq!(next.c.state_of("g"), Some(GroupState::Stable));
    assert_eq!(next.heartbeat(&a, 1), 0, "no rebalance");
    assert_eq!(next.c.validate_commit("g", 1, &b, None), Ok(()));
    assert_eq!(next.c.validate_commit("g", 0, &b, None), Err(ErrorCode::IllegalGeneration));
    let resync = next.sync(&b, 1, &[]);
    assert_eq!(T::syncs(next.c.drain())[&resync].assignment.as_ref(), b"B");
    let described = next.c.describe("g");
    assert_eq!(described.members.len(), 2);
    assert_eq!(described.protocol_data.to_string(), "range");
    // Every member had a full session from the take-over: b, silent since, is expired; a's
    // rejoin then opens generation 2, after the one the record holds.
    next.now += 9_000;
    assert_eq!(next.heartbeat(&a, 1), 0);
    next.now += 2_000;
    next.c.tick(next.now);
    assert_eq!(next.c.state_of("g"), Some(GroupState::PreparingRebalance), "b's session ran out");
    let ja = next.join(&a, None);
    assert_eq!(next.joins()[&ja].generation_id, 2);
}

#[test]
fn an_emptied_group_stores_its_generation() {
    let mut t = T::new();
    let a = t.member_id();
    t.join(&a, None);
    t.joins();
    t.sync(&a, 1, &[(&a, b"A")]);
    t.c.drain();
    let request = LeaveGroupRequest::default().with_group_id(GroupId(s("g"))).with_member_id(s(a.clone()));
    t.c.leave(t.now, 1, request);
    let stores = t.c.drain_stores();
    assert_eq!(stores.len(), 1);
    assert_eq!((stores[0].stored.generation, stores[0].stored.members.len()), (2, 0));
    assert_eq!(stores[0].syncs_wait, None);
    let mut next = T::new();
    next.c.restore(0, "g", stores[0].stored.clone());
    assert_eq!(next.c.state_of("g"), Some(GroupState::Empty));
    let b = next.member_id();
    let jb = next.join(&b, None);
    assert_eq!(next.joins()[&jb].generation_id, 3, "the generation goes on from the record");
}
