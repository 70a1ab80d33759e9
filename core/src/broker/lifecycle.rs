//! A broker's life in a cluster, both sides of it: the broker registers with the active
//! controller and then heartbeats (KRaft's BrokerRegistration and BrokerHeartbeat), and the
//! node that is the controller answers those calls from the brokers, itself included.
//!
//! The broker keeps one call in flight at a time, to the quorum leader it knows. When it is the
//! leader itself, the call goes to its own quorum directly instead of over the network. A call
//! that gets no answer within [`CALL_TIMEOUT_MS`] is given up and sent again, to whichever
//! leader is known then. A heartbeat refused because the controller does not know this
//! registration (a new controller, or a registration lost with the old leader's log) leads to
//! registering again.

use std::collections::BTreeMap;

use kafka_protocol::messages::{ApiKey, RequestKind};

use super::{Broker, Output, RequestId, Response, ResponseBody};
use crate::error::ErrorCode;
use crate::ids::NodeId;
use crate::metadata::calls::{self, ControllerMessage};
use crate::metadata::controller::{Refusal, Registration};
use crate::metadata::quorum::Decision;

/// Kafka's `broker.heartbeat.interval.ms`.
pub const HEARTBEAT_INTERVAL_MS: i64 = 2_000;
/// How often a fenced broker, or one whose call failed, tries again.
const RETRY_MS: i64 = 250;
/// A call unanswered this long is sent again.
const CALL_TIMEOUT_MS: i64 = 3_000;
/// Tokens of decisions this node asks of its own quorum; a peer's call uses its request id,
/// which never reaches this bit.
const LOCAL_TOKEN: u64 = 1 << 63;

/// The broker's side.
#[derive(Debug, Default)]
pub(super) struct Lifecycle {
    /// The controller committed this start's registration.
    registered: bool,
    in_flight: Option<InFlight>,
    next_call_ms: i64,
    next_local_token: u64,
    /// Shutting down: no more heartbeats (a caught-up one would unfence this broker again).
    stopping: bool,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    to: NodeId,
    sent_ms: i64,
    heartbeat: bool,
    /// Set when the call went to this node's own quorum.
    local_token: Option<u64>,
}

/// The controller's side: calls from brokers waiting for their decision, and where each
/// broker's registration found the metadata log (a broker is caught up once it has applied
/// that far).
#[derive(Debug, Default)]
pub(super) struct ControllerCalls {
    waiting: BTreeMap<u64, WaitingCall>,
    registered_at: BTreeMap<NodeId, i64>,
}

#[derive(Debug, Clone, Copy)]
struct WaitingCall {
    id: RequestId,
    api_key: ApiKey,
    api_version: i16,
    node: NodeId,
    incarnation: u64,
    heartbeat: bool,
}

impl Broker {
    /// Sends the next registration or heartbeat when it is due.
    pub(super) fn lifecycle_tick(&mut self, now_ms: i64) {
        let Some(quorum) = &self.quorum else { return };
        if self.lifecycle.stopping {
            return;
        }
        if let Some(call) = self.lifecycle.in_flight {
            if now_ms < call.sent_ms + CALL_TIMEOUT_MS {
                return;
            }
            self.lifecycle.in_flight = None;
        }
        if now_ms < self.lifecycle.next_call_ms {
            return;
        }
        let Some(leader) = quorum.raft().leader() else {
            self.lifecycle.next_call_ms = now_ms + RETRY_MS;
            return;
        };
        let node = NodeId(self.config.node_id);
        let incarnation = self.metadata.document.incarnation;
        let message = if self.lifecycle.registered {
            ControllerMessage::Heartbeat { node, incarnation, metadata_offset: quorum.image().applied_offset }
        } else {
            ControllerMessage::Register(Registration {
                node,
                host: self.config.advertised_host.clone(),
                port: self.config.advertised_port,
                rack: self.config.rack.clone(),
                incarnation,
            })
        };
        let heartbeat = self.lifecycle.registered;
        if leader == node {
            let token = LOCAL_TOKEN | self.lifecycle.next_local_token;
            self.lifecycle.next_local_token += 1;
            self.lifecycle.in_flight =
                Some(InFlight { to: node, sent_ms: now_ms, heartbeat, local_token: Some(token) });
            self.decide_call(now_ms, token, message);
            self.drain_quorum(now_ms, None);
        } else {
            self.lifecycle.in_flight = Some(InFlight { to: leader, sent_ms: now_ms, heartbeat, local_token: None });
            self.outputs.push_back(Output::Peer { to: leader, message: message.into() });
        }
    }

