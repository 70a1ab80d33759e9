//! Topics in a cluster: the controller creates, grows and deletes them (CreateTopics,
//! CreatePartitions and DeleteTopics are decided by the quorum's leader and answered once
//! committed), and every node builds its
//! share from the metadata image: a replica placed on this node gets a local log, and a topic
//! that leaves the image is deleted here too.
//!
//! Each partition placed on this node gets a Raft among its replicas (see `replication.rs`),
//! which elects its leader; the leader reports itself to the controller.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::admin::set_create_error;
use super::{
    partition_dir, Broker, Output, Partition, RequestId, Response, ResponseBody, StorageFault, StorageOp, Topic,
};
use crate::constants::PARTITIONS_PER_TOPIC_MAX;
use crate::error::ErrorCode;
use crate::ids::{NodeId, PartitionId};
use crate::io::Request;
use crate::log::Log;
use crate::metadata::calls::ControllerMessage;
use crate::metadata::controller::Refusal;
use crate::metadata::image::MetadataImage;
use crate::metadata::quorum::Decision;
use crate::metadata::{validate_topic_name, TopicConfig, TopicRecord};
use crate::txn::producer::ProducerTable;

/// Tokens of admin decisions; apart from the broker lifecycle's (request ids and bit 63).
const ADMIN_TOKEN: u64 = 1 << 62;
/// The CreateTopics version a broker asks the controller for an internal topic at.
const INTERNAL_CREATE_VERSION: i16 = 5;

/// The file in a cluster partition's directory naming the topic id it belongs to (Kafka's
/// name for it), so a directory left by a deleted topic is never taken for a new topic of the
/// same name.
const TOPIC_ID_FILE: &str = "partition.metadata";

fn topic_id_file(id: uuid::Uuid) -> String {
    format!("version: 0\ntopic_id: {id}\n")
}

/// What the cluster side of a broker keeps between inputs.
#[derive(Debug, Default)]
pub(super) struct ClusterTopics {
    /// The image this node's topics were last built from.
    built_from: Option<Arc<MetadataImage>>,
    /// Topic ids that came from the image (only those are deleted when they leave it).
    from_image: BTreeSet<uuid::Uuid>,
    /// Admin requests waiting for their decisions, and which entry each token answers.
    waiting: BTreeMap<RequestId, WaitingAdmin>,
    tokens: BTreeMap<u64, (RequestId, usize)>,
    next_token: u64,
    /// Admin requests sent on to the controller (KIP-590), by token.
    forwarded: BTreeMap<u64, Forwarded>,
    /// Checkpointed (recovery point, log start) of partitions not opened yet: they open once
    /// the image names them, and their entries are kept in the checkpoints meanwhile.
    unopened: BTreeMap<(String, i32), (i64, i64)>,
}

/// A client's admin request forwarded to the controller, kept until it answers.
#[derive(Debug)]
struct Forwarded {
    /// The request itself, handled here if no answer comes by `deadline_ms` (the controller
    /// died, or was deposed, with it).
    request: Request,
    deadline_ms: i64,
}

#[derive(Debug)]
struct WaitingAdmin {
    api_version: i16,
    response: ResponseKind,
    remaining: usize,
}

impl ClusterTopics {
    pub(super) fn new(unopened: BTreeMap<(String, i32), (i64, i64)>) -> ClusterTopics {
        ClusterTopics { unopened, ..ClusterTopics::default() }
    }

    /// Checkpoint entries of partitions not opened yet, to keep in the checkpoint files.
    pub(super) fn unopened(&self) -> &BTreeMap<(String, i32), (i64, i64)> {
        &self.unopened
    }

    pub(super) fn image_topics(&self) -> &BTreeSet<uuid::Uuid> {
        &self.from_image
    }
}

impl Broker {
    pub(super) fn is_cluster(&self) -> bool {
        self.quorum.is_some()
    }

