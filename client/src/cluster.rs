//! What the client knows of the cluster: brokers, topics (ids, partitions, leaders), group
//! coordinators, and one connection per broker address, reopened when it breaks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::conn::Connection;
use crate::error::{Error, ErrorKind, Result};

/// Settings every client (producer, consumer, admin) shares.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// host:port of one or more brokers to start from.
    pub bootstrap: Vec<String>,
    pub client_id: String,
    /// How long one request may wait for its response.
    pub request_timeout: Duration,
}

impl ClientConfig {
    pub fn new(bootstrap: &str) -> ClientConfig {
        ClientConfig {
            bootstrap: bootstrap.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
            client_id: "headwater".to_string(),
            request_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMeta {
    pub leader: i32,
    pub leader_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub internal: bool,
    pub partitions: Vec<PartitionMeta>,
}

#[derive(Default)]
struct State {
    brokers: BTreeMap<i32, String>,
    connections: BTreeMap<String, Arc<Connection>>,
    topics: BTreeMap<String, TopicMeta>,
    coordinators: BTreeMap<String, i32>,
    controller: Option<i32>,
}

pub(crate) struct Cluster {
    pub config: ClientConfig,
    state: Mutex<State>,
}

impl Cluster {
    pub fn new(config: ClientConfig) -> Result<Arc<Cluster>> {
        if config.bootstrap.is_empty() {
            return Err(Error::config("bootstrap lists no broker (expected host:port)"));
        }
        Ok(Arc::new(Cluster { config, state: Mutex::new(State::default()) }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("cluster state lock")
    }

    /// The connection to `addr`, opened if needed.
    pub async fn connection(&self, addr: &str) -> Result<Arc<Connection>> {
        if let Some(existing) = self.state().connections.get(addr).filter(|c| !c.is_broken()) {
            return Ok(existing.clone());
        }
        let connection = Connection::connect(addr, &self.config.client_id, self.config.request_timeout).await?;
        self.state().connections.insert(addr.to_string(), connection.clone());
        Ok(connection)
    }

    /// A connection to any broker: known brokers first, then the bootstrap list.
    pub async fn any(&self) -> Result<Arc<Connection>> {
        let mut candidates: Vec<String> = self.state().brokers.values().cloned().collect();
        candidates.extend(self.config.bootstrap.iter().cloned());
        let mut last = Error::new(ErrorKind::Connection, "no broker to connect to");
        for addr in candidates {
            match self.connection(&addr).await {
                Ok(connection) => return Ok(connection),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The connection to broker `id`.
    pub async fn broker(&self, id: i32) -> Result<Arc<Connection>> {
        let addr = self.state().brokers.get(&id).cloned();
        match addr {
            Some(addr) => self.connection(&addr).await,
            None => {
                self.refresh(None, false).await?;
                let addr = self.state().brokers.get(&id).cloned();
                let addr = addr.ok_or_else(|| Error::new(ErrorKind::Connection, format!("broker {id} is unknown")))?;
                self.connection(&addr).await
            }
        }
    }

    /// The controller, for admin requests.
    pub async fn controller(&self) -> Result<Arc<Connection>> {
        let controller = self.state().controller;
        match controller {
            Some(id) if id >= 0 => self.broker(id).await,
            _ => self.any().await,
        }
    }

    /// Reloads metadata for `topics` (all topics when `None`).
    pub async fn refresh(&self, topics: Option<&[String]>, allow_auto_create: bool) -> Result<()> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| {
                        MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(allow_auto_create);
        let connection = self.any().await?;
        let (_, response) = connection.call(&request).await?;
        let mut state = self.state();
        for broker in &response.brokers {
            state.brokers.insert(broker.node_id.0, format!("{}:{}", broker.host.as_str(), broker.port));
        }
        if response.controller_id.0 >= 0 {
            state.controller = Some(response.controller_id.0);
        }
        if topics.is_none() {
            // A full listing: topics it does not name are gone.
            state.topics.clear();
        }
        for topic in response.topics {
            let Some(name) = topic.name.map(|n| n.0.to_string()) else { continue };
            if topic.error_code != 0 {
                state.topics.remove(&name);
                continue;
            }
            let mut partitions: Vec<(i32, PartitionMeta)> = topic
                .partitions
                .iter()
                .map(|p| (p.partition_index, PartitionMeta { leader: p.leader_id.0, leader_epoch: p.leader_epoch }))
                .collect();
            partitions.sort_by_key(|(index, _)| *index);
            state.topics.insert(
                name.clone(),
                TopicMeta {
                    name,
                    id: topic.topic_id,
                    internal: topic.is_internal,
                    partitions: partitions.into_iter().map(|(_, p)| p).collect(),
                },
            );
        }
        Ok(())
    }

    /// Every broker the last metadata named.
    pub fn broker_ids(&self) -> Vec<i32> {
        self.state().brokers.keys().copied().collect()
    }

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.state().topics.get(name).cloned()
    }

    pub fn topics(&self) -> Vec<TopicMeta> {
        self.state().topics.values().cloned().collect()
    }

    pub fn topic_name(&self, id: Uuid) -> Option<String> {
        self.state().topics.values().find(|t| t.id == id).map(|t| t.name.clone())
    }

    /// The topic's metadata, loading it if unknown. Errors if the topic does not exist.
    pub async fn topic_or_load(&self, name: &str, allow_auto_create: bool) -> Result<TopicMeta> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        self.refresh(Some(&[name.to_string()]), allow_auto_create).await?;
        self.topic(name).ok_or_else(|| Error::from_code(3, format!("topic {name}")).expect("nonzero code"))
    }

    /// The leader's connection for a partition.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<Arc<Connection>> {
        let meta = self.topic_or_load(topic, false).await?;
        let leader = meta
            .partitions
            .get(usize::try_from(partition).unwrap_or(usize::MAX))
            .map(|p| p.leader)
            .ok_or_else(|| Error::from_code(3, format!("{topic}-{partition}")).expect("nonzero code"))?;
        if leader < 0 {
            return Err(Error::from_code(5, format!("{topic}-{partition}")).expect("nonzero code"));
        }
        self.broker(leader).await
    }

    /// The group coordinator's connection for `group`.
    pub async fn coordinator(&self, group: &str) -> Result<Arc<Connection>> {
        let known = self.state().coordinators.get(group).copied();
        if let Some(id) = known {
            return self.broker(id).await;
        }
        let connection = self.any().await?;
        let version = connection.version_for::<FindCoordinatorRequest>()?;
        let mut request = FindCoordinatorRequest::default().with_key_type(0);
        if version >= 4 {
            request.coordinator_keys = vec![StrBytes::from_string(group.to_string())];
        } else {
            request.key = StrBytes::from_string(group.to_string());
        }
        let (_, response) = connection.call(&request).await?;
        let (code, node, host, port) = match response.coordinators.first() {
            Some(c) => (c.error_code, c.node_id.0, c.host.to_string(), c.port),
            None => (response.error_code, response.node_id.0, response.host.to_string(), response.port),
        };
        if let Some(e) = Error::from_code(code, format!("FindCoordinator for group {group}")) {
            return Err(e);
        }
        {
            let mut state = self.state();
            state.brokers.insert(node, format!("{host}:{port}"));
            state.coordinators.insert(group.to_string(), node);
        }
        self.broker(node).await
    }

    /// Forgets `group`'s coordinator (after NOT_COORDINATOR or a broken connection).
    pub fn forget_coordinator(&self, group: &str) {
        self.state().coordinators.remove(group);
    }
}
