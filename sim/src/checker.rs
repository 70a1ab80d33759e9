//! Checkers over a recorded [`History`], named after Jepsen's anomalies. A checker that never
//! fails proves nothing: each has a planted bug (see `headwater_core::planted`) that `make sim`
//! requires it to catch.

use std::collections::BTreeMap;

use crate::history::History;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub kind: &'static str,
    pub detail: String,
}

fn anomaly(kind: &'static str, detail: String) -> Anomaly {
    Anomaly { kind, detail }
}

/// Runs every checker; returns the anomalies and how many acknowledged records were verified.
pub fn check(history: &History) -> (Vec<Anomaly>, u64) {
    let mut anomalies = Vec::new();
    let verified = lost_writes(history, &mut anomalies);
    duplicates(history, &mut anomalies);
    inconsistent_offsets(history, &mut anomalies);
    polls(history, &mut anomalies);
    for detail in &history.corrupt_reads {
        anomalies.push(anomaly("corrupt-read", detail.clone()));
    }
    for (key, values) in &history.reads {
        for value in values {
            if !history.sent.contains(value) {
                anomalies.push(anomaly(
                    "garbage-read",
                    format!("partition {} offset {}: {value:?} was never sent", key.0, key.1),
                ));
            }
        }
    }
    high_watermarks(history, &mut anomalies);
    for ((partition, epoch), leaders) in history.leaders.iter().filter(|(_, leaders)| leaders.len() > 1) {
        anomalies.push(anomaly(
            "two-leaders",
            format!("brokers named leaders {leaders:?} for partition {partition} in leader epoch {epoch}"),
        ));
    }
    ownership(history, &mut anomalies);
    holdings(history, &mut anomalies);
    commits(history, &mut anomalies);
    topic_set(history, &mut anomalies);
    for detail in &history.stuck {
        anomalies.push(anomaly("liveness", detail.clone()));
    }
    (anomalies, verified)
}

/// lost-write: an acks=all record is not at its acknowledged offset in the final log.
fn lost_writes(history: &History, anomalies: &mut Vec<Anomaly>) -> u64 {
    let mut verified = 0;
    for ack in history.acks.iter().filter(|a| a.durable) {
        match history.final_log.get(&ack.partition).and_then(|log| log.get(&ack.offset)) {
            Some(value) if *value == ack.value => verified += 1,
            Some(other) => anomalies.push(anomaly(
                "lost-write",
                format!(
                    "acked {:?} at partition {} offset {}, but the log holds {other:?} there",
                    ack.value, ack.partition, ack.offset
                ),
            )),
            None => anomalies.push(anomaly(
                "lost-write",
                format!(
                    "acked {:?} at partition {} offset {}, but the log has no record there",
                    ack.value, ack.partition, ack.offset
                ),
            )),
        }
    }
    verified
}

/// hw-moved-back: a broker told a client a partition's high watermark, then a lower one (on
/// one connection, so the same broker process). A consumer could have read records below the
/// first that the second says are not committed.
fn high_watermarks(history: &History, anomalies: &mut Vec<Anomaly>) {
    let mut highest: BTreeMap<(u64, i32), i64> = BTreeMap::new();
    for seen in &history.high_watermarks {
        let before = highest.entry((seen.connection, seen.partition)).or_insert(seen.offset);
        if seen.offset < *before {
            anomalies.push(anomaly(
                "hw-moved-back",
                format!(
                    "broker {} gave partition {}'s high watermark as {} after {} on one connection",
                    seen.broker, seen.partition, seen.offset, before
                ),
            ));
        }
        *before = (*before).max(seen.offset);
    }
}

/// duplicate: one idempotent send stored more than once.
fn duplicates(history: &History, anomalies: &mut Vec<Anomaly>) {
    let mut seen: BTreeMap<&str, (i32, i64)> = BTreeMap::new();
    for (partition, log) in &history.final_log {
        for (offset, value) in log {
            if let Some((p, o)) = seen.insert(value, (*partition, *offset)) {
                anomalies.push(anomaly(
                    "duplicate",
                    format!("{value:?} stored at partition {p} offset {o} and partition {partition} offset {offset}"),
                ));
            }
        }
    }
}

