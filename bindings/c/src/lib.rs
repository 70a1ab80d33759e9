//! headwater-ffi: the one C ABI over Headwater's Rust client and its embedded broker. The Go
//! SDK (`bindings/go`, cgo) is built on it; `include/headwater.h` is generated from this file
//! by cbindgen and checked in (`tests/header.rs` fails when it drifts).
//!
//! The shape of the ABI:
//!
//! - **Opaque handles** (`HwProducer`, `HwConsumer`, `HwAdmin`, `HwBroker`) are created by a
//!   `_new`/`_start` function and released by exactly one `_free`/`_stop`. A constructor that
//!   fails returns NULL and writes a NUL-terminated message into the caller's `errbuf`.
//! - **Operations** that talk to a broker never block the caller. They return an operation id
//!   at once and report through `callback(context, result)` exactly once, from one of the
//!   library's threads. `result` and everything it points to live only for the duration of
//!   the callback: copy what you keep. `context` is the caller's own value (the Go SDK passes
//!   a `cgo.Handle`).
//! - **`hw_cancel(id)`** releases the waiter of a cancellable operation: its callback runs at
//!   once with `HW_STATUS_CANCELLED` (on the cancelling thread). The work itself runs on to its
//!   end and its result is dropped: aborting a request half-written to a connection shared
//!   with other requests would corrupt that connection. So a cancelled record may still be
//!   written, a cancelled commit may still land. Polls, subscriptions and closes are not
//!   cancellable: what they do (records consumed, a group joined) must reach the caller.
//! - **Every operation reports, even on a bug:** an operation dropped without reporting (its
//!   task panicked) reports `HW_STATUS_FATAL` as it is dropped.
//! - **Inputs** are copied before the call returns. Variable-length inputs and outputs use the
//!   little-endian layout documented in `wire.rs` (strings, nullable byte strings, lists).
//! - Panics never cross the ABI: work runs on tokio tasks, and enum-like settings arrive as
//!   plain `int32_t` (the `HW_ACKS_*`, `HW_COMPRESSION_*`, `HW_OFFSET_RESET_*` constants) and
//!   are checked, so no value a C caller passes is undefined behaviour here.

#![allow(unsafe_code)]

pub mod wire;

use std::collections::HashMap;
use std::ffi::{c_char, CStr};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use headwater_client::{
    Acks, Admin, ClientConfig, Compression, Consumer, ConsumerConfig, ConsumerRecord, Delivery, Error, ErrorKind,
    NewTopic, OffsetReset, Producer, ProducerConfig, ProducerRecord, Rebalance, RecordMetadata, TopicPartition,
};
use headwater_server::embedded::{EmbeddedBroker, EmbeddedOptions};
use tokio::sync::mpsc;

use crate::wire::{Reader, Writer};

/// How an operation ended. Values other than `HW_STATUS_OK` name the kind of error; they are
/// the client's error kinds, plus `HW_STATUS_CANCELLED`.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HwStatus {
    Ok = 0,
    /// The operation did not complete in time.
    Timeout = 1,
    /// The topic or partition does not exist.
    UnknownTopic = 2,
    /// An offset commit was refused (the group moved on, the member was fenced).
    CommitFailed = 3,
    /// The client cannot go on (fenced producer, authorization, unsupported broker).
    Fatal = 4,
    /// Any other error a broker returned; `code` says which.
    Broker = 5,
    /// A connection failed or broke.
    Connection = 6,
    /// A setting or argument is invalid.
    Config = 7,
    /// The handle was closed.
    Closed = 8,
    /// `hw_cancel` ended the operation.
    Cancelled = 9,
}

/// What an operation's callback receives.
#[repr(C)]
pub struct HwResult {
    pub status: HwStatus,
    /// The Kafka error code when a broker sent one, else 0.
    pub code: i16,
    /// Whether retrying the same call may succeed.
    pub retriable: bool,
    /// A human-readable message (UTF-8, not NUL-terminated); empty on success.
    pub message: *const u8,
    pub message_len: usize,
    /// The operation's output, in the layout its function documents; empty when it has none.
    pub data: *const u8,
    pub data_len: usize,
}

/// Called exactly once per operation, from a library thread (or, after `hw_cancel`, from the
/// cancelling thread). It must not block for long: the library's threads are few.
pub type HwCallback = Option<unsafe extern "C" fn(context: usize, result: *const HwResult)>;

/// Which way a group rebalance moved partitions.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HwRebalance {
    /// These partitions are now the consumer's.
    Assigned = 0,
    /// These are about to go: commit what was processed now, the group waits for it.
    Revoked = 1,
    /// The membership was lost; these are gone already and may be another member's.
    Lost = 2,
}

/// Called inside a poll, on the library thread running it, each time the group moves
/// partitions; `partitions` is a list of (str topic, i32 partition), valid for the call. It
/// may block (to commit, say): the library moves its other work off that thread meanwhile.
pub type HwRebalanceCallback =
    Option<unsafe extern "C" fn(context: usize, kind: HwRebalance, partitions: *const u8, partitions_len: usize)>;

/// Settings every handle shares. Strings are NUL-terminated UTF-8; NULL means the default.
#[repr(C)]
pub struct HwClientOptions {
    /// Comma-separated host:port list. Required.
    pub bootstrap: *const c_char,
    pub client_id: *const c_char,
    /// 0 for the default (30 s).
    pub request_timeout_ms: u64,
}

/// `HwProducerOptions::acks`: wait for every in-sync replica (after fsync).
pub const HW_ACKS_ALL: i32 = -1;
/// `HwProducerOptions::acks`: wait for nothing.
pub const HW_ACKS_NONE: i32 = 0;
/// `HwProducerOptions::acks`: wait for the leader.
pub const HW_ACKS_LEADER: i32 = 1;

