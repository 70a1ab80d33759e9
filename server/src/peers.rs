//! Links to the other nodes of the cluster, for the Raft's requests (Vote, BeginQuorumEpoch,
//! EndQuorumEpoch, Fetch), brokers' calls to the controller (BrokerRegistration,
//! BrokerHeartbeat) and the calls between transaction coordinators and partition leaders
//! (AddPartitionsToTxn v4, WriteTxnMarkers). Each peer has four links, each one TCP connection
//! to the peer's Kafka port: one for the metadata log's fetches, one for partition replica
//! fetches, one for transaction calls, and one for the rest, because a broker answers a
//! connection's requests in order and a request may wait there: a fetch up to its
//! `max_wait_ms`, a transaction call until a write commits. A vote must not queue behind
//! any of them, and a replica fetch must not queue behind a metadata fetch parked at the
//! controller (it did: commits on partitions the controller led took 500 ms to 1 s). A link
//! connects, learns the peer's API versions, sends what the core gives it and passes the
//! answers back to the core as [`CoreInput::Peer`].
//!
//! Nothing here retries a message: a message that finds its link down, or its queue full, is
//! dropped, and the core sends again on its own timers (a follower refetches, a candidate asks
//! again in its next round, a leader resends BeginQuorumEpoch, a broker repeats a call that
//! went unanswered).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use headwater_core::broker::versions::supported_range;
use headwater_core::ids::NodeId;
use headwater_core::peer::PeerMessage;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::connection::Stop;
use crate::driver::CoreInput;

/// Messages waiting for one link; more are dropped (the Raft resends).
const QUEUE_MAX: usize = 256;
/// Requests sent on a link and not yet answered. A peer that stops answering (a stopped
/// process keeps its sockets open) would let these grow; past this the link is reopened.
const UNANSWERED_MAX: usize = 64;
/// Largest answer frame accepted; a fetch answer holds at most the Raft's fetch_max_bytes.
const RESPONSE_BYTES_MAX: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The node's links, by peer.
#[derive(Default)]
pub struct Peers {
    links: BTreeMap<NodeId, Lanes>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct Lanes {
    metadata_fetch: mpsc::Sender<PeerMessage>,
    replica_fetch: mpsc::Sender<PeerMessage>,
    /// Transaction markers and partition leaders' calls to transaction coordinators, which the
    /// peer may answer only once a write committed.
    txn: mpsc::Sender<PeerMessage>,
    control: mpsc::Sender<PeerMessage>,
}

/// What a link needs to know about this node.
#[derive(Clone)]
pub struct LinkContext {
    pub own: NodeId,
    pub cluster_id: String,
    pub core: mpsc::Sender<CoreInput>,
    pub stop: Arc<Stop>,
}

impl Peers {
    /// Starts four links to each of `peers` (id and Kafka address).
    pub fn start(context: &LinkContext, peers: impl IntoIterator<Item = (NodeId, String)>) -> Peers {
        let mut links = BTreeMap::new();
        let mut tasks = Vec::new();
        for (peer, addr) in peers {
            let mut lane = |name: &'static str| {
                let (tx, rx) = mpsc::channel(QUEUE_MAX);
                let link = Link { context: context.clone(), peer, addr: addr.clone(), lane: name };
                tasks.push(tokio::spawn(link.run(rx)));
                tx
            };
            let metadata_fetch = lane("metadata-fetch");
            let replica_fetch = lane("replica-fetch");
            let txn = lane("txn");
            let control = lane("control");
            links.insert(peer, Lanes { metadata_fetch, replica_fetch, txn, control });
        }
        Peers { links, tasks }
    }

    /// The link tasks, for a shutdown to wait on once it has stopped them; the senders stay.
    pub fn take_tasks(&mut self) -> Vec<tokio::task::JoinHandle<()>> {
        std::mem::take(&mut self.tasks)
    }

    /// Queues `message` for `to`, or drops it (see the module's note).
    pub fn send(&self, to: NodeId, message: PeerMessage) {
        let Some(lanes) = self.links.get(&to) else {
            warn!(peer = %to, "a message for a node that cluster_nodes does not list is dropped");
            return;
        };
        let lane = match &message {
            PeerMessage::ReplicaFetch(_) => &lanes.replica_fetch,
            PeerMessage::Txn(_) => &lanes.txn,
            message if message.may_wait() => &lanes.metadata_fetch,
            _ => &lanes.control,
        };
        if lane.try_send(message).is_err() {
            debug!(peer = %to, "the link's queue is full; a message is dropped");
        }
    }
}

