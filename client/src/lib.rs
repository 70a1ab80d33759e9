//! headwater-client: an async Kafka client for Headwater and Apache Kafka, and the one client
//! under the Python and Go SDKs.
//!
//! - [`Producer`]: batching by linger and size, compression, idempotence on by default, acks,
//!   retries with backoff, one batch in flight per partition (order kept).
//! - [`Consumer`]: `subscribe` with a group (KIP-848 consumer protocol: the broker assigns),
//!   or `assign`; `poll`, commit, seek, pause and resume, a rebalance listener.
//! - [`Admin`] for topics, topic configs and groups.
//!
//! Everything is async on tokio; background work (the producer's sender) runs as tasks on the
//! runtime the client was created on.

pub mod admin;
mod cluster;
mod conn;
pub mod consumer;
pub mod error;
mod group;
pub mod producer;
pub mod records;

pub use admin::{Admin, GroupDescription, GroupListing, GroupMember, NewTopic, TopicDescription};
pub use cluster::ClientConfig;
pub use consumer::{Consumer, ConsumerConfig, OffsetReset, Rebalance, RebalanceListener, TopicPartition};
pub use error::{Error, ErrorKind, Result};
pub use producer::{Acks, Delivery, Producer, ProducerConfig};
pub use records::{Compression, ConsumerRecord, ProducerRecord, RecordMetadata};
