//! Metadata quorums of three nodes in-process: each on its own `MemStorage`, messages with a
//! little latency, syncs that complete after a millisecond, virtual time.

use std::collections::BTreeMap;

use super::*;
use crate::metadata::controller::Registration;
use crate::storage::MemStorage;

struct Node {
    storage: MemStorage,
    quorum: MetadataQuorum,
    up: bool,
    sync: Option<(i64, Vec<NamedFile>, i64)>,
    decided: BTreeMap<u64, Result<(), Refusal>>,
}

struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    now_ms: i64,
    in_flight: BTreeMap<(i64, u64), (NodeId, NodeId, Message)>,
    sequence: u64,
    /// Entries between snapshots, and the metadata log's segment size.
    snapshots: (i64, i64),
}

fn voters() -> Vec<NodeId> {
    vec![NodeId(1), NodeId(2), NodeId(3)]
}

impl Cluster {
    fn new() -> Cluster {
        Cluster::with_snapshots(SNAPSHOT_RECORDS_DEFAULT, SEGMENT_BYTES_DEFAULT)
    }

    fn with_snapshots(snapshot_records: i64, segment_bytes: i64) -> Cluster {
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            now_ms: 0,
            in_flight: BTreeMap::new(),
            sequence: 0,
            snapshots: (snapshot_records, segment_bytes),
        };
        for id in voters() {
            let storage = MemStorage::new();
            let quorum = open(id, &storage, 0, cluster.snapshots);
            cluster.nodes.insert(id, Node { storage, quorum, up: true, sync: None, decided: BTreeMap::new() });
        }
        cluster.drain();
        cluster
    }

    fn drain(&mut self) {
        let now = self.now_ms;
        let mut sends = Vec::new();
        for (&id, node) in &mut self.nodes {
            while let Some(output) = node.quorum.poll_output() {
                match output {
                    QuorumOutput::Send { to, message } => sends.push((id, to, message)),
                    QuorumOutput::Sync { files, durable_offset } => node.sync = Some((now + 1, files, durable_offset)),
                    QuorumOutput::Decided { token, result } => {
                        node.decided.insert(token, result);
                    }
                    QuorumOutput::Fault(fault) => panic!("node {id}: {fault}"),
                }
            }
        }
        for (from, to, message) in sends {
            self.sequence += 1;
            self.in_flight.insert((now + 1 + (self.sequence % 3) as i64, self.sequence), (from, to, message));
        }
    }

    fn run_until(&mut self, until_ms: i64) {
        loop {
            let mut next = self.in_flight.keys().next().map_or(i64::MAX, |k| k.0);
            for node in self.nodes.values().filter(|n| n.up) {
                next = next.min(node.quorum.next_timeout_ms());
                next = next.min(node.sync.as_ref().map_or(i64::MAX, |s| s.0));
            }
            if next > until_ms {
                self.now_ms = until_ms;
                return;
            }
            self.now_ms = next.max(self.now_ms);
            let now = self.now_ms;
            while let Some((&key, _)) = self.in_flight.iter().next().filter(|(k, _)| k.0 <= now) {
                let (from, to, message) = self.in_flight.remove(&key).expect("present");
                let node = self.nodes.get_mut(&to).expect("node");
                if node.up {
                    node.quorum.handle_message(now, from, message);
                }
                self.drain();
            }
            for node in self.nodes.values_mut().filter(|n| n.up) {
                if node.sync.as_ref().is_some_and(|s| s.0 <= now) {
                    let (_, files, durable) = node.sync.take().expect("checked");
                    for named in &files {
                        named.file.sync().expect("mem storage");
                    }
                    node.quorum.handle_synced(now, durable);
                }
                if node.quorum.next_timeout_ms() <= now {
                    node.quorum.handle_timeout(now);
                }
            }
            self.drain();
        }
    }

    fn controller(&self) -> NodeId {
        let active: Vec<NodeId> =
            self.nodes.iter().filter(|(_, n)| n.up && n.quorum.is_active_controller()).map(|(&id, _)| id).collect();
        assert_eq!(active.len(), 1, "one active controller");
        active[0]
    }

    /// Sends a decision to the active controller and runs until it is answered.
    fn decide(&mut self, token: u64, decision: Decision) -> Result<(), Refusal> {
        let id = self.controller();
        let now = self.now_ms;
        self.nodes.get_mut(&id).expect("node").quorum.decide(now, token, decision);
        self.drain();
        let until = self.now_ms + 1_000;
        while self.now_ms < until {
            if let Some(result) = self.nodes.get_mut(&id).expect("node").decided.remove(&token) {
                return result;
            }
            let step = self.now_ms + 5;
            self.run_until(step);
        }
        panic!("decision {token} not answered within a second");
    }

    fn crash_and_restart(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node");
        node.storage.crash();
        node.quorum = open(id, &node.storage, self.now_ms, self.snapshots);
        node.sync = None;
        self.drain();
    }
}

