//! The cluster run's transactional workload and its checks (issue 14).
//!
//! Each transactional id's driver runs transactions one after another, through the faults:
//! AddPartitionsToTxn for both partitions of [`TXN_TOPIC`], AddOffsetsToTxn, one record
//! `<id>:<n>:<partition>` per partition (at its leader, which checks the batch with the
//! coordinator, KIP-890 part 1), TxnOffsetCommit of offset `n` for the id's group (as a
//! consume-transform-produce loop commits its input's position), then EndTxn, a commit three
//! times in four. Now and then a second instance of the id starts (InitProducerId) in the
//! middle of a transaction: the coordinator must abort it, and the old instance's EndTxn must be
//! refused (a zombie). Coordinators move with every fault that moves a `__transaction_state`
//! partition's leader. `tx-a` speaks the first generation of the protocol; `tx-b` the second
//! (KIP-890 part 2: Produce v12 and TxnOffsetCommit v5 add their partitions, EndTxn v5 bumps
//! the epoch), and one transaction in five of it sends the previous transaction's commit again
//! between its two writes, as a delayed request would arrive (KAFKA-17754).
//!
//! A reader polls the partitions read_committed while the run goes on; after healing every
//! transaction has ended (their timeout is short) and each partition is read once more.
//!
//! Checks:
//! - **aborted-read** (G1a): a record of a transaction whose abort was acknowledged is read;
//! - **dirty-read**: the reader saw a record that the final read does not hold (read before
//!   its transaction was decided, or of a transaction later undone);
//! - **lost-txn-commit**: a transaction whose commit was acknowledged is missing a record;
//! - **torn-transaction**: a transaction's record is visible in one partition and not the other;
//! - **duplicate-record**: a record visible twice;
//! - **offsets-not-atomic**: the id's committed offset is not the number of its last visible
//!   transaction (offsets and output commit together or not at all);
//! - **zombie-commit**: the fenced instance's EndTxn was accepted;
//! - **late-end-accepted**: the previous transaction's EndTxn, sent again mid-transaction, was
//!   accepted (it ends the transaction under way: its first write commits without its second);
//! - **hanging-transaction**: a partition's last stable offset stays below its high watermark
//!   after every transaction should have ended.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use headwater_core::log::batch::build::{batch, Idempotence, Record};
use headwater_core::log::batch::{control_type, payload_records, BatchHeader};
use madsim::rand::{thread_rng, Rng};
use madsim::time::sleep;

use crate::checker::Anomaly;
use crate::client::Conn;

pub const TXN_TOPIC: &str = "txn-out";
pub const TXN_PARTITIONS: i32 = 2;
/// The transactional ids, one driver each; [`TV2_ID`] speaks the second generation.
const IDS: [&str; 2] = ["tx-a", "tx-b"];
const TV2_ID: &str = "tx-b";
/// The topic and partition whose "input position" each transaction commits.
const INPUT: (&str, i32) = ("replicated", 0);
/// Short, so a transaction a fault abandons is aborted well before the final read.
const TXN_TIMEOUT_MS: i32 = 4_000;
/// How long after the drivers stop every transaction has ended: the timeout, the
/// coordinator's next check, and its markers.
pub const SETTLE: Duration = Duration::from_secs(7);
/// A coordinator's answers a client retries (after looking the coordinator up again).
const COORDINATOR_RETRIABLE: [i16; 6] = [7, 14, 15, 16, 19, 51];
/// A leader's answers to a Produce the client retries with the same sequence.
const PRODUCE_RETRIABLE: [i16; 8] = [3, 5, 6, 7, 15, 19, 56, 74];
const ATTEMPTS: u32 = 60;

/// What the workload saw, for [`check`].
#[derive(Debug, Default)]
pub struct TxnHistory {
    /// Transactions by label (`<id>:<n>`), with the fate their EndTxn was acknowledged with
    /// (`None`: unknown).
    decided: BTreeMap<String, Option<bool>>,
    /// Records the reader saw during the run: (partition, offset, value).
    seen: Vec<(i32, i64, String)>,
    /// The final read of each partition: offset -> value. A partition missing could not be read.
    final_read: BTreeMap<i32, Vec<(i64, String)>>,
    /// Each id's committed offset at the end (`None`: none).
    final_offsets: BTreeMap<&'static str, Option<i64>>,
    zombie_commits: Vec<String>,
    /// A late EndTxn of a finished transaction that the coordinator took for the current one.
    late_ends: Vec<String>,
    hanging: Vec<String>,
    /// The producer id and epoch the last second-generation EndTxn answered, by id.
    next_epochs: BTreeMap<&'static str, (i64, i16)>,
}

