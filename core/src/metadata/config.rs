//! Per-topic configuration: the keys Headwater knows, their defaults, and their validation.
//! An unknown key or a bad value is refused with a message that names the key, as Kafka does.

use std::collections::BTreeMap;

use crate::log::LogConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Long,
    Double,
    List,
}

impl ConfigType {
    /// Kafka's DescribeConfigs `config_type` numbers.
    pub fn code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
        }
    }
}

/// One topic config key. `effective` says whether Headwater acts on it today; keys it only
/// stores are listed in the README so nobody relies on them.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub kind: ConfigType,
    pub default: &'static str,
    pub effective: bool,
    pub doc: &'static str,
    validate: fn(&str) -> Result<(), String>,
}

fn long_at_least(min: i64) -> impl Fn(&str) -> Result<(), String> {
    move |v: &str| match v.trim().parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        Ok(n) => Err(format!("{n} is below the minimum {min}")),
        Err(_) => Err(format!("{v:?} is not an integer")),
    }
}

fn int_at_least(min: i64) -> impl Fn(&str) -> Result<(), String> {
    move |v: &str| match v.trim().parse::<i32>() {
        Ok(n) if i64::from(n) >= min => Ok(()),
        Ok(n) => Err(format!("{n} is below the minimum {min}")),
        Err(_) => Err(format!("{v:?} is not a 32-bit integer")),
    }
}

fn one_of(v: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&v.trim()) {
        Ok(())
    } else {
        Err(format!("{v:?} is not one of {allowed:?}"))
    }
}

fn boolean(v: &str) -> Result<(), String> {
    one_of(&v.to_ascii_lowercase(), &["true", "false"])
}

fn ratio(v: &str) -> Result<(), String> {
    match v.trim().parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(()),
        _ => Err(format!("{v:?} is not a number between 0 and 1")),
    }
}

macro_rules! validator {
    ($e:expr) => {{
        fn check(v: &str) -> Result<(), String> {
            ($e)(v)
        }
        check
    }};
}

pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        kind: ConfigType::List,
        default: "delete",
        effective: false,
        doc: "delete or compact; compaction is not implemented yet, the value is stored",
        validate: validator!(|v: &str| {
            for part in v.split(',') {
                one_of(part, &["delete", "compact"])?;
            }
            Ok(())
        }),
    },
    ConfigDef {
        name: "compression.type",
        kind: ConfigType::String,
        default: "producer",
        effective: true,
        doc: "only 'producer': batches are stored as the producer compressed them",
        validate: validator!(|v: &str| one_of(v, &["producer"])),
    },
    ConfigDef {
        name: "delete.retention.ms",
        kind: ConfigType::Long,
        default: "86400000",
        effective: false,
        doc: "stored for compaction",
        validate: validator!(long_at_least(0)),
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        kind: ConfigType::Long,
        default: "60000",
        effective: false,
        doc: "segments are deleted at once",
        validate: validator!(long_at_least(0)),
    },
    ConfigDef {
        name: "flush.messages",
        kind: ConfigType::Long,
        default: "9223372036854775807",
        effective: false,
        doc: "Headwater fsyncs every batch before acks=all is answered",
        validate: validator!(long_at_least(1)),
    },
    ConfigDef {
        name: "flush.ms",
        kind: ConfigType::Long,
        default: "9223372036854775807",
        effective: false,
        doc: "Headwater fsyncs every batch before acks=all is answered",
        validate: validator!(long_at_least(0)),
    },
    ConfigDef {
        name: "index.interval.bytes",
        kind: ConfigType::Int,
        default: "4096",
        effective: true,
        doc: "bytes between offset index entries",
        validate: validator!(int_at_least(0)),
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        kind: ConfigType::Long,
        default: "9223372036854775807",
        effective: false,
        doc: "stored for compaction",
        validate: validator!(long_at_least(1)),
    },
    ConfigDef {
        name: "max.message.bytes",
        kind: ConfigType::Int,
        default: "1048588",
        effective: true,
        doc: "largest record batch accepted",
        validate: validator!(int_at_least(0)),
    },
    ConfigDef {
        name: "message.timestamp.after.max.ms",
        kind: ConfigType::Long,
        default: "9223372036854775807",
        effective: false,
        doc: "stored",
        validate: validator!(long_at_least(0)),
    },
    ConfigDef {
        name: "message.timestamp.before.max.ms",
        kind: ConfigType::Long,
        default: "9223372036854775807",
        effective: false,
        doc: "stored",
        validate: validator!(long_at_least(0)),
    },
    ConfigDef {
        name: "message.timestamp.type",
        kind: ConfigType::String,
        default: "CreateTime",
        effective: true,
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's clock",
        validate: validator!(|v: &str| one_of(v, &["CreateTime", "LogAppendTime"])),
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        kind: ConfigType::Double,
        default: "0.5",
        effective: false,
        doc: "stored for compaction",
        validate: validator!(ratio),
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        kind: ConfigType::Long,
        default: "0",
        effective: false,
        doc: "stored for compaction",
        validate: validator!(long_at_least(0)),
    },
    ConfigDef {
        name: "min.insync.replicas",
        kind: ConfigType::Int,
        default: "1",
        effective: true,
        doc: "acks=all is refused (NOT_ENOUGH_REPLICAS) while fewer replicas are in sync; a single node always has one",
        validate: validator!(int_at_least(1)),
    },
    ConfigDef {
        name: "preallocate",
        kind: ConfigType::Boolean,
        default: "false",
        effective: false,
        doc: "stored",
        validate: validator!(boolean),
    },
    ConfigDef {
        name: "retention.bytes",
        kind: ConfigType::Long,
        default: "-1",
        effective: true,
        doc: "largest size of a partition before old segments are deleted; -1 for no limit",
        validate: validator!(long_at_least(-1)),
    },
    ConfigDef {
        name: "retention.ms",
        kind: ConfigType::Long,
        default: "604800000",
        effective: true,
        doc: "age after which segments are deleted; -1 for no limit",
        validate: validator!(long_at_least(-1)),
    },
    ConfigDef {
        name: "segment.bytes",
        kind: ConfigType::Int,
        default: "1073741824",
        effective: true,
        doc: "size at which a segment is rolled",
        validate: validator!(int_at_least(14)),
    },
    ConfigDef {
        name: "segment.index.bytes",
        kind: ConfigType::Int,
        default: "10485760",
        effective: false,
        doc: "indexes are kept in memory",
        validate: validator!(int_at_least(4)),
    },
    ConfigDef {
        name: "segment.jitter.ms",
        kind: ConfigType::Long,
        default: "0",
        effective: false,
        doc: "stored",
        validate: validator!(long_at_least(0)),
    },
    ConfigDef {
        name: "segment.ms",
        kind: ConfigType::Long,
        default: "604800000",
        effective: true,
        doc: "age at which a segment is rolled",
        validate: validator!(long_at_least(1)),
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        kind: ConfigType::Boolean,
        default: "false",
        effective: false,
        doc: "single node: no elections",
        validate: validator!(boolean),
    },
];

