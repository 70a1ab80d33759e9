//! ApiVersions, Metadata, DescribeCluster and InitProducerId.

use kafka_protocol::messages::api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, DescribeClusterRequest, DescribeClusterResponse, InitProducerIdRequest,
    InitProducerIdResponse, MetadataRequest, MetadataResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::versions::SUPPORTED;
use super::Broker;
use crate::constants::PRODUCER_ID_BLOCK_SIZE;
use crate::error::ErrorCode;
use crate::metadata::validate_topic_name;

/// Authorized-operation bit sets for clients that ask (Metadata v8+, DescribeCluster). There are
/// no ACLs yet, so every operation that applies is allowed. Bits are Kafka's AclOperation codes.
const TOPIC_OPERATIONS: i32 = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
const CLUSTER_OPERATIONS: i32 = (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

pub(super) fn api_versions(_api_version: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default().with_api_key(key as i16).with_min_version(min).with_max_version(max)
        })
        .collect();
    // KIP-890 part 2: clients that see `transaction.version` finalized at 2 use the second
    // generation of transactions (Produce v12 and TxnOffsetCommit v5 add partitions
    // implicitly, EndTxn v5 bumps the epoch). The features never change, so one epoch.
    let txn_version = StrBytes::from_static_str(TRANSACTION_VERSION_FEATURE);
    ApiVersionsResponse::default()
        .with_api_keys(api_keys)
        .with_supported_features(vec![SupportedFeatureKey::default()
            .with_name(txn_version.clone())
            .with_min_version(0)
            .with_max_version(TRANSACTION_VERSION)])
        .with_finalized_features_epoch(1)
        .with_finalized_features(vec![FinalizedFeatureKey::default()
            .with_name(txn_version)
            .with_min_version_level(TRANSACTION_VERSION)
            .with_max_version_level(TRANSACTION_VERSION)])
}

/// The finalized feature naming the transaction protocol's generation, and its level here.
pub const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";
pub const TRANSACTION_VERSION: i16 = 2;

/// The reply to an ApiVersions request with a version we do not know: Kafka answers in the v0
/// body with UNSUPPORTED_VERSION and the full key list, so the client can pick a version.
pub fn api_versions_unsupported() -> ApiVersionsResponse {
    api_versions(0).with_error_code(ErrorCode::UnsupportedVersion.code())
}

/// A broker as Metadata and DescribeCluster list it.
struct Listed {
    id: BrokerId,
    host: StrBytes,
    port: i32,
    rack: Option<StrBytes>,
}

impl Broker {
    /// The brokers clients are told of: in a cluster, those registered and not fenced in the
    /// metadata image, and always this one (it serves the topics created on it until
    /// partitions are replicated); the controller is the quorum's leader when known.
    fn listed_brokers(&self) -> (Vec<Listed>, BrokerId) {
        let own = Listed {
            id: BrokerId(self.config.node_id),
            host: StrBytes::from_string(self.config.advertised_host.clone()),
            port: self.config.advertised_port,
            rack: self.config.rack.clone().map(StrBytes::from_string),
        };
        let Some(quorum) = &self.quorum else { return (vec![own], BrokerId(self.config.node_id)) };
        let mut listed: Vec<Listed> = quorum
            .image()
            .live_brokers()
            .filter(|(id, _)| id.0 != self.config.node_id)
            .map(|(id, b)| Listed {
                id: BrokerId(id.0),
                host: StrBytes::from_string(b.host.clone()),
                port: b.port,
                rack: b.rack.clone().map(StrBytes::from_string),
            })
            .collect();
        listed.push(own);
        listed.sort_by_key(|b| b.id.0);
        let controller = quorum.raft().leader().map_or(self.config.node_id, |n| n.0);
        (listed, BrokerId(controller))
    }

