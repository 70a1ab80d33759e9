//! One simulated run of a cluster, fully determined by its seed:
//!
//! 1. **Set-up**: 3 or 5 brokers (the seed chooses), each on its own [`SimDisk`], forming one
//!    cluster; topic `replicated` with every broker a replica of each of its partitions.
//! 2. **Fault phase**: idempotent acks=all producers that find each partition's leader through
//!    Metadata and follow it when it moves, consumers reading from the leaders, committers,
//!    and metadata clients creating topics and listing them through random brokers, while the
//!    supervisor kills and restarts brokers (their disks losing, tearing or garbling unsynced
//!    writes), stops one gracefully, kills a majority at once, isolates a broker, cuts the
//!    link between two brokers both ways or one way, cuts the controller off from the other
//!    brokers, cuts a transaction coordinator off the same way, clogs a client's link, and the
//!    disks fail writes and syncs now and then. Transactional drivers run beside them
//!    ([`crate::txn`], with its own checks).
//! 3. **Healing phase**: faults stop, every link heals, every broker runs; each producer must
//!    be acknowledged within [`HEAL_BOUND`].
//! 4. **Final read** of every partition from its leader; then, with the producers stopped and
//!    the followers caught up, every broker's replica is read from its disk.
//!
//! Checkers: no acknowledged record lost or moved (lost-write), none stored twice (duplicate),
//! no offset read as two values, so no consumer read a record a failover later cut
//! (inconsistent-offsets), consumers never sent backwards (nonmonotonic-poll), replicas
//! agree: once caught up, every replica of a partition holds the same bytes
//! (replica-divergence), and the metadata log, as the set of topics that metadata clients
//! create and list through random brokers, keeps what it acknowledged in real-time order and
//! shows every broker a prefix of it (`checker::topic_set`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headwater_core::log::batch::build::{batch, Idempotence, Record};
use headwater_core::log::batch::BatchHeader;
use headwater_core::log::{Log, LogConfig};
use headwater_core::planted::PlantedBug;
use headwater_server::config::RawConfig;
use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle};
use madsim::time::{sleep, Instant};

use crate::checker::{check, Anomaly};
use crate::client::{decode_records, Conn};
use crate::disk::{DiskFaults, SimDisk};
use crate::history::{Ack, CommitEvent, CreateOutcome, HighWatermark, History, Poll, TopicOp, TopicOpKind};
use crate::scenario::{GracefulStop, RunReport};
use crate::txn;

pub const TOPIC: &str = "replicated";
pub const PARTITIONS: i32 = 2;
const PRODUCERS: u32 = 3;
const CONSUMERS: u32 = 2;
/// Groups whose offsets a committer moves on through the faults, each with simple commits
/// (no membership) to its coordinator, the leader of its `__consumer_offsets` partition.
const COMMIT_GROUPS: [&str; 2] = ["commits-a", "commits-b"];
/// `offsets_topic_num_partitions` in the simulator: few, so a run stays cheap, and more than
/// one, so the groups may live on different leaders.
const OFFSETS_PARTITIONS: i32 = 3;
/// Clients that create topics of their own and list the topics through random brokers.
const METADATA_CLIENTS: u32 = 2;
/// One metadata call in this many is a create (during the fault phase): each topic costs the
/// brokers a partition for the rest of the run.
const METADATA_CREATE_EVERY: u32 = 10;
/// The metadata clients' topics start with this; a client's n-th is `lin-<client>-<n>`.
const METADATA_TOPIC_PREFIX: &str = "lin-";
/// CreateTopics errors the controller gives only before it proposes anything (invalid name,
/// partitions, replication factor, assignment or config): the topic can never appear. Every
/// other error may come after the records were proposed (NOT_CONTROLLER from a controller that
/// lost its leadership, KAFKA_STORAGE_ERROR from a failed sync), so its outcome is unknown.
const CREATE_REFUSED: [i16; 5] = [17, 37, 38, 39, 40];
/// Metadata-log entries between two snapshots of a node's image (a run writes a few hundred).
const METADATA_SNAPSHOT_RECORDS: i64 = 48;
const FAULT_PHASE: Duration = Duration::from_secs(20);
/// After healing starts, every producer must be acknowledged within this (elections take a
/// few seconds, and a broker killed last must come back and be found first).
pub const HEAL_BOUND: Duration = Duration::from_secs(20);
const BROKER_PORT: u16 = 9092;
/// Errors after which a producer asks for the leaders again and retries the same batch.
const RETRIABLE: [i16; 8] = [3, 5, 6, 7, 15, 19, 56, 74];

macro_rules! trace {
    ($($arg:tt)*) => {
        if std::env::var_os("HEADWATER_SIM_VERBOSE").is_some() {
            eprintln!("[sim] {}", format!($($arg)*));
        }
    };
}

struct Shared {
    history: Mutex<History>,
    stop: AtomicBool,
    /// Faults have stopped: metadata clients create no more topics (each costs the brokers a
    /// partition for the rest of the run) and only read.
    healing: AtomicBool,
    /// The controller as the latest Metadata answer a metadata client got named it (0: none
    /// yet), for the fault that cuts it off from the other brokers.
    controller: AtomicI32,
    brokers: i32,
    last_ack_ms: Mutex<BTreeMap<u32, u64>>,
    started: Instant,
}