    /// A graceful stop: tells the controller, so it fences this broker now rather than when
    /// its session runs out (Kafka's controlled shutdown). Not waited for; the controller's
    /// session timeout covers a message that is lost. A node that is the controller itself
    /// hands its leadership over instead (the new controller fences it by its session).
    pub(super) fn lifecycle_shut_down(&mut self) {
        self.lifecycle.stopping = true;
        let Some(quorum) = &self.quorum else { return };
        let node = NodeId(self.config.node_id);
        match quorum.raft().leader() {
            Some(leader) if leader != node && self.lifecycle.registered => {
                let incarnation = self.metadata.document.incarnation;
                let message = ControllerMessage::ShutDown { node, incarnation };
                self.outputs.push_back(Output::Peer { to: leader, message: message.into() });
            }
            _ => {}
        }
    }

    /// When [`Broker::lifecycle_tick`] has something to do.
    pub(super) fn lifecycle_next_ms(&self) -> i64 {
        match (&self.quorum, self.lifecycle.in_flight) {
            (None, _) => i64::MAX,
            _ if self.lifecycle.stopping => i64::MAX,
            (Some(_), Some(call)) => call.sent_ms + CALL_TIMEOUT_MS,
            (Some(_), None) => self.lifecycle.next_call_ms,
        }
    }

    /// The controller's answer to this broker's call in flight (from `from`, or from its own
    /// quorum when `from` is this node).
    pub(super) fn lifecycle_answer(&mut self, now_ms: i64, from: NodeId, answer: ControllerMessage) {
        let Some(call) = self.lifecycle.in_flight.filter(|c| c.to == from) else { return };
        let error = match answer {
            ControllerMessage::RegisterResponse { error } if !call.heartbeat => {
                self.lifecycle.registered |= error == 0;
                self.lifecycle.next_call_ms = now_ms;
                error
            }
            ControllerMessage::HeartbeatResponse { error, fenced } if call.heartbeat => {
                let unknown = [ErrorCode::BrokerIdNotRegistered.code(), ErrorCode::StaleBrokerEpoch.code()];
                if unknown.contains(&error) {
                    self.lifecycle.registered = false;
                    self.lifecycle.next_call_ms = now_ms;
                } else {
                    let interval = if fenced { RETRY_MS } else { HEARTBEAT_INTERVAL_MS };
                    self.lifecycle.next_call_ms = now_ms + interval;
                }
                error
            }
            // An answer of the other kind answers no call in flight.
            _ => return,
        };
        if error != 0 && error != ErrorCode::BrokerIdNotRegistered.code() {
            self.lifecycle.next_call_ms = now_ms + RETRY_MS;
        }
        self.lifecycle.in_flight = None;
    }

