//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! AlterConfigs and IncrementalAlterConfigs. Every change is persisted in the metadata
//! document before the reply leaves.

use std::collections::BTreeMap;
use std::io;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{partition_dir, Broker, Partition, RequestId, ResponseBody, StorageFault, StorageOp, Topic};
use crate::constants::PARTITIONS_PER_TOPIC_MAX;
use crate::error::ErrorCode;
use crate::ids::PartitionId;
use crate::log::Log;
use crate::metadata::config::{self, TOPIC_CONFIGS};
use crate::metadata::quorum::Decision;
use crate::metadata::{validate_topic_name, TopicConfig, TopicRecord};
use crate::txn::producer::ProducerTable;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// DescribeConfigs `config_source` values.
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// An admin failure: a Kafka code and a message naming what was wrong.
type AdminError = (ErrorCode, String);

/// A CreateTopics entry refused with `code`, in the fields `api_version` has.
pub(super) fn set_create_error(result: &mut CreatableTopicResult, api_version: i16, code: ErrorCode, message: String) {
    result.error_code = code.code();
    if api_version >= 1 {
        result.error_message = Some(str_bytes(message));
    }
    if api_version >= 5 {
        result.num_partitions = -1;
        result.replication_factor = -1;
        result.configs = None;
    }
}

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

