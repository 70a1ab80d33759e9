//! Cluster metadata: topics, their ids and partition counts, per-topic configs, and the
//! producer-id block. On a single node it is persisted as one JSON document written
//! atomically on every change (`store`). For a cluster it becomes the metadata log's records
//! (`records`), applied to an immutable image (`image`), with the controller's placement of
//! replicas (`placement`).

pub mod calls;
pub mod config;
pub mod controller;
pub mod image;
pub mod placement;
pub mod quorum;
pub mod records;
pub mod store;

pub use config::{ConfigError, TopicConfig};
pub use store::{MetadataStore, TopicRecord};

/// Kafka's legal topic names: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be {name:?}"));
    }
    if name.len() > crate::constants::TOPIC_NAME_BYTES_MAX {
        return Err(format!("topic name is longer than {} characters", crate::constants::TOPIC_NAME_BYTES_MAX));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-')) {
        return Err(format!(
            "topic name {name:?} has the illegal character {c:?}; legal are ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
