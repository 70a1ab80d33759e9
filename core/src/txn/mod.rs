//! Producer ids, idempotence and transactions: each partition's producer state
//! ([`producer`]) and each transactional id's state at its coordinator ([`metadata`]).

pub mod calls;
pub mod coordinator;
pub mod metadata;
pub mod producer;
pub mod records;
