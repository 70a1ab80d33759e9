//! headwater-client: an async Kafka client for Headwater and Apache Kafka, and the one client
//! under the Python and Go SDKs.
//!
//! - [`Producer`]: batching by linger and size, compression, idempotence on by default, acks,
//!   retries with backoff, one batch in flight per partition (order kept).
//! - [`Admin`]: topics.
//!
//! Everything is async on tokio; background work (the producer's sender) runs as tasks on the
//! runtime the client was created on.

pub mod admin;
mod cluster;
mod conn;
pub mod error;
pub mod producer;
pub mod records;

pub use admin::{Admin, NewTopic, TopicDescription};
pub use cluster::ClientConfig;
pub use error::{Error, ErrorKind, Result};
pub use producer::{Acks, Delivery, Producer, ProducerConfig};
pub use records::{Compression, ConsumerRecord, ProducerRecord, RecordMetadata};