impl Shared {
    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn elapsed_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }
}

struct Broker {
    node: NodeHandle,
    disk: SimDisk,
    graceful: Arc<GracefulStop>,
}

fn broker_ip(id: i32) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, id as u8)
}

pub(crate) fn broker_addr(id: i32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(broker_ip(id)), BROKER_PORT)
}

/// Runs one seed's cluster scenario. Must be called inside a madsim runtime seeded with `seed`.
pub async fn run(seed: u64, planted: Option<PlantedBug>) -> RunReport {
    headwater_core::planted::set(planted);
    let handle = Handle::current();
    let mut rng = thread_rng();
    let count: i32 = if rng.gen_bool(0.7) { 3 } else { 5 };
    let faults = DiskFaults {
        write_error: rng.gen_range(0.0..0.0005),
        sync_error: rng.gen_range(0.0..0.002),
        torn_write: rng.gen_range(0.3..0.9),
        garble: rng.gen_range(0.0..0.5),
    };
    let brokers: BTreeMap<i32, Broker> = (1..=count)
        .map(|id| {
            let disk = SimDisk::new();
            let graceful = Arc::new(GracefulStop::default());
            let node = start_broker(&handle, id, count, disk.clone(), seed, graceful.clone());
            (id, Broker { node, disk, graceful })
        })
        .collect();
    let shared = Arc::new(Shared {
        history: Mutex::new(History::default()),
        stop: AtomicBool::new(false),
        healing: AtomicBool::new(false),
        controller: AtomicI32::new(0),
        brokers: count,
        last_ack_ms: Mutex::new(BTreeMap::new()),
        started: Instant::now(),
    });

    // The controller creates the topic; any other broker answers NOT_CONTROLLER.
    let admin = client_node(&handle, "admin", 100);
    let created = admin
        .spawn(async move {
            for attempt in 0..300 {
                let broker = attempt % count + 1;
                if let Ok(mut conn) = Conn::connect(broker_addr(broker)).await {
                    let mut made = 0;
                    for (topic, partitions) in [(TOPIC, PARTITIONS), (txn::TXN_TOPIC, txn::TXN_PARTITIONS)] {
                        if let Ok(0 | 36) = conn.create_replicated_topic(topic, partitions, count as i16).await {
                            made += 1;
                        }
                    }
                    if made == 2 {
                        return true;
                    }
                }
                sleep(Duration::from_millis(100)).await;
            }
            false
        })
        .await
        .unwrap_or(false);
    assert!(created, "seed {seed}: could not create the topic");

    let mut clients = Vec::new();
    let txn_run = txn::TxnRun::new(count, broker_addr);
    for (i, id) in txn_run.drivers().enumerate() {
        let node = client_node(&handle, &format!("txn-{id}"), 90 + i as u8);
        node.spawn(txn::driver(id, txn_run.clone()));
        clients.push(node);
    }
    let node = client_node(&handle, "txn-reader", 95);
    node.spawn(txn::reader(txn_run.clone()));
    clients.push(node);
    for id in 1..=PRODUCERS {
        let node = client_node(&handle, &format!("producer-{id}"), id as u8);
        node.spawn(producer(id, shared.clone()));
        clients.push(node);
    }
    for id in 0..CONSUMERS {
        let node = client_node(&handle, &format!("consumer-{id}"), 50 + id as u8);
        node.spawn(consumer(id, shared.clone()));
        clients.push(node);
    }
    for (i, group) in COMMIT_GROUPS.into_iter().enumerate() {
        let node = client_node(&handle, &format!("committer-{group}"), 70 + i as u8);
        node.spawn(committer(group, shared.clone()));
        clients.push(node);
    }
    for id in 0..METADATA_CLIENTS {
        let node = client_node(&handle, &format!("metadata-{id}"), 80 + id as u8);
        node.spawn(metadata_client(id, shared.clone()));
        clients.push(node);
    }

    // Fault phase.
    for broker in brokers.values() {
        broker.disk.set_faults(faults);
    }
    let net = NetSim::current();
    let ids: Vec<i32> = brokers.keys().copied().collect();
    let pick = |rng: &mut madsim::rand::GlobalRng| ids[rng.gen_range(0..ids.len())];
    let mut fault_count: u64 = 0;
    let deadline = Instant::now() + FAULT_PHASE;
    // Once per run a bit of a running broker's stored records rots (`SimDisk::rot`): the scrub
    // or a checked read finds it while the broker runs, or recovery at its next restart; either
    // way the replica fences its vote, cuts and fetches again (D30).
    let mut rot_at = Some(Instant::now() + Duration::from_millis(rng.gen_range(2_000..15_000)));
    while Instant::now() < deadline {
        sleep(Duration::from_millis(rng.gen_range(200..2500))).await;
        if rot_at.is_some_and(|at| Instant::now() >= at) {
            let victim = pick(&mut rng);
            if let Some((file, offset)) = brokers[&victim].disk.rot(&format!("{TOPIC}-")) {
                trace!("fault: a bit of broker {victim}'s stored batch at {offset} in {file} flips");
                rot_at = None;
                fault_count += 1;
            }
        }
        fault_count += 1;
        let fault = rng.gen_range(0..23);
        match fault {
            0..=6 => {
                let victim = &brokers[&pick(&mut rng)];
                trace!("fault: kill and restart broker {}", victim.node.id());
                handle.kill(victim.node.id());
                victim.disk.crash();
                sleep(Duration::from_millis(rng.gen_range(0..3000))).await;
                handle.restart(victim.node.id());
            }
            7 => {
                // A majority down at once: nothing can commit until they return.
                let first = pick(&mut rng);
                let victims: Vec<i32> =
                    ids.iter().copied().cycle().skip(first as usize).take(ids.len() / 2 + 1).collect();
                trace!("fault: kill brokers {victims:?} at once");
                for id in &victims {
                    handle.kill(brokers[id].node.id());
                    brokers[id].disk.crash();
                }
                sleep(Duration::from_millis(rng.gen_range(0..3000))).await;
                for id in &victims {
                    handle.restart(brokers[id].node.id());
                }
            }
            8..=9 => {
                let victim = &brokers[&pick(&mut rng)];
                trace!("fault: stop broker {} gracefully and start it again", victim.node.id());
                if !victim.graceful.stop().await {
                    trace!("it did not stop gracefully in time: killed instead");
                    handle.kill(victim.node.id());
                    victim.disk.crash();
                }
                sleep(Duration::from_millis(rng.gen_range(0..1000))).await;
                handle.restart(victim.node.id());
            }
            10..=11 => {
                let victim = &brokers[&pick(&mut rng)];
                trace!("fault: isolate broker {}", victim.node.id());
                net.clog_node(victim.node.id());
                sleep(Duration::from_millis(rng.gen_range(500..5000))).await;
                net.unclog_node(victim.node.id());
            }
            12..=14 => {
                let (a, b) = (pick(&mut rng), pick(&mut rng));
                let one_way = rng.gen_bool(0.4);
                trace!("fault: cut the link {a} -> {b}{}", if one_way { " one way" } else { " both ways" });
                let (a, b) = (brokers[&a].node.id(), brokers[&b].node.id());
                net.clog_link(a, b);
                if !one_way {
                    net.clog_link(b, a);
                }
                sleep(Duration::from_millis(rng.gen_range(500..5000))).await;
                net.unclog_link(a, b);
                net.unclog_link(b, a);
            }
            15..=16 => {
                // A broker that reaches only one other: the links to every other broker cut.
                let bridge = pick(&mut rng);
                let keep = pick(&mut rng);
                trace!("fault: broker {bridge} reaches only broker {keep}");
                let cut: Vec<i32> = ids.iter().copied().filter(|&id| id != bridge && id != keep).collect();
                for id in &cut {
                    net.clog_link(brokers[&bridge].node.id(), brokers[id].node.id());
                    net.clog_link(brokers[id].node.id(), brokers[&bridge].node.id());
                }
                sleep(Duration::from_millis(rng.gen_range(500..5000))).await;
                for id in &cut {
                    net.unclog_link(brokers[&bridge].node.id(), brokers[id].node.id());
                    net.unclog_link(brokers[id].node.id(), brokers[&bridge].node.id());
                }
            }
            17..=21 => {
                // A leader cut off from the other brokers while clients still reach it
                // (Jepsen's partition of the leader): the controller (20-21) or a transaction
                // coordinator (17-19), as clients last named them. It goes on answering until
                // it finds it has lost its quorum, and the majority elects another meanwhile.
                let (named, what) = match fault {
                    17..=19 => (txn_run.coordinator(), "a transaction coordinator"),
                    _ => (shared.controller.load(Ordering::SeqCst), "the controller"),
                };
                let victim = if ids.contains(&named) { named } else { pick(&mut rng) };
                trace!("fault: broker {victim} ({what} as last named) cut off from the other brokers");
                let links: Vec<(madsim::task::NodeId, madsim::task::NodeId)> = ids
                    .iter()
                    .filter(|&&id| id != victim)
                    .flat_map(|id| {
                        let (a, b) = (brokers[&victim].node.id(), brokers[id].node.id());
                        [(a, b), (b, a)]
                    })
                    .collect();
                for &(a, b) in &links {
                    net.clog_link(a, b);
                }
                sleep(Duration::from_millis(rng.gen_range(500..5000))).await;
                for &(a, b) in &links {
                    net.unclog_link(a, b);
                }
            }
            _ => {
                let client = &clients[rng.gen_range(0..clients.len())];
                let broker = &brokers[&pick(&mut rng)];
                trace!("fault: clog client {} from broker {}", client.id(), broker.node.id());
                net.clog_link(client.id(), broker.node.id());
                net.clog_link(broker.node.id(), client.id());
                sleep(Duration::from_millis(rng.gen_range(100..3000))).await;
                net.unclog_link(client.id(), broker.node.id());
                net.unclog_link(broker.node.id(), client.id());
            }
        }
    }

    // Healing phase: no more faults; every broker restarts once, so a partition a failed
    // write or fsync took offline is recovered from what its disk really holds.
    trace!("healing");
    shared.healing.store(true, Ordering::SeqCst);
    for broker in brokers.values() {
        broker.disk.set_faults(DiskFaults::default());
        handle.kill(broker.node.id());
        broker.disk.crash();
        handle.restart(broker.node.id());
        fault_count += 1;
    }
    let heal_start = shared.elapsed_ms();
    sleep(HEAL_BOUND).await;
    {
        let last = shared.last_ack_ms.lock().expect("acks lock");
        let mut history = shared.history.lock().expect("history lock");
        for id in 1..=PRODUCERS {
            if last.get(&id).is_none_or(|&t| t < heal_start) {
                history.stuck.push(format!("producer {id} got no acknowledgement within {HEAL_BOUND:?} after healing"));
            }
        }
    }
    shared.stop.store(true, Ordering::SeqCst);
    txn_run.stop.store(true, Ordering::SeqCst);
    sleep(Duration::from_secs(2)).await;

    let reader = client_node(&handle, "final-reader", 200);
    let final_shared = shared.clone();
    let complete = reader.spawn(async move { final_read(&final_shared).await }).await.unwrap_or(false);
    if !complete {
        shared.history.lock().expect("history lock").stuck.push("the final read could not complete".into());
    }
    let final_shared = shared.clone();
    reader.spawn(async move { final_commits(&final_shared).await }).await.ok();
    let final_shared = shared.clone();
    reader.spawn(async move { final_topic_reads(&final_shared).await }).await.ok();
    // Transactions the drivers left open are aborted at their timeout.
    sleep(txn::SETTLE).await;
    reader.spawn(txn::final_read(txn_run.clone())).await.ok();

    // Followers catch up, then every replica is read from its broker's disk.
    sleep(Duration::from_secs(3)).await;
    let mut divergences = Vec::new();
    for broker in brokers.values() {
        handle.kill(broker.node.id());
    }
    for partition in 0..PARTITIONS {
        let dir = format!("{TOPIC}-{partition}");
        let mut replicas: Vec<(i32, Result<Vec<u8>, String>)> = Vec::new();
        for (&id, broker) in &brokers {
            replicas.push((id, stored(&broker.disk, &dir)));
        }
        let (first_id, first) = &replicas[0];
        for (id, bytes) in &replicas[1..] {
            match (first, bytes) {
                (Ok(a), Ok(b)) if a == b => {}
                (Ok(a), Ok(b)) => divergences.push(format!(
                    "partition {partition}: broker {first_id} holds {} bytes, broker {id} {} bytes, and they differ \
                     first at {}",
                    a.len(),
                    b.len(),
                    first_difference(a, b)
                )),
                (Err(e), _) | (_, Err(e)) => {
                    divergences.push(format!("partition {partition}: unreadable replica: {e}"))
                }
            }
        }
    }

    let history = shared.history.lock().expect("history lock");
    let (mut anomalies, verified) = check(&history);
    anomalies.extend(divergences.into_iter().map(|detail| Anomaly { kind: "replica-divergence", detail }));
    anomalies.extend(txn::check(&txn_run));
    trace!("transactions: {} commits acknowledged", txn_run.committed());
    let disk_faults: u64 = brokers.values().map(|b| b.disk.counts().total()).sum();
    headwater_core::planted::set(None);
    RunReport {
        seed,
        faults: fault_count + disk_faults,
        acked: history.acks.iter().filter(|a| a.durable).count() as u64,
        verified,
        anomalies,
    }
}

