//! One client connection: a reader that frames and decodes requests and hands them to the
//! core, and a writer that sends responses back strictly in request order (Kafka clients
//! pipeline requests and match responses by order as well as correlation id).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use headwater_core::wire::{decode_request, encode_api_versions_unsupported, encode_response, DecodeError};
use headwater_core::{ConnId, Request, RequestId, ResponseBody};
use kafka_protocol::messages::{ApiKey, RequestKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::driver::CoreInput;

/// Requests one connection may have in flight before the reader stops reading (back-pressure).
const IN_FLIGHT_PER_CONNECTION_MAX: usize = 128;

/// Bytes of fetch responses one connection may have unwritten: each Fetch reserves its
/// `max_bytes` (up to this) before the core sees it and frees it once its response is on the
/// socket. A client that stops reading its responses stops the reading of its own requests, and
/// holds at most this much of the broker's memory, whatever it pipelines.
const FETCH_RESPONSE_BYTES_PER_CONNECTION_MAX: usize = 16 * 1024 * 1024;

/// Tells every connection to stop reading. Not a `watch` channel: tokio spreads a watch's
/// receivers over several notifiers chosen by its own per-process generator, so the order in
/// which connections wake (and so a simulator run) would depend on earlier runs in the process.
/// A single `Notify` wakes its waiters in the order they registered.
#[derive(Default)]
pub struct Stop {
    stopped: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Resolves once [`Stop::stop`] has been called, also when that was before this call.
    pub async fn stopped(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a stop between the two is not missed.
        notified.as_mut().enable();
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        notified.await;
    }
}

/// What bounds connections, shared by all of them.
#[derive(Clone)]
pub struct Limits {
    /// The largest request frame (`socket_request_max_bytes`).
    pub request_bytes_max: usize,
    /// Bytes of requests read and not yet answered, over every connection
    /// (`queued_max_request_bytes`): a reader takes a frame's size from it before reading the
    /// frame and gives it back when the answer is ready. When it is empty, readers wait, so
    /// what clients send stays in socket buffers instead of the broker's memory.
    pub queued_bytes: Arc<Semaphore>,
    /// A connection with nothing in flight and no traffic for this long is closed
    /// (`connections_max_idle_ms`).
    pub idle: Duration,
}

/// What the writer sends for each request, in order.
enum Pending {
    Waiting {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
        reply: oneshot::Receiver<ResponseBody>,
        /// The request's share of `queued_bytes`, held until its answer arrives.
        queued: OwnedSemaphorePermit,
        /// A Fetch's reservation of this connection's response bytes, held until written.
        responding: Option<OwnedSemaphorePermit>,
    },
    Ready(BytesMut),
}

/// When the connection last read or wrote, and how many requests are unanswered: what the
/// idle check looks at.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long until the connection is idle; zero once it is.
    fn idle_in(&self, idle: Duration) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return idle;
        }
        let quiet = self.start.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)));
        idle.saturating_sub(quiet)
    }
}