/// `HwProducerOptions::compression`, Kafka's codec ids.
pub const HW_COMPRESSION_NONE: i32 = 0;
pub const HW_COMPRESSION_GZIP: i32 = 1;
pub const HW_COMPRESSION_SNAPPY: i32 = 2;
pub const HW_COMPRESSION_LZ4: i32 = 3;
pub const HW_COMPRESSION_ZSTD: i32 = 4;

#[repr(C)]
pub struct HwProducerOptions {
    pub client: HwClientOptions,
    /// One of the `HW_ACKS_*` constants.
    pub acks: i32,
    /// Negative for the default (5 ms).
    pub linger_ms: i64,
    /// 0 for the default (16 KiB).
    pub batch_bytes: u64,
    /// One of the `HW_COMPRESSION_*` constants.
    pub compression: i32,
    pub idempotence: bool,
    /// 0 for the default (120 s).
    pub delivery_timeout_ms: u64,
    /// How long a record waits for its topic to appear before it fails as unknown; 0 for the
    /// default (60 s, Kafka's `max.block.ms`).
    pub unknown_topic_wait_ms: u64,
}

/// `HwConsumerOptions::offset_reset`: a partition without a committed offset starts at the
/// log's start.
pub const HW_OFFSET_RESET_EARLIEST: i32 = 0;
/// ... at the log's end.
pub const HW_OFFSET_RESET_LATEST: i32 = 1;
/// ... fails instead.
pub const HW_OFFSET_RESET_NONE: i32 = 2;

#[repr(C)]
pub struct HwConsumerOptions {
    pub client: HwClientOptions,
    /// NULL to consume without a group (the subscribed topics' partitions are all assigned).
    pub group_id: *const c_char,
    /// Static membership (KIP-345); NULL for none.
    pub instance_id: *const c_char,
    /// One of the `HW_OFFSET_RESET_*` constants.
    pub offset_reset: i32,
    pub auto_commit: bool,
    /// 0 for the default (5 s).
    pub auto_commit_interval_ms: u64,
    /// 0 for the default (500).
    pub max_poll_records: u32,
}

// ---- the runtime and operations ------------------------------------------------------------

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("headwater-client")
            .enable_all()
            .build()
            .expect("the client runtime starts")
    })
}

enum Outcome {
    Done(Vec<u8>),
    Failed(Error),
    Cancelled,
}

impl From<Result<Vec<u8>, Error>> for Outcome {
    fn from(result: Result<Vec<u8>, Error>) -> Outcome {
        match result {
            Ok(data) => Outcome::Done(data),
            Err(e) => Outcome::Failed(e),
        }
    }
}

/// An operation in flight: whoever takes `callback` first (its task finishing, `hw_cancel`,
/// or the last reference going away) reports, so the callback runs exactly once.
struct Op {
    id: u64,
    callback: Mutex<Option<(unsafe extern "C" fn(usize, *const HwResult), usize)>>,
    cancellable: bool,
}

/// Operations by id, for `hw_cancel`. Weak, so that an operation whose task died unfinished
/// is dropped, and reports as it goes (`Drop for Op`).
fn ops() -> &'static Mutex<HashMap<u64, Weak<Op>>> {
    static OPS: OnceLock<Mutex<HashMap<u64, Weak<Op>>>> = OnceLock::new();
    OPS.get_or_init(Mutex::default)
}

static NEXT_OP: AtomicU64 = AtomicU64::new(1);

impl Op {
    /// Registers an operation; a NULL callback makes one that reports nowhere.
    fn register(callback: HwCallback, context: usize, cancellable: bool) -> Arc<Op> {
        let op = Arc::new(Op {
            id: NEXT_OP.fetch_add(1, Ordering::Relaxed),
            callback: Mutex::new(callback.map(|f| (f, context))),
            cancellable,
        });
        ops().lock().expect("ops lock").insert(op.id, Arc::downgrade(&op));
        op
    }