fn open(
    id: NodeId,
    storage: &MemStorage,
    now_ms: i64,
    (snapshot_records, segment_bytes): (i64, i64),
) -> MetadataQuorum {
    let mut config = QuorumConfig::new(id, voters());
    config.controller.session_timeout_ms = 60_000;
    config.snapshot_records = snapshot_records;
    config.segment_bytes = segment_bytes;
    MetadataQuorum::open(config, Arc::new(storage.clone()), u64::from(id.0 as u32), now_ms).expect("mem storage")
}

fn registration(node: i32) -> Decision {
    Decision::Register(Registration {
        node: NodeId(node),
        host: "127.0.0.1".into(),
        port: 9091 + node,
        rack: None,
        incarnation: 1,
    })
}

#[test]
fn three_nodes_elect_a_controller_and_every_image_gets_its_decisions() {
    let mut c = Cluster::new();
    c.run_until(6_000);
    for node in 1..=3 {
        assert_eq!(c.decide(u64::from(node as u32), registration(node)), Ok(()));
        let heartbeat = Decision::Heartbeat { node: NodeId(node), incarnation: 1, caught_up: true };
        assert_eq!(c.decide(10 + u64::from(node as u32), heartbeat), Ok(()));
    }
    let create =
        Decision::CreateTopic { name: "orders".into(), partitions: 3, replication_factor: 3, configs: BTreeMap::new() };
    assert_eq!(c.decide(20, create.clone()), Ok(()));
    assert_eq!(c.decide(21, create).unwrap_err().0, ErrorCode::TopicAlreadyExists);
    c.run_until(c.now_ms + 2_000);
    for (id, node) in &c.nodes {
        let image = node.quorum.image();
        let topic = image.topic("orders").unwrap_or_else(|| panic!("node {id} has no topic"));
        assert_eq!(topic.partitions.len(), 3);
        assert!(topic.partitions.iter().all(|p| p.replicas.len() == 3));
        assert_eq!(image.live_brokers().count(), 3, "node {id}");
    }
    // DescribeQuorum on the leader knows every voter's log end; a follower only its own.
    let leader = c.controller();
    let described = c.nodes[&leader].quorum.describe();
    let partition = &described.topics[0].partitions[0];
    assert_eq!(partition.leader_id.0, leader.0);
    assert!(partition.high_watermark > 0);
    assert_eq!(partition.current_voters.len(), 3);
    assert!(partition.current_voters.iter().all(|v| v.log_end_offset == partition.high_watermark), "{partition:?}");
    // A follower refuses decisions: only the active controller decides.
    let follower = voters().into_iter().find(|&id| id != c.controller()).expect("a follower");
    let node = c.nodes.get_mut(&follower).expect("node");
    node.quorum.decide(0, 99, Decision::DeleteTopic { name: "orders".into() });
    let Some(QuorumOutput::Decided { token: 99, result: Err((code, _)) }) = node.quorum.poll_output() else {
        panic!("refused at once")
    };
    assert_eq!(code, ErrorCode::NotController);
}

