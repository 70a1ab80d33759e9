//! The producer: records are batched per partition (by `linger` and `batch_bytes`), compressed,
//! and sent to each partition's leader by one background task. Idempotence is on by default:
//! the producer takes a producer id, numbers each partition's batches, and retries a batch
//! with the same numbers, so a retry whose first attempt was stored is not stored twice. One
//! batch per partition is in flight at a time, so retries never reorder a partition.
//!
//! `send` returns once the record is queued; its [`Delivery`] resolves when the broker has
//! answered (or the delivery timeout passed). Nothing needs to be polled.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use headwater_core::log::batch::build::{compressed_batch, Idempotence, Record};

use crate::cluster::{ClientConfig, Cluster};
use crate::error::{Error, ErrorKind, Result};
use crate::records::{now_ms, partition_for_key, Compression, ProducerRecord, RecordMetadata};

/// `acks`: how many replicas must have a record before the broker answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// No answer at all (offsets are -1).
    None,
    /// The leader wrote it.
    Leader,
    /// Every in-sync replica has it (on Headwater: it is fsynced).
    All,
}

impl Acks {
    fn code(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub client: ClientConfig,
    pub acks: Acks,
    /// How long a batch waits for more records (`linger.ms`).
    pub linger: Duration,
    /// A batch is sent once it holds this many bytes (`batch.size`).
    pub batch_bytes: usize,
    pub compression: Compression,
    /// `enable.idempotence`; needs acks=all.
    pub idempotence: bool,
    /// First wait before a retry; doubles up to 1 s (`retry.backoff.ms`).
    pub retry_backoff: Duration,
    /// A record not acknowledged within this fails (`delivery.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Records queued before `send` waits for room.
    pub queue_records_max: usize,
    /// How long a record waits for its topic to appear in metadata before it fails as an
    /// unknown topic (`max.block.ms`).
    pub metadata_wait: Duration,
}

impl ProducerConfig {
    pub fn new(bootstrap: &str) -> ProducerConfig {
        ProducerConfig {
            client: ClientConfig::new(bootstrap),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_bytes: 16 * 1024,
            compression: Compression::None,
            idempotence: true,
            retry_backoff: Duration::from_millis(100),
            delivery_timeout: Duration::from_secs(120),
            queue_records_max: 100_000,
            metadata_wait: Duration::from_secs(60),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.idempotence && self.acks != Acks::All {
            return Err(Error::config("idempotence needs acks=all (set acks to all, or idempotence off)"));
        }
        if self.batch_bytes == 0 {
            return Err(Error::config("batch_bytes must be positive"));
        }
        Ok(())
    }
}

/// A record's delivery report, resolved by the producer's task.
pub struct Delivery(oneshot::Receiver<Result<RecordMetadata>>);

impl Delivery {
    pub async fn wait(self) -> Result<RecordMetadata> {
        self.0.await.unwrap_or_else(|_| Err(Error::closed("producer")))
    }

    /// The report if it has arrived, without waiting.
    pub fn try_get(&mut self) -> Option<Result<RecordMetadata>> {
        match self.0.try_recv() {
            Ok(result) => Some(result),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(Error::closed("producer"))),
        }
    }
}

impl std::future::Future for Delivery {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| r.unwrap_or_else(|_| Err(Error::closed("producer"))))
    }
}

enum Command {
    Send(ProducerRecord, oneshot::Sender<Result<RecordMetadata>>),
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

pub struct Producer {
    commands: mpsc::Sender<Command>,
}

impl Producer {
    /// Starts the producer's task on the current tokio runtime.
    pub fn new(config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let cluster = Cluster::new(config.client.clone())?;
        let (commands, receiver) = mpsc::channel(config.queue_records_max.max(1));
        tokio::spawn(Sender::new(cluster, config).run(receiver));
        Ok(Producer { commands })
    }

    /// Queues `record`; waits only if the queue is full. The returned [`Delivery`] resolves when
    /// the broker answers.
    pub async fn send(&self, record: ProducerRecord) -> Result<Delivery> {
        if record.topic.is_empty() {
            return Err(Error::config("a record needs a topic"));
        }
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Send(record, tx)).await.map_err(|_| Error::closed("producer"))?;
        Ok(Delivery(rx))
    }