    fn finish(&self, outcome: Outcome) {
        ops().lock().expect("ops lock").remove(&self.id);
        let taken = self.callback.lock().expect("op lock").take();
        if let Some((callback, context)) = taken {
            report(callback, context, outcome);
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        let taken = self.callback.get_mut().map(Option::take).unwrap_or(None);
        if let Some((callback, context)) = taken {
            // Reached only when the work ended without reporting: a bug (a panic in a task).
            ops().lock().expect("ops lock").remove(&self.id);
            let error = Error::new(ErrorKind::Fatal, "the operation ended without a result (a bug in headwater-ffi)");
            report(callback, context, Outcome::Failed(error));
        }
    }
}

fn status_of(kind: ErrorKind) -> HwStatus {
    match kind {
        ErrorKind::Timeout => HwStatus::Timeout,
        ErrorKind::UnknownTopic => HwStatus::UnknownTopic,
        ErrorKind::Commit => HwStatus::CommitFailed,
        ErrorKind::Fatal => HwStatus::Fatal,
        ErrorKind::Broker => HwStatus::Broker,
        ErrorKind::Connection => HwStatus::Connection,
        ErrorKind::Config => HwStatus::Config,
        ErrorKind::Closed => HwStatus::Closed,
    }
}

fn report(callback: unsafe extern "C" fn(usize, *const HwResult), context: usize, outcome: Outcome) {
    let (status, code, retriable, message, data) = match outcome {
        Outcome::Done(data) => (HwStatus::Ok, 0, false, String::new(), data),
        Outcome::Failed(e) => (status_of(e.kind), e.code, e.retriable, e.message, Vec::new()),
        Outcome::Cancelled => (HwStatus::Cancelled, 0, false, "cancelled".to_string(), Vec::new()),
    };
    let result = HwResult {
        status,
        code,
        retriable,
        message: message.as_ptr(),
        message_len: message.len(),
        data: data.as_ptr(),
        data_len: data.len(),
    };
    // SAFETY: the caller gave this function pointer for this purpose; `result` and the buffers
    // it points to outlive the call.
    unsafe { callback(context, &result) };
}

/// Runs `work` as a cancellable operation.
fn spawn_op<F>(callback: HwCallback, context: usize, work: F) -> u64
where
    F: Future<Output = Result<Vec<u8>, Error>> + Send + 'static,
{
    spawn_op_with(callback, context, true, work)
}

fn spawn_op_with<F>(callback: HwCallback, context: usize, cancellable: bool, work: F) -> u64
where
    F: Future<Output = Result<Vec<u8>, Error>> + Send + 'static,
{
    let op = Op::register(callback, context, cancellable);
    let id = op.id;
    runtime().spawn(async move {
        let outcome = Outcome::from(work.await);
        op.finish(outcome);
    });
    id
}

/// Reports `error` through `callback` for an operation that could not start.
fn failed_op(callback: HwCallback, context: usize, error: Error) -> u64 {
    let op = Op::register(callback, context, false);
    op.finish(Outcome::Failed(error));
    op.id
}

/// Releases the waiter of operation `operation` if it is still running and cancellable: its
/// callback runs on this thread with `HW_STATUS_CANCELLED`, and the work's own result, when
/// it comes, is dropped. Returns whether it did; false for an operation that already
/// reported (ids are never reused) or cannot be cancelled.
#[no_mangle]
pub extern "C" fn hw_cancel(operation: u64) -> bool {
    // The lock is never held while an `Op` may drop: its `Drop` takes the lock too.
    let weak = ops().lock().expect("ops lock").get(&operation).cloned();
    let Some(op) = weak.and_then(|w| w.upgrade()) else { return false };
    if !op.cancellable {
        return false;
    }
    ops().lock().expect("ops lock").remove(&operation);
    let taken = op.callback.lock().expect("op lock").take();
    match taken {
        Some((callback, context)) => {
            report(callback, context, Outcome::Cancelled);
            true
        }
        None => false,
    }
}

// ---- helpers for the C side ----------------------------------------------------------------

/// `ptr[..len]`, or empty for NULL.
///
/// # Safety
/// `ptr` must be NULL or valid for `len` bytes.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: promised by the caller.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// A NUL-terminated UTF-8 string, `None` for NULL.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string.
unsafe fn c_str(ptr: *const c_char, what: &str) -> Result<Option<String>, Error> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: promised by the caller.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map(|s| Some(s.to_string())).map_err(|_| Error::config(format!("{what} is not UTF-8")))
}

/// Writes `message` NUL-terminated into `errbuf`, truncated to fit.
///
/// # Safety
/// `errbuf` must be NULL or valid for `errbuf_len` bytes.
unsafe fn set_error(errbuf: *mut c_char, errbuf_len: usize, message: &str) {
    if errbuf.is_null() || errbuf_len == 0 {
        return;
    }
    let mut n = message.len().min(errbuf_len - 1);
    while !message.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: promised by the caller; n + 1 <= errbuf_len.
    unsafe {
        std::ptr::copy_nonoverlapping(message.as_ptr(), errbuf.cast::<u8>(), n);
        *errbuf.add(n) = 0;
    }
}

/// # Safety
/// The strings in `options` must be NULL or NUL-terminated.
unsafe fn client_config(options: &HwClientOptions) -> Result<ClientConfig, Error> {
    // SAFETY: promised by the caller.
    let bootstrap = unsafe { c_str(options.bootstrap, "bootstrap") }?
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| Error::config("bootstrap: give at least one host:port"))?;
    let mut config = ClientConfig::new(&bootstrap);
    // SAFETY: promised by the caller.
    if let Some(id) = unsafe { c_str(options.client_id, "client_id") }? {
        config.client_id = id;
    }
    if options.request_timeout_ms > 0 {
        config.request_timeout = Duration::from_millis(options.request_timeout_ms);
    }
    Ok(config)
}

fn metadata_bytes(m: &RecordMetadata) -> Vec<u8> {
    let mut w = Writer::default();
    w.str(&m.topic).i32(m.partition).i64(m.offset).i64(m.timestamp);
    w.0
}

fn records_bytes(records: &[ConsumerRecord]) -> Vec<u8> {
    let mut w = Writer::default();
    w.count(records.len());
    for r in records {
        w.str(&r.topic).i32(r.partition).i64(r.offset).i64(r.timestamp);
        w.opt_bytes(r.key.as_deref()).opt_bytes(r.value.as_deref());
        w.count(r.headers.len());
        for (key, value) in &r.headers {
            w.str(key).opt_bytes(value.as_deref());
        }
    }
    w.0
}

fn strings_bytes<'a>(items: impl ExactSizeIterator<Item = &'a str>) -> Vec<u8> {
    let mut w = Writer::default();
    w.count(items.len());
    for s in items {
        w.str(s);
    }
    w.0
}

// ---- producer ------------------------------------------------------------------------------

enum ProducerCommand {
    Send(ProducerRecord, Arc<Op>),
    /// Reports once every earlier record has reported.
    Flush(Arc<Op>),
}

enum Completion {
    Delivery(Result<Delivery, Error>, Arc<Op>),
    Flush(Arc<Op>),
}

/// A producer. Records are handed to the client in call order by one task, and their
/// callbacks run in that same order, by another.
pub struct HwProducer {
    producer: Arc<Producer>,
    commands: mpsc::UnboundedSender<ProducerCommand>,
}

