//! Server configuration: built-in defaults, then a TOML file (`--config`), then `HEADWATER_*`
//! environment variables, then command-line flags, each overriding the one before. The same
//! keys everywhere: `data_dir` in the file is `HEADWATER_DATA_DIR` in the environment and
//! `--data-dir` on the command line. A bad value or an unknown key stops start-up with a
//! message that names the key and where it came from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use headwater_core::constants::{MESSAGE_BYTES_MAX_DEFAULT, REQUEST_BYTES_MAX_DEFAULT};

/// Every key, its default, and what it means (printed by `headwater help`).
pub const KEYS: &[(&str, &str, &str)] = &[
    ("listen", "127.0.0.1:9092", "address to accept Kafka clients on"),
    ("advertise", "", "host:port clients are told to connect to (default: the listen address)"),
    ("data_dir", "./data", "directory holding the logs and metadata"),
    ("node_id", "1", "this broker's id (node.id)"),
    (
        "cluster_nodes",
        "",
        "every node of the cluster as ID@HOST:PORT,... with each node's advertised Kafka address; \
         empty (or this node alone): a single node",
    ),
    (
        "cluster_id",
        "",
        "the cluster's id, the same on every node (1 to 64 of A-Z a-z 0-9 - _); required when cluster_nodes \
         lists several nodes; empty: a new data_dir picks one",
    ),
    ("rack", "", "this broker's rack, for placing a partition's replicas in different racks (broker.rack)"),
    (
        "replica_selector",
        "rack",
        "where consumers read: rack (a consumer that sets client.rack reads from an in-sync replica in its \
         rack, KIP-392) or leader (replica.selector.class)",
    ),
    ("log_level", "info", "error, warn, info, debug or trace"),
    ("auto_create_topics", "true", "create a topic when a client asks for its metadata (auto.create.topics.enable)"),
    ("num_partitions", "1", "partitions of auto-created topics (num.partitions)"),
    (
        "default_replication_factor",
        "1",
        "replicas of auto-created topics and of topics created with replication factor -1, in a cluster \
         (default.replication.factor)",
    ),
    ("socket_request_max_bytes", "104857600", "largest request frame accepted (socket.request.max.bytes)"),
    ("message_max_bytes", "1048588", "default largest record batch (message.max.bytes)"),
    ("log_retention_ms", "604800000", "default retention.ms of topics"),
    ("log_retention_bytes", "-1", "default retention.bytes of topics"),
    ("log_segment_bytes", "1073741824", "default segment.bytes of topics"),
    ("log_roll_ms", "604800000", "default segment.ms of topics"),
    (
        "log_retention_check_interval_ms",
        "300000",
        "how often retention and segment.ms rolls run (log.retention.check.interval.ms)",
    ),
    ("connections_max", "20000", "most client connections at once"),
    (
        "queued_max_request_bytes",
        "268435456",
        "bytes of requests read and not yet answered, over all connections; when full, connections stop \
         reading until answers free room (queued.max.request.bytes); at least socket_request_max_bytes",
    ),
    (
        "connections_max_idle_ms",
        "600000",
        "a connection with no request in flight and nothing read or written for this long is closed \
         (connections.max.idle.ms)",
    ),
    (
        "group_initial_rebalance_delay_ms",
        "3000",
        "how long a new consumer group waits for more members (group.initial.rebalance.delay.ms)",
    ),
    (
        "group_min_session_timeout_ms",
        "6000",
        "smallest session timeout a consumer may ask for (group.min.session.timeout.ms)",
    ),
    (
        "group_max_session_timeout_ms",
        "1800000",
        "largest session timeout a consumer may ask for (group.max.session.timeout.ms)",
    ),
    (
        "group_consumer_session_timeout_ms",
        "45000",
        "consumer-protocol members that do not heartbeat for this long are removed (group.consumer.session.timeout.ms)",
    ),
    (
        "group_consumer_heartbeat_interval_ms",
        "5000",
        "how often consumer-protocol members heartbeat (group.consumer.heartbeat.interval.ms)",
    ),
    (
        "group_consumer_assignor",
        "uniform",
        "server-side assignor for consumer-protocol groups whose members name none: uniform or range",
    ),
    (
        "offsets_retention_minutes",
        "10080",
        "committed offsets of groups without members are deleted after this long (offsets.retention.minutes)",
    ),
    (
        "offsets_topic_num_partitions",
        "50",
        "partitions of __consumer_offsets in a cluster, made by the controller once enough brokers \
         are registered (offsets.topic.num.partitions); a group's coordinator is the leader of its partition",
    ),
    (
        "transaction_state_num_partitions",
        "50",
        "partitions of __transaction_state in a cluster, made at the first lookup of a transaction's \
         coordinator (transaction.state.log.num.partitions); a transactional id's coordinator is the \
         leader of its partition",
    ),
    (
        "metadata_snapshot_records",
        "20000",
        "in a cluster, each node snapshots its metadata image after this many new metadata-log entries, \
         and its log then starts at the snapshot",
    ),
    (
        "log_scrub_bytes_per_sec",
        "8388608",
        "in a cluster, how fast each broker reads its replicas back to check them by CRC-32C; a damaged \
         batch is cut and fetched again from the leader (0: no scrub; reads are always checked)",
    ),
    (
        "metadata_log_segment_bytes",
        "8388608",
        "segment size of the metadata log __cluster_metadata (metadata.log.segment.bytes); the log \
         start moves past a snapshot by whole segments",
    ),
];