struct Link {
    context: LinkContext,
    peer: NodeId,
    addr: String,
    lane: &'static str,
}

/// A request sent and not yet answered, by correlation id.
struct Sent {
    api_key: ApiKey,
    version: i16,
    message: PeerMessage,
}

type Unanswered = Arc<Mutex<BTreeMap<i32, Sent>>>;

impl Link {
    async fn run(self, mut queue: mpsc::Receiver<PeerMessage>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let connected = tokio::select! {
                biased;
                _ = self.context.stop.stopped() => return,
                c = connect(&self.addr) => c,
            };
            match connected {
                Ok((stream, versions)) => {
                    backoff = BACKOFF_MIN;
                    debug!(peer = %self.peer, addr = %self.addr, lane = self.lane, "connected to a peer");
                    let why = self.serve(stream, &versions, &mut queue).await;
                    let Some(why) = why else { return };
                    info!(peer = %self.peer, addr = %self.addr, lane = self.lane, reason = %why, "peer link lost; reconnecting");
                }
                Err(why) => debug!(peer = %self.peer, addr = %self.addr, reason = %why, "cannot reach a peer"),
            }
            // What waited while the link was down is stale by now.
            while queue.try_recv().is_ok() {}
            tokio::select! {
                biased;
                _ = self.context.stop.stopped() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Sends the queue's messages on `stream` until the link fails (`Some(why)`) or the node
    /// stops (`None`).
    async fn serve(
        &self,
        stream: TcpStream,
        versions: &BTreeMap<i16, (i16, i16)>,
        queue: &mut mpsc::Receiver<PeerMessage>,
    ) -> Option<String> {
        let (reader, mut writer) = tokio::io::split(stream);
        let unanswered: Unanswered = Arc::default();
        let reading = tokio::spawn(read_answers(self.peer, self.context.core.clone(), unanswered.clone(), reader));
        let mut correlation = 0i32;
        // Once the node stops, what is still queued goes out (a resigning leader's
        // EndQuorumEpoch is queued last of all), then the link ends.
        let mut stopping = false;
        let why = loop {
            let message = if stopping {
                match queue.try_recv() {
                    Ok(message) => message,
                    Err(_) => break None,
                }
            } else {
                tokio::select! {
                    biased;
                    _ = self.context.stop.stopped() => {
                        stopping = true;
                        continue;
                    }
                    message = queue.recv() => match message {
                        Some(message) => message,
                        None => break None,
                    },
                }
            };
            if reading.is_finished() {
                break Some("the peer closed the connection or sent an unreadable answer".to_string());
            }
            let Some((api_key, version)) = version_for(&message, versions) else {
                debug!(peer = %self.peer, "the peer serves no version of this request; dropped");
                continue;
            };
            let Some(request) = message.request(&self.context.cluster_id, self.context.own, self.peer, version) else {
                continue;
            };
            correlation = correlation.wrapping_add(1);
            let frame = match encode_request(&request, api_key, version, correlation, self.context.own) {
                Ok(frame) => frame,
                Err(e) => {
                    warn!(peer = %self.peer, error = %e, "cannot encode a request to a peer (a broker bug)");
                    continue;
                }
            };
            {
                let mut unanswered = unanswered.lock().expect("unanswered lock");
                if unanswered.len() >= UNANSWERED_MAX {
                    break Some(format!("{UNANSWERED_MAX} requests unanswered"));
                }
                unanswered.insert(correlation, Sent { api_key, version, message });
            }
            if let Err(e) = async {
                writer.write_all(&frame).await?;
                writer.flush().await
            }
            .await
            {
                break Some(format!("writing: {e}"));
            }
        };
        reading.abort();
        // The connection ends either way.
        let _ = writer.shutdown().await;
        why
    }
}

/// Reads answers and passes each to the core as the answer to the message it answers.
/// Returns when the connection ends or carries something unreadable.
async fn read_answers<R: AsyncReadExt + Unpin>(
    peer: NodeId,
    core: mpsc::Sender<CoreInput>,
    unanswered: Unanswered,
    mut reader: R,
) {
    while let Ok(frame) = read_frame(&mut reader).await {
        let correlation = i32::from_be_bytes(frame[..4].try_into().expect("a frame holds at least 4 bytes"));
        let Some(sent) = unanswered.lock().expect("unanswered lock").remove(&correlation) else {
            warn!(peer = %peer, correlation, "an answer to no request sent; closing the link");
            return;
        };
        match decode_answer(frame, &sent) {
            Ok(Some(message)) => {
                if core.send(CoreInput::Peer { from: peer, message }).await.is_err() {
                    return;
                }
            }
            Ok(None) => {}
            // A refusal is the protocol at work (a peer that has not built a new partition
            // yet answers NOT_LEADER_OR_FOLLOWER; the Raft asks again): at start-up and after
            // a topic is made there are one per partition, too many for a warning.
            Err(e) if e.starts_with(headwater_core::raft::wire::REFUSED) => {
                debug!(peer = %peer, api = ?sent.api_key, error = %e, "a peer refused a request")
            }
            Err(e) => warn!(peer = %peer, api = ?sent.api_key, error = %e, "a peer's answer is not used"),
        }
    }
}

async fn read_frame<R: AsyncReadExt + Unpin>(reader: &mut R) -> std::io::Result<Bytes> {
    let size = reader.read_i32().await?;
    let size = usize::try_from(size)
        .ok()
        .filter(|s| (4..=RESPONSE_BYTES_MAX).contains(s))
        .ok_or_else(|| std::io::Error::other(format!("an answer frame of {size} bytes")))?;
    let mut frame = vec![0u8; size];
    reader.read_exact(&mut frame).await?;
    Ok(Bytes::from(frame))
}

/// The answer in `frame`; `None` for an answer nothing needs (EndQuorumEpoch's).
fn decode_answer(mut frame: Bytes, sent: &Sent) -> Result<Option<PeerMessage>, String> {
    ResponseHeader::decode(&mut frame, sent.api_key.response_header_version(sent.version))
        .map_err(|e| format!("undecodable header: {e}"))?;
    let body = ResponseKind::decode(sent.api_key, &mut frame, sent.version).map_err(|e| format!("undecodable: {e}"))?;
    sent.message.answer(&body)
}

/// The API and version to send `message` at: the highest both this node and the peer serve,
/// and at least the first that carries what the message needs.
fn version_for(message: &PeerMessage, theirs: &BTreeMap<i16, (i16, i16)>) -> Option<(ApiKey, i16)> {
    let (api_key, floor) = message.api()?;
    let (_, _, ours) = supported_range(api_key as i16)?;
    let &(their_min, their_max) = theirs.get(&(api_key as i16))?;
    let version = message.exact_version().filter(|&v| v <= ours && v <= their_max).unwrap_or(ours.min(their_max));
    (version >= their_min.max(floor)).then_some((api_key, version))
}

fn encode_request(
    request: &RequestKind,
    api_key: ApiKey,
    version: i16,
    correlation: i32,
    own: NodeId,
) -> Result<BytesMut, String> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_string(format!("{}{own}", headwater_core::peer::PEER_CLIENT_ID_PREFIX))));
    let mut frame = BytesMut::with_capacity(128);
    frame.put_i32(0);
    header.encode(&mut frame, api_key.request_header_version(version)).map_err(|e| e.to_string())?;
    request.encode(&mut frame, version).map_err(|e| e.to_string())?;
    let size = i32::try_from(frame.len() - 4).map_err(|_| "a request over 2 GiB".to_string())?;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame)
}

