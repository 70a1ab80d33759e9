use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, TopicName};
use uuid::Uuid;

use super::*;
use crate::rng::Rng;

const T1: Uuid = Uuid::from_u128(1);
const T2: Uuid = Uuid::from_u128(2);

fn topics(name: &str) -> Option<(Uuid, i32)> {
    match name {
        "orders" => Some((T1, 6)),
        "audit" => Some((T2, 2)),
        _ => None,
    }
}

fn groups() -> ConsumerGroups {
    ConsumerGroups::new(ConsumerGroupConfig::default(), 7, 1)
}

fn join(member: &str, subscribed: &[&str]) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s(member))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(subscribed.iter().map(|t| TopicName(s(*t))).collect()))
        .with_topic_partitions(Some(Vec::new()))
}

fn beat(member: &str, epoch: i32, owned: Option<&BTreeSet<Tp>>) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_topic_partitions(owned.map(|o| {
            by_topic(o)
                .into_iter()
                .map(|(id, partitions)| TopicPartitions::default().with_topic_id(id).with_partitions(partitions))
                .collect()
        }))
}

fn assignment(response: &ConsumerGroupHeartbeatResponse) -> Option<BTreeSet<Tp>> {
    response
        .assignment
        .as_ref()
        .map(|a| a.topic_partitions.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p))).collect())
}

fn ok(response: ConsumerGroupHeartbeatResponse) -> ConsumerGroupHeartbeatResponse {
    assert_eq!(response.error_code, 0, "{:?}", response.error_message);
    response
}

/// A client as the real ones behave: it holds what the last assignment said, and reports it.
#[derive(Debug, Default)]
struct Client {
    epoch: i32,
    owned: BTreeSet<Tp>,
}

impl Client {
    fn heartbeat(&mut self, coordinator: &mut ConsumerGroups, now_ms: i64, id: &str) {
        let response = ok(coordinator.heartbeat(now_ms, 1, "c", &beat(id, self.epoch, Some(&self.owned)), &topics));
        self.epoch = response.member_epoch;
        if let Some(assigned) = assignment(&response) {
            self.owned = assigned;
        }
    }
}

/// How a modelled client reports the partitions it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// Every heartbeat.
    Always,
    /// Java's AsyncKafkaConsumer: only when its assignment changed, and in full after an error.
    Java,
    /// librdkafka: only when its assignment changed; a lost request is resent unchanged.
    Librdkafka,
}

/// A client that may lose responses (the coordinator handled the request, the client never
/// saw the answer) and reacts to errors as the real clients do.
#[derive(Debug)]
struct LossyClient {
    style: Style,
    epoch: i32,
    owned: BTreeSet<Tp>,
    /// What the coordinator was last sent, as far as the client knows.
    reported: Option<BTreeSet<Tp>>,
    /// The request to resend after a loss (librdkafka).
    resend: Option<ConsumerGroupHeartbeatRequest>,
    full_next: bool,
}

impl LossyClient {
    fn new(style: Style) -> LossyClient {
        LossyClient { style, epoch: 0, owned: BTreeSet::new(), reported: None, resend: None, full_next: false }
    }

    fn request(&mut self, id: &str, subs: &[&str]) -> ConsumerGroupHeartbeatRequest {
        if let Some(request) = self.resend.take() {
            return request;
        }
        if self.epoch == 0 {
            return join(id, subs);
        }
        let send_owned = match self.style {
            Style::Always => true,
            Style::Java => self.full_next || self.reported.as_ref() != Some(&self.owned),
            Style::Librdkafka => self.reported.as_ref() != Some(&self.owned),
        };
        self.full_next = false;
        beat(id, self.epoch, send_owned.then_some(&self.owned))
    }