/// Where two replicas' bytes first differ: the batch (base offset, leader epoch, size) each
/// holds there.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let (mut at_a, mut at_b) = (0, 0);
    loop {
        let (ha, hb) = (BatchHeader::parse(&a[at_a..]), BatchHeader::parse(&b[at_b..]));
        let describe = |h: &Option<BatchHeader>| {
            h.as_ref().map_or("nothing".to_string(), |h| {
                format!(
                    "batch {}..={} epoch {} control {}",
                    h.base_offset,
                    h.last_offset(),
                    h.partition_leader_epoch,
                    h.is_control()
                )
            })
        };
        let (Some(x), Some(y)) = (&ha, &hb) else { return format!("{} / {}", describe(&ha), describe(&hb)) };
        let (sa, sb) = (x.size_bytes().unwrap_or(0), x.size_bytes().unwrap_or(0).max(y.size_bytes().unwrap_or(0)));
        if a.get(at_a..at_a + sa) != b.get(at_b..at_b + sb) || sa == 0 {
            return format!("{} / {}", describe(&ha), describe(&hb));
        }
        at_a += sa;
        at_b += sb;
    }
}

/// A replica's whole log as stored on `disk` (recovered as the broker would open it).
fn stored(disk: &SimDisk, dir: &str) -> Result<Vec<u8>, String> {
    let storage: Arc<dyn headwater_core::Storage> = Arc::new(disk.clone());
    let (log, _) = Log::open(storage, dir, LogConfig::default(), 0, 0, 0).map_err(|e| format!("{dir}: {e}"))?;
    let read = log.read(log.log_start_offset(), usize::MAX / 2, log.end_offset(), true).map_err(|e| e.to_string())?;
    Ok(read.records.to_vec())
}