    /// Sends `record` and waits for its delivery report.
    pub async fn send_and_wait(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        self.send(record).await?.wait().await
    }

    /// Sends everything queued now, without lingering, and waits until all of it is answered.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Flush(tx)).await.map_err(|_| Error::closed("producer"))?;
        rx.await.map_err(|_| Error::closed("producer"))
    }

    /// Flushes, then stops the producer's task. Later sends fail with [`ErrorKind::Closed`].
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

type Waiter = oneshot::Sender<Result<RecordMetadata>>;

struct Batch {
    topic: String,
    partition: i32,
    records: Vec<Record>,
    waiters: Vec<Waiter>,
    bytes: usize,
    created: Instant,
    deadline: Instant,
    /// Producer identity and base sequence, fixed at the first attempt (idempotent producers).
    identity: Option<Idempotence>,
    attempts: u32,
    retry_at: Option<Instant>,
}

impl Batch {
    fn fail(self, error: &Error) {
        for waiter in self.waiters {
            let _ = waiter.send(Err(error.clone()));
        }
    }
}

#[derive(Default)]
struct PartitionQueue {
    open: Option<Batch>,
    ready: VecDeque<Batch>,
    in_flight: bool,
    next_sequence: i32,
}

/// The outcome of one Produce request: its batches and the broker's answer.
type Sent = (Vec<Batch>, Result<Option<ProduceResponse>>);

/// Commands the sender takes in one round of its loop before it closes and sends batches.
const COMMANDS_PER_ROUND_MAX: usize = 1024;

struct Sender {
    cluster: Arc<Cluster>,
    config: ProducerConfig,
    partitions: BTreeMap<(String, i32), PartitionQueue>,
    /// Records whose topic's partitions are not known yet, with when they were queued.
    unrouted: Vec<(ProducerRecord, Waiter, Instant)>,
    /// Topic -> the partition records without key or partition go to until its batch closes.
    sticky: BTreeMap<String, i32>,
    producer: Option<(i64, i16)>,
    in_flight: JoinSet<Sent>,
    flushes: Vec<oneshot::Sender<()>>,
    flushing: bool,
    metadata_retry_at: Option<Instant>,
    next_sticky: u64,
}