/// One node of the cluster as `cluster_nodes` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: i32,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub advertise_host: String,
    pub advertise_port: u16,
    pub data_dir: PathBuf,
    pub node_id: i32,
    /// Every node of the cluster, this one included; empty for a cluster of one.
    pub cluster_nodes: Vec<ClusterNode>,
    /// The id every node of the cluster shares; a data directory of another cluster does not open.
    pub cluster_id: Option<String>,
    pub rack: Option<String>,
    /// KIP-392: consumers that name their rack read from an in-sync replica there.
    pub rack_aware_reads: bool,
    pub log_level: tracing::Level,
    pub auto_create_topics: bool,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub socket_request_max_bytes: usize,
    pub connections_max: usize,
    pub queued_max_request_bytes: usize,
    pub connections_max_idle_ms: u64,
    pub retention_check_interval_ms: i64,
    pub group: headwater_core::group::GroupConfig,
    pub consumer_group: headwater_core::group::ConsumerGroupConfig,
    pub offsets_retention_ms: i64,
    pub offsets_topic_partitions: i32,
    pub txn_topic_partitions: i32,
    pub metadata_snapshot_records: i64,
    pub metadata_log_segment_bytes: i64,
    pub scrub_bytes_per_sec: u64,
    /// Broker-wide topic config defaults, by topic config name.
    pub topic_defaults: BTreeMap<String, String>,
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone)]
struct Sourced {
    value: String,
    source: String,
}

/// A configuration error that names the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Collects raw values from the file, the environment and the flags.
#[derive(Debug, Default)]
pub struct RawConfig {
    values: BTreeMap<String, Sourced>,
}

impl RawConfig {
    fn set(&mut self, key: &str, value: String, source: String) -> Result<(), ConfigError> {
        if !KEYS.iter().any(|(k, _, _)| *k == key) {
            return Err(ConfigError(format!("unknown config key `{key}` ({source}); known keys: {}", key_list())));
        }
        self.values.insert(key.to_string(), Sourced { value, source });
        Ok(())
    }