pub struct TxnRun {
    brokers: i32,
    /// The transaction coordinator a driver last found (0: none yet), for the fault that cuts
    /// it off from the other brokers.
    coordinator: std::sync::atomic::AtomicI32,
    addr: fn(i32) -> SocketAddr,
    pub stop: AtomicBool,
    pub history: Mutex<TxnHistory>,
}

impl TxnRun {
    pub fn new(brokers: i32, addr: fn(i32) -> SocketAddr) -> Arc<TxnRun> {
        Arc::new(TxnRun {
            brokers,
            coordinator: std::sync::atomic::AtomicI32::new(0),
            addr,
            stop: AtomicBool::new(false),
            history: Mutex::new(TxnHistory::default()),
        })
    }

    pub fn coordinator(&self) -> i32 {
        self.coordinator.load(Ordering::SeqCst)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn history(&self) -> std::sync::MutexGuard<'_, TxnHistory> {
        self.history.lock().expect("txn history lock")
    }

    pub fn drivers(&self) -> impl Iterator<Item = &'static str> {
        IDS.into_iter()
    }

    /// How many transactions ended with an acknowledged commit.
    pub fn committed(&self) -> u64 {
        self.history().decided.values().filter(|d| **d == Some(true)).count() as u64
    }
}

/// A client's connections and what it knows of the partitions' leaders.
struct Links {
    run: Arc<TxnRun>,
    conns: BTreeMap<i32, Conn>,
    leaders: BTreeMap<i32, i32>,
}

impl Links {
    fn new(run: &Arc<TxnRun>) -> Links {
        Links { run: run.clone(), conns: BTreeMap::new(), leaders: BTreeMap::new() }
    }

    async fn conn(&mut self, broker: i32) -> Option<&mut Conn> {
        if !self.conns.contains_key(&broker) {
            let conn = Conn::connect((self.run.addr)(broker)).await.ok()?;
            self.conns.insert(broker, conn);
        }
        self.conns.get_mut(&broker)
    }

    fn forget(&mut self, broker: i32) {
        self.conns.remove(&broker);
        self.leaders.clear();
    }

    fn any(&self) -> i32 {
        thread_rng().gen_range(1..=self.run.brokers)
    }

    async fn leader(&mut self, partition: i32) -> Option<i32> {
        if !self.leaders.contains_key(&partition) {
            let asked = self.any();
            match self.conn(asked).await?.leaders(TXN_TOPIC).await {
                Ok(leaders) => {
                    self.leaders = leaders.into_iter().filter(|(_, (l, _))| *l > 0).map(|(p, (l, _))| (p, l)).collect()
                }
                Err(_) => self.forget(asked),
            }
        }
        self.leaders.get(&partition).copied()
    }

    /// The coordinator of transactional id `id` (`group`: of a group instead), as a random
    /// broker names it.
    async fn coordinator(&mut self, key: &str, group: bool) -> Option<i32> {
        let asked = self.any();
        let conn = self.conn(asked).await?;
        let found = if group { conn.find_coordinator(key).await } else { conn.find_txn_coordinator(key).await };
        match found {
            Ok((0, node)) if (1..=self.run.brokers).contains(&node) => {
                if !group {
                    self.run.coordinator.store(node, Ordering::SeqCst);
                }
                Some(node)
            }
            Ok(_) => None,
            Err(_) => {
                self.forget(asked);
                None
            }
        }
    }
}

/// Why a transaction could not go on: its fate is unknown, and the driver starts over with a
/// new instance of its id (whose InitProducerId aborts it if it is still open).
struct Abandoned;

