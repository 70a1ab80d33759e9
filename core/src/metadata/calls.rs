//! A broker's calls to the controller (KRaft's BrokerRegistration, BrokerHeartbeat and
//! AlterPartition), as messages between nodes, and their Kafka request and response bodies.
//!
//! The broker epoch on the wire is the broker's incarnation (it grows at every start of the
//! broker), which is what the controller tells registrations apart by; Kafka uses the offset of
//! the registration record instead, which no client sees either.

use kafka_protocol::messages::broker_registration_request::Listener;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::controller::Registration;
use crate::ids::NodeId;

#[derive(Debug, Clone, PartialEq)]
pub enum ControllerMessage {
    Register(Registration),
    RegisterResponse {
        error: i16,
    },
    /// `metadata_offset`: how far the broker has applied the metadata log.
    Heartbeat {
        node: NodeId,
        incarnation: u64,
        metadata_offset: i64,
    },
    HeartbeatResponse {
        error: i16,
        fenced: bool,
    },
    /// A heartbeat with `want_shut_down`: the broker is stopping; answered as a heartbeat.
    ShutDown {
        node: NodeId,
        incarnation: u64,
    },
    /// Partition leaders on `node` report their leadership and in-sync replicas (KRaft's
    /// AlterPartition, v2: by topic id); the controller records what changed.
    ReportLeaders {
        node: NodeId,
        incarnation: u64,
        reports: Vec<LeaderReport>,
    },
    ReportLeadersResponse {
        error: i16,
    },
    /// A client's admin request that only the controller decides (CreateTopics,
    /// CreatePartitions, DeleteTopics, AlterConfigs, IncrementalAlterConfigs), sent on by a
    /// broker that is not the controller, as Kafka's brokers forward them (KIP-590). It travels
    /// as itself, at the client's version, and its answer goes back to the client unchanged.
    Forward {
        token: u64,
        api_key: ApiKey,
        api_version: i16,
        request: Box<RequestKind>,
    },
    Forwarded {
        token: u64,
        response: Box<ResponseKind>,
    },
}

/// One partition's leadership as its leader's Raft knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderReport {
    pub topic_id: uuid::Uuid,
    pub index: i32,
    pub leader_epoch: i32,
    pub in_sync: Vec<NodeId>,
}

/// The listener name brokers register their one Kafka address under.
const LISTENER: &str = "PLAINTEXT";

/// The Kafka request for a call to the controller; `None` for an answer.
pub fn request_for(cluster_id: &str, message: &ControllerMessage) -> Option<RequestKind> {
    Some(match message {
        ControllerMessage::Register(r) => {
            let listener = Listener::default()
                .with_name(StrBytes::from_static_str(LISTENER))
                .with_host(StrBytes::from_string(r.host.clone()))
                .with_port(u16::try_from(r.port).unwrap_or(0));
            RequestKind::BrokerRegistration(
                BrokerRegistrationRequest::default()
                    .with_broker_id(BrokerId(r.node.0))
                    .with_cluster_id(StrBytes::from_string(cluster_id.to_string()))
                    .with_incarnation_id(uuid::Uuid::from_u64_pair(0, r.incarnation))
                    .with_listeners(vec![listener])
                    .with_rack(r.rack.clone().map(StrBytes::from_string))
                    .with_previous_broker_epoch(-1),
            )
        }
        ControllerMessage::Heartbeat { node, incarnation, metadata_offset } => RequestKind::BrokerHeartbeat(
            BrokerHeartbeatRequest::default()
                .with_broker_id(BrokerId(node.0))
                .with_broker_epoch(*incarnation as i64)
                .with_current_metadata_offset(*metadata_offset),
        ),
        ControllerMessage::ShutDown { node, incarnation } => RequestKind::BrokerHeartbeat(
            BrokerHeartbeatRequest::default()
                .with_broker_id(BrokerId(node.0))
                .with_broker_epoch(*incarnation as i64)
                .with_want_fence(true)
                .with_want_shut_down(true),
        ),
        ControllerMessage::ReportLeaders { node, incarnation, reports } => {
            let mut topics: Vec<alter_partition_request::TopicData> = Vec::new();
            for report in reports {
                let partition = alter_partition_request::PartitionData::default()
                    .with_partition_index(report.index)
                    .with_leader_epoch(report.leader_epoch)
                    .with_new_isr(report.in_sync.iter().map(|n| BrokerId(n.0)).collect());
                match topics.iter_mut().find(|t| t.topic_id == report.topic_id) {
                    Some(topic) => topic.partitions.push(partition),
                    None => topics.push(
                        alter_partition_request::TopicData::default()
                            .with_topic_id(report.topic_id)
                            .with_partitions(vec![partition]),
                    ),
                }
            }
            RequestKind::AlterPartition(
                AlterPartitionRequest::default()
                    .with_broker_id(BrokerId(node.0))
                    .with_broker_epoch(*incarnation as i64)
                    .with_topics(topics),
            )
        }
        ControllerMessage::Forward { request, .. } => (**request).clone(),
        ControllerMessage::RegisterResponse { .. }
        | ControllerMessage::HeartbeatResponse { .. }
        | ControllerMessage::ReportLeadersResponse { .. }
        | ControllerMessage::Forwarded { .. } => return None,
    })
}