    pub fn from_toml(&mut self, text: &str, path: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text.parse().map_err(|e| ConfigError(format!("config file {path}: {e}")))?;
        for (key, value) in table {
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(ConfigError(format!(
                        "config key `{key}` (file {path}): {other:?} is not a string, integer or boolean"
                    )))
                }
            };
            self.set(&key, value, format!("file {path}"))?;
        }
        Ok(())
    }

    /// Reads `HEADWATER_<KEY>` variables. Returns the names of `HEADWATER_*` variables that
    /// are not config keys (test harnesses set some); the caller logs them as a warning so a
    /// typo does not go unnoticed.
    pub fn from_env(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
        let mut ignored = Vec::new();
        for (name, value) in vars {
            let Some(key) = name.strip_prefix("HEADWATER_") else { continue };
            let key = key.to_ascii_lowercase();
            if KEYS.iter().any(|(k, _, _)| *k == key) {
                self.values.insert(key, Sourced { value, source: format!("environment variable {name}") });
            } else {
                ignored.push(name);
            }
        }
        ignored
    }

    pub fn set_flag(&mut self, flag: &str, value: String) -> Result<(), ConfigError> {
        let key = flag.trim_start_matches("--").replace('-', "_");
        self.set(&key, value, format!("flag {flag}"))
    }

    fn get<T>(&self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, ConfigError> {
        let default = KEYS.iter().find(|(k, _, _)| *k == key).map(|(_, d, _)| *d).expect("every key read is in KEYS");
        match self.values.get(key) {
            Some(s) => parse(s.value.trim())
                .map_err(|reason| ConfigError(format!("config key `{key}` ({}): {reason}", s.source))),
            None => Ok(parse(default).expect("defaults parse")),
        }
    }

    pub fn build(&self) -> Result<ServerConfig, ConfigError> {
        let listen: SocketAddr = self.get("listen", |v| {
            v.parse().map_err(|_| format!("{v:?} is not a host:port address like 127.0.0.1:9092"))
        })?;
        let advertise: String = self.get("advertise", |v| Ok(v.to_string()))?;
        let advertised = if advertise.is_empty() { None } else { Some(self.get("advertise", parse_host_port)?) };
        let positive = |v: &str| -> Result<i64, String> {
            let n: i64 = v.parse().map_err(|_| format!("{v:?} is not an integer"))?;
            if n < 1 {
                Err(format!("{n} must be at least 1"))
            } else {
                Ok(n)
            }
        };
        let long_min = |min: i64| {
            move |v: &str| -> Result<i64, String> {
                let n: i64 = v.parse().map_err(|_| format!("{v:?} is not an integer"))?;
                if n < min {
                    Err(format!("{n} must be at least {min}"))
                } else {
                    Ok(n)
                }
            }
        };
        let node_id = self.get("node_id", |v| {
            v.parse::<i32>().map_err(|_| format!("{v:?} is not a 32-bit integer")).and_then(|n| {
                if n < 0 {
                    Err("must not be negative".into())
                } else {
                    Ok(n)
                }
            })
        })?;
        let cluster_nodes = self.get("cluster_nodes", parse_cluster_nodes)?;
        let rack = self.get("rack", |v| Ok((!v.is_empty()).then(|| v.to_string())))?;
        let rack_aware_reads = self.get("replica_selector", |v| match v {
            "rack" => Ok(true),
            "leader" => Ok(false),
            _ => Err("must be rack or leader".into()),
        })?;
        let (advertise_host, advertise_port) = self.advertised_address(node_id, &cluster_nodes, advertised, listen)?;
        let cluster_id = self.get("cluster_id", parse_cluster_id)?;
        if cluster_id.is_none() && cluster_nodes.len() > 1 {
            return Err(ConfigError(format!(
                "config key `cluster_id` is not set, but config key `cluster_nodes` lists {} nodes: give every node \
                 the same cluster_id (any 1 to 64 of A-Z a-z 0-9 - _, such as the output of `uuidgen | tr -d -`)",
                cluster_nodes.len()
            )));
        }
        let log_level = self.get("log_level", |v| {
            v.parse::<tracing::Level>().map_err(|_| format!("{v:?} is not one of error, warn, info, debug, trace"))
        })?;
        let auto_create_topics = self.get("auto_create_topics", parse_bool)?;
        let num_partitions = self.get("num_partitions", |v| {
            positive(v).and_then(|n| i32::try_from(n).map_err(|_| "too large".to_string()))
        })?;
        let default_replication_factor = self.get("default_replication_factor", |v| {
            positive(v).and_then(|n| i16::try_from(n).map_err(|_| "too large".to_string()))
        })?;
        if usize::try_from(default_replication_factor).unwrap_or(0) > cluster_nodes.len().max(1) {
            return Err(ConfigError(format!(
                "config key `default_replication_factor` is {default_replication_factor}, more than the {} node(s) \
                 cluster_nodes lists",
                cluster_nodes.len().max(1)
            )));
        }
        let socket_request_max_bytes = self.get("socket_request_max_bytes", |v| positive(v).map(|n| n as usize))?;
        let connections_max = self.get("connections_max", |v| positive(v).map(|n| n as usize))?;
        let queued_max_request_bytes = self.get("queued_max_request_bytes", |v| {
            positive(v).and_then(|n| u32::try_from(n).map(|n| n as usize).map_err(|_| "at most 4294967295".to_string()))
        })?;
        if queued_max_request_bytes < socket_request_max_bytes {
            return Err(ConfigError(format!(
                "config key `queued_max_request_bytes` is {queued_max_request_bytes}, less than socket_request_max_bytes \
                 ({socket_request_max_bytes}): a request of the largest size could never be read"
            )));
        }
        let connections_max_idle_ms = self.get("connections_max_idle_ms", |v| positive(v).map(|n| n as u64))?;
        let retention_check_interval_ms = self.get("log_retention_check_interval_ms", positive)?;
        let int_at_least = |min: i64| {
            move |v: &str| -> Result<i32, String> {
                let n: i32 = v.parse().map_err(|_| format!("{v:?} is not a 32-bit integer"))?;
                if i64::from(n) < min {
                    Err(format!("{n} must be at least {min}"))
                } else {
                    Ok(n)
                }
            }
        };
        let group = headwater_core::group::GroupConfig {
            initial_rebalance_delay_ms: i64::from(self.get("group_initial_rebalance_delay_ms", int_at_least(0))?),
            session_timeout_min_ms: self.get("group_min_session_timeout_ms", int_at_least(1))?,
            session_timeout_max_ms: self.get("group_max_session_timeout_ms", int_at_least(1))?,
            ..headwater_core::group::GroupConfig::default()
        };
        if group.session_timeout_min_ms > group.session_timeout_max_ms {
            return Err(ConfigError(
                "config key `group_min_session_timeout_ms` is larger than `group_max_session_timeout_ms`".into(),
            ));
        }
        let consumer_group = headwater_core::group::ConsumerGroupConfig {
            session_timeout_ms: self.get("group_consumer_session_timeout_ms", int_at_least(1))?,
            heartbeat_interval_ms: self.get("group_consumer_heartbeat_interval_ms", int_at_least(1))?,
            default_assignor: self.get("group_consumer_assignor", |v| {
                if headwater_core::group::consumer::ASSIGNORS.contains(&v) {
                    Ok(v.to_string())
                } else {
                    Err(format!("{v:?} is not one of {:?}", headwater_core::group::consumer::ASSIGNORS))
                }
            })?,
            ..headwater_core::group::ConsumerGroupConfig::default()
        };
        if consumer_group.heartbeat_interval_ms >= consumer_group.session_timeout_ms {
            return Err(ConfigError(
                "config key `group_consumer_heartbeat_interval_ms` must be smaller than `group_consumer_session_timeout_ms`"
                    .into(),
            ));
        }
        let offsets_retention_ms = self.get("offsets_retention_minutes", positive)? * 60_000;
        let internal_partitions = |v: &str| {
            positive(v).and_then(|n| {
                i32::try_from(n)
                    .ok()
                    .filter(|&n| n <= headwater_core::constants::PARTITIONS_PER_TOPIC_MAX)
                    .ok_or_else(|| format!("at most {}", headwater_core::constants::PARTITIONS_PER_TOPIC_MAX))
            })
        };
        let offsets_topic_partitions = self.get("offsets_topic_num_partitions", internal_partitions)?;
        let txn_topic_partitions = self.get("transaction_state_num_partitions", internal_partitions)?;
        let metadata_snapshot_records = self.get("metadata_snapshot_records", positive)?;
        let scrub_bytes_per_sec =
            self.get("log_scrub_bytes_per_sec", |v| v.parse::<u64>().map_err(|e| format!("not a byte count: {e}")))?;
        let metadata_log_segment_bytes = self.get("metadata_log_segment_bytes", |v| {
            positive(v).and_then(|n| if n >= 1024 { Ok(n) } else { Err("at least 1024".into()) })
        })?;
        let data_dir =
            self.get(
                "data_dir",
                |v| if v.is_empty() { Err("must not be empty".into()) } else { Ok(PathBuf::from(v)) },
            )?;
        let mut topic_defaults = BTreeMap::new();
        for (key, topic_key, min) in [
            ("message_max_bytes", "max.message.bytes", 0),
            ("log_retention_ms", "retention.ms", -1),
            ("log_retention_bytes", "retention.bytes", -1),
            ("log_segment_bytes", "segment.bytes", 14),
            ("log_roll_ms", "segment.ms", 1),
        ] {
            if self.values.contains_key(key) {
                let value = self.get(key, long_min(min))?;
                headwater_core::metadata::config::validate(topic_key, &value.to_string())
                    .map_err(|e| ConfigError(format!("config key `{key}`: {}", e.reason)))?;
                topic_defaults.insert(topic_key.to_string(), value.to_string());
            }
        }
        debug_assert_eq!(REQUEST_BYTES_MAX_DEFAULT, 104_857_600);
        debug_assert_eq!(MESSAGE_BYTES_MAX_DEFAULT, 1_048_588);
        Ok(ServerConfig {
            listen,
            advertise_host,
            advertise_port,
            data_dir,
            node_id,
            cluster_nodes,
            cluster_id,
            rack,
            rack_aware_reads,
            log_level,
            auto_create_topics,
            num_partitions,
            default_replication_factor,
            socket_request_max_bytes,
            connections_max,
            queued_max_request_bytes,
            connections_max_idle_ms,
            retention_check_interval_ms,
            group,
            consumer_group,
            offsets_retention_ms,
            offsets_topic_partitions,
            txn_topic_partitions,
            metadata_snapshot_records,
            metadata_log_segment_bytes,
            scrub_bytes_per_sec,
            topic_defaults,
        })
    }
}

