//! Consumer groups: the classic group protocol's coordinator ([`coordinator`]) and the
//! committed-offset store ([`offsets`]), persisted in the internal `__consumer_offsets` log.

pub mod coordinator;
pub mod offsets;

pub use coordinator::{Coordinator, GroupConfig, GroupReply};
pub use offsets::{CommittedOffset, OffsetStore, OFFSETS_TOPIC};