    /// Sends an admin request only the controller decides on to the controller, when that is
    /// another node this one knows (Kafka's brokers forward such requests, KIP-590), and
    /// returns `None`; gives the request back when it is to be handled here: on one node, on
    /// the controller, while no controller is known (its decisions are then refused
    /// NOT_CONTROLLER and the client asks again), and for a request a peer forwarded (never
    /// sent on twice, so two nodes that each take the other for the controller cannot pass it
    /// back and forth).
    pub(super) fn forward_to_controller(&mut self, now_ms: i64, request: Request) -> Option<Request> {
        let controller_only = matches!(
            request.body,
            RequestKind::CreateTopics(_)
                | RequestKind::CreatePartitions(_)
                | RequestKind::DeleteTopics(_)
                | RequestKind::AlterConfigs(_)
                | RequestKind::IncrementalAlterConfigs(_)
                // Only the leader knows how far every voter's log reaches.
                | RequestKind::DescribeQuorum(_)
        );
        let from_peer = request.client_id.as_deref().is_some_and(|c| c.starts_with(crate::peer::PEER_CLIENT_ID_PREFIX));
        let Some(quorum) = self.quorum.as_ref().filter(|_| controller_only && !from_peer) else { return Some(request) };
        let own = NodeId(self.config.node_id);
        let Some(controller) = quorum.raft().leader().filter(|&l| l != own && !quorum.is_active_controller()) else {
            return Some(request);
        };
        let token = self.cluster.next_token;
        self.cluster.next_token += 1;
        let message = ControllerMessage::Forward {
            token,
            api_key: request.api_key,
            api_version: request.api_version,
            request: Box::new(request.body.clone()),
        };
        self.outputs.push_back(Output::Peer { to: controller, message: message.into() });
        let deadline_ms = now_ms + crate::constants::FORWARD_TIMEOUT_MS;
        self.cluster.forwarded.insert(token, Forwarded { request, deadline_ms });
        None
    }

    /// The controller's answer to a forwarded request goes to the client as it is.
    pub(super) fn forward_answered(&mut self, token: u64, response: ResponseKind) {
        let Some(Forwarded { request, .. }) = self.cluster.forwarded.remove(&token) else { return };
        self.outputs.push_back(Output::Response(Response {
            id: request.id,
            api_key: request.api_key,
            api_version: request.api_version,
            body: ResponseBody::Message(Box::new(response)),
        }));
    }

    /// Forwarded requests left unanswered past their deadline, taken back to be handled here
    /// (decided, if this node is the controller now, else refused NOT_CONTROLLER so the client
    /// asks again). A late answer then finds nothing to answer.
    pub(super) fn forwards_timed_out(&mut self, now_ms: i64) -> Vec<Request> {
        let due: Vec<u64> =
            self.cluster.forwarded.iter().filter(|(_, f)| f.deadline_ms <= now_ms).map(|(&token, _)| token).collect();
        due.into_iter().filter_map(|token| self.cluster.forwarded.remove(&token)).map(|f| f.request).collect()
    }

    /// When the next forwarded request runs out of time.
    pub(super) fn next_forward_deadline_ms(&self) -> Option<i64> {
        self.cluster.forwarded.values().map(|f| f.deadline_ms).min()
    }