/// Creates a producer; NULL (with a message in `errbuf`) when a setting is invalid.
///
/// # Safety
/// `options` must point to a valid `HwProducerOptions`; `errbuf` must be NULL or valid for
/// `errbuf_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn hw_producer_new(
    options: *const HwProducerOptions,
    errbuf: *mut c_char,
    errbuf_len: usize,
) -> *mut HwProducer {
    // SAFETY: promised by the caller.
    let made = unsafe { options.as_ref() }
        .ok_or_else(|| Error::config("options is NULL"))
        // SAFETY: promised by the caller.
        .and_then(|options| unsafe { producer_config(options) })
        .and_then(|config| {
            let _guard = runtime().enter();
            Producer::new(config)
        });
    match made {
        Ok(producer) => Box::into_raw(Box::new(start_producer(producer))),
        Err(e) => {
            // SAFETY: promised by the caller.
            unsafe { set_error(errbuf, errbuf_len, &e.message) };
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// The strings in `options` must be NULL or NUL-terminated.
unsafe fn producer_config(options: &HwProducerOptions) -> Result<ProducerConfig, Error> {
    // SAFETY: promised by the caller.
    let client = unsafe { client_config(&options.client) }?;
    let mut config = ProducerConfig::new("");
    config.client = client;
    config.acks = match options.acks {
        HW_ACKS_ALL => Acks::All,
        HW_ACKS_LEADER => Acks::Leader,
        HW_ACKS_NONE => Acks::None,
        other => return Err(Error::config(format!("acks: {other} is not one of -1, 0, 1"))),
    };
    if options.linger_ms >= 0 {
        config.linger = Duration::from_millis(options.linger_ms as u64);
    }
    if options.batch_bytes > 0 {
        config.batch_bytes = usize::try_from(options.batch_bytes).unwrap_or(usize::MAX);
    }
    config.compression = match options.compression {
        HW_COMPRESSION_NONE => Compression::None,
        HW_COMPRESSION_GZIP => Compression::Gzip,
        HW_COMPRESSION_SNAPPY => Compression::Snappy,
        HW_COMPRESSION_LZ4 => Compression::Lz4,
        HW_COMPRESSION_ZSTD => Compression::Zstd,
        other => return Err(Error::config(format!("compression: {other} is not a codec id (0 to 4)"))),
    };
    config.idempotence = options.idempotence;
    if options.delivery_timeout_ms > 0 {
        config.delivery_timeout = Duration::from_millis(options.delivery_timeout_ms);
    }
    if options.unknown_topic_wait_ms > 0 {
        config.metadata_wait = Duration::from_millis(options.unknown_topic_wait_ms);
    }
    Ok(config)
}

fn start_producer(producer: Producer) -> HwProducer {
    let producer = Arc::new(producer);
    let (commands, mut queued) = mpsc::unbounded_channel::<ProducerCommand>();
    let (completions, mut pending) = mpsc::unbounded_channel::<Completion>();
    let sender = producer.clone();
    runtime().spawn(async move {
        while let Some(command) = queued.recv().await {
            let completion = match command {
                ProducerCommand::Send(record, op) => Completion::Delivery(sender.send(record).await, op),
                ProducerCommand::Flush(op) => {
                    // Send what lingers now; the completion task reports the flush once every
                    // earlier record has reported.
                    let producer = sender.clone();
                    tokio::spawn(async move { producer.flush().await });
                    Completion::Flush(op)
                }
            };
            if completions.send(completion).is_err() {
                break;
            }
        }
    });
    runtime().spawn(async move {
        while let Some(completion) = pending.recv().await {
            match completion {
                Completion::Delivery(Ok(delivery), op) => {
                    let result = delivery.wait().await;
                    op.finish(result.map(|m| metadata_bytes(&m)).into());
                }
                Completion::Delivery(Err(e), op) => op.finish(Outcome::Failed(e)),
                Completion::Flush(op) => op.finish(Outcome::Done(Vec::new())),
            }
        }
    });
    HwProducer { producer, commands }
}

impl HwProducer {
    /// Registers a cancellable operation and queues `command` for it; a closed producer
    /// reports `HW_STATUS_CLOSED` at once.
    fn queue(&self, callback: HwCallback, context: usize, command: impl FnOnce(Arc<Op>) -> ProducerCommand) -> u64 {
        let op = Op::register(callback, context, true);
        let id = op.id;
        if let Err(mpsc::error::SendError(ProducerCommand::Send(_, op) | ProducerCommand::Flush(op))) =
            self.commands.send(command(op))
        {
            op.finish(Outcome::Failed(Error::closed("producer")));
        }
        id
    }
}

fn read_record(buf: &[u8]) -> Result<ProducerRecord, Error> {
    let mut r = Reader::new(buf);
    let topic = r.str()?;
    let partition = r.i32()?;
    let timestamp = r.i64()?;
    let key = r.opt_bytes()?;
    let value = r.opt_bytes()?;
    let mut headers = Vec::new();
    for _ in 0..r.count()? {
        headers.push((r.str()?, r.opt_bytes()?));
    }
    r.finish()?;
    Ok(ProducerRecord {
        topic,
        partition: (partition >= 0).then_some(partition),
        key,
        value,
        headers,
        timestamp: (timestamp >= 0).then_some(timestamp),
    })
}

/// Sends one record. `record` is: str topic, i32 partition (-1: the partitioner chooses, by
/// key hash as Kafka's clients do), i64 timestamp in ms (-1: now), bytes? key, bytes? value,
/// then a list of headers (str key, bytes? value). Reports str topic, i32 partition, i64
/// offset, i64 timestamp. Callbacks run in the order records were sent. Cancelling releases
/// the waiter only; the record may still be written.
///
/// # Safety
/// `producer` must be a live handle from `hw_producer_new`; `record` valid for `record_len`.
#[no_mangle]
pub unsafe extern "C" fn hw_producer_send(
    producer: *const HwProducer,
    record: *const u8,
    record_len: usize,
    callback: HwCallback,
    context: usize,
) -> u64 {
    // SAFETY: promised by the caller.
    let (producer, buf) = unsafe { (&*producer, bytes(record, record_len)) };
    let record = match read_record(buf) {
        Ok(record) => record,
        Err(e) => return failed_op(callback, context, e),
    };
    producer.queue(callback, context, |op| ProducerCommand::Send(record, op))
}

/// Reports once every record sent before it has reported.
///
/// # Safety
/// `producer` must be a live handle from `hw_producer_new`.
#[no_mangle]
pub unsafe extern "C" fn hw_producer_flush(producer: *const HwProducer, callback: HwCallback, context: usize) -> u64 {
    // SAFETY: promised by the caller.
    let producer = unsafe { &*producer };
    producer.queue(callback, context, ProducerCommand::Flush)
}

/// Sends what is queued, then closes; later sends fail with `HW_STATUS_CLOSED`.
///
/// # Safety
/// `producer` must be a live handle from `hw_producer_new`.
#[no_mangle]
pub unsafe extern "C" fn hw_producer_close(producer: *const HwProducer, callback: HwCallback, context: usize) -> u64 {
    // SAFETY: promised by the caller.
    let producer = unsafe { &*producer }.producer.clone();
    spawn_op_with(callback, context, false, async move {
        producer.close().await;
        Ok(Vec::new())
    })
}

/// Releases the handle (after `hw_producer_close` has reported, or to abandon it).
///
/// # Safety
/// `producer` must be a handle from `hw_producer_new`, not used again.
#[no_mangle]
pub unsafe extern "C" fn hw_producer_free(producer: *mut HwProducer) {
    if !producer.is_null() {
        // SAFETY: promised by the caller.
        drop(unsafe { Box::from_raw(producer) });
    }
}

// ---- consumer ------------------------------------------------------------------------------

/// A consumer, in a group (`group_id` set) or not.
pub struct HwConsumer {
    consumer: Arc<Consumer>,
    admin: Arc<Admin>,
    grouped: bool,
}

/// Creates a consumer; NULL (with a message in `errbuf`) when a setting is invalid.
///
/// # Safety
/// As `hw_producer_new`.
#[no_mangle]
pub unsafe extern "C" fn hw_consumer_new(
    options: *const HwConsumerOptions,
    errbuf: *mut c_char,
    errbuf_len: usize,
) -> *mut HwConsumer {
    // SAFETY: promised by the caller.
    let made = unsafe { options.as_ref() }.ok_or_else(|| Error::config("options is NULL")).and_then(|options| {
        // SAFETY: promised by the caller.
        let config = unsafe { consumer_config(options) }?;
        let grouped = config.group_id.is_some();
        let admin = Admin::new(config.client.clone())?;
        let _guard = runtime().enter();
        Ok(HwConsumer { consumer: Arc::new(Consumer::new(config)?), admin: Arc::new(admin), grouped })
    });
    match made {
        Ok(consumer) => Box::into_raw(Box::new(consumer)),
        Err(e) => {
            // SAFETY: promised by the caller.
            unsafe { set_error(errbuf, errbuf_len, &e.message) };
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// The strings in `options` must be NULL or NUL-terminated.
unsafe fn consumer_config(options: &HwConsumerOptions) -> Result<ConsumerConfig, Error> {
    // SAFETY: promised by the caller.
    let client = unsafe { client_config(&options.client) }?;
    let mut config = ConsumerConfig::new("");
    config.client = client;
    // SAFETY: promised by the caller.
    config.group_id = unsafe { c_str(options.group_id, "group_id") }?.filter(|g| !g.is_empty());
    // SAFETY: promised by the caller.
    config.group_instance_id = unsafe { c_str(options.instance_id, "instance_id") }?.filter(|i| !i.is_empty());
    config.auto_offset_reset = match options.offset_reset {
        HW_OFFSET_RESET_EARLIEST => OffsetReset::Earliest,
        HW_OFFSET_RESET_LATEST => OffsetReset::Latest,
        HW_OFFSET_RESET_NONE => OffsetReset::None,
        other => return Err(Error::config(format!("offset_reset: {other} is not one of 0, 1, 2"))),
    };
    config.enable_auto_commit = options.auto_commit && config.group_id.is_some();
    if options.auto_commit_interval_ms > 0 {
        config.auto_commit_interval = Duration::from_millis(options.auto_commit_interval_ms);
    }
    if options.max_poll_records > 0 {
        config.max_poll_records = options.max_poll_records as usize;
    }
    Ok(config)
}

/// Consumes `topics` (a list of str): through the group when the consumer has one, else every
/// partition of each topic, directly. Not cancellable (a join must not be half-known).
///
/// # Safety
/// `consumer` must be a live handle; `topics` valid for `topics_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn hw_consumer_subscribe(
    consumer: *const HwConsumer,
    topics: *const u8,
    topics_len: usize,
    callback: HwCallback,
    context: usize,
) -> u64 {
    // SAFETY: promised by the caller.
    let (handle, buf) = unsafe { (&*consumer, bytes(topics, topics_len)) };
    let names = match read_strings(buf) {
        Ok(names) => names,
        Err(e) => return failed_op(callback, context, e),
    };
    let (consumer, admin, grouped) = (handle.consumer.clone(), handle.admin.clone(), handle.grouped);
    spawn_op_with(callback, context, false, async move {
        if grouped {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            consumer.subscribe(&refs).await?;
        } else {
            let mut partitions = Vec::new();
            for name in &names {
                let topic = admin.describe_topic(name).await?;
                partitions.extend((0..topic.partitions).map(|p| (name.clone(), p)));
            }
            consumer.assign(&partitions).await?;
        }
        Ok(Vec::new())
    })
}

fn read_strings(buf: &[u8]) -> Result<Vec<String>, Error> {
    let mut r = Reader::new(buf);
    let mut out = Vec::new();
    for _ in 0..r.count()? {
        out.push(r.str()?);
    }
    r.finish()?;
    Ok(out)
}

/// `hw_consumer_assign`'s symbolic offsets; the first two are ListOffsets' own.
const OFFSET_LATEST: i64 = -1;
const OFFSET_EARLIEST: i64 = -2;
const OFFSET_COMMITTED: i64 = -3;

/// A list of (str topic, i32 partition, i64 offset).
fn read_partition_offsets(buf: &[u8]) -> Result<Vec<(TopicPartition, i64)>, Error> {
    let mut r = Reader::new(buf);
    let mut out = Vec::new();
    for _ in 0..r.count()? {
        out.push(((r.str()?, r.i32()?), r.i64()?));
    }
    r.finish()?;
    Ok(out)
}

/// Consumes exactly `partitions`: a list of (str topic, i32 partition, i64 offset), where an
/// offset of 0 or more is exact, -1 is the log's end, -2 its start, and -3 the committed
/// offset (else the reset policy). Not cancellable.
///
/// # Safety
/// `consumer` must be a live handle; `partitions` valid for `partitions_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn hw_consumer_assign(
    consumer: *const HwConsumer,
    partitions: *const u8,
    partitions_len: usize,
    callback: HwCallback,
    context: usize,
) -> u64 {
    // SAFETY: promised by the caller.
    let (handle, buf) = unsafe { (&*consumer, bytes(partitions, partitions_len)) };
    let wanted = match read_partition_offsets(buf) {
        Ok(wanted) => wanted,
        Err(e) => return failed_op(callback, context, e),
    };
    let consumer = handle.consumer.clone();
    spawn_op_with(callback, context, false, async move {
        let partitions: Vec<_> = wanted.iter().map(|(tp, _)| tp.clone()).collect();
        consumer.assign(&partitions).await?;
        for (tp, offset) in &wanted {
            let exact = match *offset {
                OFFSET_COMMITTED => continue,
                offset @ (OFFSET_LATEST | OFFSET_EARLIEST) => consumer.list_offset(tp, offset).await?,
                offset if offset >= 0 => offset,
                offset => {
                    return Err(Error::config(format!(
                        "offset {offset} for {}-{}: use 0 or more, -1, -2 or -3",
                        tp.0, tp.1
                    )))
                }
            };
            consumer.seek(tp, exact).await?;
        }
        Ok(Vec::new())
    })
}

/// Waits up to `timeout_ms` for records and reports them: a list of (str topic, i32 partition,
/// i64 offset, i64 timestamp, bytes? key, bytes? value, list of (str key, bytes? value)
/// headers). An empty list when none came in time. Not cancellable: records a poll returns
/// count as consumed, so they must reach the caller.
///
/// # Safety
/// `consumer` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn hw_consumer_poll(
    consumer: *const HwConsumer,
    timeout_ms: u64,
    callback: HwCallback,
    context: usize,
) -> u64 {
    // SAFETY: promised by the caller.
    let consumer = unsafe { &*consumer }.consumer.clone();
    spawn_op_with(callback, context, false, async move {
        let records = consumer.poll(Duration::from_millis(timeout_ms)).await?;
        Ok(records_bytes(&records))
    })
}

/// Commits the position after the last record each partition's polls returned.
///
/// # Safety
/// `consumer` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn hw_consumer_commit(consumer: *const HwConsumer, callback: HwCallback, context: usize) -> u64 {
    // SAFETY: promised by the caller.
    let consumer = unsafe { &*consumer }.consumer.clone();
    spawn_op(callback, context, async move {
        consumer.commit().await?;
        Ok(Vec::new())
    })
}

/// Commits `offsets`: a list of (str topic, i32 partition, i64 offset), each the next offset
/// to read. Unlike `hw_consumer_commit` it may be called from a rebalance callback.
///
/// # Safety
/// `consumer` must be a live handle; `offsets` valid for `offsets_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn hw_consumer_commit_offsets(
    consumer: *const HwConsumer,
    offsets: *const u8,
    offsets_len: usize,
    callback: HwCallback,
    context: usize,
) -> u64 {
    // SAFETY: promised by the caller.
    let (handle, buf) = unsafe { (&*consumer, bytes(offsets, offsets_len)) };
    let offsets = match read_partition_offsets(buf) {
        Ok(offsets) => offsets,
        Err(e) => return failed_op(callback, context, e),
    };
    let consumer = handle.consumer.clone();
    spawn_op(callback, context, async move {
        consumer.commit_offsets(&offsets).await?;
        Ok(Vec::new())
    })
}

/// Sets the consumer's rebalance callback (NULL removes it). `context` must stay valid until
/// `hw_consumer_free`.
///
/// # Safety
/// `consumer` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn hw_consumer_set_rebalance_callback(
    consumer: *const HwConsumer,
    callback: HwRebalanceCallback,
    context: usize,
) {
    // SAFETY: promised by the caller.
    let consumer = unsafe { &*consumer };
    let Some(callback) = callback else {
        consumer.consumer.set_rebalance_listener(Arc::new(|_| {}));
        return;
    };
    consumer.consumer.set_rebalance_listener(Arc::new(move |event: &Rebalance| {
        let (kind, partitions) = match event {
            Rebalance::Assigned(p) => (HwRebalance::Assigned, p),
            Rebalance::Revoked(p) => (HwRebalance::Revoked, p),
            Rebalance::Lost(p) => (HwRebalance::Lost, p),
        };
        let mut w = Writer::default();
        w.count(partitions.len());
        for (topic, partition) in partitions {
            w.str(topic).i32(*partition);
        }
        // The callback may block (a Go revocation handler commits): let the runtime move
        // this worker's other tasks elsewhere while it runs.
        // SAFETY: the caller gave this function pointer and context for this purpose.
        tokio::task::block_in_place(|| unsafe { callback(context, kind, w.0.as_ptr(), w.0.len()) });
    }));
}

