//! One simulated run, fully determined by its seed:
//!
//! 1. **Set-up**: a broker node on a [`SimDisk`], client nodes, topic `sim` (3 partitions).
//! 2. **Fault phase**: idempotent producers (acks=all and acks=1), consumers reading from
//!    random offsets, and topic churn run while the supervisor kills and restarts the broker
//!    (the disk losing, tearing or garbling unsynced writes at each crash), stops it
//!    gracefully and starts it again (so the next start trusts the recovery checkpoint),
//!    fills its disk for a while and then restarts it with space again, clogs links between
//!    clients and the broker, and the disk fails writes and syncs.
//! 3. **Healing phase**: faults stop, links unclog, the broker restarts once more; every
//!    producer must get an acknowledgement within [`HEAL_BOUND`] (liveness).
//! 4. **Final read** of every partition, then the checkers run on the history.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headwater_core::log::batch::build::{batch, Idempotence, Record};
use headwater_core::planted::PlantedBug;
use headwater_server::config::RawConfig;
use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle};
use madsim::time::{sleep, Instant};

use crate::checker::{check, Anomaly};
use crate::client::{decode_records, Conn};
use crate::disk::{DiskFaults, SimDisk};
use crate::history::{Ack, CommitEvent, History, HoldEvent, Holding, Ownership, Poll};

pub const TOPIC: &str = "sim";
pub const PARTITIONS: i32 = 3;
const CONSUMERS: u32 = 2;
const GROUP: &str = "sim-group";
const GROUP_MEMBERS: u32 = 3;
/// A second group on the same topic, over the KIP-848 consumer protocol.
const GROUP_848: &str = "sim-group-848";
const GROUP_848_MEMBERS: u32 = 2;
const FAULT_PHASE: Duration = Duration::from_secs(20);
/// After healing starts, every producer must be acknowledged within this.
pub const HEAL_BOUND: Duration = Duration::from_secs(15);
const BROKER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const BROKER_PORT: u16 = 9092;

/// Kafka error codes the producers treat as "retry the same batch".
const RETRIABLE: [i16; 5] = [6, 7, 3, 56, 15];

#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub seed: u64,
    pub faults: u64,
    pub acked: u64,
    pub verified: u64,
    pub anomalies: Vec<Anomaly>,
}

struct Shared {
    history: Mutex<History>,
    stop: AtomicBool,
    /// Group members keep consuming after `stop` until this, to show the group converges.
    stop_group: AtomicBool,
    healing_started_ms: AtomicU64,
    /// producer id -> last acknowledgement time (ms of simulated time since start)
    last_ack_ms: Mutex<BTreeMap<u32, u64>>,
    /// consumer id -> last time a fetch returned records
    last_read_ms: Mutex<BTreeMap<u32, u64>>,
    started: Instant,
}

impl Shared {
    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// Debug trace, on with HEADWATER_SIM_VERBOSE=1 (simulated time in ms first).
macro_rules! trace {
    ($($arg:tt)*) => {
        if std::env::var_os("HEADWATER_SIM_VERBOSE").is_some() {
            eprintln!("[sim] {}", format!($($arg)*));
        }
    };
}

fn broker_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(BROKER_IP), BROKER_PORT)
}

