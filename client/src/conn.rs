//! One connection to one broker: requests are pipelined (many in flight, matched to responses
//! by correlation id), each waits with its own timeout, and the API versions are negotiated
//! once, at connect, from the broker's ApiVersions answer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::error::{Error, ErrorKind, Result};

/// Largest response frame accepted (a guard against a garbled length).
const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// The highest version of each API this client speaks: versions whose layout it fills in and
/// reads back. Negotiation picks the lower of this and the broker's maximum.
const VERSIONS_MAX: &[(i16, i16)] = &[
    (0, 11), // Produce: topic names (v13 switches to topic ids)
    (1, 12), // Fetch: topic names
    (2, 8),  // ListOffsets
    (3, 12), // Metadata
    (8, 9),  // OffsetCommit
    (9, 7),  // OffsetFetch: one group per request (v8 batches groups)
    (10, 4), // FindCoordinator
    (15, 5), // DescribeGroups
    (16, 5), // ListGroups
    (18, 3), // ApiVersions
    (19, 7), // CreateTopics
    (20, 6), // DeleteTopics
    (21, 2), // DeleteRecords
    (22, 4), // InitProducerId
    (32, 4), // DescribeConfigs
    (37, 3), // CreatePartitions
    (42, 2), // DeleteGroups
    (44, 1), // IncrementalAlterConfigs
    (68, 1), // ConsumerGroupHeartbeat
    (69, 1), // ConsumerGroupDescribe
];

type Waiter = oneshot::Sender<Result<Bytes>>;

#[derive(Default)]
struct Pending {
    next_correlation: i32,
    waiting: BTreeMap<i32, Waiter>,
    /// Why the connection is unusable, once it is.
    broken: Option<String>,
}

pub(crate) struct Connection {
    pub addr: String,
    client_id: String,
    writer: tokio::sync::Mutex<WriteHalf<TcpStream>>,
    pending: Arc<Mutex<Pending>>,
    /// api key -> (min, max) the broker serves
    versions: BTreeMap<i16, (i16, i16)>,
    request_timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("addr", &self.addr).finish()
    }
}

fn fail_all(pending: &Mutex<Pending>, why: String) {
    let mut pending = pending.lock().expect("pending lock");
    pending.broken.get_or_insert(why.clone());
    for (_, waiter) in std::mem::take(&mut pending.waiting) {
        let _ = waiter.send(Err(Error::new(ErrorKind::Connection, why.clone())));
    }
}

impl Connection {
    /// Connects and negotiates API versions.
    pub async fn connect(addr: &str, client_id: &str, request_timeout: Duration) -> Result<Arc<Connection>> {
        let stream = tokio::time::timeout(request_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::timeout(format!("connecting to {addr}")))?
            .map_err(|e| Error::new(ErrorKind::Connection, format!("cannot connect to {addr}: {e}")))?;
        stream.set_nodelay(true).ok();
        let (mut reader, writer) = tokio::io::split(stream);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let reader_pending = pending.clone();
        let reader_addr = addr.to_string();
        tokio::spawn(async move {
            let why = loop {
                let size = match reader.read_i32().await {
                    Ok(size) => size,
                    Err(e) => break format!("connection to {reader_addr} closed: {e}"),
                };
                let Some(size) = usize::try_from(size).ok().filter(|s| (4..=RESPONSE_BYTES_MAX).contains(s)) else {
                    break format!("{reader_addr} sent a response frame of {size} bytes");
                };
                let mut body = vec![0u8; size];
                if let Err(e) = reader.read_exact(&mut body).await {
                    break format!("connection to {reader_addr} closed: {e}");
                }
                let body = Bytes::from(body);
                let correlation = i32::from_be_bytes(body[..4].try_into().expect("4 bytes"));
                let waiter = reader_pending.lock().expect("pending lock").waiting.remove(&correlation);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(Ok(body));
                }
            };
            fail_all(&reader_pending, why);
        });
        let mut connection = Connection {
            addr: addr.to_string(),
            client_id: client_id.to_string(),
            writer: tokio::sync::Mutex::new(writer),
            pending,
            versions: BTreeMap::new(),
            request_timeout,
        };
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("headwater-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = connection.call_version(&request, 3).await?;
        if let Some(e) = Error::from_code(response.error_code, format!("ApiVersions to {addr}")) {
            return Err(e);
        }
        connection.versions = response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(Arc::new(connection))
    }

