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
    ownership(history, &mut anomalies);
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

/// lost-commit: a committed offset read back lower than one already acknowledged (commits
/// must survive crashes and never move backwards).
fn commits(history: &History, anomalies: &mut Vec<Anomaly>) {
    let mut acked: BTreeMap<i32, i64> = BTreeMap::new();
    for event in &history.commits {
        match *event {
            crate::history::CommitEvent::Acked { partition, offset } => {
                let best = acked.entry(partition).or_insert(offset);
                *best = (*best).max(offset);
            }
            crate::history::CommitEvent::Fetched { partition, offset } => {
                if let Some(&best) = acked.get(&partition) {
                    if offset < best {
                        anomalies.push(anomaly(
                            "lost-commit",
                            format!("partition {partition}: committed offset read as {offset} after {best} was acknowledged"),
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Ack, Poll};

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
        let kinds: Vec<&str> = check(&h).0.iter().map(|a| a.kind).collect();
        for kind in
            ["lost-write", "duplicate", "inconsistent-offsets", "poll-skip", "nonmonotonic-poll", "garbage-read"]
        {
            assert!(kinds.contains(&kind), "{kind} not reported: {kinds:?}");
        }
    }
}