    fn heartbeat(&mut self, c: &mut ConsumerGroups, now_ms: i64, id: &str, subs: &[&str], lose: bool) {
        let request = self.request(id, subs);
        let response = c.heartbeat(now_ms, 1, "c", &request, &topics);
        if lose {
            match self.style {
                Style::Librdkafka => self.resend = Some(request),
                _ => self.full_next = true,
            }
            return;
        }
        if response.error_code != 0 {
            // Fenced or unknown: drop everything and join again.
            assert!(
                [ErrorCode::FencedMemberEpoch.code(), ErrorCode::UnknownMemberId.code()].contains(&response.error_code),
                "{:?}",
                response.error_message
            );
            (self.epoch, self.owned, self.reported) = (0, BTreeSet::new(), None);
            return;
        }
        if let Some(sent) = request.topic_partitions.as_ref() {
            self.reported =
                Some(sent.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p))).collect());
        }
        self.epoch = response.member_epoch;
        if let Some(assigned) = assignment(&response) {
            self.owned = assigned;
        }
    }
}

fn holders_are_unique(clients: &BTreeMap<String, Client>) {
    let mut seen: BTreeMap<Tp, &str> = BTreeMap::new();
    for (id, client) in clients {
        for tp in &client.owned {
            if let Some(other) = seen.insert(*tp, id) {
                panic!("{tp:?} held by {other} and {id}");
            }
        }
    }
}

#[test]
fn a_lone_member_gets_every_partition_at_a_new_epoch() {
    let mut c = groups();
    let r = ok(c.heartbeat(0, 1, "c", &join("a", &["orders", "audit"]), &topics));
    assert_eq!(r.member_id.as_deref(), Some("a"));
    assert!(r.member_epoch > 0);
    assert_eq!(assignment(&r).unwrap().len(), 8);
    assert_eq!(r.heartbeat_interval_ms, 5_000);
    // Nothing changed: no assignment is resent, the epoch stays.
    let owned = assignment(&r).unwrap();
    let again = ok(c.heartbeat(10, 1, "c", &beat("a", r.member_epoch, Some(&owned)), &topics));
    assert_eq!(again.member_epoch, r.member_epoch);
    assert!(again.assignment.is_none());
}

#[test]
fn version_0_members_get_an_id_from_the_coordinator() {
    let mut c = groups();
    let r = ok(c.heartbeat(0, 0, "c", &join("", &["orders"]), &topics));
    assert!(!r.member_id.unwrap().is_empty());
    let err = c.heartbeat(0, 1, "c", &join("", &["orders"]), &topics);
    assert_eq!(err.error_code, ErrorCode::InvalidRequest.code());
}

#[test]
fn a_partition_moves_only_after_its_owner_revokes_it() {
    let mut c = groups();
    let first = ok(c.heartbeat(0, 1, "c", &join("a", &["orders"]), &topics));
    let a_owned = assignment(&first).unwrap();
    let a_epoch = first.member_epoch;
    let b = ok(c.heartbeat(1, 1, "c", &join("b", &["orders"]), &topics));
    // b is at the new epoch but waits: a still holds everything.
    assert_eq!(assignment(&b).unwrap().len(), 0);
    // a is told to keep three; its epoch holds until it reports the revocation.
    let a = ok(c.heartbeat(2, 1, "c", &beat("a", a_epoch, Some(&a_owned)), &topics));
    let kept = assignment(&a).unwrap();
    assert_eq!(kept.len(), 3);
    assert_eq!(a.member_epoch, a_epoch);
    let b_again = ok(c.heartbeat(3, 1, "c", &beat("b", b.member_epoch, Some(&BTreeSet::new())), &topics));
    assert!(b_again.assignment.is_none(), "nothing released yet");
    // a reports only what it kept: it moves to the new epoch, and b gets the rest.
    let a = ok(c.heartbeat(4, 1, "c", &beat("a", a_epoch, Some(&kept)), &topics));
    assert_eq!(a.member_epoch, b.member_epoch);
    let b_final = ok(c.heartbeat(5, 1, "c", &beat("b", b.member_epoch, Some(&BTreeSet::new())), &topics));
    let b_owned = assignment(&b_final).unwrap();
    assert_eq!(b_owned.len(), 3);
    assert!(b_owned.is_disjoint(&kept));
    let described = c.describe("g", 1).unwrap();
    assert_eq!(described.group_state.as_str(), "Stable");
    assert!(described.members.iter().all(|m| m.member_type == 1));
}