/// Leaves the group (committing first when auto-commit is on) and closes.
///
/// # Safety
/// `consumer` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn hw_consumer_close(consumer: *const HwConsumer, callback: HwCallback, context: usize) -> u64 {
    // SAFETY: promised by the caller.
    let consumer = unsafe { &*consumer }.consumer.clone();
    spawn_op_with(callback, context, false, async move {
        consumer.close().await;
        Ok(Vec::new())
    })
}

/// Releases the handle.
///
/// # Safety
/// `consumer` must be a handle from `hw_consumer_new`, not used again.
#[no_mangle]
pub unsafe extern "C" fn hw_consumer_free(consumer: *mut HwConsumer) {
    if !consumer.is_null() {
        // SAFETY: promised by the caller.
        let consumer = unsafe { Box::from_raw(consumer) };
        // A task still holding the client must not call into a context the caller frees next.
        consumer.consumer.set_rebalance_listener(Arc::new(|_| {}));
    }
}

// ---- admin ---------------------------------------------------------------------------------

pub struct HwAdmin {
    admin: Arc<Admin>,
}

/// Creates an admin client; NULL (with a message in `errbuf`) when a setting is invalid.
///
/// # Safety
/// As `hw_producer_new`.
#[no_mangle]
pub unsafe extern "C" fn hw_admin_new(
    options: *const HwClientOptions,
    errbuf: *mut c_char,
    errbuf_len: usize,
) -> *mut HwAdmin {
    // SAFETY: promised by the caller.
    let made = unsafe { options.as_ref() }
        .ok_or_else(|| Error::config("options is NULL"))
        // SAFETY: promised by the caller.
        .and_then(|options| unsafe { client_config(options) })
        .and_then(Admin::new);
    match made {
        Ok(admin) => Box::into_raw(Box::new(HwAdmin { admin: Arc::new(admin) })),
        Err(e) => {
            // SAFETY: promised by the caller.
            unsafe { set_error(errbuf, errbuf_len, &e.message) };
            std::ptr::null_mut()
        }
    }
}