pub async fn serve(
    stream: TcpStream,
    conn: ConnId,
    core: mpsc::Sender<CoreInput>,
    limits: Limits,
    request_ids: Arc<AtomicU64>,
    stop: Arc<Stop>,
) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    // Latency only: a socket that refuses TCP_NODELAY still works.
    let _ = stream.set_nodelay(true);
    // madsim's simulated stream has no `into_split`; the generic split works on both.
    #[cfg(not(madsim))]
    let (mut reader, mut writer) = stream.into_split();
    #[cfg(madsim)]
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (pending_tx, mut pending_rx) = mpsc::channel::<Pending>(IN_FLIGHT_PER_CONNECTION_MAX);
    let activity =
        Arc::new(Activity { start: Instant::now(), last_ms: AtomicU64::new(0), in_flight: AtomicUsize::new(0) });
    let peer_for_writer = peer.clone();
    let writer_activity = activity.clone();
    let writer_task = tokio::spawn(async move {
        while let Some(item) = pending_rx.recv().await {
            let mut reserved = None;
            let bytes = match item {
                Pending::Ready(bytes) => Some(bytes),
                Pending::Waiting { api_key, api_version, correlation_id, reply, queued, responding } => {
                    reserved = responding;
                    let reply = reply.await;
                    drop(queued);
                    match reply {
                        Ok(ResponseBody::Message(body)) => {
                            match encode_response(api_key, api_version, correlation_id, &body) {
                                Ok(bytes) => Some(bytes),
                                Err(e) => {
                                    error!(peer = %peer_for_writer, error = %e, "could not encode a response (a broker bug); closing the connection");
                                    break;
                                }
                            }
                        }
                        Ok(ResponseBody::Nothing) => None,
                        Ok(ResponseBody::Close(reason)) => {
                            warn!(peer = %peer_for_writer, %reason, "closing connection");
                            break;
                        }
                        // The core dropped the request (shutting down).
                        Err(_) => break,
                    }
                }
            };
            // The flush is a no-op on a real socket; madsim's stream buffers until it.
            if let Some(bytes) = bytes {
                if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                    break;
                }
            }
            drop(reserved);
            writer_activity.touch();
            writer_activity.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        // The peer may be gone already; the connection ends either way.
        let _ = writer.shutdown().await;
    });
    let inner = Arc::new(Reader {
        conn,
        peer: peer.clone(),
        request_ids,
        fetch_responses: Arc::new(Semaphore::new(FETCH_RESPONSE_BYTES_PER_CONNECTION_MAX)),
    });
    'requests: loop {
        // The next size header, read with `read` (cancel-safe, unlike `read_exact`): the idle
        // check can interrupt the wait without losing a byte of a header that has begun.
        let mut size_bytes = [0u8; 4];
        let mut filled = 0;
        while filled < size_bytes.len() {
            let idle_in = activity.idle_in(limits.idle);
            // `biased` (a stop first): deterministic under the simulator, see the core loop.
            tokio::select! {
                biased;
                _ = stop.stopped() => break 'requests,
                read = reader.read(&mut size_bytes[filled..]) => match read {
                    Ok(0) | Err(_) => break 'requests,
                    Ok(n) => filled += n,
                },
                _ = tokio::time::sleep(idle_in) => {
                    if activity.idle_in(limits.idle).is_zero() {
                        info!(peer = %peer, idle_ms = limits.idle.as_millis() as u64, "closing a connection idle for connections_max_idle_ms");
                        break 'requests;
                    }
                }
            }
        }
        let size = i32::from_be_bytes(size_bytes);
        let Some(size) = usize::try_from(size).ok().filter(|&s| s <= limits.request_bytes_max) else {
            warn!(peer = %peer, size, limit = limits.request_bytes_max, "request size is negative or over socket_request_max_bytes; closing the connection");
            break;
        };
        // The frame's bytes come out of the shared budget before they are allocated; while it
        // is short, this connection reads nothing more.
        // queued_max_request_bytes fits in u32 (config check) and is at least this frame's size.
        let permits = u32::try_from(size).unwrap_or(u32::MAX);
        let queued = tokio::select! {
            biased;
            _ = stop.stopped() => break,
            permit = limits.queued_bytes.clone().acquire_many_owned(permits) => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        // Allocated only after the size passed the limit check and the budget had room.
        let mut frame = BytesMut::zeroed(size);
        if reader.read_exact(&mut frame).await.is_err() {
            debug!(peer = %peer, "connection closed in the middle of a request");
            break;
        }
        activity.touch();
        match inner.handle_frame(frame.freeze(), queued, &stop, &core).await {
            Ok(item) => {
                activity.in_flight.fetch_add(1, Ordering::Relaxed);
                if pending_tx.send(item).await.is_err() {
                    break;
                }
            }
            Err(()) => break,
        }
    }
    drop(pending_tx);
    // The writer ends with the connection; how it ended changes nothing here.
    let _ = writer_task.await;
    debug!(peer = %peer, "connection closed");
}

struct Reader {
    conn: ConnId,
    peer: String,
    /// This connection's unwritten fetch response bytes (`FETCH_RESPONSE_BYTES_PER_CONNECTION_MAX`).
    fetch_responses: Arc<Semaphore>,
    /// The broker's request-id counter: one per broker rather than per process, so a broker's
    /// ids do not depend on other brokers in the same process (the simulator runs many, one
    /// after another; an SDK test may embed several).
    request_ids: Arc<AtomicU64>,
}

impl Reader {
    /// Decodes a frame and passes it to the core. `Err` means close the connection.
    async fn handle_frame(
        &self,
        frame: Bytes,
        queued: OwnedSemaphorePermit,
        stop: &Stop,
        core: &mpsc::Sender<CoreInput>,
    ) -> Result<Pending, ()> {
        match decode_request(frame) {
            Ok(decoded) => {
                let responding = match &decoded.body {
                    RequestKind::Fetch(fetch) => {
                        let bytes = usize::try_from(fetch.max_bytes.max(1))
                            .unwrap_or(usize::MAX)
                            .min(FETCH_RESPONSE_BYTES_PER_CONNECTION_MAX);
                        // At most FETCH_RESPONSE_BYTES_PER_CONNECTION_MAX, which fits in u32.
                        let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
                        tokio::select! {
                            biased;
                            _ = stop.stopped() => return Err(()),
                            permit = self.fetch_responses.clone().acquire_many_owned(permits) => {
                                Some(permit.map_err(|_| ())?)
                            }
                        }
                    }
                    _ => None,
                };
                let id = RequestId(self.request_ids.fetch_add(1, Ordering::Relaxed));
                let (reply_tx, reply_rx) = oneshot::channel();
                let request = Request {
                    id,
                    conn: self.conn,
                    api_key: decoded.api_key,
                    api_version: decoded.api_version,
                    client_id: decoded.client_id,
                    body: decoded.body,
                };
                core.send(CoreInput::Request(Box::new(request), reply_tx)).await.map_err(|_| ())?;
                Ok(Pending::Waiting {
                    api_key: decoded.api_key,
                    api_version: decoded.api_version,
                    correlation_id: decoded.correlation_id,
                    reply: reply_rx,
                    queued,
                    responding,
                })
            }
            Err(DecodeError::ApiVersionsTooNew { correlation_id }) => {
                Ok(Pending::Ready(encode_api_versions_unsupported(correlation_id)))
            }
            Err(e) => {
                warn!(peer = %self.peer, error = %e, "bad request; closing the connection");
                Err(())
            }
        }
    }
}