#[test]
fn a_leaving_or_silent_member_hands_its_partitions_over() {
    let mut c = groups();
    let mut clients: BTreeMap<String, Client> = BTreeMap::new();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        let r = ok(c.heartbeat(i as i64, 1, "c", &join(id, &["orders"]), &topics));
        clients.insert(id.to_string(), Client { epoch: r.member_epoch, owned: assignment(&r).unwrap() });
    }
    for now in 10..20 {
        for (id, client) in &mut clients {
            client.heartbeat(&mut c, now, id);
        }
        holders_are_unique(&clients);
    }
    assert!(clients.values().all(|cl| cl.owned.len() == 2), "{clients:?}");
    // b leaves for good: a and c share its partitions.
    let left = ok(c.heartbeat(30, 1, "c", &beat("b", clients["b"].epoch, None).with_member_epoch(-1), &topics));
    assert_eq!(left.member_epoch, -1);
    clients.remove("b");
    for now in 31..40 {
        for (id, client) in &mut clients {
            client.heartbeat(&mut c, now, id);
        }
    }
    assert!(clients.values().all(|cl| cl.owned.len() == 3), "{clients:?}");
    // c goes silent: after the session timeout a has everything.
    let timeout = i64::from(ConsumerGroupConfig::default().session_timeout_ms);
    assert!(c.next_deadline_ms().unwrap() > timeout);
    let client = clients.get_mut("a").unwrap();
    client.heartbeat(&mut c, 40 + timeout / 2, "a");
    c.tick(40 + timeout + 1);
    for step in 0..3 {
        clients.get_mut("a").unwrap().heartbeat(&mut c, 41 + timeout + step, "a");
    }
    assert_eq!(clients["a"].owned.len(), 6);
    assert_eq!(c.describe("g", 1).unwrap().members.len(), 1);
}

#[test]
fn a_static_member_that_returns_keeps_its_partitions_without_a_rebalance() {
    let mut c = groups();
    let mut a = Client::default();
    let mut b = Client::default();
    let r = ok(c.heartbeat(0, 1, "c", &join("a", &["orders"]).with_instance_id(Some(s("ia"))), &topics));
    (a.epoch, a.owned) = (r.member_epoch, assignment(&r).unwrap());
    let r = ok(c.heartbeat(1, 1, "c", &join("b", &["orders"]).with_instance_id(Some(s("ib"))), &topics));
    (b.epoch, b.owned) = (r.member_epoch, assignment(&r).unwrap());
    for now in 2..8 {
        a.heartbeat(&mut c, now, "a");
        b.heartbeat(&mut c, now, "b");
    }
    let group_epoch = c.describe("g", 1).unwrap().group_epoch;
    let b_owned = b.owned.clone();
    assert_eq!(b_owned.len(), 3);
    // b restarts: it leaves with epoch -2 and joins again under a new member id.
    let leave = beat("b", b.epoch, None).with_member_epoch(-2).with_instance_id(Some(s("ib")));
    assert_eq!(ok(c.heartbeat(10, 1, "c", &leave, &topics)).member_epoch, -2);
    a.heartbeat(&mut c, 11, "a");
    assert_eq!(a.owned.len(), 3, "a does not take the away member's partitions");
    // While it is away, nobody else may claim its instance id.
    let r = ok(c.heartbeat(12, 1, "c", &join("b2", &["orders"]).with_instance_id(Some(s("ib"))), &topics));
    assert_eq!(assignment(&r).unwrap(), b_owned);
    assert_eq!(c.describe("g", 1).unwrap().group_epoch, group_epoch, "no rebalance");
    let taken = c.heartbeat(13, 1, "c", &join("b3", &["orders"]).with_instance_id(Some(s("ib"))), &topics);
    assert_eq!(taken.error_code, ErrorCode::UnreleasedInstanceId.code());
}