impl RawConfig {
    /// Where clients are told to connect: `advertise`, or this node's entry in
    /// `cluster_nodes`, or the listen address. A node missing from a non-empty
    /// `cluster_nodes`, or an `advertise` that contradicts its entry, stops start-up.
    fn advertised_address(
        &self,
        node_id: i32,
        cluster_nodes: &[ClusterNode],
        advertised: Option<(String, u16)>,
        listen: SocketAddr,
    ) -> Result<(String, u16), ConfigError> {
        if cluster_nodes.is_empty() {
            return Ok(advertised.unwrap_or_else(|| (listen.ip().to_string(), listen.port())));
        }
        let source = |key: &str| self.values.get(key).map_or("default".to_string(), |s| s.source.clone());
        let Some(own) = cluster_nodes.iter().find(|n| n.id == node_id) else {
            let ids: Vec<String> = cluster_nodes.iter().map(|n| n.id.to_string()).collect();
            return Err(ConfigError(format!(
                "config key `node_id` ({}) is {node_id}, which config key `cluster_nodes` ({}) does not list (it lists {})",
                source("node_id"),
                source("cluster_nodes"),
                ids.join(", ")
            )));
        };
        match advertised {
            Some((host, port)) if (host.as_str(), port) != (own.host.as_str(), own.port) => Err(ConfigError(format!(
                "config key `advertise` ({}) is {host}:{port}, but config key `cluster_nodes` ({}) gives node {node_id} the address {}:{}",
                source("advertise"),
                source("cluster_nodes"),
                own.host,
                own.port
            ))),
            _ => Ok((own.host.clone(), own.port)),
        }
    }
}