/// Calls a coordinator until it answers something other than a retriable error: the answer,
/// or `Err` after [`ATTEMPTS`] or once the run stops.
macro_rules! at_coordinator {
    ($links:expr, $run:expr, $key:expr, $group:expr, |$conn:ident| $call:expr) => {{
        let mut answer = Err(Abandoned);
        for _ in 0..ATTEMPTS {
            if $run.stopped() {
                break;
            }
            let Some(node) = $links.coordinator($key, $group).await else {
                sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Some($conn) = $links.conn(node).await else {
                sleep(Duration::from_millis(100)).await;
                continue;
            };
            match $call.await {
                Ok(code) if COORDINATOR_RETRIABLE.contains(&code) => sleep(Duration::from_millis(50)).await,
                Ok(code) => {
                    answer = Ok(code);
                    break;
                }
                Err(_) => {
                    $links.forget(node);
                    sleep(Duration::from_millis(50)).await;
                }
            }
        }
        answer
    }};
}

/// Runs transactions for `id` until the run stops.
pub async fn driver(id: &'static str, run: Arc<TxnRun>) {
    let mut links = Links::new(&run);
    let mut producer: Option<(i64, i16)> = None;
    let mut sequences = [0i32; TXN_PARTITIONS as usize];
    let mut n: i64 = 0;
    // The epoch the previous transaction ended with, under the second generation.
    let mut previous: Option<(i64, i16)> = None;
    let generation = if id == TV2_ID { Generation::Tv2 } else { Generation::Tv1 };
    while !run.stopped() {
        let Some(current) = producer else {
            producer = init(&mut links, &run, id).await;
            sequences = [0; TXN_PARTITIONS as usize];
            previous = None;
            continue;
        };
        n += 1;
        let label = format!("{id}:{n}");
        run.history().decided.insert(label.clone(), None);
        let ending = transaction(&mut links, &run, id, generation, (current, previous), &mut sequences, n).await;
        match ending {
            Ok(Ending::Decided(commit, next)) => {
                run.history().decided.insert(label, Some(commit));
                if let Some(next) = next.filter(|&next| next != current) {
                    // The second generation's end bumped the epoch: sequences start over.
                    previous = Some(current);
                    producer = Some(next);
                    sequences = [0; TXN_PARTITIONS as usize];
                }
            }
            Ok(Ending::Zombie) => {
                // A second instance started mid-transaction: the coordinator aborted it before
                // answering the new instance, whose InitProducerId returned.
                let Some(next) = init(&mut links, &run, id).await else {
                    producer = None;
                    continue;
                };
                run.history().decided.insert(label.clone(), Some(false));
                let refused = at_coordinator!(links, run, id, false, |conn| conn.end_txn(id, current, true));
                if matches!(refused, Ok(0)) {
                    run.history().zombie_commits.push(format!("{label}: the fenced instance's commit was accepted"));
                }
                producer = Some(next);
                sequences = [0; TXN_PARTITIONS as usize];
                previous = None;
            }
            Err(Abandoned) => producer = None,
        }
    }
}

/// Which generation of the protocol a driver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generation {
    /// KIP-98: AddPartitionsToTxn, AddOffsetsToTxn, Produce v9, TxnOffsetCommit v3, EndTxn v3.
    Tv1,
    /// KIP-890 part 2: Produce v12 and TxnOffsetCommit v5 add their partitions, EndTxn v5
    /// bumps the epoch.
    Tv2,
}