/// Releases the handle.
///
/// # Safety
/// `admin` must be a handle from `hw_admin_new`, not used again.
#[no_mangle]
pub unsafe extern "C" fn hw_admin_free(admin: *mut HwAdmin) {
    if !admin.is_null() {
        // SAFETY: promised by the caller.
        drop(unsafe { Box::from_raw(admin) });
    }
}

/// Parses `args` with `parse`, then runs `work` on the admin client as an operation.
///
/// # Safety
/// `admin` must be a live handle; `args` valid for `args_len` bytes.
unsafe fn admin_op<A, F, Fut>(
    admin: *const HwAdmin,
    args: *const u8,
    args_len: usize,
    callback: HwCallback,
    context: usize,
    parse: impl FnOnce(&mut Reader<'_>) -> Result<A, Error>,
    work: F,
) -> u64
where
    F: FnOnce(Arc<Admin>, A) -> Fut,
    Fut: Future<Output = Result<Vec<u8>, Error>> + Send + 'static,
{
    // SAFETY: promised by the caller.
    let (handle, buf) = unsafe { (&*admin, bytes(args, args_len)) };
    let mut reader = Reader::new(buf);
    let parsed = parse(&mut reader).and_then(|a| reader.finish().map(|()| a));
    match parsed {
        Ok(a) => spawn_op(callback, context, work(handle.admin.clone(), a)),
        Err(e) => failed_op(callback, context, e),
    }
}

/// An argument buffer holding one string (a topic or group name).
fn read_name(r: &mut Reader<'_>) -> Result<String, Error> {
    r.str()
}

/// Creates a topic. `args`: str name, i32 partitions, i16 replication factor, then a list of
/// (str key, str value) topic configs.
///
/// # Safety
/// `admin` must be a live handle; `args` valid for `args_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn hw_admin_create_topic(
    admin: *const HwAdmin,
    args: *const u8,
    args_len: usize,
    callback: HwCallback,
    context: usize,
) -> u64 {
    let parse = |r: &mut Reader<'_>| {
        let mut topic = NewTopic::new(r.str()?, r.i32()?);
        topic.replication_factor = r.i16()?;
        for _ in 0..r.count()? {
            topic.config.insert(r.str()?, r.str()?);
        }
        Ok(topic)
    };
    // SAFETY: promised by the caller.
    unsafe {
        admin_op(admin, args, args_len, callback, context, parse, |admin, topic| async move {
            admin.create_topic(topic).await.map(|()| Vec::new())
        })
    }
}