pub fn definition(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Why a config was refused; names the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid value for topic config {}: {}", self.key, self.reason)
    }
}

/// Checks one key and value.
pub fn validate(key: &str, value: &str) -> Result<(), ConfigError> {
    let def = definition(key)
        .ok_or_else(|| ConfigError { key: key.to_string(), reason: "unknown topic config name".into() })?;
    (def.validate)(value).map_err(|reason| ConfigError { key: key.to_string(), reason })
}

/// A topic's overrides; everything else takes the broker default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfig {
    pub overrides: BTreeMap<String, String>,
}

impl TopicConfig {
    /// Builds from key/value pairs, validating each.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<TopicConfig, ConfigError> {
        let mut overrides = BTreeMap::new();
        for (key, value) in pairs {
            validate(key, value)?;
            overrides.insert(key.to_string(), value.trim().to_string());
        }
        Ok(TopicConfig { overrides })
    }

    /// The value in force for `key`: the override, else `defaults`' value, else the
    /// built-in default.
    pub fn value<'a>(&'a self, key: &str, defaults: &'a BTreeMap<String, String>) -> Option<&'a str> {
        self.overrides
            .get(key)
            .or_else(|| defaults.get(key))
            .map(String::as_str)
            .or_else(|| definition(key).map(|d| d.default))
    }

    fn long(&self, key: &str, defaults: &BTreeMap<String, String>) -> i64 {
        self.value(key, defaults).and_then(|v| v.trim().parse().ok()).expect("validated configs parse")
    }

    pub fn log_config(&self, defaults: &BTreeMap<String, String>) -> LogConfig {
        LogConfig {
            segment_bytes: self.long("segment.bytes", defaults),
            segment_ms: self.long("segment.ms", defaults),
            retention_ms: self.long("retention.ms", defaults),
            retention_bytes: self.long("retention.bytes", defaults),
            index_interval_bytes: i32::try_from(self.long("index.interval.bytes", defaults)).expect("validated as int"),
        }
    }

    pub fn message_bytes_max(&self, defaults: &BTreeMap<String, String>) -> i32 {
        i32::try_from(self.long("max.message.bytes", defaults)).expect("validated as int")
    }

    /// `min.insync.replicas`: acks=all needs at least this many replicas in sync.
    pub fn min_insync_replicas(&self, defaults: &BTreeMap<String, String>) -> usize {
        usize::try_from(self.long("min.insync.replicas", defaults)).unwrap_or(1)
    }

    pub fn log_append_time(&self, defaults: &BTreeMap<String, String>) -> bool {
        self.value("message.timestamp.type", defaults) == Some("LogAppendTime")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key() {
        let error = TopicConfig::from_pairs([("retention.ms", "soon")]).unwrap_err();
        assert_eq!(error.key, "retention.ms");
        let error = TopicConfig::from_pairs([("no.such.key", "1")]).unwrap_err();
        assert_eq!(error.key, "no.such.key");
        assert!(TopicConfig::from_pairs([("segment.bytes", "10")]).is_err());
        assert!(TopicConfig::from_pairs([("cleanup.policy", "compact,delete")]).is_ok());
    }

    #[test]
    fn overrides_then_broker_defaults_then_builtin() {
        let config = TopicConfig::from_pairs([("retention.ms", "1000")]).unwrap();
        let mut defaults = BTreeMap::new();
        defaults.insert("segment.bytes".to_string(), "2048".to_string());
        let log = config.log_config(&defaults);
        assert_eq!(log.retention_ms, 1000);
        assert_eq!(log.segment_bytes, 2048);
        assert_eq!(log.retention_bytes, -1);
    }

    #[test]
    fn every_default_is_valid() {
        for def in TOPIC_CONFIGS {
            assert!(validate(def.name, def.default).is_ok(), "{}", def.name);
        }
    }
}