    pub(super) fn metadata_response(
        &mut self,
        now_ms: i64,
        api_version: i16,
        request: MetadataRequest,
    ) -> MetadataResponse {
        let (listed, controller) = self.listed_brokers();
        let brokers = listed
            .into_iter()
            .map(|b| {
                // The rack field is there from v1.
                let rack = b.rack.filter(|_| api_version >= 1);
                MetadataResponseBroker::default().with_node_id(b.id).with_host(b.host).with_port(b.port).with_rack(rack)
            })
            .collect();
        let mut response = MetadataResponse::default().with_brokers(brokers).with_controller_id(controller);
        if (8..=10).contains(&api_version) && request.include_cluster_authorized_operations {
            response.cluster_authorized_operations = CLUSTER_OPERATIONS;
        }
        let topic_operations = api_version >= 8 && request.include_topic_authorized_operations;
        if api_version >= 2 {
            response.cluster_id = Some(StrBytes::from_string(self.cluster_id().to_string()));
        }
        // v0: an empty list means all topics. v1+: null means all, empty means none.
        let wanted: Option<Vec<(Option<String>, uuid::Uuid)>> = match request.topics {
            None => None,
            Some(list) if list.is_empty() && api_version == 0 => None,
            Some(list) => Some(list.into_iter().map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)).collect()),
        };
        let auto_create = self.config.auto_create_topics && (api_version < 4 || request.allow_auto_topic_creation);
        let names: Vec<(Option<String>, uuid::Uuid)> = match wanted {
            None => self.topics.keys().map(|n| (Some(n.clone()), uuid::Uuid::nil())).collect(),
            Some(list) => list,
        };
        for (name, topic_id) in names {
            let name = match name {
                Some(n) => Some(n),
                None => self.topic_name_by_id(topic_id).map(str::to_string),
            };
            let Some(name) = name else {
                let mut entry = MetadataResponseTopic::default()
                    .with_error_code(ErrorCode::UnknownTopicId.code())
                    .with_topic_id(topic_id);
                entry.name = None;
                response.topics.push(entry);
                continue;
            };
            let mut entry =
                MetadataResponseTopic::default().with_name(Some(TopicName(StrBytes::from_string(name.clone()))));
            if let Err(_reason) = validate_topic_name(&name) {
                entry.error_code = ErrorCode::InvalidTopicException.code();
                response.topics.push(entry);
                continue;
            }
            if self.topic(&name).is_none() && auto_create && self.is_cluster() {
                self.cluster_auto_create(now_ms, &name);
                if self.topic(&name).is_none() {
                    // Being created (or refused: a node that is not the controller asks the
                    // client to come back, as Kafka does while a topic is created).
                    entry.error_code = ErrorCode::LeaderNotAvailable.code();
                    response.topics.push(entry);
                    continue;
                }
            } else if self.topic(&name).is_none() && auto_create {
                let partitions = self.config.default_partitions;
                // A failure is reported as a fault inside; the entry then answers below as an
                // unknown topic, and the client asks again.
                let _ = self.create_topic(now_ms, &name, partitions, Default::default());
            }
            match self.topic(&name) {
                None => entry.error_code = ErrorCode::UnknownTopicOrPartition.code(),
                Some(topic) => {
                    if api_version >= 10 {
                        entry.topic_id = topic.record.id;
                    }
                    if api_version >= 1 {
                        entry.is_internal = Broker::is_internal(&name);
                    }
                    if topic_operations {
                        entry.topic_authorized_operations = TOPIC_OPERATIONS;
                    }
                    let topic_id = topic.record.id;
                    entry.partitions = (0..topic.record.partitions)
                        .map(|index| {
                            let roles = self.partition_roles(now_ms, topic_id, index);
                            let mut p = MetadataResponsePartition::default()
                                .with_partition_index(index)
                                .with_leader_id(BrokerId(roles.leader))
                                .with_replica_nodes(roles.replicas.into_iter().map(BrokerId).collect())
                                .with_isr_nodes(roles.in_sync.into_iter().map(BrokerId).collect());
                            if roles.leader < 0 {
                                p.error_code = ErrorCode::LeaderNotAvailable.code();
                            }
                            if api_version >= 5 {
                                p.offline_replicas = roles.offline.into_iter().map(BrokerId).collect();
                            }
                            if api_version >= 7 {
                                p.leader_epoch = roles.epoch;
                            }
                            p
                        })
                        .collect();
                }
            }
            response.topics.push(entry);
        }
        response
    }

    pub(super) fn describe_cluster(
        &self,
        _api_version: i16,
        _request: DescribeClusterRequest,
    ) -> DescribeClusterResponse {
        let (listed, controller) = self.listed_brokers();
        let brokers = listed
            .into_iter()
            .map(|b| {
                DescribeClusterBroker::default()
                    .with_broker_id(b.id)
                    .with_host(b.host)
                    .with_port(b.port)
                    .with_rack(b.rack)
            })
            .collect();
        DescribeClusterResponse::default()
            .with_cluster_id(StrBytes::from_string(self.cluster_id().to_string()))
            .with_controller_id(controller)
            .with_brokers(brokers)
    }

    /// Idempotent producers get a fresh id with epoch 0. A producer that sends back its id and
    /// epoch (KIP-360, after an error) gets the same id with the epoch bumped. Ids come from a
    /// block whose end is persisted before any id in it is used, so a restart never reuses one.
    pub(super) fn init_producer_id(&mut self, request: InitProducerIdRequest) -> InitProducerIdResponse {
        let mut response = InitProducerIdResponse::default();
        if request.transactional_id.is_some() {
            response.error_code = ErrorCode::TransactionalIdAuthorizationFailed.code();
            return response;
        }
        if request.producer_id.0 >= 0
            && request.producer_id.0 < self.next_producer_id
            && request.producer_epoch >= 0
            && request.producer_epoch < i16::MAX - 1
        {
            response.producer_id = request.producer_id;
            response.producer_epoch = request.producer_epoch + 1;
            return response;
        }
        match self.allocate_producer_id() {
            Ok(id) => {
                response.producer_id = ProducerId(id);
                response.producer_epoch = 0;
            }
            Err(code) => response.error_code = code.code(),
        }
        response
    }

    /// Hands out a producer id no producer had before, here or (in a cluster) on another node.
    pub(super) fn allocate_producer_id(&mut self) -> Result<i64, ErrorCode> {
        // In a cluster each node hands out its own residue of the ids modulo the number of
        // voters, so two nodes never give two producers one id (a partition would take the
        // second producer's first batch for a duplicate of the first's). The controller's
        // producer-id blocks replace this once partitions move between brokers.
        let (stride, residue) = match &self.config.quorum_voters {
            Some(voters) => {
                // Sorted, so that nodes listing the cluster in different orders still agree.
                let position = voters.iter().filter(|n| n.0 < self.config.node_id).count();
                (voters.len().max(1) as i64, position as i64)
            }
            None => (1, 0),
        };
        self.next_producer_id += (residue - self.next_producer_id).rem_euclid(stride);
        if self.next_producer_id >= self.metadata.document.producer_id_block_end {
            self.metadata.document.producer_id_block_end = self.next_producer_id + PRODUCER_ID_BLOCK_SIZE;
            if let Err(error) = self.persist_metadata() {
                self.metadata.document.producer_id_block_end = self.next_producer_id;
                self.faults.push(super::StorageFault::new(
                    super::StorageOp::Metadata,
                    crate::metadata::store::METADATA_PATH,
                    &error,
                    "no producer id is handed out; the next InitProducerId tries again",
                ));
                return Err(ErrorCode::KafkaStorageError);
            }
        }
        let id = self.next_producer_id;
        self.next_producer_id += 1;
        Ok(id)
    }
}