/// Deletes a topic. `args`: str name.
///
/// # Safety
/// `admin` must be a live handle; `args` valid for `args_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn hw_admin_delete_topic(
    admin: *const HwAdmin,
    args: *const u8,
    args_len: usize,
    callback: HwCallback,
    context: usize,
) -> u64 {
    // SAFETY: promised by the caller.
    unsafe {
        admin_op(admin, args, args_len, callback, context, read_name, |admin, name| async move {
            admin.delete_topic(&name).await.map(|()| Vec::new())
        })
    }
}

/// Reports the topic names: a list of str. No arguments.
///
/// # Safety
/// `admin` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn hw_admin_list_topics(admin: *const HwAdmin, callback: HwCallback, context: usize) -> u64 {
    // SAFETY: promised by the caller.
    unsafe {
        admin_op(
            admin,
            std::ptr::null(),
            0,
            callback,
            context,
            |_| Ok(()),
            |admin, ()| async move {
                let names = admin.list_topics().await?;
                Ok(strings_bytes(names.iter().map(String::as_str)))
            },
        )
    }
}

/// Describes a topic. `args`: str name. Reports str name, str topic id, i32 partitions, then
/// its configs as a list of (str key, str value).
///
/// # Safety
/// `admin` must be a live handle; `args` valid for `args_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn hw_admin_describe_topic(
    admin: *const HwAdmin,
    args: *const u8,
    args_len: usize,
    callback: HwCallback,
    context: usize,
) -> u64 {
    // SAFETY: promised by the caller.
    unsafe {
        admin_op(admin, args, args_len, callback, context, read_name, |admin, name| async move {
            let topic = admin.describe_topic(&name).await?;
            let config = admin.describe_topic_config(&name).await?;
            let mut w = Writer::default();
            w.str(&topic.name).str(&topic.id.to_string()).i32(topic.partitions).count(config.len());
            for (key, value) in &config {
                w.str(key).str(value);
            }
            Ok(w.0)
        })
    }
}

