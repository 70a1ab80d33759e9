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
}