impl Sender {
    fn new(cluster: Arc<Cluster>, config: ProducerConfig) -> Sender {
        Sender {
            cluster,
            config,
            partitions: BTreeMap::new(),
            unrouted: Vec::new(),
            sticky: BTreeMap::new(),
            producer: None,
            in_flight: JoinSet::new(),
            flushes: Vec::new(),
            flushing: false,
            metadata_retry_at: None,
            next_sticky: u64::from(std::process::id()),
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut closing: Option<oneshot::Sender<()>> = None;
        loop {
            let wake = self.next_wake();
            tokio::select! {
                command = commands.recv(), if closing.is_none() => {
                    self.on_command(command, &mut closing);
                    // Take what else is queued before the housekeeping below, which walks
                    // every partition: once per record would make a busy producer quadratic.
                    for _ in 0..COMMANDS_PER_ROUND_MAX {
                        if closing.is_some() {
                            break;
                        }
                        match commands.try_recv() {
                            Ok(command) => self.on_command(Some(command), &mut closing),
                            Err(_) => break,
                        }
                    }
                }
                Some(done) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    if let Ok((batches, result)) = done {
                        self.handle_response(batches, result).await;
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
            self.route_unrouted().await;
            self.expire();
            self.close_ripe_batches();
            self.send_ready().await;
            if self.is_idle() {
                self.flushing = false;
                for done in self.flushes.drain(..) {
                    let _ = done.send(());
                }
                if let Some(done) = closing.take() {
                    let _ = done.send(());
                    return;
                }
            }
        }
    }

    fn on_command(&mut self, command: Option<Command>, closing: &mut Option<oneshot::Sender<()>>) {
        match command {
            Some(Command::Send(record, waiter)) => self.enqueue(record, waiter),
            Some(Command::Flush(done)) => {
                self.flushes.push(done);
                self.flushing = true;
            }
            Some(Command::Close(done)) => {
                *closing = Some(done);
                self.flushing = true;
            }
            None => {
                *closing = Some(oneshot::channel().0);
                self.flushing = true;
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.unrouted.is_empty()
            && self.in_flight.is_empty()
            && self.partitions.values().all(|q| q.open.is_none() && q.ready.is_empty() && !q.in_flight)
    }

    /// The next moment something is due: a linger, a retry, a delivery deadline.
    fn next_wake(&self) -> Instant {
        let mut wake = Instant::now() + Duration::from_secs(1);
        for queue in self.partitions.values() {
            if let Some(open) = &queue.open {
                wake = wake.min(open.created + self.config.linger);
            }
            // Only the front batch can be retried (a retry goes back to the front), and
            // deadlines grow along the queue, so the front says when this queue is next due.
            if let Some(batch) = queue.ready.front() {
                wake = wake.min(batch.retry_at.unwrap_or(batch.deadline)).min(batch.deadline);
            }
        }
        if !self.unrouted.is_empty() {
            wake = wake.min(self.metadata_retry_at.unwrap_or_else(Instant::now));
        }
        wake
    }

    fn enqueue(&mut self, record: ProducerRecord, waiter: Waiter) {
        self.unrouted.push((record, waiter, Instant::now()));
    }

    /// Chooses partitions for queued records whose topics are known; loads unknown topics.
    async fn route_unrouted(&mut self) {
        if self.unrouted.is_empty() {
            return;
        }
        let missing: Vec<String> = {
            let mut names: Vec<String> = self
                .unrouted
                .iter()
                .filter(|(r, _, _)| self.cluster.topic(&r.topic).is_none())
                .map(|(r, _, _)| r.topic.clone())
                .collect();
            names.sort();
            names.dedup();
            names
        };
        if !missing.is_empty() && self.metadata_retry_at.is_none_or(|t| t <= Instant::now()) {
            if let Err(e) = self.cluster.refresh(Some(&missing), true).await {
                tracing::debug!(error = %e, "metadata refresh failed");
            }
            self.metadata_retry_at = Some(Instant::now() + self.config.retry_backoff);
        }
        let now = Instant::now();
        for (record, waiter, queued) in std::mem::take(&mut self.unrouted) {
            let Some(topic) = self.cluster.topic(&record.topic) else {
                if queued + self.config.metadata_wait <= now {
                    let message =
                        format!("topic {} not in metadata after {:?}", record.topic, self.config.metadata_wait);
                    let _ = waiter.send(Err(Error::from_code(3, message).expect("code")));
                } else {
                    self.unrouted.push((record, waiter, queued));
                }
                continue;
            };
            let count = topic.partitions.len() as i32;
            let partition = match (record.partition, &record.key) {
                (Some(p), _) if p < 0 || p >= count => {
                    let _ = waiter.send(Err(Error::from_code(3, format!("{}-{p}", record.topic)).expect("code")));
                    continue;
                }
                (Some(p), _) => p,
                (None, Some(key)) => partition_for_key(key, count),
                (None, None) => {
                    let next = &mut self.next_sticky;
                    *self.sticky.entry(record.topic.clone()).or_insert_with(|| {
                        *next = next.wrapping_add(1);
                        (*next % count.max(1) as u64) as i32
                    })
                }
            };
            self.append(record, partition, waiter);
        }
    }

    fn append(&mut self, record: ProducerRecord, partition: i32, waiter: Waiter) {
        let size = record.size_estimate();
        let key = (record.topic.clone(), partition);
        let queue = self.partitions.entry(key).or_default();
        if queue.open.as_ref().is_some_and(|b| b.bytes + size > self.config.batch_bytes && !b.records.is_empty()) {
            let full = queue.open.take().expect("checked");
            queue.ready.push_back(full);
            self.sticky.remove(&record.topic);
        }
        let now = Instant::now();
        let batch = queue.open.get_or_insert_with(|| Batch {
            topic: record.topic.clone(),
            partition,
            records: Vec::new(),
            waiters: Vec::new(),
            bytes: 0,
            created: now,
            deadline: now + self.config.delivery_timeout,
            identity: None,
            attempts: 0,
            retry_at: None,
        });
        batch.bytes += size;
        batch.records.push(Record {
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp: record.timestamp.unwrap_or_else(now_ms),
        });
        batch.waiters.push(waiter);
    }

    /// Closes batches that are full, lingered long enough, or must go now (flush, close).
    fn close_ripe_batches(&mut self) {
        let now = Instant::now();
        for ((topic, _), queue) in &mut self.partitions {
            let ripe = queue.open.as_ref().is_some_and(|b| {
                self.flushing || b.bytes >= self.config.batch_bytes || b.created + self.config.linger <= now
            });
            if ripe {
                queue.ready.push_back(queue.open.take().expect("checked"));
                self.sticky.remove(topic);
            }
        }
    }

    /// Fails batches whose delivery timeout passed while they waited.
    fn expire(&mut self) {
        let now = Instant::now();
        for queue in self.partitions.values_mut() {
            while queue.ready.front().is_some_and(|b| b.deadline <= now) {
                let batch = queue.ready.pop_front().expect("checked");
                let error = Error::timeout(format!(
                    "delivering {} records to {}-{} (after {} attempts)",
                    batch.records.len(),
                    batch.topic,
                    batch.partition,
                    batch.attempts
                ));
                batch.fail(&error);
            }
        }
    }

    async fn ensure_producer_id(&mut self) -> Result<(i64, i16)> {
        if let Some(id) = self.producer {
            return Ok(id);
        }
        let connection = self.cluster.any().await?;
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(i32::MAX)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        let (_, response) = connection.call(&request).await?;
        if let Some(e) = Error::from_code(response.error_code, "InitProducerId") {
            return Err(e);
        }
        let id = (response.producer_id.0, response.producer_epoch);
        self.producer = Some(id);
        for queue in self.partitions.values_mut() {
            queue.next_sequence = 0;
        }
        Ok(id)
    }

    /// Sends the first ready batch of every idle partition, one request per leader.
    async fn send_ready(&mut self) {
        let now = Instant::now();
        let sendable: Vec<(String, i32)> = self
            .partitions
            .iter()
            .filter(|(_, q)| !q.in_flight && q.ready.front().is_some_and(|b| b.retry_at.is_none_or(|t| t <= now)))
            .map(|(k, _)| k.clone())
            .collect();
        if sendable.is_empty() {
            return;
        }
        let identity = if self.config.idempotence {
            match self.ensure_producer_id().await {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::debug!(error = %e, "InitProducerId failed");
                    for key in &sendable {
                        let queue = self.partitions.get_mut(key).expect("listed");
                        if e.retriable || e.kind == ErrorKind::Connection {
                            if let Some(batch) = queue.ready.front_mut() {
                                batch.retry_at = Some(now + self.config.retry_backoff);
                            }
                        } else if let Some(batch) = queue.ready.pop_front() {
                            batch.fail(&e);
                        }
                    }
                    return;
                }
            }
        } else {
            None
        };
        let mut by_leader: BTreeMap<i32, Vec<Batch>> = BTreeMap::new();
        for key in sendable {
            let leader = self.cluster.topic(&key.0).and_then(|t| t.partitions.get(key.1 as usize).map(|p| p.leader));
            let queue = self.partitions.get_mut(&key).expect("listed");
            let Some(leader) = leader.filter(|l| *l >= 0) else {
                if let Some(batch) = queue.ready.front_mut() {
                    batch.retry_at = Some(now + self.config.retry_backoff);
                }
                continue;
            };
            let mut batch = queue.ready.pop_front().expect("listed");
            if let (Some((producer_id, producer_epoch)), None) = (identity, batch.identity) {
                batch.identity = Some(Idempotence { producer_id, producer_epoch, base_sequence: queue.next_sequence });
                queue.next_sequence = queue.next_sequence.wrapping_add(batch.records.len() as i32) & i32::MAX;
            }
            batch.attempts += 1;
            queue.in_flight = true;
            by_leader.entry(leader).or_default().push(batch);
        }
        for (leader, batches) in by_leader {
            let cluster = self.cluster.clone();
            let acks = self.config.acks;
            let codec = self.config.compression.codec();
            let timeout_ms = self.config.client.request_timeout.as_millis().min(i32::MAX as u128) as i32;
            self.in_flight.spawn(async move {
                let result = produce(&cluster, leader, &batches, acks, codec, timeout_ms).await;
                (batches, result)
            });
        }
    }

    async fn handle_response(&mut self, batches: Vec<Batch>, result: Result<Option<ProduceResponse>>) {
        let mut refresh = false;
        for mut batch in batches {
            let key = (batch.topic.clone(), batch.partition);
            let code = match &result {
                Err(e) => Err(e.clone()),
                Ok(None) => Ok((0, -1, -1)),
                Ok(Some(response)) => Ok(response
                    .responses
                    .iter()
                    .find(|t| t.name.0.as_str() == batch.topic)
                    .and_then(|t| t.partition_responses.iter().find(|p| p.index == batch.partition))
                    .map_or((-1, -1, -1), |p| (p.error_code, p.base_offset, p.log_append_time_ms))),
            };
            let queue = self.partitions.entry(key).or_default();
            queue.in_flight = false;
            let error = match code {
                // DUPLICATE_SEQUENCE_NUMBER: the first attempt was stored.
                Ok((0 | 46, base_offset, append_time)) => {
                    for (i, (record, waiter)) in batch.records.iter().zip(batch.waiters).enumerate() {
                        let _ = waiter.send(Ok(RecordMetadata {
                            topic: batch.topic.clone(),
                            partition: batch.partition,
                            offset: if base_offset < 0 { -1 } else { base_offset + i as i64 },
                            timestamp: if append_time >= 0 { append_time } else { record.timestamp },
                        }));
                    }
                    continue;
                }
                Ok((-1, _, _)) => Error::new(ErrorKind::Broker, "the broker did not answer for this partition"),
                Ok((code, _, _)) => Error::from_code(code, format!("producing to {}-{}", batch.topic, batch.partition))
                    .expect("nonzero"),
                Err(e) => e,
            };
            let retriable = error.retriable || error.kind == ErrorKind::Connection;
            if retriable && Instant::now() < batch.deadline {
                refresh |= matches!(error.code, 3 | 5 | 6) || error.kind == ErrorKind::Connection;
                let backoff = self.config.retry_backoff * 2u32.saturating_pow(batch.attempts.min(4));
                batch.retry_at = Some(Instant::now() + backoff.min(Duration::from_secs(1)));
                queue.ready.push_front(batch);
            } else {
                if matches!(error.code, 45 | 47 | 59) {
                    // The broker lost track of this producer's sequence: start over with a new
                    // producer id (later batches get new numbers).
                    self.producer = None;
                }
                batch.fail(&error);
            }
        }
        if refresh {
            let topics: Vec<String> = self.partitions.keys().map(|(t, _)| t.clone()).collect();
            if let Err(e) = self.cluster.refresh(Some(&topics), false).await {
                tracing::debug!(error = %e, "metadata refresh failed");
            }
        }
    }
}

async fn produce(
    cluster: &Cluster,
    leader: i32,
    batches: &[Batch],
    acks: Acks,
    codec: i16,
    timeout_ms: i32,
) -> Result<Option<ProduceResponse>> {
    let mut topics: BTreeMap<&str, Vec<PartitionProduceData>> = BTreeMap::new();
    for batch in batches {
        let bytes = compressed_batch(&batch.records, batch.identity, codec).map_err(Error::config)?;
        topics.entry(batch.topic.as_str()).or_default().push(
            PartitionProduceData::default().with_index(batch.partition).with_records(Some(bytes::Bytes::from(bytes))),
        );
    }
    let request = ProduceRequest::default().with_acks(acks.code()).with_timeout_ms(timeout_ms).with_topic_data(
        topics
            .into_iter()
            .map(|(name, partitions)| {
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partition_data(partitions)
            })
            .collect(),
    );
    let connection = cluster.broker(leader).await?;
    if acks == Acks::None {
        connection.send_only(&request).await?;
        return Ok(None);
    }
    let (_, response) = connection.call(&request).await?;
    Ok(Some(response))
}