/// Reports every group: a list of (str group id, str state, str type). No arguments.
///
/// # Safety
/// `admin` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn hw_admin_list_groups(admin: *const HwAdmin, callback: HwCallback, context: usize) -> u64 {
    // SAFETY: promised by the caller.
    unsafe {
        admin_op(
            admin,
            std::ptr::null(),
            0,
            callback,
            context,
            |_| Ok(()),
            |admin, ()| async move {
                let groups = admin.list_groups().await?;
                let mut w = Writer::default();
                w.count(groups.len());
                for g in &groups {
                    w.str(&g.group_id).str(&g.state).str(&g.group_type);
                }
                Ok(w.0)
            },
        )
    }
}

/// Describes a group. `args`: str group id. Reports str group id, str state, str type, str
/// assignor, then a list of members (str member id, bytes? instance id, str client id, str
/// host, list of (str topic, i32 partition) assigned), then the committed offsets as a list
/// of (str topic, i32 partition, i64 offset).
///
/// # Safety
/// `admin` must be a live handle; `args` valid for `args_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn hw_admin_describe_group(
    admin: *const HwAdmin,
    args: *const u8,
    args_len: usize,
    callback: HwCallback,
    context: usize,
) -> u64 {
    // SAFETY: promised by the caller.
    unsafe {
        admin_op(admin, args, args_len, callback, context, read_name, |admin, group| async move {
            let g = admin.describe_group(&group).await?;
            let offsets = admin.group_offsets(&group).await?;
            let mut w = Writer::default();
            w.str(&g.group_id).str(&g.state).str(&g.group_type).str(&g.assignor);
            w.count(g.members.len());
            for m in &g.members {
                w.str(&m.member_id).opt_str(m.instance_id.as_deref()).str(&m.client_id).str(&m.host);
                w.count(m.assignment.len());
                for (topic, partition) in &m.assignment {
                    w.str(topic).i32(*partition);
                }
            }
            w.count(offsets.len());
            for ((topic, partition), offset) in &offsets {
                w.str(topic).i32(*partition).i64(*offset);
            }
            Ok(w.0)
        })
    }
}

/// Deletes an empty group and its committed offsets. `args`: str group id.
///
/// # Safety
/// `admin` must be a live handle; `args` valid for `args_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn hw_admin_delete_group(
    admin: *const HwAdmin,
    args: *const u8,
    args_len: usize,
    callback: HwCallback,
    context: usize,
) -> u64 {
    // SAFETY: promised by the caller.
    unsafe {
        admin_op(admin, args, args_len, callback, context, read_name, |admin, group| async move {
            admin.delete_group(&group).await.map(|()| Vec::new())
        })
    }
}

// ---- embedded broker -----------------------------------------------------------------------

/// A broker running inside this process, on 127.0.0.1 and a free port.
pub struct HwBroker {
    broker: EmbeddedBroker,
    /// host:port, NUL-terminated.
    address: Vec<u8>,
}

/// Starts a broker in this process; returns once it accepts connections. `data_dir` NULL
/// means a fresh temporary directory, removed at stop. `settings` is a list of (str key, str
/// value) broker config keys, as in the config file (e.g. `num_partitions`); NULL for none. NULL (with a
/// message in `errbuf`) when it cannot start or a setting is wrong.
///
/// # Safety
/// `data_dir` NULL or NUL-terminated; `settings` valid for `settings_len`; `errbuf` NULL or
/// valid for `errbuf_len`.
#[no_mangle]
pub unsafe extern "C" fn hw_broker_start(
    data_dir: *const c_char,
    settings: *const u8,
    settings_len: usize,
    errbuf: *mut c_char,
    errbuf_len: usize,
) -> *mut HwBroker {
    // SAFETY: promised by the caller.
    let (dir, buf) = unsafe { (c_str(data_dir, "data_dir"), bytes(settings, settings_len)) };
    let started = dir.map_err(|e| e.message).and_then(|dir| {
        let mut r = Reader::new(buf);
        let mut pairs = Vec::new();
        // No buffer at all means no settings.
        let count = if buf.is_empty() { 0 } else { r.count().map_err(|e| e.message)? };
        for _ in 0..count {
            pairs.push((r.str().map_err(|e| e.message)?, r.str().map_err(|e| e.message)?));
        }
        r.finish().map_err(|e| e.message)?;
        EmbeddedBroker::start(EmbeddedOptions { data_dir: dir.map(Into::into), settings: pairs })
    });
    match started {
        Ok(broker) => {
            let mut address = broker.bootstrap().as_bytes().to_vec();
            address.push(0);
            Box::into_raw(Box::new(HwBroker { broker, address }))
        }
        Err(message) => {
            // SAFETY: promised by the caller.
            unsafe { set_error(errbuf, errbuf_len, &message) };
            std::ptr::null_mut()
        }
    }
}

/// The broker's host:port, NUL-terminated, valid until `hw_broker_stop`.
///
/// # Safety
/// `broker` must be a live handle from `hw_broker_start`.
#[no_mangle]
pub unsafe extern "C" fn hw_broker_address(broker: *const HwBroker) -> *const c_char {
    // SAFETY: promised by the caller.
    unsafe { &*broker }.address.as_ptr().cast()
}

/// Stops the broker, waits for it, and releases the handle. False (with a message in
/// `errbuf`) if the broker had failed.
///
/// # Safety
/// `broker` must be a handle from `hw_broker_start`, not used again.
#[no_mangle]
pub unsafe extern "C" fn hw_broker_stop(broker: *mut HwBroker, errbuf: *mut c_char, errbuf_len: usize) -> bool {
    if broker.is_null() {
        return true;
    }
    // SAFETY: promised by the caller.
    let broker = unsafe { Box::from_raw(broker) };
    match broker.broker.stop() {
        Ok(()) => true,
        Err(message) => {
            // SAFETY: promised by the caller.
            unsafe { set_error(errbuf, errbuf_len, &message) };
            false
        }
    }
}