fn start_broker(
    handle: &Handle,
    id: i32,
    count: i32,
    disk: SimDisk,
    seed: u64,
    graceful: Arc<GracefulStop>,
) -> NodeHandle {
    let nodes: Vec<String> = (1..=count).map(|n| format!("{n}@{}", broker_addr(n))).collect();
    let nodes = nodes.join(",");
    handle
        .create_node()
        .name(format!("broker-{id}"))
        .ip(IpAddr::V4(broker_ip(id)))
        .init(move || {
            let disk = disk.clone();
            let graceful = graceful.clone();
            let nodes = nodes.clone();
            async move {
                let mut raw = RawConfig::default();
                for (flag, value) in [
                    ("--listen", broker_addr(id).to_string()),
                    ("--data-dir", "sim".to_string()),
                    ("--node-id", id.to_string()),
                    ("--cluster-nodes", nodes),
                    ("--cluster-id", "sim-cluster".to_string()),
                    ("--auto-create-topics", "false".to_string()),
                    ("--offsets-topic-num-partitions", OFFSETS_PARTITIONS.to_string()),
                    ("--transaction-state-num-partitions", OFFSETS_PARTITIONS.to_string()),
                    // Snapshots every few dozen metadata entries and small segments, so a run
                    // moves metadata log starts and a restarted node may need FetchSnapshot.
                    ("--metadata-snapshot-records", METADATA_SNAPSHOT_RECORDS.to_string()),
                    ("--metadata-log-segment-bytes", "4096".to_string()),
                ] {
                    raw.set_flag(flag, value).expect("valid sim flag");
                }
                let config = raw.build().expect("valid sim config");
                let storage: Arc<dyn headwater_core::Storage> = Arc::new(disk);
                let shutdown = graceful.requested.notified();
                match headwater_server::server::serve(config, storage, seed ^ id as u64, shutdown).await {
                    Ok(()) => graceful.stopped.store(true, Ordering::SeqCst),
                    Err(e) => trace!("broker {id} failed to start: {e}"),
                }
                std::future::pending::<()>().await;
            }
        })
        .build()
}