impl Broker {
    /// Creates a topic: its directories and empty logs, then the metadata entry.
    pub(super) fn create_topic(
        &mut self,
        now_ms: i64,
        name: &str,
        partitions: i32,
        config: TopicConfig,
    ) -> Result<uuid::Uuid, AdminError> {
        validate_topic_name(name).map_err(|e| (ErrorCode::InvalidTopicException, e))?;
        if self.topics.contains_key(name) {
            return Err((ErrorCode::TopicAlreadyExists, format!("topic '{name}' already exists")));
        }
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
            return Err((
                ErrorCode::InvalidPartitions,
                format!("partition count must be between 1 and {PARTITIONS_PER_TOPIC_MAX}"),
            ));
        }
        // Topic ids are never reused, not even those of deleted topics still named by an
        // in-flight sync.
        let mut id = self.rng.uuid();
        while self.topic_names_by_id.contains_key(&id) || id.is_nil() {
            id = self.rng.uuid();
        }
        let log_config = config.log_config(&self.config.topic_defaults);
        let mut logs = Vec::new();
        for index in 0..partitions {
            let dir = partition_dir(name, index);
            let created = match self.storage.exists(&dir) {
                // Left over from something we do not know; never write over data.
                Ok(true) => {
                    Err((ErrorCode::KafkaStorageError, format!("directory {dir} already exists in the data directory")))
                }
                Ok(false) => Log::create(self.storage.clone(), &dir, log_config.clone(), now_ms)
                    .map_err(|e| self.storage_failure(StorageOp::CreateTopic, &dir, &e)),
                Err(e) => Err(self.storage_failure(StorageOp::CreateTopic, &dir, &e)),
            };
            match created {
                Ok(log) => logs.push(log),
                Err(error) => {
                    self.remove_new_logs(logs);
                    return Err(error);
                }
            }
        }
        let record = TopicRecord { name: name.to_string(), id, partitions, configs: config.overrides.clone() };
        let states = logs
            .into_iter()
            .zip(0..)
            .map(|(log, index)| (index, Partition::new(PartitionId::new(id, index), log, ProducerTable::default())))
            .collect();
        self.topics.insert(name.to_string(), Topic { record, config, partitions: states });
        self.topic_names_by_id.insert(id, name.to_string());
        // New segments may have unsynced bytes (their headers, an index); the next sync covers them.
        self.unsynced.extend((0..partitions).map(|index| PartitionId::new(id, index)));
        if let Err(error) = self.persist_new_partitions() {
            let topic = self.topics.remove(name).expect("inserted above");
            self.topic_names_by_id.remove(&id);
            self.remove_new_logs(topic.partitions.into_values().map(|p| p.log).collect());
            return Err(error);
        }
        Ok(id)
    }

    /// Makes new partitions durable: checkpoints first (so no entry of an earlier topic of the
    /// same name applies to them), then the metadata that names them.
    fn persist_new_partitions(&mut self) -> Result<(), AdminError> {
        if let Err(e) = self.write_checkpoints() {
            return Err(self.storage_failure(StorageOp::LogStartCheckpoint, "", &e));
        }
        if let Err(e) = self.persist_metadata() {
            return Err(self.storage_failure(StorageOp::Metadata, crate::metadata::store::METADATA_PATH, &e));
        }
        Ok(())
    }

    /// Reports a storage failure that refuses an admin request (nothing changed), and gives
    /// the request's error.
    fn storage_failure(&mut self, op: StorageOp, path: &str, error: &io::Error) -> AdminError {
        self.faults.push(StorageFault::new(op, path, error, "the request is refused and nothing changed"));
        (ErrorCode::KafkaStorageError, format!("{} failed: {error}", op.name()))
    }

    /// Removes the logs of partitions whose creation failed.
    fn remove_new_logs(&mut self, logs: Vec<Log>) {
        for log in logs {
            let dir = log.dir().to_string();
            if let Err(error) = log.delete() {
                self.faults.push(StorageFault::new(
                    StorageOp::Delete,
                    dir,
                    &error,
                    "the directory of a partition that was never created stays; remove it before creating it again",
                ));
            }
        }
    }

    pub(super) fn create_topics(
        &mut self,
        now_ms: i64,
        api_version: i16,
        request: CreateTopicsRequest,
    ) -> CreateTopicsResponse {
        let mut response = CreateTopicsResponse::default();
        for wanted in request.topics {
            let name = wanted.name.0.to_string();
            let mut result = CreatableTopicResult::default().with_name(wanted.name.clone());
            let outcome = (|| -> Result<(i32, TopicConfig), AdminError> {
                validate_topic_name(&name).map_err(|e| (ErrorCode::InvalidTopicException, e))?;
                let pairs: Vec<(String, String)> = wanted
                    .configs
                    .iter()
                    .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                    .collect();
                let config = TopicConfig::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .map_err(|e| (ErrorCode::InvalidConfig, e.to_string()))?;
                let partitions = if !wanted.assignments.is_empty() {
                    if wanted.num_partitions != -1 || wanted.replication_factor != -1 {
                        return Err((
                            ErrorCode::InvalidRequest,
                            "give either assignments or partitions and replication factor".into(),
                        ));
                    }
                    for assignment in &wanted.assignments {
                        if assignment.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>() != vec![self.config.node_id] {
                            return Err((
                                ErrorCode::InvalidReplicaAssignment,
                                format!("this cluster has one broker, node {}", self.config.node_id),
                            ));
                        }
                    }
                    i32::try_from(wanted.assignments.len()).unwrap_or(i32::MAX)
                } else {
                    if wanted.replication_factor != -1 && wanted.replication_factor != 1 {
                        return Err((
                            ErrorCode::InvalidReplicationFactor,
                            format!(
                                "replication factor {} is larger than the 1 available broker",
                                wanted.replication_factor
                            ),
                        ));
                    }
                    if wanted.num_partitions == -1 {
                        self.config.default_partitions
                    } else {
                        wanted.num_partitions
                    }
                };
                if self.topics.contains_key(&name) {
                    return Err((ErrorCode::TopicAlreadyExists, format!("topic '{name}' already exists")));
                }
                if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
                    return Err((
                        ErrorCode::InvalidPartitions,
                        format!("partition count must be between 1 and {PARTITIONS_PER_TOPIC_MAX}"),
                    ));
                }
                Ok((partitions, config))
            })();
            let outcome = match outcome {
                Ok((partitions, config)) if request.validate_only => Ok((partitions, config, uuid::Uuid::nil())),
                Ok((partitions, config)) => {
                    self.create_topic(now_ms, &name, partitions, config.clone()).map(|id| (partitions, config, id))
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok((partitions, config, id)) => {
                    if api_version >= 5 {
                        result.num_partitions = partitions;
                        result.replication_factor = 1;
                        result.configs = Some(
                            self.topic_config_entries(&config, None)
                                .into_iter()
                                .map(|e| {
                                    CreatableTopicConfigs::default()
                                        .with_name(e.name)
                                        .with_value(e.value)
                                        .with_read_only(e.read_only)
                                        .with_config_source(e.config_source)
                                        .with_is_sensitive(false)
                                })
                                .collect(),
                        );
                    }
                    if api_version >= 7 {
                        result.topic_id = id;
                    }
                }
                Err((code, message)) => set_create_error(&mut result, api_version, code, message),
            }
            response.topics.push(result);
        }
        response
    }

    /// Deletes a topic: renames its directories to `*-delete` and makes the renames durable (so
    /// a crash midway cannot leave a half topic), persists the metadata without it, then
    /// removes the directories. If a rename, its sync or the metadata write fails, the renames
    /// are undone and the topic stays.
    pub(super) fn delete_topic(&mut self, name: &str) -> Result<uuid::Uuid, AdminError> {
        if Broker::is_internal(name) {
            return Err((
                ErrorCode::InvalidTopicException,
                format!("{name} is an internal topic and cannot be deleted"),
            ));
        }
        let topic = self
            .topics
            .remove(name)
            .ok_or((ErrorCode::UnknownTopicOrPartition, format!("topic '{name}' does not exist")))?;
        let id = topic.record.id;
        let mut renamed: Vec<(String, String)> = Vec::new();
        let mut failure = None;
        for &index in topic.partitions.keys() {
            let dir = partition_dir(name, index);
            let target = format!("{dir}.{}-delete", id.simple());
            match self.storage.rename(&dir, &target) {
                Ok(()) => renamed.push((dir, target)),
                Err(e) => {
                    failure = Some((StorageOp::Delete, dir, e));
                    break;
                }
            }
        }
        if failure.is_none() {
            if let Err(e) = self.storage.sync_dir("") {
                failure = Some((StorageOp::Delete, String::new(), e));
            }
        }
        if failure.is_none() {
            if let Err(e) = self.persist_metadata() {
                failure = Some((StorageOp::Metadata, crate::metadata::store::METADATA_PATH.to_string(), e));
            }
        }
        if let Some((op, path, error)) = failure {
            self.undo_renames(&renamed);
            self.topics.insert(name.to_string(), topic);
            self.persist_metadata_or_report();
            return Err(self.storage_failure(op, &path, &error));
        }
        self.topic_names_by_id.remove(&id);
        // Requests parked on the topic are answered (UNKNOWN_TOPIC_OR_PARTITION) before this
        // input ends.
        let mut topic = topic;
        for partition in topic.partitions.values_mut() {
            partition.waiters.take_all(&mut self.woken);
            if let Some(replica) = &partition.replica {
                self.close_replica(partition.id, replica.timer_ms);
            }
        }
        drop(topic);
        for (_, doomed) in renamed {
            if let Err(error) = self.storage.remove_dir_all(&doomed) {
                self.faults.push(StorageFault::new(
                    StorageOp::Delete,
                    doomed,
                    &error,
                    "the topic is deleted; its renamed directory is removed at the next start",
                ));
            }
        }
        Ok(id)
    }

    /// Puts directories renamed for a deletion that failed back where they were.
    fn undo_renames(&mut self, renamed: &[(String, String)]) {
        for (dir, target) in renamed {
            if let Err(error) = self.storage.rename(target, dir) {
                self.faults.push(StorageFault::new(
                    StorageOp::Delete,
                    target.clone(),
                    &error,
                    "a partition directory could not be put back after a failed topic deletion; \
                     the next start finishes deleting it",
                ));
            }
        }
    }

    /// After a failed deletion put the topic back: the metadata on disk may already lack it.
    fn persist_metadata_or_report(&mut self) {
        if let Err(error) = self.persist_metadata() {
            self.faults.push(StorageFault::new(
                StorageOp::Metadata,
                crate::metadata::store::METADATA_PATH,
                &error,
                "the metadata on disk may not list a topic whose deletion failed; it is written again at the next change",
            ));
        }
    }

    pub(super) fn delete_topics(&mut self, api_version: i16, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
        let mut response = DeleteTopicsResponse::default();
        let targets: Vec<(Option<String>, uuid::Uuid)> = if api_version >= 6 {
            request.topics.into_iter().map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)).collect()
        } else {
            request.topic_names.into_iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect()
        };
        for (name, id) in targets {
            let name = name.or_else(|| self.topic_name_by_id(id).map(str::to_string));
            let mut result = DeletableTopicResult::default();
            result.name = name.clone().map(|n| TopicName(str_bytes(n)));
            match name {
                None => result.error_code = ErrorCode::UnknownTopicId.code(),
                Some(name) => match self.delete_topic(&name) {
                    Ok(deleted_id) => {
                        if api_version >= 6 {
                            result.topic_id = deleted_id;
                        }
                    }
                    Err((code, message)) => {
                        result.error_code = code.code();
                        if api_version >= 5 {
                            result.error_message = Some(str_bytes(message));
                        }
                    }
                },
            }
            if api_version >= 6 && result.topic_id.is_nil() {
                result.topic_id = id;
            }
            response.responses.push(result);
        }
        response
    }

    pub(super) fn create_partitions(
        &mut self,
        now_ms: i64,
        request: CreatePartitionsRequest,
    ) -> CreatePartitionsResponse {
        let mut response = CreatePartitionsResponse::default();
        for wanted in request.topics {
            let name = wanted.name.0.to_string();
            let mut result = CreatePartitionsTopicResult::default().with_name(wanted.name.clone());
            let outcome = self.add_partitions(now_ms, &name, wanted.count, request.validate_only);
            if let Err((code, message)) = outcome {
                result.error_code = code.code();
                result.error_message = Some(str_bytes(message));
            }
            response.results.push(result);
        }
        response
    }

    fn add_partitions(&mut self, now_ms: i64, name: &str, count: i32, validate_only: bool) -> Result<(), AdminError> {
        if self.is_cluster() {
            return Err((ErrorCode::InvalidRequest, "adding partitions in a cluster is not supported yet".into()));
        }
        let defaults = self.config.topic_defaults.clone();
        let topic = self
            .topics
            .get_mut(name)
            .ok_or((ErrorCode::UnknownTopicOrPartition, format!("topic '{name}' does not exist")))?;
        let current = topic.record.partitions;
        if count <= current {
            return Err((
                ErrorCode::InvalidPartitions,
                format!("topic '{name}' has {current} partitions; the new count must be larger"),
            ));
        }
        if count > PARTITIONS_PER_TOPIC_MAX {
            return Err((ErrorCode::InvalidPartitions, format!("at most {PARTITIONS_PER_TOPIC_MAX} partitions")));
        }
        if validate_only {
            return Ok(());
        }
        let log_config = topic.config.log_config(&defaults);
        let mut logs = Vec::new();
        for index in current..count {
            let dir = partition_dir(name, index);
            match Log::create(self.storage.clone(), &dir, log_config.clone(), now_ms) {
                Ok(log) => logs.push(log),
                Err(e) => {
                    let error = self.storage_failure(StorageOp::CreateTopic, &dir, &e);
                    self.remove_new_logs(logs);
                    return Err(error);
                }
            }
        }
        let topic = self.topics.get_mut(name).expect("looked up above");
        let topic_id = topic.record.id;
        topic.partitions.extend(logs.into_iter().zip(current..).map(|(log, index)| {
            (index, Partition::new(PartitionId::new(topic_id, index), log, ProducerTable::default()))
        }));
        topic.record.partitions = count;
        self.unsynced.extend((current..count).map(|index| PartitionId::new(topic_id, index)));
        if let Err(error) = self.persist_new_partitions() {
            let topic = self.topics.get_mut(name).expect("looked up above");
            let added = topic.partitions.split_off(&current);
            topic.record.partitions = current;
            self.remove_new_logs(added.into_values().map(|p| p.log).collect());
            return Err(error);
        }
        Ok(())
    }

    /// Every known topic config with its value in force, for DescribeConfigs and CreateTopics.
    fn topic_config_entries(
        &self,
        config: &TopicConfig,
        only: Option<&[String]>,
    ) -> Vec<DescribeConfigsResourceResult> {
        TOPIC_CONFIGS
            .iter()
            .filter(|def| only.is_none_or(|keys| keys.iter().any(|k| k == def.name)))
            .map(|def| {
                let (value, source) = match (config.overrides.get(def.name), self.config.topic_defaults.get(def.name)) {
                    (Some(v), _) => (v.clone(), SOURCE_DYNAMIC_TOPIC),
                    (None, Some(v)) => (v.clone(), SOURCE_STATIC_BROKER),
                    (None, None) => (def.default.to_string(), SOURCE_DEFAULT),
                };
                DescribeConfigsResourceResult::default()
                    .with_name(str_bytes(def.name))
                    .with_value(Some(str_bytes(value)))
                    .with_read_only(false)
                    .with_config_source(source)
                    .with_config_type(def.kind.code())
                    .with_documentation(Some(str_bytes(def.doc)))
            })
            .collect()
    }

    pub(super) fn describe_configs(
        &self,
        api_version: i16,
        request: DescribeConfigsRequest,
    ) -> DescribeConfigsResponse {
        let mut response = DescribeConfigsResponse::default();
        for resource in request.resources {
            let mut result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let keys: Option<Vec<String>> =
                resource.configuration_keys.map(|keys| keys.iter().map(|k| k.to_string()).collect());
            match resource.resource_type {
                RESOURCE_TOPIC => match self.topic(&resource.resource_name) {
                    None => {
                        result.error_code = ErrorCode::UnknownTopicOrPartition.code();
                        result.error_message =
                            Some(str_bytes(format!("topic '{}' does not exist", &*resource.resource_name)));
                    }
                    Some(topic) => {
                        result.configs = self.topic_config_entries(&topic.config, keys.as_deref());
                        for entry in &mut result.configs {
                            if request.include_synonyms {
                                let source = entry.config_source;
                                entry.synonyms = vec![DescribeConfigsSynonym::default()
                                    .with_name(entry.name.clone())
                                    .with_value(entry.value.clone())
                                    .with_source(source)];
                            }
                            if api_version < 3 {
                                entry.config_type = 0;
                                entry.documentation = None;
                            } else if !request.include_documentation {
                                entry.documentation = None;
                            }
                        }
                    }
                },
                RESOURCE_BROKER => {
                    result.configs = self.broker_config_entries(keys.as_deref());
                    for entry in &mut result.configs {
                        if api_version < 3 {
                            entry.config_type = 0;
                            entry.documentation = None;
                        }
                    }
                }
                other => {
                    result.error_code = ErrorCode::InvalidRequest.code();
                    result.error_message = Some(str_bytes(format!("resource type {other} is not supported")));
                }
            }
            response.results.push(result);
        }
        response
    }

    /// Broker configs are static (file, flags, environment): listed read-only.
    fn broker_config_entries(&self, only: Option<&[String]>) -> Vec<DescribeConfigsResourceResult> {
        let mut entries: BTreeMap<String, String> = BTreeMap::new();
        entries.insert("broker.id".into(), self.config.node_id.to_string());
        entries.insert("node.id".into(), self.config.node_id.to_string());
        entries.insert("auto.create.topics.enable".into(), self.config.auto_create_topics.to_string());
        entries.insert("num.partitions".into(), self.config.default_partitions.to_string());
        entries.insert("default.replication.factor".into(), "1".into());
        for (key, value) in &self.config.topic_defaults {
            entries.insert(broker_key_for_topic_key(key), value.clone());
        }
        entries
            .into_iter()
            .filter(|(k, _)| only.is_none_or(|keys| keys.iter().any(|x| x == k)))
            .map(|(name, value)| {
                DescribeConfigsResourceResult::default()
                    .with_name(str_bytes(name))
                    .with_value(Some(str_bytes(value)))
                    .with_read_only(true)
                    .with_config_source(SOURCE_STATIC_BROKER)
                    .with_config_type(config::ConfigType::String.code())
            })
            .collect()
    }

    /// Replaces a topic's overrides and applies the new log settings at once.
    fn set_topic_config(&mut self, name: &str, config: TopicConfig) -> Result<(), AdminError> {
        let defaults = self.config.topic_defaults.clone();
        let topic = self
            .topics
            .get_mut(name)
            .ok_or((ErrorCode::UnknownTopicOrPartition, format!("topic '{name}' does not exist")))?;
        let previous = std::mem::replace(&mut topic.config, config);
        topic.record.configs = topic.config.overrides.clone();
        if let Err(e) = self.persist_metadata() {
            let topic = self.topics.get_mut(name).expect("topic exists: looked up above");
            topic.record.configs = previous.overrides.clone();
            topic.config = previous;
            return Err((ErrorCode::KafkaStorageError, e.to_string()));
        }
        let topic = self.topics.get_mut(name).expect("topic exists: looked up above");
        let log_config = topic.config.log_config(&defaults);
        for partition in topic.partitions.values_mut() {
            partition.log.set_config(log_config.clone());
        }
        Ok(())
    }

    /// A topic's overrides after `change`, validated. In a cluster a topic's overrides here are
    /// the image's, which the controller then replaces with these.
    fn altered_overrides(
        &self,
        name: &str,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), AdminError>,
    ) -> Result<TopicConfig, AdminError> {
        let topic =
            self.topic(name).ok_or((ErrorCode::UnknownTopicOrPartition, format!("topic '{name}' does not exist")))?;
        let mut overrides = topic.config.overrides.clone();
        change(&mut overrides)?;
        TopicConfig::from_pairs(overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| (ErrorCode::InvalidConfig, e.to_string()))
    }

    /// AlterConfigs and IncrementalAlterConfigs in a cluster (on the controller, where brokers
    /// forward them): each topic's new overrides are worked out from the applied image (as on
    /// one node) and decided by the controller against its latest state; the response leaves
    /// once every one is decided. AlterConfigs replaces the whole set (of two at once, the
    /// later wins, as in Kafka); IncrementalAlterConfigs changes only the keys it changed.
    pub(super) fn cluster_alter_configs(
        &mut self,
        now_ms: i64,
        id: RequestId,
        api_version: i16,
        request: RequestKind,
    ) -> Option<ResponseBody> {
        let mut apply = ConfigApply::Controller(Vec::new());
        let response = match request {
            RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(self.alter_configs(r, &mut apply)),
            RequestKind::IncrementalAlterConfigs(r) => {
                ResponseKind::IncrementalAlterConfigs(self.incremental_alter_configs(r, &mut apply))
            }
            _ => unreachable!("only config alterations come here"),
        };
        let ConfigApply::Controller(decisions) = apply else { unreachable!("set above") };
        self.decide_admin(now_ms, id, api_version, response, decisions)
    }

    /// Puts a topic's new overrides (resource `position` of the request) in force, or, in a
    /// cluster, asks the controller to: to replace them all (`replace`, AlterConfigs), or to
    /// change only the keys whose value differs from what this node applied
    /// (IncrementalAlterConfigs), so a change decided meanwhile to another key stays.
    fn put_in_force(
        &mut self,
        apply: &mut ConfigApply,
        position: usize,
        name: &str,
        validate_only: bool,
        config: TopicConfig,
        replace: bool,
    ) -> Result<(), AdminError> {
        match apply {
            ConfigApply::Controller(_) if Broker::is_internal(name) => {
                Err((ErrorCode::InvalidRequest, "internal topics keep their configs".into()))
            }
            _ if validate_only => Ok(()),
            ConfigApply::Here => self.set_topic_config(name, config),
            ConfigApply::Controller(decisions) if replace => {
                let configs = config.overrides;
                decisions.push((position, Decision::SetTopicConfigs { name: name.to_string(), configs }));
                Ok(())
            }
            ConfigApply::Controller(decisions) => {
                let before = self.topic(name).map(|t| t.config.overrides.clone()).unwrap_or_default();
                let after = config.overrides;
                let mut changes: BTreeMap<String, Option<String>> =
                    before.keys().filter(|k| !after.contains_key(*k)).map(|k| (k.clone(), None)).collect();
                changes.extend(after.into_iter().filter(|(k, v)| before.get(k) != Some(v)).map(|(k, v)| (k, Some(v))));
                decisions.push((position, Decision::ChangeTopicConfigs { name: name.to_string(), changes }));
                Ok(())
            }
        }
    }

    pub(super) fn alter_configs(
        &mut self,
        request: AlterConfigsRequest,
        apply: &mut ConfigApply,
    ) -> AlterConfigsResponse {
        let mut response = AlterConfigsResponse::default();
        for (position, resource) in request.resources.into_iter().enumerate() {
            let mut result = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let outcome = match resource.resource_type {
                RESOURCE_TOPIC => {
                    let pairs: BTreeMap<String, String> = resource
                        .configs
                        .iter()
                        .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                        .collect();
                    // AlterConfigs replaces the whole set of overrides.
                    self.altered_overrides(&resource.resource_name, |overrides| {
                        *overrides = pairs;
                        Ok(())
                    })
                    .and_then(|config| {
                        let name = &resource.resource_name;
                        self.put_in_force(apply, position, name, request.validate_only, config, true)
                    })
                }
                _ => Err(static_broker_configs_error()),
            };
            if let Err((code, message)) = outcome {
                result.error_code = code.code();
                result.error_message = Some(str_bytes(message));
            }
            response.responses.push(result);
        }
        response
    }

    pub(super) fn incremental_alter_configs(
        &mut self,
        request: IncrementalAlterConfigsRequest,
        apply: &mut ConfigApply,
    ) -> IncrementalAlterConfigsResponse {
        let mut response = IncrementalAlterConfigsResponse::default();
        for (position, resource) in request.resources.into_iter().enumerate() {
            let mut result = IncrementalResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let outcome = match resource.resource_type {
                RESOURCE_TOPIC => {
                    let ops: Vec<(String, i8, Option<String>)> = resource
                        .configs
                        .iter()
                        .map(|c| (c.name.to_string(), c.config_operation, c.value.as_ref().map(|v| v.to_string())))
                        .collect();
                    self.altered_overrides(&resource.resource_name, |overrides| apply_incremental(overrides, ops))
                        .and_then(|config| {
                            let name = &resource.resource_name;
                            self.put_in_force(apply, position, name, request.validate_only, config, false)
                        })
                }
                _ => Err(static_broker_configs_error()),
            };
            if let Err((code, message)) = outcome {
                result.error_code = code.code();
                result.error_message = Some(str_bytes(message));
            }
            response.responses.push(result);
        }
        response
    }
}

