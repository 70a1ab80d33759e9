//! Where a new partition's replicas go. The controller calls this for CreateTopics and
//! CreatePartitions over the live (unfenced) brokers.
//!
//! - Each partition's first replica (its preferred leader) walks the brokers round-robin,
//!   continuing from where the cluster's existing partitions left off, so leaders spread
//!   evenly across topics, not only within one.
//! - With racks, the brokers are ordered rack by rack in turn (a1, b1, c1, a2, b2, ...), and a
//!   partition's other replicas are taken in that order skipping racks it already has, so
//!   each replica sits in a different rack while there are enough racks.
//! - The followers of consecutive partitions start at different distances from the leader,
//!   so one broker's failure spreads its followers' load over several others.

use std::collections::BTreeMap;

use crate::ids::NodeId;

/// Replica lists for `partitions` new partitions with `replication_factor` replicas each.
/// `brokers` are the live brokers with their racks; `start` is how many partitions the
/// cluster already has (where the round-robin continues).
pub fn place(
    brokers: &[(NodeId, Option<String>)],
    partitions: usize,
    replication_factor: usize,
    start: usize,
) -> Result<Vec<Vec<NodeId>>, String> {
    if replication_factor == 0 {
        return Err("replication factor must be at least 1".into());
    }
    if replication_factor > brokers.len() {
        return Err(format!(
            "replication factor {replication_factor} is larger than the {} available brokers",
            brokers.len()
        ));
    }
    let order = rack_alternated(brokers);
    let count = order.len();
    let racks: BTreeMap<NodeId, Option<String>> = brokers.iter().cloned().collect();
    let mut placed = Vec::with_capacity(partitions);
    for p in 0..partitions {
        let first = (start + p) % count;
        // Followers begin after a shift that grows every full round of leaders.
        let shift = 1 + ((start + p) / count) % (count - 1).max(1);
        let mut replicas = vec![order[first]];
        let mut used_racks: Vec<&Option<String>> = vec![&racks[&order[first]]];
        let mut candidate = 0;
        while replicas.len() < replication_factor {
            // First pass: brokers in racks not used yet; after a full turn, anyone not chosen.
            let offset = (first + shift + candidate) % count;
            let broker = order[offset];
            let rack = &racks[&broker];
            let new_rack = rack.is_none() || !used_racks.contains(&rack);
            if !replicas.contains(&broker) && (new_rack || candidate >= count) {
                replicas.push(broker);
                used_racks.push(rack);
            }
            candidate += 1;
            assert!(candidate <= 2 * count + replication_factor, "placement always finishes");
        }
        placed.push(replicas);
    }
    Ok(placed)
}

/// Brokers by id within each rack, the racks taken in turn; without racks, by id.
fn rack_alternated(brokers: &[(NodeId, Option<String>)]) -> Vec<NodeId> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<NodeId>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_rack.entry(rack.as_deref()).or_default().push(*id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let mut order = Vec::with_capacity(brokers.len());
    let mut round = 0;
    while order.len() < brokers.len() {
        for ids in by_rack.values() {
            if let Some(&id) = ids.get(round) {
                order.push(id);
            }
        }
        round += 1;
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(racks: &[Option<&str>]) -> Vec<(NodeId, Option<String>)> {
        racks.iter().enumerate().map(|(i, r)| (NodeId(i as i32 + 1), r.map(str::to_string))).collect()
    }

    fn leader_counts(placed: &[Vec<NodeId>]) -> BTreeMap<NodeId, usize> {
        let mut counts = BTreeMap::new();
        for replicas in placed {
            *counts.entry(replicas[0]).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn leaders_spread_evenly_and_replicas_are_distinct() {
        let b = brokers(&[None, None, None]);
        let placed = place(&b, 6, 3, 0).unwrap();
        for replicas in &placed {
            let mut sorted = replicas.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 3, "{replicas:?}");
        }
        assert!(leader_counts(&placed).values().all(|&n| n == 2), "{placed:?}");
        // A second topic continues the round-robin: over both, leaders stay even.
        let more = place(&b, 4, 2, 6).unwrap();
        let all: Vec<Vec<NodeId>> = placed.into_iter().chain(more).collect();
        let counts = leader_counts(&all);
        let (min, max) = (counts.values().min().unwrap(), counts.values().max().unwrap());
        assert!(max - min <= 1, "{counts:?}");
    }

    #[test]
    fn replicas_sit_in_different_racks_while_there_are_enough() {
        // Uneven racks: a has three brokers, b two, c one.
        let b = brokers(&[Some("a"), Some("a"), Some("a"), Some("b"), Some("b"), Some("c")]);
        let placed = place(&b, 12, 3, 0).unwrap();
        let rack = |id: NodeId| b.iter().find(|(n, _)| *n == id).unwrap().1.clone();
        for replicas in &placed {
            let mut racks: Vec<_> = replicas.iter().map(|&r| rack(r)).collect();
            racks.sort();
            racks.dedup();
            assert_eq!(racks.len(), 3, "each replica in its own rack: {replicas:?}");
        }
        // More replicas than racks: racks repeat, brokers do not.
        let placed = place(&b, 4, 5, 0).unwrap();
        for replicas in &placed {
            let mut sorted = replicas.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 5);
        }
    }

    #[test]
    fn too_few_brokers_is_an_error() {
        assert!(place(&brokers(&[None, None]), 1, 3, 0).unwrap_err().contains("larger than the 2"));
        assert!(place(&brokers(&[None]), 1, 0, 0).is_err());
        assert_eq!(place(&brokers(&[None]), 2, 1, 0).unwrap(), vec![vec![NodeId(1)], vec![NodeId(1)]]);
    }
}