async fn init(links: &mut Links, run: &Arc<TxnRun>, id: &str) -> Option<(i64, i16)> {
    for _ in 0..ATTEMPTS {
        if run.stopped() {
            return None;
        }
        let Some(node) = links.coordinator(id, false).await else {
            sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Some(conn) = links.conn(node).await else { continue };
        match conn.init_txn(id, TXN_TIMEOUT_MS).await {
            Ok((0, producer_id, epoch)) => return Some((producer_id, epoch)),
            Ok(_) => sleep(Duration::from_millis(100)).await,
            Err(_) => links.forget(node),
        }
    }
    None
}

enum Ending {
    /// EndTxn acknowledged: committed (`true`) or aborted, with the producer id and epoch to
    /// go on with (`None` under the first generation: unchanged).
    Decided(bool, Option<(i64, i16)>),
    /// A second instance of the id was started before the end.
    Zombie,
}

async fn transaction(
    links: &mut Links,
    run: &Arc<TxnRun>,
    id: &'static str,
    generation: Generation,
    (producer, previous): ((i64, i16), Option<(i64, i16)>),
    sequences: &mut [i32; TXN_PARTITIONS as usize],
    n: i64,
) -> Result<Ending, Abandoned> {
    let group = format!("txg-{id}");
    if generation == Generation::Tv1 {
        let partitions: Vec<i32> = (0..TXN_PARTITIONS).collect();
        let added =
            at_coordinator!(links, run, id, false, |conn| conn.add_partitions(id, producer, TXN_TOPIC, &partitions));
        if added? != 0 || at_coordinator!(links, run, id, false, |conn| conn.add_offsets(id, producer, &group))? != 0 {
            return Err(Abandoned);
        }
    }
    let (produce_version, offsets_version, end_version) = match generation {
        Generation::Tv1 => (9, 3, 3),
        Generation::Tv2 => (12, 5, 5),
    };
    let mut rng = thread_rng();
    for partition in 0..TXN_PARTITIONS {
        if partition == 1 && rng.gen_ratio(1, 5) {
            if let Some(previous) = previous {
                // The previous transaction's commit, arriving late (KAFKA-17754): it must not
                // end this one, which has written to partition 0 only.
                let late = at_coordinator!(links, run, id, false, |conn| async {
                    conn.end_txn_at(end_version, id, previous, true).await.map(|(code, _, _)| code)
                });
                if matches!(late, Ok(0)) {
                    run.history().late_ends.push(format!("{id}:{n}: the commit of epoch {} ended it", previous.1));
                }
            }
        }
        let value = format!("{id}:{n}:{partition}");
        let record = Record { key: None, value: Some(value.into_bytes()), headers: Vec::new(), timestamp: 1_000_000 };
        let idempotence = Idempotence {
            producer_id: producer.0,
            producer_epoch: producer.1,
            base_sequence: sequences[partition as usize],
        };
        let bytes = headwater_core::log::batch::build::transactional(batch(&[record], Some(idempotence)));
        let mut written = false;
        for _ in 0..ATTEMPTS {
            if run.stopped() {
                return Err(Abandoned);
            }
            let Some(leader) = links.leader(partition).await else {
                sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Some(conn) = links.conn(leader).await else { continue };
            match conn.produce_txn(produce_version, id, TXN_TOPIC, partition, bytes.clone()).await {
                Ok((0, _)) => {
                    written = true;
                    break;
                }
                Ok((code, _)) if PRODUCE_RETRIABLE.contains(&code) => {
                    links.leaders.clear();
                    sleep(Duration::from_millis(50)).await;
                }
                Ok(_) => return Err(Abandoned),
                Err(_) => {
                    links.forget(leader);
                    sleep(Duration::from_millis(50)).await;
                }
            }
        }
        if !written {
            return Err(Abandoned);
        }
        sequences[partition as usize] += 1;
    }
    let committed = at_coordinator!(links, run, &group, true, |conn| conn.txn_commit_offset(
        id,
        producer,
        &group,
        (INPUT.0, INPUT.1, n),
        offsets_version
    ));
    if committed? != 0 {
        return Err(Abandoned);
    }
    if rng.gen_ratio(1, 12) {
        return Ok(Ending::Zombie);
    }
    let commit = rng.gen_ratio(3, 4);
    let ended = at_coordinator!(links, run, id, false, |conn| async {
        conn.end_txn_at(end_version, id, producer, commit).await.map(|(code, producer_id, epoch)| {
            if code == 0 && generation == Generation::Tv2 {
                run.history().next_epochs.insert(id, (producer_id, epoch));
            }
            code
        })
    });
    match ended? {
        0 if generation == Generation::Tv2 => {
            let next = run.history().next_epochs.remove(id);
            Ok(Ending::Decided(commit, next))
        }
        0 => Ok(Ending::Decided(commit, None)),
        _ => Err(Abandoned),
    }
}

/// The records a read_committed fetch answer holds for the client: transactional batches of
/// aborted transactions left out (from the aborted list, until the abort marker), control
/// batches skipped. (offset, value) in order; `Err` for bytes that do not decode.
fn committed_records(bytes: &Bytes, aborted: &[(i64, i64)]) -> Result<Vec<(i64, String)>, String> {
    let mut aborted: Vec<(i64, i64)> = aborted.to_vec();
    aborted.sort_by_key(|&(_, first)| first);
    let mut pending = aborted.into_iter().peekable();
    let mut aborting: BTreeSet<i64> = BTreeSet::new();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..).and_then(BatchHeader::parse) {
        let Some(size) = header.size_bytes().filter(|&s| at + s <= bytes.len()) else { break };
        let batch = &bytes[at..at + size];
        at += size;
        while let Some(&(producer, _)) = pending.peek().filter(|&&(_, first)| first <= header.last_offset()) {
            aborting.insert(producer);
            pending.next();
        }
        if header.is_control() {
            // An abort marker (type 0) ends its producer's aborted transaction.
            if control_type(batch) == Some(0) {
                aborting.remove(&header.producer_id);
            }
            continue;
        }
        if header.is_transactional() && aborting.contains(&header.producer_id) {
            continue;
        }
        let records = payload_records(batch).ok_or_else(|| format!("undecodable batch at {}", header.base_offset))?;
        for (i, record) in records.into_iter().enumerate() {
            let value = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned();
            out.push((header.base_offset + i as i64, value));
        }
    }
    Ok(out)
}

/// Reads `partition` read_committed from `from` up to its last stable offset (at most a few
/// fetches): the records and where the next read starts. `None` if the leader did not answer.
async fn read_committed(
    links: &mut Links,
    partition: i32,
    from: i64,
    until: Option<i64>,
) -> Option<(Vec<(i64, String)>, i64)> {
    let leader = links.leader(partition).await?;
    let conn = links.conn(leader).await?;
    let mut position = from;
    let mut records = Vec::new();
    for _ in 0..200 {
        let answer = conn.fetch_committed_with_aborted(TXN_TOPIC, partition, position).await;
        let (code, stable, bytes, aborted) = match answer {
            Ok(answer) => answer,
            Err(_) => {
                links.forget(leader);
                return None;
            }
        };
        if code != 0 {
            links.leaders.clear();
            return None;
        }
        let mut next = position;
        let mut at = 0;
        while let Some(header) = bytes.get(at..).and_then(BatchHeader::parse) {
            let Some(size) = header.size_bytes().filter(|&s| at + s <= bytes.len()) else { break };
            next = next.max(header.last_offset() + 1);
            at += size;
        }
        let read = committed_records(&bytes, &aborted).ok()?;
        records.extend(read.into_iter().filter(|(offset, _)| *offset >= position));
        if next == position || until.is_none_or(|u| next >= u.min(stable)) {
            return Some((records, next.min(stable.max(position))));
        }
        position = next;
    }
    Some((records, position))
}

/// Polls the partitions read_committed while the run goes on, recording what it reads.
pub async fn reader(run: Arc<TxnRun>) {
    let mut links = Links::new(&run);
    let mut positions = [0i64; TXN_PARTITIONS as usize];
    while !run.stopped() {
        let partition = thread_rng().gen_range(0..TXN_PARTITIONS);
        if let Some((records, next)) = read_committed(&mut links, partition, positions[partition as usize], None).await
        {
            positions[partition as usize] = next;
            let mut history = run.history();
            history.seen.extend(records.into_iter().map(|(offset, value)| (partition, offset, value)));
        }
        sleep(Duration::from_millis(thread_rng().gen_range(20..200))).await;
    }
}

/// After healing (every transaction ended): each partition's whole read_committed content,
/// and each id's committed offset.
pub async fn final_read(run: Arc<TxnRun>) {
    let mut links = Links::new(&run);
    for partition in 0..TXN_PARTITIONS {
        // (high watermark, last stable offset) as the leader last answered them.
        let mut ends: Option<(i64, i64)> = None;
        for _ in 0..50 {
            let Some(leader) = links.leader(partition).await else {
                sleep(Duration::from_millis(200)).await;
                continue;
            };
            let Some(conn) = links.conn(leader).await else { continue };
            match conn.ends(TXN_TOPIC, partition).await {
                Ok((0, high_watermark, stable)) => {
                    ends = Some((high_watermark, stable));
                    if stable == high_watermark {
                        break;
                    }
                }
                Ok(_) => links.leaders.clear(),
                Err(_) => links.forget(leader),
            }
            sleep(Duration::from_millis(200)).await;
        }
        let stable = match ends {
            Some((high_watermark, stable)) if stable == high_watermark => stable,
            Some((high_watermark, stable)) => {
                run.history().hanging.push(format!(
                    "partition {partition}: the last stable offset stays at {stable}, below the high watermark \
                     {high_watermark}"
                ));
                continue;
            }
            None => continue,
        };
        for _ in 0..20 {
            if let Some((records, _)) = read_committed(&mut links, partition, 0, Some(stable)).await {
                run.history().final_read.insert(partition, records);
                break;
            }
            sleep(Duration::from_millis(200)).await;
        }
    }
    for id in IDS {
        let group = format!("txg-{id}");
        for _ in 0..30 {
            let Some(node) = links.coordinator(&group, true).await else {
                sleep(Duration::from_millis(200)).await;
                continue;
            };
            let Some(conn) = links.conn(node).await else { continue };
            match conn.committed_stable(&group, INPUT.0, INPUT.1).await {
                Ok(Some(offset)) => {
                    run.history().final_offsets.insert(id, (offset >= 0).then_some(offset));
                    break;
                }
                Ok(None) => sleep(Duration::from_millis(200)).await,
                Err(_) => links.forget(node),
            }
        }
    }
}

/// The anomalies in what the workload saw (see the module's note).
pub fn check(run: &TxnRun) -> Vec<Anomaly> {
    let history = run.history();
    let mut anomalies = Vec::new();
    let mut push = |kind: &'static str, detail: String| anomalies.push(Anomaly { kind, detail });
    if history.final_read.len() < TXN_PARTITIONS as usize && history.hanging.is_empty() {
        push("txn-final-read", format!("only partitions {:?} could be read at the end", history.final_read.keys()));
    }
    for hanging in &history.hanging {
        push("hanging-transaction", hanging.clone());
    }
    for zombie in &history.zombie_commits {
        push("zombie-commit", zombie.clone());
    }
    for late in &history.late_ends {
        push("late-end-accepted", late.clone());
    }
    // label -> partitions holding one of its records; records seen twice.
    let mut visible: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    let mut held: BTreeSet<String> = BTreeSet::new();
    for (&partition, records) in &history.final_read {
        for (offset, value) in records {
            if !held.insert(value.clone()) {
                push("duplicate-record", format!("{value} is visible twice (again at {partition}/{offset})"));
            }
            let label = value.rsplit_once(':').map_or(value.as_str(), |(label, _)| label);
            visible.entry(label.to_string()).or_default().insert(partition);
        }
    }
    let complete = history.final_read.len() == TXN_PARTITIONS as usize;
    for (label, partitions) in &visible {
        match history.decided.get(label) {
            Some(Some(false)) => push("aborted-read", format!("{label}: aborted, yet visible in {partitions:?}")),
            None => push("aborted-read", format!("{label}: never written, yet visible")),
            _ => {}
        }
        if complete && partitions.len() < TXN_PARTITIONS as usize {
            push("torn-transaction", format!("{label}: visible only in partitions {partitions:?}"));
        }
    }
    if complete {
        for (label, decided) in &history.decided {
            if *decided == Some(true) && !visible.contains_key(label) {
                push(
                    "lost-txn-commit",
                    format!("{label}: its commit was acknowledged, and no record of it is visible"),
                );
            }
        }
        for (partition, offset, value) in &history.seen {
            if !held.contains(value) {
                push("dirty-read", format!("{value} read at {partition}/{offset} during the run, gone at the end"));
            }
        }
        for (id, committed) in &history.final_offsets {
            let last =
                visible.keys().filter_map(|label| label.strip_prefix(&format!("{id}:"))?.parse::<i64>().ok()).max();
            if *committed != last {
                push(
                    "offsets-not-atomic",
                    format!("{id}: committed offset {committed:?}, last visible transaction {last:?}"),
                );
            }
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn_batch(producer_id: i64, offset: i64, value: &str) -> Vec<u8> {
        let record = Record { key: None, value: Some(value.as_bytes().to_vec()), headers: Vec::new(), timestamp: 1 };
        let mut bytes = headwater_core::log::batch::build::transactional(batch(
            &[record],
            Some(Idempotence { producer_id, producer_epoch: 0, base_sequence: 0 }),
        ));
        bytes[..8].copy_from_slice(&offset.to_be_bytes());
        bytes
    }

    #[test]
    fn an_aborted_transactions_records_are_left_out_until_its_marker() {
        let mut bytes = txn_batch(1, 0, "a:1:0");
        bytes.extend(txn_batch(2, 1, "b:1:0"));
        let mut marker = headwater_core::log::batch::marker_batch(1, 0, 0, 0, 1);
        marker[..8].copy_from_slice(&2i64.to_be_bytes());
        bytes.extend(marker);
        bytes.extend(txn_batch(1, 3, "a:2:0"));
        let read = committed_records(&Bytes::from(bytes), &[(1, 0)]).unwrap();
        let values: Vec<&str> = read.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, vec!["b:1:0", "a:2:0"]);
    }
}