    /// CreateTopics in a cluster: each valid topic is asked of the controller.
    pub(super) fn cluster_create_topics(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        request: CreateTopicsRequest,
    ) -> Option<ResponseBody> {
        let mut response = CreateTopicsResponse::default();
        let mut decisions = Vec::new();
        for (position, wanted) in request.topics.into_iter().enumerate() {
            let name = wanted.name.0.to_string();
            let mut result = CreatableTopicResult::default().with_name(wanted.name.clone());
            let checked = (|| -> Result<Decision, Refusal> {
                validate_topic_name(&name).map_err(|e| (ErrorCode::InvalidTopicException, e))?;
                if self.topics.contains_key(&name) {
                    return Err((ErrorCode::TopicAlreadyExists, format!("topic '{name}' already exists")));
                }
                if !wanted.assignments.is_empty() {
                    return Err((
                        ErrorCode::InvalidReplicaAssignment,
                        "replica assignments are not taken yet; give partitions and replication factor".into(),
                    ));
                }
                if wanted.replication_factor == 0 || wanted.replication_factor < -1 {
                    return Err((
                        ErrorCode::InvalidReplicationFactor,
                        format!("replication factor {} must be at least 1", wanted.replication_factor),
                    ));
                }
                // -1 takes the broker's default; the controller refuses more replicas than
                // there are live brokers.
                let replication_factor = if wanted.replication_factor == -1 {
                    self.config.default_replication_factor
                } else {
                    wanted.replication_factor
                };
                let partitions =
                    if wanted.num_partitions == -1 { self.config.default_partitions } else { wanted.num_partitions };
                if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
                    return Err((
                        ErrorCode::InvalidPartitions,
                        format!("partition count must be between 1 and {PARTITIONS_PER_TOPIC_MAX}"),
                    ));
                }
                let configs: BTreeMap<String, String> = wanted
                    .configs
                    .iter()
                    .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                    .collect();
                TopicConfig::from_pairs(configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .map_err(|e| (ErrorCode::InvalidConfig, e.to_string()))?;
                Ok(Decision::CreateTopic { name: name.clone(), partitions, replication_factor, configs })
            })();
            match checked {
                Ok(decision) if !request.validate_only => decisions.push((position, decision)),
                Ok(_) => {}
                Err((code, message)) => set_create_error(&mut result, api_version, code, message),
            }
            response.topics.push(result);
        }
        self.decide_admin(now_ms, id, api_version, ResponseKind::CreateTopics(response), decisions)
    }

    /// DeleteTopics in a cluster, by name (requests by topic id name them through the image).
    pub(super) fn cluster_delete_topics(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        request: DeleteTopicsRequest,
    ) -> Option<ResponseBody> {
        let image = self.quorum.as_ref().map(|q| q.image().clone()).unwrap_or_default();
        let mut wanted: Vec<(Option<String>, uuid::Uuid)> =
            request.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect();
        wanted.extend(request.topics.iter().map(|t| {
            let name = t.name.as_ref().map(|n| n.0.to_string());
            let name = name.or_else(|| image.topics.get(&t.topic_id).map(|t| t.name.clone()));
            (name, t.topic_id)
        }));
        let mut response = DeleteTopicsResponse::default();
        let mut decisions = Vec::new();
        for (position, (name, topic_id)) in wanted.into_iter().enumerate() {
            let mut result = DeletableTopicResult::default().with_topic_id(topic_id);
            result.name = name.clone().map(|n| TopicName(StrBytes::from_string(n)));
            match name {
                Some(name) if !Broker::is_internal(&name) => decisions.push((position, Decision::DeleteTopic { name })),
                Some(_) => {
                    result.error_code = ErrorCode::InvalidRequest.code();
                    result.error_message = Some(StrBytes::from_static_str("internal topics cannot be deleted"));
                }
                None => result.error_code = ErrorCode::UnknownTopicId.code(),
            }
            if api_version < 5 {
                result.error_message = None;
            }
            if api_version < 6 {
                result.topic_id = uuid::Uuid::nil();
            }
            response.responses.push(result);
        }
        self.decide_admin(now_ms, id, api_version, ResponseKind::DeleteTopics(response), decisions)
    }