/// inconsistent-offsets: two different records observed at one offset (by consumers, by the
/// final read, or by a producer's acknowledgement that reached consumers).
fn inconsistent_offsets(history: &History, anomalies: &mut Vec<Anomaly>) {
    for ((partition, offset), values) in &history.reads {
        let mut distinct: Vec<&String> = values.iter().collect();
        distinct.sort();
        distinct.dedup();
        if distinct.len() > 1 {
            anomalies.push(anomaly(
                "inconsistent-offsets",
                format!("partition {partition} offset {offset} read as {distinct:?}"),
            ));
        }
    }
}

/// nonmonotonic-poll: a fetch at position P returned only records before P (the consumer would
/// go backwards). poll-skip: the first record at or after P is past P although P exists.
fn polls(history: &History, anomalies: &mut Vec<Anomaly>) {
    for poll in &history.polls {
        let Some(max) = poll.max_offset else { continue };
        if max < poll.position {
            anomalies.push(anomaly(
                "nonmonotonic-poll",
                format!(
                    "session {} partition {}: asked for offset {}, got records up to {max} only",
                    poll.session, poll.partition, poll.position
                ),
            ));
            continue;
        }
        let mut expected = poll.position;
        for &offset in &poll.offsets {
            if offset < expected {
                anomalies.push(anomaly(
                    "nonmonotonic-poll",
                    format!(
                        "session {} partition {}: offset {offset} after {}",
                        poll.session,
                        poll.partition,
                        expected - 1
                    ),
                ));
                break;
            }
            if offset > expected {
                let exists = history.final_log.get(&poll.partition).is_some_and(|log| log.contains_key(&expected));
                if exists {
                    anomalies.push(anomaly(
                        "poll-skip",
                        format!(
                            "session {} partition {}: expected offset {expected}, got {offset}",
                            poll.session, poll.partition
                        ),
                    ));
                    break;
                }
            }
            expected = offset + 1;
        }
    }
}

/// split-ownership: two members own one partition in one generation.
fn ownership(history: &History, anomalies: &mut Vec<Anomaly>) {
    let mut owners: BTreeMap<(i32, i32), BTreeMap<&str, ()>> = BTreeMap::new();
    for o in &history.ownership {
        for &p in &o.partitions {
            owners.entry((o.generation, p)).or_default().insert(o.member.as_str(), ());
        }
    }
    for ((generation, partition), members) in owners {
        if members.len() > 1 {
            let names: Vec<&str> = members.keys().copied().collect();
            anomalies.push(anomaly(
                "split-ownership",
                format!("generation {generation} partition {partition} owned by {names:?}"),
            ));
        }
    }
}

/// double-holding (consumer protocol): a member was assigned a partition (and the coordinator
/// then accepted its heartbeat reporting it) while another member still held it, and that
/// other member was later told to give it back (so the coordinator had not presumed it dead).
/// A member that abandons its partitions after an error may overlap: the coordinator may have
/// expired it already.
fn holdings(history: &History, anomalies: &mut Vec<Anomaly>) {
    use crate::history::HoldEvent;
    // partition -> members holding it, each with the members that took it meanwhile.
    let mut held: BTreeMap<i32, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
    for h in &history.holdings {
        let holders = held.entry(h.partition).or_default();
        match h.event {
            HoldEvent::Acquire => {
                if h.confirmed {
                    for overlapping in holders.values_mut() {
                        overlapping.push(h.member.as_str());
                    }
                }
                holders.insert(h.member.as_str(), Vec::new());
            }
            HoldEvent::Release => {
                if let Some(overlapping) = holders.remove(h.member.as_str()) {
                    if !overlapping.is_empty() {
                        anomalies.push(anomaly(
                            "double-holding",
                            format!(
                                "partition {} assigned to {overlapping:?} while {} still held it",
                                h.partition, h.member
                            ),
                        ));
                    }
                }
            }
            HoldEvent::Abandon => {
                holders.remove(h.member.as_str());
            }
        }
    }
}

/// lost-commit: a committed offset read back lower than one already acknowledged (commits
/// must survive crashes and never move backwards).
fn commits(history: &History, anomalies: &mut Vec<Anomaly>) {
    use crate::history::CommitEvent;
    for event in &history.commits {
        let CommitEvent::Fetched { group, partition, offset, sent_at } = *event else { continue };
        let best = history.commits[..sent_at.min(history.commits.len())]
            .iter()
            .filter_map(|e| match *e {
                CommitEvent::Acked { group: g, partition: p, offset } if g == group && p == partition => Some(offset),
                _ => None,
            })
            .max();
        if let Some(best) = best.filter(|best| offset < *best) {
            anomalies.push(anomaly(
                "lost-commit",
                format!("group {group} partition {partition}: committed offset read as {offset} after {best} was acknowledged"),
            ));
        }
    }
}