/// A peer's call, with the cluster it names (registrations name one, heartbeats do not).
pub fn message_from_request(request: &RequestKind) -> Result<(Option<&str>, ControllerMessage), String> {
    match request {
        RequestKind::BrokerRegistration(r) => {
            let listener = r
                .listeners
                .iter()
                .find(|l| l.name.as_str() == LISTENER)
                .or(r.listeners.first())
                .ok_or("a registration without a listener")?;
            let (_, incarnation) = r.incarnation_id.as_u64_pair();
            let registration = Registration {
                node: NodeId(r.broker_id.0),
                host: listener.host.to_string(),
                port: i32::from(listener.port),
                rack: r.rack.as_ref().map(|s| s.to_string()),
                incarnation,
            };
            Ok((Some(r.cluster_id.as_str()), ControllerMessage::Register(registration)))
        }
        RequestKind::BrokerHeartbeat(r) => {
            let incarnation = u64::try_from(r.broker_epoch).map_err(|_| "a negative broker epoch")?;
            if r.want_shut_down {
                return Ok((None, ControllerMessage::ShutDown { node: NodeId(r.broker_id.0), incarnation }));
            }
            Ok((
                None,
                ControllerMessage::Heartbeat {
                    node: NodeId(r.broker_id.0),
                    incarnation,
                    metadata_offset: r.current_metadata_offset,
                },
            ))
        }
        RequestKind::AlterPartition(r) => {
            let incarnation = u64::try_from(r.broker_epoch).map_err(|_| "a negative broker epoch")?;
            let reports = r
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| LeaderReport {
                        topic_id: t.topic_id,
                        index: p.partition_index,
                        leader_epoch: p.leader_epoch,
                        in_sync: p.new_isr.iter().map(|n| NodeId(n.0)).collect(),
                    })
                })
                .collect();
            Ok((None, ControllerMessage::ReportLeaders { node: NodeId(r.broker_id.0), incarnation, reports }))
        }
        _ => Err("not a call to the controller".into()),
    }
}