fn parse_host_port(v: &str) -> Result<(String, u16), String> {
    let (host, port) = v.rsplit_once(':').ok_or_else(|| format!("{v:?} is not host:port"))?;
    let port: u16 = port.parse().map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))?;
    if host.is_empty() {
        return Err(format!("{v:?} has no host"));
    }
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

/// `ID@HOST:PORT,...`: ids and addresses each at most once.
fn parse_cluster_nodes(v: &str) -> Result<Vec<ClusterNode>, String> {
    let mut nodes: Vec<ClusterNode> = Vec::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, address) = entry
            .split_once('@')
            .ok_or_else(|| format!("entry {entry:?} is not ID@HOST:PORT (like 1@127.0.0.1:9092)"))?;
        let id: i32 = id
            .parse()
            .ok()
            .filter(|&n: &i32| n >= 0)
            .ok_or_else(|| format!("entry {entry:?}: {id:?} is not a node id (0 or more)"))?;
        let (host, port) = parse_host_port(address).map_err(|e| format!("entry {entry:?}: {e}"))?;
        if nodes.iter().any(|n| n.id == id) {
            return Err(format!("node id {id} appears twice"));
        }
        if nodes.iter().any(|n| n.host == host && n.port == port) {
            return Err(format!("address {host}:{port} appears twice"));
        }
        nodes.push(ClusterNode { id, host, port });
    }
    Ok(nodes)
}