    /// CreatePartitions in a cluster: each topic's new count is asked of the controller, which
    /// places the new partitions' replicas as it placed the topic's first ones. With
    /// `validate_only`, checked against this node's image and answered at once.
    pub(super) fn cluster_create_partitions(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        request: CreatePartitionsRequest,
    ) -> Option<ResponseBody> {
        let mut response = CreatePartitionsResponse::default();
        let mut decisions = Vec::new();
        for (position, wanted) in request.topics.into_iter().enumerate() {
            let name = wanted.name.0.to_string();
            let mut result = CreatePartitionsTopicResult::default().with_name(wanted.name.clone());
            let current = self.quorum.as_ref().and_then(|q| q.image().topic(&name)).map(|t| t.partitions.len());
            let refusal = match current {
                _ if Broker::is_internal(&name) => {
                    Some((ErrorCode::InvalidRequest, "internal topics keep their partitions".to_string()))
                }
                None => Some((ErrorCode::UnknownTopicOrPartition, format!("topic '{name}' does not exist"))),
                Some(_) if wanted.assignments.as_ref().is_some_and(|a| !a.is_empty()) => Some((
                    ErrorCode::InvalidReplicaAssignment,
                    "replica assignments are not taken yet; give the new count".to_string(),
                )),
                Some(current) if i64::from(wanted.count) <= current as i64 => Some((
                    ErrorCode::InvalidPartitions,
                    format!("topic '{name}' has {current} partitions; the new count must be larger"),
                )),
                Some(_) if request.validate_only => None,
                Some(_) => {
                    decisions.push((position, Decision::CreatePartitions { name, count: wanted.count }));
                    None
                }
            };
            if let Some((code, message)) = refusal {
                result.error_code = code.code();
                result.error_message = Some(StrBytes::from_string(message));
            }
            response.results.push(result);
        }
        self.decide_admin(now_ms, id, api_version, ResponseKind::CreatePartitions(response), decisions)
    }

    /// Asks the controller each decision; the response leaves once every one is decided.
    pub(super) fn decide_admin(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        response: ResponseKind,
        decisions: Vec<(usize, Decision)>,
    ) -> Option<ResponseBody> {
        if decisions.is_empty() {
            return Some(ResponseBody::Message(Box::new(response)));
        }
        let remaining = decisions.len();
        self.cluster.waiting.insert(id, WaitingAdmin { api_version, response, remaining });
        for (position, decision) in decisions {
            let token = ADMIN_TOKEN | self.cluster.next_token;
            self.cluster.next_token += 1;
            self.cluster.tokens.insert(token, (id, position));
            if let Some(quorum) = &mut self.quorum {
                quorum.decide(now_ms, token, decision);
            }
        }
        // Refusals come back at once; the response may already be out.
        self.drain_quorum(now_ms, None);
        None
    }

    /// A controller decision on an admin request's entry. False if `token` is not an admin one.
    pub(super) fn admin_decided(&mut self, token: u64, result: Result<(), Refusal>) -> bool {
        let Some((id, position)) = self.cluster.tokens.remove(&token) else { return token & ADMIN_TOKEN != 0 };
        let Some(waiting) = self.cluster.waiting.get_mut(&id) else { return true };
        let api_version = waiting.api_version;
        let image = self.quorum.as_ref().map(|q| q.image().clone()).unwrap_or_default();
        match &mut waiting.response {
            ResponseKind::CreateTopics(r) => {
                let entry = &mut r.topics[position];
                match result {
                    Ok(()) => {
                        if let Some(topic) = image.topic(entry.name.0.as_str()) {
                            if api_version >= 5 {
                                entry.num_partitions = topic.partitions.len() as i32;
                                entry.replication_factor =
                                    topic.partitions.first().map_or(1, |p| p.replicas.len()) as i16;
                            }
                            if api_version >= 7 {
                                entry.topic_id = topic.id;
                            }
                        }
                    }
                    Err((code, message)) => set_create_error(entry, api_version, code, message),
                }
            }
            ResponseKind::DeleteTopics(r) => {
                if let Err((code, message)) = result {
                    let entry = &mut r.responses[position];
                    entry.error_code = code.code();
                    if api_version >= 5 {
                        entry.error_message = Some(StrBytes::from_string(message));
                    }
                }
            }
            ResponseKind::CreatePartitions(r) => {
                if let Err((code, message)) = result {
                    let entry = &mut r.results[position];
                    entry.error_code = code.code();
                    entry.error_message = Some(StrBytes::from_string(message));
                }
            }
            ResponseKind::AlterConfigs(r) => {
                if let Err((code, message)) = result {
                    let entry = &mut r.responses[position];
                    entry.error_code = code.code();
                    entry.error_message = Some(StrBytes::from_string(message));
                }
            }
            ResponseKind::IncrementalAlterConfigs(r) => {
                if let Err((code, message)) = result {
                    let entry = &mut r.responses[position];
                    entry.error_code = code.code();
                    entry.error_message = Some(StrBytes::from_string(message));
                }
            }
            _ => {}
        }
        waiting.remaining -= 1;
        if waiting.remaining == 0 {
            let waiting = self.cluster.waiting.remove(&id).expect("looked up above");
            let api_key = match waiting.response {
                ResponseKind::CreateTopics(_) => kafka_protocol::messages::ApiKey::CreateTopics,
                ResponseKind::CreatePartitions(_) => kafka_protocol::messages::ApiKey::CreatePartitions,
                ResponseKind::AlterConfigs(_) => kafka_protocol::messages::ApiKey::AlterConfigs,
                ResponseKind::IncrementalAlterConfigs(_) => kafka_protocol::messages::ApiKey::IncrementalAlterConfigs,
                _ => kafka_protocol::messages::ApiKey::DeleteTopics,
            };
            self.outputs.push_back(Output::Response(Response {
                id,
                api_key,
                api_version,
                body: ResponseBody::Message(Box::new(waiting.response)),
            }));
        }
        true
    }

