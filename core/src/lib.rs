//! # headwater-core
//!
//! Headwater's broker as a pure state machine: no tokio, no clock, no OS randomness. The same
//! code runs under the real tokio driver (`headwater-server`) and under the deterministic
//! simulator (`headwater-sim`).
//!
//! ```text
//!              decoded requests (wire::decode_request)
//!                       |            now_ms
//!                       v              |
//!   IoDone(token) --> [ Broker ] <-- timeout
//!                       |
//!          poll_output()|
//!          +------------+-------------+
//!          v                          v
//!   Response (driver encodes    IoCommand::Sync { files }
//!   with wire::encode_response)  (driver fsyncs off-loop, reports IoDone)
//!                       |
//!                       v
//!         Storage (appends, reads: page cache, synchronous)
//! ```
//!
//! - [`log`]: the partition log: segments, indexes, recovery, retention.
//! - [`partition`]: one partition's log, producers, offsets and parked-request index.
//! - [`ids`]: newtypes for offsets, epochs, node and partition ids.
//! - [`broker`]: request handling, parked requests (acks=all, long polls), group commit.
//! - [`metadata`]: topics and configs, persisted.
//! - [`txn`]: idempotent producer state.
//! - [`io`]: inputs and outputs: requests, responses, I/O commands, their ids.
//! - [`wire`]: Kafka frame decoding and response encoding, total over arbitrary bytes.
//! - [`storage`]: the disk interface and an in-memory disk for tests.
//!
//! See `docs/ARCHITECTURE.md` for the decisions and their reasons.

pub mod alloc_guard;
pub mod broker;
pub mod constants;
pub mod error;
pub mod group;
pub mod ids;
pub mod io;
pub mod log;
pub mod metadata;
pub mod partition;
pub mod peer;
pub mod planted;
pub mod raft;
pub mod rng;
pub mod storage;
pub mod txn;
pub mod wire;

#[cfg(test)]
#[global_allocator]
static ALLOCATOR: alloc_guard::LargeAllocGuard = alloc_guard::LargeAllocGuard;

pub use broker::{
    Broker, BrokerConfig, ConnId, IoCommand, IoToken, Output, Request, RequestId, Response, ResponseBody, StartupReport,
};
pub use error::ErrorCode;
pub use storage::{FileRef, MemStorage, NamedFile, Storage, StorageFile};