/// Runs one seed's scenario. Must be called inside a madsim runtime seeded with `seed`.
pub async fn run(seed: u64, planted: Option<PlantedBug>) -> RunReport {
    headwater_core::planted::set(planted);
    let handle = Handle::current();
    let disk = SimDisk::new();
    let mut rng = thread_rng();
    let faults = DiskFaults {
        write_error: rng.gen_range(0.0..0.002),
        sync_error: rng.gen_range(0.0..0.01),
        torn_write: rng.gen_range(0.3..0.9),
        garble: rng.gen_range(0.0..0.5),
    };
    let graceful = Arc::new(GracefulStop::default());
    let broker = start_broker(&handle, disk.clone(), seed, graceful.clone());
    let shared = Arc::new(Shared {
        history: Mutex::new(History::default()),
        stop: AtomicBool::new(false),
        stop_group: AtomicBool::new(false),
        healing_started_ms: AtomicU64::new(u64::MAX),
        last_ack_ms: Mutex::new(BTreeMap::new()),
        last_read_ms: Mutex::new(BTreeMap::new()),
        started: Instant::now(),
    });

    let admin = client_node(&handle, "admin", 100);
    let created = admin
        .spawn(async move {
            for _ in 0..100 {
                if let Ok(mut conn) = Conn::connect(broker_addr()).await {
                    if let Ok(code) = conn.create_topic(TOPIC, PARTITIONS).await {
                        if code == 0 || code == 36 {
                            return true;
                        }
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
    let producer_specs: [(u32, i16); 4] = [(1, -1), (2, -1), (3, -1), (4, 1)];
    for (id, acks) in producer_specs {
        let node = client_node(&handle, &format!("producer-{id}"), id as u8);
        node.spawn(producer(id, acks, shared.clone()));
        clients.push(node);
    }
    for id in 0..CONSUMERS {
        let node = client_node(&handle, &format!("consumer-{id}"), 50 + id as u8);
        node.spawn(consumer(id, shared.clone()));
        clients.push(node);
    }
    for id in 0..GROUP_MEMBERS {
        let node = client_node(&handle, &format!("member-{id}"), 80 + id as u8);
        node.spawn(group_member(id, shared.clone()));
        clients.push(node);
    }
    for id in 0..GROUP_848_MEMBERS {
        let node = client_node(&handle, &format!("member-848-{id}"), 90 + id as u8);
        node.spawn(consumer_protocol_member(id, shared.clone()));
        clients.push(node);
    }
    admin.spawn(churn(shared.clone()));
    clients.push(admin);

    // Fault phase.
    disk.set_faults(faults);
    let net = NetSim::current();
    let mut fault_count: u64 = 0;
    let deadline = Instant::now() + FAULT_PHASE;
    while Instant::now() < deadline {
        sleep(Duration::from_millis(rng.gen_range(200..2500))).await;
        match rng.gen_range(0..10) {
            0..=3 => {
                trace!("fault: kill and restart the broker");
                handle.kill(broker.id());
                disk.crash();
                sleep(Duration::from_millis(rng.gen_range(0..1500))).await;
                handle.restart(broker.id());
                fault_count += 1;
            }
            4..=6 => {
                let client = &clients[rng.gen_range(0..clients.len())];
                trace!("fault: clog node {}", client.id());
                net.clog_link(client.id(), broker.id());
                net.clog_link(broker.id(), client.id());
                sleep(Duration::from_millis(rng.gen_range(100..4000))).await;
                net.unclog_link(client.id(), broker.id());
                net.unclog_link(broker.id(), client.id());
                fault_count += 1;
            }
            7 => {
                trace!("fault: clog the broker");
                net.clog_node(broker.id());
                sleep(Duration::from_millis(rng.gen_range(100..3000))).await;
                net.unclog_node(broker.id());
                fault_count += 1;
            }
            8 => {
                trace!("fault: stop the broker gracefully and start it again");
                if !graceful.stop().await {
                    trace!("the broker did not stop gracefully in time: killed instead");
                    handle.kill(broker.id());
                    disk.crash();
                }
                sleep(Duration::from_millis(rng.gen_range(0..500))).await;
                handle.restart(broker.id());
                fault_count += 1;
            }
            _ => {
                trace!("fault: the disk fills up");
                disk.set_full(true);
                sleep(Duration::from_millis(rng.gen_range(200..3000))).await;
                trace!("fault: space returns; restart the broker");
                disk.set_full(false);
                handle.kill(broker.id());
                disk.crash();
                handle.restart(broker.id());
                fault_count += 1;
            }
        }
    }

    // Healing phase: no more faults; a clean restart brings back partitions a failed fsync
    // took offline.
    trace!("healing");
    disk.set_faults(DiskFaults::default());
    handle.kill(broker.id());
    disk.crash();
    handle.restart(broker.id());
    fault_count += 1;
    let heal_start = shared.elapsed_ms();
    shared.healing_started_ms.store(heal_start, Ordering::SeqCst);
    sleep(HEAL_BOUND).await;
    {
        let last = shared.last_ack_ms.lock().expect("acks lock");
        let mut history = shared.history.lock().expect("history lock");
        for (id, _) in producer_specs {
            let healthy = last.get(&id).is_some_and(|&t| t >= heal_start);
            if !healthy {
                history.stuck.push(format!("producer {id} got no acknowledgement within {HEAL_BOUND:?} after healing"));
            }
        }
        let reads = shared.last_read_ms.lock().expect("reads lock");
        for id in 0..CONSUMERS {
            if reads.get(&id).is_none_or(|&t| t < heal_start) {
                history.stuck.push(format!("consumer {id} read nothing within {HEAL_BOUND:?} after healing"));
            }
        }
    }
    shared.stop.store(true, Ordering::SeqCst);
    sleep(Duration::from_secs(1)).await;

    // The group converges: with producers stopped, its commits reach every partition's end.
    let checker = client_node(&handle, "group-checker", 201);
    let converged = checker
        .spawn(async move {
            let deadline = Instant::now() + HEAL_BOUND;
            while Instant::now() < deadline {
                if let Ok(mut conn) = Conn::connect(broker_addr()).await {
                    let mut done = true;
                    let partitions: Vec<i32> = (0..PARTITIONS).collect();
                    for group in [GROUP, GROUP_848] {
                        match conn.committed(group, TOPIC, &partitions).await {
                            Ok(committed) => {
                                for (partition, offset) in committed {
                                    match conn.list_offset(TOPIC, partition, -1).await {
                                        Ok((0, end)) if offset >= end => {}
                                        _ => done = false,
                                    }
                                }
                            }
                            Err(_) => done = false,
                        }
                    }
                    if done {
                        return true;
                    }
                }
                sleep(Duration::from_millis(500)).await;
            }
            false
        })
        .await
        .unwrap_or(false);
    if !converged {
        shared
            .history
            .lock()
            .expect("history lock")
            .stuck
            .push(format!("the groups' commits did not reach the end offsets within {HEAL_BOUND:?}"));
    }
    shared.stop_group.store(true, Ordering::SeqCst);
    sleep(Duration::from_secs(1)).await;

    // Final read of every partition.
    let reader = client_node(&handle, "final-reader", 200);
    let final_shared = shared.clone();
    let complete = reader.spawn(async move { final_read(&final_shared).await }).await.unwrap_or(false);
    if !complete {
        shared.history.lock().expect("history lock").stuck.push("the final read could not complete".into());
    }

    let history = shared.history.lock().expect("history lock");
    let (anomalies, verified) = check(&history);
    let disk_faults = disk.counts().total();
    headwater_core::planted::set(None);
    RunReport {
        seed,
        faults: fault_count + disk_faults,
        acked: history.acks.iter().filter(|a| a.durable).count() as u64,
        verified,
        anomalies,
    }
}

/// Asks the running broker to shut down as SIGTERM does, and tells when it has.
#[derive(Default)]
pub(crate) struct GracefulStop {
    pub(crate) requested: tokio::sync::Notify,
    pub(crate) stopped: AtomicBool,
}

impl GracefulStop {
    /// Requests a graceful stop; true once the broker has stopped within a bound.
    pub(crate) async fn stop(&self) -> bool {
        self.stopped.store(false, Ordering::SeqCst);
        // Only a broker that is serving hears it; one still starting is killed instead.
        self.requested.notify_waiters();
        for _ in 0..50 {
            if self.stopped.load(Ordering::SeqCst) {
                return true;
            }
            sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

fn start_broker(handle: &Handle, disk: SimDisk, seed: u64, graceful: Arc<GracefulStop>) -> NodeHandle {
    handle
        .create_node()
        .name("broker")
        .ip(IpAddr::V4(BROKER_IP))
        .init(move || {
            let disk = disk.clone();
            let graceful = graceful.clone();
            async move {
                let mut raw = RawConfig::default();
                for (flag, value) in [
                    ("--listen", format!("{BROKER_IP}:{BROKER_PORT}")),
                    ("--data-dir", "sim".to_string()),
                    ("--auto-create-topics", "false".to_string()),
                    ("--group-consumer-session-timeout-ms", "6000".to_string()),
                    ("--group-consumer-heartbeat-interval-ms", "500".to_string()),
                ] {
                    raw.set_flag(flag, value).expect("valid sim flag");
                }
                let config = raw.build().expect("valid sim config");
                let storage: Arc<dyn headwater_core::Storage> = Arc::new(disk);
                // A broker that cannot open its storage waits to be restarted.
                let shutdown = graceful.requested.notified();
                match headwater_server::server::serve(config, storage, seed, shutdown).await {
                    Ok(()) => graceful.stopped.store(true, Ordering::SeqCst),
                    Err(e) => trace!("broker failed to start: {e}"),
                }
                std::future::pending::<()>().await;
            }
        })
        .build()
}

fn client_node(handle: &Handle, name: &str, host: u8) -> NodeHandle {
    handle.create_node().name(name).ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, host))).build()
}

/// An idempotent producer. It retries a batch with the same sequence numbers until the broker
/// answers, so a batch whose acknowledgement was lost is answered as a duplicate, not stored
/// twice. On a sequence or epoch error it starts over with a new producer id and never resends
/// the old values (their fate is unknown).
async fn producer(id: u32, acks: i16, shared: Arc<Shared>) {
    let mut rng = thread_rng();
    let mut conn: Option<Conn> = None;
    let mut identity: Option<(i64, i16)> = None;
    let mut sequences = [0i32; PARTITIONS as usize];
    let mut pending: Option<(i32, Vec<String>, u32)> = None;
    let mut counter: u64 = 0;
    let mut next_partition = rng.gen_range(0..PARTITIONS);
    while !shared.stop.load(Ordering::SeqCst) {
        if conn.is_none() {
            match Conn::connect(broker_addr()).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        if identity.is_none() {
            match c.init_producer_id().await {
                Ok((0, producer_id, epoch)) => {
                    identity = Some((producer_id, epoch));
                    sequences = [0; PARTITIONS as usize];
                }
                Ok((code, _, _)) => {
                    trace!("producer {id}: InitProducerId error {code}");
                    sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => {
                    trace!("producer {id}: InitProducerId {e}");
                    conn = None;
                    continue;
                }
            }
        }
        let (producer_id, epoch) = identity.expect("initialised above");
        let (partition, values, attempts) = pending.take().unwrap_or_else(|| {
            let partition = next_partition;
            next_partition = (next_partition + 1) % PARTITIONS;
            let count = rng.gen_range(1..=4);
            let values = (0..count)
                .map(|_| {
                    counter += 1;
                    format!("p{id}-{producer_id}-{counter}")
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
        match c.produce(TOPIC, partition, acks, bytes).await {
            Ok((0, base_offset)) => {
                sequences[partition as usize] += values.len() as i32;
                let mut history = shared.history.lock().expect("history lock");
                for (i, value) in values.into_iter().enumerate() {
                    history.acks.push(Ack {
                        producer: id,
                        durable: acks == -1,
                        partition,
                        offset: base_offset + i as i64,
                        value,
                    });
                }
                drop(history);
                shared.last_ack_ms.lock().expect("acks lock").insert(id, shared.elapsed_ms());
            }
            Ok((code, _)) if RETRIABLE.contains(&code) && attempts < 200 => {
                if attempts % 20 == 0 {
                    trace!("producer {id}: retriable error {code} on partition {partition}, attempt {attempts}");
                }
                pending = Some((partition, values, attempts + 1));
                sleep(Duration::from_millis(50)).await;
            }
            Ok((code, _)) => {
                // Sequence/epoch errors (or too many retries): start over with a new id.
                trace!(
                    "producer {id}: error {code} on partition {partition} after {attempts} attempts; new producer id"
                );
                identity = None;
            }
            Err(e) => {
                trace!("producer {id}: {e}");
                conn = None;
                if attempts < 200 {
                    pending = Some((partition, values, attempts + 1));
                } else {
                    identity = None;
                }
                sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A consumer that reads one partition at a time from a random offset for a while.
async fn consumer(id: u32, shared: Arc<Shared>) {
    let mut rng = thread_rng();
    let mut session: u64 = u64::from(id) << 32;
    while !shared.stop.load(Ordering::SeqCst) {
        session += 1;
        let partition = rng.gen_range(0..PARTITIONS);
        let Ok(mut conn) = Conn::connect(broker_addr()).await else {
            sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (Ok((0, earliest)), Ok((0, latest))) =
            (conn.list_offset(TOPIC, partition, -2).await, conn.list_offset(TOPIC, partition, -1).await)
        else {
            sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut position = if latest > earliest { rng.gen_range(earliest..=latest) } else { earliest };
        for _ in 0..rng.gen_range(1..40) {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok((code, _, bytes)) = conn.fetch(TOPIC, partition, position, 300).await else { break };
            if code != 0 {
                break;
            }
            let records = match decode_records(bytes) {
                Ok(r) => r,
                Err(e) => {
                    shared
                        .history
                        .lock()
                        .expect("history lock")
                        .corrupt_reads
                        .push(format!("consumer {id} partition {partition} at {position}: {e}"));
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
            shared.last_read_ms.lock().expect("reads lock").insert(id, shared.elapsed_ms());
            if let Some(&last) = offsets.last() {
                position = last + 1;
            } else {
                break;
            }
        }
    }
}

/// A consumer-group member: joins, (as leader) assigns partitions round-robin, fetches from the
/// committed offsets, commits after each fetch, heartbeats, and rejoins when told to.
async fn group_member(id: u32, shared: Arc<Shared>) {
    let mut rng = thread_rng();
    let mut member_id = String::new();
    while !shared.stop_group.load(Ordering::SeqCst) {
        let Ok(mut conn) = Conn::connect(broker_addr()).await else {
            sleep(Duration::from_millis(200)).await;
            continue;
        };
        let joined = match conn.join_group(GROUP, &member_id).await {
            Ok(j) => j,
            Err(_) => continue,
        };
        match joined.error {
            0 => {}
            79 => {
                member_id = joined.member_id;
                continue;
            }
            25 => {
                member_id.clear();
                continue;
            }
            _ => {
                sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        member_id = joined.member_id.clone();
        let generation = joined.generation;
        let assignments: Vec<(String, Vec<i32>)> = if joined.leader == member_id {
            let mut members = joined.members.clone();
            members.sort();
            members
                .iter()
                .enumerate()
                .map(|(i, m)| (m.clone(), (0..PARTITIONS).filter(|p| *p as usize % members.len() == i).collect()))
                .collect()
        } else {
            Vec::new()
        };
        let partitions = match conn.sync_group(GROUP, generation, &member_id, &assignments).await {
            Ok((0, partitions)) => partitions,
            Ok((25, _)) => {
                member_id.clear();
                continue;
            }
            _ => continue,
        };
        shared.history.lock().expect("history lock").ownership.push(Ownership {
            generation,
            member: format!("{id}:{member_id}"),
            partitions: partitions.clone(),
        });
        let Ok(committed) = read_committed(&shared, &mut conn, GROUP, &partitions).await else { continue };
        let mut positions: BTreeMap<i32, i64> = committed.into_iter().map(|(p, offset)| (p, offset.max(0))).collect();
        let mut last_heartbeat = Instant::now();
        // Members come and go (until the workload stops), so the group rebalances while the
        // broker is up, not only after restarts.
        let leave_at = Instant::now() + Duration::from_millis(rng.gen_range(2_000..10_000));
        'member: loop {
            if shared.stop_group.load(Ordering::SeqCst) {
                return;
            }
            if !shared.stop.load(Ordering::SeqCst) && Instant::now() >= leave_at {
                let _ = conn.leave_group(GROUP, &member_id).await;
                member_id.clear();
                sleep(Duration::from_millis(rng.gen_range(0..2_000))).await;
                break 'member;
            }
            for (&partition, position) in positions.iter_mut() {
                let Ok((0, _, bytes)) = conn.fetch(TOPIC, partition, *position, 50).await else { break 'member };
                let Ok(records) = decode_records(bytes) else { break 'member };
                let Some(last) = records.iter().filter(|r| r.offset >= *position).map(|r| r.offset).max() else {
                    continue;
                };
                match conn.commit(GROUP, generation, &member_id, TOPIC, partition, last + 1).await {
                    Ok(0) => {
                        *position = last + 1;
                        shared.history.lock().expect("history lock").commits.push(CommitEvent::Acked {
                            group: GROUP,
                            partition,
                            offset: last + 1,
                        });
                    }
                    Ok(25) => {
                        member_id.clear();
                        break 'member;
                    }
                    _ => break 'member,
                }
            }
            if last_heartbeat.elapsed() >= Duration::from_millis(500) {
                last_heartbeat = Instant::now();
                match conn.heartbeat(GROUP, generation, &member_id).await {
                    Ok(0) => {}
                    Ok(25) => {
                        member_id.clear();
                        break 'member;
                    }
                    _ => break 'member,
                }
            }
            sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A consumer-protocol (KIP-848) member of [`GROUP_848`]: heartbeats with the partitions it
/// holds, takes and drops partitions as the coordinator says, fetches from the committed
/// offsets and commits under its member epoch. It leaves now and then, and on any error drops
/// everything and joins again.
async fn consumer_protocol_member(id: u32, shared: Arc<Shared>) {
    let mut rng = thread_rng();
    let mut incarnation = 0;
    let record = |member: &str, partitions: &mut dyn Iterator<Item = i32>, event: HoldEvent| {
        let mut history = shared.history.lock().expect("history lock");
        for partition in partitions {
            trace!("848 {member}: {event:?} {partition}");
            history.holdings.push(Holding { member: member.to_string(), partition, event, confirmed: false });
        }
    };
    let mut left = true;
    while !shared.stop_group.load(Ordering::SeqCst) {
        // Version 1 members choose their own id, and keep it across rejoins after errors.
        if left {
            incarnation += 1;
            left = false;
        }
        let member_id = format!("sim-848-{id}-{incarnation}");
        let member = format!("{id}:{member_id}");
        let Ok(mut conn) = Conn::connect(broker_addr()).await else {
            sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut epoch = 0;
        let mut topic_id = uuid::Uuid::nil();
        let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
        // Indexes of this member's acquires no heartbeat has confirmed yet.
        let mut unconfirmed: Vec<usize> = Vec::new();
        let mut last_heartbeat = Instant::now() - Duration::from_secs(1);
        let leave_at = Instant::now() + Duration::from_millis(rng.gen_range(3_000..12_000));
        'member: loop {
            if shared.stop_group.load(Ordering::SeqCst) {
                return;
            }
            if !shared.stop.load(Ordering::SeqCst) && Instant::now() >= leave_at && epoch > 0 {
                // Let go first, then tell the coordinator. If the coordinator no longer knew the
                // member (a restart, an expired session), others may hold these partitions
                // already: the release becomes an abandon.
                let first = shared.history.lock().expect("history lock").holdings.len();
                record(&member, &mut positions.keys().copied(), HoldEvent::Release);
                positions.clear();
                let known = matches!(
                    conn.consumer_heartbeat(GROUP_848, &member_id, -1, TOPIC, &[]).await,
                    Ok(beat) if beat.error == 0
                );
                if !known {
                    let mut history = shared.history.lock().expect("history lock");
                    for h in history.holdings[first..].iter_mut().filter(|h| h.member == member) {
                        h.event = HoldEvent::Abandon;
                    }
                }
                left = true;
                sleep(Duration::from_millis(rng.gen_range(0..2_000))).await;
                break 'member;
            }
            if last_heartbeat.elapsed() >= Duration::from_millis(500) {
                last_heartbeat = Instant::now();
                let owned = vec![(topic_id, positions.keys().copied().collect::<Vec<i32>>())];
                let owned = if positions.is_empty() { Vec::new() } else { owned };
                let beat = match conn.consumer_heartbeat(GROUP_848, &member_id, epoch, TOPIC, &owned).await {
                    Ok(beat) if beat.error == 0 => {
                        // The coordinator accepted this member holding what it reported.
                        let mut history = shared.history.lock().expect("history lock");
                        for i in unconfirmed.drain(..) {
                            history.holdings[i].confirmed = true;
                        }
                        beat
                    }
                    other => {
                        trace!("848 {member}: heartbeat at epoch {epoch} failed: {other:?}");
                        break 'member;
                    }
                };
                trace!("848 {member}: epoch {epoch} -> {}, assignment {:?}", beat.epoch, beat.assignment);
                epoch = beat.epoch;
                if let Some(assignment) = beat.assignment {
                    let mut assigned: Vec<i32> = Vec::new();
                    for (id, partitions) in assignment {
                        topic_id = id;
                        assigned.extend(partitions);
                    }
                    let dropped: Vec<i32> = positions.keys().copied().filter(|p| !assigned.contains(p)).collect();
                    record(&member, &mut dropped.iter().copied(), HoldEvent::Release);
                    positions.retain(|p, _| assigned.contains(p));
                    let added: Vec<i32> = assigned.iter().copied().filter(|p| !positions.contains_key(p)).collect();
                    if !added.is_empty() {
                        let first = shared.history.lock().expect("history lock").holdings.len();
                        record(&member, &mut added.iter().copied(), HoldEvent::Acquire);
                        unconfirmed.extend(first..first + added.len());
                        let Ok(committed) = read_committed(&shared, &mut conn, GROUP_848, &added).await else {
                            break 'member;
                        };
                        positions.extend(committed.into_iter().map(|(p, offset)| (p, offset.max(0))));
                    }
                    // Report what it holds now, without waiting for the next interval.
                    last_heartbeat = Instant::now() - Duration::from_secs(1);
                }
            }
            for (&partition, position) in positions.iter_mut() {
                let Ok((0, _, bytes)) = conn.fetch(TOPIC, partition, *position, 50).await else { break 'member };
                let Ok(records) = decode_records(bytes) else { break 'member };
                let Some(last) = records.iter().filter(|r| r.offset >= *position).map(|r| r.offset).max() else {
                    continue;
                };
                let result = conn.commit(GROUP_848, epoch, &member_id, TOPIC, partition, last + 1).await;
                trace!("848 {member}: commit {partition}@{} epoch {epoch}: {result:?}", last + 1);
                match result {
                    Ok(0) => {
                        *position = last + 1;
                        shared.history.lock().expect("history lock").commits.push(CommitEvent::Acked {
                            group: GROUP_848,
                            partition,
                            offset: last + 1,
                        });
                    }
                    _ => break 'member,
                }
            }
            sleep(Duration::from_millis(20)).await;
        }
        // An error: whatever it held, it no longer trusts.
        record(&member, &mut positions.keys().copied(), HoldEvent::Abandon);
    }
}

/// OffsetFetch of `partitions` of [`TOPIC`], recorded in the history for the commit checker.
async fn read_committed(
    shared: &Shared,
    conn: &mut Conn,
    group: &'static str,
    partitions: &[i32],
) -> std::io::Result<Vec<(i32, i64)>> {
    let sent_at = shared.history.lock().expect("history lock").commits.len();
    let committed = conn.committed(group, TOPIC, partitions).await?;
    let mut history = shared.history.lock().expect("history lock");
    for &(partition, offset) in &committed {
        history.commits.push(CommitEvent::Fetched { group, partition, offset, sent_at });
    }
    Ok(committed)
}

/// Creates and deletes short-lived topics alongside the workload.
async fn churn(shared: Arc<Shared>) {
    let mut rng = thread_rng();
    let mut n = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        sleep(Duration::from_millis(rng.gen_range(300..2000))).await;
        n += 1;
        let name = format!("churn-{n}");
        if let Ok(mut conn) = Conn::connect(broker_addr()).await {
            let _ = conn.create_topic(&name, 2).await;
            let records = vec![Record { key: None, value: Some(b"churn".to_vec()), headers: Vec::new(), timestamp: 1 }];
            let _ = conn.produce(&name, 0, 1, batch(&records, None)).await;
            let _ = conn.delete_topic(&name).await;
        }
    }
}

/// Reads every partition from its start to its end into `final_log`.
async fn final_read(shared: &Shared) -> bool {
    for partition in 0..PARTITIONS {
        let mut done = false;
        for _ in 0..20 {
            if let Some(log) = read_partition(partition).await {
                let mut history = shared.history.lock().expect("history lock");
                for (offset, value) in &log {
                    history.read(partition, *offset, value.clone());
                }
                history.final_log.insert(partition, log);
                done = true;
                break;
            }
            sleep(Duration::from_millis(200)).await;
        }
        if !done {
            return false;
        }
    }
    true
}

async fn read_partition(partition: i32) -> Option<BTreeMap<i64, String>> {
    let mut conn = Conn::connect(broker_addr()).await.ok()?;
    let earliest = conn.list_offset(TOPIC, partition, -2).await;
    let latest = conn.list_offset(TOPIC, partition, -1).await;
    trace!("final read: partition {partition} earliest {earliest:?} latest {latest:?}");
    let (Ok((0, earliest)), Ok((0, latest))) = (earliest, latest) else { return None };
    let mut log = BTreeMap::new();
    let mut position = earliest;
    while position < latest {
        let (code, _, bytes) = conn.fetch(TOPIC, partition, position, 100).await.ok()?;
        if code != 0 {
            trace!("final read: partition {partition} fetch at {position} error {code}");
            return None;
        }
        let records = decode_records(bytes).ok()?;
        let before = position;
        let from = position;
        for record in records.into_iter().filter(|r| r.offset >= from) {
            position = record.offset + 1;
            log.insert(record.offset, String::from_utf8_lossy(&record.value).into_owned());
        }
        if position == before {
            // No progress: unreadable bytes where records should be.
            return Some(log);
        }
    }
    Some(log)
}