/// Connects to `addr` and asks its API versions (key -> (min, max)).
async fn connect(addr: &str) -> Result<(TcpStream, BTreeMap<i16, (i16, i16)>), String> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| "connecting timed out".to_string())?
        .map_err(|e| e.to_string())?;
    // Latency only: a socket that refuses TCP_NODELAY still works.
    let _ = stream.set_nodelay(true);
    const VERSION: i16 = 3;
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("headwater-peer"))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
    let frame = encode_request(&RequestKind::ApiVersions(request), ApiKey::ApiVersions, VERSION, 0, NodeId(-1))?;
    let answer = tokio::time::timeout(CONNECT_TIMEOUT, async {
        stream.write_all(&frame).await?;
        stream.flush().await?;
        read_frame(&mut stream).await
    })
    .await
    .map_err(|_| "ApiVersions timed out".to_string())?
    .map_err(|e| format!("ApiVersions: {e}"))?;
    let mut answer = answer;
    // ApiVersions answers carry header v0 (the correlation id alone) at every version.
    answer.advance(4);
    let response = ApiVersionsResponse::decode(&mut answer, VERSION).map_err(|e| format!("ApiVersions: {e}"))?;
    if response.error_code != 0 {
        return Err(format!("ApiVersions refused with error code {}", response.error_code));
    }
    let versions = response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
    Ok((stream, versions))
}
