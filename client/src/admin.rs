//! The admin client: topics (create, delete, list, describe), topic configs, and groups
//! (list, describe over both group protocols, delete, committed offsets).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, GroupId, IncrementalAlterConfigsRequest, ListGroupsRequest,
    OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::{ClientConfig, Cluster};
use crate::error::{Error, Result};

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Topic configs by Kafka name (`retention.ms`, `cleanup.policy`, ...).
    pub config: BTreeMap<String, String>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>, partitions: i32) -> NewTopic {
        NewTopic { name: name.into(), partitions, replication_factor: 1, config: BTreeMap::new() }
    }
}

/// A topic as metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub id: uuid::Uuid,
    pub partitions: i32,
    pub internal: bool,
}

/// A group as ListGroups lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    /// "Stable", "Empty", ...
    pub state: String,
    /// "consumer" (KIP-848) or "classic".
    pub group_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    pub assignment: Vec<(String, i32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    /// "consumer" or "classic".
    pub group_type: String,
    /// The server assignor (consumer) or the chosen client protocol (classic).
    pub assignor: String,
    pub members: Vec<GroupMember>,
}

/// Topic config resource type in DescribeConfigs / IncrementalAlterConfigs.
const RESOURCE_TOPIC: i8 = 2;

pub struct Admin {
    cluster: Arc<Cluster>,
}

impl Admin {
    pub fn new(config: ClientConfig) -> Result<Admin> {
        Ok(Admin { cluster: Cluster::new(config)? })
    }