fn client_node(handle: &Handle, name: &str, host: u8) -> NodeHandle {
    handle.create_node().name(name).ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, host))).build()
}

/// Where a client thinks each partition's leader is, and its connections to the brokers.
struct Routes {
    shared: Arc<Shared>,
    leaders: BTreeMap<i32, i32>,
    conns: BTreeMap<i32, Conn>,
}

impl Routes {
    fn new(shared: &Arc<Shared>) -> Routes {
        Routes { shared: shared.clone(), leaders: BTreeMap::new(), conns: BTreeMap::new() }
    }

    async fn conn(&mut self, broker: i32) -> Option<&mut Conn> {
        if let std::collections::btree_map::Entry::Vacant(entry) = self.conns.entry(broker) {
            entry.insert(Conn::connect(broker_addr(broker)).await.ok()?);
        }
        self.conns.get_mut(&broker)
    }

    /// Asks a random broker for the leaders, and records which leader it names for each epoch.
    async fn refresh(&mut self) {
        let broker = thread_rng().gen_range(1..=self.shared.brokers);
        let Some(conn) = self.conn(broker).await else { return };
        match conn.leaders(TOPIC).await {
            Ok(leaders) => {
                let named = leaders.into_iter().filter(|(_, (leader, _))| *leader > 0);
                let mut history = self.shared.history.lock().expect("history lock");
                self.leaders = named
                    .map(|(partition, (leader, epoch))| {
                        history.leaders.entry((partition, epoch)).or_default().insert(leader);
                        (partition, leader)
                    })
                    .collect();
            }
            Err(_) => {
                self.conns.remove(&broker);
            }
        }
    }

    /// The connection to `partition`'s leader, if one is known.
    async fn leader(&mut self, partition: i32) -> Option<(i32, &mut Conn)> {
        if !self.leaders.contains_key(&partition) {
            self.refresh().await;
        }
        let leader = *self.leaders.get(&partition)?;
        Some((leader, self.conn(leader).await?))
    }

    fn forget(&mut self, broker: i32) {
        self.conns.remove(&broker);
        self.leaders.clear();
    }
}