fn parse_cluster_id(v: &str) -> Result<Option<String>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    let valid = v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(format!("{v:?} is not 1 to 64 of A-Z a-z 0-9 - _"));
    }
    Ok(Some(v.to_string()))
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{v:?} is not true or false")),
    }
}

fn key_list() -> String {
    KEYS.iter().map(|(k, _, _)| *k).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let config = RawConfig::default().build().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(config.advertise_host, "127.0.0.1");
        assert_eq!(config.advertise_port, 9092);
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert!(config.auto_create_topics);
    }

    #[test]
    fn precedence_file_env_flag() {
        let mut raw = RawConfig::default();
        raw.from_toml("node_id = 3\nlisten = \"127.0.0.1:1000\"\nlog_retention_ms = 5000\n", "h.toml").unwrap();
        let ignored = raw.from_env([
            ("HEADWATER_NODE_ID".to_string(), "4".to_string()),
            ("PATH".into(), "/bin".into()),
            ("HEADWATER_DATADIR".into(), "typo".into()),
        ]);
        assert_eq!(ignored, vec!["HEADWATER_DATADIR".to_string()]);
        raw.set_flag("--listen", "127.0.0.1:2000".into()).unwrap();
        let config = raw.build().unwrap();
        assert_eq!(config.node_id, 4);
        assert_eq!(config.listen.port(), 2000);
        assert_eq!(config.topic_defaults.get("retention.ms").map(String::as_str), Some("5000"));
    }

    #[test]
    fn errors_name_the_key_and_source() {
        let mut raw = RawConfig::default();
        raw.set_flag("--node-id", "minus one".into()).unwrap();
        let error = raw.build().unwrap_err().0;
        assert!(error.contains("`node_id`") && error.contains("flag --node-id"), "{error}");
        let mut raw = RawConfig::default();
        let error = raw.from_toml("lisen = \"x\"", "h.toml").unwrap_err().0;
        assert!(error.contains("`lisen`"), "{error}");
        let mut raw = RawConfig::default();
        raw.from_env([("HEADWATER_NUM_PARTITIONS".to_string(), "0".to_string())]);
        let error = raw.build().unwrap_err().0;
        assert!(error.contains("`num_partitions`") && error.contains("HEADWATER_NUM_PARTITIONS"), "{error}");
        let mut raw = RawConfig::default();
        raw.set_flag("--advertise", "nohost".into()).unwrap();
        assert!(raw.build().unwrap_err().0.contains("`advertise`"));
        let mut raw = RawConfig::default();
        raw.set_flag("--log-segment-bytes", "3".into()).unwrap();
        assert!(raw.build().unwrap_err().0.contains("`log_segment_bytes`"));
        let mut raw = RawConfig::default();
        raw.set_flag("--queued-max-request-bytes", "1048576".into()).unwrap();
        let error = raw.build().unwrap_err().0;
        assert!(error.contains("`queued_max_request_bytes`") && error.contains("socket_request_max_bytes"), "{error}");
        let mut raw = RawConfig::default();
        raw.set_flag("--connections-max-idle-ms", "0".into()).unwrap();
        assert!(raw.build().unwrap_err().0.contains("`connections_max_idle_ms`"));
    }

    #[test]
    fn cluster_nodes_give_each_node_its_address_and_refuse_contradictions() {
        let nodes = "1@127.0.0.1:9092, 2@127.0.0.1:9093,3@localhost:9094";
        let mut raw = RawConfig::default();
        raw.from_env([("HEADWATER_CLUSTER_NODES".to_string(), nodes.to_string())]);
        raw.set_flag("--node-id", "2".into()).unwrap();
        raw.set_flag("--rack", "r1".into()).unwrap();
        raw.set_flag("--cluster-id", "hw-test_1".into()).unwrap();
        let config = raw.build().unwrap();
        assert_eq!(config.cluster_id.as_deref(), Some("hw-test_1"));
        assert_eq!(config.cluster_nodes.len(), 3);
        assert_eq!(config.cluster_nodes[2], ClusterNode { id: 3, host: "localhost".into(), port: 9094 });
        // Unless `advertise` says otherwise, a node advertises its entry.
        assert_eq!((config.advertise_host.as_str(), config.advertise_port), ("127.0.0.1", 9093));
        assert_eq!(config.rack.as_deref(), Some("r1"));
        assert!(RawConfig::default().build().unwrap().cluster_nodes.is_empty(), "a cluster of one by default");

        let error = |flags: &[(&str, &str)]| {
            let mut raw = RawConfig::default();
            for (flag, value) in flags {
                raw.set_flag(flag, value.to_string()).unwrap();
            }
            raw.build().unwrap_err().0
        };
        let e = error(&[("--cluster-nodes", nodes), ("--node-id", "4")]);
        assert!(e.contains("`node_id`") && e.contains("does not list") && e.contains("1, 2, 3"), "{e}");
        let e = error(&[("--cluster-nodes", "1@h:1,1@h:2")]);
        assert!(e.contains("`cluster_nodes`") && e.contains("node id 1 appears twice"), "{e}");
        let e = error(&[("--cluster-nodes", "1@h:1,2@h:1")]);
        assert!(e.contains("address h:1 appears twice"), "{e}");
        let e = error(&[("--cluster-nodes", "1-h:1")]);
        assert!(e.contains("`cluster_nodes`") && e.contains("ID@HOST:PORT"), "{e}");
        let e = error(&[("--cluster-nodes", nodes), ("--node-id", "2")]);
        assert!(e.contains("`cluster_id` is not set") && e.contains("lists 3 nodes"), "{e}");
        let e = error(&[("--cluster-id", "no spaces")]);
        assert!(e.contains("`cluster_id`") && e.contains("A-Z a-z 0-9 - _"), "{e}");
        let e = error(&[("--cluster-nodes", nodes), ("--advertise", "127.0.0.1:9999")]);
        assert!(e.contains("`advertise`") && e.contains("`cluster_nodes`"), "{e}");
    }
}