/// Where a topic's changed configs are put in force: here (one node), or by the controller
/// (a cluster), with the decisions to ask it for each resource of the request.
pub(super) enum ConfigApply {
    Here,
    Controller(Vec<(usize, Decision)>),
}

fn static_broker_configs_error() -> AdminError {
    (
        ErrorCode::InvalidRequest,
        "only topic configs can be altered; broker configs are set in the config file, flags or environment".into(),
    )
}

fn apply_incremental(
    overrides: &mut BTreeMap<String, String>,
    ops: Vec<(String, i8, Option<String>)>,
) -> Result<(), AdminError> {
    for (key, op, value) in ops {
        let def =
            config::definition(&key).ok_or((ErrorCode::InvalidConfig, format!("unknown topic config name {key}")))?;
        match op {
            OP_SET => {
                let value = value.ok_or((ErrorCode::InvalidConfig, format!("{key}: SET needs a value")))?;
                overrides.insert(key, value);
            }
            OP_DELETE => {
                overrides.remove(&key);
            }
            OP_APPEND | OP_SUBTRACT => {
                if def.kind != config::ConfigType::List {
                    return Err((
                        ErrorCode::InvalidConfig,
                        format!("{key} is not a list; APPEND and SUBTRACT apply to lists"),
                    ));
                }
                let value = value.unwrap_or_default();
                let current = overrides.get(&key).cloned().unwrap_or_else(|| def.default.to_string());
                let mut items: Vec<String> = current.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
                for item in value.split(',').filter(|s| !s.is_empty()) {
                    if op == OP_APPEND {
                        if !items.iter().any(|x| x == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|x| x != item);
                    }
                }
                overrides.insert(key, items.join(","));
            }
            other => return Err((ErrorCode::InvalidRequest, format!("{key}: unknown config operation {other}"))),
        }
    }
    Ok(())
}

/// The broker-level name of a topic config's default (`retention.ms` -> `log.retention.ms`).
pub fn broker_key_for_topic_key(topic_key: &str) -> String {
    match topic_key {
        "max.message.bytes" => "message.max.bytes".to_string(),
        "segment.ms" => "log.roll.ms".to_string(),
        other => format!("log.{other}"),
    }
}