    /// Creates `topic`; errors (TOPIC_ALREADY_EXISTS, INVALID_CONFIG, ...) name the topic.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<()> {
        let request = CreateTopicsRequest::default().with_timeout_ms(self.timeout_ms()).with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(s(&topic.name)))
                .with_num_partitions(topic.partitions)
                .with_replication_factor(topic.replication_factor)
                .with_configs(
                    topic
                        .config
                        .iter()
                        .map(|(k, v)| CreatableTopicConfig::default().with_name(s(k)).with_value(Some(s(v))))
                        .collect(),
                ),
        ]);
        let connection = self.cluster.controller().await?;
        let (_, response) = connection.call(&request).await?;
        let result = response.topics.first().ok_or_else(|| Error::config("CreateTopics answered nothing"))?;
        match Error::from_code(result.error_code, format!("creating topic {}", topic.name)) {
            Some(mut e) => {
                if let Some(message) = result.error_message.as_ref().filter(|m| !m.is_empty()) {
                    e.message = format!("{}: {message}", e.message);
                }
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Deletes `name`.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let connection = self.cluster.controller().await?;
        let version = connection.version_for::<DeleteTopicsRequest>()?;
        let mut request = DeleteTopicsRequest::default().with_timeout_ms(self.timeout_ms());
        if version >= 6 {
            request.topics = vec![DeleteTopicState::default().with_name(Some(TopicName(s(name))))];
        } else {
            request.topic_names = vec![TopicName(s(name))];
        }
        let (_, response) = connection.call(&request).await?;
        let code = response.responses.first().map_or(0, |r| r.error_code);
        Error::from_code(code, format!("deleting topic {name}")).map_or(Ok(()), Err)
    }

    /// Every topic's name, internal topics excluded.
    pub async fn list_topics(&self) -> Result<Vec<String>> {
        self.cluster.refresh(None, false).await?;
        Ok(self.cluster.topics().into_iter().filter(|t| !t.internal).map(|t| t.name).collect())
    }

    /// One topic's id and partition count.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        self.cluster.refresh(Some(&[name.to_string()]), false).await?;
        let topic =
            self.cluster.topic(name).ok_or_else(|| Error::from_code(3, format!("topic {name}")).expect("code"))?;
        Ok(TopicDescription {
            name: topic.name,
            id: topic.id,
            partitions: topic.partitions.len() as i32,
            internal: topic.internal,
        })
    }

    /// Topic configs that differ from nothing: every config the broker reports, by name.
    pub async fn describe_topic_config(&self, topic: &str) -> Result<BTreeMap<String, String>> {
        let request = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(s(topic))
            .with_configuration_keys(None)]);
        let (_, response) = self.cluster.controller().await?.call(&request).await?;
        let result = response.results.first().ok_or_else(|| Error::config("DescribeConfigs answered nothing"))?;
        if let Some(e) = Error::from_code(result.error_code, format!("describing topic {topic}'s config")) {
            return Err(e);
        }
        Ok(result
            .configs
            .iter()
            .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
            .collect())
    }

    /// Sets (or with `None` deletes, back to the default) topic configs.
    pub async fn alter_topic_config(&self, topic: &str, changes: &BTreeMap<String, Option<String>>) -> Result<()> {
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(s(topic))
            .with_configs(
                changes
                    .iter()
                    .map(|(name, value)| {
                        AlterableConfig::default()
                            .with_name(s(name))
                            .with_config_operation(if value.is_some() { 0 } else { 1 })
                            .with_value(value.as_deref().map(s))
                    })
                    .collect(),
            )]);
        let (_, response) = self.cluster.controller().await?.call(&request).await?;
        let code = response.responses.first().map_or(0, |r| r.error_code);
        Error::from_code(code, format!("altering topic {topic}'s config")).map_or(Ok(()), Err)
    }

    /// Every group on every broker.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        self.cluster.refresh(Some(&[]), false).await?;
        let mut out = Vec::new();
        for id in self.cluster.broker_ids() {
            let (version, response) = self.cluster.broker(id).await?.call(&ListGroupsRequest::default()).await?;
            if let Some(e) = Error::from_code(response.error_code, "listing groups") {
                return Err(e);
            }
            out.extend(response.groups.into_iter().map(|g| GroupListing {
                group_id: g.group_id.0.to_string(),
                state: g.group_state.to_string(),
                group_type: if version >= 5 { g.group_type.to_string() } else { "classic".to_string() },
            }));
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(out)
    }

    /// One group's state and members: ConsumerGroupDescribe for consumer-protocol groups, and
    /// DescribeGroups for the others (as Kafka's admin clients do).
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let connection = self.cluster.coordinator(group).await?;
        if connection.version_for::<ConsumerGroupDescribeRequest>().is_ok() {
            let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]);
            let (_, response) = connection.call(&request).await?;
            if let Some(g) = response.groups.into_iter().next().filter(|g| g.error_code != 69) {
                if let Some(e) = Error::from_code(g.error_code, format!("describing group {group}")) {
                    return Err(e);
                }
                let members = g
                    .members
                    .into_iter()
                    .map(|m| GroupMember {
                        member_id: m.member_id.to_string(),
                        instance_id: m.instance_id.map(|i| i.to_string()),
                        client_id: m.client_id.to_string(),
                        host: m.client_host.to_string(),
                        assignment: m
                            .assignment
                            .topic_partitions
                            .iter()
                            .flat_map(|t| t.partitions.iter().map(|p| (t.topic_name.0.to_string(), *p)))
                            .collect(),
                    })
                    .collect();
                return Ok(GroupDescription {
                    group_id: group.to_string(),
                    state: g.group_state.to_string(),
                    group_type: "consumer".to_string(),
                    assignor: g.assignor_name.to_string(),
                    members,
                });
            }
        }
        let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
        let (_, response) = connection.call(&request).await?;
        let g = response.groups.into_iter().next().ok_or_else(|| Error::config("DescribeGroups answered nothing"))?;
        if let Some(e) = Error::from_code(g.error_code, format!("describing group {group}")) {
            return Err(e);
        }
        Ok(GroupDescription {
            group_id: group.to_string(),
            state: g.group_state.to_string(),
            group_type: "classic".to_string(),
            assignor: g.protocol_data.to_string(),
            members: g
                .members
                .into_iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    instance_id: m.group_instance_id.map(|i| i.to_string()),
                    client_id: m.client_id.to_string(),
                    host: m.client_host.to_string(),
                    assignment: classic_assignment(&m.member_assignment),
                })
                .collect(),
        })
    }

    /// Deletes a group without members, with its committed offsets.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
        let (_, response) = self.cluster.coordinator(group).await?.call(&request).await?;
        let code = response.results.first().map_or(0, |r| r.error_code);
        Error::from_code(code, format!("deleting group {group}")).map_or(Ok(()), Err)
    }

    /// Every committed offset of `group`.
    pub async fn group_offsets(&self, group: &str) -> Result<BTreeMap<(String, i32), i64>> {
        let request = OffsetFetchRequest::default().with_group_id(GroupId(s(group))).with_topics(None);
        let (_, response) = self.cluster.coordinator(group).await?.call(&request).await?;
        if let Some(e) = Error::from_code(response.error_code, format!("reading group {group}'s offsets")) {
            return Err(e);
        }
        Ok(response
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter(|p| p.committed_offset >= 0)
                    .map(move |p| ((t.name.0.to_string(), p.partition_index), p.committed_offset))
            })
            .collect())
    }

    fn timeout_ms(&self) -> i32 {
        self.cluster.config.request_timeout.as_millis().min(i32::MAX as u128) as i32
    }
}

/// The partitions in a classic consumer's assignment (ConsumerProtocolAssignment: version i16,
/// then [topic string, [partition i32]], then user data). Empty if it does not parse.
fn classic_assignment(bytes: &[u8]) -> Vec<(String, i32)> {
    fn parse(mut b: &[u8]) -> Option<Vec<(String, i32)>> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, tail) = (b.get(..n)?, b.get(n..)?);
            *b = tail;
            Some(head)
        }
        let i16_of = |b: &mut &[u8]| take(b, 2).map(|x| i16::from_be_bytes([x[0], x[1]]));
        let i32_of = |b: &mut &[u8]| take(b, 4).map(|x| i32::from_be_bytes([x[0], x[1], x[2], x[3]]));
        i16_of(&mut b)?;
        let topics = usize::try_from(i32_of(&mut b)?).ok()?;
        let mut out = Vec::new();
        for _ in 0..topics {
            let length = usize::try_from(i16_of(&mut b)?).ok()?;
            let name = String::from_utf8(take(&mut b, length)?.to_vec()).ok()?;
            let count = usize::try_from(i32_of(&mut b)?).ok()?;
            for _ in 0..count {
                out.push((name.clone(), i32_of(&mut b)?));
            }
        }
        Some(out)
    }
    parse(bytes).unwrap_or_default()
}