#[test]
fn stale_and_future_epochs_are_fenced() {
    let mut c = groups();
    let r = ok(c.heartbeat(0, 1, "c", &join("a", &["orders"]), &topics));
    let owned = assignment(&r).unwrap();
    let ahead = c.heartbeat(1, 1, "c", &beat("a", r.member_epoch + 1, Some(&owned)), &topics);
    assert_eq!(ahead.error_code, ErrorCode::FencedMemberEpoch.code());
    let unknown = c.heartbeat(1, 1, "c", &beat("zz", r.member_epoch, None), &topics);
    assert_eq!(unknown.error_code, ErrorCode::UnknownMemberId.code());
    // A second member moves the group on; a, which missed nothing, stays valid.
    ok(c.heartbeat(2, 1, "c", &join("b", &["orders"]), &topics));
    ok(c.heartbeat(3, 1, "c", &beat("a", r.member_epoch, Some(&owned)), &topics));
    assert_eq!(c.validate_commit("g", r.member_epoch, "a"), Ok(()));
    assert_eq!(c.validate_commit("g", r.member_epoch - 1, "a"), Err(ErrorCode::StaleMemberEpoch));
    assert_eq!(c.validate_commit("g", -1, ""), Err(ErrorCode::UnknownMemberId));
}

#[test]
fn bad_requests_get_clear_errors() {
    let mut c = groups();
    let no_timeout = join("a", &["orders"]).with_rebalance_timeout_ms(-1);
    assert_eq!(c.heartbeat(0, 1, "c", &no_timeout, &topics).error_code, ErrorCode::InvalidRequest.code());
    let owned_on_join = join("a", &["orders"]).with_topic_partitions(None);
    assert_eq!(c.heartbeat(0, 1, "c", &owned_on_join, &topics).error_code, ErrorCode::InvalidRequest.code());
    let assignor = join("a", &["orders"]).with_server_assignor(Some(s("sticky")));
    assert_eq!(c.heartbeat(0, 1, "c", &assignor, &topics).error_code, ErrorCode::UnsupportedAssignor.code());
    let regex = join("a", &[]).with_subscribed_topic_names(None).with_subscribed_topic_regex(Some(s("or.*")));
    assert_eq!(c.heartbeat(0, 1, "c", &regex, &topics).error_code, ErrorCode::InvalidRegularExpression.code());
}

#[test]
fn range_gives_each_member_a_contiguous_block_of_each_topic() {
    let mut c = groups();
    let r = ok(c.heartbeat(0, 1, "c", &join("a", &["orders"]).with_server_assignor(Some(s("range"))), &topics));
    let mut a = Client { epoch: r.member_epoch, owned: assignment(&r).unwrap() };
    let r = ok(c.heartbeat(1, 1, "c", &join("b", &["orders"]).with_server_assignor(Some(s("range"))), &topics));
    let mut b = Client { epoch: r.member_epoch, owned: assignment(&r).unwrap() };
    for now in 2..6 {
        a.heartbeat(&mut c, now, "a");
        b.heartbeat(&mut c, now, "b");
    }
    assert_eq!(a.owned, (0..3).map(|p| (T1, p)).collect());
    assert_eq!(b.owned, (3..6).map(|p| (T1, p)).collect());
    assert_eq!(c.describe("g", 1).unwrap().assignor_name.as_str(), "range");
}

#[test]
fn uniform_balances_mixed_subscriptions() {
    let (orders, both, audit) =
        (vec!["orders".to_string()], vec!["audit".to_string(), "orders".to_string()], vec!["audit".to_string()]);
    let members: BTreeMap<&str, &[String]> = BTreeMap::from([("a", &orders[..]), ("b", &both[..]), ("c", &audit[..])]);
    let table: BTreeMap<String, (Uuid, i32)> =
        ["orders", "audit"].iter().map(|n| (n.to_string(), topics(n).unwrap())).collect();
    let out = assign_uniform(&members, &table, &BTreeMap::new());
    let counts: Vec<usize> = out.values().map(BTreeSet::len).collect();
    assert_eq!(counts.iter().sum::<usize>(), 8);
    assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 2, "{out:?}");
    assert!(out["a"].iter().all(|tp| tp.0 == T1));
    assert!(out["c"].iter().all(|tp| tp.0 == T2));
    // Sticky: the same members get the same assignment again.
    assert_eq!(assign_uniform(&members, &table, &out), out);
}