/// An idempotent acks=all producer that follows each partition's leader. It retries a batch
/// with the same sequence numbers (wherever the leader has moved) until it is answered, so a
/// batch whose acknowledgement was lost is found as a duplicate rather than stored twice. On a
/// sequence or epoch error it starts over with a new producer id and never resends the old
/// values (their fate is unknown).
async fn producer(id: u32, shared: Arc<Shared>) {
    let mut rng = thread_rng();
    let mut routes = Routes::new(&shared);
    let mut identity: Option<(i64, i16)> = None;
    let mut sequences = [0i32; PARTITIONS as usize];
    let mut pending: Option<(i32, Vec<String>, u32)> = None;
    let mut counter: u64 = 0;
    let mut next_partition = rng.gen_range(0..PARTITIONS);
    while !shared.stop.load(Ordering::SeqCst) {
        if identity.is_none() {
            let broker = rng.gen_range(1..=shared.brokers);
            let Some(conn) = routes.conn(broker).await else {
                sleep(Duration::from_millis(100)).await;
                continue;
            };
            match conn.init_producer_id().await {
                Ok((0, producer_id, epoch)) => {
                    identity = Some((producer_id, epoch));
                    sequences = [0; PARTITIONS as usize];
                }
                Ok(_) => sleep(Duration::from_millis(100)).await,
                Err(_) => routes.forget(broker),
            }
            continue;
        }
        let (producer_id, epoch) = identity.expect("initialised above");
        let (partition, values, attempts) = pending.take().unwrap_or_else(|| {
            let partition = next_partition;
            next_partition = (next_partition + 1) % PARTITIONS;
            let values = (0..rng.gen_range(1..=4))
                .map(|_| {
                    counter += 1;
                    format!("c{id}-{producer_id}-{counter}")
                })
                .collect();
            (partition, values, 0)
        });
        {
            let mut history = shared.history.lock().expect("history lock");
            for v in &values {
                history.sent.insert(v.clone());
            }
        }
        let records: Vec<Record> = values
            .iter()
            .map(|v| Record {
                key: None,
                value: Some(v.clone().into_bytes()),
                headers: Vec::new(),
                timestamp: 1_000_000,
            })
            .collect();
        let sequence = sequences[partition as usize];
        let bytes = batch(&records, Some(Idempotence { producer_id, producer_epoch: epoch, base_sequence: sequence }));
        let outcome = match routes.leader(partition).await {
            Some((leader, conn)) => Some((leader, conn.produce(TOPIC, partition, -1, bytes).await)),
            None => None,
        };
        match outcome {
            Some((_, Ok((0, base_offset)))) => {
                sequences[partition as usize] += values.len() as i32;
                let mut history = shared.history.lock().expect("history lock");
                for (i, value) in values.into_iter().enumerate() {
                    history.acks.push(Ack {
                        producer: id,
                        durable: true,
                        partition,
                        offset: base_offset + i as i64,
                        value,
                    });
                }
                drop(history);
                shared.last_ack_ms.lock().expect("acks lock").insert(id, shared.elapsed_ms());
            }
            Some((leader, Ok((code, _)))) if RETRIABLE.contains(&code) && attempts < 400 => {
                if attempts % 20 == 0 {
                    trace!(
                        "producer {id}: error {code} from broker {leader} on partition {partition}, attempt {attempts}"
                    );
                }
                routes.leaders.clear();
                pending = Some((partition, values, attempts + 1));
                sleep(Duration::from_millis(50)).await;
            }
            Some((leader, Ok((code, _)))) => {
                trace!("producer {id}: error {code} from broker {leader} after {attempts} attempts; new producer id");
                identity = None;
            }
            Some((leader, Err(_))) if attempts < 400 => {
                routes.forget(leader);
                pending = Some((partition, values, attempts + 1));
                sleep(Duration::from_millis(50)).await;
            }
            None if attempts < 400 => {
                // No leader known yet (an election, or no broker answered).
                pending = Some((partition, values, attempts + 1));
                sleep(Duration::from_millis(100)).await;
            }
            _ => identity = None,
        }
    }
}