/// The metadata log as the cluster's set of topics (cluster runs): a grow-only set, where a
/// CreateTopics adds one name and a Metadata read returns the names a broker lists.
///
/// What Headwater promises (ARCHITECTURE D22, D25): the controller answers a CreateTopics once
/// its records are committed in the metadata log, and every broker answers Metadata from its
/// own image of the committed log, which lags the controller's by however long the broker
/// takes to fetch and apply (after a restart it starts empty and catches up). Reads are
/// therefore not linearizable, and not read-your-writes either, even on the broker that
/// relayed the create: a read may miss a create acknowledged before it was sent, and that
/// (Jepsen's stale read) is not flagged. What does hold, and is checked:
///
/// - `lost-create`: every acknowledged create is in each broker's last read after healing
///   (committed records survive any failover and every image catches up).
/// - `phantom-topic`: no read lists a topic whose create was never sent, was sent only after
///   the read was answered, or was refused before anything was proposed.
/// - `create-reordered`: the log orders creates as real time does. A create acknowledged
///   before another was sent precedes it in the log, so any read listing the later one
///   (through any broker, however stale) lists the earlier one too.
/// - `metadata-forked`: every image is a prefix of the one committed log, so any two reads'
///   sets are ordered by inclusion.
/// - `metadata-moved-back`: a broker's image only moves forward: a read lists every topic an
///   earlier read on the same connection (the same broker process) listed.
fn topic_set(history: &History, anomalies: &mut Vec<Anomaly>) {
    use std::collections::BTreeSet;

    use crate::history::{CreateOutcome, TopicOpKind};
    let mut creates: BTreeMap<&str, (CreateOutcome, u64, u64)> = BTreeMap::new();
    for op in &history.topic_ops {
        if let TopicOpKind::Create { name, outcome } = &op.kind {
            creates.insert(name.as_str(), (*outcome, op.invoked_us, op.completed_us));
        }
    }
    // Acknowledged creates, in the order they were acknowledged.
    let mut acked: Vec<(u64, &str)> = creates
        .iter()
        .filter(|(_, (outcome, _, _))| *outcome == CreateOutcome::Ok)
        .map(|(&name, &(_, _, completed_us))| (completed_us, name))
        .collect();
    acked.sort();
    // Each missing create and each phantom topic is reported once, at the first read showing it.
    let mut reordered: BTreeSet<&str> = BTreeSet::new();
    let mut phantoms: BTreeSet<&str> = BTreeSet::new();
    let mut last_on_connection: BTreeMap<u64, &BTreeSet<String>> = BTreeMap::new();
    let mut sets: BTreeSet<&BTreeSet<String>> = BTreeSet::new();
    for op in &history.topic_ops {
        let TopicOpKind::Read { names, last } = &op.kind else { continue };
        let at = format!("a read of broker {} at {} ms", op.broker, op.completed_us / 1000);
        let mut latest_invoked: Option<(u64, &str)> = None;
        for name in names {
            let phantom = match creates.get(name.as_str()) {
                None => format!("{at} listed {name}, which no client created"),
                Some((CreateOutcome::Failed(code), _, _)) => {
                    format!("{at} listed {name}, whose create was refused with error {code}")
                }
                Some((_, invoked_us, _)) if *invoked_us > op.completed_us => {
                    format!("{at} listed {name}, whose create was sent only at {} ms", invoked_us / 1000)
                }
                Some((_, invoked_us, _)) => {
                    if latest_invoked.is_none_or(|(t, _)| *invoked_us > t) {
                        latest_invoked = Some((*invoked_us, name.as_str()));
                    }
                    continue;
                }
            };
            if phantoms.insert(name.as_str()) {
                anomalies.push(anomaly("phantom-topic", phantom));
            }
        }
        if let Some((invoked_us, later)) = latest_invoked {
            for &(_, earlier) in acked.iter().take_while(|(completed_us, _)| *completed_us < invoked_us) {
                if !names.contains(earlier) && reordered.insert(earlier) {
                    anomalies.push(anomaly(
                        "create-reordered",
                        format!("{at} listed {later} but not {earlier}, acknowledged before {later} was sent"),
                    ));
                }
            }
        }
        if *last {
            for &(completed_us, name) in &acked {
                if !names.contains(name) {
                    anomalies.push(anomaly(
                        "lost-create",
                        format!(
                            "{name}, acknowledged at {} ms, is missing from broker {}'s last read after healing",
                            completed_us / 1000,
                            op.broker
                        ),
                    ));
                }
            }
        }
        if let Some(before) = last_on_connection.insert(op.connection, names) {
            let gone: Vec<&String> = before.difference(names).collect();
            if !gone.is_empty() {
                anomalies.push(anomaly(
                    "metadata-moved-back",
                    format!("{at} no longer listed {gone:?}, which an earlier read on the same connection listed"),
                ));
            }
        }
        sets.insert(names);
    }
    // Sets ordered by inclusion form a chain: sorted by size, each holds the one before.
    let mut by_size: Vec<&BTreeSet<String>> = sets.into_iter().collect();
    by_size.sort_by_key(|set| set.len());
    for pair in by_size.windows(2) {
        let only_smaller: Vec<&String> = pair[0].difference(pair[1]).collect();
        if !only_smaller.is_empty() {
            let only_larger: Vec<&String> = pair[1].difference(pair[0]).collect();
            anomalies.push(anomaly(
                "metadata-forked",
                format!("one read listed {only_smaller:?} and not {only_larger:?}, another the reverse"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Ack, HighWatermark, Poll};

    fn base() -> History {
        let mut h = History::default();
        for (o, v) in [(0, "a"), (1, "b"), (2, "c")] {
            h.sent.insert(v.into());
            h.final_log.entry(0).or_default().insert(o, v.into());
        }
        h
    }

    #[test]
    fn clean_history_has_no_anomalies() {
        let mut h = base();
        h.acks.push(Ack { producer: 1, durable: true, partition: 0, offset: 1, value: "b".into() });
        h.polls.push(Poll { session: 1, partition: 0, position: 1, offsets: vec![1, 2], max_offset: Some(2) });
        let (anomalies, verified) = check(&h);
        assert!(anomalies.is_empty(), "{anomalies:?}");
        assert_eq!(verified, 1);
    }

    #[test]
    fn each_checker_can_fail() {
        let mut h = base();
        h.acks.push(Ack { producer: 1, durable: true, partition: 0, offset: 5, value: "z".into() });
        h.final_log.get_mut(&0).unwrap().insert(3, "a".into());
        h.read(0, 1, "b".into());
        h.read(0, 1, "x".into());
        h.polls.push(Poll { session: 1, partition: 0, position: 1, offsets: vec![2], max_offset: Some(2) });
        h.polls.push(Poll { session: 2, partition: 0, position: 2, offsets: vec![], max_offset: Some(1) });
        let hw = |connection, offset| HighWatermark { connection, broker: 1, partition: 0, offset };
        // Lower on another connection (another process, after a restart) is allowed.
        h.high_watermarks = vec![hw(1, 5), hw(2, 3), hw(1, 4)];
        h.leaders.insert((0, 3), [1].into());
        h.leaders.insert((0, 4), [1, 2].into());
        let kinds: Vec<&str> = check(&h).0.iter().map(|a| a.kind).collect();
        assert_eq!(kinds.iter().filter(|k| **k == "hw-moved-back").count(), 1, "{kinds:?}");
        for kind in [
            "lost-write",
            "duplicate",
            "inconsistent-offsets",
            "poll-skip",
            "nonmonotonic-poll",
            "garbage-read",
            "hw-moved-back",
            "two-leaders",
        ] {
            assert!(kinds.contains(&kind), "{kind} not reported: {kinds:?}");
        }
    }

    #[test]
    fn group_checkers_can_fail_and_allow_what_is_legitimate() {
        use crate::history::{CommitEvent, HoldEvent, Holding};
        let hold = |member: &str, event, confirmed| Holding { member: member.into(), partition: 0, event, confirmed };
        let kinds = |h: &History| check(h).0.iter().map(|a| a.kind).collect::<Vec<_>>();
        // b takes partition 0 (confirmed) while a holds it, and a is later told to give it up.
        let mut h = base();
        h.holdings = vec![
            hold("a", HoldEvent::Acquire, true),
            hold("b", HoldEvent::Acquire, true),
            hold("a", HoldEvent::Release, false),
        ];
        assert!(kinds(&h).contains(&"double-holding"));
        // The same after a gave up on an error, or with b's acquire never confirmed: allowed.
        h.holdings[2].event = HoldEvent::Abandon;
        assert!(kinds(&h).is_empty());
        h.holdings[2].event = HoldEvent::Release;
        h.holdings[1].confirmed = false;
        assert!(kinds(&h).is_empty());
        // A commit read back lower than one acknowledged before the read was sent; a late
        // answer to a read sent before the commit is allowed.
        let mut h = base();
        h.commits = vec![
            CommitEvent::Acked { group: "g", partition: 0, offset: 10 },
            CommitEvent::Fetched { group: "g", partition: 0, offset: 5, sent_at: 0 },
        ];
        assert!(kinds(&h).is_empty());
        h.commits.push(CommitEvent::Fetched { group: "g", partition: 0, offset: 5, sent_at: 1 });
        assert!(kinds(&h).contains(&"lost-commit"));
    }

    #[test]
    fn topic_set_checker_allows_lagging_reads_and_catches_each_anomaly() {
        use crate::history::{CreateOutcome, TopicOp, TopicOpKind};
        let create = |name: &str, outcome, invoked_us, completed_us| TopicOp {
            connection: 0,
            broker: 1,
            invoked_us,
            completed_us,
            kind: TopicOpKind::Create { name: name.into(), outcome },
        };
        let read = |connection, names: &[&str], completed_us, last| TopicOp {
            connection,
            broker: connection as i32,
            invoked_us: completed_us - 5,
            completed_us,
            kind: TopicOpKind::Read { names: names.iter().map(|n| n.to_string()).collect(), last },
        };
        let kinds = |ops: Vec<TopicOp>| {
            let mut h = base();
            h.topic_ops = ops;
            check(&h).0.iter().map(|a| a.kind).collect::<Vec<_>>()
        };
        // a is acknowledged before b is sent; c's outcome is unknown, d was refused. A broker
        // that lags (connection 2) misses a after its acknowledgement: allowed. c may appear.
        let history = vec![
            create("a", CreateOutcome::Ok, 0, 10),
            create("b", CreateOutcome::Ok, 20, 30),
            create("c", CreateOutcome::Unknown, 25, 5_000),
            create("d", CreateOutcome::Failed(38), 40, 50),
            read(2, &[], 60, false),
            read(1, &["a"], 70, false),
            read(1, &["a", "b", "c"], 80, false),
            read(2, &["a", "b", "c"], 90, true),
            read(3, &["a", "b", "c"], 90, true),
        ];
        assert!(kinds(history.clone()).is_empty(), "{:?}", kinds(history));
        let with = |extra: Vec<TopicOp>| {
            let mut ops = history.clone();
            ops.extend(extra);
            kinds(ops)
        };
        // The last read of broker 4 after healing misses b.
        assert_eq!(with(vec![read(4, &["a", "c"], 100, true)]), ["lost-create"]);
        // A topic nobody created, one refused, one listed before its create was sent.
        assert_eq!(with(vec![read(4, &["a", "b", "c", "x"], 100, false)]), ["phantom-topic"]);
        assert!(with(vec![read(4, &["a", "b", "c", "d"], 100, false)]).contains(&"phantom-topic"));
        assert!(with(vec![read(4, &["a", "b", "c", "e"], 100, false), create("e", CreateOutcome::Ok, 200, 210)])
            .contains(&"phantom-topic"));
        // b without a, although a was acknowledged before b was sent.
        assert_eq!(with(vec![read(4, &["b"], 100, false)]), ["create-reordered", "metadata-forked"]);
        // Two images that are not prefixes of one log: {a, b} and {a, c} (each alone is fine).
        assert!(with(vec![read(4, &["a", "c"], 100, false)]).is_empty());
        assert_eq!(with(vec![read(4, &["a", "b"], 100, false), read(5, &["a", "c"], 100, false)]), ["metadata-forked"]);
        // Broker 1's image goes back on one connection (a new connection may start empty).
        assert_eq!(with(vec![read(1, &["a"], 100, false)]), ["metadata-moved-back"]);
        assert!(with(vec![read(5, &[], 100, false)]).is_empty());
    }
}