/// Random joins, leaves, silences and heartbeats with clients that do what they are told:
/// no partition is ever held by two clients, and once everyone heartbeats the group settles
/// with every partition held.
#[test]
fn random_membership_changes_never_double_assign() {
    for seed in 0..40 {
        let mut rng = Rng::new(seed);
        let mut c = groups();
        let mut clients: BTreeMap<String, Client> = BTreeMap::new();
        let mut now = 0;
        for step in 0..300 {
            now += 1 + (rng.next_u64() % 500) as i64;
            let roll = rng.next_u64() % 10;
            if roll == 0 && clients.len() < 5 {
                let id = format!("m{step}");
                let subs: &[&str] = if rng.next_u64().is_multiple_of(3) { &["orders", "audit"] } else { &["orders"] };
                let r = ok(c.heartbeat(now, 1, "c", &join(&id, subs), &topics));
                clients.insert(id, Client { epoch: r.member_epoch, owned: assignment(&r).unwrap() });
            } else if roll == 1 && !clients.is_empty() {
                let id = clients.keys().nth((rng.next_u64() % clients.len() as u64) as usize).unwrap().clone();
                let client = clients.remove(&id).unwrap();
                ok(c.heartbeat(now, 1, "c", &beat(&id, client.epoch, None).with_member_epoch(-1), &topics));
            } else if !clients.is_empty() {
                let id = clients.keys().nth((rng.next_u64() % clients.len() as u64) as usize).unwrap().clone();
                let client = clients.get_mut(&id).unwrap();
                client.heartbeat(&mut c, now, &id);
            }
            holders_are_unique(&clients);
        }
        for _ in 0..6 {
            now += 1;
            let ids: Vec<String> = clients.keys().cloned().collect();
            for id in ids {
                clients.get_mut(&id).unwrap().heartbeat(&mut c, now, &id);
            }
            holders_are_unique(&clients);
        }
        if !clients.is_empty() {
            let held: usize = clients.values().map(|cl| cl.owned.len()).sum();
            let wanted = if c.describe("g", 1).unwrap().members.iter().any(|m| m.subscribed_topic_names.len() == 2) {
                8
            } else {
                6
            };
            assert_eq!(held, wanted, "seed {seed}: {clients:?}");
            assert_eq!(c.describe("g", 1).unwrap().group_state.as_str(), "Stable", "seed {seed}");
        }
    }
}

/// Random membership changes with clients of each reporting style that lose one response in
/// eight: never two holders, and once responses stop getting lost, the group settles with
/// every partition held (nobody waits on a revocation its client will never acknowledge).
#[test]
fn lost_responses_and_real_reporting_styles_neither_double_assign_nor_stall() {
    for style in [Style::Always, Style::Java, Style::Librdkafka] {
        for seed in 0..30 {
            let mut rng = Rng::new(seed);
            let mut c = groups();
            let mut clients: BTreeMap<String, LossyClient> = BTreeMap::new();
            let subs: &[&str] = &["orders", "audit"];
            let mut now = 0;
            for step in 0..400 {
                now += 1 + (rng.next_u64() % 200) as i64;
                let roll = rng.next_u64() % 12;
                if roll == 0 && clients.len() < 4 {
                    clients.insert(format!("m{step}"), LossyClient::new(style));
                } else if roll == 1 && clients.len() > 1 {
                    let id = clients.keys().nth((rng.next_u64() % clients.len() as u64) as usize).unwrap().clone();
                    let client = clients.remove(&id).unwrap();
                    c.heartbeat(now, 1, "c", &beat(&id, client.epoch, None).with_member_epoch(-1), &topics);
                } else if !clients.is_empty() {
                    let id = clients.keys().nth((rng.next_u64() % clients.len() as u64) as usize).unwrap().clone();
                    let lose = rng.next_u64().is_multiple_of(8);
                    clients.get_mut(&id).unwrap().heartbeat(&mut c, now, &id, subs, lose);
                }
                let mut seen: BTreeMap<Tp, &str> = BTreeMap::new();
                for (id, client) in &clients {
                    for tp in &client.owned {
                        assert!(seen.insert(*tp, id).is_none(), "{style:?} seed {seed}: {tp:?} held twice");
                    }
                }
            }
            for _ in 0..8 {
                now += 1;
                let ids: Vec<String> = clients.keys().cloned().collect();
                for id in ids {
                    clients.get_mut(&id).unwrap().heartbeat(&mut c, now, &id, subs, false);
                }
            }
            if !clients.is_empty() {
                let held: usize = clients.values().map(|cl| cl.owned.len()).sum();
                assert_eq!(held, 8, "{style:?} seed {seed}: {clients:?}");
                assert_eq!(c.describe("g", 1).unwrap().group_state.as_str(), "Stable", "{style:?} seed {seed}");
            }
        }
    }
}

