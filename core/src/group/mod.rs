//! Consumer groups: the classic group protocol's coordinator ([`coordinator`]), the KIP-848
//! consumer protocol's ([`consumer`]), and the committed-offset store ([`offsets`]), persisted
//! in the internal `__consumer_offsets` log beside the classic groups' membership
//! ([`membership`]).

pub mod consumer;
pub mod coordinator;
pub mod membership;
pub mod offsets;

pub use consumer::{ConsumerGroupConfig, ConsumerGroups};
pub use coordinator::{Coordinator, GroupConfig, GroupReply, GroupStore};
pub use offsets::{CommittedOffset, OffsetStore, OFFSETS_TOPIC};