    /// A peer's BrokerRegistration or BrokerHeartbeat: decided by this node's controller and
    /// answered once its records are committed. Returns the response if it is known now.
    pub(super) fn controller_call(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_key: ApiKey,
        api_version: i16,
        body: &RequestKind,
    ) -> Option<ResponseBody> {
        let refuse = |code: ErrorCode| {
            let answer = match api_key {
                ApiKey::BrokerRegistration => ControllerMessage::RegisterResponse { error: code.code() },
                _ => ControllerMessage::HeartbeatResponse { error: code.code(), fenced: true },
            };
            let response = calls::response_for(&answer, 0).expect("an answer has a response");
            Some(ResponseBody::Message(Box::new(response)))
        };
        if self.quorum.is_none() {
            return refuse(ErrorCode::InvalidRequest);
        }
        let message = match calls::message_from_request(body) {
            Ok((Some(cluster), _)) if cluster != self.cluster_id() => return refuse(ErrorCode::InconsistentClusterId),
            Ok((_, message)) => message,
            Err(reason) => return Some(ResponseBody::Close(format!("malformed call to the controller: {reason}"))),
        };
        let (node, incarnation, heartbeat) = match &message {
            ControllerMessage::Register(r) => (r.node, r.incarnation, false),
            ControllerMessage::Heartbeat { node, incarnation, .. }
            | ControllerMessage::ShutDown { node, incarnation } => (*node, *incarnation, true),
            _ => return refuse(ErrorCode::InvalidRequest),
        };
        self.controller_calls
            .waiting
            .insert(id.0, WaitingCall { id, api_key, api_version, node, incarnation, heartbeat });
        self.decide_call(now_ms, id.0, message);
        // A refusal or a decision with no records is answered now.
        self.drain_quorum(now_ms, None);
        None
    }

    /// Asks this node's quorum to decide a broker's call; the answer comes through
    /// [`Broker::call_decided`].
    fn decide_call(&mut self, now_ms: i64, token: u64, message: ControllerMessage) {
        let Some(quorum) = &mut self.quorum else { return };
        let decision = match message {
            ControllerMessage::Register(registration) => Decision::Register(registration),
            ControllerMessage::Heartbeat { node, incarnation, metadata_offset } => {
                let applied = quorum.image().applied_offset;
                let registered_at = *self.controller_calls.registered_at.entry(node).or_insert(applied);
                Decision::Heartbeat { node, incarnation, caught_up: metadata_offset >= registered_at }
            }
            ControllerMessage::ShutDown { node, incarnation } => Decision::ShutDown { node, incarnation },
            _ => return,
        };
        quorum.decide(now_ms, token, decision);
    }

    /// A decision of this node's controller on a broker's call: answers the peer that asked,
    /// or this node's own call.
    pub(super) fn call_decided(&mut self, now_ms: i64, token: u64, result: Result<(), Refusal>) {
        let local = self.lifecycle.in_flight.filter(|c| c.local_token == Some(token));
        let waiting = self.controller_calls.waiting.remove(&token);
        let (node, heartbeat) = match (local, waiting) {
            (Some(call), _) => (NodeId(self.config.node_id), call.heartbeat),
            (None, Some(w)) => (w.node, w.heartbeat),
            (None, None) => return,
        };
        let image = self.quorum.as_ref().map(|q| q.image().clone());
        let error = result.as_ref().err().map_or(0, |(code, _)| code.code());
        let answer = if heartbeat {
            let fenced = image.as_ref().and_then(|i| i.brokers.get(&node)).is_none_or(|b| b.fenced);
            ControllerMessage::HeartbeatResponse { error, fenced }
        } else {
            if error == 0 {
                let applied = image.as_ref().map_or(0, |i| i.applied_offset);
                self.controller_calls.registered_at.insert(node, applied);
            }
            ControllerMessage::RegisterResponse { error }
        };
        match (local, waiting) {
            (Some(_), _) => self.lifecycle_answer(now_ms, node, answer),
            (None, Some(w)) => {
                let response = calls::response_for(&answer, w.incarnation).expect("an answer has a response");
                self.outputs.push_back(Output::Response(Response {
                    id: w.id,
                    api_key: w.api_key,
                    api_version: w.api_version,
                    body: ResponseBody::Message(Box::new(response)),
                }));
            }
            (None, None) => {}
        }
    }

    /// Whether this node's registration is committed (for tests and the start-up log).
    pub fn is_registered(&self) -> bool {
        self.lifecycle.registered
    }
}