    /// Brings this node's topics in line with the quorum's image, if it changed: opens a log
    /// and a Raft for each replica placed here, and deletes the topics that left it. Returns
    /// whether the image changed since the last call.
    pub(super) fn build_from_image(&mut self, now_ms: i64) -> bool {
        let Some(image) = self.quorum.as_ref().map(|q| q.image().clone()) else { return false };
        if self.cluster.built_from.as_ref().is_some_and(|built| Arc::ptr_eq(built, &image)) {
            return false;
        }
        let unchanged = self.cluster.built_from.as_ref().is_some_and(|built| built.topics == image.topics);
        self.cluster.built_from = Some(image.clone());
        if unchanged {
            return true;
        }
        let gone: Vec<uuid::Uuid> =
            self.cluster.from_image.iter().filter(|id| !image.topics.contains_key(id)).copied().collect();
        for id in gone {
            // Still counted as the image's while the delete runs, so a failed delete (which
            // puts the topic back and rewrites metadata.json) never writes it there as local.
            if let Some(name) = self.topic_names_by_id.get(&id).cloned() {
                if self.delete_topic(&name).is_err() {
                    // The fault is reported inside; the next image change tries again.
                    continue;
                }
            }
            self.cluster.from_image.remove(&id);
        }
        let own = NodeId(self.config.node_id);
        for topic in image.topics.values() {
            if let Some(local) = self.topic_names_by_id.get(&topic.id) {
                if *local != topic.name {
                    continue;
                }
            } else if self.topics.contains_key(&topic.name) {
                // A local topic of the same name (one made before this node joined a cluster).
                self.faults.push(StorageFault::new(
                    StorageOp::CreateTopic,
                    partition_dir(&topic.name, 0),
                    &std::io::Error::other("a local topic has this name"),
                    "the cluster's topic of this name is not served by this node",
                ));
                continue;
            }
            // The controller checked the configs before deciding.
            let config = TopicConfig::from_pairs(topic.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .unwrap_or_default();
            let record = TopicRecord {
                name: topic.name.clone(),
                id: topic.id,
                partitions: topic.partitions.len() as i32,
                configs: topic.configs.clone(),
            };
            self.cluster.from_image.insert(topic.id);
            self.topic_names_by_id.insert(topic.id, topic.name.clone());
            let entry = self.topics.entry(topic.name.clone()).or_insert_with(|| Topic {
                record: record.clone(),
                config: config.clone(),
                partitions: BTreeMap::new(),
            });
            entry.record = record;
            let log_config = config.log_config(&self.config.topic_defaults);
            if entry.config.overrides != config.overrides {
                // The configs changed (AlterConfigs): the partitions here take the new settings.
                for partition in entry.partitions.values_mut() {
                    partition.log.set_config(log_config.clone());
                }
            }
            entry.config = config;
            let wanted: Vec<i32> = topic
                .partitions
                .iter()
                .zip(0..)
                .filter(|(p, index)| p.replicas.contains(&own) && !entry.partitions.contains_key(index))
                .map(|(_, index)| index)
                .collect();
            for index in wanted {
                let dir = partition_dir(&topic.name, index);
                let key = (topic.name.clone(), index);
                if let Err(error) = self.set_aside_if_stale(&dir, topic.id) {
                    self.faults.push(StorageFault::new(
                        StorageOp::Delete,
                        dir,
                        &error,
                        "a directory of another topic of this name stays; this replica is not served here",
                    ));
                    continue;
                }
                let (recovery_point, start) = self.cluster.unopened.get(&key).copied().unwrap_or((0, 0));
                let opened = match self.storage.exists(&dir) {
                    Ok(true) => {
                        let storage = self.storage.clone();
                        let mut fence = |reached| crate::raft::saved::fence(storage.as_ref(), &dir, reached);
                        Log::open_fenced(
                            storage.clone(),
                            &dir,
                            log_config.clone(),
                            recovery_point,
                            start,
                            now_ms,
                            &mut fence,
                        )
                        .map(|(log, report)| {
                            if let Some(reached) = report.damaged_to {
                                self.faults.push(StorageFault::new(
                                    StorageOp::Read,
                                    dir.clone(),
                                    &std::io::Error::new(
                                        std::io::ErrorKind::InvalidData,
                                        format!(
                                            "a stored batch fails its CRC-32C check; the log reached offset {}",
                                            reached.end_offset
                                        ),
                                    ),
                                    "recovery cut the log at a damaged batch; the replica fetches the rest again \
                                         and votes again once it holds what it held",
                                ));
                            }
                            log
                        })
                    }
                    Ok(false) => Log::create(self.storage.clone(), &dir, log_config.clone(), now_ms).and_then(|log| {
                        let marker = topic_id_file(topic.id);
                        crate::storage::write_file_atomic(self.storage.as_ref(), &dir, TOPIC_ID_FILE, marker.as_bytes())
                            .map(|()| log)
                    }),
                    Err(e) => Err(e),
                };
                let log = match opened {
                    Ok(log) => log,
                    Err(error) => {
                        self.faults.push(StorageFault::new(
                            StorageOp::CreateTopic,
                            dir,
                            &error,
                            "this replica is not served here; a restart tries again",
                        ));
                        continue;
                    }
                };
                // Kept until the log is open, so a failed open loses no checkpoint entry.
                self.cluster.unopened.remove(&key);
                let mut producers = ProducerTable::default();
                // An unreadable header leaves the table as far as it got; the log's own
                // recovery has checked every batch already.
                let _ = log.for_each_producer_batch(|header, control_type| producers.replay(header, control_type));
                let id = PartitionId::new(topic.id, index);
                let topic_entry = self.topics.get_mut(&topic.name).expect("inserted above");
                topic_entry.partitions.insert(index, Partition::new(id, log, producers));
                self.unsynced.insert(id);
                let replicas = &topic.partitions[index as usize].replicas;
                if let Err(error) = self.open_replica(now_ms, id, &topic.name, replicas) {
                    // The saved quorum state is unreadable: without it this replica could vote
                    // twice in one epoch, so it does not take part (and serves nothing).
                    self.faults.push(StorageFault::new(
                        StorageOp::Metadata,
                        format!("{dir}/{}", crate::raft::saved::QUORUM_STATE_FILE),
                        &error,
                        "this replica does not take part in its partition until the file is repaired",
                    ));
                    if let Some(p) = self.partition_by_id_mut(id) {
                        p.failed = true;
                    }
                }
            }
        }
        true
    }

    /// Removes `dir` if it holds a partition of another topic than `id` (one deleted while
    /// this node was down, then created again under the same name), with its checkpoint
    /// entries: its data must not become the new topic's.
    fn set_aside_if_stale(&mut self, dir: &str, id: uuid::Uuid) -> std::io::Result<()> {
        if !self.storage.exists(dir)? {
            return Ok(());
        }
        let marker = crate::storage::read_file(self.storage.as_ref(), &format!("{dir}/{TOPIC_ID_FILE}"))?;
        if marker.as_deref() == Some(topic_id_file(id).as_bytes()) {
            return Ok(());
        }
        let doomed = format!("{dir}.{}-stale-delete", id.simple());
        self.storage.rename(dir, &doomed)?;
        self.storage.sync_dir("")?;
        if let Some((name, index)) = dir.rsplit_once('-') {
            if let Ok(index) = index.parse::<i32>() {
                self.cluster.unopened.remove(&(name.to_string(), index));
            }
        }
        self.storage.remove_dir_all(&doomed)
    }

    /// The leader, leader epoch and replicas of a partition for Metadata: on one node this
    /// node; in a cluster the image's, or this node's own Raft's where it knows a newer epoch
    /// (a leader elected since the image last heard). Until its first report, a partition of
    /// one replica is led by that replica while its broker is not fenced.
    pub(super) fn partition_roles(&self, now_ms: i64, topic_id: uuid::Uuid, index: i32) -> Roles {
        let own = self.config.node_id;
        let alone = Roles { leader: own, epoch: 0, replicas: vec![own], in_sync: vec![own], offline: Vec::new() };
        let Some(quorum) = &self.quorum else { return alone };
        let image = quorum.image();
        let Some(partition) = image.topics.get(&topic_id).and_then(|t| t.partitions.get(index as usize)) else {
            // One of this node's own topics (the offsets topic).
            return alone;
        };
        let live = |n: &NodeId| image.brokers.get(n).is_some_and(|b| !b.fenced);
        let mut leader = partition.leader.or_else(|| match partition.replicas.as_slice() {
            [only] if live(only) => Some(*only),
            _ => None,
        });
        let mut epoch = partition.leader_epoch;
        let mut in_sync: Vec<NodeId> = partition.in_sync.clone();
        let local = self.topic_name_by_id(topic_id).and_then(|name| self.partition(name, index));
        if let Some(raft) = local.and_then(|p| p.replica.as_ref()).map(|r| &r.raft) {
            if raft.epoch() > epoch || (raft.epoch() == epoch && leader.is_none()) {
                epoch = raft.epoch();
                leader = raft.leader();
                if raft.is_leader() {
                    in_sync = raft.in_sync(now_ms, crate::constants::REPLICA_LAG_MS_MAX);
                }
            }
        }
        let replicas: Vec<i32> = partition.replicas.iter().map(|n| n.0).collect();
        // A fenced broker is in sync with nothing (Kafka's controller takes it out of every ISR).
        let in_sync = match leader {
            Some(leader) if in_sync.is_empty() => vec![leader.0],
            _ => in_sync.iter().filter(|n| live(n)).map(|n| n.0).collect(),
        };
        let offline = partition.replicas.iter().filter(|n| !live(n)).map(|n| n.0).collect();
        Roles { leader: leader.map_or(-1, |n| n.0), epoch, replicas, in_sync, offline }
    }

    /// KIP-951's hint for a client told NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH: the
    /// partition's leader and epoch as Metadata would name them, with the leader's address,
    /// so the client moves without a Metadata round trip. `None` on one node, for an unknown
    /// partition, or while no leader is known.
    pub(super) fn leader_hint(&self, now_ms: i64, topic: &str, index: i32) -> Option<LeaderHint> {
        let quorum = self.quorum.as_ref()?;
        let topic_id = self.topics.get(topic)?.record.id;
        let roles = self.partition_roles(now_ms, topic_id, index);
        let broker = quorum.image().brokers.get(&NodeId(roles.leader))?;
        Some(LeaderHint {
            leader: roles.leader,
            epoch: roles.epoch,
            host: broker.host.clone(),
            port: broker.port,
            rack: broker.rack.clone(),
        })
    }

    /// The error for a partition this node does not hold: NOT_LEADER_OR_FOLLOWER for a
    /// partition of a known topic (it lives on another broker), else UNKNOWN_TOPIC_OR_PARTITION.
    pub(super) fn absent_partition(&self, topic: &str, index: i32) -> ErrorCode {
        match self.topic(topic) {
            Some(t) if (0..t.record.partitions).contains(&index) => ErrorCode::NotLeaderOrFollower,
            _ => ErrorCode::UnknownTopicOrPartition,
        }
    }

    /// Auto-creation in a cluster: asked of the controller, answered by nobody (the client
    /// asks for the topic's metadata again).
    pub(super) fn cluster_auto_create(&mut self, now_ms: i64, name: &str) {
        let decision = Decision::CreateTopic {
            name: name.to_string(),
            partitions: self.config.default_partitions,
            replication_factor: self.config.default_replication_factor,
            configs: BTreeMap::new(),
        };
        self.decide_unanswered(now_ms, decision);
    }

    /// Asks the controller for an internal topic no request waits for: decided here on the
    /// controller, else sent to it as this node's CreateTopics (as Kafka's brokers do). Nothing
    /// waits for the answer: the topic shows in the image once made, and the caller asks again
    /// later if it does not.
    pub(super) fn create_internal_topic(
        &mut self,
        now_ms: i64,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    ) {
        let Some(quorum) = &self.quorum else { return };
        if quorum.is_active_controller() {
            let decision = Decision::CreateTopic { name: name.to_string(), partitions, replication_factor, configs };
            self.decide_unanswered(now_ms, decision);
            return;
        }
        let own = NodeId(self.config.node_id);
        let Some(controller) = quorum.raft().leader().filter(|&l| l != own) else { return };
        let configs = configs
            .into_iter()
            .map(|(k, v)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string(k))
                    .with_value(Some(StrBytes::from_string(v)))
            })
            .collect();
        let topic = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(configs);
        let request = CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(30_000);
        // A token no forwarded request holds: the answer finds nothing to answer.
        let token = self.cluster.next_token;
        self.cluster.next_token += 1;
        let message = ControllerMessage::Forward {
            token,
            api_key: ApiKey::CreateTopics,
            api_version: INTERNAL_CREATE_VERSION,
            request: Box::new(RequestKind::CreateTopics(request)),
        };
        self.outputs.push_back(Output::Peer { to: controller, message: message.into() });
    }

    /// Asks the controller for a decision no request waits for.
    pub(super) fn decide_unanswered(&mut self, now_ms: i64, decision: Decision) {
        let token = ADMIN_TOKEN | self.cluster.next_token;
        self.cluster.next_token += 1;
        if let Some(quorum) = &mut self.quorum {
            quorum.decide(now_ms, token, decision);
        }
        self.drain_quorum(now_ms, None);
    }
}

/// A partition's leader, its epoch and its address, for KIP-951's hints.
pub(super) struct LeaderHint {
    pub leader: i32,
    pub epoch: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// Whether an error sends the client to another leader (KIP-951 adds a hint to it).
pub(super) fn moved_leader(code: i16) -> bool {
    code == ErrorCode::NotLeaderOrFollower.code() || code == ErrorCode::FencedLeaderEpoch.code()
}

/// A partition's roles as Metadata tells them (-1: no leader now).
pub(super) struct Roles {
    pub leader: i32,
    pub epoch: i32,
    pub replicas: Vec<i32>,
    pub in_sync: Vec<i32>,
    pub offline: Vec<i32>,
}