#[test]
fn a_crashed_controller_is_replaced_and_nothing_committed_is_lost() {
    let mut c = Cluster::new();
    c.run_until(6_000);
    assert_eq!(c.decide(1, registration(1)), Ok(()));
    let old = c.controller();
    let epoch = c.nodes[&old].quorum.raft().epoch();
    c.nodes.get_mut(&old).expect("node").up = false;
    c.run_until(c.now_ms + 10_000);
    let new = c.controller();
    assert_ne!(new, old);
    assert!(c.nodes[&new].quorum.raft().epoch() > epoch);
    assert!(c.nodes[&new].quorum.image().brokers.contains_key(&NodeId(1)), "the committed registration survived");
    assert_eq!(c.decide(2, registration(2)), Ok(()));
    // The old controller comes back from its files and catches up as a follower.
    c.nodes.get_mut(&old).expect("node").up = true;
    c.crash_and_restart(old);
    c.run_until(c.now_ms + 5_000);
    let image = c.nodes[&old].quorum.image();
    assert_eq!(image.brokers.keys().copied().collect::<Vec<_>>(), vec![NodeId(1), NodeId(2)]);
    assert!(!c.nodes[&old].quorum.is_active_controller());
}

#[test]
fn snapshots_bound_the_log_and_a_node_far_behind_catches_up_from_one() {
    let mut c = Cluster::with_snapshots(8, 1_024);
    c.run_until(6_000);
    for node in 1..=3 {
        assert_eq!(c.decide(u64::from(node as u32), registration(node)), Ok(()));
        let heartbeat = Decision::Heartbeat { node: NodeId(node), incarnation: 1, caught_up: true };
        assert_eq!(c.decide(10 + u64::from(node as u32), heartbeat), Ok(()));
    }
    let behind = voters().into_iter().find(|&id| id != c.controller()).expect("a follower");
    c.nodes.get_mut(&behind).expect("node").up = false;
    for i in 0..40 {
        let create = Decision::CreateTopic {
            name: format!("t{i}"),
            partitions: 2,
            replication_factor: 3,
            configs: BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
        };
        assert_eq!(c.decide(100 + i, create), Ok(()));
    }
    c.run_until(c.now_ms + 1_000);
    let leader = c.controller();
    let leader_log = &c.nodes[&leader].quorum.log;
    let snapshot = leader_log.snapshot().expect("the leader snapshotted its image");
    assert!(snapshot.end_offset > leader_log.end_offset() - 20, "snapshots follow the log: {snapshot:?}");
    let files = c.nodes[&leader].storage.list_dir(METADATA_LOG_DIR).unwrap();
    assert!(!files.contains(&"00000000000000000000.log".to_string()), "segments before the snapshot go: {files:?}");
    assert!(c.nodes[&behind].quorum.log.end_offset() < leader_log.log_start_offset());

    // The node that missed it all fetches the leader's snapshot, then the entries after it.
    c.nodes.get_mut(&behind).expect("node").up = true;
    c.run_until(c.now_ms + 5_000);
    let reference = c.nodes[&leader].quorum.image().clone();
    assert_eq!(reference.topics.len(), 40);
    for (id, node) in &c.nodes {
        assert_eq!(node.quorum.image(), &reference, "node {id}");
    }
    assert!(c.nodes[&behind].quorum.log.snapshot().is_some_and(|id| id.end_offset > 0));

    // A restart starts the image from the node's own snapshot and replays the entries after it.
    c.crash_and_restart(behind);
    c.run_until(c.now_ms + 5_000);
    assert_eq!(c.nodes[&behind].quorum.image(), &reference);
    assert_eq!(c.decide(500, Decision::DeleteTopic { name: "t0".into() }), Ok(()));
    c.run_until(c.now_ms + 1_000);
    for (id, node) in &c.nodes {
        assert!(node.quorum.image().topic("t0").is_none(), "node {id}");
    }
}