#[test]
fn a_member_that_rejoins_after_its_partitions_moved_is_not_left_revoking() {
    let mut c = groups();
    let a = ok(c.heartbeat(0, 1, "c", &join("a", &["orders"]), &topics));
    // b joins; a is told to give up three partitions but is fenced before it answers.
    ok(c.heartbeat(1, 1, "c", &join("b", &["orders"]), &topics));
    let owned = assignment(&a).unwrap();
    let kept = assignment(&ok(c.heartbeat(2, 1, "c", &beat("a", a.member_epoch, Some(&owned)), &topics))).unwrap();
    assert_eq!(kept.len(), 3);
    // a dropped everything and joins again with the same id: nothing is left to revoke.
    let again = ok(c.heartbeat(3, 1, "c", &join("a", &["orders"]), &topics));
    assert_eq!(assignment(&again).unwrap(), kept);
    let b = ok(c.heartbeat(4, 1, "c", &beat("b", again.member_epoch, Some(&BTreeSet::new())), &topics));
    assert_eq!(assignment(&b).unwrap().len(), 3, "the partitions a gave up went to b");
    assert_eq!(c.next_deadline_ms(), Some(3 + 45_000 + 1), "no revocation deadline is pending");
}

#[test]
fn a_static_member_leaving_while_revoking_frees_what_it_was_giving_up() {
    let mut c = groups();
    let a = ok(c.heartbeat(0, 1, "c", &join("a", &["orders"]).with_instance_id(Some(s("ia"))), &topics));
    let owned = assignment(&a).unwrap();
    ok(c.heartbeat(1, 1, "c", &join("b", &["orders"]), &topics));
    let kept = assignment(&ok(c.heartbeat(2, 1, "c", &beat("a", a.member_epoch, Some(&owned)), &topics))).unwrap();
    let leave = beat("a", a.member_epoch, None).with_member_epoch(-2).with_instance_id(Some(s("ia")));
    ok(c.heartbeat(3, 1, "c", &leave, &topics));
    let b = c.describe("g", 1).unwrap().members.iter().find(|m| m.member_id.as_str() == "b").unwrap().member_epoch;
    let b = ok(c.heartbeat(4, 1, "c", &beat("b", b, Some(&BTreeSet::new())), &topics));
    let b_owned = assignment(&b).unwrap();
    assert_eq!(b_owned.len(), 3);
    assert!(b_owned.is_disjoint(&kept));
    // a is away: it keeps its three, shown with epoch -2, and cannot commit meanwhile.
    let described = c.describe("g", 1).unwrap();
    assert_eq!(described.members.iter().find(|m| m.member_id.as_str() == "a").unwrap().member_epoch, -2);
    assert_eq!(c.validate_commit("g", a.member_epoch, "a"), Err(ErrorCode::StaleMemberEpoch));
    c.tick(10_000);
    assert_eq!(c.describe("g", 1).unwrap().members.len(), 2, "no revocation deadline removed a");
}

#[test]
fn groups_known_before_a_restart_hand_out_nothing_for_a_while() {
    let mut c = groups();
    c.hold_back(["g".to_string()], 1_000);
    let early = ok(c.heartbeat(0, 1, "c", &join("a", &["orders"]), &topics));
    assert!(assignment(&early).unwrap().is_empty());
    let later = ok(c.heartbeat(1_000, 1, "c", &beat("a", early.member_epoch, Some(&BTreeSet::new())), &topics));
    assert_eq!(assignment(&later).unwrap().len(), 6);
}