/// The Kafka response for an answer; `None` for a call. `incarnation` is the broker epoch a
/// registration answer returns.
pub fn response_for(message: &ControllerMessage, incarnation: u64) -> Option<ResponseKind> {
    Some(match message {
        ControllerMessage::RegisterResponse { error } => ResponseKind::BrokerRegistration(
            BrokerRegistrationResponse::default().with_error_code(*error).with_broker_epoch(if *error == 0 {
                incarnation as i64
            } else {
                -1
            }),
        ),
        ControllerMessage::HeartbeatResponse { error, fenced } => ResponseKind::BrokerHeartbeat(
            BrokerHeartbeatResponse::default()
                .with_error_code(*error)
                .with_is_fenced(*fenced)
                .with_is_caught_up(!*fenced),
        ),
        ControllerMessage::ReportLeadersResponse { error } => {
            ResponseKind::AlterPartition(AlterPartitionResponse::default().with_error_code(*error))
        }
        // A forwarded request is answered as the client's own request would be.
        ControllerMessage::Register(_)
        | ControllerMessage::Heartbeat { .. }
        | ControllerMessage::ShutDown { .. }
        | ControllerMessage::ReportLeaders { .. }
        | ControllerMessage::Forward { .. }
        | ControllerMessage::Forwarded { .. } => return None,
    })
}

/// A peer's answer to the call `sent`.
pub fn message_from_response(response: &ResponseKind, sent: &ControllerMessage) -> Result<ControllerMessage, String> {
    match (response, sent) {
        (ResponseKind::BrokerRegistration(r), ControllerMessage::Register(_)) => {
            Ok(ControllerMessage::RegisterResponse { error: r.error_code })
        }
        (
            ResponseKind::BrokerHeartbeat(r),
            ControllerMessage::Heartbeat { .. } | ControllerMessage::ShutDown { .. },
        ) => Ok(ControllerMessage::HeartbeatResponse { error: r.error_code, fenced: r.is_fenced }),
        (ResponseKind::AlterPartition(r), ControllerMessage::ReportLeaders { .. }) => {
            Ok(ControllerMessage::ReportLeadersResponse { error: r.error_code })
        }
        (response, ControllerMessage::Forward { token, .. }) => {
            Ok(ControllerMessage::Forwarded { token: *token, response: Box::new(response.clone()) })
        }
        _ => Err("the response does not answer the call sent".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_answers_survive_the_wire() {
        let registration = Registration {
            node: NodeId(2),
            host: "10.0.0.2".into(),
            port: 9093,
            rack: Some("r2".into()),
            incarnation: 7,
        };
        let calls = [
            ControllerMessage::Register(registration),
            ControllerMessage::Heartbeat { node: NodeId(2), incarnation: 7, metadata_offset: 41 },
            ControllerMessage::ShutDown { node: NodeId(2), incarnation: 7 },
            ControllerMessage::ReportLeaders {
                node: NodeId(2),
                incarnation: 7,
                reports: vec![
                    LeaderReport {
                        topic_id: uuid::Uuid::from_u128(5),
                        index: 0,
                        leader_epoch: 3,
                        in_sync: vec![NodeId(2), NodeId(3)],
                    },
                    LeaderReport {
                        topic_id: uuid::Uuid::from_u128(5),
                        index: 4,
                        leader_epoch: 1,
                        in_sync: vec![NodeId(2)],
                    },
                ],
            },
        ];
        for call in calls {
            let request = request_for("c1", &call).expect("a call has a request");
            let (cluster, back) = message_from_request(&request).unwrap();
            assert_eq!(back, call);
            assert_eq!(cluster, matches!(call, ControllerMessage::Register(_)).then_some("c1"));
        }
        let sent = ControllerMessage::Heartbeat { node: NodeId(2), incarnation: 7, metadata_offset: 41 };
        let answer = ControllerMessage::HeartbeatResponse { error: 0, fenced: true };
        let response = response_for(&answer, 7).unwrap();
        assert_eq!(message_from_response(&response, &sent).unwrap(), answer);
        let ResponseKind::BrokerRegistration(r) =
            response_for(&ControllerMessage::RegisterResponse { error: 0 }, 7).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.broker_epoch, 7);
        assert!(message_from_response(
            &response,
            &ControllerMessage::Register(Registration {
                node: NodeId(1),
                host: "h".into(),
                port: 1,
                rack: None,
                incarnation: 1,
            })
        )
        .is_err());
    }
}