/// A consumer that reads one partition at a time, from a random offset, for a while: from its
/// leader, or, one time in three, from a random broker, as a consumer sent to a follower in
/// its rack would (KIP-392; followers serve what they know is committed). What it reads is
/// recorded; a record a failover later cut would show as an offset read with two values.
async fn consumer(id: u32, shared: Arc<Shared>) {
    let mut rng = thread_rng();
    let mut routes = Routes::new(&shared);
    let mut session: u64 = u64::from(id) << 32;
    while !shared.stop.load(Ordering::SeqCst) {
        session += 1;
        let partition = rng.gen_range(0..PARTITIONS);
        let Some((leader, conn)) = routes.leader(partition).await else {
            sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (Ok((0, earliest)), Ok((0, latest))) =
            (conn.list_offset(TOPIC, partition, -2).await, conn.list_offset(TOPIC, partition, -1).await)
        else {
            routes.forget(leader);
            sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut position = if latest > earliest { rng.gen_range(earliest..=latest) } else { earliest };
        let source = if rng.gen_ratio(1, 3) { rng.gen_range(1..=shared.brokers) } else { leader };
        let Some(conn) = routes.conn(source).await else {
            routes.forget(leader);
            continue;
        };
        for _ in 0..rng.gen_range(1..40) {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok((0, high_watermark, bytes)) = conn.fetch(TOPIC, partition, position, 300).await else { break };
            shared.history.lock().expect("history lock").high_watermarks.push(HighWatermark {
                connection: session,
                broker: source,
                partition,
                offset: high_watermark,
            });
            let records = match decode_records(bytes) {
                Ok(r) => r,
                Err(e) => {
                    let detail = format!("consumer {id} partition {partition} at {position} from {source}: {e}");
                    shared.history.lock().expect("history lock").corrupt_reads.push(detail);
                    break;
                }
            };
            if records.is_empty() {
                continue;
            }
            let max_offset = records.iter().map(|r| r.offset).max();
            let mut history = shared.history.lock().expect("history lock");
            let mut offsets = Vec::new();
            for record in records.iter().filter(|r| r.offset >= position) {
                offsets.push(record.offset);
                history.read(partition, record.offset, String::from_utf8_lossy(&record.value).into_owned());
            }
            history.polls.push(Poll { session, partition, position, offsets: offsets.clone(), max_offset });
            drop(history);
            match offsets.last() {
                Some(&last) => position = last + 1,
                None => break,
            }
        }
        routes.forget(leader);
        routes.forget(source);
    }
}

/// Reads every partition whole from its leader into the history's final log.
async fn final_read(shared: &Arc<Shared>) -> bool {
    let mut routes = Routes::new(shared);
    for partition in 0..PARTITIONS {
        let mut done = false;
        for _ in 0..50 {
            if let Some(log) = read_partition(&mut routes, partition).await {
                let mut history = shared.history.lock().expect("history lock");
                for (offset, value) in &log {
                    history.read(partition, *offset, value.clone());
                }
                history.final_log.insert(partition, log);
                done = true;
                break;
            }
            routes.leaders.clear();
            sleep(Duration::from_millis(200)).await;
        }
        if !done {
            return false;
        }
    }
    true
}

async fn read_partition(routes: &mut Routes, partition: i32) -> Option<BTreeMap<i64, String>> {
    let (_, conn) = routes.leader(partition).await?;
    let (Ok((0, earliest)), Ok((0, latest))) =
        (conn.list_offset(TOPIC, partition, -2).await, conn.list_offset(TOPIC, partition, -1).await)
    else {
        return None;
    };
    let mut log = BTreeMap::new();
    let mut position = earliest;
    while position < latest {
        let (code, _, bytes) = conn.fetch(TOPIC, partition, position, 100).await.ok()?;
        if code != 0 {
            return None;
        }
        // Past the last whole batch, control batches (leader changes) included.
        let mut batches_end = position;
        let mut at = 0;
        while let Some(header) = BatchHeader::parse(&bytes[at..]) {
            let Some(size) = header.size_bytes().filter(|&s| at + s <= bytes.len()) else { break };
            batches_end = batches_end.max(header.last_offset() + 1);
            at += size;
        }
        let records = decode_records(bytes).ok()?;
        let from = position;
        for record in records.into_iter().filter(|r| r.offset >= from) {
            log.insert(record.offset, String::from_utf8_lossy(&record.value).into_owned());
        }
        if batches_end == from {
            // No progress: unreadable bytes where records should be.
            return Some(log);
        }
        position = batches_end;
    }
    Some(log)
}

/// The connection to `group`'s coordinator, as a random broker names it.
async fn coordinator<'a>(routes: &'a mut Routes, group: &str) -> Option<(i32, &'a mut Conn)> {
    let asked = thread_rng().gen_range(1..=routes.shared.brokers);
    let conn = routes.conn(asked).await?;
    match conn.find_coordinator(group).await {
        Ok((0, node)) if (1..=routes.shared.brokers).contains(&node) => Some((node, routes.conn(node).await?)),
        Ok(_) => None,
        Err(_) => {
            routes.forget(asked);
            None
        }
    }
}

/// Commits ever larger offsets of `replicated-0` for `group` to its coordinator, wherever it
/// moves, recording each acknowledged one. On reaching a coordinator other than the last, it
/// first reads the committed offset there: every commit acknowledged before must survive the
/// failover. The read counts only if the commit right after it on the same coordinator is
/// acknowledged: that proves the coordinator led the partition (a deposed leader that has not
/// heard of its successor could answer a stale read, as Kafka's can, but commits nothing).
async fn committer(group: &'static str, shared: Arc<Shared>) {
    let mut routes = Routes::new(&shared);
    let mut offset: i64 = 1;
    let mut last_coordinator = None;
    while !shared.stop.load(Ordering::SeqCst) {
        let Some((node, conn)) = coordinator(&mut routes, group).await else {
            sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut read = None;
        if last_coordinator != Some(node) {
            let sent_at = shared.history.lock().expect("history lock").commits.len();
            match conn.committed_here(group, TOPIC, 0).await {
                Ok(Some(committed)) => read = Some((committed, sent_at)),
                Ok(None) => {
                    sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(_) => {
                    routes.forget(node);
                    sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        match conn.commit(group, -1, "", TOPIC, 0, offset).await {
            Ok(0) => {
                {
                    let mut history = shared.history.lock().expect("history lock");
                    if let Some((committed, sent_at)) = read {
                        history.commits.push(CommitEvent::Fetched { group, partition: 0, offset: committed, sent_at });
                    }
                    history.commits.push(CommitEvent::Acked { group, partition: 0, offset });
                }
                last_coordinator = Some(node);
                offset += 1;
                sleep(Duration::from_millis(thread_rng().gen_range(5..50))).await;
            }
            Ok(_) => sleep(Duration::from_millis(50)).await,
            Err(_) => {
                routes.forget(node);
                sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// After healing, each group's committed offset as its coordinator answers it.
async fn final_commits(shared: &Arc<Shared>) {
    let mut routes = Routes::new(shared);
    for group in COMMIT_GROUPS {
        let mut read = None;
        for _ in 0..200 {
            let sent_at = shared.history.lock().expect("history lock").commits.len();
            if let Some((node, conn)) = coordinator(&mut routes, group).await {
                match conn.committed_here(group, TOPIC, 0).await {
                    Ok(Some(offset)) => {
                        read = Some((offset, sent_at));
                        break;
                    }
                    Ok(None) => {}
                    Err(_) => routes.forget(node),
                }
            }
            sleep(Duration::from_millis(100)).await;
        }
        let mut history = shared.history.lock().expect("history lock");
        match read {
            Some((offset, sent_at)) => {
                trace!("group {group}: committed offset read back as {offset}");
                history.commits.push(CommitEvent::Fetched { group, partition: 0, offset, sent_at })
            }
            None => history.stuck.push(format!("group {group}: no coordinator answered its committed offset")),
        }
    }
}

/// Creates topics of its own (one partition, one replica, so each costs the brokers little)
/// and lists the topics through random brokers, recording every call with when it was sent
/// and answered. Like Kafka's AdminClient, it sends a create to the controller the last
/// Metadata answer named, and one time in four to a random broker, which forwards it. One
/// create in eight asks for more replicas than there are brokers, which the controller must
/// refuse before proposing anything: that topic must never appear.
async fn metadata_client(id: u32, shared: Arc<Shared>) {
    let mut rng = thread_rng();
    let mut conns: BTreeMap<i32, (u64, Conn)> = BTreeMap::new();
    let mut next_connection = (u64::from(id) + 1) << 40;
    let mut created: u32 = 0;
    let mut controller: Option<i32> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        sleep(Duration::from_millis(rng.gen_range(30..300))).await;
        let create = rng.gen_ratio(1, METADATA_CREATE_EVERY) && !shared.healing.load(Ordering::SeqCst);
        let broker = match controller {
            Some(controller) if create && !rng.gen_ratio(1, 4) => controller,
            _ => rng.gen_range(1..=shared.brokers),
        };
        if let std::collections::btree_map::Entry::Vacant(entry) = conns.entry(broker) {
            let Ok(conn) = Conn::connect(broker_addr(broker)).await else {
                controller = None;
                continue;
            };
            next_connection += 1;
            entry.insert((next_connection, conn));
        }
        let (connection, conn) = conns.get_mut(&broker).expect("connected above");
        let connection = *connection;
        let invoked_us = shared.elapsed_us();
        let kind = if create {
            created += 1;
            let name = format!("{METADATA_TOPIC_PREFIX}{id}-{created}");
            let replicas = if rng.gen_ratio(1, 8) { shared.brokers as i16 + 1 } else { 1 };
            let result = conn.create_replicated_topic(&name, 1, replicas).await;
            trace!("metadata client {id}: create {name} ({replicas} replicas) through broker {broker}: {result:?}");
            let outcome = match result {
                Ok(0) => CreateOutcome::Ok,
                Ok(code) if CREATE_REFUSED.contains(&code) => CreateOutcome::Failed(code),
                Ok(_) => CreateOutcome::Unknown,
                Err(_) => {
                    conns.remove(&broker);
                    controller = None;
                    CreateOutcome::Unknown
                }
            };
            TopicOpKind::Create { name, outcome }
        } else {
            match conn.topic_names().await {
                Ok((names, named)) => {
                    controller = (1..=shared.brokers).contains(&named).then_some(named);
                    if let Some(named) = controller {
                        shared.controller.store(named, Ordering::SeqCst);
                    }
                    let names = names.into_iter().filter(|n| n.starts_with(METADATA_TOPIC_PREFIX)).collect();
                    TopicOpKind::Read { names, last: false }
                }
                Err(_) => {
                    conns.remove(&broker);
                    continue;
                }
            }
        };
        let completed_us = shared.elapsed_us();
        let op = TopicOp { connection, broker, invoked_us, completed_us, kind };
        shared.history.lock().expect("history lock").topic_ops.push(op);
    }
}

/// After healing, the topics as each broker lists them: read until the list holds every
/// acknowledged create (the broker's image may still be catching up) or 2 s have passed; the
/// last read is the one the checker requires every acknowledged create in.
async fn final_topic_reads(shared: &Arc<Shared>) {
    let acked: std::collections::BTreeSet<String> = {
        let history = shared.history.lock().expect("history lock");
        history
            .topic_ops
            .iter()
            .filter_map(|op| match &op.kind {
                TopicOpKind::Create { name, outcome: CreateOutcome::Ok } => Some(name.clone()),
                _ => None,
            })
            .collect()
    };
    for broker in 1..=shared.brokers {
        let mut conn = None;
        let mut last = None;
        for _ in 0..20 {
            if conn.is_none() {
                conn = Conn::connect(broker_addr(broker)).await.ok();
            }
            if let Some(c) = conn.as_mut() {
                let invoked_us = shared.elapsed_us();
                match c.topic_names().await {
                    Ok((names, _)) => {
                        let names: std::collections::BTreeSet<String> =
                            names.into_iter().filter(|n| n.starts_with(METADATA_TOPIC_PREFIX)).collect();
                        let complete = acked.is_subset(&names);
                        last = Some((invoked_us, shared.elapsed_us(), names));
                        if complete {
                            break;
                        }
                    }
                    Err(_) => conn = None,
                }
            }
            sleep(Duration::from_millis(100)).await;
        }
        let mut history = shared.history.lock().expect("history lock");
        match last {
            Some((invoked_us, completed_us, names)) => history.topic_ops.push(TopicOp {
                // A connection of its own: the read compares with no other on it.
                connection: (u64::from(METADATA_CLIENTS) + 1) << 40 | broker as u64,
                broker,
                invoked_us,
                completed_us,
                kind: TopicOpKind::Read { names, last: true },
            }),
            None => history.stuck.push(format!("broker {broker} did not answer Metadata after healing")),
        }
    }
}
