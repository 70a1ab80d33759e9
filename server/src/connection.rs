//! One client connection: a reader that frames and decodes requests and hands them to the
//! core, and a writer that sends responses back strictly in request order (Kafka clients
//! pipeline requests and match responses by order as well as correlation id).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use headwater_core::wire::{decode_request, encode_api_versions_unsupported, encode_response, DecodeError};
use headwater_core::{ConnId, Request, RequestId, ResponseBody};
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{debug, error, warn};

use crate::driver::CoreInput;

/// Requests one connection may have in flight before the reader stops reading (back-pressure).
const IN_FLIGHT_PER_CONNECTION_MAX: usize = 128;

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

/// What the writer sends for each request, in order.
enum Pending {
    Waiting { api_key: ApiKey, api_version: i16, correlation_id: i32, reply: oneshot::Receiver<ResponseBody> },
    Ready(BytesMut),
}

pub async fn serve(
    stream: TcpStream,
    conn: ConnId,
    core: mpsc::Sender<CoreInput>,
    request_bytes_max: usize,
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
    let peer_for_writer = peer.clone();
    let writer_task = tokio::spawn(async move {
        while let Some(item) = pending_rx.recv().await {
            let bytes = match item {
                Pending::Ready(bytes) => bytes,
                Pending::Waiting { api_key, api_version, correlation_id, reply } => match reply.await {
                    Ok(ResponseBody::Message(body)) => {
                        match encode_response(api_key, api_version, correlation_id, &body) {
                            Ok(bytes) => bytes,
                            Err(e) => {
                                error!(peer = %peer_for_writer, error = %e, "could not encode a response (a broker bug); closing the connection");
                                break;
                            }
                        }
                    }
                    Ok(ResponseBody::Nothing) => continue,
                    Ok(ResponseBody::Close(reason)) => {
                        warn!(peer = %peer_for_writer, %reason, "closing connection");
                        break;
                    }
                    // The core dropped the request (shutting down).
                    Err(_) => break,
                },
            };
            // The flush is a no-op on a real socket; madsim's stream buffers until it.
            if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
        // The peer may be gone already; the connection ends either way.
        let _ = writer.shutdown().await;
    });
    let inner = Arc::new(Reader { conn, peer: peer.clone(), request_bytes_max, request_ids });
    loop {
        let mut size_bytes = [0u8; 4];
        // `biased` (a stop first): deterministic under the simulator, see the core loop.
        let read = tokio::select! {
            biased;
            _ = stop.stopped() => break,
            r = reader.read_exact(&mut size_bytes) => r,
        };
        if read.is_err() {
            break;
        }
        let size = i32::from_be_bytes(size_bytes);
        let Some(size) = usize::try_from(size).ok().filter(|&s| s <= inner.request_bytes_max) else {
            warn!(peer = %peer, size, limit = inner.request_bytes_max, "request size is negative or over socket_request_max_bytes; closing the connection");
            break;
        };
        // Allocated only after the size passed the limit check.
        let mut frame = BytesMut::zeroed(size);
        if reader.read_exact(&mut frame).await.is_err() {
            debug!(peer = %peer, "connection closed in the middle of a request");
            break;
        }
        match inner.handle_frame(frame.freeze(), &core).await {
            Ok(item) => {
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
    request_bytes_max: usize,
    /// The broker's request-id counter: one per broker rather than per process, so a broker's
    /// ids do not depend on other brokers in the same process (the simulator runs many, one
    /// after another; an SDK test may embed several).
    request_ids: Arc<AtomicU64>,
}

impl Reader {
    /// Decodes a frame and passes it to the core. `Err` means close the connection.
    async fn handle_frame(&self, frame: Bytes, core: &mpsc::Sender<CoreInput>) -> Result<Pending, ()> {
        match decode_request(frame) {
            Ok(decoded) => {
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