    pub fn is_broken(&self) -> bool {
        self.pending.lock().expect("pending lock").broken.is_some()
    }

    /// The version to use for `R`: the highest both sides speak.
    pub fn version_for<R: Request>(&self) -> Result<i16> {
        let ours = VERSIONS_MAX.iter().find(|(k, _)| *k == R::KEY).map_or(R::VERSIONS.max, |(_, v)| *v);
        let Some(&(min, max)) = self.versions.get(&R::KEY) else {
            return Err(Error::new(
                ErrorKind::Fatal,
                format!("broker {} does not serve API {} (UNSUPPORTED_VERSION)", self.addr, R::KEY),
            ));
        };
        let version = ours.min(max);
        if version < min || version < R::VERSIONS.min {
            return Err(Error::new(
                ErrorKind::Fatal,
                format!("broker {} serves API {} at {min}..{max}; this client speaks up to {ours}", self.addr, R::KEY),
            ));
        }
        Ok(version)
    }

    /// Sends `request` at the negotiated version and waits for its response.
    pub async fn call<R: Request>(&self, request: &R) -> Result<(i16, R::Response)> {
        let version = self.version_for::<R>()?;
        Ok((version, self.call_version(request, version).await?))
    }

    /// Sends `request` at the negotiated version without waiting for an answer (Produce with
    /// acks=0, which brokers do not answer).
    pub async fn send_only<R: Request>(&self, request: &R) -> Result<()> {
        let version = self.version_for::<R>()?;
        let (_, frame) = self.frame(request, version)?;
        self.write(frame).await
    }

    async fn call_version<R: Request>(&self, request: &R, version: i16) -> Result<R::Response> {
        let (correlation, frame) = self.frame(request, version)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().expect("pending lock");
            if let Some(why) = &pending.broken {
                return Err(Error::new(ErrorKind::Connection, why.clone()));
            }
            pending.waiting.insert(correlation, tx);
        }
        if let Err(e) = self.write(frame).await {
            self.pending.lock().expect("pending lock").waiting.remove(&correlation);
            return Err(e);
        }
        let body = match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(body)) => body?,
            Ok(Err(_)) => return Err(Error::new(ErrorKind::Connection, format!("connection to {} closed", self.addr))),
            Err(_) => {
                self.pending.lock().expect("pending lock").waiting.remove(&correlation);
                return Err(Error::timeout(format!("API {} request to {}", R::KEY, self.addr)));
            }
        };
        let mut body = body;
        let undecodable = |e: &dyn std::fmt::Display| {
            Error::new(ErrorKind::Connection, format!("undecodable API {} response from {}: {e}", R::KEY, self.addr))
        };
        ResponseHeader::decode(&mut body, R::Response::header_version(version)).map_err(|e| undecodable(&e))?;
        R::Response::decode(&mut body, version).map_err(|e| undecodable(&e))
    }

    fn frame<R: Request>(&self, request: &R, version: i16) -> Result<(i32, BytesMut)> {
        let correlation = {
            let mut pending = self.pending.lock().expect("pending lock");
            pending.next_correlation = pending.next_correlation.wrapping_add(1);
            pending.next_correlation
        };
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header
            .encode(&mut frame, R::header_version(version))
            .and_then(|()| request.encode(&mut frame, version))
            .map_err(|e| Error::config(format!("cannot encode API {} v{version}: {e}", R::KEY)))?;
        let length = i32::try_from(frame.len() - 4).map_err(|_| Error::config("request larger than 2 GiB"))?;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        Ok((correlation, frame))
    }

    async fn write(&self, frame: BytesMut) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let written = async {
            writer.write_all(&frame).await?;
            writer.flush().await
        };
        match tokio::time::timeout(self.request_timeout, written).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                let why = format!("writing to {}: {e}", self.addr);
                fail_all(&self.pending, why.clone());
                Err(Error::new(ErrorKind::Connection, why))
            }
            Err(_) => {
                let why = format!("writing to {} timed out", self.addr);
                fail_all(&self.pending, why.clone());
                Err(Error::timeout(why))
            }
        }
    }
}
