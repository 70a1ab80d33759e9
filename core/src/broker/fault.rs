//! Storage failures the broker met, as outputs. The core does no logging: each failure becomes
//! an [`Output::Fault`](super::Output::Fault) that the driver logs at error level, naming the
//! file and the OS error, and that tests assert on. No write error in the core is dropped
//! silently; each one either leaves the state unchanged (and says what will retry it) or
//! fails the affected partition.
//!
//! A failed partition answers its pending and new produce requests with KAFKA_STORAGE_ERROR
//! at once, keeps serving reads of what is durable, is reported in DescribeLogDirs, and comes
//! back at the next start, when recovery reads what is really on disk.

use std::io;

/// What the broker was doing when storage failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageOp {
    /// Appending a batch to a partition (includes rolling a segment and the leader-epoch file).
    Append,
    /// The fsync that makes appended batches durable.
    Sync,
    /// Reading batches for a fetch or an offset lookup.
    Read,
    /// `recovery-point-offset-checkpoint`: how far each log is known to be synced.
    RecoveryCheckpoint,
    /// `log-start-offset-checkpoint`: where each log starts after DeleteRecords or retention.
    LogStartCheckpoint,
    /// `__headwater/metadata.json`: topics, configs, producer-id blocks.
    Metadata,
    /// Sealing the active segment when `segment.ms` has passed.
    Roll,
    /// Deleting segments (retention, DeleteRecords) or a deleted topic's directories.
    Delete,
    /// Creating a topic's directories and first segments.
    CreateTopic,
}

impl StorageOp {
    pub fn name(self) -> &'static str {
        match self {
            StorageOp::Append => "append",
            StorageOp::Sync => "fsync",
            StorageOp::Read => "read",
            StorageOp::RecoveryCheckpoint => "write recovery-point checkpoint",
            StorageOp::LogStartCheckpoint => "write log-start checkpoint",
            StorageOp::Metadata => "write metadata",
            StorageOp::Roll => "roll segment",
            StorageOp::Delete => "delete",
            StorageOp::CreateTopic => "create topic",
        }
    }
}

/// One storage failure and what the broker did about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageFault {
    pub op: StorageOp,
    /// The file or directory concerned, relative to the data directory.
    pub path: String,
    /// The OS error as the storage reported it (real files name the full path in it).
    pub error: String,
    /// What follows: the state kept, and what retries it or brings it back.
    pub consequence: &'static str,
}

impl StorageFault {
    pub fn new(op: StorageOp, path: impl Into<String>, error: &io::Error, consequence: &'static str) -> StorageFault {
        StorageFault { op, path: path.into(), error: error.to_string(), consequence }
    }
}

impl std::fmt::Display for StorageFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed for {}: {}; {}", self.op.name(), self.path, self.error, self.consequence)
    }
}

/// What a failed partition does, for the fault that fails it.
pub const PARTITION_FAILED: &str = "the partition is failed: produce requests get KAFKA_STORAGE_ERROR, \
     reads of what is durable go on, and a restart recovers it from what is on disk";
