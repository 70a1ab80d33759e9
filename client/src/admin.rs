//! The admin client: topics (create, delete, list, describe).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{CreateTopicsRequest, DeleteTopicsRequest, TopicName};
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

    fn timeout_ms(&self) -> i32 {
        self.cluster.config.request_timeout.as_millis().min(i32::MAX as u128) as i32
    }
}
